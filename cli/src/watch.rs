//! `cirrus watch KIND [NAME] [-A] [-l SELECTOR] [-o json] [--resource-version RV]`: stream
//! changes as `TYPE Kind/name rv` lines (`TYPE Kind/project/name rv` with `-A`), or the raw
//! events as JSON lines with `-o json`.
//!
//! Without `--resource-version` the current objects come first as `ADDED`. When the server
//! ends the stream, the watch resumes from the last revision seen; an expired revision
//! (`410 Gone`) ends the command with an error.

use anyhow::bail;
use cirrus_client::dynamic::{name_of, project_of, resource_version_of as resource_version};
use cirrus_client::{ListParams, WatchEvent};
use cirrus_crds::{KindInfo, Scope};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::Ctx;

/// One watch event as the commands show it: the server's type word (`ADDED`, `MODIFIED`,
/// `DELETED`, `BOOKMARK`) and object (for a bookmark, the one the server sends: the kind
/// and the revision reached).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The event type.
    pub kind: &'static str,
    /// The object.
    pub object: Value,
}

impl Change {
    /// The change `event` of an object of `kind` reports.
    pub fn new(kind: &KindInfo, event: WatchEvent<Value>) -> Self {
        let (word, object) = match event {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark { resource_version } => (
                "BOOKMARK",
                json!({
                    "apiVersion": cirrus_crds::API_VERSION,
                    "kind": kind.kind,
                    "metadata": {"resourceVersion": resource_version},
                }),
            ),
        };
        Self { kind: word, object }
    }
}

/// Output of `cirrus watch`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WatchOutput {
    /// `TYPE Kind/name rv`.
    #[default]
    Text,
    /// One `{"type":...,"object":...}` JSON object per line.
    Json,
}

/// Arguments of `cirrus watch`.
#[derive(clap::Args, Debug, Clone)]
pub struct WatchArgs {
    /// Kind to watch.
    pub kind: String,
    /// Only events of the object with this name.
    pub name: Option<String>,
    /// Watch across all projects (project-scoped kinds).
    #[arg(short = 'A', long)]
    pub all_projects: bool,
    /// Only objects whose labels match.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Output: text lines or JSON lines.
    #[arg(short = 'o', long, value_enum, default_value_t = WatchOutput::Text)]
    pub output: WatchOutput,
    /// Start after this revision instead of listing current objects first.
    #[arg(long)]
    pub resource_version: Option<String>,
}

/// One event as a text line.
pub fn event_line(kind: &str, event: &Change, with_project: bool) -> String {
    let rv = resource_version(&event.object).unwrap_or("-");
    if event.kind == "BOOKMARK" {
        return format!("BOOKMARK - {rv}");
    }
    let name = name_of(&event.object);
    match project_of(&event.object).filter(|_| with_project) {
        Some(p) => format!("{} {kind}/{p}/{name} {rv}", event.kind),
        None => format!("{} {kind}/{name} {rv}", event.kind),
    }
}

/// Runs `cirrus watch` until interrupted.
///
/// # Errors
/// Unknown kinds, API failures, an expired revision.
pub async fn run(ctx: &Ctx, args: WatchArgs) -> anyhow::Result<()> {
    let kind = crate::resolve_kind(&args.kind)?;
    let all = args.all_projects && kind.scope == Scope::Project;
    let project = match kind.scope {
        Scope::Project if !all => Some(ctx.project.as_str()),
        _ => None,
    };
    let mut from = args.resource_version.clone();
    let api = crate::api(&ctx.client, kind, project);
    let selectors = ListParams {
        label_selector: args.selector.clone(),
        ..ListParams::default()
    };
    loop {
        let mut stream =
            std::pin::pin!(api.watch_matching(from.as_deref().unwrap_or(""), &selectors));
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => Change::new(kind, e),
                Err(e) if e.is_gone() => bail!(
                    "the watch expired (410 Gone) after revision {}; start again without --resource-version",
                    from.as_deref().unwrap_or("0")
                ),
                Err(e) if e.is_stream_broken() => {
                    tracing::debug!("watch interrupted: {e}");
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(rv) = resource_version(&event.object) {
                from = Some(rv.to_string());
            }
            if event.kind != "BOOKMARK"
                && args
                    .name
                    .as_deref()
                    .is_some_and(|n| n != name_of(&event.object))
            {
                continue;
            }
            match args.output {
                WatchOutput::Text => println!("{}", event_line(kind.kind, &event, all)),
                WatchOutput::Json => {
                    let line: Value = json!({"type": event.kind, "object": event.object});
                    println!("{}", serde_json::to_string(&line)?);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let server = cirrus_crds::find_kind("server").unwrap();
        let e = Change::new(
            server,
            WatchEvent::Added(
                json!({"metadata": {"name": "web", "project": "p", "resourceVersion": "12"}}),
            ),
        );
        assert_eq!(event_line("Server", &e, false), "ADDED Server/web 12");
        assert_eq!(event_line("Server", &e, true), "ADDED Server/p/web 12");
        let b = Change::new(
            server,
            WatchEvent::Bookmark {
                resource_version: "13".into(),
            },
        );
        assert_eq!(event_line("Server", &b, false), "BOOKMARK - 13");
        assert_eq!(
            b.object,
            json!({"apiVersion": "cirrus.dev/v1", "kind": "Server", "metadata": {"resourceVersion": "13"}}),
            "the object the server sends with a bookmark"
        );
    }
}
