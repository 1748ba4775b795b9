//! The server reconciler: makes the libvirt domain of every Server bound to this node match
//! its spec, and reports what it sees in the Server's status.
//!
//! # Expected flow (one reconcile, level-triggered)
//! 1. Read the domain's state. An error (daemon unreachable) stops here: `DomainRunning` and
//!    `Ready` become `Unknown`, the phase is kept (never ERROR), the runtime backs off.
//! 2. Prepare: resolve the image (own project, then public/community), cache it and, for AMI
//!    style images (`kernel_id` / `ramdisk_id`), the kernel and ramdisk (`ImageReady`); ensure
//!    the root disk overlay (`DiskReady`); resolve the server's ports — each must exist, be
//!    attached to the server, bound to this node and have its MAC and addresses — into NICs on
//!    the network's local VLAN (`NetworkReady`, task state `networking` while waiting);
//!    `domain_ensure` the [`DomainSpec`]. When the domain
//!    already exists a failed preparation leaves it alone (it keeps running from its disk).
//! 3. Power: Running → start/resume; Stopped → ACPI shutdown, then destroy once
//!    [`ServerConfig::shutdown_grace`] has passed (requeued, never blocking); Paused → pause in
//!    memory (`domain_suspend`); Suspended → suspend to disk as OpenStack means it
//!    (`domain_save`, libvirt's managed save: the domain is stopped with its memory saved,
//!    [`DomainState::Saved`]); Running from Saved restores it (`domain_start`: the guest
//!    continues, no boot). Stopped with a Saved domain keeps the saved state and counts as
//!    stopped (phase SHUTOFF, observed power state Suspended, the `Ready` message says so):
//!    nothing the guest had is discarded, and Running later restores it. A
//!    `spec.rebootCount` above `status.observedRebootCount` reboots (soft or hard) a running
//!    domain once and records the count.
//! 4. Status is derived from what was observed ([`derive_status`], pure) and written only when
//!    it differs from the stored status: a converged server costs no write on resync.
//!
//! # Guarantees
//! - ERROR only on positive evidence while no domain exists to run: the image or flavor does
//!   not exist, the image is killed/deactivated, qemu-img says the base is corrupt, the
//!   flavor's disk is too small. Timeouts and an unreachable hypervisor never make ERROR.
//! - Drift is repaired on the next reconcile (resync): a destroyed domain is started again, an
//!   undefined one is defined and started (`domain_state` → `Ok(None)` is positive evidence).
//! - Cleanup (deletion) deletes the domain and the instance directory before the finalizer
//!   `cirrus.dev/node-agent` is removed; [`orphans_sweep`] deletes domains and directories of
//!   uids that belong to no server bound to this node (after a successful list).
//! - One reboot per `rebootCount` bump, even when recording it races with another write.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use cirrus_client::{Api, Client, ClientError, ListParams};
use cirrus_crds::conventions::dhcp_port_name;
use cirrus_crds::kinds::network::NetworkPhase;
use cirrus_crds::kinds::port::server_port_name;
use cirrus_crds::kinds::server::{
    AddressType, ObservedPowerState, PowerState, RebootType, ServerAddress, ServerFault,
    ServerPhase, ServerStatus,
};
use cirrus_crds::kinds::volume::{VolumeAttachment, VolumePhase};
use cirrus_crds::{
    Condition, ConditionStatus, Flavor, Image, Network, Port, Server, Subnet, Volume,
};
use cirrus_runtime::{
    Action, Config, Controller, FinalizerError, FinalizerEvent, ObjectRef, finalizer, watcher,
};
use tokio::time::Instant;
use uuid::Uuid;

use crate::disks::{self, DiskError, InstancePaths, RootDisk};
use crate::hypervisor::{
    DetachState, DomainName, DomainSpec, DomainState, HostInfo, Hypervisor, HypervisorError,
    HypervisorOp, KernelBoot, NicSpec, RebootKind, VolumeDisk,
};
use crate::images::{self, ImageCache, ImageError};
use crate::net::host::HostNetwork;

/// The finalizer the node agent keeps on servers it holds resources for.
pub const FINALIZER: &str = "cirrus.dev/node-agent";
/// Condition: the image (and kernel/ramdisk) are cached on the node.
pub const IMAGE_READY: &str = "ImageReady";
/// Condition: the root disk exists.
pub const DISK_READY: &str = "DiskReady";
/// Condition: every port of the server is ready to plug (only for servers with networks).
pub const NETWORK_READY: &str = "NetworkReady";
/// Condition: every volume of the server is available on this node (servers with volumes).
pub const VOLUMES_READY: &str = "VolumesReady";
/// How soon a pending volume detach is checked again.
const DETACH_POLL: Duration = Duration::from_secs(2);
/// Condition: the domain is running.
pub const DOMAIN_RUNNING: &str = "DomainRunning";
/// Condition: the server is in the power state its spec asks for.
pub const READY: &str = "Ready";

/// Timing of the server reconciler.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// How long a guest gets to power off after the ACPI button before it is destroyed.
    /// Default 60 s (Nova's `shutdown_timeout`).
    pub shutdown_grace: Duration,
    /// How often a transition in progress (shutdown, reboot) is checked. Default 1 s.
    pub poll: Duration,
    /// Every server is reconciled at least this often (drift repair). Default 30 s.
    pub resync: Duration,
    /// Most reconciles at once. Default 8.
    pub concurrency: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            resync: Duration::from_secs(30),
            concurrency: 8,
        }
    }
}

/// Why a server reconcile failed (the runtime retries with backoff).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The server has no (valid) uid yet.
    #[error("server {0} has no valid metadata.uid")]
    NoUid(String),
    /// The API refused or could not be reached.
    #[error("API request failed")]
    Api(#[from] ClientError),
    /// A hypervisor call failed.
    #[error("hypervisor call failed")]
    Hypervisor(#[from] HypervisorError),
    /// An image could not be cached.
    #[error("image not ready")]
    Image(#[from] ImageError),
    /// The root disk could not be ensured.
    #[error("root disk not ready")]
    Disk(#[from] DiskError),
    /// Preparing the domain failed for another reason (see the server's conditions).
    #[error("{0}")]
    Prepare(String),
    /// Local file I/O failed.
    #[error("I/O failed")]
    Io(#[from] std::io::Error),
}

/// What the server reconciler shares.
#[derive(Debug)]
pub struct ServerContext {
    client: Client,
    node_name: String,
    state_dir: PathBuf,
    driver: Arc<dyn Hypervisor>,
    images: ImageCache,
    config: ServerConfig,
    host: Mutex<Option<HostInfo>>,
    /// When an ACPI shutdown was requested, per server.
    stops: Mutex<HashMap<Uuid, Instant>>,
    /// The highest `rebootCount` carried out, per server (so a lost status write never
    /// reboots twice).
    reboots: Mutex<HashMap<Uuid, u64>>,
    /// Status writes per server uid (observability and tests).
    writes: Mutex<HashMap<Uuid, u64>>,
    /// The host's networking (bridge, local VLANs); `None`: this node has none, and servers
    /// with networks wait (`NetworkReady` False, `NetworkingUnavailable`).
    network: Option<Arc<HostNetwork>>,
    /// The node's storage pools, to attach the servers' volumes from.
    pools: crate::storage::Pools,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ServerContext {
    /// A context for the node `node_name`, keeping files under `state_dir`.
    pub fn new(
        client: Client,
        node_name: impl Into<String>,
        state_dir: impl Into<PathBuf>,
        driver: Arc<dyn Hypervisor>,
        config: ServerConfig,
    ) -> Self {
        let state_dir = state_dir.into();
        Self {
            images: ImageCache::new(client.clone(), state_dir.join("images")),
            client,
            node_name: node_name.into(),
            state_dir,
            driver,
            config,
            host: Mutex::new(None),
            stops: Mutex::new(HashMap::new()),
            reboots: Mutex::new(HashMap::new()),
            writes: Mutex::new(HashMap::new()),
            network: None,
            pools: crate::storage::Pools::new(),
        }
    }

    /// Attaches servers' volumes from `pools` (the node's storage pools).
    #[must_use]
    pub fn with_pools(mut self, pools: crate::storage::Pools) -> Self {
        self.pools = pools;
        self
    }

    /// Plugs servers' NICs into `network` (the host's integration bridge).
    #[must_use]
    pub fn with_network(mut self, network: Arc<HostNetwork>) -> Self {
        self.network = Some(network);
        self
    }

    /// Status writes this agent made for the server with `uid` since it started.
    pub fn status_writes(&self, uid: Uuid) -> u64 {
        lock(&self.writes).get(&uid).copied().unwrap_or(0)
    }

    /// The node's state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Runs a hypervisor call on the blocking pool.
    async fn hv<T: Send + 'static>(
        &self,
        op: HypervisorOp,
        f: impl FnOnce(&dyn Hypervisor) -> crate::hypervisor::Result<T> + Send + 'static,
    ) -> crate::hypervisor::Result<T> {
        let driver = self.driver.clone();
        tokio::task::spawn_blocking(move || f(driver.as_ref()))
            .await
            .unwrap_or_else(|e| {
                Err(HypervisorError::Unreachable {
                    op,
                    reason: format!("hypervisor task failed: {e}"),
                })
            })
    }

    async fn host_info(&self) -> Result<HostInfo, HypervisorError> {
        if let Some(h) = lock(&self.host).clone() {
            return Ok(h);
        }
        let h = self.hv(HypervisorOp::HostInfo, |d| d.host_info()).await?;
        *lock(&self.host) = Some(h.clone());
        Ok(h)
    }
}

/// A condition's value as observed in one reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// True / False / Unknown.
    pub status: ConditionStatus,
    /// CamelCase cause.
    pub reason: String,
    /// What happened, for humans.
    pub message: String,
}

impl Observed {
    fn new(status: ConditionStatus, reason: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Everything one reconcile observed and did: the input of [`derive_status`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// `ImageReady`, when checked this time (else the stored condition stays).
    pub image: Option<Observed>,
    /// `DiskReady`, when checked this time.
    pub disk: Option<Observed>,
    /// `NetworkReady`, when checked this time (servers with networks only).
    pub network: Option<Observed>,
    /// `VolumesReady`, when checked this time (servers with volumes only).
    pub volumes: Option<Observed>,
    /// The server's addresses by network name, when its ports were read this time.
    pub addresses: Option<BTreeMap<String, Vec<ServerAddress>>>,
    /// The domain's state after acting: `Ok(None)` not defined, `Err` unreachable (message).
    pub domain: Option<Result<Option<DomainState>, String>>,
    /// Positive evidence the server cannot be built: (reason, message) → ERROR.
    pub fatal: Option<(String, String)>,
    /// A reboot issued in this reconcile.
    pub reboot_issued: Option<RebootKind>,
    /// The `rebootCount` now carried out.
    pub observed_reboot_count: Option<u64>,
    /// A transition in progress (e.g. `powering-off`), Nova's task_state.
    pub task: Option<String>,
    /// A note for the `Ready` message (e.g. a saved state kept while Stopped).
    pub note: Option<String>,
}

fn observed_power(state: DomainState) -> ObservedPowerState {
    match state {
        DomainState::Running | DomainState::ShuttingDown => ObservedPowerState::Running,
        DomainState::Paused => ObservedPowerState::Paused,
        DomainState::ShutOff => ObservedPowerState::Stopped,
        DomainState::Crashed => ObservedPowerState::Crashed,
        DomainState::PmSuspended | DomainState::Saved => ObservedPowerState::Suspended,
        DomainState::NoState => ObservedPowerState::NoState,
    }
}

/// Whether the domain is in the state `wanted` asks for.
fn achieved(wanted: PowerState, state: Option<DomainState>) -> bool {
    matches!(
        (wanted, state),
        (PowerState::Running, Some(DomainState::Running))
            | (
                PowerState::Stopped,
                // A saved (suspended-to-disk) guest is not running either; see the module docs.
                Some(DomainState::ShutOff | DomainState::Crashed | DomainState::Saved)
            )
            | (PowerState::Paused, Some(DomainState::Paused))
            | (PowerState::Suspended, Some(DomainState::Saved))
    )
}

/// The status `server` should have after a reconcile observed `obs` at `now` (pure).
/// Conditions keep their transition times when their status did not change, so the result
/// equals the stored status when nothing changed.
pub fn derive_status(
    server: &Server,
    obs: &Observation,
    node: &str,
    now: DateTime<Utc>,
) -> ServerStatus {
    let mut st = server.status.clone();
    let generation = server.metadata.generation;
    let cond = |type_: &str, o: &Observed| Condition {
        type_: type_.into(),
        status: o.status,
        reason: o.reason.clone(),
        message: o.message.clone(),
        last_transition_time: Some(now),
        observed_generation: generation,
    };
    st.node = Some(node.to_string());
    if let Some(o) = &obs.image {
        Condition::set(&mut st.conditions, cond(IMAGE_READY, o));
    }
    if let Some(o) = &obs.disk {
        Condition::set(&mut st.conditions, cond(DISK_READY, o));
    }
    if let Some(o) = &obs.network {
        Condition::set(&mut st.conditions, cond(NETWORK_READY, o));
    }
    if let Some(o) = &obs.volumes {
        Condition::set(&mut st.conditions, cond(VOLUMES_READY, o));
    }
    if let Some(addresses) = &obs.addresses {
        st.addresses = addresses.clone();
    }
    let wanted = server.spec.power_state;
    let unreachable = matches!(obs.domain, Some(Err(_)));
    let state = match &obs.domain {
        Some(Ok(s)) => *s,
        _ => None,
    };
    let domain_cond = match &obs.domain {
        None => Observed::new(ConditionStatus::Unknown, "NotChecked", ""),
        Some(Err(msg)) => Observed::new(ConditionStatus::Unknown, "HypervisorUnreachable", msg),
        Some(Ok(None)) => Observed::new(
            ConditionStatus::False,
            "NotDefined",
            "the domain is not defined on the node",
        ),
        Some(Ok(Some(DomainState::Running))) => {
            Observed::new(ConditionStatus::True, "Running", "the domain is running")
        }
        Some(Ok(Some(s))) => Observed::new(
            ConditionStatus::False,
            &format!("{s:?}"),
            format!("the domain is {s:?}"),
        ),
    };
    Condition::set(&mut st.conditions, cond(DOMAIN_RUNNING, &domain_cond));
    if let Some(s) = state {
        st.power_state = Some(observed_power(s));
        if s == DomainState::Running && st.launched_at.is_none() {
            st.launched_at = Some(now);
        }
    } else if matches!(obs.domain, Some(Ok(None))) {
        st.power_state = Some(ObservedPowerState::NoState);
    }
    if let Some(n) = obs.observed_reboot_count {
        st.observed_reboot_count = st.observed_reboot_count.max(n);
    }
    st.task_state = obs.task.clone();
    let launched = st.launched_at.is_some();
    let phase = if obs.fatal.is_some() {
        ServerPhase::Error
    } else if unreachable {
        st.phase.unwrap_or(ServerPhase::Build)
    } else if let Some(kind) = obs.reboot_issued {
        match kind {
            RebootKind::Soft => ServerPhase::Reboot,
            RebootKind::Hard => ServerPhase::HardReboot,
        }
    } else {
        match state {
            Some(DomainState::Running | DomainState::ShuttingDown) => ServerPhase::Active,
            Some(DomainState::Paused) => ServerPhase::Paused,
            Some(DomainState::Saved) if wanted == PowerState::Stopped => ServerPhase::Shutoff,
            Some(DomainState::Saved | DomainState::PmSuspended) => ServerPhase::Suspended,
            Some(DomainState::ShutOff | DomainState::Crashed)
                if launched || wanted == PowerState::Stopped =>
            {
                ServerPhase::Shutoff
            }
            _ if !launched => ServerPhase::Build,
            _ => st.phase.unwrap_or(ServerPhase::Build),
        }
    };
    st.phase = Some(phase);
    st.fault = obs.fatal.as_ref().map(|(reason, message)| ServerFault {
        code: 500,
        message: format!("{reason}: {message}"),
        details: None,
        created: server
            .status
            .fault
            .as_ref()
            .filter(|f| f.message == format!("{reason}: {message}"))
            .and_then(|f| f.created)
            .or(Some(now)),
    });
    let failing = [IMAGE_READY, DISK_READY, NETWORK_READY, VOLUMES_READY]
        .into_iter()
        .find_map(|t| {
            Condition::find(&st.conditions, t)
                .filter(|c| c.status != ConditionStatus::True)
                .cloned()
        });
    let ready = if let Some((reason, message)) = &obs.fatal {
        Observed::new(ConditionStatus::False, reason, message.clone())
    } else if unreachable {
        domain_cond.clone()
    } else if let Some(c) = failing {
        Observed::new(c.status, &c.reason, c.message)
    } else if achieved(wanted, state) {
        let mut message = format!("the server is {wanted:?} as requested");
        if let Some(note) = &obs.note {
            message = format!("{message}; {note}");
        }
        Observed::new(ConditionStatus::True, &format!("{wanted:?}"), message)
    } else {
        let is = state.map_or("not defined".to_string(), |s| format!("{s:?}"));
        let mut message = format!("wants {wanted:?}, the domain is {is}");
        if let Some(task) = &obs.task {
            message = format!("{message} ({task})");
        }
        Observed::new(ConditionStatus::False, "PowerStateTransition", message)
    };
    Condition::set(&mut st.conditions, cond(READY, &ready));
    st.observed_generation = generation;
    st
}

/// A step of preparation that failed: which condition it belongs to and whether it is
/// positive evidence (ERROR) or retryable.
struct PrepFailure {
    step: PrepStep,
    permanent: bool,
    reason: &'static str,
    message: String,
    error: ServerError,
}

/// The preparation steps, each reported as its own condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrepStep {
    Image,
    Disk,
    Network,
    Volumes,
}

impl PrepFailure {
    fn new(step: PrepStep, reason: &'static str, permanent: bool, error: ServerError) -> Self {
        let message = error_chain(&error);
        Self {
            step,
            permanent,
            reason,
            message,
            error,
        }
    }
    fn image(reason: &'static str, permanent: bool, error: ServerError) -> Self {
        Self::new(PrepStep::Image, reason, permanent, error)
    }
    fn disk(reason: &'static str, permanent: bool, error: ServerError) -> Self {
        Self::new(PrepStep::Disk, reason, permanent, error)
    }
    /// Ports not ready yet: retried when a port changes, or soon.
    fn waiting_for_ports(message: String) -> Self {
        Self::new(
            PrepStep::Network,
            "PortsNotReady",
            false,
            ServerError::Prepare(message),
        )
    }
}

/// The error and its sources, `: `-joined.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The node's own inspection of a volume before a domain is given it
/// ([`crate::volumes::VolumeBackend::volume_verify`]): a refusal is permanent (`refused`), any
/// other failure waits (`waiting`).
async fn verify_volume(
    pool: Arc<dyn crate::volumes::VolumeBackend>,
    vuid: Uuid,
    label: String,
    refused: &'static str,
    waiting: &'static str,
) -> Result<(), PrepFailure> {
    let (reason, permanent, message) =
        match tokio::task::spawn_blocking(move || pool.volume_verify(vuid)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e @ crate::volumes::VolumeError::SourceRefused { .. })) => {
                (refused, true, format!("{label}: {e}"))
            }
            Ok(Err(e)) => (waiting, false, format!("{label}: {e}")),
            Err(e) => (waiting, false, format!("volume task: {e}")),
        };
    Err(PrepFailure::new(
        PrepStep::Volumes,
        reason,
        permanent,
        ServerError::Prepare(message),
    ))
}

fn server_uid(server: &Server) -> Result<Uuid, ServerError> {
    server
        .metadata
        .uid
        .as_deref()
        .and_then(|u| Uuid::try_parse(u).ok())
        .ok_or_else(|| ServerError::NoUid(server.metadata.name.clone()))
}

/// Reconciles one server (the controller's reconcile function): [`FinalizerEvent::Apply`]
/// converges it, [`FinalizerEvent::Cleanup`] removes its domain and files.
///
/// # Errors
/// Failed steps (after their conditions were written), API failures of the finalizer.
pub async fn reconcile(
    server: Arc<Server>,
    ctx: Arc<ServerContext>,
) -> Result<Action, FinalizerError<ServerError>> {
    if server.spec.node_name.as_deref() != Some(ctx.node_name.as_str()) {
        return Ok(Action::await_change());
    }
    let client = ctx.client.clone();
    finalizer(&client, FINALIZER, server, |event| async move {
        match event {
            FinalizerEvent::Apply(s) => ctx.apply(&s).await,
            FinalizerEvent::Cleanup(s) => ctx.cleanup(&s).await,
        }
    })
    .await
}

/// Backs off after a failed reconcile.
pub fn error_policy(
    _server: Arc<Server>,
    err: &FinalizerError<ServerError>,
    _ctx: Arc<ServerContext>,
) -> Action {
    tracing::warn!(error = %error_chain(err), "server reconcile failed");
    Action::backoff()
}

/// Runs the server controller for `ctx`'s node (servers with `spec.nodeName=<node>`) until
/// `shutdown` completes.
pub async fn run(
    ctx: Arc<ServerContext>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let api = Api::<Server>::all(ctx.client.clone());
    let controller = Controller::new(
        api,
        watcher::Config::fields(format!("spec.nodeName={}", ctx.node_name)),
    )
    .with_config(Config {
        concurrency: ctx.config.concurrency,
        resync: Some(ctx.config.resync),
    })
    .graceful_shutdown_on(shutdown);
    // A port bound here that changes (gets its address, is attached) wakes its server: the
    // port's deviceId is the server's uid.
    let servers = controller.store();
    let controller = controller.watches(
        Api::<Port>::all(ctx.client.clone()),
        watcher::Config::fields(format!("spec.bindingHost={}", ctx.node_name)),
        move |port: &Port| {
            let Some(device) = port.spec.device_id.as_deref() else {
                return Vec::new();
            };
            servers
                .list()
                .iter()
                .filter(|s| s.metadata.uid.as_deref() == Some(device))
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect()
        },
    );
    // A volume placed here that changes (made, available) wakes the servers that use it.
    let servers = controller.store();
    let controller = controller.watches(
        Api::<Volume>::all(ctx.client.clone()),
        watcher::Config::fields(format!("status.node={}", ctx.node_name)),
        move |volume: &Volume| {
            servers
                .list()
                .iter()
                .filter(|s| {
                    s.metadata.project == volume.metadata.project
                        && (s
                            .spec
                            .volumes
                            .iter()
                            .any(|v| v.volume == volume.metadata.name)
                            || s.spec.boot_volume.as_deref() == Some(volume.metadata.name.as_str()))
                })
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect()
        },
    );
    controller.run(reconcile, error_policy, ctx).await;
}

impl ServerContext {
    async fn apply(&self, server: &Server) -> Result<Action, ServerError> {
        let uid = server_uid(server)?;
        let mut obs = Observation::default();
        let result = self.converge(server, uid, &mut obs).await;
        let next = derive_status(server, &obs, &self.node_name, Utc::now());
        self.write_status(server, uid, next).await?;
        result
    }

    /// Writes `next` when it differs from the stored status.
    async fn write_status(
        &self,
        server: &Server,
        uid: Uuid,
        next: ServerStatus,
    ) -> Result<bool, ServerError> {
        if next == server.status {
            return Ok(false);
        }
        let mut updated = server.clone();
        updated.status = next;
        let api = Api::<Server>::for_object(self.client.clone(), server);
        match api.replace_status(&updated).await {
            Ok(_) => {
                *lock(&self.writes).entry(uid).or_default() += 1;
                tracing::debug!(phase = ?updated.status.phase, "status written");
                Ok(true)
            }
            // A newer version exists; its change event reconciles again.
            Err(e) if e.is_conflict() || e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn state_of(&self, name: &DomainName) -> Result<Option<DomainState>, HypervisorError> {
        let n = name.clone();
        self.hv(HypervisorOp::DomainState, move |d| d.domain_state(&n))
            .await
    }

    async fn converge(
        &self,
        server: &Server,
        uid: Uuid,
        obs: &mut Observation,
    ) -> Result<Action, ServerError> {
        let name = DomainName::for_server(uid);
        let state = match self.state_of(&name).await {
            Ok(s) => s,
            Err(e) => {
                obs.domain = Some(Err(e.to_string()));
                return Err(e.into());
            }
        };
        let mut retry_later: Option<ServerError> = None;
        // The volumes the server should have; unknown (None) when preparing failed, and then
        // nothing is attached or detached.
        let mut wanted_volumes: Option<Vec<VolumeDisk>> = None;
        match self.prepare(server, uid).await {
            Ok((spec, image_msg, addresses)) => {
                wanted_volumes = Some(spec.volumes.clone());
                if !spec.volumes.is_empty() {
                    obs.volumes = Some(Observed::new(
                        ConditionStatus::True,
                        "VolumesReady",
                        format!("{} volume(s) on this node", spec.volumes.len()),
                    ));
                }
                if !server.spec.networks.is_empty() {
                    obs.network = Some(Observed::new(
                        ConditionStatus::True,
                        "PortsReady",
                        format!("{} NIC(s) on the integration bridge", spec.nics.len()),
                    ));
                }
                obs.addresses = Some(addresses);
                obs.image = Some(Observed::new(
                    ConditionStatus::True,
                    "ImageCached",
                    image_msg,
                ));
                obs.disk = Some(Observed::new(
                    ConditionStatus::True,
                    "DiskReady",
                    format!("root disk {}", spec.root_disk.display()),
                ));
                let outcome = self
                    .hv(HypervisorOp::DomainEnsure, move |d| d.domain_ensure(&spec))
                    .await;
                match outcome {
                    Ok(o) => tracing::debug!(outcome = ?o, "domain ensured"),
                    Err(e) => {
                        obs.domain = Some(match &e {
                            e if e.is_unreachable() => Err(e.to_string()),
                            _ => Ok(state),
                        });
                        if !e.retryable() && state.is_none() {
                            obs.fatal = Some(("InvalidDomainSpec".into(), e.to_string()));
                            return Ok(Action::await_change());
                        }
                        return Err(e.into());
                    }
                }
            }
            Err(f) if state.is_some() => {
                // The domain exists and keeps its disk: manage its power, retry later.
                tracing::warn!(reason = f.reason, message = %f.message, "preparing the domain failed; keeping the existing one");
                retry_later = Some(f.error);
            }
            Err(f) => {
                let status = if f.permanent {
                    ConditionStatus::False
                } else if matches!(f.error, ServerError::Api(_)) {
                    ConditionStatus::Unknown
                } else {
                    ConditionStatus::False
                };
                let o = Observed::new(status, f.reason, f.message.clone());
                match f.step {
                    PrepStep::Image => obs.image = Some(o),
                    PrepStep::Disk => obs.disk = Some(o),
                    PrepStep::Network => {
                        obs.network = Some(o);
                        obs.task = Some("networking".into());
                    }
                    PrepStep::Volumes => {
                        obs.volumes = Some(o);
                        obs.task = Some("block_device_mapping".into());
                    }
                }
                obs.domain = Some(Ok(None));
                if f.permanent {
                    obs.fatal = Some((f.reason.to_string(), f.message));
                    return Ok(Action::await_change());
                }
                return Err(f.error);
            }
        }
        let action = self.power(server, uid, &name, obs).await;
        let synced = match &wanted_volumes {
            Some(wanted) => self.sync_volumes(server, &name, wanted).await,
            None => Ok(false),
        };
        let action = match (action, synced) {
            (Ok(a), Ok(true)) => Ok(match a.requeue_after() {
                Some(d) if d < DETACH_POLL => a,
                _ => Action::requeue(DETACH_POLL),
            }),
            (Ok(a), Ok(false)) => Ok(a),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        };
        let after = self.state_of(&name).await;
        obs.domain = Some(after.map_err(|e| e.to_string()));
        let action = action?;
        match retry_later {
            Some(e) => Err(e),
            None => Ok(action),
        }
    }

    /// Resolves and caches the images, ensures the root disk, builds the domain spec.
    async fn prepare(
        &self,
        server: &Server,
        uid: Uuid,
    ) -> Result<(DomainSpec, String, BTreeMap<String, Vec<ServerAddress>>), PrepFailure> {
        let project = server.metadata.project.clone().unwrap_or_default();
        let flavor = Api::<Flavor>::all(self.client.clone())
            .get_opt(&server.spec.flavor)
            .await
            .map_err(|e| PrepFailure::disk("ApiUnavailable", false, e.into()))?
            .ok_or_else(|| {
                PrepFailure::disk(
                    "FlavorNotFound",
                    true,
                    ServerError::Prepare(format!("flavor {:?} does not exist", server.spec.flavor)),
                )
            })?;
        let (nics, addresses) = self.nics(server, uid, &project).await?;
        let paths = InstancePaths::new(&self.state_dir, uid);
        let mut cached: Vec<String> = Vec::new();
        // The root disk and the image its boot settings come from: an overlay on the image,
        // or the boot volume itself (booted with the settings of the image it was made from,
        // like Nova's volume_image_metadata).
        let (root_disk, image) = match (
            server.spec.image.as_deref(),
            server.spec.boot_volume.as_deref(),
        ) {
            (Some(image_name), _) => {
                let image = self.resolve(&project, image_name).await?;
                let base = self.cache(&image).await?;
                cached.push(image_name.to_string());
                let root = RootDisk {
                    base,
                    base_format: image.spec.disk_format,
                    size_gib: flavor.spec.disk,
                    virtual_size: image.status.virtual_size,
                };
                disks::root_disk_ensure(&paths, &root).await.map_err(|e| {
                    let permanent = e.is_permanent();
                    let reason = match &e {
                        DiskError::BaseCorrupt { .. } => "BaseImageCorrupt",
                        DiskError::UnsupportedFormat(_) => "UnsupportedDiskFormat",
                        DiskError::ImageRefused { .. } => "ImageRefused",
                        DiskError::TooSmall { .. } => "FlavorDiskTooSmall",
                        _ => "DiskCreateFailed",
                    };
                    PrepFailure::disk(reason, permanent, e.into())
                })?;
                (paths.disk.clone(), Some(image))
            }
            (None, Some(volume)) => {
                // No root overlay, but the instance directory still holds the console log
                // (and a config drive).
                tokio::fs::create_dir_all(&paths.dir).await.map_err(|e| {
                    PrepFailure::disk("InstanceDirFailed", false, ServerError::Io(e))
                })?;
                let (path, source_image) = self.boot_volume(&project, volume).await?;
                let image = match source_image {
                    Some(name) => Some(self.resolve(&project, &name).await?),
                    None => None,
                };
                (path, image)
            }
            (None, None) => {
                return Err(PrepFailure::image(
                    "NoBootSource",
                    true,
                    ServerError::Prepare(
                        "the server names neither an image nor a boot volume".into(),
                    ),
                ));
            }
        };
        let kernel_boot = match &image {
            Some(image) => {
                self.kernel_boot(server, &project, image, &mut cached)
                    .await?
            }
            None => None,
        };
        let config_drive = if server.spec.config_drive {
            Some(self.config_drive(server, &paths).await?)
        } else {
            None
        };
        let volumes = self
            .volume_disks(server, uid, &project, config_drive.is_some())
            .await?;
        let host = self
            .host_info()
            .await
            .map_err(|e| PrepFailure::disk("HypervisorUnreachable", false, e.into()))?;
        let spec = DomainSpec {
            server_uid: uid,
            server_name: server.metadata.name.clone(),
            project,
            virt_type: host.virt_type(),
            vcpus: flavor.spec.vcpus,
            memory_mib: flavor.spec.ram,
            root_disk,
            kernel_boot,
            console_log: paths.console_log.clone(),
            nics,
            config_drive,
            volumes,
        };
        Ok((
            spec,
            format!("cached on the node: {}", cached.join(", ")),
            addresses,
        ))
    }

    /// The server's config drive image (`config.iso` in its instance directory), built once
    /// from the API's rendering of its metadata: like Nova, the drive is written when the
    /// server is first built and not rewritten afterwards.
    async fn config_drive(
        &self,
        server: &Server,
        paths: &InstancePaths,
    ) -> Result<PathBuf, PrepFailure> {
        let iso = paths.dir.join("config.iso");
        if iso.exists() {
            return Ok(iso);
        }
        let project = server.metadata.project.clone().unwrap_or_default();
        let failed = |e: crate::configdrive::ConfigDriveError| {
            PrepFailure::disk(
                "ConfigDriveFailed",
                false,
                ServerError::Prepare(format!("config drive: {e}")),
            )
        };
        let files = crate::configdrive::fetch_files(&self.client, &project, &server.metadata.name)
            .await
            .map_err(failed)?;
        let target = iso.clone();
        tokio::task::spawn_blocking(move || crate::configdrive::build_iso(&files, &target))
            .await
            .map_err(|e| {
                PrepFailure::disk(
                    "ConfigDriveFailed",
                    false,
                    ServerError::Prepare(format!("config drive task: {e}")),
                )
            })?
            .map_err(failed)?;
        Ok(iso)
    }

    /// The kernel, initrd and command line of an AMI-style `image` (its `kernel_id` /
    /// `ramdisk_id` / `os_command_line` properties), cached on the node; `None` for images
    /// that boot from their disk.
    async fn kernel_boot(
        &self,
        server: &Server,
        project: &str,
        image: &Image,
        cached: &mut Vec<String>,
    ) -> Result<Option<KernelBoot>, PrepFailure> {
        let image_project = image
            .metadata
            .project
            .clone()
            .unwrap_or_else(|| project.to_string());
        let props = &image.spec.properties;
        let Some(kernel_id) = props.get("kernel_id") else {
            return Ok(None);
        };
        let kernel = self.resolve(&image_project, kernel_id).await?;
        let kernel_path = self.cache(&kernel).await?;
        cached.push(kernel_id.clone());
        let initrd = match props.get("ramdisk_id") {
            Some(ramdisk_id) => {
                let ramdisk = self.resolve(&image_project, ramdisk_id).await?;
                cached.push(ramdisk_id.clone());
                Some(self.cache(&ramdisk).await?)
            }
            None => None,
        };
        let base_cmdline = props
            .get("os_command_line")
            .map(String::as_str)
            .unwrap_or("console=ttyS0");
        Ok(Some(KernelBoot {
            kernel: kernel_path,
            initrd,
            cmdline: format!("{base_cmdline} cirrus.marker={}", server.metadata.name),
        }))
    }

    /// The boot volume's data on this host (it must be placed here and ready) and the name
    /// of the image it was made from (for its boot settings).
    async fn boot_volume(
        &self,
        project: &str,
        name: &str,
    ) -> Result<(PathBuf, Option<String>), PrepFailure> {
        let waiting = |message: String| {
            PrepFailure::new(
                PrepStep::Volumes,
                "BootVolumeNotReady",
                false,
                ServerError::Prepare(message),
            )
        };
        let volume = Api::<Volume>::in_project(self.client.clone(), project)
            .get_opt(name)
            .await
            .map_err(|e| PrepFailure::new(PrepStep::Volumes, "ApiUnavailable", false, e.into()))?
            .ok_or_else(|| waiting(format!("boot volume {name:?} does not exist")))?;
        if volume.status.node.as_deref() != Some(self.node_name.as_str())
            || !matches!(
                volume.status.phase,
                Some(VolumePhase::Available | VolumePhase::InUse)
            )
        {
            return Err(waiting(format!(
                "boot volume {name:?} is not ready on this node yet ({:?})",
                volume.status.phase
            )));
        }
        let vuid = volume
            .metadata
            .uid
            .as_deref()
            .and_then(|u| Uuid::try_parse(u).ok())
            .ok_or_else(|| waiting(format!("boot volume {name:?} has no uid")))?;
        let pool_name = volume.status.pool.clone().unwrap_or_default();
        let pool = self
            .pools
            .get(&pool_name)
            .cloned()
            .ok_or_else(|| waiting(format!("this node has no pool {pool_name:?}")))?;
        let verify = pool.clone();
        let info = tokio::task::spawn_blocking(move || pool.volume_info(vuid))
            .await
            .map_err(|e| waiting(format!("volume task: {e}")))?
            .map_err(|e| waiting(format!("boot volume {name:?}: {e}")))?
            .ok_or_else(|| waiting(format!("boot volume {name:?} is not made yet")))?;
        let label = format!("boot volume {name:?}");
        verify_volume(
            verify,
            vuid,
            label,
            "BootVolumeRefused",
            "BootVolumeNotReady",
        )
        .await?;
        match (info.path, info.format) {
            (Some(path), crate::volumes::VolumeFormat::Qcow2) => {
                let source_image = volume
                    .spec
                    .source
                    .as_ref()
                    .filter(|s| s.type_ == cirrus_crds::kinds::volume::VolumeSourceType::Image)
                    .and_then(|s| s.name.clone());
                Ok((path, source_image))
            }
            _ => Err(PrepFailure::new(
                PrepStep::Volumes,
                "BootVolumeUnsupported",
                true,
                ServerError::Prepare(format!(
                    "boot volume {name:?} must be a qcow2 volume of a file pool (raw boot volumes are not supported yet)"
                )),
            )),
        }
    }

    /// The server's data volumes as disks (boot volume excluded): each must be placed on this
    /// node, made, and reachable from the host. A volume already attached keeps its target;
    /// the others take the requested device or the next free `vdX`.
    async fn volume_disks(
        &self,
        server: &Server,
        uid: Uuid,
        project: &str,
        config_drive: bool,
    ) -> Result<Vec<VolumeDisk>, PrepFailure> {
        let entries: Vec<_> = server
            .spec
            .volumes
            .iter()
            .filter(|v| server.spec.boot_volume.as_deref() != Some(v.volume.as_str()))
            .collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let waiting = |message: String| {
            PrepFailure::new(
                PrepStep::Volumes,
                "VolumesNotReady",
                false,
                ServerError::Prepare(message),
            )
        };
        let name = DomainName::for_server(uid);
        let current = match self.hv(HypervisorOp::Disks, move |d| d.disks(&name)).await {
            Ok(disks) => disks,
            Err(HypervisorError::NotFound(_)) => Vec::new(),
            Err(e) => {
                return Err(PrepFailure::new(
                    PrepStep::Volumes,
                    "HypervisorUnreachable",
                    false,
                    e.into(),
                ));
            }
        };
        let api = Api::<Volume>::in_project(self.client.clone(), project);
        let mut out: Vec<VolumeDisk> = Vec::new();
        for entry in entries {
            let volume = api
                .get_opt(&entry.volume)
                .await
                .map_err(|e| {
                    PrepFailure::new(PrepStep::Volumes, "ApiUnavailable", false, e.into())
                })?
                .ok_or_else(|| waiting(format!("volume {:?} does not exist", entry.volume)))?;
            if volume.status.node.as_deref() != Some(self.node_name.as_str()) {
                return Err(waiting(format!(
                    "volume {:?} is not placed on this node (yet)",
                    entry.volume
                )));
            }
            if !matches!(
                volume.status.phase,
                Some(
                    VolumePhase::Available
                        | VolumePhase::InUse
                        | VolumePhase::Attaching
                        | VolumePhase::Detaching
                )
            ) {
                return Err(waiting(format!(
                    "volume {:?} is {:?}",
                    entry.volume, volume.status.phase
                )));
            }
            let vuid = volume
                .metadata
                .uid
                .as_deref()
                .and_then(|u| Uuid::try_parse(u).ok())
                .ok_or_else(|| waiting(format!("volume {:?} has no uid", entry.volume)))?;
            let pool_name = volume.status.pool.clone().unwrap_or_default();
            let pool = self.pools.get(&pool_name).cloned().ok_or_else(|| {
                waiting(format!(
                    "volume {:?} is on pool {pool_name:?}, which this node does not have",
                    entry.volume
                ))
            })?;
            let verify = pool.clone();
            let info = tokio::task::spawn_blocking(move || pool.volume_info(vuid))
                .await
                .map_err(|e| waiting(format!("volume task: {e}")))?
                .map_err(|e| waiting(format!("volume {:?}: {e}", entry.volume)))?
                .ok_or_else(|| waiting(format!("volume {:?} is not made yet", entry.volume)))?;
            let label = format!("volume {:?}", entry.volume);
            verify_volume(verify, vuid, label, "VolumeRefused", "VolumesNotReady").await?;
            let Some(path) = info.path else {
                return Err(PrepFailure::new(
                    PrepStep::Volumes,
                    "NoDataPath",
                    true,
                    ServerError::Prepare(format!(
                        "volume {:?} cannot be exposed to a guest on this host",
                        entry.volume
                    )),
                ));
            };
            let serial = VolumeDisk::serial_for(vuid);
            let taken: Vec<String> = out
                .iter()
                .map(|d| d.target.clone())
                .chain(
                    current
                        .iter()
                        .filter(|d| d.serial != serial)
                        .map(|d| d.target.clone()),
                )
                .collect();
            let requested = entry
                .device
                .as_deref()
                .map(|d| d.trim_start_matches("/dev/").to_string())
                .filter(|t| !taken.contains(t));
            let target = current
                .iter()
                .find(|d| d.serial == serial)
                .map(|d| d.target.clone())
                .or(requested)
                .or_else(|| {
                    crate::hypervisor::pick_volume_target(
                        taken.iter().map(String::as_str),
                        config_drive,
                    )
                })
                .ok_or_else(|| waiting("no free disk target (vdb..vdz) left".into()))?;
            out.push(VolumeDisk {
                target,
                path,
                format: match info.format {
                    crate::volumes::VolumeFormat::Raw => crate::hypervisor::DiskFormat::Raw,
                    crate::volumes::VolumeFormat::Qcow2 => crate::hypervisor::DiskFormat::Qcow2,
                },
                serial,
                readonly: false,
            });
        }
        Ok(out)
    }

    /// Attaches the wanted volumes the domain lacks and detaches the ones no longer wanted,
    /// then reports each volume of the project this server holds or held (`in-use` with its
    /// device, `detaching` while the guest still has it, `available` once released). Returns
    /// whether a detach is still pending.
    async fn sync_volumes(
        &self,
        server: &Server,
        name: &DomainName,
        wanted: &[VolumeDisk],
    ) -> Result<bool, ServerError> {
        let current = {
            let n = name.clone();
            match self.hv(HypervisorOp::Disks, move |d| d.disks(&n)).await {
                Ok(disks) => disks,
                Err(HypervisorError::NotFound(_)) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        };
        if wanted.is_empty() && current.is_empty() && server.spec.boot_volume.is_none() {
            return Ok(false);
        }
        if matches!(self.state_of(name).await?, Some(DomainState::Saved)) {
            // A saved domain's device state must not change until it runs again.
            return Ok(false);
        }
        // One volume that cannot be attached (no free PCIe slot left, a backend error) must
        // not stop the others, nor the status report of what the guest really holds.
        let mut failed: Option<ServerError> = None;
        for disk in wanted {
            if !current.iter().any(|c| c.serial == disk.serial) {
                let (n, d) = (name.clone(), disk.clone());
                match self
                    .hv(HypervisorOp::DiskAttach, move |h| h.disk_attach(&n, &d))
                    .await
                {
                    Ok(()) => {
                        tracing::info!(target = %disk.target, serial = %disk.serial, "volume attached");
                    }
                    Err(e) => {
                        tracing::warn!(target = %disk.target, serial = %disk.serial, error = %e, "attaching a volume failed");
                        failed.get_or_insert(e.into());
                    }
                }
            }
        }
        let mut pending = Vec::new();
        for disk in &current {
            if !wanted.iter().any(|w| w.serial == disk.serial) {
                let (n, t) = (name.clone(), disk.target.clone());
                let state = self
                    .hv(HypervisorOp::DiskDetach, move |h| h.disk_detach(&n, &t))
                    .await?;
                if state == DetachState::Pending {
                    pending.push(disk.serial.clone());
                }
            }
        }
        let attached = {
            let n = name.clone();
            match self.hv(HypervisorOp::Disks, move |d| d.disks(&n)).await {
                Ok(disks) => disks,
                Err(HypervisorError::NotFound(_)) => Vec::new(),
                Err(e) => return Err(e.into()),
            }
        };
        self.report_volumes(
            server,
            &attached,
            &pending,
            server.spec.boot_volume.as_deref(),
        )
        .await?;
        match failed {
            Some(e) => Err(e),
            None => Ok(!pending.is_empty()),
        }
    }

    /// Writes the attachment state of the project's volumes as seen on this server's
    /// domain: `attached` disks are `in-use` by it, `pending` serials are `detaching`, and
    /// any other volume still listing an attachment to it is released (`available` when
    /// nothing else holds it). `root` is the boot volume, held as `vda` while the domain
    /// exists.
    async fn report_volumes(
        &self,
        server: &Server,
        attached: &[VolumeDisk],
        pending: &[String],
        root: Option<&str>,
    ) -> Result<(), ServerError> {
        let project = server.metadata.project.clone().unwrap_or_default();
        let api = Api::<Volume>::in_project(self.client.clone(), &project);
        // A server's volumes live on its node (the volume controller places them there), and
        // a node agent may only list the volumes placed on it.
        let here = ListParams::default().fields(format!("status.node={}", self.node_name));
        let volumes = api.list_all_matching(&here).await?;
        let me = server.metadata.name.as_str();
        for volume in volumes.items {
            let Some(vuid) = volume
                .metadata
                .uid
                .as_deref()
                .and_then(|u| Uuid::try_parse(u).ok())
            else {
                continue;
            };
            let serial = VolumeDisk::serial_for(vuid);
            let mine = volume.status.attachments.iter().any(|a| a.server == me);
            let mut attachments: Vec<VolumeAttachment> = volume
                .status
                .attachments
                .iter()
                .filter(|a| a.server != me)
                .cloned()
                .collect();
            let root_disk = (root == Some(volume.metadata.name.as_str())).then(|| VolumeDisk {
                target: "vda".into(),
                path: PathBuf::new(),
                format: crate::hypervisor::DiskFormat::Qcow2,
                serial: serial.clone(),
                readonly: false,
            });
            let phase = if let Some(disk) = attached
                .iter()
                .find(|d| d.serial == serial)
                .or(root_disk.as_ref())
            {
                let previous = volume.status.attachments.iter().find(|a| a.server == me);
                attachments.push(VolumeAttachment {
                    server: me.to_string(),
                    device: Some(format!("/dev/{}", disk.target)),
                    node: Some(self.node_name.clone()),
                    attached_at: previous.and_then(|a| a.attached_at).or(Some(Utc::now())),
                });
                if pending.contains(&serial) {
                    VolumePhase::Detaching
                } else {
                    VolumePhase::InUse
                }
            } else if mine {
                if attachments.is_empty() {
                    VolumePhase::Available
                } else {
                    VolumePhase::InUse
                }
            } else {
                continue;
            };
            if volume.status.phase == Some(phase) && volume.status.attachments == attachments {
                continue;
            }
            // Conditioned on the version read: a concurrent write (the volume reconciler)
            // makes this one fail and the next reconcile decides again from fresh data.
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": volume.metadata.resource_version},
                "status": {"phase": phase, "attachments": attachments},
            });
            match api.patch_status(&volume.metadata.name, &patch).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The server's NICs (one per `spec.networks` entry, in order) and its addresses, from
    /// its ports. Every port must exist, be attached to this server (`deviceId`), be bound to
    /// this node and have its MAC; otherwise the server waits for the network controller.
    async fn nics(
        &self,
        server: &Server,
        uid: Uuid,
        project: &str,
    ) -> Result<(Vec<NicSpec>, BTreeMap<String, Vec<ServerAddress>>), PrepFailure> {
        let mut nics = Vec::new();
        let mut addresses: BTreeMap<String, Vec<ServerAddress>> = BTreeMap::new();
        if server.spec.networks.is_empty() {
            return Ok((nics, addresses));
        }
        let Some(host) = &self.network else {
            return Err(PrepFailure::new(
                PrepStep::Network,
                "NetworkingUnavailable",
                false,
                ServerError::Prepare(
                    "this node has no integration bridge (Open vSwitch is not available)".into(),
                ),
            ));
        };
        let uid_text = uid.hyphenated().to_string();
        let ports = Api::<Port>::in_project(self.client.clone(), project);
        let api_down =
            |e: ClientError| PrepFailure::new(PrepStep::Network, "ApiUnavailable", false, e.into());
        for (i, entry) in server.spec.networks.iter().enumerate() {
            let name = entry
                .port
                .clone()
                .unwrap_or_else(|| server_port_name(&server.metadata.name, &uid_text, i));
            let Some(port) = ports.get_opt(&name).await.map_err(api_down)? else {
                return Err(PrepFailure::waiting_for_ports(format!(
                    "waiting for port {name:?}"
                )));
            };
            if port.spec.device_id.as_deref() != Some(uid_text.as_str()) {
                return Err(PrepFailure::waiting_for_ports(format!(
                    "port {name:?} is not attached to this server yet"
                )));
            }
            if port.spec.binding_host.as_deref() != Some(self.node_name.as_str()) {
                return Err(PrepFailure::waiting_for_ports(format!(
                    "port {name:?} is not bound to node {:?} yet",
                    self.node_name
                )));
            }
            let (Some(mac), Some(port_uid)) = (
                port.status.mac_address.clone(),
                port.metadata
                    .uid
                    .as_deref()
                    .and_then(|u| Uuid::try_parse(u).ok()),
            ) else {
                return Err(PrepFailure::waiting_for_ports(format!(
                    "port {name:?} has no MAC address yet"
                )));
            };
            // The network, its subnets and DHCP ports are the network's project's: the
            // server's own, or the owner of a network shared with it.
            let owner = port.network_project().to_string();
            let network = Api::<Network>::in_project(self.client.clone(), owner.as_str())
                .get_opt(&port.spec.network)
                .await
                .map_err(api_down)?
                .ok_or_else(|| {
                    PrepFailure::waiting_for_ports(format!(
                        "network {:?} of port {name:?} does not exist",
                        port.spec.network
                    ))
                })?;
            // Like Nova waiting for Neutron's network-vif-plugged: a guest booted before its
            // network's DHCP server runs on this node would come up without an address.
            let dhcp_subnets = Api::<Subnet>::in_project(self.client.clone(), owner.as_str())
                .list_all_matching(
                    &ListParams::default().fields(format!("spec.network={}", port.spec.network)),
                )
                .await
                .map_err(api_down)?
                .items
                .into_iter()
                .any(|s| s.spec.enable_dhcp);
            if dhcp_subnets {
                let dhcp_port = dhcp_port_name(&port.spec.network, &self.node_name);
                let ready = Api::<Port>::in_project(self.client.clone(), owner.as_str())
                    .get_opt(&dhcp_port)
                    .await
                    .map_err(api_down)?
                    .is_some_and(|p| p.status.phase == Some(NetworkPhase::Active));
                if !ready {
                    return Err(PrepFailure::waiting_for_ports(format!(
                        "DHCP for network {:?} is not running on this node yet (port {dhcp_port:?})",
                        port.spec.network
                    )));
                }
            }
            let network_uid = network.metadata.uid.clone().unwrap_or_default();
            let tag = host.local_vlan(&network_uid).map_err(|e| {
                PrepFailure::new(
                    PrepStep::Network,
                    "LocalVlanUnavailable",
                    false,
                    ServerError::Prepare(e.to_string()),
                )
            })?;
            nics.push(NicSpec {
                bridge: host.bridge().to_string(),
                interface_id: port_uid,
                mac: mac.clone(),
                tap: NicSpec::tap_name(port_uid),
                vlan_tag: Some(tag),
                mtu: network.status.mtu,
                offload: host.nic_offload(),
            });
            let list = addresses.entry(port.spec.network.clone()).or_default();
            for ip in &port.status.fixed_ips {
                list.push(ServerAddress {
                    ip: ip.ip_address,
                    version: if ip.ip_address.is_ipv4() { 4 } else { 6 },
                    mac: Some(mac.clone()),
                    type_: AddressType::Fixed,
                    port: Some(name.clone()),
                });
            }
        }
        Ok((nics, addresses))
    }

    async fn resolve(&self, project: &str, name: &str) -> Result<Image, PrepFailure> {
        images::find_image(&self.client, project, name)
            .await
            .map_err(|e| PrepFailure::image("ApiUnavailable", false, e.into()))?
            .ok_or_else(|| {
                PrepFailure::image(
                    "ImageNotFound",
                    true,
                    ServerError::Prepare(format!(
                        "image {name:?} does not exist or is not visible to project {project:?}"
                    )),
                )
            })
    }

    async fn cache(&self, image: &Image) -> Result<PathBuf, PrepFailure> {
        self.images.ensure(image).await.map_err(|e| {
            let permanent = e.is_permanent();
            let reason = match &e {
                ImageError::NotActive { .. } if permanent => "ImageUnusable",
                ImageError::NotActive { .. } => "ImageNotActive",
                ImageError::NoChecksum { .. } => "ImageNoChecksum",
                ImageError::ChecksumMismatch { .. } => "ChecksumMismatch",
                _ => "DownloadFailed",
            };
            PrepFailure::image(reason, permanent, e.into())
        })
    }

    /// Brings the domain's power state in line with the spec; handles reboots.
    async fn power(
        &self,
        server: &Server,
        uid: Uuid,
        name: &DomainName,
        obs: &mut Observation,
    ) -> Result<Action, ServerError> {
        let Some(state) = self.state_of(name).await? else {
            // Defined a moment ago but gone: drift; the next reconcile defines it again.
            return Ok(Action::requeue(self.config.poll));
        };
        let wanted = server.spec.power_state;
        let requested = server.spec.reboot_count;
        let done = lock(&self.reboots).get(&uid).copied().unwrap_or(0);
        let reboot_pending = requested > server.status.observed_reboot_count;
        if wanted != PowerState::Stopped {
            lock(&self.stops).remove(&uid);
        }
        let call =
            |op: HypervisorOp,
             f: fn(&dyn Hypervisor, &DomainName) -> crate::hypervisor::Result<()>| {
                let n = name.clone();
                self.hv(op, move |d| f(d, &n))
            };
        let mut action = Action::await_change();
        match wanted {
            PowerState::Running => match state {
                DomainState::Running if reboot_pending => {
                    if done < requested {
                        let kind = match server.spec.reboot_type {
                            RebootType::Soft => RebootKind::Soft,
                            RebootType::Hard => RebootKind::Hard,
                        };
                        let n = name.clone();
                        let result = self
                            .hv(HypervisorOp::DomainReboot, move |d| {
                                d.domain_reboot(&n, kind)
                            })
                            .await;
                        let kind = match result {
                            Ok(()) => kind,
                            Err(HypervisorError::InvalidState { .. }) => {
                                let n = name.clone();
                                self.hv(HypervisorOp::DomainReboot, move |d| {
                                    d.domain_reboot(&n, RebootKind::Hard)
                                })
                                .await?;
                                RebootKind::Hard
                            }
                            Err(e) => return Err(e.into()),
                        };
                        tracing::info!(?kind, count = requested, "rebooted");
                        lock(&self.reboots).insert(uid, requested);
                        obs.reboot_issued = Some(kind);
                        action = Action::requeue(self.config.poll);
                    }
                    obs.observed_reboot_count = Some(requested);
                }
                DomainState::Running => {}
                DomainState::Paused | DomainState::PmSuspended => {
                    call(HypervisorOp::DomainResume, |d, n| d.domain_resume(n)).await?;
                }
                DomainState::ShuttingDown => {
                    obs.task = Some("powering-on".into());
                    action = Action::requeue(self.config.poll);
                }
                DomainState::Saved => {
                    // Restores the saved memory: not a boot, so a pending reboot is carried
                    // out by the next reconcile, on the running domain.
                    call(HypervisorOp::DomainStart, |d, n| d.domain_start(n)).await?;
                    tracing::info!("domain restored from its saved state");
                    if reboot_pending {
                        action = Action::requeue(self.config.poll);
                    }
                }
                DomainState::ShutOff | DomainState::Crashed | DomainState::NoState => {
                    call(HypervisorOp::DomainStart, |d, n| d.domain_start(n)).await?;
                    tracing::info!("domain started");
                    if reboot_pending {
                        // Starting a stopped domain is the reboot.
                        lock(&self.reboots).insert(uid, requested);
                        obs.observed_reboot_count = Some(requested);
                    }
                }
            },
            PowerState::Stopped => {
                if reboot_pending {
                    obs.observed_reboot_count = Some(requested);
                }
                match state {
                    DomainState::ShutOff | DomainState::Crashed => {
                        lock(&self.stops).remove(&uid);
                    }
                    DomainState::Saved => {
                        // Not running; the saved state is kept (see the module docs).
                        lock(&self.stops).remove(&uid);
                        obs.note = Some(
                            "the domain's suspended (saved) state is kept; Running restores it"
                                .into(),
                        );
                    }
                    DomainState::Paused => {
                        // A paused guest cannot see the ACPI button.
                        call(HypervisorOp::DomainDestroy, |d, n| d.domain_destroy(n)).await?;
                        lock(&self.stops).remove(&uid);
                    }
                    _ => {
                        let started = lock(&self.stops).get(&uid).copied();
                        match started {
                            None => {
                                call(HypervisorOp::DomainShutdown, |d, n| d.domain_shutdown(n))
                                    .await?;
                                lock(&self.stops).insert(uid, Instant::now());
                                obs.task = Some("powering-off".into());
                                action = Action::requeue(self.config.poll);
                            }
                            Some(at) if at.elapsed() >= self.config.shutdown_grace => {
                                tracing::warn!(
                                    grace = ?self.config.shutdown_grace,
                                    "guest ignored the ACPI shutdown; destroying the domain"
                                );
                                call(HypervisorOp::DomainDestroy, |d, n| d.domain_destroy(n))
                                    .await?;
                                lock(&self.stops).remove(&uid);
                            }
                            Some(at) => {
                                obs.task = Some("powering-off".into());
                                let left = self.config.shutdown_grace.saturating_sub(at.elapsed());
                                action = Action::requeue(self.config.poll.min(left));
                            }
                        }
                    }
                }
            }
            PowerState::Paused => {
                if reboot_pending {
                    obs.observed_reboot_count = Some(requested);
                }
                match state {
                    DomainState::Paused => {}
                    DomainState::Running => {
                        call(HypervisorOp::DomainSuspend, |d, n| d.domain_suspend(n)).await?;
                    }
                    DomainState::ShutOff
                    | DomainState::Saved
                    | DomainState::Crashed
                    | DomainState::NoState => {
                        // From Saved, start restores the guest, which is then paused.
                        call(HypervisorOp::DomainStart, |d, n| d.domain_start(n)).await?;
                        call(HypervisorOp::DomainSuspend, |d, n| d.domain_suspend(n)).await?;
                    }
                    DomainState::ShuttingDown | DomainState::PmSuspended => {
                        action = Action::requeue(self.config.poll);
                    }
                }
            }
            PowerState::Suspended => {
                if reboot_pending {
                    obs.observed_reboot_count = Some(requested);
                }
                match state {
                    DomainState::Saved => {}
                    DomainState::Running | DomainState::Paused => {
                        call(HypervisorOp::DomainSave, |d, n| d.domain_save(n)).await?;
                        tracing::info!("domain suspended to disk (managed save)");
                    }
                    DomainState::ShutOff | DomainState::Crashed | DomainState::NoState => {
                        // Like Paused from shut off: boot, then save what runs.
                        call(HypervisorOp::DomainStart, |d, n| d.domain_start(n)).await?;
                        call(HypervisorOp::DomainSave, |d, n| d.domain_save(n)).await?;
                    }
                    DomainState::ShuttingDown | DomainState::PmSuspended => {
                        action = Action::requeue(self.config.poll);
                    }
                }
            }
        }
        Ok(action)
    }

    async fn cleanup(&self, server: &Server) -> Result<Action, ServerError> {
        let Ok(uid) = server_uid(server) else {
            return Ok(Action::await_change());
        };
        let name = DomainName::for_server(uid);
        self.hv(HypervisorOp::DomainDelete, move |d| d.domain_delete(&name))
            .await?;
        disks::instance_delete(&InstancePaths::new(&self.state_dir, uid)).await?;
        // The domain is gone and with it every attachment: release the volumes.
        self.report_volumes(server, &[], &[], None).await?;
        lock(&self.stops).remove(&uid);
        lock(&self.reboots).remove(&uid);
        tracing::info!("domain and instance files removed");
        Ok(Action::await_change())
    }
}

/// What one [`orphans_sweep`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Domains deleted.
    pub domains: Vec<DomainName>,
    /// Instance directories removed (server uids).
    pub instance_dirs: Vec<Uuid>,
}

/// Deletes every Cirrus domain and instance directory whose uid belongs to no server bound to
/// this node — among the domains this agent made (those with an instance directory in its state
/// dir), so other agents or tools sharing the hypervisor are never touched.
///
/// Domains and directories are listed *before* the servers, so anything a reconcile creates
/// for a server bound meanwhile is either not listed or belongs to a listed server; only a
/// successful list of the node's servers counts as evidence.
///
/// # Errors
/// Listing failed (nothing is deleted) or a deletion failed.
pub async fn orphans_sweep(ctx: &ServerContext) -> Result<SweepReport, ServerError> {
    let domains = ctx
        .hv(HypervisorOp::DomainList, |d| d.domain_list())
        .await?;
    let state_dir = ctx.state_dir.clone();
    let dirs = tokio::task::spawn_blocking(move || disks::instance_list(&state_dir))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
    let params = ListParams::default().fields(format!("spec.nodeName={}", ctx.node_name));
    let servers = Api::<Server>::all(ctx.client.clone())
        .list_all_matching(&params)
        .await?;
    let known: HashSet<Uuid> = servers
        .items
        .iter()
        .filter_map(|s| server_uid(s).ok())
        .collect();
    // Only domains this agent made are its to remove: every domain it defines has an instance
    // directory in its state dir first (the disk is made before the domain, and removed after
    // it). Domains of other agents or tools sharing the hypervisor are never touched.
    let ours: HashSet<Uuid> = dirs.iter().copied().collect();
    let mut report = SweepReport::default();
    for d in domains {
        let uid = d.name.server_uid();
        if known.contains(&uid) || !ours.contains(&uid) {
            continue;
        }
        tracing::warn!(domain = %d.name, "deleting orphaned domain");
        let name = d.name.clone();
        ctx.hv(HypervisorOp::DomainDelete, move |h| h.domain_delete(&name))
            .await?;
        report.domains.push(d.name);
    }
    for uid in dirs {
        if known.contains(&uid) {
            continue;
        }
        tracing::warn!(%uid, "removing orphaned instance directory");
        disks::instance_delete(&InstancePaths::new(&ctx.state_dir, uid)).await?;
        report.instance_dirs.push(uid);
    }
    Ok(report)
}

/// The last `max_bytes` of the serial console log of the server with `server_uid` on this
/// node (a plain file read; `None` when the server has no log here). For
/// `cirrus console-log` and Nova's `os-getConsoleOutput`.
///
/// # Errors
/// The log exists but cannot be read.
pub fn console_log(
    state_dir: &Path,
    server_uid: Uuid,
    max_bytes: u64,
) -> std::io::Result<Option<String>> {
    disks::console_log_tail(
        &InstancePaths::new(state_dir, server_uid).console_log,
        max_bytes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::{ObjectMeta, ServerSpec};

    fn server() -> Server {
        let mut s = Server::new(
            ObjectMeta {
                name: "vm".into(),
                project: Some("demo".into()),
                uid: Some(Uuid::new_v4().to_string()),
                generation: Some(1),
                ..Default::default()
            },
            ServerSpec {
                flavor: "small".into(),
                image: Some("guest".into()),
                node_name: Some("n1".into()),
                ..Default::default()
            },
        );
        s.status.phase = Some(ServerPhase::Build);
        s
    }

    fn ok(reason: &str) -> Option<Observed> {
        Some(Observed::new(ConditionStatus::True, reason, "ok"))
    }

    fn running() -> Observation {
        Observation {
            image: ok("ImageCached"),
            disk: ok("DiskReady"),
            domain: Some(Ok(Some(DomainState::Running))),
            ..Default::default()
        }
    }

    #[test]
    fn active_once_running_and_stable_afterwards() {
        let mut s = server();
        let now = Utc::now();
        let st = derive_status(&s, &running(), "n1", now);
        assert_eq!(st.phase, Some(ServerPhase::Active));
        assert_eq!(st.launched_at, Some(now));
        assert_eq!(st.power_state, Some(ObservedPowerState::Running));
        assert!(Condition::is_true(&st.conditions, READY));
        s.status = st.clone();
        let later = now + chrono::Duration::seconds(30);
        assert_eq!(
            derive_status(&s, &running(), "n1", later),
            st,
            "no write on resync"
        );
    }

    #[test]
    fn unreachable_is_unknown_never_error() {
        let mut s = server();
        s.status = derive_status(&s, &running(), "n1", Utc::now());
        let obs = Observation {
            domain: Some(Err("hypervisor unreachable".into())),
            ..Default::default()
        };
        let st = derive_status(&s, &obs, "n1", Utc::now());
        assert_eq!(st.phase, Some(ServerPhase::Active));
        let ready = Condition::find(&st.conditions, READY).unwrap();
        assert_eq!(ready.status, ConditionStatus::Unknown);
        assert_eq!(
            Condition::find(&st.conditions, DOMAIN_RUNNING)
                .unwrap()
                .status,
            ConditionStatus::Unknown
        );
        assert!(st.fault.is_none());
    }

    #[test]
    fn positive_evidence_is_error_with_fault() {
        let s = server();
        let obs = Observation {
            image: Some(Observed::new(
                ConditionStatus::False,
                "ImageNotFound",
                "image \"guest\" does not exist",
            )),
            domain: Some(Ok(None)),
            fatal: Some((
                "ImageNotFound".into(),
                "image \"guest\" does not exist".into(),
            )),
            ..Default::default()
        };
        let st = derive_status(&s, &obs, "n1", Utc::now());
        assert_eq!(st.phase, Some(ServerPhase::Error));
        assert!(st.fault.unwrap().message.contains("ImageNotFound"));
        let ready = Condition::find(&st.conditions, READY).unwrap();
        assert_eq!(ready.reason, "ImageNotFound");
    }

    #[test]
    fn phases_follow_power_state() {
        let mut s = server();
        s.spec.power_state = PowerState::Stopped;
        let mut obs = running();
        obs.domain = Some(Ok(Some(DomainState::ShutOff)));
        assert_eq!(
            derive_status(&s, &obs, "n1", Utc::now()).phase,
            Some(ServerPhase::Shutoff)
        );
        // Suspended is suspend to disk: only a saved domain satisfies it.
        s.spec.power_state = PowerState::Suspended;
        obs.domain = Some(Ok(Some(DomainState::Saved)));
        let st = derive_status(&s, &obs, "n1", Utc::now());
        assert_eq!(st.phase, Some(ServerPhase::Suspended));
        assert_eq!(st.power_state, Some(ObservedPowerState::Suspended));
        assert!(Condition::is_true(&st.conditions, READY));
        obs.domain = Some(Ok(Some(DomainState::Paused)));
        let st = derive_status(&s, &obs, "n1", Utc::now());
        assert_eq!(st.phase, Some(ServerPhase::Paused));
        assert!(!Condition::is_true(&st.conditions, READY));
        // Stopped with a saved domain: not running, saved state kept (said so), SHUTOFF.
        s.spec.power_state = PowerState::Stopped;
        obs.domain = Some(Ok(Some(DomainState::Saved)));
        obs.note = Some("saved state is kept".into());
        let st = derive_status(&s, &obs, "n1", Utc::now());
        assert_eq!(st.phase, Some(ServerPhase::Shutoff));
        assert_eq!(st.power_state, Some(ObservedPowerState::Suspended));
        let ready = Condition::find(&st.conditions, READY).unwrap();
        assert_eq!(ready.status, ConditionStatus::True);
        assert!(ready.message.contains("saved state is kept"));
        // Running with a saved domain is a transition (the reconciler restores it).
        s.spec.power_state = PowerState::Running;
        obs.note = None;
        let st = derive_status(&s, &obs, "n1", Utc::now());
        assert_eq!(st.phase, Some(ServerPhase::Suspended));
        assert!(!Condition::is_true(&st.conditions, READY));
        s.spec.power_state = PowerState::Running;
        let mut obs = running();
        obs.reboot_issued = Some(RebootKind::Hard);
        obs.observed_reboot_count = Some(1);
        let st = derive_status(&s, &obs, "n1", Utc::now());
        assert_eq!(st.phase, Some(ServerPhase::HardReboot));
        assert_eq!(st.observed_reboot_count, 1);
    }
}
