//! Wiring: configuration, start-up, the shared [`Core`] of the services, and shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::proto::{
    PbClusterServer, PbKvServer, PbLeaseServer, PbMaintenanceServer, PbResponseHeader,
    PbWatchServer,
};
use redb::ReadableTable;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tracing::{info, warn};

use super::compactor::{Compactor, DEFAULT_COMPACTION_INTERVAL, DEFAULT_COMPACTION_STEP};
use super::engine::Engine;
use super::error::EmbeddedError;
use super::kv::KvService;
use super::lease::{LeaseClock, LeaseService, run_expiry};
use super::maintenance::{ClusterService, MaintenanceService};
use super::schema::{CLUSTER_ID, MEMBER_ID, RAFT_TERM};
use super::watch::{EventHub, WatchService};
use super::writer::{self, WriteOp, WriterHandle};
use crate::connect::unix_endpoint;
use crate::perms;

/// Where the embedded server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address; port 0 picks a free port (read it back with [`EmbeddedEtcd::endpoint`]).
    /// Nothing authenticates clients: anyone who can reach the address can read and write
    /// every key.
    Tcp(SocketAddr),
    /// A Unix domain socket path, created mode 0600 (bound under a temporary name, restricted,
    /// then renamed into place, so it is never reachable with a looser mode). A missing parent
    /// directory is created 0700. A stale socket file is replaced; a socket another live
    /// server still answers on is an error.
    Unix(PathBuf),
}

/// File name of the socket [`EmbeddedConfig::private`] listens on, inside the data directory.
pub const SOCKET_FILE: &str = "etcd.sock";

/// Configuration of the embedded etcd-API server.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Directory holding the database file (made mode 0700, the file 0600); `None` keeps
    /// everything in memory (tests).
    pub data_dir: Option<PathBuf>,
    /// Listening address; [`EmbeddedEtcd::endpoint`] reports this one.
    pub listen: Listen,
    /// More addresses serving the same store (e.g. an opt-in TCP port next to the socket).
    pub extra_listen: Vec<Listen>,
    /// Period of the progress notifications sent to watchers that asked for them
    /// (etcd's `--experimental-watch-progress-notify-interval`).
    pub progress_notify_interval: Duration,
    /// Period of the background compaction (see [`super::compactor`]'s policy: every tick
    /// compacts to the revision current one tick earlier); `None` turns it off.
    pub compaction_interval: Option<Duration>,
    /// Most rows one physical compaction step removes (the writer is held for one step).
    pub compaction_step: usize,
}

impl Default for EmbeddedConfig {
    /// In memory, on `127.0.0.1` with a free port, progress every 10 s, compaction every
    /// 5 minutes in steps of 1000 rows.
    fn default() -> Self {
        EmbeddedConfig {
            data_dir: None,
            listen: Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
            extra_listen: Vec::new(),
            progress_notify_interval: Duration::from_secs(10),
            compaction_interval: Some(DEFAULT_COMPACTION_INTERVAL),
            compaction_step: DEFAULT_COMPACTION_STEP,
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

    /// A persistent store in `dir` (mode 0700) served only on the Unix socket
    /// `dir/`[`SOCKET_FILE`] (mode 0600): only the user running it (and root) can connect.
    pub fn private(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        EmbeddedConfig {
            listen: Listen::Unix(dir.join(SOCKET_FILE)),
            data_dir: Some(dir),
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
    /// Every client URL, the primary one first.
    pub endpoints: Vec<String>,
    /// Wakes the compactor after a logical compaction.
    pub compact_wake: Arc<Notify>,
    /// Rows per physical compaction step.
    pub compaction_step: usize,
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
    core: Arc<Core>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
    sockets: Vec<BoundSocket>,
    expiry: JoinHandle<()>,
    compactor: JoinHandle<()>,
    writer_thread: std::thread::JoinHandle<()>,
}

/// A socket file this server created, removed at shutdown if it is still the same file.
#[derive(Debug)]
struct BoundSocket {
    path: PathBuf,
    dev_ino: (u64, u64),
}

enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// Bind `listen`; returns the listener, its client URL and the socket file it created.
async fn bind(listen: &Listen) -> Result<(Bound, String, Option<BoundSocket>), EmbeddedError> {
    match listen {
        Listen::Tcp(addr) => {
            let err = |source| EmbeddedError::Listen {
                addr: addr.to_string(),
                source,
            };
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(err)?;
            let local = listener.local_addr().map_err(err)?;
            Ok((Bound::Tcp(listener), format!("http://{local}"), None))
        }
        Listen::Unix(path) => {
            let (listener, socket) = bind_unix(path)?;
            Ok((Bound::Unix(listener), unix_endpoint(path), Some(socket)))
        }
    }
}

/// Bind a Unix socket at `path` with mode 0600 from the start (see [`Listen::Unix`]).
fn bind_unix(path: &Path) -> Result<(tokio::net::UnixListener, BoundSocket), EmbeddedError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let err = |source| EmbeddedError::Listen {
        addr: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        perms::ensure_dir(parent, perms::PRIVATE_DIR).map_err(|source| EmbeddedError::DataDir {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(EmbeddedError::SocketInUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(err)?;
        }
        Ok(_) => {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    // Short, so a path that fits the 108-byte limit still fits while it is temporary.
    let tmp = path.with_file_name(format!(".{}~", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = tokio::net::UnixListener::bind(&tmp).map_err(err)?;
    let placed = perms::set_mode(&tmp, perms::PRIVATE_FILE)
        .map_err(|source| EmbeddedError::Private {
            path: tmp.clone(),
            source,
        })
        .and_then(|()| std::fs::rename(&tmp, path).map_err(err))
        .and_then(|()| std::fs::symlink_metadata(path).map_err(err));
    match placed {
        Ok(meta) => Ok((
            listener,
            BoundSocket {
                path: path.to_path_buf(),
                dev_ino: (meta.dev(), meta.ino()),
            },
        )),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Start the embedded etcd-API server: open (or create) the store, start the single writer,
/// the lease expiry and compaction tasks and the gRPC server on every listener. Returns once
/// the listeners are bound, so [`EmbeddedEtcd::endpoint`] is immediately connectable.
///
/// # Errors
/// Data directory, database or listener failures.
#[tracing::instrument(skip_all, fields(data_dir = ?config.data_dir, listen = ?config.listen))]
pub async fn start(config: EmbeddedConfig) -> Result<EmbeddedEtcd, EmbeddedError> {
    let engine = Arc::new(Engine::open(config.data_dir.as_deref())?);
    let mut bound = Vec::new();
    for listen in std::iter::once(&config.listen).chain(&config.extra_listen) {
        match bind(listen).await {
            Ok(b) => bound.push(b),
            Err(e) => {
                for (_, _, socket) in bound {
                    if let Some(s) = socket {
                        s.remove();
                    }
                }
                return Err(e);
            }
        }
    }
    let snap = engine.snapshot().map_err(EmbeddedError::Read)?;
    let hub = EventHub::new(snap.current);
    let leases = Arc::new(LeaseClock::default());
    for item in snap.leases.iter()? {
        let (id, ttl) = item?;
        leases.insert(id.value(), ttl.value());
    }
    drop(snap);
    let (writer, writer_thread) = writer::spawn(engine.clone(), hub.clone(), leases.clone());

    let (stop, stopping) = watch::channel(false);
    let compact_wake = Arc::new(Notify::new());
    let core = Arc::new(Core {
        engine: engine.clone(),
        writer: writer.clone(),
        hub: hub.clone(),
        leases: leases.clone(),
        progress_notify_interval: config.progress_notify_interval,
        endpoints: bound.iter().map(|(_, e, _)| e.clone()).collect(),
        compact_wake: compact_wake.clone(),
        compaction_step: config.compaction_step.max(1),
        stopping: stopping.clone(),
    });
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
    let mut servers = Vec::new();
    let mut sockets = Vec::new();
    for (listener, endpoint, socket) in bound {
        let mut stopping = stopping.clone();
        let signal = async move {
            let _ = stopping.wait_for(|s| *s).await;
        };
        let server = match listener {
            Bound::Tcp(l) => {
                let incoming =
                    tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true));
                tokio::spawn(router(&core).serve_with_incoming_shutdown(incoming, signal))
            }
            Bound::Unix(l) => {
                let incoming = tokio_stream::wrappers::UnixListenerStream::new(l);
                tokio::spawn(router(&core).serve_with_incoming_shutdown(incoming, signal))
            }
        };
        servers.push(server);
        sockets.extend(socket);
        info!(%endpoint, "embedded etcd listening");
    }
    let expiry = tokio::spawn(run_expiry(leases.clone(), writer.clone()));
    let compactor = tokio::spawn(
        Compactor {
            engine,
            writer,
            hub,
            wake: compact_wake,
            interval: config.compaction_interval,
            step: config.compaction_step.max(1),
        }
        .run(),
    );
    Ok(EmbeddedEtcd {
        core,
        stop,
        servers,
        sockets,
        expiry,
        compactor,
        writer_thread,
    })
}

impl BoundSocket {
    /// Remove the socket file unless something else has replaced it meanwhile.
    fn remove(&self) {
        use std::os::unix::fs::MetadataExt;
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.dev_ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl EmbeddedEtcd {
    /// The client URL of [`EmbeddedConfig::listen`], e.g. `http://127.0.0.1:41234`, or
    /// `unix:///path` for a Unix socket (connect with [`crate::connect::connect`], which,
    /// unlike `etcd_client::Client::connect`, dials Unix sockets too).
    pub fn endpoint(&self) -> String {
        self.core.endpoints[0].clone()
    }

    /// Every client URL, [`EmbeddedEtcd::endpoint`] first, then those of
    /// [`EmbeddedConfig::extra_listen`] in order.
    pub fn endpoints(&self) -> Vec<String> {
        self.core.endpoints.clone()
    }

    /// Stop serving: end open streams, stop the gRPC servers, the expiry and compaction tasks
    /// and the writer (after it committed what it had), release the database file and remove
    /// the socket files.
    #[tracing::instrument(skip_all, fields(endpoint = %self.core.endpoints[0]))]
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.expiry.abort();
        self.compactor.abort();
        let _ = self.compactor.await;
        for server in self.servers {
            match tokio::time::timeout(Duration::from_secs(5), server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => warn!(error = %e, "gRPC server ended with an error"),
                Ok(Err(e)) => warn!(error = %e, "gRPC server task failed"),
                Err(_) => warn!("gRPC server did not stop within 5 s"),
            }
        }
        for socket in &self.sockets {
            socket.remove();
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
