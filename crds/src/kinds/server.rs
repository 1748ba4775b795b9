//! `Server`: a virtual machine (Nova's server).
//!
//! Everything a user asks for is desired state in `spec`, including what Nova calls
//! actions: `powerState` (start/stop/pause/suspend), `rebootCount` (bump it to reboot;
//! `rebootType` says soft or hard), `rebuildCount` (bump it to rebuild from `image`), a
//! changed `flavor` (resize), a changed `nodeName` by an admin (migration). Controllers
//! report progress in `status` (`phase` uses Nova's status strings) and acknowledge counters
//! with `status.observedRebootCount` / `observedRebuildCount`.
//!
//! Networking: each `spec.networks` entry becomes one NIC, in order. An entry names a
//! `network` (the network controller creates a `Port` owned by the server, optionally with
//! `fixedIp`) or an existing `port` the user made. An empty list means no NIC.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::{
    base64_decode, check_metadata, check_opt_ref, check_ref, check_refs, ip_version,
};
use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A virtual machine. Project-scoped.
    Server {
        spec: ServerSpec,
        status: ServerStatus,
        plural: "servers",
        singular: "server",
        short_names: ["srv", "vm"],
        scope: Project,
    }
}

/// Largest `userData` after base64 decoding, in bytes (64 KiB).
pub const MAX_USER_DATA_BYTES: usize = 64 * 1024;

/// One NIC of a server: on a `network` (a port is created for it) or an existing `port`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerNetwork {
    /// Name of the `Network` to attach to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Project owning `network` when it is another project's network shared with this one
    /// (see `Port.spec.networkProject`); absent: the server's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_project: Option<String>,
    /// Name of an existing `Port` to use (instead of `network`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Fixed address wanted on `network`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_ip: Option<IpAddr>,
    /// Device tag exposed in the metadata service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// A volume attached to a server.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerVolume {
    /// Name of the `Volume`.
    pub volume: String,
    /// Requested guest device, e.g. `/dev/vdb`; absent: the next free one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Delete the volume when the server is deleted.
    #[serde(default, skip_serializing_if = "crate::kinds::is_false")]
    pub delete_on_termination: bool,
}

/// Placement hints for the scheduler (Nova's `os:scheduler_hints`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchedulerHints {
    /// Name of the `ServerGroup` the server joins; its policy applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Place on a different node than these servers (names, same project).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub different_host: Vec<String>,
    /// Place on the same node as these servers (names, same project).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub same_host: Vec<String>,
}

impl SchedulerHints {
    /// True when no hint is given.
    pub fn is_empty(&self) -> bool {
        self.group.is_none() && self.different_host.is_empty() && self.same_host.is_empty()
    }
}

/// The power state a user wants.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PowerState {
    /// Running (`openstack server start`, `unpause`, `resume`).
    #[default]
    Running,
    /// Shut off (`openstack server stop`).
    Stopped,
    /// Paused in memory (`openstack server pause`).
    Paused,
    /// Suspended to disk (`openstack server suspend`).
    Suspended,
}

/// How to reboot.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RebootType {
    /// Ask the guest OS to reboot (ACPI), falling back to hard after a timeout.
    #[default]
    Soft,
    /// Power-cycle the virtual machine.
    Hard,
}

/// Desired state of a server.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerSpec {
    /// Name of the `Flavor`; changing it resizes the server.
    pub flavor: String,
    /// Name of the `Image` to boot from (own project first, then public images); changing
    /// it rebuilds the server. Exactly one of `image` and `bootVolume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Name of a bootable `Volume` to boot from instead of an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_volume: Option<String>,
    /// NICs, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<ServerNetwork>,
    /// `SecurityGroup`s for the ports created from `networks` entries; empty: the
    /// project's `default` group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// Name of the `Keypair` whose public key is injected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// cloud-init user data, base64-encoded; at most 64 KiB decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// Free-form key/value metadata exposed to the guest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Availability zone to place the server in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Placement hints.
    #[serde(default, skip_serializing_if = "SchedulerHints::is_empty")]
    pub scheduler_hints: SchedulerHints,
    /// Wanted power state.
    #[serde(default)]
    pub power_state: PowerState,
    /// Bump to request a reboot.
    #[serde(default, skip_serializing_if = "crate::kinds::is_zero")]
    pub reboot_count: u64,
    /// Kind of reboot the next `rebootCount` bump asks for.
    #[serde(default)]
    pub reboot_type: RebootType,
    /// Bump to request a rebuild from `image` (a changed `image` also rebuilds).
    #[serde(default, skip_serializing_if = "crate::kinds::is_zero")]
    pub rebuild_count: u64,
    /// Attach a config drive with metadata and user data.
    #[serde(default, skip_serializing_if = "crate::kinds::is_false")]
    pub config_drive: bool,
    /// Attached data volumes. An entry naming `bootVolume` is allowed only to carry
    /// `deleteOnTermination` for it (no `device`; it is not attached a second time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<ServerVolume>,
    /// Node the server runs on: set by the scheduler (binding) or by an admin to pin or
    /// migrate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Guest host name; absent: the object name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Nova's server status strings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerPhase {
    /// Being created (scheduling, networking, spawning).
    Build,
    /// Running.
    Active,
    /// Powered off.
    Shutoff,
    /// Paused in memory.
    Paused,
    /// Suspended to disk.
    Suspended,
    /// Soft reboot in progress.
    Reboot,
    /// Hard reboot in progress.
    HardReboot,
    /// Rebuild in progress.
    Rebuild,
    /// Resize or migration in progress.
    Resize,
    /// Resized; waiting for confirmation.
    VerifyResize,
    /// Live migration in progress.
    Migrating,
    /// Failed; see `fault`.
    Error,
    /// Deleted, resources being released.
    Deleted,
    /// State unknown (node unreachable).
    Unknown,
}

/// The power state observed on the node (Nova's `OS-EXT-STS:power_state`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObservedPowerState {
    /// No domain (yet).
    NoState,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Shut down.
    Stopped,
    /// Suspended (saved to disk).
    Suspended,
    /// Crashed.
    Crashed,
}

/// Whether an address is the port's own or a floating one.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AddressType {
    /// A fixed address of the port.
    #[default]
    Fixed,
    /// A floating IP associated with the port.
    Floating,
}

/// One address of a server (Nova's `addresses` entries).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerAddress {
    /// The address.
    pub ip: IpAddr,
    /// 4 or 6.
    pub version: u8,
    /// MAC address of the NIC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Fixed or floating.
    #[serde(rename = "type", default)]
    pub type_: AddressType,
    /// Name of the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

/// Why a server went to ERROR (Nova's `fault`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerFault {
    /// HTTP-like code: 500 for internal errors, 4xx for bad requests.
    pub code: u16,
    /// What went wrong.
    pub message: String,
    /// More detail (admins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// When it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
}

/// Observed state of a server.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerStatus {
    /// Nova's server status (`BUILD`, `ACTIVE`, `SHUTOFF`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ServerPhase>,
    /// What is in progress (Nova's task_state: `scheduling`, `networking`, `spawning`,
    /// `powering-off`, `rebooting`, `deleting`, ...); absent when idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_state: Option<String>,
    /// Power state observed on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_state: Option<ObservedPowerState>,
    /// Node the server runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Addresses by network name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addresses: BTreeMap<String, Vec<ServerAddress>>,
    /// When the server first became ACTIVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_at: Option<DateTime<Utc>>,
    /// Why the server is in ERROR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<ServerFault>,
    /// The `spec.rebootCount` last carried out.
    #[serde(default, skip_serializing_if = "crate::kinds::is_zero")]
    pub observed_reboot_count: u64,
    /// The `spec.rebuildCount` last carried out.
    #[serde(default, skip_serializing_if = "crate::kinds::is_zero")]
    pub observed_rebuild_count: u64,
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observations: `Scheduled`, `NetworkReady`, `Ready`, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Why `host` is not a usable guest host name (RFC 1123 labels, at most 63 characters
/// each, 253 in all), if it is not.
fn hostname_problem(host: &str) -> Option<String> {
    if host.is_empty() || host.len() > 253 {
        return Some("must be 1 to 253 characters".into());
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Some(format!(
                "{host:?} is not a host name: dot-separated labels of letters, digits and '-'"
            ));
        }
    }
    None
}

impl Validate for Server {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        check_ref(errors, "spec.flavor", &spec.flavor);
        match (&spec.image, &spec.boot_volume) {
            (None, None) => errors.add("spec.image", "give image or bootVolume"),
            (Some(_), Some(_)) => {
                errors.add("spec.bootVolume", "give image or bootVolume, not both")
            }
            _ => {}
        }
        check_opt_ref(errors, "spec.image", &spec.image);
        check_opt_ref(errors, "spec.bootVolume", &spec.boot_volume);
        for (i, net) in spec.networks.iter().enumerate() {
            let path = format!("spec.networks[{i}]");
            match (&net.network, &net.port) {
                (None, None) => errors.add(path.clone(), "give network or port"),
                (Some(_), Some(_)) => {
                    errors.add(format!("{path}.port"), "give network or port, not both")
                }
                _ => {}
            }
            if net.fixed_ip.is_some() && net.network.is_none() {
                errors.add(
                    format!("{path}.fixedIp"),
                    "needs network (a port has its own addresses)",
                );
            }
            check_opt_ref(errors, format!("{path}.network"), &net.network);
            check_opt_ref(
                errors,
                format!("{path}.networkProject"),
                &net.network_project,
            );
            if net.network_project.is_some() && net.network.is_none() {
                errors.add(format!("{path}.networkProject"), "needs network");
            }
            check_opt_ref(errors, format!("{path}.port"), &net.port);
            if let Some(port) = &net.port
                && spec.networks[..i]
                    .iter()
                    .any(|n| n.port.as_ref() == Some(port))
            {
                errors.add(
                    format!("{path}.port"),
                    format!("port {port:?} is used twice"),
                );
            }
        }
        check_refs(errors, "spec.securityGroups", &spec.security_groups);
        check_opt_ref(errors, "spec.keyName", &spec.key_name);
        if let Some(data) = &spec.user_data {
            match base64_decode(data) {
                Err(e) => errors.add("spec.userData", e),
                Ok(bytes) if bytes.len() > MAX_USER_DATA_BYTES => errors.add(
                    "spec.userData",
                    format!(
                        "decodes to {} bytes; at most {MAX_USER_DATA_BYTES} allowed",
                        bytes.len()
                    ),
                ),
                Ok(_) => {}
            }
        }
        check_metadata(errors, "spec.metadata", &spec.metadata);
        if spec.metadata.len() > 128 {
            errors.add("spec.metadata", "at most 128 items");
        }
        let hints = &spec.scheduler_hints;
        check_opt_ref(errors, "spec.schedulerHints.group", &hints.group);
        check_refs(
            errors,
            "spec.schedulerHints.differentHost",
            &hints.different_host,
        );
        check_refs(errors, "spec.schedulerHints.sameHost", &hints.same_host);
        for (i, v) in spec.volumes.iter().enumerate() {
            let path = format!("spec.volumes[{i}]");
            check_ref(errors, format!("{path}.volume"), &v.volume);
            if spec.volumes[..i].iter().any(|o| o.volume == v.volume) {
                errors.add(
                    format!("{path}.volume"),
                    format!("volume {:?} is attached twice", v.volume),
                );
            }
            // An entry for the boot volume only carries `deleteOnTermination`: the boot
            // volume is the root disk, it is not attached a second time.
            if spec.boot_volume.as_ref() == Some(&v.volume) && v.device.is_some() {
                errors.add(
                    format!("{path}.device"),
                    format!(
                        "volume {:?} is the boot volume (vda); its entry may only set \
                         deleteOnTermination",
                        v.volume
                    ),
                );
            }
            if let Some(dev) = &v.device {
                let ok = dev.strip_prefix("/dev/").is_some_and(|d| {
                    !d.is_empty()
                        && d.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                });
                if !ok {
                    errors.add(
                        format!("{path}.device"),
                        format!("{dev:?} is not a device like /dev/vdb"),
                    );
                }
            }
        }
        check_opt_ref(errors, "spec.nodeName", &spec.node_name);
        if let Some(host) = &spec.hostname
            && let Some(p) = hostname_problem(host)
        {
            errors.add("spec.hostname", p);
        }
        crate::kinds::check_len(errors, "spec.description", &spec.description, 255);
        for (net, addrs) in &self.status.addresses {
            for (i, a) in addrs.iter().enumerate() {
                if a.version != ip_version(&a.ip) {
                    errors.add(
                        format!("status.addresses[{net:?}][{i}].version"),
                        format!(
                            "is {} but {} is an IPv{} address",
                            a.version,
                            a.ip,
                            ip_version(&a.ip)
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod boot_volume_entry_tests {
    use super::*;
    use crate::meta::ObjectMeta;

    fn errors_of(volumes: Vec<ServerVolume>) -> Vec<String> {
        let server = Server::new(
            ObjectMeta::default(),
            ServerSpec {
                flavor: "m1".into(),
                boot_volume: Some("root".into()),
                volumes,
                ..Default::default()
            },
        );
        let mut errors = FieldErrors::default();
        server.validate(&mut errors);
        errors.0.iter().map(|e| e.field.clone()).collect()
    }

    #[test]
    fn the_boot_volume_entry_only_carries_delete_on_termination() {
        let entry = |volume: &str, device: Option<&str>| ServerVolume {
            volume: volume.into(),
            device: device.map(str::to_owned),
            delete_on_termination: true,
        };
        assert!(errors_of(vec![entry("root", None), entry("data", None)]).is_empty());
        assert_eq!(
            errors_of(vec![entry("root", Some("/dev/vdb"))]),
            ["spec.volumes[0].device"]
        );
        assert_eq!(
            errors_of(vec![entry("data", None), entry("data", None)]),
            ["spec.volumes[1].volume"]
        );
    }
}
