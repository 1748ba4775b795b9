//! `…/volumes`: create, list (`detail`), show, update, delete, metadata.
//!
//! Create checks everything — size, type, zone, the one source (`snapshot_id`,
//! `source_volid`, `imageRef`) and its status and size — before the one write, through the
//! native admission. A volume from a snapshot or volume inherits its source's type and size.

use cirrus_crds::Resource as _;
use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cirrus_auth::Action;
use serde_json::{Map, Value, json};

use super::render::{self, Index};
use super::{
    Ctx, DIALECT, USER_ANNOTATION, api_fault, envelope, field, find, metadata_field, modify,
    project_of, query_flag, snapshot_kind, string_field, types, volume_kind,
};
use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common::{self, NAME_ANNOTATION};
use crate::openstack::fault::Fault;
use crate::openstack::paging;

/// The `404` of an unknown volume id.
pub(crate) fn not_found(id: &str) -> Fault {
    Fault::not_found(DIALECT, format!("Volume {id} could not be found."))
}

/// The volume `id` visible in `ctx`, or `404`.
pub(crate) async fn volume_or_404(state: &ApiState, ctx: &Ctx, id: &str) -> Result<Value, Fault> {
    find(state, volume_kind(), &ctx.project, ctx.admin, id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// A size in GiB: an integer from 1 to [`common::MAX_INT`] (Cinder's limit), also as a
/// string (`"10"`), `400` naming `key` otherwise.
pub fn parse_size(value: &Value, key: &str) -> Result<u64, Fault> {
    let parsed = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match parsed {
        Some(n) if (1..=common::MAX_INT).contains(&n) => Ok(n),
        Some(n) if n > common::MAX_INT => Err(Fault::bad_request(
            DIALECT,
            format!(
                "Invalid input for field/attribute {key}. Value: {value}. {n} is greater than \
                 the maximum of {} (GiB).",
                common::MAX_INT
            ),
        )),
        _ => Err(Fault::bad_request(
            DIALECT,
            format!(
                "Invalid input for field/attribute {key}. Value: {value}. It must be an integer \
                 of at least 1 (GiB)."
            ),
        )),
    }
}

/// A create request, checked and resolved to object names.
#[derive(Debug, Default)]
struct Plan {
    name: Option<String>,
    description: Option<String>,
    size: u64,
    source: Option<(&'static str, String)>,
    volume_type: Option<&'static str>,
    zone: Option<String>,
    metadata: BTreeMap<String, String>,
    bootable: bool,
    multiattach: bool,
}

/// The one source a create names: (`snapshot_id` | `source_volid` | `imageRef`, id).
fn source_of(req: &Value) -> Result<Option<(&'static str, String)>, Fault> {
    for unsupported in [
        "backup_id",
        "consistencygroup_id",
        "group_id",
        "source_replica",
    ] {
        if field(req, unsupported).is_some() {
            return Err(Fault::bad_request(
                DIALECT,
                format!(
                    "Invalid input for field/attribute {unsupported}: not supported by this cloud."
                ),
            ));
        }
    }
    let mut given = Vec::new();
    for key in ["snapshot_id", "source_volid", "imageRef"] {
        if let Some(id) = string_field(req, key)? {
            given.push((key, id));
        }
    }
    if given.len() > 1 {
        return Err(Fault::bad_request(
            DIALECT,
            "Invalid input received: only one of snapshot_id, source_volid and imageRef may be given.",
        ));
    }
    Ok(given.pop())
}

/// Availability zones a volume may name: `nova` and every node's zone.
pub(crate) async fn zones(state: &ApiState) -> Result<Vec<String>, Fault> {
    let nodes_kind = cirrus_crds::Node::info();
    let nodes = common::list(state, nodes_kind, None)
        .await
        .map_err(api_fault)?;
    let mut zones: Vec<String> = nodes
        .iter()
        .map(|n| {
            n.pointer("/spec/availabilityZone")
                .and_then(Value::as_str)
                .unwrap_or(render::DEFAULT_ZONE)
                .to_string()
        })
        .collect();
    zones.push(render::DEFAULT_ZONE.to_string());
    zones.sort();
    zones.dedup();
    Ok(zones)
}

/// Whether `project` sees image `image` ([`cirrus_crds::Image::visible_to`]: own, public,
/// community, or shared with it; using a share needs the project's acceptance, which
/// admission checks, [`crate::admission::image_use`]).
fn image_usable(image: &Value, project: &str) -> bool {
    crate::openstack::image::typed(image).is_some_and(|i| i.visible_to(project))
}

/// Checks a create request and resolves its references; nothing is written.
async fn plan(state: &ApiState, ctx: &Ctx, req: &Value) -> Result<Plan, Fault> {
    let mut plan = Plan {
        name: string_field(req, "name")?.or(string_field(req, "display_name")?),
        description: string_field(req, "description")?
            .or(string_field(req, "display_description")?),
        metadata: metadata_field(req, "metadata")?.unwrap_or_default(),
        ..Plan::default()
    };
    if let Some(name) = &plan.name
        && name.chars().count() > 255
    {
        return Err(Fault::bad_request(
            DIALECT,
            "Invalid input for field/attribute name: at most 255 characters.",
        ));
    }
    let size = field(req, "size")
        .map(|v| parse_size(v, "size"))
        .transpose()?;
    for (key, target) in [
        ("multiattach", &mut plan.multiattach),
        ("bootable", &mut plan.bootable),
    ] {
        if let Some(v) = field(req, key) {
            *target = super::parse_bool(v).ok_or_else(|| {
                Fault::bad_request(
                    DIALECT,
                    format!(
                        "Invalid input for field/attribute {key}. Value: {v}. It must be a boolean."
                    ),
                )
            })?;
        }
    }
    let asked_type = match string_field(req, "volume_type")? {
        None => None,
        Some(t) => Some(types::resolve(&t).ok_or_else(|| {
            Fault::bad_request(
                DIALECT,
                format!("Volume type with name {t} could not be found (types: file, lvm)."),
            )
        })?),
    };
    if let Some(zone) = string_field(req, "availability_zone")? {
        let known = zones(state).await?;
        if !known.contains(&zone) {
            return Err(Fault::bad_request(
                DIALECT,
                format!(
                    "Invalid input received: Availability zone '{zone}' is invalid (zones: {}).",
                    known.join(", ")
                ),
            ));
        }
        plan.zone = Some(zone);
    }
    // The source: its object name, the minimum size and the type it implies.
    let mut min_size = 1;
    let mut source_type: Option<&'static str> = None;
    match source_of(req)? {
        None => {}
        Some(("snapshot_id", id)) => {
            let snap = find(state, snapshot_kind(), &ctx.project, false, &id)
                .await?
                .ok_or_else(|| {
                    Fault::bad_request(
                        DIALECT,
                        format!("Invalid input for field/attribute snapshot_id: Snapshot {id} could not be found."),
                    )
                })?;
            let status = render::snapshot_status(&snap);
            if status != "available" {
                return Err(Fault::bad_request(
                    DIALECT,
                    format!(
                        "Invalid snapshot: snapshot {id} status must be available, but the current status is {status}."
                    ),
                ));
            }
            let volume_name = snap
                .pointer("/spec/volume")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let origin = state
                .store
                .get(volume_kind(), Some(&ctx.project), volume_name)
                .await
                .ok();
            min_size = snap
                .pointer("/status/size")
                .and_then(Value::as_u64)
                .or_else(|| {
                    origin
                        .as_ref()
                        .and_then(|v| v.pointer("/spec/size")?.as_u64())
                })
                .unwrap_or(1);
            source_type = Some(type_of(origin.as_ref()));
            plan.source = Some(("snapshot", common::name(&snap)));
        }
        Some(("source_volid", id)) => {
            let origin = find(state, volume_kind(), &ctx.project, false, &id)
                .await?
                .ok_or_else(|| {
                    Fault::bad_request(
                        DIALECT,
                        format!("Invalid input for field/attribute source_volid: Volume {id} could not be found."),
                    )
                })?;
            let phase = origin.pointer("/status/phase").and_then(Value::as_str);
            if !render::is_live(&origin) || !matches!(phase, Some("available") | Some("in-use")) {
                let index = Index::load(state, Some(&ctx.project)).await?;
                return Err(Fault::bad_request(
                    DIALECT,
                    format!(
                        "Invalid volume: source volume {id} status must be available or in-use, \
                         but the current status is {}.",
                        render::status_of(&origin, &index)
                    ),
                ));
            }
            min_size = origin
                .pointer("/spec/size")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            source_type = Some(type_of(Some(&origin)));
            plan.bootable = plan.bootable
                || origin.pointer("/spec/bootable").and_then(Value::as_bool) == Some(true);
            plan.source = Some(("volume", common::name(&origin)));
        }
        Some((_, id)) => {
            let images_kind = cirrus_crds::Image::info();
            let all = common::list(state, images_kind, None)
                .await
                .map_err(api_fault)?;
            let image = all
                .iter()
                .filter(|i| image_usable(i, &ctx.project))
                .find(|i| common::uid(i) == id)
                .or_else(|| {
                    all.iter()
                        .filter(|i| project_of(i) == ctx.project)
                        .find(|i| common::name(i) == id)
                })
                .ok_or_else(|| {
                    Fault::bad_request(
                        DIALECT,
                        format!("Invalid input for field/attribute imageRef: Image {id} could not be found."),
                    )
                })?;
            if let Some(phase) = image.pointer("/status/phase").and_then(Value::as_str)
                && phase != "active"
            {
                return Err(Fault::bad_request(
                    DIALECT,
                    format!("Invalid image: image {id} is not active (status {phase})."),
                ));
            }
            let gib = 1u64 << 30;
            let data = image
                .pointer("/status/virtualSize")
                .or_else(|| image.pointer("/status/size"))
                .and_then(Value::as_u64)
                .map_or(0, |b| b.div_ceil(gib));
            let min_disk = image
                .pointer("/spec/minDisk")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            min_size = data.max(min_disk).max(1);
            if size.is_none() {
                return Err(Fault::bad_request(
                    DIALECT,
                    "Invalid input for field/attribute size: required with imageRef.",
                ));
            }
            plan.bootable = true;
            // The reference every later lookup resolves to exactly this image: its name when
            // a by-name lookup from the project finds it, else its uid (a share or community
            // image named by name could resolve to another image of that name).
            let reference = crate::openstack::image::typed(image)
                .map(|i| i.reference_from(&ctx.project))
                .unwrap_or_else(|| common::uid(image));
            plan.source = Some(("image", reference));
        }
    }
    plan.size = match size {
        Some(s) if s < min_size => {
            let what = plan.source.as_ref().map_or("source", |(t, _)| *t);
            return Err(Fault::bad_request(
                DIALECT,
                format!(
                    "Invalid input for field/attribute size. Volume size {s}GB cannot be smaller \
                     than the {what} size {min_size}GB."
                ),
            ));
        }
        Some(s) => s,
        None if plan.source.is_some() => min_size,
        None => {
            return Err(Fault::bad_request(
                DIALECT,
                "Invalid input for field/attribute size: required (an integer of at least 1 GiB).",
            ));
        }
    };
    plan.volume_type = match (asked_type, source_type) {
        (Some(asked), Some(src)) if asked != src => {
            return Err(Fault::bad_request(
                DIALECT,
                format!(
                    "Invalid input for field/attribute volume_type: a volume made from a {src} volume must have type {src}, not {asked}."
                ),
            ));
        }
        (asked, src) => asked.or(src),
    };
    Ok(plan)
}

/// The canonical type of a volume object (default `file`).
fn type_of(volume: Option<&Value>) -> &'static str {
    volume
        .and_then(|v| v.pointer("/spec/volumeType"))
        .and_then(Value::as_str)
        .and_then(types::resolve)
        .unwrap_or(render::DEFAULT_TYPE)
}

/// `POST …/volumes`: `202` with the volume, status `creating`.
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Write)?;
    let body = common::json_body(DIALECT, &body)?;
    let req = envelope(&body, "volume")?;
    let plan = plan(&state, &ctx, req).await?;
    let wanted = plan.name.clone().unwrap_or_default();
    let (object_name, annotate) =
        common::object_name_for(&state, volume_kind(), Some(&ctx.project), "volume", &wanted)
            .await
            .map_err(api_fault)?;
    let mut annotations = Map::new();
    if annotate {
        annotations.insert(NAME_ANNOTATION.into(), Value::from(wanted));
    }
    annotations.insert(USER_ANNOTATION.into(), Value::from(ctx.user.clone()));
    let mut spec = json!({ "size": plan.size });
    if let Some((kind, name)) = &plan.source {
        spec["source"] = json!({"type": kind, "name": name});
    }
    if let Some(t) = plan.volume_type {
        spec["volumeType"] = Value::from(t);
    }
    if plan.bootable {
        spec["bootable"] = Value::Bool(true);
    }
    if plan.multiattach {
        spec["multiattach"] = Value::Bool(true);
    }
    if let Some(zone) = &plan.zone {
        spec["availabilityZone"] = Value::from(zone.clone());
    }
    if let Some(d) = &plan.description {
        spec["description"] = Value::from(d.clone());
    }
    if !plan.metadata.is_empty() {
        spec["metadata"] = json!(plan.metadata);
    }
    let object = json!({
        "apiVersion": cirrus_crds::API_VERSION,
        "kind": "Volume",
        "metadata": {"name": object_name, "annotations": annotations},
        "spec": spec,
    });
    let created = crate::resources::create(
        &state,
        crate::admission::Writer::Caller(&caller),
        volume_kind(),
        Some(&ctx.project),
        object,
        false,
    )
    .await
    .map_err(api_fault)?;
    tracing::info!(project = %ctx.project, volume = %common::name(&created), size = plan.size, "volume created through Cinder");
    let index = Index::load(&state, Some(&ctx.project)).await?;
    let base = common::base_url(&headers);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "volume": render::basic_volume(render::volume_body(&created, &index, &base, ctx.admin))
        })),
    )
        .into_response())
}

/// Parses Cinder's `metadata` list filter: a JSON object, or the Python dict repr the
/// CLI sends (`{'k': 'v'}`).
pub fn parse_metadata_filter(text: &str) -> Option<BTreeMap<String, String>> {
    let parsed: Value = serde_json::from_str(text)
        .or_else(|_| serde_json::from_str(&text.replace('\'', "\"")))
        .ok()?;
    parsed
        .as_object()?
        .iter()
        .map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// Sorts newest first (Cinder's default `created_at desc`), then pages with
/// `marker`/`limit`; also returns whether more items follow the page.
pub(crate) fn paginate(
    mut items: Vec<Value>,
    query: &HashMap<String, String>,
    what: &str,
) -> Result<(Vec<Value>, bool), Fault> {
    items.sort_by(|a, b| {
        let key = |o: &Value| {
            (
                o.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                common::uid(o),
            )
        };
        key(b).cmp(&key(a))
    });
    if let Some(marker) = query.get("marker").filter(|m| !m.is_empty()) {
        paging::skip_past_marker(&mut items, marker, |o| &common::uid(o) == marker).map_err(
            |_| {
                Fault::bad_request(
                    DIALECT,
                    format!("Marker {marker} could not be found among the {what}."),
                )
            },
        )?;
    }
    let text = query
        .get("limit")
        .map(String::as_str)
        .filter(|l| !l.is_empty());
    let limit = paging::limit(text, paging::LimitRule::default()).map_err(|e| {
        Fault::bad_request(
            DIALECT,
            format!("limit param must be an integer, got {:?}.", e.text()),
        )
    })?;
    let more = paging::truncate(&mut items, limit);
    Ok((items, more))
}

/// The `…_links` next link for a page whose last item is `last`: the query's parameters in
/// key order, then the marker.
pub(crate) fn next_link(
    base: &str,
    project: &str,
    path: &str,
    query: &HashMap<String, String>,
    last: &Value,
) -> Value {
    let mut pairs: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort();
    let last = common::uid(last);
    let qs = paging::next_query(pairs, &last);
    json!([{"rel": "next", "href": format!("{base}/volume/v3/{project}/{path}?{qs}")}])
}

/// `GET …/volumes` (ids, names, links) and, with `DETAIL`, `GET …/volumes/detail` (full
/// bodies): one handler, the two routes differ only in the body of each item.
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
    let metadata_filter = match query.get("metadata").filter(|m| !m.is_empty()) {
        None => None,
        Some(text) => Some(parse_metadata_filter(text).ok_or_else(|| {
            Fault::bad_request(
                DIALECT,
                format!("Invalid metadata filter {text:?}: give a JSON object of strings."),
            )
        })?),
    };
    let wanted_project = query
        .get("project_id")
        .filter(|_| ctx.admin && all)
        .cloned();
    let items: Vec<Value> = index
        .volumes()
        .iter()
        .filter(|v| {
            query
                .get("name")
                .is_none_or(|n| &common::display_name(v) == n)
        })
        .filter(|v| {
            query
                .get("status")
                .is_none_or(|s| render::status_of(v, &index).eq_ignore_ascii_case(s))
        })
        .filter(|v| wanted_project.as_ref().is_none_or(|p| &project_of(v) == p))
        .filter(|v| {
            metadata_filter.as_ref().is_none_or(|m| {
                m.iter().all(|(k, want)| {
                    v.pointer("/spec/metadata")
                        .and_then(|md| md.get(k))
                        .and_then(Value::as_str)
                        == Some(want.as_str())
                })
            })
        })
        .cloned()
        .collect();
    let (page, more) = paginate(items, &query, "volumes")?;
    let base = common::base_url(&headers);
    let bodies: Vec<Value> = page
        .iter()
        .map(|v| {
            if detail {
                render::volume_body(v, &index, &base, ctx.admin)
            } else {
                render::volume_summary(v, &base)
            }
        })
        .collect();
    let mut body = json!({ "volumes": bodies });
    if more && let Some(last) = page.last() {
        let path = if detail { "volumes/detail" } else { "volumes" };
        body["volumes_links"] = next_link(&base, &ctx.project, path, &query, last);
    }
    Ok(Json(body).into_response())
}

/// The full body of `volume`, read with its project's index.
pub(crate) async fn answer(
    state: &ApiState,
    ctx: &Ctx,
    volume: &Value,
    headers: &HeaderMap,
) -> Result<Value, Fault> {
    let index = Index::load(state, Some(&project_of(volume))).await?;
    Ok(render::volume_body(
        volume,
        &index,
        &common::base_url(headers),
        ctx.admin,
    ))
}

/// `GET …/volumes/{id}`.
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project_id, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Read)?;
    let volume = volume_or_404(&state, &ctx, &id).await?;
    Ok(Json(json!({ "volume": answer(&state, &ctx, &volume, &headers).await? })).into_response())
}

/// `PUT …/volumes/{id}` with `{"volume": {name?, description?, metadata?}}`.
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project_id, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Write)?;
    let body = common::json_body(DIALECT, &body)?;
    let req = envelope(&body, "volume")?;
    let (new_name, description) = name_and_description(req)?;
    let new_metadata = metadata_field(req, "metadata")?;
    let volume = volume_or_404(&state, &ctx, &id).await?;
    let updated = modify(
        &state,
        &ctx.caller,
        volume_kind(),
        &project_of(&volume),
        &common::name(&volume),
        |o| {
            apply_common_update(
                o,
                new_name.as_deref(),
                description.as_ref(),
                new_metadata.as_ref(),
            );
            Ok(())
        },
    )
    .await?;
    let body = render::basic_volume(answer(&state, &ctx, &updated, &headers).await?);
    Ok(Json(json!({ "volume": body })).into_response())
}

/// The `name` and `description` an update body sets (`display_name`, `display_description`
/// are the v1 spellings of the same): `None` when absent, a `null` name becomes `""` and a
/// `null` description (`Some(None)`) removes it. Volumes and snapshots read them alike; the
/// result is what [`apply_common_update`] takes.
pub(crate) fn name_and_description(
    req: &Value,
) -> Result<(Option<String>, Option<Option<String>>), Fault> {
    let name = match req.get("name").or_else(|| req.get("display_name")) {
        None => None,
        Some(Value::Null) => Some(String::new()),
        Some(_) => string_field(req, "name")?.or(string_field(req, "display_name")?),
    };
    let description = match req
        .get("description")
        .or_else(|| req.get("display_description"))
    {
        None => None,
        Some(Value::Null) => Some(None),
        Some(_) => {
            Some(string_field(req, "description")?.or(string_field(req, "display_description")?))
        }
    };
    Ok((name, description))
}

/// Sets the OpenStack name annotation, `spec.description` and `spec.metadata` of an object
/// (volumes and snapshots update the same way).
pub(crate) fn apply_common_update(
    object: &mut Value,
    name: Option<&str>,
    description: Option<&Option<String>>,
    metadata: Option<&BTreeMap<String, String>>,
) {
    if let Some(name) = name {
        let meta = &mut object["metadata"];
        if !meta["annotations"].is_object() {
            meta["annotations"] = json!({});
        }
        meta["annotations"][NAME_ANNOTATION] = Value::from(name);
    }
    match description {
        Some(Some(d)) => object["spec"]["description"] = Value::from(d.clone()),
        Some(None) => {
            if let Some(spec) = object["spec"].as_object_mut() {
                spec.remove("description");
            }
        }
        None => {}
    }
    if let Some(m) = metadata {
        object["spec"]["metadata"] = json!(m);
    }
}

/// `DELETE …/volumes/{id}[?cascade=true]`: `202`; `400` while a live server uses it or it
/// has snapshots (unless `cascade`, which deletes them first).
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project_id, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Write)?;
    let volume = volume_or_404(&state, &ctx, &id).await?;
    remove(&state, &volume, query_flag(&query, "cascade")).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Cinder's refusal to delete a volume that is attached or has snapshots.
fn refuse_delete(id: &str, why: &str) -> Fault {
    Fault::bad_request(
        DIALECT,
        format!(
            "Invalid volume: Volume status must be available or error or error_restoring or \
             error_extending or error_managing and must not be migrating, attached, belong to a \
             group, have snapshots, awaiting a transfer, or be disassociated from snapshots after \
             volume transfer. Volume {id}: {why}"
        ),
    )
}

/// Deletes `volume` (and with `cascade` its snapshots) through the native admission.
pub(crate) async fn remove(state: &ApiState, volume: &Value, cascade: bool) -> Result<(), Fault> {
    let id = common::uid(volume);
    let project = project_of(volume);
    let name = common::name(volume);
    if !render::is_live(volume) {
        return Ok(());
    }
    let index = Index::load(state, Some(&project)).await?;
    let users = index.users_of(&project, &name);
    if let Some(user) = users.first() {
        return Err(refuse_delete(
            &id,
            &format!(
                "it is attached to server {}; detach it first.",
                common::uid(user)
            ),
        ));
    }
    let snapshots: Vec<&Value> = index
        .snapshots()
        .iter()
        .filter(|s| project_of(s) == project)
        .filter(|s| s.pointer("/spec/volume").and_then(Value::as_str) == Some(name.as_str()))
        .filter(|s| render::is_live(s))
        .collect();
    if !snapshots.is_empty() && !cascade {
        let ids: Vec<String> = snapshots.iter().map(|s| common::uid(s)).collect();
        return Err(refuse_delete(
            &id,
            &format!(
                "it has snapshots ({}); delete them first or pass cascade=true.",
                ids.join(", ")
            ),
        ));
    }
    for snap in snapshots {
        crate::resources::delete(
            state,
            snapshot_kind(),
            Some(&project),
            &common::name(snap),
            false,
        )
        .await
        .map_err(api_fault)?;
    }
    match crate::resources::delete(state, volume_kind(), Some(&project), &name, false).await {
        Ok(_) => {}
        Err(e) if e.code() == StatusCode::CONFLICT && e.reason() == "InUse" => {
            return Err(refuse_delete(&id, e.message()));
        }
        Err(e) if e.code() == StatusCode::NOT_FOUND => {}
        Err(e) => return Err(api_fault(e)),
    }
    tracing::info!(%project, volume = %name, cascade, "volume deleted through Cinder");
    Ok(())
}

#[cfg(test)]
mod tests;
