//! Nova's `os-quota-sets`: show, detail (limit, in use, reserved), defaults, update and
//! revert of a project's compute quotas.
//!
//! The limits are [`crate::quota`]'s (OpenStack defaults overridden by `Project.spec.quota`),
//! the same ones the admission enforces on every create through any API, and the usage is
//! [`crate::quota::usage`]: what `/detail` shows is what a create is checked against.
//! Cirrus enforces `instances`, `cores`, `ram` and `key_pairs`; the other keys of Nova's
//! 2.1 body are shown with Nova's defaults ([`FIXED`]) and may only be "set" to those values.
//! The network quotas Nova 2.1 still shows (`floating_ips`, `fixed_ips`, `security_groups`,
//! `security_group_rules`) are `-1` and updates to them are ignored, as in Nova with Neutron;
//! Neutron's `quotas` API holds the real ones.
//!
//! Members and readers may read their own project's quotas; another project's is `403`.
//! Updates and reverts are for cloud admins. A project that does not exist is `400`
//! ("not a valid project"), as Nova says after asking Keystone.

use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cirrus_auth::Action;
use serde_json::{Map, Value, json};

use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common;
use crate::openstack::fault::{Dialect, Fault};

const D: Dialect = Dialect::Compute;

/// The compute quotas Cirrus enforces (their limits come from [`crate::quota`]).
pub const ENFORCED: &[&str] = &["instances", "cores", "ram", "key_pairs"];

/// Compute quotas Nova has and Cirrus does not enforce, with Nova's defaults.
pub const FIXED: &[(&str, i64)] = &[
    ("metadata_items", 128),
    ("injected_files", 5),
    ("injected_file_content_bytes", 10240),
    ("injected_file_path_bytes", 255),
    ("server_groups", 10),
    ("server_group_members", 10),
];

/// Network quotas Nova 2.1 still lists; `-1` with Neutron, updates ignored.
pub const NETWORK_PROXIES: &[&str] = &[
    "fixed_ips",
    "floating_ips",
    "security_groups",
    "security_group_rules",
];

/// The quota-set routes under `/compute/v2.1`.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/compute/v2.1/os-quota-sets/{project}",
            get(show).put(update).delete(revert),
        )
        .route("/compute/v2.1/os-quota-sets/{project}/detail", get(detail))
        .route(
            "/compute/v2.1/os-quota-sets/{project}/defaults",
            get(defaults),
        )
}

fn api(e: crate::error::ApiError) -> Fault {
    Fault::from_api(D, e)
}

/// Nova's policy refusal for `rule` (`show`, `update`, `delete`).
fn policy(rule: &str) -> Fault {
    Fault::forbidden(
        D,
        format!("Policy doesn't allow os_compute_api:os-quota-sets:{rule} to be performed."),
    )
}

/// Who may read `target`'s quotas: its own members and readers, and cloud admins.
fn may_read(caller: &Caller, target: &str) -> Result<(), Fault> {
    if caller.is_cloud_admin() {
        return Ok(());
    }
    if caller.project() != Some(target) {
        return Err(policy("show"));
    }
    caller
        .check(Action::Read, Some(target))
        .map_err(|_| policy("show"))
}

/// Only cloud admins change quotas.
fn may_write(caller: &Caller, rule: &str) -> Result<(), Fault> {
    if caller.is_cloud_admin() {
        Ok(())
    } else {
        Err(policy(rule))
    }
}

/// `400` for a project Keystone does not know, as Nova's `verify_project_id`.
async fn known_project(state: &ApiState, project: &str) -> Result<(), Fault> {
    if common::project_exists(state, project).await.map_err(api)? {
        Ok(())
    } else {
        Err(Fault::bad_request(
            D,
            format!("Project ID {project} is not a valid project."),
        ))
    }
}

/// Every key of a Nova 2.1 quota set with its limit: the enforced ones from `limits`.
pub fn limits_body(limits: &BTreeMap<String, i64>) -> Map<String, Value> {
    let mut body = common::quota_body(limits, ENFORCED, FIXED);
    for key in NETWORK_PROXIES {
        body.insert((*key).into(), json!(-1));
    }
    body
}

/// The `/detail` body: `{"in_use", "limit", "reserved"}` per key.
pub fn detail_body(
    limits: &BTreeMap<String, i64>,
    usage: &BTreeMap<String, i64>,
) -> Map<String, Value> {
    limits_body(limits)
        .into_iter()
        .map(|(key, limit)| {
            let in_use = usage.get(&key).copied().unwrap_or(0);
            (
                key,
                json!({"in_use": in_use, "limit": limit, "reserved": 0}),
            )
        })
        .collect()
}

fn with_id(mut body: Map<String, Value>, project: &str) -> Response {
    body.insert("id".into(), json!(project));
    axum::Json(json!({ "quota_set": body })).into_response()
}

/// `GET /os-quota-sets/{project}`.
async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project): Path<String>,
) -> Result<Response, Fault> {
    may_read(&caller, &project)?;
    known_project(&state, &project).await?;
    let limits = crate::quota::limits(&state.store, &project)
        .await
        .map_err(api)?;
    Ok(with_id(limits_body(&limits), &project))
}

/// `GET /os-quota-sets/{project}/detail`.
async fn detail(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project): Path<String>,
) -> Result<Response, Fault> {
    may_read(&caller, &project)?;
    known_project(&state, &project).await?;
    let limits = crate::quota::limits(&state.store, &project)
        .await
        .map_err(api)?;
    let usage = crate::quota::usage(&state.store, &project)
        .await
        .map_err(api)?;
    Ok(with_id(detail_body(&limits, &usage), &project))
}

/// `GET /os-quota-sets/{project}/defaults`.
async fn defaults(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project): Path<String>,
) -> Result<Response, Fault> {
    may_read(&caller, &project)?;
    known_project(&state, &project).await?;
    let limits = crate::quota::default_limits();
    Ok(with_id(limits_body(&limits), &project))
}

/// What an update asks: the enforced limits to set, and whether to skip the usage check.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Enforced quota → new limit.
    pub limits: BTreeMap<String, i64>,
    /// `force`: set even below what is in use.
    pub force: bool,
}

/// Parses a Nova `{"quota_set": {...}}` update: unknown keys, non-integers, and other
/// values for quotas Cirrus does not enforce are `400` naming them.
pub fn parse_update(body: &Value) -> Result<Update, Fault> {
    let Some(set) = body.get("quota_set").and_then(Value::as_object) else {
        return Err(Fault::bad_request(
            D,
            "Invalid input for field/attribute quota_set. Value: missing. 'quota_set' is a \
             required property (an object)",
        ));
    };
    let unknown: Vec<String> = set
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k != "force"
                && !ENFORCED.contains(&k)
                && !NETWORK_PROXIES.contains(&k)
                && !FIXED.iter().any(|(f, _)| *f == k)
        })
        .map(|k| format!("'{k}'"))
        .collect();
    if !unknown.is_empty() {
        let verb = if unknown.len() == 1 { "was" } else { "were" };
        return Err(Fault::bad_request(
            D,
            format!(
                "Invalid input for field/attribute quota_set. Additional properties are not \
                 allowed ({} {verb} unexpected)",
                unknown.join(", ")
            ),
        ));
    }
    let mut update = Update::default();
    for (key, value) in set {
        if key == "force" {
            update.force = crate::openstack::volume::parse_bool(value).ok_or_else(|| {
                Fault::bad_request(
                    D,
                    format!(
                        "Invalid input for field/attribute force. Value: {value}. It is not \
                         a boolean"
                    ),
                )
            })?;
            continue;
        }
        let limit = common::quota_limit(value).map_err(|why| {
            Fault::bad_request(
                D,
                format!("Invalid input for field/attribute {key}. Value: {value}. {why}"),
            )
        })?;
        if ENFORCED.contains(&key.as_str()) {
            update.limits.insert(key.clone(), limit);
        } else if let Some((_, fixed)) = FIXED.iter().find(|(f, _)| *f == key)
            && limit != *fixed
        {
            return Err(Fault::bad_request(
                D,
                format!(
                    "Quota {key} is not enforced by this cloud and stays at {fixed}; the \
                     settable compute quotas are {}.",
                    ENFORCED.join(", ")
                ),
            ));
        }
    }
    Ok(update)
}

/// `PUT /os-quota-sets/{project}` (admins): sets the enforced limits given; without
/// `force`, a limit below what the project uses now is `400` as in Nova.
async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, Fault> {
    may_write(&caller, "update")?;
    if query.contains_key("user_id") {
        return Err(Fault::bad_request(
            D,
            "Per-user quotas are not supported: quotas are per project here.",
        ));
    }
    let update = parse_update(&common::json_body(D, &body)?)?;
    known_project(&state, &project).await?;
    if !update.force
        && let Some((key, limit, used)) =
            common::limit_below_usage(&state, &project, &update.limits)
                .await
                .map_err(api)?
    {
        return Err(Fault::bad_request(
            D,
            format!(
                "Quota limit {limit} for {key} must be greater than or equal to \
                 already used and reserved {used}."
            ),
        ));
    }
    let limits = common::set_project_limits(&state, &caller, &project, &update.limits)
        .await
        .map_err(api)?;
    Ok(axum::Json(json!({ "quota_set": limits_body(&limits) })).into_response())
}

/// `DELETE /os-quota-sets/{project}` (admins): the compute quotas back to the defaults.
async fn revert(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project): Path<String>,
) -> Result<Response, Fault> {
    may_write(&caller, "delete")?;
    known_project(&state, &project).await?;
    common::reset_project_quota(&state, &caller, &project, ENFORCED)
        .await
        .map_err(api)?;
    Ok(StatusCode::ACCEPTED.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_has_every_key_of_novas_2_1_schema() {
        let limits = crate::quota::default_limits();
        let body = limits_body(&limits);
        for key in [
            "instances",
            "cores",
            "ram",
            "floating_ips",
            "fixed_ips",
            "metadata_items",
            "injected_files",
            "injected_file_content_bytes",
            "injected_file_path_bytes",
            "key_pairs",
            "security_groups",
            "security_group_rules",
            "server_groups",
            "server_group_members",
        ] {
            assert!(body[key].is_i64(), "{key}");
        }
        assert_eq!(body["instances"], 10);
        assert_eq!(body["cores"], 20);
        assert_eq!(body["ram"], 51200);
        assert_eq!(body["metadata_items"], 128);
        let usage = BTreeMap::from([("cores".to_string(), 3)]);
        let detail = detail_body(&limits, &usage);
        assert_eq!(
            detail["cores"],
            json!({"in_use": 3, "limit": 20, "reserved": 0})
        );
    }

    #[test]
    fn updates_parse_like_nova() {
        let update = parse_update(
            &json!({"quota_set": {"instances": "2", "cores": 4, "force": "True", "metadata_items": 128, "floating_ips": 7}}),
        )
        .unwrap();
        assert!(update.force);
        assert_eq!(
            update.limits,
            BTreeMap::from([("instances".into(), 2), ("cores".into(), 4)])
        );
        let unknown = parse_update(&json!({"quota_set": {"instances": 1, "bogus": 1, "nope": 2}}))
            .unwrap_err();
        assert_eq!(unknown.code, StatusCode::BAD_REQUEST);
        assert!(unknown.message.contains("'bogus', 'nope' were unexpected"));
        let bad = parse_update(&json!({"quota_set": {"ram": "lots"}})).unwrap_err();
        assert!(bad.message.contains("ram"), "{}", bad.message);
        let low = parse_update(&json!({"quota_set": {"cores": -2}})).unwrap_err();
        assert!(low.message.contains("cores"), "{}", low.message);
        let fixed = parse_update(&json!({"quota_set": {"server_groups": 3}})).unwrap_err();
        assert!(fixed.message.contains("server_groups"), "{}", fixed.message);
        assert!(parse_update(&json!({"quota": {}})).is_err());
    }
}
