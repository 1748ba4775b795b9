//! The node agent process: registration, heartbeats, the server controller and the orphan
//! sweep, run together until shutdown.
//!
//! # Expected flow
//! 1. Create `<state-dir>/images` and `<state-dir>/instances`.
//! 2. Register the `Node` (retried with backoff until the API answers; shutdown ends it).
//! 3. Run, concurrently: heartbeats (Lease renewal, Node status refresh), the server
//!    controller (servers with `spec.nodeName=<node>`), and the orphan sweep (at start, then
//!    every resync period).
//! 4. On shutdown, stop all three and return. Domains keep running: the agent going away is
//!    not a reason to stop guests.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cirrus_client::Client;
use tokio::sync::watch;
use tracing::Instrument;

use crate::hypervisor::Hypervisor;
use crate::net::host::HostNetwork;
use crate::net::ports::{self, NetworkAgent, PortsConfig};
use crate::net::switch::Switch;
use crate::registration::{HeartbeatConfig, Registrar};
use crate::servers::{self, ServerConfig, ServerContext};

/// How to run one node agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's name (the `Node` object and `spec.nodeName` of its servers).
    pub node_name: String,
    /// The API base URL, e.g. `http://127.0.0.1:6443`.
    pub api_url: String,
    /// Where the node identity's tokens come from (a password login as the node's user).
    pub auth: Option<Arc<dyn cirrus_client::auth::TokenSource>>,
    /// Where images are cached and instance files live (`images/`, `instances/`).
    pub state_dir: PathBuf,
    /// The hypervisor driver (libvirt, or the fake for hollow nodes).
    pub driver: Arc<dyn Hypervisor>,
    /// Heartbeat timing.
    pub heartbeat: HeartbeatConfig,
    /// Server reconciler timing (shutdown grace, resync, concurrency).
    pub servers: ServerConfig,
    /// Where to serve the agent endpoint (console logs for the API server to proxy); it is
    /// published in `Node.status.agentEndpoint`. `None`: not served.
    pub endpoint_listen: Option<std::net::SocketAddr>,
    /// The endpoint's TLS certificate and key: served as `https://` when set (the API then
    /// needs to trust the CA that signed it), in the clear when not.
    pub endpoint_tls: Option<cirrus_tls::ServerConfig>,
    /// Host networking (integration bridge, DHCP, metadata, security groups); `None`: the
    /// node has none and servers with networks wait (`NetworkReady` False).
    pub network: Option<NetworkConfig>,
    /// Storage pools for volumes (name → backend), reported in `Node.status.storagePools`;
    /// empty: the node holds no volumes.
    pub storage: crate::storage::Pools,
}

/// How the agent plugs guests into networks.
#[derive(Clone)]
pub struct NetworkConfig {
    /// The integration bridge, e.g. `br-int`.
    pub bridge: String,
    /// The switch driver (Open vSwitch, or the fake).
    pub switch: Arc<dyn Switch>,
    /// Host network reconciler timing.
    pub ports: PortsConfig,
}

impl std::fmt::Debug for NetworkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkConfig")
            .field("bridge", &self.bridge)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl AgentConfig {
    /// A configuration with default timings.
    pub fn new(
        node_name: impl Into<String>,
        api_url: impl Into<String>,
        state_dir: impl Into<PathBuf>,
        driver: Arc<dyn Hypervisor>,
    ) -> Self {
        Self {
            node_name: node_name.into(),
            api_url: api_url.into(),
            auth: None,
            state_dir: state_dir.into(),
            driver,
            heartbeat: HeartbeatConfig::default(),
            servers: ServerConfig::default(),
            endpoint_listen: None,
            endpoint_tls: None,
            network: None,
            storage: crate::storage::Pools::new(),
        }
    }
}

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The state directory could not be prepared.
    #[error("state directory {path} could not be created")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The agent endpoint could not listen.
    #[error("the agent endpoint cannot listen on {addr}")]
    Endpoint {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The host network state (local VLAN map) could not be loaded.
    #[error("host networking cannot start")]
    Network(#[from] crate::net::local_vlans::LocalVlanError),
    /// A component task panicked.
    #[error("node agent task {task} failed: {reason}")]
    Task {
        /// Which one.
        task: &'static str,
        /// The panic.
        reason: String,
    },
}

/// A running agent's shared server context, for tests and embedders that want to look
/// inside (status write counts, the console-log accessor's state dir).
pub type Handle = Arc<ServerContext>;

/// Runs the node agent until `shutdown` completes.
///
/// # Errors
/// The state directory cannot be created, or a component task panicked.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    run_with_handle(config, shutdown, |_| {}).await
}

/// [`run`], handing the server context to `on_start` once it exists.
///
/// # Errors
/// As [`run`].
pub async fn run_with_handle(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_start: impl FnOnce(Handle),
) -> Result<(), AgentError> {
    let span = tracing::info_span!("node_agent", node = %config.node_name);
    for dir in [
        config.state_dir.join("images"),
        crate::disks::instances_dir(&config.state_dir),
    ] {
        std::fs::create_dir_all(&dir).map_err(|source| AgentError::StateDir {
            path: dir.clone(),
            source,
        })?;
    }
    let mut client = Client::new(config.api_url.clone());
    client.auth = config.auth.clone();

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let endpoint = match config.endpoint_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| AgentError::Endpoint { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| AgentError::Endpoint { addr, source })?;
            let router = crate::console_server::router(
                config.state_dir.clone(),
                config.api_url.clone(),
                config.node_name.clone(),
            );
            let rx = stop_rx.clone();
            let scheme = if config.endpoint_tls.is_some() {
                "https"
            } else {
                "http"
            };
            let tls = config.endpoint_tls.clone();
            tokio::spawn(async move {
                let served = match tls {
                    Some(tls) => cirrus_tls::serve(listener, tls, router, stopped(rx)).await,
                    None => {
                        axum::serve(listener, router)
                            .with_graceful_shutdown(stopped(rx))
                            .await
                    }
                };
                if let Err(e) = served {
                    tracing::warn!(error = %e, "agent endpoint stopped");
                }
            });
            Some(format!("{scheme}://{local}"))
        }
        None => None,
    };
    let registrar = Registrar::new(
        client.clone(),
        config.node_name.clone(),
        crate::disks::instances_dir(&config.state_dir),
        config.driver.clone(),
        config.heartbeat.clone(),
    )
    .with_endpoint(endpoint)
    .with_pools(config.storage.clone());
    // Register before serving servers, retrying until the API answers.
    let mut delay = Duration::from_millis(200);
    loop {
        match registrar.register().await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, ?delay, "node registration failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped(stop_rx.clone()) => return Ok(()),
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
    if let Err(e) = registrar.renew_lease().await {
        tracing::warn!(error = %e, "first lease renewal failed");
    }

    let mut ctx = ServerContext::new(
        client.clone(),
        config.node_name.clone(),
        config.state_dir.clone(),
        config.driver.clone(),
        config.servers.clone(),
    );
    ctx = ctx.with_pools(config.storage.clone());
    let mut network_task = None;
    if let Some(net) = &config.network {
        let host = Arc::new(HostNetwork::new(net.bridge.clone(), &config.state_dir)?);
        ctx = ctx.with_network(host.clone());
        // The metadata proxies forward guests' requests with the node's restricted metadata
        // token, never with its node token.
        let proxy_client = crate::net::metadata_proxy::metadata_client(
            &Client {
                auth: config.auth.clone(),
                ..Client::new(config.api_url.clone())
            },
            &config.node_name,
        );
        let agent = Arc::new(NetworkAgent::new(
            client,
            config.node_name.clone(),
            host,
            net.switch.clone(),
            config.state_dir.clone(),
            config.api_url.clone(),
            net.ports.clone(),
        ));
        agent.proxies().use_api(proxy_client);
        network_task = Some(tokio::spawn(
            ports::run(agent, stopped(stop_rx.clone())).instrument(span.clone()),
        ));
    }
    let ctx = Arc::new(ctx);
    on_start(ctx.clone());
    let storage_task = (!config.storage.is_empty()).then(|| {
        let storage = Arc::new(
            crate::storage::StorageContext::new(
                Client {
                    auth: config.auth.clone(),
                    ..Client::new(config.api_url.clone())
                },
                config.node_name.clone(),
                config.storage.clone(),
                config.state_dir.join("images"),
            )
            .with_hypervisor(config.driver.clone()),
        );
        tokio::spawn(
            crate::storage::run(storage, stopped(stop_rx.clone())).instrument(span.clone()),
        )
    });

    let heartbeats = {
        let rx = stop_rx.clone();
        tokio::spawn(
            async move { registrar.run_heartbeats(stopped(rx)).await }.instrument(span.clone()),
        )
    };
    let controller =
        tokio::spawn(servers::run(ctx.clone(), stopped(stop_rx.clone())).instrument(span.clone()));
    let sweeper = {
        let ctx = ctx.clone();
        let period = config.servers.resync;
        let rx = stop_rx.clone();
        tokio::spawn(
            async move {
                let mut stop = std::pin::pin!(stopped(rx));
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = &mut stop => return,
                    }
                    match servers::orphans_sweep(&ctx).await {
                        Ok(r) if r.domains.is_empty() && r.instance_dirs.is_empty() => {}
                        Ok(r) => tracing::info!(
                            domains = r.domains.len(),
                            dirs = r.instance_dirs.len(),
                            "orphans removed"
                        ),
                        Err(e) => tracing::warn!(error = %e, "orphan sweep failed"),
                    }
                }
            }
            .instrument(span.clone()),
        )
    };
    let mut result = Ok(());
    let mut tasks = vec![
        ("heartbeats", heartbeats),
        ("server controller", controller),
        ("orphan sweep", sweeper),
    ];
    if let Some(t) = network_task {
        tasks.push(("host network", t));
    }
    if let Some(t) = storage_task {
        tasks.push(("volumes", t));
    }
    for (task, handle) in tasks {
        if let Err(e) = handle.await {
            result = Err(AgentError::Task {
                task,
                reason: e.to_string(),
            });
        }
    }
    result
}
