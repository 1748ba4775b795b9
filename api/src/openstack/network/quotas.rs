//! `/network/v2.0/quotas/{project}` (and `/default`, `/details`): read-only.
//!
//! Cirrus has no quota objects yet: the limits shown are Neutron's defaults ([`DEFAULTS`])
//! and the usage (`/details`) is counted from the project's live objects. Nothing here
//! enforces them; enforcement belongs to the admission ([`crate::resources::create`]).

use axum::extract::{Path, State};
use axum::response::Response;
use cirrus_auth::Action;
use serde_json::{Map, Value, json};

use super::{Scope, deleting, from_api, kind, ok};
use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common;
use crate::openstack::fault::Fault;

/// Neutron's default quotas (`-1`: unlimited).
pub const DEFAULTS: &[(&str, i64)] = &[
    ("network", 100),
    ("subnet", 100),
    ("port", 500),
    ("router", 10),
    ("floatingip", 50),
    ("security_group", 10),
    ("security_group_rule", 100),
    ("rbac_policy", 10),
    ("subnetpool", -1),
];

fn limits() -> Value {
    Value::Object(
        DEFAULTS
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::from(*v)))
            .collect(),
    )
}

/// What `project` uses, per quota key.
async fn usage(state: &ApiState, project: &str) -> Result<Map<String, Value>, Fault> {
    let live = |plural: &'static str| async move {
        let mut items = common::list(state, kind(plural), Some(project))
            .await
            .map_err(from_api)?;
        items.retain(|o| !deleting(o));
        Ok::<_, Fault>(items)
    };
    let groups = live("securitygroups").await?;
    let rules: usize = groups
        .iter()
        .map(|g| {
            g.pointer("/spec/rules")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        })
        .sum();
    let mut used = Map::new();
    used.insert("network".into(), Value::from(live("networks").await?.len()));
    used.insert("subnet".into(), Value::from(live("subnets").await?.len()));
    used.insert("port".into(), Value::from(live("ports").await?.len()));
    used.insert("security_group".into(), Value::from(groups.len()));
    used.insert("security_group_rule".into(), Value::from(rules));
    Ok(used)
}

fn check(caller: Caller, project: &str) -> Result<(), Fault> {
    let scope = Scope::of(caller)?;
    scope.check(Action::Read, project, &format!("Project {project}"))
}

/// `GET /quotas/{project}` and `/quotas/{project}/default`: the limits.
pub async fn show(caller: Caller, Path(project): Path<String>) -> Result<Response, Fault> {
    check(caller, &project)?;
    Ok(ok("quota", limits()))
}

/// `GET /quotas/{project}/details`: limit, used and reserved per resource.
pub async fn details(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project): Path<String>,
) -> Result<Response, Fault> {
    check(caller, &project)?;
    let used = usage(&state, &project).await?;
    let body: Map<String, Value> = DEFAULTS
        .iter()
        .map(|(k, limit)| {
            let n = used.get(*k).cloned().unwrap_or(Value::from(0));
            (
                (*k).to_string(),
                json!({"limit": limit, "used": n, "reserved": 0}),
            )
        })
        .collect();
    Ok(ok("quota", Value::Object(body)))
}
