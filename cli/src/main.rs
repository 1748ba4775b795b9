//! The `cirrus` binary: `cirrus up` runs an all-in-one cloud; the other commands are the
//! client of the native API (`docs/api.md`), shaped like `kubectl`.
//!
//! Global options: `--server URL` (env `CIRRUS_URL`, default `http://127.0.0.1:8080`) and
//! `--project P` (env `CIRRUS_PROJECT`, default `default`): the project of project-scoped
//! objects when a manifest or command does not name one.
//!
//! Exit codes: `0` success, `1` failure (`diff`: `1` means "differences found" and `2` a
//! failure, like `kubectl diff`).

mod admin;
mod apply;
mod bench;
mod console;
mod controllers;
mod credentials;
mod delete;
mod describe;
mod diff;
mod errors;
mod get;
mod manifests;
mod merge;
mod node_agent;
mod output;
mod up;
mod up_identity;
mod upload;
mod wait;
mod watch;

use std::process::ExitCode;

use std::time::Duration;

use cirrus_client::{Client, ClientError, DynamicApi};
use clap::{Parser, Subcommand};

use crate::manifests::ManifestErrors;

/// The `cirrus` command line.
#[derive(Parser, Debug)]
#[command(
    name = "cirrus",
    version,
    about = "Cirrus: an IaaS control plane, the Kubernetes way"
)]
struct Cli {
    /// API server URL.
    #[arg(
        long,
        global = true,
        env = "CIRRUS_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// Project of project-scoped objects whose manifest or command names none: its id, or
    /// the name of one of the caller's projects (default: the project `default`).
    #[arg(short = 'p', long, global = true, env = "CIRRUS_PROJECT")]
    project: Option<String>,
    #[command(flatten)]
    credentials: credentials::CredentialArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the all-in-one cloud (store, API, controllers, node agent) in this process.
    Up(up::UpArgs),
    /// Run the control-plane controllers (scheduler, node lifecycle) against `--server`.
    Controllers(controllers::ControllersArgs),
    /// Run a node agent for this host against `--server`.
    NodeAgent(node_agent::NodeAgentArgs),
    /// Measure Cirrus against a baseline (runs the `cirrus-bench` binary next to this one).
    #[command(disable_help_flag = true)]
    Bench(bench::BenchArgs),
    /// Create or update objects from manifests (three-way merge), optionally pruning.
    Apply(apply::ApplyArgs),
    /// Show what `apply` would change (exit 1 when there are differences).
    Diff(diff::DiffArgs),
    /// List or show objects.
    Get(get::GetArgs),
    /// Show one object in detail, with its conditions and events.
    Describe(describe::DescribeArgs),
    /// Delete objects by name or by manifest.
    Delete(delete::DeleteArgs),
    /// Wait for a condition or for deletion.
    Wait(wait::WaitArgs),
    /// Stream changes of a kind.
    Watch(watch::WatchArgs),
    /// Upload data into an Image from a file (streamed).
    UploadImage(upload::UploadArgs),
    /// Print a server's serial console log.
    ConsoleLog(console::ConsoleArgs),
    /// Operator commands on a data directory (`rotate-keys`, `issue-certificate`).
    Admin(admin::AdminArgs),
}

/// What every client command needs: the API client and the default project.
#[derive(Debug)]
pub struct Ctx {
    /// The API client.
    pub client: Client,
    /// Project used when a manifest or command names none.
    pub project: String,
}

/// A failure whose details were already printed (per object); the command just exits
/// non-zero.
#[derive(Debug, thiserror::Error)]
#[error("failed (details above)")]
pub struct AlreadyReported;

/// The objects of `kind` in `project` (`None`: across projects, or a cluster-scoped kind),
/// through `client`.
pub fn api(
    client: &Client,
    kind: &'static cirrus_crds::KindInfo,
    project: Option<&str>,
) -> DynamicApi {
    DynamicApi::new(client.clone(), kind, project)
}

/// The API client of the commands: `server` checked to be an http(s) URL, a 10 s connect
/// timeout (a missing server is reported promptly) and the token `credentials` give.
///
/// # Errors
/// A server that is not an http(s) URL; an HTTP client that can't be built.
fn command_client(
    server: &str,
    credentials: &credentials::CredentialArgs,
) -> anyhow::Result<Client> {
    let http = cirrus_tls::http_client()
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let client = Client::parse(server)?.with_http(http);
    Ok(match credentials.token_source(server) {
        Some(source) => client.with_token_source(source),
        None => client,
    })
}

/// The kind a user means by `name`, or an error listing the known kinds.
///
/// # Errors
/// An unknown kind.
pub fn resolve_kind(name: &str) -> anyhow::Result<&'static cirrus_crds::KindInfo> {
    cirrus_crds::find_kind(name).ok_or_else(|| {
        let known: Vec<&str> = cirrus_crds::all_kinds().iter().map(|k| k.plural).collect();
        anyhow::anyhow!("unknown kind {name:?}; known kinds: {}", known.join(", "))
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Bench(args) = &cli.command {
        eprintln!("error: {:#}", bench::exec(args.clone()));
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let server = cli.server.clone();
    let failure_code = if matches!(cli.command, Command::Diff(_)) {
        2
    } else {
        1
    };
    let result: anyhow::Result<ExitCode> = async {
        match cli.command {
            Command::Up(args) => up::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Admin(args) => admin::run(args).map(|()| ExitCode::SUCCESS),
            Command::NodeAgent(args) => node_agent::run(&cli.server, &cli.credentials, args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Controllers(args) => controllers::run(&cli.server, &cli.credentials, args)
                .await
                .map(|()| ExitCode::SUCCESS),
            command => {
                let client = command_client(&cli.server, &cli.credentials)?;
                // A name costs a lookup; the default project is the id `default`.
                let project = match &cli.project {
                    Some(project) => credentials::project_id(&client, project).await,
                    None => "default".to_string(),
                };
                let ctx = Ctx { client, project };
                match command {
                    Command::Apply(args) => {
                        apply::run(&ctx, args).await.map(|()| ExitCode::SUCCESS)
                    }
                    Command::Diff(args) => diff::run(&ctx, args).await,
                    Command::Get(args) => get::run(&ctx, args).await.map(|()| ExitCode::SUCCESS),
                    Command::Describe(args) => {
                        describe::run(&ctx, args).await.map(|()| ExitCode::SUCCESS)
                    }
                    Command::Delete(args) => {
                        delete::run(&ctx, args).await.map(|()| ExitCode::SUCCESS)
                    }
                    Command::Wait(args) => wait::run(&ctx, args).await.map(|()| ExitCode::SUCCESS),
                    Command::UploadImage(args) => {
                        upload::run(&ctx, args).await.map(|()| ExitCode::SUCCESS)
                    }
                    Command::ConsoleLog(args) => {
                        console::run(&ctx, args).await.map(|()| ExitCode::SUCCESS)
                    }
                    Command::Watch(args) => {
                        watch::run(&ctx, args).await.map(|()| ExitCode::SUCCESS)
                    }
                    Command::Bench(_)
                    | Command::Up(_)
                    | Command::Admin(_)
                    | Command::Controllers(_)
                    | Command::NodeAgent(_) => {
                        unreachable!("handled above")
                    }
                }
            }
        }
    }
    .await;
    match result {
        Ok(code) => code,
        Err(err) => {
            report(&err, &server);
            ExitCode::from(failure_code)
        }
    }
}

/// Prints an error the way users expect: API errors as `Error from server (Reason): message`,
/// manifest errors one per line, anything else with its chain of causes.
fn report(err: &anyhow::Error, server: &str) {
    if let Some(e) = err.downcast_ref::<ManifestErrors>() {
        eprintln!("{e}");
        return;
    }
    if err.downcast_ref::<AlreadyReported>().is_some() {
        return;
    }
    if let Some(e) = err.downcast_ref::<ClientError>() {
        // The error itself, not wrapped in context: its message is complete.
        eprintln!("{}", errors::explain(e, server));
        return;
    }
    eprintln!("error: {err:#}");
}
