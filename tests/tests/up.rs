//! `cirrus up` as a user runs it: durability across `kill -9`, etcdctl access to the embedded
//! store, the same flows against a real etcd, and the watch automation example.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Cloud, bin, clean_command};
use serde_json::{Value, json};

fn flavor(name: &str) -> Value {
    json!({"apiVersion": "cirrus.dev/v1", "kind": "Flavor", "metadata": {"name": name}, "spec": {"vcpus": 1, "ram": 512}})
}

/// POSTs `body` to `path` of the native API with `http` (a client carrying a token).
fn post_with(
    http: &reqwest::blocking::Client,
    base: &str,
    path: &str,
    body: &Value,
) -> reqwest::Result<reqwest::blocking::Response> {
    http.post(format!("{base}/apis/cirrus.dev/v1{path}"))
        .json(body)
        .send()
}

/// POSTs `body` to `path` of the native API as the admin.
fn post(cloud: &Cloud, path: &str, body: &Value) -> reqwest::Result<reqwest::blocking::Response> {
    post_with(&cloud.http(), &cloud.base, path, body)
}

/// GETs `path` of the native API as the admin.
fn get(cloud: &Cloud, path: &str) -> (u16, Value) {
    let resp = cloud
        .http()
        .get(format!("{}/apis/cirrus.dev/v1{path}", cloud.base))
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
}

/// Writes flavors from several threads until told to stop; returns the acknowledged names.
fn write_until_killed(cloud: &mut Cloud, writers: usize, run_for: Duration) -> BTreeSet<String> {
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let base = cloud.base.clone();
            let http = cloud.http();
            let acked = acked.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("w{w}-{i}");
                    match post_with(&http, &base, "/flavors", &flavor(&name)) {
                        Ok(resp) if resp.status().as_u16() == 201 => {
                            acked.lock().unwrap().insert(name);
                        }
                        _ => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(run_for);
    cloud.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

fn assert_all_present(cloud: &Cloud, acked: &BTreeSet<String>) {
    let (code, list) = get(cloud, "/flavors");
    assert_eq!(code, 200);
    let stored: BTreeSet<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged objects lost after kill -9: {lost:?}",
        lost.len()
    );
}

#[test]
fn acknowledged_objects_survive_kill_9_of_cirrus_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut cloud = Cloud::start(&dir.path().join("data"), &[]);
    let acked = write_until_killed(&mut cloud, 4, Duration::from_millis(800));
    assert!(
        acked.len() > 10,
        "writes happened before the kill ({})",
        acked.len()
    );
    cloud.restart();
    assert_all_present(&cloud, &acked);
    // And the restarted store keeps working: versions keep increasing.
    let resp = post(&cloud, "/flavors", &flavor("after-restart")).unwrap();
    assert_eq!(resp.status().as_u16(), 201);
}

#[test]
fn etcdctl_reads_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(&dir.path().join("data"), &[]);
    assert_eq!(
        post(&cloud, "/flavors", &flavor("m1.tiny"))
            .unwrap()
            .status()
            .as_u16(),
        201
    );
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &cloud.store_endpoint(),
            "get",
            "/cirrus/flavors/m1.tiny",
            "--print-value-only",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("etcdctl is installed (apt-get install etcd-client)");
    assert!(
        out.status.success(),
        "etcdctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: Value =
        serde_json::from_slice(&out.stdout).expect("etcdctl printed the stored JSON");
    assert_eq!(value["metadata"]["name"], "m1.tiny");
    assert_eq!(value["spec"]["ram"], 512);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_flows_work_against_a_real_etcd() {
    let etcd = cirrus_test_utils::RealEtcd::start().await.expect(
        "a real etcd (/usr/bin/etcd from Debian's etcd-server) must be installed for this test",
    );
    let endpoint = etcd.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    tokio::task::spawn_blocking(move || {
        let mut cloud = Cloud::start(&data, &["--etcd-endpoints", &endpoint]);
        assert_eq!(
            post(&cloud, "/flavors", &flavor("m1.tiny"))
                .unwrap()
                .status()
                .as_u16(),
            201
        );
        let acked = write_until_killed(&mut cloud, 2, Duration::from_millis(400));
        cloud.restart();
        assert_all_present(&cloud, &acked);
        let (code, f) = get(&cloud, "/flavors/m1.tiny");
        assert_eq!(code, 200);
        // Stale updates conflict against etcd too.
        let mut stale = f.clone();
        stale["spec"]["vcpus"] = json!(2);
        let client = cloud.http();
        let url = format!("{}/apis/cirrus.dev/v1/flavors/m1.tiny", cloud.base);
        assert_eq!(
            client
                .put(&url)
                .json(&stale)
                .send()
                .unwrap()
                .status()
                .as_u16(),
            200
        );
        assert_eq!(
            client
                .put(&url)
                .json(&stale)
                .send()
                .unwrap()
                .status()
                .as_u16(),
            409
        );
        assert!(
            !cloud.data_dir.join("store").exists(),
            "no embedded store when etcd is given"
        );
    })
    .await
    .unwrap();
    drop(etcd);
}

/// Polls `check` until it holds (state, not timing, is asserted).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    common::eventually(what, Duration::from_secs(20), || check().then_some(()));
}

fn set_ready(cloud: &Cloud, name: &str) {
    let resp = cloud
        .http()
        .patch(format!(
            "{}/apis/cirrus.dev/v1/flavors/{name}/status",
            cloud.base
        ))
        .header("Content-Type", "application/merge-patch+json")
        .body(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}).to_string())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

fn labelled(cloud: &Cloud, name: &str) -> bool {
    get(cloud, &format!("/flavors/{name}")).1["metadata"]["labels"]["cirrus.dev/ready"] == "true"
}

struct Automation {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl Automation {
    /// Starts the example with the admin's credentials from the cloud's `openrc`, as a user
    /// who sourced it would.
    fn start(cloud: &Cloud, state: &std::path::Path, out: std::path::PathBuf) -> Self {
        let log = std::fs::File::create(&out).unwrap();
        let child = clean_command(&bin("cirrus-label-ready"))
            .envs(cloud.admin_env())
            .args([
                "--server",
                &cloud.base,
                "--path",
                "/apis/cirrus.dev/v1/flavors",
                "--state-file",
            ])
            .arg(state)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Automation { child, out }
    }
    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Automation {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[test]
fn watch_automation_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(&dir.path().join("data"), &[]);
    let state = dir.path().join("label-ready.state");
    post(&cloud, "/flavors", &flavor("a")).unwrap();

    let first = Automation::start(&cloud, &state, dir.path().join("first.log"));
    eventually("the automation listed", || {
        first.output().contains("LISTED")
    });
    set_ready(&cloud, "a");
    eventually("a labelled", || labelled(&cloud, "a"));
    eventually("state saved after labelling", || {
        first.output().contains("LABELLED Flavor a")
    });
    let out = first.output();
    drop(first);
    assert!(out.contains("starting with a full list"), "{out}");

    // While it is down: a new object becomes ready.
    post(&cloud, "/flavors", &flavor("b")).unwrap();
    set_ready(&cloud, "b");

    let second = Automation::start(&cloud, &state, dir.path().join("second.log"));
    eventually("b labelled after restart", || labelled(&cloud, "b"));
    eventually("b reported", || {
        second.output().contains("LABELLED Flavor b")
    });
    let out = second.output();
    assert!(out.contains("resuming from resourceVersion"), "{out}");
    assert!(!out.contains("LISTED"), "resumed without relisting: {out}");
    assert!(
        !out.contains("LABELLED Flavor a"),
        "a was not handled twice: {out}"
    );
}
