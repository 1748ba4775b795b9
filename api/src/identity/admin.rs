//! What the Keystone v3 resource handlers share (body parsing with errors naming the field,
//! Keystone's reply shapes, the admin check), the domains (the one `default`), and the
//! catalog's services, endpoints and regions. Projects, users and role assignments have
//! modules of their own ([`super::projects`], [`super::users`], [`super::assignments`]).
//!
//! Policy follows Keystone's defaults: cloud admins manage everything; a user may read
//! itself, its own projects and its own assignments.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cirrus_crds::{Resource, RoleBinding, RoleBindingSpec};
use cirrus_store::objects::{Api, ObjectError, Part};
use serde_json::{Map, Value, json};

use super::KeystoneError;
use super::discovery::base_url;
use crate::ApiState;
use crate::admission::Writer;
use crate::auth::Caller;
use crate::resources::{self, Change};

/// The answer of a Keystone handler.
pub(super) type Reply = Result<Response, KeystoneError>;

/// The one domain's id.
pub(super) const DOMAIN: &str = "default";

pub(super) fn store_err(e: ObjectError) -> KeystoneError {
    match e {
        ObjectError::NotFound { .. } => KeystoneError::not_found(e.to_string()),
        ObjectError::AlreadyExists { .. }
        | ObjectError::Conflict { .. }
        | ObjectError::PreconditionFailed { .. } => KeystoneError {
            code: StatusCode::CONFLICT,
            message: e.to_string(),
        },
        ObjectError::Invalid { .. } => KeystoneError::bad_request(e.to_string()),
        other => KeystoneError::internal(other.to_string()),
    }
}

pub(super) fn require_admin(caller: &Caller) -> Result<(), KeystoneError> {
    if caller.is_cloud_admin() {
        Ok(())
    } else {
        Err(KeystoneError::forbidden(
            "You are not authorized to perform the requested action: this needs the admin role.",
        ))
    }
}

pub(super) fn parse_body(body: &Bytes, key: &str) -> Result<Map<String, Value>, KeystoneError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| KeystoneError::bad_request(format!("request body is not JSON: {e}")))?;
    match value.get(key) {
        Some(Value::Object(map)) => Ok(map.clone()),
        _ => Err(KeystoneError::bad_request(format!(
            "'{key}' is a required property and must be an object"
        ))),
    }
}

pub(super) fn opt_str(
    map: &Map<String, Value>,
    field: &str,
    what: &str,
) -> Result<Option<String>, KeystoneError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(KeystoneError::bad_request(format!(
            "Invalid input for field '{what}.{field}': must be a string"
        ))),
    }
}

pub(super) fn opt_bool(
    map: &Map<String, Value>,
    field: &str,
    what: &str,
) -> Result<Option<bool>, KeystoneError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(KeystoneError::bad_request(format!(
            "Invalid input for field '{what}.{field}': must be a boolean"
        ))),
    }
}

/// `{what}.domain_id` names the one domain or none; another is Keystone's 404 for an unknown
/// domain (only `default` exists).
pub(super) fn check_domain(map: &Map<String, Value>, what: &str) -> Result<(), KeystoneError> {
    match opt_str(map, "domain_id", what)? {
        None => Ok(()),
        Some(d) if d == DOMAIN => Ok(()),
        Some(d) => Err(KeystoneError::not_found(format!(
            "Could not find domain: {d} ({what}.domain_id: only the domain 'default' exists)."
        ))),
    }
}

/// `{what}.name` of a create or update body, checked against Keystone's rules for names of
/// at most `max` characters.
pub(super) fn valid_name(
    map: &Map<String, Value>,
    what: &str,
    max: usize,
) -> Result<Option<String>, KeystoneError> {
    let name = opt_str(map, "name", what)?;
    if let Some(problem) = name
        .as_deref()
        .and_then(|n| cirrus_crds::keystone::name_problem(n, max))
    {
        return Err(KeystoneError::bad_request(format!(
            "Invalid input for field '{what}.name': {problem}"
        )));
    }
    Ok(name)
}

/// Every role binding.
pub(super) async fn bindings(state: &ApiState) -> Result<Vec<RoleBinding>, KeystoneError> {
    Api::<RoleBinding>::all(state.store.clone())
        .list()
        .await
        .map_err(store_err)
}

fn parsed<K: Resource>(object: Value) -> Result<K, KeystoneError> {
    serde_json::from_value(object).map_err(|e| {
        KeystoneError::internal(format!(
            "a stored {} does not parse: {e}",
            K::info().singular
        ))
    })
}

/// Creates the cluster-scoped `object` through the write layer every front end uses (so
/// admission's rules apply); the object as stored.
pub(super) async fn create_object<K: Resource>(
    state: &ApiState,
    caller: &Caller,
    object: &K,
) -> Result<K, KeystoneError> {
    let value = serde_json::to_value(object).map_err(|e| KeystoneError::internal(e.to_string()))?;
    let created =
        resources::create(state, Writer::Caller(caller), K::info(), None, value, false).await?;
    parsed(created)
}

/// Merges `spec` into the spec of the cluster-scoped object `id` as `writer` through the
/// same write layer (a `null` removes a field); the object as stored.
pub(super) async fn patch_spec<K: Resource>(
    state: &ApiState,
    writer: Writer<'_>,
    id: &str,
    spec: Map<String, Value>,
) -> Result<K, KeystoneError> {
    let patch = json!({ "spec": spec });
    let written = resources::write(
        state,
        writer,
        K::info(),
        None,
        id,
        Change::MergePatch(&patch),
        Part::Main,
        false,
    )
    .await?;
    parsed(written)
}

/// Deletes the cluster-scoped object `id` and then the role bindings `bound` picks, through
/// the same write layer (which revokes what the deletions take away).
pub(super) async fn delete_with_bindings<K: Resource>(
    state: &ApiState,
    id: &str,
    bound: impl Fn(&RoleBindingSpec) -> bool,
) -> Result<(), KeystoneError> {
    resources::delete(state, K::info(), None, id, false).await?;
    for b in bindings(state).await? {
        if bound(&b.spec) {
            resources::delete(state, RoleBinding::info(), None, &b.metadata.name, false)
                .await
                .ok();
        }
    }
    Ok(())
}

pub(super) fn meta(name: &str) -> cirrus_crds::meta::ObjectMeta {
    cirrus_crds::meta::ObjectMeta {
        name: name.to_string(),
        ..Default::default()
    }
}

pub(super) fn created(key: &str, value: Value) -> Response {
    (StatusCode::CREATED, Json(json!({ key: value }))).into_response()
}

pub(super) fn ok(key: &str, value: Value) -> Response {
    Json(json!({ key: value })).into_response()
}

pub(super) fn list_reply(key: &str, items: Vec<Value>, base: &str, path: &str) -> Response {
    Json(json!({
        key: items,
        "links": {"self": format!("{base}/identity/v3/{path}"), "previous": null, "next": null},
    }))
    .into_response()
}

/// Keystone's list filters on projects and users: `name`, `enabled`, `domain_id` (everything
/// is in the one domain).
pub(super) fn matches_filters(q: &BTreeMap<String, String>, name: &str, enabled: bool) -> bool {
    q.get("name").is_none_or(|n| n == name)
        && q.get("enabled")
            .is_none_or(|e| (e != "false" && e != "0") == enabled)
        && q.get("domain_id").is_none_or(|d| d == DOMAIN)
}

// ---- domains ----

fn domain_json(base: &str) -> Value {
    json!({
        "id": DOMAIN, "name": "Default", "enabled": true,
        "description": "The default domain", "tags": [], "options": {},
        "links": {"self": format!("{base}/identity/v3/domains/{DOMAIN}")},
    })
}

/// `GET /v3/domains` (filter `name`).
pub async fn list_domains(headers: HeaderMap, Query(q): Query<BTreeMap<String, String>>) -> Reply {
    let base = base_url(&headers);
    let items = match q.get("name") {
        Some(n) if n != "Default" && n != DOMAIN => vec![],
        _ => vec![domain_json(&base)],
    };
    Ok(list_reply("domains", items, &base, "domains"))
}

/// `GET /v3/domains/{id}`: only `default` (also found by its name `Default`).
pub async fn get_domain(headers: HeaderMap, Path(id): Path<String>) -> Reply {
    if id != DOMAIN && id != "Default" {
        return Err(KeystoneError::not_found(format!(
            "Could not find domain: {id}."
        )));
    }
    Ok(ok("domain", domain_json(&base_url(&headers))))
}

// ---- catalog ----

/// `GET /v3/auth/catalog`: the catalog of the caller's token scope.
pub async fn auth_catalog(caller: Caller, headers: HeaderMap) -> Reply {
    let base = base_url(&headers);
    Ok(Json(json!({
        "catalog": super::catalog::catalog(&base, caller.project()),
        "links": {"self": format!("{base}/identity/v3/auth/catalog"), "previous": null, "next": null},
    }))
    .into_response())
}

/// `GET /v3/services` (filter `type`).
pub async fn list_services(headers: HeaderMap, Query(q): Query<BTreeMap<String, String>>) -> Reply {
    let base = base_url(&headers);
    let items = super::catalog::services(&base)
        .into_iter()
        .filter(|s| q.get("type").is_none_or(|t| s["type"] == t.as_str()))
        .collect();
    Ok(list_reply("services", items, &base, "services"))
}

/// `GET /v3/endpoints` (filters `interface`, `service_id`, `region_id`).
pub async fn list_endpoints(
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Reply {
    let base = base_url(&headers);
    let items = super::catalog::endpoints(&base)
        .into_iter()
        .filter(|e| {
            q.get("interface")
                .is_none_or(|i| e["interface"] == i.as_str())
        })
        .filter(|e| {
            q.get("service_id")
                .is_none_or(|s| e["service_id"] == s.as_str())
        })
        .filter(|e| {
            q.get("region_id")
                .is_none_or(|r| e["region_id"] == r.as_str())
        })
        .collect();
    Ok(list_reply("endpoints", items, &base, "endpoints"))
}

/// `GET /v3/regions`.
pub async fn list_regions(headers: HeaderMap) -> Reply {
    let base = base_url(&headers);
    let items = vec![json!({
        "id": super::catalog::REGION, "description": "", "parent_region_id": null,
        "links": {"self": format!("{base}/identity/v3/regions/{}", super::catalog::REGION)},
    })];
    Ok(list_reply("regions", items, &base, "regions"))
}
