//! The finalizer helper: run cleanup before an object may disappear.

use std::future::Future;
use std::sync::Arc;

use cirrus_client::{Api, Client, ClientError};
use cirrus_crds::Resource;
use serde_json::json;

use super::controller::Action;

/// What the reconciler is asked to do.
#[derive(Debug)]
pub enum FinalizerEvent<K> {
    /// Bring the world in line with the object. Must be idempotent: it runs again after
    /// restarts, changes, failures and resyncs.
    Apply(Arc<K>),
    /// The object is being deleted: remove everything it holds. Must be idempotent and must
    /// tolerate `Apply` never having run or never having succeeded.
    Cleanup(Arc<K>),
}

/// Why a finalized reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum FinalizerError<E: std::error::Error + 'static> {
    /// `Apply` failed.
    #[error("apply failed")]
    ApplyFailed(#[source] E),
    /// `Cleanup` failed; the finalizer stays and deletion waits.
    #[error("cleanup failed")]
    CleanupFailed(#[source] E),
    /// Adding the finalizer failed (often a conflict: the object changed meanwhile).
    #[error("adding finalizer {finalizer} failed")]
    AddFinalizer {
        /// The finalizer.
        finalizer: String,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// Removing the finalizer failed (often a conflict); cleanup runs again next time.
    #[error("removing finalizer {finalizer} failed")]
    RemoveFinalizer {
        /// The finalizer.
        finalizer: String,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// The object has no resourceVersion, so the finalizer can't be changed safely.
    #[error("object has no resourceVersion")]
    NoResourceVersion,
}

/// Reconciles `obj` through `reconcile`, guarded by the finalizer `name`.
///
/// Use it as the whole body of a reconciler for kinds that hold something outside the store
/// (a domain, a port, an address): `finalizer(&client, "cirrus.dev/x", obj, |event| ...)`.
///
/// # Expected flow
/// 1. A user creates the object; the reconciler sees it without the finalizer.
/// 2. The helper adds the finalizer (a merge patch conditioned on the object's
///    resourceVersion) and returns [`Action::await_change`]: the write wakes the controller.
/// 3. The reconciler sees the object with the finalizer: the helper runs
///    [`FinalizerEvent::Apply`], again on every change and resync.
/// 4. A user deletes the object; the store only sets `deletionTimestamp` while finalizers are
///    pending.
/// 5. The helper runs [`FinalizerEvent::Cleanup`]; when it succeeds it removes the finalizer
///    (again conditioned on the resourceVersion) and the store removes the object once no
///    finalizer is left.
/// 6. A deleting object without our finalizer needs nothing: [`Action::await_change`].
///
/// # Guarantees
/// - `Apply` never runs before the finalizer is stored, so anything `Apply` creates is
///   cleaned up by `Cleanup` before the object disappears.
/// - The finalizer is removed only after `Cleanup` succeeded, and only from the version of the
///   object `Cleanup` saw; if the object changed meanwhile the removal fails with a conflict
///   and cleanup runs again on the newer version.
/// - Other finalizers on the object are kept.
///
/// # Assumptions
/// - `name` is unique among the controllers touching the kind (`<component>.cirrus.dev/<what>`).
/// - `Apply` and `Cleanup` are idempotent and may be interrupted at any await point.
/// - The controller runs `obj` as the latest cached object (the runtime does).
///
/// # Caveats
/// - Deletion hangs while the controller is down or `Cleanup` keeps failing: that is the
///   point (nothing leaks), but it is visible to users as an object stuck in deletion.
/// - An object created and deleted before the controller added the finalizer is gone without
///   cleanup; since `Apply` never ran, there is nothing to clean.
///
/// # Errors
/// [`FinalizerError::ApplyFailed`] / [`FinalizerError::CleanupFailed`] pass the reconciler's
/// error through; [`FinalizerError::AddFinalizer`] / [`FinalizerError::RemoveFinalizer`] report
/// API failures, typically `409 Conflict` when the object changed meanwhile — retry on the
/// newer object (the runtime's error policy and the change event both do).
pub async fn finalizer<K, E, F, Fut>(
    client: &Client,
    name: &str,
    obj: Arc<K>,
    reconcile: F,
) -> Result<Action, FinalizerError<E>>
where
    K: Resource,
    E: std::error::Error + 'static,
    F: FnOnce(FinalizerEvent<K>) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
{
    let meta = obj.meta();
    let has = meta.finalizers.iter().any(|f| f == name);
    let deleting = meta.deletion_timestamp.is_some();
    match (has, deleting) {
        (true, false) => reconcile(FinalizerEvent::Apply(obj))
            .await
            .map_err(FinalizerError::ApplyFailed),
        (true, true) => {
            let rv = meta
                .resource_version
                .clone()
                .ok_or(FinalizerError::NoResourceVersion)?;
            let remaining: Vec<String> = meta
                .finalizers
                .iter()
                .filter(|f| *f != name)
                .cloned()
                .collect();
            let api = Api::<K>::for_object(client.clone(), &obj);
            let object_name = meta.name.clone();
            let action = reconcile(FinalizerEvent::Cleanup(obj))
                .await
                .map_err(FinalizerError::CleanupFailed)?;
            let patch = json!({"metadata": {"resourceVersion": rv, "finalizers": remaining}});
            match api.patch(&object_name, &patch).await {
                Ok(_) => Ok(action),
                // Already gone: someone else finished the deletion.
                Err(err) if err.is_not_found() => Ok(Action::await_change()),
                Err(source) => Err(FinalizerError::RemoveFinalizer {
                    finalizer: name.to_string(),
                    source,
                }),
            }
        }
        (false, false) => {
            let rv = meta
                .resource_version
                .clone()
                .ok_or(FinalizerError::NoResourceVersion)?;
            let mut finalizers = meta.finalizers.clone();
            finalizers.push(name.to_string());
            let patch = json!({"metadata": {"resourceVersion": rv, "finalizers": finalizers}});
            let api = Api::<K>::for_object(client.clone(), &obj);
            api.patch(&meta.name, &patch)
                .await
                .map_err(|source| FinalizerError::AddFinalizer {
                    finalizer: name.to_string(),
                    source,
                })?;
            Ok(Action::await_change())
        }
        (false, true) => Ok(Action::await_change()),
    }
}
