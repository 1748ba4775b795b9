//! `/compute/v2.1/servers`: create, list (summary and detail, with Nova's filters and
//! `limit`/`marker` pages), show, update, delete, actions, addresses and metadata.
//!
//! Every request acts in the token's project; cloud admins also reach other projects'
//! servers by id and list them with `all_tenants`. Another project's server is simply not
//! found (`404 itemNotFound`).

use cirrus_crds::Resource as _;
use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cirrus_auth::Action;
use cirrus_crds::kinds::volume::CREATED_FOR_SERVER_ANNOTATION;
use cirrus_crds::{KindInfo, Server};
use cirrus_store::objects::Part;
use serde_json::{Map, Value, json};

use super::actions::{self, ActionPlan};
use super::related::Related;
use super::server_create::{self, check_ip, check_metadata, check_name, sanitize_hostname};
use super::server_view::{
    self, ACCESS_V4_ANNOTATION, ACCESS_V6_ANNOTATION, USER_ANNOTATION, detail, id_of, project_of,
    summary,
};
use crate::ApiState;
use crate::admission::Writer;
use crate::auth::Caller;
use crate::openstack::common::{self, NAME_ANNOTATION, base_url, json_body};
use crate::openstack::fault::{Dialect, Fault};
use crate::openstack::{paging, query_string};
use crate::resources::Change;

const D: Dialect = Dialect::Compute;

/// Nova's largest page.
const MAX_LIMIT: usize = 1000;
/// How Nova reads a server list's `limit`: at most [`MAX_LIMIT`].
const LIMIT: paging::LimitRule = paging::LimitRule {
    default: None,
    max: Some(MAX_LIMIT),
    zero_means_all: false,
};

mod ips;
mod list;
mod metadata;

use list::list;
use metadata::{
    metadata_get, metadata_item_delete, metadata_item_get, metadata_item_put, metadata_merge,
    metadata_replace,
};

/// The server routes under `/compute/v2.1/servers`.
pub fn router() -> Router<ApiState> {
    const S: &str = "/compute/v2.1/servers";
    Router::new()
        .route(S, get(list::<false>).post(create))
        .route(&format!("{S}/detail"), get(list::<true>))
        .route(&format!("{S}/{{id}}"), get(show).put(update).delete(remove))
        .route(&format!("{S}/{{id}}/action"), post(action))
        .route(&format!("{S}/{{id}}/ips"), get(ips::ips))
        .route(
            &format!("{S}/{{id}}/ips/{{network}}"),
            get(ips::ips_of_network),
        )
        .route(
            &format!("{S}/{{id}}/metadata"),
            get(metadata_get).put(metadata_replace).post(metadata_merge),
        )
        .route(
            &format!("{S}/{{id}}/metadata/{{key}}"),
            get(metadata_item_get)
                .put(metadata_item_put)
                .delete(metadata_item_delete),
        )
}

fn servers_kind() -> &'static KindInfo {
    cirrus_crds::Server::info()
}

fn api(e: crate::error::ApiError) -> Fault {
    Fault::from_api(D, e)
}

fn ok(code: StatusCode, body: Value) -> Response {
    (code, axum::Json(body)).into_response()
}

/// The project the caller acts in; unscoped tokens cannot use the compute API.
fn scope(caller: &Caller) -> Result<&str, Fault> {
    caller.project().ok_or_else(|| {
        Fault::new(
            D,
            StatusCode::UNAUTHORIZED,
            "The request you have made requires a project-scoped token.",
        )
    })
}

fn not_found(id: &str) -> Fault {
    Fault::not_found(D, format!("Instance {id} could not be found."))
}

fn parse(value: Value) -> Result<Server, Fault> {
    serde_json::from_value(value)
        .map_err(|e| Fault::internal(D, format!("a stored server does not parse: {e}")))
}

/// The server `id` (uid, or object name) as the caller may see it, authorized for `action`:
/// the caller's project first, then (cloud admins) every project.
async fn find_server(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    action: Action,
) -> Result<Server, Fault> {
    let project = scope(caller)?;
    let kind = servers_kind();
    let mut found = common::find_by_uid(state, kind, Some(project), id)
        .await
        .map_err(api)?;
    if found.is_none() && caller.is_cloud_admin() {
        let all = common::list(state, kind, None).await.map_err(api)?;
        found = all.into_iter().find(|s| common::uid(s) == id);
    }
    let server = parse(found.ok_or_else(|| not_found(id))?)?;
    caller
        .check(action, Some(project_of(&server)))
        .map_err(|r| match r {
            crate::auth::Refusal::NotFound => not_found(id),
            refusal => Fault::refused(D, refusal, &format!("instance {id}")),
        })?;
    Ok(server)
}

/// `POST /servers`.
async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Fault> {
    let project = scope(&caller)?.to_string();
    caller
        .check(Action::Write, Some(&project))
        .map_err(|r| Fault::refused(D, r, &format!("servers of project {project}")))?;
    let body = json_body(D, &body)?;
    let related = Related::load(&state, Some(&project)).await.map_err(api)?;
    let plan = server_create::plan(&body, &project, caller.is_cloud_admin(), &related)?;
    let kind = servers_kind();
    let hints = scheduler_hints(&state, &project, &plan.hints).await?;
    let (name, renamed) =
        common::object_name_for(&state, kind, Some(&project), "server", &plan.name)
            .await
            .map_err(api)?;
    let mut annotations = plan.annotations.clone();
    annotations.insert(USER_ANNOTATION.to_string(), caller.name());
    let mut spec = plan.spec.clone();
    if renamed {
        annotations.insert(NAME_ANNOTATION.to_string(), plan.name.clone());
        spec["hostname"] = Value::from(sanitize_hostname(&plan.name));
    }
    if !hints.is_empty() {
        spec["schedulerHints"] = Value::Object(hints);
    }
    // Booting from a new volume: the volume first, removed again if the server is refused.
    let new_volume = match &plan.new_boot_volume {
        None => None,
        Some(v) => {
            let (volume, uid) = create_boot_volume(&state, &caller, &project, &name, v).await?;
            spec["bootVolume"] = Value::from(volume.clone());
            if v.delete_on_termination {
                let mut volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
                volumes.insert(0, json!({"volume": volume, "deleteOnTermination": true}));
                spec["volumes"] = Value::Array(volumes);
            }
            Some((volume, uid))
        }
    };
    // A crash from here on leaves the volume to the volume controller's orphan sweep
    // (CREATED_FOR_SERVER_ANNOTATION); a refusal removes it at once.
    let object = json!({
        "apiVersion": cirrus_crds::API_VERSION,
        "kind": "Server",
        "metadata": {"name": name, "project": project, "annotations": annotations},
        "spec": spec,
    });
    let created = match crate::resources::create(
        &state,
        crate::admission::Writer::Caller(&caller),
        kind,
        Some(&project),
        object,
        false,
    )
    .await
    {
        Ok(created) => created,
        Err(e) => {
            if let Some((volume, uid)) = &new_volume {
                let volumes = cirrus_crds::Volume::info();
                let made = cirrus_store::objects::Preconditions::uid(uid.clone());
                if let Err(cleanup) = crate::resources::delete_with(
                    &state,
                    volumes,
                    Some(&project),
                    volume,
                    &made,
                    false,
                    false,
                )
                .await
                {
                    tracing::warn!(%volume, error = %cleanup.message(), "could not delete the boot volume of a refused server");
                }
            }
            return Err(api(e));
        }
    };
    let id = common::uid(&created);
    tracing::info!(%project, server = %name, %id, "server created through the compute API");
    let groups: Vec<Value> = plan
        .security_groups
        .iter()
        .map(|g| json!({ "name": g }))
        .collect();
    let mut response = ok(
        StatusCode::ACCEPTED,
        json!({"server": {
            "id": id,
            "links": super::links(&headers, "servers", &id),
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": groups,
            "adminPass": plan.admin_pass,
        }}),
    );
    if let Ok(location) =
        HeaderValue::from_str(&format!("{}/compute/v2.1/servers/{id}", base_url(&headers)))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Creates the boot volume `wanted` asks for (a copy of an image) for the server `server`
/// (not created yet) and returns its name and uid.
async fn create_boot_volume(
    state: &ApiState,
    caller: &Caller,
    project: &str,
    server: &str,
    wanted: &server_create::NewVolume,
) -> Result<(String, String), Fault> {
    let volumes = cirrus_crds::Volume::info();
    let (name, _) = common::object_name_for(state, volumes, Some(project), "volume", "")
        .await
        .map_err(api)?;
    let object = json!({
        "apiVersion": cirrus_crds::API_VERSION,
        "kind": "Volume",
        "metadata": {
            "name": name,
            "project": project,
            "annotations": {CREATED_FOR_SERVER_ANNOTATION: server},
        },
        "spec": {
            "size": wanted.size,
            "bootable": true,
            "source": {"type": "image", "name": wanted.image},
        },
    });
    let created = crate::resources::create(
        state,
        crate::admission::Writer::Caller(caller),
        volumes,
        Some(project),
        object,
        false,
    )
    .await
    .map_err(api)?;
    Ok((name, common::uid(&created)))
}

/// Nova's scheduler hints with ids resolved to object names: `group` (a server group),
/// `different_host` / `same_host` (servers, one id or a list). Other hints are ignored, as
/// Nova ignores hints no filter reads.
async fn scheduler_hints(
    state: &ApiState,
    project: &str,
    hints: &Map<String, Value>,
) -> Result<Map<String, Value>, Fault> {
    let mut out = Map::new();
    if let Some(group) = hints.get("group") {
        let Some(id) = group.as_str() else {
            return Err(Fault::bad_request(
                D,
                "Invalid input for field/attribute group: not a string.",
            ));
        };
        let kind = cirrus_crds::ServerGroup::info();
        let found = common::find_by_uid(state, kind, Some(project), id)
            .await
            .map_err(api)?
            .ok_or_else(|| {
                Fault::bad_request(D, format!("Server group {id} could not be found."))
            })?;
        out.insert("group".into(), Value::from(common::name(&found)));
    }
    for (hint, field) in [
        ("different_host", "differentHost"),
        ("same_host", "sameHost"),
    ] {
        let ids: Vec<&str> = match hints.get(hint) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            Some(other) => {
                return Err(Fault::bad_request(
                    D,
                    format!(
                        "Invalid input for field/attribute {hint}. Value: {other}. Must be a server id or a list of them."
                    ),
                ));
            }
        };
        let mut names = Vec::new();
        for id in ids {
            let found = common::find_by_uid(state, servers_kind(), Some(project), id)
                .await
                .map_err(api)?
                .ok_or_else(|| {
                    Fault::bad_request(D, format!("Instance {id} could not be found."))
                })?;
            names.push(Value::from(common::name(&found)));
        }
        out.insert(field.into(), Value::Array(names));
    }
    Ok(out)
}

async fn render(
    state: &ApiState,
    caller: &Caller,
    headers: &HeaderMap,
    server: &Server,
) -> Result<Value, Fault> {
    let related = Related::load(state, Some(project_of(server)))
        .await
        .map_err(api)?;
    Ok(detail(server, &related, headers, caller.is_cloud_admin()))
}

/// `GET /servers/{id}`.
async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let server = find_server(&state, &caller, &id, Action::Read).await?;
    let body = render(&state, &caller, &headers, &server).await?;
    Ok(ok(StatusCode::OK, json!({ "server": body })))
}

/// `PUT /servers/{id}`: name, description and access addresses.
async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    let server = find_server(&state, &caller, &id, Action::Write).await?;
    let body = json_body(D, &body)?;
    let Some(fields) = body.get("server").and_then(Value::as_object) else {
        return Err(Fault::bad_request(
            D,
            "Invalid input for field/attribute server. 'server' is a required property",
        ));
    };
    let mut annotations = Map::new();
    let mut spec = Map::new();
    for (k, v) in fields {
        match k.as_str() {
            "name" => {
                annotations.insert(NAME_ANNOTATION.into(), Value::from(check_name(v)?));
            }
            "description" => {
                if !(v.is_null() || v.as_str().is_some_and(|s| s.chars().count() <= 255)) {
                    return Err(Fault::bad_request(
                        D,
                        "Invalid input for field/attribute description: a string of at most 255 characters.",
                    ));
                }
                spec.insert("description".into(), v.clone());
            }
            "accessIPv4" | "accessIPv6" => {
                let v4 = k == "accessIPv4";
                let annotation = if v4 {
                    ACCESS_V4_ANNOTATION
                } else {
                    ACCESS_V6_ANNOTATION
                };
                match v.as_str() {
                    None if v.is_null() => {
                        annotations.insert(annotation.into(), Value::Null);
                    }
                    Some("") => {
                        annotations.insert(annotation.into(), Value::Null);
                    }
                    Some(ip) => {
                        check_ip(k, ip, v4)?;
                        annotations.insert(annotation.into(), Value::from(ip));
                    }
                    None => {
                        return Err(Fault::bad_request(
                            D,
                            format!("Invalid input for field/attribute {k}: not a string."),
                        ));
                    }
                }
            }
            other => {
                return Err(Fault::bad_request(
                    D,
                    format!(
                        "Invalid input for field/attribute server. Additional properties are not allowed ('{other}' was unexpected)"
                    ),
                ));
            }
        }
    }
    let mut patch = json!({});
    if !annotations.is_empty() {
        patch["metadata"] = json!({ "annotations": annotations });
    }
    if !spec.is_empty() {
        patch["spec"] = Value::Object(spec);
    }
    let server = if patch.as_object().is_some_and(|m| m.is_empty()) {
        server
    } else {
        let updated = crate::resources::write(
            &state,
            Writer::Caller(&caller),
            servers_kind(),
            Some(project_of(&server)),
            &server.metadata.name,
            Change::MergePatch(&patch),
            Part::Main,
            false,
        )
        .await
        .map_err(api)?;
        parse(updated)?
    };
    let body = render(&state, &caller, &headers, &server).await?;
    Ok(ok(
        StatusCode::OK,
        json!({ "server": server_view::basic(&body) }),
    ))
}

/// `DELETE /servers/{id}`: `204`; finalizers finish the deletion (the server shows task
/// state `deleting` until it is gone).
async fn remove(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let server = find_server(&state, &caller, &id, Action::Write).await?;
    crate::resources::delete(
        &state,
        servers_kind(),
        Some(project_of(&server)),
        &server.metadata.name,
        false,
    )
    .await
    .map_err(api)?;
    tracing::info!(project = %project_of(&server), server = %server.metadata.name, "server deleted through the compute API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// How often a server action is re-planned after losing a race with another writer.
const ACTION_RETRIES: u32 = 16;

/// A short random pause (1–16 ms) before a retry, so racing writers fall out of step.
fn jitter_ms() -> u64 {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    1 + u64::from(byte[0] % 16)
}

/// `POST /servers/{id}/action`.
async fn action(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    let body = json_body(D, &body)?;
    let is_read = body.get("os-getConsoleOutput").is_some();
    let server = find_server(
        &state,
        &caller,
        &id,
        if is_read { Action::Read } else { Action::Write },
    )
    .await?;
    match actions::plan(&body, &server)? {
        ActionPlan::Patch(spec) => {
            // The write is conditioned on the version read; the node agent writes the status
            // all the time, so a lost race is retried on a fresh read (which re-checks that
            // the action is still allowed) rather than handed to the user as a 409.
            let (mut server, mut spec) = (server, spec);
            let mut attempts = 0;
            loop {
                let patch = json!({
                    "metadata": {"resourceVersion": server.metadata.resource_version},
                    "spec": spec,
                });
                match crate::resources::write(
                    &state,
                    Writer::Caller(&caller),
                    servers_kind(),
                    Some(project_of(&server)),
                    &server.metadata.name,
                    Change::MergePatch(&patch),
                    Part::Main,
                    false,
                )
                .await
                {
                    Ok(_) => break,
                    Err(e) if e.code() == StatusCode::CONFLICT && attempts < ACTION_RETRIES => {
                        attempts += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(jitter_ms())).await;
                        server = find_server(&state, &caller, &id, Action::Write).await?;
                        match actions::plan(&body, &server)? {
                            ActionPlan::Patch(fresh) => spec = fresh,
                            _ => unreachable!("the same action plans the same way"),
                        }
                    }
                    Err(e) if e.code() == StatusCode::CONFLICT => {
                        return Err(Fault::conflict(
                            D,
                            format!(
                                "Instance {id} changed while the action was being applied; retry it."
                            ),
                        ));
                    }
                    Err(e) => return Err(api(e)),
                }
            }
            let action_name = body
                .as_object()
                .and_then(|m| m.keys().next().cloned())
                .unwrap_or_default();
            tracing::info!(server = %server.metadata.name, action = %action_name, "server action");
            Ok(StatusCode::ACCEPTED.into_response())
        }
        ActionPlan::Rebuild(args) => {
            let admin_pass = args.as_object().map_or_else(
                || server_create::admin_pass(&Map::new()),
                server_create::admin_pass,
            )?;
            let server = rebuild(&state, &caller, &server, &args).await?;
            let body = render(&state, &caller, &headers, &server).await?;
            let mut basic = server_view::basic(&body);
            // Nova answers the (given or generated) password, as on create.
            basic["adminPass"] = Value::from(admin_pass);
            Ok(ok(StatusCode::ACCEPTED, json!({ "server": basic })))
        }
        ActionPlan::ConsoleOutput(lines) => {
            let log = console_log(&state, &caller, &server).await?;
            Ok(ok(
                StatusCode::OK,
                json!({ "output": actions::tail_lines(&log, lines) }),
            ))
        }
    }
}

/// Rebuilds `server` from the image `args.imageRef` (with a new name and metadata when
/// given): the image changes and `rebuildCount` goes up, with a compare-and-swap on the
/// version read.
async fn rebuild(
    state: &ApiState,
    caller: &Caller,
    server: &Server,
    args: &Value,
) -> Result<Server, Fault> {
    let project = project_of(server);
    let Some(reference) = args
        .get("imageRef")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return Err(Fault::bad_request(
            D,
            "Invalid input for field/attribute rebuild. 'imageRef' is a required property",
        ));
    };
    let reference = reference
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(reference);
    let related = Related::load(state, Some(project)).await.map_err(api)?;
    let image = related
        .image_by_id(project, reference)
        .filter(|i| i.metadata.deletion_timestamp.is_none())
        .ok_or_else(|| Fault::bad_request(D, format!("Image {reference} could not be found.")))?;
    if related
        .image_for(project, &image.metadata.name)
        .map(|i| &i.metadata.uid)
        != Some(&image.metadata.uid)
    {
        return Err(Fault::bad_request(
            D,
            format!(
                "Image {reference} cannot be used: the project has its own image named {:?}.",
                image.metadata.name
            ),
        ));
    }
    let mut annotations = Map::new();
    annotations.insert(
        server_view::IMAGE_ANNOTATION.into(),
        Value::from(image.metadata.uid.clone().unwrap_or_default()),
    );
    if let Some(name) = args.get("name") {
        annotations.insert(NAME_ANNOTATION.into(), Value::from(check_name(name)?));
    }
    for (field, annotation, v4) in [
        ("accessIPv4", ACCESS_V4_ANNOTATION, true),
        ("accessIPv6", ACCESS_V6_ANNOTATION, false),
    ] {
        if let Some(ip) = args
            .get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            check_ip(field, ip, v4)?;
            annotations.insert(annotation.into(), Value::from(ip));
        }
    }
    let rebuilds = actions::next_count(
        "rebuild",
        server,
        "rebuildCount",
        server.spec.rebuild_count,
        server.status.observed_rebuild_count,
    )?;
    let mut spec = json!({
        "image": image.metadata.name,
        "rebuildCount": rebuilds,
    });
    if let Some(meta) = args.get("metadata") {
        let wanted = check_metadata(meta)?;
        spec["metadata"] = Value::Object(metadata_patch(&server.spec.metadata, &wanted));
    }
    let patch = json!({
        "metadata": {"resourceVersion": server.metadata.resource_version, "annotations": annotations},
        "spec": spec,
    });
    let updated = patch_server(
        state,
        caller,
        server,
        &patch,
        "The server changed while the rebuild was being applied; retry it.",
    )
    .await?;
    tracing::info!(%project, server = %server.metadata.name, image = %image.metadata.name, "server rebuild");
    parse(updated)
}

/// Writes the merge `patch` into `server`'s main part. The patch carries the
/// `resourceVersion` the server was read at, so a change in between fails — but only a change
/// of what users write (spec, labels, annotations) is Nova's `409` saying `conflict`: when
/// just the status moved on (the node agent reporting), the same patch is applied again on
/// the fresh version. The written object is returned.
async fn patch_server(
    state: &ApiState,
    caller: &Caller,
    server: &Server,
    patch: &Value,
    conflict: impl Into<String>,
) -> Result<Value, Fault> {
    let mut patch = patch.clone();
    for _ in 0..=ACTION_RETRIES {
        let written = crate::resources::write(
            state,
            Writer::Caller(caller),
            servers_kind(),
            Some(project_of(server)),
            &server.metadata.name,
            Change::MergePatch(&patch),
            Part::Main,
            false,
        )
        .await;
        match written {
            Err(e) if e.code() == StatusCode::CONFLICT => {
                tokio::time::sleep(std::time::Duration::from_millis(jitter_ms())).await;
                let fresh = parse(
                    state
                        .store
                        .get(
                            servers_kind(),
                            Some(project_of(server)),
                            &server.metadata.name,
                        )
                        .await
                        .map_err(|e| api(e.into()))?,
                )?;
                let same_intent = fresh.spec == server.spec
                    && fresh.metadata.labels == server.metadata.labels
                    && fresh.metadata.annotations == server.metadata.annotations;
                if !same_intent {
                    break;
                }
                patch["metadata"]["resourceVersion"] = json!(fresh.metadata.resource_version);
            }
            other => return other.map_err(api),
        }
    }
    Err(Fault::conflict(D, conflict))
}

/// The merge patch of `spec.metadata` that turns `current` into `wanted`: keys `wanted`
/// lacks become `null` (removed), the others are set.
fn metadata_patch(
    current: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for key in current.keys() {
        if !wanted.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    for (k, v) in wanted {
        patch.insert(k.clone(), Value::from(v.clone()));
    }
    patch
}

/// The server's console log, through the native console route's handler (which proxies to
/// the node agent).
async fn console_log(state: &ApiState, caller: &Caller, server: &Server) -> Result<String, Fault> {
    let params: std::collections::HashMap<String, String> = [
        ("project".to_string(), project_of(server).to_string()),
        ("plural".to_string(), "servers".to_string()),
        ("name".to_string(), server.metadata.name.clone()),
    ]
    .into_iter()
    .collect();
    let query = serde_json::from_value(json!({}))
        .map_err(|e| Fault::internal(D, format!("console query: {e}")))?;
    let response = crate::console::server_console(
        State(state.clone()),
        caller.clone(),
        Path(params),
        axum::extract::Query(query),
    )
    .await
    .map_err(|e| {
        // No node, node gone or no log there yet: the instance is not ready for it (Nova's
        // 409), not a missing instance.
        if e.code() == StatusCode::NOT_FOUND {
            Fault::conflict(D, e.message().to_string())
        } else {
            api(e)
        }
    })?;
    let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .map_err(|e| Fault::internal(D, format!("reading the console log: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests;
