//! The event recorder: `Event` objects a user sees in `cirrus describe` ("Scheduled to
//! node-a", "FailedScheduling: ...").
//!
//! # Guarantees
//! - Repeats aggregate: the same object (kind, project, name, uid), type, reason and message
//!   always map to the same deterministic `Event` name, so a repeat bumps `count` and
//!   `lastTimestamp` of one object (compare-and-swap, retried on conflict) instead of
//!   creating another. A crash loop costs one object, not one per crash — also across
//!   recorder restarts and between replicas.
//! - Events about cluster-scoped objects go into the `admin` project
//!   ([`CLUSTER_EVENTS_PROJECT`]).
//!
//! # Caveats
//! Publishing is best effort: callers usually log a failure and go on (an event is never a
//! reason to fail a reconcile).

use chrono::Utc;
use cirrus_client::{Api, Client, ClientError};
use cirrus_crds::kinds::event::{
    CLUSTER_EVENTS_PROJECT, EventSource, EventType, InvolvedObject, MAX_EVENT_MESSAGE,
};
use cirrus_crds::{Event, EventSpec, ObjectMeta, Resource, Scope};

/// How many times a publish retries after a write conflict.
const CONFLICT_RETRIES: usize = 5;

/// Publishes events on behalf of one component.
#[derive(Clone, Debug)]
pub struct Recorder {
    client: Client,
    source: EventSource,
}

impl Recorder {
    /// A recorder reporting as `component` (e.g. `scheduler`), optionally on `host`.
    pub fn new(client: Client, component: impl Into<String>, host: Option<String>) -> Self {
        Self {
            client,
            source: EventSource {
                component: component.into(),
                host,
            },
        }
    }

    /// Records that `reason` (a CamelCase word) happened to `obj`, with a human-readable
    /// `message` (truncated to the maximum length). Returns the stored event.
    ///
    /// # Errors
    /// API failures after the conflict retries are used up.
    pub async fn publish<K: Resource>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<Event, ClientError> {
        let meta = obj.meta();
        let involved = InvolvedObject {
            kind: K::KIND.to_string(),
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            project: match K::SCOPE {
                Scope::Project => meta.project.clone(),
                Scope::Cluster => None,
            },
        };
        self.publish_for(involved, type_, reason, message).await
    }

    /// [`Recorder::publish`] for an object known only by reference.
    pub async fn publish_for(
        &self,
        involved: InvolvedObject,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<Event, ClientError> {
        let message: String = message.chars().take(MAX_EVENT_MESSAGE).collect();
        let project = involved
            .project
            .clone()
            .unwrap_or_else(|| CLUSTER_EVENTS_PROJECT.to_string());
        let name = event_name(&involved, type_, reason, &message);
        let api = Api::<Event>::in_project(self.client.clone(), project.clone());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = Utc::now();
            let result = match api.get_opt(&name).await? {
                Some(mut existing) => {
                    existing.spec.count = existing.spec.count.saturating_add(1);
                    existing.spec.last_timestamp = Some(now);
                    api.replace(&existing).await
                }
                None => {
                    let event = Event::new(
                        ObjectMeta {
                            name: name.clone(),
                            project: Some(project.clone()),
                            ..Default::default()
                        },
                        EventSpec {
                            involved_object: involved.clone(),
                            reason: reason.to_string(),
                            message: message.clone(),
                            type_,
                            count: 1,
                            first_timestamp: Some(now),
                            last_timestamp: Some(now),
                            source: self.source.clone(),
                        },
                    );
                    api.create(&event).await
                }
            };
            match result {
                Ok(event) => {
                    tracing::debug!(event = %name, count = event.spec.count, %reason, "event recorded");
                    return Ok(event);
                }
                Err(err)
                    if (err.is_conflict() || err.is_already_exists())
                        && attempt <= CONFLICT_RETRIES =>
                {
                    continue;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// The deterministic name of the event aggregating `(object, type, reason, message)`:
/// `<object name>.<16 hex digits of a stable hash>`, within the 253-character name limit.
pub fn event_name(
    involved: &InvolvedObject,
    type_: EventType,
    reason: &str,
    message: &str,
) -> String {
    let type_ = match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    };
    let mut hash = Fnv::default();
    for part in [
        involved.kind.as_str(),
        involved.project.as_deref().unwrap_or(""),
        involved.name.as_str(),
        involved.uid.as_deref().unwrap_or(""),
        type_,
        reason,
        message,
    ] {
        hash.write(part.as_bytes());
        hash.write(&[0]);
    }
    let prefix: String = involved.name.chars().take(253 - 17).collect();
    let prefix = prefix.trim_end_matches(['.', '-']);
    format!("{prefix}.{:016x}", hash.0)
}

/// FNV-1a, 64 bit: stable across builds and Rust versions (unlike `DefaultHasher`).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_distinct() {
        let obj = InvolvedObject {
            kind: "Server".into(),
            name: "vm".into(),
            uid: Some("u1".into()),
            project: Some("demo".into()),
        };
        let a = event_name(&obj, EventType::Warning, "Failed", "boom");
        assert_eq!(a, event_name(&obj, EventType::Warning, "Failed", "boom"));
        assert!(a.starts_with("vm.") && a.len() == 3 + 16, "{a}");
        assert_ne!(a, event_name(&obj, EventType::Warning, "Failed", "bang"));
        assert_ne!(a, event_name(&obj, EventType::Normal, "Failed", "boom"));
        let other_uid = InvolvedObject {
            uid: Some("u2".into()),
            ..obj.clone()
        };
        assert_ne!(
            a,
            event_name(&other_uid, EventType::Warning, "Failed", "boom")
        );
        let long = InvolvedObject {
            name: "a".repeat(253),
            ..obj
        };
        assert!(event_name(&long, EventType::Normal, "X", "").len() <= 253);
    }
}
