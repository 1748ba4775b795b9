//! `cirrus up`: the all-in-one cloud in one process (the k3s model): the embedded etcd-API
//! store (or an external etcd), the API server, and the controllers (scheduler, node
//! lifecycle), which talk to the API over loopback like any other client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cirrus_store::embedded::{self, EmbeddedConfig, Listen};
use cirrus_store::objects::ObjectStore;
use tokio::sync::watch;

/// Arguments of `cirrus up`.
#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Directory for the embedded store's data and, under `images/`, uploaded image data.
    #[arg(long, env = "CIRRUS_DATA_DIR", default_value = "/var/lib/cirrus")]
    pub data_dir: PathBuf,
    /// Address the API listens on.
    #[arg(long, env = "CIRRUS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Use these etcd endpoints (comma-separated URLs) instead of the embedded store.
    #[arg(long, env = "CIRRUS_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Where the embedded store serves the etcd v3 API (for etcdctl and other processes);
    /// port 0 picks a free one. The endpoint is also written to DATA_DIR/etcd-endpoint.
    #[arg(long, env = "CIRRUS_STORE_LISTEN", default_value = "127.0.0.1:2379")]
    pub store_listen: SocketAddr,
    /// Seconds between BOOKMARK events on API watches.
    #[arg(long, default_value_t = 10)]
    pub bookmark_interval_secs: u64,
    /// Don't run the controllers (scheduler, node lifecycle) in this process.
    #[arg(long)]
    pub no_controllers: bool,
    /// The local node agent's hypervisor: `libvirt` (default; skipped with a warning when
    /// libvirtd is not reachable), `fake` (a hollow node) or `none`.
    #[arg(long, default_value = "libvirt", value_parser = ["libvirt", "fake", "none"])]
    pub node_agent: String,
    /// The local node's name (default: the host name).
    #[arg(long, env = "CIRRUS_NODE_NAME")]
    pub node_name: Option<String>,
    /// The local node's Open vSwitch integration bridge.
    #[arg(long, default_value = "br-int")]
    pub bridge: String,
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the control plane until SIGINT or SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    init_tracing();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the API to {}", args.listen))?;
    let (endpoints, embedded) = if args.etcd_endpoints.is_empty() {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
        let server = embedded::start(EmbeddedConfig {
            data_dir: Some(args.data_dir.join("store")),
            listen: Listen::Tcp(args.store_listen),
            progress_notify_interval: Duration::from_secs(10),
        })
        .await
        .context("starting the embedded store")?;
        let endpoint = server.endpoint();
        std::fs::write(args.data_dir.join("etcd-endpoint"), format!("{endpoint}\n"))
            .context("recording the store endpoint")?;
        (vec![endpoint], Some(server))
    } else {
        (args.etcd_endpoints.clone(), None)
    };
    let store = ObjectStore::connect(&endpoints)
        .await
        .with_context(|| format!("connecting to the store at {}", endpoints.join(",")))?;
    store
        .current_revision()
        .await
        .with_context(|| format!("reading from the store at {}", endpoints.join(",")))?;
    let api_addr = listener.local_addr()?;
    let api_url = format!("http://{api_addr}");
    let identity = crate::up_identity::identity(&args.data_dir)?;
    crate::up_identity::bootstrap_admin(&store, &args.data_dir, &api_url)
        .await
        .context("bootstrapping the admin user")?;
    let controllers_user =
        crate::up_identity::service_user(&store, crate::up_identity::CONTROLLERS_USER, None)
            .await
            .context("creating the controllers' user")?;
    let mut state = cirrus_api::ApiState::new(store.clone()).with_identity(identity.clone());
    state.bookmark_interval = Duration::from_secs(args.bookmark_interval_secs.max(1));
    let images = args.data_dir.join("images");
    let blobs = cirrus_api::blobs::BlobStore::open(&images)
        .with_context(|| format!("opening the image blob directory {}", images.display()))?;
    state.blobs = Some(std::sync::Arc::new(blobs));

    // Controllers stop first (releasing their lease through the API), then the API.
    let (stop_api_tx, stop_api) = watch::channel(false);
    let (stop_tx, stop) = watch::channel(false);
    let mut api = tokio::spawn(cirrus_api::serve(listener, state, stopped(stop_api)));
    let controllers = (!args.no_controllers).then(|| {
        let client = cirrus_client::Client::new(api_url.clone()).with_token_source(
            crate::up_identity::MintedTokens::new(identity.clone(), controllers_user.clone()),
        );
        tokio::spawn(crate::controllers::run_all(client, None, stop.clone()))
    });
    let agent = match args.node_agent.as_str() {
        "none" => None,
        driver => {
            let agent_args = crate::node_agent::NodeAgentArgs {
                node: args.node_name.clone(),
                driver: if driver == "fake" {
                    crate::node_agent::Driver::Fake
                } else {
                    crate::node_agent::Driver::Libvirt
                },
                libvirt_uri: "qemu:///system".into(),
                state_dir: args.data_dir.join("node"),
                endpoint_listen: "127.0.0.1:0".parse().expect("a valid address"),
                bridge: args.bridge.clone(),
                ovsdb: "unix:/var/run/openvswitch/db.sock".into(),
                no_network: false,
                volume_dir: None,
                lvm_vg: None,
            };
            match crate::node_agent::driver(&agent_args) {
                Ok(hypervisor) => {
                    let mut config = crate::node_agent::config(&agent_args, &api_url, hypervisor);
                    let node_user = crate::up_identity::service_user(
                        &store,
                        &format!("node-{}", config.node_name),
                        Some(&config.node_name),
                    )
                    .await
                    .context("creating the node agent's user")?;
                    config.auth = Some(crate::up_identity::MintedTokens::new(
                        identity.clone(),
                        node_user,
                    ));
                    Some(tokio::spawn(cirrus_node_agent::run(
                        config,
                        stopped(stop.clone()),
                    )))
                }
                Err(err) => {
                    tracing::warn!("no local node agent: {err:#}");
                    eprintln!("cirrus up: no local node agent: {err:#}");
                    None
                }
            }
        }
    };
    tracing::info!(api = %api_url, store = %endpoints.join(","), "cirrus up");
    println!(
        "cirrus up: API on {api_url}, store at {}",
        endpoints.join(",")
    );

    tokio::select! {
        _ = shutdown_signal() => {}
        result = &mut api => {
            result.context("the API task failed")?.context("serving the API")?;
        }
    }
    let _ = stop_tx.send(true);
    if let Some(controllers) = controllers {
        let _ = tokio::time::timeout(Duration::from_secs(5), controllers).await;
    }
    if let Some(agent) = agent {
        let _ = tokio::time::timeout(Duration::from_secs(5), agent).await;
    }
    let _ = stop_api_tx.send(true);
    if !api.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(5), api).await;
    }
    if let Some(server) = embedded {
        server.shutdown().await;
    }
    Ok(())
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
