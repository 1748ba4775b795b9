//! `Port`: a virtual NIC on a network with its MAC, addresses and security groups
//! (Neutron's port).
//!
//! Users may create ports directly and hand them to servers (`Server.spec.networks[].port`);
//! the network controller creates one per `Server.spec.networks[].network` entry, owned by the
//! server (owner reference), with `deviceOwner: compute:nova` and `deviceId` the server's uid.

use std::net::IpAddr;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::network::NetworkPhase;
use crate::kinds::{check_opt_ref, check_ref, check_refs, mac_problem};
use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A virtual network interface: a MAC and fixed IPs on one `Network`. Project-scoped.
    Port {
        spec: PortSpec,
        status: PortStatus,
        plural: "ports",
        singular: "port",
        short_names: ["pt"],
        scope: Project,
    }
}

/// A requested fixed address: a subnet, a specific address, or both.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixedIpRequest {
    /// Name of the `Subnet` to allocate from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// The exact address wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<IpAddr>,
}

/// An assigned fixed address.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixedIp {
    /// Name of the `Subnet` the address belongs to.
    pub subnet: String,
    /// The address.
    pub ip_address: IpAddr,
}

/// Extra traffic a port may send despite anti-spoofing (VRRP, keepalived VIPs).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowedAddressPair {
    /// An address (`10.0.0.100`) or a CIDR (`10.0.0.0/24`).
    pub ip_address: String,
    /// Source MAC allowed with it; absent: the port's own MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
}

/// Desired state of a port.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSpec {
    /// Name of the `Network`.
    pub network: String,
    /// Project owning `network` when it is not the port's own: a network shared with the
    /// port's project (`Network.spec.shared`, or an `RbacPolicy`); absent: the port's
    /// project. Its subnets and addresses are that project's; the port stays the port's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_project: Option<String>,
    /// Requested addresses; empty: one address from each subnet of the network (one per
    /// IP version, as Neutron does).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixed_ips: Vec<FixedIpRequest>,
    /// Requested MAC address; absent: the network controller assigns one (`fa:16:3e:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// Names of `SecurityGroup`s applied; empty with port security on: the project's
    /// `default` group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// Apply security groups and anti-spoofing; absent: the network's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security_enabled: Option<bool>,
    /// Extra addresses allowed to leave the port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_address_pairs: Vec<AllowedAddressPair>,
    /// What uses the port: `compute:nova`, `network:router_interface`,
    /// `network:router_gateway`, `network:dhcp`, `network:floatingip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_owner: Option<String>,
    /// Uid of the object using the port (server, router).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Node the port is bound to (Neutron's `binding:host_id`), set when the server is
    /// scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_host: Option<String>,
    /// Administratively up.
    #[serde(default = "crate::kinds::default_true")]
    pub admin_state_up: bool,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Default for PortSpec {
    fn default() -> Self {
        Self {
            network: String::new(),
            network_project: None,
            fixed_ips: Vec::new(),
            mac_address: None,
            security_groups: Vec::new(),
            port_security_enabled: None,
            allowed_address_pairs: Vec::new(),
            device_owner: None,
            device_id: None,
            binding_host: None,
            admin_state_up: true,
            description: None,
        }
    }
}

/// Observed state of a port.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortStatus {
    /// DOWN until the node agent has plugged it, then ACTIVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NetworkPhase>,
    /// The addresses allocated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixed_ips: Vec<FixedIp>,
    /// The MAC address assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// How the node plugged it (`ovs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vif_type: Option<String>,
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observations; `Ready` when plugged and up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Port {
    /// The project owning the port's network: `spec.networkProject`, else the port's own.
    pub fn network_project(&self) -> &str {
        self.spec
            .network_project
            .as_deref()
            .or(self.metadata.project.as_deref())
            .unwrap_or_default()
    }

    /// Whether the port is on `network` of `project` (its own project's or a shared one).
    pub fn is_on(&self, project: &str, network: &str) -> bool {
        self.spec.network == network && self.network_project() == project
    }
}

impl Validate for Port {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        check_ref(errors, "spec.network", &spec.network);
        check_opt_ref(errors, "spec.networkProject", &spec.network_project);
        for (i, ip) in spec.fixed_ips.iter().enumerate() {
            let path = format!("spec.fixedIps[{i}]");
            if ip.subnet.is_none() && ip.ip_address.is_none() {
                errors.add(path.clone(), "needs subnet, ipAddress or both");
            }
            check_opt_ref(errors, format!("{path}.subnet"), &ip.subnet);
        }
        if let Some(mac) = &spec.mac_address
            && let Some(p) = mac_problem(mac)
        {
            errors.add("spec.macAddress", p);
        }
        check_refs(errors, "spec.securityGroups", &spec.security_groups);
        if spec.port_security_enabled == Some(false) {
            if !spec.security_groups.is_empty() {
                errors.add(
                    "spec.securityGroups",
                    "must be empty when portSecurityEnabled is false",
                );
            }
            if !spec.allowed_address_pairs.is_empty() {
                errors.add(
                    "spec.allowedAddressPairs",
                    "must be empty when portSecurityEnabled is false",
                );
            }
        }
        for (i, pair) in spec.allowed_address_pairs.iter().enumerate() {
            let path = format!("spec.allowedAddressPairs[{i}]");
            let is_ip = pair.ip_address.parse::<IpAddr>().is_ok();
            if !is_ip && pair.ip_address.parse::<IpNet>().is_err() {
                errors.add(
                    format!("{path}.ipAddress"),
                    format!("{:?} is neither an IP address nor a CIDR", pair.ip_address),
                );
            }
            if let Some(mac) = &pair.mac_address
                && let Some(p) = mac_problem(mac)
            {
                errors.add(format!("{path}.macAddress"), p);
            }
        }
        // Status is validated like spec: the node agent writes `status.macAddress` into
        // dnsmasq's hosts file and the flows, so a bad value must never be stored.
        if let Some(mac) = &self.status.mac_address
            && let Some(p) = mac_problem(mac)
        {
            errors.add("status.macAddress", p);
        }
        crate::kinds::check_len(errors, "spec.deviceOwner", &spec.device_owner, 255);
        crate::kinds::check_len(errors, "spec.deviceId", &spec.device_id, 255);
        crate::kinds::check_len(errors, "spec.description", &spec.description, 255);
    }
}

/// The name of the port the network controller creates for entry `index` of a server's
/// `spec.networks`: `<server>-<first 8 hex digits of the server uid>-<index>`. The uid part
/// keeps a recreated server with the same name from adopting its predecessor's ports; the
/// server name is shortened so the result stays within the 253-character name limit.
pub fn server_port_name(server_name: &str, server_uid: &str, index: usize) -> String {
    let uid: String = server_uid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    let suffix = format!("-{uid}-{index}");
    let keep = 253usize.saturating_sub(suffix.len());
    let prefix: String = server_name.chars().take(keep).collect();
    format!("{prefix}{suffix}")
}

#[cfg(test)]
mod server_port_name_tests {
    use super::server_port_name;

    #[test]
    fn deterministic_and_bounded() {
        assert_eq!(
            server_port_name("web-0", "3F2504E0-4F89-11D3-9A0C-0305E82C3301", 1),
            "web-0-3f2504e0-1"
        );
        let long = "a".repeat(253);
        let name = server_port_name(&long, "0123456789abcdef", 12);
        assert_eq!(name.len(), 253);
        assert!(name.ends_with("-01234567-12"));
    }
}
