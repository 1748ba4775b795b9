//! Nova's non-server routes over HTTP: flavors (with extra specs), key pairs, hypervisors,
//! services (cordon/uncordon), limits and availability zones, as `openstack flavor ...`,
//! `keypair ...`, `hypervisor ...`, `compute service ...`, `limits show` and
//! `availability zone list` call them.

use cirrus_auth::Role;
use cirrus_test_utils::{TestApi, client_with_token};
use serde_json::{Value, json};

const V1: &str = "/apis/cirrus.dev/v1";

fn url(api: &TestApi, path: &str) -> String {
    format!("{}/compute/v2.1{path}", api.base_url)
}

async fn expect(resp: reqwest::Response, status: u16) -> Value {
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(code, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test]
async fn flavors_create_list_show_extra_specs_delete() {
    let api = TestApi::start().await;
    let admin = api.client();
    let member = client_with_token(&api.user_token("alice", "demo", Role::Member).await);

    // openstack flavor create --vcpus 1 --ram 256 --disk 1 m1.tiny
    let body = json!({"flavor": {"name": "m1.tiny", "ram": 256, "vcpus": 1, "disk": 1, "id": null,
        "OS-FLV-EXT-DATA:ephemeral": 0, "swap": 0, "rxtx_factor": 1.0, "os-flavor-access:is_public": true}});
    let resp = member
        .post(url(&api, "/flavors"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let fault = expect(resp, 403).await;
    assert!(fault["forbidden"]["message"].is_string());
    let created = expect(
        admin
            .post(url(&api, "/flavors"))
            .json(&body)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(created["flavor"]["id"], "m1.tiny");
    assert_eq!(created["flavor"]["swap"], "");
    let resp = admin
        .post(url(&api, "/flavors"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(expect(resp, 409).await["conflictingRequest"]["code"], 409);

    // A name that is not an object name gets a generated id and keeps its name.
    let fancy = json!({"flavor": {"name": "Large Flavor", "ram": 4096, "vcpus": 4, "disk": 40}});
    let fancy = expect(
        admin
            .post(url(&api, "/flavors"))
            .json(&fancy)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let fancy_id = fancy["flavor"]["id"].as_str().unwrap().to_string();
    assert_ne!(fancy_id, "Large Flavor");
    assert_eq!(fancy["flavor"]["name"], "Large Flavor");
    let private = json!({"flavor": {"name": "secret", "ram": 64, "vcpus": 1, "disk": 0,
        "os-flavor-access:is_public": false}});
    expect(
        admin
            .post(url(&api, "/flavors"))
            .json(&private)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;

    // Members see public flavors only, admins all with is_public=None.
    let listed = expect(
        member
            .get(url(&api, "/flavors/detail?is_public=None"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let names: Vec<&str> = listed["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"m1.tiny") && names.contains(&"Large Flavor") && !names.contains(&"secret"),
        "{names:?}"
    );
    let listed = expect(
        admin
            .get(url(&api, "/flavors?is_public=None"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(listed["flavors"].as_array().unwrap().len(), 3);
    let resp = member
        .get(url(&api, "/flavors/secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let big = expect(
        member
            .get(url(&api, "/flavors/detail?minRam=1000"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(big["flavors"].as_array().unwrap().len(), 1);
    assert_eq!(big["flavors"][0]["id"], fancy_id.as_str());

    // Pages with a next link.
    let page = expect(
        admin
            .get(url(&api, "/flavors?limit=1"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(page["flavors"].as_array().unwrap().len(), 1);
    let next = page["flavors_links"][0]["href"].as_str().unwrap();
    assert!(
        next.contains("marker=") && next.contains("limit=1"),
        "{next}"
    );
    let page2 = expect(admin.get(next).send().await.unwrap(), 200).await;
    assert_ne!(page2["flavors"][0]["id"], page["flavors"][0]["id"]);

    // Extra specs.
    let specs =
        json!({"extra_specs": {"hw:cpu_policy": "dedicated", "quota:disk_read_bytes_sec": 1000}});
    let set = expect(
        admin
            .post(url(&api, "/flavors/m1.tiny/os-extra_specs"))
            .json(&specs)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(set["extra_specs"]["quota:disk_read_bytes_sec"], "1000");
    let resp = member
        .post(url(&api, "/flavors/m1.tiny/os-extra_specs"))
        .json(&specs)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let one = expect(
        member
            .get(url(&api, "/flavors/m1.tiny/os-extra_specs/hw:cpu_policy"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(one, json!({"hw:cpu_policy": "dedicated"}));
    let put = admin
        .put(url(&api, "/flavors/m1.tiny/os-extra_specs/hw:cpu_policy"))
        .json(&json!({"hw:cpu_policy": "shared"}))
        .send()
        .await
        .unwrap();
    expect(put, 200).await;
    let mismatch = admin
        .put(url(&api, "/flavors/m1.tiny/os-extra_specs/hw:cpu_policy"))
        .json(&json!({"other": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(mismatch.status(), 400);
    let resp = admin
        .delete(url(
            &api,
            "/flavors/m1.tiny/os-extra_specs/quota:disk_read_bytes_sec",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let all = expect(
        admin
            .get(url(&api, "/flavors/m1.tiny/os-extra_specs"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(all, json!({"extra_specs": {"hw:cpu_policy": "shared"}}));

    // Delete: 403 for members, 202 for admins, then 404.
    let resp = member
        .delete(url(&api, "/flavors/m1.tiny"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = admin
        .delete(url(&api, "/flavors/m1.tiny"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let resp = admin
        .get(url(&api, "/flavors/m1.tiny"))
        .send()
        .await
        .unwrap();
    assert_eq!(expect(resp, 404).await["itemNotFound"]["code"], 404);
}

#[tokio::test]
async fn keypairs_generate_import_and_stay_in_their_project() {
    let api = TestApi::start().await;
    let alice = client_with_token(&api.user_token("alice", "demo", Role::Member).await);
    let bob = client_with_token(&api.user_token("bob", "other", Role::Member).await);

    let generated = expect(
        alice
            .post(url(&api, "/os-keypairs"))
            .json(&json!({"keypair": {"name": "gen"}}))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let key = &generated["keypair"];
    assert!(
        key["private_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
    );
    assert!(
        key["public_key"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519 ")
    );
    assert_eq!(
        key["fingerprint"].as_str().unwrap().matches(':').count(),
        15
    );
    assert_eq!(key["user_id"], "alice");

    // The private key is never stored.
    let stored = api
        .store
        .get(
            cirrus_crds::kind_by_plural("keypairs").unwrap(),
            Some("demo"),
            "gen",
        )
        .await
        .unwrap();
    assert!(!stored.to_string().contains("PRIVATE KEY"));
    assert_eq!(stored["status"]["fingerprint"], key["fingerprint"]);

    let public = key["public_key"].as_str().unwrap().to_string();
    let imported = expect(
        alice
            .post(url(&api, "/os-keypairs"))
            .json(&json!({"keypair": {"name": "My Laptop", "public_key": public}}))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert!(imported["keypair"].get("private_key").is_none());
    assert_eq!(imported["keypair"]["fingerprint"], key["fingerprint"]);

    let resp = alice
        .post(url(&api, "/os-keypairs"))
        .json(&json!({"keypair": {"name": "bad", "public_key": "ssh-rsa not-a-key"}}))
        .send()
        .await
        .unwrap();
    let fault = expect(resp, 400).await;
    assert!(
        fault["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("public_key")
    );
    let resp = alice
        .post(url(&api, "/os-keypairs"))
        .json(&json!({"keypair": {"name": "gen"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);

    let listed = expect(
        alice.get(url(&api, "/os-keypairs")).send().await.unwrap(),
        200,
    )
    .await;
    let names: Vec<&str> = listed["keypairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["keypair"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["My Laptop", "gen"]);
    let shown = expect(
        alice
            .get(url(&api, "/os-keypairs/My%20Laptop"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(shown["keypair"]["public_key"], public.as_str());
    assert_eq!(shown["keypair"]["deleted"], false);
    assert!(shown["keypair"]["id"].is_u64());

    // Another project sees none of it.
    let theirs = expect(
        bob.get(url(&api, "/os-keypairs")).send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(theirs["keypairs"], json!([]));
    assert_eq!(
        bob.get(url(&api, "/os-keypairs/gen"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        bob.delete(url(&api, "/os-keypairs/gen"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    assert_eq!(
        alice
            .delete(url(&api, "/os-keypairs/gen"))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        alice
            .get(url(&api, "/os-keypairs/gen"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

/// A node object as a node agent would report it.
async fn make_node(api: &TestApi, name: &str, ready: bool) {
    let http = api.client();
    let resp = http
        .post(format!("{}{V1}/nodes", api.base_url))
        .json(&json!({"apiVersion": "cirrus.dev/v1", "kind": "Node", "metadata": {"name": name}, "spec": {}}))
        .send()
        .await
        .unwrap();
    let mut node = expect(resp, 201).await;
    node["status"] = json!({
        "capacity": {"vcpus": 4, "memoryMiB": 8192, "diskGiB": 50},
        "allocatable": {"vcpus": 16, "memoryMiB": 7680, "diskGiB": 50},
        "hypervisorType": "QEMU", "hypervisorVersion": "7.2.0",
        "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "Unknown" },
                        "reason": "Test", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "lastHeartbeatTime": "2026-01-01T00:00:00Z",
    });
    let resp = http
        .put(format!("{}{V1}/nodes/{name}/status", api.base_url))
        .json(&node)
        .send()
        .await
        .unwrap();
    expect(resp, 200).await;
}

#[tokio::test]
async fn hypervisors_services_and_zones_follow_the_nodes() {
    let api = TestApi::start().await;
    let admin = api.client();
    let member = client_with_token(&api.user_token("alice", "demo", Role::Member).await);
    make_node(&api, "node-a", true).await;
    make_node(&api, "node-b", false).await;

    let resp = member
        .get(url(&api, "/os-hypervisors"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let detail = expect(
        admin
            .get(url(&api, "/os-hypervisors/detail"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let hypervisors = detail["hypervisors"].as_array().unwrap();
    assert_eq!(hypervisors.len(), 2);
    assert_eq!(hypervisors[0]["hypervisor_hostname"], "node-a");
    assert_eq!(hypervisors[0]["state"], "up");
    assert_eq!(hypervisors[1]["state"], "down");
    assert_eq!(hypervisors[0]["vcpus"], 4);
    assert_eq!(hypervisors[0]["host_ip"], "192.0.2.10");
    assert_eq!(hypervisors[0]["hypervisor_type"], "QEMU");
    let id = hypervisors[0]["id"].as_u64().unwrap();
    let one = expect(
        admin
            .get(url(&api, &format!("/os-hypervisors/{id}")))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(one["hypervisor"]["hypervisor_hostname"], "node-a");

    let services = expect(
        admin
            .get(url(&api, "/os-services?binary=nova-compute"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(services["services"].as_array().unwrap().len(), 2);
    assert_eq!(services["services"][0]["status"], "enabled");

    // openstack compute service set --disable --disable-reason maint node-a nova-compute
    let resp = admin
        .put(url(&api, "/os-services/disable-log-reason"))
        .json(&json!({"host": "node-a", "binary": "nova-compute", "disabled_reason": "maint"}))
        .send()
        .await
        .unwrap();
    let body = expect(resp, 200).await;
    assert_eq!(body["service"]["status"], "disabled");
    let node = api
        .store
        .get(
            cirrus_crds::kind_by_plural("nodes").unwrap(),
            None,
            "node-a",
        )
        .await
        .unwrap();
    assert_eq!(
        node["spec"]["unschedulable"], true,
        "disabling the service cordons the node"
    );
    assert_eq!(node["spec"]["unschedulableReason"], "maint");
    let zones = expect(
        member
            .get(url(&api, "/os-availability-zone"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(
        zones,
        json!({"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": false}, "hosts": null}]}),
        "the only up node is cordoned"
    );

    // The 2.53 form by id, and enable.
    let resp = admin
        .put(url(&api, &format!("/os-services/{id}")))
        .json(&json!({"status": "enabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(expect(resp, 200).await["service"]["status"], "enabled");
    let resp = admin
        .put(url(&api, "/os-services/enable"))
        .json(&json!({"host": "node-a", "binary": "nova-compute"}))
        .send()
        .await
        .unwrap();
    expect(resp, 200).await;
    let node = api
        .store
        .get(
            cirrus_crds::kind_by_plural("nodes").unwrap(),
            None,
            "node-a",
        )
        .await
        .unwrap();
    assert!(node["spec"].get("unschedulable").is_none_or(|v| v == false));
    let resp = admin
        .put(url(&api, "/os-services/disable"))
        .json(&json!({"host": "nowhere", "binary": "nova-compute"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let zones = expect(
        admin
            .get(url(&api, "/os-availability-zone/detail"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(
        zones["availabilityZoneInfo"][0]["zoneState"]["available"],
        true
    );
    assert_eq!(
        zones["availabilityZoneInfo"][0]["hosts"]["node-a"]["nova-compute"]["active"],
        true
    );
}

#[tokio::test]
async fn limits_show_defaults_and_usage() {
    let api = TestApi::start().await;
    let member = client_with_token(&api.user_token("alice", "demo", Role::Member).await);
    let body = expect(member.get(url(&api, "/limits")).send().await.unwrap(), 200).await;
    let absolute = &body["limits"]["absolute"];
    assert_eq!(absolute["maxTotalInstances"], 10);
    assert_eq!(absolute["maxTotalCores"], 20);
    assert_eq!(absolute["maxTotalRAMSize"], 51200);
    assert_eq!(absolute["maxTotalKeypairs"], 100);
    assert_eq!(absolute["totalInstancesUsed"], 0);
    assert_eq!(body["limits"]["rate"], json!([]));
    let resp = member
        .get(url(&api, "/limits?tenant_id=admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = api
        .client()
        .get(url(&api, "/limits?tenant_id=demo"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
