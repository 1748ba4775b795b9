//! `POST …/volumes/{id}/action`: one-key bodies naming the action.
//!
//! | action             | effect                                                        |
//! |--------------------|---------------------------------------------------------------|
//! | `os-extend`        | grows `spec.size` (only growing; the volume must be available)|
//! | `os-attach`        | adds the volume to `instance_uuid`'s `spec.volumes`           |
//! | `os-detach`        | removes it from the server of `attachment_id` (or the only one)|
//! | `os-set_bootable`  | sets `spec.bootable`                                          |
//! | `os-reset_status`  | (cloud admin) writes `status.phase`                           |
//! | `os-force_delete`  | (cloud admin) deletes like `DELETE`                           |
//!
//! Other actions answer `400` naming the action.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cirrus_auth::Action;
use cirrus_store::objects::Part;
use serde_json::{Value, json};

use super::render::{self, Index};
use super::volumes::{remove, volume_or_404};
use super::{
    Ctx, DIALECT, attach, field, find, modify, parse_bool, project_of, server_kind, string_field,
    volume_kind,
};
use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common;
use crate::openstack::fault::Fault;

/// Statuses `os-reset_status` may set (Cinder's volume statuses).
const STATUSES: &[&str] = &[
    "creating",
    "available",
    "reserved",
    "attaching",
    "in-use",
    "detaching",
    "extending",
    "deleting",
    "error",
    "error_deleting",
    "error_extending",
];

/// `POST …/volumes/{id}/action`.
pub async fn action(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project_id, id)): Path<(String, String)>,
    _headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Write)?;
    let body = common::json_body(DIALECT, &body)?;
    let Some((name, args)) = body
        .as_object()
        .and_then(|o| if o.len() == 1 { o.iter().next() } else { None })
    else {
        return Err(Fault::bad_request(
            DIALECT,
            "Malformed request body: an action body has exactly one key, the action's name.",
        ));
    };
    let volume = volume_or_404(&state, &ctx, &id).await?;
    tracing::debug!(action = %name, volume = %common::name(&volume), "Cinder volume action");
    match name.as_str() {
        "os-extend" => extend(&state, &ctx.caller, &volume, args).await,
        "os-attach" => os_attach(&state, &ctx, &volume, args).await,
        "os-detach" => os_detach(&state, &ctx.caller, &volume, args).await,
        "os-set_bootable" => set_bootable(&state, &ctx.caller, &volume, args).await,
        "os-reset_status" => reset_status(&state, &ctx, &volume, args).await,
        "os-force_delete" => {
            admin_only(&ctx, name)?;
            remove(&state, &volume, false).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "os-update_readonly_flag"
        | "os-retype"
        | "os-volume_upload_image"
        | "os-migrate_volume"
        | "os-unmanage"
        | "revert" => Err(Fault::bad_request(
            DIALECT,
            format!("The volume action {name} is not supported by this cloud."),
        )),
        other => Err(Fault::bad_request(
            DIALECT,
            format!("There is no such action: {other}"),
        )),
    }
}

fn admin_only(ctx: &Ctx, action: &str) -> Result<(), Fault> {
    if ctx.admin {
        Ok(())
    } else {
        Err(Fault::forbidden(
            DIALECT,
            format!("Policy doesn't allow volume_extension:{action} to be performed."),
        ))
    }
}

/// `os-extend {new_size}`: only growing, only an `available` volume (Cinder 3.0; growing an
/// attached volume needs the guest's `blockresize`, not done yet). `202`.
async fn extend(
    state: &ApiState,
    caller: &Caller,
    volume: &Value,
    args: &Value,
) -> Result<Response, Fault> {
    let id = common::uid(volume);
    let new_size = field(args, "new_size")
        .ok_or_else(|| {
            Fault::bad_request(
                DIALECT,
                "Invalid input for field/attribute new_size: required.",
            )
        })
        .and_then(|v| super::volumes::parse_size(v, "new_size"))?;
    let project = project_of(volume);
    let index = Index::load(state, Some(&project)).await?;
    let status = render::status_of(volume, &index);
    if status != "available" {
        return Err(Fault::bad_request(
            DIALECT,
            format!(
                "Invalid volume: Volume {id} status must be available to extend, but the current status is {status}."
            ),
        ));
    }
    let mut current = 0;
    modify(
        state,
        caller,
        volume_kind(),
        &project,
        &common::name(volume),
        |o| {
            current = o.pointer("/spec/size").and_then(Value::as_u64).unwrap_or(0);
            if new_size <= current {
                return Err(Fault::bad_request(
                    DIALECT,
                    format!(
                        "Invalid input received: New size for extend must be greater than current \
                     size. (current: {current}, extended: {new_size})."
                    ),
                ));
            }
            o["spec"]["size"] = Value::from(new_size);
            Ok(())
        },
    )
    .await?;
    tracing::info!(%project, volume = %common::name(volume), from = current, to = new_size, "volume extend requested");
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `os-attach {instance_uuid, mountpoint}`: the same write as Nova's attachment. `202`.
async fn os_attach(
    state: &ApiState,
    ctx: &Ctx,
    volume: &Value,
    args: &Value,
) -> Result<Response, Fault> {
    let Some(server_id) = string_field(args, "instance_uuid")? else {
        return Err(Fault::bad_request(
            DIALECT,
            "Invalid input for field/attribute instance_uuid: required (attaching to a host_name \
             is not supported).",
        ));
    };
    let mountpoint = string_field(args, "mountpoint")?;
    let server = find(
        state,
        server_kind(),
        &project_of(volume),
        ctx.admin,
        &server_id,
    )
    .await?
    .ok_or_else(|| {
        Fault::not_found(DIALECT, format!("Instance {server_id} could not be found."))
    })?;
    attach::attach(
        state,
        &ctx.caller,
        &server,
        volume,
        mountpoint.as_deref(),
        false,
    )
    .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `os-detach {attachment_id?}`: from the server of that attachment, or the only server
/// using the volume when no id is given. `202`.
async fn os_detach(
    state: &ApiState,
    caller: &Caller,
    volume: &Value,
    args: &Value,
) -> Result<Response, Fault> {
    let id = common::uid(volume);
    let project = project_of(volume);
    let index = Index::load(state, Some(&project)).await?;
    let users = index.users_of(&project, &common::name(volume));
    let wanted = string_field(args, "attachment_id")?;
    let server = match &wanted {
        Some(att) => users
            .iter()
            .find(|s| &render::attachment_id(&id, &common::uid(s)) == att)
            .copied()
            .ok_or_else(|| {
                Fault::not_found(
                    DIALECT,
                    format!("Volume attachment {att} of volume {id} could not be found."),
                )
            })?,
        None => match users.as_slice() {
            [only] => *only,
            [] => {
                return Err(Fault::bad_request(
                    DIALECT,
                    format!("Invalid volume: volume {id} is not attached."),
                ));
            }
            _ => {
                return Err(Fault::bad_request(
                    DIALECT,
                    format!(
                        "Invalid volume: volume {id} has several attachments; give attachment_id."
                    ),
                ));
            }
        },
    };
    attach::detach(state, caller, server, volume).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `os-set_bootable {bootable}`. `200`.
async fn set_bootable(
    state: &ApiState,
    caller: &Caller,
    volume: &Value,
    args: &Value,
) -> Result<Response, Fault> {
    let bootable = field(args, "bootable")
        .and_then(parse_bool)
        .ok_or_else(|| {
            Fault::bad_request(
                DIALECT,
                "Invalid input for field/attribute bootable: a boolean is required.",
            )
        })?;
    modify(
        state,
        caller,
        volume_kind(),
        &project_of(volume),
        &common::name(volume),
        |o| {
            o["spec"]["bootable"] = Value::Bool(bootable);
            Ok(())
        },
    )
    .await?;
    Ok(StatusCode::OK.into_response())
}

/// `os-reset_status {status}` (cloud admin): writes `status.phase`; the node agent corrects
/// it on its next observation. `202`.
async fn reset_status(
    state: &ApiState,
    ctx: &Ctx,
    volume: &Value,
    args: &Value,
) -> Result<Response, Fault> {
    admin_only(ctx, "volume_admin_actions:reset_status")?;
    let Some(status) = string_field(args, "status")? else {
        // Cinder accepts attach_status/migration_status alone; there is nothing to store.
        return Ok(StatusCode::ACCEPTED.into_response());
    };
    if !STATUSES.contains(&status.as_str()) {
        return Err(Fault::bad_request(
            DIALECT,
            format!(
                "Invalid input for field/attribute status. Value: {status}. Must be one of: {}.",
                STATUSES.join(", ")
            ),
        ));
    }
    let patch = json!({"status": {"phase": status}});
    crate::resources::write(
        state,
        crate::admission::Writer::Caller(&ctx.caller),
        volume_kind(),
        Some(&project_of(volume)),
        &common::name(volume),
        crate::resources::Change::MergePatch(&patch),
        Part::Status,
        false,
    )
    .await
    .map_err(|e| Fault::from_api(DIALECT, e))?;
    Ok(StatusCode::ACCEPTED.into_response())
}
