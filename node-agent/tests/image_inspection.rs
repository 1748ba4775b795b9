//! The node agent's own image inspection (issue 11, "image format switch → host files in a
//! tenant's disk") with the real `qemu-img`: a qcow2 whose backing file is a secret host file
//! never becomes a disk on the node, whatever `spec.diskFormat` says — not a root disk, not a
//! volume (from the image, a clone, a snapshot), not a boot volume — and the server or
//! volume reports why. The secret's bytes are looked for in every file the agent made.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cirrus_client::Api;
use cirrus_crds::kinds::image::{ContainerFormat, DiskFormat};
use cirrus_crds::kinds::server::ServerPhase;
use cirrus_crds::kinds::volume::{VolumePhase, VolumeSource as VolumeSourceSpec, VolumeSourceType};
use cirrus_crds::{
    Condition, ConditionStatus, Image, ImageSpec, Server, ServerSpec, Volume, VolumeSpec,
};
use cirrus_node_agent::disks::{self, DiskError, InstancePaths, RootDisk};
use cirrus_node_agent::hypervisor::Hypervisor;
use cirrus_node_agent::hypervisor::fake::FakeHypervisor;
use cirrus_node_agent::image_inspect::{self, InspectError, Refusal};
use cirrus_node_agent::servers::ServerConfig;
use cirrus_node_agent::volumes::file::FileBackend;
use cirrus_node_agent::volumes::{
    EnsureOutcome, VolumeBackend, VolumeError, VolumeSource, VolumeSpec as BackendVolumeSpec,
};
use common::*;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const T: Duration = Duration::from_secs(20);
const MIB: u64 = 1 << 20;

fn qemu_img(args: &[&std::ffi::OsStr]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img is needed: apt-get install qemu-utils (hack/install-deps.sh)");
    assert!(out.status.success(), "qemu-img {args:?}: {out:?}");
}

/// A secret host file (think the token key, or `/etc/shadow`) and qcow2 images that read it.
struct Attack {
    dir: tempfile::TempDir,
    /// The secret's bytes: a marker no other file contains.
    marker: Vec<u8>,
    secret: PathBuf,
    /// `qemu-img create -f qcow2 -F raw -b <secret>`.
    backed: PathBuf,
    /// A qcow2 with an external data file.
    data_file: PathBuf,
    /// A plain, self-contained qcow2 (fine as qcow2, a mismatch as raw).
    clean: PathBuf,
}

impl Attack {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let marker = format!("CIRRUS-HOST-SECRET-{}", Uuid::new_v4()).into_bytes();
        let secret = dir.path().join("token.key");
        std::fs::write(&secret, marker.repeat(64)).unwrap();
        let backed = dir.path().join("backed.qcow2");
        qemu_img(&[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-F".as_ref(),
            "raw".as_ref(),
            "-b".as_ref(),
            secret.as_os_str(),
            backed.as_os_str(),
            "1M".as_ref(),
        ]);
        let data_file = dir.path().join("data-file.qcow2");
        let data = dir.path().join("data-file.raw");
        qemu_img(&[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-o".as_ref(),
            format!("data_file={}", data.display()).as_ref(),
            data_file.as_os_str(),
            "1M".as_ref(),
        ]);
        let clean = dir.path().join("clean.qcow2");
        qemu_img(&[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            clean.as_os_str(),
            "1M".as_ref(),
        ]);
        let me = Self {
            dir,
            marker,
            secret,
            backed,
            data_file,
            clean,
        };
        me.prove_the_attack_is_real();
        me
    }

    /// Opened as qcow2 without inspection, the image really hands out the secret: what every
    /// test below prevents.
    fn prove_the_attack_is_real(&self) {
        let out = self.dir.path().join("opened-as-qcow2.raw");
        qemu_img(&[
            "convert".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-O".as_ref(),
            "raw".as_ref(),
            self.backed.as_os_str(),
            out.as_os_str(),
        ]);
        assert!(
            contains(&std::fs::read(&out).unwrap(), &self.marker),
            "the test image must read the secret when opened as qcow2"
        );
        std::fs::remove_file(out).unwrap();
        assert!(
            !contains(&std::fs::read(&self.backed).unwrap(), &self.marker),
            "the image itself only names the secret"
        );
    }

    /// Every file under `root` (but the `planted` ones) that holds the secret's bytes, or
    /// shows them to a guest: qcow2 files are also read the way QEMU reads them (through their
    /// backing chain, `qemu-img convert -O raw`).
    fn leaks_under(&self, root: &Path, planted: &[&Path]) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                let md = std::fs::symlink_metadata(&path).unwrap();
                if md.is_dir() {
                    stack.push(path);
                    continue;
                }
                if !md.is_file() || path == self.secret || planted.contains(&path.as_path()) {
                    continue;
                }
                let bytes = std::fs::read(&path).unwrap_or_default();
                if contains(&bytes, &self.marker)
                    || (bytes.starts_with(b"QFI\xfb") && self.guest_sees_secret(&path))
                {
                    found.push(path);
                }
            }
        }
        found
    }

    /// Whether a guest given the qcow2 file `disk` would read the secret.
    fn guest_sees_secret(&self, disk: &Path) -> bool {
        let view = self.dir.path().join(format!("view-{}.raw", Uuid::new_v4()));
        let out = Command::new("qemu-img")
            .args(["convert", "-U", "-f", "qcow2", "-O", "raw"])
            .arg(disk)
            .arg(&view)
            .output()
            .expect("qemu-img");
        let seen = out.status.success()
            && contains(&std::fs::read(&view).unwrap_or_default(), &self.marker);
        let _ = std::fs::remove_file(&view);
        seen
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn refusal(e: &InspectError) -> &Refusal {
    match e {
        InspectError::Refused(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_inspector_refuses_the_real_files() {
    let a = Attack::new();
    let e = image_inspect::inspect(&a.backed, "raw").unwrap_err();
    assert!(
        matches!(
            refusal(&e),
            Refusal::Mismatch {
                detected: "qcow2",
                ..
            }
        ),
        "{e:?}"
    );
    let e = image_inspect::inspect(&a.backed, "qcow2").unwrap_err();
    assert!(
        matches!(refusal(&e), Refusal::BackingFile { backing, .. } if Path::new(backing) == a.secret),
        "{e:?}"
    );
    let e = image_inspect::inspect(&a.data_file, "qcow2").unwrap_err();
    assert!(matches!(refusal(&e), Refusal::DataFile { .. }), "{e:?}");
    let e = image_inspect::inspect(&a.clean, "raw").unwrap_err();
    assert!(matches!(refusal(&e), Refusal::Mismatch { .. }), "{e:?}");
    let e = image_inspect::inspect(&a.clean, "vmdk").unwrap_err();
    assert!(matches!(refusal(&e), Refusal::Mismatch { .. }), "{e:?}");
    let e = image_inspect::inspect(&a.clean, "iso").unwrap_err();
    assert!(
        matches!(refusal(&e), Refusal::UnknownFormat { .. }),
        "{e:?}"
    );
    // The control: self-contained images pass as what they are.
    let ok = image_inspect::inspect(&a.clean, "qcow2").unwrap();
    assert_eq!((ok.format.as_str(), ok.virtual_size), ("qcow2", MIB));
    let ok = image_inspect::inspect(&a.secret, "raw").unwrap();
    assert_eq!(ok.format, "raw");
    // Absent: no verdict (retried), not a refusal.
    let e = image_inspect::inspect(&a.dir.path().join("absent"), "raw").unwrap_err();
    assert!(matches!(e, InspectError::Io { .. }), "{e:?}");
}

#[tokio::test]
async fn no_root_disk_is_made_on_a_refused_base_whatever_the_spec_says() {
    let a = Attack::new();
    let state = tempfile::tempdir().unwrap();
    let cases = [
        (&a.backed, DiskFormat::Raw),
        (&a.backed, DiskFormat::Qcow2),
        (&a.backed, DiskFormat::Ami),
        (&a.backed, DiskFormat::Vmdk),
        (&a.backed, DiskFormat::Vhdx),
        (&a.data_file, DiskFormat::Qcow2),
        (&a.data_file, DiskFormat::Raw),
        (&a.clean, DiskFormat::Raw),
    ];
    for (base, format) in cases {
        let paths = InstancePaths::new(state.path(), Uuid::new_v4());
        let root = RootDisk {
            base: base.clone(),
            base_format: format,
            size_gib: 1,
            virtual_size: Some(MIB),
        };
        let e = disks::root_disk_ensure(&paths, &root)
            .await
            .expect_err("a refused base gets no disk");
        assert!(
            matches!(e, DiskError::ImageRefused { .. }) && e.is_permanent(),
            "{} as {format:?}: {e:?}",
            base.display()
        );
        assert!(!paths.disk.exists(), "no disk for {format:?}");
        assert!(!paths.dir.exists(), "nothing at all for {format:?}");
    }
    let leaks = a.leaks_under(state.path(), &[]);
    assert!(leaks.is_empty(), "{leaks:?}");
    // The control: the clean qcow2 declared qcow2 gets its disk.
    let paths = InstancePaths::new(state.path(), Uuid::new_v4());
    let root = RootDisk {
        base: a.clean.clone(),
        base_format: DiskFormat::Qcow2,
        size_gib: 1,
        virtual_size: None,
    };
    assert_eq!(
        disks::root_disk_ensure(&paths, &root).await.unwrap(),
        disks::DiskOutcome::Created
    );
}

fn image_source(path: &Path, format: &str) -> VolumeSource {
    VolumeSource::Image {
        path: path.to_path_buf(),
        format: format.into(),
    }
}

fn pool_files(pool: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(pool)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn file_volumes_are_never_made_from_refused_sources() {
    let a = Attack::new();
    let pool = tempfile::tempdir().unwrap();
    let backend = FileBackend::new(pool.path()).unwrap();
    for (path, format) in [
        (&a.backed, "raw"),
        (&a.backed, "qcow2"),
        (&a.data_file, "qcow2"),
        (&a.clean, "raw"),
    ] {
        let uid = Uuid::new_v4();
        let e = backend
            .volume_ensure(&BackendVolumeSpec {
                uid,
                size_bytes: 16 * MIB,
                source: image_source(path, format),
            })
            .expect_err("refused");
        assert!(
            matches!(e, VolumeError::SourceRefused { .. }) && e.is_permanent(),
            "{} as {format}: {e:?}",
            path.display()
        );
        assert_eq!(backend.volume_info(uid).unwrap(), None);
    }
    assert_eq!(
        pool_files(pool.path()),
        Vec::<String>::new(),
        "no file made"
    );

    // A volume made before the node inspected images: an overlay on the lying image. Nothing
    // reads through it any more — no domain, no clone, no snapshot.
    let old = Uuid::new_v4();
    let old_path = backend.volume_path(old);
    qemu_img(&[
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-F".as_ref(),
        "qcow2".as_ref(),
        "-b".as_ref(),
        a.backed.as_os_str(),
        old_path.as_os_str(),
        "16M".as_ref(),
    ]);
    let e = backend.volume_verify(old).unwrap_err();
    assert!(
        matches!(e, VolumeError::SourceRefused { .. }),
        "a volume reading the secret is refused to domains: {e:?}"
    );
    let clone = Uuid::new_v4();
    let e = backend
        .volume_ensure(&BackendVolumeSpec {
            uid: clone,
            size_bytes: 16 * MIB,
            source: VolumeSource::Volume { uid: old },
        })
        .unwrap_err();
    assert!(matches!(e, VolumeError::SourceRefused { .. }), "{e:?}");
    let snap = Uuid::new_v4();
    let e = backend.snapshot_ensure(old, snap).unwrap_err();
    assert!(matches!(e, VolumeError::SourceRefused { .. }), "{e:?}");
    assert_eq!(backend.snapshot_info(snap).unwrap(), None);
    assert_eq!(
        pool_files(pool.path()),
        vec![format!("vol-{old}.qcow2")],
        "no clone, no snapshot"
    );
    let leaks = a.leaks_under(pool.path(), &[&old_path]);
    assert!(leaks.is_empty(), "{leaks:?}");
    assert!(
        a.guest_sees_secret(&old_path),
        "the planted volume really shows the secret to a guest"
    );

    // The control: the same paths work for honest sources.
    let good = Uuid::new_v4();
    assert_eq!(
        backend
            .volume_ensure(&BackendVolumeSpec {
                uid: good,
                size_bytes: 16 * MIB,
                source: image_source(&a.clean, "qcow2"),
            })
            .unwrap(),
        EnsureOutcome::Created
    );
    backend.volume_verify(good).unwrap();
    backend.snapshot_ensure(good, snap).unwrap();
    backend
        .volume_ensure(&BackendVolumeSpec {
            uid: clone,
            size_bytes: 16 * MIB,
            source: VolumeSource::Snapshot { uid: snap },
        })
        .unwrap();
    backend.volume_verify(clone).unwrap();
}

/// Puts `data` into the API's blob directory and makes `name` an `active` image of it declared
/// `format`, as if uploaded before the API inspected formats (or with its format switched):
/// only the node agent's own inspection stands between these bytes and a disk.
async fn smuggle_image(h: &Harness, name: &str, format: DiskFormat, data: &[u8]) {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let blob = h.blob_dir.path().join("sha256").join(&hex);
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::write(&blob, data).unwrap();
    let api = Api::<Image>::in_project(h.client.clone(), PROJECT);
    api.create(&Image::new(
        meta(name),
        ImageSpec {
            disk_format: format,
            container_format: ContainerFormat::Bare,
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    api.patch_status(
        name,
        &json!({"status": {
            "phase": "active",
            "size": data.len(),
            "virtualSize": MIB,
            "osHashAlgo": "sha256",
            "osHashValue": hex,
            "location": format!("sha256/{hex}"),
        }}),
    )
    .await
    .unwrap();
}

async fn server_errored(h: &Harness, name: &str) -> Server {
    let api = h.servers();
    eventually(&format!("{name} ERROR"), T, async || {
        let s = api.get(name).await.ok()?;
        (s.status.phase == Some(ServerPhase::Error)).then_some(s)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_agent_refuses_a_smuggled_image_for_servers_volumes_and_boot_volumes() {
    let a = Attack::new();
    let mut h = harness().await;
    h.flavor("small", 1, 128, 1).await;
    let bytes = std::fs::read(&a.backed).unwrap();
    smuggle_image(&h, "lying-raw", DiskFormat::Raw, &bytes).await;
    smuggle_image(&h, "honest-qcow2", DiskFormat::Qcow2, &bytes).await;

    let fake = Arc::new(FakeHypervisor::new());
    let state = tempfile::tempdir().unwrap();
    let pool_dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(FileBackend::new(pool_dir.path()).unwrap());
    let pool_name = backend.capacity().unwrap().name;
    let mut config = agent_config("n1", state.path(), fake.clone());
    config.servers = ServerConfig {
        shutdown_grace: Duration::from_secs(1),
        poll: Duration::from_millis(100),
        resync: Duration::from_secs(1),
        concurrency: 4,
    };
    config.storage =
        BTreeMap::from([(pool_name.clone(), backend.clone() as Arc<dyn VolumeBackend>)]);
    h.start_agent(config).await;

    // Root disks: ERROR with the reason, whatever the image declares; no disk.
    for image in ["lying-raw", "honest-qcow2"] {
        let server = format!("from-{image}");
        h.server(&server, "small", image, "n1").await;
        let s = server_errored(&h, &server).await;
        let disk = Condition::find(&s.status.conditions, "DiskReady").expect("DiskReady");
        assert_eq!(
            (disk.status, disk.reason.as_str()),
            (ConditionStatus::False, "ImageRefused"),
            "{disk:?}"
        );
        let fault = s.status.fault.expect("fault");
        assert!(fault.message.contains("ImageRefused"), "{}", fault.message);
        assert!(
            disk.message.contains(if image == "lying-raw" {
                "declared raw but the data is a qcow2 image"
            } else {
                "backing file"
            }),
            "{}",
            disk.message
        );
        let uid = Uuid::parse_str(s.metadata.uid.as_deref().unwrap()).unwrap();
        assert!(!InstancePaths::new(state.path(), uid).disk.exists());
    }
    assert!(fake.domain_list().unwrap().is_empty(), "no domain defined");

    // Volumes from the image: error with the reason, no file in the pool.
    let volumes = Api::<Volume>::in_project(h.client.clone(), PROJECT);
    let volume = |source: Option<VolumeSourceSpec>| VolumeSpec {
        size: 1,
        source,
        bootable: true,
        ..Default::default()
    };
    for image in ["lying-raw", "honest-qcow2"] {
        let name = format!("vol-{image}");
        volumes
            .create(&Volume::new(
                meta(&name),
                volume(Some(VolumeSourceSpec {
                    type_: VolumeSourceType::Image,
                    name: Some(image.into()),
                })),
            ))
            .await
            .unwrap();
        volumes
            .patch_status(
                &name,
                &json!({"status": {"node": "n1", "pool": pool_name, "phase": "creating"}}),
            )
            .await
            .unwrap();
        let v = eventually(&format!("{name} error"), T, async || {
            let v = volumes.get(&name).await.ok()?;
            (v.status.phase == Some(VolumePhase::Error)).then_some(v)
        })
        .await;
        let ready = Condition::find(&v.status.conditions, "Ready").unwrap();
        assert_eq!(ready.reason, "SourceRefused", "{ready:?}");
        assert!(ready.message.contains("refused"), "{}", ready.message);
    }
    assert_eq!(pool_files(pool_dir.path()), Vec::<String>::new());

    // A boot volume made before the node inspected images (an overlay on the lying image):
    // the server is ERROR, the domain never gets it.
    volumes
        .create(&Volume::new(meta("old-root"), volume(None)))
        .await
        .unwrap();
    let old = volumes.get("old-root").await.unwrap();
    let old_uid = Uuid::parse_str(old.metadata.uid.as_deref().unwrap()).unwrap();
    qemu_img(&[
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-F".as_ref(),
        "qcow2".as_ref(),
        "-b".as_ref(),
        a.backed.as_os_str(),
        backend.volume_path(old_uid).as_os_str(),
        "1G".as_ref(),
    ]);
    volumes
        .patch_status(
            "old-root",
            &json!({"status": {"node": "n1", "pool": pool_name, "phase": "available"}}),
        )
        .await
        .unwrap();
    h.servers()
        .create(&Server::new(
            meta("boots-old-root"),
            ServerSpec {
                flavor: "small".into(),
                boot_volume: Some("old-root".into()),
                node_name: Some("n1".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let s = server_errored(&h, "boots-old-root").await;
    let fault = s.status.fault.expect("fault");
    assert!(
        fault.message.contains("BootVolumeRefused"),
        "{}",
        fault.message
    );
    assert!(fake.domain_list().unwrap().is_empty(), "no domain defined");
    // The node's image cache holds the smuggled image itself (verified bytes, never a disk).
    let sha: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let cached = state.path().join("images").join(sha);
    assert!(cached.exists());
    let leaks = a.leaks_under(state.path(), &[&cached]);
    assert!(leaks.is_empty(), "{leaks:?}");
    let planted = backend.volume_path(old_uid);
    let leaks = a.leaks_under(pool_dir.path(), &[&planted]);
    assert!(leaks.is_empty(), "{leaks:?}");
    h.stop_agent().await;
}
