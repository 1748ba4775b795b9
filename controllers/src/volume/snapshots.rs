//! Snapshot reconciler: a `VolumeSnapshot` is taken where its volume's data is, so it gets
//! its volume's node (`status.node`), `phase: creating` and `Scheduled=True` once the
//! volume is placed; the node agent there takes it and owns `phase` from then on. A
//! snapshot of a missing volume gets `Scheduled=False` (`VolumeNotFound`) and is retried.

use std::sync::Arc;

use cirrus_client::Api;
use cirrus_crds::kinds::event::EventType;
use cirrus_crds::kinds::volumesnapshot::VolumeSnapshotPhase;
use cirrus_crds::{Condition, VolumeSnapshot};
use serde_json::json;

use super::{RETRY, VolumeContext, VolumeControllerError, condition};
use crate::runtime::{Action, ObjectRef};

/// Reconciles one snapshot (the controller's entry point).
pub async fn reconcile(
    snap: Arc<VolumeSnapshot>,
    ctx: Arc<VolumeContext>,
) -> Result<Action, VolumeControllerError> {
    if snap.metadata.deletion_timestamp.is_some() || snap.status.node.is_some() {
        return Ok(Action::await_change());
    }
    ctx.caches_ready().await;
    let key = ObjectRef {
        project: snap.metadata.project.clone(),
        name: snap.spec.volume.clone(),
    };
    let (ok, reason, message, node) = match ctx.volumes.get(&key) {
        None => (
            false,
            "VolumeNotFound",
            format!("volume {:?} does not exist", snap.spec.volume),
            None,
        ),
        Some(v) => match &v.status.node {
            None => (
                false,
                "Waiting",
                format!("waiting for volume {} to be placed", snap.spec.volume),
                None,
            ),
            Some(node) => (
                true,
                "Scheduled",
                format!("taken on node {node}, where volume {} is", snap.spec.volume),
                Some(node.clone()),
            ),
        },
    };
    let mut conditions = snap.status.conditions.clone();
    let changed = Condition::set(
        &mut conditions,
        condition(ok, reason, &message, snap.metadata.generation),
    );
    if changed || snap.status.phase.is_none() || node.is_some() {
        let mut status = json!({"conditions": conditions});
        if snap.status.phase.is_none() {
            status["phase"] = json!(VolumeSnapshotPhase::Creating);
        }
        if let Some(node) = &node {
            status["node"] = json!(node);
        }
        let patch = json!({
            "metadata": {"resourceVersion": snap.metadata.resource_version},
            "status": status,
        });
        let api = Api::<VolumeSnapshot>::for_object(ctx.client.clone(), snap.as_ref());
        match api.patch_status(&snap.metadata.name, &patch).await {
            Ok(_) => {}
            Err(err) if err.is_conflict() || err.is_not_found() => {
                return Ok(Action::await_change());
            }
            Err(err) => return Err(err.into()),
        }
        if changed && reason == "VolumeNotFound" {
            let _ = ctx
                .recorder
                .publish(snap.as_ref(), EventType::Warning, reason, &message)
                .await;
        }
    }
    Ok(match (ok, reason) {
        (true, _) => Action::await_change(),
        // Woken by the volume's placement; a missing volume may still appear.
        (false, _) => Action::requeue(RETRY),
    })
}
