//! Shared harness of the end-to-end tests: the real binaries, started and stopped by PID.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary built next to this test (`cargo build --workspace --bins`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (`cargo build --workspace --bins`)",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `cirrus up` process.
pub struct Cloud {
    child: Option<Child>,
    /// API base URL.
    pub base: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Extra arguments it was started with (reused on restart).
    args: Vec<String>,
    log: PathBuf,
}

impl Cloud {
    /// Starts `cirrus up` on a free port with `data_dir` and waits until it is ready.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Cloud {
        let mut cloud = Cloud {
            child: None,
            base: String::new(),
            data_dir: data_dir.to_path_buf(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            log: data_dir.with_extension("log"),
        };
        cloud.launch();
        cloud
    }

    fn launch(&mut self) {
        let port = free_port();
        self.base = format!("http://127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(bin("cirrus"))
            .arg("up")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--store-listen")
            .arg("127.0.0.1:0")
            .args(&self.args)
            // No local node agent unless the test asks for one (`--node-agent libvirt|fake`).
            .args(if self.args.iter().any(|a| a == "--node-agent") {
                &[][..]
            } else {
                &["--node-agent", "none"][..]
            })
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn cirrus up");
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(20));
    }

    /// Waits until `/readyz` answers; returns how long it took.
    pub fn wait_ready(&mut self, timeout: Duration) -> Duration {
        let started = Instant::now();
        let url = format!("{}/readyz", self.base);
        loop {
            if let Ok(resp) = reqwest::blocking::get(&url)
                && resp.status().is_success()
            {
                return started.elapsed();
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "cirrus up exited with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < timeout,
                "cirrus up not ready after {timeout:?}: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the process (no chance to flush anything) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts it again on the same data directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// The store endpoint the embedded server recorded.
    pub fn store_endpoint(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("etcd-endpoint"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Applies `examples/flavors.yaml` and `examples/guest-images.yaml` and uploads the test
    /// guest's kernel, initrd and root disk from `guest` (built by `hack/build-guest.sh`) into
    /// project `demo`: what a test needs before it creates servers.
    pub fn add_flavors_and_guest_images(&self, guest: &Path) {
        let examples = repo_root().join("examples");
        let run = |args: &[&str]| {
            let out = self.cli(args);
            assert!(
                out.status.success(),
                "cirrus {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for file in ["flavors.yaml", "guest-images.yaml"] {
            run(&["apply", "-f", examples.join(file).to_str().unwrap()]);
        }
        for (image, file) in [
            ("guest-kernel", "vmlinuz"),
            ("guest-initrd", "initrd.img"),
            ("guest", "root.qcow2"),
        ] {
            run(&[
                "upload-image",
                image,
                guest.join(file).to_str().unwrap(),
                "-p",
                "demo",
            ]);
        }
    }

    /// Runs the `cirrus` CLI against this cloud.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin("cirrus"))
            .args(args)
            .env("CIRRUS_URL", &self.base)
            .stdin(Stdio::null())
            .output()
            .expect("run cirrus")
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The repository root (for `examples/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Removes, when dropped, every libvirt domain a test's node agent made (one per instance
/// directory under `state_dir`), so a failing test leaves no guest running. Declare it before
/// the processes it outlives.
pub struct DomainSweeper {
    /// The node agent's state directory.
    pub state_dir: PathBuf,
}

impl Drop for DomainSweeper {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.state_dir.join("instances")) else {
            return;
        };
        for entry in entries.flatten() {
            let domain = format!("cirrus-{}", entry.file_name().to_string_lossy());
            for args in [
                vec!["destroy", &domain],
                vec!["undefine", "--nvram", &domain],
            ] {
                let _ = Command::new("virsh")
                    .args(["-c", "qemu:///system"])
                    .args(&args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// A `cirrus` child process (any subcommand), restartable with the same arguments, killed
/// (SIGKILL) and reaped on drop.
pub struct Proc {
    child: Option<Child>,
    args: Vec<String>,
    log: PathBuf,
}

impl Proc {
    /// Starts `cirrus <args>` with its output appended to `log`.
    pub fn start(args: &[String], log: &Path) -> Proc {
        let mut p = Proc {
            child: None,
            args: args.to_vec(),
            log: log.to_path_buf(),
        };
        p.spawn();
        p
    }

    /// Starts the process again (after [`Proc::kill9`]).
    pub fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(bin("cirrus"))
            .args(&self.args)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn cirrus");
        self.child = Some(child);
    }

    /// SIGKILLs and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    /// kill -9, then start again.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `cirrus <args>` against `cloud`, failing the test with the output when it fails;
/// returns stdout.
pub fn run_ok(cloud: &Cloud, args: &[&str]) -> String {
    let out = cloud.cli(args);
    assert!(
        out.status.success(),
        "cirrus {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Polls `probe` until it yields, failing the test after `timeout` (state is asserted,
/// never timing).
pub fn eventually<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The test guest (kernel, initrd, root disk) in `target/guest`, built by
/// `hack/build-guest.sh` (idempotent: nothing is done when it is up to date).
pub fn guest_dir() -> PathBuf {
    let dir = repo_root().join("target/guest");
    let status = Command::new(repo_root().join("hack/build-guest.sh"))
        .arg(&dir)
        .status()
        .expect("run hack/build-guest.sh");
    assert!(status.success(), "hack/build-guest.sh failed");
    dir
}
