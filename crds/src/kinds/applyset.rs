//! `ApplySet`: the inventory of objects one `cirrus apply --prune` manages (GitOps).
//!
//! `cirrus apply -f dir/ --prune --applyset NAME` (the set name defaults from the directory)
//! works like kubectl's ApplySet:
//! 1. every object it applies gets the label `cirrus.dev/applyset: NAME`;
//! 2. after applying, it deletes the objects listed in the previous `spec.members` (and
//!    objects carrying the label) that the directory no longer holds — never anything
//!    else, so objects created by hand or by other sets are safe;
//! 3. it writes the new `spec.members`.
//!
//! Writing the inventory last means an interrupted apply prunes nothing it should keep:
//! the next run still sees the old members and finishes the job. A member's `uid`, when
//! recorded, makes prune skip an object that was deleted and recreated by someone else
//! under the same name.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// The inventory of a GitOps apply set: which objects `cirrus apply --prune` owns.
    /// Cluster-scoped, since a set may span projects.
    ApplySet {
        spec: ApplySetSpec,
        status: ApplySetStatus,
        plural: "applysets",
        singular: "applyset",
        short_names: ["aps"],
        scope: Cluster,
    }
}

/// The label every member of an apply set carries, valued with the set's name.
pub const APPLYSET_LABEL: &str = "cirrus.dev/applyset";

/// The objects in the set.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplySetSpec {
    /// Every object the last successful apply of this set wrote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<ApplySetMember>,
}

/// One object of an apply set.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplySetMember {
    /// Kind of the object, e.g. `Server`.
    pub kind: String,
    /// Project of a project-scoped object; absent for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Name of the object.
    pub name: String,
    /// Uid of the object when it was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// Observed state of an apply set.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplySetStatus {
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Validate for ApplySet {
    fn validate(&self, errors: &mut FieldErrors) {
        let mut seen = BTreeSet::new();
        for (i, m) in self.spec.members.iter().enumerate() {
            let path = format!("spec.members[{i}]");
            let kind_ok = m
                .kind
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase())
                && m.kind.chars().all(|c| c.is_ascii_alphanumeric());
            if !kind_ok {
                errors.add(
                    format!("{path}.kind"),
                    "must be a CamelCase kind name like Server",
                );
            }
            crate::kinds::check_ref(errors, format!("{path}.name"), &m.name);
            crate::kinds::check_opt_ref(errors, format!("{path}.project"), &m.project);
            if !seen.insert((&m.kind, &m.project, &m.name)) {
                errors.add(path, "duplicate member");
            }
        }
    }
}
