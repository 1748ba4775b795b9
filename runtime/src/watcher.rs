//! Typed list+watch of one kind through [`cirrus_client::Api`], as a stream that never ends.
//!
//! # Expected flow
//! The watcher lists the collection (following continue tokens: one consistent snapshot) and
//! yields [`Event::Restarted`] with every object, then watches from the list's revision and
//! yields [`Event::Applied`] / [`Event::Deleted`] per change. Bookmarks only move the resume
//! point.
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
//! by the next success); the stream itself never ends.

use std::time::Duration;

use cirrus_client::{Api, ClientError, ListParams, WatchEvent};
use cirrus_crds::Resource;
use futures::{Stream, StreamExt};

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
}

impl Config {
    /// Watches only objects matching `selector`.
    pub fn labels(selector: impl Into<String>) -> Self {
        Self {
            label_selector: Some(selector.into()),
            field_selector: None,
        }
    }

    /// Watches only objects matching the field `selector`.
    pub fn fields(selector: impl Into<String>) -> Self {
        Self {
            label_selector: None,
            field_selector: Some(selector.into()),
        }
    }
}

/// Watches `api`'s collection; see the module docs for the contract.
pub fn watcher<K: Resource>(
    api: Api<K>,
    config: Config,
) -> impl Stream<Item = Result<Event<K>, ClientError>> + Send + 'static {
    async_stream::stream! {
        let selectors = ListParams {
            label_selector: config.label_selector.clone(),
            field_selector: config.field_selector.clone(),
            ..ListParams::default()
        };
        let mut resume: Option<String> = None;
        let mut delay = RetryDelay::default();
        loop {
            let Some(rv) = resume.clone() else {
                match api.list_all_matching(&selectors).await {
                    Ok(list) => {
                        delay.reset();
                        resume = Some(list.resource_version);
                        yield Ok(Event::Restarted(list.items));
                    }
                    Err(err) => {
                        yield Err(err);
                        tokio::time::sleep(delay.next()).await;
                    }
                }
                continue;
            };
            let mut events = std::pin::pin!(api.watch_matching(&rv, &selectors));
            let mut failed = false;
            let mut got_any = false;
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        got_any = true;
                        delay.reset();
                        if let Some(rv) = event.resource_version() {
                            resume = Some(rv.to_string());
                        }
                        match event {
                            WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                                yield Ok(Event::Applied(o))
                            }
                            WatchEvent::Deleted(o) => yield Ok(Event::Deleted(o)),
                            WatchEvent::Bookmark { .. } => {}
                        }
                    }
                    Err(err) if err.is_gone() => {
                        tracing::debug!(kind = K::KIND, "watch revision compacted; relisting");
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
                    tokio::time::sleep(delay.next()).await;
                }
            }
        }
    }
}

/// Retry pause of the watcher: 500 ms doubling to 30 s, reset by a success.
#[derive(Debug)]
struct RetryDelay(Duration);

impl Default for RetryDelay {
    fn default() -> Self {
        Self(Duration::from_millis(500))
    }
}

impl RetryDelay {
    fn next(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(30));
        now
    }
    fn reset(&mut self) {
        *self = Self::default();
    }
}
