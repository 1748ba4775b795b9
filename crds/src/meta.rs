//! Metadata every object carries, and the conditions controllers report.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Identity, bookkeeping and ownership of one stored object.
///
/// Users set `name`, `project` (for project-scoped kinds), `labels`, `annotations` and may
/// add `finalizers` / `ownerReferences`; the store sets `uid`, `resourceVersion`,
/// `generation`, `creationTimestamp` and `deletionTimestamp` and ignores what clients send
/// for them (except `resourceVersion`, which is the compare-and-swap precondition of an update).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Unique within the kind (and project, for project-scoped kinds). DNS-label-like:
    /// lowercase letters, digits, `-` and `.`, at most 253 characters.
    #[serde(default)]
    pub name: String,
    /// Owning project of a project-scoped object; absent for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Unique id the store assigns at creation; names of real resources derive from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Opaque version (the store's modification revision); send it back on update for
    /// optimistic concurrency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Incremented on every change of `spec` (never on status-only writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Identifying key/value pairs, matched by label selectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Non-identifying key/value pairs for tools and humans.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Names of controllers that must clean up before the object may disappear.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// Objects this one belongs to; deleting the owner deletes it too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    /// When the store first created the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<DateTime<Utc>>,
    /// When deletion was requested; set while finalizers are still pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<DateTime<Utc>>,
}

/// A pointer from a dependent object to the object that owns it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerReference {
    /// API version of the owner, normally `cirrus.dev/v1`.
    pub api_version: String,
    /// Kind of the owner, e.g. `Server`.
    pub kind: String,
    /// Name of the owner (same project as the dependent).
    pub name: String,
    /// Uid of the owner: a recreated owner with the same name is a different owner.
    pub uid: String,
    /// True when the owner is the managing controller of this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    /// True when the owner may not disappear before this dependent is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

/// Tri-state truth value of a condition, as Kubernetes spells it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet (or the observer lost contact).
    #[default]
    Unknown,
}

/// One observation a controller reports about an object (`Ready`, `Scheduled`, ...).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// CamelCase name of the aspect observed, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// CamelCase machine-readable cause of the last transition.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable explanation.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<DateTime<Utc>>,
    /// The `metadata.generation` this observation was made against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// The condition named `type_` in `conditions`, if present.
    pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
        conditions.iter().find(|c| c.type_ == type_)
    }

    /// Records `new` in `conditions`, replacing the condition of the same type. The
    /// `lastTransitionTime` of the old one is kept when the status did not change (a
    /// transition is a change of status, not of message). Returns whether anything
    /// changed, so callers write status only when it did.
    pub fn set(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
        match conditions.iter_mut().find(|c| c.type_ == new.type_) {
            Some(old) => {
                if old.status == new.status {
                    new.last_transition_time = old.last_transition_time;
                }
                if *old == new {
                    return false;
                }
                *old = new;
                true
            }
            None => {
                conditions.push(new);
                true
            }
        }
    }

    /// True when `conditions` hold `type_` with status `True`.
    pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
        Self::find(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: ConditionStatus, message: &str, at: i64) -> Condition {
        Condition {
            type_: "Ready".into(),
            status,
            reason: "R".into(),
            message: message.into(),
            last_transition_time: DateTime::from_timestamp(at, 0),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn set_keeps_transition_time_unless_status_changes() {
        let mut conditions = Vec::new();
        assert!(Condition::set(
            &mut conditions,
            cond(ConditionStatus::False, "a", 10)
        ));
        assert!(!Condition::set(
            &mut conditions,
            cond(ConditionStatus::False, "a", 20)
        ));
        assert!(Condition::set(
            &mut conditions,
            cond(ConditionStatus::False, "b", 30)
        ));
        assert_eq!(
            conditions[0].last_transition_time,
            DateTime::from_timestamp(10, 0)
        );
        assert!(Condition::set(
            &mut conditions,
            cond(ConditionStatus::True, "b", 40)
        ));
        assert_eq!(
            conditions[0].last_transition_time,
            DateTime::from_timestamp(40, 0)
        );
        assert!(Condition::is_true(&conditions, "Ready"));
        assert_eq!(conditions.len(), 1);
    }
}
