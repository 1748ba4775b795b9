//! What every server reconcile shares: its timing ([`ServerConfig`]), the node's clients,
//! hypervisor, image cache and pools ([`ServerContext`]), and why a reconcile fails
//! ([`ServerError`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cirrus_client::{Client, ClientError};
use cirrus_crds::Server;
use tokio::time::Instant;
use uuid::Uuid;

use super::caches::{CacheWriters, Caches};
use crate::disks::DiskError;
use crate::hypervisor::{
    DomainName, DomainState, HostInfo, Hypervisor, HypervisorError, HypervisorOp,
};
use crate::images::{ImageCache, ImageError};
use crate::net::host::HostNetwork;

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
    /// The node's cache of this kind has not synced yet: not known yet, retried.
    #[error("the node's cache of {0} objects has not synced yet")]
    NotSynced(&'static str),
}

/// What the server reconciler shares.
#[derive(Debug)]
pub struct ServerContext {
    pub(super) client: Client,
    pub(super) node_name: String,
    pub(super) state_dir: PathBuf,
    pub(super) driver: Arc<dyn Hypervisor>,
    pub(super) images: ImageCache,
    pub(super) config: ServerConfig,
    pub(super) host: Mutex<Option<HostInfo>>,
    /// When an ACPI shutdown was requested, per server.
    pub(super) stops: Mutex<HashMap<Uuid, Instant>>,
    /// The highest `rebootCount` carried out, per server (so a lost status write never
    /// reboots twice).
    pub(super) reboots: Mutex<HashMap<Uuid, u64>>,
    /// Status writes per server uid (observability and tests).
    pub(super) writes: Mutex<HashMap<Uuid, u64>>,
    /// The host's networking (bridge, local VLANs); `None`: this node has none, and servers
    /// with networks wait (`NetworkReady` False, `NetworkingUnavailable`).
    pub(super) network: Option<Arc<HostNetwork>>,
    /// The node's storage pools, to attach the servers' volumes from.
    pub(super) pools: crate::storage::Pools,
    /// The objects reconciles read (ports, volumes, flavors, networks, subnets).
    pub(super) caches: Caches,
    /// The caches' write side, taken by [`super::run`].
    pub(super) cache_writers: Mutex<Option<CacheWriters>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
        let (caches, cache_writers) = Caches::new();
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
            caches,
            cache_writers: Mutex::new(Some(cache_writers)),
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
    pub(super) async fn hv<T: Send + 'static>(
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

    pub(super) async fn host_info(&self) -> Result<HostInfo, HypervisorError> {
        if let Some(h) = lock(&self.host).clone() {
            return Ok(h);
        }
        let h = self.hv(HypervisorOp::HostInfo, |d| d.host_info()).await?;
        *lock(&self.host) = Some(h.clone());
        Ok(h)
    }
}

impl ServerContext {
    pub(super) async fn state_of(
        &self,
        name: &DomainName,
    ) -> Result<Option<DomainState>, HypervisorError> {
        let n = name.clone();
        self.hv(HypervisorOp::DomainState, move |d| d.domain_state(&n))
            .await
    }
}

/// The error and its sources, `: `-joined.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

pub(super) fn server_uid(server: &Server) -> Result<Uuid, ServerError> {
    server
        .metadata
        .uid
        .as_deref()
        .and_then(|u| Uuid::try_parse(u).ok())
        .ok_or_else(|| ServerError::NoUid(server.metadata.name.clone()))
}
