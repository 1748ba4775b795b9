//! `cirrus describe KIND NAME`: metadata, spec, status, conditions, owners and recent events.

use chrono::Utc;
use cirrus_client::ListParams;
use cirrus_client::dynamic::{name_of, project_of};
use cirrus_crds::Scope;
use serde_json::Value;

use crate::Ctx;
use crate::merge::LAST_APPLIED;
use crate::output::{self, age, render_table, scalar_text};

/// Arguments of `cirrus describe`.
#[derive(clap::Args, Debug, Clone)]
pub struct DescribeArgs {
    /// Kind (or `KIND/NAME`).
    pub kind: String,
    /// Name of the object.
    pub name: Option<String>,
}

/// How many events describe shows.
const MAX_EVENTS: usize = 20;

/// Runs `cirrus describe`.
///
/// # Errors
/// Unknown kinds and API failures reading the object (events are best effort).
pub async fn run(ctx: &Ctx, args: DescribeArgs) -> anyhow::Result<()> {
    let (kind, name) = match &args.name {
        Some(n) => (args.kind.clone(), n.clone()),
        None => crate::wait::split_target(&args.kind, None)?,
    };
    let kind = crate::resolve_kind(&kind)?;
    let project = match kind.scope {
        Scope::Project => Some(ctx.project.as_str()),
        Scope::Cluster => None,
    };
    let object = crate::api(&ctx.client, kind, project).get(&name).await?;
    let events = recent_events(ctx, kind.kind, &object).await;
    print!("{}", render(&object, kind.kind, events));
    Ok(())
}

/// Events whose `spec.involvedObject` names `object`, newest last; `Err` carries why they
/// could not be listed.
async fn recent_events(ctx: &Ctx, kind: &str, object: &Value) -> Result<Vec<Value>, String> {
    let Some(event_kind) = cirrus_crds::all_kinds()
        .into_iter()
        .find(|k| k.kind == "Event")
    else {
        return Ok(Vec::new());
    };
    let project = project_of(object);
    let scope_project = match event_kind.scope {
        Scope::Project => project,
        Scope::Cluster => None,
    };
    let items = crate::api(&ctx.client, event_kind, scope_project)
        .list_all_matching(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    Ok(filter_events(items, kind, object))
}

/// The events about `object` (matched by kind and name, and uid when both carry one),
/// sorted by time, at most [`MAX_EVENTS`] of the newest.
pub fn filter_events(items: Vec<Value>, kind: &str, object: &Value) -> Vec<Value> {
    let name = name_of(object);
    let uid = object.pointer("/metadata/uid").and_then(Value::as_str);
    let mut events: Vec<Value> = items
        .into_iter()
        .filter(|e| {
            let Some(inv) = e.pointer("/spec/involvedObject") else {
                return false;
            };
            inv.get("kind").and_then(Value::as_str) == Some(kind)
                && inv.get("name").and_then(Value::as_str) == Some(name)
                && match (uid, inv.get("uid").and_then(Value::as_str)) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
        })
        .collect();
    events.sort_by_key(|e| event_time(e).unwrap_or_default());
    let skip = events.len().saturating_sub(MAX_EVENTS);
    events.split_off(skip)
}

fn event_time(event: &Value) -> Option<String> {
    [
        "/spec/lastTimestamp",
        "/spec/eventTime",
        "/spec/firstTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|p| event.pointer(p).and_then(Value::as_str))
    .map(str::to_string)
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

fn yaml_block(value: &Value) -> String {
    output::to_yaml(value).unwrap_or_else(|_| output::to_json(value))
}

fn map_lines(value: Option<&Value>, skip: &[&str]) -> String {
    match value.and_then(Value::as_object) {
        Some(map) if map.keys().any(|k| !skip.contains(&k.as_str())) => map
            .iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={}", scalar_text(v)))
            .collect::<Vec<_>>()
            .join("\n             "),
        _ => "<none>".into(),
    }
}

/// The describe text of `object`.
pub fn render(object: &Value, kind: &str, events: Result<Vec<Value>, String>) -> String {
    let now = Utc::now();
    let meta = object.get("metadata").cloned().unwrap_or_default();
    let get = |k: &str| meta.get(k).map(scalar_text).unwrap_or_default();
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        out.push_str(&format!("{:<13}{}\n", format!("{label}:"), value))
    };
    line("Name", get("name"));
    if meta.get("project").is_some() {
        line("Project", get("project"));
    }
    line("Kind", kind.to_string());
    line("Labels", map_lines(meta.get("labels"), &[]));
    line(
        "Annotations",
        map_lines(meta.get("annotations"), &[LAST_APPLIED]),
    );
    line("UID", get("uid"));
    line(
        "Version",
        format!(
            "{} (generation {})",
            get("resourceVersion"),
            get("generation")
        ),
    );
    let created = meta.get("creationTimestamp").and_then(Value::as_str);
    line(
        "Created",
        format!(
            "{} ({} ago)",
            created.unwrap_or("<unknown>"),
            age(created, now)
        ),
    );
    if let Some(deleting) = meta.get("deletionTimestamp").and_then(Value::as_str) {
        line("Deleting", format!("since {deleting}"));
    }
    if let Some(f) = meta
        .get("finalizers")
        .and_then(Value::as_array)
        .filter(|f| !f.is_empty())
    {
        line(
            "Finalizers",
            f.iter().map(scalar_text).collect::<Vec<_>>().join(", "),
        );
    }
    let owners = meta
        .get("ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if owners.is_empty() {
        out.push_str("Owners:      <none>\n");
    } else {
        out.push_str("Owners:\n");
        for o in &owners {
            let controller = if o.get("controller").and_then(Value::as_bool) == Some(true) {
                " (controller)"
            } else {
                ""
            };
            out.push_str(&format!(
                "  {}/{}{controller} uid={}\n",
                o.get("kind").map(scalar_text).unwrap_or_default(),
                o.get("name").map(scalar_text).unwrap_or_default(),
                o.get("uid").map(scalar_text).unwrap_or_default()
            ));
        }
    }
    match object.get("spec") {
        Some(spec) if spec.as_object().is_some_and(|m| !m.is_empty()) => {
            out.push_str("Spec:\n");
            out.push_str(&indent(&yaml_block(spec), 2));
        }
        _ => out.push_str("Spec:        <none>\n"),
    }
    let mut status = object.get("status").cloned().unwrap_or_default();
    let conditions = status
        .as_object_mut()
        .and_then(|s| s.remove("conditions"))
        .and_then(|c| c.as_array().cloned())
        .unwrap_or_default();
    if status.as_object().is_some_and(|m| !m.is_empty()) {
        out.push_str("Status:\n");
        out.push_str(&indent(&yaml_block(&status), 2));
    } else {
        out.push_str("Status:      <none>\n");
    }
    if conditions.is_empty() {
        out.push_str("Conditions:  <none>\n");
    } else {
        out.push_str("Conditions:\n");
        let headers: Vec<String> = ["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let rows: Vec<Vec<String>> = conditions
            .iter()
            .map(|c| {
                let f = |k: &str| c.get(k).map(scalar_text).unwrap_or_default();
                let t = c.get("lastTransitionTime").and_then(Value::as_str);
                vec![
                    f("type"),
                    f("status"),
                    f("reason"),
                    if t.is_some() {
                        age(t, now)
                    } else {
                        String::new()
                    },
                    f("message"),
                ]
            })
            .collect();
        out.push_str(&indent(&render_table(&headers, &rows), 2));
    }
    match events {
        Ok(events) if events.is_empty() => out.push_str("Events:      <none>\n"),
        Ok(events) => {
            out.push_str("Events:\n");
            let headers: Vec<String> = ["TYPE", "REASON", "AGE", "FROM", "MESSAGE"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|e| {
                    let f = |p: &str| e.pointer(p).map(scalar_text).unwrap_or_default();
                    let t = event_time(e);
                    let count = e
                        .pointer("/spec/count")
                        .and_then(Value::as_u64)
                        .filter(|c| *c > 1);
                    let when = match count {
                        Some(c) => format!("{} (x{c})", age(t.as_deref(), now)),
                        None => age(t.as_deref(), now),
                    };
                    let from = e
                        .pointer("/spec/source/component")
                        .or_else(|| e.pointer("/spec/reportingController"))
                        .or_else(|| e.pointer("/spec/source"))
                        .map(scalar_text)
                        .unwrap_or_default();
                    vec![
                        f("/spec/type"),
                        f("/spec/reason"),
                        when,
                        from,
                        f("/spec/message"),
                    ]
                })
                .collect();
            out.push_str(&indent(&render_table(&headers, &rows), 2));
        }
        Err(why) => out.push_str(&format!("Events:      <unavailable: {why}>\n")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_sections() {
        let obj = json!({
            "metadata": {"name": "web", "project": "p", "uid": "u1", "resourceVersion": "5", "generation": 2,
                         "labels": {"app": "web"}, "annotations": {LAST_APPLIED: "{}"},
                         "ownerReferences": [{"kind": "Server", "name": "s", "uid": "u0", "controller": true}]},
            "spec": {"vcpus": 2},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "reason": "Up"}]}
        });
        let events = vec![
            json!({"spec": {"involvedObject": {"kind": "Server", "name": "web", "uid": "u1"}, "type": "Normal", "reason": "Scheduled", "message": "to node-a"}}),
            json!({"spec": {"involvedObject": {"kind": "Server", "name": "web", "uid": "other"}, "reason": "Old"}}),
            json!({"spec": {"involvedObject": {"kind": "Server", "name": "db"}, "reason": "Other"}}),
        ];
        let events = filter_events(events, "Server", &obj);
        assert_eq!(events.len(), 1);
        let text = render(&obj, "Server", Ok(events));
        assert!(text.contains("Name:        web"), "{text}");
        assert!(text.contains("Labels:      app=web"), "{text}");
        assert!(text.contains("Annotations: <none>"), "{text}");
        assert!(text.contains("Server/s (controller) uid=u0"), "{text}");
        assert!(text.contains("  vcpus: 2"), "{text}");
        assert!(text.contains("  phase: Running"), "{text}");
        assert!(text.contains("Ready   True"), "{text}");
        assert!(text.contains("Scheduled"), "{text}");
        let none = render(&obj, "Server", Ok(vec![]));
        assert!(none.contains("Events:      <none>"));
    }
}
