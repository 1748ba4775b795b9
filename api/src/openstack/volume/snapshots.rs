//! `…/snapshots`: create, list (`detail`), show, update, delete, metadata — over
//! `VolumeSnapshot` objects. A snapshot of an attached volume needs `force` (Cinder's rule);
//! the node agent takes it and reports `available` and the size.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cirrus_auth::Action;
use serde_json::{Map, Value, json};

use super::render::{self, Index};
use super::volumes::{apply_common_update, name_and_description, next_link, paginate};
use super::{
    Ctx, DIALECT, USER_ANNOTATION, api_fault, envelope, field, find, metadata_field, modify,
    parse_bool, project_of, query_flag, snapshot_kind, string_field, volume_kind,
};
use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common::{self, NAME_ANNOTATION};
use crate::openstack::fault::Fault;

async fn snapshot_or_404(state: &ApiState, ctx: &Ctx, id: &str) -> Result<Value, Fault> {
    find(state, snapshot_kind(), &ctx.project, ctx.admin, id)
        .await?
        .ok_or_else(|| Fault::not_found(DIALECT, format!("Snapshot {id} could not be found.")))
}

async fn answer(state: &ApiState, snapshot: &Value) -> Result<Value, Fault> {
    let index = Index::load(state, Some(&project_of(snapshot))).await?;
    Ok(render::snapshot_body(snapshot, &index))
}

/// `POST …/snapshots` with `{"snapshot": {volume_id, name?, description?, force?,
/// metadata?}}`: `202`, status `creating`.
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project_id): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Write)?;
    let body = common::json_body(DIALECT, &body)?;
    let req = envelope(&body, "snapshot")?;
    let volume_id = string_field(req, "volume_id")?.ok_or_else(|| {
        Fault::bad_request(
            DIALECT,
            "Invalid input for field/attribute volume_id: required.",
        )
    })?;
    let name = string_field(req, "name")?.or(string_field(req, "display_name")?);
    let description =
        string_field(req, "description")?.or(string_field(req, "display_description")?);
    let force = match field(req, "force") {
        None => false,
        Some(v) => parse_bool(v).ok_or_else(|| {
            Fault::bad_request(
                DIALECT,
                format!(
                    "Invalid input for field/attribute force. Value: {v}. It must be a boolean."
                ),
            )
        })?,
    };
    let meta = metadata_field(req, "metadata")?.unwrap_or_default();
    let volume = find(&state, volume_kind(), &ctx.project, false, &volume_id)
        .await?
        .ok_or_else(|| {
            Fault::bad_request(
                DIALECT,
                format!("Invalid input for field/attribute volume_id: Volume {volume_id} could not be found."),
            )
        })?;
    let index = Index::load(&state, Some(&ctx.project)).await?;
    let status = render::status_of(&volume, &index);
    let ok = match status.as_str() {
        "available" => true,
        "in-use" | "attaching" => force,
        _ => false,
    };
    if !ok {
        let hint = if matches!(status.as_str(), "in-use" | "attaching") {
            " (an attached volume needs force=true)"
        } else {
            ""
        };
        return Err(Fault::bad_request(
            DIALECT,
            format!(
                "Invalid volume: Volume {volume_id} status must be available{hint}, but the current status is {status}."
            ),
        ));
    }
    let wanted = name.clone().unwrap_or_default();
    let (object_name, annotate) = common::object_name_for(
        &state,
        snapshot_kind(),
        Some(&ctx.project),
        "snapshot",
        &wanted,
    )
    .await
    .map_err(api_fault)?;
    let mut annotations = Map::new();
    if annotate {
        annotations.insert(NAME_ANNOTATION.into(), Value::from(wanted));
    }
    annotations.insert(USER_ANNOTATION.into(), Value::from(ctx.user.clone()));
    let mut spec = json!({ "volume": common::name(&volume) });
    if force {
        spec["force"] = Value::Bool(true);
    }
    if let Some(d) = description {
        spec["description"] = Value::from(d);
    }
    if !meta.is_empty() {
        spec["metadata"] = json!(meta);
    }
    let object = json!({
        "apiVersion": cirrus_crds::API_VERSION,
        "kind": "VolumeSnapshot",
        "metadata": {"name": object_name, "annotations": annotations},
        "spec": spec,
    });
    let created = crate::resources::create(
        &state,
        crate::admission::Writer::Caller(&caller),
        snapshot_kind(),
        Some(&ctx.project),
        object,
        false,
    )
    .await
    .map_err(api_fault)?;
    tracing::info!(project = %ctx.project, snapshot = %common::name(&created), volume = %common::name(&volume), "snapshot created through Cinder");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "snapshot": render::basic_snapshot(answer(&state, &created).await?) })),
    )
        .into_response())
}

/// `GET …/snapshots` and, with `DETAIL`, `GET …/snapshots/detail` (with the extended
/// attributes): one handler, the two routes differ only in the body of each item.
pub async fn list<const DETAIL: bool>(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Fault> {
    let detail = DETAIL;
    let ctx = Ctx::new(&caller, &project_id, Action::Read)?;
    let all = query_flag(&query, "all_tenants") || query_flag(&query, "all_projects");
    let index = Index::load(&state, render::list_scope(&ctx, all)).await?;
    let wanted_volume = query.get("volume_id").filter(|v| !v.is_empty());
    let items: Vec<Value> = index
        .snapshots()
        .iter()
        .filter(|s| {
            query
                .get("name")
                .is_none_or(|n| &common::display_name(s) == n)
        })
        .filter(|s| {
            query
                .get("status")
                .is_none_or(|st| render::snapshot_status(s).eq_ignore_ascii_case(st))
        })
        .filter(|s| {
            wanted_volume.is_none_or(|v| {
                let name = s
                    .pointer("/spec/volume")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                index.volume_uid(&project_of(s), name) == Some(v.as_str())
            })
        })
        .cloned()
        .collect();
    let (page, more) = paginate(items, &query, "snapshots")?;
    let bodies: Vec<Value> = page
        .iter()
        .map(|s| {
            let full = render::snapshot_body(s, &index);
            if detail {
                full
            } else {
                // Cinder's summary view lacks only the extended attributes.
                render::basic_snapshot(full)
            }
        })
        .collect();
    let mut body = json!({ "snapshots": bodies });
    if more && let Some(last) = page.last() {
        let base = common::base_url(&headers);
        let path = if detail {
            "snapshots/detail"
        } else {
            "snapshots"
        };
        body["snapshots_links"] = next_link(&base, &ctx.project, path, &query, last);
    }
    Ok(Json(body).into_response())
}

/// `GET …/snapshots/{id}`.
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project_id, id)): Path<(String, String)>,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Read)?;
    let snapshot = snapshot_or_404(&state, &ctx, &id).await?;
    Ok(Json(json!({ "snapshot": answer(&state, &snapshot).await? })).into_response())
}

/// `PUT …/snapshots/{id}` with `{"snapshot": {name?, description?}}`.
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project_id, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Write)?;
    let body = common::json_body(DIALECT, &body)?;
    let req = envelope(&body, "snapshot")?;
    let (name, description) = name_and_description(req)?;
    let snapshot = snapshot_or_404(&state, &ctx, &id).await?;
    let updated = modify(
        &state,
        &ctx.caller,
        snapshot_kind(),
        &project_of(&snapshot),
        &common::name(&snapshot),
        |o| {
            apply_common_update(o, name.as_deref(), description.as_ref(), None);
            Ok(())
        },
    )
    .await?;
    Ok(
        Json(json!({ "snapshot": render::basic_snapshot(answer(&state, &updated).await?) }))
            .into_response(),
    )
}

/// `DELETE …/snapshots/{id}`: `202`; the node agent's finalizer waits while a volume made
/// from it still reads from it.
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project_id, id)): Path<(String, String)>,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Write)?;
    let snapshot = snapshot_or_404(&state, &ctx, &id).await?;
    if render::is_live(&snapshot) {
        match crate::resources::delete(
            &state,
            snapshot_kind(),
            Some(&project_of(&snapshot)),
            &common::name(&snapshot),
            false,
        )
        .await
        {
            Ok(_) => {}
            Err(e) if e.code() == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(api_fault(e)),
        }
    }
    Ok(StatusCode::ACCEPTED.into_response())
}
