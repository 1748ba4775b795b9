//! Crash safety: `kill -9` of the node agent and of the controllers in the middle of 20 server
//! creations, then restarts. Every server ends ACTIVE exactly once (one domain, one instance
//! directory each), nothing is orphaned, and deleting them all leaves nothing behind.
//!
//! Real libvirt/QEMU (TCG here); fails with a hint when libvirtd is missing unless
//! `CIRRUS_SKIP_LIBVIRT=1`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cloud, DomainSweeper, Proc, eventually, guest_dir, repo_root};
use serde_json::{Value, json};

const SERVERS: usize = 20;

fn virsh_domains() -> BTreeSet<String> {
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system", "list", "--all", "--name"])
        .stdin(Stdio::null())
        .output()
        .expect("virsh is installed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn servers(cloud: &Cloud) -> Vec<Value> {
    let list: Value = cloud
        .http()
        .get(format!(
            "{}/apis/cirrus.dev/v1/projects/demo/servers",
            cloud.base
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

fn instance_dirs(state: &Path) -> BTreeSet<String> {
    std::fs::read_dir(state.join("instances"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kill_9_of_agent_and_controllers_during_20_creations_converges_without_leaks() {
    if common::skipped_by(&["CIRRUS_SKIP_LIBVIRT"]) {
        return;
    }
    assert!(
        Command::new("virsh")
            .args(["-c", "qemu:///system", "version"])
            .output()
            .is_ok_and(|o| o.status.success()),
        "libvirtd is not reachable at qemu:///system: run hack/start-libvirt.sh (or set CIRRUS_SKIP_LIBVIRT=1)"
    );
    let guest = guest_dir();
    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(&dir.path().join("data"), &["--no-controllers"]);
    let base = cloud.base.clone();
    let state = dir.path().join("node");
    let _sweeper = DomainSweeper {
        state_dir: state.clone(),
    };
    // 20 one-vCPU servers on a 2-core host: the admin raises this node's CPU overcommit
    // (spec is the admin's; the agent only writes status).
    let node = json!({"metadata": {"name": "crash-node"}, "spec": {"cpuAllocationRatio": 16.0}});
    let http = cloud.http();
    let created = http
        .post(format!("{base}/apis/cirrus.dev/v1/nodes"))
        .json(&node)
        .send()
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    // And project demo's quota: OpenStack's default of 10 instances would refuse half of
    // the 20 servers.
    cloud.create_project("demo", json!({"instances": -1, "cores": -1}));
    // The controllers run as the cloud admin, the agent as its node's user.
    let mut controllers = Proc::start(
        &["controllers".into(), "--server".into(), base.clone()],
        &cloud.admin_env(),
        &dir.path().join("controllers.log"),
    );
    let mut agent = Proc::start(
        &[
            "node-agent".into(),
            "--server".into(),
            base.clone(),
            "--node".into(),
            "crash-node".into(),
            "--state-dir".into(),
            state.display().to_string(),
        ],
        &cloud.node_env("crash-node"),
        &dir.path().join("agent.log"),
    );

    let examples = repo_root().join("examples");
    let cli_ok = |args: &[&str]| {
        let out = cloud.cli(args);
        assert!(
            out.status.success(),
            "cirrus {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cli_ok(&[
        "apply",
        "-f",
        examples.join("guest-images.yaml").to_str().unwrap(),
    ]);
    for (image, file) in [
        ("guest-kernel", "vmlinuz"),
        ("guest-initrd", "initrd.img"),
        ("guest", "root.qcow2"),
    ] {
        cli_ok(&[
            "upload-image",
            image,
            guest.join(file).to_str().unwrap(),
            "-p",
            "demo",
        ]);
    }
    let flavor =
        json!({"metadata": {"name": "crash.tiny"}, "spec": {"vcpus": 1, "ram": 128, "disk": 1}});
    assert!(
        http.post(format!("{base}/apis/cirrus.dev/v1/flavors"))
            .json(&flavor)
            .send()
            .unwrap()
            .status()
            .is_success()
    );

    for i in 0..SERVERS {
        let server = json!({"metadata": {"name": format!("c-{i:02}")}, "spec": {"flavor": "crash.tiny", "image": "guest"}});
        let resp = http
            .post(format!("{base}/apis/cirrus.dev/v1/projects/demo/servers"))
            .json(&server)
            .send()
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            201,
            "{}",
            resp.text().unwrap_or_default()
        );
        if i == SERVERS / 2 {
            // Mid-way: the controllers die while binding.
            controllers.kill9();
        }
    }
    // The agent dies while it is creating domains (some servers bound, not all ACTIVE).
    controllers.restart();
    eventually("some servers in progress", Duration::from_secs(60), || {
        let bound = servers(&cloud)
            .iter()
            .filter(|s| s["spec"]["nodeName"].is_string())
            .count();
        (bound >= 3).then_some(())
    });
    agent.kill9();
    std::thread::sleep(Duration::from_millis(300));
    agent.restart();
    // And the controllers once more, while the agent is catching up.
    controllers.kill9();
    controllers.restart();

    let deadline = Instant::now() + Duration::from_secs(300);
    let all = loop {
        let list = servers(&cloud);
        let active = list
            .iter()
            .filter(|s| s["status"]["phase"] == "ACTIVE")
            .count();
        if active == SERVERS {
            break list;
        }
        if Instant::now() > deadline {
            let summary: Vec<String> = list
                .iter()
                .map(|s| {
                    let conditions: Vec<String> = s["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| format!("{}={}({})", c["type"], c["status"], c["message"]))
                        .collect();
                    let (name, node, phase) = (
                        &s["metadata"]["name"],
                        &s["spec"]["nodeName"],
                        &s["status"]["phase"],
                    );
                    format!("{name} node={node} phase={phase} {}", conditions.join(" "))
                })
                .collect();
            let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "not all ACTIVE:\n{}\nagent log, newest first:\n{}",
                summary.join("\n"),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let uids: BTreeSet<String> = all
        .iter()
        .map(|s| s["metadata"]["uid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(uids.len(), SERVERS, "no duplicate servers");
    let ours: BTreeSet<String> = virsh_domains()
        .into_iter()
        .filter_map(|d| d.strip_prefix("cirrus-").map(str::to_string))
        .filter(|uid| instance_dirs(&state).contains(uid) || uids.contains(uid))
        .collect();
    assert_eq!(ours, uids, "exactly one domain per server, none orphaned");
    assert_eq!(
        instance_dirs(&state),
        uids,
        "exactly one instance directory per server"
    );

    // Delete them all: nothing is left behind.
    for s in &all {
        let name = s["metadata"]["name"].as_str().unwrap();
        http.delete(format!(
            "{base}/apis/cirrus.dev/v1/projects/demo/servers/{name}"
        ))
        .send()
        .unwrap();
    }
    eventually("all deleted", Duration::from_secs(180), || {
        servers(&cloud).is_empty().then_some(())
    });
    let left: Vec<String> = virsh_domains()
        .into_iter()
        .filter(|d| {
            d.strip_prefix("cirrus-")
                .is_some_and(|uid| uids.contains(uid))
        })
        .collect();
    assert!(left.is_empty(), "domains left behind: {left:?}");
    assert!(
        instance_dirs(&state).is_empty(),
        "instance directories left behind"
    );
    drop(agent);
    drop(controllers);
}
