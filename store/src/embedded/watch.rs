//! Watches: the event hub fed by the writer and the etcd `Watch` gRPC service.
//!
//! # Design
//! The writer publishes every committed revision ([`RevEvents`]) on a broadcast channel
//! *before* acknowledging the write. Each gRPC watch stream runs one task that owns all of the
//! stream's watchers and a `synced` revision: every event `<= synced` has already been
//! dispatched to every watcher of the stream.
//!
//! - The task subscribes to the broadcast first and only then reads `synced` from a snapshot,
//!   so every revision is either `<= synced` or still to come on the channel: no gap. Channel
//!   items `<= synced` are skipped: no duplicate.
//! - A new watcher with `start_revision <= synced` replays `[start, synced]` from the event log
//!   of a snapshot, then receives live revisions `> synced` (filtered by `rev >= start`).
//! - If the task falls behind the channel (lagged), it replays the missed revisions from the
//!   event log; if they were compacted meanwhile, its watchers are cancelled with
//!   `compact_revision`, as etcd does for a slow watcher.
//! - Progress (requested or periodic) reports `synced` after draining the channel, so
//!   "every event up to the header revision has been sent" holds.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use etcd_client::proto::{
    PbEvent, PbWatchRequest, PbWatchRequestUnion, PbWatchResponse, PbWatchService,
};
use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use super::apply::{EVENT_DELETE, EVENT_PUT, RevEvents};
use super::engine::Snapshot;
use super::error::EtcdError;
use super::read;
use super::schema::{KeyRange, Record};
use super::server::Core;

/// Revisions buffered per subscriber before it must catch up from the event log.
const HUB_CAPACITY: usize = 16 * 1024;
/// Events per replayed response (a revision is never split).
const REPLAY_CHUNK: usize = 1000;
/// etcd's filter type NOPUT.
const FILTER_NOPUT: i32 = 0;
/// etcd's filter type NODELETE.
const FILTER_NODELETE: i32 = 1;

/// Broadcast of committed revisions, plus the latest published revision.
#[derive(Clone, Debug)]
pub(crate) struct EventHub {
    tx: broadcast::Sender<Arc<RevEvents>>,
    rev: Arc<AtomicI64>,
}

impl EventHub {
    /// A hub whose current revision starts at `rev`.
    pub fn new(rev: i64) -> EventHub {
        let (tx, _) = broadcast::channel(HUB_CAPACITY);
        EventHub {
            tx,
            rev: Arc::new(AtomicI64::new(rev)),
        }
    }

    /// Publish one committed revision (called by the writer, in revision order).
    pub fn publish(&self, ev: RevEvents) {
        self.rev.store(ev.rev, Ordering::Release);
        let _ = self.tx.send(Arc::new(ev));
    }

    /// The latest committed revision.
    pub fn current_rev(&self) -> i64 {
        self.rev.load(Ordering::Acquire)
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<RevEvents>> {
        self.tx.subscribe()
    }
}

/// The etcd `Watch` gRPC service.
#[derive(Clone)]
pub(crate) struct WatchService {
    pub core: Arc<Core>,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<PbWatchResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl PbWatchService for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<Streaming<PbWatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(256);
        let core = self.core.clone();
        let rx_events = core.hub.subscribe();
        let synced = core.engine.snapshot()?.current;
        let stream = WatchStreamTask {
            core,
            out: tx,
            synced,
            watchers: Vec::new(),
            next_id: 0,
        };
        tokio::spawn(stream.run(inbound, rx_events));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[derive(Debug)]
struct Watcher {
    id: i64,
    range: KeyRange,
    start: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
}

impl Watcher {
    fn wants(&self, ev: &PbEvent) -> bool {
        let key = ev
            .kv
            .as_ref()
            .map(|kv| kv.key.as_slice())
            .unwrap_or_default();
        self.range.contains(key)
            && !(self.no_put && ev.r#type == EVENT_PUT)
            && !(self.no_delete && ev.r#type == EVENT_DELETE)
    }

    /// This watcher's view of some consecutive revisions.
    fn select<'a>(&self, revs: impl IntoIterator<Item = &'a RevEvents>) -> Vec<PbEvent> {
        let mut out = Vec::new();
        for r in revs {
            if r.rev < self.start {
                continue;
            }
            for ev in &r.events {
                if self.wants(ev) {
                    let mut ev = ev.clone();
                    if !self.prev_kv {
                        ev.prev_kv = None;
                    }
                    out.push(ev);
                }
            }
        }
        out
    }
}

/// Disconnected client: stop the task.
struct Gone;

struct WatchStreamTask {
    core: Arc<Core>,
    out: mpsc::Sender<Result<PbWatchResponse, Status>>,
    synced: i64,
    watchers: Vec<Watcher>,
    next_id: i64,
}

impl WatchStreamTask {
    async fn run(
        mut self,
        mut inbound: Streaming<PbWatchRequest>,
        mut rx: broadcast::Receiver<Arc<RevEvents>>,
    ) {
        let period = self.core.progress_notify_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut stopping = self.core.stopping.clone();
        loop {
            let step = tokio::select! {
                biased;
                _ = stopping.changed() => Err(Gone),
                ev = rx.recv() => match ev {
                    Ok(ev) => self.on_live(ev).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        debug!(missed = n, "watch stream lagged; replaying from the event log");
                        self.catch_up(None).await
                    }
                    Err(broadcast::error::RecvError::Closed) => Err(Gone),
                },
                msg = inbound.message() => match msg {
                    Ok(Some(req)) => self.on_request(req).await,
                    _ => Err(Gone),
                },
                _ = ticker.tick() => self.on_tick().await,
            };
            if step.is_err() {
                return;
            }
        }
    }

    fn header(&self, rev: i64) -> Option<etcd_client::proto::PbResponseHeader> {
        Some(self.core.header(rev))
    }

    async fn send(&self, resp: PbWatchResponse) -> Result<(), Gone> {
        self.out.send(Ok(resp)).await.map_err(|_| Gone)
    }

    async fn on_live(&mut self, ev: Arc<RevEvents>) -> Result<(), Gone> {
        if ev.rev <= self.synced {
            return Ok(());
        }
        if ev.rev > self.synced + 1 {
            // Cannot happen with a gap-free writer; stay correct anyway.
            self.catch_up(Some(ev.rev - 1)).await?;
        }
        for w in &self.watchers {
            let events = w.select([ev.as_ref()]);
            if !events.is_empty() {
                self.send(PbWatchResponse {
                    header: self.header(ev.rev),
                    watch_id: w.id,
                    events,
                    ..Default::default()
                })
                .await?;
            }
        }
        self.synced = ev.rev;
        Ok(())
    }

    /// Replay `(synced, upto]` (default: up to the snapshot's revision) to every watcher.
    async fn catch_up(&mut self, upto: Option<i64>) -> Result<(), Gone> {
        let snap = match self.core.engine.snapshot() {
            Ok(s) => s,
            Err(e) => {
                let _ = self.out.send(Err(e.to_status())).await;
                return Err(Gone);
            }
        };
        let upto = upto.unwrap_or(snap.current).min(snap.current);
        if upto <= self.synced {
            return Ok(());
        }
        if self.synced + 1 < snap.compact {
            for w in std::mem::take(&mut self.watchers) {
                self.send(compacted(self.header(snap.current), w.id, snap.compact))
                    .await?;
            }
            self.synced = upto;
            return Ok(());
        }
        let idx: Vec<usize> = (0..self.watchers.len()).collect();
        self.replay(&snap, self.synced + 1, upto, &idx).await?;
        self.synced = upto;
        Ok(())
    }

    /// Send the events of revisions `[from, to]` from the event log to the given watchers.
    async fn replay(
        &self,
        snap: &Snapshot,
        from: i64,
        to: i64,
        watchers: &[usize],
    ) -> Result<(), Gone> {
        if from > to || watchers.is_empty() {
            return Ok(());
        }
        let mut chunk: Vec<RevEvents> = Vec::new();
        let mut n = 0usize;
        let lo = (from as u64, 0u32);
        let hi = ((to + 1) as u64, 0u32);
        let iter = match snap.events.range(lo..hi) {
            Ok(it) => it,
            Err(e) => return self.fail(EtcdError::from(e)).await,
        };
        for item in iter {
            let ev = match item.map_err(EtcdError::from).and_then(|(k, key)| {
                let (rev, _) = k.value();
                rebuild_event(snap, key.value(), rev).map(|ev| (rev as i64, ev))
            }) {
                Ok(x) => x,
                Err(e) => return self.fail(e).await,
            };
            let (rev, ev) = ev;
            if chunk.last().is_none_or(|c| c.rev != rev) {
                if n >= REPLAY_CHUNK {
                    self.send_chunk(&chunk, watchers).await?;
                    chunk.clear();
                    n = 0;
                }
                chunk.push(RevEvents {
                    rev,
                    events: Vec::new(),
                });
            }
            if let (Some(c), Some(ev)) = (chunk.last_mut(), ev) {
                c.events.push(ev);
                n += 1;
            }
        }
        self.send_chunk(&chunk, watchers).await
    }

    async fn send_chunk(&self, chunk: &[RevEvents], watchers: &[usize]) -> Result<(), Gone> {
        let Some(last) = chunk.last() else {
            return Ok(());
        };
        for &i in watchers {
            let w = &self.watchers[i];
            let events = w.select(chunk);
            if !events.is_empty() {
                self.send(PbWatchResponse {
                    header: self.header(last.rev),
                    watch_id: w.id,
                    events,
                    ..Default::default()
                })
                .await?;
            }
        }
        Ok(())
    }

    async fn fail(&self, e: EtcdError) -> Result<(), Gone> {
        let _ = self.out.send(Err(e.to_status())).await;
        Err(Gone)
    }

    async fn on_request(&mut self, req: PbWatchRequest) -> Result<(), Gone> {
        match req.request_union {
            Some(PbWatchRequestUnion::CreateRequest(c)) => {
                let id = if c.watch_id != 0 {
                    if self.watchers.iter().any(|w| w.id == c.watch_id) {
                        return self
                            .send(PbWatchResponse {
                                header: self.header(self.synced),
                                watch_id: c.watch_id,
                                created: true,
                                canceled: true,
                                cancel_reason: "etcdserver: watcher ID already in use".to_string(),
                                ..Default::default()
                            })
                            .await;
                    }
                    c.watch_id
                } else {
                    while self.watchers.iter().any(|w| w.id == self.next_id) {
                        self.next_id += 1;
                    }
                    self.next_id += 1;
                    self.next_id - 1
                };
                let snap = match self.core.engine.snapshot() {
                    Ok(s) => s,
                    Err(e) => return self.fail(e).await,
                };
                let w = Watcher {
                    id,
                    range: KeyRange::new(&c.key, &c.range_end),
                    start: if c.start_revision > 0 {
                        c.start_revision
                    } else {
                        snap.current + 1
                    },
                    no_put: c.filters.contains(&FILTER_NOPUT),
                    no_delete: c.filters.contains(&FILTER_NODELETE),
                    prev_kv: c.prev_kv,
                    progress_notify: c.progress_notify,
                };
                debug!(watch_id = id, start = w.start, "watch created");
                self.send(PbWatchResponse {
                    header: self.header(snap.current),
                    watch_id: id,
                    created: true,
                    ..Default::default()
                })
                .await?;
                if c.start_revision > 0 && c.start_revision < snap.compact {
                    return self
                        .send(compacted(self.header(snap.current), id, snap.compact))
                        .await;
                }
                let start = w.start;
                self.watchers.push(w);
                if start <= self.synced {
                    let idx = [self.watchers.len() - 1];
                    self.replay(&snap, start, self.synced, &idx).await?;
                }
                Ok(())
            }
            Some(PbWatchRequestUnion::CancelRequest(c)) => {
                self.watchers.retain(|w| w.id != c.watch_id);
                self.send(PbWatchResponse {
                    header: self.header(self.synced),
                    watch_id: c.watch_id,
                    canceled: true,
                    ..Default::default()
                })
                .await
            }
            Some(PbWatchRequestUnion::ProgressRequest(_)) => {
                // etcd 3.4: one response for the stream, watch ID -1.
                self.send(PbWatchResponse {
                    header: self.header(self.synced),
                    watch_id: -1,
                    ..Default::default()
                })
                .await
            }
            None => Ok(()),
        }
    }

    async fn on_tick(&mut self) -> Result<(), Gone> {
        for w in &self.watchers {
            if w.progress_notify {
                self.send(PbWatchResponse {
                    header: self.header(self.synced),
                    watch_id: w.id,
                    ..Default::default()
                })
                .await?;
            }
        }
        Ok(())
    }
}

fn compacted(
    header: Option<etcd_client::proto::PbResponseHeader>,
    watch_id: i64,
    compact: i64,
) -> PbWatchResponse {
    PbWatchResponse {
        header,
        watch_id,
        canceled: true,
        compact_revision: compact,
        cancel_reason: EtcdError::Compacted.to_string(),
        ..Default::default()
    }
}

/// Rebuild the event at `(key, rev)` from history (with `prev_kv` when still available).
fn rebuild_event(snap: &Snapshot, key: &[u8], rev: u64) -> Result<Option<PbEvent>, EtcdError> {
    let Some(rec) = snap.hist.get((key, rev))? else {
        return Ok(None);
    };
    let rec = Record::decode(rec.value());
    let prev = read::get_before(&snap.hist, key, rev)?
        .filter(|p| !p.is_tombstone())
        .map(|p| p.to_kv(key));
    Ok(Some(if rec.is_tombstone() {
        PbEvent {
            r#type: EVENT_DELETE,
            kv: Some(etcd_client::proto::PbKeyValue {
                key: key.to_vec(),
                mod_revision: rev as i64,
                ..Default::default()
            }),
            prev_kv: prev,
        }
    } else {
        PbEvent {
            r#type: EVENT_PUT,
            kv: Some(rec.to_kv(key)),
            prev_kv: prev,
        }
    }))
}
