//! `ServerGroup`: an affinity policy for a set of servers (Nova's server group).
//!
//! Servers join with `spec.schedulerHints.group`; the scheduler records members in
//! `status.members`. The policy cannot change once servers have joined.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A placement policy shared by a set of servers. Project-scoped.
    ServerGroup {
        spec: ServerGroupSpec,
        status: ServerGroupStatus,
        plural: "servergroups",
        singular: "servergroup",
        short_names: ["sgrp"],
        scope: Project,
    }
}

/// Placement policy.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ServerGroupPolicy {
    /// All members on one node; scheduling fails otherwise.
    Affinity,
    /// Members on different nodes; scheduling fails otherwise.
    #[default]
    AntiAffinity,
    /// Prefer one node.
    SoftAffinity,
    /// Prefer different nodes.
    SoftAntiAffinity,
}

/// Policy parameters.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerGroupRules {
    /// With `anti-affinity`: how many members may share a node (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_server_per_host: Option<u32>,
}

impl ServerGroupRules {
    /// True when no rule is set.
    pub fn is_empty(&self) -> bool {
        self.max_server_per_host.is_none()
    }
}

/// Desired state of a server group.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerGroupSpec {
    /// Placement policy.
    pub policy: ServerGroupPolicy,
    /// Policy parameters.
    #[serde(default, skip_serializing_if = "ServerGroupRules::is_empty")]
    pub rules: ServerGroupRules,
}

/// Observed state of a server group.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerGroupStatus {
    /// Names of the member servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Observations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Validate for ServerGroup {
    fn validate(&self, errors: &mut FieldErrors) {
        if let Some(n) = self.spec.rules.max_server_per_host {
            if self.spec.policy != ServerGroupPolicy::AntiAffinity {
                errors.add(
                    "spec.rules.maxServerPerHost",
                    "only applies to policy anti-affinity",
                );
            }
            if n < 1 {
                errors.add("spec.rules.maxServerPerHost", "must be at least 1");
            }
        }
    }
}
