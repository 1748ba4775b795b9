//! Background compaction: bounds the history the embedded store keeps.
//!
//! # Policy
//! The Kubernetes API server's (`--etcd-compaction-interval`, 5 minutes by default): at every
//! tick the compactor remembers the current revision, and compacts to the revision it
//! remembered at the *previous* tick. So between one and two intervals of history stay
//! readable and watchable (a watcher that falls further behind gets `compact_revision`, which
//! the API turns into `410 Gone`), and an idle store is never compacted twice to the same
//! revision. The interval is [`super::EmbeddedConfig::compaction_interval`] (`None` turns
//! the timer off; the etcd `Compact` RPC keeps working either way).
//!
//! # Steps
//! A compaction is logical first (one tiny write: the compact revision), then physical: the
//! compactor submits [`WriteOp::CompactStep`]s, each removing at most
//! [`super::EmbeddedConfig::compaction_step`] rows in its own write transaction, and yields
//! between them, so client writes queued meanwhile go through between two steps instead of
//! waiting behind the whole compaction. Work left over by a crash or a shutdown is resumed
//! at the next start (the event log below the compact revision *is* the work left).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::apply::CompactProgress;
use super::engine::Engine;
use super::error::EtcdError;
use super::watch::EventHub;
use super::writer::{WriteOp, WriteOutcome, WriterHandle};

/// Default period of the compaction timer (the Kubernetes API server's default).
pub const DEFAULT_COMPACTION_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default number of rows removed per physical compaction step.
pub const DEFAULT_COMPACTION_STEP: usize = 1000;

/// Which revision to compact to at each tick (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Policy {
    /// The current revision seen at the previous tick.
    seen: Option<i64>,
}

impl Policy {
    /// Called at every tick with the current and the compact revision; returns the revision
    /// to compact to, if any.
    pub fn on_tick(&mut self, current: i64, compacted: i64) -> Option<i64> {
        let target = self.seen.replace(current)?;
        (target > compacted).then_some(target)
    }
}

/// What one [`drain`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drained {
    /// Steps submitted.
    pub steps: usize,
    /// Rows removed in all.
    pub removed: usize,
}

/// Run physical compaction steps of at most `step` rows until nothing is left below the
/// compact revision, yielding between steps.
///
/// # Errors
/// Storage failures (the work left stays for the next call).
pub(crate) async fn drain(writer: &WriterHandle, step: usize) -> Result<Drained, EtcdError> {
    let mut total = Drained::default();
    loop {
        let reply = writer.submit(WriteOp::CompactStep(step)).await?;
        let WriteOutcome::CompactStep(CompactProgress { removed, done }) = reply.outcome else {
            return Err(EtcdError::Storage("unexpected writer outcome".into()));
        };
        total.steps += 1;
        total.removed += removed;
        if done {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// The background compaction task of one server.
pub(crate) struct Compactor {
    pub engine: Arc<Engine>,
    pub writer: WriterHandle,
    pub hub: EventHub,
    /// Notified after every logical compaction (the RPC's), to start the physical steps.
    pub wake: Arc<Notify>,
    pub interval: Option<Duration>,
    pub step: usize,
}

impl Compactor {
    /// Run until aborted: resume leftover work, then compact on every tick and after every
    /// `Compact` RPC.
    pub async fn run(self) {
        let mut policy = Policy::default();
        let mut ticker = self.interval.filter(|p| !p.is_zero()).map(|p| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            match drain(&self.writer, self.step).await {
                Ok(d) if d.removed > 0 => {
                    info!(rows = d.removed, steps = d.steps, "compacted store history");
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "physical compaction failed; retrying later"),
            }
            let tick = async {
                match ticker.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tick => self.on_tick(&mut policy).await,
            }
        }
    }

    async fn on_tick(&self, policy: &mut Policy) {
        let compacted = match self.engine.snapshot() {
            Ok(s) => s.compact,
            Err(e) => {
                warn!(error = %e, "cannot read the compact revision");
                return;
            }
        };
        let Some(target) = policy.on_tick(self.hub.current_rev(), compacted) else {
            return;
        };
        match self.writer.submit(WriteOp::Compact(target)).await {
            Ok(_) => debug!(revision = target, "compacted"),
            // Someone compacted further meanwhile (the RPC): nothing to do.
            Err(EtcdError::Compacted) => {}
            Err(e) => warn!(error = %e, revision = target, "compaction failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use etcd_client::proto::{PbDeleteRequest, PbPutRequest, PbRangeRequest};
    use redb::{ReadableDatabase, ReadableTableMetadata};

    use super::*;
    use crate::embedded::error::EtcdError;
    use crate::embedded::lease::LeaseClock;
    use crate::embedded::read;
    use crate::embedded::schema::{EVENTS, HISTORY};
    use crate::embedded::writer;

    #[test]
    fn policy_compacts_to_the_revision_seen_one_tick_ago() {
        let mut p = Policy::default();
        assert_eq!(p.on_tick(10, 0), None, "first tick only remembers");
        assert_eq!(p.on_tick(25, 0), Some(10));
        assert_eq!(p.on_tick(25, 10), Some(25));
        assert_eq!(
            p.on_tick(25, 25),
            None,
            "an idle store is not compacted again"
        );
        assert_eq!(p.on_tick(40, 30), None, "already compacted past it (RPC)");
        assert_eq!(p.on_tick(41, 30), Some(40));
    }

    /// The store's whole state at one revision: key → (value, mod revision, version).
    type State = BTreeMap<Vec<u8>, (Vec<u8>, i64, i64)>;

    struct Harness {
        engine: Arc<Engine>,
        writer: WriterHandle,
        /// State after each revision.
        model: BTreeMap<i64, State>,
        state: State,
    }

    impl Harness {
        fn new() -> Harness {
            let engine = Arc::new(Engine::open(None).unwrap());
            let hub = EventHub::new(1);
            let (writer, _thread) =
                writer::spawn(engine.clone(), hub, Arc::new(LeaseClock::default()));
            let mut model = BTreeMap::new();
            model.insert(1, State::new());
            Harness {
                engine,
                writer,
                model,
                state: State::new(),
            }
        }

        async fn put(&mut self, key: &str, value: &str) -> i64 {
            let rev = self
                .writer
                .submit(WriteOp::Put(PbPutRequest {
                    key: key.into(),
                    value: value.into(),
                    ..Default::default()
                }))
                .await
                .unwrap()
                .rev;
            let version = self.state.get(key.as_bytes()).map_or(0, |v| v.2) + 1;
            self.state.insert(key.into(), (value.into(), rev, version));
            self.model.insert(rev, self.state.clone());
            rev
        }

        async fn delete(&mut self, key: &str) -> i64 {
            let rev = self
                .writer
                .submit(WriteOp::Delete(PbDeleteRequest {
                    key: key.into(),
                    ..Default::default()
                }))
                .await
                .unwrap()
                .rev;
            self.state.remove(key.as_bytes());
            self.model.insert(rev, self.state.clone());
            rev
        }

        fn read_at(&self, rev: i64) -> Result<State, EtcdError> {
            let snap = self.engine.snapshot()?;
            let resp = read::range(
                &snap.kv,
                &snap.hist,
                &PbRangeRequest {
                    key: vec![0],
                    range_end: vec![0],
                    revision: rev,
                    ..Default::default()
                },
                snap.current,
                snap.compact,
            )?;
            Ok(resp
                .kvs
                .into_iter()
                .map(|kv| (kv.key, (kv.value, kv.mod_revision, kv.version)))
                .collect())
        }

        /// Every revision from `from` to the current one reads exactly as written.
        fn check_reads_from(&self, from: i64) {
            let current = *self.model.keys().next_back().unwrap();
            for rev in from..=current {
                let expected = self.model.range(..=rev).next_back().unwrap().1;
                assert_eq!(&self.read_at(rev).unwrap(), expected, "read at {rev}");
            }
        }

        /// `(history rows, event rows below rev)`.
        fn rows(&self, below: i64) -> (u64, usize) {
            let r = self.engine.db.begin_read().unwrap();
            let hist = r.open_table(HISTORY).unwrap().len().unwrap();
            let events = r.open_table(EVENTS).unwrap();
            let old = events
                .range((0u64, 0u32)..(below as u64, 0u32))
                .unwrap()
                .count();
            (hist, old)
        }
    }

    #[tokio::test]
    async fn chunked_compaction_bounds_history_and_interleaves_with_writes() {
        let mut h = Harness::new();
        // 5 keys × 60 versions, one key deleted (a tombstone below C), one deleted and
        // re-created.
        for i in 0..300 {
            h.put(&format!("k{}", i % 5), &format!("v{i}")).await;
        }
        h.delete("k3").await;
        h.delete("k4").await;
        h.put("k4", "again").await;
        let c = h.put("k0", "at-c").await;
        for i in 0..20 {
            h.put(&format!("k{}", i % 3), &format!("after{i}")).await;
        }
        let (hist_before, _) = h.rows(c);
        assert!(hist_before > 300);

        h.writer.submit(WriteOp::Compact(c)).await.unwrap();
        assert_eq!(h.read_at(c - 1), Err(EtcdError::Compacted));
        h.check_reads_from(c);

        // Physical compaction in steps of at most 16 rows, a client write between steps.
        let mut steps = 0;
        loop {
            let reply = h.writer.submit(WriteOp::CompactStep(16)).await.unwrap();
            let WriteOutcome::CompactStep(p) = reply.outcome else {
                panic!("unexpected outcome");
            };
            assert!(p.removed <= 16, "a step stays within its budget");
            steps += 1;
            h.put("k1", &format!("during{steps}")).await;
            h.check_reads_from(c);
            if p.done {
                break;
            }
            assert!(p.removed > 0, "an unfinished step makes progress");
        }
        assert!(steps > 10, "compaction ran in many small steps ({steps})");

        let (hist_after, old_events) = h.rows(c);
        assert_eq!(
            old_events, 0,
            "no event row below the compact revision is left"
        );
        // Left per key: its last entry <= C (none for k3, deleted below C), plus everything
        // written after C.
        let after_c = 20 + steps as u64;
        assert_eq!(hist_after, 4 + after_c, "history is bounded");
        assert_eq!(h.read_at(c - 1), Err(EtcdError::Compacted));
        h.check_reads_from(c);

        // Nothing left: a further drain is one empty step.
        let d = drain(&h.writer, 16).await.unwrap();
        assert_eq!(
            d,
            Drained {
                steps: 1,
                removed: 0
            }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drain_runs_while_clients_write() {
        let mut h = Harness::new();
        for i in 0..500 {
            h.put(&format!("w{}", i % 4), &format!("{i}")).await;
        }
        let c = h.put("w0", "c").await;
        h.writer.submit(WriteOp::Compact(c)).await.unwrap();
        let writer = h.writer.clone();
        let compaction = tokio::spawn(async move { drain(&writer, 8).await.unwrap() });
        // Client writes while the compaction is being drained: every one is acknowledged.
        let mut last = c;
        for i in 0..100 {
            let rev = h.put("w1", &format!("live{i}")).await;
            assert!(rev > last);
            last = rev;
        }
        let d = compaction.await.unwrap();
        assert!(d.steps > 50, "{d:?}");
        let d = drain(&h.writer, 8).await.unwrap();
        assert_eq!(d.removed, 0);
        h.check_reads_from(c);
        assert_eq!(h.rows(c).1, 0);
    }
}
