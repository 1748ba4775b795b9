//! Runtime tests: the controller driven by hand-fed watcher streams in paused (virtual) time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cirrus_client::ClientError;
use cirrus_crds::{Flavor, FlavorSpec, Node, ObjectMeta, OwnerReference, Server, ServerSpec};
use futures::channel::mpsc;
use tokio::sync::watch;
use tokio::time::Instant;

use super::*;
use crate::watcher::Event;

type Feed<K> = mpsc::UnboundedSender<Result<Event<K>, ClientError>>;

#[derive(Debug, thiserror::Error)]
#[error("test failure {0}")]
struct TestError(usize);

type Behavior = Box<dyn Fn(&Flavor, usize) -> Result<Action, TestError> + Send + Sync>;

struct Ctx {
    t0: Instant,
    work: Duration,
    behavior: Behavior,
    /// (name, seconds since t0, vcpus seen)
    calls: Mutex<Vec<(String, f64, u32)>>,
    in_flight: Mutex<HashMap<String, usize>>,
    max_per_key: AtomicUsize,
    total: AtomicUsize,
    max_total: AtomicUsize,
    errors_seen: Mutex<Vec<(String, usize)>>,
    /// Calls that ran to completion (not aborted).
    completed: AtomicUsize,
}

impl Ctx {
    fn calls_of(&self, name: &str) -> Vec<f64> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.0 == name)
            .map(|c| c.1)
            .collect()
    }
    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

/// Decrements in-flight counters even when a reconcile is aborted.
struct InFlight(Arc<Ctx>, String);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.in_flight.lock().unwrap().get_mut(&self.1).unwrap() -= 1;
        self.0.total.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn reconcile(obj: Arc<Flavor>, ctx: Arc<Ctx>) -> Result<Action, TestError> {
    let name = obj.metadata.name.clone();
    let index = {
        let mut calls = ctx.calls.lock().unwrap();
        let index = calls.iter().filter(|c| c.0 == name).count();
        calls.push((
            name.clone(),
            (Instant::now() - ctx.t0).as_secs_f64(),
            obj.spec.vcpus,
        ));
        index
    };
    {
        let mut in_flight = ctx.in_flight.lock().unwrap();
        let n = in_flight.entry(name.clone()).or_default();
        *n += 1;
        ctx.max_per_key.fetch_max(*n, Ordering::SeqCst);
    }
    let total = ctx.total.fetch_add(1, Ordering::SeqCst) + 1;
    ctx.max_total.fetch_max(total, Ordering::SeqCst);
    let _guard = InFlight(ctx.clone(), name);
    if !ctx.work.is_zero() {
        tokio::time::sleep(ctx.work).await;
    }
    ctx.completed.fetch_add(1, Ordering::SeqCst);
    (ctx.behavior)(&obj, index)
}

fn error_policy(obj: Arc<Flavor>, err: &TestError, ctx: Arc<Ctx>) -> Action {
    ctx.errors_seen
        .lock()
        .unwrap()
        .push((obj.metadata.name.clone(), err.0));
    Action::backoff()
}

fn flavor(name: &str, vcpus: u32) -> Flavor {
    Flavor::new(
        ObjectMeta {
            name: name.into(),
            resource_version: Some("1".into()),
            ..Default::default()
        },
        FlavorSpec {
            vcpus,
            ..Default::default()
        },
    )
}

struct Running {
    feed: Feed<Flavor>,
    ctx: Arc<Ctx>,
    handle: tokio::task::JoinHandle<()>,
}

fn no_resync() -> Config {
    Config {
        resync: None,
        ..Config::default()
    }
}

fn start_with(
    config: Config,
    work: Duration,
    behavior: Behavior,
    customize: impl FnOnce(Controller<Flavor>) -> Controller<Flavor>,
) -> Running {
    let (feed, rx) = mpsc::unbounded();
    let ctx = Arc::new(Ctx {
        t0: Instant::now(),
        work,
        behavior,
        calls: Mutex::default(),
        in_flight: Mutex::default(),
        max_per_key: AtomicUsize::new(0),
        total: AtomicUsize::new(0),
        max_total: AtomicUsize::new(0),
        errors_seen: Mutex::default(),
        completed: AtomicUsize::new(0),
    });
    let controller = Controller::for_stream(rx)
        .with_config(config)
        .with_backoff(|| {
            ExponentialBackoff::new(Duration::from_millis(800), Duration::from_secs(30), 2.0)
        });
    let controller = customize(controller);
    let handle = tokio::spawn(controller.run(reconcile, error_policy, ctx.clone()));
    Running { feed, ctx, handle }
}

fn start(config: Config, work: Duration, behavior: Behavior) -> Running {
    start_with(config, work, behavior, |c| c)
}

fn send<K>(feed: &Feed<K>, event: Event<K>) {
    feed.unbounded_send(Ok(event)).unwrap();
}

async fn advance(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

fn approx(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 0.01, "got {got:?}, want {want:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn dedupes_triggers_and_never_runs_one_object_twice_at_once() {
    let r = start(
        no_resync(),
        Duration::from_secs(1),
        Box::new(|_, _| Ok(Action::await_change())),
    );
    send(&r.feed, Event::Restarted(vec![flavor("a", 1)]));
    advance(0.1).await;
    // Three changes of `a` while it is being reconciled, and one of `b`.
    send(&r.feed, Event::Applied(flavor("a", 2)));
    send(&r.feed, Event::Applied(flavor("a", 3)));
    send(&r.feed, Event::Applied(flavor("b", 1)));
    send(&r.feed, Event::Applied(flavor("a", 4)));
    advance(5.0).await;
    approx(&r.ctx.calls_of("a"), &[0.0, 1.0]);
    approx(&r.ctx.calls_of("b"), &[0.1]);
    assert_eq!(r.ctx.max_per_key.load(Ordering::SeqCst), 1);
    let seen: Vec<u32> = r
        .ctx
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.0 == "a")
        .map(|c| c.2)
        .collect();
    assert_eq!(seen, [1, 4], "the rerun reads the latest cached object");
}

#[tokio::test(start_paused = true)]
async fn requeue_runs_after_the_requested_delay() {
    let r = start(
        no_resync(),
        Duration::ZERO,
        Box::new(|_, _| Ok(Action::requeue(Duration::from_secs(10)))),
    );
    send(&r.feed, Event::Applied(flavor("a", 1)));
    advance(35.0).await;
    approx(&r.ctx.calls_of("a"), &[0.0, 10.0, 20.0, 30.0]);
}

#[tokio::test(start_paused = true)]
async fn errors_back_off_exponentially_and_reset_after_success() {
    let r = start(
        no_resync(),
        Duration::ZERO,
        Box::new(|_, i| match i {
            3 => Ok(Action::requeue(Duration::from_secs(5))),
            _ => Err(TestError(i)),
        }),
    );
    send(&r.feed, Event::Applied(flavor("a", 1)));
    advance(12.0).await;
    // fail, +0.8, fail, +1.6, fail, +3.2, succeed, +5 (requeue), fail, +0.8 (reset) ...
    approx(&r.ctx.calls_of("a"), &[0.0, 0.8, 2.4, 5.6, 10.6, 11.4]);
    let errors = r.ctx.errors_seen.lock().unwrap().clone();
    assert_eq!(
        errors,
        [
            ("a".into(), 0),
            ("a".into(), 1),
            ("a".into(), 2),
            ("a".into(), 4),
            ("a".into(), 5)
        ],
        "error_policy sees the object and the error"
    );
}

#[tokio::test(start_paused = true)]
async fn an_explicit_requeue_from_error_policy_or_a_change_wins_over_backoff() {
    let r = start(
        no_resync(),
        Duration::ZERO,
        Box::new(|_, i| Err(TestError(i))),
    );
    send(&r.feed, Event::Applied(flavor("a", 1)));
    advance(0.1).await;
    // A change arrives during the backoff: it runs now, not at 0.8 s.
    send(&r.feed, Event::Applied(flavor("a", 2)));
    advance(0.2).await;
    approx(&r.ctx.calls_of("a"), &[0.0, 0.1]);
}

#[tokio::test(start_paused = true)]
async fn resync_requeues_every_object_periodically() {
    let r = start(
        Config {
            resync: Some(Duration::from_secs(30)),
            ..Config::default()
        },
        Duration::ZERO,
        Box::new(|_, _| Ok(Action::await_change())),
    );
    send(
        &r.feed,
        Event::Restarted(vec![flavor("a", 1), flavor("b", 1)]),
    );
    advance(65.0).await;
    approx(&r.ctx.calls_of("a"), &[0.0, 30.0, 60.0]);
    approx(&r.ctx.calls_of("b"), &[0.0, 30.0, 60.0]);
}

#[tokio::test(start_paused = true)]
async fn deleted_objects_are_not_reconciled_after_their_delete_event() {
    let r = start(
        no_resync(),
        Duration::ZERO,
        Box::new(|_, _| Ok(Action::requeue(Duration::from_secs(5)))),
    );
    send(
        &r.feed,
        Event::Restarted(vec![flavor("a", 1), flavor("b", 1)]),
    );
    advance(1.0).await;
    send(&r.feed, Event::Deleted(flavor("a", 1)));
    // A relist that no longer holds `b` removes it too.
    send(&r.feed, Event::Restarted(vec![]));
    advance(20.0).await;
    approx(&r.ctx.calls_of("a"), &[0.0]);
    approx(&r.ctx.calls_of("b"), &[0.0]);
    // Recreated: reconciled again.
    send(&r.feed, Event::Applied(flavor("a", 1)));
    advance(1.0).await;
    assert_eq!(r.ctx.calls_of("a").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded() {
    let r = start(
        Config {
            concurrency: 2,
            resync: None,
        },
        Duration::from_secs(1),
        Box::new(|_, _| Ok(Action::await_change())),
    );
    let all = ["a", "b", "c", "d", "e"].map(|n| flavor(n, 1)).to_vec();
    send(&r.feed, Event::Restarted(all));
    advance(3.5).await;
    assert_eq!(r.ctx.count(), 5);
    assert_eq!(r.ctx.max_total.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn secondary_watches_and_owned_objects_trigger_their_targets() {
    let (children, child_rx) = mpsc::unbounded::<Result<Event<Server>, ClientError>>();
    let (nodes, node_rx) = mpsc::unbounded::<Result<Event<Node>, ClientError>>();
    let r = start_with(
        no_resync(),
        Duration::ZERO,
        Box::new(|_, _| Ok(Action::await_change())),
        |c| {
            c.owns_stream(child_rx)
                .watches_stream(node_rx, |node: &Node| {
                    node.metadata
                        .labels
                        .get("flavor")
                        .map(|f| vec![ObjectRef::cluster(f.clone())])
                        .unwrap_or_default()
                })
        },
    );
    send(
        &r.feed,
        Event::Restarted(vec![flavor("a", 1), flavor("b", 1)]),
    );
    advance(1.0).await;
    let mut child = Server::new(
        ObjectMeta {
            name: "vm".into(),
            project: Some("demo".into()),
            owner_references: vec![OwnerReference {
                api_version: "cirrus.dev/v1".into(),
                kind: "Flavor".into(),
                name: "a".into(),
                uid: "u".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
        ServerSpec::default(),
    );
    send(&children, Event::Applied(child.clone()));
    advance(1.0).await;
    // An owner of another kind maps to nothing.
    child.metadata.owner_references[0].kind = "Network".into();
    send(&children, Event::Applied(child));
    let mut node = Node::new(ObjectMeta::default(), Default::default());
    node.metadata.name = "n1".into();
    node.metadata.labels.insert("flavor".into(), "b".into());
    send(&nodes, Event::Applied(node.clone()));
    // A mapping to an object that does not exist is dropped.
    node.metadata.labels.insert("flavor".into(), "zzz".into());
    send(&nodes, Event::Applied(node));
    advance(1.0).await;
    approx(&r.ctx.calls_of("a"), &[0.0, 1.0]);
    approx(&r.ctx.calls_of("b"), &[0.0, 2.0]);
    assert!(r.ctx.calls_of("zzz").is_empty());
}

#[tokio::test(start_paused = true)]
async fn leader_gate_pauses_and_aborts_and_resumes() {
    let (gate, gate_rx) = watch::channel(false);
    let r = start_with(
        no_resync(),
        Duration::from_secs(10),
        Box::new(|_, _| Ok(Action::await_change())),
        |c| c.with_leader_gate(gate_rx),
    );
    send(&r.feed, Event::Applied(flavor("a", 1)));
    advance(5.0).await;
    assert_eq!(r.ctx.count(), 0, "not leading: nothing runs");
    gate.send_replace(true);
    advance(1.0).await;
    approx(&r.ctx.calls_of("a"), &[5.0]);
    gate.send_replace(false);
    advance(20.0).await;
    assert_eq!(r.ctx.completed.load(Ordering::SeqCst), 0, "aborted");
    assert_eq!(r.ctx.total.load(Ordering::SeqCst), 0);
    gate.send_replace(true);
    advance(11.0).await;
    approx(&r.ctx.calls_of("a"), &[5.0, 26.0]);
    assert_eq!(r.ctx.completed.load(Ordering::SeqCst), 1);
    drop(gate);
    tokio::time::timeout(Duration::from_secs(1), r.handle)
        .await
        .expect("the controller stops when leader election ends")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn stops_when_the_watch_ends_after_running_reconciles_finish() {
    let r = start(
        no_resync(),
        Duration::from_secs(3),
        Box::new(|_, _| Ok(Action::requeue(Duration::from_secs(1)))),
    );
    send(&r.feed, Event::Applied(flavor("a", 1)));
    advance(1.0).await;
    drop(r.feed);
    tokio::time::timeout(Duration::from_secs(5), r.handle)
        .await
        .expect("stopped")
        .unwrap();
    assert_eq!(r.ctx.completed.load(Ordering::SeqCst), 1);
    assert_eq!(r.ctx.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_signal_stops_the_controller() {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let r = start_with(
        no_resync(),
        Duration::ZERO,
        Box::new(|_, _| Ok(Action::requeue(Duration::from_secs(1)))),
        |c| {
            c.graceful_shutdown_on(async {
                let _ = stopped.await;
            })
        },
    );
    send(&r.feed, Event::Applied(flavor("a", 1)));
    advance(2.5).await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(1), r.handle)
        .await
        .expect("stopped")
        .unwrap();
    assert_eq!(r.ctx.count(), 3);
}
