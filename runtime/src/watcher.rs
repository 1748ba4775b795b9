//! List+watch of one collection, as a stream that never ends: typed through
//! [`cirrus_client::Api`] or untyped through [`cirrus_client::DynamicApi`] (anything
//! implementing [`ListWatch`]). The one watcher of the workspace.
//!
//! # Expected flow
//! The watcher lists the collection (following continue tokens: one consistent snapshot) and
//! yields [`Event::Restarted`] with every object, then watches from the list's revision and
//! yields [`Event::Applied`] / [`Event::Deleted`] per change. Bookmarks only move the resume
//! point. Given [`Config::resume_from`] (an automation started again) it skips the first
//! list and watches from that revision. [`steps`] is the same stream with the revision to
//! resume from on every item, bookmarks included, for consumers that persist it.
//!
//! # Guarantees
//! - After a dropped connection it re-watches from the last revision it saw: no change is
//!   missed or repeated.
//! - When the revision has been compacted (`410 Gone`, at the start of a watch or as an error
//!   event during it) it relists and yields `Restarted` again; consumers (the reflector) must
//!   treat that as the whole truth, dropping objects it does not contain.
//!
//! # Errors
//! Failures are yielded as `Err` and retried after a backoff (500 ms doubling to 30 s, reset
//! by the next success, [`ExponentialBackoff`]); the stream itself never ends.

use std::time::Duration;

use cirrus_client::{ClientError, ListParams, WatchEvent};
use futures::{Stream, StreamExt};

use crate::backoff::{Backoff, ExponentialBackoff};
pub use crate::list_watch::ListWatch;

/// One thing the watcher learned.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<K> {
    /// A full list: exactly the objects that exist now.
    Restarted(Vec<K>),
    /// An object was created or changed.
    Applied(K),
    /// An object was deleted (its last state).
    Deleted(K),
}

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Only objects matching this label selector.
    pub label_selector: Option<String>,
    /// Only objects matching this field selector (`spec.nodeName=node-a`).
    pub field_selector: Option<String>,
    /// Watch from this revision instead of listing first (a consumer that remembers where it
    /// stopped); a compacted revision still leads to a list.
    pub resume_from: Option<String>,
}

impl Config {
    /// Watches only objects matching `selector`.
    pub fn labels(selector: impl Into<String>) -> Self {
        Self {
            label_selector: Some(selector.into()),
            ..Self::default()
        }
    }

    /// Watches only objects matching the field `selector`.
    pub fn fields(selector: impl Into<String>) -> Self {
        Self {
            field_selector: Some(selector.into()),
            ..Self::default()
        }
    }
}

/// One step of the watch with the revision to resume from: what [`steps`] yields.
#[derive(Clone, Debug, PartialEq)]
pub enum Step<K> {
    /// A full list: exactly the objects that exist at `resource_version`.
    Restarted {
        /// The objects.
        objects: Vec<K>,
        /// The list's revision.
        resource_version: String,
    },
    /// An object was created or changed.
    Applied(K),
    /// An object was deleted (its last state).
    Deleted(K),
    /// No change, but the watch has caught up to this revision.
    Bookmark(String),
}

impl<K> Step<K> {
    /// The [`Event`] this step is, if any (a bookmark is none).
    pub fn into_event(self) -> Option<Event<K>> {
        match self {
            Step::Restarted { objects, .. } => Some(Event::Restarted(objects)),
            Step::Applied(o) => Some(Event::Applied(o)),
            Step::Deleted(o) => Some(Event::Deleted(o)),
            Step::Bookmark(_) => None,
        }
    }
}

/// Watches `api`'s collection; see the module docs for the contract.
pub fn watcher<A: ListWatch>(
    api: A,
    config: Config,
) -> impl Stream<Item = Result<Event<A::Object>, ClientError>> + Send + 'static {
    steps(api, config).filter_map(|step| async move { step.map(Step::into_event).transpose() })
}

/// [`watcher`] with the revision to resume from on every step, bookmarks included (read it
/// with [`resource_version`]).
pub fn steps<A: ListWatch>(
    api: A,
    config: Config,
) -> impl Stream<Item = Result<Step<A::Object>, ClientError>> + Send + 'static {
    async_stream::stream! {
        let selectors = ListParams {
            label_selector: config.label_selector.clone(),
            field_selector: config.field_selector.clone(),
            ..ListParams::default()
        };
        let mut resume: Option<String> = config.resume_from.clone();
        let mut delay = retry_delay();
        loop {
            let Some(rv) = resume.clone() else {
                match api.list_all(&selectors).await {
                    Ok(list) => {
                        delay.reset();
                        resume = Some(list.resource_version.clone());
                        yield Ok(Step::Restarted {
                            objects: list.items,
                            resource_version: list.resource_version,
                        });
                    }
                    Err(err) => {
                        yield Err(err);
                        tokio::time::sleep(delay.next_delay()).await;
                    }
                }
                continue;
            };
            let mut events = std::pin::pin!(api.watch(&rv, &selectors));
            let mut failed = false;
            let mut got_any = false;
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        got_any = true;
                        delay.reset();
                        let step = match event {
                            WatchEvent::Added(o) | WatchEvent::Modified(o) => Step::Applied(o),
                            WatchEvent::Deleted(o) => Step::Deleted(o),
                            WatchEvent::Bookmark { resource_version } => {
                                Step::Bookmark(resource_version)
                            }
                        };
                        if let Some(rv) = resource_version::<A>(&step) {
                            resume = Some(rv.to_string());
                        }
                        yield Ok(step);
                    }
                    Err(err) if err.is_gone() => {
                        tracing::debug!(kind = api.kind_name(), "watch revision compacted; relisting");
                        resume = None;
                    }
                    Err(err) => {
                        failed = true;
                        yield Err(err);
                    }
                }
            }
            if resume.is_some() {
                // A closed or broken stream: resume from the last revision, after a pause
                // when it broke or brought nothing (a server closing idle watches is normal).
                if failed || !got_any {
                    tokio::time::sleep(delay.next_delay()).await;
                }
            }
        }
    }
}

/// The revision a consumer can resume from after handling `step`.
pub fn resource_version<A: ListWatch>(step: &Step<A::Object>) -> Option<&str> {
    match step {
        Step::Restarted {
            resource_version, ..
        }
        | Step::Bookmark(resource_version) => Some(resource_version),
        Step::Applied(o) | Step::Deleted(o) => A::resource_version(o),
    }
}

/// Retry pause of the watcher: 500 ms doubling to 30 s, reset by a success.
fn retry_delay() -> ExponentialBackoff {
    ExponentialBackoff::new(Duration::from_millis(500), Duration::from_secs(30), 2.0)
}
