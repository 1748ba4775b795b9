//! Watching a kind from a resourceVersion: the Kubernetes watch contract over an etcd watch.

use std::time::Duration;

use cirrus_crds::KindInfo;
use etcd_client::{EventType, GetOptions, WatchOptions as EtcdWatchOptions};
use futures::Stream;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;

use super::{ListOptions, ObjectError, ObjectStore, decode, keys};
use crate::fields::FieldSelector;
use crate::selector::LabelSelector;

/// What to watch.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Only objects whose labels match; an object whose labels stop matching is reported
    /// as `Deleted`, one that starts matching as `Added`.
    pub selector: LabelSelector,
    /// Only objects whose fields match; like labels, an object moving out of (into) the
    /// selection is reported as `Deleted` (`Added`).
    pub fields: FieldSelector,
    /// Report changes after this revision; `None` (or 0) first reports every current object
    /// as `Added`.
    pub resource_version: Option<i64>,
    /// How often to emit a `Bookmark` with the revision the watch has caught up to.
    pub bookmark_interval: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            selector: LabelSelector::default(),
            fields: FieldSelector::default(),
            resource_version: None,
            bookmark_interval: Duration::from_secs(10),
        }
    }
}

/// One change seen by a watch.
#[derive(Debug)]
pub enum WatchEvent {
    /// The object appeared (or started matching the selector).
    Added(Value),
    /// The object changed.
    Modified(Value),
    /// The object disappeared (or stopped matching); carries its last state.
    Deleted(Value),
    /// Every change up to this revision has been delivered.
    Bookmark(i64),
    /// The watch ended abnormally (e.g. [`ObjectError::Expired`] after compaction).
    Error(ObjectError),
}

impl ObjectStore {
    /// Starts a watch of a kind (in one project, or everywhere with `None`).
    ///
    /// # Errors
    /// [`ObjectError::Expired`] (before any event) when `resource_version` has been compacted.
    pub async fn watch(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        options: WatchOptions,
    ) -> Result<impl Stream<Item = WatchEvent> + Send + 'static, ObjectError> {
        let prefix = keys::list_prefix(&self.prefix, kind, project)?;
        let (tx, rx) = mpsc::channel::<WatchEvent>(256);
        let (start_after, initial) = match options.resource_version.filter(|rv| *rv > 0) {
            Some(rv) => {
                self.check_not_compacted(&prefix, rv).await?;
                (rv, Vec::new())
            }
            None => {
                let list = self
                    .list(
                        kind,
                        project,
                        &ListOptions {
                            selector: options.selector.clone(),
                            fields: options.fields.clone(),
                            ..Default::default()
                        },
                    )
                    .await?;
                (list.resource_version, list.items)
            }
        };
        let watch_options = EtcdWatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(start_after + 1);
        let stream = self
            .client
            .watch_client()
            .watch(prefix.clone(), Some(watch_options))
            .await
            .map_err(ObjectError::Unavailable)?;
        let span =
            tracing::debug_span!("watch", kind = kind.kind, prefix = %prefix, from = start_after);
        let selector = Selection {
            labels: options.selector,
            fields: options.fields,
        };
        let interval = options.bookmark_interval;
        tokio::spawn(
            async move {
                for item in initial {
                    if tx.send(WatchEvent::Added(item)).await.is_err() {
                        return;
                    }
                }
                forward(stream, tx, selector, interval).await;
            }
            .instrument(span),
        );
        Ok(ReceiverStream::new(rx))
    }

    /// Fails with [`ObjectError::Expired`] when revision `rv` is no longer readable.
    async fn check_not_compacted(&self, prefix: &str, rv: i64) -> Result<(), ObjectError> {
        let current = self.current_revision().await?;
        let probe = (rv + 1).min(current);
        if probe <= 0 {
            return Ok(());
        }
        let get = GetOptions::new()
            .with_prefix()
            .with_count_only()
            .with_revision(probe);
        match self.client.kv_client().get(prefix, Some(get)).await {
            Ok(_) => Ok(()),
            Err(err) if super::error::is_compacted(&err) => Err(expired(rv)),
            Err(err) if super::error::is_future_revision(&err) => Ok(()),
            Err(err) => Err(ObjectError::Unavailable(err)),
        }
    }
}

fn expired(rv: i64) -> ObjectError {
    ObjectError::Expired(format!(
        "too old resource version: {rv} has been compacted; list again and watch from the list's resourceVersion"
    ))
}

/// The label and field selectors of one watch.
struct Selection {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selection {
    fn matches(&self, object: &Value) -> bool {
        self.labels.matches_object(object) && self.fields.matches(object)
    }

    fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

/// Turns etcd watch responses into watch events until the client goes away or the watch ends.
async fn forward(
    mut stream: etcd_client::WatchStream,
    tx: mpsc::Sender<WatchEvent>,
    selector: Selection,
    bookmark_interval: Duration,
) {
    let mut ticker = tokio::time::interval(bookmark_interval);
    ticker.tick().await;
    loop {
        let message = tokio::select! {
            _ = tx.closed() => return,
            _ = ticker.tick() => {
                if let Err(err) = stream.request_progress().await {
                    let _ = tx.send(WatchEvent::Error(ObjectError::Unavailable(err))).await;
                    return;
                }
                continue;
            }
            message = stream.message() => message,
        };
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => return,
            Err(err) => {
                let _ = tx
                    .send(WatchEvent::Error(ObjectError::Unavailable(err)))
                    .await;
                return;
            }
        };
        if response.compact_revision() > 0 {
            let _ = tx
                .send(WatchEvent::Error(ObjectError::Expired(format!(
                    "watch fell behind compaction at revision {}; list again",
                    response.compact_revision()
                ))))
                .await;
            return;
        }
        if response.canceled() {
            let reason = response.cancel_reason().to_string();
            let _ = tx
                .send(WatchEvent::Error(ObjectError::BadRequest(format!(
                    "watch canceled by the store: {reason}"
                ))))
                .await;
            return;
        }
        if response.created() {
            continue;
        }
        if response.events().is_empty() {
            let revision = response.header().map(|h| h.revision()).unwrap_or_default();
            if tx.send(WatchEvent::Bookmark(revision)).await.is_err() {
                return;
            }
            continue;
        }
        for event in response.events() {
            let converted = match convert(event, &selector) {
                Ok(Some(converted)) => converted,
                Ok(None) => continue,
                Err(err) => WatchEvent::Error(err),
            };
            if tx.send(converted).await.is_err() {
                return;
            }
        }
    }
}

/// The watch event one etcd event means for a watcher with `selector`, if any.
fn convert(
    event: &etcd_client::Event,
    selector: &Selection,
) -> Result<Option<WatchEvent>, ObjectError> {
    let matches = |object: &Value| selector.matches(object);
    let previous = match event.prev_kv() {
        Some(prev) if !prev.value().is_empty() => Some(decode(prev)?),
        _ => None,
    };
    let Some(kv) = event.kv() else {
        return Ok(None);
    };
    match event.event_type() {
        EventType::Put => {
            let object = decode(kv)?;
            let now = matches(&object);
            let before =
                kv.version() > 1 && previous.as_ref().map_or(selector.is_everything(), matches);
            Ok(match (before, now) {
                (false, true) => Some(WatchEvent::Added(object)),
                (true, true) => Some(WatchEvent::Modified(object)),
                (true, false) => Some(WatchEvent::Deleted(object)),
                (false, false) => None,
            })
        }
        EventType::Delete => {
            let Some(mut last) = previous else {
                return Ok(None);
            };
            if !matches(&last) {
                return Ok(None);
            }
            if let Some(meta) = last.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert(
                    "resourceVersion".into(),
                    Value::from(kv.mod_revision().to_string()),
                );
            }
            Ok(Some(WatchEvent::Deleted(last)))
        }
    }
}
