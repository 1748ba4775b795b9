//! The client against a real in-process API over the embedded store (in memory).

use std::collections::BTreeMap;

use cirrus_client::{Api, ClientError, ListParams, WatchEvent};
use cirrus_crds::{Flavor, FlavorSpec, ObjectMeta, Server};
use cirrus_test_utils::harness;
use futures::StreamExt;
use serde_json::json;

fn flavor(name: &str, ram: u64, size: &str) -> Flavor {
    Flavor::new(
        ObjectMeta {
            name: name.into(),
            labels: BTreeMap::from([("size".to_string(), size.to_string())]),
            ..Default::default()
        },
        FlavorSpec {
            ram,
            ..Default::default()
        },
    )
}

#[tokio::test]
async fn crud_with_typed_errors() {
    let h = harness().await;
    let api = Api::<Flavor>::all(h.client.clone());

    let created = api.create(&flavor("m1", 512, "small")).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let err = api.create(&flavor("m1", 512, "small")).await.unwrap_err();
    assert!(err.is_already_exists(), "{err}");

    assert_eq!(api.get("m1").await.unwrap(), created);
    assert!(api.get_opt("nope").await.unwrap().is_none());
    let err = api.get("nope").await.unwrap_err();
    assert!(err.is_not_found() && !err.retryable(), "{err}");

    // replace is compare-and-swap on resourceVersion
    let mut fresh = created.clone();
    fresh.spec.vcpus = 2;
    let updated = api.replace(&fresh).await.unwrap();
    assert_eq!(updated.metadata.generation, Some(2));
    let mut stale = created.clone();
    stale.spec.vcpus = 4;
    let err = api.replace(&stale).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(matches!(&err, ClientError::Api { code: 409, reason, .. } if reason == "Conflict"));

    // merge patch, with and without a resourceVersion precondition
    let patched = api
        .patch("m1", &json!({"metadata": {"labels": {"tier": "gold"}}}))
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels["tier"], "gold");
    let err = api
        .patch(
            "m1",
            &json!({"metadata": {"resourceVersion": created.metadata.resource_version.clone().unwrap()}}),
        )
        .await;
    assert!(err.unwrap_err().is_conflict());

    // status writes go to the subresource only
    let status = api
        .patch_status(
            "m1",
            &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        )
        .await
        .unwrap();
    assert_eq!(status.status.conditions.len(), 1);
    let mut with_status = status.clone();
    with_status.status.conditions.clear();
    let replaced = api.replace_status(&with_status).await.unwrap();
    assert!(replaced.status.conditions.is_empty());

    // a bad field is a 400 Invalid naming it
    let err = api.create(&flavor("m0", 0, "small")).await.unwrap_err();
    assert_eq!(err.code(), Some(400));
    assert!(err.to_string().contains("spec.ram"), "{err}");

    // delete with a finalizer keeps the object until the finalizer goes
    api.patch(
        "m1",
        &json!({"metadata": {"finalizers": ["test.cirrus.dev/hold"]}}),
    )
    .await
    .unwrap();
    let deleting = api.delete("m1").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    api.patch("m1", &json!({"metadata": {"finalizers": []}}))
        .await
        .unwrap();
    assert!(api.get_opt("m1").await.unwrap().is_none());
    assert!(api.delete("m1").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn list_pages_and_selectors() {
    let h = harness().await;
    let api = Api::<Flavor>::all(h.client.clone());
    for i in 0..5 {
        let size = if i % 2 == 0 { "small" } else { "big" };
        api.create(&flavor(&format!("f{i}"), 512, size))
            .await
            .unwrap();
    }
    let page = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.continue_token.is_some());
    let all = api.list_all(None).await.unwrap();
    assert_eq!(all.items.len(), 5);
    assert!(all.continue_token.is_none());
    let small = api
        .list(&ListParams::default().labels("size=small"))
        .await
        .unwrap();
    assert_eq!(small.items.len(), 3);
    let not_small = api.list_all(Some("size notin (small)")).await.unwrap();
    assert_eq!(not_small.items.len(), 2);
}

#[tokio::test]
async fn project_scoped_paths() {
    let h = harness().await;
    let all = Api::<Server>::all(h.client.clone());
    assert!(matches!(
        all.get("vm").await,
        Err(ClientError::ProjectRequired { .. })
    ));
    let listed = all.list(&ListParams::default()).await.unwrap();
    assert!(listed.items.is_empty());
    let demo = Api::<Server>::in_project(h.client.clone(), "demo");
    assert!(demo.get_opt("vm").await.unwrap().is_none());
}

#[tokio::test]
async fn watch_yields_typed_events() {
    let h = harness().await;
    let api = Api::<Flavor>::all(h.client.clone());
    let first = api.create(&flavor("w1", 512, "small")).await.unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();

    let mut events = Box::pin(api.watch(&rv, None));
    api.create(&flavor("w2", 512, "small")).await.unwrap();
    api.patch("w2", &json!({"spec": {"vcpus": 3}}))
        .await
        .unwrap();
    api.delete("w2").await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match events.next().await.unwrap().unwrap() {
            WatchEvent::Added(f) => seen.push(("added", f.metadata.name)),
            WatchEvent::Modified(f) => seen.push(("modified", f.metadata.name)),
            WatchEvent::Deleted(f) => seen.push(("deleted", f.metadata.name)),
            WatchEvent::Bookmark { .. } => {}
        }
    }
    assert_eq!(
        seen,
        vec![
            ("added", "w2".to_string()),
            ("modified", "w2".to_string()),
            ("deleted", "w2".to_string())
        ]
    );

    // From 0 the current objects come first.
    let mut from_zero = Box::pin(api.watch("0", Some("size=small")));
    let Some(Ok(WatchEvent::Added(f))) = from_zero.next().await else {
        panic!("expected the existing object first")
    };
    assert_eq!(f.metadata.name, "w1");
}
