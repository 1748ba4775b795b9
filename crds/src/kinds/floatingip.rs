//! `FloatingIP`: a public address from an external network, NATed to a port's fixed
//! address by the router between them (Neutron's floating IP).

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::network::NetworkPhase;
use crate::kinds::{check_opt_ref, check_ref};
use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A public address that can be associated with a port. Project-scoped.
    FloatingIP {
        spec: FloatingIPSpec,
        status: FloatingIPStatus,
        plural: "floatingips",
        singular: "floatingip",
        short_names: ["fip"],
        scope: Project,
    }
}

/// Desired state of a floating IP.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FloatingIPSpec {
    /// Name of the external `Network` the address comes from.
    pub floating_network: String,
    /// Name of a subnet of that network to allocate from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// The exact address wanted; absent: any free one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floating_ip_address: Option<IpAddr>,
    /// Name of the `Port` to associate with; absent: allocated but unassociated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Which of the port's fixed addresses to map to; needed only when it has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_ip_address: Option<IpAddr>,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Observed state of a floating IP.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FloatingIPStatus {
    /// ACTIVE when associated and NATed, DOWN otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NetworkPhase>,
    /// The address allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floating_ip_address: Option<IpAddr>,
    /// The fixed address it is mapped to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_ip_address: Option<IpAddr>,
    /// Name of the router doing the NAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<String>,
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observations; `Ready` when associated and NATed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Validate for FloatingIP {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        check_ref(errors, "spec.floatingNetwork", &spec.floating_network);
        check_opt_ref(errors, "spec.subnet", &spec.subnet);
        check_opt_ref(errors, "spec.port", &spec.port);
        if spec.fixed_ip_address.is_some() && spec.port.is_none() {
            errors.add("spec.fixedIpAddress", "needs spec.port");
        }
        crate::kinds::check_len(errors, "spec.description", &spec.description, 255);
    }
}
