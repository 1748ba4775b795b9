//! The write side of the MVCC store: etcd write requests applied inside one redb write
//! transaction.
//!
//! # Guarantees
//! - One revision per request that changes something (`Put`, a `DeleteRange` that deletes,
//!   a `Txn` with at least one effective write, a lease revoke with attached keys); the writes
//!   of a request share that main revision with increasing sub-revisions.
//! - Requests that change nothing do not bump the revision (as in etcd).
//! - `create_revision`, `mod_revision` and `version` follow etcd: `version` restarts at 1
//!   after a delete.
//!
//! Errors leave the transaction half-applied; the writer aborts it and replays the batch
//! without the failing request (see [`super::writer`]).

use std::collections::HashSet;

use etcd_client::proto::{
    PbCompare, PbDeleteRequest, PbDeleteResponse, PbEvent, PbKeyValue, PbPutRequest, PbPutResponse,
    PbRangeRequest, PbRangeResponse, PbResponseOp, PbTargetUnion, PbTxnOpRequest, PbTxnOpResponse,
    PbTxnRequest, PbTxnResponse,
};
use redb::{ReadableTable, Table, WriteTransaction};

use super::error::EtcdError;
use super::read;
use super::schema::{
    EVENTS, HISTORY, KV, KeyRange, LEASE_KEYS, LEASES, META, META_COMPACT, META_REV, Record,
};

/// Most operations etcd accepts in one transaction (its `--max-txn-ops` default).
pub(crate) const MAX_TXN_OPS: usize = 128;
/// etcd's largest lease TTL in seconds.
pub(crate) const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// etcd's smallest lease TTL with default timing (1.5 × election timeout, rounded up).
pub(crate) const MIN_LEASE_TTL: i64 = 2;

/// etcd event type PUT.
pub(crate) const EVENT_PUT: i32 = 0;
/// etcd event type DELETE.
pub(crate) const EVENT_DELETE: i32 = 1;

/// The events of one revision, in sub-revision order (`prev_kv` always filled when known;
/// watchers that did not ask for it strip it).
#[derive(Debug, Clone)]
pub(crate) struct RevEvents {
    pub rev: i64,
    pub events: Vec<PbEvent>,
}

/// What one [`Tx::compact_step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompactProgress {
    /// Rows removed (`history` entries and `events` rows).
    pub removed: usize,
    /// True when nothing below the compact revision is left to remove.
    pub done: bool,
}

impl CompactProgress {
    fn finished(removed: usize) -> Self {
        CompactProgress {
            removed,
            done: true,
        }
    }
}

/// A lease change to mirror into the in-memory deadline table after commit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LeaseChange {
    Granted { id: i64, ttl: i64 },
    Revoked { id: i64 },
}

struct Pending {
    rev: i64,
    sub: u32,
    events: Vec<PbEvent>,
    written: HashSet<Vec<u8>>,
}

/// All tables of one write transaction plus the revision bookkeeping of the batch.
pub(crate) struct Tx<'t> {
    kv: Table<'t, &'static [u8], &'static [u8]>,
    hist: Table<'t, (&'static [u8], u64), &'static [u8]>,
    events: Table<'t, (u64, u32), &'static [u8]>,
    leases: Table<'t, i64, i64>,
    lease_keys: Table<'t, (i64, &'static [u8]), ()>,
    meta: Table<'t, &'static str, u64>,
    /// Revision after the last completed request.
    pub rev: i64,
    /// Compact revision.
    pub compact: i64,
    pending: Option<Pending>,
    /// Events of the batch, one entry per revision, to publish after commit.
    pub published: Vec<RevEvents>,
    /// Lease changes of the batch, to mirror after commit.
    pub lease_changes: Vec<LeaseChange>,
}

impl<'t> Tx<'t> {
    /// Open every table of `w`.
    pub fn open(w: &'t WriteTransaction) -> Result<Tx<'t>, EtcdError> {
        let meta = w.open_table(META)?;
        let rev = meta.get(META_REV)?.map(|v| v.value()).unwrap_or(1) as i64;
        let compact = meta.get(META_COMPACT)?.map(|v| v.value()).unwrap_or(0) as i64;
        Ok(Tx {
            kv: w.open_table(KV)?,
            hist: w.open_table(HISTORY)?,
            events: w.open_table(EVENTS)?,
            leases: w.open_table(LEASES)?,
            lease_keys: w.open_table(LEASE_KEYS)?,
            meta,
            rev,
            compact,
            pending: None,
            published: Vec::new(),
            lease_changes: Vec::new(),
        })
    }

    /// Persist the revisions into `meta` (call once, before commit).
    pub fn finish(&mut self) -> Result<(), EtcdError> {
        self.meta.insert(META_REV, self.rev as u64)?;
        self.meta.insert(META_COMPACT, self.compact as u64)?;
        Ok(())
    }

    /// Close the current request: if it wrote, its revision becomes current.
    pub fn end_request(&mut self) {
        if let Some(p) = self.pending.take() {
            self.rev = p.rev;
            self.published.push(RevEvents {
                rev: p.rev,
                events: p.events,
            });
        }
    }

    /// The revision visible to reads inside the current request.
    fn visible_rev(&self) -> i64 {
        self.pending.as_ref().map_or(self.rev, |p| p.rev)
    }

    /// Allocate the next `(revision, sub-revision)` for a write of `key`.
    fn next_slot(&mut self, key: &[u8]) -> Result<(i64, u32), EtcdError> {
        let rev = self.rev;
        let p = self.pending.get_or_insert_with(|| Pending {
            rev: rev + 1,
            sub: 0,
            events: Vec::new(),
            written: HashSet::new(),
        });
        if !p.written.insert(key.to_vec()) {
            return Err(EtcdError::DuplicateKey);
        }
        let slot = (p.rev, p.sub);
        p.sub += 1;
        Ok(slot)
    }

    fn write_put(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
        prev: Option<Record>,
    ) -> Result<(), EtcdError> {
        let (rev, sub) = self.next_slot(key)?;
        let rec = Record {
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease,
            value,
        };
        let enc = rec.encode();
        self.kv.insert(key, enc.as_slice())?;
        self.hist.insert((key, rev as u64), enc.as_slice())?;
        self.events.insert((rev as u64, sub), key)?;
        let old_lease = prev.as_ref().map_or(0, |p| p.lease);
        if old_lease != 0 && old_lease != lease {
            self.lease_keys.remove((old_lease, key))?;
        }
        if lease != 0 {
            self.lease_keys.insert((lease, key), ())?;
        }
        let ev = PbEvent {
            r#type: EVENT_PUT,
            kv: Some(rec.to_kv(key)),
            prev_kv: prev.map(|p| p.to_kv(key)),
        };
        self.push_event(ev);
        Ok(())
    }

    fn write_delete(&mut self, key: &[u8], prev: Record) -> Result<(), EtcdError> {
        let (rev, sub) = self.next_slot(key)?;
        let tomb = Record {
            create_revision: 0,
            mod_revision: rev,
            version: 0,
            lease: 0,
            value: Vec::new(),
        };
        self.kv.remove(key)?;
        self.hist
            .insert((key, rev as u64), tomb.encode().as_slice())?;
        self.events.insert((rev as u64, sub), key)?;
        if prev.lease != 0 {
            self.lease_keys.remove((prev.lease, key))?;
        }
        let ev = PbEvent {
            r#type: EVENT_DELETE,
            kv: Some(PbKeyValue {
                key: key.to_vec(),
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: Some(prev.to_kv(key)),
        };
        self.push_event(ev);
        Ok(())
    }

    fn push_event(&mut self, ev: PbEvent) {
        if let Some(p) = self.pending.as_mut() {
            p.events.push(ev);
        }
    }

    /// etcd `Put`.
    pub fn put(&mut self, req: &PbPutRequest) -> Result<PbPutResponse, EtcdError> {
        if req.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
        let prev = read::get(&self.kv, &req.key)?;
        let value = if req.ignore_value {
            if !req.value.is_empty() {
                return Err(EtcdError::ValueProvided);
            }
            prev.as_ref().ok_or(EtcdError::KeyNotFound)?.value.clone()
        } else {
            req.value.clone()
        };
        let lease = if req.ignore_lease {
            if req.lease != 0 {
                return Err(EtcdError::LeaseProvided);
            }
            prev.as_ref().ok_or(EtcdError::KeyNotFound)?.lease
        } else {
            req.lease
        };
        if lease != 0 && self.leases.get(lease)?.is_none() {
            return Err(EtcdError::LeaseNotFound);
        }
        let prev_kv = if req.prev_kv {
            prev.as_ref().map(|p| p.to_kv(&req.key))
        } else {
            None
        };
        self.write_put(&req.key, value, lease, prev)?;
        Ok(PbPutResponse {
            header: None,
            prev_kv,
        })
    }

    /// etcd `DeleteRange`.
    pub fn delete_range(&mut self, req: &PbDeleteRequest) -> Result<PbDeleteResponse, EtcdError> {
        if req.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
        let kr = KeyRange::new(&req.key, &req.range_end);
        let mut victims = Vec::new();
        read::scan(&self.kv, &self.hist, &kr, None, |k, v| {
            victims.push((k.to_vec(), Record::decode(v)));
            true
        })?;
        let mut prev_kvs = Vec::new();
        let deleted = victims.len() as i64;
        for (k, rec) in victims {
            if req.prev_kv {
                prev_kvs.push(rec.to_kv(&k));
            }
            self.write_delete(&k, rec)?;
        }
        Ok(PbDeleteResponse {
            header: None,
            deleted,
            prev_kvs,
        })
    }

    /// A `Range` inside a transaction (sees the transaction's earlier writes).
    pub fn range(&self, req: &PbRangeRequest) -> Result<PbRangeResponse, EtcdError> {
        read::range(&self.kv, &self.hist, req, self.visible_rev(), self.compact)
    }

    /// etcd `Txn`: evaluate the comparisons, then apply the chosen branch in order.
    pub fn txn(&mut self, req: &PbTxnRequest) -> Result<PbTxnResponse, EtcdError> {
        if req.success.len() > MAX_TXN_OPS || req.failure.len() > MAX_TXN_OPS {
            return Err(EtcdError::TooManyOps);
        }
        let mut succeeded = true;
        for c in &req.compare {
            if !self.compare(c)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let resp = match &op.request {
                Some(PbTxnOpRequest::RequestRange(r)) => {
                    PbTxnOpResponse::ResponseRange(self.range(r)?)
                }
                Some(PbTxnOpRequest::RequestPut(r)) => PbTxnOpResponse::ResponsePut(self.put(r)?),
                Some(PbTxnOpRequest::RequestDeleteRange(r)) => {
                    PbTxnOpResponse::ResponseDeleteRange(self.delete_range(r)?)
                }
                Some(PbTxnOpRequest::RequestTxn(r)) => PbTxnOpResponse::ResponseTxn(self.txn(r)?),
                None => continue,
            };
            responses.push(PbResponseOp {
                response: Some(resp),
            });
        }
        Ok(PbTxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }

    /// Evaluate one comparison against the current state (all keys of a range must match;
    /// a value comparison on a missing key is false, as in etcd).
    fn compare(&self, c: &PbCompare) -> Result<bool, EtcdError> {
        let kr = KeyRange::new(&c.key, &c.range_end);
        let mut recs = Vec::new();
        read::scan(&self.kv, &self.hist, &kr, None, |_, v| {
            recs.push(Record::decode(v));
            true
        })?;
        if recs.is_empty() {
            if c.target == 3 {
                return Ok(false);
            }
            recs.push(Record {
                create_revision: 0,
                mod_revision: 0,
                version: 0,
                lease: 0,
                value: Vec::new(),
            });
        }
        Ok(recs.iter().all(|r| compare_one(c, r)))
    }

    /// etcd `Compact`, the logical half: from now on revisions below `rev` are unreadable
    /// (`Compacted`) and watches starting below it are cancelled with `compact_revision`.
    /// The superseded history and the event log below `rev` are removed afterwards by
    /// [`Tx::compact_step`], in bounded steps, so the writer is never held for long.
    pub fn compact(&mut self, rev: i64) -> Result<(), EtcdError> {
        if rev <= self.compact {
            return Err(EtcdError::Compacted);
        }
        if rev > self.rev {
            return Err(EtcdError::FutureRev);
        }
        self.compact = rev;
        Ok(())
    }

    /// One bounded step of physical compaction up to the compact revision `C`: at most
    /// `budget` rows removed (at least one when any work is left).
    ///
    /// The event log doubles as the cursor: its rows below `C` are exactly the work left.
    /// Rows are taken in revision order; for each one's key, every `history` entry older
    /// than the key's last entry `<= C` is removed (oldest first), then that last entry too
    /// when it is a tombstone below `C` (only once nothing older is left, so a read at `C` or
    /// later never sees an older value resurface), then the event row. A later row of an
    /// already-compacted key costs one lookup. Reads at revisions `>= C` see the same result
    /// before, during and after the steps, and every step is idempotent (the writer may
    /// replay it), so restarts simply continue.
    pub fn compact_step(&mut self, budget: usize) -> Result<CompactProgress, EtcdError> {
        let budget = budget.max(1);
        let c = self.compact.max(0) as u64;
        let mut removed = 0usize;
        loop {
            let first = match self.events.first()? {
                Some((k, key)) => (k.value(), key.value().to_vec()),
                None => return Ok(CompactProgress::finished(removed)),
            };
            let ((rev, sub), key) = first;
            if rev >= c {
                return Ok(CompactProgress::finished(removed));
            }
            if removed >= budget {
                return Ok(CompactProgress {
                    removed,
                    done: false,
                });
            }
            let last = match self
                .hist
                .range::<(&[u8], u64)>((key.as_slice(), 0u64)..=(key.as_slice(), c))?
                .next_back()
            {
                Some(item) => {
                    let (k, v) = item?;
                    Some((k.value().1, Record::decode_header(v.value()).is_tombstone()))
                }
                None => None,
            };
            // This row's work, in order: older entries (oldest first), the tombstone, the row.
            let left = budget - removed;
            let mut doomed = Vec::new();
            if let Some((last_rev, last_tomb)) = last {
                for item in self
                    .hist
                    .range::<(&[u8], u64)>((key.as_slice(), 0u64)..(key.as_slice(), last_rev))?
                    .take(left)
                {
                    doomed.push(item?.0.value().1);
                }
                if last_tomb && last_rev < c {
                    doomed.push(last_rev);
                }
            }
            let finishes = doomed.len() < left;
            for &r in doomed.iter().take(left) {
                self.hist.remove((key.as_slice(), r))?;
                removed += 1;
            }
            if !finishes {
                // Budget spent inside this key; the next step resumes at the same row.
                return Ok(CompactProgress {
                    removed,
                    done: false,
                });
            }
            self.events.remove((rev, sub))?;
            removed += 1;
        }
    }

    /// etcd `LeaseGrant`; `id == 0` picks a free random ID. Returns `(id, granted ttl)`.
    pub fn lease_grant(&mut self, id: i64, ttl: i64) -> Result<(i64, i64), EtcdError> {
        if ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        let ttl = ttl.max(MIN_LEASE_TTL);
        let id = if id == 0 {
            loop {
                let candidate = (uuid::Uuid::new_v4().as_u64_pair().0 >> 1) as i64;
                if candidate != 0 && self.leases.get(candidate)?.is_none() {
                    break candidate;
                }
            }
        } else {
            if self.leases.get(id)?.is_some() {
                return Err(EtcdError::LeaseExist);
            }
            id
        };
        self.leases.insert(id, ttl)?;
        self.lease_changes.push(LeaseChange::Granted { id, ttl });
        Ok((id, ttl))
    }

    /// etcd `LeaseRevoke`: delete the attached keys (one revision) and the lease.
    pub fn lease_revoke(&mut self, id: i64) -> Result<(), EtcdError> {
        if self.leases.remove(id)?.is_none() {
            return Err(EtcdError::LeaseNotFound);
        }
        let mut keys = Vec::new();
        for item in self
            .lease_keys
            .range::<(i64, &[u8])>((id, &[][..])..(id.saturating_add(1), &[][..]))?
        {
            keys.push(item?.0.value().1.to_vec());
        }
        for key in keys {
            if let Some(rec) = read::get(&self.kv, &key)?
                && rec.lease == id
            {
                self.write_delete(&key, rec)?;
            }
            self.lease_keys.remove((id, key.as_slice()))?;
        }
        self.lease_changes.push(LeaseChange::Revoked { id });
        Ok(())
    }
}

fn compare_one(c: &PbCompare, r: &Record) -> bool {
    use std::cmp::Ordering;
    let ord: Ordering = match c.target {
        0 => r.version.cmp(&match c.target_union {
            Some(PbTargetUnion::Version(v)) => v,
            _ => 0,
        }),
        1 => r.create_revision.cmp(&match c.target_union {
            Some(PbTargetUnion::CreateRevision(v)) => v,
            _ => 0,
        }),
        2 => r.mod_revision.cmp(&match c.target_union {
            Some(PbTargetUnion::ModRevision(v)) => v,
            _ => 0,
        }),
        3 => {
            let empty = Vec::new();
            let v = match &c.target_union {
                Some(PbTargetUnion::Value(v)) => v,
                _ => &empty,
            };
            r.value.as_slice().cmp(v.as_slice())
        }
        4 => r.lease.cmp(&match c.target_union {
            Some(PbTargetUnion::Lease(v)) => v,
            _ => 0,
        }),
        _ => return false,
    };
    match c.result {
        0 => ord == Ordering::Equal,
        1 => ord == Ordering::Greater,
        2 => ord == Ordering::Less,
        3 => ord != Ordering::Equal,
        _ => false,
    }
}
