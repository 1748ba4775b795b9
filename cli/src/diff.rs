//! `cirrus diff -f FILE|DIR [-R]`: the unified YAML diff between each live object and what
//! `apply` would make of it, computed by the server (a dry-run create or patch of exactly
//! what apply would send).
//!
//! Exit code `0`: no differences; `1`: differences; `2`: an error (like `kubectl diff`).
//! `metadata.resourceVersion` and the last-applied annotation are left out of the
//! comparison: they change on every write and say nothing about the object.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;
use similar::TextDiff;

use crate::Ctx;
use crate::apply::{Desired, Plan, plan, prepare};
use crate::manifests;
use crate::merge::LAST_APPLIED;
use crate::output;
use cirrus_client::Client;

/// Arguments of `cirrus diff`.
#[derive(clap::Args, Debug, Clone)]
pub struct DiffArgs {
    /// Manifest file or directory; repeatable; `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Read directories recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Only diff manifests whose labels match this selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Diff as `apply --prune --applyset NAME` would write (adds the ApplySet label).
    #[arg(long)]
    pub applyset: Option<String>,
}

/// `value` with every object's keys in one order (sorted), so two versions of an object
/// differ only where their content does: the live object and the server's dry-run answer
/// list the same keys in different orders.
fn normalized(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, normalized(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(normalized).collect()),
        other => other,
    }
}

/// The object without fields that change on every write, its keys in one order.
fn comparable(object: Value) -> Value {
    normalized(without_volatile(object))
}

/// The object without fields that change on every write.
fn without_volatile(mut object: Value) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove(LAST_APPLIED);
            if annotations.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    object
}

/// Unified diff of two YAML texts with `a/` and `b/` headers; empty when they are equal.
pub fn unified(ident: &str, live: &str, merged: &str) -> String {
    if live == merged {
        return String::new();
    }
    TextDiff::from_lines(live, merged)
        .unified_diff()
        .context_radius(3)
        .header(&format!("live/{ident}"), &format!("merged/{ident}"))
        .to_string()
}

/// `text` with `+` lines green and `-` lines red (headers bold).
pub fn colorize(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("+++") || l.starts_with("---") {
                format!("\x1b[1m{l}\x1b[0m\n")
            } else if l.starts_with('+') {
                format!("\x1b[32m{l}\x1b[0m\n")
            } else if l.starts_with('-') {
                format!("\x1b[31m{l}\x1b[0m\n")
            } else if l.starts_with("@@") {
                format!("\x1b[36m{l}\x1b[0m\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

/// The live and would-be YAML of one object.
async fn before_after(client: &Client, desired: &Desired) -> anyhow::Result<(String, String)> {
    let project = desired.project.as_deref();
    let live = crate::api(client, desired.kind, project)
        .get_opt(&desired.name)
        .await?;
    let yaml = |v: Value| output::to_yaml(&comparable(v));
    Ok(match plan(desired, live) {
        Plan::Create => {
            let created = crate::api(client, desired.kind, project)
                .dry_run(true)
                .create(&desired.object)
                .await?;
            (String::new(), yaml(created)?)
        }
        Plan::Patch { patch, live } => {
            let patched = crate::api(client, desired.kind, project)
                .dry_run(true)
                .patch(&desired.name, &patch)
                .await?;
            (yaml(live)?, yaml(patched)?)
        }
        Plan::Unchanged { live } => {
            let text = yaml(live)?;
            (text.clone(), text)
        }
    })
}

/// Runs `cirrus diff`; `Ok(1)` when anything differs.
///
/// # Errors
/// Invalid manifests and API failures (exit code 2).
pub async fn run(ctx: &Ctx, args: DiffArgs) -> anyhow::Result<ExitCode> {
    let selector = args
        .selector
        .as_deref()
        .map(cirrus_store::selector::LabelSelector::parse)
        .transpose()?
        .unwrap_or_default();
    let manifests = manifests::load(&args.files, args.recursive)?;
    let color = std::io::stdout().is_terminal();
    let mut differs = false;
    for m in manifests
        .iter()
        .filter(|m| selector.matches_object(&m.object))
    {
        let desired = prepare(m, &ctx.project, args.applyset.as_deref());
        let (before, after) = before_after(&ctx.client, &desired).await?;
        let ident = match &desired.project {
            Some(p) => format!("{}/{p}/{}", desired.kind.kind, desired.name),
            None => desired.ident(),
        };
        let text = unified(&ident, &before, &after);
        if !text.is_empty() {
            differs = true;
            print!("{}", if color { colorize(&text) } else { text });
        }
    }
    Ok(if differs {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_text() {
        assert_eq!(unified("Flavor/a", "a: 1\n", "a: 1\n"), "");
        let d = unified("Flavor/a", "a: 1\nb: 2\n", "a: 1\nb: 3\n");
        assert!(d.contains("--- live/Flavor/a"), "{d}");
        assert!(d.contains("+++ merged/Flavor/a"), "{d}");
        assert!(d.contains("-b: 2\n+b: 3"), "{d}");
        let c = colorize(&d);
        assert!(c.contains("\x1b[32m+b: 3\x1b[0m"));
    }

    #[test]
    fn key_order_is_not_a_difference() {
        let live = json!({"metadata": {"name": "a", "labels": {"x": "1", "a": "2"}}, "spec": {"b": 1, "a": [{"z": 1, "y": 2}]}});
        let merged = json!({"spec": {"a": [{"y": 2, "z": 1}], "b": 1}, "metadata": {"labels": {"a": "2", "x": "1"}, "name": "a"}});
        let yaml = |v: Value| output::to_yaml(&comparable(v)).unwrap();
        assert_eq!(unified("Flavor/a", &yaml(live), &yaml(merged)), "");
    }

    #[test]
    fn volatile_fields_ignored() {
        let v = comparable(
            json!({"metadata": {"name": "a", "resourceVersion": "3", "annotations": {LAST_APPLIED: "{}"}}}),
        );
        assert_eq!(v, json!({"metadata": {"name": "a"}}));
    }
}
