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
    /// Keystone name: free text, unique among projects, changeable (the object's name is the
    /// id everything refers to). Absent: the project is named by its id
    /// ([`crate::keystone`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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
            name: None,
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

impl Project {
    /// The name Keystone shows: `spec.name`, else the id.
    pub fn keystone_name(&self) -> &str {
        crate::keystone::keystone_name(self.spec.name.as_deref(), &self.metadata.name)
    }
}

impl Validate for Project {
    fn validate(&self, errors: &mut FieldErrors) {
        crate::keystone::check_name(
            errors,
            self.spec.name.as_deref(),
            crate::keystone::PROJECT_NAME_MAX,
        );
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
            if !is_quota(name) {
                let known: Vec<&str> = DEFAULT_QUOTAS.iter().map(|(q, _)| *q).collect();
                errors.add(
                    format!("spec.quota.{name}"),
                    format!("unknown quota; known: {}", known.join(", ")),
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

/// The quotas a project may set (`spec.quota`), with their default limits: OpenStack's
/// names and defaults (Nova, Neutron, Cinder), and Glance's unified-limit names for images
/// (`image_size_total` in MiB of uploaded data). `-1` is unlimited. The one list every API
/// and the quota check read.
pub const DEFAULT_QUOTAS: &[(&str, i64)] = &[
    ("instances", 10),
    ("cores", 20),
    ("ram", 51200),
    ("key_pairs", 100),
    ("network", 100),
    ("subnet", 100),
    ("port", 500),
    ("security_group", 10),
    ("security_group_rule", 100),
    ("volumes", 10),
    ("gigabytes", 1000),
    ("snapshots", 10),
    ("image_count_total", 100),
    ("image_size_total", 1_024_000),
];

/// Whether `name` is a quota a project may set.
pub fn is_quota(name: &str) -> bool {
    DEFAULT_QUOTAS.iter().any(|(q, _)| *q == name)
}
