//! Node registration and heartbeats: this host's `Node` object and its `node-<name>` Lease.
//!
//! # Expected flow
//! 1. [`Registrar::register`] creates the `Node` when it is absent (spec left to admins:
//!    an existing `spec.unschedulable` or allocation ratio is never touched) and writes its
//!    status: capacity (vCPUs and memory from [`Hypervisor::host_info`], disk of the instances
//!    directory from `statvfs`), allocatable, hypervisor facts, architecture, agent version,
//!    `Ready=True` (reason `AgentReady`) and `lastHeartbeatTime`.
//! 2. [`Registrar::run_heartbeats`] renews the Lease `node-<name>` every
//!    [`HeartbeatConfig::lease_renew`] (holder = node name, compare-and-swap on its
//!    resourceVersion) and rewrites the Node status only when it changed or every
//!    [`HeartbeatConfig::status_refresh`] (few writes: the Lease carries liveness).
//!
//! # Guarantees
//! - Only `status` of the Node is ever written after creation (`PUT .../status`), so admin
//!   changes to `spec`, labels and annotations are kept.
//! - An unreachable hypervisor makes the node `Ready=False` (reason `HypervisorUnreachable`)
//!   with the last known capacity kept; the Lease is still renewed (the agent is alive).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cirrus_client::{Api, Client, ClientError};
use cirrus_crds::kinds::node::{NodeAddress, NodeAddressType, NodeResources, NodeStatus};
use cirrus_crds::{Condition, ConditionStatus, Lease, LeaseSpec, Node, NodeSpec, ObjectMeta};

use crate::hypervisor::{HostInfo, Hypervisor, HypervisorError};

/// The Node condition the agent owns.
pub const READY: &str = "Ready";

/// Version of this agent, reported in `status.agentVersion`.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Heartbeat timing.
#[derive(Clone, Debug)]
pub struct HeartbeatConfig {
    /// Written into the Lease as `leaseDurationSeconds`. Default 40 s.
    pub lease_duration: Duration,
    /// How often the Lease is renewed. Default 10 s.
    pub lease_renew: Duration,
    /// The Node status is rewritten at least this often even when nothing changed (its
    /// `lastHeartbeatTime`). Default 60 s.
    pub status_refresh: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(40),
            lease_renew: Duration::from_secs(10),
            status_refresh: Duration::from_secs(60),
        }
    }
}

/// Why registering or heartbeating failed (the next round is the retry).
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The API refused or could not be reached.
    #[error("API request for node {node} failed")]
    Api {
        /// The node.
        node: String,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// The instances directory could not be measured.
    #[error("statvfs of {path} failed")]
    Statvfs {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Registers one node and keeps it alive.
#[derive(Debug, Clone)]
pub struct Registrar {
    /// Storage pools reported in `Node.status.storagePools`.
    pools: crate::storage::Pools,
    client: Client,
    node_name: String,
    instances_dir: PathBuf,
    driver: Arc<dyn Hypervisor>,
    config: HeartbeatConfig,
    endpoint: Option<String>,
}

/// Total size of the filesystem holding `dir`, in GiB (rounded down).
///
/// # Errors
/// The `statvfs` call failed (the directory does not exist, ...).
pub fn disk_capacity_gib(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(st.f_blocks.saturating_mul(st.f_frsize) >> 30)
}

/// The `Ready` condition of a node (pure).
pub fn ready_condition(host: Result<&HostInfo, &HypervisorError>, now: DateTime<Utc>) -> Condition {
    let (status, reason, message) = match host {
        Ok(h) => (
            ConditionStatus::True,
            "AgentReady",
            format!(
                "node agent {AGENT_VERSION} is ready; {} {} ({})",
                h.hypervisor_type, h.hypervisor_version, h.kvm_detail
            ),
        ),
        Err(e) if e.is_unreachable() => (
            ConditionStatus::False,
            "HypervisorUnreachable",
            e.to_string(),
        ),
        Err(e) => (ConditionStatus::False, "HypervisorError", e.to_string()),
    };
    Condition {
        type_: READY.into(),
        status,
        reason: reason.into(),
        message,
        last_transition_time: Some(now),
        observed_generation: None,
    }
}

/// The node status the agent wants, from what it observed (pure). Keeps `previous` values it
/// could not observe (capacity when the hypervisor is unreachable) and the heartbeat time.
pub fn desired_status(
    previous: &NodeStatus,
    spec: &NodeSpec,
    host: Result<&HostInfo, &HypervisorError>,
    disk_gib: Option<u64>,
    now: DateTime<Utc>,
) -> NodeStatus {
    let mut status = previous.clone();
    if let Ok(h) = host {
        status.capacity.vcpus = h.vcpus;
        status.capacity.memory_mib = h.memory_mib;
        status.hypervisor_type = Some(h.hypervisor_type.clone());
        status.hypervisor_version = Some(h.hypervisor_version.clone());
        status.hypervisor_hostname = Some(h.hostname.clone());
        status.addresses = vec![NodeAddress {
            type_: NodeAddressType::Hostname,
            address: h.hostname.clone(),
        }];
    }
    if let Some(disk) = disk_gib {
        status.capacity.disk_gib = disk;
    }
    let scale = |value: u64, reserved: u64, ratio: f64| -> u64 {
        (value.saturating_sub(reserved) as f64 * ratio).floor() as u64
    };
    status.allocatable = NodeResources {
        vcpus: scale(
            u64::from(status.capacity.vcpus),
            u64::from(spec.reserved_host_cpus),
            spec.cpu_allocation_ratio,
        )
        .min(u64::from(u32::MAX)) as u32,
        memory_mib: scale(
            status.capacity.memory_mib,
            spec.reserved_host_memory_mib,
            spec.ram_allocation_ratio,
        ),
        disk_gib: scale(
            status.capacity.disk_gib,
            spec.reserved_host_disk_gib,
            spec.disk_allocation_ratio,
        ),
    };
    status.architecture = Some(std::env::consts::ARCH.to_string());
    status.agent_version = Some(AGENT_VERSION.to_string());
    Condition::set(&mut status.conditions, ready_condition(host, now));
    status
}

/// The address of this host the API at `base_url` is reached from (Nova's `my_ip`: the
/// source address of the route towards the control plane), found by connecting a UDP socket
/// (which sends nothing). `None` when the URL has no resolvable host.
pub async fn address_towards(base_url: &str) -> Option<std::net::IpAddr> {
    let url = reqwest::Url::parse(base_url).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = url.port_or_known_default()?;
    let target = tokio::net::lookup_host((host, port)).await.ok()?.next()?;
    let local: std::net::SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(local).await.ok()?;
    socket.connect(target).await.ok()?;
    Some(socket.local_addr().ok()?.ip())
}

impl Registrar {
    /// A registrar of `node_name`, measuring disk at `instances_dir`.
    pub fn new(
        client: Client,
        node_name: impl Into<String>,
        instances_dir: impl Into<PathBuf>,
        driver: Arc<dyn Hypervisor>,
        config: HeartbeatConfig,
    ) -> Self {
        Self {
            client,
            node_name: node_name.into(),
            instances_dir: instances_dir.into(),
            driver,
            config,
            endpoint: None,
            pools: crate::storage::Pools::new(),
        }
    }

    /// Reports `pools` (name → backend) in `Node.status.storagePools` with every heartbeat.
    #[must_use]
    pub fn with_pools(mut self, pools: crate::storage::Pools) -> Self {
        self.pools = pools;
        self
    }

    /// The pools as the node reports them; a pool whose capacity cannot be read is left out
    /// (logged) rather than reported with stale numbers.
    async fn storage_pools(&self) -> Vec<cirrus_crds::kinds::node::StoragePool> {
        let pools = self.pools.clone();
        let observed = tokio::task::spawn_blocking(move || {
            pools
                .iter()
                .filter_map(|(name, backend)| match backend.capacity() {
                    Ok(info) => Some((name.clone(), info, backend.capabilities())),
                    Err(e) => {
                        tracing::warn!(pool = %name, error = %e, "pool capacity unreadable");
                        None
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        observed
            .into_iter()
            .map(|(name, info, caps)| {
                let mut capabilities = vec!["extend".to_string()];
                if caps.snapshots {
                    capabilities.push("snapshot".into());
                }
                if caps.data_path {
                    capabilities.push("attach".into());
                }
                if caps.cow_clones {
                    capabilities.push("clone".into());
                }
                cirrus_crds::kinds::node::StoragePool {
                    name,
                    backend: match info.kind {
                        crate::volumes::PoolKind::Lvm => {
                            cirrus_crds::kinds::node::StorageBackend::Lvm
                        }
                        _ => cirrus_crds::kinds::node::StorageBackend::File,
                    },
                    total_bytes: info.total_bytes,
                    free_bytes: info.free_bytes,
                    capabilities,
                }
            })
            .collect()
    }

    /// Publishes `endpoint` (the agent's console/log URL) in `Node.status.agentEndpoint`.
    pub fn with_endpoint(mut self, endpoint: Option<String>) -> Self {
        self.endpoint = endpoint;
        self
    }

    fn api_err(&self, source: ClientError) -> RegistrationError {
        RegistrationError::Api {
            node: self.node_name.clone(),
            source,
        }
    }

    /// The Lease name of this node: `node-<name>`.
    pub fn lease_name(&self) -> String {
        format!("node-{}", self.node_name)
    }

    async fn host_info(&self) -> Result<HostInfo, HypervisorError> {
        let driver = self.driver.clone();
        tokio::task::spawn_blocking(move || driver.host_info())
            .await
            .unwrap_or_else(|e| {
                Err(HypervisorError::Unreachable {
                    op: crate::hypervisor::HypervisorOp::HostInfo,
                    reason: format!("host_info task failed: {e}"),
                })
            })
    }

    /// Creates the Node when absent and writes its status when it changed or when `force`
    /// (or when the last heartbeat is older than the refresh period). Returns whether the
    /// status was written.
    ///
    /// # Errors
    /// API failures; a `409` (someone wrote meanwhile) is not an error, the next round retries.
    pub async fn sync_node(&self, force: bool) -> Result<bool, RegistrationError> {
        let api = Api::<Node>::all(self.client.clone());
        let node = match api
            .get_opt(&self.node_name)
            .await
            .map_err(|e| self.api_err(e))?
        {
            Some(node) => node,
            None => {
                let fresh = Node::new(
                    ObjectMeta {
                        name: self.node_name.clone(),
                        ..Default::default()
                    },
                    NodeSpec::default(),
                );
                match api.create(&fresh).await {
                    Ok(node) => {
                        tracing::info!(node = %self.node_name, "registered node");
                        node
                    }
                    Err(e) if e.is_already_exists() => api
                        .get(&self.node_name)
                        .await
                        .map_err(|e| self.api_err(e))?,
                    Err(e) => return Err(self.api_err(e)),
                }
            }
        };
        let host = self.host_info().await;
        let disk = match disk_capacity_gib(&self.instances_dir) {
            Ok(gib) => Some(gib),
            Err(e) => {
                tracing::warn!(dir = %self.instances_dir.display(), error = %e, "statvfs failed");
                None
            }
        };
        let now = Utc::now();
        let mut desired = desired_status(&node.status, &node.spec, host.as_ref(), disk, now);
        if host.is_ok()
            && let Some(ip) = address_towards(&self.client.base_url).await
        {
            desired.addresses.push(NodeAddress {
                type_: NodeAddressType::InternalIP,
                address: ip.to_string(),
            });
        }
        desired.agent_endpoint = self.endpoint.clone();
        desired.storage_pools = self.storage_pools().await;
        let stale = node
            .status
            .last_heartbeat_time
            .is_none_or(|t| (now - t).to_std().unwrap_or_default() >= self.config.status_refresh);
        if !force && !stale && desired == node.status {
            return Ok(false);
        }
        desired.last_heartbeat_time = Some(now);
        let mut updated = node;
        updated.status = desired;
        match api.replace_status(&updated).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() || e.is_not_found() => Ok(false),
            Err(e) => Err(self.api_err(e)),
        }
    }

    /// Registers the node (creates it if absent and writes its status).
    ///
    /// # Errors
    /// API failures.
    pub async fn register(&self) -> Result<(), RegistrationError> {
        self.sync_node(true).await.map(|_| ())
    }

    /// Creates or renews the Lease `node-<name>` (compare-and-swap on its resourceVersion).
    /// Returns whether it is held afterwards.
    ///
    /// # Errors
    /// API failures other than a lost race (`409`), which means "try again next round".
    pub async fn renew_lease(&self) -> Result<bool, RegistrationError> {
        let api = Api::<Lease>::all(self.client.clone());
        let now = Utc::now();
        let seconds = u32::try_from(self.config.lease_duration.as_secs())
            .unwrap_or(u32::MAX)
            .max(1);
        let written = match api
            .get_opt(&self.lease_name())
            .await
            .map_err(|e| self.api_err(e))?
        {
            None => {
                let lease = Lease::new(
                    ObjectMeta {
                        name: self.lease_name(),
                        ..Default::default()
                    },
                    LeaseSpec {
                        holder_identity: Some(self.node_name.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(now),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                    },
                );
                api.create(&lease).await
            }
            Some(mut lease) => {
                let spec = &mut lease.spec;
                if spec.holder_identity.as_deref() != Some(self.node_name.as_str()) {
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    spec.holder_identity = Some(self.node_name.clone());
                    spec.acquire_time = Some(now);
                }
                spec.renew_time = Some(now);
                spec.lease_duration_seconds = Some(seconds);
                api.replace(&lease).await
            }
        };
        match written {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() || e.is_already_exists() => Ok(false),
            Err(e) => Err(self.api_err(e)),
        }
    }

    /// Renews the Lease every `lease_renew` and refreshes the Node status when it changed (or
    /// every `status_refresh`), until `shutdown` completes. Failures are logged and retried
    /// next round.
    pub async fn run_heartbeats(&self, shutdown: impl std::future::Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tick = tokio::time::interval(self.config.lease_renew);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut shutdown => return,
            }
            if let Err(e) = self.renew_lease().await {
                tracing::warn!(node = %self.node_name, error = %e, "lease renewal failed");
            }
            if let Err(e) = self.sync_node(false).await {
                tracing::warn!(node = %self.node_name, error = %e, "node status refresh failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_internal_address_is_the_one_towards_the_api() {
        assert_eq!(
            address_towards("http://127.0.0.1:6443").await,
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(address_towards("not a url").await, None);
    }

    fn host() -> HostInfo {
        HostInfo {
            hostname: "h1".into(),
            vcpus: 4,
            memory_mib: 8192,
            hypervisor_type: "QEMU".into(),
            hypervisor_version: "8.2.2".into(),
            kvm_usable: false,
            kvm_detail: "no /dev/kvm".into(),
        }
    }

    #[test]
    fn desired_status_is_stable_and_computes_allocatable() {
        let now = Utc::now();
        let spec = NodeSpec::default();
        let h = host();
        let first = desired_status(&NodeStatus::default(), &spec, Ok(&h), Some(100), now);
        assert_eq!(first.capacity.vcpus, 4);
        assert_eq!(first.allocatable.vcpus, 16, "cpu ratio 4");
        assert_eq!(first.allocatable.memory_mib, 8192 - 512);
        assert_eq!(first.allocatable.disk_gib, 100);
        assert!(Condition::is_true(&first.conditions, READY));
        // Observing the same again later changes nothing (no write on a converged node).
        let later = now + chrono::Duration::seconds(30);
        assert_eq!(
            desired_status(&first, &spec, Ok(&h), Some(100), later),
            first
        );
    }

    #[test]
    fn unreachable_hypervisor_keeps_capacity_and_is_not_ready() {
        let now = Utc::now();
        let spec = NodeSpec::default();
        let first = desired_status(&NodeStatus::default(), &spec, Ok(&host()), Some(10), now);
        let err = HypervisorError::Unreachable {
            op: crate::hypervisor::HypervisorOp::HostInfo,
            reason: "down".into(),
        };
        let down = desired_status(&first, &spec, Err(&err), None, now);
        assert_eq!(down.capacity, first.capacity);
        let ready = Condition::find(&down.conditions, READY).unwrap();
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason, "HypervisorUnreachable");
    }

    #[test]
    fn statvfs_measures_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(disk_capacity_gib(dir.path()).is_ok());
        assert!(disk_capacity_gib(&dir.path().join("missing")).is_err());
    }
}
