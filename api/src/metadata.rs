//! The instance metadata service (`GET /metadata/...`) and the config drive contents
//! (`GET .../projects/{project}/servers/{name}/configdrive`).
//!
//! Guests reach `/metadata` through the node agent's metadata proxy, which adds
//! `X-Cirrus-Network: <project>/<network name>` and `X-Cirrus-Source-Ip: <TCP peer>`. The
//! server is identified from those two only: the `Port` on that network with that fixed IP
//! whose `deviceOwner` is `compute:*` names the server by uid in `deviceId`. Nothing else a
//! guest sends is trusted. No match: 404. A node's proxy (its `system:metadata:<node>` token,
//! or the node token) is answered only about servers bound to that node (`spec.nodeName` or
//! `status.node`); another node's server is 404 as if it did not exist.
//!
//! Rendering is pure ([`render_openstack`], [`ec2_meta_data`], [`config_drive_files`]) so the
//! HTTP service and the config drive serve the same bytes.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cirrus_crds::{Keypair, Network, Port, Resource, Server, Subnet};
use cirrus_store::fields::FieldSelector;
use cirrus_store::objects::{Api, ListOptions, ObjectError, ObjectStore};
use ipnet::IpNet;
use serde_json::{Map, Value, json};

use crate::ApiState;
use crate::error::ApiError;

/// Header naming the network a request came in on (`<project>/<network name>`).
pub use cirrus_crds::conventions::METADATA_NETWORK_HEADER as NETWORK_HEADER;
/// Header with the guest's source address as the proxy saw it.
pub use cirrus_crds::conventions::METADATA_SOURCE_IP_HEADER as SOURCE_IP_HEADER;

/// OpenStack metadata versions served (all with the same content).
const OPENSTACK_VERSIONS: &[&str] = &["2012-08-10", "latest"];

/// One NIC of a server: its port with the port's network and that network's subnets.
#[derive(Clone, Debug)]
pub struct Nic {
    /// The port.
    pub port: Port,
    /// Its network, when it exists.
    pub network: Option<Network>,
    /// The network's subnets.
    pub subnets: Vec<Subnet>,
}

/// Everything the metadata of one server is rendered from.
#[derive(Clone, Debug)]
pub struct InstanceData {
    /// The server.
    pub server: Server,
    /// Its keypair, when `spec.keyName` names one that exists.
    pub keypair: Option<Keypair>,
    /// Its NICs in `spec.networks` order.
    pub nics: Vec<Nic>,
}

fn uid(meta: &cirrus_crds::ObjectMeta) -> String {
    meta.uid.clone().unwrap_or_default()
}

fn hostname(server: &Server) -> String {
    server
        .spec
        .hostname
        .clone()
        .unwrap_or_else(|| server.metadata.name.clone())
}

/// The fixed IPs of a port (status, as allocated).
fn port_ips(port: &Port) -> Vec<IpAddr> {
    port.status.fixed_ips.iter().map(|f| f.ip_address).collect()
}

fn port_mac(port: &Port) -> Option<String> {
    port.status
        .mac_address
        .clone()
        .or_else(|| port.spec.mac_address.clone())
}

/// The tap/link name of a port, as the node agent names it (`tap` + 11 hex of the uid).
fn link_id(port: &Port) -> String {
    let hex: String = uid(&port.metadata)
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(11)
        .collect();
    format!("tap{hex}")
}

/// `meta_data.json`.
pub fn meta_data(d: &InstanceData) -> Value {
    let server = &d.server;
    let mut public_keys = Map::new();
    let mut keys = Vec::new();
    if let Some(kp) = &d.keypair {
        let key = kp.spec.public_key.trim().to_string();
        public_keys.insert(kp.metadata.name.clone(), json!(key));
        let type_ = serde_json::to_value(kp.spec.type_).unwrap_or(json!("ssh"));
        keys.push(json!({"name": kp.metadata.name, "type": type_, "data": key}));
    }
    let devices: Vec<Value> = d
        .nics
        .iter()
        .enumerate()
        .filter_map(|(i, nic)| {
            let tag = server.spec.networks.get(i)?.tag.clone()?;
            Some(json!({"type": "nic", "bus": "pci", "mac": port_mac(&nic.port), "tags": [tag]}))
        })
        .collect();
    json!({
        "uuid": uid(&server.metadata),
        "name": server.metadata.name,
        "hostname": hostname(server),
        "project_id": server.metadata.project,
        "availability_zone": server.spec.availability_zone.clone().unwrap_or_else(|| "nova".into()),
        "public_keys": public_keys,
        "keys": keys,
        "meta": server.spec.metadata,
        "launch_index": 0,
        "devices": devices,
    })
}

/// The decoded `spec.userData`, if any (invalid base64 counts as none; validation refuses it).
pub fn user_data(d: &InstanceData) -> Option<Vec<u8>> {
    let encoded = d.server.spec.user_data.as_deref()?;
    let compact: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(compact).ok()
}

fn netmask(net: &IpNet) -> String {
    net.netmask().to_string()
}

/// `network_data.json`: links (one per port), networks (one per fixed IP, static), services.
pub fn network_data(d: &InstanceData) -> Value {
    let mut links = Vec::new();
    let mut networks = Vec::new();
    let mut dns: Vec<IpAddr> = Vec::new();
    for nic in &d.nics {
        let link = link_id(&nic.port);
        let mtu = nic
            .network
            .as_ref()
            .and_then(|n| n.status.mtu.or(n.spec.mtu));
        links.push(json!({
            "id": link,
            "vif_id": uid(&nic.port.metadata),
            "type": "ovs",
            "mtu": mtu,
            "ethernet_mac_address": port_mac(&nic.port),
        }));
        let network_id = nic.network.as_ref().map(|n| uid(&n.metadata));
        for ip in port_ips(&nic.port) {
            let Some(subnet) = nic.subnets.iter().find(|s| s.spec.cidr.contains(&ip)) else {
                continue;
            };
            let cidr = subnet.spec.cidr;
            let v4 = matches!(cidr, IpNet::V4(_));
            let any = if v4 { "0.0.0.0" } else { "::" };
            let mut routes = Vec::new();
            for r in &subnet.spec.host_routes {
                routes.push(json!({
                    "network": r.destination.network().to_string(),
                    "netmask": netmask(&r.destination),
                    "gateway": r.nexthop.to_string(),
                }));
            }
            let has_default = subnet
                .spec
                .host_routes
                .iter()
                .any(|r| r.destination.prefix_len() == 0);
            if let (Some(gw), false) = (subnet.spec.gateway(), has_default) {
                routes.push(json!({"network": any, "netmask": any, "gateway": gw.to_string()}));
            }
            let services: Vec<Value> = subnet
                .spec
                .dns_nameservers
                .iter()
                .map(|a| json!({"type": "dns", "address": a.to_string()}))
                .collect();
            for a in &subnet.spec.dns_nameservers {
                if !dns.contains(a) {
                    dns.push(*a);
                }
            }
            networks.push(json!({
                "id": format!("network{}", networks.len()),
                "type": if v4 { "ipv4" } else { "ipv6" },
                "link": link,
                "ip_address": ip.to_string(),
                "netmask": netmask(&cidr),
                "routes": routes,
                "network_id": network_id,
                "services": services,
            }));
        }
    }
    let services: Vec<Value> = dns
        .iter()
        .map(|a| json!({"type": "dns", "address": a.to_string()}))
        .collect();
    json!({"links": links, "networks": networks, "services": services})
}

/// The files of one OpenStack metadata version, by name (`meta_data.json`, `user_data`
/// when there is some, `network_data.json`, `vendor_data.json`).
pub fn render_openstack(d: &InstanceData) -> BTreeMap<String, Vec<u8>> {
    let pretty = |v: &Value| serde_json::to_vec(v).expect("JSON values serialize");
    let mut files = BTreeMap::new();
    files.insert("meta_data.json".into(), pretty(&meta_data(d)));
    files.insert("network_data.json".into(), pretty(&network_data(d)));
    files.insert("vendor_data.json".into(), b"{}".to_vec());
    if let Some(data) = user_data(d) {
        files.insert("user_data".into(), data);
    }
    files
}

/// The EC2-style meta-data tree (objects are directories, strings are files).
pub fn ec2_meta_data(d: &InstanceData) -> Value {
    let server = &d.server;
    let id_hex: String = uid(&server.metadata)
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    let local_ipv4 = d
        .nics
        .iter()
        .flat_map(|n| port_ips(&n.port))
        .find(IpAddr::is_ipv4)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let mut public_keys = Map::new();
    if let Some(kp) = &d.keypair {
        public_keys.insert(
            "0".into(),
            json!({"openssh-key": kp.spec.public_key.trim()}),
        );
    }
    let host = hostname(server);
    json!({
        "ami-id": server.spec.image.clone().unwrap_or_default(),
        "ami-launch-index": "0",
        "hostname": host,
        "instance-id": format!("i-{id_hex}"),
        "instance-type": server.spec.flavor,
        "local-hostname": host,
        "local-ipv4": local_ipv4,
        "placement": {"availability-zone": server.spec.availability_zone.clone().unwrap_or_else(|| "nova".into())},
        "public-keys": public_keys,
        "reservation-id": format!("r-{id_hex}"),
        "security-groups": server.spec.security_groups.join("\n"),
    })
}

/// The config drive's files by path: `openstack/<version>/...` for each served version and
/// `ec2/latest/meta-data.json` (+ `ec2/latest/user-data`).
pub fn config_drive_files(d: &InstanceData) -> BTreeMap<String, Vec<u8>> {
    let openstack = render_openstack(d);
    let mut files = BTreeMap::new();
    for version in OPENSTACK_VERSIONS {
        for (name, content) in &openstack {
            files.insert(format!("openstack/{version}/{name}"), content.clone());
        }
    }
    files.insert(
        "ec2/latest/meta-data.json".into(),
        serde_json::to_vec(&ec2_meta_data(d)).expect("JSON values serialize"),
    );
    if let Some(data) = user_data(d) {
        files.insert("ec2/latest/user-data".into(), data);
    }
    files
}

/// A metadata response body for `path` (without the `/metadata/` prefix), `None`: 404.
pub fn resolve(d: &InstanceData, path: &str) -> Option<(Vec<u8>, &'static str)> {
    const TEXT: &str = "text/plain; charset=utf-8";
    const JSON: &str = "application/json";
    let path = path.trim_matches('/');
    let parts: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    let listing = |items: Vec<String>| Some((items.join("\n").into_bytes(), TEXT));
    match parts.as_slice() {
        [] => listing(vec!["latest".into(), "openstack".into()]),
        ["openstack"] => listing(OPENSTACK_VERSIONS.iter().map(|v| v.to_string()).collect()),
        ["openstack", version] if OPENSTACK_VERSIONS.contains(version) => {
            listing(render_openstack(d).into_keys().collect())
        }
        ["openstack", version, file] if OPENSTACK_VERSIONS.contains(version) => {
            let content = render_openstack(d).remove(*file)?;
            let ct = if file.ends_with(".json") {
                JSON
            } else {
                "application/octet-stream"
            };
            Some((content, ct))
        }
        ["latest"] => {
            let mut items = vec!["meta-data/".to_string()];
            if user_data(d).is_some() {
                items.push("user-data".into());
            }
            listing(items)
        }
        ["latest", "user-data"] => Some((user_data(d)?, "application/octet-stream")),
        ["latest", "meta-data", "public-keys"] => listing(
            d.keypair
                .iter()
                .map(|kp| format!("0={}", kp.metadata.name))
                .collect(),
        ),
        ["latest", "meta-data", rest @ ..] => {
            let tree = ec2_meta_data(d);
            let node = rest.iter().try_fold(&tree, |node, part| node.get(part))?;
            match node {
                Value::Object(map) => listing(
                    map.iter()
                        .map(|(k, v)| {
                            if v.is_object() {
                                format!("{k}/")
                            } else {
                                k.clone()
                            }
                        })
                        .collect(),
                ),
                Value::String(s) => Some((s.clone().into_bytes(), TEXT)),
                other => Some((other.to_string().into_bytes(), TEXT)),
            }
        }
        _ => None,
    }
}

fn not_found(e: ObjectError) -> Option<ObjectError> {
    match e {
        ObjectError::NotFound { .. } => None,
        other => Some(other),
    }
}

async fn list_where<K: Resource>(
    store: &ObjectStore,
    project: Option<&str>,
    selector: &str,
) -> Result<Vec<K>, ApiError> {
    let options = ListOptions {
        fields: FieldSelector::parse(selector).map_err(|e| ApiError::bad_request(e.to_string()))?,
        ..ListOptions::default()
    };
    let list = store.list(K::info(), project, &options).await?;
    list.items
        .into_iter()
        .map(|v| {
            serde_json::from_value(v).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    e.to_string(),
                )
            })
        })
        .collect()
}

/// Gathers what the metadata of `server` is rendered from: keypair, ports, networks, subnets.
pub async fn instance_data(store: &ObjectStore, server: Server) -> Result<InstanceData, ApiError> {
    let project = server.metadata.project.clone().unwrap_or_default();
    let keypair = match &server.spec.key_name {
        Some(name) => match Api::<Keypair>::in_project(store.clone(), &project)
            .get(name)
            .await
        {
            Ok(kp) => Some(kp),
            Err(e) => match not_found(e) {
                None => None,
                Some(e) => return Err(e.into()),
            },
        },
        None => None,
    };
    let server_uid = uid(&server.metadata);
    let mut ports: Vec<Port> = list_where(
        store,
        Some(&project),
        &format!("spec.deviceId={server_uid}"),
    )
    .await?;
    ports.retain(is_compute_port);
    // spec.networks order: a user port by name, a created port by its deterministic name.
    let order = |port: &Port| {
        server
            .spec
            .networks
            .iter()
            .enumerate()
            .position(|(i, n)| {
                n.port.as_deref() == Some(port.metadata.name.as_str())
                    || port.metadata.name
                        == cirrus_crds::kinds::port::server_port_name(
                            &server.metadata.name,
                            &server_uid,
                            i,
                        )
            })
            .unwrap_or(usize::MAX)
    };
    ports.sort_by_key(|p| (order(p), p.metadata.name.clone()));
    let mut nics = Vec::new();
    for port in ports {
        // The network and its subnets are the network's project's (a shared one's owner).
        let owner = port.network_project().to_string();
        let networks = Api::<Network>::in_project(store.clone(), &owner);
        let network = match networks.get(&port.spec.network).await {
            Ok(n) => Some(n),
            Err(e) => match not_found(e) {
                None => None,
                Some(e) => return Err(e.into()),
            },
        };
        let subnets = list_where(
            store,
            Some(&owner),
            &format!("spec.network={}", port.spec.network),
        )
        .await?;
        nics.push(Nic {
            port,
            network,
            subnets,
        });
    }
    Ok(InstanceData {
        server,
        keypair,
        nics,
    })
}

/// The server whose port on network `project/network` has fixed IP `ip` (device owner
/// `compute:*`), if exactly one does.
pub async fn find_server(
    store: &ObjectStore,
    project: &str,
    network: &str,
    ip: IpAddr,
) -> Result<Option<Server>, ApiError> {
    // Every project's ports on the network: a shared network's guests are other projects'
    // (the network's IPAM keeps each address unique on it).
    let ports: Vec<Port> = list_where(store, None, &format!("spec.network={network}")).await?;
    let mut owners: Vec<(String, String)> = ports
        .iter()
        .filter(|p| p.is_on(project, network))
        .filter(|p| is_compute_port(p))
        .filter(|p| port_ips(p).contains(&ip))
        .filter_map(|p| Some((p.metadata.project.clone()?, p.spec.device_id.clone()?)))
        .filter(|(_, id)| !id.is_empty())
        .collect();
    owners.sort();
    owners.dedup();
    let [(server_project, server_uid)] = owners.as_slice() else {
        if owners.len() > 1 {
            tracing::warn!(%project, %network, %ip, ?owners, "address claimed by several servers");
        }
        return Ok(None);
    };
    let servers: Vec<Server> = list_where(
        store,
        Some(server_project),
        &format!("metadata.uid={server_uid}"),
    )
    .await?;
    Ok(servers.into_iter().next())
}

/// Whether `server` is bound to `node` (`spec.nodeName`, or `status.node` where it runs).
fn bound_to(server: &Server, node: &str) -> bool {
    server.spec.node_name.as_deref() == Some(node) || server.status.node.as_deref() == Some(node)
}

/// A port a server uses (`deviceOwner: compute:*`), not a DHCP or router port.
fn is_compute_port(port: &Port) -> bool {
    port.spec
        .device_owner
        .as_deref()
        .is_some_and(|o| o.starts_with("compute:"))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// `GET /metadata` and `GET /metadata/{*path}`: the instance's own metadata.
pub async fn serve(
    State(state): State<ApiState>,
    caller: crate::auth::Caller,
    path: Option<Path<String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Whose proxy asks: a node's metadata token or node token is answered only about the
    // servers bound to that node; a cloud admin (debugging) about any.
    let node = match (caller.restriction(), caller.node()) {
        (Some(crate::auth::Restriction::Metadata { node }), _) => Some(node),
        (None, Some(node)) => Some(node.to_string()),
        (None, None) if caller.is_cloud_admin() => None,
        _ => {
            return Err(ApiError::forbidden(
                "metadata is served to node agents' metadata proxies only",
            ));
        }
    };
    let (Some(network), Some(source)) = (
        header(&headers, NETWORK_HEADER),
        header(&headers, SOURCE_IP_HEADER),
    ) else {
        return Err(ApiError::bad_request(format!(
            "metadata requests come through a node's metadata proxy ({NETWORK_HEADER} and \
             {SOURCE_IP_HEADER} missing)"
        )));
    };
    let Some((project, network)) = network.split_once('/') else {
        return Err(ApiError::bad_request(format!(
            "{NETWORK_HEADER} must be <project>/<network>, got {network:?}"
        )));
    };
    let ip: IpAddr = source.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{SOURCE_IP_HEADER} {source:?} is not an IP address"
        ))
    })?;
    let nobody = || {
        ApiError::not_found(format!(
            "no server has address {ip} on network {project}/{network}"
        ))
    };
    let Some(server) = find_server(&state.store, project, network, ip).await? else {
        return Err(nobody());
    };
    if let Some(node) = &node
        && !bound_to(&server, node)
    {
        // Another node's guest: that node's proxy serves it, this one learns nothing.
        tracing::info!(%node, %project, %network, %ip, "metadata refused: server bound elsewhere");
        return Err(nobody());
    }
    let data = instance_data(&state.store, server).await?;
    let path = path.map(|Path(p)| p).unwrap_or_default();
    let Some((body, content_type)) = resolve(&data, &path) else {
        return Err(ApiError::not_found(format!("no metadata at /{path}")));
    };
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from(body)).into_response())
}

/// `GET .../projects/{project}/servers/{name}/configdrive`: the config drive's files as a
/// JSON object path → base64 content (the node agent writes them into the ISO).
pub async fn server_configdrive(
    State(state): State<ApiState>,
    caller: crate::auth::Caller,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (Some(project), Some(plural), Some(name)) = (
        params.get("project"),
        params.get("plural"),
        params.get("name"),
    ) else {
        return Err(ApiError::not_found("no such path"));
    };
    if plural != "servers" {
        return Err(ApiError::not_found(format!(
            "{plural} have no config drive"
        )));
    }
    crate::resources::authz::authorize(
        &state,
        &caller,
        cirrus_crds::Server::info(),
        Some(project),
        Some(name),
        crate::resources::authz::Op::Get,
    )
    .await?;
    let server = Api::<Server>::in_project(state.store.clone(), project)
        .get(name)
        .await?;
    let data = instance_data(&state.store, server).await?;
    let files: Map<String, Value> = config_drive_files(&data)
        .into_iter()
        .map(|(path, content)| (path, Value::String(STANDARD.encode(content))))
        .collect();
    Ok(axum::Json(Value::Object(files)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::kinds::port::FixedIp;
    use cirrus_crds::{
        KeypairSpec, NetworkSpec, NetworkStatus, ObjectMeta, PortSpec, PortStatus, ServerSpec,
        SubnetSpec,
    };

    fn meta(name: &str, uid: &str) -> ObjectMeta {
        ObjectMeta {
            name: name.into(),
            project: Some("demo".into()),
            uid: Some(uid.into()),
            ..ObjectMeta::default()
        }
    }

    fn data() -> InstanceData {
        let mut server = Server::new(
            meta("web-0", "11112222-3333-4444-5555-666677778888"),
            ServerSpec {
                flavor: "m1".into(),
                image: Some("guest".into()),
                key_name: Some("k1".into()),
                user_data: Some(STANDARD.encode("#!/bin/sh\necho hi\n")),
                metadata: BTreeMap::from([("role".into(), "web".into())]),
                ..ServerSpec::default()
            },
        );
        server.spec.networks = vec![cirrus_crds::kinds::server::ServerNetwork {
            network: Some("net1".into()),
            tag: Some("front".into()),
            ..Default::default()
        }];
        let keypair = Keypair::new(
            meta("k1", "k-uid"),
            KeypairSpec {
                public_key: "ssh-ed25519 AAAA test\n".into(),
                ..KeypairSpec::default()
            },
        );
        let mut port = Port::new(
            meta("web-0-11112222-0", "abcdef01-2345-6789-0000-000000000000"),
            PortSpec {
                network: "net1".into(),
                ..PortSpec::default()
            },
        );
        port.status = PortStatus {
            fixed_ips: vec![FixedIp {
                subnet: "sub1".into(),
                ip_address: "10.0.0.5".parse().unwrap(),
            }],
            mac_address: Some("fa:16:3e:00:00:05".into()),
            ..PortStatus::default()
        };
        let mut network = Network::new(meta("net1", "net-uid"), NetworkSpec::default());
        network.status = NetworkStatus {
            mtu: Some(1450),
            ..NetworkStatus::default()
        };
        let subnet = Subnet::new(
            meta("sub1", "sub-uid"),
            SubnetSpec {
                network: "net1".into(),
                cidr: "10.0.0.0/24".parse().unwrap(),
                dns_nameservers: vec!["10.1.1.1".parse().unwrap()],
                ..SubnetSpec::default()
            },
        );
        InstanceData {
            server,
            keypair: Some(keypair),
            nics: vec![Nic {
                port,
                network: Some(network),
                subnets: vec![subnet],
            }],
        }
    }

    #[test]
    fn meta_data_names_the_server_and_its_key() {
        let m = meta_data(&data());
        assert_eq!(m["uuid"], "11112222-3333-4444-5555-666677778888");
        assert_eq!(m["name"], "web-0");
        assert_eq!(m["hostname"], "web-0");
        assert_eq!(m["project_id"], "demo");
        assert_eq!(m["public_keys"]["k1"], "ssh-ed25519 AAAA test");
        assert_eq!(m["keys"][0]["type"], "ssh");
        assert_eq!(m["meta"]["role"], "web");
        assert_eq!(m["devices"][0]["tags"][0], "front");
        assert_eq!(m["devices"][0]["mac"], "fa:16:3e:00:00:05");
    }

    #[test]
    fn network_data_has_static_ipv4_with_routes_and_dns() {
        let n = network_data(&data());
        assert_eq!(n["links"][0]["id"], "tapabcdef01234");
        assert_eq!(n["links"][0]["ethernet_mac_address"], "fa:16:3e:00:00:05");
        assert_eq!(n["links"][0]["mtu"], 1450);
        let net = &n["networks"][0];
        assert_eq!(net["type"], "ipv4");
        assert_eq!(net["link"], "tapabcdef01234");
        assert_eq!(net["ip_address"], "10.0.0.5");
        assert_eq!(net["netmask"], "255.255.255.0");
        assert_eq!(net["network_id"], "net-uid");
        assert_eq!(
            net["routes"][0],
            json!({"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"})
        );
        assert_eq!(
            n["services"][0],
            json!({"type": "dns", "address": "10.1.1.1"})
        );
    }

    #[test]
    fn paths_resolve_like_openstack_and_ec2() {
        let d = data();
        let text = |p: &str| String::from_utf8(resolve(&d, p).unwrap().0).unwrap();
        assert_eq!(text("openstack/latest/user_data"), "#!/bin/sh\necho hi\n");
        assert_eq!(text("latest/user-data"), "#!/bin/sh\necho hi\n");
        assert_eq!(text("latest/meta-data/instance-id"), "i-11112222");
        assert_eq!(text("latest/meta-data/local-ipv4"), "10.0.0.5");
        assert_eq!(text("latest/meta-data/public-keys"), "0=k1");
        assert_eq!(
            text("latest/meta-data/public-keys/0/openssh-key"),
            "ssh-ed25519 AAAA test"
        );
        assert!(text("latest/meta-data/").contains("placement/\n"));
        assert!(text("openstack/latest").contains("meta_data.json"));
        let m: Value = serde_json::from_str(&text("openstack/latest/meta_data.json")).unwrap();
        assert_eq!(m["name"], "web-0");
        assert!(resolve(&d, "openstack/1999-01-01/meta_data.json").is_none());
        assert!(resolve(&d, "latest/meta-data/nope").is_none());
    }

    #[test]
    fn no_user_data_means_no_file() {
        let mut d = data();
        d.server.spec.user_data = None;
        assert!(resolve(&d, "openstack/latest/user_data").is_none());
        assert!(resolve(&d, "latest/user-data").is_none());
        assert!(!config_drive_files(&d).contains_key("openstack/latest/user_data"));
    }

    #[test]
    fn config_drive_has_the_openstack_and_ec2_files() {
        let files = config_drive_files(&data());
        for path in [
            "openstack/latest/meta_data.json",
            "openstack/latest/user_data",
            "openstack/latest/network_data.json",
            "openstack/latest/vendor_data.json",
            "openstack/2012-08-10/meta_data.json",
            "ec2/latest/meta-data.json",
        ] {
            assert!(files.contains_key(path), "{path} missing");
        }
        assert_eq!(
            files["openstack/latest/meta_data.json"],
            render_openstack(&data())["meta_data.json"]
        );
    }
}
