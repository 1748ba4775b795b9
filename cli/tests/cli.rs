//! End-to-end tests of the `cirrus` client commands against a real `cirrus up` started on a
//! free loopback port with a temporary data directory (one server per test, killed by PID
//! when the test ends).
//!
//! Why this file is long: every test drives the real `cirrus` binary against one real `cirrus
//! up` fixture (apply, get, describe, diff, delete, wait, watch, errors); each is one
//! command's whole behaviour, and splitting them would copy the fixture.
//!
//! Set `CIRRUS_TEST_SERVER=http://127.0.0.1:PORT` to run them against a server you started
//! yourself instead (with a cloud admin's credentials in the environment: `source` its
//! `openrc`, or `CIRRUS_TOKEN`); object names are unique per test so they can share it.
//!
//! Every API call needs a token: the commands run with the admin credentials `cirrus up`
//! wrote to `<data-dir>/openrc`, and the tests' own HTTP requests carry an admin token.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_cirrus");

/// Credential variables the commands get only from [`Server::env`], never from the shell
/// that runs the tests.
const CREDENTIAL_VARS: &[&str] = &[
    "CIRRUS_TOKEN",
    "OS_USERNAME",
    "OS_PASSWORD",
    "OS_PROJECT_NAME",
    "OS_CLOUD",
];

/// A running `cirrus up` (or an external server), stopped on drop.
struct Server {
    child: Option<Child>,
    url: String,
    addr: String,
    dir: tempfile::TempDir,
    /// The credentials every `cirrus` command runs with (a cloud admin's).
    env: Vec<(String, String)>,
    /// An admin token for the tests' own HTTP requests.
    token: Option<String>,
}

impl Server {
    fn start() -> Self {
        let mut dir = tempfile::tempdir().expect("temp dir");
        if let Ok(url) = std::env::var("CIRRUS_TEST_SERVER") {
            let addr = url
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
            let env = CREDENTIAL_VARS
                .iter()
                .filter_map(|v| Some((v.to_string(), std::env::var(v).ok()?)))
                .collect();
            let mut server = Self {
                child: None,
                url,
                addr,
                dir,
                env,
                token: None,
            };
            server.log_in();
            return server;
        }
        // A free port can be taken between probing and binding: retry a few times.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = format!("127.0.0.1:{port}");
            let log = std::fs::File::create(dir.path().join("up.log")).unwrap();
            let child = Command::new(BIN)
                .args([
                    "up",
                    "--listen",
                    &addr,
                    "--store-listen",
                    "127.0.0.1:0",
                    "--data-dir",
                ])
                .arg(dir.path().join("data"))
                .env_remove("CIRRUS_ETCD_ENDPOINTS")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn cirrus up");
            let url = format!("http://{addr}");
            let mut server = Self {
                child: Some(child),
                url,
                addr,
                dir,
                env: Vec::new(),
                token: None,
            };
            match server.wait_ready() {
                Ok(()) => {
                    server.env = server.openrc_credentials();
                    server.log_in();
                    return server;
                }
                Err(log) if attempt < 3 && log.contains("in use") => {
                    dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
                }
                Err(log) => panic!("cirrus up did not start:\n{log}"),
            }
        }
    }

    /// Waits until `/readyz` answers 200; `Err(log)` when the server exited or never got
    /// ready.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!("exited with {status}:\n{}", self.log()));
            }
            if let Ok((200, _)) = self.try_http("GET", "/readyz", None) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after 60s:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default()
    }

    /// The admin's `OS_*` variables from the `openrc` that `cirrus up` wrote.
    fn openrc_credentials(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.dir.path().join("data/openrc"))
            .expect("cirrus up wrote <data-dir>/openrc");
        let vars: Vec<(String, String)> = text
            .lines()
            .filter_map(|line| {
                let (name, value) = line.trim().strip_prefix("export ")?.split_once('=')?;
                let value = value.trim_matches('\'');
                ["OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME"]
                    .contains(&name)
                    .then(|| (name.to_string(), value.to_string()))
            })
            .collect();
        assert_eq!(vars.len(), 3, "openrc has the admin credentials: {text}");
        vars
    }

    /// Gets the admin token for [`Server::http`]: `CIRRUS_TOKEN`, or a password login with
    /// the `OS_*` credentials.
    fn log_in(&mut self) {
        let var = |name: &str| {
            self.env
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        if let Some(token) = var("CIRRUS_TOKEN") {
            self.token = Some(token);
            return;
        }
        let (Some(user), Some(password)) = (var("OS_USERNAME"), var("OS_PASSWORD")) else {
            panic!(
                "no credentials for {}: set OS_USERNAME/OS_PASSWORD or CIRRUS_TOKEN",
                self.url
            );
        };
        let mut auth = json!({"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}}});
        if let Some(project) = var("OS_PROJECT_NAME") {
            auth["scope"] = json!({"project": {"name": project, "domain": {"id": "default"}}});
        }
        let body = json!({ "auth": auth });
        let (code, head, answer) = self
            .exchange(
                "POST",
                "/identity/v3/auth/tokens",
                Some(("application/json", &body)),
            )
            .expect("login request");
        assert_eq!(code, 201, "admin login: {answer}");
        let token = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-subject-token")
                .then(|| value.trim().to_string())
        });
        self.token = Some(token.expect("the login answered an X-Subject-Token"));
    }

    /// Runs `cirrus ARGS` against this server.
    fn cirrus(&self, args: &[&str]) -> Run {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run cirrus");
        Run::from(out)
    }

    /// Starts `cirrus ARGS` in the background.
    fn spawn(&self, args: &[&str]) -> Background {
        let child = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cirrus");
        Background::new(child)
    }

    /// `cirrus` against this server with the admin's credentials (and nothing inherited).
    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        for var in CREDENTIAL_VARS {
            cmd.env_remove(var);
        }
        cmd.env("CIRRUS_URL", &self.url)
            .env_remove("CIRRUS_PROJECT")
            .envs(self.env.iter().cloned());
        cmd
    }

    /// One HTTP request with the admin token (once logged in).
    fn try_http(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &Value)>,
    ) -> std::io::Result<(u16, Value)> {
        self.exchange(method, path, body)
            .map(|(code, _, value)| (code, value))
    }

    /// One HTTP/1.1 exchange: status, response head, body (JSON when it parses).
    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &Value)>,
    ) -> std::io::Result<(u16, String, Value)> {
        let mut stream = TcpStream::connect(&self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let payload = body
            .map(|(_, v)| serde_json::to_vec(v).unwrap())
            .unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some((content_type, _)) = body {
            request.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                payload.len()
            ));
        }
        if let Some(token) = &self.token {
            request.push_str(&format!("X-Auth-Token: {token}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes())?;
        stream.write_all(&payload)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        Ok((code, head.to_string(), value))
    }

    /// One HTTP request to the API; panics on transport errors.
    fn http(&self, method: &str, path: &str, body: Option<(&str, &Value)>) -> (u16, Value) {
        self.try_http(method, path, body).expect("HTTP request")
    }

    fn flavor(&self, name: &str) -> Option<Value> {
        let (code, body) = self.http("GET", &format!("/apis/cirrus.dev/v1/flavors/{name}"), None);
        match code {
            200 => Some(body),
            404 => None,
            other => panic!("GET flavor {name}: {other} {body}"),
        }
    }

    fn merge_patch(&self, path: &str, patch: Value) {
        let (code, body) = self.http(
            "PATCH",
            path,
            Some(("application/merge-patch+json", &patch)),
        );
        assert_eq!(code, 200, "PATCH {path}: {body}");
    }

    /// Writes a manifest file in this test's directory.
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join("manifests").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill signals exactly this PID.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The result of one CLI run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }
}

impl Run {
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A CLI process running in the background, its stdout read line by line.
struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Background {
    fn new(mut child: Child) -> Self {
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for a stdout line containing `needle`; returns the lines seen so far.
    #[track_caller]
    fn expect_line(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return seen;
                }
            }
        }
        panic!("no line containing {needle:?}; saw {seen:?}");
    }

    /// Waits for the process to exit; returns its exit code and stderr.
    fn finish(mut self, within: Duration) -> (i32, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut stderr);
                }
                return (status.code().unwrap_or(-1), stderr);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("background cirrus did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A flavor manifest.
fn flavor_yaml(name: &str, extra_meta: &str, spec: &str) -> String {
    format!(
        "apiVersion: cirrus.dev/v1\nkind: Flavor\nmetadata:\n  name: {name}\n{extra_meta}spec:\n{spec}"
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const FLAVORS: &str = "/apis/cirrus.dev/v1/flavors";

#[test]
fn apply_creates_configures_and_keeps_fields_owned_by_others() {
    let srv = Server::start();
    let file = srv.write(
        "f.yaml",
        &flavor_yaml(
            "ac-small",
            "  labels: {tier: small}\n",
            "  vcpus: 1\n  ram: 512\n  description: first\n",
        ),
    );
    let out = srv.cirrus(&["apply", "-f", s(&file)]).ok();
    assert_eq!(out.stdout.trim(), "Flavor/ac-small created");
    let out = srv.cirrus(&["apply", "-f", s(&file)]).ok();
    assert_eq!(out.stdout.trim(), "Flavor/ac-small unchanged");

    // Someone else (a controller, a person) adds a label and an annotation.
    srv.merge_patch(
        &format!("{FLAVORS}/ac-small"),
        json!({"metadata": {"labels": {"owner": "controller"}, "annotations": {"example.com/note": "kept"}}}),
    );
    // The manifest changes vcpus and drops the description.
    srv.write(
        "f.yaml",
        &flavor_yaml(
            "ac-small",
            "  labels: {tier: small}\n",
            "  vcpus: 2\n  ram: 512\n",
        ),
    );
    let out = srv.cirrus(&["apply", "-f", s(&file)]).ok();
    assert_eq!(out.stdout.trim(), "Flavor/ac-small configured");

    let live = srv.flavor("ac-small").unwrap();
    assert_eq!(live["spec"]["vcpus"], 2);
    assert!(
        live["spec"].get("description").is_none(),
        "dropped field removed: {live}"
    );
    assert_eq!(live["metadata"]["labels"]["owner"], "controller", "{live}");
    assert_eq!(live["metadata"]["labels"]["tier"], "small");
    assert_eq!(live["metadata"]["annotations"]["example.com/note"], "kept");
    assert!(live["metadata"]["annotations"]["cirrus.dev/last-applied"].is_string());

    let out = srv.cirrus(&["apply", "-f", s(&file)]).ok();
    assert_eq!(out.stdout.trim(), "Flavor/ac-small unchanged");
}

#[test]
fn invalid_manifest_is_rejected_before_anything_is_written() {
    let srv = Server::start();
    let good = flavor_yaml("iv-good", "", "  vcpus: 1\n  ram: 64\n");
    let bad = flavor_yaml("iv-bad", "", "  vcpus: 1\n  ram: 64\n  colour: red\n");
    let file = srv.write("mixed.yaml", &format!("{good}---\n{bad}"));
    let out = srv.cirrus(&["apply", "-f", s(&file)]).code(1);
    let expected = format!(
        "{}: document 2 (Flavor/iv-bad): spec.colour:",
        file.display()
    );
    assert!(out.stderr.contains(&expected), "stderr: {}", out.stderr);
    assert!(out.stdout.is_empty(), "nothing applied: {}", out.stdout);
    assert!(
        srv.flavor("iv-good").is_none(),
        "the valid document was not written either"
    );
}

#[test]
fn prune_deletes_only_what_the_applyset_owns() {
    let srv = Server::start();
    for name in ["pr-a", "pr-b", "pr-c"] {
        srv.write(
            &format!("set/{name}.yaml"),
            &flavor_yaml(name, "", "  vcpus: 1\n  ram: 64\n"),
        );
    }
    srv.write(
        "set/nested/pr-d.yaml",
        &flavor_yaml("pr-d", "", "  vcpus: 1\n  ram: 64\n"),
    );
    let dir = srv.manifests().join("set");
    let out = srv
        .cirrus(&[
            "apply",
            "-f",
            s(&dir),
            "-R",
            "--prune",
            "--applyset",
            "pr-set",
        ])
        .ok();
    for name in ["pr-a", "pr-b", "pr-c", "pr-d"] {
        assert!(
            out.stdout.contains(&format!("Flavor/{name} created")),
            "{}",
            out.stdout
        );
        let live = srv.flavor(name).unwrap();
        assert_eq!(live["metadata"]["labels"]["cirrus.dev/applyset"], "pr-set");
    }
    let (code, inv) = srv.http("GET", "/apis/cirrus.dev/v1/applysets/pr-set", None);
    assert_eq!(code, 200);
    assert_eq!(inv["spec"]["members"].as_array().unwrap().len(), 4, "{inv}");

    // An object carrying the label that the inventory never listed.
    let stranger = srv.write(
        "stranger.yaml",
        &flavor_yaml(
            "pr-stranger",
            "  labels: {cirrus.dev/applyset: pr-set}\n",
            "  vcpus: 1\n  ram: 64\n",
        ),
    );
    srv.cirrus(&["apply", "-f", s(&stranger)]).ok();
    // pr-c leaves the directory but someone took it over (label removed): not pruned.
    srv.merge_patch(
        &format!("{FLAVORS}/pr-c"),
        json!({"metadata": {"labels": {"cirrus.dev/applyset": null}}}),
    );
    std::fs::remove_file(dir.join("pr-b.yaml")).unwrap();
    std::fs::remove_file(dir.join("pr-c.yaml")).unwrap();

    let out = srv
        .cirrus(&[
            "apply",
            "-f",
            s(&dir),
            "-R",
            "--prune",
            "--applyset",
            "pr-set",
            "--dry-run=server",
        ])
        .ok();
    assert!(
        out.stdout.contains("Flavor/pr-b pruned (server dry run)"),
        "{}",
        out.stdout
    );
    assert!(srv.flavor("pr-b").is_some(), "dry run deletes nothing");

    let out = srv
        .cirrus(&[
            "apply",
            "-f",
            s(&dir),
            "-R",
            "--prune",
            "--applyset",
            "pr-set",
        ])
        .ok();
    assert!(
        out.stdout.contains("Flavor/pr-a unchanged"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Flavor/pr-b pruned"), "{}", out.stdout);
    assert!(
        out.stdout.contains("Flavor/pr-c not pruned"),
        "{}",
        out.stdout
    );
    assert!(srv.flavor("pr-b").is_none());
    assert!(srv.flavor("pr-c").is_some(), "unlabelled object kept");
    assert!(
        srv.flavor("pr-stranger").is_some(),
        "object outside the inventory kept"
    );
    assert!(srv.flavor("pr-a").is_some() && srv.flavor("pr-d").is_some());
    let (_, inv) = srv.http("GET", "/apis/cirrus.dev/v1/applysets/pr-set", None);
    let names: Vec<&str> = inv["spec"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pr-a", "pr-d"]);
}

#[test]
fn diff_exit_codes() {
    let srv = Server::start();
    let file = srv.write(
        "d.yaml",
        &flavor_yaml("df-one", "", "  vcpus: 1\n  ram: 64\n"),
    );
    let out = srv.cirrus(&["diff", "-f", s(&file)]).code(1);
    assert!(
        out.stdout.contains("+++ merged/Flavor/df-one"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("+  vcpus: 1"), "{}", out.stdout);
    assert!(srv.flavor("df-one").is_none(), "diff writes nothing");

    srv.cirrus(&["apply", "-f", s(&file)]).ok();
    let out = srv.cirrus(&["diff", "-f", s(&file)]).code(0);
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    srv.write(
        "d.yaml",
        &flavor_yaml("df-one", "", "  vcpus: 3\n  ram: 64\n"),
    );
    let out = srv.cirrus(&["diff", "-f", s(&file)]).code(1);
    assert!(
        out.stdout.contains("-  vcpus: 1\n+  vcpus: 3"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains('\x1b'),
        "no colour when not a terminal"
    );
    assert_eq!(srv.flavor("df-one").unwrap()["spec"]["vcpus"], 1);

    srv.write(
        "bad.yaml",
        &flavor_yaml("df-bad", "", "  vcpus: 1\n  ram: 64\n  nope: 1\n"),
    );
    srv.cirrus(&["diff", "-f", s(&srv.manifests().join("bad.yaml"))])
        .code(2);
}

#[test]
fn get_outputs() {
    let srv = Server::start();
    let file = srv.write(
        "g.yaml",
        &format!(
            "{}---\n{}",
            flavor_yaml(
                "go-a",
                "  labels: {app: go}\n",
                "  vcpus: 2\n  ram: 1024\n  disk: 10\n"
            ),
            flavor_yaml("go-b", "  labels: {app: go}\n", "  vcpus: 4\n  ram: 2048\n")
        ),
    );
    srv.cirrus(&["apply", "-f", s(&file)]).ok();

    let out = srv.cirrus(&["get", "flavors", "-l", "app=go"]).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("VCPUS") && lines[0].contains("AGE"),
        "{}",
        out.stdout
    );
    assert!(
        lines[1].starts_with("go-a") && lines[1].contains("1024"),
        "{}",
        out.stdout
    );
    assert_eq!(lines.len(), 3);

    let out = srv
        .cirrus(&["get", "fl", "-l", "app=go", "-o", "json"])
        .ok();
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);

    let out = srv.cirrus(&["get", "flavor", "go-b", "-o", "yaml"]).ok();
    let obj: Value = serde_saphyr::from_str(&out.stdout).unwrap();
    assert_eq!(obj["kind"], "Flavor");
    assert_eq!(obj["spec"]["vcpus"], 4);

    let out = srv
        .cirrus(&["get", "Flavor", "-l", "app=go", "-o", "yaml"])
        .ok();
    let list: Value = serde_saphyr::from_str(&out.stdout).unwrap();
    assert_eq!(list["kind"], "List");

    let out = srv
        .cirrus(&["get", "flavors", "-l", "app=go", "-o", "name"])
        .ok();
    assert_eq!(out.stdout, "flavor/go-a\nflavor/go-b\n");

    let out = srv
        .cirrus(&["get", "flavors", "-o", "wide", "-l", "app=go"])
        .ok();
    assert!(
        out.stdout.lines().next().unwrap().contains("SWAP"),
        "{}",
        out.stdout
    );

    let out = srv.cirrus(&["get", "flavor", "go-missing"]).code(1);
    assert!(
        out.stderr.contains("Error from server (NotFound)"),
        "{}",
        out.stderr
    );

    let out = srv.cirrus(&["describe", "flavor", "go-a"]).ok();
    assert!(out.stdout.contains("Name:        go-a"), "{}", out.stdout);
    assert!(out.stdout.contains("  vcpus: 2"), "{}", out.stdout);
    assert!(out.stdout.contains("Events:"), "{}", out.stdout);
}

#[test]
fn delete_wait_and_wait_for_delete_with_a_finalizer() {
    let srv = Server::start();
    let file = srv.write(
        "del.yaml",
        &flavor_yaml("dw-plain", "", "  vcpus: 1\n  ram: 64\n"),
    );
    srv.cirrus(&["apply", "-f", s(&file)]).ok();
    let out = srv
        .cirrus(&["delete", "flavor", "dw-plain", "--wait", "--timeout", "20s"])
        .ok();
    assert!(
        out.stdout.contains("flavor/dw-plain deleted"),
        "{}",
        out.stdout
    );
    assert!(srv.flavor("dw-plain").is_none());

    // With a finalizer the object stays until it is removed.
    let held = srv.write(
        "held.yaml",
        &flavor_yaml(
            "dw-held",
            "  finalizers: [example.com/hold]\n",
            "  vcpus: 1\n  ram: 64\n",
        ),
    );
    srv.cirrus(&["apply", "-f", s(&held)]).ok();
    let out = srv
        .cirrus(&["delete", "-f", s(&held), "--wait", "--timeout", "500ms"])
        .code(1);
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);
    assert!(out.stderr.contains("finalizers pending"), "{}", out.stderr);
    assert!(srv.flavor("dw-held").unwrap()["metadata"]["deletionTimestamp"].is_string());

    let waiter = srv.spawn(&["wait", "flavor/dw-held", "--for=delete", "--timeout", "20s"]);
    std::thread::sleep(Duration::from_millis(300));
    srv.merge_patch(
        &format!("{FLAVORS}/dw-held"),
        json!({"metadata": {"finalizers": null}}),
    );
    let (code, stderr) = waiter.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{stderr}");
    assert!(srv.flavor("dw-held").is_none());
}

#[test]
fn wait_for_condition_written_through_status() {
    let srv = Server::start();
    let file = srv.write(
        "w.yaml",
        &flavor_yaml("wc-one", "", "  vcpus: 1\n  ram: 64\n"),
    );
    srv.cirrus(&["apply", "-f", s(&file)]).ok();

    let out = srv
        .cirrus(&[
            "wait",
            "flavor/wc-one",
            "--for=condition=Ready",
            "--timeout",
            "300ms",
        ])
        .code(1);
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);

    let waiter = srv.spawn(&[
        "wait",
        "flavor/wc-one",
        "--for=condition=Ready",
        "--timeout",
        "20s",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let status =
        json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Done"}]}});
    let (code, body) = srv.http(
        "PUT",
        &format!("{FLAVORS}/wc-one/status"),
        Some(("application/json", &status)),
    );
    assert_eq!(code, 200, "{body}");
    let (code, stderr) = waiter.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{stderr}");

    // Already satisfied: returns at once; the opposite times out.
    srv.cirrus(&[
        "wait",
        "flavor",
        "wc-one",
        "--for=condition=Ready=True",
        "--timeout",
        "5s",
    ])
    .ok();
    let out = srv
        .cirrus(&[
            "wait",
            "fl/wc-one",
            "--for=condition=Ready=False",
            "--timeout",
            "300ms",
        ])
        .code(1);
    assert!(
        out.stderr.contains("Ready=True"),
        "reports what it saw: {}",
        out.stderr
    );

    let out = srv.cirrus(&["get", "flavor", "wc-one"]).ok();
    assert!(
        out.stdout.lines().next().unwrap().contains("READY"),
        "{}",
        out.stdout
    );
}

#[test]
fn watch_streams_events() {
    let srv = Server::start();
    let watcher = srv.spawn(&["watch", "flavors"]);
    let json_watcher = srv.spawn(&["watch", "flavors", "-o", "json"]);
    let getter = srv.spawn(&["get", "flavors", "-w"]);
    getter.expect_line("EVENT");
    std::thread::sleep(Duration::from_millis(300));
    let file = srv.write(
        "wt.yaml",
        &flavor_yaml("wt-one", "", "  vcpus: 1\n  ram: 64\n"),
    );
    srv.cirrus(&["apply", "-f", s(&file)]).ok();
    srv.cirrus(&["delete", "flavor", "wt-one"]).ok();
    watcher.expect_line("ADDED Flavor/wt-one");
    watcher.expect_line("DELETED Flavor/wt-one");
    let line = json_watcher.expect_line("wt-one").pop().unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["metadata"]["name"], "wt-one");
    getter.expect_line("DELETED");
}

#[test]
fn errors_are_clear() {
    let out = Command::new(BIN)
        .args(["--server", "http://127.0.0.1:1", "get", "flavors"])
        .output()
        .map(Run::from)
        .unwrap()
        .code(1);
    assert!(out.stderr.contains("cirrus up"), "{}", out.stderr);
    assert!(out.stderr.contains("--server"), "{}", out.stderr);

    let out = Command::new(BIN)
        .args(["get", "gizmos"])
        .output()
        .map(Run::from)
        .unwrap()
        .code(1);
    assert!(out.stderr.contains("unknown kind"), "{}", out.stderr);
}

#[test]
fn project_scoped_objects_and_prune_across_projects() {
    let srv = Server::start();
    let net = |name: &str, project: Option<&str>| {
        let project = project
            .map(|p| format!("  project: {p}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: cirrus.dev/v1\nkind: Network\nmetadata:\n  name: {name}\n{project}spec:\n  mtu: 1450\n"
        )
    };
    srv.write("ps-nets/a.yaml", &net("ps-a", None));
    srv.write("ps-nets/b.yaml", &net("ps-b", Some("ps-other")));
    let dir = srv.manifests().join("ps-nets");
    // --project is the default for manifests that name none; the set name defaults to the
    // directory name.
    let out = srv
        .cirrus(&["--project", "ps-main", "apply", "-f", s(&dir), "--prune"])
        .ok();
    assert!(
        out.stdout.contains("Network/ps-a created"),
        "{}",
        out.stdout
    );
    let (code, _) = srv.http(
        "GET",
        "/apis/cirrus.dev/v1/projects/ps-main/networks/ps-a",
        None,
    );
    assert_eq!(code, 200);
    let (code, inv) = srv.http("GET", "/apis/cirrus.dev/v1/applysets/ps-nets", None);
    assert_eq!(code, 200, "{inv}");

    let out = srv.cirrus(&["get", "networks", "-A", "-o", "name"]).ok();
    assert!(
        out.stdout.contains("network/ps-a") && out.stdout.contains("network/ps-b"),
        "{}",
        out.stdout
    );
    let out = srv.cirrus(&["get", "net", "-A"]).ok();
    assert!(out.stdout.starts_with("PROJECT"), "{}", out.stdout);
    let out = srv
        .cirrus(&["-p", "ps-other", "get", "net", "-o", "name"])
        .ok();
    assert_eq!(out.stdout, "network/ps-b\n");

    std::fs::remove_file(dir.join("b.yaml")).unwrap();
    let out = srv
        .cirrus(&["--project", "ps-main", "apply", "-f", s(&dir), "--prune"])
        .ok();
    assert!(
        out.stdout.contains("Network/ps-other/ps-b pruned"),
        "{}",
        out.stdout
    );
    let (code, _) = srv.http(
        "GET",
        "/apis/cirrus.dev/v1/projects/ps-other/networks/ps-b",
        None,
    );
    assert_eq!(code, 404);
    let (code, _) = srv.http(
        "GET",
        "/apis/cirrus.dev/v1/projects/ps-main/networks/ps-a",
        None,
    );
    assert_eq!(code, 200);
}
