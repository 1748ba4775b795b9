//! `Event`: a record of something that happened to an object ("Scheduled to node-a",
//! "FailedScheduling: 0/3 nodes: 2 insufficient RAM, 1 cordoned"), like Kubernetes'
//! core/v1 Event, shaped as a regular object: the event's facts are in `spec`.
//!
//! Events live in the project of the object they are about; events about cluster-scoped
//! objects (nodes, flavors, ...) live in the `admin` project. Repeats of the same event
//! (same object, reason and message) update one object: `count` goes up and
//! `lastTimestamp` moves. They are garbage-collected after a retention period.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// Something that happened to an object. Project-scoped.
    Event {
        spec: EventSpec,
        status: EventStatus,
        plural: "events",
        singular: "event",
        short_names: ["ev"],
        scope: Project,
    }
}

/// The project that holds events about cluster-scoped objects.
pub const CLUSTER_EVENTS_PROJECT: &str = "admin";

/// Severity of an event.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventType {
    /// Routine progress.
    #[default]
    Normal,
    /// Something went wrong or may need attention.
    Warning,
}

/// The object an event is about.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvolvedObject {
    /// Kind, e.g. `Server`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Uid, so that events of a deleted and recreated object are told apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Project, for project-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// Who reported an event.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventSource {
    /// Component, e.g. `scheduler`, `node-agent`, `network-controller`.
    pub component: String,
    /// Node or host it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// The facts of an event.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventSpec {
    /// The object it is about.
    pub involved_object: InvolvedObject,
    /// CamelCase machine-readable reason, e.g. `Scheduled`, `FailedScheduling`.
    pub reason: String,
    /// Human-readable description.
    #[serde(default)]
    pub message: String,
    /// Normal or Warning.
    #[serde(default, rename = "type")]
    pub type_: EventType,
    /// How many times it happened.
    #[serde(default = "one")]
    pub count: u32,
    /// When it first happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<DateTime<Utc>>,
    /// When it last happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<DateTime<Utc>>,
    /// Who reported it.
    #[serde(default)]
    pub source: EventSource,
}

impl Default for EventSpec {
    fn default() -> Self {
        Self {
            involved_object: InvolvedObject::default(),
            reason: String::new(),
            message: String::new(),
            type_: EventType::Normal,
            count: 1,
            first_timestamp: None,
            last_timestamp: None,
            source: EventSource::default(),
        }
    }
}

fn one() -> u32 {
    1
}

/// Events have no observed state; kept for the common object shape.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventStatus {
    /// Unused; present for uniformity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Longest message kept, in characters (longer ones should be truncated by the reporter).
pub const MAX_EVENT_MESSAGE: usize = 4096;

impl Validate for Event {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        let obj = &spec.involved_object;
        if obj.kind.is_empty() || !obj.kind.chars().all(|c| c.is_ascii_alphanumeric()) {
            errors.add(
                "spec.involvedObject.kind",
                "must be a kind name like Server",
            );
        }
        crate::kinds::check_ref(errors, "spec.involvedObject.name", &obj.name);
        crate::kinds::check_opt_ref(errors, "spec.involvedObject.project", &obj.project);
        let reason_ok = spec
            .reason
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase())
            && spec.reason.len() <= 128
            && spec.reason.chars().all(|c| c.is_ascii_alphanumeric());
        if !reason_ok {
            errors.add(
                "spec.reason",
                "must be a CamelCase word like FailedScheduling",
            );
        }
        if spec.message.chars().count() > MAX_EVENT_MESSAGE {
            errors.add(
                "spec.message",
                format!("must be at most {MAX_EVENT_MESSAGE} characters"),
            );
        }
        if spec.count < 1 {
            errors.add("spec.count", "must be at least 1");
        }
        if let (Some(first), Some(last)) = (spec.first_timestamp, spec.last_timestamp)
            && last < first
        {
            errors.add("spec.lastTimestamp", "is before firstTimestamp");
        }
        if spec.source.component.is_empty() {
            errors.add("spec.source.component", "must not be empty");
        }
    }
}
