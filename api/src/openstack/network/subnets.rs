//! `/network/v2.0/subnets` over `Subnet` objects.
//!
//! A subnet lives in its network's project (`Subnet.spec.network` is a name in the same
//! project): a member creates subnets on its own networks only (another project's shared
//! network: 403, an invisible one: 404 `NetworkNotFound`, as Neutron answers for an unknown
//! `network_id`). Overlapping CIDRs on one network are refused (400), as Neutron does.
//! Deleting a subnet from which ports other than DHCP ports hold addresses is refused
//! (409 `SubnetInUse`). Without explicit `allocation_pools`, the pools shown are the ones
//! the network controller's IPAM uses: the CIDR minus network, broadcast and gateway.

use cirrus_crds::Resource as _;
use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cirrus_auth::Action;
use cirrus_crds::SubnetSpec;
use ipnet::IpNet;
use serde_json::{Map, Value, json};

use super::networks::find_network;
use super::{
    NET, Scope, body_object, create_object, created, from_api, invalid, name_attr, not_found, ok,
    opt_bool, opt_str, opt_u32, project_of, reject_read_only, reject_unknown, standard_attrs,
    visible,
};
use super::{listed, new_name, shown, update_spec};
use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common;
use crate::openstack::fault::Fault;

use cirrus_crds::conventions::DEVICE_OWNER_DHCP;

/// Attributes a create may carry.
const CREATE_KEYS: &[&str] = &[
    "name",
    "network_id",
    "cidr",
    "ip_version",
    "gateway_ip",
    "enable_dhcp",
    "allocation_pools",
    "dns_nameservers",
    "host_routes",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "description",
    "project_id",
    "tenant_id",
    "subnetpool_id",
    "use_default_subnetpool",
    "segment_id",
    "service_types",
    "dns_publish_fixed_ip",
];

/// Attributes an update may change.
const UPDATE_KEYS: &[&str] = &[
    "name",
    "gateway_ip",
    "enable_dhcp",
    "allocation_pools",
    "dns_nameservers",
    "host_routes",
    "description",
    "service_types",
    "dns_publish_fixed_ip",
];

/// The pools a subnet hands addresses from: its `allocationPools`, or the default range
/// (the network controller's IPAM rule: CIDR minus network, IPv4 broadcast and gateway).
pub fn pools(spec: &SubnetSpec) -> Vec<(IpAddr, IpAddr)> {
    if !spec.allocation_pools.is_empty() {
        return spec
            .allocation_pools
            .iter()
            .map(|p| (p.start, p.end))
            .collect();
    }
    let cidr = spec.cidr;
    let (first, last) = (to_int(cidr.network()), to_int(cidr.broadcast()));
    let (lo, hi) = match cidr {
        IpNet::V4(n) if n.prefix_len() >= 31 => (first, last),
        IpNet::V4(_) => (first + 1, last - 1),
        IpNet::V6(n) if n.prefix_len() == 128 => (first, last),
        IpNet::V6(_) => (first + 1, last),
    };
    let v6 = matches!(cidr, IpNet::V6(_));
    let ip = |n: u128| -> IpAddr {
        if v6 {
            IpAddr::V6(n.into())
        } else {
            IpAddr::V4(u32::try_from(n).unwrap_or(u32::MAX).into())
        }
    };
    let mut ranges = Vec::new();
    match spec.gateway().map(to_int).filter(|g| (lo..=hi).contains(g)) {
        Some(g) => {
            if g > lo {
                ranges.push((ip(lo), ip(g - 1)));
            }
            if g < hi {
                ranges.push((ip(g + 1), ip(hi)));
            }
        }
        None if lo <= hi => ranges.push((ip(lo), ip(hi))),
        None => {}
    }
    ranges
}

fn to_int(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The Neutron body of `subnet`; `networks` (any projects) give its `network_id`.
pub fn render(subnet: &Value, networks: &[Value]) -> Value {
    let project = project_of(subnet);
    let network_name = subnet
        .pointer("/spec/network")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let network_id = networks
        .iter()
        .find(|n| project_of(n) == project && common::name(n) == network_name)
        .map(common::uid);
    let spec: Option<SubnetSpec> = subnet
        .get("spec")
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    let mut out = Map::new();
    out.insert("id".into(), Value::from(common::uid(subnet)));
    out.insert("name".into(), Value::from(common::display_name(subnet)));
    out.insert("network_id".into(), json!(network_id));
    if let Some(spec) = &spec {
        out.insert("ip_version".into(), Value::from(spec.ip_version()));
        out.insert("cidr".into(), Value::from(spec.cidr.to_string()));
        out.insert(
            "gateway_ip".into(),
            json!(spec.gateway().map(|g| g.to_string())),
        );
        out.insert("enable_dhcp".into(), Value::from(spec.enable_dhcp));
        let pools: Vec<Value> = pools(spec)
            .into_iter()
            .map(|(s, e)| json!({"start": s.to_string(), "end": e.to_string()}))
            .collect();
        out.insert("allocation_pools".into(), Value::Array(pools));
        let dns: Vec<String> = spec.dns_nameservers.iter().map(IpAddr::to_string).collect();
        out.insert("dns_nameservers".into(), json!(dns));
        let routes: Vec<Value> = spec
            .host_routes
            .iter()
            .map(|r| json!({"destination": r.destination.to_string(), "nexthop": r.nexthop.to_string()}))
            .collect();
        out.insert("host_routes".into(), Value::Array(routes));
    }
    let mode = |p: &str| {
        subnet
            .pointer(&format!("/spec/{p}"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    out.insert("ipv6_ra_mode".into(), mode("ipv6RaMode"));
    out.insert("ipv6_address_mode".into(), mode("ipv6AddressMode"));
    out.insert("subnetpool_id".into(), Value::Null);
    out.insert("segment_id".into(), Value::Null);
    out.insert("service_types".into(), json!([]));
    out.insert("dns_publish_fixed_ip".into(), Value::from(false));
    standard_attrs(subnet, &mut out);
    Value::Object(out)
}

/// The subnet with uid (or, in the caller's project, name) `id` the scope may see.
pub(crate) async fn find_subnet(
    state: &ApiState,
    scope: &Scope,
    id: &str,
) -> Result<Option<Value>, Fault> {
    super::find_visible(state, cirrus_crds::Subnet::info(), scope, id).await
}

/// `GET /subnets`.
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    scope.check(Action::Read, &scope.project, "Project")?;
    let subnets = visible(&state, cirrus_crds::Subnet::info(), &scope).await?;
    let networks = visible(&state, cirrus_crds::Network::info(), &scope).await?;
    let rendered = subnets.iter().map(|s| render(s, &networks)).collect();
    listed("subnets", pairs, rendered)
}

/// `GET /subnets/{id}`.
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let subnet = find_subnet(&state, &scope, &id)
        .await?
        .ok_or_else(|| not_found("SubnetNotFound", "Subnet", &id))?;
    let networks = common::list(
        &state,
        cirrus_crds::Network::info(),
        Some(&project_of(&subnet)),
    )
    .await
    .map_err(from_api)?;
    let body = render(&subnet, &networks);
    Ok(shown("subnet", pairs, body))
}

fn parse_ip(field: &str, value: &Value) -> Result<IpAddr, Fault> {
    value
        .as_str()
        .and_then(|s| s.trim().parse::<IpAddr>().ok())
        .ok_or_else(|| invalid(field, format_args!("'{value}' is not a valid IP address")))
}

fn parse_cidr(field: &str, value: &Value) -> Result<IpNet, Fault> {
    let text = value.as_str().unwrap_or_default().trim();
    let net = text
        .parse::<IpNet>()
        .map_err(|_| invalid(field, format_args!("'{value}' is not a valid IP subnet")))?;
    if net.trunc() != net {
        return Err(invalid(
            field,
            format_args!(
                "'{text}' isn't a recommended CIDR, '{}' is recommended",
                net.trunc()
            ),
        ));
    }
    Ok(net)
}

fn list_of<'a>(body: &'a Map<String, Value>, key: &str) -> Result<Option<&'a Vec<Value>>, Fault> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(other) => Err(invalid(key, format_args!("'{other}' is not a list"))),
    }
}

/// Applies the attributes create and update share to `spec` (camelCase, as stored).
fn apply(body: &Map<String, Value>, spec: &mut Map<String, Value>) -> Result<(), Fault> {
    if let Some(gw) = body.get("gateway_ip") {
        let value = match gw {
            Value::Null => Value::Null,
            other => Value::from(parse_ip("gateway_ip", other)?.to_string()),
        };
        spec.insert("gatewayIp".into(), value);
    }
    if let Some(dhcp) = opt_bool(body, "enable_dhcp")? {
        spec.insert("enableDhcp".into(), Value::from(dhcp));
    }
    if let Some(items) = list_of(body, "allocation_pools")? {
        let mut pools = Vec::new();
        for (i, p) in items.iter().enumerate() {
            let field = format!("allocation_pools[{i}]");
            let (Some(start), Some(end)) = (p.get("start"), p.get("end")) else {
                return Err(invalid(&field, "each pool needs 'start' and 'end'"));
            };
            let start = parse_ip(&format!("{field}.start"), start)?;
            let end = parse_ip(&format!("{field}.end"), end)?;
            pools.push(json!({"start": start.to_string(), "end": end.to_string()}));
        }
        spec.insert("allocationPools".into(), Value::Array(pools));
    }
    if let Some(items) = list_of(body, "dns_nameservers")? {
        let mut servers = Vec::new();
        for (i, s) in items.iter().enumerate() {
            servers.push(Value::from(
                parse_ip(&format!("dns_nameservers[{i}]"), s)?.to_string(),
            ));
        }
        spec.insert("dnsNameservers".into(), Value::Array(servers));
    }
    if let Some(items) = list_of(body, "host_routes")? {
        let mut routes = Vec::new();
        for (i, r) in items.iter().enumerate() {
            let field = format!("host_routes[{i}]");
            let (Some(dest), Some(hop)) = (r.get("destination"), r.get("nexthop")) else {
                return Err(invalid(
                    &field,
                    "each route needs 'destination' and 'nexthop'",
                ));
            };
            let dest = parse_cidr(&format!("{field}.destination"), dest)?;
            let hop = parse_ip(&format!("{field}.nexthop"), hop)?;
            routes.push(json!({"destination": dest.to_string(), "nexthop": hop.to_string()}));
        }
        spec.insert("hostRoutes".into(), Value::Array(routes));
    }
    for (key, native) in [
        ("ipv6_ra_mode", "ipv6RaMode"),
        ("ipv6_address_mode", "ipv6AddressMode"),
    ] {
        match opt_str(body, key)? {
            Some(m) if ["slaac", "dhcpv6-stateful", "dhcpv6-stateless"].contains(&m.as_str()) => {
                spec.insert(native.into(), Value::from(m));
            }
            Some(m) => {
                return Err(invalid(
                    key,
                    format_args!("'{m}' is not in [slaac, dhcpv6-stateful, dhcpv6-stateless]"),
                ));
            }
            None if body.contains_key(key) => {
                spec.remove(native);
            }
            None => {}
        }
    }
    if body.contains_key("description") {
        match opt_str(body, "description")?.filter(|d| !d.is_empty()) {
            Some(d) => spec.insert("description".into(), Value::from(d)),
            None => spec.remove("description"),
        };
    }
    if list_of(body, "service_types")?.is_some_and(|s| !s.is_empty()) {
        return Err(invalid(
            "service_types",
            "subnet service types are not supported",
        ));
    }
    Ok(())
}

/// `POST /subnets`.
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let body = body_object(&body, "subnet")?;
    reject_unknown(&body, CREATE_KEYS)?;
    let display = name_attr(&body)?;
    let Some(network_id) = opt_str(&body, "network_id")? else {
        return Err(invalid("network_id", "network_id is required"));
    };
    for key in ["subnetpool_id", "segment_id"] {
        if body.get(key).is_some_and(|v| !v.is_null()) {
            return Err(invalid(key, format_args!("{key} is not supported")));
        }
    }
    if opt_bool(&body, "use_default_subnetpool")? == Some(true) {
        return Err(invalid(
            "use_default_subnetpool",
            "subnet pools are not supported",
        ));
    }
    let Some(cidr_value) = body.get("cidr").filter(|v| !v.is_null()) else {
        return Err(Fault::bad_request(
            NET,
            "Bad subnets request: a subnetpool must be specified in the absence of a cidr.",
        )
        .with_kind("BadRequest"));
    };
    let cidr = parse_cidr("cidr", cidr_value)?;
    let version = if matches!(cidr, IpNet::V4(_)) { 4 } else { 6 };
    if let Some(v) = opt_u32(&body, "ip_version")? {
        if v != 4 && v != 6 {
            return Err(invalid("ip_version", format_args!("{v} is not in [4, 6]")));
        }
        if v != version {
            return Err(invalid(
                "ip_version",
                format_args!("cidr {cidr} is an IPv{version} range but ip_version is {v}"),
            ));
        }
    }
    let network = find_network(&state, &scope, &network_id)
        .await?
        .ok_or_else(|| not_found("NetworkNotFound", "Network", &network_id))?;
    let project = project_of(&network);
    if !scope.admin && project != scope.project {
        return Err(Fault::forbidden(
            NET,
            format!("Tenant {} not allowed to create subnet on network {network_id}: it belongs to another project.", scope.project),
        )
        .with_kind("PolicyNotAuthorized"));
    }
    let explicit = ["project_id", "tenant_id"]
        .iter()
        .any(|k| body.get(*k).is_some_and(|v| !v.is_null()));
    if explicit {
        let wanted = scope.create_project(&body)?;
        if wanted != project {
            return Err(invalid(
                "project_id",
                format_args!("a subnet belongs to its network's project {project}"),
            ));
        }
    } else {
        scope.check(Action::Write, &project, &format!("Network {network_id}"))?;
    }
    let network_name = common::name(&network);
    let siblings = common::list(&state, cirrus_crds::Subnet::info(), Some(&project))
        .await
        .map_err(from_api)?;
    for other in siblings.iter().filter(|s| {
        s.pointer("/spec/network").and_then(Value::as_str) == Some(network_name.as_str())
    }) {
        let theirs = other
            .pointer("/spec/cidr")
            .and_then(Value::as_str)
            .and_then(|c| c.parse::<IpNet>().ok());
        if let Some(theirs) = theirs
            && (theirs.contains(&cidr.network()) || cidr.contains(&theirs.network()))
        {
            return Err(invalid(
                "cidr",
                format_args!(
                    "Requested subnet with cidr: {cidr} for network: {network_id} overlaps with another subnet: {} ({theirs})",
                    common::uid(other)
                ),
            ));
        }
    }
    let mut spec = Map::new();
    spec.insert("network".into(), Value::from(network_name));
    spec.insert("cidr".into(), Value::from(cidr.to_string()));
    spec.insert("ipVersion".into(), Value::from(version));
    apply(&body, &mut spec)?;
    let stored = create_object(
        &state,
        &scope.caller,
        cirrus_crds::Subnet::info(),
        &project,
        "subnet",
        &display,
        Value::Object(spec),
    )
    .await?;
    tracing::info!(%project, subnet = %common::name(&stored), "subnet created through the network API");
    Ok(created(
        "subnet",
        render(&stored, std::slice::from_ref(&network)),
    ))
}

/// `PUT /subnets/{id}`.
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let body = body_object(&body, "subnet")?;
    reject_read_only(
        &body,
        &[
            "id",
            "cidr",
            "network_id",
            "ip_version",
            "tenant_id",
            "project_id",
            "subnetpool_id",
            "ipv6_ra_mode",
            "ipv6_address_mode",
        ],
    )?;
    reject_unknown(&body, UPDATE_KEYS)?;
    let subnet = find_subnet(&state, &scope, &id)
        .await?
        .ok_or_else(|| not_found("SubnetNotFound", "Subnet", &id))?;
    let project = project_of(&subnet);
    scope.check(Action::Write, &project, &format!("Subnet {id}"))?;
    let display = new_name(&body)?;
    let updated = update_spec(
        &state,
        &scope.caller,
        cirrus_crds::Subnet::info(),
        &project,
        &common::name(&subnet),
        display.as_deref(),
        |spec| apply(&body, spec),
    )
    .await?;
    let networks = common::list(&state, cirrus_crds::Network::info(), Some(&project))
        .await
        .map_err(from_api)?;
    Ok(ok("subnet", render(&updated, &networks)))
}

/// Names of the ports (other than DHCP ports) holding or asking for an address of subnet
/// `name` in `project`.
async fn ports_using(state: &ApiState, project: &str, name: &str) -> Result<Vec<String>, Fault> {
    let ports = common::list(state, cirrus_crds::Port::info(), Some(project))
        .await
        .map_err(from_api)?;
    let uses = |p: &Value, path: &str| {
        p.pointer(path)
            .and_then(Value::as_array)
            .is_some_and(|ips| {
                ips.iter()
                    .any(|ip| ip.get("subnet").and_then(Value::as_str) == Some(name))
            })
    };
    Ok(ports
        .iter()
        .filter(|p| {
            p.pointer("/spec/deviceOwner").and_then(Value::as_str) != Some(DEVICE_OWNER_DHCP)
        })
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|p| uses(p, "/status/fixedIps") || uses(p, "/spec/fixedIps"))
        .map(common::name)
        .collect())
}

/// `DELETE /subnets/{id}`: 204; 409 `SubnetInUse` while ports hold its addresses.
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let subnet = find_subnet(&state, &scope, &id)
        .await?
        .ok_or_else(|| not_found("SubnetNotFound", "Subnet", &id))?;
    let project = project_of(&subnet);
    scope.check(Action::Write, &project, &format!("Subnet {id}"))?;
    let name = common::name(&subnet);
    let users = ports_using(&state, &project, &name).await?;
    if !users.is_empty() {
        return Err(Fault::conflict(
            NET,
            format!(
                "Unable to complete operation on subnet {id}: One or more ports have an IP allocation from this subnet ({}).",
                users.join(", ")
            ),
        )
        .with_kind("SubnetInUse"));
    }
    crate::resources::delete(
        &state,
        cirrus_crds::Subnet::info(),
        Some(&project),
        &name,
        false,
    )
    .await
    .map_err(from_api)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> SubnetSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn default_pools_skip_network_broadcast_and_gateway() {
        let s = spec(json!({"network": "n", "cidr": "10.0.0.0/24"}));
        assert_eq!(
            pools(&s),
            vec![("10.0.0.2".parse().unwrap(), "10.0.0.254".parse().unwrap())]
        );
        let s = spec(json!({"network": "n", "cidr": "10.0.0.0/24", "gatewayIp": "10.0.0.100"}));
        assert_eq!(pools(&s).len(), 2);
        assert_eq!(pools(&s)[0].1, "10.0.0.99".parse::<IpAddr>().unwrap());
        assert_eq!(pools(&s)[1].0, "10.0.0.101".parse::<IpAddr>().unwrap());
        let s = spec(json!({"network": "n", "cidr": "10.0.0.0/24", "gatewayIp": null}));
        assert_eq!(
            pools(&s),
            vec![("10.0.0.1".parse().unwrap(), "10.0.0.254".parse().unwrap())]
        );
        let s = spec(json!({"network": "n", "cidr": "fd00::/64"}));
        assert_eq!(pools(&s)[0].0, "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!(
            pools(&s)[0].1,
            "fd00::ffff:ffff:ffff:ffff".parse::<IpAddr>().unwrap()
        );
        let s = spec(json!({"network": "n", "cidr": "10.0.0.0/24",
                            "allocationPools": [{"start": "10.0.0.10", "end": "10.0.0.20"}]}));
        assert_eq!(
            pools(&s),
            vec![("10.0.0.10".parse().unwrap(), "10.0.0.20".parse().unwrap())]
        );
    }

    #[test]
    fn renders_neutron_fields() {
        let subnet = json!({
            "metadata": {"name": "s", "project": "demo", "uid": "s-uid"},
            "spec": {"network": "net1", "cidr": "10.0.0.0/24", "dnsNameservers": ["8.8.8.8"],
                     "hostRoutes": [{"destination": "10.2.0.0/16", "nexthop": "10.0.0.9"}], "enableDhcp": false},
        });
        let networks =
            vec![json!({"metadata": {"name": "net1", "project": "demo", "uid": "n-uid"}})];
        let body = render(&subnet, &networks);
        assert_eq!(body["network_id"], "n-uid");
        assert_eq!(body["ip_version"], 4);
        assert_eq!(body["gateway_ip"], "10.0.0.1");
        assert_eq!(body["enable_dhcp"], false);
        assert_eq!(body["dns_nameservers"], json!(["8.8.8.8"]));
        assert_eq!(
            body["host_routes"],
            json!([{"destination": "10.2.0.0/16", "nexthop": "10.0.0.9"}])
        );
        assert_eq!(body["ipv6_ra_mode"], Value::Null);
    }

    #[test]
    fn input_errors_name_the_field() {
        let mut spec = Map::new();
        let body = json!({"gateway_ip": "10.0.0.300"});
        let err = apply(body.as_object().unwrap(), &mut spec).unwrap_err();
        assert!(err.message.contains("gateway_ip"), "{}", err.message);
        let body = json!({"allocation_pools": [{"start": "10.0.0.5", "end": "x"}]});
        let err = apply(body.as_object().unwrap(), &mut spec).unwrap_err();
        assert!(
            err.message.contains("allocation_pools[0].end"),
            "{}",
            err.message
        );
        let err = parse_cidr("cidr", &json!("10.0.0.1/24")).unwrap_err();
        assert!(err.message.contains("10.0.0.0/24"), "{}", err.message);
        let body = json!({"gateway_ip": null, "enable_dhcp": false});
        apply(body.as_object().unwrap(), &mut spec).unwrap();
        assert_eq!(spec["gatewayIp"], Value::Null);
        assert_eq!(spec["enableDhcp"], false);
    }
}
