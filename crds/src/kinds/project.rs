//! `Project`: a tenant (Keystone's project). Project-scoped objects live in one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A tenant that owns servers, networks, volumes and the rest; users get roles in it
    /// through `RoleBinding`s. Cluster-scoped.
    Project {
        spec: ProjectSpec,
        status: ProjectStatus,
        plural: "projects",
        singular: "project",
        short_names: ["proj"],
        scope: Cluster,
    }
}

/// Desired state of a project.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectSpec {
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A disabled project's tokens stop working and it cannot get new ones.
    #[serde(default = "crate::kinds::default_true")]
    pub enabled: bool,
    /// Keystone domain; Cirrus has the single domain `default`.
    #[serde(default = "default_domain")]
    pub domain: String,
    /// Free-form tags (Keystone project tags).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Quota limits that differ from OpenStack's defaults, by OpenStack quota name
    /// (`instances`, `cores`, `ram`, `key_pairs`, `network`, `subnet`, `port`,
    /// `security_group`, `security_group_rule`, `volumes`, `gigabytes`, `snapshots`);
    /// `-1` means unlimited.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub quota: std::collections::BTreeMap<String, i64>,
}

impl Default for ProjectSpec {
    fn default() -> Self {
        Self {
            description: None,
            enabled: true,
            domain: default_domain(),
            tags: Vec::new(),
            quota: std::collections::BTreeMap::new(),
        }
    }
}

fn default_domain() -> String {
    "default".into()
}

/// Lifecycle of a project.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProjectPhase {
    /// In use.
    Active,
    /// Being deleted: its objects are being removed.
    Terminating,
}

/// Observed state of a project.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectStatus {
    /// Active, or Terminating while its objects are removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ProjectPhase>,
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Controller observations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Validate for Project {
    fn validate(&self, errors: &mut FieldErrors) {
        if self.spec.domain != "default" {
            errors.add("spec.domain", "must be \"default\" (the only domain)");
        }
        crate::kinds::check_len(errors, "spec.description", &self.spec.description, 65535);
        for (i, tag) in self.spec.tags.iter().enumerate() {
            if tag.is_empty() || tag.chars().count() > 255 || tag.contains(['/', ',']) {
                errors.add(
                    format!("spec.tags[{i}]"),
                    "tags are 1 to 255 characters without '/' or ','",
                );
            }
        }
        for (name, limit) in &self.spec.quota {
            if !QUOTA_NAMES.contains(&name.as_str()) {
                errors.add(
                    format!("spec.quota.{name}"),
                    format!("unknown quota; known: {}", QUOTA_NAMES.join(", ")),
                );
            } else if *limit < -1 {
                errors.add(
                    format!("spec.quota.{name}"),
                    "must be -1 (unlimited) or more",
                );
            }
        }
    }
}

/// The quota names a project may set (OpenStack's).
pub const QUOTA_NAMES: &[&str] = &[
    "instances",
    "cores",
    "ram",
    "key_pairs",
    "network",
    "subnet",
    "port",
    "security_group",
    "security_group_rule",
    "volumes",
    "gigabytes",
    "snapshots",
];
