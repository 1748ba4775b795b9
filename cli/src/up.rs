//! `cirrus up`: the all-in-one control plane in one process (the k3s model): the embedded
//! etcd-API store (or an external etcd) and the API server. Later the controllers and a
//! node agent join it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cirrus_store::embedded::{self, EmbeddedConfig, Listen};
use cirrus_store::objects::ObjectStore;

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
}

/// Runs the control plane until SIGINT or SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
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
    let mut state = cirrus_api::ApiState::new(store);
    state.bookmark_interval = Duration::from_secs(args.bookmark_interval_secs.max(1));
    let images = args.data_dir.join("images");
    let blobs = cirrus_api::blobs::BlobStore::open(&images)
        .with_context(|| format!("opening the image blob directory {}", images.display()))?;
    state.blobs = Some(std::sync::Arc::new(blobs));
    tracing::info!(api = %format!("http://{api_addr}"), store = %endpoints.join(","), "cirrus up");
    println!(
        "cirrus up: API on http://{api_addr}, store at {}",
        endpoints.join(",")
    );
    cirrus_api::serve(listener, state, shutdown_signal())
        .await
        .context("serving the API")?;
    if let Some(server) = embedded {
        server.shutdown().await;
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
