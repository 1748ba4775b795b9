//! How a stored object's JSON document is encoded for etcd, stamped with the store-owned
//! metadata (name, project, resourceVersion, timestamps) and checked against its kind before
//! a write: the pure helpers of [`super::ObjectStore`]'s writes.

use chrono::{SecondsFormat, Utc};
use cirrus_crds::{KindInfo, Scope};
use serde_json::{Map, Value};

use super::{ObjectError, Part};

/// Parses a stored key-value into an object carrying its resourceVersion.
pub(crate) fn decode(kv: &etcd_client::KeyValue) -> Result<Value, ObjectError> {
    let object: Value =
        serde_json::from_slice(kv.value()).map_err(|source| ObjectError::Corrupt {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            source,
        })?;
    Ok(with_resource_version(object, kv.mod_revision()))
}

pub(super) fn encode(object: &Value) -> Vec<u8> {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&object).expect("JSON values always serialize")
}

pub(super) fn with_resource_version(mut object: Value, revision: i64) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::from(revision.to_string()));
    }
    object
}

pub(super) fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(super) fn object_name(object: &Value) -> String {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

pub(super) fn object_project(object: &Value) -> Option<String> {
    object
        .pointer("/metadata/project")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The `metadata` map of `object`, created when absent.
pub(super) fn metadata_mut<'a>(
    kind: &'static KindInfo,
    name: &str,
    object: &'a mut Value,
) -> Result<&'a mut Map<String, Value>, ObjectError> {
    let invalid = |field: &str, reason: &str| ObjectError::Invalid {
        kind: kind.kind,
        name: name.to_string(),
        errors: cirrus_crds::FieldErrors(vec![cirrus_crds::FieldError::new(field, reason)]),
    };
    let map = object
        .as_object_mut()
        .ok_or_else(|| invalid("", "an object must be a JSON object"))?;
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    meta.as_object_mut()
        .ok_or_else(|| invalid("metadata", "must be an object"))
}

/// Sets or checks `metadata.project` against the project the request addresses.
pub(super) fn place_in_project(
    kind: &'static KindInfo,
    name: &str,
    meta: &mut Map<String, Value>,
    project: Option<&str>,
) -> Result<(), ObjectError> {
    let invalid = |reason: String| ObjectError::Invalid {
        kind: kind.kind,
        name: name.to_string(),
        errors: cirrus_crds::FieldErrors(vec![cirrus_crds::FieldError::new(
            "metadata.project",
            reason,
        )]),
    };
    let in_body = meta
        .get("project")
        .and_then(Value::as_str)
        .map(str::to_string);
    match (kind.scope, project, in_body) {
        (Scope::Cluster, None, None) => Ok(()),
        (Scope::Cluster, _, _) => Err(invalid(format!(
            "must be absent: {} is cluster-scoped",
            kind.kind
        ))),
        (Scope::Project, Some(url), Some(body)) if url != body => Err(invalid(format!(
            "is {body:?} but the request addresses project {url:?}"
        ))),
        (Scope::Project, Some(url), _) => {
            meta.insert("project".into(), Value::from(url));
            Ok(())
        }
        (Scope::Project, None, Some(_)) => Ok(()),
        (Scope::Project, None, None) => Err(invalid(format!(
            "is required: {} is project-scoped",
            kind.kind
        ))),
    }
}

/// Checks that a write body names the object the request addresses.
pub(super) fn check_identity(
    kind: &'static KindInfo,
    name: &str,
    project: Option<&str>,
    meta: &mut Map<String, Value>,
) -> Result<(), ObjectError> {
    match meta.get("name").and_then(Value::as_str) {
        None => {
            meta.insert("name".into(), Value::from(name));
        }
        Some(body) if body == name => {}
        Some(body) => {
            return Err(ObjectError::Invalid {
                kind: kind.kind,
                name: name.to_string(),
                errors: cirrus_crds::FieldErrors(vec![cirrus_crds::FieldError::new(
                    "metadata.name",
                    format!("is {body:?} but the request addresses {name:?}"),
                )]),
            });
        }
    }
    place_in_project(kind, name, meta, project)
}

pub(super) fn resource_version_of(meta: &Map<String, Value>) -> Result<Option<i64>, ObjectError> {
    match meta.get("resourceVersion") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(rv)) if rv.is_empty() => Ok(None),
        Some(Value::String(rv)) => parse_resource_version(rv).map(Some),
        Some(other) => Err(ObjectError::BadRequest(format!(
            "metadata.resourceVersion must be a string, got {other}"
        ))),
    }
}

/// Parses a client-supplied resourceVersion.
pub(crate) fn parse_resource_version(rv: &str) -> Result<i64, ObjectError> {
    rv.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
        ObjectError::BadRequest(format!("invalid resourceVersion {rv:?}: not a revision"))
    })
}

pub(super) fn check_precondition(
    kind: &'static KindInfo,
    name: &str,
    expected: Option<i64>,
    current: i64,
) -> Result<(), ObjectError> {
    match expected {
        Some(expected) if expected != current => Err(ObjectError::Conflict {
            kind: kind.kind,
            name: name.to_string(),
            expected,
            current,
        }),
        _ => Ok(()),
    }
}

/// The object a write of `part` produces from `current` and the client's `incoming`.
pub(super) fn merge_part(current: &Value, incoming: &Value, part: Part) -> Value {
    match part {
        Part::Main => {
            let mut merged = incoming.clone();
            if let Some(map) = merged.as_object_mut() {
                match current.get("status") {
                    Some(status) => map.insert("status".into(), status.clone()),
                    None => map.remove("status"),
                };
            }
            let current_meta = current.get("metadata").and_then(Value::as_object);
            if let (Some(meta), Some(current_meta)) = (
                merged.get_mut("metadata").and_then(Value::as_object_mut),
                current_meta,
            ) {
                for owned in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "generation",
                    "name",
                    "project",
                ] {
                    match current_meta.get(owned) {
                        Some(v) => meta.insert(owned.into(), v.clone()),
                        None => meta.remove(owned),
                    };
                }
            }
            merged
        }
        Part::Status => {
            let mut merged = current.clone();
            if let Some(map) = merged.as_object_mut() {
                let status = incoming
                    .get("status")
                    .cloned()
                    .unwrap_or(Value::Object(Map::new()));
                map.insert("status".into(), status);
            }
            merged
        }
    }
}

pub(super) fn validated(
    kind: &'static KindInfo,
    name: &str,
    object: Value,
) -> Result<Value, ObjectError> {
    (kind.validate)(object).map_err(|errors| ObjectError::Invalid {
        kind: kind.kind,
        name: name.to_string(),
        errors,
    })
}
