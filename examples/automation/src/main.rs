//! `cirrus-label-ready`: the pattern for watch-based automation against Cirrus.
//!
//! It watches one collection (all Servers by default) and gives every object whose `Ready`
//! condition is `True` the label `cirrus.dev/ready=true`, printing each event as it happens.
//! After each handled event it saves the resourceVersion to a state file; started again, it
//! resumes the watch from there, so events that happened while it was down are handled
//! once and nothing is handled twice. If that version has been compacted the watcher relists
//! and the automation reconciles every object (it is level-triggered: labelling is idempotent).
//!
//! Copy this shape: watch → decide from the whole object (never from "what changed") →
//! idempotent write → remember the version.
//!
//! Credentials, like the `cirrus` CLI: a token (`--token` / `CIRRUS_TOKEN`), or a password
//! login with `OS_USERNAME`, `OS_PASSWORD` and `OS_PROJECT_NAME` — `source <data-dir>/openrc`
//! of `cirrus up` sets them. A password login is renewed before the token expires; when the
//! API refuses a token (`401`) during the watch, the automation logs in again and resumes the
//! watch from the last handled version.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cirrus_client::Client;
use cirrus_controllers::watcher::{self, Event, WatcherError};
use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};

/// Label every Ready object, resuming from the last seen resourceVersion.
#[derive(Parser, Debug)]
struct Args {
    /// API base URL.
    #[arg(long, env = "CIRRUS_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Collection to watch.
    #[arg(long, default_value = "/apis/cirrus.dev/v1/servers")]
    path: String,
    /// File that keeps the last handled resourceVersion.
    #[arg(long, default_value = "label-ready.state")]
    state_file: PathBuf,
    /// The label to set on Ready objects.
    #[arg(long, default_value = "cirrus.dev/ready")]
    label: String,
    /// A token to send as it is (instead of a password login).
    #[arg(long, env = "CIRRUS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// User to log in as.
    #[arg(long = "os-username", env = "OS_USERNAME")]
    username: Option<String>,
    /// That user's password.
    #[arg(long = "os-password", env = "OS_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Project the token is scoped to.
    #[arg(long = "os-project-name", env = "OS_PROJECT_NAME")]
    project_name: Option<String>,
}

/// An API client acting with the credentials of `args`.
fn client(args: &Args) -> anyhow::Result<Client> {
    let client = Client::new(args.server.clone());
    if let Some(token) = &args.token {
        return Ok(client.with_token(token.clone()));
    }
    match (&args.username, &args.password) {
        (Some(user), Some(password)) => {
            Ok(client.with_password(user.clone(), password.clone(), args.project_name.clone()))
        }
        _ => anyhow::bail!(
            "no credentials: set CIRRUS_TOKEN, or OS_USERNAME, OS_PASSWORD and OS_PROJECT_NAME \
             (`source <data-dir>/openrc` of cirrus up)"
        ),
    }
}

/// The API refused `token`: forget it so the next request logs in again. Fails when that
/// cannot help (a fixed token).
fn refused(client: &Client, token: Option<&str>) -> anyhow::Result<()> {
    match (&client.auth, token) {
        (Some(source), Some(token)) if source.refused(token) => Ok(()),
        _ => anyhow::bail!("the API refused the token (401); give valid credentials"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = client(&args)?;
    let mut resume_from = std::fs::read_to_string(&args.state_file)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    match &resume_from {
        Some(rv) => println!("resuming from resourceVersion {rv}"),
        None => println!("starting with a full list"),
    }
    let plural = args.path.rsplit('/').next().unwrap_or_default().to_string();
    // One round per token: a refused token ends the round, the next one logs in again and
    // resumes after the last handled version.
    loop {
        let token = client
            .current_token()
            .await
            .context("logging in to the API")?;
        let config = watcher::Config {
            base_url: args.server.clone(),
            path: args.path.clone(),
            label_selector: None,
            resume_from: resume_from.clone(),
            token: token.clone(),
        };
        let mut events = std::pin::pin!(watcher::watch(client.http.clone(), config));
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(WatcherError::Status { status: 401, .. }) => {
                    eprintln!("the API refused the token; logging in again");
                    refused(&client, token.as_deref())?;
                    break;
                }
                Err(err) => {
                    eprintln!("watch error (retrying): {err:#}");
                    continue;
                }
            };
            match &event {
                Event::Restarted { objects, .. } => {
                    println!("LISTED {} objects", objects.len());
                    for object in objects {
                        reconcile(&client, &args, &plural, object).await?;
                    }
                }
                Event::Applied(object) => {
                    println!("APPLIED {}", describe(object));
                    reconcile(&client, &args, &plural, object).await?;
                }
                Event::Deleted(object) => println!("DELETED {}", describe(object)),
                Event::Bookmark(_) => {}
            }
            if let Some(rv) = event.resource_version() {
                save_state(&args.state_file, &rv)?;
                resume_from = Some(rv);
            }
        }
    }
}

/// Labels `object` if it is Ready and not labelled yet.
async fn reconcile(
    client: &Client,
    args: &Args,
    plural: &str,
    object: &Value,
) -> anyhow::Result<()> {
    let ready = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        });
    let labelled = object
        .pointer("/metadata/labels")
        .and_then(|labels| labels.get(&args.label))
        .and_then(Value::as_str)
        == Some("true");
    if !ready || labelled {
        return Ok(());
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // From segments: a name from the watch never reaches another route.
    let url = match object.pointer("/metadata/project").and_then(Value::as_str) {
        Some(project) => client.url(&[
            "apis",
            "cirrus.dev",
            "v1",
            "projects",
            project,
            plural,
            name,
        ])?,
        None => client.url(&["apis", "cirrus.dev", "v1", plural, name])?,
    };
    let patch = json!({ "metadata": { "labels": { args.label.as_str(): "true" } } });
    let mut retried = false;
    let response = loop {
        let (request, token) = client.request(reqwest::Method::PATCH, &url).await?;
        let response = request
            .header("Content-Type", "application/merge-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .with_context(|| format!("PATCH {url}"))?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED && !retried {
            // The token expired or was revoked: log in again once.
            refused(client, token.as_deref())?;
            retried = true;
            continue;
        }
        break response;
    };
    match response.status().as_u16() {
        200 => println!("LABELLED {}", describe(object)),
        404 => println!("GONE {}", describe(object)),
        status => {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("PATCH {url} answered {status}: {body}");
        }
    }
    Ok(())
}

fn describe(object: &Value) -> String {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let rv = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("?");
    match object.pointer("/metadata/project").and_then(Value::as_str) {
        Some(project) => format!("{kind} {project}/{name} rv={rv}"),
        None => format!("{kind} {name} rv={rv}"),
    }
}

/// Writes the version atomically (write + rename), so a crash never leaves half a number.
fn save_state(path: &Path, rv: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, rv).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
