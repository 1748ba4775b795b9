//! Nova's flavors (`/compute/v2.1/flavors...`) over `Flavor` objects.
//!
//! A flavor's id is its object name (Nova lets flavor ids be any string); its OpenStack name
//! is [`common::display_name`]. `openstack flavor create m1.tiny` without `--id` gets the id
//! `m1.tiny` when that is a free object name, else a generated one. Bodies follow tempest's
//! compute v2.1 schemas (no `description` or `extra_specs` in the flavor body: those are
//! microversions 2.55 and 2.61). Writes (create, delete, extra specs) need a cloud admin.

use cirrus_crds::Resource as _;
use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cirrus_auth::Action;
use cirrus_crds::KindInfo;
use serde_json::{Map, Value, json};

use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common::{self, NAME_ANNOTATION};
use crate::openstack::fault::{Dialect, Fault};
use crate::openstack::paging;

const D: Dialect = Dialect::Compute;

/// Nova's largest page.
const MAX_LIMIT: usize = 1000;
/// How Nova reads a flavor list's `limit`: [`MAX_LIMIT`] unless given, at most that.
const LIMIT: paging::LimitRule = paging::LimitRule {
    default: Some(MAX_LIMIT),
    max: Some(MAX_LIMIT),
    zero_means_all: false,
};

/// The flavor routes under `/compute/v2.1`.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/compute/v2.1/flavors", get(list::<false>).post(create))
        .route("/compute/v2.1/flavors/detail", get(list::<true>))
        .route("/compute/v2.1/flavors/{id}", get(show).delete(delete))
        .route(
            "/compute/v2.1/flavors/{id}/os-flavor-access",
            get(flavor_access),
        )
        .route(
            "/compute/v2.1/flavors/{id}/os-extra_specs",
            get(extra_specs_list).post(extra_specs_create),
        )
        .route(
            "/compute/v2.1/flavors/{id}/os-extra_specs/{key}",
            get(extra_spec_show)
                .put(extra_spec_update)
                .delete(extra_spec_delete),
        )
}

fn kind() -> &'static KindInfo {
    cirrus_crds::Flavor::info()
}

fn api_error(e: crate::error::ApiError) -> Fault {
    Fault::from_api(D, e)
}

fn not_found(id: &str) -> Fault {
    Fault::not_found(D, format!("Flavor {id} could not be found."))
}

fn admin_only(caller: &Caller) -> Result<(), Fault> {
    caller.check(Action::Write, None).map_err(|_| {
        Fault::forbidden(
            D,
            "Policy doesn't allow managing flavors: it needs the admin role.",
        )
    })
}

/// The flavor body of Nova 2.1 for `flavor` (a `Flavor` object).
pub fn render(flavor: &Value, base: &str) -> Value {
    let id = common::name(flavor);
    let spec = &flavor["spec"];
    let num = |key: &str| spec[key].as_u64().unwrap_or(0);
    let swap = num("swap");
    json!({
        "id": id,
        "name": common::display_name(flavor),
        "links": links(base, &id),
        "ram": num("ram"),
        "vcpus": num("vcpus"),
        "disk": num("disk"),
        "swap": if swap == 0 { json!("") } else { json!(swap) },
        "OS-FLV-EXT-DATA:ephemeral": num("ephemeral"),
        "OS-FLV-DISABLED:disabled": spec["disabled"].as_bool().unwrap_or(false),
        "os-flavor-access:is_public": is_public(flavor),
        "rxtx_factor": spec["rxtxFactor"].as_f64().unwrap_or(1.0),
    })
}

fn links(base: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base}/compute/v2.1/flavors/{id}")},
        {"rel": "bookmark", "href": format!("{base}/compute/flavors/{id}")},
    ])
}

fn is_public(flavor: &Value) -> bool {
    flavor["spec"]["public"].as_bool().unwrap_or(true)
}

/// Query parameters of the flavor lists.
#[derive(Debug, Default, serde::Deserialize)]
struct ListQuery {
    #[serde(rename = "minRam")]
    min_ram: Option<String>,
    #[serde(rename = "minDisk")]
    min_disk: Option<String>,
    is_public: Option<String>,
    limit: Option<String>,
    marker: Option<String>,
    sort_key: Option<String>,
    sort_dir: Option<String>,
}

/// A string Nova's `boolean` parameter type accepts (`True`, `yes`, `on`, `1`, ... and their
/// negatives, in the cases Nova lists), as a boolean.
fn nova_boolean(text: &str) -> Option<bool> {
    match text {
        "True" | "TRUE" | "true" | "1" | "ON" | "On" | "on" | "YES" | "Yes" | "yes" => Some(true),
        "False" | "FALSE" | "false" | "0" | "OFF" | "Off" | "off" | "NO" | "No" | "no" => {
            Some(false)
        }
        _ => None,
    }
}

/// Which flavors `is_public` selects: `Some(true)` public only, `Some(false)` private only,
/// `None` all.
fn parse_is_public(value: Option<&str>) -> Result<Option<bool>, Fault> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(Some(true)),
        Some("none") => Ok(None),
        Some("true" | "t" | "1" | "yes" | "y" | "on") => Ok(Some(true)),
        Some("false" | "f" | "0" | "no" | "n" | "off") => Ok(Some(false)),
        Some(other) => Err(Fault::bad_request(
            D,
            format!("Invalid is_public filter [{other}]"),
        )),
    }
}

fn parse_count(field: &str, value: Option<&str>) -> Result<Option<u64>, Fault> {
    value
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                Fault::bad_request(D, format!("Invalid {field} filter [{v}]: not a number"))
            })
        })
        .transpose()
}

/// Filters, sorts and pages `flavors` as Nova does; returns the page and whether a next
/// page link is due.
fn select(
    flavors: Vec<Value>,
    query: &ListQuery,
    admin: bool,
) -> Result<(Vec<Value>, bool), Fault> {
    let public = if admin {
        parse_is_public(query.is_public.as_deref())?
    } else {
        Some(true)
    };
    let min_ram = parse_count("minRam", query.min_ram.as_deref())?;
    let min_disk = parse_count("minDisk", query.min_disk.as_deref())?;
    let limit = paging::limit(query.limit.as_deref(), LIMIT).map_err(|e| {
        Fault::bad_request(D, format!("limit must be an integer, got {:?}", e.text()))
    })?;
    let mut selected: Vec<Value> = flavors
        .into_iter()
        .filter(|f| f.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|f| public.is_none_or(|p| is_public(f) == p))
        .filter(|f| admin || !f["spec"]["disabled"].as_bool().unwrap_or(false))
        .filter(|f| min_ram.is_none_or(|m| f["spec"]["ram"].as_u64().unwrap_or(0) >= m))
        .filter(|f| min_disk.is_none_or(|m| f["spec"]["disk"].as_u64().unwrap_or(0) >= m))
        .collect();
    sort(&mut selected, query)?;
    if let Some(marker) = query.marker.as_deref() {
        paging::skip_past_marker(&mut selected, marker, |f| common::name(f) == marker)
            .map_err(|_| Fault::bad_request(D, format!("marker [{marker}] not found")))?;
    }
    let more = paging::truncate(&mut selected, limit);
    Ok((selected, more))
}

fn sort(flavors: &mut [Value], query: &ListQuery) -> Result<(), Fault> {
    let key = query.sort_key.as_deref().unwrap_or("flavorid");
    let spec_field = match key {
        "flavorid" | "id" => None,
        "name" => Some("name"),
        "memory_mb" => Some("ram"),
        "vcpus" => Some("vcpus"),
        "root_gb" => Some("disk"),
        "ephemeral_gb" => Some("ephemeral"),
        "swap" => Some("swap"),
        "rxtx_factor" => Some("rxtxFactor"),
        "created_at" => Some("created_at"),
        other => {
            return Err(Fault::bad_request(
                D,
                format!(
                    "Invalid sort_key {other:?}: use flavorid, name, memory_mb, vcpus, root_gb, ephemeral_gb, swap, rxtx_factor or created_at"
                ),
            ));
        }
    };
    let descending = match query.sort_dir.as_deref() {
        None => false,
        Some(dir) => paging::descending(dir).map_err(|paging::BadDirection(other)| {
            Fault::bad_request(D, format!("Invalid sort_dir {other:?}: use asc or desc"))
        })?,
    };
    flavors.sort_by(|a, b| {
        let ordering = match spec_field {
            None => common::name(a).cmp(&common::name(b)),
            Some("name") => common::display_name(a).cmp(&common::display_name(b)),
            Some("created_at") => a
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .cmp(
                    &b.pointer("/metadata/creationTimestamp")
                        .and_then(Value::as_str),
                ),
            Some(field) => {
                let num = |v: &Value| v["spec"][field].as_f64().unwrap_or(0.0);
                num(a).total_cmp(&num(b))
            }
        }
        .then_with(|| common::name(a).cmp(&common::name(b)));
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    });
    Ok(())
}

async fn list_page(
    state: &ApiState,
    caller: &Caller,
    headers: &HeaderMap,
    query: &ListQuery,
    detail: bool,
) -> Result<Response, Fault> {
    let flavors = common::list(state, kind(), None).await.map_err(api_error)?;
    let (page, more) = select(flavors, query, caller.is_cloud_admin())?;
    let base = common::base_url(headers);
    let items: Vec<Value> = page
        .iter()
        .map(|f| {
            if detail {
                render(f, &base)
            } else {
                let id = common::name(f);
                json!({"id": id, "name": common::display_name(f), "links": links(&base, &id)})
            }
        })
        .collect();
    let mut body = json!({ "flavors": items });
    if more && let Some(last) = page.last() {
        let path = if detail { "flavors/detail" } else { "flavors" };
        let given = [
            ("limit", &query.limit),
            ("minRam", &query.min_ram),
            ("minDisk", &query.min_disk),
            ("is_public", &query.is_public),
            ("sort_key", &query.sort_key),
            ("sort_dir", &query.sort_dir),
        ];
        let last = common::name(last);
        let next = paging::next_query(
            given
                .iter()
                .filter_map(|(key, value)| Some((*key, value.as_deref()?))),
            &last,
        );
        body["flavors_links"] = json!([{
            "rel": "next",
            "href": format!("{base}/compute/v2.1/{path}?{next}"),
        }]);
    }
    Ok(Json(body).into_response())
}

/// `GET /flavors` (ids, names and links) and, with `DETAIL`, `GET /flavors/detail` (whole
/// flavors): one handler for both routes.
async fn list<const DETAIL: bool>(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, Fault> {
    list_page(&state, &caller, &headers, &query, DETAIL).await
}

/// The flavor with id `id` the caller may see (private ones only for admins).
async fn find(state: &ApiState, caller: &Caller, id: &str) -> Result<Value, Fault> {
    if cirrus_crds::validation::name_problem(id).is_some() {
        return Err(not_found(id));
    }
    match state.store.get(kind(), None, id).await {
        Ok(flavor) if is_public(&flavor) || caller.is_cloud_admin() => Ok(flavor),
        Ok(_) | Err(cirrus_store::objects::ObjectError::NotFound { .. }) => Err(not_found(id)),
        Err(e) => Err(api_error(e.into())),
    }
}

/// `GET /flavors/{id}`.
async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let flavor = find(&state, &caller, &id).await?;
    let base = common::base_url(&headers);
    Ok(Json(json!({ "flavor": render(&flavor, &base) })).into_response())
}

/// What a create request asks for, validated.
#[derive(Debug, PartialEq)]
struct NewFlavor {
    name: String,
    id: Option<String>,
    ram: u64,
    vcpus: u64,
    disk: u64,
    ephemeral: u64,
    swap: u64,
    rxtx_factor: f64,
    public: bool,
    description: Option<String>,
}

/// An integer field of a request: a JSON number or a string of digits, at least `min`.
fn integer(body: &Map<String, Value>, field: &str, min: u64) -> Result<Option<u64>, Fault> {
    let bad = |why: &str| {
        Fault::bad_request(
            D,
            format!("Invalid input for field/attribute {field}. {why}"),
        )
    };
    let Some(value) = body.get(field) else {
        return Ok(None);
    };
    let parsed = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match parsed {
        Some(n) if n > common::MAX_INT => Err(bad(&format!(
            "Value {n} is greater than the maximum of {}.",
            common::MAX_INT
        ))),
        Some(n) if n >= min => Ok(Some(n)),
        Some(n) => Err(bad(&format!("Value {n} is less than the minimum {min}."))),
        None => Err(bad(&format!(
            "Value {value} is not a non-negative integer."
        ))),
    }
}

/// Validates the body of `POST /flavors`.
fn parse_create(body: &Value) -> Result<NewFlavor, Fault> {
    let flavor = body
        .get("flavor")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            Fault::bad_request(
                D,
                "Invalid input: 'flavor' is a required property and must be an object.",
            )
        })?;
    const KNOWN: &[&str] = &[
        "name",
        "id",
        "ram",
        "vcpus",
        "disk",
        "OS-FLV-EXT-DATA:ephemeral",
        "swap",
        "rxtx_factor",
        "os-flavor-access:is_public",
        "description",
    ];
    if let Some(extra) = flavor.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(Fault::bad_request(
            D,
            format!(
                "Invalid input for field/attribute flavor. Additional properties are not allowed ('{extra}' was unexpected)"
            ),
        ));
    }
    let name = match flavor.get("name") {
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= 255 && s.trim() == s => {
            s.clone()
        }
        Some(_) => {
            return Err(Fault::bad_request(
                D,
                "Invalid input for field/attribute name: must be 1 to 255 characters without leading or trailing whitespace.",
            ));
        }
        None => {
            return Err(Fault::bad_request(
                D,
                "Invalid input for field/attribute flavor. 'name' is a required property",
            ));
        }
    };
    // Nova takes a number as an id too (tempest sends integers) and stores its text.
    let numeric = flavor
        .get("id")
        .and_then(Value::as_u64)
        .map(|n| Value::String(n.to_string()));
    let id = match numeric.as_ref().or(flavor.get("id")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "auto" => None,
        Some(Value::String(s)) => {
            if let Some(problem) = cirrus_crds::validation::name_problem(s) {
                return Err(Fault::bad_request(
                    D,
                    format!("Invalid input for field/attribute id: {s:?} {problem}"),
                ));
            }
            Some(s.clone())
        }
        Some(other) => {
            return Err(Fault::bad_request(
                D,
                format!("Invalid input for field/attribute id: {other} is not a string"),
            ));
        }
    };
    let required = |field: &str, min: u64| {
        integer(flavor, field, min)?.ok_or_else(|| {
            Fault::bad_request(
                D,
                format!(
                    "Invalid input for field/attribute flavor. '{field}' is a required property"
                ),
            )
        })
    };
    let ram = required("ram", 1)?;
    let vcpus = required("vcpus", 1)?;
    let disk = required("disk", 0)?;
    let ephemeral = integer(flavor, "OS-FLV-EXT-DATA:ephemeral", 0)?.unwrap_or(0);
    let swap = match flavor.get("swap") {
        Some(Value::String(s)) if s.is_empty() => 0,
        _ => integer(flavor, "swap", 0)?.unwrap_or(0),
    };
    let rxtx_factor = match flavor.get("rxtx_factor") {
        None => 1.0,
        Some(value) => value
            .as_f64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|f| *f > 0.0 && f.is_finite())
            .ok_or_else(|| {
                Fault::bad_request(
                    D,
                    format!("Invalid input for field/attribute rxtx_factor: {value} is not a positive number"),
                )
            })?,
    };
    let public = match flavor.get("os-flavor-access:is_public") {
        None => true,
        Some(Value::Bool(b)) => *b,
        // Nova's boolean parameter type also takes these strings.
        Some(Value::String(s)) if nova_boolean(s).is_some() => nova_boolean(s).unwrap_or(true),
        Some(other) => {
            return Err(Fault::bad_request(
                D,
                format!(
                    "Invalid input for field/attribute os-flavor-access:is_public: {other} is not a boolean"
                ),
            ));
        }
    };
    let description = match flavor.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(Fault::bad_request(
                D,
                format!("Invalid input for field/attribute description: {other} is not a string"),
            ));
        }
    };
    Ok(NewFlavor {
        name,
        id,
        ram,
        vcpus,
        disk,
        ephemeral,
        swap,
        rxtx_factor,
        public,
        description,
    })
}

/// `POST /flavors` (admin): creates a Flavor; `409` when the id or the name is taken.
async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Fault> {
    admin_only(&caller)?;
    let new = parse_create(&common::json_body(D, &body)?)?;
    let existing = common::list(&state, kind(), None)
        .await
        .map_err(api_error)?;
    if existing.iter().any(|f| common::display_name(f) == new.name) {
        return Err(Fault::conflict(
            D,
            format!("Flavor with name {} already exists.", new.name),
        ));
    }
    let (object_name, _) = match &new.id {
        Some(id) => {
            if existing.iter().any(|f| &common::name(f) == id) {
                return Err(Fault::conflict(
                    D,
                    format!("Flavor with ID {id} already exists."),
                ));
            }
            (id.clone(), true)
        }
        None => common::object_name_for(&state, kind(), None, "flavor", &new.name)
            .await
            .map_err(api_error)?,
    };
    let mut metadata = json!({ "name": object_name });
    if object_name != new.name {
        metadata["annotations"] = json!({ NAME_ANNOTATION: new.name });
    }
    let mut spec = json!({
        "vcpus": new.vcpus,
        "ram": new.ram,
        "disk": new.disk,
        "ephemeral": new.ephemeral,
        "swap": new.swap,
        "rxtxFactor": new.rxtx_factor,
        "public": new.public,
    });
    if let Some(description) = &new.description {
        spec["description"] = json!(description);
    }
    let object = json!({
        "apiVersion": cirrus_crds::API_VERSION,
        "kind": "Flavor",
        "metadata": metadata,
        "spec": spec,
    });
    let created = crate::resources::create(
        &state,
        crate::admission::Writer::Caller(&caller),
        kind(),
        None,
        object,
        false,
    )
    .await
    .map_err(|e| {
        if e.code() == StatusCode::CONFLICT {
            Fault::conflict(D, format!("Flavor with ID {object_name} already exists."))
        } else {
            api_error(e)
        }
    })?;
    tracing::info!(flavor = %object_name, name = %new.name, "flavor created");
    let base = common::base_url(&headers);
    Ok(Json(json!({ "flavor": render(&created, &base) })).into_response())
}

/// `DELETE /flavors/{id}` (admin): `202`.
async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    admin_only(&caller)?;
    find(&state, &caller, &id).await?;
    crate::resources::delete(&state, kind(), None, &id, false)
        .await
        .map_err(api_error)?;
    tracing::info!(flavor = %id, "flavor deleted");
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET /flavors/{id}/os-flavor-access`: private flavors have no per-project access list
/// here (only admins use them), so the list is empty; public ones answer `404` as in Nova.
async fn flavor_access(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let flavor = find(&state, &caller, &id).await?;
    if is_public(&flavor) {
        return Err(Fault::not_found(
            D,
            "Access list not available for public flavors.",
        ));
    }
    Ok(Json(json!({ "flavor_access": [] })).into_response())
}

fn specs_of(flavor: &Value) -> BTreeMap<String, String> {
    flavor["spec"]["extraSpecs"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Extra spec values as Nova accepts them: strings, numbers and booleans (stored as text).
fn spec_value(key: &str, value: &Value) -> Result<String, Fault> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => {
            return Err(Fault::bad_request(
                D,
                format!(
                    "Invalid input for field/attribute extra_specs: the value of {key:?} must be a string, number or boolean, got {other}"
                ),
            ));
        }
    };
    if key.is_empty() || key.len() > 255 || text.len() > 255 {
        return Err(Fault::bad_request(
            D,
            format!(
                "Invalid input for field/attribute extra_specs: key {key:?} and its value must be 1 to 255 characters"
            ),
        ));
    }
    Ok(text)
}

/// Writes `change` into the flavor's extra specs (`None` removes the key), conditional on
/// the version read.
async fn write_specs(
    state: &ApiState,
    caller: &Caller,
    flavor: &Value,
    change: &BTreeMap<String, Option<String>>,
) -> Result<Value, Fault> {
    let specs: Map<String, Value> = change
        .iter()
        .map(|(k, v)| (k.clone(), v.as_ref().map_or(Value::Null, |v| json!(v))))
        .collect();
    let patch = json!({
        "metadata": {"resourceVersion": flavor["metadata"]["resourceVersion"]},
        "spec": {"extraSpecs": specs},
    });
    let id = common::name(flavor);
    crate::resources::write(
        state,
        crate::admission::Writer::Caller(caller),
        kind(),
        None,
        &id,
        crate::resources::Change::MergePatch(&patch),
        cirrus_store::objects::Part::Main,
        false,
    )
    .await
    .map_err(api_error)
}

/// `GET /flavors/{id}/os-extra_specs`.
async fn extra_specs_list(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let flavor = find(&state, &caller, &id).await?;
    Ok(Json(json!({ "extra_specs": specs_of(&flavor) })).into_response())
}

/// `POST /flavors/{id}/os-extra_specs` (admin): sets the given keys, keeps the others.
async fn extra_specs_create(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    admin_only(&caller)?;
    let body = common::json_body(D, &body)?;
    let given = body
        .get("extra_specs")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            Fault::bad_request(
                D,
                "Invalid input for field/attribute extra_specs: 'extra_specs' is a required object",
            )
        })?;
    let mut change = BTreeMap::new();
    for (key, value) in given {
        change.insert(key.clone(), Some(spec_value(key, value)?));
    }
    let flavor = find(&state, &caller, &id).await?;
    write_specs(&state, &caller, &flavor, &change).await?;
    let echoed: BTreeMap<_, _> = change
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    Ok(Json(json!({ "extra_specs": echoed })).into_response())
}

/// `GET /flavors/{id}/os-extra_specs/{key}`.
async fn extra_spec_show(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response, Fault> {
    let flavor = find(&state, &caller, &id).await?;
    let value = specs_of(&flavor).remove(&key).ok_or_else(|| {
        Fault::not_found(D, format!("Flavor {id} has no extra specs with key {key}."))
    })?;
    Ok(Json(json!({ key: value })).into_response())
}

/// `PUT /flavors/{id}/os-extra_specs/{key}` (admin): body `{key: value}` naming the same key.
async fn extra_spec_update(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Fault> {
    admin_only(&caller)?;
    let body = common::json_body(D, &body)?;
    let given = body.as_object().filter(|m| m.len() == 1).ok_or_else(|| {
        Fault::bad_request(D, "Request body must hold exactly one key/value pair.")
    })?;
    let value = match given.get(&key) {
        Some(value) => spec_value(&key, value)?,
        None => {
            return Err(Fault::bad_request(D, "Request body and URI mismatch"));
        }
    };
    let flavor = find(&state, &caller, &id).await?;
    write_specs(
        &state,
        &caller,
        &flavor,
        &BTreeMap::from([(key.clone(), Some(value.clone()))]),
    )
    .await?;
    Ok(Json(json!({ key: value })).into_response())
}

/// `DELETE /flavors/{id}/os-extra_specs/{key}` (admin).
async fn extra_spec_delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response, Fault> {
    admin_only(&caller)?;
    let flavor = find(&state, &caller, &id).await?;
    if !specs_of(&flavor).contains_key(&key) {
        return Err(Fault::not_found(
            D,
            format!("Flavor {id} has no extra specs with key {key}."),
        ));
    }
    write_specs(&state, &caller, &flavor, &BTreeMap::from([(key, None)])).await?;
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests;
