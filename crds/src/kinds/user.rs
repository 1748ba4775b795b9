//! `User`: a person or service account that authenticates (Keystone's user).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// An identity that can get tokens; what it may do comes from `RoleBinding`s.
    /// Cluster-scoped.
    User {
        spec: UserSpec,
        status: UserStatus,
        plural: "users",
        singular: "user",
        short_names: ["usr"],
        scope: Cluster,
    }
}

/// Desired state of a user.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserSpec {
    /// Keystone name, the one a user logs in with: free text, unique among users,
    /// changeable (the object's name is the id everything refers to). Absent: the user is
    /// named by its id ([`crate::keystone`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Full name shown to humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Contact e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A disabled user cannot authenticate and its tokens stop working.
    #[serde(default = "crate::kinds::default_true")]
    pub enabled: bool,
    /// Project a token is scoped to when the login names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_project: Option<String>,
    /// Argon2 hash of the password as a PHC string (`$argon2id$v=19$m=...`). Written by the
    /// API when a password is set; the plain password is never stored, and the API never
    /// returns this field (reads show it removed). Absent: password login is impossible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Set on the identity of a node agent: the `Node` it speaks for. Its tokens act as that
    /// node (read what is bound to it, write its status), never as a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Default for UserSpec {
    fn default() -> Self {
        Self {
            name: None,
            display_name: None,
            email: None,
            description: None,
            enabled: true,
            default_project: None,
            password_hash: None,
            node: None,
        }
    }
}

/// Observed state of a user.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserStatus {
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Controller observations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl User {
    /// The name Keystone shows and logins use: `spec.name`, else the id.
    pub fn keystone_name(&self) -> &str {
        crate::keystone::keystone_name(self.spec.name.as_deref(), &self.metadata.name)
    }
}

impl Validate for User {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        crate::keystone::check_name(errors, spec.name.as_deref(), crate::keystone::USER_NAME_MAX);
        crate::kinds::check_opt_ref(errors, "spec.defaultProject", &spec.default_project);
        crate::kinds::check_len(errors, "spec.displayName", &spec.display_name, 255);
        if let Some(email) = &spec.email {
            let ok = email.len() <= 254
                && email
                    .split_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !email.contains(' '));
            if !ok {
                errors.add("spec.email", format!("{email:?} is not an e-mail address"));
            }
        }
        if let Some(hash) = &spec.password_hash
            && (!hash.starts_with("$argon2") || hash.split('$').count() < 5)
        {
            errors.add(
                "spec.passwordHash",
                "must be an argon2 PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash); \
                     set a password through the API instead of writing a hash",
            );
        }
    }
}
