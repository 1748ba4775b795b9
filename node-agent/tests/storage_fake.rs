//! The node agent's volume reconciler against the in-process API with the fake volume
//! backend: a placed volume is made and becomes `available` with its size, a bigger size
//! extends it, a snapshot is taken on the volume's pool, a volume whose pool is unknown is
//! `error` with the reason, and deletion removes the backend volume before the finalizer.

use std::collections::BTreeMap;
use std::sync::Arc;

use cirrus_api::testing::TestApi;
use cirrus_client::{Api, Client};
use cirrus_crds::kinds::volume::VolumePhase;
use cirrus_crds::kinds::volumesnapshot::VolumeSnapshotPhase;
use cirrus_crds::{ObjectMeta, Volume, VolumeSnapshot, VolumeSnapshotSpec, VolumeSpec};
use cirrus_node_agent::storage::{self, GIB, StorageContext};
use cirrus_node_agent::volumes::VolumeBackend;
use cirrus_node_agent::volumes::fake::FakeVolumeBackend;
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
