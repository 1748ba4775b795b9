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
use cirrus_client::dynamic::{name_of, project_of, resource_version_of};
use cirrus_client::{Client, DynamicApi};
use cirrus_crds::KindInfo;
use cirrus_runtime::watcher::{self, Step};
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

/// The collection `path` names (`/apis/cirrus.dev/v1/servers`, or
/// `/apis/cirrus.dev/v1/projects/demo/servers` for one project's), as a kind and a project.
fn collection(path: &str) -> anyhow::Result<(&'static KindInfo, Option<&str>)> {
    let prefix = format!("/apis/{}/", cirrus_crds::API_VERSION);
    let rest = path
        .trim_end_matches('/')
        .strip_prefix(&prefix)
        .with_context(|| format!("{path:?} is not a collection under {prefix}"))?;
    let (project, plural) = match rest.split('/').collect::<Vec<_>>()[..] {
        [plural] => (None, plural),
        ["projects", project, plural] => (Some(project), plural),
        _ => anyhow::bail!("{path:?} is not a collection path"),
    };
    let kind = cirrus_crds::kind_by_plural(plural)
        .with_context(|| format!("{plural:?} in {path:?} is not a kind"))?;
    Ok((kind, project))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = client(&args)?;
    let (kind, project) = collection(&args.path)?;
    let resume_from = std::fs::read_to_string(&args.state_file)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    match &resume_from {
        Some(rv) => println!("resuming from resourceVersion {rv}"),
        None => println!("starting with a full list"),
    }
    let api = DynamicApi::new(client, kind, project);
    // The client renews a password login before the token expires and logs in again once
    // when the API refuses a token (`401`); the watcher resumes after the last handled
    // version after every broken or closed stream.
    let config = watcher::Config {
        resume_from,
        ..watcher::Config::default()
    };
    let mut steps = std::pin::pin!(watcher::steps(api.clone(), config));
    while let Some(step) = steps.next().await {
        let step = match step {
            Ok(step) => step,
            Err(err) if err.code() == Some(401) => {
                anyhow::bail!("the API refused the token (401); give valid credentials: {err}")
            }
            Err(err) => {
                eprintln!("watch error (retrying): {err:#}");
                continue;
            }
        };
        match &step {
            Step::Restarted { objects, .. } => {
                println!("LISTED {} objects", objects.len());
                for object in objects {
                    reconcile(&api, &args, object).await?;
                }
            }
            Step::Applied(object) => {
                println!("APPLIED {}", describe(object));
                reconcile(&api, &args, object).await?;
            }
            Step::Deleted(object) => println!("DELETED {}", describe(object)),
            Step::Bookmark(_) => {}
        }
        if let Some(rv) = watcher::resource_version::<DynamicApi>(&step) {
            save_state(&args.state_file, rv)?;
        }
    }
    anyhow::bail!("the watch ended")
}

/// Labels `object` if it is Ready and not labelled yet.
async fn reconcile(api: &DynamicApi, args: &Args, object: &Value) -> anyhow::Result<()> {
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
    // The object's own project: a watch across projects sees objects of many.
    let api = DynamicApi::new(api.client().clone(), api.kind(), project_of(object));
    let patch = json!({ "metadata": { "labels": { args.label.as_str(): "true" } } });
    match api.patch(name_of(object), &patch).await {
        Ok(_) => println!("LABELLED {}", describe(object)),
        Err(err) if err.is_not_found() => println!("GONE {}", describe(object)),
        Err(err) => {
            return Err(err).with_context(|| format!("labelling {}", describe(object)));
        }
    }
    Ok(())
}

fn describe(object: &Value) -> String {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = Some(name_of(object))
        .filter(|n| !n.is_empty())
        .unwrap_or("?");
    let rv = resource_version_of(object).unwrap_or("?");
    match project_of(object) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_paths_name_a_kind_and_a_project() {
        let (kind, project) = collection("/apis/cirrus.dev/v1/servers").unwrap();
        assert_eq!((kind.kind, project), ("Server", None));
        let (kind, project) = collection("/apis/cirrus.dev/v1/projects/demo/networks/").unwrap();
        assert_eq!((kind.kind, project), ("Network", Some("demo")));
        for bad in [
            "/apis/cirrus.dev/v1/gizmos",
            "/api/v1/servers",
            "/apis/cirrus.dev/v1/projects/demo",
        ] {
            assert!(collection(bad).is_err(), "{bad}");
        }
    }
}
