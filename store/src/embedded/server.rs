//! Wiring: configuration, start-up, the shared [`Core`] of the services, and shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::proto::{
    PbClusterServer, PbKvServer, PbLeaseServer, PbMaintenanceServer, PbResponseHeader,
    PbWatchServer,
};
use redb::ReadableTable;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tracing::{info, warn};

use super::engine::Engine;
use super::error::EmbeddedError;
use super::kv::KvService;
use super::lease::{LeaseClock, LeaseService, run_expiry};
use super::maintenance::{ClusterService, MaintenanceService};
use super::schema::{CLUSTER_ID, MEMBER_ID, RAFT_TERM};
use super::watch::{EventHub, WatchService};
use super::writer::{self, WriteOp, WriterHandle};

/// Where the embedded server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address; port 0 picks a free port (read it back with [`EmbeddedEtcd::endpoint`]).
    Tcp(SocketAddr),
    /// A Unix domain socket path (a stale socket file is replaced).
    Unix(PathBuf),
}

/// Configuration of the embedded etcd-API server.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Directory holding the database file; `None` keeps everything in memory (tests).
    pub data_dir: Option<PathBuf>,
    /// Listening address.
    pub listen: Listen,
    /// Period of the progress notifications sent to watchers that asked for them
    /// (etcd's `--experimental-watch-progress-notify-interval`).
    pub progress_notify_interval: Duration,
}

impl Default for EmbeddedConfig {
    /// In memory, on `127.0.0.1` with a free port, progress every 10 s.
    fn default() -> Self {
        EmbeddedConfig {
            data_dir: None,
            listen: Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
            progress_notify_interval: Duration::from_secs(10),
        }
    }
}

impl EmbeddedConfig {
    /// An in-memory store on a free loopback port (what tests want).
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A persistent store in `dir`, on a free loopback port.
    pub fn on_disk(dir: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            data_dir: Some(dir.into()),
            ..Self::default()
        }
    }
}

/// State shared by all services of one server.
#[derive(Debug)]
pub(crate) struct Core {
    pub engine: Arc<Engine>,
    pub writer: WriterHandle,
    pub hub: EventHub,
    pub leases: Arc<LeaseClock>,
    pub progress_notify_interval: Duration,
    pub endpoint: String,
    /// Flips to `true` on shutdown so long-lived streams end.
    pub stopping: watch::Receiver<bool>,
}

impl Core {
    /// The response header etcd would send at revision `rev`.
    pub fn header(&self, rev: i64) -> PbResponseHeader {
        PbResponseHeader {
            cluster_id: CLUSTER_ID,
            member_id: MEMBER_ID,
            revision: rev,
            raft_term: RAFT_TERM,
        }
    }
}

/// A running embedded etcd-API server. Stop it with [`EmbeddedEtcd::shutdown`]; dropping it
/// without shutting down leaves the server running until the runtime ends.
#[derive(Debug)]
pub struct EmbeddedEtcd {
    endpoint: String,
    core: Arc<Core>,
    stop_server: oneshot::Sender<()>,
    stop_streams: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    expiry: JoinHandle<()>,
    writer_thread: std::thread::JoinHandle<()>,
}

/// Start the embedded etcd-API server: open (or create) the store, start the single writer,
/// the lease expiry task and the gRPC server. Returns once the listener is bound, so
/// [`EmbeddedEtcd::endpoint`] is immediately connectable.
///
/// # Errors
/// Data directory, database or listener failures.
#[tracing::instrument(skip_all, fields(data_dir = ?config.data_dir, listen = ?config.listen))]
pub async fn start(config: EmbeddedConfig) -> Result<EmbeddedEtcd, EmbeddedError> {
    let engine = Arc::new(Engine::open(config.data_dir.as_deref())?);
    let snap = engine.snapshot().map_err(EmbeddedError::Read)?;
    let hub = EventHub::new(snap.current);
    let leases = Arc::new(LeaseClock::default());
    for item in snap.leases.iter()? {
        let (id, ttl) = item?;
        leases.insert(id.value(), ttl.value());
    }
    drop(snap);
    let (writer, writer_thread) = writer::spawn(engine.clone(), hub.clone(), leases.clone());

    let (stop_streams, stopping) = watch::channel(false);
    let (stop_server, stop_rx) = oneshot::channel::<()>();
    let signal = async move {
        let _ = stop_rx.await;
    };

    let make_core = |endpoint: String| {
        Arc::new(Core {
            engine: engine.clone(),
            writer: writer.clone(),
            hub: hub.clone(),
            leases: leases.clone(),
            progress_notify_interval: config.progress_notify_interval,
            endpoint,
            stopping: stopping.clone(),
        })
    };
    let router = |core: &Arc<Core>| {
        Server::builder()
            .add_service(PbKvServer::new(KvService { core: core.clone() }))
            .add_service(PbWatchServer::new(WatchService { core: core.clone() }))
            .add_service(PbLeaseServer::new(LeaseService { core: core.clone() }))
            .add_service(PbMaintenanceServer::new(MaintenanceService {
                core: core.clone(),
            }))
            .add_service(PbClusterServer::new(ClusterService { core: core.clone() }))
    };

    let (core, server) = match &config.listen {
        Listen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| EmbeddedError::Listen {
                    addr: addr.to_string(),
                    source,
                })?;
            let local = listener
                .local_addr()
                .map_err(|source| EmbeddedError::Listen {
                    addr: addr.to_string(),
                    source,
                })?;
            let core = make_core(format!("http://{local}"));
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            let fut = router(&core).serve_with_incoming_shutdown(incoming, signal);
            (core, tokio::spawn(fut))
        }
        Listen::Unix(path) => {
            let _ = std::fs::remove_file(path);
            let listener =
                tokio::net::UnixListener::bind(path).map_err(|source| EmbeddedError::Listen {
                    addr: path.display().to_string(),
                    source,
                })?;
            let core = make_core(format!("unix://{}", path.display()));
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            let fut = router(&core).serve_with_incoming_shutdown(incoming, signal);
            (core, tokio::spawn(fut))
        }
    };
    let expiry = tokio::spawn(run_expiry(leases.clone(), writer.clone()));
    info!(endpoint = %core.endpoint, "embedded etcd listening");
    Ok(EmbeddedEtcd {
        endpoint: core.endpoint.clone(),
        core,
        stop_server,
        stop_streams,
        server,
        expiry,
        writer_thread,
    })
}

impl EmbeddedEtcd {
    /// The client URL, e.g. `http://127.0.0.1:41234` (for `etcd_client::Client::connect`),
    /// or `unix:///path` for a Unix socket.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// Stop serving: end open streams, stop the gRPC server, the expiry task and the writer
    /// (after it committed what it had), and release the database file.
    #[tracing::instrument(skip_all, fields(endpoint = %self.endpoint))]
    pub async fn shutdown(self) {
        let _ = self.stop_streams.send(true);
        let _ = self.stop_server.send(());
        self.expiry.abort();
        match tokio::time::timeout(Duration::from_secs(5), self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(error = %e, "gRPC server ended with an error"),
            Ok(Err(e)) => warn!(error = %e, "gRPC server task failed"),
            Err(_) => warn!("gRPC server did not stop within 5 s"),
        }
        let writer = self.core.writer.clone();
        let _ = writer.submit(WriteOp::Stop).await;
        drop(writer);
        let _ = tokio::task::spawn_blocking(move || self.writer_thread.join()).await;
        // Wait for stream tasks to drop their handles so the database file is released.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.core) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        info!("embedded etcd stopped");
    }
}
