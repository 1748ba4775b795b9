//! Runtime integration tests against a real in-process API over the embedded store.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cirrus_client::{Api, Client, ListParams};
use cirrus_crds::kinds::event::{CLUSTER_EVENTS_PROJECT, EventType};
use cirrus_crds::{Event as EventObject, Flavor, FlavorSpec, Lease, ObjectMeta, Server};
use futures::StreamExt;

use cirrus_test_utils::{eventually_holds, harness};

use super::watcher::{self, Event};
use super::*;

fn flavor(name: &str) -> Flavor {
    Flavor::new(
        ObjectMeta {
            name: name.into(),
            ..Default::default()
        },
        FlavorSpec::default(),
    )
}

#[tokio::test]
async fn watcher_lists_then_follows_changes() {
    let h = harness().await;
    let api = Api::<Flavor>::all(h.client.clone());
    api.create(&flavor("a")).await.unwrap();
    let mut events = Box::pin(watcher::watcher(api.clone(), watcher::Config::default()));
    let Some(Ok(Event::Restarted(list))) = events.next().await else {
        panic!("a list first")
    };
    assert_eq!(list.len(), 1);
    api.create(&flavor("b")).await.unwrap();
    api.delete("a").await.unwrap();
    let Some(Ok(Event::Applied(b))) = events.next().await else {
        panic!("b applied")
    };
    assert_eq!(b.metadata.name, "b");
    let Some(Ok(Event::Deleted(a))) = events.next().await else {
        panic!("a deleted")
    };
    assert_eq!(a.metadata.name, "a");
}

struct FinCtx {
    client: Client,
    applied: AtomicUsize,
    cleaned: AtomicUsize,
}

const FINALIZER: &str = "test.cirrus.dev/cleanup";

async fn finalized(
    obj: Arc<Flavor>,
    ctx: Arc<FinCtx>,
) -> Result<Action, FinalizerError<Infallible>> {
    let c = ctx.clone();
    finalizer(&ctx.client, FINALIZER, obj, |event| async move {
        match event {
            FinalizerEvent::Apply(_) => c.applied.fetch_add(1, Ordering::SeqCst),
            FinalizerEvent::Cleanup(_) => c.cleaned.fetch_add(1, Ordering::SeqCst),
        };
        Ok(Action::await_change())
    })
    .await
}

#[tokio::test]
async fn finalizer_flow_end_to_end() {
    let h = harness().await;
    let api = Api::<Flavor>::all(h.client.clone());
    let ctx = Arc::new(FinCtx {
        client: h.client.clone(),
        applied: AtomicUsize::new(0),
        cleaned: AtomicUsize::new(0),
    });
    let controller = Controller::new(api.clone(), watcher::Config::default());
    let run = tokio::spawn(controller.run(
        finalized,
        |_, _: &FinalizerError<Infallible>, _| Action::requeue(Duration::from_millis(50)),
        ctx.clone(),
    ));

    // Someone else's finalizer is kept alongside ours.
    let mut obj = flavor("m1");
    obj.metadata.finalizers = vec!["other.cirrus.dev/keep".into()];
    api.create(&obj).await.unwrap();
    eventually_holds(
        "finalizer added and Apply run",
        Duration::from_secs(10),
        || async { ctx.applied.load(Ordering::SeqCst) > 0 },
    )
    .await;
    let stored = api.get("m1").await.unwrap();
    assert_eq!(
        stored.metadata.finalizers,
        ["other.cirrus.dev/keep", FINALIZER]
    );
    assert_eq!(ctx.cleaned.load(Ordering::SeqCst), 0);

    api.delete("m1").await.unwrap();
    eventually_holds(
        "Cleanup run and our finalizer removed",
        Duration::from_secs(10),
        || async { api.get("m1").await.unwrap().metadata.finalizers == ["other.cirrus.dev/keep"] },
    )
    .await;
    assert!(ctx.cleaned.load(Ordering::SeqCst) >= 1);
    api.patch("m1", &serde_json::json!({"metadata": {"finalizers": []}}))
        .await
        .unwrap();
    eventually_holds("object gone", Duration::from_secs(5), || async {
        api.get_opt("m1").await.unwrap().is_none()
    })
    .await;
    run.abort();
}

#[tokio::test]
async fn events_aggregate_repeats() {
    let h = harness().await;
    let recorder = Recorder::new(h.client.clone(), "test-controller", Some("host-a".into()));
    let api = Api::<Flavor>::all(h.client.clone());
    let f = api.create(&flavor("m1")).await.unwrap();
    for _ in 0..3 {
        recorder
            .publish(&f, EventType::Warning, "FailedSync", "boom")
            .await
            .unwrap();
    }
    let other = recorder
        .publish(&f, EventType::Normal, "Synced", "ok")
        .await
        .unwrap();
    assert_eq!(other.spec.count, 1);

    let events = Api::<EventObject>::in_project(h.client.clone(), CLUSTER_EVENTS_PROJECT);
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 2, "repeats share one object");
    let failed = list
        .items
        .iter()
        .find(|e| e.spec.reason == "FailedSync")
        .unwrap();
    assert_eq!(failed.spec.count, 3);
    assert_eq!(failed.spec.involved_object.kind, "Flavor");
    assert_eq!(failed.spec.involved_object.uid, f.metadata.uid);
    assert_eq!(failed.spec.source.component, "test-controller");
    assert!(failed.spec.last_timestamp >= failed.spec.first_timestamp);

    // Project-scoped objects get their events in their own project.
    let vm = Server::new(
        ObjectMeta {
            name: "vm".into(),
            project: Some("demo".into()),
            uid: Some("u-1".into()),
            ..Default::default()
        },
        Default::default(),
    );
    let e = recorder
        .publish(&vm, EventType::Normal, "Scheduled", "to node-a")
        .await
        .unwrap();
    assert_eq!(e.metadata.project.as_deref(), Some("demo"));
    assert_eq!(e.spec.involved_object.project.as_deref(), Some("demo"));
}

fn leader_config(identity: &str) -> LeaderConfig {
    LeaderConfig {
        lease_name: "test-controller".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1200),
        retry_period: Duration::from_millis(100),
    }
}

#[tokio::test]
async fn two_candidates_never_both_lead_and_one_takes_over_after_expiry() {
    let h = harness().await;
    let a = LeaderElector::new(h.client.clone(), leader_config("a"));
    let b = LeaderElector::new(h.client.clone(), leader_config("b"));
    let (a_rx, b_rx) = (a.subscribe(), b.subscribe());
    let a_task = tokio::spawn(a.run(std::future::pending()));
    let b_task = tokio::spawn(b.run(std::future::pending()));

    let mut led = [false, false];
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let (la, lb) = (*a_rx.borrow(), *b_rx.borrow());
        assert!(!(la && lb), "both lead");
        led[0] |= la;
        led[1] |= lb;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        led[0] ^ led[1],
        "exactly one led, and kept leading: {led:?}"
    );
    let (leader_task, follower_rx, follower_task) = if led[0] {
        (a_task, b_rx, b_task)
    } else {
        (b_task, a_rx, a_task)
    };

    // The leader dies without releasing: the follower waits for expiry, then takes over.
    leader_task.abort();
    let died = tokio::time::Instant::now();
    let mut follower_rx = follower_rx;
    tokio::time::timeout(Duration::from_secs(5), follower_rx.wait_for(|l| *l))
        .await
        .expect("takeover")
        .unwrap();
    let waited = died.elapsed();
    assert!(
        waited >= Duration::from_millis(700),
        "took over before the lease could have expired: {waited:?}"
    );
    let lease = Api::<Lease>::all(h.client.clone())
        .get("test-controller")
        .await
        .unwrap();
    assert_eq!(lease.spec.lease_transitions, Some(1));
    follower_task.abort();
}

#[tokio::test]
async fn released_lease_is_taken_over_at_once_and_a_stale_holder_steps_down() {
    let h = harness().await;
    let a = LeaderElector::new(h.client.clone(), leader_config("a"));
    assert!(a.try_acquire_or_renew().await.unwrap());
    let b = LeaderElector::new(h.client.clone(), leader_config("b"));
    assert!(!b.try_acquire_or_renew().await.unwrap(), "held by a");
    a.release().await.unwrap();
    assert!(
        b.try_acquire_or_renew().await.unwrap(),
        "released: b takes it"
    );
    assert!(!a.try_acquire_or_renew().await.unwrap(), "a follows now");

    // A holder whose renewals stopped long ago loses the lease to a waiting candidate.
    let api = Api::<Lease>::all(h.client.clone());
    let mut lease = api.get("test-controller").await.unwrap();
    let past = chrono::Utc::now() - chrono::Duration::seconds(10);
    lease.spec.renew_time = Some(past);
    lease.spec.acquire_time = Some(past);
    api.replace(&lease).await.unwrap();
    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "expired: a takes over"
    );
    assert_eq!(
        api.get("test-controller")
            .await
            .unwrap()
            .spec
            .holder_identity
            .as_deref(),
        Some("a")
    );
}

#[tokio::test]
async fn dynamic_steps_resume_from_a_revision_and_relist_when_it_is_compacted() {
    use cirrus_client::DynamicApi;
    use cirrus_crds::Resource;
    use serde_json::json;
    use watcher::{Step, resource_version};

    let test_api = cirrus_test_utils::TestApi::start_with(|state| {
        state.bookmark_interval = Duration::from_millis(50);
    })
    .await;
    let client = Client::new(test_api.base_url.clone()).with_token(test_api.admin_token.clone());
    let flavors = DynamicApi::new(client, Flavor::info(), None);
    let flavor = |name: &str| json!({"metadata": {"name": name}, "spec": {"vcpus": 1, "ram": 64}});
    flavors.create(&flavor("a")).await.unwrap();

    // A fresh start lists, and the list carries its revision.
    let mut fresh = Box::pin(watcher::steps(flavors.clone(), watcher::Config::default()));
    let Some(Ok(Step::Restarted {
        objects,
        resource_version: listed_at,
    })) = fresh.next().await
    else {
        panic!("a list first")
    };
    assert_eq!(objects.len(), 1);
    drop(fresh);

    // While nobody watches, b is created; resuming from the list's revision sees only b.
    let b = flavors.create(&flavor("b")).await.unwrap();
    let resume = watcher::Config {
        resume_from: Some(listed_at.clone()),
        ..watcher::Config::default()
    };
    let mut resumed = Box::pin(watcher::steps(flavors.clone(), resume.clone()));
    let step = loop {
        match resumed.next().await.unwrap().unwrap() {
            Step::Bookmark(_) => continue,
            step => break step,
        }
    };
    assert!(
        matches!(&step, Step::Applied(o) if o["metadata"]["name"] == "b"),
        "{step:?}"
    );
    assert_eq!(
        resource_version::<DynamicApi>(&step),
        b["metadata"]["resourceVersion"].as_str()
    );
    // Bookmarks carry the revision to resume from.
    let Some(Ok(bookmark)) = resumed.next().await else {
        panic!("a bookmark")
    };
    assert!(matches!(bookmark, Step::Bookmark(_)), "{bookmark:?}");
    let caught_up: i64 = resource_version::<DynamicApi>(&bookmark)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        caught_up
            >= b["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
    );
    drop(resumed);

    // Once that revision is compacted, resuming from it lists again: the whole truth.
    flavors.create(&flavor("c")).await.unwrap();
    let current = test_api.store.current_revision().await.unwrap();
    test_api
        .store
        .client()
        .kv_client()
        .compact(current, None)
        .await
        .unwrap();
    let mut relisted = Box::pin(watcher::steps(flavors.clone(), resume));
    let Some(Ok(Step::Restarted { objects, .. })) = relisted.next().await else {
        panic!("a list after compaction")
    };
    let mut names: Vec<&str> = objects
        .iter()
        .map(cirrus_client::dynamic::name_of)
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
}
