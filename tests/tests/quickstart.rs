//! The README quickstart as a user runs it: `cirrus apply -f examples/` then `cirrus get`,
//! surviving `kill -9` of `cirrus up`, on the embedded store and on a real etcd.

mod common;

use common::{Cloud, repo_root, run_ok};
use serde_json::Value;

/// uid of every object of `kind` (all projects), by name.
fn uids(cloud: &Cloud, kind: &str) -> Vec<(String, String)> {
    let json: Value =
        serde_json::from_str(&run_ok(cloud, &["get", kind, "-A", "-o", "json"])).unwrap();
    let items = match json.get("items") {
        Some(items) => items.as_array().unwrap().clone(),
        None => vec![json],
    };
    let mut out: Vec<(String, String)> = items
        .iter()
        .map(|i| {
            (
                i["metadata"]["name"].as_str().unwrap().to_string(),
                i["metadata"]["uid"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn quickstart(cloud: &mut Cloud) {
    let examples = repo_root().join("examples");
    let applied = run_ok(
        cloud,
        &["apply", "-f", examples.to_str().unwrap(), "--recursive"],
    );
    assert!(applied.contains("created"), "{applied}");
    let table = run_ok(cloud, &["get", "flavors"]);
    for flavor in ["m1.tiny", "m1.small", "m1.medium", "m1.large"] {
        assert!(table.contains(flavor), "{flavor} listed: {table}");
    }
    let before: Vec<Vec<(String, String)>> =
        ["flavors", "networks", "subnets", "servers", "projects"]
            .iter()
            .map(|k| uids(cloud, k))
            .collect();
    assert!(
        before.iter().all(|items| !items.is_empty()),
        "every example kind stored: {before:?}"
    );

    cloud.kill9();
    cloud.restart();
    let after: Vec<Vec<(String, String)>> =
        ["flavors", "networks", "subnets", "servers", "projects"]
            .iter()
            .map(|k| uids(cloud, k))
            .collect();
    assert_eq!(
        before, after,
        "every acknowledged object survives kill -9, same uid"
    );

    // Re-applying the same directory changes nothing.
    let again = run_ok(
        cloud,
        &["apply", "-f", examples.to_str().unwrap(), "--recursive"],
    );
    assert!(
        !again.contains("created") && !again.contains("configured"),
        "{again}"
    );
}

#[test]
fn quickstart_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut cloud = Cloud::start(&dir.path().join("data"), &[]);
    quickstart(&mut cloud);
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_on_a_real_etcd() {
    let etcd = cirrus_test_utils::RealEtcd::start()
        .await
        .expect("a real etcd (/usr/bin/etcd from Debian's etcd-server) must be installed");
    let endpoint = etcd.endpoint();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let mut cloud = Cloud::start(&dir.path().join("data"), &["--etcd-endpoints", &endpoint]);
        quickstart(&mut cloud);
    })
    .await
    .unwrap();
    drop(etcd);
}
