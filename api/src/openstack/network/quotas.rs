//! Neutron's `quotas`: `GET /quotas` (admins: projects with non-default limits),
//! `GET|PUT|DELETE /quotas/{project}`, `/quotas/{project}/default` and `/details`.
//!
//! The limits are [`crate::quota`]'s (OpenStack defaults overridden by `Project.spec.quota`),
//! the ones the admission enforces on every create through any API; `/details` shows
//! [`crate::quota::usage`]. Cirrus enforces [`ENFORCED`]; Neutron's other quotas
//! ([`FIXED`]: routers, floating IPs...) are shown with Neutron's defaults and can only be
//! "set" to them.
//!
//! Members read their own project's quotas; another project's is `403` as Neutron's policy
//! says. Updates and resets are for cloud admins. As Neutron does by default
//! (`quota-check-limit-default`), an update below what is in use is refused unless `force`.

use cirrus_crds::Resource as _;
use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cirrus_auth::Action;
use serde_json::{Map, Value, json};

use super::{NET, Scope, from_api, invalid, ok};
use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common;
use crate::openstack::fault::Fault;
use crate::openstack::volume::parse_bool;

/// The network quotas Cirrus enforces (limits from [`crate::quota`]).
pub const ENFORCED: &[&str] = &[
    "network",
    "subnet",
    "port",
    "security_group",
    "security_group_rule",
];

/// Neutron quotas Cirrus does not enforce, with Neutron's defaults (`-1`: unlimited).
pub const FIXED: &[(&str, i64)] = &[
    ("router", 10),
    ("floatingip", 50),
    ("rbac_policy", 10),
    ("subnetpool", -1),
];

/// Every key with its limit, the enforced ones from `limits`.
pub fn limits_body(limits: &BTreeMap<String, i64>) -> Map<String, Value> {
    common::quota_body(limits, ENFORCED, FIXED)
}

fn forbidden(what: &str) -> Fault {
    Fault::forbidden(NET, format!("rule:{what}_quota is disallowed by policy"))
        .with_kind("PolicyNotAuthorized")
}

/// Own project (any role there) or cloud admin; else `403`.
fn may_read(caller: Caller, project: &str) -> Result<Scope, Fault> {
    let scope = Scope::of(caller)?;
    if scope.admin {
        return Ok(scope);
    }
    if scope.project != project {
        return Err(forbidden("get"));
    }
    scope
        .caller
        .check(Action::Read, Some(project))
        .map_err(|_| forbidden("get"))?;
    Ok(scope)
}

fn may_write(caller: Caller, what: &str) -> Result<Scope, Fault> {
    let scope = Scope::of(caller)?;
    if scope.admin {
        Ok(scope)
    } else {
        Err(forbidden(what))
    }
}

/// `GET /quotas` (admins): the projects whose network quotas differ from the defaults.
pub async fn list(State(state): State<ApiState>, caller: Caller) -> Result<Response, Fault> {
    may_write(caller, "get")?;
    let projects = cirrus_crds::Project::info();
    let defaults = limits_body(&crate::quota::default_limits());
    let mut quotas = Vec::new();
    for project in common::list(&state, projects, None)
        .await
        .map_err(from_api)?
    {
        let name = common::name(&project);
        let limits = crate::quota::limits(&state.store, &name)
            .await
            .map_err(from_api)?;
        let mut body = limits_body(&limits);
        if body != defaults {
            body.insert("project_id".into(), json!(name));
            body.insert("tenant_id".into(), json!(name));
            quotas.push(Value::Object(body));
        }
    }
    Ok(ok("quotas", Value::Array(quotas)))
}

/// `GET /quotas/{project}`: the limits in force.
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project): Path<String>,
) -> Result<Response, Fault> {
    may_read(caller, &project)?;
    let limits = crate::quota::limits(&state.store, &project)
        .await
        .map_err(from_api)?;
    Ok(ok("quota", Value::Object(limits_body(&limits))))
}

/// `GET /quotas/{project}/default`: the defaults.
pub async fn defaults(caller: Caller, Path(project): Path<String>) -> Result<Response, Fault> {
    may_read(caller, &project)?;
    Ok(ok(
        "quota",
        Value::Object(limits_body(&crate::quota::default_limits())),
    ))
}

/// `GET /quotas/{project}/details`: limit, used and reserved per resource.
pub async fn details(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project): Path<String>,
) -> Result<Response, Fault> {
    may_read(caller, &project)?;
    let limits = crate::quota::limits(&state.store, &project)
        .await
        .map_err(from_api)?;
    let used = crate::quota::usage(&state.store, &project)
        .await
        .map_err(from_api)?;
    let body: Map<String, Value> = limits_body(&limits)
        .into_iter()
        .map(|(key, limit)| {
            let n = used.get(&key).copied().unwrap_or(0);
            (key, json!({"limit": limit, "used": n, "reserved": 0}))
        })
        .collect();
    Ok(ok("quota", Value::Object(body)))
}

/// What an update asks: the enforced limits to set, and whether to skip the usage check.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Enforced quota → new limit.
    pub limits: BTreeMap<String, i64>,
    /// `force` (or `check_limit: false`): set even below what is in use.
    pub force: bool,
}

/// Parses `{"quota": {...}}`: unknown attributes, non-integers and other values for the
/// quotas Cirrus does not enforce are `400` naming them.
pub fn parse_update(body: &Value) -> Result<Update, Fault> {
    let Some(set) = body.get("quota").and_then(Value::as_object) else {
        return Err(Fault::bad_request(
            NET,
            "Resource body required: expected {\"quota\": {...}}.",
        )
        .with_kind("BadRequest"));
    };
    let unknown: Vec<&str> = set
        .keys()
        .map(String::as_str)
        .filter(|k| {
            !matches!(*k, "force" | "check_limit" | "project_id" | "tenant_id")
                && !ENFORCED.contains(k)
                && !FIXED.iter().any(|(f, _)| f == k)
        })
        .collect();
    if !unknown.is_empty() {
        return Err(Fault::bad_request(
            NET,
            format!("Unrecognized attribute(s) '{}'", unknown.join(", ")),
        ));
    }
    let mut update = Update::default();
    let mut check_limit = true;
    for (key, value) in set {
        match key.as_str() {
            "project_id" | "tenant_id" => continue,
            "force" | "check_limit" => {
                let flag = parse_bool(value)
                    .ok_or_else(|| invalid(key, format!("{value} is not a boolean")))?;
                if key == "force" {
                    update.force = flag;
                } else {
                    check_limit = flag;
                }
                continue;
            }
            _ => {}
        }
        let limit = common::quota_limit(value).map_err(|why| invalid(key, why))?;
        if ENFORCED.contains(&key.as_str()) {
            update.limits.insert(key.clone(), limit);
        } else if let Some((_, fixed)) = FIXED.iter().find(|(f, _)| f == key)
            && limit != *fixed
        {
            return Err(invalid(
                key,
                format!(
                    "this cloud does not enforce {key}; it stays {fixed} (settable: {})",
                    ENFORCED.join(", ")
                ),
            ));
        }
    }
    update.force |= !check_limit;
    Ok(update)
}

/// `PUT /quotas/{project}` (admins): sets the limits given, answers all of them.
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    let scope = may_write(caller, "update")?;
    let update = parse_update(&common::json_body(NET, &body)?)?;
    if !common::project_exists(&state, &project)
        .await
        .map_err(from_api)?
    {
        return Err(
            Fault::not_found(NET, format!("Project {project} could not be found."))
                .with_kind("ProjectNotFound"),
        );
    }
    if !update.force
        && let Some((key, limit, n)) = common::limit_below_usage(&state, &project, &update.limits)
            .await
            .map_err(from_api)?
    {
        return Err(Fault::bad_request(
            NET,
            format!(
                "Quota limit {limit} for {key} must be greater than or equal to the \
                 {n} already in use (force to set it anyway)."
            ),
        )
        .with_kind("InvalidQuotaValue"));
    }
    let limits = common::set_project_limits(&state, &scope.caller, &project, &update.limits)
        .await
        .map_err(from_api)?;
    Ok(ok("quota", Value::Object(limits_body(&limits))))
}

/// `DELETE /quotas/{project}` (admins): the network quotas back to the defaults, `204`.
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project): Path<String>,
) -> Result<Response, Fault> {
    let scope = may_write(caller, "delete")?;
    if common::project_exists(&state, &project)
        .await
        .map_err(from_api)?
    {
        common::reset_project_quota(&state, &scope.caller, &project, ENFORCED)
            .await
            .map_err(from_api)?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_parse_like_neutron() {
        let update =
            parse_update(&json!({"quota": {"port": "5", "network": -1, "check_limit": true}}))
                .unwrap();
        assert!(!update.force);
        assert_eq!(
            update.limits,
            BTreeMap::from([("network".into(), -1), ("port".into(), 5)])
        );
        let forced = parse_update(&json!({"quota": {"port": 1, "force": true}})).unwrap();
        assert!(forced.force);
        let unknown = parse_update(&json!({"quota": {"volumes": 1}})).unwrap_err();
        assert_eq!(unknown.code, StatusCode::BAD_REQUEST);
        assert!(unknown.message.contains("'volumes'"), "{}", unknown.message);
        let bad = parse_update(&json!({"quota": {"subnet": 1.5}})).unwrap_err();
        assert!(bad.message.contains("subnet"), "{}", bad.message);
        let fixed = parse_update(&json!({"quota": {"router": 3}})).unwrap_err();
        assert!(fixed.message.contains("router"), "{}", fixed.message);
        assert!(parse_update(&json!({"quota": {"router": 10}})).is_ok());
    }

    #[test]
    fn every_neutron_key_is_shown() {
        let body = limits_body(&crate::quota::default_limits());
        assert_eq!(body["port"], 500);
        assert_eq!(body["network"], 100);
        assert_eq!(body["security_group_rule"], 100);
        assert_eq!(body["floatingip"], 50);
        assert_eq!(body.len(), 9);
    }
}
