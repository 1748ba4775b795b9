//! `cirrus admin rotate-keys` against a running `cirrus up` (started on a free loopback port
//! with a temporary data directory, killed by PID when the test ends), and the admin
//! password kept out of `cirrus up`'s output.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_cirrus");

/// A `cirrus up` child process, killed on drop.
struct Up {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Up {
    async fn start(dir: &Path) -> Self {
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = format!("127.0.0.1:{port}");
            let log = dir.join("up.log");
            let file = std::fs::File::create(&log).unwrap();
            let child = Command::new(BIN)
                .args(["up", "--listen", &addr, "--store-listen", "127.0.0.1:0"])
                .args(["--node-agent", "none", "--no-controllers", "--data-dir"])
                .arg(dir.join("data"))
                .env_remove("CIRRUS_ETCD_ENDPOINTS")
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .expect("spawn cirrus up");
            let mut up = Up {
                child,
                url: format!("http://{addr}"),
                log,
            };
            match up.wait_ready().await {
                Ok(()) => return up,
                Err(log) if log.contains("in use") => continue,
                Err(log) => panic!("cirrus up did not start:\n{log}"),
            }
        }
        panic!("no free port for cirrus up");
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let http = reqwest::Client::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}:\n{}", self.log()));
            }
            let ready = http.get(format!("{}/readyz", self.url)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after 120 s:\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn login(&self, password: &str) -> String {
        let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}});
        let resp = reqwest::Client::new()
            .post(format!("{}/identity/v3/auth/tokens", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "admin login");
        resp.headers()["x-subject-token"]
            .to_str()
            .unwrap()
            .to_string()
    }

    async fn validates(&self, caller: &str, subject: &str) -> bool {
        let resp = reqwest::Client::new()
            .get(format!("{}/identity/v3/auth/tokens", self.url))
            .header("x-auth-token", caller)
            .header("x-subject-token", subject)
            .send()
            .await
            .unwrap();
        resp.status() == 200
    }
}

fn key_id(token: &str) -> u32 {
    let raw = URL_SAFE_NO_PAD.decode(token).expect("base64url");
    u32::from_be_bytes(raw[1..5].try_into().unwrap())
}

fn cirrus(args: &[&str], data: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("run cirrus")
}

fn password_in(openrc: &str) -> String {
    openrc
        .lines()
        .find_map(|l| l.trim().strip_prefix("export OS_PASSWORD="))
        .expect("openrc exports OS_PASSWORD")
        .trim_matches('\'')
        .to_string()
}

#[tokio::test]
async fn rotate_keys_on_a_running_cloud_keeps_old_tokens_and_the_password_stays_out_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = Up::start(dir.path()).await;

    let password = password_in(&std::fs::read_to_string(data.join("openrc")).unwrap());
    let log = up.log();
    assert!(
        !log.contains(&password),
        "the admin password is not in the output of cirrus up:\n{log}"
    );
    assert!(log.contains("its password is only in"), "{log}");

    let before = up.login(&password).await;
    assert_eq!(key_id(&before), 0);

    let out = cirrus(&["admin", "rotate-keys"], &data);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("new primary key 1, keys [0, 1]"),
        "{stdout}"
    );
    println!("{stdout}");

    // The running API re-reads the ring (every 10 s): wait for a login sealed with key 1.
    let started = Instant::now();
    let mut after = None;
    for _ in 0..120 {
        let token = up.login(&password).await;
        if key_id(&token) == 1 {
            after = Some(token);
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let after = after.expect("the API picks up the rotated keys");
    println!(
        "the running API sealed with the new key after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        up.validates(&after, &before).await,
        "a token from before the rotation still validates"
    );
    assert!(up.validates(&before, &after).await);

    // Keeping fewer than two keys, or a data directory without keys, is refused.
    let out = cirrus(&["admin", "rotate-keys", "--keep", "1"], &data);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 2"));
    let out = cirrus(&["admin", "rotate-keys"], &dir.path().join("missing"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("reading the token keys"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        cirrus_auth::KeyRing::load(&data.join("keys"))
            .unwrap()
            .key_ids(),
        [0, 1],
        "the refused rotations changed nothing"
    );
}
