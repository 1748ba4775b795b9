//! A real `etcd` process on loopback, for the store's conformance suite, the end-to-end tests
//! and the store benchmark.
//!
//! The same test functions and benchmarks run against the embedded server and against the
//! genuine article; [`RealEtcd`] is how they get the latter. It picks free loopback ports,
//! waits until the server answers, and kills the child (SIGKILL) when dropped, so a failing
//! test never leaks an etcd.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The etcd binary used when `CIRRUS_ETCD_BIN` is not set (Debian's `etcd-server`).
pub const DEFAULT_ETCD_BIN: &str = "/usr/bin/etcd";

/// Failure to launch a real etcd.
#[derive(Debug, thiserror::Error)]
pub enum RealEtcdError {
    /// The binary is not there.
    #[error("etcd binary {0} not found (install Debian's etcd-server or set CIRRUS_ETCD_BIN)")]
    Missing(PathBuf),
    /// Spawning the process or preparing its directory failed.
    #[error("cannot start {binary}")]
    Spawn {
        /// The binary that was run.
        binary: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The process exited or never answered.
    #[error("etcd did not become healthy within {timeout:?} (log: {log})")]
    Unhealthy {
        /// How long we waited.
        timeout: Duration,
        /// The tail of its log.
        log: String,
    },
}

/// A running etcd child process, killed on drop.
#[derive(Debug)]
pub struct RealEtcd {
    child: Option<Child>,
    endpoint: String,
    data_dir: PathBuf,
    ports: (u16, u16),
    _tmp: Option<tempfile::TempDir>,
}

impl RealEtcd {
    /// The etcd binary: `$CIRRUS_ETCD_BIN`, else [`DEFAULT_ETCD_BIN`].
    pub fn binary() -> PathBuf {
        std::env::var_os("CIRRUS_ETCD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ETCD_BIN))
    }

    /// Whether the etcd binary exists.
    pub fn available() -> bool {
        Self::binary().exists()
    }

    /// Start etcd on free loopback ports with a fresh temporary data directory.
    ///
    /// # Errors
    /// See [`RealEtcdError`].
    pub async fn start() -> Result<RealEtcd, RealEtcdError> {
        Self::start_with_args(&[]).await
    }

    /// Like [`RealEtcd::start`], with extra command-line flags (e.g.
    /// `--experimental-watch-progress-notify-interval=500ms`).
    ///
    /// # Errors
    /// See [`RealEtcdError`].
    pub async fn start_with_args(extra: &[&str]) -> Result<RealEtcd, RealEtcdError> {
        let tmp = tempfile::Builder::new()
            .prefix("cirrus-real-etcd")
            .tempdir()
            .map_err(|source| RealEtcdError::Spawn {
                binary: Self::binary(),
                source,
            })?;
        let mut e = Self::start_in(tmp.path(), None, extra).await?;
        e._tmp = Some(tmp);
        Ok(e)
    }

    /// Start etcd on `data_dir` (kept afterwards), on `ports` = `(client, peer)` or free
    /// ports. Restarting on the same directory with the same ports recovers the old data.
    ///
    /// # Errors
    /// See [`RealEtcdError`].
    pub async fn start_in(
        data_dir: &Path,
        ports: Option<(u16, u16)>,
        extra: &[&str],
    ) -> Result<RealEtcd, RealEtcdError> {
        let binary = Self::binary();
        if !binary.exists() {
            return Err(RealEtcdError::Missing(binary));
        }
        let spawn_err = |source| RealEtcdError::Spawn {
            binary: Self::binary(),
            source,
        };
        let (client, peer) = match ports {
            Some(p) => p,
            None => (
                crate::try_free_port().map_err(spawn_err)?,
                crate::try_free_port().map_err(spawn_err)?,
            ),
        };
        std::fs::create_dir_all(data_dir).map_err(spawn_err)?;
        let log_path = data_dir.join("etcd.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(spawn_err)?;
        let log2 = log.try_clone().map_err(spawn_err)?;
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(&binary)
            .arg("--name=cirrus-test")
            .arg(format!("--data-dir={}", data_dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=cirrus-test={peer_url}"))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(spawn_err)?;
        let mut me = RealEtcd {
            child: Some(child),
            endpoint,
            data_dir: data_dir.to_path_buf(),
            ports: (client, peer),
            _tmp: None,
        };
        let timeout = Duration::from_secs(20);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let exited = me
                .child
                .as_mut()
                .map(|c| matches!(c.try_wait(), Ok(Some(_))))
                .unwrap_or(true);
            if !exited && me.healthy().await {
                return Ok(me);
            }
            if exited || tokio::time::Instant::now() > deadline {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: String = text
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(RealEtcdError::Unhealthy { timeout, log: tail });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn healthy(&self) -> bool {
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(300))
            .with_timeout(Duration::from_secs(1));
        match etcd_client::Client::connect([self.endpoint.as_str()], Some(opts)).await {
            Ok(mut c) => c.get("health-probe", None).await.is_ok(),
            Err(_) => false,
        }
    }

    /// The client URL, e.g. `http://127.0.0.1:23790`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `(client port, peer port)`, to restart on the same addresses.
    pub fn ports(&self) -> (u16, u16) {
        self.ports
    }

    /// The child's process ID, if it is still running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL the process and reap it (idempotent).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RealEtcd {
    fn drop(&mut self) {
        self.kill();
    }
}
