//! The network service (Neutron v2.0) over `Network`, `Subnet`, `Port` and `SecurityGroup`
//! objects, at `/network/v2.0/...`.
//!
//! Every handler reads and writes the same objects as the native API: creates and deletes
//! go through `crate::resources::create` / `crate::resources::delete` (so the in-use and
//! protection checks of the native admission hold here too), updates are read-modify-writes
//! conditioned on the `resourceVersion` read (`update_object`).
//!
//! Translation rules (see [`crate::openstack::common`] for ids and names):
//! - `id` is the object's uid; references between objects are names in the objects and
//!   uids on the wire (`network_id`, `subnet_id`, `security_groups`, `remote_group_id`).
//! - A request acts in its token's project. Members see their project's objects (plus shared
//!   networks of other projects, read-only); cloud admins see every project's and may filter
//!   by `project_id`.
//! - Lists filter on the rendered bodies ([`query`]): any attribute with one or more values
//!   (`name=a&name=b`), `fields=` projection, `limit`/`marker` pagination, `sort_key`.
//! - Security group rules have no object of their own: they are entries of
//!   `SecurityGroup.spec.rules`, and their id is a UUIDv5 of the group's uid and the rule's
//!   matching fields ([`security_groups::rule_id`]), so the same rule keeps its id and a
//!   duplicate is found by id.
//! - Errors are `NeutronError` bodies ([`Dialect::Network`]) with Neutron's exception names
//!   (`NetworkNotFound`, `NetworkInUse`, `SecurityGroupRuleExists`...); validation messages
//!   name fields the Neutron way (`allocation_pools[0].start`, not `spec.allocationPools`).

pub mod extensions;
pub mod networks;
pub mod port_settle;
pub mod ports;
pub mod query;
pub mod quotas;
pub mod security_groups;
pub mod subnets;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cirrus_auth::Action;
use cirrus_crds::KindInfo;
use cirrus_store::objects::ObjectError;
use serde_json::{Map, Value, json};

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::openstack::common;
use crate::openstack::fault::{Dialect, Fault};

/// Shorthand for the dialect every fault here is rendered in.
pub(crate) const NET: Dialect = Dialect::Network;

/// Path prefix of the v2.0 API.
const V2: &str = "/network/v2.0";

/// How often a conditional update is retried after losing a race (each round of racing
/// writers has one winner, so this bounds the concurrent writers of one object served
/// without a 409).
const UPDATE_ATTEMPTS: usize = 64;

/// All network routes, version documents included.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/network", get(versions))
        .route("/network/", get(versions))
        .route(V2, get(resources))
        .route(&format!("{V2}/"), get(resources))
        .route(&format!("{V2}/extensions"), get(extensions::list))
        .route(&format!("{V2}/extensions/{{alias}}"), get(extensions::show))
        .route(
            &format!("{V2}/networks"),
            get(networks::list).post(networks::create),
        )
        .route(
            &format!("{V2}/networks/{{id}}"),
            get(networks::show)
                .put(networks::update)
                .delete(networks::delete),
        )
        .route(
            &format!("{V2}/subnets"),
            get(subnets::list).post(subnets::create),
        )
        .route(
            &format!("{V2}/subnets/{{id}}"),
            get(subnets::show)
                .put(subnets::update)
                .delete(subnets::delete),
        )
        .route(&format!("{V2}/ports"), get(ports::list).post(ports::create))
        .route(
            &format!("{V2}/ports/{{id}}"),
            get(ports::show).put(ports::update).delete(ports::delete),
        )
        .route(
            &format!("{V2}/security-groups"),
            get(security_groups::list).post(security_groups::create),
        )
        .route(
            &format!("{V2}/security-groups/{{id}}"),
            get(security_groups::show)
                .put(security_groups::update)
                .delete(security_groups::delete),
        )
        .route(
            &format!("{V2}/security-group-rules"),
            get(security_groups::list_rules).post(security_groups::create_rule),
        )
        .route(&format!("{V2}/quotas"), get(quotas::list))
        .route(
            &format!("{V2}/quotas/{{project}}"),
            get(quotas::show).put(quotas::update).delete(quotas::delete),
        )
        .route(
            &format!("{V2}/quotas/{{project}}/default"),
            get(quotas::defaults),
        )
        .route(
            &format!("{V2}/quotas/{{project}}/details"),
            get(quotas::details),
        )
        .route(
            &format!("{V2}/security-group-rules/{{id}}"),
            get(security_groups::show_rule).delete(security_groups::delete_rule),
        )
}

/// `http(s)://<Host>` of the request, for absolute links.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// `GET /network`: the versions document (only v2.0, `CURRENT`), anonymous.
pub async fn versions(headers: HeaderMap) -> Json<Value> {
    Json(json!({"versions": [{
        "id": "v2.0",
        "status": "CURRENT",
        "links": [{"rel": "self", "href": format!("{}{V2}/", base_url(&headers))}],
    }]}))
}

/// `GET /network/v2.0`: the collections of the v2.0 API, anonymous.
pub async fn resources(headers: HeaderMap) -> Json<Value> {
    let base = base_url(&headers);
    let list: Vec<Value> = [
        ("subnet", "subnets"),
        ("network", "networks"),
        ("port", "ports"),
        ("security_group", "security-groups"),
        ("security_group_rule", "security-group-rules"),
        ("extension", "extensions"),
        ("quota", "quotas"),
    ]
    .iter()
    .map(|(name, collection)| {
        json!({
            "name": name,
            "collection": collection,
            "links": [{"rel": "self", "href": format!("{base}{V2}/{collection}")}],
        })
    })
    .collect();
    Json(json!({"resources": list}))
}

/// Who asks and where: the token's project, and whether the caller sees every project.
#[derive(Clone, Debug)]
pub(crate) struct Scope {
    /// The validated caller.
    pub caller: Caller,
    /// The token's project: where objects are created and looked up.
    pub project: String,
    /// Cloud admin: lookups and lists span every project.
    pub admin: bool,
}

impl Scope {
    /// The scope of `caller`; `401` for a token without a project.
    pub fn of(caller: Caller) -> Result<Self, Fault> {
        let Some(project) = caller.project().map(str::to_string) else {
            return Err(Fault::new(
                NET,
                StatusCode::UNAUTHORIZED,
                "The request you have made requires a project-scoped token.",
            ));
        };
        let admin = caller.is_cloud_admin();
        Ok(Self {
            caller,
            project,
            admin,
        })
    }

    /// The project to list in: the caller's, or every project (`None`) for admins.
    pub fn list_project(&self) -> Option<&str> {
        (!self.admin).then_some(self.project.as_str())
    }

    /// Whether the caller may do `action` in `project`; `what` names the target in a 404.
    pub fn check(&self, action: Action, project: &str, what: &str) -> Result<(), Fault> {
        self.caller
            .check(action, Some(project))
            .map_err(|r| Fault::refused(NET, r, what))
    }

    /// The project a create acts in: `project_id`/`tenant_id` of the body when given
    /// (another project only for admins), else the token's; the caller must be able to
    /// write there.
    pub fn create_project(&self, body: &Map<String, Value>) -> Result<String, Fault> {
        let mut wanted = None;
        for key in ["project_id", "tenant_id"] {
            match body.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::String(p)) if !p.is_empty() => {
                    if wanted.as_ref().is_some_and(|w: &String| w != p) {
                        return Err(Fault::bad_request(
                            NET,
                            "project_id and tenant_id do not match",
                        ));
                    }
                    wanted = Some(p.clone());
                }
                Some(_) => return Err(invalid(key, "must be a project id (string)")),
            }
        }
        let project = wanted.unwrap_or_else(|| self.project.clone());
        self.check(Action::Write, &project, &format!("Project {project}"))?;
        Ok(project)
    }
}

/// 400 `Invalid input for <field>. Reason: <reason>.`, Neutron's wording.
pub(crate) fn invalid(field: &str, reason: impl std::fmt::Display) -> Fault {
    Fault::bad_request(NET, format!("Invalid input for {field}. Reason: {reason}."))
        .with_kind("InvalidInput")
}

/// 404 `<What> <id> could not be found.` with Neutron's exception name `kind`.
pub(crate) fn not_found(kind: &'static str, what: &str, id: &str) -> Fault {
    Fault::not_found(NET, format!("{what} {id} could not be found.")).with_kind(kind)
}

/// A native error in Neutron's dialect, with native field paths (`spec.gatewayIp`) renamed
/// to Neutron's attribute names (`gateway_ip`).
pub(crate) fn from_api(error: ApiError) -> Fault {
    let mut fault = Fault::from_api(NET, error);
    fault.message = neutron_field_names(&fault.message);
    if fault.code == StatusCode::BAD_REQUEST {
        fault.kind = Some("InvalidInput");
    }
    fault
}

/// A store error in Neutron's dialect (see [`from_api`]).
pub(crate) fn from_store(error: ObjectError) -> Fault {
    from_api(error.into())
}

/// Rewrites every `spec.someField[0].otherField` in `message` to
/// `some_field[0].other_field`: the names a Neutron client sent.
pub fn neutron_field_names(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("spec.") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 5..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '[' | ']' | '_')))
            .unwrap_or(after.len());
        let path = after[..end].trim_end_matches('.');
        for c in path.chars() {
            if c.is_ascii_uppercase() {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        rest = &after[path.len()..];
    }
    out.push_str(rest);
    out
}

/// The JSON object under `key` of a request body (`{"network": {...}}`); 400 otherwise.
pub(crate) fn body_object(body: &Bytes, key: &str) -> Result<Map<String, Value>, Fault> {
    if body.is_empty() {
        return Err(Fault::bad_request(NET, "Request body is required.").with_kind("BadRequest"));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Fault::bad_request(NET, format!("Malformed request body: {e}")).with_kind("BadRequest")
    })?;
    match value {
        Value::Object(mut map) => match map.remove(key) {
            Some(Value::Object(inner)) => Ok(inner),
            Some(_) => Err(Fault::bad_request(
                NET,
                format!("Malformed request body: '{key}' must be an object."),
            )),
            None if map.contains_key(&format!("{key}s")) => Err(Fault::bad_request(
                NET,
                format!("Bulk creation of {key}s is not supported: send one '{key}' per request."),
            )),
            None => Err(Fault::bad_request(
                NET,
                format!("Unable to find '{key}' in request body"),
            )),
        },
        _ => Err(Fault::bad_request(
            NET,
            "Malformed request body: expected a JSON object.",
        )),
    }
}

/// 400 for attributes outside `known` (Neutron: `Unrecognized attribute(s) 'x'`).
pub(crate) fn reject_unknown(body: &Map<String, Value>, known: &[&str]) -> Result<(), Fault> {
    let unknown: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Fault::bad_request(
        NET,
        format!("Unrecognized attribute(s) '{}'", unknown.join(", ")),
    )
    .with_kind("HTTPBadRequest"))
}

/// 400 when `key` is present in an update body: Neutron's read-only attributes.
pub(crate) fn reject_read_only(body: &Map<String, Value>, keys: &[&str]) -> Result<(), Fault> {
    match keys.iter().find(|k| body.contains_key(**k)) {
        Some(k) => Err(Fault::bad_request(
            NET,
            format!("Cannot update read-only attribute {k}"),
        )),
        None => Ok(()),
    }
}

/// Optional string attribute `key` (`null` reads as absent).
pub(crate) fn opt_str(body: &Map<String, Value>, key: &str) -> Result<Option<String>, Fault> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(
            key,
            format_args!("'{other}' is not a valid string"),
        )),
    }
}

/// Optional boolean attribute `key` (also `"true"`/`"false"` strings, as Neutron converts).
pub(crate) fn opt_bool(body: &Map<String, Value>, key: &str) -> Result<Option<bool>, Fault> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(invalid(
            key,
            format_args!("'{other}' is not a valid boolean value"),
        )),
    }
}

/// Optional non-negative integer attribute `key` (numbers or numeric strings).
pub(crate) fn opt_u32(body: &Map<String, Value>, key: &str) -> Result<Option<u32>, Fault> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| invalid(key, format_args!("'{n}' is not a valid integer"))),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u32>()
            .map(Some)
            .map_err(|_| invalid(key, format_args!("'{s}' is not a valid integer"))),
        Some(other) => Err(invalid(
            key,
            format_args!("'{other}' is not a valid integer"),
        )),
    }
}

/// The display name to give an object created with body attribute `name` (default `""`).
pub(crate) fn name_attr(body: &Map<String, Value>) -> Result<String, Fault> {
    let name = opt_str(body, "name")?.unwrap_or_default();
    if name.chars().count() > 255 {
        return Err(invalid("name", "'name' exceeds 255 characters"));
    }
    Ok(name)
}

/// A new object of `kind` named for OpenStack name `display`: its metadata (object name,
/// project, the name annotation when the names differ) and `spec`.
async fn new_object(
    state: &ApiState,
    kind: &'static KindInfo,
    project: &str,
    prefix: &str,
    display: &str,
    spec: Value,
) -> Result<Value, Fault> {
    let (name, annotate) = common::object_name_for(state, kind, Some(project), prefix, display)
        .await
        .map_err(from_api)?;
    let mut metadata = json!({"name": name, "project": project});
    if annotate {
        metadata["annotations"] = json!({common::NAME_ANNOTATION: display});
    }
    Ok(json!({
        "apiVersion": cirrus_crds::API_VERSION,
        "kind": kind.kind,
        "metadata": metadata,
        "spec": spec,
    }))
}

/// Stores the [`new_object`] of `kind` for OpenStack name `display` through the native
/// admission (quotas, validation) and returns it as written: every create route ends so.
pub(crate) async fn create_object(
    state: &ApiState,
    caller: &Caller,
    kind: &'static KindInfo,
    project: &str,
    prefix: &str,
    display: &str,
    spec: Value,
) -> Result<Value, Fault> {
    let object = new_object(state, kind, project, prefix, display, spec).await?;
    let writer = crate::admission::Writer::Caller(caller);
    crate::resources::create(state, writer, kind, Some(project), object, false)
        .await
        .map_err(from_api)
}

/// Sets the OpenStack name of `object` (the annotation; object names never change).
pub(crate) fn set_display_name(object: &mut Value, display: &str) {
    if object
        .pointer("/metadata/annotations")
        .is_none_or(|a| !a.is_object())
    {
        object["metadata"]["annotations"] = json!({});
    }
    object["metadata"]["annotations"][common::NAME_ANNOTATION] = Value::from(display);
}

/// The project of an object.
pub(crate) fn project_of(object: &Value) -> String {
    object
        .pointer("/metadata/project")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The attributes every Neutron resource carries (standard attributes): project, times,
/// revision, tags, description.
pub(crate) fn standard_attrs(object: &Value, out: &mut Map<String, Value>) {
    let project = project_of(object);
    let created = common::openstack_time(
        object
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str),
    );
    out.insert("tenant_id".into(), Value::from(project.clone()));
    out.insert("project_id".into(), Value::from(project));
    out.insert(
        "description".into(),
        Value::from(
            object
                .pointer("/spec/description")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ),
    );
    out.insert("created_at".into(), json!(created));
    out.insert("updated_at".into(), json!(created));
    out.insert(
        "revision_number".into(),
        Value::from(
            object
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1),
        ),
    );
    out.insert("tags".into(), json!([]));
}

/// The OpenStack name an update body sets: `None` when the body has no `name`, else the
/// checked [`name_attr`].
pub(crate) fn new_name(body: &Map<String, Value>) -> Result<Option<String>, Fault> {
    match body.contains_key("name") {
        true => Some(name_attr(body)).transpose(),
        false => Ok(None),
    }
}

/// [`update_object`] for updates that edit `spec` as a map (`change`) and may rename the
/// object (`display`): networks, subnets and ports update this way.
pub(crate) async fn update_spec<F>(
    state: &ApiState,
    caller: &Caller,
    kind: &'static KindInfo,
    project: &str,
    name: &str,
    display: Option<&str>,
    mut change: F,
) -> Result<Value, Fault>
where
    F: FnMut(&mut Map<String, Value>) -> Result<(), Fault>,
{
    update_object(state, caller, kind, project, name, |object| {
        let mut spec = object
            .get("spec")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        change(&mut spec)?;
        object["spec"] = Value::Object(spec);
        if let Some(d) = display {
            set_display_name(object, d);
        }
        Ok(())
    })
    .await
}

/// Read-modify-write of one object's main part: `change` edits the stored object, which is
/// written conditioned on the `resourceVersion` read; a lost race re-reads and re-applies.
pub(crate) async fn update_object<F>(
    state: &ApiState,
    caller: &Caller,
    kind: &'static KindInfo,
    project: &str,
    name: &str,
    change: F,
) -> Result<Value, Fault>
where
    F: FnMut(&mut Value) -> Result<(), Fault>,
{
    common::update_object(
        state,
        caller,
        kind,
        project,
        name,
        UPDATE_ATTEMPTS,
        from_api,
        change,
    )
    .await
}

/// `200` with `{key: value}`.
pub(crate) fn ok(key: &str, value: Value) -> Response {
    (StatusCode::OK, Json(json!({ key: value }))).into_response()
}

/// `200` with `{key: items}` after the list query of `pairs` filtered, sorted, paged and
/// projected the rendered `items`: the answer of every list route.
pub(crate) fn listed(
    key: &str,
    pairs: Vec<(String, String)>,
    items: Vec<Value>,
) -> Result<Response, Fault> {
    Ok(ok(
        key,
        Value::Array(query::ListQuery::new(pairs).apply(items)?),
    ))
}

/// `200` with `{key: item}`, `item` cut to the `fields` the query of `pairs` names: the
/// answer of every show route.
pub(crate) fn shown(key: &str, pairs: Vec<(String, String)>, item: Value) -> Response {
    ok(key, query::ListQuery::new(pairs).select_fields(item))
}

/// `201` with `{key: value}`.
pub(crate) fn created(key: &str, value: Value) -> Response {
    (StatusCode::CREATED, Json(json!({ key: value }))).into_response()
}

/// Whether `object` is being deleted. Neutron deletes are synchronous: once a `DELETE`
/// answered 204 the resource is gone for clients, so objects whose finalizers still run
/// (a port whose addresses the network controller is releasing) are not shown.
pub(crate) fn deleting(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some()
}

/// Objects of `kind` the scope may see: its project's, or every project's for admins;
/// none that are being deleted.
pub(crate) async fn visible(
    state: &ApiState,
    kind: &'static KindInfo,
    scope: &Scope,
) -> Result<Vec<Value>, Fault> {
    let mut items = common::list(state, kind, scope.list_project())
        .await
        .map_err(from_api)?;
    items.retain(|o| !deleting(o));
    Ok(items)
}

/// The object of `kind` with uid `id` the scope may see (names are accepted too, as
/// clients' find-by-name-or-id first tries the name as an id).
pub(crate) async fn find_visible(
    state: &ApiState,
    kind: &'static KindInfo,
    scope: &Scope,
    id: &str,
) -> Result<Option<Value>, Fault> {
    let items = visible(state, kind, scope).await?;
    if let Some(found) = items.iter().find(|o| common::uid(o) == id) {
        return Ok(Some(found.clone()));
    }
    // By name only inside the caller's own project: an admin's name lookup must not pick
    // an arbitrary project's object of that name.
    Ok(items
        .into_iter()
        .find(|o| common::name(o) == id && project_of(o) == scope.project))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_field_paths_become_neutron_attribute_names() {
        assert_eq!(
            neutron_field_names(
                "Subnet \"a\" is invalid: spec.allocationPools[0].start: 10.1.0.5 is outside cidr; spec.gatewayIp: bad"
            ),
            "Subnet \"a\" is invalid: allocation_pools[0].start: 10.1.0.5 is outside cidr; gateway_ip: bad"
        );
        assert_eq!(neutron_field_names("spec.cidr."), "cidr.");
        assert_eq!(neutron_field_names("no fields here"), "no fields here");
    }
}
