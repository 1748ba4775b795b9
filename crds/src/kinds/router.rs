//! `Router`: routes between a project's subnets and out through an external network, with
//! SNAT (Neutron's router; a network namespace on a node).

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::network::NetworkPhase;
use crate::kinds::port::{FixedIp, FixedIpRequest};
use crate::kinds::subnet::HostRoute;
use crate::kinds::{check_cidr, check_opt_ref, check_ref};
use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A virtual router connecting subnets to each other and to an external network.
    /// Project-scoped.
    Router {
        spec: RouterSpec,
        status: RouterStatus,
        plural: "routers",
        singular: "router",
        short_names: ["rtr"],
        scope: Project,
    }
}

/// The router's uplink to an external network.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalGateway {
    /// Name of the external `Network` (`external: true`).
    pub network: String,
    /// Source-NAT traffic leaving through the gateway.
    #[serde(default = "crate::kinds::default_true")]
    pub enable_snat: bool,
    /// Specific gateway addresses; empty: one is allocated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_fixed_ips: Vec<FixedIpRequest>,
}

/// A subnet attached to the router: through its gateway address (`subnet`) or through an
/// existing port (`port`). Exactly one of the two.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouterInterface {
    /// Name of a `Subnet`; the router takes the subnet's gateway address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Name of a `Port`; the router takes the port's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

/// Desired state of a router.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouterSpec {
    /// Uplink to an external network; absent: no external connectivity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_gateway: Option<ExternalGateway>,
    /// Attached subnets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<RouterInterface>,
    /// Extra static routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<HostRoute>,
    /// Administratively up.
    #[serde(default = "crate::kinds::default_true")]
    pub admin_state_up: bool,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Default for RouterSpec {
    fn default() -> Self {
        Self {
            external_gateway: None,
            interfaces: Vec::new(),
            routes: Vec::new(),
            admin_state_up: true,
            description: None,
        }
    }
}

/// An interface as wired.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouterInterfaceStatus {
    /// Name of the subnet.
    pub subnet: String,
    /// Name of the port the router uses on it.
    pub port: String,
    /// The router's address on the subnet.
    pub ip_address: IpAddr,
}

/// Observed state of a router.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouterStatus {
    /// Operational state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NetworkPhase>,
    /// Node hosting the router namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Addresses of the gateway port on the external network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_fixed_ips: Vec<FixedIp>,
    /// Interfaces as wired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<RouterInterfaceStatus>,
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observations; `Ready` when the router is wired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Validate for Router {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        if let Some(gw) = &spec.external_gateway {
            check_ref(errors, "spec.externalGateway.network", &gw.network);
            for (i, ip) in gw.external_fixed_ips.iter().enumerate() {
                let path = format!("spec.externalGateway.externalFixedIps[{i}]");
                if ip.subnet.is_none() && ip.ip_address.is_none() {
                    errors.add(path.clone(), "needs subnet, ipAddress or both");
                }
                check_opt_ref(errors, format!("{path}.subnet"), &ip.subnet);
            }
        }
        for (i, iface) in spec.interfaces.iter().enumerate() {
            let path = format!("spec.interfaces[{i}]");
            match (&iface.subnet, &iface.port) {
                (Some(_), Some(_)) | (None, None) => {
                    errors.add(path.clone(), "needs exactly one of subnet and port")
                }
                _ => {}
            }
            check_opt_ref(errors, format!("{path}.subnet"), &iface.subnet);
            check_opt_ref(errors, format!("{path}.port"), &iface.port);
            if spec.interfaces[..i].contains(iface) {
                errors.add(path, "duplicate interface");
            }
        }
        for (i, route) in spec.routes.iter().enumerate() {
            let path = format!("spec.routes[{i}]");
            check_cidr(errors, format!("{path}.destination"), &route.destination);
            if route.destination.addr().is_ipv4() != route.nexthop.is_ipv4() {
                errors.add(
                    format!("{path}.nexthop"),
                    "must be of the same IP version as the destination",
                );
            }
        }
        crate::kinds::check_len(errors, "spec.description", &spec.description, 255);
    }
}
