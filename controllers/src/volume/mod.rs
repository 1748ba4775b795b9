//! The volume controller (Cinder's scheduler and volume manager, control-plane side): where
//! each volume's data lives, where snapshots are taken, and which volumes go with their
//! server. The node agent owning a volume's node makes it real and reports its phase.
//!
//! # What it reconciles
//! - [`volumes`]: an unplaced `Volume` gets `status.node` and `status.pool` chosen by
//!   [`placement::place`] (a pure function) from the nodes' `status.storagePools`, with
//!   `phase: creating` and condition [`SCHEDULED`]. A volume a server uses (its
//!   `spec.volumes` or `spec.bootVolume`) waits for that server's `spec.nodeName` and goes
//!   there; a volume made from a snapshot or another volume goes to its source's pool (the
//!   data is local). When nothing fits: `Scheduled=False` with the node-by-node reason and
//!   a Warning event, retried every [`RETRY`] and when nodes change. After placement the
//!   controller never writes the volume again: the node agent owns `phase`.
//! - [`orphans`]: a volume made for a server not created yet (boot from a new volume) is
//!   adopted when the server uses it and deleted when none does within
//!   [`VolumeConfig::orphan_grace`].
//! - [`snapshots`]: a `VolumeSnapshot` gets its volume's node (`status.node`).
//! - [`servers`]: a server with `deleteOnTermination` entries holds the finalizer
//!   [`SERVER_FINALIZER`]; when it is deleted, those volumes are deleted (the node agent's
//!   own volume finalizer waits for the detach and removes the data).
//!
//! # Guarantees
//! - A pool is never promised more than it has: placements are decided one at a time under
//!   a lock, each seeing every earlier one through the cache or the in-memory *assumed*
//!   placements (written but not yet in the cache), and one active controller runs behind
//!   leader election.
//! - Every write is a merge patch of this controller's fields only, conditioned on the
//!   `resourceVersion` read, so a volume is placed at most once.
//! - The `deleteOnTermination` intent survives a controller outage: the finalizer holds the
//!   server until its volumes were deleted.

pub mod orphans;
pub mod placement;
pub mod servers;
pub mod snapshots;
pub mod volumes;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cirrus_client::{Client, ClientError};
use cirrus_crds::kinds::volume::CREATED_FOR_SERVER_ANNOTATION;
use cirrus_crds::{Node, Server, Volume, VolumeSnapshot};
use futures::FutureExt;
use tokio::sync::watch;

use crate::runtime::reflector::Store;
use crate::runtime::shared::{cached, shared_watch};
use crate::runtime::{Config, Controller, FinalizerError, ObjectRef, Recorder};

/// The finalizer the volume controller keeps on servers with `deleteOnTermination` volumes.
pub const SERVER_FINALIZER: &str = "cirrus.dev/volume-controller";
/// The condition saying whether a volume (or snapshot) has its node.
pub const SCHEDULED: &str = "Scheduled";
/// How often a volume that fits nowhere (or whose source is missing) is tried again without
/// a change.
pub const RETRY: Duration = Duration::from_secs(15);

/// Why a reconcile failed (the runtime retries with backoff).
#[derive(Debug, thiserror::Error)]
pub enum VolumeControllerError {
    /// The API refused or could not be reached.
    #[error("API request failed")]
    Api(#[from] ClientError),
    /// Adding or removing the finalizer, or the finalized step, failed.
    #[error(transparent)]
    Finalizer(#[from] Box<FinalizerError<VolumeControllerError>>),
}

/// Tuning of the volume controller.
#[derive(Clone, Debug)]
pub struct VolumeConfig {
    /// Volume reconciles running at once (placements themselves are serialized). Default 16.
    pub concurrency: usize,
    /// Resync period of every kind. Default 30 s.
    pub resync: Option<Duration>,
    /// How long a volume made for a server may wait for that server before it is deleted as
    /// an orphan ([`orphans`]). Default 120 s.
    pub orphan_grace: Duration,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            resync: Some(Duration::from_secs(30)),
            orphan_grace: Duration::from_secs(120),
        }
    }
}

/// A placement written but maybe not yet in the volume cache.
#[derive(Clone, Debug)]
struct Assumed {
    uid: String,
    node: String,
    pool: String,
    bytes: u64,
}

/// What the volume reconcilers share: the client, the caches and the assumed placements.
pub struct VolumeContext {
    client: Client,
    recorder: Recorder,
    volumes: Store<Volume>,
    snapshots: Store<VolumeSnapshot>,
    servers: Store<Server>,
    nodes: Store<Node>,
    /// Placements written but maybe not yet in the cache: volume key → placement.
    assumed: Mutex<HashMap<ObjectRef, Assumed>>,
    /// Held while one placement is decided and assumed (in memory, no I/O).
    cycle: Mutex<()>,
    /// [`VolumeConfig::orphan_grace`].
    orphan_grace: Duration,
}

impl VolumeContext {
    async fn caches_ready(&self) {
        self.volumes.wait_until_ready().await;
        self.snapshots.wait_until_ready().await;
        self.servers.wait_until_ready().await;
        self.nodes.wait_until_ready().await;
    }

    /// Live servers of `project` whose `spec.volumes` or `spec.bootVolume` name `volume`,
    /// by name.
    fn servers_using(&self, project: Option<&str>, volume: &str) -> Vec<Arc<Server>> {
        let mut found: Vec<Arc<Server>> = self
            .servers
            .list()
            .into_iter()
            .filter(|s| s.metadata.project.as_deref() == project)
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .filter(|s| uses_volume(s, volume))
            .collect();
        found.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        found
    }
}

/// Whether `server` names `volume` in `spec.volumes` or `spec.bootVolume`.
pub fn uses_volume(server: &Server, volume: &str) -> bool {
    server.spec.boot_volume.as_deref() == Some(volume)
        || server.spec.volumes.iter().any(|v| v.volume == volume)
}

/// Runs the volume controller until `shutdown` resolves; it acts only while `gate` says it
/// leads.
pub async fn run(
    client: Client,
    config: VolumeConfig,
    gate: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let shutdown = shutdown.boxed().shared();
    let controller_config = |concurrency: usize| Config {
        concurrency,
        resync: config.resync,
    };
    // One watch per kind, shared by the controllers that need it.
    let [volume_main, volume_for_snapshots, volume_for_clones] = shared_watch::<Volume, 3>(&client);
    let [snapshot_main, snapshot_for_volumes] = shared_watch::<VolumeSnapshot, 2>(&client);
    let [server_main, server_for_volumes] = shared_watch::<Server, 2>(&client);
    let (nodes, node_events) = cached::<Node>(&client);

    let volume_ctl = Controller::for_stream(volume_main)
        .with_config(controller_config(config.concurrency))
        .with_leader_gate(gate.clone())
        .graceful_shutdown_on(shutdown.clone());
    let snapshot_ctl = Controller::for_stream(snapshot_main)
        .with_config(controller_config(4))
        .with_leader_gate(gate.clone())
        .graceful_shutdown_on(shutdown.clone());
    let server_ctl = Controller::for_stream(server_main)
        .with_config(controller_config(8))
        .with_leader_gate(gate.clone())
        .graceful_shutdown_on(shutdown.clone());
    let volumes = volume_ctl.store();
    let snapshots = snapshot_ctl.store();
    let servers = server_ctl.store();

    // Unplaced volumes of `project` matching `pred`.
    let unplaced = {
        let volumes = volumes.clone();
        move |pred: &dyn Fn(&Volume) -> bool| -> Vec<ObjectRef> {
            volumes
                .list()
                .iter()
                .filter(|v| v.status.node.is_none() && v.metadata.deletion_timestamp.is_none())
                .filter(|v| pred(v))
                .map(|v| ObjectRef::from_obj(v.as_ref()))
                .collect()
        }
    };
    let same_project = |a: &Volume, project: Option<&str>| a.metadata.project.as_deref() == project;
    let pending = {
        let volumes = volumes.clone();
        move |s: &Server| -> Vec<ObjectRef> {
            volumes
                .list()
                .iter()
                .filter(|v| v.metadata.project == s.metadata.project)
                .filter(|v| {
                    v.metadata
                        .annotations
                        .contains_key(CREATED_FOR_SERVER_ANNOTATION)
                })
                .filter(|v| uses_volume(s, &v.metadata.name))
                .map(|v| ObjectRef::from_obj(v.as_ref()))
                .collect()
        }
    };
    let on_server = unplaced.clone();
    let on_node = unplaced.clone();
    let on_snapshot = unplaced.clone();
    let on_volume = unplaced;
    let volume_ctl = volume_ctl
        // A bound server's volumes follow it; a new server adopts the volumes made for it.
        .watches_stream(server_for_volumes, move |s: &Server| {
            let mut keys = pending(s);
            if s.spec.node_name.is_some() {
                keys.extend(on_server(&|v| {
                    same_project(v, s.metadata.project.as_deref())
                        && uses_volume(s, &v.metadata.name)
                }));
            }
            keys
        })
        // Capacity may appear: retry the volumes that fit nowhere.
        .watches_stream(node_events, move |_: &Node| {
            on_node(&|v| {
                cirrus_crds::Condition::find(&v.status.conditions, SCHEDULED)
                    .is_some_and(|c| c.reason == volumes::REASON_NO_POOL)
            })
        })
        // Volumes made from a snapshot or a volume wait for their source's placement.
        .watches_stream(snapshot_for_volumes, move |snap: &VolumeSnapshot| {
            on_snapshot(&|v| {
                same_project(v, snap.metadata.project.as_deref())
                    && volumes::source_of(v)
                        == Some((volumes::SourceKind::Snapshot, &snap.metadata.name))
            })
        })
        .watches_stream(volume_for_clones, move |src: &Volume| {
            if src.status.node.is_none() {
                return Vec::new();
            }
            on_volume(&|v| {
                same_project(v, src.metadata.project.as_deref())
                    && volumes::source_of(v)
                        == Some((volumes::SourceKind::Volume, &src.metadata.name))
            })
        });
    let snapshot_ctl = {
        let snapshots = snapshots.clone();
        snapshot_ctl.watches_stream(volume_for_snapshots, move |v: &Volume| {
            if v.status.node.is_none() {
                return Vec::new();
            }
            snapshots
                .list()
                .iter()
                .filter(|s| s.status.node.is_none())
                .filter(|s| s.metadata.project == v.metadata.project)
                .filter(|s| s.spec.volume == v.metadata.name)
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect()
        })
    };

    let ctx = Arc::new(VolumeContext {
        recorder: Recorder::new(client.clone(), "volume-controller", None),
        client,
        volumes,
        snapshots,
        servers,
        nodes,
        assumed: Mutex::new(HashMap::new()),
        cycle: Mutex::new(()),
        orphan_grace: config.orphan_grace,
    });
    tokio::join!(
        volume_ctl.run(volumes::reconcile, error_policy, ctx.clone()),
        snapshot_ctl.run(snapshots::reconcile, error_policy, ctx.clone()),
        server_ctl.run(servers::reconcile, error_policy, ctx.clone()),
    );
}

fn error_policy<K>(
    _obj: Arc<K>,
    err: &VolumeControllerError,
    _ctx: Arc<VolumeContext>,
) -> crate::runtime::Action {
    tracing::warn!(error = %err, source = ?std::error::Error::source(err), "volume reconcile failed");
    crate::runtime::Action::backoff()
}

/// A condition observed now against `generation`.
fn condition(
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> cirrus_crds::Condition {
    cirrus_crds::Condition {
        type_: SCHEDULED.into(),
        status: if ok {
            cirrus_crds::ConditionStatus::True
        } else {
            cirrus_crds::ConditionStatus::False
        },
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Some(chrono::Utc::now()),
        observed_generation: generation,
    }
}
