//! Glance's image members (`/image/v2/images/{id}/members...`): the owner of a `shared` image
//! offers it to projects, each project answers for itself.
//!
//! The offer is the image's `spec.members` (written by the owner project, through the same
//! admission as any image write, with the image's `resourceVersion` as precondition so two
//! concurrent offers do not lose one); the answer is the member project's own
//! [`cirrus_crds::ImageMember`] named after the image's uid (written by that project). So the
//! owner cannot accept on a member's behalf (`403`) and a member cannot add itself (`403`).
//! A member sees only its own membership; the owner (and cloud admins) all of them. Until a
//! member accepts, the image is not in its default image list and cannot be booted or copied
//! into a volume ([`crate::admission::image_use`]). Removing a member also removes its answer,
//! so a later offer starts pending again, as in Glance.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cirrus_crds::{ImageMember, MemberStatus, Resource};
use serde_json::{Value, json};

use super::image::{api_error, check_write, find, owner, write_patch};
use crate::ApiState;
use crate::admission::image_use;
use crate::auth::Caller;
use crate::openstack::common;
use crate::openstack::fault::{Dialect, Fault};

const D: Dialect = Dialect::Image;

/// How often an offer is retried when another write to the image came between its read and
/// its write (the image's `resourceVersion` precondition).
const CONFLICT_RETRIES: usize = 5;

/// The members routes and their schemas.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/image/v2/images/{id}/members", get(list).post(add))
        .route(
            "/image/v2/images/{id}/members/{member}",
            get(show).put(answer).delete(remove),
        )
        .route("/image/v2/schemas/member", get(member_schema))
        .route("/image/v2/schemas/members", get(members_schema))
}

/// The projects the image is offered to.
fn offered(image: &Value) -> Vec<String> {
    image
        .pointer("/spec/members")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Glance's member document for `member` of `image`, with its answer.
async fn document(state: &ApiState, image: &Value, member: &str) -> Result<Value, Fault> {
    let uid = common::uid(image);
    let answer = answer_object(state, member, &uid).await?;
    let (status, created, updated) = match &answer {
        Some(object) => {
            let created = object
                .metadata
                .creation_timestamp
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            let updated = object
                .metadata
                .annotations
                .get(UPDATED_ANNOTATION)
                .cloned()
                .or_else(|| created.clone());
            (object.spec.member_status, created, updated)
        }
        None => {
            let at = image
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .map(str::to_string);
            (MemberStatus::Pending, at.clone(), at)
        }
    };
    Ok(json!({
        "image_id": uid,
        "member_id": member,
        "status": status.as_str(),
        "created_at": created,
        "updated_at": updated,
        "schema": "/v2/schemas/member",
    }))
}

/// When the member last answered (RFC 3339), kept on its `ImageMember`.
const UPDATED_ANNOTATION: &str = "cirrus.dev/answered-at";

/// `member`'s answer object for the image with uid `image_uid`, if it answered.
async fn answer_object(
    state: &ApiState,
    member: &str,
    image_uid: &str,
) -> Result<Option<ImageMember>, Fault> {
    image_use::answer_object(&state.store, member, image_uid)
        .await
        .map_err(api_error)
}

/// Whether the caller is the image's owner side (a member of the owner project, or a cloud
/// admin): it sees every member.
fn is_owner_side(caller: &Caller, image: &Value) -> bool {
    caller.is_cloud_admin() || caller.project() == Some(owner(image))
}

fn member_not_found(id: &str, member: &str) -> Fault {
    Fault::not_found(D, format!("{member} is not a member of image {id}."))
}

/// `GET /v2/images/{id}/members`: every member for the owner; only itself for a member.
async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let image = find(&state, &caller, &id).await?;
    let mut members = Vec::new();
    for member in offered(&image) {
        if is_owner_side(&caller, &image) || caller.project() == Some(member.as_str()) {
            members.push(document(&state, &image, &member).await?);
        }
    }
    Ok(Json(json!({"members": members, "schema": "/v2/schemas/members"})).into_response())
}

/// `GET /v2/images/{id}/members/{member}`: for the owner and that member.
async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, member)): Path<(String, String)>,
) -> Result<Response, Fault> {
    let image = find(&state, &caller, &id).await?;
    let allowed = is_owner_side(&caller, &image) || caller.project() == Some(member.as_str());
    if !allowed || !offered(&image).contains(&member) {
        return Err(member_not_found(&id, &member));
    }
    Ok(Json(document(&state, &image, &member).await?).into_response())
}

/// The string field `field` of a JSON object body; `400` naming it otherwise.
fn body_string(body: &Bytes, field: &str) -> Result<String, Fault> {
    let value = common::json_body(D, body)?;
    match value.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(Fault::bad_request(
            D,
            format!("{field} must be a non-empty string"),
        )),
        None => Err(Fault::bad_request(D, format!("{field} is required"))),
    }
}

/// Writes the image's member list through admission, with its `resourceVersion` as the
/// precondition; `change` edits the list read and says whether there is anything to write
/// (`Ok(false)`: nothing to do).
async fn edit_members(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    change: impl Fn(&mut Vec<String>) -> Result<bool, Fault>,
) -> Result<Value, Fault> {
    for _ in 0..CONFLICT_RETRIES {
        let image = find(state, caller, id).await?;
        check_write(caller, &image)?;
        let mut members = offered(&image);
        if !change(&mut members)? {
            return Ok(image);
        }
        let patch = json!({
            "metadata": {"resourceVersion": image.pointer("/metadata/resourceVersion")},
            "spec": {"members": members},
        });
        match write_patch(state, caller, &image, &patch).await {
            Ok(written) => return Ok(written),
            Err(e) if e.reason() == "Conflict" => continue,
            Err(e) => return Err(api_error(e)),
        }
    }
    Err(Fault::conflict(
        D,
        format!("image {id} kept changing while its members were written; try again"),
    ))
}

/// `POST /v2/images/{id}/members` `{"member": "<project>"}`: the owner offers the image;
/// `403` unless it is `shared`, `409` when already a member.
async fn add(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    let member = body_string(&body, "member")?;
    let image = find(&state, &caller, &id).await?;
    check_write(&caller, &image)?;
    if image.pointer("/spec/visibility").and_then(Value::as_str) != Some("shared") {
        return Err(Fault::forbidden(
            D,
            format!("Only shared images have members: image {id} is not shared."),
        ));
    }
    if member == owner(&image) {
        return Err(Fault::forbidden(
            D,
            "The owner of an image cannot be one of its members.",
        ));
    }
    let written = edit_members(&state, &caller, &id, |members| {
        if members.contains(&member) {
            return Err(Fault::conflict(
                D,
                format!("{member} is already a member of image {id}."),
            ));
        }
        members.push(member.clone());
        Ok(true)
    })
    .await?;
    tracing::info!(image = %id, %member, "image offered to a project");
    Ok(Json(document(&state, &written, &member).await?).into_response())
}

/// `PUT /v2/images/{id}/members/{member}` `{"status": "accepted"|"rejected"|"pending"}`: the
/// member answers, in its own project; anyone else `403`.
async fn answer(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, member)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Fault> {
    let word = body_string(&body, "status")?;
    let status = MemberStatus::parse(&word).ok_or_else(|| {
        Fault::bad_request(
            D,
            format!("Invalid status {word:?}: one of pending, accepted, rejected"),
        )
    })?;
    let image = find(&state, &caller, &id).await?;
    if !offered(&image).contains(&member) {
        return Err(member_not_found(&id, &member));
    }
    if caller.project() != Some(member.as_str()) {
        return Err(Fault::forbidden(
            D,
            format!("Only the member {member} may answer for itself; the owner cannot."),
        ));
    }
    caller
        .check(cirrus_auth::Action::Write, Some(&member))
        .map_err(|_| {
            Fault::forbidden(
                D,
                "Your role is read-only: a member role is needed to answer.",
            )
        })?;
    let uid = common::uid(&image);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut object = ImageMember::new(
        cirrus_crds::ObjectMeta {
            name: uid.clone(),
            project: Some(member.clone()),
            ..Default::default()
        },
        cirrus_crds::ImageMemberSpec {
            member_status: status,
        },
    );
    object
        .metadata
        .annotations
        .insert(UPDATED_ANNOTATION.into(), now.clone());
    let value = serde_json::to_value(&object)
        .map_err(|e| api_error(crate::error::ApiError::internal(e.to_string())))?;
    let writer = crate::admission::Writer::Caller(&caller);
    let created = crate::resources::create(
        &state,
        writer,
        ImageMember::info(),
        Some(&member),
        value,
        false,
    )
    .await;
    match created {
        Ok(_) => {}
        Err(e) if e.reason() == "AlreadyExists" => {
            let patch = json!({
                "metadata": {"annotations": {UPDATED_ANNOTATION: now}},
                "spec": {"memberStatus": status.as_str()},
            });
            crate::resources::write(
                &state,
                crate::admission::Writer::Caller(&caller),
                ImageMember::info(),
                Some(&member),
                &uid,
                crate::resources::Change::MergePatch(&patch),
                cirrus_store::objects::Part::Main,
                false,
            )
            .await
            .map_err(api_error)?;
        }
        Err(e) => return Err(api_error(e)),
    }
    tracing::info!(image = %id, %member, status = status.as_str(), "image share answered");
    Ok(Json(document(&state, &image, &member).await?).into_response())
}

/// `DELETE /v2/images/{id}/members/{member}`: the owner withdraws the offer (`204`); the
/// member's answer goes with it.
async fn remove(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, member)): Path<(String, String)>,
) -> Result<Response, Fault> {
    let image = find(&state, &caller, &id).await?;
    if !is_owner_side(&caller, &image) {
        // A member sees the image but may not change who else it is shared with.
        return Err(Fault::forbidden(
            D,
            format!("Only the owner of image {id} may remove its members."),
        ));
    }
    edit_members(&state, &caller, &id, |members| {
        let before = members.len();
        members.retain(|m| m != &member);
        if members.len() == before {
            return Err(member_not_found(&id, &member));
        }
        Ok(true)
    })
    .await?;
    let uid = common::uid(&image);
    match image_use::answer(&state.store, &member, &uid).await {
        Ok(Some(_)) => {
            if let Err(e) =
                crate::resources::delete(&state, ImageMember::info(), Some(&member), &uid, false)
                    .await
                && e.reason() != "NotFound"
            {
                tracing::warn!(image = %id, %member, error = e.message(), "could not remove the member's answer");
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(image = %id, %member, error = e.message(), "could not read the member's answer")
        }
    }
    tracing::info!(image = %id, %member, "image share withdrawn");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The JSON schema of one member document (`GET /v2/schemas/member`).
pub fn member_schema_value() -> Value {
    json!({
        "name": "member",
        "properties": {
            "created_at": {"description": "Date and time of image member creation", "type": "string"},
            "image_id": {"description": "An identifier for the image", "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$", "type": "string"},
            "member_id": {"description": "An identifier for the image member (tenantId)", "type": "string"},
            "schema": {"readOnly": true, "type": "string"},
            "status": {"description": "The status of this image member", "enum": ["pending", "accepted", "rejected"], "type": "string"},
            "updated_at": {"description": "Date and time of last modification of image member", "type": "string"},
        },
    })
}

async fn member_schema() -> Json<Value> {
    Json(member_schema_value())
}

async fn members_schema() -> Json<Value> {
    Json(json!({
        "name": "members",
        "links": [{"href": "{schema}", "rel": "describedby"}],
        "properties": {
            "members": {"items": member_schema_value(), "type": "array"},
            "schema": {"type": "string"},
        },
    }))
}
