//! `cirrus delete (-f FILE|DIR | KIND NAME... | KIND/NAME...) [--wait] [--timeout 60s]`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use cirrus_crds::{KindInfo, Scope};

use crate::Ctx;
use crate::manifests;
use crate::wait::{WaitFor, parse_duration, wait_with_timeout};

/// Arguments of `cirrus delete`.
#[derive(clap::Args, Debug, Clone)]
pub struct DeleteArgs {
    /// `KIND NAME...` or `KIND/NAME...`.
    pub targets: Vec<String>,
    /// Delete the objects these manifests describe (files or directories).
    #[arg(short = 'f', long = "filename", conflicts_with = "targets")]
    pub files: Vec<PathBuf>,
    /// Read directories recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Wait until each object is really gone (finalizers done).
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Treat objects that don't exist as deleted.
    #[arg(long)]
    pub ignore_not_found: bool,
}

struct Target {
    kind: &'static KindInfo,
    project: Option<String>,
    name: String,
}

fn targets_from_args(ctx: &Ctx, args: &[String]) -> anyhow::Result<Vec<Target>> {
    let scoped = |kind: &'static KindInfo| match kind.scope {
        Scope::Project => Some(ctx.project.clone()),
        Scope::Cluster => None,
    };
    let Some(first) = args.first() else {
        bail!("nothing to delete: give KIND NAME..., KIND/NAME... or -f FILE");
    };
    if first.contains('/') {
        args.iter()
            .map(|a| {
                let (kind, name) = crate::wait::split_target(a, None)?;
                let kind = crate::resolve_kind(&kind)?;
                Ok(Target {
                    kind,
                    project: scoped(kind),
                    name,
                })
            })
            .collect()
    } else {
        let kind = crate::resolve_kind(first)?;
        if args.len() < 2 {
            bail!(
                "which {}? give one or more names after the kind",
                kind.plural
            );
        }
        Ok(args[1..]
            .iter()
            .map(|n| Target {
                kind,
                project: scoped(kind),
                name: n.clone(),
            })
            .collect())
    }
}

/// Runs `cirrus delete`.
///
/// # Errors
/// Unknown kinds, invalid manifests, API failures (every target is attempted; the command
/// fails when any failed), and `--wait` timeouts.
pub async fn run(ctx: &Ctx, args: DeleteArgs) -> anyhow::Result<()> {
    let targets = if args.files.is_empty() {
        targets_from_args(ctx, &args.targets)?
    } else {
        manifests::load(&args.files, args.recursive)?
            .iter()
            .map(|m| Target {
                kind: m.kind,
                project: m.effective_project(&ctx.project),
                name: m.name().to_string(),
            })
            .collect()
    };
    let mut failures = 0;
    let mut to_wait = Vec::new();
    for t in &targets {
        let ident = format!("{}/{}", t.kind.singular, t.name);
        match crate::api(&ctx.client, t.kind, t.project.as_deref())
            .delete(&t.name)
            .await
        {
            Ok(_) => {
                println!("{ident} deleted");
                to_wait.push(t);
            }
            Err(e) if e.is_not_found() && args.ignore_not_found => {}
            Err(e) => {
                failures += 1;
                eprintln!("{e}");
            }
        }
    }
    if args.wait {
        for t in to_wait {
            if let Err(e) = wait_with_timeout(
                &ctx.client,
                t.kind,
                t.project.as_deref(),
                &t.name,
                &WaitFor::Delete,
                args.timeout,
            )
            .await
            {
                failures += 1;
                eprintln!("error: {e:#}");
            }
        }
    }
    if failures > 0 {
        return Err(crate::AlreadyReported.into());
    }
    Ok(())
}
