//! Harness of the conformance suite: one server per test, embedded (in memory, on a Unix
//! socket) or a real etcd process, plus killable on-disk servers for the durability test.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cirrus_store::embedded::{self, EmbeddedConfig, EmbeddedEtcd, Listen};
use cirrus_test_utils::RealEtcd;
use etcd_client::{Client, ConnectOptions};

/// Progress-notify period given to both backends, so the suite stays fast.
pub const PROGRESS_MS: u64 = 500;

/// Which implementation a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The embedded server.
    Embedded,
    /// A real etcd process.
    Real,
}

/// A running server for one test.
pub struct Server {
    /// Which backend this is.
    pub kind: Kind,
    endpoint: String,
    embedded: Option<EmbeddedEtcd>,
    _real: Option<RealEtcd>,
    _dir: Option<tempfile::TempDir>,
}

/// Whether the real-etcd half is switched off (`CIRRUS_SKIP_REAL_ETCD=1`).
pub fn skip_real() -> bool {
    std::env::var("CIRRUS_SKIP_REAL_ETCD").is_ok_and(|v| v == "1")
}

/// Fail loudly (unless skipped) when etcd is missing; `false` means "skip this test".
pub fn require_real() -> bool {
    if skip_real() {
        eprintln!("CIRRUS_SKIP_REAL_ETCD=1: skipping the real-etcd half of this test");
        return false;
    }
    assert!(
        RealEtcd::available(),
        "real etcd binary {} not found: install Debian's etcd-server (CI does) or set \
         CIRRUS_SKIP_REAL_ETCD=1 to run only the embedded half",
        RealEtcd::binary().display()
    );
    true
}

impl Server {
    /// An in-memory embedded server on a Unix socket in a temporary directory (how `cirrus
    /// up` serves it), reached through `cirrus_store::connect`.
    pub async fn embedded() -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = EmbeddedConfig {
            listen: Listen::Unix(dir.path().join(embedded::SOCKET_FILE)),
            progress_notify_interval: Duration::from_millis(PROGRESS_MS),
            ..EmbeddedConfig::in_memory()
        };
        let e = embedded::start(config).await.expect("start embedded etcd");
        Server {
            kind: Kind::Embedded,
            endpoint: e.endpoint(),
            embedded: Some(e),
            _real: None,
            _dir: Some(dir),
        }
    }

    /// A real etcd on free loopback ports, or `None` when skipped.
    pub async fn real() -> Option<Server> {
        if !require_real() {
            return None;
        }
        let flag = format!("--experimental-watch-progress-notify-interval={PROGRESS_MS}ms");
        let e = RealEtcd::start_with_args(&[&flag])
            .await
            .expect("start real etcd");
        Some(Server {
            kind: Kind::Real,
            endpoint: e.endpoint(),
            embedded: None,
            _real: Some(e),
            _dir: None,
        })
    }

    /// The client URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A new client connected to this server.
    pub async fn client(&self) -> Client {
        connect(&self.endpoint).await.expect("connect")
    }

    /// Stop the server (the real etcd is killed on drop).
    pub async fn stop(mut self) {
        if let Some(e) = self.embedded.take() {
            e.shutdown().await;
        }
    }
}

/// Connect with short timeouts (TCP) or over the Unix socket (`unix://…`).
pub async fn connect(endpoint: &str) -> Result<Client> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    Ok(cirrus_store::connect::connect(&[endpoint], Some(opts)).await?)
}

/// An on-disk server in its own process that can be SIGKILLed and restarted.
pub enum Proc {
    /// The `cirrus-etcd` binary.
    Embedded {
        /// The child process.
        child: Child,
        /// Its client URL.
        endpoint: String,
    },
    /// A real etcd.
    Real(RealEtcd),
}

impl Proc {
    /// Start `kind` on `dir` (reusing `ports` for a real etcd restart).
    pub async fn start(kind: Kind, dir: &Path, ports: Option<(u16, u16)>) -> Result<Proc> {
        match kind {
            Kind::Embedded => {
                let mut child = Command::new(env!("CARGO_BIN_EXE_cirrus-etcd"))
                    .arg("--data-dir")
                    .arg(dir)
                    // On its Unix socket, like `cirrus up`: a SIGKILL leaves the socket file
                    // behind, which the restart must replace.
                    .arg("--listen")
                    .arg(format!(
                        "unix:{}",
                        dir.join(embedded::SOCKET_FILE).display()
                    ))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .context("spawn cirrus-etcd")?;
                let stdout = child.stdout.take().context("stdout")?;
                let line = tokio::task::spawn_blocking(move || {
                    use std::io::BufRead;
                    let mut line = String::new();
                    std::io::BufReader::new(stdout)
                        .read_line(&mut line)
                        .map(|_| line)
                })
                .await??;
                let Some(endpoint) = line.trim().strip_prefix("listening on ") else {
                    let _ = child.kill();
                    bail!("unexpected first line from cirrus-etcd: {line:?}");
                };
                Ok(Proc::Embedded {
                    endpoint: endpoint.to_string(),
                    child,
                })
            }
            Kind::Real => Ok(Proc::Real(RealEtcd::start_in(dir, ports, &[]).await?)),
        }
    }

    /// The client URL.
    pub fn endpoint(&self) -> String {
        match self {
            Proc::Embedded { endpoint, .. } => endpoint.clone(),
            Proc::Real(r) => r.endpoint(),
        }
    }

    /// Ports to reuse on restart (real etcd only).
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self {
            Proc::Embedded { .. } => None,
            Proc::Real(r) => Some(r.ports()),
        }
    }

    /// SIGKILL the process and reap it.
    pub fn kill9(&mut self) {
        match self {
            Proc::Embedded { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Proc::Real(r) => r.kill(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}
