//! Glance v2 over HTTP: the calls `openstack image create --file`, `image save`, `image set`
//! and `image delete` make, against the whole API on an in-memory store, a temporary blob
//! directory and the real `qemu-img`.

use std::sync::Arc;

use cirrus_api::blobs::BlobStore;
use cirrus_auth::Role;
use cirrus_test_utils::{TestApi, client_with_token};
use md5::Md5;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const PATCH_TYPE: &str = "application/openstack-images-v2.1-json-patch";

struct Cloud {
    api: TestApi,
    _blobs: tempfile::TempDir,
    work: tempfile::TempDir,
}

async fn cloud() -> Cloud {
    let blobs = tempfile::tempdir().unwrap();
    let store = BlobStore::open(blobs.path()).unwrap();
    let api = TestApi::start_with(|state| state.blobs = Some(Arc::new(store))).await;
    Cloud {
        api,
        _blobs: blobs,
        work: tempfile::tempdir().unwrap(),
    }
}

impl Cloud {
    fn url(&self, path: &str) -> String {
        format!("{}/image{path}", self.api.base_url)
    }

    /// A small real qcow2 file, as `openstack image create --file` would send.
    fn qcow2(&self) -> Vec<u8> {
        let path = self.work.path().join("disk.qcow2");
        let status = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&path)
            .arg("16M")
            .status()
            .expect("qemu-img is installed (hack/test.sh installs it)");
        assert!(status.success());
        std::fs::read(path).unwrap()
    }
}

async fn create(http: &reqwest::Client, url: &str, body: Value) -> reqwest::Response {
    http.post(url).json(&body).send().await.unwrap()
}

async fn json_of(resp: reqwest::Response, status: u16) -> Value {
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(code, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test]
async fn versions_are_anonymous() {
    let cloud = cloud().await;
    for (path, status) in [("", 300), ("/", 300), ("/versions", 200)] {
        let resp = reqwest::get(cloud.url(path)).await.unwrap();
        assert_eq!(
            resp.status(),
            status,
            "GET /image{path} (Glance's codes, tempest's check)"
        );
        let body: Value = resp.json().await.unwrap();
        let versions = body["versions"].as_array().unwrap();
        assert_eq!(versions[0]["status"], "CURRENT");
        assert!(versions[0]["id"].as_str().unwrap().starts_with("v2."));
        assert!(
            versions[0]["links"][0]["href"]
                .as_str()
                .unwrap()
                .ends_with("/image/v2/")
        );
    }
    let resp = reqwest::get(cloud.url("/v2/images")).await.unwrap();
    assert_eq!(resp.status(), 401, "the image list needs a token");
}

/// create → upload → show → download identical → patch → delete, as the CLI does.
#[tokio::test]
async fn image_lifecycle_with_data() {
    let cloud = cloud().await;
    let http = cloud.api.client();
    let created = json_of(
        create(
            &http,
            &cloud.url("/v2/images"),
            json!({"name": "Cirros 0.6", "disk_format": "qcow2", "container_format": "bare",
                   "visibility": "public", "tags": ["test"],
                   "owner_specified.openstack.md5": "", "hw_disk_bus": "virtio"}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(created["status"], "queued");
    assert_eq!(created["name"], "Cirros 0.6");
    assert_eq!(created["visibility"], "public");
    assert_eq!(created["owner"], "admin");
    assert_eq!(created["hw_disk_bus"], "virtio");
    assert_eq!(created["size"], Value::Null);
    let id = created["id"].as_str().unwrap().to_string();

    // No data yet: 204.
    let resp = http
        .get(cloud.url(&format!("/v2/images/{id}/file")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    let data = cloud.qcow2();
    let resp = http
        .put(cloud.url(&format!("/v2/images/{id}/file")))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204, "{}", resp.text().await.unwrap());

    let shown = json_of(
        http.get(cloud.url(&format!("/v2/images/{id}")))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["size"], data.len());
    assert_eq!(shown["checksum"], hex(&Md5::digest(&data)));
    assert_eq!(shown["os_hash_algo"], "sha256");
    assert_eq!(shown["os_hash_value"], hex(&Sha256::digest(&data)));
    assert!(shown["virtual_size"].as_u64().unwrap() >= 16 << 20);

    let resp = http
        .get(cloud.url(&format!("/v2/images/{id}/file")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-md5"].to_str().unwrap(),
        hex(&Md5::digest(&data))
    );
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        data.as_slice(),
        "image save returns the same bytes"
    );

    // Data is immutable once active.
    let resp = http
        .put(cloud.url(&format!("/v2/images/{id}/file")))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);

    // image set --name --property --tag --protected, as a JSON patch.
    let patched = json_of(
        http.patch(cloud.url(&format!("/v2/images/{id}")))
            .header("content-type", PATCH_TYPE)
            .json(&json!([
                {"op": "replace", "path": "/name", "value": "cirros"},
                {"op": "add", "path": "/os_distro", "value": "cirros"},
                {"op": "remove", "path": "/hw_disk_bus"},
                {"op": "add", "path": "/tags/-", "value": "small"},
                {"op": "replace", "path": "/protected", "value": true},
            ]))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(patched["name"], "cirros");
    assert_eq!(patched["os_distro"], "cirros");
    assert!(patched.get("hw_disk_bus").is_none());
    assert_eq!(patched["tags"], json!(["test", "small"]));
    assert_eq!(patched["protected"], true);
    assert_eq!(patched["status"], "active");

    // Wrong media type, read-only attribute.
    let resp = http
        .patch(cloud.url(&format!("/v2/images/{id}")))
        .json(&json!([{"op": "replace", "path": "/name", "value": "x"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let resp = http
        .patch(cloud.url(&format!("/v2/images/{id}")))
        .header("content-type", PATCH_TYPE)
        .json(&json!([{"op": "replace", "path": "/size", "value": 1}]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // Lists find it by name and by tag.
    let listed = json_of(
        http.get(cloud.url("/v2/images?name=cirros&tag=small"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(listed["images"].as_array().unwrap().len(), 1);
    assert_eq!(listed["images"][0]["id"], id.as_str());
    assert_eq!(listed["first"], "/v2/images");

    // Protected: 403; unprotected: 204, then 404.
    let resp = http
        .delete(cloud.url(&format!("/v2/images/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = http
        .patch(cloud.url(&format!("/v2/images/{id}")))
        .header("content-type", PATCH_TYPE)
        .json(&json!([{"op": "replace", "path": "/protected", "value": false}]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = http
        .delete(cloud.url(&format!("/v2/images/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = http
        .get(cloud.url(&format!("/v2/images/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

/// Private images stay in their project; public ones are seen everywhere; only admins
/// publish.
#[tokio::test]
async fn visibility_between_projects() {
    let cloud = cloud().await;
    let alice = client_with_token(
        &cloud
            .api
            .user_token("alice", "project-a", Role::Member)
            .await,
    );
    let bob = client_with_token(&cloud.api.user_token("bob", "project-b", Role::Member).await);
    let admin = cloud.api.client();

    // Glance's default visibility is `shared`: private until members are added.
    let private = json_of(
        create(
            &alice,
            &cloud.url("/v2/images"),
            json!({"name": "secret", "disk_format": "raw"}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(private["visibility"], "shared");
    assert_eq!(private["owner"], "project-a");
    let private_id = private["id"].as_str().unwrap();

    let resp = create(
        &alice,
        &cloud.url("/v2/images"),
        json!({"name": "pub", "visibility": "public"}),
    )
    .await;
    assert_eq!(resp.status(), 403, "only admins publish");
    let resp = alice
        .patch(cloud.url(&format!("/v2/images/{private_id}")))
        .header("content-type", PATCH_TYPE)
        .json(&json!([{"op": "replace", "path": "/visibility", "value": "public"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "nor by an update");

    let public = json_of(
        create(
            &admin,
            &cloud.url("/v2/images"),
            json!({"name": "shared-os", "visibility": "public"}),
        )
        .await,
        201,
    )
    .await;
    let public_id = public["id"].as_str().unwrap();

    // Bob: the private image does not exist for him; the public one does.
    for path in [
        format!("/v2/images/{private_id}"),
        format!("/v2/images/{private_id}/file"),
    ] {
        let resp = bob.get(cloud.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
    let resp = bob
        .delete(cloud.url(&format!("/v2/images/{private_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = bob
        .get(cloud.url(&format!("/v2/images/{public_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = bob
        .delete(cloud.url(&format!("/v2/images/{public_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "visible but not his");

    let ids = |body: Value| -> Vec<String> {
        body["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    let bobs = ids(json_of(bob.get(cloud.url("/v2/images")).send().await.unwrap(), 200).await);
    assert_eq!(bobs, [public_id]);
    let mut alices = ids(json_of(
        alice.get(cloud.url("/v2/images")).send().await.unwrap(),
        200,
    )
    .await);
    alices.sort();
    let mut expected = vec![private_id.to_string(), public_id.to_string()];
    expected.sort();
    assert_eq!(alices, expected);
}

#[tokio::test]
async fn pagination_follows_next_links() {
    let cloud = cloud().await;
    let http = cloud.api.client();
    let mut made = Vec::new();
    for n in 0..5 {
        let body = json_of(
            create(
                &http,
                &cloud.url("/v2/images"),
                json!({"name": format!("img-{n}")}),
            )
            .await,
            201,
        )
        .await;
        made.push(body["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut next = Some("/v2/images?limit=2".to_string());
    let mut pages = 0;
    while let Some(path) = next {
        let body = json_of(http.get(cloud.url(&path)).send().await.unwrap(), 200).await;
        assert!(body["images"].as_array().unwrap().len() <= 2);
        seen.extend(
            body["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string()),
        );
        next = body["next"].as_str().map(str::to_string);
        pages += 1;
        assert!(pages < 10);
    }
    assert_eq!(pages, 3);
    seen.sort();
    made.sort();
    assert_eq!(seen, made);
}

#[tokio::test]
async fn schema_describes_the_image_document() {
    let cloud = cloud().await;
    let body = json_of(
        cloud
            .api
            .client()
            .get(cloud.url("/v2/schemas/image"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(body["name"], "image");
    for field in [
        "id",
        "name",
        "status",
        "visibility",
        "disk_format",
        "os_hash_value",
    ] {
        assert!(body["properties"][field].is_object(), "{field}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
