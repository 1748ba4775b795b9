//! The node agent's volume reconciler against the in-process API with the fake volume
//! backend: a placed volume is made and becomes `available` with its size, a bigger size
//! extends it, a snapshot is taken on the volume's pool, a volume whose pool is unknown is
//! `error` with the reason, and deletion removes the backend volume before the finalizer.

use std::collections::BTreeMap;
use std::sync::Arc;

use cirrus_client::{Api, Client};
use cirrus_crds::kinds::volume::VolumePhase;
use cirrus_crds::kinds::volumesnapshot::VolumeSnapshotPhase;
use cirrus_crds::{ObjectMeta, Volume, VolumeSnapshot, VolumeSnapshotSpec, VolumeSpec};
use cirrus_node_agent::storage::{self, GIB, StorageContext};
use cirrus_node_agent::volumes::VolumeBackend;
use cirrus_node_agent::volumes::fake::FakeVolumeBackend;
use cirrus_test_utils::TestApi;
use serde_json::json;
use uuid::Uuid;

async fn placed(api: &Api<Volume>, name: &str, size: u64, pool: &str) -> Volume {
    let v = api
        .create(&Volume::new(
            ObjectMeta {
                name: name.into(),
                ..Default::default()
            },
            VolumeSpec {
                size,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    api.patch_status(
        name,
        &json!({"status": {"node": "n1", "pool": pool, "phase": "creating"}}),
    )
    .await
    .unwrap();
    api.get(&v.metadata.name).await.unwrap()
}

#[tokio::test]
async fn volumes_are_made_extended_snapshotted_and_deleted_on_the_backend() {
    let api_server = TestApi::start().await;
    let client =
        Client::new(api_server.base_url.clone()).with_token(api_server.admin_token.clone());
    let fake = Arc::new(FakeVolumeBackend::new(100 * GIB));
    let pool_name = fake.capacity().unwrap().name;
    let mut pools: storage::Pools = BTreeMap::new();
    pools.insert(pool_name.clone(), fake.clone() as Arc<dyn VolumeBackend>);
    let dir = tempfile::tempdir().unwrap();
    let ctx = Arc::new(StorageContext::new(
        client.clone(),
        "n1",
        pools,
        dir.path().join("images"),
    ));
    let volumes = Api::<Volume>::in_project(client.clone(), "demo");

    // Made and available (two passes: the first adds the finalizer).
    let v = placed(&volumes, "data-1", 2, &pool_name).await;
    let uid = Uuid::parse_str(v.metadata.uid.as_deref().unwrap()).unwrap();
    for _ in 0..2 {
        let v = volumes.get("data-1").await.unwrap();
        storage::reconcile_volume(Arc::new(v), ctx.clone())
            .await
            .unwrap();
    }
    let v = volumes.get("data-1").await.unwrap();
    assert_eq!(
        v.status.phase,
        Some(VolumePhase::Available),
        "{:?}",
        v.status
    );
    assert_eq!(v.status.size, Some(2));
    assert!(
        v.metadata
            .finalizers
            .contains(&storage::FINALIZER.to_string())
    );
    assert_eq!(fake.volume_info(uid).unwrap().unwrap().size_bytes, 2 * GIB);

    // A bigger size extends it.
    let mut bigger = v.clone();
    bigger.spec.size = 3;
    let v = volumes.replace(&bigger).await.unwrap();
    storage::reconcile_volume(Arc::new(v), ctx.clone())
        .await
        .unwrap();
    assert_eq!(fake.volume_info(uid).unwrap().unwrap().size_bytes, 3 * GIB);
    assert_eq!(volumes.get("data-1").await.unwrap().status.size, Some(3));

    // A snapshot is taken on the volume's pool.
    let snaps = Api::<VolumeSnapshot>::in_project(client.clone(), "demo");
    snaps
        .create(&VolumeSnapshot::new(
            ObjectMeta {
                name: "snap-1".into(),
                ..Default::default()
            },
            VolumeSnapshotSpec {
                volume: "data-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    for _ in 0..2 {
        let s = snaps.get("snap-1").await.unwrap();
        storage::reconcile_snapshot(Arc::new(s), ctx.clone())
            .await
            .unwrap();
    }
    let s = snaps.get("snap-1").await.unwrap();
    assert_eq!(
        s.status.phase,
        Some(VolumeSnapshotPhase::Available),
        "{:?}",
        s.status
    );
    assert_eq!(fake.snapshots().unwrap().len(), 1);

    // Unknown pool: error with the reason, nothing made.
    let bad = placed(&volumes, "data-2", 1, "no-such-pool").await;
    for _ in 0..2 {
        let v = volumes.get(&bad.metadata.name).await.unwrap();
        storage::reconcile_volume(Arc::new(v), ctx.clone())
            .await
            .unwrap();
    }
    let bad = volumes.get("data-2").await.unwrap();
    assert_eq!(bad.status.phase, Some(VolumePhase::Error));
    assert!(format!("{:?}", bad.status.conditions).contains("no-such-pool"));

    // Deleting the volume waits for its snapshot (Cinder's rule), then removes it.
    volumes.delete("data-1").await.unwrap();
    let v = volumes.get("data-1").await.unwrap();
    assert!(
        storage::reconcile_volume(Arc::new(v), ctx.clone())
            .await
            .is_err()
    );
    assert!(
        fake.volume_info(uid).unwrap().is_some(),
        "kept while it has a snapshot"
    );
    snaps.delete("snap-1").await.unwrap();
    let s = snaps.get("snap-1").await.unwrap();
    storage::reconcile_snapshot(Arc::new(s), ctx.clone())
        .await
        .unwrap();
    assert!(snaps.get_opt("snap-1").await.unwrap().is_none());
    let v = volumes.get("data-1").await.unwrap();
    storage::reconcile_volume(Arc::new(v), ctx.clone())
        .await
        .unwrap();
    assert!(volumes.get_opt("data-1").await.unwrap().is_none());
    assert!(fake.volume_info(uid).unwrap().is_none());
}

/// Runs `qemu-io` on a qcow2 file (reads read-only with `-U`: beside whoever holds it) and
/// says whether it worked.
fn qemu_io(path: &std::path::Path, cmd: &str) -> bool {
    let share: &[&str] = if cmd.starts_with("read") {
        &["-r", "-U"]
    } else {
        &[]
    };
    let out = std::process::Command::new("qemu-io")
        .args(share)
        .args(["-f", "qcow2", "-c", cmd])
        .arg(path)
        .output()
        .expect("run qemu-io");
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success() && !text.contains("Pattern verification failed") && !text.contains("error")
}

/// A snapshot of a file volume attached to a running domain of this node is copied by the
/// hypervisor (`disk_backup`), not offline, into the file the backend keeps as the snapshot:
/// it holds the data of its moment, a volume made from it reads that data, and it is deleted
/// as any snapshot.
#[tokio::test]
async fn snapshots_of_attached_volumes_are_copied_by_the_hypervisor() {
    use cirrus_crds::kinds::volume::{VolumeSource, VolumeSourceType};
    use cirrus_node_agent::hypervisor::fake::FakeHypervisor;
    use cirrus_node_agent::hypervisor::{
        DiskFormat, DomainName, DomainSpec, Hypervisor, HypervisorOp, VirtType, VolumeDisk,
    };
    use cirrus_node_agent::volumes::file::FileBackend;

    let api_server = TestApi::start().await;
    let client =
        Client::new(api_server.base_url.clone()).with_token(api_server.admin_token.clone());
    let dir = tempfile::tempdir().unwrap();
    let file = Arc::new(FileBackend::new(dir.path().join("pool")).unwrap());
    let pool_name = file.capacity().unwrap().name;
    let mut pools: storage::Pools = BTreeMap::new();
    pools.insert(pool_name.clone(), file.clone() as Arc<dyn VolumeBackend>);
    let hv = Arc::new(FakeHypervisor::new());
    let ctx = Arc::new(
        StorageContext::new(client.clone(), "n1", pools, dir.path().join("images"))
            .with_hypervisor(hv.clone() as Arc<dyn Hypervisor>),
    );
    let volumes = Api::<Volume>::in_project(client.clone(), "demo");
    let snaps = Api::<VolumeSnapshot>::in_project(client.clone(), "demo");

    let v = placed(&volumes, "data-1", 1, &pool_name).await;
    let uid = Uuid::parse_str(v.metadata.uid.as_deref().unwrap()).unwrap();
    for _ in 0..2 {
        let v = volumes.get("data-1").await.unwrap();
        storage::reconcile_volume(Arc::new(v), ctx.clone())
            .await
            .unwrap();
    }
    let path = file.volume_path(uid);
    assert!(qemu_io(&path, "write -P 0x41 0 512"), "marker A written");

    // A running domain holds it.
    let server = Uuid::new_v4();
    let spec = DomainSpec {
        server_uid: server,
        server_name: "s".into(),
        project: "demo".into(),
        virt_type: VirtType::Qemu,
        vcpus: 1,
        memory_mib: 128,
        root_disk: dir.path().join("root.qcow2"),
        kernel_boot: None,
        console_log: dir.path().join("console.log"),
        nics: vec![],
        config_drive: None,
        volumes: vec![],
    };
    hv.domain_ensure(&spec).unwrap();
    let domain = DomainName::for_server(server);
    hv.domain_start(&domain).unwrap();
    hv.disk_attach(
        &domain,
        &VolumeDisk {
            target: "vdc".into(),
            path: path.clone(),
            format: DiskFormat::Qcow2,
            serial: VolumeDisk::serial_for(uid),
            readonly: false,
        },
    )
    .unwrap();

    snaps
        .create(&VolumeSnapshot::new(
            ObjectMeta {
                name: "snap-1".into(),
                ..Default::default()
            },
            VolumeSnapshotSpec {
                volume: "data-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    for _ in 0..3 {
        let s = snaps.get("snap-1").await.unwrap();
        storage::reconcile_snapshot(Arc::new(s), ctx.clone())
            .await
            .unwrap();
    }
    let s = snaps.get("snap-1").await.unwrap();
    assert_eq!(
        s.status.phase,
        Some(VolumeSnapshotPhase::Available),
        "{:?}",
        s.status
    );
    assert_eq!(
        hv.calls(HypervisorOp::DiskBackup),
        1,
        "copied once by the hypervisor, then found"
    );
    let snap_uid = Uuid::parse_str(s.metadata.uid.as_deref().unwrap()).unwrap();
    let info = file
        .snapshot_info(snap_uid)
        .unwrap()
        .expect("snapshot file");
    assert_eq!((info.volume_uid, info.size_bytes), (uid, GIB));
    let leftovers: Vec<_> = std::fs::read_dir(file.dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The guest writes on; a volume made from the snapshot has the data of its moment.
    assert!(qemu_io(&path, "write -P 0x42 0 512"), "marker B written");
    let clone = Volume::new(
        ObjectMeta {
            name: "data-2".into(),
            ..Default::default()
        },
        cirrus_crds::VolumeSpec {
            size: 1,
            source: Some(VolumeSource {
                type_: VolumeSourceType::Snapshot,
                name: Some("snap-1".into()),
            }),
            ..Default::default()
        },
    );
    volumes.create(&clone).await.unwrap();
    volumes
        .patch_status(
            "data-2",
            &json!({"status": {"node": "n1", "pool": pool_name, "phase": "creating"}}),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let v = volumes.get("data-2").await.unwrap();
        storage::reconcile_volume(Arc::new(v), ctx.clone())
            .await
            .unwrap();
    }
    let v2 = volumes.get("data-2").await.unwrap();
    assert_eq!(
        v2.status.phase,
        Some(VolumePhase::Available),
        "{:?}",
        v2.status
    );
    let clone_uid = Uuid::parse_str(v2.metadata.uid.as_deref().unwrap()).unwrap();
    let clone_path = file.volume_path(clone_uid);
    assert!(
        qemu_io(&clone_path, "read -P 0x41 0 512"),
        "the clone holds A"
    );
    assert!(!qemu_io(&clone_path, "read -P 0x42 0 512"), "not B");
    assert!(qemu_io(&path, "read -P 0x42 0 512"), "the volume holds B");

    // Deletion as for any snapshot: the clone first, then the snapshot.
    volumes.delete("data-2").await.unwrap();
    let v = volumes.get("data-2").await.unwrap();
    storage::reconcile_volume(Arc::new(v), ctx.clone())
        .await
        .unwrap();
    snaps.delete("snap-1").await.unwrap();
    let s = snaps.get("snap-1").await.unwrap();
    storage::reconcile_snapshot(Arc::new(s), ctx.clone())
        .await
        .unwrap();
    assert!(file.snapshot_info(snap_uid).unwrap().is_none());
}
