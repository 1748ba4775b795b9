//! The controller: watch → cache → work queue → reconcile, for one kind.
//!
//! # Expected flow
//! 1. The main watcher feeds the reflector cache; every applied or listed object is queued.
//! 2. Secondary watches ([`Controller::watches`], [`Controller::owns`]) map changes of other
//!    kinds to objects of this kind and queue those.
//! 3. Every `resync` period every cached object is queued again (level-triggered: a missed
//!    event or drift outside the store is corrected within one period).
//! 4. A queued object whose turn has come is looked up in the cache — a deleted object is not
//!    there and is skipped — and `reconcile(latest object, ctx)` runs in its own task.
//! 5. The returned [`Action`] requeues it after a delay, after its backoff delay, or waits for
//!    the next change; on error `error_policy` decides.
//!
//! # Guarantees
//! - Never two reconciles of one object at once; a trigger during a reconcile makes it run
//!   once more afterwards. At most `concurrency` reconciles run at once.
//! - Triggers are deduplicated per object; of several requeues, the earliest wins.
//! - The reconciler gets the newest cached object, never the event, and never learns why it
//!   was woken: the reason ([`ReconcileReason`]) is in the `reconcile{kind, object, reason}`
//!   tracing span only. This forces idempotent, level-triggered reconcilers.
//! - After an object's delete event it is not reconciled again (unless it is recreated).
//! - Per-object backoff ([`Action::backoff`]) grows with consecutive failures and is reset
//!   by a success.
//! - With a leadership gate ([`Controller::with_leader_gate`]) nothing is reconciled while the
//!   gate is closed; closing it aborts running reconciles (they run again once it reopens).
//!
//! # Caveats
//! Work still queued when the controller stops is dropped; the next process relists and
//! queues everything again.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cirrus_client::{Api, ClientError};
use cirrus_crds::{Resource, Scope};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use super::backoff::{Backoff, ExponentialBackoff};
use super::object_ref::ObjectRef;
use super::queue::WorkQueue;
use super::reflector::{Store, Writer};
use super::watcher::{self, Event};

/// What the runtime should do with an object after a reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action(Next);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    After(Duration),
    Backoff,
    AwaitChange,
}

impl Action {
    /// Reconcile again after `delay` (or sooner if something changes).
    pub fn requeue(delay: Duration) -> Self {
        Self(Next::After(delay))
    }

    /// Reconcile again only when something changes (or at the next resync).
    pub fn await_change() -> Self {
        Self(Next::AwaitChange)
    }

    /// Reconcile again after this object's next backoff delay (800 ms → 30 s by default,
    /// reset after a success): the usual answer of an `error_policy`.
    pub fn backoff() -> Self {
        Self(Next::Backoff)
    }

    /// The fixed delay, for [`Action::requeue`].
    pub fn requeue_after(&self) -> Option<Duration> {
        match self.0 {
            Next::After(d) => Some(d),
            _ => None,
        }
    }
}

/// Why a reconcile was triggered; recorded in the tracing span, hidden from the reconciler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReconcileReason {
    /// The object was listed, created or changed.
    ObjectChanged,
    /// An object of another kind that maps to this one changed.
    RelatedObjectChanged {
        /// Its kind.
        kind: &'static str,
        /// Which one.
        object: ObjectRef,
    },
    /// The previous reconcile asked for it ([`Action::requeue`]).
    Requeued,
    /// Retry after a failed reconcile.
    ErrorBackoff,
    /// The periodic resync.
    Resync,
    /// A reconcile was aborted (leadership lost) and is run again.
    Interrupted,
}

impl fmt::Display for ReconcileReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReconcileReason::ObjectChanged => f.write_str("object changed"),
            ReconcileReason::RelatedObjectChanged { kind, object } => {
                write!(f, "related {kind} {object} changed")
            }
            ReconcileReason::Requeued => f.write_str("requeued"),
            ReconcileReason::ErrorBackoff => f.write_str("error backoff"),
            ReconcileReason::Resync => f.write_str("resync"),
            ReconcileReason::Interrupted => f.write_str("interrupted"),
        }
    }
}

/// Tuning of a controller.
#[derive(Clone, Debug)]
pub struct Config {
    /// Most reconciles running at once (across objects). Default 16.
    pub concurrency: usize,
    /// Every cached object is queued again this often; `None` disables resync. Default 30 s.
    pub resync: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            concurrency: 16,
            resync: Some(Duration::from_secs(30)),
        }
    }
}

type Triggers = BoxStream<'static, Vec<(ObjectRef, ReconcileReason)>>;
type BackoffFactory = Arc<dyn Fn() -> Box<dyn Backoff> + Send + Sync>;

/// A controller of kind `K`; build it, then [`Controller::run`] it.
pub struct Controller<K: Resource> {
    main: BoxStream<'static, Result<Event<K>, ClientError>>,
    writer: Writer<K>,
    store: Store<K>,
    triggers: Vec<Triggers>,
    config: Config,
    backoff: BackoffFactory,
    gate: Option<watch::Receiver<bool>>,
    shutdown: Option<BoxFuture<'static, ()>>,
}

impl<K: Resource> Controller<K> {
    /// A controller of the objects `api` sees (optionally label-filtered by `config`).
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        Self::for_stream(watcher::watcher(api, config))
    }

    /// A controller fed by any stream of watcher events — a hand-fed one in tests.
    pub fn for_stream(
        stream: impl Stream<Item = Result<Event<K>, ClientError>> + Send + 'static,
    ) -> Self {
        let writer = Writer::new();
        let store = writer.as_reader();
        Self {
            main: stream.boxed(),
            writer,
            store,
            triggers: Vec::new(),
            config: Config::default(),
            backoff: Arc::new(|| Box::new(ExponentialBackoff::default())),
            gate: None,
            shutdown: None,
        }
    }

    /// Sets concurrency and resync.
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Uses `factory` to make each object's [`Backoff`] (default [`ExponentialBackoff`]).
    pub fn with_backoff<B: Backoff + 'static>(
        mut self,
        factory: impl Fn() -> B + Send + Sync + 'static,
    ) -> Self {
        self.backoff = Arc::new(move || Box::new(factory()));
        self
    }

    /// Reconciles only while `gate` holds `true` (leader election: see
    /// [`super::leader::LeaderElector::subscribe`]). When the gate's sender is dropped the
    /// controller stops.
    pub fn with_leader_gate(mut self, gate: watch::Receiver<bool>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Stops the controller when `signal` completes (running reconciles finish first).
    pub fn graceful_shutdown_on(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.shutdown = Some(signal.boxed());
        self
    }

    /// The controller's cache of `K`, for reconcilers (through their context) and tests.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Also reconciles the objects `mapper` names whenever an `O` changes.
    pub fn watches<O: Resource>(
        self,
        api: Api<O>,
        config: watcher::Config,
        mapper: impl Fn(&O) -> Vec<ObjectRef> + Send + Sync + 'static,
    ) -> Self {
        self.watches_stream(watcher::watcher(api, config), mapper)
    }

    /// [`Controller::watches`] from any stream of watcher events.
    pub fn watches_stream<O: Resource>(
        mut self,
        stream: impl Stream<Item = Result<Event<O>, ClientError>> + Send + 'static,
        mapper: impl Fn(&O) -> Vec<ObjectRef> + Send + Sync + 'static,
    ) -> Self {
        let map_one = move |o: &O| {
            let related = ObjectRef::from_obj(o);
            mapper(o)
                .into_iter()
                .map(|target| {
                    let reason = ReconcileReason::RelatedObjectChanged {
                        kind: O::KIND,
                        object: related.clone(),
                    };
                    (target, reason)
                })
                .collect::<Vec<_>>()
        };
        let triggers = stream.filter_map(move |event| {
            let refs = match event {
                Ok(Event::Restarted(objects)) => objects.iter().flat_map(&map_one).collect(),
                Ok(Event::Applied(o) | Event::Deleted(o)) => map_one(&o),
                Err(err) => {
                    tracing::warn!(kind = O::KIND, error = %err, "secondary watch failed");
                    Vec::new()
                }
            };
            futures::future::ready((!refs.is_empty()).then_some(refs))
        });
        self.triggers.push(triggers.boxed());
        self
    }

    /// Also reconciles the owner (of kind `K`, through `ownerReferences`) of every `C` that
    /// changes.
    pub fn owns<C: Resource>(self, api: Api<C>, config: watcher::Config) -> Self {
        self.owns_stream(watcher::watcher(api, config))
    }

    /// [`Controller::owns`] from any stream of watcher events.
    pub fn owns_stream<C: Resource>(
        self,
        stream: impl Stream<Item = Result<Event<C>, ClientError>> + Send + 'static,
    ) -> Self {
        self.watches_stream(stream, owners::<K, C>)
    }

    /// Runs until the main watch stream ends, the shutdown signal fires or the leadership
    /// gate's sender is dropped; then waits for running reconciles and returns.
    ///
    /// `reconcile` brings the world in line with the latest object; `error_policy` maps a
    /// reconcile error to the next [`Action`] (typically [`Action::backoff`]).
    pub async fn run<Ctx, E, R, Fut, P>(self, reconcile: R, error_policy: P, ctx: Arc<Ctx>)
    where
        Ctx: Send + Sync + 'static,
        E: fmt::Display + Send + 'static,
        R: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(Arc<K>, &E, Arc<Ctx>) -> Action + Send + Sync + 'static,
    {
        let Controller {
            mut main,
            mut writer,
            store,
            triggers,
            config,
            backoff,
            mut gate,
            shutdown,
        } = self;
        let reconcile = Arc::new(reconcile);
        let error_policy = Arc::new(error_policy);
        let mut triggers: SelectAll<Triggers> = futures::stream::select_all(triggers);
        let mut triggers_open = !triggers.is_empty();
        let mut shutdown = shutdown.unwrap_or_else(|| futures::future::pending().boxed());
        let mut queue: WorkQueue<ReconcileReason> = WorkQueue::new(config.concurrency);
        let mut backoffs: HashMap<ObjectRef, Box<dyn Backoff>> = HashMap::new();
        let mut tasks: JoinSet<(bool, Action)> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, ObjectRef> = HashMap::new();
        let mut resync = config.resync.map(|period| {
            let mut interval = tokio::time::interval_at(Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        let mut leading = gate.as_ref().is_none_or(|g| *g.borrow());
        let mut stopping = false;

        loop {
            if leading && !stopping {
                let now = Instant::now();
                while let Some((key, reason)) = queue.pop_ready(now) {
                    let Some(obj) = store.get(&key) else {
                        queue.finish(&key);
                        backoffs.remove(&key);
                        continue;
                    };
                    let span = tracing::info_span!(
                        "reconcile",
                        kind = K::KIND,
                        object = %key,
                        reason = %reason
                    );
                    let fut = reconcile(obj.clone(), ctx.clone());
                    let error_policy = error_policy.clone();
                    let ctx = ctx.clone();
                    let task = async move {
                        match fut.await {
                            Ok(action) => {
                                tracing::debug!(?action, "reconciled");
                                (true, action)
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "reconcile failed");
                                (false, error_policy(obj, &err, ctx))
                            }
                        }
                    };
                    let handle = tasks.spawn(task.instrument(span));
                    running.insert(handle.id(), key);
                }
            }
            if stopping && tasks.is_empty() {
                return;
            }
            let next_due = if leading && !stopping {
                queue.next_due()
            } else {
                None
            };

            tokio::select! {
                event = main.next(), if !stopping => match event {
                    Some(Ok(event)) => {
                        writer.apply(&event);
                        match event {
                            Event::Restarted(objects) => {
                                let now = Instant::now();
                                backoffs.retain(|key, _| store.get(key).is_some());
                                for o in &objects {
                                    queue.schedule(ObjectRef::from_obj(o), now, ReconcileReason::ObjectChanged);
                                }
                            }
                            Event::Applied(o) => {
                                queue.schedule(ObjectRef::from_obj(&o), Instant::now(), ReconcileReason::ObjectChanged);
                            }
                            Event::Deleted(o) => {
                                let key = ObjectRef::from_obj(&o);
                                queue.forget(&key);
                                backoffs.remove(&key);
                            }
                        }
                    }
                    Some(Err(err)) => tracing::warn!(kind = K::KIND, error = %err, "watch failed"),
                    None => {
                        tracing::debug!(kind = K::KIND, "watch ended; stopping");
                        stopping = true;
                    }
                },
                refs = triggers.next(), if triggers_open && !stopping => match refs {
                    Some(refs) => {
                        let now = Instant::now();
                        for (key, reason) in refs {
                            if store.get(&key).is_some() {
                                queue.schedule(key, now, reason);
                            }
                        }
                    }
                    None => triggers_open = false,
                },
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let (id, outcome) = match joined {
                        Ok((id, outcome)) => (id, Ok(outcome)),
                        Err(err) => (err.id(), Err(err)),
                    };
                    let key = running.remove(&id).expect("every task is tracked");
                    queue.finish(&key);
                    let now = Instant::now();
                    let exists = store.get(&key).is_some();
                    let (action, reason) = match outcome {
                        Ok((true, action)) => {
                            backoffs.remove(&key);
                            (action, ReconcileReason::Requeued)
                        }
                        Ok((false, action)) => (action, ReconcileReason::ErrorBackoff),
                        Err(err) if err.is_cancelled() => {
                            (Action::requeue(Duration::ZERO), ReconcileReason::Interrupted)
                        }
                        Err(err) => {
                            tracing::error!(kind = K::KIND, object = %key, error = %err, "reconcile panicked");
                            (Action::backoff(), ReconcileReason::ErrorBackoff)
                        }
                    };
                    if !exists {
                        backoffs.remove(&key);
                    } else {
                        match action.0 {
                            Next::After(delay) => queue.schedule(key, now + delay, reason),
                            Next::Backoff => {
                                let delay = backoffs
                                    .entry(key.clone())
                                    .or_insert_with(|| backoff())
                                    .next_delay();
                                queue.schedule(key, now + delay, reason);
                            }
                            Next::AwaitChange => {}
                        }
                    }
                },
                _ = sleep_until(next_due) => {},
                _ = tick(&mut resync), if !stopping => {
                    let now = Instant::now();
                    for key in store.keys() {
                        queue.schedule(key, now, ReconcileReason::Resync);
                    }
                },
                changed = gate_changed(&mut gate), if gate.is_some() && !stopping => {
                    match changed {
                        Some(now_leading) => {
                            if leading && !now_leading {
                                tracing::warn!(kind = K::KIND, "leadership lost; pausing reconciles");
                                tasks.abort_all();
                            } else if !leading && now_leading {
                                tracing::info!(kind = K::KIND, "leading; resuming reconciles");
                            }
                            leading = now_leading;
                        }
                        None => {
                            tracing::warn!(kind = K::KIND, "leader election ended; stopping");
                            tasks.abort_all();
                            leading = false;
                            stopping = true;
                        }
                    }
                },
                _ = &mut shutdown, if !stopping => {
                    tracing::info!(kind = K::KIND, "shutting down");
                    stopping = true;
                },
            }
        }
    }
}

/// The objects of kind `K` that own `child` (through its `ownerReferences`).
pub fn owners<K: Resource, C: Resource>(child: &C) -> Vec<ObjectRef> {
    let meta = child.meta();
    meta.owner_references
        .iter()
        .filter(|o| o.kind == K::KIND)
        .map(|o| ObjectRef {
            project: match K::SCOPE {
                Scope::Project => meta.project.clone(),
                Scope::Cluster => None,
            },
            name: o.name.clone(),
        })
        .collect()
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => futures::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => futures::future::pending().await,
    }
}

/// The gate's next value, `None` once its sender is gone.
async fn gate_changed(gate: &mut Option<watch::Receiver<bool>>) -> Option<bool> {
    let g = gate.as_mut()?;
    match g.changed().await {
        Ok(()) => Some(*g.borrow_and_update()),
        Err(_) => {
            *gate = None;
            None
        }
    }
}
