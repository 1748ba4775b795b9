//! Issue 11 ("image format switch → host files in a tenant's disk"), upload side, with the
//! real `qemu-img`: a qcow2 whose backing file is a secret host file is refused whatever it is
//! declared as — `raw` (a format mismatch, seen by the API's own header check although
//! `qemu-img info -f raw` accepts any bytes), `qcow2` (the backing file), or another container
//! format — with a 400 naming `spec.diskFormat` and the reason; the image stays `queued`,
//! nothing is stored, and the secret is never served.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cirrus_api::blobs::BlobStore;
use cirrus_test_utils::TestApi;
use serde_json::{Value, json};

const V1: &str = "/apis/cirrus.dev/v1";
const PROJECT: &str = "demo";

struct Harness {
    base: String,
    http: reqwest::Client,
    blob_dir: tempfile::TempDir,
    _api: TestApi,
}

async fn harness() -> Harness {
    let blob_dir = tempfile::tempdir().unwrap();
    let blobs = Arc::new(BlobStore::open(blob_dir.path()).unwrap());
    let api = TestApi::start_with(|state| state.blobs = Some(blobs)).await;
    Harness {
        base: api.base_url.clone(),
        http: api.client(),
        blob_dir,
        _api: api,
    }
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{V1}/projects/{PROJECT}{path}", self.base)
    }

    async fn create_image(&self, name: &str, disk_format: &str) {
        let resp = self
            .http
            .post(self.url("/images"))
            .json(&json!({
                "apiVersion": "cirrus.dev/v1", "kind": "Image",
                "metadata": {"name": name},
                "spec": {"diskFormat": disk_format, "containerFormat": "bare"}
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }

    async fn image(&self, name: &str) -> Value {
        let resp = self
            .http
            .get(self.url(&format!("/images/{name}")))
            .send()
            .await
            .unwrap();
        resp.json().await.unwrap()
    }

    async fn upload(&self, name: &str, path: &Path) -> (u16, Value) {
        let resp = self
            .http
            .put(self.url(&format!("/images/{name}/file")))
            .header("Content-Type", "application/octet-stream")
            .body(std::fs::read(path).unwrap())
            .send()
            .await
            .unwrap();
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    }

    fn stored_blobs(&self) -> Vec<Vec<u8>> {
        std::fs::read_dir(self.blob_dir.path().join("sha256"))
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect()
    }
}

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img is needed: apt-get install qemu-utils (hack/install-deps.sh)");
    assert!(out.status.success(), "qemu-img {args:?}: {out:?}");
}

fn causes(status: &Value) -> Vec<String> {
    status["details"]["causes"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| c["field"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_qcow2_backed_by_a_host_secret_is_refused_whatever_it_is_declared() {
    let h = harness().await;
    let work = tempfile::tempdir().unwrap();
    let secret = work.path().join("token.key");
    let marker = b"CIRRUS-API-HOST-SECRET".repeat(32);
    std::fs::write(&secret, &marker).unwrap();
    let evil = work.path().join("evil.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "raw",
        "-b",
        secret.to_str().unwrap(),
        evil.to_str().unwrap(),
        "1M",
    ]);

    for (name, declared, reason) in [
        ("as-raw", "raw", "the data is a qcow2 image, not raw"),
        ("as-qcow2", "qcow2", "backing file"),
        ("as-iso", "iso", "the data is a qcow2 image, not iso"),
        ("as-ami", "ami", "the data is a qcow2 image, not ami"),
        ("as-vmdk", "vmdk", "the data is a qcow2 image, not vmdk"),
        ("as-kernel", "aki", "the data is a qcow2 image, not aki"),
    ] {
        h.create_image(name, declared).await;
        let (code, status) = h.upload(name, &evil).await;
        assert_eq!(code, 400, "{declared}: {status}");
        assert_eq!(status["reason"], "Invalid", "{status}");
        assert_eq!(causes(&status), ["spec.diskFormat"], "{status}");
        let message = status["message"].as_str().unwrap();
        assert!(message.contains(reason), "{declared}: {message}");
        let image = h.image(name).await;
        assert_eq!(image["status"]["phase"], "queued", "{image}");
        assert_eq!(image["status"]["conditions"][0]["reason"], "UploadRefused");
        assert!(image["status"]["osHashValue"].is_null());
    }
    assert!(h.stored_blobs().is_empty(), "nothing is stored");

    // The same image upload works once it is what it says: a flattened copy declared qcow2
    // and raw bytes declared raw (the secret's bytes as data are just data).
    let flat = work.path().join("flat.qcow2");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        secret.to_str().unwrap(),
        flat.to_str().unwrap(),
    ]);
    h.create_image("flat", "qcow2").await;
    let (code, image) = h.upload("flat", &flat).await;
    assert_eq!(code, 200, "{image}");
    h.create_image("plain", "raw").await;
    let (code, image) = h.upload("plain", &secret).await;
    assert_eq!(code, 200, "{image}");
    assert_eq!(h.stored_blobs().len(), 2);
}

#[tokio::test]
async fn other_container_formats_declared_raw_are_refused() {
    let h = harness().await;
    let work = tempfile::tempdir().unwrap();
    for (format, qemu_name) in [
        ("vmdk", "vmdk"),
        ("vhdx", "vhdx"),
        ("vhd", "vpc"),
        ("vdi", "vdi"),
    ] {
        let file = work.path().join(format!("disk.{format}"));
        qemu_img(&[
            "create",
            "-q",
            "-f",
            qemu_name,
            file.to_str().unwrap(),
            "1M",
        ]);
        let name = format!("{format}-as-raw");
        h.create_image(&name, "raw").await;
        let (code, status) = h.upload(&name, &file).await;
        assert_eq!(code, 400, "{format}: {status}");
        assert_eq!(causes(&status), ["spec.diskFormat"]);
        let message = status["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("a {qemu_name} image, not raw")),
            "{message}"
        );
        // Declared as what it is, it is accepted.
        let name = format!("{format}-as-{format}");
        h.create_image(&name, format).await;
        let (code, image) = h.upload(&name, &file).await;
        assert_eq!(code, 200, "{format}: {image}");
    }
    // A vmdk text descriptor naming a host file as its extent, declared raw.
    let descriptor = work.path().join("descriptor.vmdk");
    std::fs::write(
        &descriptor,
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
         createType=\"monolithicFlat\"\n\nRW 2048 FLAT \"/etc/shadow\" 0\n",
    )
    .unwrap();
    h.create_image("descriptor", "raw").await;
    let (code, status) = h.upload("descriptor", &descriptor).await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("a vmdk image, not raw"),
        "{status}"
    );
}
