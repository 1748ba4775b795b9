//! `…/{id}/metadata[/{key}]` of volumes and snapshots: the object's `spec.metadata`.
//!
//! `GET` all, `POST` merges, `PUT` replaces (all answer `{"metadata": {...}}` with the
//! result); per key: `GET`/`PUT` answer `{"meta": {key: value}}`, `DELETE` answers `200`.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use cirrus_auth::Action;
use cirrus_crds::KindInfo;
use serde_json::{Value, json};

use super::{Ctx, DIALECT, find, metadata_field, modify, project_of, snapshot_kind, volume_kind};
use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common;
use crate::openstack::fault::Fault;

/// A kind whose objects carry Cinder metadata: the routes of volumes and snapshots are the
/// same handlers, told apart by this type parameter.
pub(crate) trait Owner: 'static {
    /// The word naming an object in messages (`Volume`, `Snapshot`).
    const WHAT: &'static str;
    /// The kind the objects are stored as.
    fn kind() -> &'static KindInfo;
}

/// The metadata of `Volume` objects (`…/volumes/{id}/metadata`).
pub(crate) struct OfVolume;

impl Owner for OfVolume {
    const WHAT: &'static str = "Volume";
    fn kind() -> &'static KindInfo {
        volume_kind()
    }
}

/// The metadata of `VolumeSnapshot` objects (`…/snapshots/{id}/metadata`).
pub(crate) struct OfSnapshot;

impl Owner for OfSnapshot {
    const WHAT: &'static str = "Snapshot";
    fn kind() -> &'static KindInfo {
        snapshot_kind()
    }
}

/// `GET …/{id}/metadata`.
pub(crate) async fn show_all<O: Owner>(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project_id, id)): Path<(String, String)>,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Read)?;
    let object = target::<O>(&state, &ctx, &id).await?;
    Ok(Json(json!({ "metadata": metadata_of(&object) })).into_response())
}

/// `POST …/{id}/metadata` with `{"metadata": {...}}`: merge.
pub(crate) async fn merge_all<O: Owner>(
    state: State<ApiState>,
    caller: Caller,
    path: Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Fault> {
    write_all::<O>(state, caller, path, body, Mode::Merge).await
}

/// `PUT …/{id}/metadata` with `{"metadata": {...}}`: replace.
pub(crate) async fn replace_all<O: Owner>(
    state: State<ApiState>,
    caller: Caller,
    path: Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Fault> {
    write_all::<O>(state, caller, path, body, Mode::Replace).await
}

async fn write_all<O: Owner>(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project_id, id)): Path<(String, String)>,
    body: Bytes,
    mode: Mode,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Write)?;
    let body = common::json_body(DIALECT, &body)?;
    let given = metadata_field(&body, "metadata")?.ok_or_else(|| {
        Fault::bad_request(
            DIALECT,
            "Missing required element 'metadata' in request body.",
        )
    })?;
    let object = target::<O>(&state, &ctx, &id).await?;
    let result = store_metadata(&state, &ctx.caller, O::kind(), &object, |map| {
        if mode == Mode::Replace {
            map.clear();
        }
        map.extend(given.clone());
        Ok(())
    })
    .await?;
    Ok(Json(json!({ "metadata": result })).into_response())
}

/// `GET …/{id}/metadata/{key}`.
pub(crate) async fn show_item<O: Owner>(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project_id, id, key)): Path<(String, String, String)>,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Read)?;
    let object = target::<O>(&state, &ctx, &id).await?;
    let map = metadata_of(&object);
    let value = map.get(&key).ok_or_else(|| no_key::<O>(&id, &key))?;
    Ok(Json(json!({ "meta": { key: value } })).into_response())
}

/// `PUT …/{id}/metadata/{key}` with `{"meta": {key: value}}`.
pub(crate) async fn set_item<O: Owner>(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project_id, id, key)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Write)?;
    let body = common::json_body(DIALECT, &body)?;
    let meta = metadata_field(&body, "meta")?.ok_or_else(|| {
        Fault::bad_request(DIALECT, "Missing required element 'meta' in request body.")
    })?;
    if meta.len() != 1 {
        return Err(Fault::bad_request(
            DIALECT,
            "Request body contains too many items: 'meta' takes exactly one key.",
        ));
    }
    let Some(value) = meta.get(&key).cloned() else {
        return Err(Fault::bad_request(
            DIALECT,
            format!("Request body and URI mismatch: the URI names key {key}."),
        ));
    };
    let object = target::<O>(&state, &ctx, &id).await?;
    store_metadata(&state, &ctx.caller, O::kind(), &object, |map| {
        map.insert(key.clone(), value.clone());
        Ok(())
    })
    .await?;
    Ok(Json(json!({ "meta": { key: value } })).into_response())
}

/// `DELETE …/{id}/metadata/{key}`: `200`, `404` when the key is not set.
pub(crate) async fn remove_item<O: Owner>(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project_id, id, key)): Path<(String, String, String)>,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Write)?;
    let object = target::<O>(&state, &ctx, &id).await?;
    store_metadata(&state, &ctx.caller, O::kind(), &object, |map| {
        map.remove(&key)
            .map(drop)
            .ok_or_else(|| no_key::<O>(&id, &key))
    })
    .await?;
    Ok(axum::http::StatusCode::OK.into_response())
}

/// How a whole-map write combines with what is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `POST`: add and overwrite the given keys, keep the others.
    Merge,
    /// `PUT`: the given map becomes the metadata.
    Replace,
}

/// The object `id` of `O`, or `404`.
async fn target<O: Owner>(state: &ApiState, ctx: &Ctx, id: &str) -> Result<Value, Fault> {
    find(state, O::kind(), &ctx.project, ctx.admin, id)
        .await?
        .ok_or_else(|| Fault::not_found(DIALECT, format!("{} {id} could not be found.", O::WHAT)))
}

/// The `404` of a metadata key the object `id` of `O` does not have.
fn no_key<O: Owner>(id: &str, key: &str) -> Fault {
    Fault::not_found(
        DIALECT,
        format!("{} {id} has no metadata with key {key}.", O::WHAT),
    )
}

fn metadata_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/spec/metadata")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `metadata` into the object's `spec.metadata` (read-modify-write).
async fn store_metadata(
    state: &ApiState,
    caller: &Caller,
    kind: &'static KindInfo,
    object: &Value,
    change: impl Fn(&mut BTreeMap<String, String>) -> Result<(), Fault>,
) -> Result<BTreeMap<String, String>, Fault> {
    let written = modify(
        state,
        caller,
        kind,
        &project_of(object),
        &common::name(object),
        |o| {
            let mut map = metadata_of(o);
            change(&mut map)?;
            o["spec"]["metadata"] = json!(map);
            Ok(())
        },
    )
    .await?;
    Ok(metadata_of(&written))
}
