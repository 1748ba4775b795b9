//! Cinder v3 and Nova's `os-volume_attachments` over HTTP, against the whole API on an
//! in-memory store. No controller or node agent runs here: the tests check the objects the
//! routes write, and write the statuses a node agent would (through the store) to check
//! how they render.
//!
//! Why this file is long: each test is one of Cinder's workflows (create, attach through Nova,
//! extend, snapshots, actions, quotas) end to end against one fixture cloud.

use cirrus_auth::Role;
use cirrus_crds::KindInfo;
use cirrus_store::objects::{ListOptions, Part};
use cirrus_test_utils::{TestApi, client_with_token};
use serde_json::{Value, json};

const PROJECT: &str = "demo";

fn kind(plural: &str) -> &'static KindInfo {
    cirrus_crds::kind_by_plural(plural).unwrap()
}

struct Cloud {
    api: TestApi,
    http: reqwest::Client,
}

async fn cloud() -> Cloud {
    let api = TestApi::start().await;
    let token = api.user_token("alice", PROJECT, Role::Member).await;
    Cloud {
        http: client_with_token(&token),
        api,
    }
}

async fn answer(resp: reqwest::Response, status: u16) -> Value {
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(code, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

impl Cloud {
    fn url(&self, path: &str) -> String {
        format!("{}/volume/v3/{PROJECT}{path}", self.api.base_url)
    }

    fn nova(&self, path: &str) -> String {
        format!("{}/compute/v2.1{path}", self.api.base_url)
    }

    async fn post(&self, url: &str, body: Value, status: u16) -> Value {
        answer(
            self.http.post(url).json(&body).send().await.unwrap(),
            status,
        )
        .await
    }

    async fn get(&self, url: &str, status: u16) -> Value {
        answer(self.http.get(url).send().await.unwrap(), status).await
    }

    async fn create_volume(&self, body: Value) -> Value {
        self.post(&self.url("/volumes"), json!({ "volume": body }), 202)
            .await["volume"]
            .clone()
    }

    /// The stored object of `kind` whose uid is `id`.
    async fn object(&self, plural: &str, id: &str) -> Value {
        self.objects(plural)
            .await
            .into_iter()
            .find(|o| o["metadata"]["uid"] == id)
            .unwrap_or_else(|| panic!("no {plural} with uid {id}"))
    }

    async fn objects(&self, plural: &str) -> Vec<Value> {
        self.api
            .store
            .list(kind(plural), Some(PROJECT), &ListOptions::default())
            .await
            .unwrap()
            .items
    }

    /// Writes `status` as the node agent would.
    async fn set_status(&self, plural: &str, id: &str, status: Value) {
        let object = self.object(plural, id).await;
        let name = object["metadata"]["name"].as_str().unwrap();
        self.api
            .store
            .patch(
                kind(plural),
                Some(PROJECT),
                name,
                &json!({ "status": status }),
                Part::Status,
                false,
            )
            .await
            .unwrap();
    }

    /// A server object (made directly: the compute routes are another test's business).
    async fn server(&self, name: &str) -> Value {
        self.api
            .store
            .create(
                kind("servers"),
                Some(PROJECT),
                json!({
                    "apiVersion": cirrus_crds::API_VERSION,
                    "kind": "Server",
                    "metadata": {"name": name},
                    "spec": {"flavor": "m1.small", "image": "cirros"},
                }),
                false,
            )
            .await
            .unwrap()
    }

    async fn server_volumes(&self, name: &str) -> Value {
        let server = self
            .api
            .store
            .get(kind("servers"), Some(PROJECT), name)
            .await
            .unwrap();
        server["spec"]
            .get("volumes")
            .cloned()
            .unwrap_or_else(|| json!([]))
    }
}

fn uid(object: &Value) -> String {
    object["metadata"]["uid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn version_documents_are_anonymous_and_the_microversion_is_echoed() {
    let c = cloud().await;
    let anonymous = reqwest::Client::new();
    let root = anonymous
        .get(format!("{}/volume/", c.api.base_url))
        .send()
        .await
        .unwrap();
    let body = answer(root, 300).await;
    assert_eq!(body["versions"][0]["id"], "v3.0");
    assert_eq!(body["versions"][0]["min_version"], "3.0");
    assert_eq!(body["versions"][0]["version"], "3.0");
    for path in ["/volume/v3", "/volume/v3/"] {
        let resp = anonymous
            .get(format!("{}{path}", c.api.base_url))
            .header("OpenStack-API-Version", "volume 3.0")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["openstack-api-version"], "volume 3.0");
        assert!(
            resp.headers()["vary"]
                .to_str()
                .unwrap()
                .contains("OpenStack-API-Version")
        );
        let body = answer(resp, 200).await;
        let href = body["versions"][0]["links"][1]["href"].as_str().unwrap();
        assert!(href.ends_with("/volume/v3/"), "{href}");
    }
    // A version not served is refused; an authenticated route needs a token.
    let resp = c
        .http
        .get(c.url("/volumes"))
        .header("OpenStack-API-Version", "volume 3.42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 406);
    let resp = anonymous.get(c.url("/volumes")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn volume_create_list_show_update_extend_delete() {
    let c = cloud().await;
    let created = c
        .create_volume(json!({
            "size": 2, "name": "My Data", "description": "logs",
            "metadata": {"tier": "gold"}, "volume_type": "lvm",
            // openstacksdk sends every unset field as null.
            "snapshot_id": null, "source_volid": null, "imageRef": null, "backup_id": null,
            "consistencygroup_id": null, "availability_zone": null,
        }))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["status"], "creating");
    assert_eq!(created["name"], "My Data");
    assert_eq!(created["size"], 2);
    assert_eq!(created["volume_type"], "lvm");
    assert_eq!(created["bootable"], "false");
    assert_eq!(created["user_id"], "alice");
    // Cinder (and tempest's create_volume schema): no extended attributes on create.
    assert!(created.get("os-vol-tenant-attr:tenant_id").is_none());
    assert_eq!(created["attachments"], json!([]));

    // The object: a generated name (the display name is not a valid object name), the
    // display name and creator in annotations, the spec as asked.
    let object = c.object("volumes", &id).await;
    assert!(
        object["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("volume-")
    );
    assert_eq!(
        object["metadata"]["annotations"]["openstack.org/name"],
        "My Data"
    );
    assert_eq!(object["spec"]["size"], 2);
    assert_eq!(object["spec"]["volumeType"], "lvm");
    assert_eq!(object["spec"]["description"], "logs");
    assert_eq!(object["spec"]["metadata"]["tier"], "gold");

    // Lists: summary, detail, filters.
    let list = c.get(&c.url("/volumes"), 200).await;
    assert_eq!(list["volumes"][0]["id"], id.as_str());
    assert_eq!(list["volumes"][0]["name"], "My Data");
    assert!(list["volumes"][0].get("status").is_none());
    let detail = c.get(&c.url("/volumes/detail?name=My%20Data"), 200).await;
    assert_eq!(detail["volumes"][0]["status"], "creating");
    let none = c.get(&c.url("/volumes/detail?status=available"), 200).await;
    assert_eq!(none["volumes"], json!([]));

    // The node agent's status shows; extend needs available and a bigger size.
    let extend = |size: u64| json!({"os-extend": {"new_size": size}});
    let early = c
        .post(&c.url(&format!("/volumes/{id}/action")), extend(5), 400)
        .await;
    assert!(
        early["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("creating")
    );
    c.set_status(
        "volumes",
        &id,
        json!({"phase": "available", "node": "n1", "pool": "vg0"}),
    )
    .await;
    let shown = c.get(&c.url(&format!("/volumes/{id}")), 200).await;
    assert_eq!(shown["volume"]["status"], "available");
    assert_eq!(shown["volume"]["os-vol-tenant-attr:tenant_id"], PROJECT);
    assert!(
        shown["volume"].get("os-vol-host-attr:host").is_none(),
        "admin only"
    );
    let smaller = c
        .post(&c.url(&format!("/volumes/{id}/action")), extend(2), 400)
        .await;
    assert!(
        smaller["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("greater than current size"),
        "{smaller}"
    );
    c.post(&c.url(&format!("/volumes/{id}/action")), extend(5), 202)
        .await;
    assert_eq!(c.object("volumes", &id).await["spec"]["size"], 5);

    // Update and metadata.
    let updated = answer(
        c.http
            .put(c.url(&format!("/volumes/{id}")))
            .json(&json!({"volume": {"name": "renamed", "description": null}}))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(updated["volume"]["name"], "renamed");
    assert_eq!(updated["volume"]["description"], Value::Null);
    let merged = c
        .post(
            &c.url(&format!("/volumes/{id}/metadata")),
            json!({"metadata": {"owner": "ops"}}),
            200,
        )
        .await;
    assert_eq!(merged["metadata"], json!({"owner": "ops", "tier": "gold"}));
    answer(
        c.http
            .delete(c.url(&format!("/volumes/{id}/metadata/tier")))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let item = c
        .get(&c.url(&format!("/volumes/{id}/metadata/owner")), 200)
        .await;
    assert_eq!(item["meta"]["owner"], "ops");
    c.get(&c.url(&format!("/volumes/{id}/metadata/tier")), 404)
        .await;
    let bootable = c
        .post(
            &c.url(&format!("/volumes/{id}/action")),
            json!({"os-set_bootable": {"bootable": "True"}}),
            200,
        )
        .await;
    assert_eq!(bootable, Value::Null);
    assert_eq!(c.object("volumes", &id).await["spec"]["bootable"], true);

    // Unknown actions name themselves; resets are for cloud admins.
    let unknown = c
        .post(
            &c.url(&format!("/volumes/{id}/action")),
            json!({"os-frobnicate": {}}),
            400,
        )
        .await;
    assert!(
        unknown["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("os-frobnicate")
    );
    c.post(
        &c.url(&format!("/volumes/{id}/action")),
        json!({"os-reset_status": {"status": "error"}}),
        403,
    )
    .await;

    // Delete: 202, and the object goes (no finalizer without a node agent).
    answer(
        c.http
            .delete(c.url(&format!("/volumes/{id}")))
            .send()
            .await
            .unwrap(),
        202,
    )
    .await;
    assert!(c.objects("volumes").await.is_empty());
    let gone = c.get(&c.url(&format!("/volumes/{id}")), 404).await;
    assert!(
        gone["itemNotFound"]["message"]
            .as_str()
            .unwrap()
            .contains(&id)
    );
}

#[tokio::test]
async fn bad_requests_name_the_field_and_create_nothing() {
    let c = cloud().await;
    let cases = [
        (json!({"size": 0}), "size"),
        (json!({"size": "big"}), "size"),
        (json!({}), "size"),
        (
            json!({"size": 1, "snapshot_id": "no-such-snapshot"}),
            "no-such-snapshot",
        ),
        (
            json!({"size": 1, "source_volid": "no-such-volume"}),
            "no-such-volume",
        ),
        (
            json!({"size": 1, "imageRef": "no-such-image"}),
            "no-such-image",
        ),
        (json!({"size": 1, "volume_type": "ceph"}), "ceph"),
        (json!({"size": 1, "availability_zone": "mars"}), "mars"),
        (
            json!({"size": 1, "metadata": {"k": {"nested": 1}}}),
            "metadata",
        ),
        (json!({"size": 1, "backup_id": "b"}), "backup_id"),
    ];
    for (body, named) in cases {
        let answer = c
            .post(&c.url("/volumes"), json!({ "volume": body.clone() }), 400)
            .await;
        let message = answer["badRequest"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{body}: {message}");
    }
    let missing = c.post(&c.url("/volumes"), json!({"size": 1}), 400).await;
    assert!(
        missing["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("'volume'")
    );
    assert!(
        c.objects("volumes").await.is_empty(),
        "nothing half-created"
    );
}

#[tokio::test]
async fn snapshots_and_volumes_made_from_them() {
    let c = cloud().await;
    let vol = c.create_volume(json!({"size": 3, "name": "base"})).await;
    let vid = vol["id"].as_str().unwrap().to_string();
    let snap_url = c.url("/snapshots");
    // Not yet available: refused, nothing made.
    let early = c
        .post(
            &snap_url,
            json!({"snapshot": {"volume_id": vid, "name": "s1"}}),
            400,
        )
        .await;
    assert!(
        early["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("creating")
    );
    let unknown = c
        .post(&snap_url, json!({"snapshot": {"volume_id": "nope"}}), 400)
        .await;
    assert!(
        unknown["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    assert!(c.objects("volumesnapshots").await.is_empty());

    c.set_status("volumes", &vid, json!({"phase": "available"}))
        .await;
    let snap = c
        .post(
            &snap_url,
            json!({"snapshot": {"volume_id": vid, "name": "s1", "description": "before upgrade",
                "force": "false", "metadata": {"why": "test"}}}),
            202,
        )
        .await["snapshot"]
        .clone();
    let sid = snap["id"].as_str().unwrap().to_string();
    assert_eq!(snap["status"], "creating");
    assert_eq!(snap["volume_id"], vid.as_str());
    assert_eq!(snap["size"], 3);
    assert_eq!(snap["name"], "s1");
    let object = c.object("volumesnapshots", &sid).await;
    assert_eq!(object["metadata"]["name"], "s1");
    assert_eq!(object["spec"]["volume"], "base");
    assert_eq!(object["spec"]["description"], "before upgrade");

    let list = c.get(&c.url("/snapshots"), 200).await;
    assert_eq!(list["snapshots"][0]["id"], sid.as_str());
    let detail = c
        .get(&c.url(&format!("/snapshots/detail?volume_id={vid}")), 200)
        .await;
    assert_eq!(
        detail["snapshots"][0]["os-extended-snapshot-attributes:project_id"],
        PROJECT
    );
    c.set_status(
        "volumesnapshots",
        &sid,
        json!({"phase": "available", "size": 3}),
    )
    .await;
    let shown = c.get(&c.url(&format!("/snapshots/{sid}")), 200).await;
    assert_eq!(shown["snapshot"]["status"], "available");
    assert_eq!(
        shown["snapshot"]["os-extended-snapshot-attributes:progress"],
        "100%"
    );

    // A volume from the snapshot: its size at least the snapshot's, its source by name.
    let small = c
        .post(
            &c.url("/volumes"),
            json!({"volume": {"size": 1, "snapshot_id": sid}}),
            400,
        )
        .await;
    assert!(
        small["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("smaller")
    );
    let clone = c
        .create_volume(json!({"snapshot_id": sid, "name": "restored"}))
        .await;
    assert_eq!(clone["size"], 3);
    assert_eq!(clone["snapshot_id"], sid.as_str());
    let cobj = c.object("volumes", clone["id"].as_str().unwrap()).await;
    assert_eq!(
        cobj["spec"]["source"],
        json!({"type": "snapshot", "name": "s1"})
    );

    // The volume can't go while it has snapshots (Cinder's rule) unless cascade.
    let refused = answer(
        c.http
            .delete(c.url(&format!("/volumes/{vid}")))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(
        refused["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains(&sid)
    );
    answer(
        c.http
            .delete(c.url(&format!("/snapshots/{sid}")))
            .send()
            .await
            .unwrap(),
        202,
    )
    .await;
    assert!(c.objects("volumesnapshots").await.is_empty());
    answer(
        c.http
            .delete(c.url(&format!("/volumes/{vid}")))
            .send()
            .await
            .unwrap(),
        202,
    )
    .await;

    // cascade deletes the snapshots too.
    let v2 = c.create_volume(json!({"size": 1})).await;
    let v2id = v2["id"].as_str().unwrap().to_string();
    assert_eq!(v2["name"], Value::Null, "created without a name");
    c.set_status("volumes", &v2id, json!({"phase": "available"}))
        .await;
    c.post(&snap_url, json!({"snapshot": {"volume_id": v2id}}), 202)
        .await;
    answer(
        c.http
            .delete(c.url(&format!("/volumes/{v2id}?cascade=true")))
            .send()
            .await
            .unwrap(),
        202,
    )
    .await;
    assert!(c.objects("volumesnapshots").await.is_empty());
}

#[tokio::test]
async fn nova_attachments_write_the_server_spec() {
    let c = cloud().await;
    let web = c.server("web").await;
    let db = c.server("db").await;
    let (web_id, db_id) = (uid(&web), uid(&db));
    let vol = c.create_volume(json!({"size": 1, "name": "data"})).await;
    let vid = vol["id"].as_str().unwrap().to_string();
    let attach_url = c.nova(&format!("/servers/{web_id}/os-volume_attachments"));
    let body = json!({"volumeAttachment": {"volumeId": vid, "device": null}});

    // Not available yet: refused like Nova (400), nothing written.
    let early = c.post(&attach_url, body.clone(), 400).await;
    assert!(
        early["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("creating")
    );
    assert_eq!(c.server_volumes("web").await, json!([]));
    let unknown = c
        .post(
            &attach_url,
            json!({"volumeAttachment": {"volumeId": "nope"}}),
            404,
        )
        .await;
    assert!(
        unknown["itemNotFound"]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    c.post(
        &c.nova("/servers/no-such-server/os-volume_attachments"),
        body.clone(),
        404,
    )
    .await;

    c.set_status("volumes", &vid, json!({"phase": "available"}))
        .await;
    let attached = c
        .post(
            &attach_url,
            json!({"volumeAttachment": {"volumeId": vid, "device": "/dev/vdc"}}),
            200,
        )
        .await;
    assert_eq!(
        attached["volumeAttachment"],
        json!({"id": vid, "serverId": web_id, "volumeId": vid, "device": "/dev/vdc"})
    );
    assert_eq!(
        c.server_volumes("web").await,
        json!([{"volume": "data", "device": "/dev/vdc"}])
    );
    // The volume is attaching until the node agent reports it in use.
    let shown = c.get(&c.url(&format!("/volumes/{vid}")), 200).await;
    assert_eq!(shown["volume"]["status"], "attaching");

    // A second attach, here or elsewhere, is refused.
    c.post(&attach_url, body.clone(), 400).await;
    let elsewhere = c
        .post(
            &c.nova(&format!("/servers/{db_id}/os-volume_attachments")),
            body.clone(),
            400,
        )
        .await;
    assert!(
        elsewhere["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains(&web_id)
    );
    assert_eq!(c.server_volumes("db").await, json!([]));

    // In use: listed on both sides, and deleting the volume is refused (Cinder's 400).
    c.set_status(
        "volumes",
        &vid,
        json!({"phase": "in-use", "attachments": [{"server": "web", "device": "/dev/vdc", "node": "n1"}]}),
    )
    .await;
    let list = c.get(&attach_url, 200).await;
    assert_eq!(list["volumeAttachments"][0]["volumeId"], vid.as_str());
    let one = c.get(&format!("{attach_url}/{vid}"), 200).await;
    assert_eq!(one["volumeAttachment"]["device"], "/dev/vdc");
    let shown = c.get(&c.url(&format!("/volumes/{vid}")), 200).await;
    assert_eq!(shown["volume"]["status"], "in-use");
    assert_eq!(
        shown["volume"]["attachments"][0]["server_id"],
        web_id.as_str()
    );
    assert_eq!(shown["volume"]["attachments"][0]["host_name"], "n1");
    let refused = answer(
        c.http
            .delete(c.url(&format!("/volumes/{vid}")))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(
        refused["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("attached")
    );

    // Detach: 202, the entry goes, the volume shows detaching until the agent catches up.
    answer(
        c.http
            .delete(format!("{attach_url}/{vid}"))
            .send()
            .await
            .unwrap(),
        202,
    )
    .await;
    assert_eq!(c.server_volumes("web").await, json!([]));
    let shown = c.get(&c.url(&format!("/volumes/{vid}")), 200).await;
    assert_eq!(shown["volume"]["status"], "detaching");
    c.get(&format!("{attach_url}/{vid}"), 404).await;
    answer(
        c.http
            .delete(format!("{attach_url}/{vid}"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
}

#[tokio::test]
async fn cinder_attach_and_detach_actions_write_the_server_spec() {
    let c = cloud().await;
    let web = c.server("web").await;
    let web_id = uid(&web);
    let vol = c.create_volume(json!({"size": 1, "name": "data"})).await;
    let vid = vol["id"].as_str().unwrap().to_string();
    c.set_status("volumes", &vid, json!({"phase": "available"}))
        .await;
    let action = c.url(&format!("/volumes/{vid}/action"));
    c.post(
        &action,
        json!({"os-attach": {"instance_uuid": web_id, "mountpoint": "/dev/vdd"}}),
        202,
    )
    .await;
    assert_eq!(
        c.server_volumes("web").await,
        json!([{"volume": "data", "device": "/dev/vdd"}])
    );
    c.set_status(
        "volumes",
        &vid,
        json!({"phase": "in-use", "attachments": [{"server": "web", "device": "/dev/vdd"}]}),
    )
    .await;
    let shown = c.get(&c.url(&format!("/volumes/{vid}")), 200).await;
    let attachment_id = shown["volume"]["attachments"][0]["attachment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let wrong = c
        .post(
            &action,
            json!({"os-detach": {"attachment_id": "not-it"}}),
            404,
        )
        .await;
    assert!(
        wrong["itemNotFound"]["message"]
            .as_str()
            .unwrap()
            .contains("not-it")
    );
    c.post(
        &action,
        json!({"os-detach": {"attachment_id": attachment_id}}),
        202,
    )
    .await;
    assert_eq!(c.server_volumes("web").await, json!([]));
    c.post(
        &action,
        json!({"os-attach": {"instance_uuid": "no-such-server", "mountpoint": "/dev/vdd"}}),
        404,
    )
    .await;
}

#[tokio::test]
async fn other_projects_see_nothing_and_readers_cannot_write() {
    let c = cloud().await;
    let vol = c.create_volume(json!({"size": 1, "name": "secret"})).await;
    let vid = vol["id"].as_str().unwrap().to_string();

    let bob = client_with_token(&c.api.user_token("bob", "other", Role::Member).await);
    // Bob's token is for "other": demo's URL is not found, nor is the volume in his.
    let resp = bob.get(c.url("/volumes")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let mine = format!("{}/volume/v3/other", c.api.base_url);
    let resp = bob
        .get(format!("{mine}/volumes/{vid}"))
        .send()
        .await
        .unwrap();
    let body = answer(resp, 404).await;
    assert!(
        body["itemNotFound"]["message"]
            .as_str()
            .unwrap()
            .contains(&vid)
    );
    let list = answer(
        bob.get(format!("{mine}/volumes/detail?all_tenants=1"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(
        list["volumes"],
        json!([]),
        "all_tenants is for cloud admins"
    );
    let resp = bob
        .post(format!("{mine}/volumes/{vid}/action"))
        .json(&json!({"os-extend": {"new_size": 9}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    let reader = client_with_token(&c.api.user_token("rita", PROJECT, Role::Reader).await);
    let resp = reader
        .get(c.url(&format!("/volumes/{vid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = reader
        .post(c.url("/volumes"))
        .json(&json!({"volume": {"size": 1}}))
        .send()
        .await
        .unwrap();
    let body = answer(resp, 403).await;
    assert!(body.get("forbidden").is_some(), "{body}");

    // The cloud admin sees every project with all_tenants, and the host attribute.
    let admin = c.api.client();
    let url = format!(
        "{}/volume/v3/admin/volumes/detail?all_tenants=True",
        c.api.base_url
    );
    let list = answer(admin.get(url).send().await.unwrap(), 200).await;
    assert_eq!(list["volumes"][0]["id"], vid.as_str());
    assert!(list["volumes"][0].get("os-vol-host-attr:host").is_some());
}

#[tokio::test]
async fn types_quotas_limits_and_zones() {
    let c = cloud().await;
    let types = c.get(&c.url("/types"), 200).await;
    let names: Vec<&str> = types["volume_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["file", "lvm"]);
    let default = c.get(&c.url("/types/default"), 200).await;
    assert_eq!(default["volume_type"]["name"], "file");
    c.get(&c.url("/types/ceph"), 404).await;

    let v = c.create_volume(json!({"size": 4})).await;
    c.set_status(
        "volumes",
        v["id"].as_str().unwrap(),
        json!({"phase": "available"}),
    )
    .await;
    c.post(
        &c.url("/snapshots"),
        json!({"snapshot": {"volume_id": v["id"]}}),
        202,
    )
    .await;
    let quota = c
        .get(&c.url(&format!("/os-quota-sets/{PROJECT}?usage=true")), 200)
        .await;
    assert_eq!(
        quota["quota_set"]["volumes"],
        json!({"limit": 10, "in_use": 1, "reserved": 0, "allocated": 0})
    );
    assert_eq!(
        quota["quota_set"]["gigabytes"]["in_use"], 4,
        "volume GiB, as the admission counts them (crate::quota)"
    );
    assert_eq!(quota["quota_set"]["snapshots"]["in_use"], 1);
    let plain = c
        .get(&c.url(&format!("/os-quota-sets/{PROJECT}")), 200)
        .await;
    assert_eq!(plain["quota_set"]["gigabytes"], 1000);
    c.get(&c.url("/os-quota-sets/other"), 403).await;
    let limits = c.get(&c.url("/limits"), 200).await;
    assert_eq!(limits["limits"]["absolute"]["totalVolumesUsed"], 1);
    assert_eq!(limits["limits"]["absolute"]["maxTotalVolumes"], 10);
    let zones = c.get(&c.url("/os-availability-zone"), 200).await;
    assert_eq!(zones["availabilityZoneInfo"][0]["zoneName"], "nova");
}

#[tokio::test]
async fn volumes_from_images_and_from_other_volumes() {
    let c = cloud().await;
    // A public image of the admin project, 2.5 GiB virtual: volumes from it need 3 GiB.
    let image = c
        .api
        .store
        .create(
            kind("images"),
            Some("admin"),
            json!({
                "apiVersion": cirrus_crds::API_VERSION,
                "kind": "Image",
                "metadata": {"name": "cirros"},
                "spec": {"visibility": "public", "diskFormat": "qcow2", "containerFormat": "bare"},
            }),
            false,
        )
        .await
        .unwrap();
    c.api
        .store
        .patch(
            kind("images"),
            Some("admin"),
            "cirros",
            &json!({"status": {"phase": "active", "virtualSize": 5u64 << 29}}),
            Part::Status,
            false,
        )
        .await
        .unwrap();
    let image_id = uid(&image);
    let small = c
        .post(
            &c.url("/volumes"),
            json!({"volume": {"size": 2, "imageRef": image_id}}),
            400,
        )
        .await;
    assert!(
        small["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("3GB"),
        "{small}"
    );
    let boot = c
        .create_volume(json!({"size": 3, "imageRef": image_id, "name": "root"}))
        .await;
    assert_eq!(boot["bootable"], "true");
    // Cinder names the image on show and detail, not in the create answer (tempest's
    // create_volume schema refuses the key).
    assert!(boot.get("volume_image_metadata").is_none(), "{boot}");
    let shown = c
        .get(
            &c.url(&format!("/volumes/{}", boot["id"].as_str().unwrap())),
            200,
        )
        .await;
    assert_eq!(
        shown["volume"]["volume_image_metadata"]["image_name"],
        "cirros"
    );
    let object = c.object("volumes", boot["id"].as_str().unwrap()).await;
    assert_eq!(
        object["spec"]["source"],
        json!({"type": "image", "name": "cirros"})
    );
    assert_eq!(object["spec"]["bootable"], true);

    // A clone: its source's size and type by default; another type is refused.
    let lvm = c
        .create_volume(json!({"size": 2, "volume_type": "LVM"}))
        .await;
    let lvm_id = lvm["id"].as_str().unwrap().to_string();
    c.set_status("volumes", &lvm_id, json!({"phase": "available"}))
        .await;
    let wrong = c
        .post(
            &c.url("/volumes"),
            json!({"volume": {"source_volid": lvm_id, "volume_type": "file"}}),
            400,
        )
        .await;
    assert!(
        wrong["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("volume_type")
    );
    let clone = c.create_volume(json!({"source_volid": lvm_id})).await;
    assert_eq!(clone["size"], 2);
    assert_eq!(clone["volume_type"], "lvm");
    assert_eq!(clone["source_volid"], lvm_id.as_str());
    let two = c
        .post(
            &c.url("/volumes"),
            json!({"volume": {"size": 2, "source_volid": lvm_id, "imageRef": image_id}}),
            400,
        )
        .await;
    assert!(
        two["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("only one")
    );
}

#[tokio::test]
async fn concurrent_attaches_never_leave_a_volume_on_two_servers() {
    let c = cloud().await;
    let a = uid(&c.server("a").await);
    let b = uid(&c.server("b").await);
    let vol = c.create_volume(json!({"size": 1, "name": "shared"})).await;
    let vid = vol["id"].as_str().unwrap().to_string();
    c.set_status("volumes", &vid, json!({"phase": "available"}))
        .await;
    let body = json!({"volumeAttachment": {"volumeId": vid}});
    for _ in 0..10 {
        let (ra, rb) = tokio::join!(
            c.http
                .post(c.nova(&format!("/servers/{a}/os-volume_attachments")))
                .json(&body)
                .send(),
            c.http
                .post(c.nova(&format!("/servers/{b}/os-volume_attachments")))
                .json(&body)
                .send(),
        );
        let codes = [ra.unwrap().status().as_u16(), rb.unwrap().status().as_u16()];
        let on_a = c.server_volumes("a").await.as_array().unwrap().len();
        let on_b = c.server_volumes("b").await.as_array().unwrap().len();
        assert!(on_a + on_b <= 1, "both servers hold the volume ({codes:?})");
        assert_eq!(
            codes.iter().filter(|c| **c == 200).count(),
            on_a + on_b,
            "{codes:?}"
        );
        for (server, n) in [(&a, on_a), (&b, on_b)] {
            if n == 1 {
                let url = c.nova(&format!("/servers/{server}/os-volume_attachments/{vid}"));
                answer(c.http.delete(url).send().await.unwrap(), 202).await;
            }
        }
    }
}
