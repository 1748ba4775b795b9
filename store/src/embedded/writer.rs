//! The single writer with group commit.
//!
//! Every mutation goes through one OS thread that owns all redb write transactions. It
//! blocks for the first queued request, then drains whatever else is queued (up to
//! [`MAX_BATCH`]) and applies the whole batch in ONE write transaction committed with
//! `Durability::Immediate` (fsync). When the previous batch had `n` requests, the clients it
//! just acknowledged are likely to come straight back, so the writer waits up to
//! [`GATHER_WINDOW`] for the batch to reach `n` again before committing; a lone client
//! (`n == 1`) never waits. Only after the commit does it publish the batch's events
//! to watchers and acknowledge each request, so:
//!
//! # Guarantees
//! - An acknowledged write is on disk (survives `kill -9`).
//! - Watchers receive every revision before its writer is acknowledged, in revision order.
//! - Throughput scales with concurrency: N concurrent clients share one fsync.
//!
//! A request that fails half-way (e.g. `Put` to a missing lease inside a `Txn`) aborts the
//! transaction; the batch is replayed without it, so a failed request never leaves a trace.

use std::sync::Arc;

use etcd_client::proto::{
    PbDeleteRequest, PbDeleteResponse, PbPutRequest, PbPutResponse, PbTxnRequest, PbTxnResponse,
};
use redb::Durability;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{debug, error};

use super::apply::{CompactProgress, LeaseChange, RevEvents, Tx};
use super::engine::Engine;
use super::error::{EmbeddedError, EtcdError};
use super::lease::LeaseClock;
use super::watch::EventHub;

/// Most requests committed in one redb transaction.
const MAX_BATCH: usize = 1024;
/// Longest the writer waits for a batch to fill up to the previous batch's size.
const GATHER_WINDOW: Duration = Duration::from_micros(1000);

/// A mutation for the writer.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Put(PbPutRequest),
    Delete(PbDeleteRequest),
    Txn(PbTxnRequest),
    /// Logical compaction (the etcd `Compact` RPC).
    Compact(i64),
    /// One bounded step of physical compaction: at most this many rows removed.
    CompactStep(usize),
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    LeaseRevoke(i64),
    /// Commit what is queued, acknowledge, and stop the writer.
    Stop,
}

/// The result of a [`WriteOp`] (headers are filled in by the services).
#[derive(Debug)]
pub(crate) enum WriteOutcome {
    Put(PbPutResponse),
    Delete(PbDeleteResponse),
    Txn(PbTxnResponse),
    Compact,
    CompactStep(CompactProgress),
    LeaseGrant { id: i64, ttl: i64 },
    LeaseRevoke,
    Stopped,
}

/// A [`WriteOutcome`] and the store revision right after the request.
#[derive(Debug)]
pub(crate) struct WriteReply {
    pub rev: i64,
    pub outcome: WriteOutcome,
}

struct WriteReq {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteReply, EtcdError>>,
}

/// Cloneable handle to submit writes.
#[derive(Clone, Debug)]
pub(crate) struct WriterHandle {
    tx: mpsc::Sender<WriteReq>,
}

impl WriterHandle {
    /// Submit a write and wait until it is durable and published.
    ///
    /// # Errors
    /// The request's own error, or `Unavailable` when the writer has stopped.
    pub async fn submit(&self, op: WriteOp) -> Result<WriteReply, EtcdError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(WriteReq { op, reply })
            .map_err(|_| EtcdError::Storage(EmbeddedError::WriterStopped.to_string()))?;
        rx.await
            .map_err(|_| EtcdError::Storage(EmbeddedError::WriterStopped.to_string()))?
    }
}

/// Start the writer thread. It stops when every [`WriterHandle`] is dropped.
pub(crate) fn spawn(
    engine: Arc<Engine>,
    hub: EventHub,
    leases: Arc<LeaseClock>,
) -> (WriterHandle, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let join = std::thread::Builder::new()
        .name("cirrus-etcd-writer".into())
        .spawn(move || run(&engine, rx, &hub, &leases))
        .expect("spawn writer thread");
    (WriterHandle { tx }, join)
}

fn run(engine: &Engine, rx: mpsc::Receiver<WriteReq>, hub: &EventHub, leases: &LeaseClock) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut last_len = 1usize;
    while let Ok(first) = rx.recv() {
        let deadline = Instant::now() + GATHER_WINDOW;
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(mpsc::TryRecvError::Empty) if batch.len() < last_len => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(req) => batch.push(req),
                        Err(_) => break,
                    }
                }
                Err(_) => break,
            }
        }
        last_len = batch.len();
        let stop = batch.iter().any(|r| matches!(r.op, WriteOp::Stop));
        let span = tracing::debug_span!("commit", batch = batch.len());
        span.in_scope(|| commit_batch(engine, &mut batch, hub, leases));
        batch.clear();
        if stop {
            break;
        }
    }
    debug!("writer stopped");
}

fn commit_batch(engine: &Engine, batch: &mut Vec<WriteReq>, hub: &EventHub, leases: &LeaseClock) {
    loop {
        if batch.is_empty() {
            return;
        }
        match try_commit(engine, batch) {
            Ok((replies, published, changes)) => {
                for change in changes {
                    leases.apply(change);
                }
                for ev in published {
                    hub.publish(ev);
                }
                for (req, reply) in batch.drain(..).zip(replies) {
                    let _ = req.reply.send(Ok(reply));
                }
                return;
            }
            Err(Failure::Request(i, e)) => {
                let req = batch.remove(i);
                let _ = req.reply.send(Err(e));
            }
            Err(Failure::Storage(e)) => {
                error!(error = %e, "store commit failed");
                for req in batch.drain(..) {
                    let _ = req.reply.send(Err(e.clone()));
                }
                return;
            }
        }
    }
}

enum Failure {
    Request(usize, EtcdError),
    Storage(EtcdError),
}

type Committed = (Vec<WriteReply>, Vec<RevEvents>, Vec<LeaseChange>);

fn try_commit(engine: &Engine, batch: &[WriteReq]) -> Result<Committed, Failure> {
    let mut w = engine
        .db
        .begin_write()
        .map_err(|e| Failure::Storage(e.into()))?;
    w.set_durability(Durability::Immediate)
        .map_err(|e| Failure::Storage(e.into()))?;
    let mut replies = Vec::with_capacity(batch.len());
    let (published, changes) = {
        let mut tx = Tx::open(&w).map_err(Failure::Storage)?;
        for (i, req) in batch.iter().enumerate() {
            let outcome = match &req.op {
                WriteOp::Put(r) => tx.put(r).map(WriteOutcome::Put),
                WriteOp::Delete(r) => tx.delete_range(r).map(WriteOutcome::Delete),
                WriteOp::Txn(r) => tx.txn(r).map(WriteOutcome::Txn),
                WriteOp::Compact(rev) => tx.compact(*rev).map(|()| WriteOutcome::Compact),
                WriteOp::CompactStep(budget) => {
                    tx.compact_step(*budget).map(WriteOutcome::CompactStep)
                }
                WriteOp::LeaseGrant { id, ttl } => tx
                    .lease_grant(*id, *ttl)
                    .map(|(id, ttl)| WriteOutcome::LeaseGrant { id, ttl }),
                WriteOp::LeaseRevoke(id) => {
                    tx.lease_revoke(*id).map(|()| WriteOutcome::LeaseRevoke)
                }
                WriteOp::Stop => Ok(WriteOutcome::Stopped),
            };
            match outcome {
                Ok(outcome) => {
                    tx.end_request();
                    replies.push(WriteReply {
                        rev: tx.rev,
                        outcome,
                    });
                }
                Err(EtcdError::Storage(s)) => return Err(Failure::Storage(EtcdError::Storage(s))),
                Err(e) => return Err(Failure::Request(i, e)),
            }
        }
        tx.finish().map_err(Failure::Storage)?;
        (
            std::mem::take(&mut tx.published),
            std::mem::take(&mut tx.lease_changes),
        )
    };
    w.commit().map_err(|e| Failure::Storage(e.into()))?;
    Ok((replies, published, changes))
}
