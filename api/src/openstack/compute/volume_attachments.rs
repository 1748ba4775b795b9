//! Nova's `os-volume_attachments` (v2.1): a server's volumes are its `spec.volumes` entries
//! (and `spec.bootVolume`, shown as `/dev/vda`). Attaching adds an entry, detaching removes
//! it — the same writes as Cinder's `os-attach`/`os-detach`
//! ([`crate::openstack::volume::attach`]); the node agent hot-plugs and reports the volume
//! `in-use`, then `detaching` and `available` after a detach (hence `202`).
//!
//! In 2.1 an attachment's `id` is the volume's id. `device` is the requested one, or what the
//! node agent reported once attached (`null` before that when none was asked for).

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cirrus_auth::Action;
use serde_json::{Value, json};

use crate::ApiState;
use crate::auth::{Caller, Refusal};
use crate::openstack::common;
use crate::openstack::fault::{Dialect, Fault};
use crate::openstack::volume::{self, attach, parse_bool, project_of};

const D: Dialect = Dialect::Compute;

/// The attachment routes of a server.
pub fn router() -> Router<ApiState> {
    const A: &str = "/compute/v2.1/servers/{server_id}/os-volume_attachments";
    Router::new()
        .route(A, get(list).post(create))
        .route(&format!("{A}/{{volume_id}}"), get(show).delete(remove))
}

fn api(e: crate::error::ApiError) -> Fault {
    Fault::from_api(D, e)
}

/// The server `id` the caller may `action`, in its project (cloud admins: any project).
async fn server_for(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    action: Action,
) -> Result<Value, Fault> {
    let project = caller.project().ok_or_else(|| {
        Fault::new(
            D,
            StatusCode::UNAUTHORIZED,
            "The request you have made requires a project-scoped token.",
        )
    })?;
    let not_found = || Fault::not_found(D, format!("Instance {id} could not be found."));
    let server = volume::find(
        state,
        volume::server_kind(),
        project,
        caller.is_cloud_admin(),
        id,
    )
    .await?
    .ok_or_else(not_found)?;
    caller
        .check(action, Some(&project_of(&server)))
        .map_err(|r| match r {
            Refusal::NotFound => not_found(),
            refusal => Fault::refused(D, refusal, &format!("instance {id}")),
        })?;
    Ok(server)
}

/// One attachment of `server` to the volume object named `volume_name`.
fn entry(server: &Value, volume: &Value, spec_device: Option<&str>) -> Value {
    let server_name = common::name(server);
    let observed = volume
        .pointer("/status/attachments")
        .and_then(Value::as_array)
        .and_then(|l| {
            l.iter()
                .find(|a| a.get("server").and_then(Value::as_str) == Some(server_name.as_str()))
        })
        .and_then(|a| a.get("device"))
        .and_then(Value::as_str);
    let volume_id = common::uid(volume);
    json!({
        "id": volume_id,
        "serverId": common::uid(server),
        "volumeId": volume_id,
        "device": observed.or(spec_device),
    })
}

/// The server's attachments: the boot volume (`/dev/vda`) first, then `spec.volumes` in
/// order (an entry for the boot volume only carries `deleteOnTermination`).
fn attachments(server: &Value, volumes: &[Value]) -> Vec<Value> {
    let project = project_of(server);
    let by_name = |name: &str| {
        volumes
            .iter()
            .find(|v| project_of(v) == project && common::name(v) == name)
    };
    let boot = server.pointer("/spec/bootVolume").and_then(Value::as_str);
    let mut out = Vec::new();
    if let Some(v) = boot.and_then(by_name) {
        out.push(entry(server, v, Some("/dev/vda")));
    }
    for e in server
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = e.get("volume").and_then(Value::as_str) else {
            continue;
        };
        if Some(name) == boot {
            continue;
        }
        if let Some(v) = by_name(name) {
            out.push(entry(server, v, e.get("device").and_then(Value::as_str)));
        }
    }
    out
}

async fn project_volumes(state: &ApiState, server: &Value) -> Result<Vec<Value>, Fault> {
    common::list(state, volume::volume_kind(), Some(&project_of(server)))
        .await
        .map_err(api)
}

/// `GET …/os-volume_attachments[?limit&offset]`.
async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Path(server_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Fault> {
    let server = server_for(&state, &caller, &server_id, Action::Read).await?;
    let volumes = project_volumes(&state, &server).await?;
    let number = |key: &str| -> Result<Option<usize>, Fault> {
        match query.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                Fault::bad_request(D, format!("Invalid input for query parameter {key}: {v:?} is not a non-negative integer."))
            }),
        }
    };
    let offset = number("offset")?.unwrap_or(0);
    let limit = number("limit")?.unwrap_or(usize::MAX);
    let all: Vec<Value> = attachments(&server, &volumes)
        .into_iter()
        .skip(offset)
        .take(limit)
        .collect();
    Ok(axum::Json(json!({ "volumeAttachments": all })).into_response())
}

/// `POST …/os-volume_attachments` with `{"volumeAttachment": {"volumeId", "device"?}}`:
/// `200` with the attachment.
async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Path(server_id): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    let server = server_for(&state, &caller, &server_id, Action::Write).await?;
    let body = common::json_body(D, &body)?;
    let req = body
        .get("volumeAttachment")
        .filter(|v| v.is_object())
        .ok_or_else(|| {
            Fault::bad_request(
                D,
                "Invalid input for field/attribute volumeAttachment: required (an object).",
            )
        })?;
    let volume_id = volume::string_field(req, "volumeId")?.ok_or_else(|| {
        Fault::bad_request(
            D,
            "Invalid input for field/attribute volumeAttachment. 'volumeId' is a required property.",
        )
    })?;
    let device = volume::string_field(req, "device")?;
    let delete_on_termination = match volume::field(req, "delete_on_termination") {
        None => false,
        Some(v) => parse_bool(v).ok_or_else(|| {
            Fault::bad_request(D, format!("Invalid input for field/attribute delete_on_termination. Value: {v}. It must be a boolean."))
        })?,
    };
    let vol = volume::find(
        &state,
        volume::volume_kind(),
        &project_of(&server),
        false,
        &volume_id,
    )
    .await?
    .ok_or_else(|| Fault::not_found(D, format!("Volume {volume_id} could not be found.")))?;
    attach::attach(
        &state,
        &caller,
        &server,
        &vol,
        device.as_deref(),
        delete_on_termination,
    )
    .await?;
    Ok(axum::Json(json!({
        "volumeAttachment": {
            "id": common::uid(&vol),
            "serverId": common::uid(&server),
            "volumeId": common::uid(&vol),
            "device": device,
        }
    }))
    .into_response())
}

/// `GET …/os-volume_attachments/{volume_id}`.
async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path((server_id, volume_id)): Path<(String, String)>,
) -> Result<Response, Fault> {
    let server = server_for(&state, &caller, &server_id, Action::Read).await?;
    let volumes = project_volumes(&state, &server).await?;
    let found = attachments(&server, &volumes)
        .into_iter()
        .find(|a| a["volumeId"] == volume_id.as_str())
        .ok_or_else(|| {
            Fault::not_found(
                D,
                format!("Volume {volume_id} is not attached to instance {server_id}."),
            )
        })?;
    Ok(axum::Json(json!({ "volumeAttachment": found })).into_response())
}

/// `DELETE …/os-volume_attachments/{volume_id}`: `202`; the detach completes when the node
/// agent has unplugged it.
async fn remove(
    State(state): State<ApiState>,
    caller: Caller,
    Path((server_id, volume_id)): Path<(String, String)>,
) -> Result<Response, Fault> {
    let server = server_for(&state, &caller, &server_id, Action::Write).await?;
    let vol = volume::find(
        &state,
        volume::volume_kind(),
        &project_of(&server),
        false,
        &volume_id,
    )
    .await?
    .ok_or_else(|| Fault::not_found(D, format!("Volume {volume_id} could not be found.")))?;
    attach::detach(&state, &caller, &server, &vol).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str, uid: &str, spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": name, "uid": uid, "project": "p"}, "spec": spec, "status": status})
    }

    #[test]
    fn boot_volume_first_then_data_volumes_with_observed_devices() {
        let server = obj(
            "web",
            "srv",
            json!({"flavor": "f", "bootVolume": "root", "volumes": [
                {"volume": "root", "deleteOnTermination": true},
                {"volume": "data", "device": "/dev/vdc"},
                {"volume": "logs"},
                {"volume": "missing"}
            ]}),
            json!({}),
        );
        let volumes = vec![
            obj("root", "root-id", json!({}), json!({})),
            obj("data", "data-id", json!({}), json!({})),
            obj(
                "logs",
                "logs-id",
                json!({}),
                json!({"attachments": [{"server": "web", "device": "/dev/vdd"}]}),
            ),
        ];
        let list = attachments(&server, &volumes);
        let ids: Vec<&str> = list.iter().map(|a| a["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["root-id", "data-id", "logs-id"]);
        assert_eq!(list[0]["device"], "/dev/vda");
        assert_eq!(list[1]["device"], "/dev/vdc");
        assert_eq!(list[2]["device"], "/dev/vdd");
        assert_eq!(list[2]["serverId"], "srv");
    }
}
