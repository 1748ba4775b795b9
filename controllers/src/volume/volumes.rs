//! Volume reconciler: places each unplaced volume once, then leaves it to the node agent.
//!
//! # Expected flow
//! 1. A volume is created without `status.node`.
//! 2. Where it must go is worked out ([`pin_of`]): the node of a bound server using it, the
//!    pool of its source snapshot or volume, or anywhere. A volume whose server is not bound
//!    yet, or whose source is not placed yet, waits (`Scheduled=False`, reason
//!    [`REASON_WAITING`]) and is woken by the server's or source's change.
//! 3. Under the placement lock, [`place`] picks a pool from the cached nodes, counting the
//!    cached volumes and the assumed placements; the choice is assumed at once.
//! 4. One merge patch of the status, conditioned on the `resourceVersion` read, writes
//!    `node`, `pool`, `phase: creating` and `Scheduled=True`; a Normal event follows.
//! 5. From then on the volume is never written again here (the node agent owns `phase`).
//!    A placed volume whose server runs on another node (a race: the server was scheduled
//!    before the volume was placed) gets a Warning event.
//!
//! Before all of that, a volume made for a server not created yet is settled by
//! [`orphans::settle`] (adopted, deleted, or looked at again later).

use std::sync::Arc;

use cirrus_client::Api;
use cirrus_crds::kinds::event::EventType;
use cirrus_crds::kinds::volume::{VolumePhase, VolumeSourceType};
use cirrus_crds::{Condition, Server, Volume};
use serde_json::json;

use super::orphans::{self, Pending};
use super::placement::{self, GIB, Pin, PoolChoice, PoolUsage, VolumeRequest, place};
use super::{Assumed, RETRY, VolumeContext, VolumeControllerError, condition, uses_volume};
use crate::runtime::{Action, ObjectRef};

/// `Scheduled=False` reason: no pool can hold the volume (retried when nodes change).
pub const REASON_NO_POOL: &str = "NoValidPool";
/// `Scheduled=False` reason: waiting for the server or the source to be placed.
pub const REASON_WAITING: &str = "Waiting";
/// `Scheduled=False` reason: the volume type names no backend.
pub const REASON_UNKNOWN_TYPE: &str = "UnknownVolumeType";
/// `Scheduled=False` reason: the source snapshot or volume does not exist.
pub const REASON_SOURCE_MISSING: &str = "SourceNotFound";
/// `Scheduled=False` reason: its servers or its source disagree about the node.
pub const REASON_CONFLICT: &str = "ConflictingPlacement";

/// What a volume's data is copied from, when that data lives on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A `VolumeSnapshot`.
    Snapshot,
    /// Another `Volume`.
    Volume,
}

/// The volume's local source (snapshot or volume) and its name, if any.
pub fn source_of(v: &Volume) -> Option<(SourceKind, &String)> {
    let source = v.spec.source.as_ref()?;
    let kind = match source.type_ {
        VolumeSourceType::Snapshot => SourceKind::Snapshot,
        VolumeSourceType::Volume => SourceKind::Volume,
        VolumeSourceType::Empty | VolumeSourceType::Image => return None,
    };
    source.name.as_ref().map(|n| (kind, n))
}

/// Where the volume must go, or why it can't be decided yet.
enum PinOutcome {
    Pin(Pin),
    /// Not decidable now: `(reason, message)`.
    Wait(&'static str, String),
}

/// Reconciles one volume (the controller's entry point).
pub async fn reconcile(
    volume: Arc<Volume>,
    ctx: Arc<VolumeContext>,
) -> Result<Action, VolumeControllerError> {
    let key = ObjectRef::from_obj(volume.as_ref());
    if volume.metadata.deletion_timestamp.is_some() {
        ctx.forget(&key);
        return Ok(Action::await_change());
    }
    ctx.caches_ready().await;
    let look_again = match orphans::settle(&volume, &ctx).await? {
        Pending::Deleted => return Ok(Action::await_change()),
        Pending::Waiting(after) => Some(after),
        Pending::No | Pending::Adopted => None,
    };
    let next = placed(volume, key, &ctx).await?;
    Ok(match (look_again, next.requeue_after()) {
        (Some(after), Some(sooner)) if sooner < after => next,
        (Some(after), _) => Action::requeue(after),
        (None, _) => next,
    })
}

/// Places `volume` unless it is placed already (the rest of [`reconcile`]).
async fn placed(
    volume: Arc<Volume>,
    key: ObjectRef,
    ctx: &Arc<VolumeContext>,
) -> Result<Action, VolumeControllerError> {
    let ctx = ctx.clone();
    if let Some(node) = &volume.status.node {
        ctx.forget(&key);
        check_servers_follow(&volume, node, &ctx).await;
        return Ok(Action::await_change());
    }
    if ctx.is_assumed(&key, &volume) {
        // Our placement is written; the cache has not caught up yet.
        return Ok(Action::await_change());
    }
    let Some(backend) = placement::backend_of(volume.spec.volume_type.as_deref()) else {
        let message = format!(
            "volume type {:?} is served by no backend (types: file, lvm)",
            volume.spec.volume_type.as_deref().unwrap_or_default()
        );
        unscheduled(&ctx, &volume, REASON_UNKNOWN_TYPE, &message).await?;
        return Ok(Action::requeue(RETRY));
    };
    let pin = match pin_of(&volume, &ctx) {
        PinOutcome::Pin(pin) => pin,
        PinOutcome::Wait(reason, message) => {
            unscheduled(&ctx, &volume, reason, &message).await?;
            // Woken by the server's binding or the source's placement; the retry covers a
            // source that appears later.
            return Ok(Action::requeue(RETRY));
        }
    };
    // A free choice is final, and the server cache may not have seen a server created just
    // before the volume: ask the store whether a server of the project uses it.
    if matches!(pin, Pin::Free) {
        let servers = Api::<Server>::in_project(
            ctx.client.clone(),
            volume.metadata.project.clone().unwrap_or_default(),
        )
        .list_all(None)
        .await?;
        if servers.items.iter().any(|s| {
            s.metadata.deletion_timestamp.is_none() && uses_volume(s, &volume.metadata.name)
        }) {
            // The cache catches up and the server's change wakes this volume again.
            return Ok(Action::requeue(std::time::Duration::from_millis(200)));
        }
    }
    let request = VolumeRequest {
        backend,
        bytes: volume.spec.size.saturating_mul(GIB),
        zone: volume.spec.availability_zone.clone(),
        pin,
    };
    let decision = {
        let _cycle = ctx.cycle.lock().expect("cycle lock");
        let decision = ctx.decide(&key, &request);
        if let Ok(choice) = &decision {
            ctx.assume(&key, &volume, choice, request.bytes);
        }
        decision
    };
    let choice = match decision {
        Ok(choice) => choice,
        Err(unplaceable) => {
            unscheduled(&ctx, &volume, REASON_NO_POOL, &unplaceable.message()).await?;
            return Ok(Action::requeue(RETRY));
        }
    };
    let message = format!(
        "placed in pool {} of node {} ({} GiB of {} free)",
        choice.pool,
        choice.node,
        volume.spec.size,
        choice.free_bytes / GIB
    );
    let mut conditions = volume.status.conditions.clone();
    Condition::set(
        &mut conditions,
        condition(true, "Scheduled", &message, volume.metadata.generation),
    );
    let patch = json!({
        "metadata": {"resourceVersion": volume.metadata.resource_version},
        "status": {
            "node": choice.node,
            "pool": choice.pool,
            "phase": VolumePhase::Creating,
            "conditions": conditions,
        },
    });
    let api = Api::<Volume>::for_object(ctx.client.clone(), volume.as_ref());
    match api.patch_status(&volume.metadata.name, &patch).await {
        Ok(_) => {}
        Err(err) => {
            ctx.forget(&key);
            return match err {
                // Changed meanwhile: decide again from the newer version.
                err if err.is_conflict() => Ok(Action::requeue(std::time::Duration::ZERO)),
                err if err.is_not_found() => Ok(Action::await_change()),
                err => Err(err.into()),
            };
        }
    }
    tracing::info!(volume = %volume.metadata.name, node = %choice.node, pool = %choice.pool, "placed volume");
    let _ = ctx
        .recorder
        .publish(volume.as_ref(), EventType::Normal, "Scheduled", &message)
        .await;
    Ok(Action::await_change())
}

/// Where `volume` must go: with its servers, with its source, or anywhere.
fn pin_of(volume: &Volume, ctx: &VolumeContext) -> PinOutcome {
    let project = volume.metadata.project.as_deref();
    let name = &volume.metadata.name;
    let servers = ctx.servers_using(project, name);
    let mut server_pin: Option<(String, String)> = None;
    for s in &servers {
        let Some(node) = &s.spec.node_name else {
            continue;
        };
        match &server_pin {
            None => server_pin = Some((node.clone(), s.metadata.name.clone())),
            Some((other_node, other)) if other_node != node => {
                return PinOutcome::Wait(
                    REASON_CONFLICT,
                    format!(
                        "servers {other} (node {other_node}) and {} (node {node}) both use \
                         this local volume; it can be on one node only",
                        s.metadata.name
                    ),
                );
            }
            Some(_) => {}
        }
    }
    if server_pin.is_none()
        && let Some(first) = servers.first()
    {
        return PinOutcome::Wait(
            REASON_WAITING,
            format!(
                "waiting for server {} to be scheduled: a local volume is created on its \
                 server's node",
                first.metadata.name
            ),
        );
    }
    let source_pin = match source_of(volume) {
        None => None,
        Some((kind, source)) => {
            let key = ObjectRef {
                project: volume.metadata.project.clone(),
                name: source.clone(),
            };
            let (what, placed) = match kind {
                SourceKind::Snapshot => {
                    let Some(snap) = ctx.snapshots.get(&key) else {
                        return PinOutcome::Wait(
                            REASON_SOURCE_MISSING,
                            format!("source snapshot {source:?} does not exist"),
                        );
                    };
                    // A snapshot lives in its volume's pool.
                    let volume_key = ObjectRef {
                        project: volume.metadata.project.clone(),
                        name: snap.spec.volume.clone(),
                    };
                    let pool = ctx
                        .volumes
                        .get(&volume_key)
                        .and_then(|v| v.status.pool.clone());
                    ("snapshot", snap.status.node.clone().zip(pool))
                }
                SourceKind::Volume => {
                    let Some(src) = ctx.volumes.get(&key) else {
                        return PinOutcome::Wait(
                            REASON_SOURCE_MISSING,
                            format!("source volume {source:?} does not exist"),
                        );
                    };
                    (
                        "volume",
                        src.status.node.clone().zip(src.status.pool.clone()),
                    )
                }
            };
            match placed {
                Some((node, pool)) => {
                    Some((node, pool, format!("its source {what} {source} is there")))
                }
                None => {
                    return PinOutcome::Wait(
                        REASON_WAITING,
                        format!("waiting for source {what} {source} to be placed"),
                    );
                }
            }
        }
    };
    match (server_pin, source_pin) {
        (None, None) => PinOutcome::Pin(Pin::Free),
        (Some((node, server)), None) => PinOutcome::Pin(Pin::Node {
            node,
            why: format!("server {server} runs there"),
        }),
        (None, Some((node, pool, why))) => PinOutcome::Pin(Pin::Pool { node, pool, why }),
        (Some((server_node, server)), Some((node, pool, why))) => {
            if server_node == node {
                PinOutcome::Pin(Pin::Pool { node, pool, why })
            } else {
                PinOutcome::Wait(
                    REASON_CONFLICT,
                    format!(
                        "server {server} runs on node {server_node} but {why} (node {node}); \
                         local data can't move"
                    ),
                )
            }
        }
    }
}

/// Records `Scheduled=False` (and `phase: creating` on a new volume) when it changed, with a
/// Warning event for real failures (not for waiting).
async fn unscheduled(
    ctx: &VolumeContext,
    volume: &Volume,
    reason: &str,
    message: &str,
) -> Result<(), VolumeControllerError> {
    let mut conditions = volume.status.conditions.clone();
    let changed = Condition::set(
        &mut conditions,
        condition(false, reason, message, volume.metadata.generation),
    );
    if !changed && volume.status.phase.is_some() {
        return Ok(());
    }
    let mut status = json!({"conditions": conditions});
    if volume.status.phase.is_none() {
        status["phase"] = json!(VolumePhase::Creating);
    }
    let patch = json!({
        "metadata": {"resourceVersion": volume.metadata.resource_version},
        "status": status,
    });
    let api = Api::<Volume>::for_object(ctx.client.clone(), volume);
    match api.patch_status(&volume.metadata.name, &patch).await {
        Ok(_) => {}
        // A newer version is on its way to the cache; it is reconciled next.
        Err(err) if err.is_conflict() || err.is_not_found() => return Ok(()),
        Err(err) => return Err(err.into()),
    }
    if changed && reason != REASON_WAITING {
        tracing::info!(volume = %volume.metadata.name, %message, "volume not placed");
        let _ = ctx
            .recorder
            .publish(volume, EventType::Warning, "FailedScheduling", message)
            .await;
    }
    Ok(())
}

/// Warns when a server using the placed `volume` runs on another node (it can't attach it).
async fn check_servers_follow(volume: &Volume, node: &str, ctx: &VolumeContext) {
    let project = volume.metadata.project.as_deref();
    for s in ctx.servers_using(project, &volume.metadata.name) {
        if let Some(server_node) = &s.spec.node_name
            && server_node != node
        {
            let message = format!(
                "server {} runs on node {server_node} but volume {} is on node {node}; it \
                 can't be attached there",
                s.metadata.name, volume.metadata.name
            );
            let _ = ctx
                .recorder
                .publish(volume, EventType::Warning, "VolumeOnOtherNode", &message)
                .await;
        }
    }
}

impl VolumeContext {
    /// The placement of `request` from the caches and the assumed placements (the caller
    /// holds the placement lock). `key`'s own cached entry is not counted.
    fn decide(
        &self,
        key: &ObjectRef,
        request: &VolumeRequest,
    ) -> Result<PoolChoice, Box<placement::Unplaceable>> {
        let volumes = self.volumes.list();
        let mut usage = PoolUsage::of_volumes(
            volumes
                .iter()
                .filter(|v| ObjectRef::from_obj(v.as_ref()) != *key)
                .map(|v| v.as_ref()),
        );
        let assumed = self.assumed.lock().expect("assumed lock");
        for (k, a) in assumed.iter() {
            if k == key {
                continue;
            }
            // Counted already when the cache shows the placement.
            let seen = self.volumes.get(k).is_some_and(|v| {
                v.metadata.uid.as_deref() == Some(&a.uid) && v.status.node.is_some()
            });
            if !seen {
                usage.add(&a.node, &a.pool, a.bytes, true);
            }
        }
        drop(assumed);
        let nodes: Vec<cirrus_crds::Node> = self
            .nodes
            .list()
            .iter()
            .map(|n| n.as_ref().clone())
            .collect();
        place(request, &nodes, &usage)
    }

    fn assume(&self, key: &ObjectRef, volume: &Volume, choice: &PoolChoice, bytes: u64) {
        self.assumed.lock().expect("assumed lock").insert(
            key.clone(),
            Assumed {
                uid: volume.metadata.uid.clone().unwrap_or_default(),
                node: choice.node.clone(),
                pool: choice.pool.clone(),
                bytes,
            },
        );
    }

    fn is_assumed(&self, key: &ObjectRef, volume: &Volume) -> bool {
        self.assumed
            .lock()
            .expect("assumed lock")
            .get(key)
            .is_some_and(|a| volume.metadata.uid.as_deref() == Some(a.uid.as_str()))
    }

    /// Drops the assumption once the cache shows the placement (or the volume is going).
    fn forget(&self, key: &ObjectRef) {
        self.assumed.lock().expect("assumed lock").remove(key);
    }
}
