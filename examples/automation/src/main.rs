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

use std::path::{Path, PathBuf};

use anyhow::Context;
use cirrus_controllers::watcher::{self, Event};
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::new();
    let resume_from = std::fs::read_to_string(&args.state_file)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    match &resume_from {
        Some(rv) => println!("resuming from resourceVersion {rv}"),
        None => println!("starting with a full list"),
    }
    let plural = args.path.rsplit('/').next().unwrap_or_default().to_string();
    let config = watcher::Config {
        base_url: args.server.clone(),
        path: args.path.clone(),
        label_selector: None,
        resume_from,
        token: None,
    };
    let mut events = std::pin::pin!(watcher::watch(client.clone(), config));
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
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
        }
    }
    Ok(())
}

/// Labels `object` if it is Ready and not labelled yet.
async fn reconcile(
    client: &reqwest::Client,
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
    let url = match object.pointer("/metadata/project").and_then(Value::as_str) {
        Some(project) => {
            format!(
                "{}/apis/cirrus.dev/v1/projects/{project}/{plural}/{name}",
                args.server
            )
        }
        None => format!("{}/apis/cirrus.dev/v1/{plural}/{name}", args.server),
    };
    let patch = json!({ "metadata": { "labels": { args.label.as_str(): "true" } } });
    let response = client
        .patch(&url)
        .header("Content-Type", "application/merge-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .with_context(|| format!("PATCH {url}"))?;
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
