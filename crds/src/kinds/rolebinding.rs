//! `RoleBinding`: grants one user one role in one project (a Keystone role assignment).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// Gives `spec.user` the role `spec.role` in `spec.project`. Cluster-scoped, so that
    /// project members cannot grant themselves more.
    RoleBinding {
        spec: RoleBindingSpec,
        status: RoleBindingStatus,
        plural: "rolebindings",
        singular: "rolebinding",
        short_names: ["rb"],
        scope: Cluster,
    }
}

/// The roles Cirrus knows, Keystone's default roles.
#[derive(
    Serialize,
    Deserialize,
    JsonSchema,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only access to the project's objects.
    #[default]
    Reader,
    /// Create, change and delete the project's objects (implies reader).
    Member,
    /// Everything, cloud-wide, including cluster-scoped kinds (implies member).
    Admin,
}

/// Who gets which role where.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleBindingSpec {
    /// Name of the `User`.
    pub user: String,
    /// Name of the `Project`.
    pub project: String,
    /// The role granted.
    pub role: Role,
}

/// Observed state of a role binding.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleBindingStatus {
    /// Controller observations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Validate for RoleBinding {
    fn validate(&self, errors: &mut FieldErrors) {
        crate::kinds::check_ref(errors, "spec.user", &self.spec.user);
        crate::kinds::check_ref(errors, "spec.project", &self.spec.project);
    }
}
