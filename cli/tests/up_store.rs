//! `cirrus up` keeps its embedded store private: served on `<data-dir>/store/etcd.sock`
//! (0600, in a 0700 directory) and on no TCP port unless `--store-listen` asks for one; the
//! data directory and its secrets get restrictive modes even under `umask 000`, and loose
//! ones left by an earlier start are fixed. The server is started by PID and stopped with
//! SIGTERM by that PID.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cirrus");

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A `cirrus up` child, SIGKILLed on drop if a test failed before stopping it.
struct Up {
    child: Option<Child>,
    log: PathBuf,
}

impl Up {
    /// Starts `cirrus up` under `umask 000` on `data` with `extra` arguments and waits for
    /// `/readyz`.
    fn start(data: &Path, extra: &[&str]) -> Up {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = data.with_extension("log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        // `exec` keeps the PID: the child we hold is `cirrus up` itself.
        let child = Command::new("/bin/sh")
            .args([
                "-c",
                "umask 000; exec \"$0\" \"$@\"",
                BIN,
                "up",
                "--listen",
                &addr,
            ])
            .arg("--data-dir")
            .arg(data)
            .args(["--node-agent", "none", "--no-controllers"])
            .args(extra)
            .env_remove("CIRRUS_ETCD_ENDPOINTS")
            .env_remove("CIRRUS_STORE_LISTEN")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn cirrus up");
        let mut up = Up {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(status))) = up.child.as_mut().map(Child::try_wait) {
                up.child = None;
                panic!("cirrus up exited with {status}:\n{}", up.log());
            }
            if readyz(&addr) {
                return up;
            }
            assert!(
                Instant::now() < deadline,
                "cirrus up not ready after 60 s:\n{}",
                up.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM by PID and wait for a clean exit.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "cirrus up exited with {status}:\n{}",
            self.log()
        );
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn readyz(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// `etcdctl ARGS` in `dir`; panics unless it succeeds; returns stdout.
fn etcdctl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--dial-timeout=5s")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("etcdctl is installed (Debian's etcd-client)");
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn up_serves_its_store_on_a_private_socket_and_tcp_only_on_request() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    // Loose leftovers of an older version: fixed on start.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::create_dir(data.join("keys")).unwrap();
    std::fs::set_permissions(data.join("keys"), std::fs::Permissions::from_mode(0o755)).unwrap();

    let up = Up::start(&data, &[]);
    let store = data.join("store");
    let socket = store.join("etcd.sock");
    assert_eq!(
        mode(&data),
        0o711,
        "data dir: traversable (QEMU), not listable"
    );
    for dir in ["store", "keys", "images"] {
        assert_eq!(mode(&data.join(dir)), 0o700, "{dir}/");
    }
    for file in [
        "store/cirrus-etcd.redb",
        "store/etcd.sock",
        "etcd-endpoint",
        "openrc",
        "clouds.yaml",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    assert!(
        std::fs::symlink_metadata(&socket)
            .unwrap()
            .file_type()
            .is_socket()
    );
    let endpoint = std::fs::read_to_string(data.join("etcd-endpoint")).unwrap();
    assert_eq!(endpoint.trim(), format!("unix://{}", socket.display()));
    assert!(
        up.log()
            .contains(&format!("store at unix://{}\n", socket.display())),
        "no TCP listener by default:\n{}",
        up.log()
    );
    // The README's etcdctl line.
    let keys = etcdctl(
        &store,
        &[
            "--endpoints",
            "unix://etcd.sock",
            "get",
            "--prefix",
            "/cirrus/",
            "--keys-only",
        ],
    );
    assert!(keys.contains("/cirrus/"), "{keys}");
    up.stop();
    assert!(!socket.exists(), "the socket is removed on shutdown");

    // Opt-in TCP: the endpoint file names it, and the state survived the restart.
    let up = Up::start(&data, &["--store-listen", "127.0.0.1:0"]);
    let endpoint = std::fs::read_to_string(data.join("etcd-endpoint")).unwrap();
    let endpoint = endpoint.trim();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert!(socket.exists(), "the socket is still served");
    let hostport = endpoint.trim_start_matches("http://");
    let status = etcdctl(&store, &["--endpoints", hostport, "endpoint", "status"]);
    assert!(status.contains(hostport), "{status}");
    let again = etcdctl(
        &store,
        &[
            "--endpoints",
            hostport,
            "get",
            "--prefix",
            "/cirrus/",
            "--keys-only",
        ],
    );
    for key in keys.lines().filter(|l| !l.is_empty()) {
        assert!(
            again.lines().any(|l| l == key),
            "{key} kept across the restart"
        );
    }
    up.stop();
}
