//! Nova's `GET /compute/v2.1/limits`: the project's absolute limits and what it uses.
//!
//! The limits Cirrus enforces (instances, cores, RAM, key pairs) are the project's quotas
//! ([`crate::quota::limits`], what `os-quota-sets` sets); the others are Nova's defaults
//! ([`DEFAULTS`]). Usage is counted from the project's objects: its servers (not being
//! deleted) and the flavors they name, its security groups, floating IPs and server groups.
//! Cloud admins may ask for another project's with `?tenant_id=`. [`limits_for`] is the one
//! place that reads them.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cirrus_auth::Action;
use serde_json::{Map, Value, json};

use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common;
use crate::openstack::fault::{Dialect, Fault};

const D: Dialect = Dialect::Compute;

/// Nova's default absolute limits (`[quota]` options), by the name `/limits` shows.
pub const DEFAULTS: &[(&str, i64)] = &[
    ("maxImageMeta", 128),
    ("maxPersonality", 5),
    ("maxPersonalitySize", 10240),
    ("maxSecurityGroupRules", 20),
    ("maxSecurityGroups", 10),
    ("maxServerGroupMembers", 10),
    ("maxServerGroups", 10),
    ("maxServerMeta", 128),
    ("maxTotalCores", 20),
    ("maxTotalFloatingIps", 10),
    ("maxTotalInstances", 10),
    ("maxTotalKeypairs", 100),
    ("maxTotalRAMSize", 51200),
];

/// The limits route under `/compute/v2.1`.
pub fn router() -> Router<ApiState> {
    Router::new().route("/compute/v2.1/limits", get(limits))
}

/// What a project uses, as `/limits` counts it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    /// Servers.
    pub instances: i64,
    /// vCPUs of their flavors.
    pub cores: i64,
    /// RAM of their flavors, MiB.
    pub ram_mib: i64,
    /// Security groups.
    pub security_groups: i64,
    /// Floating IPs.
    pub floating_ips: i64,
    /// Server groups.
    pub server_groups: i64,
}

/// Counts the servers (not being deleted) of a project and what their flavors size.
pub fn server_usage(servers: &[Value], flavors: &[Value]) -> Used {
    let flavors: HashMap<String, &Value> = flavors.iter().map(|f| (common::name(f), f)).collect();
    let mut used = Used::default();
    for server in servers
        .iter()
        .filter(|s| s.pointer("/metadata/deletionTimestamp").is_none())
    {
        used.instances = used.instances.saturating_add(1);
        if let Some(flavor) = server["spec"]["flavor"]
            .as_str()
            .and_then(|f| flavors.get(f))
        {
            // Saturating: the native API lets flavors as big as `u64` in (no overflow panic).
            let amount = |field: &str| {
                flavor["spec"][field]
                    .as_u64()
                    .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX))
            };
            used.cores = used.cores.saturating_add(amount("vcpus"));
            used.ram_mib = used.ram_mib.saturating_add(amount("ram"));
        }
    }
    used
}

/// The `absolute` document for `used` under the limits in force.
pub fn absolute(used: Used) -> Value {
    let mut body: Map<String, Value> = DEFAULTS
        .iter()
        .map(|(name, value)| ((*name).to_string(), json!(value)))
        .collect();
    for (name, value) in [
        ("totalInstancesUsed", used.instances),
        ("totalCoresUsed", used.cores),
        ("totalRAMUsed", used.ram_mib),
        ("totalSecurityGroupsUsed", used.security_groups),
        ("totalFloatingIpsUsed", used.floating_ips),
        ("totalServerGroupsUsed", used.server_groups),
    ] {
        body.insert(name.to_string(), json!(value));
    }
    Value::Object(body)
}

async fn count(state: &ApiState, plural: &str, project: &str) -> Result<Vec<Value>, Fault> {
    let kind = cirrus_crds::kind_by_plural(plural).expect("a known kind");
    common::list(state, kind, Some(project))
        .await
        .map_err(|e| Fault::from_api(D, e))
}

/// What `project` uses now.
pub async fn limits_for(state: &ApiState, project: &str) -> Result<Value, Fault> {
    let servers = count(state, "servers", project).await?;
    let flavors = common::list(
        state,
        cirrus_crds::kind_by_plural("flavors").expect("a known kind"),
        None,
    )
    .await
    .map_err(|e| Fault::from_api(D, e))?;
    let mut used = server_usage(&servers, &flavors);
    used.security_groups = count(state, "securitygroups", project).await?.len() as i64;
    used.floating_ips = count(state, "floatingips", project).await?.len() as i64;
    used.server_groups = count(state, "servergroups", project).await?.len() as i64;
    let mut body = absolute(used);
    // The enforced limits are the project's quotas (`os-quota-sets` writes them).
    let limits = crate::quota::limits(&state.store, project)
        .await
        .map_err(|e| Fault::from_api(D, e))?;
    for (field, quota) in [
        ("maxTotalInstances", "instances"),
        ("maxTotalCores", "cores"),
        ("maxTotalRAMSize", "ram"),
        ("maxTotalKeypairs", "key_pairs"),
    ] {
        if let Some(limit) = limits.get(quota) {
            body[field] = json!(limit);
        }
    }
    Ok(body)
}

/// `GET /limits` (`?tenant_id=` for admins).
async fn limits(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Fault> {
    let own = caller.project().ok_or_else(|| {
        Fault::forbidden(D, "Limits belong to a project: use a token scoped to one.")
    })?;
    let project = query
        .get("tenant_id")
        .filter(|t| !t.is_empty())
        .map(String::as_str)
        .unwrap_or(own);
    if project != own && !caller.is_cloud_admin() {
        return Err(Fault::forbidden(
            D,
            "Policy doesn't allow reading another project's limits.",
        ));
    }
    caller
        .check(Action::Read, Some(project))
        .map_err(|r| Fault::refused(D, r, "limits"))?;
    let absolute = limits_for(&state, project).await?;
    Ok(Json(json!({"limits": {"absolute": absolute, "rate": []}})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_live_servers_by_flavor() {
        let flavors = vec![
            json!({"metadata": {"name": "small"}, "spec": {"vcpus": 1, "ram": 512}}),
            json!({"metadata": {"name": "big"}, "spec": {"vcpus": 4, "ram": 8192}}),
        ];
        let servers = vec![
            json!({"metadata": {"name": "a"}, "spec": {"flavor": "small"}}),
            json!({"metadata": {"name": "b"}, "spec": {"flavor": "big"}}),
            json!({"metadata": {"name": "c", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"flavor": "big"}}),
            json!({"metadata": {"name": "d"}, "spec": {"flavor": "unknown"}}),
        ];
        let used = server_usage(&servers, &flavors);
        assert_eq!(
            used,
            Used {
                instances: 3,
                cores: 5,
                ram_mib: 8704,
                ..Used::default()
            }
        );
        let body = absolute(used);
        assert_eq!(body["maxTotalInstances"], 10);
        assert_eq!(body["maxTotalCores"], 20);
        assert_eq!(body["maxTotalRAMSize"], 51200);
        assert_eq!(body["maxTotalKeypairs"], 100);
        assert_eq!(body["totalInstancesUsed"], 3);
        assert_eq!(body["totalCoresUsed"], 5);
        assert_eq!(body["totalRAMUsed"], 8704);
        assert_eq!(
            body.as_object().unwrap().len(),
            19,
            "every field of tempest's schema"
        );
    }
}
