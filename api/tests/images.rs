//! Image data upload and download (`PUT`/`GET .../images/{name}/file`) over HTTP, against the
//! embedded store in memory, a temporary blob directory and the real `qemu-img`.
//!
//! Why this file is long: twenty cases of one upload/download protocol sharing one fixture (a
//! blob store and real qcow2/raw/iso files made with qemu-img).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cirrus_api::blobs::BlobStore;
use cirrus_test_utils::TestApi;
use futures::StreamExt;
use md5::Md5;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const V1: &str = "/apis/cirrus.dev/v1";
const PROJECT: &str = "demo";

struct Harness {
    base: String,
    http: reqwest::Client,
    blob_dir: tempfile::TempDir,
    work: tempfile::TempDir,
    api: TestApi,
}

async fn harness() -> Harness {
    harness_with(|_| {}).await
}

/// A harness whose blob store is adjusted by `configure` (`None` store when it sets nothing
/// is not possible here: see `no_blob_dir_is_503`).
async fn harness_with(configure: impl FnOnce(&mut BlobStore)) -> Harness {
    let blob_dir = tempfile::tempdir().unwrap();
    let mut blobs = BlobStore::open(blob_dir.path()).unwrap();
    configure(&mut blobs);
    let api = TestApi::start_with(|state| state.blobs = Some(Arc::new(blobs))).await;
    Harness {
        base: api.base_url.clone(),
        http: api.client(),
        blob_dir,
        work: tempfile::tempdir().unwrap(),
        api,
    }
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{V1}/projects/{PROJECT}{path}", self.base)
    }

    fn file_url(&self, image: &str) -> String {
        self.url(&format!("/images/{image}/file"))
    }

    async fn create_image(&self, name: &str, disk_format: &str) -> Value {
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
        resp.json().await.unwrap()
    }

    async fn image(&self, name: &str) -> Value {
        let resp = self
            .http
            .get(self.url(&format!("/images/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    async fn upload(&self, name: &str, data: impl Into<reqwest::Body>) -> (u16, Value) {
        let resp = self
            .http
            .put(self.file_url(name))
            .header("Content-Type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .unwrap();
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    }

    async fn upload_file(&self, name: &str, path: &Path) -> (u16, Value) {
        self.upload(name, std::fs::read(path).unwrap()).await
    }

    /// Downloads streaming; returns status, headers, and the data.
    async fn download(&self, name: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let resp = self.http.get(self.file_url(name)).send().await.unwrap();
        let code = resp.status().as_u16();
        let headers = resp.headers().clone();
        (code, headers, resp.bytes().await.unwrap().to_vec())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    fn tmp_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.blob_dir.path().join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn blobs(&self) -> usize {
        std::fs::read_dir(self.blob_dir.path().join("sha256"))
            .unwrap()
            .count()
    }

    async fn wait_phase(&self, name: &str, phase: &str) -> Value {
        for _ in 0..200 {
            let image = self.image(name).await;
            if image["status"]["phase"] == phase {
                return image;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "image {name} never reached {phase}: {}",
            self.image(name).await
        );
    }
}

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img");
    assert!(out.status.success(), "qemu-img {args:?}: {out:?}");
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn md5_hex(data: &[u8]) -> String {
    hex(&Md5::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
async fn qcow2_round_trip_is_byte_identical() {
    let h = harness().await;
    let file = h.path("disk.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", file.to_str().unwrap(), "16M"]);
    let data = std::fs::read(&file).unwrap();
    h.create_image("disk", "qcow2").await;

    let (code, _, body) = h.download("disk").await;
    assert_eq!(code, 204, "no data yet: {body:?}");

    let (code, image) = h.upload_file("disk", &file).await;
    assert_eq!(code, 200, "{image}");
    let status = &image["status"];
    assert_eq!(status["phase"], "active");
    assert_eq!(status["size"], data.len());
    assert_eq!(status["virtualSize"], 16 * 1024 * 1024);
    assert_eq!(status["checksum"], md5_hex(&data));
    assert_eq!(status["osHashAlgo"], "sha256");
    assert_eq!(status["osHashValue"], sha256_hex(&data));
    assert_eq!(status["location"], format!("sha256/{}", sha256_hex(&data)));
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(h.image("disk").await["status"], *status, "stored");

    let (code, headers, got) = h.download("disk").await;
    assert_eq!(code, 200);
    assert_eq!(got, data, "byte-identical");
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["content-length"], data.len().to_string().as_str());
    assert_eq!(headers["x-checksum-sha256"], sha256_hex(&got).as_str());
    assert_eq!(headers["content-md5"], md5_hex(&got).as_str());
    assert!(h.tmp_entries().is_empty(), "{:?}", h.tmp_entries());

    // The generic object paths next to /file still route.
    let resp = h
        .http
        .get(h.url("/images/disk/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let head = h.http.head(h.file_url("disk")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        data.len().to_string().as_str()
    );
}

#[tokio::test]
async fn raw_is_accepted_and_qcow2_declared_raw_is_refused() {
    let h = harness().await;
    let raw: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    h.create_image("raw", "raw").await;
    let (code, image) = h.upload("raw", raw.clone()).await;
    assert_eq!(code, 200, "{image}");
    assert_eq!(image["status"]["virtualSize"], raw.len());
    assert_eq!(h.download("raw").await.2, raw);

    // qcow2 bytes declared raw are a format mismatch (issue 11), not a raw disk.
    let file = h.path("q.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", file.to_str().unwrap(), "1M"]);
    h.create_image("qraw", "raw").await;
    let (code, status) = h.upload_file("qraw", &file).await;
    assert_eq!(code, 400, "{status}");
    assert_eq!(causes(&status), ["spec.diskFormat"]);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("qcow2 image, not raw"),
        "{status}"
    );
    assert_eq!(h.image("qraw").await["status"]["phase"], "queued");
}

#[tokio::test]
async fn raw_declared_qcow2_is_invalid_and_stays_queued() {
    let h = harness().await;
    h.create_image("fake", "qcow2").await;
    let (code, status) = h.upload("fake", vec![0u8; 65536]).await;
    assert_eq!(code, 400, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(causes(&status), ["spec.diskFormat"]);
    assert!(
        status["message"].as_str().unwrap().contains("qcow2"),
        "{status}"
    );
    let image = h.image("fake").await;
    assert_eq!(image["status"]["phase"], "queued");
    assert_eq!(image["status"]["conditions"][0]["reason"], "UploadRefused");
    assert!(image["status"]["osHashValue"].is_null());
    assert!(h.tmp_entries().is_empty(), "{:?}", h.tmp_entries());
    assert_eq!(h.blobs(), 0, "refused data is not stored");
    assert_eq!(h.download("fake").await.0, 204);
}

#[tokio::test]
async fn backing_file_and_external_data_file_are_refused() {
    let h = harness().await;
    let base = h.path("base.qcow2");
    let overlay = h.path("overlay.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", base.to_str().unwrap(), "1M"]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "raw",
        "-b",
        "/etc/passwd",
        overlay.to_str().unwrap(),
        "1M",
    ]);
    h.create_image("evil", "qcow2").await;
    let (code, status) = h.upload_file("evil", &overlay).await;
    assert_eq!(code, 400, "{status}");
    assert_eq!(causes(&status), ["spec.diskFormat"]);
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("backing file") && message.contains("/etc/passwd"),
        "{message}"
    );

    let with_data_file = h.path("ext.qcow2");
    let data_file = h.path("ext.raw");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={}", data_file.display()),
        with_data_file.to_str().unwrap(),
        "1M",
    ]);
    let (code, status) = h.upload_file("evil", &with_data_file).await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("external data file"),
        "{status}"
    );
    assert_eq!(h.image("evil").await["status"]["phase"], "queued");
    assert!(h.tmp_entries().is_empty());
    // A good upload after refusals still works.
    let (code, image) = h.upload_file("evil", &base).await;
    assert_eq!(code, 200, "{image}");
}

#[tokio::test]
async fn data_is_immutable_once_active() {
    let h = harness().await;
    h.create_image("once", "raw").await;
    assert_eq!(h.upload("once", b"first".to_vec()).await.0, 200);
    let (code, status) = h.upload("once", b"second".to_vec()).await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");
    assert!(
        status["message"].as_str().unwrap().contains("immutable"),
        "{status}"
    );
    assert_eq!(h.download("once").await.2, b"first");
}

#[tokio::test]
async fn missing_image_is_404() {
    let h = harness().await;
    let (code, status) = h.upload("nope", b"x".to_vec()).await;
    assert_eq!(code, 404, "{status}");
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(h.download("nope").await.0, 404);
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let h = harness().await;
    h.create_image("img", "raw").await;
    let resp = h
        .http
        .put(h.file_url("img"))
        .json(&json!({"not": "data"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    assert_eq!(h.image("img").await["status"]["phase"], Value::Null);
}

#[tokio::test]
async fn iso_needs_the_iso9660_signature_and_kernels_are_not_inspected() {
    let h = harness().await;
    h.create_image("cd", "iso").await;
    let mut iso = vec![0u8; 64 * 1024];
    let (code, status) = h.upload("cd", iso.clone()).await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"].as_str().unwrap().contains("CD001"),
        "{status}"
    );
    iso[32769..32774].copy_from_slice(b"CD001");
    let (code, image) = h.upload("cd", iso).await;
    assert_eq!(code, 200, "{image}");

    h.create_image("kernel", "aki").await;
    let (code, image) = h.upload("kernel", b"not a disk at all".to_vec()).await;
    assert_eq!(code, 200, "{image}");
    assert_eq!(image["status"]["virtualSize"], 17);
}

#[tokio::test]
async fn identical_data_shares_one_blob() {
    let h = harness().await;
    h.create_image("a", "raw").await;
    h.create_image("b", "raw").await;
    let data = vec![42u8; 100_000];
    assert_eq!(h.upload("a", data.clone()).await.0, 200);
    assert_eq!(h.upload("b", data.clone()).await.0, 200);
    assert_eq!(h.blobs(), 1);
    assert_eq!(h.download("b").await.2, data);
    assert_eq!(
        h.image("a").await["status"]["location"],
        h.image("b").await["status"]["location"]
    );
}

#[tokio::test]
async fn declared_checksum_mismatch_kills_the_image() {
    let h = harness().await;
    h.create_image("sum", "raw").await;
    let resp = h
        .http
        .put(h.file_url("sum"))
        .header("Content-Type", "application/octet-stream")
        .header("X-Checksum-Sha256", sha256_hex(b"other"))
        .body(b"data".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let image = h.image("sum").await;
    assert_eq!(image["status"]["phase"], "killed");
    assert_eq!(image["status"]["conditions"][0]["reason"], "DataCorrupt");
    assert_eq!(h.upload("sum", b"data".to_vec()).await.0, 409);
    assert!(h.tmp_entries().is_empty());

    // A matching declared checksum (RFC 1864 base64 Content-MD5) is accepted.
    h.create_image("sum2", "raw").await;
    let resp = h
        .http
        .put(h.file_url("sum2"))
        .header("Content-Type", "application/octet-stream")
        .header("X-Checksum-Sha256", sha256_hex(b"data"))
        .header("Content-MD5", md5_hex(b"data"))
        .body(b"data".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn over_the_size_limit_is_413_and_requeued() {
    let h = harness_with(|b| b.max_upload_bytes = 1000).await;
    h.create_image("big", "raw").await;
    let (code, status) = h.upload("big", vec![1u8; 1001]).await;
    assert_eq!(code, 413, "{status}");
    // Without Content-Length (a stream), the limit is enforced while reading.
    let stream =
        futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 400]))));
    let (code, status) = h.upload("big", reqwest::Body::wrap_stream(stream)).await;
    assert_eq!(code, 413, "{status}");
    h.wait_phase("big", "queued").await;
    assert!(h.tmp_entries().is_empty());
    assert_eq!(h.upload("big", vec![1u8; 1000]).await.0, 200);
}

/// Sets `quota` of the test project to `limit` (creating the project if needed).
async fn set_quota(h: &Harness, quota: &str, limit: i64) {
    let projects = cirrus_crds::kind_by_plural("projects").unwrap();
    let project = json!({
        "apiVersion": "cirrus.dev/v1", "kind": "Project",
        "metadata": {"name": PROJECT}, "spec": {"quota": {quota: limit}},
    });
    if h.api.store.get(projects, None, PROJECT).await.is_ok() {
        let patch = json!({"spec": {"quota": {quota: limit}}});
        h.api
            .store
            .patch(
                projects,
                None,
                PROJECT,
                &patch,
                cirrus_store::objects::Part::Main,
                false,
            )
            .await
            .unwrap();
    } else {
        h.api
            .store
            .create(projects, None, project, false)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn image_size_quota_counts_uploaded_mib() {
    let h = harness().await;
    set_quota(&h, "image_size_total", 1).await;
    h.create_image("one", "raw").await;
    // Over the quota with Content-Length: refused before anything is read.
    let (code, status) = h.upload("one", vec![1u8; (1 << 20) + 1]).await;
    assert_eq!(code, 413, "{status}");
    assert_eq!(status["reason"], "QuotaExceeded");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("image_size_total"),
        "{status}"
    );
    assert!(
        !status["message"].as_str().unwrap().contains("  "),
        "one sentence, no runs of spaces: {status}"
    );
    // And streamed, without Content-Length: refused while reading.
    let stream = futures::stream::iter(
        (0..3).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 512 * 1024]))),
    );
    let (code, status) = h.upload("one", reqwest::Body::wrap_stream(stream)).await;
    assert_eq!(code, 413, "{status}");
    h.wait_phase("one", "queued").await;
    assert!(h.tmp_entries().is_empty(), "nothing half-written");
    // Within it: accepted; then the MiB is used (rounded up) and a second image's data is not.
    assert_eq!(h.upload("one", vec![1u8; 1000]).await.0, 200);
    h.create_image("two", "raw").await;
    let (code, status) = h.upload("two", vec![2u8; 1000]).await;
    assert_eq!(code, 413, "{status}");
    set_quota(&h, "image_size_total", -1).await;
    assert_eq!(h.upload("two", vec![2u8; 1000]).await.0, 200);
}

#[tokio::test]
async fn image_count_quota_refuses_the_next_image() {
    let h = harness().await;
    set_quota(&h, "image_count_total", 1).await;
    h.create_image("first", "raw").await;
    let resp = h
        .http
        .post(h.url("/images"))
        .json(&json!({
            "apiVersion": "cirrus.dev/v1", "kind": "Image",
            "metadata": {"name": "second"},
            "spec": {"diskFormat": "raw", "containerFormat": "bare"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let status: Value = resp.json().await.unwrap();
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("image_count_total"),
        "{status}"
    );
}

#[tokio::test]
async fn uploads_keep_the_reserved_space_free() {
    let h = harness_with(|b| b.reserved_bytes = u64::MAX / 2).await;
    h.create_image("full", "raw").await;
    let (code, status) = h.upload("full", vec![1u8; 1000]).await;
    assert_eq!(code, 507, "{status}");
    assert_eq!(status["reason"], "InsufficientStorage");
    assert!(
        !status["message"].as_str().unwrap().contains("  "),
        "one sentence, no runs of spaces: {status}"
    );
    assert!(h.image("full").await["status"]["phase"] != "active");
    assert!(h.tmp_entries().is_empty());
    assert_eq!(h.blobs(), 0);
}

#[tokio::test]
async fn deleted_images_blobs_are_collected_shared_and_live_ones_stay() {
    let h = harness().await;
    for (name, data) in [("gone", 1u8), ("live", 2u8), ("twin", 2u8)] {
        h.create_image(name, "raw").await;
        assert_eq!(h.upload(name, vec![data; 1000]).await.0, 200);
    }
    assert_eq!(h.blobs(), 2, "live and twin share one blob");
    for name in ["gone", "twin"] {
        let resp = h
            .http
            .delete(h.url(&format!("/images/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let blobs = Arc::new(BlobStore::open(h.blob_dir.path()).unwrap());
    let store = h.api.store.clone();
    // Young blobs are kept whatever references them.
    let done = cirrus_api::blob_gc::collect_once(&store, &blobs, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!((done.removed, h.blobs()), (0, 2));
    let done = cirrus_api::blob_gc::collect_once(&store, &blobs, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(done.removed, 1, "{done:?}");
    assert_eq!(done.freed_bytes, 1000);
    assert_eq!(h.blobs(), 1);
    let (code, _, data) = h.download("live").await;
    assert_eq!(
        (code, data),
        (200, vec![2u8; 1000]),
        "the shared blob stays"
    );
}

#[tokio::test]
async fn missing_qemu_img_is_503() {
    let h = harness_with(|b| b.inspector.qemu_img = "/nonexistent/qemu-img".into()).await;
    h.create_image("q", "qcow2").await;
    let (code, status) = h.upload("q", b"data".to_vec()).await;
    assert_eq!(code, 503, "{status}");
    assert_eq!(status["reason"], "ServiceUnavailable");
    assert!(
        status["message"].as_str().unwrap().contains("qemu-img"),
        "{status}"
    );
    assert_eq!(h.image("q").await["status"]["phase"], Value::Null);
    // Formats stored without inspection don't need it.
    h.create_image("k", "aki").await;
    assert_eq!(h.upload("k", b"kernel".to_vec()).await.0, 200);
}

#[tokio::test]
async fn no_blob_dir_is_503() {
    let api = TestApi::start().await;
    let resp = api
        .client()
        .get(format!("{}{V1}/projects/p/images/x/file", api.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
}

/// A body fed through a channel, so a test decides when it ends (or fails).
fn channel_body() -> (
    tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    reqwest::Body,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let stream = tokio_stream_from(rx);
    (tx, reqwest::Body::wrap_stream(stream))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    async_stream::stream! {
        while let Some(item) = rx.recv().await {
            yield item;
        }
    }
}

#[tokio::test]
async fn concurrent_second_upload_is_409() {
    let h = Arc::new(harness().await);
    h.create_image("busy", "raw").await;
    let (tx, body) = channel_body();
    let first = {
        let h = h.clone();
        tokio::spawn(async move { h.upload("busy", body).await })
    };
    tx.send(Ok(Bytes::from(vec![7u8; 4096]))).await.unwrap();
    h.wait_phase("busy", "saving").await;
    let (code, status) = h.upload("busy", b"other".to_vec()).await;
    assert_eq!(code, 409, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("being uploaded"),
        "{status}"
    );
    tx.send(Ok(Bytes::from(vec![7u8; 4096]))).await.unwrap();
    drop(tx);
    let (code, image) = first.await.unwrap();
    assert_eq!(code, 200, "{image}");
    assert_eq!(image["status"]["size"], 8192);
}

#[tokio::test]
async fn aborted_upload_leaves_no_temp_file_and_requeues() {
    let h = Arc::new(harness().await);
    h.create_image("abort", "raw").await;
    let (tx, body) = channel_body();
    let upload = {
        let h = h.clone();
        tokio::spawn(async move {
            h.http
                .put(h.file_url("abort"))
                .header("Content-Type", "application/octet-stream")
                .body(body)
                .send()
                .await
        })
    };
    tx.send(Ok(Bytes::from(vec![1u8; 100_000]))).await.unwrap();
    h.wait_phase("abort", "saving").await;
    assert_eq!(h.tmp_entries().len(), 2, "partial + lock while uploading");
    tx.send(Err(std::io::Error::other("client gave up")))
        .await
        .unwrap();
    assert!(
        upload.await.unwrap().is_err(),
        "the client sees its failure"
    );
    let image = h.wait_phase("abort", "queued").await;
    assert_eq!(image["status"]["conditions"][0]["reason"], "UploadFailed");
    for _ in 0..100 {
        if h.tmp_entries().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.tmp_entries().is_empty(), "{:?}", h.tmp_entries());
    assert_eq!(h.blobs(), 0);
    // And the image can take data again.
    assert_eq!(h.upload("abort", b"fine".to_vec()).await.0, 200);
}

/// Peak resident memory of this process, in KiB (VmHWM).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Runs the 64 MiB streaming test in a child process of its own (this test binary, filtered
/// to it), so the peak-RSS measurement sees no other test's allocations.
#[test]
fn large_upload_and_download_stream() {
    const CHILD: &str = "CIRRUS_IMAGES_RSS_CHILD";
    if std::env::var_os(CHILD).is_some() {
        return tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(large_upload_and_download_stream_body());
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "large_upload_and_download_stream",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("peak RSS grew by"),
        "the child ran the test: {text}"
    );
}

async fn large_upload_and_download_stream_body() {
    const SIZE: usize = 64 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    let h = harness().await;
    h.create_image("big", "raw").await;
    // Reset the peak (works where /proc/self/clear_refs is writable; else the bound is on
    // the whole process so far, still far below the data size plus a copy).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak_rss_kib();
    let pattern = |i: usize| Bytes::from(vec![(i % 251) as u8; CHUNK]);
    let mut expected = Sha256::new();
    for i in 0..SIZE / CHUNK {
        expected.update(pattern(i));
    }
    let expected = hex(&expected.finalize());
    let stream =
        futures::stream::iter((0..SIZE / CHUNK).map(move |i| Ok::<_, std::io::Error>(pattern(i))));
    let (code, image) = h.upload("big", reqwest::Body::wrap_stream(stream)).await;
    assert_eq!(code, 200, "{image}");
    assert_eq!(image["status"]["size"], SIZE);
    assert_eq!(image["status"]["osHashValue"], expected);

    let resp = h.http.get(h.file_url("big")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = Sha256::new();
    let mut len = 0usize;
    let mut chunks = resp.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.unwrap();
        len += chunk.len();
        got.update(&chunk);
    }
    assert_eq!(len, SIZE);
    assert_eq!(hex(&got.finalize()), expected);
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    eprintln!("peak RSS grew by {grown_mib} MiB");
    assert!(
        grown_mib < 40,
        "peak RSS grew by {grown_mib} MiB moving 64 MiB through the API: something buffers it"
    );
}
