//! The typed object layer under concurrency, on the embedded store and on a real etcd:
//! one winner per name, one winner per resourceVersion, no lost updates.

use std::sync::Arc;

use cirrus_crds::{Flavor, FlavorSpec, ObjectMeta, Resource};
use cirrus_store::embedded::{self, EmbeddedConfig};
use cirrus_store::objects::{Api, ObjectError, ObjectStore, Part};
use cirrus_test_utils::RealEtcd;

fn flavor(name: &str) -> Flavor {
    Flavor::new(
        ObjectMeta {
            name: name.into(),
            ..Default::default()
        },
        FlavorSpec::default(),
    )
}

async fn concurrent_creates_of_one_name_have_one_winner(store: ObjectStore) {
    let api = Arc::new(Api::<Flavor>::all(store));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.create(&flavor("contended")).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(ObjectError::AlreadyExists { .. }) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(api.list().await.unwrap().len(), 1);
}

async fn compare_and_swap_loses_no_update(store: ObjectStore) {
    let api = Arc::new(Api::<Flavor>::all(store));
    api.create(&flavor("counter")).await.unwrap();
    // 8 writers each add 5 to vcpus with read-modify-write + CAS, retrying on conflict.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move {
                let mut conflicts = 0;
                for _ in 0..5 {
                    loop {
                        let mut f = api.get("counter").await.unwrap();
                        f.spec.vcpus += 1;
                        match api.replace(&f).await {
                            Ok(_) => break,
                            Err(ObjectError::Conflict { .. }) => conflicts += 1,
                            Err(other) => panic!("unexpected {other}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let f = api.get("counter").await.unwrap();
    assert_eq!(f.spec.vcpus, 1 + 40, "every increment landed exactly once");
    assert_eq!(f.meta().generation, Some(41));
    println!("{conflicts} conflicts retried");
}

/// An in-memory embedded server on a Unix socket (as `cirrus up` reaches it); the directory
/// lives as long as the server.
async fn embedded() -> ((embedded::EmbeddedEtcd, tempfile::TempDir), ObjectStore) {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig {
        listen: embedded::Listen::Unix(dir.path().join(embedded::SOCKET_FILE)),
        ..EmbeddedConfig::in_memory()
    };
    let server = embedded::start(config).await.unwrap();
    let store = ObjectStore::connect(&[server.endpoint()]).await.unwrap();
    assert!(server.endpoint().starts_with("unix://"));
    ((server, dir), store)
}

async fn real() -> (RealEtcd, ObjectStore) {
    let etcd = RealEtcd::start()
        .await
        .expect("a real etcd (/usr/bin/etcd) must be installed");
    let store = ObjectStore::connect(&[etcd.endpoint()]).await.unwrap();
    (etcd, store)
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_unique_names() {
    let (_server, store) = embedded().await;
    concurrent_creates_of_one_name_have_one_winner(store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_no_lost_updates() {
    let (_server, store) = embedded().await;
    compare_and_swap_loses_no_update(store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_etcd_unique_names() {
    let (_etcd, store) = real().await;
    concurrent_creates_of_one_name_have_one_winner(store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_etcd_no_lost_updates() {
    let (_etcd, store) = real().await;
    compare_and_swap_loses_no_update(store).await;
}

/// A delete with preconditions takes only the object it names: not a newer one of the same
/// name (uid), not one changed since it was read (resourceVersion).
async fn delete_preconditions_hold(store: ObjectStore) {
    use cirrus_store::objects::Preconditions;
    let kind = cirrus_crds::kind_by_plural("flavors").unwrap();
    let value = |f: Flavor| serde_json::to_value(f).unwrap();
    let first = store
        .create(kind, None, value(flavor("m1")), false)
        .await
        .unwrap();
    let first_uid = first["metadata"]["uid"].as_str().unwrap().to_string();
    store.delete(kind, None, "m1", false).await.unwrap();
    let second = store
        .create(kind, None, value(flavor("m1")), false)
        .await
        .unwrap();
    let second_uid = second["metadata"]["uid"].as_str().unwrap().to_string();
    assert_ne!(first_uid, second_uid);
    let stale = store
        .delete_with(kind, None, "m1", &Preconditions::uid(&first_uid), false)
        .await;
    assert!(
        matches!(&stale, Err(ObjectError::PreconditionFailed { field, .. }) if *field == "metadata.uid"),
        "{stale:?}"
    );
    assert!(stale.unwrap_err().to_string().contains(&first_uid));
    store
        .get(kind, None, "m1")
        .await
        .expect("the newer flavor stays");
    let rv: i64 = second["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    store
        .patch(
            kind,
            None,
            "m1",
            &serde_json::json!({"spec": {"vcpus": 2}}),
            Part::Main,
            false,
        )
        .await
        .unwrap();
    let changed = Preconditions {
        uid: Some(second_uid.clone()),
        resource_version: Some(rv),
    };
    let stale = store.delete_with(kind, None, "m1", &changed, false).await;
    assert!(
        matches!(&stale, Err(ObjectError::PreconditionFailed { field, .. }) if *field == "metadata.resourceVersion"),
        "{stale:?}"
    );
    store
        .delete_with(kind, None, "m1", &Preconditions::uid(&second_uid), false)
        .await
        .expect("the named object is deleted");
    assert!(matches!(
        store.get(kind, None, "m1").await,
        Err(ObjectError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_delete_preconditions() {
    let (_server, store) = embedded().await;
    delete_preconditions_hold(store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_etcd_delete_preconditions() {
    let (_etcd, store) = real().await;
    delete_preconditions_hold(store).await;
}
