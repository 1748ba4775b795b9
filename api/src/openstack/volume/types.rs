//! Volume types: one per storage backend a `Volume` can ask for in `spec.volumeType`
//! (`file`: qcow2 files, the default; `lvm`: logical volumes). Read-only: backends are
//! compiled into the node agent, not objects. Ids are the names.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use cirrus_auth::Action;
use serde_json::{Value, json};

use super::{Ctx, DIALECT};
use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::fault::Fault;

/// The types: (name, description). The first is the default.
pub const TYPES: &[(&str, &str)] = &[
    (
        "file",
        "qcow2 files in a node's volume directory (copy-on-write clones, snapshots, extend)",
    ),
    (
        "lvm",
        "LVM logical volumes in a node's volume group (snapshots need device-mapper)",
    ),
];

/// The canonical type a request's `volume_type` names (by name or id, any case; `qcow2` is
/// another name of `file`), `None` when no backend serves it.
pub fn resolve(wanted: &str) -> Option<&'static str> {
    let lower = wanted.to_ascii_lowercase();
    if lower == "qcow2" {
        return Some(TYPES[0].0);
    }
    TYPES.iter().map(|(n, _)| *n).find(|n| *n == lower)
}

/// The body of type `name`.
pub fn type_body(name: &str) -> Value {
    let description = TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
        .unwrap_or_default();
    json!({
        "id": name,
        "name": name,
        "description": description,
        "is_public": true,
        "os-volume-type-access:is_public": true,
        "extra_specs": {"volume_backend_name": name},
        "qos_specs_id": Value::Null,
    })
}

/// `GET …/types`.
pub async fn list(
    State(_state): State<ApiState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Query(_query): Query<HashMap<String, String>>,
) -> Result<Response, Fault> {
    Ctx::new(&caller, &project_id, Action::Read)?;
    let types: Vec<Value> = TYPES.iter().map(|(n, _)| type_body(n)).collect();
    Ok(Json(json!({ "volume_types": types })).into_response())
}

/// `GET …/types/{id}` (`default` is the default type).
pub async fn show(
    State(_state): State<ApiState>,
    caller: Caller,
    Path((project_id, type_id)): Path<(String, String)>,
) -> Result<Response, Fault> {
    Ctx::new(&caller, &project_id, Action::Read)?;
    let name = if type_id == "default" {
        Some(TYPES[0].0)
    } else {
        resolve(&type_id)
    };
    let name = name.ok_or_else(|| {
        Fault::not_found(
            DIALECT,
            format!("Volume type {type_id} could not be found."),
        )
    })?;
    Ok(Json(json!({ "volume_type": type_body(name) })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_resolve_like_the_volume_controller() {
        assert_eq!(resolve("file"), Some("file"));
        assert_eq!(resolve("QCOW2"), Some("file"));
        assert_eq!(resolve("LVM"), Some("lvm"));
        assert_eq!(resolve("ceph"), None);
        assert_eq!(
            type_body("lvm")["extra_specs"]["volume_backend_name"],
            "lvm"
        );
    }
}
