//! The read side of the MVCC store: `Range` evaluation over the redb tables.
//!
//! The functions are generic over [`ReadableTable`] so the same code serves plain reads (a redb
//! read transaction: a consistent snapshot, never blocked by the writer) and the range
//! operations inside a `Txn` (evaluated in the write transaction, seeing earlier operations
//! of the same transaction, as etcd does).

use std::cmp::Ordering;

use etcd_client::proto::{PbKeyValue, PbRangeRequest, PbRangeResponse};
use redb::ReadableTable;

use super::error::EtcdError;
use super::schema::{KeyRange, Record};

/// Readable `kv` table.
pub(crate) trait KvTable: ReadableTable<&'static [u8], &'static [u8]> {}
impl<T: ReadableTable<&'static [u8], &'static [u8]>> KvTable for T {}
/// Readable `history` table.
pub(crate) trait HistTable: ReadableTable<(&'static [u8], u64), &'static [u8]> {}
impl<T: ReadableTable<(&'static [u8], u64), &'static [u8]>> HistTable for T {}

/// Visit `(key, encoded record)` of every live key of `kr` at revision `rev` (`None` = latest),
/// in key order, until `f` returns false.
pub(crate) fn scan(
    kv: &impl KvTable,
    hist: &impl HistTable,
    kr: &KeyRange,
    rev: Option<i64>,
    mut f: impl FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), EtcdError> {
    if kr.is_empty() {
        return Ok(());
    }
    match rev {
        None => {
            let iter = match &kr.end {
                Some(end) => kv.range::<&[u8]>(kr.start.as_slice()..end.as_slice())?,
                None => kv.range::<&[u8]>(kr.start.as_slice()..)?,
            };
            for item in iter {
                let (k, v) = item?;
                if !f(k.value(), v.value()) {
                    break;
                }
            }
        }
        Some(rev) => {
            let rev = rev as u64;
            let start = (kr.start.as_slice(), 0u64);
            let iter = match &kr.end {
                Some(end) => hist.range::<(&[u8], u64)>(start..(end.as_slice(), 0u64))?,
                None => hist.range::<(&[u8], u64)>(start..)?,
            };
            // The last entry <= rev of the key being walked.
            let mut cur: Option<(Vec<u8>, Vec<u8>)> = None;
            let emit =
                |c: Option<(Vec<u8>, Vec<u8>)>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool| match c {
                    Some((k, v)) if !Record::decode_header(&v).is_tombstone() => f(&k, &v),
                    _ => true,
                };
            for item in iter {
                let (k, v) = item?;
                let (key, mod_rev) = k.value();
                if cur.as_ref().is_some_and(|(ck, _)| ck.as_slice() != key) {
                    let done = cur.take();
                    if !emit(done, &mut f) {
                        return Ok(());
                    }
                }
                if mod_rev <= rev {
                    cur = Some((key.to_vec(), v.value().to_vec()));
                }
            }
            emit(cur.take(), &mut f);
        }
    }
    Ok(())
}

/// The latest record of one key, if it is live.
pub(crate) fn get(kv: &impl KvTable, key: &[u8]) -> Result<Option<Record>, EtcdError> {
    Ok(kv.get(key)?.map(|v| Record::decode(v.value())))
}

/// The last record of `key` strictly before revision `rev` (tombstones included), used for
/// the `prev_kv` of replayed watch events.
pub(crate) fn get_before(
    hist: &impl HistTable,
    key: &[u8],
    rev: u64,
) -> Result<Option<Record>, EtcdError> {
    let mut it = hist.range::<(&[u8], u64)>((key, 0u64)..(key, rev))?;
    Ok(match it.next_back() {
        Some(item) => Some(Record::decode(item?.1.value())),
        None => None,
    })
}

/// Evaluate an etcd `Range` request against the tables (`current` and `compact` are the
/// snapshot's revisions). The header is left for the caller to fill in.
///
/// # Errors
/// [`EtcdError::FutureRev`] / [`EtcdError::Compacted`] for a revision outside
/// `[compact, current]`, [`EtcdError::EmptyKey`] for an empty key.
pub(crate) fn range(
    kv: &impl KvTable,
    hist: &impl HistTable,
    req: &PbRangeRequest,
    current: i64,
    compact: i64,
) -> Result<PbRangeResponse, EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if req.revision > current {
        return Err(EtcdError::FutureRev);
    }
    if req.revision > 0 && req.revision < compact {
        return Err(EtcdError::Compacted);
    }
    let at = (req.revision > 0 && req.revision < current).then_some(req.revision);
    let kr = KeyRange::new(&req.key, &req.range_end);

    // etcd: sort order NONE with a non-key target means ascending.
    let mut order = req.sort_order;
    if order == 0 && req.sort_target != 0 {
        order = 1;
    }
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let fast = (order == 0 || (order == 1 && req.sort_target == 0)) && !filtered;
    let limit = if req.limit > 0 {
        req.limit as usize
    } else {
        usize::MAX
    };

    let mut count = 0i64;
    let mut kvs: Vec<PbKeyValue> = Vec::new();
    scan(kv, hist, &kr, at, |k, v| {
        count += 1;
        if req.count_only {
            return true;
        }
        if fast {
            if kvs.len() < limit {
                kvs.push(to_kv(k, v, req.keys_only));
            }
            return true;
        }
        let h = Record::decode_header(v);
        let keep = (req.min_mod_revision == 0 || h.mod_revision >= req.min_mod_revision)
            && (req.max_mod_revision == 0 || h.mod_revision <= req.max_mod_revision)
            && (req.min_create_revision == 0 || h.create_revision >= req.min_create_revision)
            && (req.max_create_revision == 0 || h.create_revision <= req.max_create_revision);
        if keep {
            kvs.push(to_kv(k, v, req.keys_only));
        }
        true
    })?;

    let more;
    if fast {
        more = !req.count_only && (count as usize) > kvs.len() && req.limit > 0;
    } else {
        if order != 0 {
            let cmp = |a: &PbKeyValue, b: &PbKeyValue| -> Ordering {
                match req.sort_target {
                    1 => a.version.cmp(&b.version),
                    2 => a.create_revision.cmp(&b.create_revision),
                    3 => a.mod_revision.cmp(&b.mod_revision),
                    4 => a.value.cmp(&b.value),
                    _ => a.key.cmp(&b.key),
                }
            };
            if order == 2 {
                kvs.sort_by(|a, b| cmp(b, a));
            } else {
                kvs.sort_by(cmp);
            }
        }
        more = kvs.len() > limit;
        kvs.truncate(limit);
    }
    Ok(PbRangeResponse {
        header: None,
        kvs,
        more,
        count,
    })
}

fn to_kv(k: &[u8], v: &[u8], keys_only: bool) -> PbKeyValue {
    let mut kv = if keys_only {
        Record::decode_header(v).to_kv(k)
    } else {
        Record::decode(v).to_kv(k)
    };
    if keys_only {
        kv.value.clear();
    }
    kv
}
