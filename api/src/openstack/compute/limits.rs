//! Nova's `GET /compute/v2.1/limits`: the project's absolute limits and what it uses.
//!
//! The limits Cirrus enforces (instances, cores, RAM, key pairs, security groups and their
//! rules) are the project's quotas ([`crate::quota::limits`], what `os-quota-sets` and
//! Neutron's quotas set); the others are the fixed values `os-quota-sets` shows
//! ([`quota_sets::FIXED`]); floating IPs have no quota yet (`-1`). Usage is counted from the project's objects: its servers (not being
//! deleted) and the flavors they name, its security groups, floating IPs and server groups.
//! Cloud admins may ask for another project's with `?tenant_id=`. [`limits_for`] is the one
//! place that reads them.

use cirrus_crds::Resource as _;
use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cirrus_auth::Action;
use cirrus_crds::KindInfo;
use serde_json::{Map, Value, json};

use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common;
use crate::openstack::compute::quota_sets;
use crate::openstack::fault::{Dialect, Fault};
use crate::quota::ServerUsage;

const D: Dialect = Dialect::Compute;

/// Each limit `/limits` shows and the quota it reports: the project's limits
/// ([`crate::quota::limits`], what `os-quota-sets` and Neutron's quotas set) or, for what
/// Cirrus does not enforce, Nova's fixed values ([`quota_sets::FIXED`]).
const LIMIT_QUOTAS: &[(&str, &str)] = &[
    ("maxTotalInstances", "instances"),
    ("maxTotalCores", "cores"),
    ("maxTotalRAMSize", "ram"),
    ("maxTotalKeypairs", "key_pairs"),
    ("maxSecurityGroups", "security_group"),
    ("maxSecurityGroupRules", "security_group_rule"),
    ("maxServerMeta", "metadata_items"),
    ("maxImageMeta", "metadata_items"),
    ("maxPersonality", "injected_files"),
    ("maxPersonalitySize", "injected_file_content_bytes"),
    ("maxServerGroups", "server_groups"),
    ("maxServerGroupMembers", "server_group_members"),
];

/// `maxTotalFloatingIps`: no quota limits floating IPs yet, so nothing does (`-1`).
const FLOATING_IPS_UNLIMITED: i64 = -1;

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

/// Counts the servers (not being deleted) of a project and what their flavors size, each
/// as the quota admission counts one ([`ServerUsage::of_one`]).
pub fn server_usage(servers: &[Value], flavors: &[Value]) -> Used {
    let flavors: HashMap<String, &Value> = flavors.iter().map(|f| (common::name(f), f)).collect();
    let servers = servers
        .iter()
        .filter(|s| s.pointer("/metadata/deletionTimestamp").is_none())
        .map(|server| {
            let flavor = server["spec"]["flavor"]
                .as_str()
                .and_then(|f| flavors.get(f).copied());
            ServerUsage::of_one(flavor)
        })
        .fold(ServerUsage::default(), ServerUsage::plus);
    Used {
        instances: servers.instances,
        cores: servers.cores,
        ram_mib: servers.ram_mib,
        ..Used::default()
    }
}

/// The `absolute` document for `used` under `limits` (the project's quota limits).
pub fn absolute(used: Used, limits: &BTreeMap<String, i64>) -> Value {
    let fixed: BTreeMap<&str, i64> = quota_sets::FIXED.iter().copied().collect();
    let mut body = Map::new();
    for (field, quota) in LIMIT_QUOTAS {
        let limit = limits
            .get(*quota)
            .or_else(|| fixed.get(quota))
            .copied()
            .unwrap_or(-1);
        body.insert((*field).to_string(), json!(limit));
    }
    body.insert("maxTotalFloatingIps".into(), json!(FLOATING_IPS_UNLIMITED));
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

async fn count(
    state: &ApiState,
    kind: &'static KindInfo,
    project: &str,
) -> Result<Vec<Value>, Fault> {
    common::list(state, kind, Some(project))
        .await
        .map_err(|e| Fault::from_api(D, e))
}

/// What `project` uses now.
pub async fn limits_for(state: &ApiState, project: &str) -> Result<Value, Fault> {
    let servers = count(state, cirrus_crds::Server::info(), project).await?;
    let flavors = common::list(state, cirrus_crds::Flavor::info(), None)
        .await
        .map_err(|e| Fault::from_api(D, e))?;
    let mut used = server_usage(&servers, &flavors);
    used.security_groups = count(state, cirrus_crds::SecurityGroup::info(), project)
        .await?
        .len() as i64;
    used.floating_ips = count(state, cirrus_crds::FloatingIP::info(), project)
        .await?
        .len() as i64;
    used.server_groups = count(state, cirrus_crds::ServerGroup::info(), project)
        .await?
        .len() as i64;
    // The enforced limits are the project's quotas (`os-quota-sets` and Neutron write them).
    let limits = crate::quota::limits(&state.store, project)
        .await
        .map_err(|e| Fault::from_api(D, e))?;
    Ok(absolute(used, &limits))
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
        let defaults = crate::quota::default_limits();
        let body = absolute(used, &defaults);
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
        // What Neutron enforces, not Nova's old defaults.
        assert_eq!(body["maxSecurityGroups"], 10);
        assert_eq!(body["maxSecurityGroupRules"], 100);
        assert_eq!(body["maxServerMeta"], 128);
        assert_eq!(body["maxTotalFloatingIps"], -1);
        let mut raised = defaults.clone();
        raised.insert("security_group_rule".into(), 7);
        raised.insert("cores".into(), 3);
        let body = absolute(used, &raised);
        assert_eq!(body["maxSecurityGroupRules"], 7);
        assert_eq!(body["maxTotalCores"], 3);
    }
}
