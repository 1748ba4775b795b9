//! Quotas through Nova (`os-quota-sets`), Neutron (`quotas`) and Cinder (`os-quota-sets`)
//! over HTTP, against the whole API on an in-memory store: the three APIs and the native
//! `Project.spec.quota` are one set of limits, the usage they show is what the admission
//! counts, and a create over a limit gets each service's own refusal (Nova 403, Neutron 409
//! `OverQuota`, Cinder 413) naming the quota, with nothing left created.

use cirrus_auth::Role;
use cirrus_crds::KindInfo;
use cirrus_store::objects::{ListOptions, Part};
use cirrus_test_utils::{TestApi, client_with_token};
use reqwest::Client;
use serde_json::{Value, json};

const PROJECT: &str = "demo";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPwqlqFRmCfm8TCkhqz8CZLW8ri/uWvVgkg7nO5AHcw3 k1";

fn kind(plural: &str) -> &'static KindInfo {
    cirrus_crds::kind_by_plural(plural).unwrap()
}

/// The API with member `alice` of `demo` (`member`) and the admin client (`admin`).
struct Cloud {
    api: TestApi,
    admin: Client,
    member: Client,
}

impl Cloud {
    async fn start() -> Self {
        let api = TestApi::start().await;
        let member = client_with_token(&api.user_token("alice", PROJECT, Role::Member).await);
        Self {
            admin: api.client(),
            member,
            api,
        }
    }

    fn nova(&self, path: &str) -> String {
        format!("{}/compute/v2.1{path}", self.api.base_url)
    }

    fn neutron(&self, path: &str) -> String {
        format!("{}/network/v2.0{path}", self.api.base_url)
    }

    /// A Cinder URL in the path project `scope` (the token's).
    fn cinder(&self, scope: &str, path: &str) -> String {
        format!("{}/volume/v3/{scope}{path}", self.api.base_url)
    }

    fn native(&self, path: &str) -> String {
        format!("{}/apis/cirrus.dev/v1{path}", self.api.base_url)
    }

    async fn count(&self, plural: &str) -> usize {
        self.api
            .store
            .list(kind(plural), Some(PROJECT), &ListOptions::default())
            .await
            .unwrap()
            .items
            .len()
    }

    /// What a Nova boot needs: flavor `flavor` (`vcpus`, `ram` MiB, 1 GiB disk), the active
    /// public image `cirros` and network `net1` in `demo`; returns their uids in that order.
    async fn boot_fixtures(&self, flavor: &str, vcpus: u64, ram: u64) -> Vec<String> {
        let mut ids = Vec::new();
        for (path, body) in [
            (
                "/flavors".to_string(),
                json!({"metadata": {"name": flavor}, "spec": {"vcpus": vcpus, "ram": ram, "disk": 1}}),
            ),
            (
                "/projects/admin/images".to_string(),
                json!({"metadata": {"name": "cirros"}, "spec": {"visibility": "public",
                    "diskFormat": "qcow2", "containerFormat": "bare"}}),
            ),
            (
                format!("/projects/{PROJECT}/networks"),
                json!({"metadata": {"name": "net1"}, "spec": {}}),
            ),
        ] {
            let created = call(self.admin.post(self.native(&path)).json(&body), 201).await;
            ids.push(created["metadata"]["uid"].as_str().unwrap().to_string());
        }
        self.api
            .store
            .patch(
                kind("images"),
                Some("admin"),
                "cirros",
                &json!({"status": {"phase": "active"}}),
                Part::Status,
                false,
            )
            .await
            .unwrap();
        ids
    }

    /// `Project.spec.quota` of `demo` as the native API shows it.
    async fn stored_quota(&self) -> Value {
        let project = call(self.admin.get(self.native("/projects/demo")), 200).await;
        project["spec"]
            .get("quota")
            .cloned()
            .unwrap_or_else(|| json!({}))
    }
}

/// Sends `req`, asserts the status, returns the JSON body (`Null` when empty).
async fn call(req: reqwest::RequestBuilder, status: u16) -> Value {
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(code, status, "{text}");
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    }
}

#[tokio::test]
async fn the_three_apis_and_the_native_project_are_one_set_of_limits() {
    let c = Cloud::start().await;

    // Defaults everywhere at first.
    let nova = call(c.member.get(c.nova("/os-quota-sets/demo")), 200).await;
    assert_eq!(nova["quota_set"]["id"], "demo");
    assert_eq!(nova["quota_set"]["instances"], 10);
    assert_eq!(nova["quota_set"]["cores"], 20);
    assert_eq!(nova["quota_set"]["ram"], 51200);
    assert_eq!(nova["quota_set"]["metadata_items"], 128);
    assert_eq!(nova["quota_set"]["server_group_members"], 10);
    assert_eq!(c.stored_quota().await, json!({}));

    // Nova sets instances and cores (as `openstack quota set --instances 1 --cores 4`).
    let set = call(
        c.admin
            .put(c.nova("/os-quota-sets/demo"))
            .json(&json!({"quota_set": {"instances": 1, "cores": "4"}})),
        200,
    )
    .await;
    assert_eq!(set["quota_set"]["instances"], 1);
    assert_eq!(set["quota_set"]["cores"], 4);
    assert!(
        set["quota_set"].get("id").is_none(),
        "Nova's update body has no id"
    );
    // Neutron sets ports, Cinder volumes.
    let set = call(
        c.admin
            .put(c.neutron("/quotas/demo"))
            .json(&json!({"quota": {"port": 2, "check_limit": true}})),
        200,
    )
    .await;
    assert_eq!(set["quota"]["port"], 2);
    assert_eq!(set["quota"]["network"], 100);
    let set = call(
        c.admin
            .put(c.cinder("admin", "/os-quota-sets/demo"))
            .json(&json!({"quota_set": {"volumes": 1}})),
        200,
    )
    .await;
    assert_eq!(set["quota_set"]["volumes"], 1);
    assert_eq!(set["quota_set"]["gigabytes"], 1000);

    // One object holds them all.
    assert_eq!(
        c.stored_quota().await,
        json!({"instances": 1, "cores": 4, "port": 2, "volumes": 1})
    );
    // A native change shows through Cinder.
    call(
        c.admin
            .patch(c.native("/projects/demo"))
            .header("content-type", "application/merge-patch+json")
            .json(&json!({"spec": {"quota": {"snapshots": 3}}})),
        200,
    )
    .await;
    let cinder = call(c.member.get(c.cinder(PROJECT, "/os-quota-sets/demo")), 200).await;
    assert_eq!(cinder["quota_set"]["volumes"], 1);
    assert_eq!(cinder["quota_set"]["snapshots"], 3);
    assert_eq!(cinder["quota_set"]["backups"], 10);
    assert_eq!(cinder["quota_set"]["volumes_file"], -1);
    let limits = call(c.member.get(c.cinder(PROJECT, "/limits")), 200).await;
    assert_eq!(limits["limits"]["absolute"]["maxTotalVolumes"], 1);
    assert_eq!(limits["limits"]["absolute"]["maxTotalSnapshots"], 3);
    let neutron = call(c.member.get(c.neutron("/quotas/demo")), 200).await;
    assert_eq!(neutron["quota"]["port"], 2);
    let detail = call(c.member.get(c.nova("/os-quota-sets/demo/detail")), 200).await;
    assert_eq!(
        detail["quota_set"]["instances"],
        json!({"in_use": 0, "limit": 1, "reserved": 0})
    );
    let limits = call(c.member.get(c.nova("/limits")), 200).await;
    assert_eq!(limits["limits"]["absolute"]["maxTotalInstances"], 1);
    assert_eq!(limits["limits"]["absolute"]["maxTotalCores"], 4);
    assert_eq!(limits["limits"]["absolute"]["maxTotalRAMSize"], 51200);
    // Defaults stay the defaults.
    let defaults = call(c.member.get(c.nova("/os-quota-sets/demo/defaults")), 200).await;
    assert_eq!(defaults["quota_set"]["instances"], 10);
    let defaults = call(c.member.get(c.neutron("/quotas/demo/default")), 200).await;
    assert_eq!(defaults["quota"]["port"], 500);
    let defaults = call(
        c.member
            .get(c.cinder(PROJECT, "/os-quota-sets/demo/defaults")),
        200,
    )
    .await;
    assert_eq!(defaults["quota_set"]["volumes"], 10);
    // Neutron's admin list names the project with non-default network quotas.
    let list = call(c.admin.get(c.neutron("/quotas")), 200).await;
    let listed: Vec<&Value> = list["quotas"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["project_id"], "demo");
    assert_eq!(listed[0]["port"], 2);

    // Each service resets only its own quotas.
    call(c.admin.delete(c.nova("/os-quota-sets/demo")), 202).await;
    assert_eq!(
        c.stored_quota().await,
        json!({"port": 2, "volumes": 1, "snapshots": 3})
    );
    call(c.admin.delete(c.neutron("/quotas/demo")), 204).await;
    assert_eq!(
        c.stored_quota().await,
        json!({"volumes": 1, "snapshots": 3})
    );
    call(
        c.admin.delete(c.cinder("admin", "/os-quota-sets/demo")),
        200,
    )
    .await;
    assert_eq!(c.stored_quota().await, json!({}));
    let nova = call(c.member.get(c.nova("/os-quota-sets/demo")), 200).await;
    assert_eq!(nova["quota_set"]["instances"], 10);
}

#[tokio::test]
async fn only_admins_change_quotas_members_read_only_their_own_and_bad_input_is_400() {
    let c = Cloud::start().await;
    let bob = client_with_token(&c.api.user_token("bob", "other", Role::Member).await);

    // Members may not write.
    let body = call(
        c.member
            .put(c.nova("/os-quota-sets/demo"))
            .json(&json!({"quota_set": {"instances": 100}})),
        403,
    )
    .await;
    assert!(body["forbidden"]["message"].as_str().is_some(), "{body}");
    call(c.member.delete(c.nova("/os-quota-sets/demo")), 403).await;
    let body = call(
        c.member
            .put(c.neutron("/quotas/demo"))
            .json(&json!({"quota": {"port": 1000}})),
        403,
    )
    .await;
    assert!(body["NeutronError"]["message"].as_str().is_some(), "{body}");
    call(c.member.delete(c.neutron("/quotas/demo")), 403).await;
    call(
        c.member
            .put(c.cinder(PROJECT, "/os-quota-sets/demo"))
            .json(&json!({"quota_set": {"volumes": 100}})),
        403,
    )
    .await;
    call(
        c.member.delete(c.cinder(PROJECT, "/os-quota-sets/demo")),
        403,
    )
    .await;
    assert_eq!(c.stored_quota().await, json!({}), "nothing was written");

    // Another project's quotas are not for a member to read.
    call(bob.get(c.nova("/os-quota-sets/demo")), 403).await;
    call(bob.get(c.nova("/os-quota-sets/demo/detail")), 403).await;
    call(bob.get(c.neutron("/quotas/demo")), 403).await;
    call(bob.get(c.neutron("/quotas/demo/details")), 403).await;
    call(bob.get(c.cinder("other", "/os-quota-sets/demo")), 403).await;
    call(bob.get(c.nova("/os-quota-sets/other")), 200).await;

    // Bad input names the problem.
    let body = call(
        c.admin
            .put(c.nova("/os-quota-sets/demo"))
            .json(&json!({"quota_set": {"instances": 1, "bogus": 2}})),
        400,
    )
    .await;
    let message = body["badRequest"]["message"].as_str().unwrap();
    assert!(message.contains("'bogus'"), "{message}");
    let body = call(
        c.admin
            .put(c.nova("/os-quota-sets/demo"))
            .json(&json!({"quota_set": {"cores": "many"}})),
        400,
    )
    .await;
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("cores")
    );
    let body = call(
        c.admin
            .put(c.nova("/os-quota-sets/nowhere"))
            .json(&json!({"quota_set": {"cores": 1}})),
        400,
    )
    .await;
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("nowhere")
    );
    let body = call(
        c.admin
            .put(c.neutron("/quotas/demo"))
            .json(&json!({"quota": {"volumes": 2}})),
        400,
    )
    .await;
    assert!(
        body["NeutronError"]["message"]
            .as_str()
            .unwrap()
            .contains("volumes")
    );
    let body = call(
        c.admin
            .put(c.cinder("admin", "/os-quota-sets/demo"))
            .json(&json!({"quota_set": {"instances": 2}})),
        400,
    )
    .await;
    assert_eq!(
        body["badRequest"]["message"],
        "Bad key(s) in quota set: instances"
    );
    call(
        c.admin
            .put(c.neutron("/quotas/demo"))
            .json(&json!({"quota": {"port": -2}})),
        400,
    )
    .await;
    assert_eq!(c.stored_quota().await, json!({}), "nothing was written");
}

#[tokio::test]
async fn nova_refuses_servers_and_key_pairs_over_quota_with_403() {
    let c = Cloud::start().await;
    let ids = c.boot_fixtures("m1.small", 2, 512).await;
    call(
        c.admin
            .put(c.nova("/os-quota-sets/demo"))
            .json(&json!({"quota_set": {"cores": 3, "key_pairs": 0}})),
        200,
    )
    .await;
    let boot = |name: &str| {
        json!({"server": {"name": name, "imageRef": ids[1], "flavorRef": "m1.small",
            "networks": [{"uuid": ids[2]}]}})
    };
    call(c.member.post(c.nova("/servers")).json(&boot("one")), 202).await;
    let body = call(c.member.post(c.nova("/servers")).json(&boot("two")), 403).await;
    let message = body["forbidden"]["message"].as_str().unwrap();
    assert!(message.starts_with("Quota exceeded for cores"), "{message}");
    assert_eq!(body["forbidden"]["code"], 403);
    assert_eq!(
        c.count("servers").await,
        1,
        "the refused server is not left"
    );

    let detail = call(c.member.get(c.nova("/os-quota-sets/demo/detail")), 200).await;
    assert_eq!(detail["quota_set"]["cores"]["in_use"], 2);
    assert_eq!(detail["quota_set"]["instances"]["in_use"], 1);
    assert_eq!(detail["quota_set"]["ram"]["in_use"], 512);

    // Below what is in use: refused unless forced.
    let body = call(
        c.admin
            .put(c.nova("/os-quota-sets/demo"))
            .json(&json!({"quota_set": {"cores": 1}})),
        400,
    )
    .await;
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("cores")
    );
    call(
        c.admin
            .put(c.nova("/os-quota-sets/demo"))
            .json(&json!({"quota_set": {"cores": 1, "force": true}})),
        200,
    )
    .await;
    assert_eq!(c.stored_quota().await["cores"], 1);

    let body = call(
        c.member
            .post(c.nova("/os-keypairs"))
            .json(&json!({"keypair": {"name": "k1", "public_key": KEY}})),
        403,
    )
    .await;
    let message = body["forbidden"]["message"].as_str().unwrap();
    assert!(message.contains("key_pairs"), "{message}");
    assert_eq!(c.count("keypairs").await, 0);
}

#[tokio::test]
async fn neutron_refuses_networks_and_ports_over_quota_with_409_over_quota() {
    let c = Cloud::start().await;
    call(
        c.admin
            .put(c.neutron("/quotas/demo"))
            .json(&json!({"quota": {"network": 1, "port": 1}})),
        200,
    )
    .await;
    let net = call(
        c.member
            .post(c.neutron("/networks"))
            .json(&json!({"network": {"name": "a"}})),
        201,
    )
    .await;
    let body = call(
        c.member
            .post(c.neutron("/networks"))
            .json(&json!({"network": {"name": "b"}})),
        409,
    )
    .await;
    assert_eq!(body["NeutronError"]["type"], "OverQuota");
    let message = body["NeutronError"]["message"].as_str().unwrap();
    assert!(message.contains("network"), "{message}");
    assert_eq!(c.count("networks").await, 1);

    let port = json!({"port": {"network_id": net["network"]["id"]}});
    call(c.member.post(c.neutron("/ports")).json(&port), 201).await;
    let body = call(c.member.post(c.neutron("/ports")).json(&port), 409).await;
    assert_eq!(body["NeutronError"]["type"], "OverQuota");
    let message = body["NeutronError"]["message"].as_str().unwrap();
    assert!(message.contains("port"), "{message}");
    assert_eq!(c.count("ports").await, 1);

    let details = call(c.member.get(c.neutron("/quotas/demo/details")), 200).await;
    assert_eq!(
        details["quota"]["network"],
        json!({"limit": 1, "used": 1, "reserved": 0})
    );
    assert_eq!(details["quota"]["port"]["used"], 1);
    assert_eq!(details["quota"]["router"]["limit"], 10);

    // Lowering below use is refused by default (check_limit), allowed with force.
    let body = call(
        c.admin
            .put(c.neutron("/quotas/demo"))
            .json(&json!({"quota": {"network": 0}})),
        400,
    )
    .await;
    assert_eq!(body["NeutronError"]["type"], "InvalidQuotaValue");
    call(
        c.admin
            .put(c.neutron("/quotas/demo"))
            .json(&json!({"quota": {"network": 0, "force": true}})),
        200,
    )
    .await;
}

#[tokio::test]
async fn cinder_refuses_volumes_over_quota_with_413() {
    let c = Cloud::start().await;
    call(
        c.admin
            .put(c.cinder("admin", "/os-quota-sets/demo"))
            .json(&json!({"quota_set": {"volumes": 1, "gigabytes": 3}})),
        200,
    )
    .await;
    let volumes = c.cinder(PROJECT, "/volumes");
    call(
        c.member
            .post(&volumes)
            .json(&json!({"volume": {"size": 2}})),
        202,
    )
    .await;
    let body = call(
        c.member
            .post(&volumes)
            .json(&json!({"volume": {"size": 1}})),
        413,
    )
    .await;
    let message = body["overLimit"]["message"].as_str().unwrap();
    assert!(message.contains("volumes"), "{message}");
    assert_eq!(body["overLimit"]["code"], 413);
    call(
        c.admin
            .put(c.cinder("admin", "/os-quota-sets/demo"))
            .json(&json!({"quota_set": {"volumes": -1}})),
        200,
    )
    .await;
    let body = call(
        c.member
            .post(&volumes)
            .json(&json!({"volume": {"size": 2}})),
        413,
    )
    .await;
    let message = body["overLimit"]["message"].as_str().unwrap();
    assert!(message.contains("gigabytes"), "{message}");
    assert_eq!(c.count("volumes").await, 1, "refused volumes are not left");

    let usage = call(
        c.member
            .get(c.cinder(PROJECT, "/os-quota-sets/demo?usage=true")),
        200,
    )
    .await;
    assert_eq!(
        usage["quota_set"]["gigabytes"],
        json!({"limit": 3, "in_use": 2, "reserved": 0, "allocated": 0})
    );
    assert_eq!(usage["quota_set"]["volumes"]["limit"], -1);
    assert_eq!(usage["quota_set"]["volumes_file"]["in_use"], 1);

    // With "skip_validation": false, a limit below use is refused (Cinder's default skips).
    call(
        c.admin
            .put(c.cinder("admin", "/os-quota-sets/demo"))
            .json(&json!({"quota_set": {"gigabytes": 1}, "skip_validation": false})),
        400,
    )
    .await;
    call(
        c.admin
            .put(c.cinder("admin", "/os-quota-sets/demo"))
            .json(&json!({"quota_set": {"gigabytes": 1}})),
        200,
    )
    .await;
}

#[tokio::test]
async fn neutron_counts_security_group_rules_against_their_quota() {
    let api = TestApi::start().await;
    let member = client_with_token(&api.user_token("alice", "demo", Role::Member).await);
    let net = format!("{}/network/v2.0", api.base_url);
    let groups = call(
        member.get(format!("{net}/security-groups?name=default")),
        200,
    )
    .await;
    let group = groups["security_groups"][0].clone();
    let id = group["id"].as_str().unwrap().to_string();
    let existing = group["security_group_rules"].as_array().unwrap().len() as i64;
    // The limit is what the project already has: one more rule is over it.
    let resp = api
        .client()
        .patch(format!("{}/apis/cirrus.dev/v1/projects/demo", api.base_url))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"spec": {"quota": {"security_group_rule": existing}}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let rule = json!({"security_group_rule": {
        "security_group_id": id, "direction": "ingress", "protocol": "icmp", "ethertype": "IPv4"}});
    let refused = call(
        member
            .post(format!("{net}/security-group-rules"))
            .json(&rule),
        409,
    )
    .await;
    assert_eq!(refused["NeutronError"]["type"], "OverQuota", "{refused}");
    assert!(
        refused["NeutronError"]["message"]
            .as_str()
            .unwrap()
            .contains("security_group_rule"),
        "{refused}"
    );
    let after = call(member.get(format!("{net}/security-groups/{id}")), 200).await;
    assert_eq!(
        after["security_group"]["security_group_rules"]
            .as_array()
            .unwrap()
            .len() as i64,
        existing
    );
    // With room for one more, it lands.
    api.client()
        .patch(format!("{}/apis/cirrus.dev/v1/projects/demo", api.base_url))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"spec": {"quota": {"security_group_rule": existing + 1}}}).to_string())
        .send()
        .await
        .unwrap();
    call(
        member
            .post(format!("{net}/security-group-rules"))
            .json(&rule),
        201,
    )
    .await;
}

/// Sixteen members boot at once into a project whose `instances` quota is 10: the per-project
/// quota lock lets exactly ten through (each of the other six gets Nova's 403), and exactly ten
/// servers are stored — a race between the count and the write would let more in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_boots_never_exceed_the_instances_quota() {
    let c = Cloud::start().await;
    let ids = c.boot_fixtures("m1.tiny", 1, 64).await;
    call(
        c.admin
            .put(c.nova("/os-quota-sets/demo"))
            .json(&json!({"quota_set": {"instances": 10, "cores": -1, "ram": -1}})),
        200,
    )
    .await;
    let boots = (0..16).map(|i| {
        let request = c.member.post(c.nova("/servers")).json(&json!({"server": {
            "name": format!("s{i}"), "imageRef": ids[1], "flavorRef": "m1.tiny",
            "networks": [{"uuid": ids[2]}]}}));
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let codes = futures::future::join_all(boots).await;
    let accepted = codes.iter().filter(|c| **c == 202).count();
    let refused = codes.iter().filter(|c| **c == 403).count();
    assert_eq!((accepted, refused), (10, 6), "answers: {codes:?}");
    assert_eq!(c.count("servers").await, 10, "servers stored");
}
