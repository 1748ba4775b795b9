//! The volume reconciler: makes the backend volumes and snapshots of this node match the
//! `Volume` and `VolumeSnapshot` objects placed on it (`status.node`).
//!
//! # Expected flow (one reconcile, level-triggered)
//! 1. A Volume placed here (by the volume controller: `status.node`, `status.pool`) gets the
//!    finalizer `cirrus.dev/node-agent-volume`.
//! 2. Its pool's backend ensures the volume from its source — empty, an image (cached on the
//!    node by sha256, like a server's image), a snapshot or another volume on the same pool —
//!    at `spec.size` GiB; a bigger `spec.size` later extends it (`extending`).
//! 3. Status: `phase` (see below), `size`, condition `Ready`; positive evidence of failure (no such
//!    pool, image missing, not enough space) is `error` with the reason — a source the node's
//!    own image inspection refuses ([`crate::image_inspect`]: a backing or data file, a
//!    format that is not what `spec.diskFormat` says) is `error` with reason `SourceRefused`
//!    and no backend volume is made.
//! 4. Deletion waits until no domain holds the volume (`status.attachments` empty), then
//!    deletes the backend volume (refused while it has snapshots: Cinder's rule) and releases
//!    the finalizer.
//!
//! # One writer per status field
//! This reconciler is the one writer of a placed volume's `status.phase`, `status.size` and
//! its `Ready` condition; the server reconciler ([`crate::servers`]) is the one writer of
//! `status.attachments` (which domain holds the volume). The attachment phases follow from
//! the attachments ([`attachment_phase`], pure): none → `available`; held by a server that
//! still wants it (its `spec.volumes` or `spec.bootVolume` names it, or it is not known yet)
//! → `in-use`; held only by servers that no longer want it → `detaching`, until the server
//! reconciler reports the guest let go. The servers come from a cache of the servers bound
//! to this node, and a server's change wakes the volumes it holds.
//!
//! Snapshots follow their volume: ensured on the volume's pool, `available` when done,
//! deleted (backend first) through the same finalizer. A volume attached to an active domain
//! of this node (its serial in the hypervisor's live disks) is not copied offline when it is
//! a qcow2 file — QEMU holds it and writes it — but by the hypervisor while the guest runs
//! ([`Hypervisor::disk_backup`], crash-consistent, Cinder's `force=true`) into the file the
//! backend commits as the snapshot ([`VolumeBackend::snapshot_ensure_copied`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use cirrus_client::{Api, Client, ClientError};
use cirrus_crds::kinds::volume::{VolumePhase, VolumeSourceType};
use cirrus_crds::kinds::volumesnapshot::VolumeSnapshotPhase;
use cirrus_crds::{Condition, ConditionStatus, Server, Volume, VolumeSnapshot};
use cirrus_runtime::reflector::reflector;
use cirrus_runtime::{
    Action, Config, Controller, FinalizerError, FinalizerEvent, ObjectRef, Store, Writer,
    finalizer, watcher,
};
use serde_json::json;
use uuid::Uuid;

use crate::hypervisor::{DomainName, Hypervisor, VolumeDisk};
use crate::images::{self, ImageCache};
use crate::servers::error_chain;
use crate::volumes::{self as backend, VolumeBackend, VolumeError};

/// Finalizer the node agent keeps on volumes and snapshots placed on its node.
pub const FINALIZER: &str = "cirrus.dev/node-agent-volume";
/// Bytes per GiB (volume sizes are whole GiB).
pub const GIB: u64 = 1 << 30;

/// Why a volume reconcile failed (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The API refused or could not be reached.
    #[error("API request failed")]
    Api(#[from] ClientError),
    /// The backend failed in a way worth retrying.
    #[error("volume backend")]
    Backend(#[from] VolumeError),
    /// An image could not be cached.
    #[error("image not ready")]
    Image(#[from] crate::images::ImageError),
    /// The object has no valid uid.
    #[error("{0} has no valid metadata.uid")]
    NoUid(String),
    /// The blocking backend task failed.
    #[error("backend task failed: {0}")]
    Task(String),
    /// Deletion must wait (a domain still holds the volume, or a clone still reads from the
    /// snapshot); the finalizer stays and the reconcile is retried.
    #[error("deletion waits: {0}")]
    Waiting(String),
    /// Adding or removing the finalizer failed.
    #[error("finalizer")]
    Finalizer(#[source] Box<FinalizerError<StorageError>>),
}

/// The storage pools of this node, by pool name (the `Node.status.storagePools` names).
pub type Pools = BTreeMap<String, Arc<dyn VolumeBackend>>;

/// What the volume reconciler shares.
pub struct StorageContext {
    client: Client,
    node: String,
    pools: Pools,
    images: ImageCache,
    hypervisor: Option<Arc<dyn Hypervisor>>,
    /// The servers bound to this node (to tell `in-use` from `detaching`).
    servers: Store<Server>,
    /// The write side of `servers`, taken by [`run`].
    servers_writer: Mutex<Option<Writer<Server>>>,
}

impl std::fmt::Debug for StorageContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageContext")
            .field("node", &self.node)
            .field("pools", &self.pools.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl StorageContext {
    /// A context for `node` with its `pools`, caching images under `images_dir`.
    pub fn new(
        client: Client,
        node: impl Into<String>,
        pools: Pools,
        images_dir: impl Into<std::path::PathBuf>,
    ) -> Self {
        let servers_writer = Writer::new();
        Self {
            images: ImageCache::new(client.clone(), images_dir),
            client,
            node: node.into(),
            pools,
            hypervisor: None,
            servers: servers_writer.as_reader(),
            servers_writer: Mutex::new(Some(servers_writer)),
        }
    }

    /// Snapshots of volumes attached to this node's running domains are taken through
    /// `hypervisor` (without it they wait: the backend reports the volume in use).
    pub fn with_hypervisor(mut self, hypervisor: Arc<dyn Hypervisor>) -> Self {
        self.hypervisor = Some(hypervisor);
        self
    }

    /// The pools (for capacity reports and the server reconciler's attach paths).
    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    async fn blocking<T: Send + 'static>(
        &self,
        pool: Arc<dyn VolumeBackend>,
        f: impl FnOnce(&dyn VolumeBackend) -> backend::Result<T> + Send + 'static,
    ) -> Result<backend::Result<T>, StorageError> {
        tokio::task::spawn_blocking(move || f(pool.as_ref()))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))
    }
}

fn uid_of(meta: &cirrus_crds::ObjectMeta) -> Result<Uuid, StorageError> {
    meta.uid
        .as_deref()
        .and_then(|u| Uuid::try_parse(u).ok())
        .ok_or_else(|| StorageError::NoUid(meta.name.clone()))
}

fn ready(status: ConditionStatus, reason: &str, message: impl Into<String>) -> Condition {
    Condition {
        type_: "Ready".into(),
        status,
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Some(Utc::now()),
        observed_generation: None,
    }
}

/// Writes `phase`/`size` and the `Ready` condition of a volume when they differ.
async fn volume_status(
    ctx: &StorageContext,
    volume: &Volume,
    phase: Option<VolumePhase>,
    size: Option<u64>,
    cond: Condition,
) -> Result<(), StorageError> {
    let mut conditions = volume.status.conditions.clone();
    let before = Condition::find(&conditions, "Ready").cloned();
    Condition::set(&mut conditions, cond);
    let same_cond = before.as_ref().is_some_and(|b| {
        let now = Condition::find(&conditions, "Ready").expect("just set");
        b.status == now.status && b.reason == now.reason && b.message == now.message
    });
    let phase = phase.or(volume.status.phase);
    if same_cond
        && phase == volume.status.phase
        && size.is_none_or(|s| Some(s) == volume.status.size)
    {
        return Ok(());
    }
    // Conditioned on the version this reconcile read: the phase follows the attachments the
    // server reconciler writes, and a phase derived from stale attachments must never land.
    let mut patch = json!({
        "metadata": {"resourceVersion": volume.metadata.resource_version},
        "status": {"phase": phase, "conditions": conditions},
    });
    if let Some(size) = size {
        patch["status"]["size"] = json!(size);
    }
    let api = Api::<Volume>::for_object(ctx.client.clone(), volume);
    match api.patch_status(&volume.metadata.name, &patch).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reconciles one volume (the controller's reconcile function).
///
/// # Errors
/// Retryable failures (API, backend I/O); positive evidence goes to the status instead.
pub async fn reconcile_volume(
    volume: Arc<Volume>,
    ctx: Arc<StorageContext>,
) -> Result<Action, StorageError> {
    let inner = ctx.clone();
    finalizer(&ctx.client, FINALIZER, volume, |event| async move {
        match event {
            FinalizerEvent::Apply(v) => apply_volume(&v, &inner).await,
            FinalizerEvent::Cleanup(v) => cleanup_volume(&v, &inner).await,
        }
    })
    .await
    .map_err(|e| StorageError::Finalizer(Box::new(e)))
}

/// The backend volume's source for `volume`, or the reason it cannot be had (permanent).
async fn source_of(
    volume: &Volume,
    ctx: &StorageContext,
) -> Result<Result<backend::VolumeSource, String>, StorageError> {
    let project = volume.metadata.project.clone().unwrap_or_default();
    let Some(source) = &volume.spec.source else {
        return Ok(Ok(backend::VolumeSource::Empty));
    };
    let name = source.name.clone().unwrap_or_default();
    Ok(match source.type_ {
        VolumeSourceType::Empty => Ok(backend::VolumeSource::Empty),
        VolumeSourceType::Image => match images::find_image(&ctx.client, &project, &name).await? {
            None => Err(format!("image {name:?} does not exist")),
            Some(image) => match crate::disks::qemu_format(image.spec.disk_format) {
                None => Err(format!(
                    "image {name:?} is {:?}, not a disk a volume can be made from",
                    image.spec.disk_format
                )),
                Some(format) => {
                    let path = ctx.images.ensure(&image).await?;
                    Ok(backend::VolumeSource::Image {
                        path,
                        format: format.to_string(),
                    })
                }
            },
        },
        VolumeSourceType::Snapshot => {
            let api = Api::<VolumeSnapshot>::in_project(ctx.client.clone(), &project);
            match api.get_opt(&name).await? {
                None => Err(format!("snapshot {name:?} does not exist")),
                Some(s) => Ok(backend::VolumeSource::Snapshot {
                    uid: uid_of(&s.metadata)?,
                }),
            }
        }
        VolumeSourceType::Volume => {
            let api = Api::<Volume>::in_project(ctx.client.clone(), &project);
            match api.get_opt(&name).await? {
                None => Err(format!("volume {name:?} does not exist")),
                Some(v) if v.status.node.as_deref() != Some(ctx.node.as_str()) => Err(format!(
                    "volume {name:?} is on another node; a copy must be on the same pool"
                )),
                Some(v) => Ok(backend::VolumeSource::Volume {
                    uid: uid_of(&v.metadata)?,
                }),
            }
        }
    })
}

async fn apply_volume(volume: &Volume, ctx: &StorageContext) -> Result<Action, StorageError> {
    let uid = uid_of(&volume.metadata)?;
    let pool_name = volume.status.pool.clone().unwrap_or_default();
    let Some(pool) = ctx.pools.get(&pool_name).cloned() else {
        let msg = format!("this node has no storage pool {pool_name:?}");
        volume_status(
            ctx,
            volume,
            Some(VolumePhase::Error),
            None,
            ready(ConditionStatus::False, "NoSuchPool", msg),
        )
        .await?;
        return Ok(Action::await_change());
    };
    let wanted = volume.spec.size * GIB;
    // The object the final status write is conditioned on (refreshed after our own write).
    let mut current = volume.clone();
    let existing = ctx
        .blocking(pool.clone(), move |b| b.volume_info(uid))
        .await??;
    match existing {
        Some(info) if info.size_bytes < wanted => {
            volume_status(
                ctx,
                volume,
                Some(VolumePhase::Extending),
                None,
                ready(
                    ConditionStatus::False,
                    "Extending",
                    format!("growing to {} GiB", volume.spec.size),
                ),
            )
            .await?;
            let grown = ctx
                .blocking(pool.clone(), move |b| b.volume_extend(uid, wanted))
                .await?;
            if let Err(e) = grown {
                return fail(ctx, volume, e, VolumePhase::ErrorExtending).await;
            }
            if let Some(fresh) = Api::<Volume>::for_object(ctx.client.clone(), volume)
                .get_opt(&volume.metadata.name)
                .await?
            {
                current = fresh;
            }
        }
        Some(_) => {}
        None => {
            let source = match source_of(volume, ctx).await? {
                Ok(s) => s,
                Err(why) => {
                    volume_status(
                        ctx,
                        volume,
                        Some(VolumePhase::Error),
                        None,
                        ready(ConditionStatus::False, "SourceUnavailable", why),
                    )
                    .await?;
                    return Ok(Action::await_change());
                }
            };
            let spec = backend::VolumeSpec {
                uid,
                size_bytes: wanted,
                source,
            };
            let made = ctx
                .blocking(pool.clone(), move |b| b.volume_ensure(&spec))
                .await?;
            if let Err(e) = made {
                return fail(ctx, volume, e, VolumePhase::Error).await;
            }
        }
    }
    let info = ctx
        .blocking(pool.clone(), move |b| b.volume_info(uid))
        .await??;
    let Some(info) = info else {
        return Err(StorageError::Task(
            "the volume vanished right after it was made".into(),
        ));
    };
    // Grown while attached: back to in-use (the guest sees the new size on rescan).
    let phase = Some(attachment_phase(&current, &ctx.servers));
    let size_gib = info.size_bytes.div_ceil(GIB);
    volume_status(
        ctx,
        &current,
        phase,
        Some(size_gib),
        ready(
            ConditionStatus::True,
            "Ready",
            format!("{size_gib} GiB on pool {pool_name}"),
        ),
    )
    .await?;
    Ok(Action::await_change())
}

/// The phase of a made volume from its attachments (see the module docs): `available` when
/// no domain holds it, `detaching` when only servers that no longer want it hold it, else
/// `in-use`. A server `servers` does not know yet (cache not synced) counts as wanting it.
pub fn attachment_phase(volume: &Volume, servers: &Store<Server>) -> VolumePhase {
    if volume.status.attachments.is_empty() {
        return VolumePhase::Available;
    }
    let project = volume.metadata.project.clone().unwrap_or_default();
    let name = volume.metadata.name.as_str();
    let still_wanted = |server: &str| {
        if !servers.is_ready() {
            return true;
        }
        servers
            .get(&ObjectRef::in_project(project.as_str(), server))
            .is_some_and(|s| {
                s.spec.boot_volume.as_deref() == Some(name)
                    || s.spec.volumes.iter().any(|v| v.volume == name)
            })
    };
    if volume
        .status
        .attachments
        .iter()
        .any(|a| still_wanted(&a.server))
    {
        VolumePhase::InUse
    } else {
        VolumePhase::Detaching
    }
}

/// Records a backend failure: permanent ones (unsupported, invalid spec, a source refused by
/// the node's image inspection: reason `SourceRefused`) as `phase` with the reason, others
/// are retried.
async fn fail(
    ctx: &StorageContext,
    volume: &Volume,
    e: VolumeError,
    phase: VolumePhase,
) -> Result<Action, StorageError> {
    if e.is_permanent() {
        let reason = match &e {
            VolumeError::SourceRefused { .. } => "SourceRefused",
            _ => "BackendRefused",
        };
        volume_status(
            ctx,
            volume,
            Some(phase),
            None,
            ready(ConditionStatus::False, reason, e.to_string()),
        )
        .await?;
        return Ok(Action::await_change());
    }
    Err(e.into())
}

async fn cleanup_volume(volume: &Volume, ctx: &StorageContext) -> Result<Action, StorageError> {
    if !volume.status.attachments.is_empty() {
        // A domain still holds it: the server reconciler detaches first. (An error, not a
        // requeue: an `Ok` from cleanup would release the finalizer with the data still here.)
        return Err(StorageError::Waiting(format!(
            "attached to {}",
            volume
                .status
                .attachments
                .iter()
                .map(|a| a.server.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let uid = uid_of(&volume.metadata)?;
    let pool_name = volume.status.pool.clone().unwrap_or_default();
    let Some(pool) = ctx.pools.get(&pool_name).cloned() else {
        // Never made here: nothing to delete.
        return Ok(Action::await_change());
    };
    match ctx.blocking(pool, move |b| b.volume_delete(uid)).await? {
        Ok(_) => Ok(Action::await_change()),
        Err(VolumeError::HasDependents { .. }) => {
            volume_status(
                ctx,
                volume,
                Some(VolumePhase::ErrorDeleting),
                None,
                ready(
                    ConditionStatus::False,
                    "HasSnapshots",
                    "delete its snapshots first",
                ),
            )
            .await?;
            Err(StorageError::Waiting("the volume has snapshots".into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Reconciles one snapshot placed on this node.
///
/// # Errors
/// Retryable failures.
pub async fn reconcile_snapshot(
    snapshot: Arc<VolumeSnapshot>,
    ctx: Arc<StorageContext>,
) -> Result<Action, StorageError> {
    let inner = ctx.clone();
    finalizer(&ctx.client, FINALIZER, snapshot, |event| async move {
        match event {
            FinalizerEvent::Apply(s) => apply_snapshot(&s, &inner).await,
            FinalizerEvent::Cleanup(s) => cleanup_snapshot(&s, &inner).await,
        }
    })
    .await
    .map_err(|e| StorageError::Finalizer(Box::new(e)))
}

async fn snapshot_status(
    ctx: &StorageContext,
    snapshot: &VolumeSnapshot,
    phase: VolumeSnapshotPhase,
    size: Option<u64>,
    cond: Condition,
) -> Result<(), StorageError> {
    let same = snapshot.status.phase == Some(phase)
        && Condition::find(&snapshot.status.conditions, "Ready")
            .is_some_and(|c| c.reason == cond.reason && c.message == cond.message);
    if same {
        return Ok(());
    }
    let mut conditions = snapshot.status.conditions.clone();
    Condition::set(&mut conditions, cond);
    let mut patch = json!({"status": {"phase": phase, "conditions": conditions}});
    if let Some(size) = size {
        patch["status"]["size"] = json!(size);
    }
    let api = Api::<VolumeSnapshot>::for_object(ctx.client.clone(), snapshot);
    match api.patch_status(&snapshot.metadata.name, &patch).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The snapshot's volume (same project) with its uid and pool, if it is on this node.
async fn snapshot_volume(
    snapshot: &VolumeSnapshot,
    ctx: &StorageContext,
) -> Result<Option<(Volume, Uuid, Arc<dyn VolumeBackend>)>, StorageError> {
    let project = snapshot.metadata.project.clone().unwrap_or_default();
    let api = Api::<Volume>::in_project(ctx.client.clone(), &project);
    let Some(volume) = api.get_opt(&snapshot.spec.volume).await? else {
        return Ok(None);
    };
    let uid = uid_of(&volume.metadata)?;
    let pool = volume
        .status
        .pool
        .as_ref()
        .and_then(|p| ctx.pools.get(p))
        .cloned();
    Ok(pool.map(|p| (volume, uid, p)))
}

async fn apply_snapshot(
    snapshot: &VolumeSnapshot,
    ctx: &StorageContext,
) -> Result<Action, StorageError> {
    let snap_uid = uid_of(&snapshot.metadata)?;
    let Some((volume, vol_uid, pool)) = snapshot_volume(snapshot, ctx).await? else {
        snapshot_status(
            ctx,
            snapshot,
            VolumeSnapshotPhase::Error,
            None,
            ready(
                ConditionStatus::False,
                "VolumeNotHere",
                format!(
                    "volume {:?} is not on a pool of this node",
                    snapshot.spec.volume
                ),
            ),
        )
        .await?;
        return Ok(Action::await_change());
    };
    let hv = ctx.hypervisor.clone();
    let made = ctx
        .blocking(pool, move |b| {
            if b.snapshot_info(snap_uid)?.is_none()
                && let Some(hv) = hv
                && let Some((domain, target)) = holder(hv.as_ref(), vol_uid)?
                // A qcow2 file QEMU holds is copied by QEMU; block devices (LVM) snapshot
                // themselves consistently underneath a running guest.
                && b.volume_info(vol_uid)?
                    .is_some_and(|i| i.format == backend::VolumeFormat::Qcow2)
            {
                tracing::info!(%domain, target, volume = %vol_uid, snapshot = %snap_uid, "snapshot of an attached volume: copied by the hypervisor");
                return b.snapshot_ensure_copied(vol_uid, snap_uid, &mut |dest| {
                    hv.disk_backup(&domain, &target, dest)
                        .map_err(|e| VolumeError::Command {
                            cmd: format!("disk_backup {domain} {target}"),
                            stderr: error_chain(&e),
                        })
                });
            }
            b.snapshot_ensure(vol_uid, snap_uid)
        })
        .await?;
    match made {
        Ok(_) => {
            snapshot_status(
                ctx,
                snapshot,
                VolumeSnapshotPhase::Available,
                Some(volume.spec.size),
                ready(ConditionStatus::True, "Ready", "snapshot taken"),
            )
            .await?;
            Ok(Action::await_change())
        }
        Err(e) if e.is_permanent() => {
            let reason = match &e {
                VolumeError::SourceRefused { .. } => "SourceRefused",
                _ => "BackendRefused",
            };
            snapshot_status(
                ctx,
                snapshot,
                VolumeSnapshotPhase::Error,
                None,
                ready(ConditionStatus::False, reason, e.to_string()),
            )
            .await?;
            Ok(Action::await_change())
        }
        Err(e) => Err(e.into()),
    }
}

/// The active domain of this node holding volume `vol_uid` (by its serial in the live
/// disks) and the disk's target; `None` when no active domain has it.
fn holder(hv: &dyn Hypervisor, vol_uid: Uuid) -> backend::Result<Option<(DomainName, String)>> {
    let unreachable = |e: crate::hypervisor::HypervisorError| VolumeError::Command {
        cmd: "hypervisor disks".into(),
        stderr: error_chain(&e),
    };
    let serial = VolumeDisk::serial_for(vol_uid);
    for d in hv.domain_list().map_err(unreachable)? {
        if !d.state.is_active() {
            continue;
        }
        let disks = match hv.disks(&d.name) {
            Ok(disks) => disks,
            // Gone since the listing: it holds nothing.
            Err(crate::hypervisor::HypervisorError::NotFound(_)) => continue,
            Err(e) => return Err(unreachable(e)),
        };
        if let Some(disk) = disks.into_iter().find(|v| v.serial == serial) {
            return Ok(Some((d.name, disk.target)));
        }
    }
    Ok(None)
}

async fn cleanup_snapshot(
    snapshot: &VolumeSnapshot,
    ctx: &StorageContext,
) -> Result<Action, StorageError> {
    let snap_uid = uid_of(&snapshot.metadata)?;
    let Some((_, _, pool)) = snapshot_volume(snapshot, ctx).await? else {
        return Ok(Action::await_change());
    };
    match ctx
        .blocking(pool, move |b| b.snapshot_delete(snap_uid))
        .await?
    {
        Ok(_) => Ok(Action::await_change()),
        Err(VolumeError::HasDependents { .. }) => Err(StorageError::Waiting(
            "a volume made from the snapshot still reads from it".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

fn error_policy<K>(_: Arc<K>, error: &StorageError, _: Arc<StorageContext>) -> Action {
    tracing::warn!(error = %error, source = ?std::error::Error::source(error), "volume reconcile failed");
    Action::backoff()
}

/// Runs the volume and snapshot reconcilers for `ctx`'s node until `shutdown` completes.
pub async fn run(
    ctx: Arc<StorageContext>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let shutdown = futures::FutureExt::shared(futures::FutureExt::boxed(shutdown));
    let config = Config {
        concurrency: 4,
        resync: Some(Duration::from_secs(60)),
    };
    let taken = ctx
        .servers_writer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let Some(servers_writer) = taken else {
        tracing::error!("the volume controller of this context runs already");
        return;
    };
    let volumes = Controller::new(
        Api::<Volume>::all(ctx.client.clone()),
        watcher::Config::fields(format!("status.node={}", ctx.node)),
    )
    .with_config(config.clone())
    .graceful_shutdown_on(shutdown.clone());
    // A server bound here that changes (a volume dropped from its spec, deleted) wakes the
    // volumes it holds: their phase follows (`detaching`).
    let held = volumes.store();
    let volumes = volumes.watches_stream(
        reflector(
            servers_writer,
            watcher::watcher(
                Api::<Server>::all(ctx.client.clone()),
                watcher::Config::fields(format!("spec.nodeName={}", ctx.node)),
            ),
        ),
        move |server: &Server| {
            held.list()
                .iter()
                .filter(|v| {
                    v.metadata.project == server.metadata.project
                        && v.status
                            .attachments
                            .iter()
                            .any(|a| a.server == server.metadata.name)
                })
                .map(|v| ObjectRef::from_obj(v.as_ref()))
                .collect()
        },
    );
    let snapshots = Controller::new(
        Api::<VolumeSnapshot>::all(ctx.client.clone()),
        watcher::Config::fields(format!("status.node={}", ctx.node)),
    )
    .with_config(config)
    .graceful_shutdown_on(shutdown);
    tokio::join!(
        volumes.run(reconcile_volume, error_policy, ctx.clone()),
        snapshots.run(reconcile_snapshot, error_policy, ctx.clone()),
    );
}

#[cfg(test)]
mod tests;
