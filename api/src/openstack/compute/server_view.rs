//! Nova's server bodies from `Server` objects: the status mapping (status, vm_state,
//! task_state, power_state) and the full v2.1 body as tempest's
//! `compute/v2_1/servers.py` schemas describe it (no field of a later microversion).

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use cirrus_crds::Server;
use cirrus_crds::kinds::server::{
    AddressType, ObservedPowerState, PowerState, RebootType, ServerPhase,
};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha224};

use super::related::{Related, display};
use super::{bookmark, links};

/// Annotation recording the user who created a server through the compute API (`user_id`).
pub const USER_ANNOTATION: &str = "openstack.org/user-id";
/// Annotation recording the uid of the image a server was created from (`image.id` stays
/// right even when the image is renamed or deleted later).
pub const IMAGE_ANNOTATION: &str = "openstack.org/image-id";
/// Annotation holding `accessIPv4`.
pub const ACCESS_V4_ANNOTATION: &str = "openstack.org/access-ipv4";
/// Annotation holding `accessIPv6`.
pub const ACCESS_V6_ANNOTATION: &str = "openstack.org/access-ipv6";

/// How Nova would describe a server's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NovaState {
    /// `status` (`BUILD`, `ACTIVE`, `SHUTOFF`, ...).
    pub status: &'static str,
    /// `OS-EXT-STS:vm_state` (`building`, `active`, `stopped`, ...).
    pub vm_state: &'static str,
    /// `OS-EXT-STS:task_state`: what is in progress, `None` when idle.
    pub task_state: Option<String>,
    /// `OS-EXT-STS:power_state`: Nova's power state number.
    pub power_state: u8,
}

/// Whether a reboot was asked for and not yet carried out.
pub fn reboot_pending(server: &Server) -> bool {
    server.spec.reboot_count > server.status.observed_reboot_count
}

/// Nova's state of `server`, from its observed phase and the transitions its spec asks for
/// that the node has not carried out yet (a stop asked of an ACTIVE server is ACTIVE with
/// task_state `powering-off`, as in Nova).
pub fn nova_state(server: &Server) -> NovaState {
    let phase = server.status.phase.unwrap_or(ServerPhase::Build);
    let vm_state = match phase {
        ServerPhase::Build => "building",
        ServerPhase::Active
        | ServerPhase::Reboot
        | ServerPhase::HardReboot
        | ServerPhase::Rebuild
        | ServerPhase::Resize
        | ServerPhase::Migrating
        | ServerPhase::Unknown => "active",
        ServerPhase::Shutoff => "stopped",
        ServerPhase::Paused => "paused",
        ServerPhase::Suspended => "suspended",
        ServerPhase::VerifyResize => "resized",
        ServerPhase::Error => "error",
        ServerPhase::Deleted => "deleted",
    };
    let mut status = match phase {
        ServerPhase::Build => "BUILD",
        ServerPhase::Active => "ACTIVE",
        ServerPhase::Shutoff => "SHUTOFF",
        ServerPhase::Paused => "PAUSED",
        ServerPhase::Suspended => "SUSPENDED",
        ServerPhase::Reboot => "REBOOT",
        ServerPhase::HardReboot => "HARD_REBOOT",
        ServerPhase::Rebuild => "REBUILD",
        ServerPhase::Resize => "RESIZE",
        ServerPhase::VerifyResize => "VERIFY_RESIZE",
        ServerPhase::Migrating => "MIGRATING",
        ServerPhase::Error => "ERROR",
        ServerPhase::Deleted => "DELETED",
        ServerPhase::Unknown => "UNKNOWN",
    };
    let wanted = server.spec.power_state;
    let hard = server.spec.reboot_type == RebootType::Hard;
    let pending = if server.metadata.deletion_timestamp.is_some() {
        Some("deleting")
    } else if reboot_pending(server)
        && matches!(vm_state, "active" | "stopped" | "paused" | "suspended")
    {
        status = if hard { "HARD_REBOOT" } else { "REBOOT" };
        Some(if hard { "rebooting_hard" } else { "rebooting" })
    } else {
        match (vm_state, wanted) {
            ("active", PowerState::Stopped)
            | ("paused", PowerState::Stopped)
            | ("suspended", PowerState::Stopped) => Some("powering-off"),
            ("stopped", PowerState::Running) => Some("powering-on"),
            ("paused", PowerState::Running) => Some("unpausing"),
            ("suspended", PowerState::Running) => Some("resuming"),
            ("active", PowerState::Paused) => Some("pausing"),
            ("active", PowerState::Suspended) => Some("suspending"),
            _ => None,
        }
    };
    let task_state =
        pending
            .map(str::to_string)
            .or_else(|| match (&server.status.task_state, phase) {
                (Some(t), _) => Some(t.clone()),
                (None, ServerPhase::Build) if server.spec.node_name.is_none() => {
                    Some("scheduling".to_string())
                }
                (None, ServerPhase::Build) => Some("spawning".to_string()),
                _ => None,
            });
    let power_state = match server.status.power_state {
        None | Some(ObservedPowerState::NoState) => 0,
        Some(ObservedPowerState::Running) => 1,
        Some(ObservedPowerState::Paused) => 3,
        Some(ObservedPowerState::Stopped) => 4,
        Some(ObservedPowerState::Crashed) => 6,
        Some(ObservedPowerState::Suspended) => 7,
    };
    NovaState {
        status,
        vm_state,
        task_state,
        power_state,
    }
}

/// Nova's `hostId`: an opaque per-project digest of the host (sha224 of project + host),
/// empty before the server has a host.
pub fn host_id(project: &str, host: Option<&str>) -> String {
    match host {
        None | Some("") => String::new(),
        Some(host) => {
            let digest = Sha224::digest(format!("{project}{host}").as_bytes());
            digest.iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

/// The node the server is on (observed, else bound).
pub fn host_of(server: &Server) -> Option<&str> {
    server
        .status
        .node
        .as_deref()
        .or(server.spec.node_name.as_deref())
}

/// Nova's `created`/`updated` format.
fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// When the server last changed as far as its object shows: the latest of its creation,
/// launch, fault and condition transitions.
fn updated(server: &Server) -> Option<DateTime<Utc>> {
    let mut times: Vec<DateTime<Utc>> = Vec::new();
    times.extend(server.metadata.creation_timestamp);
    times.extend(server.metadata.deletion_timestamp);
    times.extend(server.status.launched_at);
    times.extend(server.status.fault.as_ref().and_then(|f| f.created));
    times.extend(
        server
            .status
            .conditions
            .iter()
            .filter_map(|c| c.last_transition_time),
    );
    times.into_iter().max()
}

/// The server's project.
pub fn project_of(server: &Server) -> &str {
    server.metadata.project.as_deref().unwrap_or_default()
}

/// The server's id (its uid).
pub fn id_of(server: &Server) -> &str {
    server.metadata.uid.as_deref().unwrap_or_default()
}

/// `{id, name, links}`: an entry of `GET /servers`.
pub fn summary(server: &Server, headers: &HeaderMap) -> Value {
    json!({
        "id": id_of(server),
        "name": display(&server.metadata),
        "links": links(headers, "servers", id_of(server)),
    })
}

/// The server's `addresses`: by network display name, from the status the node agent
/// reports, else from the ports allocated to it (before the agent has seen them).
pub fn addresses(server: &Server, related: &Related) -> Value {
    let project = project_of(server);
    let network_label = |name: &str| {
        related
            .network_named(project, name)
            .map_or_else(|| name.to_string(), |n| display(&n.metadata).to_string())
    };
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    if !server.status.addresses.is_empty() {
        for (network, entries) in &server.status.addresses {
            let list = out.entry(network_label(network)).or_default();
            for a in entries {
                let mut entry = json!({
                    "version": a.version,
                    "addr": a.ip.to_string(),
                    "OS-EXT-IPS:type": match a.type_ {
                        AddressType::Fixed => "fixed",
                        AddressType::Floating => "floating",
                    },
                });
                if let Some(mac) = &a.mac {
                    entry["OS-EXT-IPS-MAC:mac_addr"] = Value::from(mac.to_lowercase());
                }
                list.push(entry);
            }
        }
    } else {
        for port in related.ports_of(project, id_of(server)) {
            let list = out.entry(network_label(&port.spec.network)).or_default();
            for fixed in &port.status.fixed_ips {
                let mut entry = json!({
                    "version": if fixed.ip_address.is_ipv4() { 4 } else { 6 },
                    "addr": fixed.ip_address.to_string(),
                    "OS-EXT-IPS:type": "fixed",
                });
                if let Some(mac) = port
                    .status
                    .mac_address
                    .as_ref()
                    .or(port.spec.mac_address.as_ref())
                {
                    entry["OS-EXT-IPS-MAC:mac_addr"] = Value::from(mac.to_lowercase());
                }
                list.push(entry);
            }
        }
    }
    json!(out)
}

/// The full Nova body of `server` (show, detail list, update). `admin` adds the
/// `OS-EXT-SRV-ATTR:*` fields and fault details Nova shows administrators only.
pub fn detail(server: &Server, related: &Related, headers: &HeaderMap, admin: bool) -> Value {
    let project = project_of(server);
    let id = id_of(server);
    let spec = &server.spec;
    let state = nova_state(server);
    let annotations = &server.metadata.annotations;
    let image = match &spec.image {
        None => Value::from(""),
        Some(name) => {
            let image_id = annotations
                .get(IMAGE_ANNOTATION)
                .cloned()
                .or_else(|| {
                    related
                        .image_for(project, name)
                        .and_then(|i| i.metadata.uid.clone())
                })
                .unwrap_or_else(|| name.clone());
            json!({"id": image_id, "links": bookmark(headers, "images", &image_id)})
        }
    };
    let mut volumes: Vec<Value> = Vec::new();
    let mut volume_names: Vec<&str> = spec.boot_volume.iter().map(String::as_str).collect();
    for v in &spec.volumes {
        if !volume_names.contains(&v.volume.as_str()) {
            volume_names.push(&v.volume);
        }
    }
    for name in volume_names {
        let vid = related
            .volume_named(project, name)
            .and_then(|v| v.metadata.uid.clone())
            .unwrap_or_else(|| name.to_string());
        volumes.push(json!({ "id": vid }));
    }
    let groups: Vec<Value> = if spec.security_groups.is_empty() {
        if spec.networks.is_empty() {
            Vec::new()
        } else {
            vec![json!({"name": "default"})]
        }
    } else {
        spec.security_groups
            .iter()
            .map(|g| {
                let name = related
                    .security_group(project, g)
                    .map_or_else(|| g.clone(), |sg| display(&sg.metadata).to_string());
                json!({ "name": name })
            })
            .collect()
    };
    let host = host_of(server);
    let created = server
        .metadata
        .creation_timestamp
        .map(time)
        .unwrap_or_default();
    let mut body = Map::new();
    let mut put = |k: &str, v: Value| {
        body.insert(k.to_string(), v);
    };
    put("id", Value::from(id));
    put("name", Value::from(display(&server.metadata)));
    put("status", Value::from(state.status));
    put("tenant_id", Value::from(project));
    put(
        "user_id",
        Value::from(
            annotations
                .get(USER_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
        ),
    );
    put("metadata", json!(spec.metadata));
    put("hostId", Value::from(host_id(project, host)));
    put("image", image);
    put(
        "flavor",
        json!({"id": spec.flavor, "links": bookmark(headers, "flavors", &spec.flavor)}),
    );
    put("created", Value::from(created.clone()));
    put(
        "updated",
        Value::from(updated(server).map(time).unwrap_or(created)),
    );
    put("addresses", addresses(server, related));
    put(
        "accessIPv4",
        Value::from(
            annotations
                .get(ACCESS_V4_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
        ),
    );
    put(
        "accessIPv6",
        Value::from(
            annotations
                .get(ACCESS_V6_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
        ),
    );
    put("links", links(headers, "servers", id));
    put("OS-DCF:diskConfig", Value::from("MANUAL"));
    if matches!(
        state.status,
        "ACTIVE" | "BUILD" | "REBUILD" | "RESIZE" | "VERIFY_RESIZE" | "MIGRATING"
    ) {
        put(
            "progress",
            Value::from(if state.status == "ACTIVE" { 100 } else { 0 }),
        );
    }
    put(
        "key_name",
        match &spec.key_name {
            None => Value::Null,
            Some(k) => Value::from(
                related
                    .keypair(project, k)
                    .map_or(k.as_str(), |kp| display(&kp.metadata)),
            ),
        },
    );
    put(
        "config_drive",
        Value::from(if spec.config_drive { "True" } else { "" }),
    );
    put("security_groups", Value::Array(groups));
    put(
        "OS-EXT-AZ:availability_zone",
        Value::from(
            spec.availability_zone
                .clone()
                .unwrap_or_else(|| "nova".into()),
        ),
    );
    put("OS-EXT-STS:vm_state", Value::from(state.vm_state));
    put("OS-EXT-STS:task_state", json!(state.task_state));
    put("OS-EXT-STS:power_state", Value::from(state.power_state));
    put(
        "OS-SRV-USG:launched_at",
        json!(
            server
                .status
                .launched_at
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
        ),
    );
    put("OS-SRV-USG:terminated_at", Value::Null);
    put(
        "os-extended-volumes:volumes_attached",
        Value::Array(volumes),
    );
    if admin {
        put("OS-EXT-SRV-ATTR:host", json!(host));
        put("OS-EXT-SRV-ATTR:hypervisor_hostname", json!(host));
        put(
            "OS-EXT-SRV-ATTR:instance_name",
            Value::from(format!("cirrus-{id}")),
        );
    }
    if matches!(state.status, "ERROR" | "DELETED")
        && let Some(fault) = &server.status.fault
    {
        let mut f = json!({
            "code": fault.code,
            "message": fault.message,
            "created": fault
                .created
                .or_else(|| updated(server))
                .map(time)
                .unwrap_or_default(),
        });
        if (admin || fault.code != 500)
            && let Some(details) = &fault.details
        {
            f["details"] = Value::from(details.clone());
        }
        put("fault", f);
    }
    Value::Object(body)
}

/// Fields of Nova's basic server view (update and rebuild answers): the detail body without
/// the extension attributes, addresses with `version` and `addr` only.
const BASIC_FIELDS: &[&str] = &[
    "id",
    "name",
    "status",
    "image",
    "flavor",
    "fault",
    "user_id",
    "tenant_id",
    "created",
    "updated",
    "progress",
    "metadata",
    "links",
    "addresses",
    "hostId",
    "OS-DCF:diskConfig",
    "accessIPv4",
    "accessIPv6",
];

/// `addresses` with only `version` and `addr` per entry (the `/ips` routes and the basic
/// view).
pub fn plain_addresses(addresses: &Value) -> Value {
    let mut out = Map::new();
    if let Some(nets) = addresses.as_object() {
        for (net, list) in nets {
            let entries: Vec<Value> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| json!({"version": a["version"], "addr": a["addr"]}))
                .collect();
            out.insert(net.clone(), Value::Array(entries));
        }
    }
    Value::Object(out)
}

/// The basic view of a [`detail`] body.
pub fn basic(detail: &Value) -> Value {
    let mut out = Map::new();
    for key in BASIC_FIELDS {
        if let Some(v) = detail.get(*key) {
            let v = if *key == "addresses" {
                plain_addresses(v)
            } else {
                v.clone()
            };
            out.insert((*key).to_string(), v);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::ServerSpec;
    use cirrus_crds::meta::ObjectMeta;

    fn server(phase: Option<ServerPhase>, wanted: PowerState) -> Server {
        let mut s = Server::new(
            ObjectMeta {
                name: "vm".into(),
                project: Some("demo".into()),
                uid: Some("u-1".into()),
                ..Default::default()
            },
            ServerSpec {
                flavor: "m1".into(),
                image: Some("cirros".into()),
                power_state: wanted,
                ..Default::default()
            },
        );
        s.status.phase = phase;
        s
    }

    #[test]
    fn a_new_server_is_building_and_scheduling() {
        let state = nova_state(&server(None, PowerState::Running));
        assert_eq!(state.status, "BUILD");
        assert_eq!(state.vm_state, "building");
        assert_eq!(state.task_state.as_deref(), Some("scheduling"));
        assert_eq!(state.power_state, 0);
    }

    #[test]
    fn a_stop_not_yet_done_is_active_powering_off_then_shutoff() {
        let mut s = server(Some(ServerPhase::Active), PowerState::Stopped);
        s.status.power_state = Some(ObservedPowerState::Running);
        let state = nova_state(&s);
        assert_eq!((state.status, state.vm_state), ("ACTIVE", "active"));
        assert_eq!(state.task_state.as_deref(), Some("powering-off"));
        assert_eq!(state.power_state, 1);
        s.status.phase = Some(ServerPhase::Shutoff);
        s.status.power_state = Some(ObservedPowerState::Stopped);
        let state = nova_state(&s);
        assert_eq!((state.status, state.vm_state), ("SHUTOFF", "stopped"));
        assert_eq!(state.task_state, None);
        assert_eq!(state.power_state, 4);
    }

    #[test]
    fn a_pending_reboot_shows_reboot_or_hard_reboot() {
        let mut s = server(Some(ServerPhase::Active), PowerState::Running);
        s.spec.reboot_count = 1;
        assert_eq!(nova_state(&s).status, "REBOOT");
        assert_eq!(nova_state(&s).task_state.as_deref(), Some("rebooting"));
        s.spec.reboot_type = RebootType::Hard;
        assert_eq!(nova_state(&s).status, "HARD_REBOOT");
        s.status.observed_reboot_count = 1;
        assert_eq!(nova_state(&s).status, "ACTIVE");
        assert_eq!(nova_state(&s).task_state, None);
    }

    #[test]
    fn pause_and_suspend_states_and_deleting() {
        let s = server(Some(ServerPhase::Paused), PowerState::Paused);
        assert_eq!(
            (nova_state(&s).status, nova_state(&s).vm_state),
            ("PAUSED", "paused")
        );
        let s = server(Some(ServerPhase::Suspended), PowerState::Running);
        assert_eq!(nova_state(&s).task_state.as_deref(), Some("resuming"));
        let mut s = server(Some(ServerPhase::Active), PowerState::Running);
        s.metadata.deletion_timestamp = Some(Utc::now());
        assert_eq!(nova_state(&s).status, "ACTIVE");
        assert_eq!(nova_state(&s).task_state.as_deref(), Some("deleting"));
    }

    #[test]
    fn host_id_is_novas_sha224_of_project_and_host() {
        assert_eq!(host_id("demo", None), "");
        // python3 -c 'import hashlib; print(hashlib.sha224(b"demonode-1").hexdigest())'
        assert_eq!(
            host_id("demo", Some("node-1")),
            "86247d1af1a95f0cdee0dc1b09e251e1126446edbb118177ea52a169"
        );
    }

    #[test]
    fn the_detail_body_has_exactly_the_v2_1_fields() {
        let mut s = server(Some(ServerPhase::Error), PowerState::Running);
        s.status.fault = Some(cirrus_crds::kinds::server::ServerFault {
            code: 500,
            message: "ImageNotFound: no image".into(),
            details: Some("trace".into()),
            created: None,
        });
        s.metadata.creation_timestamp = Some(Utc::now());
        let body = detail(&s, &Related::default(), &HeaderMap::new(), false);
        let mut keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "OS-DCF:diskConfig",
                "OS-EXT-AZ:availability_zone",
                "OS-EXT-STS:power_state",
                "OS-EXT-STS:task_state",
                "OS-EXT-STS:vm_state",
                "OS-SRV-USG:launched_at",
                "OS-SRV-USG:terminated_at",
                "accessIPv4",
                "accessIPv6",
                "addresses",
                "config_drive",
                "created",
                "fault",
                "flavor",
                "hostId",
                "id",
                "image",
                "key_name",
                "links",
                "metadata",
                "name",
                "os-extended-volumes:volumes_attached",
                "security_groups",
                "status",
                "tenant_id",
                "updated",
                "user_id",
            ]
        );
        assert_eq!(body["status"], "ERROR");
        assert_eq!(body["fault"]["code"], 500);
        assert!(
            body["fault"].get("details").is_none(),
            "details are for admins"
        );
        assert_eq!(body["image"]["id"], "cirros");
        let basic = basic(&body);
        assert!(basic.get("OS-EXT-STS:vm_state").is_none());
        assert_eq!(basic["fault"]["code"], 500);
        let admin = detail(&s, &Related::default(), &HeaderMap::new(), true);
        assert_eq!(admin["fault"]["details"], "trace");
        assert_eq!(admin["OS-EXT-SRV-ATTR:instance_name"], "cirrus-u-1");
    }
}
