//! Nova's server routes under `/compute/v2.1` over HTTP, against the whole API on an
//! in-memory store. No controller or node agent runs here: the tests check the `Server`
//! objects the routes write (ids translated to names, actions as spec changes) and write
//! the statuses a node agent would (through the store) to check how they render.
//!
//! Why this file is long: each test is one of Nova's server workflows (boot, list and filter,
//! actions, rebuild, metadata) end to end against one fixture cloud; the workflows are long,
//! not many.

use cirrus_auth::Role;
use cirrus_crds::KindInfo;
use cirrus_store::objects::{ListOptions, Part};
use cirrus_test_utils::{TestApi, client_with_token};
use serde_json::{Value, json};

const PROJECT: &str = "demo";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPwqlqFRmCfm8TCkhqz8CZLW8ri/uWvVgkg7nO5AHcw3 k1";

fn kind(plural: &str) -> &'static KindInfo {
    cirrus_crds::kind_by_plural(plural).unwrap()
}

/// The API with member `alice` of `demo` (client `http`), a public image `cirros` of the
/// admin project (active), flavor `m1.tiny`, network `net1` and key pair `k1` in `demo`.
struct Cloud {
    api: TestApi,
    http: reqwest::Client,
    image_id: String,
    network_id: String,
}

async fn answer(resp: reqwest::Response, status: u16) -> Value {
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(code, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn cloud() -> Cloud {
    let api = TestApi::start().await;
    let token = api.user_token("alice", PROJECT, Role::Member).await;
    let admin = api.client();
    let native = format!("{}/apis/cirrus.dev/v1", api.base_url);
    let mut created = Vec::new();
    for (path, body) in [
        (
            "flavors".to_string(),
            json!({"metadata": {"name": "m1.tiny"}, "spec": {"vcpus": 1, "ram": 512, "disk": 1}}),
        ),
        (
            "projects/admin/images".to_string(),
            json!({"metadata": {"name": "cirros"}, "spec": {"visibility": "public",
                "diskFormat": "qcow2", "containerFormat": "bare"}}),
        ),
        (
            format!("projects/{PROJECT}/networks"),
            json!({"metadata": {"name": "net1"}, "spec": {}}),
        ),
        (
            format!("projects/{PROJECT}/keypairs"),
            json!({"metadata": {"name": "k1"}, "spec": {"publicKey": KEY}}),
        ),
    ] {
        let resp = admin
            .post(format!("{native}/{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        created.push(answer(resp, 201).await);
    }
    api.store
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
    Cloud {
        http: client_with_token(&token),
        image_id: created[1]["metadata"]["uid"].as_str().unwrap().to_string(),
        network_id: created[2]["metadata"]["uid"].as_str().unwrap().to_string(),
        api,
    }
}

impl Cloud {
    fn url(&self, path: &str) -> String {
        format!("{}/compute/v2.1{path}", self.api.base_url)
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        method: &str,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let mut req = client.request(method.parse().unwrap(), self.url(path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        answer(req.send().await.unwrap(), status).await
    }

    async fn get(&self, path: &str, status: u16) -> Value {
        self.send(&self.http, "GET", path, None, status).await
    }

    async fn post(&self, path: &str, body: Value, status: u16) -> Value {
        self.send(&self.http, "POST", path, Some(body), status)
            .await
    }

    /// Creates a server through Nova; returns its id.
    async fn boot(&self, name: &str) -> String {
        let body = json!({"server": {"name": name, "imageRef": self.image_id,
            "flavorRef": "m1.tiny", "networks": [{"uuid": self.network_id}]}});
        self.post("/servers", body, 202).await["server"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn servers(&self) -> Vec<Value> {
        self.api
            .store
            .list(kind("servers"), Some(PROJECT), &ListOptions::default())
            .await
            .unwrap()
            .items
    }

    async fn server_object(&self, id: &str) -> Value {
        self.servers()
            .await
            .into_iter()
            .find(|s| s["metadata"]["uid"] == id)
            .unwrap_or_else(|| panic!("no server {id}"))
    }

    /// Writes `status` as the node agent would.
    async fn set_status(&self, id: &str, status: Value) {
        let name = self.server_object(id).await["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        self.api
            .store
            .patch(
                kind("servers"),
                Some(PROJECT),
                &name,
                &json!({ "status": status }),
                Part::Status,
                false,
            )
            .await
            .unwrap();
    }

    async fn action(&self, id: &str, body: Value, status: u16) -> Value {
        self.post(&format!("/servers/{id}/action"), body, status)
            .await
    }
}

#[tokio::test]
async fn version_documents_and_microversion_headers() {
    let cloud = cloud().await;
    let anonymous = reqwest::Client::new();
    let versions = answer(
        anonymous
            .get(format!("{}/compute/", cloud.api.base_url))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(versions["versions"][0]["id"], "v2.1");
    assert_eq!(versions["versions"][0]["status"], "CURRENT");
    let version = answer(anonymous.get(cloud.url("/")).send().await.unwrap(), 200).await;
    assert_eq!(version["version"]["version"], "2.1");
    assert_eq!(version["version"]["min_version"], "2.1");
    let self_link = version["version"]["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rel"] == "self")
        .unwrap()["href"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(self_link.ends_with("/compute/v2.1/"), "{self_link}");

    for (header, value) in [
        ("X-OpenStack-Nova-API-Version", "2.1"),
        ("OpenStack-API-Version", "compute 2.1"),
        ("X-OpenStack-Nova-API-Version", "latest"),
    ] {
        let resp = cloud
            .http
            .get(cloud.url("/servers"))
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(h["x-openstack-nova-api-version"], "2.1");
        assert_eq!(h["openstack-api-version"], "compute 2.1");
        let vary = h["vary"].to_str().unwrap();
        assert!(
            vary.contains("OpenStack-API-Version") && vary.contains("X-OpenStack-Nova-API-Version")
        );
    }
    for (header, value) in [
        ("X-OpenStack-Nova-API-Version", "2.60"),
        ("OpenStack-API-Version", "compute 2.5"),
    ] {
        let resp = cloud
            .http
            .get(cloud.url("/servers"))
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-openstack-nova-api-version"], "2.1");
        let body = answer(resp, 406).await;
        assert!(
            body["computeFault"]["message"]
                .as_str()
                .unwrap()
                .contains("is not supported by the API. Minimum is 2.1 and maximum is 2.1"),
            "{body}"
        );
    }
    // Without a token the servers are not anonymous.
    answer(
        anonymous.get(cloud.url("/servers")).send().await.unwrap(),
        401,
    )
    .await;
}

#[tokio::test]
async fn create_show_list_update_and_delete() {
    let cloud = cloud().await;
    let user_data = "I2Nsb3VkLWNvbmZpZwo="; // "#cloud-config\n"
    let created = cloud
        .post(
            "/servers",
            json!({"server": {"name": "web 1", "imageRef": cloud.image_id, "flavorRef": "m1.tiny",
                "networks": [{"uuid": cloud.network_id, "fixed_ip": "10.0.0.7"}],
                "key_name": "k1", "user_data": user_data, "metadata": {"role": "web"},
                "security_groups": [{"name": "default"}],
                "block_device_mapping_v2": [{"uuid": cloud.image_id, "boot_index": 0,
                    "source_type": "image", "destination_type": "local",
                    "delete_on_termination": true}],
                "min_count": 1, "max_count": 1}}),
            202,
        )
        .await;
    let id = created["server"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["server"]["OS-DCF:diskConfig"], "MANUAL");
    // Nova's generated password (tempest's create_server_with_admin_pass requires it).
    assert_eq!(
        created["server"]["adminPass"].as_str().map(str::len),
        Some(12),
        "{created}"
    );
    assert_eq!(
        created["server"]["security_groups"],
        json!([{"name": "default"}])
    );
    assert!(
        created["server"]["links"][0]["href"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/compute/v2.1/servers/{id}"))
    );

    // The object: names, not ids; the free-text name in the annotation.
    let object = cloud.server_object(&id).await;
    assert_eq!(object["spec"]["image"], "cirros");
    assert_eq!(object["spec"]["flavor"], "m1.tiny");
    assert_eq!(
        object["spec"]["networks"],
        json!([{"network": "net1", "fixedIp": "10.0.0.7"}])
    );
    assert_eq!(object["spec"]["keyName"], "k1");
    assert_eq!(object["spec"]["userData"], user_data);
    assert_eq!(object["spec"]["securityGroups"], json!(["default"]));
    assert_eq!(object["spec"]["hostname"], "web-1");
    assert_eq!(
        object["metadata"]["annotations"]["openstack.org/name"],
        "web 1"
    );

    // Show: the full v2.1 body.
    let shown = cloud.get(&format!("/servers/{id}"), 200).await["server"].clone();
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["name"], "web 1");
    assert_eq!(shown["status"], "BUILD");
    assert_eq!(shown["OS-EXT-STS:vm_state"], "building");
    assert_eq!(shown["OS-EXT-STS:task_state"], "scheduling");
    assert_eq!(shown["image"]["id"], cloud.image_id.as_str());
    assert_eq!(shown["flavor"]["id"], "m1.tiny");
    assert_eq!(shown["tenant_id"], PROJECT);
    assert_eq!(shown["user_id"], "alice");
    assert_eq!(shown["metadata"], json!({"role": "web"}));
    assert_eq!(shown["key_name"], "k1");
    assert_eq!(shown["hostId"], "");
    assert_eq!(shown["addresses"], json!({}));
    assert!(
        shown.get("OS-EXT-SRV-ATTR:host").is_none(),
        "admin-only fields hidden from members"
    );

    // The node agent reports it running with an address.
    cloud
        .set_status(
            &id,
            json!({"phase": "ACTIVE", "powerState": "Running", "node": "node-1",
                "launchedAt": "2026-01-01T00:00:00Z",
                "addresses": {"net1": [{"ip": "10.0.0.7", "version": 4, "mac": "fa:16:3e:00:00:01", "type": "fixed"}]}}),
        )
        .await;
    let shown = cloud.get(&format!("/servers/{id}"), 200).await["server"].clone();
    assert_eq!(shown["status"], "ACTIVE");
    assert_eq!(shown["OS-EXT-STS:power_state"], 1);
    assert_eq!(shown["OS-EXT-STS:task_state"], Value::Null);
    assert_eq!(shown["hostId"].as_str().unwrap().len(), 56);
    assert_eq!(
        shown["addresses"],
        json!({"net1": [{"version": 4, "addr": "10.0.0.7", "OS-EXT-IPS:type": "fixed",
            "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"}]})
    );
    assert_eq!(
        cloud.get(&format!("/servers/{id}/ips"), 200).await,
        json!({"addresses": {"net1": [{"version": 4, "addr": "10.0.0.7"}]}})
    );
    assert_eq!(
        cloud.get(&format!("/servers/{id}/ips/net1"), 200).await,
        json!({"net1": [{"version": 4, "addr": "10.0.0.7"}]})
    );
    cloud.get(&format!("/servers/{id}/ips/other"), 404).await;

    // Lists and filters. Creation times have whole seconds (and ties order by id), so the
    // second server is made in a later second to be the newest.
    let first_second = chrono::Utc::now().timestamp();
    while chrono::Utc::now().timestamp() == first_second {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let other = cloud.boot("db").await;
    let list = cloud.get("/servers", 200).await;
    let entries = list["servers"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["id"], other.as_str(), "newest first");
    let mut keys: Vec<&String> = entries[0].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["id", "links", "name"]);
    let ids = |v: Value| -> Vec<String> {
        v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(cloud.get("/servers/detail?name=^web", 200).await),
        [id.as_str()]
    );
    assert_eq!(
        ids(cloud.get("/servers/detail?status=active", 200).await),
        [id.as_str()]
    );
    assert_eq!(
        ids(cloud.get("/servers/detail?status=BUILD", 200).await),
        [other.as_str()]
    );
    assert_eq!(
        ids(cloud.get("/servers/detail?ip=10.0.0", 200).await),
        [id.as_str()]
    );
    assert_eq!(
        ids(cloud
            .get(
                &format!("/servers?image={}&flavor=m1.tiny", cloud.image_id),
                200
            )
            .await)
        .len(),
        2
    );
    assert!(ids(cloud.get("/servers?flavor=m1.huge", 200).await).is_empty());

    // Pages.
    let first = cloud.get("/servers?limit=1", 200).await;
    assert_eq!(ids(first.clone()), [other.as_str()]);
    let next = first["servers_links"][0]["href"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(next.contains(&format!("marker={other}")), "{next}");
    let second = answer(cloud.http.get(&next).send().await.unwrap(), 200).await;
    assert_eq!(ids(second), [id.as_str()]);
    cloud.get("/servers?marker=nope", 400).await;

    // Update and metadata.
    let updated = cloud
        .send(
            &cloud.http,
            "PUT",
            &format!("/servers/{id}"),
            Some(json!({"server": {"name": "web-renamed"}})),
            200,
        )
        .await;
    assert_eq!(updated["server"]["name"], "web-renamed");
    assert_eq!(
        cloud
            .post(
                &format!("/servers/{id}/metadata"),
                json!({"metadata": {"tier": "1"}}),
                200
            )
            .await,
        json!({"metadata": {"role": "web", "tier": "1"}})
    );
    cloud
        .send(
            &cloud.http,
            "DELETE",
            &format!("/servers/{id}/metadata/role"),
            None,
            204,
        )
        .await;
    assert_eq!(
        cloud.get(&format!("/servers/{id}/metadata"), 200).await,
        json!({"metadata": {"tier": "1"}})
    );
    assert_eq!(
        cloud.server_object(&id).await["spec"]["metadata"],
        json!({"tier": "1"})
    );

    // Delete: 204, then gone.
    cloud
        .send(&cloud.http, "DELETE", &format!("/servers/{id}"), None, 204)
        .await;
    let gone = cloud.get(&format!("/servers/{id}"), 404).await;
    assert_eq!(
        gone["itemNotFound"]["message"],
        format!("Instance {id} could not be found.")
    );
    assert_eq!(cloud.servers().await.len(), 1);
}

#[tokio::test]
async fn actions_change_the_spec_and_refuse_wrong_states() {
    let cloud = cloud().await;
    let id = cloud.boot("vm").await;

    // Building: nothing to stop yet.
    let refused = cloud.action(&id, json!({"os-stop": null}), 409).await;
    assert!(
        refused["conflictingRequest"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Cannot 'stop' instance {id} while it is in")),
        "{refused}"
    );

    cloud
        .set_status(
            &id,
            json!({"phase": "ACTIVE", "powerState": "Running", "node": "node-1"}),
        )
        .await;
    cloud.action(&id, json!({"os-start": null}), 409).await;

    // Soft reboot: the count goes up, the server shows REBOOT until the node did it.
    cloud
        .action(&id, json!({"reboot": {"type": "SOFT"}}), 202)
        .await;
    let object = cloud.server_object(&id).await;
    assert_eq!(object["spec"]["rebootCount"], 1);
    assert_eq!(object["spec"]["rebootType"], "soft");
    assert_eq!(
        cloud.get(&format!("/servers/{id}"), 200).await["server"]["status"],
        "REBOOT"
    );
    cloud
        .set_status(&id, json!({"observedRebootCount": 1}))
        .await;
    assert_eq!(
        cloud.get(&format!("/servers/{id}"), 200).await["server"]["status"],
        "ACTIVE"
    );

    // Stop: powering-off until the node reports SHUTOFF; a second stop is refused.
    cloud.action(&id, json!({"os-stop": null}), 202).await;
    assert_eq!(
        cloud.server_object(&id).await["spec"]["powerState"],
        "Stopped"
    );
    let shown = cloud.get(&format!("/servers/{id}"), 200).await["server"].clone();
    assert_eq!(shown["status"], "ACTIVE");
    assert_eq!(shown["OS-EXT-STS:task_state"], "powering-off");
    let refused = cloud.action(&id, json!({"os-stop": null}), 409).await;
    assert!(
        refused["conflictingRequest"]["message"]
            .as_str()
            .unwrap()
            .ends_with("task_state powering-off")
    );
    cloud
        .set_status(&id, json!({"phase": "SHUTOFF", "powerState": "Stopped"}))
        .await;
    assert_eq!(
        cloud.get(&format!("/servers/{id}"), 200).await["server"]["status"],
        "SHUTOFF"
    );
    cloud.action(&id, json!({"pause": null}), 409).await;

    // Start, then pause / unpause, suspend / resume.
    cloud.action(&id, json!({"os-start": null}), 202).await;
    assert_eq!(
        cloud.server_object(&id).await["spec"]["powerState"],
        "Running"
    );
    cloud
        .set_status(&id, json!({"phase": "ACTIVE", "powerState": "Running"}))
        .await;
    cloud.action(&id, json!({"pause": {}}), 202).await;
    assert_eq!(
        cloud.server_object(&id).await["spec"]["powerState"],
        "Paused"
    );
    cloud
        .set_status(&id, json!({"phase": "PAUSED", "powerState": "Paused"}))
        .await;
    cloud.action(&id, json!({"resume": null}), 409).await;
    cloud.action(&id, json!({"unpause": null}), 202).await;
    cloud
        .set_status(&id, json!({"phase": "ACTIVE", "powerState": "Running"}))
        .await;
    cloud.action(&id, json!({"suspend": null}), 202).await;
    assert_eq!(
        cloud.server_object(&id).await["spec"]["powerState"],
        "Suspended"
    );
    cloud
        .set_status(
            &id,
            json!({"phase": "SUSPENDED", "powerState": "Suspended"}),
        )
        .await;
    assert_eq!(
        cloud.get(&format!("/servers/{id}"), 200).await["server"]["status"],
        "SUSPENDED"
    );

    // A hard reboot revives a suspended server.
    cloud
        .action(&id, json!({"reboot": {"type": "HARD"}}), 202)
        .await;
    let object = cloud.server_object(&id).await;
    assert_eq!(object["spec"]["rebootCount"], 2);
    assert_eq!(object["spec"]["rebootType"], "hard");
    assert_eq!(object["spec"]["powerState"], "Running");
    assert_eq!(
        cloud.get(&format!("/servers/{id}"), 200).await["server"]["status"],
        "HARD_REBOOT"
    );

    // Unknown actions and bad arguments are 400; the console needs a node agent.
    let unknown = cloud.action(&id, json!({"shelve": null}), 400).await;
    assert_eq!(
        unknown["badRequest"]["message"],
        "There is no such action: shelve"
    );
    cloud
        .action(&id, json!({"reboot": {"type": "WARM"}}), 400)
        .await;
    let console = cloud
        .action(&id, json!({"os-getConsoleOutput": {"length": 10}}), 409)
        .await;
    assert!(console.to_string().contains("node-1"), "{console}");
}

#[tokio::test]
async fn projects_see_only_their_own_servers() {
    let cloud = cloud().await;
    let id = cloud.boot("mine").await;
    let eve = client_with_token(&cloud.api.user_token("eve", "other", Role::Member).await);

    let missing = cloud
        .send(&eve, "GET", &format!("/servers/{id}"), None, 404)
        .await;
    assert_eq!(
        missing["itemNotFound"]["message"],
        format!("Instance {id} could not be found.")
    );
    assert_eq!(
        cloud.send(&eve, "GET", "/servers/detail", None, 200).await,
        json!({"servers": []})
    );
    cloud
        .send(&eve, "DELETE", &format!("/servers/{id}"), None, 404)
        .await;
    cloud
        .send(
            &eve,
            "POST",
            &format!("/servers/{id}/action"),
            Some(json!({"os-stop": null})),
            404,
        )
        .await;
    cloud
        .send(&eve, "GET", "/servers?all_tenants=1", None, 403)
        .await;
    // Eve cannot boot from demo's network either.
    let refused = cloud
        .send(
            &eve,
            "POST",
            "/servers",
            Some(
                json!({"server": {"name": "x", "imageRef": cloud.image_id, "flavorRef": "m1.tiny",
                "networks": [{"uuid": cloud.network_id}]}}),
            ),
            400,
        )
        .await;
    assert_eq!(
        refused["badRequest"]["message"],
        format!("Network {} could not be found.", cloud.network_id)
    );

    // Readers read but do not write.
    let reader = client_with_token(&cloud.api.user_token("rita", PROJECT, Role::Reader).await);
    cloud
        .send(&reader, "GET", &format!("/servers/{id}"), None, 200)
        .await;
    cloud
        .send(
            &reader,
            "POST",
            &format!("/servers/{id}/action"),
            Some(json!({"os-stop": null})),
            403,
        )
        .await;
    cloud
        .send(&reader, "DELETE", &format!("/servers/{id}"), None, 403)
        .await;

    // The cloud admin lists its own project by default, every project with all_tenants,
    // and reaches any server by id with the admin-only fields.
    let admin = cloud.api.client();
    assert_eq!(
        cloud.send(&admin, "GET", "/servers", None, 200).await,
        json!({"servers": []})
    );
    let all = cloud
        .send(&admin, "GET", "/servers/detail?all_tenants=True", None, 200)
        .await;
    assert_eq!(all["servers"][0]["id"], id.as_str());
    let shown = cloud
        .send(&admin, "GET", &format!("/servers/{id}"), None, 200)
        .await;
    assert_eq!(
        shown["server"]["OS-EXT-SRV-ATTR:instance_name"],
        format!("cirrus-{id}")
    );
    assert_eq!(cloud.servers().await.len(), 1);
}

#[tokio::test]
async fn bad_input_is_400_and_creates_nothing() {
    let cloud = cloud().await;
    let base = json!({"name": "vm", "imageRef": cloud.image_id, "flavorRef": "m1.tiny",
        "networks": [{"uuid": cloud.network_id}]});
    let with = |field: &str, value: Value| {
        let mut server = base.clone();
        if value.is_null() {
            server.as_object_mut().unwrap().remove(field);
        } else {
            server[field] = value;
        }
        json!({ "server": server })
    };
    let cases = [
        (
            with("user_data", json!("%%% not base64")),
            "User data needs to be valid base 64",
        ),
        (
            with("flavorRef", json!("m1.x")),
            "Flavor m1.x could not be found.",
        ),
        (
            with("imageRef", json!("no-such-image")),
            "Image no-such-image could not be found.",
        ),
        (with("name", Value::Null), "'name' is a required property"),
        (
            with("networks", json!([{"uuid": "no-such-net"}])),
            "Network no-such-net could not be found.",
        ),
        (
            with(
                "networks",
                json!([{"uuid": cloud.network_id, "fixed_ip": "10.0.0.300"}]),
            ),
            "fixed_ip",
        ),
        (
            with("key_name", json!("nokey")),
            "Invalid key_name provided.",
        ),
        (with("max_count", json!(2)), "max_count"),
        (with("metadata", json!({"k": 5})), "metadata/k"),
    ];
    for (body, expected) in cases {
        let fault = cloud.post("/servers", body.clone(), 400).await;
        let message = fault["badRequest"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{body}: {fault}");
    }
    let malformed = answer(
        cloud
            .http
            .post(cloud.url("/servers"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(malformed["badRequest"]["message"].is_string());
    assert!(cloud.servers().await.is_empty(), "nothing was created");
    assert_eq!(cloud.get("/servers", 200).await, json!({"servers": []}));
}

#[tokio::test]
async fn boot_from_volume_and_implicit_network() {
    let cloud = cloud().await;
    let native = format!(
        "{}/apis/cirrus.dev/v1/projects/{PROJECT}/volumes",
        cloud.api.base_url
    );
    let volume = answer(
        cloud
            .api
            .client()
            .post(&native)
            .json(&json!({"metadata": {"name": "root"}, "spec": {"size": 1, "bootable": true}}))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let volume_id = volume["metadata"]["uid"].as_str().unwrap();
    // What `openstack server create --volume root` sends (no networks: the only one).
    let created = cloud
        .post(
            "/servers",
            json!({"server": {"name": "bfv", "imageRef": "", "flavorRef": "m1.tiny",
                "block_device_mapping_v2": [{"uuid": volume_id, "boot_index": 0,
                    "source_type": "volume", "destination_type": "volume"}],
                "networks": []}}),
            202,
        )
        .await;
    let id = created["server"]["id"].as_str().unwrap();
    let object = cloud.server_object(id).await;
    assert_eq!(object["spec"]["bootVolume"], "root");
    assert!(object["spec"].get("image").is_none());
    assert_eq!(object["spec"]["networks"], json!([{"network": "net1"}]));
    let shown = cloud.get(&format!("/servers/{id}"), 200).await["server"].clone();
    assert_eq!(shown["image"], "");
    assert_eq!(
        shown["os-extended-volumes:volumes_attached"],
        json!([{"id": volume_id}])
    );
}

#[tokio::test]
async fn boot_from_a_new_volume_hints_and_rebuild() {
    let cloud = cloud().await;
    let first = cloud.boot("first").await;
    // What `openstack server create --image cirros --boot-from-volume 2` sends.
    let created = cloud
        .post(
            "/servers",
            json!({"server": {"name": "bfnv", "imageRef": "", "flavorRef": "m1.tiny",
                "block_device_mapping_v2": [{"uuid": cloud.image_id, "boot_index": 0,
                    "source_type": "image", "destination_type": "volume",
                    "volume_size": 2, "delete_on_termination": true}]},
                "OS-SCH-HNT:scheduler_hints": {"different_host": [first], "other": "ignored"}}),
            202,
        )
        .await;
    let id = created["server"]["id"].as_str().unwrap();
    let object = cloud.server_object(id).await;
    let volume = object["spec"]["bootVolume"].as_str().unwrap().to_string();
    assert_eq!(
        object["spec"]["volumes"],
        json!([{"volume": volume, "deleteOnTermination": true}])
    );
    assert_eq!(
        object["spec"]["schedulerHints"],
        json!({"differentHost": ["first"]})
    );
    let stored = cloud
        .api
        .store
        .get(kind("volumes"), Some(PROJECT), &volume)
        .await
        .unwrap();
    assert_eq!(
        stored["spec"],
        json!({"size": 2, "bootable": true, "source": {"type": "image", "name": "cirros"}})
    );
    // Made for the server: the volume controller's orphan sweep adopts or removes it.
    assert_eq!(
        stored["metadata"]["annotations"]["cirrus.dev/created-for-server"],
        object["metadata"]["name"]
    );

    // A refused server leaves no volume behind.
    let volumes_before = cloud
        .api
        .store
        .list(kind("volumes"), Some(PROJECT), &ListOptions::default())
        .await
        .unwrap()
        .items
        .len();
    cloud
        .post(
            "/servers",
            json!({"server": {"name": "bad", "imageRef": "", "flavorRef": "m1.tiny",
                "block_device_mapping_v2": [{"uuid": cloud.image_id, "boot_index": 0,
                    "source_type": "image", "destination_type": "volume", "volume_size": 1}]},
                "os:scheduler_hints": {"group": "no-such-group"}}),
            400,
        )
        .await;
    let volumes_after = cloud
        .api
        .store
        .list(kind("volumes"), Some(PROJECT), &ListOptions::default())
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(volumes_before, volumes_after);

    // Rebuild: a new image generation, new name and metadata; the basic view answers.
    cloud
        .set_status(&first, json!({"phase": "ACTIVE", "powerState": "Running"}))
        .await;
    let rebuilt = cloud
        .action(
            &first,
            json!({"rebuild": {"imageRef": cloud.image_id, "name": "first-rebuilt",
                "metadata": {"v": "2"}, "adminPass": "chosen"}}),
            202,
        )
        .await;
    assert_eq!(rebuilt["server"]["name"], "first-rebuilt");
    assert_eq!(rebuilt["server"]["adminPass"], "chosen");
    assert_eq!(rebuilt["server"]["metadata"], json!({"v": "2"}));
    assert!(
        rebuilt["server"].get("OS-EXT-STS:vm_state").is_none(),
        "{rebuilt}"
    );
    let object = cloud.server_object(&first).await;
    assert_eq!(object["spec"]["rebuildCount"], 1);
    assert_eq!(object["spec"]["image"], "cirros");
    cloud
        .action(&first, json!({"rebuild": {"imageRef": "nope"}}), 400)
        .await;
    cloud
        .action(id, json!({"rebuild": {"imageRef": cloud.image_id}}), 409)
        .await;
}

/// The node agent writes server status all the time; an action racing such a write is
/// re-planned on a fresh read, not refused with a 409 the user did nothing to cause.
#[tokio::test]
async fn actions_racing_status_writes_still_land() {
    let cloud = cloud().await;
    let id = cloud.boot("busy").await;
    cloud
        .set_status(
            &id,
            json!({"phase": "ACTIVE", "powerState": "Running", "node": "node-1"}),
        )
        .await;
    let name = cloud.server_object(&id).await["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let store = cloud.api.store.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // A busy node agent: acknowledges reboots and rewrites the status every few milliseconds.
    let writer = tokio::spawn(async move {
        let mut i = 0u64;
        while !*stop_rx.borrow() {
            i += 1;
            let current = store
                .get(kind("servers"), Some(PROJECT), &name)
                .await
                .unwrap();
            let reboots = current["spec"]["rebootCount"].as_u64().unwrap_or(0);
            store
                .patch(
                    kind("servers"),
                    Some(PROJECT),
                    &name,
                    &json!({"status": {"observedRebootCount": reboots, "observedRebuildCount": i}}),
                    Part::Status,
                    false,
                )
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    });
    for i in 1..=20u64 {
        // Wait for the previous reboot to be acknowledged (Nova refuses a reboot while
        // one is in progress).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while cloud.server_object(&id).await["status"]["observedRebootCount"]
            .as_u64()
            .unwrap_or(0)
            != i - 1
        {
            assert!(
                std::time::Instant::now() < deadline,
                "reboot {} never acknowledged",
                i - 1
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        cloud
            .action(&id, json!({"reboot": {"type": "SOFT"}}), 202)
            .await;
        assert_eq!(cloud.server_object(&id).await["spec"]["rebootCount"], i);
        // Plain updates race the same writes.
        let renamed = format!("busy-{i}");
        let path = format!("/servers/{id}");
        let body = json!({"server": {"name": renamed}});
        cloud.send(&cloud.http, "PUT", &path, Some(body), 200).await;
        let metadata = json!({"metadata": {"round": i.to_string()}});
        cloud
            .send(
                &cloud.http,
                "PUT",
                &format!("{path}/metadata"),
                Some(metadata),
                200,
            )
            .await;
    }
    let shown = cloud.get(&format!("/servers/{id}"), 200).await;
    assert_eq!(shown["server"]["name"], "busy-20");
    assert_eq!(shown["server"]["metadata"]["round"], "20");
    stop_tx.send(true).unwrap();
    writer.await.unwrap();
}

#[tokio::test]
async fn a_member_boots_on_the_admins_shared_network_but_not_on_its_private_one() {
    let c = cloud().await;
    let admin = c.api.client();
    let native = format!(
        "{}/apis/cirrus.dev/v1/projects/admin/networks",
        c.api.base_url
    );
    let mut ids = Vec::new();
    for (name, shared) in [("public", true), ("private", false)] {
        let resp = admin
            .post(&native)
            .json(&json!({"metadata": {"name": name}, "spec": {"shared": shared}}))
            .send()
            .await
            .unwrap();
        ids.push(
            answer(resp, 201).await["metadata"]["uid"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let body = json!({"server": {"name": "on-public", "imageRef": c.image_id,
        "flavorRef": "m1.tiny", "networks": [{"uuid": ids[0]}]}});
    let id = c.post("/servers", body, 202).await["server"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The server is the member's; its NIC names the network's owner.
    let server = c.server_object(&id).await;
    assert_eq!(
        server["spec"]["networks"],
        json!([{"network": "public", "networkProject": "admin"}])
    );
    // The admin's private network is not found, by id or by name.
    for net in [ids[1].as_str(), "private"] {
        let body = json!({"server": {"name": "on-private", "imageRef": c.image_id,
            "flavorRef": "m1.tiny", "networks": [{"uuid": net}]}});
        let fault = c.post("/servers", body, 400).await;
        assert!(
            fault["badRequest"]["message"]
                .as_str()
                .unwrap()
                .contains("could not be found"),
            "{fault}"
        );
    }
    assert_eq!(c.servers().await.len(), 1);
}

#[tokio::test]
async fn openstack_answers_carry_request_ids_and_native_ones_do_not() {
    let c = cloud().await;
    let resp = c.http.get(c.url("/servers")).send().await.unwrap();
    let id = resp.headers()["x-openstack-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(id.starts_with("req-"), "{id}");
    assert_eq!(resp.headers()["x-compute-request-id"], id.as_str());
    // Errors too, and every service; each request its own id.
    let resp = c.http.get(c.url("/servers/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_ne!(resp.headers()["x-openstack-request-id"], id.as_str());
    let network = format!("{}/network/v2.0/networks", c.api.base_url);
    let resp = c.http.get(network).send().await.unwrap();
    assert!(resp.headers().contains_key("x-openstack-request-id"));
    assert!(!resp.headers().contains_key("x-compute-request-id"));
    let native = format!("{}/apis/cirrus.dev/v1/flavors", c.api.base_url);
    let resp = c.http.get(native).send().await.unwrap();
    assert!(!resp.headers().contains_key("x-openstack-request-id"));
}
