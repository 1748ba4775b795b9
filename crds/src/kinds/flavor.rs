//! `Flavor`: a hardware template for servers (Nova's flavor).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A named size for servers: vCPUs, RAM, root disk, ephemeral and swap, plus extra specs
    /// that schedulers and drivers read. Cluster-scoped, like Nova's flavors.
    Flavor {
        spec: FlavorSpec,
        status: FlavorStatus,
        plural: "flavors",
        singular: "flavor",
        short_names: ["fl"],
        scope: Cluster,
    }
}

/// Desired shape of a flavor.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlavorSpec {
    /// Virtual CPUs given to each server.
    pub vcpus: u32,
    /// Memory in MiB.
    pub ram: u64,
    /// Root disk size in GiB (0: the image's own size).
    #[serde(default)]
    pub disk: u64,
    /// Extra ephemeral disk in GiB.
    #[serde(default)]
    pub ephemeral: u64,
    /// Swap disk in MiB.
    #[serde(default)]
    pub swap: u64,
    /// Relative network bandwidth factor (Nova's rxtx_factor).
    #[serde(default = "default_rxtx_factor")]
    pub rxtx_factor: f64,
    /// Visible to every project (true) or only to projects granted access.
    #[serde(default = "default_true")]
    pub public: bool,
    /// Disabled flavors stay for existing servers but can't be used for new ones.
    #[serde(default)]
    pub disabled: bool,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form key/value hints for the scheduler and drivers (`hw:cpu_policy`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_specs: BTreeMap<String, String>,
}

impl Default for FlavorSpec {
    fn default() -> Self {
        Self {
            vcpus: 1,
            ram: 512,
            disk: 0,
            ephemeral: 0,
            swap: 0,
            rxtx_factor: 1.0,
            public: true,
            disabled: false,
            description: None,
            extra_specs: BTreeMap::new(),
        }
    }
}

fn default_rxtx_factor() -> f64 {
    1.0
}

fn default_true() -> bool {
    true
}

/// Observed state of a flavor.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlavorStatus {
    /// Controller observations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Validate for Flavor {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        if spec.vcpus == 0 {
            errors.add("spec.vcpus", "must be at least 1");
        }
        if spec.ram < 1 {
            errors.add("spec.ram", "must be at least 1 MiB");
        }
        if !(spec.rxtx_factor > 0.0 && spec.rxtx_factor.is_finite()) {
            errors.add("spec.rxtxFactor", "must be a positive number");
        }
        for key in spec.extra_specs.keys() {
            if key.is_empty() || key.len() > 255 {
                errors.add(
                    format!("spec.extraSpecs[{key:?}]"),
                    "keys must be 1 to 255 characters",
                );
            }
        }
    }
}
