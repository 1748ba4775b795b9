//! `Network`: an L2 network (Neutron's network, with its provider attributes).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A virtual L2 segment servers' ports attach to; `Subnet`s give it addresses.
    /// Project-scoped (`shared` ones are usable by every project).
    Network {
        spec: NetworkSpec,
        status: NetworkStatus,
        plural: "networks",
        singular: "network",
        short_names: ["net"],
        scope: Project,
    }
}

/// How a network is carried between hosts (Neutron's `provider:network_type`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NetworkType {
    /// Only within one host.
    Local,
    /// Untagged on a physical network.
    Flat,
    /// 802.1Q tagged on a physical network (id 1–4094).
    Vlan,
    /// VXLAN tunnels between hosts (VNI 1–16777215).
    #[default]
    Vxlan,
    /// Geneve tunnels between hosts (VNI 1–16777215).
    Geneve,
}

/// Requested or assigned segmentation of a network.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Segmentation {
    /// Network type.
    #[serde(rename = "type")]
    pub type_: NetworkType,
    /// VLAN id or VNI; absent: the network controller picks a free one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Physical network (bridge mapping name) for `flat` and `vlan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_network: Option<String>,
}

/// Desired state of a network.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Administratively up; a down network passes no traffic.
    #[serde(default = "crate::kinds::default_true")]
    pub admin_state_up: bool,
    /// Usable by every project, not only the owner.
    #[serde(default, skip_serializing_if = "crate::kinds::is_false")]
    pub shared: bool,
    /// An external network (Neutron's `router:external`): routers use it as gateway and
    /// floating IPs come from it.
    #[serde(default, skip_serializing_if = "crate::kinds::is_false")]
    pub external: bool,
    /// Largest L3 packet; absent: derived from the segmentation (1450 for VXLAN, 1500 flat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Default for its ports: apply security groups and anti-spoofing.
    #[serde(default = "crate::kinds::default_true")]
    pub port_security_enabled: bool,
    /// Provider segmentation (admin only); absent: a tenant network of the default type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<Segmentation>,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        Self {
            description: None,
            admin_state_up: true,
            shared: false,
            external: false,
            mtu: None,
            port_security_enabled: true,
            segmentation: None,
        }
    }
}

/// Operational state of a network, port or router, as Neutron reports it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum NetworkPhase {
    /// Being set up.
    Build,
    /// Working.
    Active,
    /// Set up but not passing traffic (admin down, or not bound).
    Down,
    /// Failed; see conditions.
    Error,
}

/// Observed state of a network.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkStatus {
    /// Operational state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NetworkPhase>,
    /// The segmentation actually assigned (type and id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<Segmentation>,
    /// The MTU in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Names of the subnets on this network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observations; `Ready` when the segment is assigned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Network {
    /// Whether ports of `project` may attach to this network: its own project's, or a
    /// `shared` one (Neutron's rule; the port then names it with `networkProject`).
    pub fn usable_by(&self, project: &str) -> bool {
        self.spec.shared || self.metadata.project.as_deref() == Some(project)
    }
}

impl Validate for Network {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        crate::kinds::check_len(errors, "spec.description", &spec.description, 255);
        if let Some(mtu) = spec.mtu
            && !(68..=9216).contains(&mtu)
        {
            errors.add(
                "spec.mtu",
                format!("must be between 68 and 9216, got {mtu}"),
            );
        }
        if let Some(seg) = &spec.segmentation {
            let range = match seg.type_ {
                NetworkType::Local | NetworkType::Flat => None,
                NetworkType::Vlan => Some(1..=4094),
                NetworkType::Vxlan | NetworkType::Geneve => Some(1..=16_777_215),
            };
            match (range, seg.id) {
                (None, Some(_)) => errors.add(
                    "spec.segmentation.id",
                    "local and flat networks have no segmentation id",
                ),
                (Some(r), Some(id)) if !r.contains(&id) => errors.add(
                    "spec.segmentation.id",
                    format!("must be between {} and {}, got {id}", r.start(), r.end()),
                ),
                _ => {}
            }
            let physical = matches!(seg.type_, NetworkType::Flat | NetworkType::Vlan);
            match (&seg.physical_network, physical) {
                (Some(_), false) => errors.add(
                    "spec.segmentation.physicalNetwork",
                    "only flat and vlan networks have a physical network",
                ),
                (Some(p), true) if p.is_empty() || p.len() > 64 => errors.add(
                    "spec.segmentation.physicalNetwork",
                    "must be 1 to 64 characters",
                ),
                _ => {}
            }
        }
    }
}
