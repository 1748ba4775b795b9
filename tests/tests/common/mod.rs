//! Shared harness of the end-to-end tests: the real binaries, started and stopped by PID.
//!
//! Every API route but the health checks and the login needs a token: [`Cloud`] reads the
//! admin credentials `cirrus up` writes to `<data-dir>/openrc`, passes them to the `cirrus`
//! commands it runs and logs in for the tests' own HTTP calls ([`Cloud::http`]).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

/// Credential variables a test process must not inherit from the shell that runs the tests
/// (someone who sourced an openrc): each child gets exactly the identity the test gives it.
const CREDENTIAL_VARS: &[&str] = &[
    "CIRRUS_TOKEN",
    "CIRRUS_URL",
    "CIRRUS_PROJECT",
    "OS_USERNAME",
    "OS_PASSWORD",
    "OS_PROJECT_NAME",
    "OS_CLOUD",
    "OS_AUTH_URL",
    "OS_TOKEN",
    "OS_CACERT",
    "CIRRUS_CACERT",
];

/// CA certificates of the TLS clouds (`cirrus up --tls`) this test process started; every
/// HTTP client the harness builds trusts them (nextest runs each test in its own process).
static TRUSTED_CAS: Mutex<Vec<reqwest::Certificate>> = Mutex::new(Vec::new());

/// Trusts the PEM CA certificate at `path` in every client built by [`http_builder`].
pub fn trust_ca(path: &Path) -> bool {
    let Ok(pem) = std::fs::read(path) else {
        return false;
    };
    let cert = reqwest::Certificate::from_pem(&pem).expect("a PEM CA certificate");
    TRUSTED_CAS.lock().unwrap().push(cert);
    true
}

/// A blocking HTTP client builder trusting the CAs of the TLS clouds started here.
pub fn http_builder() -> reqwest::blocking::ClientBuilder {
    TRUSTED_CAS
        .lock()
        .unwrap()
        .iter()
        .cloned()
        .fold(reqwest::blocking::Client::builder(), |b, ca| {
            b.add_root_certificate(ca)
        })
}

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

/// A command (a workspace binary) with no inherited credentials (see [`CREDENTIAL_VARS`]).
pub fn clean_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for var in CREDENTIAL_VARS {
        cmd.env_remove(var);
    }
    cmd
}

#[allow(unused_imports)] // not every test binary needs a port
pub use cirrus_test_utils::free_port;

/// A random string for passwords and names (std's randomly keyed hasher; no extra crate).
pub fn random_hex() -> String {
    let a = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{a:016x}{:016x}", h.finish())
}

/// The variables of a shell file of `export NAME=value` lines (values may be single-quoted),
/// like the `openrc` that `cirrus up` writes.
pub fn parse_exports(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.trim().strip_prefix("export ")?.split_once('=')?;
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(value);
            Some((name.trim().to_string(), value.to_string()))
        })
        .collect()
}

/// Logs in at `base`'s identity service with a password (scoped to `project` when given);
/// returns the HTTP status and the token (`X-Subject-Token`) when it succeeded.
pub fn login(
    base: &str,
    user: &str,
    password: &str,
    project: Option<&str>,
) -> (u16, Option<String>) {
    let mut auth = json!({"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password}}}});
    if let Some(project) = project {
        auth["scope"] = json!({"project": {"name": project, "domain": {"id": "default"}}});
    }
    let resp = http_builder()
        .build()
        .expect("an HTTP client")
        .post(format!("{base}/identity/v3/auth/tokens"))
        .json(&json!({ "auth": auth }))
        .send()
        .expect("the identity service answers");
    let status = resp.status().as_u16();
    let token = resp
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, token.filter(|_| (200..300).contains(&status)))
}

/// An HTTP client sending `token` as `X-Auth-Token` with every request.
pub fn client_with_token(token: &str) -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-auth-token",
        reqwest::header::HeaderValue::from_str(token).expect("tokens are header-safe"),
    );
    http_builder()
        .default_headers(headers)
        .build()
        .expect("an HTTP client")
}

/// A `cirrus up` process.
pub struct Cloud {
    child: Option<Child>,
    /// API base URL.
    pub base: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The variables of `<data-dir>/openrc` (the admin's credentials), read when it got ready.
    pub openrc: BTreeMap<String, String>,
    /// Extra arguments it was started with (reused on restart).
    args: Vec<String>,
    log: PathBuf,
    /// The admin's token and a client sending it, logged in on first use (cleared on restart).
    session: Mutex<Option<(String, reqwest::blocking::Client)>>,
}

impl Cloud {
    /// Starts `cirrus up` on a free port with `data_dir` and waits until it is ready.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Cloud {
        let mut cloud = Cloud {
            child: None,
            base: String::new(),
            data_dir: data_dir.to_path_buf(),
            openrc: BTreeMap::new(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            log: data_dir.with_extension("log"),
            session: Mutex::new(None),
        };
        cloud.launch();
        cloud
    }

    fn launch(&mut self) {
        let port = free_port();
        let scheme = if self.tls() { "https" } else { "http" };
        self.base = format!("{scheme}://127.0.0.1:{port}");
        *self.session.lock().unwrap() = None;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = clean_command(&bin("cirrus"))
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

    /// Waits until `/readyz` answers and `openrc` names this start's API; returns how long
    /// it took. Reads the admin credentials from `openrc`.
    pub fn wait_ready(&mut self, timeout: Duration) -> Duration {
        let started = Instant::now();
        let url = format!("{}/readyz", self.base);
        // A TLS cloud's CA exists once it serves (made before it listens, kept across starts).
        let mut trusted = !self.tls();
        loop {
            if !trusted {
                trusted = trust_ca(&self.ca_path());
            }
            if trusted
                && let Ok(resp) = http_builder().build().unwrap().get(&url).send()
                && resp.status().is_success()
            {
                let openrc = std::fs::read_to_string(self.data_dir.join("openrc"))
                    .map(|t| parse_exports(&t))
                    .unwrap_or_default();
                if openrc.get("CIRRUS_URL") == Some(&self.base) {
                    self.openrc = openrc;
                    return started.elapsed();
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "cirrus up exited with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < timeout,
                "cirrus up not ready (or no openrc for {}) after {timeout:?}: {}",
                self.base,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it was started with `--tls` (an `https://` API with the cloud's own CA).
    pub fn tls(&self) -> bool {
        self.args.iter().any(|a| a == "--tls")
    }

    /// The cloud's CA certificate (`--tls`): `<data-dir>/tls/ca.pem`.
    pub fn ca_path(&self) -> PathBuf {
        self.data_dir.join("tls/ca.pem")
    }

    /// The admin's password (from `openrc`).
    pub fn admin_password(&self) -> &str {
        self.openrc
            .get("OS_PASSWORD")
            .expect("openrc exports OS_PASSWORD")
    }

    /// The admin's credentials as environment variables for a `cirrus` process (CLI,
    /// `cirrus controllers`): `OS_USERNAME`, `OS_PASSWORD`, `OS_PROJECT_NAME`.
    pub fn admin_env(&self) -> Vec<(String, String)> {
        ["OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME"]
            .iter()
            .map(|name| {
                let value = self
                    .openrc
                    .get(*name)
                    .unwrap_or_else(|| panic!("openrc exports {name}"));
                (name.to_string(), value.clone())
            })
            .collect()
    }

    fn session(&self) -> (String, reqwest::blocking::Client) {
        let mut session = self.session.lock().unwrap();
        if let Some(s) = session.as_ref() {
            return s.clone();
        }
        let user = self.openrc.get("OS_USERNAME").expect("openrc OS_USERNAME");
        let project = self.openrc.get("OS_PROJECT_NAME").map(String::as_str);
        let (status, token) = login(&self.base, user, self.admin_password(), project);
        let token = token.unwrap_or_else(|| panic!("admin login answered {status}"));
        let fresh = (token.clone(), client_with_token(&token));
        *session = Some(fresh.clone());
        fresh
    }

    /// A token of the admin (logged in once per start of `cirrus up`, then cached).
    pub fn token(&self) -> String {
        self.session().0
    }

    /// An HTTP client that sends the admin's token with every request.
    pub fn http(&self) -> reqwest::blocking::Client {
        self.session().1
    }

    /// GETs `path` of the native API (`/apis/cirrus.dev/v1{path}`) as the admin: the JSON
    /// body (an error Status for a failed read).
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        self.http()
            .get(format!("{}/apis/cirrus.dev/v1{path}", self.base))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// POSTs `body` to `path` of the native API as the admin, failing the test with the
    /// answer unless it succeeded.
    pub fn post_ok(&self, path: &str, body: serde_json::Value) {
        let resp = self
            .http()
            .post(format!("{}/apis/cirrus.dev/v1{path}", self.base))
            .json(&body)
            .send()
            .unwrap();
        assert!(
            resp.status().is_success(),
            "POST {path}: {}",
            resp.text().unwrap_or_default()
        );
    }

    /// Creates the node user `node-<node>` (a `User` with `spec.node` set, a random password)
    /// through the API and returns the environment a `cirrus node-agent --node <node>` needs
    /// to act as it.
    pub fn node_env(&self, node: &str) -> Vec<(String, String)> {
        let user = format!("node-{node}");
        let password = random_hex();
        let body = json!({"apiVersion": "cirrus.dev/v1", "kind": "User",
            "metadata": {"name": user}, "spec": {"node": node, "password": password}});
        let resp = self
            .http()
            .post(format!("{}/apis/cirrus.dev/v1/users", self.base))
            .json(&body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        assert_eq!(
            status,
            201,
            "creating user {user}: {}",
            resp.text().unwrap_or_default()
        );
        vec![
            ("OS_USERNAME".to_string(), user),
            ("OS_PASSWORD".to_string(), password),
        ]
    }

    /// Creates project `name` as the admin with the quota limits `quota` (OpenStack quota
    /// names; `-1`: unlimited), for tests that make more than the default quotas allow.
    pub fn create_project(&self, name: &str, quota: serde_json::Value) {
        let body = json!({"metadata": {"name": name}, "spec": {"quota": quota}});
        let resp = self
            .http()
            .post(format!("{}/apis/cirrus.dev/v1/projects", self.base))
            .json(&body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        assert_eq!(
            status,
            201,
            "creating project {name}: {}",
            resp.text().unwrap_or_default()
        );
    }

    /// SIGKILLs the process (no chance to flush anything) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts it again on the same data directory (on a new port: log in again).
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
        for file in ["flavors.yaml", "guest-images.yaml"] {
            run_ok(
                self,
                &["apply", "-f", examples.join(file).to_str().unwrap()],
            );
        }
        for (image, file) in [
            ("guest-kernel", "vmlinuz"),
            ("guest-initrd", "initrd.img"),
            ("guest", "root.qcow2"),
        ] {
            run_ok(
                self,
                &[
                    "upload-image",
                    image,
                    guest.join(file).to_str().unwrap(),
                    "-p",
                    "demo",
                ],
            );
        }
    }

    /// Runs the `cirrus` CLI against this cloud as the admin (the `openrc` credentials).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = clean_command(&bin("cirrus"));
        if self.tls() {
            cmd.env("OS_CACERT", self.ca_path());
        }
        cmd.args(args)
            .env("CIRRUS_URL", &self.base)
            .envs(self.admin_env())
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
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl Proc {
    /// Starts `cirrus <args>` with the environment variables `env` (its credentials, e.g.
    /// [`Cloud::admin_env`] or [`Cloud::node_env`]; nothing of the test's own credentials is
    /// inherited) and its output appended to `log`.
    pub fn start(args: &[String], env: &[(String, String)], log: &Path) -> Proc {
        let mut p = Proc {
            child: None,
            args: args.to_vec(),
            env: env.to_vec(),
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
        let child = clean_command(&bin("cirrus"))
            .args(&self.args)
            .envs(self.env.iter().cloned())
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
#[allow(unused_imports)] // not every test binary polls
pub use cirrus_test_utils::eventually_blocking as eventually;

/// A tiny (16 MiB virtual, sparse) qcow2 file `disk.qcow2` in `dir`, made with the real
/// `qemu-img`: image data a hollow node can "boot" without a guest.
pub fn tiny_qcow2(dir: &Path) -> PathBuf {
    let path = dir.join("disk.qcow2");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg("16M")
        .stdout(Stdio::null())
        .status()
        .expect("qemu-img is installed");
    assert!(made.success(), "qemu-img create {}", path.display());
    path
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

/// Removes, when dropped, what a failed test could leave on the host: the test's bridge, its
/// DHCP namespaces and their dnsmasq processes (found through the agent's state directory).
pub struct NetworkSweeper {
    /// The test's own integration bridge.
    pub bridge: String,
    /// The node agent's state directory (`<data>/node`).
    pub state_dir: PathBuf,
}

impl Drop for NetworkSweeper {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.state_dir.join("network/dhcp")) {
            for entry in entries.flatten() {
                let uid = entry.file_name().to_string_lossy().to_string();
                if let Ok(pid) = std::fs::read_to_string(entry.path().join("pid")) {
                    let pid = pid.trim();
                    let cmdline =
                        std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    if cmdline.contains("dnsmasq") && cmdline.contains(&uid) {
                        let _ = Command::new("kill").arg(pid).status();
                    }
                }
                let _ = Command::new("ip")
                    .args(["netns", "del", &format!("qdhcp-{uid}")])
                    .status();
            }
        }
        let _ = Command::new("ovs-vsctl")
            .args(["--if-exists", "del-br", &self.bridge])
            .status();
    }
}

/// Whether the test should skip because one of `vars` is set to `1` (and only `1`: `=0` or
/// any other value runs it); says which on stdout, so a skipped run is never mistaken for a
/// pass that checked something.
pub fn skipped_by(vars: &[&str]) -> bool {
    match vars
        .iter()
        .find(|v| std::env::var(v).is_ok_and(|value| value == "1"))
    {
        Some(var) => {
            println!("SKIP: {var}=1, this test checks nothing in this run");
            true
        }
        None => false,
    }
}
