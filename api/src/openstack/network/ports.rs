//! `/network/v2.0/ports` over `Port` objects.
//!
//! A port lives in its network's project; references are names in the object
//! (`spec.network`, `spec.fixedIps[].subnet`, `spec.securityGroups`) and uids on the wire.
//! What the network controller and node agent fill in is rendered from the status: the
//! MAC (`status.macAddress`, else the requested one), `fixed_ips` (`status.fixedIps`),
//! `status` (`status.phase`, `DOWN` until plugged), `binding:vif_type`. A port without
//! security groups and with port security on is in its project's `default` group (the
//! model's rule), and renders so. Ports on other projects' shared networks are not
//! supported yet (400), as in the native model.

use cirrus_crds::Resource as _;
use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cirrus_auth::Action;
use serde_json::{Map, Value, json};

use super::networks::{find_network, is_shared, policy};
use super::{
    Scope, body_object, create_object, created, from_api, invalid, name_attr, not_found, ok,
    opt_bool, opt_str, project_of, reject_read_only, reject_unknown, standard_attrs, visible,
};
use super::{listed, new_name, shown, update_spec};
use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common;
use crate::openstack::fault::Fault;

pub(crate) use cirrus_crds::conventions::DEFAULT_SECURITY_GROUP as DEFAULT_GROUP;

/// Attributes a create may carry.
const CREATE_KEYS: &[&str] = &[
    "name",
    "network_id",
    "fixed_ips",
    "mac_address",
    "security_groups",
    "device_id",
    "device_owner",
    "admin_state_up",
    "allowed_address_pairs",
    "port_security_enabled",
    "description",
    "project_id",
    "tenant_id",
    "binding:host_id",
    "binding:vnic_type",
    "binding:profile",
    "extra_dhcp_opts",
    "dns_name",
    "qos_policy_id",
];

/// Attributes an update may change.
const UPDATE_KEYS: &[&str] = &[
    "name",
    "fixed_ips",
    "mac_address",
    "security_groups",
    "device_id",
    "device_owner",
    "admin_state_up",
    "allowed_address_pairs",
    "port_security_enabled",
    "description",
    "binding:host_id",
    "binding:vnic_type",
    "binding:profile",
    "extra_dhcp_opts",
    "dns_name",
    "qos_policy_id",
];

/// The objects a port's references resolve against (any projects).
#[derive(Default)]
pub struct Refs {
    /// `Network` objects.
    pub networks: Vec<Value>,
    /// `Subnet` objects.
    pub subnets: Vec<Value>,
    /// `SecurityGroup` objects.
    pub groups: Vec<Value>,
}

/// The uid of the object named `name` in `project` among `items`.
fn uid_in(items: &[Value], project: &str, name: &str) -> Option<String> {
    items
        .iter()
        .find(|o| project_of(o) == project && common::name(o) == name)
        .map(common::uid)
}

/// The project owning `port`'s network: `spec.networkProject` (another project's shared
/// network), else the port's own.
pub(crate) fn network_project_of(port: &Value) -> String {
    port.pointer("/spec/networkProject")
        .and_then(Value::as_str)
        .map_or_else(|| project_of(port), str::to_string)
}

/// The Neutron body of `port`.
pub fn render(port: &Value, refs: &Refs) -> Value {
    let project = project_of(port);
    let network_project = network_project_of(port);
    let spec = |p: &str| port.pointer(&format!("/spec/{p}"));
    let text = |p: &str| {
        spec(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let network_name = text("network");
    let network = refs
        .networks
        .iter()
        .find(|n| project_of(n) == network_project && common::name(n) == network_name);
    let mac = port
        .pointer("/status/macAddress")
        .or_else(|| spec("macAddress"))
        .cloned()
        .unwrap_or(Value::Null);
    let fixed_ips: Vec<Value> = port
        .pointer("/status/fixedIps")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .map(|ip| {
                    let subnet = ip.get("subnet").and_then(Value::as_str).unwrap_or_default();
                    json!({
                        "subnet_id": uid_in(&refs.subnets, &network_project, subnet),
                        "ip_address": ip.get("ipAddress").cloned().unwrap_or(Value::Null),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let port_security = spec("portSecurityEnabled")
        .and_then(Value::as_bool)
        .or_else(|| {
            network
                .and_then(|n| n.pointer("/spec/portSecurityEnabled"))
                .and_then(Value::as_bool)
        })
        .unwrap_or(true);
    let mut group_names: Vec<String> = spec("securityGroups")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if group_names.is_empty() && port_security {
        group_names.push(DEFAULT_GROUP.to_string());
    }
    let groups: Vec<String> = group_names
        .iter()
        .filter_map(|g| uid_in(&refs.groups, &project, g))
        .collect();
    let pairs: Vec<Value> = spec("allowedAddressPairs")
        .and_then(Value::as_array)
        .map(|pairs| {
            pairs
                .iter()
                .map(|p| {
                    json!({
                        "ip_address": p.get("ipAddress").cloned().unwrap_or(Value::Null),
                        "mac_address": p.get("macAddress").cloned().unwrap_or_else(|| mac.clone()),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let host = text("bindingHost");
    let vif_type = port
        .pointer("/status/vifType")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            if host.is_empty() {
                "unbound".into()
            } else {
                "ovs".into()
            }
        });
    let mut out = Map::new();
    out.insert("id".into(), Value::from(common::uid(port)));
    out.insert("name".into(), Value::from(common::display_name(port)));
    out.insert("network_id".into(), json!(network.map(common::uid)));
    out.insert("mac_address".into(), mac);
    out.insert("fixed_ips".into(), Value::Array(fixed_ips));
    out.insert(
        "status".into(),
        Value::from(
            port.pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("DOWN"),
        ),
    );
    out.insert(
        "admin_state_up".into(),
        Value::from(
            spec("adminStateUp")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        ),
    );
    out.insert("device_id".into(), Value::from(text("deviceId")));
    out.insert("device_owner".into(), Value::from(text("deviceOwner")));
    out.insert("security_groups".into(), json!(groups));
    out.insert("port_security_enabled".into(), Value::from(port_security));
    out.insert("allowed_address_pairs".into(), Value::Array(pairs));
    out.insert("binding:host_id".into(), Value::from(host));
    out.insert("binding:vif_type".into(), Value::from(vif_type));
    out.insert("binding:vnic_type".into(), Value::from("normal"));
    out.insert("binding:vif_details".into(), json!({}));
    out.insert("binding:profile".into(), json!({}));
    out.insert("extra_dhcp_opts".into(), json!([]));
    out.insert("ip_allocation".into(), Value::from("immediate"));
    out.insert("qos_policy_id".into(), Value::Null);
    standard_attrs(port, &mut out);
    Value::Object(out)
}

/// Everything the scope's ports may refer to: its networks and subnets and the shared ones
/// of other projects (its ports may be on them), its security groups.
async fn refs(state: &ApiState, scope: &Scope) -> Result<Refs, Fault> {
    let networks = super::networks::visible_networks(state, scope).await?;
    let mut subnets = visible(state, cirrus_crds::Subnet::info(), scope).await?;
    if !scope.admin {
        let shared: std::collections::BTreeSet<(String, String)> = networks
            .iter()
            .filter(|n| project_of(n) != scope.project)
            .map(|n| (project_of(n), common::name(n)))
            .collect();
        let owners: std::collections::BTreeSet<&String> = shared.iter().map(|(p, _)| p).collect();
        for owner in owners {
            let theirs = common::list(state, cirrus_crds::Subnet::info(), Some(owner))
                .await
                .map_err(from_api)?;
            subnets.extend(theirs.into_iter().filter(|s| {
                let network = s.pointer("/spec/network").and_then(Value::as_str);
                network.is_some_and(|n| shared.contains(&(owner.clone(), n.to_string())))
            }));
        }
    }
    Ok(Refs {
        networks,
        subnets,
        groups: visible(state, cirrus_crds::SecurityGroup::info(), scope).await?,
    })
}

/// Everything a port of `project` on a network of `network_project` may refer to: that
/// project's networks and subnets, its own security groups.
async fn project_refs(
    state: &ApiState,
    project: &str,
    network_project: &str,
) -> Result<Refs, Fault> {
    let list = |kind: &'static cirrus_crds::KindInfo, project: &str| {
        let project = project.to_string();
        async move {
            common::list(state, kind, Some(&project))
                .await
                .map_err(from_api)
        }
    };
    Ok(Refs {
        networks: list(cirrus_crds::Network::info(), network_project).await?,
        subnets: list(cirrus_crds::Subnet::info(), network_project).await?,
        groups: list(cirrus_crds::SecurityGroup::info(), project).await?,
    })
}

/// `GET /ports`.
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    scope.check(Action::Read, &scope.project, "Project")?;
    let ports = visible(&state, cirrus_crds::Port::info(), &scope).await?;
    let refs = refs(&state, &scope).await?;
    let rendered = ports.iter().map(|p| render(p, &refs)).collect();
    listed("ports", pairs, rendered)
}

async fn find_port(state: &ApiState, scope: &Scope, id: &str) -> Result<Value, Fault> {
    super::find_visible(state, cirrus_crds::Port::info(), scope, id)
        .await?
        .ok_or_else(|| not_found("PortNotFound", "Port", id))
}

/// `GET /ports/{id}`.
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let port = find_port(&state, &scope, &id).await?;
    let refs = project_refs(&state, &project_of(&port), &network_project_of(&port)).await?;
    let body = render(&port, &refs);
    Ok(shown("port", pairs, body))
}

fn array<'a>(body: &'a Map<String, Value>, key: &str) -> Result<Option<&'a Vec<Value>>, Fault> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(other) => Err(invalid(key, format_args!("'{other}' is not a list"))),
    }
}

/// Where a port is: its own `project`, and `network` of `network_project`.
struct Placement<'a> {
    project: &'a str,
    network_project: &'a str,
    network: &'a str,
}

/// Applies the attributes create and update share to `spec`, resolving ids against
/// `refs` (subnets of the network's project, security groups of the port's).
fn apply(
    body: &Map<String, Value>,
    spec: &mut Map<String, Value>,
    refs: &Refs,
    at: &Placement<'_>,
    scope: &Scope,
) -> Result<(), Fault> {
    let (project, network) = (at.project, at.network);
    if let Some(up) = opt_bool(body, "admin_state_up")? {
        spec.insert("adminStateUp".into(), Value::from(up));
    }
    if let Some(ps) = opt_bool(body, "port_security_enabled")? {
        spec.insert("portSecurityEnabled".into(), Value::from(ps));
    }
    for (key, native) in [
        ("device_id", "deviceId"),
        ("device_owner", "deviceOwner"),
        ("description", "description"),
        ("mac_address", "macAddress"),
    ] {
        if body.contains_key(key) {
            match opt_str(body, key)?.filter(|v| !v.is_empty()) {
                Some(v) => spec.insert(native.into(), Value::from(v)),
                None => spec.remove(native),
            };
        }
    }
    if body.contains_key("binding:host_id") {
        if !scope.admin {
            return Err(policy("create_port:binding:host_id"));
        }
        match opt_str(body, "binding:host_id")?.filter(|v| !v.is_empty()) {
            Some(v) => spec.insert("bindingHost".into(), Value::from(v)),
            None => spec.remove("bindingHost"),
        };
    }
    if let Some(items) = array(body, "fixed_ips")? {
        let mut wanted = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let field = format!("fixed_ips[{i}]");
            let Some(item) = item.as_object() else {
                return Err(invalid(&field, "each entry must be an object"));
            };
            let mut entry = Map::new();
            if let Some(subnet_id) = opt_str(item, "subnet_id")? {
                let subnet = refs
                    .subnets
                    .iter()
                    .find(|s| {
                        project_of(s) == at.network_project
                            && (common::uid(s) == subnet_id || common::name(s) == subnet_id)
                    })
                    .ok_or_else(|| not_found("SubnetNotFound", "Subnet", &subnet_id))?;
                if subnet.pointer("/spec/network").and_then(Value::as_str) != Some(network) {
                    return Err(invalid(
                        &field,
                        format_args!("subnet {subnet_id} is not on the port's network"),
                    ));
                }
                entry.insert("subnet".into(), Value::from(common::name(subnet)));
            }
            if let Some(ip) = item.get("ip_address").filter(|v| !v.is_null()) {
                let parsed = ip
                    .as_str()
                    .and_then(|s| s.trim().parse::<IpAddr>().ok())
                    .ok_or_else(|| {
                        invalid(
                            &format!("{field}.ip_address"),
                            format_args!("'{ip}' is not a valid IP address"),
                        )
                    })?;
                entry.insert("ipAddress".into(), Value::from(parsed.to_string()));
            }
            if entry.is_empty() {
                return Err(invalid(&field, "needs subnet_id, ip_address or both"));
            }
            wanted.push(Value::Object(entry));
        }
        spec.insert("fixedIps".into(), Value::Array(wanted));
    }
    if let Some(items) = array(body, "security_groups")? {
        let mut names = Vec::new();
        for g in items {
            let id = g.as_str().unwrap_or_default();
            let group = refs
                .groups
                .iter()
                .find(|o| {
                    project_of(o) == project && (common::uid(o) == id || common::name(o) == id)
                })
                .ok_or_else(|| not_found("SecurityGroupNotFound", "Security group", id))?;
            names.push(Value::from(common::name(group)));
        }
        spec.insert("securityGroups".into(), Value::Array(names));
    }
    if let Some(items) = array(body, "allowed_address_pairs")? {
        let mut pairs = Vec::new();
        for (i, p) in items.iter().enumerate() {
            let field = format!("allowed_address_pairs[{i}]");
            let Some(ip) = p.get("ip_address").and_then(Value::as_str) else {
                return Err(invalid(&field, "each pair needs 'ip_address'"));
            };
            let mut pair = json!({"ipAddress": ip});
            if let Some(mac) = p.get("mac_address").and_then(Value::as_str) {
                pair["macAddress"] = Value::from(mac);
            }
            pairs.push(pair);
        }
        spec.insert("allowedAddressPairs".into(), Value::Array(pairs));
    }
    if opt_str(body, "binding:vnic_type")?.is_some_and(|v| v != "normal") {
        return Err(invalid("binding:vnic_type", "only 'normal' is supported"));
    }
    if body
        .get("binding:profile")
        .is_some_and(|p| p.as_object().is_some_and(|m| !m.is_empty()))
    {
        return Err(invalid(
            "binding:profile",
            "binding profiles are not supported",
        ));
    }
    if array(body, "extra_dhcp_opts")?.is_some_and(|o| !o.is_empty()) {
        return Err(invalid(
            "extra_dhcp_opts",
            "extra DHCP options are not supported",
        ));
    }
    if body.get("qos_policy_id").is_some_and(|v| !v.is_null()) {
        return Err(invalid("qos_policy_id", "QoS policies are not supported"));
    }
    Ok(())
}

/// `POST /ports`.
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let body = body_object(&body, "port")?;
    reject_unknown(&body, CREATE_KEYS)?;
    let display = name_attr(&body)?;
    let Some(network_id) = opt_str(&body, "network_id")? else {
        return Err(invalid("network_id", "network_id is required"));
    };
    let network = find_network(&state, &scope, &network_id)
        .await?
        .ok_or_else(|| not_found("NetworkNotFound", "Network", &network_id))?;
    let owner = project_of(&network);
    let explicit = ["project_id", "tenant_id"]
        .iter()
        .any(|k| body.get(*k).is_some_and(|v| !v.is_null()));
    // The port is the caller's (or the project an admin names); on another project's
    // network only when that network is shared with it, which admission checks. An admin's
    // port on a project's private network is that project's, as before.
    let project = if explicit {
        scope.create_project(&body)?
    } else if scope.admin && !is_shared(&network) {
        owner.clone()
    } else {
        scope.project.clone()
    };
    scope.check(Action::Write, &project, &format!("Network {network_id}"))?;
    // A port without groups is in `default`: make sure it exists to be shown.
    super::security_groups::ensure_default(&state, &project).await?;
    let refs = project_refs(&state, &project, &owner).await?;
    let network_name = common::name(&network);
    let mut spec = Map::new();
    spec.insert("network".into(), Value::from(network_name.clone()));
    if owner != project {
        spec.insert("networkProject".into(), Value::from(owner.clone()));
    }
    let at = Placement {
        project: &project,
        network_project: &owner,
        network: &network_name,
    };
    apply(&body, &mut spec, &refs, &at, &scope)?;
    let stored = create_object(
        &state,
        &scope.caller,
        cirrus_crds::Port::info(),
        &project,
        "port",
        &display,
        Value::Object(spec),
    )
    .await?;
    tracing::info!(%project, port = %common::name(&stored), "port created through the network API");
    let stored = super::port_settle::settle(&state, &project, stored).await;
    Ok(created("port", render(&stored, &refs)))
}

/// `PUT /ports/{id}`.
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let body = body_object(&body, "port")?;
    reject_read_only(
        &body,
        &["id", "network_id", "tenant_id", "project_id", "status"],
    )?;
    reject_unknown(&body, UPDATE_KEYS)?;
    let port = find_port(&state, &scope, &id).await?;
    let project = project_of(&port);
    scope.check(Action::Write, &project, &format!("Port {id}"))?;
    let network_project = network_project_of(&port);
    let refs = project_refs(&state, &project, &network_project).await?;
    let network = port
        .pointer("/spec/network")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let display = new_name(&body)?;
    let updated = update_spec(
        &state,
        &scope.caller,
        cirrus_crds::Port::info(),
        &project,
        &common::name(&port),
        display.as_deref(),
        |spec| {
            let at = Placement {
                project: &project,
                network_project: &network_project,
                network: &network,
            };
            apply(&body, spec, &refs, &at, &scope)
        },
    )
    .await?;
    let updated = super::port_settle::settle(&state, &project, updated).await;
    Ok(ok("port", render(&updated, &refs)))
}

/// `DELETE /ports/{id}`: 204; the network controller's finalizer releases the addresses.
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let port = find_port(&state, &scope, &id).await?;
    let project = project_of(&port);
    scope.check(Action::Write, &project, &format!("Port {id}"))?;
    crate::resources::delete(
        &state,
        cirrus_crds::Port::info(),
        Some(&project),
        &common::name(&port),
        false,
    )
    .await
    .map_err(from_api)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_controller_fields_and_references_as_uids() {
        let port = json!({
            "metadata": {"name": "web-0-abcd-0", "project": "demo", "uid": "p-uid"},
            "spec": {"network": "net1", "deviceOwner": "compute:nova", "deviceId": "srv-uid",
                     "bindingHost": "node1", "allowedAddressPairs": [{"ipAddress": "10.0.0.100"}]},
            "status": {"phase": "ACTIVE", "macAddress": "fa:16:3e:00:00:01",
                       "fixedIps": [{"subnet": "sub1", "ipAddress": "10.0.0.5"}], "vifType": "ovs"},
        });
        let refs = Refs {
            networks: vec![
                json!({"metadata": {"name": "net1", "project": "demo", "uid": "n-uid"}, "spec": {}}),
            ],
            subnets: vec![json!({"metadata": {"name": "sub1", "project": "demo", "uid": "s-uid"}})],
            groups: vec![
                json!({"metadata": {"name": "default", "project": "demo", "uid": "g-uid"}}),
            ],
        };
        let body = render(&port, &refs);
        assert_eq!(body["network_id"], "n-uid");
        assert_eq!(body["mac_address"], "fa:16:3e:00:00:01");
        assert_eq!(
            body["fixed_ips"],
            json!([{"subnet_id": "s-uid", "ip_address": "10.0.0.5"}])
        );
        assert_eq!(body["status"], "ACTIVE");
        assert_eq!(body["device_owner"], "compute:nova");
        assert_eq!(body["device_id"], "srv-uid");
        assert_eq!(body["binding:host_id"], "node1");
        assert_eq!(body["binding:vif_type"], "ovs");
        assert_eq!(
            body["security_groups"],
            json!(["g-uid"]),
            "no groups + port security = default"
        );
        assert_eq!(
            body["allowed_address_pairs"],
            json!([{"ip_address": "10.0.0.100", "mac_address": "fa:16:3e:00:00:01"}])
        );
        let bare = json!({"metadata": {"name": "p", "project": "demo", "uid": "u"},
                          "spec": {"network": "net1", "portSecurityEnabled": false}});
        let body = render(&bare, &refs);
        assert_eq!(body["status"], "DOWN");
        assert_eq!(body["security_groups"], json!([]));
        assert_eq!(body["mac_address"], Value::Null);
        assert_eq!(body["binding:vif_type"], "unbound");
    }
}
