//! `/network/v2.0/networks` over `Network` objects.
//!
//! A member sees its project's networks and other projects' `shared` ones (read-only); a
//! cloud admin sees all, with the provider attributes. `shared`, `router:external` and
//! `provider:*` are admin-only on create and update (Neutron's default policy: 403). The
//! subnet list of a network is computed from the `Subnet` objects naming it, so it is right
//! without waiting for the network controller. Deleting a network with ports other than its
//! DHCP ports is refused by the native admission (409 `NetworkInUse`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cirrus_auth::Action;
use cirrus_crds::Resource as _;
use serde_json::{Map, Value, json};

use super::{
    NET, Scope, body_object, create_object, created, from_api, invalid, name_attr, not_found, ok,
    opt_bool, opt_str, opt_u32, project_of, reject_read_only, reject_unknown, standard_attrs,
};
use super::{listed, new_name, shown, update_spec};
use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common;
use crate::openstack::fault::Fault;

/// MTU of a VXLAN network when neither spec nor status says (the controller's default).
const DEFAULT_MTU: u32 = 1450;

/// Attributes a create may carry.
const CREATE_KEYS: &[&str] = &[
    "name",
    "admin_state_up",
    "shared",
    "mtu",
    "port_security_enabled",
    "description",
    "router:external",
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
    "project_id",
    "tenant_id",
    "availability_zone_hints",
    "dns_domain",
    "qos_policy_id",
    "is_default",
    "vlan_transparent",
];

/// Attributes an update may change.
const UPDATE_KEYS: &[&str] = &[
    "name",
    "admin_state_up",
    "shared",
    "mtu",
    "port_security_enabled",
    "description",
    "router:external",
    "dns_domain",
    "qos_policy_id",
];

/// Every network the scope may read: its project's and shared ones (all for admins).
pub(crate) async fn visible_networks(state: &ApiState, scope: &Scope) -> Result<Vec<Value>, Fault> {
    let all = common::list(state, cirrus_crds::Network::info(), None)
        .await
        .map_err(from_api)?;
    Ok(all
        .into_iter()
        .filter(|n| !super::deleting(n))
        .filter(|n| scope.admin || project_of(n) == scope.project || is_shared(n))
        .collect())
}

/// The network with uid (or, in the caller's project, name) `id` the scope may read.
pub(crate) async fn find_network(
    state: &ApiState,
    scope: &Scope,
    id: &str,
) -> Result<Option<Value>, Fault> {
    let networks = visible_networks(state, scope).await?;
    if let Some(n) = networks.iter().find(|n| common::uid(n) == id) {
        return Ok(Some(n.clone()));
    }
    Ok(networks
        .into_iter()
        .find(|n| common::name(n) == id && project_of(n) == scope.project))
}

pub(crate) fn is_shared(network: &Value) -> bool {
    network.pointer("/spec/shared").and_then(Value::as_bool) == Some(true)
}

/// The Neutron body of `network`; `subnets` are subnet objects (any projects) from which
/// its own are picked; `admin` adds the provider attributes.
pub fn render(network: &Value, subnets: &[Value], admin: bool) -> Value {
    let project = project_of(network);
    let name = common::name(network);
    let mut subnet_ids: Vec<String> = subnets
        .iter()
        .filter(|s| {
            !super::deleting(s)
                && project_of(s) == project
                && s.pointer("/spec/network").and_then(Value::as_str) == Some(name.as_str())
        })
        .map(common::uid)
        .collect();
    subnet_ids.sort();
    let spec = |p: &str| network.pointer(&format!("/spec/{p}"));
    let flag = |p: &str, default: bool| spec(p).and_then(Value::as_bool).unwrap_or(default);
    let status = network
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("ACTIVE");
    let mtu = network
        .pointer("/status/mtu")
        .or_else(|| spec("mtu"))
        .and_then(Value::as_u64)
        .unwrap_or(u64::from(DEFAULT_MTU));
    let mut out = Map::new();
    out.insert("id".into(), Value::from(common::uid(network)));
    out.insert("name".into(), Value::from(common::display_name(network)));
    out.insert("status".into(), Value::from(status));
    out.insert("subnets".into(), json!(subnet_ids));
    out.insert(
        "admin_state_up".into(),
        Value::from(flag("adminStateUp", true)),
    );
    out.insert("shared".into(), Value::from(flag("shared", false)));
    out.insert(
        "router:external".into(),
        Value::from(flag("external", false)),
    );
    out.insert("mtu".into(), Value::from(mtu));
    out.insert(
        "port_security_enabled".into(),
        Value::from(flag("portSecurityEnabled", true)),
    );
    out.insert("availability_zone_hints".into(), json!([]));
    out.insert("availability_zones".into(), json!(["nova"]));
    out.insert("ipv4_address_scope".into(), Value::Null);
    out.insert("ipv6_address_scope".into(), Value::Null);
    out.insert("l2_adjacency".into(), Value::from(true));
    out.insert("is_default".into(), Value::from(false));
    out.insert("qos_policy_id".into(), Value::Null);
    standard_attrs(network, &mut out);
    if admin {
        let segmentation = network
            .pointer("/status/segmentation")
            .or_else(|| spec("segmentation"));
        let seg = |p: &str| {
            segmentation
                .and_then(|s| s.get(p))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let network_type = match seg("type") {
            Value::Null => Value::from("vxlan"),
            t => t,
        };
        out.insert("provider:network_type".into(), network_type);
        out.insert("provider:physical_network".into(), seg("physicalNetwork"));
        out.insert("provider:segmentation_id".into(), seg("id"));
    }
    Value::Object(out)
}

/// `GET /networks`.
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    scope.check(Action::Read, &scope.project, "Project")?;
    let networks = visible_networks(&state, &scope).await?;
    let subnets = common::list(&state, cirrus_crds::Subnet::info(), None)
        .await
        .map_err(from_api)?;
    let rendered = networks
        .iter()
        .map(|n| render(n, &subnets, scope.admin))
        .collect();
    listed("networks", pairs, rendered)
}

/// `GET /networks/{id}`.
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let network = find_network(&state, &scope, &id)
        .await?
        .ok_or_else(|| not_found("NetworkNotFound", "Network", &id))?;
    let subnets = common::list(
        &state,
        cirrus_crds::Subnet::info(),
        Some(&project_of(&network)),
    )
    .await
    .map_err(from_api)?;
    let body = render(&network, &subnets, scope.admin);
    Ok(shown("network", pairs, body))
}

/// 403 in Neutron's policy wording.
pub(crate) fn policy(rule: &str) -> Fault {
    Fault::forbidden(NET, format!("({rule}) is disallowed by policy"))
        .with_kind("PolicyNotAuthorized")
}

/// Applies the attributes both create and update accept to `spec`.
fn apply_common(
    body: &Map<String, Value>,
    spec: &mut Map<String, Value>,
    scope: &Scope,
    op: &str,
) -> Result<(), Fault> {
    if let Some(up) = opt_bool(body, "admin_state_up")? {
        spec.insert("adminStateUp".into(), Value::from(up));
    }
    if let Some(ps) = opt_bool(body, "port_security_enabled")? {
        spec.insert("portSecurityEnabled".into(), Value::from(ps));
    }
    if let Some(shared) = opt_bool(body, "shared")? {
        let current = spec.get("shared").and_then(Value::as_bool).unwrap_or(false);
        if !scope.admin && shared != current {
            return Err(policy(&format!("{op}_network:shared")));
        }
        spec.insert("shared".into(), Value::from(shared));
    }
    if let Some(external) = opt_bool(body, "router:external")? {
        let current = spec
            .get("external")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !scope.admin && external != current {
            return Err(policy(&format!("{op}_network:router:external")));
        }
        spec.insert("external".into(), Value::from(external));
    }
    if body.contains_key("mtu") {
        match opt_u32(body, "mtu")? {
            Some(mtu) => spec.insert("mtu".into(), Value::from(mtu)),
            None => spec.remove("mtu"),
        };
    }
    if body.contains_key("description") {
        match opt_str(body, "description")?.filter(|d| !d.is_empty()) {
            Some(d) => spec.insert("description".into(), Value::from(d)),
            None => spec.remove("description"),
        };
    }
    if let Some(q) = body.get("qos_policy_id").filter(|v| !v.is_null()) {
        return Err(invalid(
            "qos_policy_id",
            format_args!("'{q}': QoS policies are not supported"),
        ));
    }
    Ok(())
}

/// The `segmentation` of a create's `provider:*` attributes (admins only).
fn provider(body: &Map<String, Value>, scope: &Scope) -> Result<Option<Value>, Fault> {
    let network_type = opt_str(body, "provider:network_type")?;
    let physical = opt_str(body, "provider:physical_network")?;
    let id = opt_u32(body, "provider:segmentation_id")?;
    if network_type.is_none() && physical.is_none() && id.is_none() {
        return Ok(None);
    }
    if !scope.admin {
        return Err(policy("create_network:provider:network_type"));
    }
    let Some(network_type) = network_type else {
        return Err(invalid(
            "provider:network_type",
            "provider:network_type is required with provider attributes",
        ));
    };
    if !["local", "flat", "vlan", "vxlan", "geneve"].contains(&network_type.as_str()) {
        return Err(invalid(
            "provider:network_type",
            format_args!(
                "network type '{network_type}' is not supported (local, flat, vlan, vxlan, geneve)"
            ),
        ));
    }
    let mut seg = json!({"type": network_type});
    if let Some(p) = physical {
        seg["physicalNetwork"] = Value::from(p);
    }
    if let Some(i) = id {
        seg["id"] = Value::from(i);
    }
    Ok(Some(seg))
}

/// `POST /networks`.
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let body = body_object(&body, "network")?;
    reject_unknown(&body, CREATE_KEYS)?;
    let project = scope.create_project(&body)?;
    let display = name_attr(&body)?;
    for (key, allowed) in [("is_default", false), ("vlan_transparent", false)] {
        if opt_bool(&body, key)?.is_some_and(|v| v != allowed) {
            return Err(invalid(key, "not supported"));
        }
    }
    let mut spec = Map::new();
    apply_common(&body, &mut spec, &scope, "create")?;
    if let Some(seg) = provider(&body, &scope)? {
        spec.insert("segmentation".into(), seg);
    }
    let stored = create_object(
        &state,
        &scope.caller,
        cirrus_crds::Network::info(),
        &project,
        "net",
        &display,
        Value::Object(spec),
    )
    .await?;
    tracing::info!(%project, network = %common::name(&stored), "network created through the network API");
    Ok(created("network", render(&stored, &[], scope.admin)))
}

/// `PUT /networks/{id}`.
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let body = body_object(&body, "network")?;
    reject_read_only(
        &body,
        &[
            "id",
            "tenant_id",
            "project_id",
            "status",
            "subnets",
            "provider:network_type",
            "provider:physical_network",
            "provider:segmentation_id",
        ],
    )?;
    reject_unknown(&body, UPDATE_KEYS)?;
    let network = find_network(&state, &scope, &id)
        .await?
        .ok_or_else(|| not_found("NetworkNotFound", "Network", &id))?;
    let project = project_of(&network);
    scope.check(Action::Write, &project, &format!("Network {id}"))?;
    let display = new_name(&body)?;
    let updated = update_spec(
        &state,
        &scope.caller,
        cirrus_crds::Network::info(),
        &project,
        &common::name(&network),
        display.as_deref(),
        |spec| apply_common(&body, spec, &scope, "update"),
    )
    .await?;
    let subnets = common::list(&state, cirrus_crds::Subnet::info(), Some(&project))
        .await
        .map_err(from_api)?;
    Ok(ok("network", render(&updated, &subnets, scope.admin)))
}

/// `DELETE /networks/{id}`: 204; 409 `NetworkInUse` while ports other than DHCP ports
/// remain (the native admission's check).
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let network = find_network(&state, &scope, &id)
        .await?
        .ok_or_else(|| not_found("NetworkNotFound", "Network", &id))?;
    let project = project_of(&network);
    scope.check(Action::Write, &project, &format!("Network {id}"))?;
    crate::resources::delete(&state, cirrus_crds::Network::info(), Some(&project), &common::name(&network), false)
        .await
        .map_err(|e| {
            if e.code() == StatusCode::CONFLICT {
                Fault::conflict(
                    NET,
                    format!(
                        "Unable to complete operation on network {id}. There are one or more ports still in use on the network: {}",
                        e.message()
                    ),
                )
                .with_kind("NetworkInUse")
            } else {
                from_api(e)
            }
        })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_subnets_status_and_provider_for_admins() {
        let network = json!({
            "metadata": {"name": "net1", "project": "demo", "uid": "n-uid", "generation": 3,
                         "creationTimestamp": "2026-01-02T03:04:05.678Z"},
            "spec": {"shared": true, "segmentation": {"type": "vlan", "id": 7, "physicalNetwork": "physnet1"}},
            "status": {"phase": "DOWN", "mtu": 1400},
        });
        let subnets = vec![
            json!({"metadata": {"name": "b", "project": "demo", "uid": "s2"}, "spec": {"network": "net1"}}),
            json!({"metadata": {"name": "a", "project": "demo", "uid": "s1"}, "spec": {"network": "net1"}}),
            json!({"metadata": {"name": "c", "project": "other", "uid": "s3"}, "spec": {"network": "net1"}}),
            json!({"metadata": {"name": "d", "project": "demo", "uid": "s4"}, "spec": {"network": "net2"}}),
        ];
        let body = render(&network, &subnets, true);
        assert_eq!(body["id"], "n-uid");
        assert_eq!(body["name"], "net1");
        assert_eq!(body["status"], "DOWN");
        assert_eq!(body["subnets"], json!(["s1", "s2"]));
        assert_eq!(body["shared"], true);
        assert_eq!(body["mtu"], 1400);
        assert_eq!(body["project_id"], "demo");
        assert_eq!(body["revision_number"], 3);
        assert_eq!(body["created_at"], "2026-01-02T03:04:05Z");
        assert_eq!(body["provider:network_type"], "vlan");
        assert_eq!(body["provider:segmentation_id"], 7);
        assert_eq!(body["provider:physical_network"], "physnet1");
        let member = render(&network, &subnets, false);
        assert!(member.get("provider:network_type").is_none());
        let fresh = json!({"metadata": {"name": "x", "project": "demo", "uid": "u"}, "spec": {}});
        let body = render(&fresh, &[], false);
        assert_eq!(body["status"], "ACTIVE");
        assert_eq!(body["mtu"], DEFAULT_MTU);
        assert_eq!(body["admin_state_up"], true);
        assert_eq!(body["port_security_enabled"], true);
        assert_eq!(body["router:external"], false);
    }
}
