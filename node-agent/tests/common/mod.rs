//! Shared harness of the node agent tests: the embedded store in memory, the API with a blob
//! directory, image uploads, and a node agent running in-process.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cirrus_api::blobs::BlobStore;
use cirrus_client::Api;
use cirrus_crds::kinds::image::{ContainerFormat, DiskFormat};
use cirrus_crds::{Flavor, FlavorSpec, Image, ImageSpec, Server, ServerSpec};
use cirrus_node_agent::agent::{self, AgentConfig, Handle};
use cirrus_node_agent::hypervisor::Hypervisor;
// Not every test binary that includes this module uses both.
#[allow(unused_imports)]
pub use cirrus_test_utils::{eventually, meta};

pub const PROJECT: &str = "demo";

/// The shared harness (API with a blob directory, admin client, background tasks) and the
/// node agent a test runs in-process.
pub struct Harness {
    base: cirrus_test_utils::Harness,
    pub blob_dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    agent: Option<tokio::task::JoinHandle<()>>,
}

impl std::ops::Deref for Harness {
    type Target = cirrus_test_utils::Harness;
    fn deref(&self) -> &Self::Target {
        &self.base
    }
}

impl std::ops::DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.base
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(a) = &self.agent {
            a.abort();
        }
    }
}

pub async fn harness() -> Harness {
    let blob_dir = tempfile::tempdir().unwrap();
    let blobs = Arc::new(BlobStore::open(blob_dir.path()).unwrap());
    Harness {
        base: cirrus_test_utils::Harness::start_with(|state| state.blobs = Some(blobs)).await,
        blob_dir,
        stop: None,
        agent: None,
    }
}

impl Harness {
    pub fn servers(&self) -> Api<Server> {
        Api::in_project(self.client.clone(), PROJECT)
    }

    pub async fn flavor(&self, name: &str, vcpus: u32, ram: u64, disk: u64) {
        Api::<Flavor>::all(self.client.clone())
            .create(&Flavor::new(
                meta(name),
                FlavorSpec {
                    vcpus,
                    ram,
                    disk,
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    }

    /// Creates an image and uploads `data` as its file.
    pub async fn image(
        &self,
        name: &str,
        format: DiskFormat,
        properties: &[(&str, &str)],
        data: Vec<u8>,
    ) -> Image {
        let container = match format {
            DiskFormat::Aki => ContainerFormat::Aki,
            DiskFormat::Ari => ContainerFormat::Ari,
            _ => ContainerFormat::Bare,
        };
        let spec = ImageSpec {
            disk_format: format,
            container_format: container,
            properties: properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let api = Api::<Image>::in_project(self.client.clone(), PROJECT);
        api.create(&Image::new(meta(name), spec)).await.unwrap();
        let url = format!(
            "{}/apis/cirrus.dev/v1/projects/{PROJECT}/images/{name}/file",
            self.client.base_url
        );
        let (request, _) = self
            .client
            .request(reqwest::Method::PUT, &url)
            .await
            .unwrap();
        let resp = request
            .header("Content-Type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .unwrap();
        let code = resp.status();
        assert!(
            code.is_success(),
            "upload {name}: {code} {}",
            resp.text().await.unwrap_or_default()
        );
        api.get(name).await.unwrap()
    }

    /// Uploads the guest as three images: `<prefix>-kernel` (aki), `<prefix>-ramdisk` (ari)
    /// and `<prefix>` (qcow2 root naming them).
    pub async fn guest_images(
        &self,
        prefix: &str,
        kernel: &Path,
        initrd: &Path,
        root: &Path,
        cmdline: &str,
    ) {
        let k = format!("{prefix}-kernel");
        let r = format!("{prefix}-ramdisk");
        self.image(&k, DiskFormat::Aki, &[], std::fs::read(kernel).unwrap())
            .await;
        self.image(&r, DiskFormat::Ari, &[], std::fs::read(initrd).unwrap())
            .await;
        self.image(
            prefix,
            DiskFormat::Qcow2,
            &[
                ("kernel_id", &k),
                ("ramdisk_id", &r),
                ("os_command_line", cmdline),
            ],
            std::fs::read(root).unwrap(),
        )
        .await;
    }

    pub async fn server(&self, name: &str, flavor: &str, image: &str, node: &str) -> Server {
        let spec = ServerSpec {
            flavor: flavor.into(),
            image: Some(image.into()),
            node_name: Some(node.into()),
            ..Default::default()
        };
        self.servers()
            .create(&Server::new(meta(name), spec))
            .await
            .unwrap()
    }

    /// Starts a node agent; returns its server context once it is running.
    pub async fn start_agent(&mut self, mut config: AgentConfig) -> Handle {
        config.api_url = self.client.base_url.clone();
        config.auth = self.client.auth.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ctx_tx, ctx_rx) = tokio::sync::oneshot::channel();
        let agent = tokio::spawn(async move {
            agent::run_with_handle(
                config,
                async move {
                    let _ = stop_rx.await;
                },
                move |ctx| {
                    let _ = ctx_tx.send(ctx);
                },
            )
            .await
            .unwrap();
        });
        self.stop = Some(stop_tx);
        self.agent = Some(agent);
        tokio::time::timeout(Duration::from_secs(20), ctx_rx)
            .await
            .expect("agent started")
            .expect("agent context")
    }

    /// Stops the agent and waits for it.
    pub async fn stop_agent(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(agent) = self.agent.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), agent).await;
        }
    }
}

pub fn agent_config(node: &str, state_dir: &Path, driver: Arc<dyn Hypervisor>) -> AgentConfig {
    AgentConfig::new(node, "", state_dir, driver)
}

/// A small qcow2 file made with qemu-img.
pub fn qcow2_file(dir: &Path, size: &str) -> std::path::PathBuf {
    let path = dir.join("root.qcow2");
    let st = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg(size)
        .status()
        .expect("qemu-img");
    assert!(st.success());
    path
}

/// The workspace's root directory (for `hack/` and `target/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The test guest (`$CIRRUS_GUEST_DIR`, else `target/guest`), built by
/// `hack/build-guest.sh` (idempotent: nothing is done when it is up to date).
pub fn test_guest() -> PathBuf {
    let dir = std::env::var_os("CIRRUS_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/guest"));
    let out = Command::new(workspace_root().join("hack/build-guest.sh"))
        .arg(&dir)
        .output()
        .expect("run hack/build-guest.sh");
    assert!(
        out.status.success(),
        "hack/build-guest.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}
