//! Deletion admission for volumes: a `Volume` that a live `Server` uses (its `spec.volumes`
//! or `spec.bootVolume`) can't be deleted (Cinder's "volume is in-use"); the `409 InUse`
//! names the servers. Servers being deleted don't count: their `deleteOnTermination`
//! volumes are deleted by the volume controller while they go, and the node agent's volume
//! finalizer waits for the detach before removing any data.

use axum::http::StatusCode;
use cirrus_store::objects::{ListOptions, ObjectStore};
use serde_json::Value;

use crate::error::ApiError;

/// How many servers a refusal names.
const NAMED: usize = 10;

/// Whether the server object `s` names `volume` in `spec.volumes` or `spec.bootVolume`.
fn uses(s: &Value, volume: &str) -> bool {
    s.pointer("/spec/bootVolume").and_then(Value::as_str) == Some(volume)
        || s.pointer("/spec/volumes")
            .and_then(Value::as_array)
            .is_some_and(|v| {
                v.iter()
                    .any(|e| e.get("volume").and_then(Value::as_str) == Some(volume))
            })
}

/// Refuses deleting `volume` of `project` while a live server uses it.
pub(crate) async fn volume_in_use(
    store: &ObjectStore,
    project: &str,
    volume: &str,
) -> Result<(), ApiError> {
    let servers = cirrus_crds::kind_by_plural("servers").expect("servers is a kind");
    let list = store
        .list(servers, Some(project), &ListOptions::default())
        .await?;
    let mut users: Vec<&str> = list
        .items
        .iter()
        .filter(|s| s.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|s| uses(s, volume))
        .filter_map(|s| s.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    users.sort_unstable();
    let mut named = users
        .iter()
        .take(NAMED)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if users.len() > NAMED {
        named.push_str(&format!(" and {} more", users.len() - NAMED));
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "InUse",
        format!(
            "volume {volume:?} of project {project:?} is in use by server(s) {named}; \
             detach it (remove it from the server's spec.volumes) or delete the server first"
        ),
    ))
}
