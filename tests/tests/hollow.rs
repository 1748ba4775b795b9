//! A server that fits nowhere says why, and becomes ACTIVE once a node with room registers:
//! `cirrus up` without a local node, then a hollow node (`cirrus node-agent --driver fake`)
//! joining in its own process.

mod common;

use std::time::Duration;

use common::{Cloud, Proc};
use serde_json::{Value, json};

fn eventually<T>(what: &str, probe: impl FnMut() -> Option<T>) -> T {
    common::eventually(what, Duration::from_secs(60), probe)
}

fn scheduled_condition(server: &Value) -> Option<Value> {
    server["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Scheduled")
        .cloned()
}

#[test]
fn unschedulable_server_explains_why_and_runs_when_a_node_joins() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(&dir.path().join("data"), &[]);
    let base = cloud.base.clone();
    let post = |path: &str, body: Value| cloud.post_ok(path, body);
    post(
        "/flavors",
        json!({"metadata": {"name": "small"}, "spec": {"vcpus": 1, "ram": 256, "disk": 1}}),
    );
    post(
        "/projects/demo/images",
        json!({"metadata": {"name": "disk"}, "spec": {"diskFormat": "qcow2", "containerFormat": "bare"}}),
    );
    // The image needs data for the node to boot it: a tiny qcow2.
    let image = common::tiny_qcow2(dir.path());
    let upload = cloud.cli(&[
        "upload-image",
        "disk",
        image.to_str().unwrap(),
        "-p",
        "demo",
    ]);
    assert!(
        upload.status.success(),
        "{}",
        String::from_utf8_lossy(&upload.stderr)
    );
    post(
        "/projects/demo/servers",
        json!({"metadata": {"name": "waiting"}, "spec": {"flavor": "small", "image": "disk"}}),
    );

    // No node at all: the server says so instead of a bare "No valid host".
    let condition = eventually("Scheduled=False", || {
        let c = scheduled_condition(&cloud.get_json("/projects/demo/servers/waiting"))?;
        (c["status"] == "False").then_some(c)
    });
    assert_eq!(condition["reason"], "NoValidHost");
    assert!(
        condition["message"]
            .as_str()
            .unwrap()
            .starts_with("0/0 nodes are available"),
        "{condition}"
    );
    assert_eq!(
        cloud.get_json("/projects/demo/servers/waiting")["status"]["phase"],
        "BUILD"
    );

    // A hollow node joins in its own process, as its node's user (killed on drop).
    let state = dir.path().join("hollow");
    let _agent = Proc::start(
        &[
            "node-agent".into(),
            "--driver".into(),
            "fake".into(),
            "--node".into(),
            "hollow-1".into(),
            "--server".into(),
            base.clone(),
            "--state-dir".into(),
            state.display().to_string(),
        ],
        &cloud.node_env("hollow-1"),
        &dir.path().join("agent.log"),
    );
    let server = eventually("ACTIVE on the hollow node", || {
        let s = cloud.get_json("/projects/demo/servers/waiting");
        (s["status"]["phase"] == "ACTIVE").then_some(s)
    });
    assert_eq!(server["spec"]["nodeName"], "hollow-1");
    assert_eq!(scheduled_condition(&server).unwrap()["status"], "True");
    let node = cloud.get_json("/nodes/hollow-1");
    assert_eq!(node["status"]["hypervisorType"], "fake");
    // The address the agent reaches the API from (loopback here), as Nova's host_ip.
    let internal: Vec<&Value> = node["status"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "InternalIP")
        .collect();
    assert_eq!(internal.len(), 1, "{}", node["status"]);
    assert_eq!(internal[0]["address"], "127.0.0.1");
}
