//! Garbage collection of image blobs no image references any more.
//!
//! Deleting an `Image` leaves its blob in the [`BlobStore`] (two images may share one, and
//! the node agents may still be downloading it). Every API process that keeps image data runs
//! [`run`]: every [`INTERVAL`] it lists every `Image` of every project, collects the blobs
//! their `status.osHashValue` names, and has [`BlobStore::collect`] remove the others that are
//! older than [`GRACE`] (an upload commits its blob before it records it in the image's
//! status; the grace and the blob lock cover that window). Several API replicas sharing one
//! blob directory may all run it: each removal is decided under the blob lock.

use cirrus_crds::Resource as _;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cirrus_store::objects::{ListOptions, ObjectStore};
use serde_json::Value;

use crate::blobs::{BlobStore, Collected};
use crate::error::ApiError;

/// How often the collector runs.
pub const INTERVAL: Duration = Duration::from_secs(600);
/// How old an unreferenced blob must be before it is removed.
pub const GRACE: Duration = Duration::from_secs(900);

/// Runs [`collect_once`] now and every `interval` until the task is dropped; failures are
/// logged and retried at the next round.
pub async fn run(store: ObjectStore, blobs: Arc<BlobStore>, interval: Duration, grace: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let span = tracing::info_span!("blob_gc");
        let _entered = span.enter();
        match collect_once(&store, &blobs, grace).await {
            Ok(done) if done.removed > 0 => tracing::info!(
                removed = done.removed,
                freed_bytes = done.freed_bytes,
                kept = done.kept,
                "collected unreferenced image blobs"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.message(), "image blob collection failed"),
        }
    }
}

/// One collection: the referenced digests from the store, then the removal.
pub async fn collect_once(
    store: &ObjectStore,
    blobs: &Arc<BlobStore>,
    grace: Duration,
) -> Result<Collected, ApiError> {
    let images = cirrus_crds::Image::info();
    let list = store.list(images, None, &ListOptions::default()).await?;
    let referenced: HashSet<String> = list
        .items
        .iter()
        .filter_map(|image| image.pointer("/status/osHashValue").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    let blobs = blobs.clone();
    tokio::task::spawn_blocking(move || blobs.collect(&referenced, grace))
        .await
        .map_err(|e| ApiError::internal(format!("the blob collector stopped: {e}")))?
        .map_err(|e| ApiError::internal(format!("collecting image blobs failed: {e}")))
}
