//! Nova's host views over `Node` objects: `os-hypervisors`, `os-services` and
//! `os-availability-zone` (`/compute/v2.1/...`).
//!
//! Every node is one hypervisor and one `nova-compute` service. Its `state` is `up` when the
//! node's `Ready` condition is `True`, its `status` `disabled` when it is cordoned
//! (`spec.unschedulable`, reason in `spec.unschedulableReason`). Disabling the service
//! (`openstack compute service set --disable`) cordons the node, enabling uncordons it.
//! Usage (`vcpus_used`, `memory_mb_used`, `local_gb_used`, `running_vms`) is the sum of the
//! flavors of the servers bound to the node. Ids are stable integers derived from the
//! node's uid (microversion 2.1 shows integer ids). Hypervisors and services are admin-only;
//! availability zones are readable by every user.

use cirrus_crds::Resource as _;
use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use cirrus_auth::Action;
use serde_json::{Value, json};

use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common;
use crate::openstack::fault::{Dialect, Fault};

const D: Dialect = Dialect::Compute;

/// The zone of nodes that name none (Nova's `default_availability_zone`).
pub const DEFAULT_ZONE: &str = "nova";

/// The binary every node's service shows.
const COMPUTE_BINARY: &str = "nova-compute";

/// The host routes under `/compute/v2.1`.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/compute/v2.1/os-hypervisors", get(hypervisors))
        .route(
            "/compute/v2.1/os-hypervisors/detail",
            get(hypervisors_detail),
        )
        .route(
            "/compute/v2.1/os-hypervisors/statistics",
            get(hypervisor_statistics),
        )
        .route("/compute/v2.1/os-hypervisors/{id}", get(hypervisor))
        .route(
            "/compute/v2.1/os-hypervisors/{pattern}/search",
            get(hypervisor_search),
        )
        .route(
            "/compute/v2.1/os-hypervisors/{id}/uptime",
            get(hypervisor_uptime),
        )
        .route("/compute/v2.1/os-aggregates", get(aggregates))
        .route("/compute/v2.1/os-services", get(services))
        .route("/compute/v2.1/os-services/{action}", put(service_update))
        .route("/compute/v2.1/os-availability-zone", get(zones))
        .route(
            "/compute/v2.1/os-availability-zone/detail",
            get(zones_detail),
        )
}

fn api_error(e: crate::error::ApiError) -> Fault {
    Fault::from_api(D, e)
}

/// Hypervisors and services are for cloud admins (Nova's default policy).
fn admin_only(caller: &Caller) -> Result<(), Fault> {
    if caller.is_cloud_admin() {
        Ok(())
    } else {
        Err(Fault::forbidden(
            D,
            "Policy doesn't allow this operation: it needs the admin role.",
        ))
    }
}

/// A stable positive integer id for `node` (from its uid).
pub fn numeric_id(node: &Value) -> u64 {
    let uid = common::uid(node);
    let hash = uid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    // Keep it within a JSON-safe, 31-bit positive range, never 0.
    (hash % 0x7fff_fffe) + 1
}

fn condition_true(node: &Value, kind: &str) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

fn is_up(node: &Value) -> bool {
    condition_true(node, "Ready")
}

fn is_disabled(node: &Value) -> bool {
    node["spec"]["unschedulable"].as_bool().unwrap_or(false)
}

fn disabled_reason(node: &Value) -> Value {
    node["spec"]["unschedulableReason"].clone()
}

fn zone_of(node: &Value) -> String {
    node["spec"]["availabilityZone"]
        .as_str()
        .unwrap_or(DEFAULT_ZONE)
        .to_string()
}

fn host_ip(node: &Value) -> String {
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    addresses
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .or_else(|| {
            addresses
                .iter()
                .find(|a| a["type"] != "Hostname" && a["address"].as_str().is_some())
        })
        .and_then(|a| a["address"].as_str())
        .unwrap_or("0.0.0.0")
        .to_string()
}

/// Nova's integer hypervisor version: `8.2.2` → 8002002 (saturating: a node may report
/// any digits).
fn version_number(version: Option<&str>) -> u64 {
    let mut parts = version
        .unwrap_or_default()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let (a, b, c) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    a.saturating_mul(1_000_000)
        .saturating_add(b.saturating_mul(1_000))
        .saturating_add(c)
}

/// What the servers bound to one node use.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Servers bound to the node.
    pub servers: u64,
    /// Their vCPUs.
    pub vcpus: u64,
    /// Their RAM, MiB.
    pub ram_mib: u64,
    /// Their root + ephemeral disks, GiB.
    pub disk_gib: u64,
    /// Those with work in progress (building, rebooting, rebuilding, resizing, migrating):
    /// Nova's `current_workload`.
    pub busy: u64,
}

/// Server phases with a task in progress (Nova counts instances with a task state).
const BUSY_PHASES: &[&str] = &[
    "BUILD",
    "REBOOT",
    "HARD_REBOOT",
    "REBUILD",
    "RESIZE",
    "MIGRATING",
];

/// Usage per node name, from every server and the flavors they name.
pub fn usage_by_node(servers: &[Value], flavors: &[Value]) -> HashMap<String, Usage> {
    let flavors: HashMap<String, &Value> = flavors.iter().map(|f| (common::name(f), f)).collect();
    let mut usage: HashMap<String, Usage> = HashMap::new();
    for server in servers {
        let Some(node) = server["spec"]["nodeName"]
            .as_str()
            .or_else(|| server.pointer("/status/node").and_then(Value::as_str))
        else {
            continue;
        };
        let entry = usage.entry(node.to_string()).or_default();
        entry.servers = entry.servers.saturating_add(1);
        let phase = server.pointer("/status/phase").and_then(Value::as_str);
        if phase.is_none_or(|p| BUSY_PHASES.contains(&p)) {
            entry.busy = entry.busy.saturating_add(1);
        }
        if let Some(flavor) = server["spec"]["flavor"]
            .as_str()
            .and_then(|f| flavors.get(f))
        {
            // Saturating: the native API lets flavors as big as `u64` in (no overflow panic).
            let spec = &flavor["spec"];
            let amount = |field: &str| spec[field].as_u64().unwrap_or(0);
            entry.vcpus = entry.vcpus.saturating_add(amount("vcpus"));
            entry.ram_mib = entry.ram_mib.saturating_add(amount("ram"));
            entry.disk_gib = entry
                .disk_gib
                .saturating_add(amount("disk").saturating_add(amount("ephemeral")));
        }
    }
    usage
}

/// `total − used` as Nova shows free memory and disk (negative when overcommitted), held
/// to `i64`'s range whatever a node or its flavors claim.
fn free(total: u64, used: u64) -> i64 {
    let free = i128::from(total) - i128::from(used);
    i64::try_from(free).unwrap_or(if free < 0 { i64::MIN } else { i64::MAX })
}

/// The 2.1 hypervisor detail body of `node`.
pub fn hypervisor_detail(node: &Value, usage: Usage) -> Value {
    let status = &node["status"];
    let capacity = &status["capacity"];
    let vcpus = capacity["vcpus"].as_u64().unwrap_or(0);
    let memory = capacity["memoryMiB"].as_u64().unwrap_or(0);
    let disk = capacity["diskGiB"].as_u64().unwrap_or(0);
    let name = common::name(node);
    let hostname = status["hypervisorHostname"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| name.clone());
    let cpu_info = json!({"arch": status["architecture"].as_str().unwrap_or("x86_64")});
    json!({
        "id": numeric_id(node),
        "hypervisor_hostname": hostname,
        "state": if is_up(node) { "up" } else { "down" },
        "status": if is_disabled(node) { "disabled" } else { "enabled" },
        "hypervisor_type": status["hypervisorType"].as_str().unwrap_or("QEMU"),
        "hypervisor_version": version_number(status["hypervisorVersion"].as_str()),
        "host_ip": host_ip(node),
        "cpu_info": cpu_info.to_string(),
        "vcpus": vcpus,
        "vcpus_used": usage.vcpus,
        "memory_mb": memory,
        "memory_mb_used": usage.ram_mib,
        "free_ram_mb": free(memory, usage.ram_mib),
        "local_gb": disk,
        "local_gb_used": usage.disk_gib,
        "free_disk_gb": free(disk, usage.disk_gib),
        "disk_available_least": free(disk, usage.disk_gib),
        "current_workload": usage.busy,
        "running_vms": usage.servers,
        "service": {
            "host": name,
            "id": numeric_id(node),
            "disabled_reason": disabled_reason(node),
        },
    })
}

fn hypervisor_summary(node: &Value) -> Value {
    let hostname = node["status"]["hypervisorHostname"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| common::name(node));
    json!({
        "id": numeric_id(node),
        "hypervisor_hostname": hostname,
        "state": if is_up(node) { "up" } else { "down" },
        "status": if is_disabled(node) { "disabled" } else { "enabled" },
    })
}

async fn nodes(state: &ApiState) -> Result<Vec<Value>, Fault> {
    let mut nodes = common::list(state, cirrus_crds::Node::info(), None)
        .await
        .map_err(api_error)?;
    nodes.sort_by_key(common::name);
    Ok(nodes)
}

async fn usage(state: &ApiState) -> Result<HashMap<String, Usage>, Fault> {
    let servers = common::list(state, cirrus_crds::Server::info(), None)
        .await
        .map_err(api_error)?;
    let flavors = common::list(state, cirrus_crds::Flavor::info(), None)
        .await
        .map_err(api_error)?;
    Ok(usage_by_node(&servers, &flavors))
}

/// `GET /os-hypervisors`.
async fn hypervisors(State(state): State<ApiState>, caller: Caller) -> Result<Response, Fault> {
    admin_only(&caller)?;
    let items: Vec<Value> = nodes(&state)
        .await?
        .iter()
        .map(hypervisor_summary)
        .collect();
    Ok(Json(json!({ "hypervisors": items })).into_response())
}

/// `GET /os-hypervisors/detail`.
async fn hypervisors_detail(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Response, Fault> {
    admin_only(&caller)?;
    let usage = usage(&state).await?;
    let items: Vec<Value> = nodes(&state)
        .await?
        .iter()
        .map(|n| hypervisor_detail(n, usage.get(&common::name(n)).copied().unwrap_or_default()))
        .collect();
    Ok(Json(json!({ "hypervisors": items })).into_response())
}

/// `GET /os-hypervisors/{id}` (the numeric id, or the node name).
async fn hypervisor(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    admin_only(&caller)?;
    let node = nodes(&state)
        .await?
        .into_iter()
        .find(|n| numeric_id(n).to_string() == id || common::name(n) == id)
        .ok_or_else(|| {
            Fault::not_found(D, format!("Hypervisor with ID {id} could not be found."))
        })?;
    let usage = usage(&state)
        .await?
        .get(&common::name(&node))
        .copied()
        .unwrap_or_default();
    Ok(Json(json!({ "hypervisor": hypervisor_detail(&node, usage) })).into_response())
}

/// `GET /os-hypervisors/{pattern}/search`: hypervisors whose host name contains `pattern`.
async fn hypervisor_search(
    State(state): State<ApiState>,
    caller: Caller,
    Path(pattern): Path<String>,
) -> Result<Response, Fault> {
    admin_only(&caller)?;
    let items: Vec<Value> = nodes(&state)
        .await?
        .iter()
        .map(hypervisor_summary)
        .filter(|h| {
            h["hypervisor_hostname"]
                .as_str()
                .is_some_and(|n| n.contains(&pattern))
        })
        .collect();
    if items.is_empty() {
        return Err(Fault::not_found(
            D,
            format!("No hypervisor matching '{pattern}' could be found."),
        ));
    }
    Ok(Json(json!({ "hypervisors": items })).into_response())
}

/// `GET /os-hypervisors/statistics`: the sums over every hypervisor.
async fn hypervisor_statistics(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Response, Fault> {
    admin_only(&caller)?;
    let usage = usage(&state).await?;
    let nodes = nodes(&state).await?;
    let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
    for node in &nodes {
        let detail = hypervisor_detail(
            node,
            usage.get(&common::name(node)).copied().unwrap_or_default(),
        );
        for key in [
            "current_workload",
            "disk_available_least",
            "free_disk_gb",
            "free_ram_mb",
            "local_gb",
            "local_gb_used",
            "memory_mb",
            "memory_mb_used",
            "running_vms",
            "vcpus",
            "vcpus_used",
        ] {
            let total = totals.entry(key).or_default();
            *total = total.saturating_add(detail[key].as_i64().unwrap_or(0));
        }
    }
    let mut body = json!(totals);
    body["count"] = json!(nodes.len());
    Ok(Json(json!({ "hypervisor_statistics": body })).into_response())
}

/// `GET /os-hypervisors/{id}/uptime`: `501`, as Nova answers for drivers that cannot tell
/// (the host's uptime is known only to its node agent; `openstack hypervisor show` copes).
async fn hypervisor_uptime(caller: Caller, Path(id): Path<String>) -> Result<Response, Fault> {
    admin_only(&caller)?;
    Err(Fault::new(
        D,
        axum::http::StatusCode::NOT_IMPLEMENTED,
        format!("The uptime of hypervisor {id} is not reported."),
    ))
}

/// `GET /os-aggregates` (admin): none. Host aggregates are not modelled (node labels play
/// their part for the scheduler); `openstack hypervisor show` lists them.
async fn aggregates(caller: Caller) -> Result<Response, Fault> {
    admin_only(&caller)?;
    Ok(Json(json!({ "aggregates": [] })).into_response())
}

/// The `nova-compute` service of `node`.
pub fn service(node: &Value) -> Value {
    let updated = node
        .pointer("/status/lastHeartbeatTime")
        .and_then(Value::as_str)
        .and_then(|t| common::openstack_time(Some(t)));
    json!({
        "id": numeric_id(node),
        "binary": COMPUTE_BINARY,
        "host": common::name(node),
        "zone": zone_of(node),
        "status": if is_disabled(node) { "disabled" } else { "enabled" },
        "state": if is_up(node) { "up" } else { "down" },
        "updated_at": updated,
        "disabled_reason": disabled_reason(node),
    })
}

/// `GET /os-services` (`?host=`, `?binary=` filters).
async fn services(
    State(state): State<ApiState>,
    caller: Caller,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Result<Response, Fault> {
    admin_only(&caller)?;
    let items: Vec<Value> = nodes(&state)
        .await?
        .iter()
        .map(service)
        .filter(|s| query.get("host").is_none_or(|h| s["host"] == h.as_str()))
        .filter(|s| {
            query
                .get("binary")
                .is_none_or(|b| s["binary"] == b.as_str())
        })
        .collect();
    Ok(Json(json!({ "services": items })).into_response())
}

/// Cordons (`Some(reason)`, reason possibly empty) or uncordons (`None`) `node`,
/// conditional on the version read; returns the node as written.
async fn set_cordon(
    state: &ApiState,
    caller: &Caller,
    node: &Value,
    disable: Option<Option<String>>,
) -> Result<Value, Fault> {
    let spec = match disable {
        Some(reason) => json!({"unschedulable": true, "unschedulableReason": reason}),
        None => json!({"unschedulable": null, "unschedulableReason": null}),
    };
    let patch = json!({
        "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
        "spec": spec,
    });
    crate::resources::write(
        state,
        crate::admission::Writer::Caller(caller),
        cirrus_crds::Node::info(),
        None,
        &common::name(node),
        crate::resources::Change::MergePatch(&patch),
        cirrus_store::objects::Part::Main,
        false,
    )
    .await
    .map_err(api_error)
}

fn string_field(body: &Value, field: &str) -> Result<Option<String>, Fault> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= 255 => Ok(Some(s.clone())),
        Some(other) => Err(Fault::bad_request(
            D,
            format!(
                "Invalid input for field/attribute {field}: {other} is not a string of at most 255 characters"
            ),
        )),
    }
}

/// `PUT /os-services/{enable|disable|disable-log-reason}` with `{host, binary
/// [, disabled_reason]}` (2.1), or `PUT /os-services/{id}` with `{status, disabled_reason}`
/// (the 2.53 form): cordons or uncordons the node.
async fn service_update(
    State(state): State<ApiState>,
    caller: Caller,
    Path(action): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    caller
        .check(Action::Write, None)
        .map_err(|r| Fault::refused(D, r, "services"))?;
    admin_only(&caller)?;
    let body = common::json_body(D, &body)?;
    let nodes = nodes(&state).await?;
    match action.as_str() {
        "enable" | "disable" | "disable-log-reason" => {
            let host = string_field(&body, "host")?.ok_or_else(|| {
                Fault::bad_request(
                    D,
                    "Invalid input for field/attribute host: 'host' is a required property",
                )
            })?;
            let binary = string_field(&body, "binary")?.ok_or_else(|| {
                Fault::bad_request(
                    D,
                    "Invalid input for field/attribute binary: 'binary' is a required property",
                )
            })?;
            let node = nodes
                .iter()
                .find(|n| common::name(n) == host)
                .filter(|_| binary == COMPUTE_BINARY)
                .ok_or_else(|| {
                    Fault::not_found(
                        D,
                        format!("Service {binary} on host {host} could not be found."),
                    )
                })?;
            let reason = string_field(&body, "disabled_reason")?;
            if action == "disable-log-reason" && reason.is_none() {
                return Err(Fault::bad_request(
                    D,
                    "Invalid input for field/attribute disabled_reason: 'disabled_reason' is a required property",
                ));
            }
            let change = (action != "enable").then_some(reason.clone());
            set_cordon(&state, &caller, node, change).await?;
            tracing::info!(node = %host, %action, "compute service updated");
            let mut service = json!({
                "host": host,
                "binary": binary,
                "status": if action == "enable" { "enabled" } else { "disabled" },
            });
            if action == "disable-log-reason" {
                service["disabled_reason"] = json!(reason);
            }
            Ok(Json(json!({ "service": service })).into_response())
        }
        id => {
            let node = nodes
                .iter()
                .find(|n| numeric_id(n).to_string() == id || common::uid(n) == id)
                .ok_or_else(|| Fault::not_found(D, format!("Service {id} could not be found.")))?;
            let reason = string_field(&body, "disabled_reason")?;
            let change = match string_field(&body, "status")?.as_deref() {
                Some("disabled") => Some(reason),
                Some("enabled") if reason.is_some() => {
                    return Err(Fault::bad_request(
                        D,
                        "Specifying 'disabled_reason' with status 'enabled' is invalid.",
                    ));
                }
                Some("enabled") => None,
                Some(other) => {
                    return Err(Fault::bad_request(
                        D,
                        format!(
                            "Invalid input for field/attribute status: {other:?} is not one of enabled, disabled"
                        ),
                    ));
                }
                None => {
                    return Err(Fault::bad_request(
                        D,
                        "Invalid input for field/attribute status: 'status' is a required property",
                    ));
                }
            };
            let written = set_cordon(&state, &caller, node, change).await?;
            tracing::info!(node = %common::name(node), "compute service updated");
            Ok(Json(json!({ "service": service(&written) })).into_response())
        }
    }
}

/// Zone name → its nodes.
fn zones_of(nodes: &[Value]) -> BTreeMap<String, Vec<&Value>> {
    let mut zones: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for node in nodes {
        zones.entry(zone_of(node)).or_default().push(node);
    }
    if zones.is_empty() {
        zones.insert(DEFAULT_ZONE.to_string(), Vec::new());
    }
    zones
}

/// `GET /os-availability-zone`: the zones of the nodes (`nova` when they name none);
/// a zone is available when one of its nodes is up and enabled.
async fn zones(State(state): State<ApiState>, _caller: Caller) -> Result<Response, Fault> {
    let nodes = nodes(&state).await?;
    let info: Vec<Value> = zones_of(&nodes)
        .iter()
        .map(|(zone, members)| {
            let available = members.iter().any(|n| is_up(n) && !is_disabled(n));
            json!({"zoneName": zone, "zoneState": {"available": available}, "hosts": null})
        })
        .collect();
    Ok(Json(json!({ "availabilityZoneInfo": info })).into_response())
}

/// `GET /os-availability-zone/detail` (admin): zones with their hosts' services.
async fn zones_detail(State(state): State<ApiState>, caller: Caller) -> Result<Response, Fault> {
    admin_only(&caller)?;
    let nodes = nodes(&state).await?;
    let info: Vec<Value> = zones_of(&nodes)
        .iter()
        .map(|(zone, members)| {
            let available = members.iter().any(|n| is_up(n) && !is_disabled(n));
            let hosts: serde_json::Map<String, Value> = members
                .iter()
                .map(|n| {
                    let s = service(n);
                    (
                        common::name(n),
                        json!({COMPUTE_BINARY: {
                            "available": is_up(n),
                            "active": !is_disabled(n),
                            "updated_at": s["updated_at"],
                        }}),
                    )
                })
                .collect();
            json!({"zoneName": zone, "zoneState": {"available": available}, "hosts": hosts})
        })
        .collect();
    Ok(Json(json!({ "availabilityZoneInfo": info })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool, cordoned: bool) -> Value {
        json!({
            "metadata": {"name": name, "uid": format!("uid-{name}")},
            "spec": {"unschedulable": cordoned, "unschedulableReason": if cordoned { json!("maintenance") } else { Value::Null }},
            "status": {
                "capacity": {"vcpus": 8, "memoryMiB": 16384, "diskGiB": 100},
                "hypervisorType": "QEMU", "hypervisorVersion": "8.2.2",
                "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": "10.0.0.5"}],
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "Unknown" }}],
                "lastHeartbeatTime": "2026-11-26T03:00:00.123Z",
            },
        })
    }

    #[test]
    fn hypervisor_detail_sums_the_servers_on_the_node() {
        let flavors = vec![
            json!({"metadata": {"name": "m1"}, "spec": {"vcpus": 2, "ram": 1024, "disk": 10, "ephemeral": 1}}),
        ];
        let servers = vec![
            json!({"spec": {"flavor": "m1", "nodeName": "n1"}}),
            json!({"spec": {"flavor": "m1", "nodeName": "n1"}, "status": {"phase": "ACTIVE"}}),
            json!({"spec": {"flavor": "m1"}}),
            json!({"spec": {"flavor": "gone", "nodeName": "n2"}}),
        ];
        let usage = usage_by_node(&servers, &flavors);
        assert_eq!(
            usage["n1"],
            Usage {
                servers: 2,
                vcpus: 4,
                ram_mib: 2048,
                disk_gib: 22,
                busy: 1,
            }
        );
        assert_eq!(usage["n2"].servers, 1);
        let body = hypervisor_detail(&node("n1", true, false), usage["n1"]);
        assert_eq!(body["state"], "up");
        assert_eq!(body["status"], "enabled");
        assert_eq!(body["vcpus_used"], 4);
        assert_eq!(body["free_ram_mb"], 16384 - 2048);
        assert_eq!(body["running_vms"], 2);
        assert_eq!(body["current_workload"], 1, "the one still building");
        assert_eq!(body["hypervisor_version"], 8_002_002);
        assert_eq!(body["host_ip"], "10.0.0.5");
        assert_eq!(body["service"]["host"], "n1");
        let keys = body.as_object().unwrap().len();
        assert_eq!(keys, 20, "the tempest 2.1 hypervisor fields");
    }

    #[test]
    fn services_show_cordon_and_heartbeat() {
        let s = service(&node("n2", false, true));
        assert_eq!(s["binary"], "nova-compute");
        assert_eq!(s["status"], "disabled");
        assert_eq!(s["state"], "down");
        assert_eq!(s["zone"], "nova");
        assert_eq!(s["disabled_reason"], "maintenance");
        assert_eq!(s["updated_at"], "2026-11-26T03:00:00Z");
        assert_eq!(
            numeric_id(&node("n2", true, true)),
            s["id"].as_u64().unwrap()
        );
        assert_ne!(
            numeric_id(&node("n1", true, true)),
            s["id"].as_u64().unwrap()
        );
    }

    #[test]
    fn zones_group_nodes_and_default_to_nova() {
        let mut east = node("e1", true, false);
        east["spec"]["availabilityZone"] = json!("east");
        let nodes = vec![east, node("n1", true, true)];
        let zones = zones_of(&nodes);
        assert_eq!(zones.keys().collect::<Vec<_>>(), ["east", "nova"]);
        assert_eq!(zones_of(&[]).keys().collect::<Vec<_>>(), ["nova"]);
    }
}
