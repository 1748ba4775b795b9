//! On-disk layout of the embedded store (redb tables) and the record encoding.
//!
//! # Tables
//! - `meta`: `"rev"` (current revision) and `"compact_rev"` (lowest readable revision).
//! - `kv`: key → latest [`Record`] of every *live* key (fast path for reads at the current
//!   revision and for `DeleteRange`).
//! - `history`: `(key, mod_revision)` → [`Record`] of every version, tombstones included
//!   (`version == 0`); reads at a past revision take the last entry `<= rev` of each key.
//! - `events`: `(revision, sub_revision)` → key: the event log by revision, used to replay
//!   watches; the event itself is rebuilt from `history`.
//! - `leases`: lease ID → granted TTL (seconds). Deadlines are kept in memory only.
//! - `lease_keys`: `(lease ID, key)` → `()` for the keys attached to a lease.
//!
//! # Invariants
//! - Every revision bump writes at least one `events` row; all rows of a revision were written
//!   by one request (one etcd transaction), in sub-revision order.
//! - `kv[key]` equals the last `history` entry of `key` whenever that entry is not a tombstone.
//! - A compaction at `C` is logical first (`compact_rev = C`: reads below `C` fail, watches
//!   from below `C` are cancelled); physical compaction then removes, in bounded steps, every
//!   `history` entry older than each key's last entry `<= C` (that one too if it is a
//!   tombstone below `C`) and the `events` rows below `C`. The `events` rows below
//!   `compact_rev` are exactly the work left, so a restart resumes it. Reads at `>= C` give
//!   the same answer whether or not the steps have run.

use etcd_client::proto::PbKeyValue;
use redb::TableDefinition;

/// Meta table: `"rev"` and `"compact_rev"`.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Latest record of every live key.
pub(crate) const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// Every version of every key, by `(key, mod_revision)`.
pub(crate) const HISTORY: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("history");
/// The event log: `(revision, sub_revision)` → key.
pub(crate) const EVENTS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("events");
/// Lease ID → granted TTL in seconds.
pub(crate) const LEASES: TableDefinition<i64, i64> = TableDefinition::new("leases");
/// `(lease ID, key)` of the keys attached to each lease.
pub(crate) const LEASE_KEYS: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("lease_keys");

/// Meta key of the current revision.
pub(crate) const META_REV: &str = "rev";
/// Meta key of the compact revision.
pub(crate) const META_COMPACT: &str = "compact_rev";

/// Cluster ID reported in every response header (fixed: there is one member).
pub const CLUSTER_ID: u64 = 0x0c11_7705_e7cd_0001;
/// Member ID reported in every response header and by `MemberList`.
pub const MEMBER_ID: u64 = 0x0c11_7705_e7cd_0002;
/// Raft term reported in every response header (there is no raft; it never changes).
pub const RAFT_TERM: u64 = 1;

/// One version of a key, as stored in `kv` and `history`. `version == 0` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value: Vec<u8>,
}

impl Record {
    /// Serialise: four little-endian i64 followed by the value bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.value.len());
        for n in [
            self.create_revision,
            self.mod_revision,
            self.version,
            self.lease,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&self.value);
        out
    }

    /// Deserialise what [`Record::encode`] wrote.
    pub fn decode(b: &[u8]) -> Record {
        let n = |i: usize| i64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        Record {
            create_revision: n(0),
            mod_revision: n(1),
            version: n(2),
            lease: n(3),
            value: b.get(32..).unwrap_or_default().to_vec(),
        }
    }

    /// Decode only the fixed header (no value copy), for count/filter-only scans.
    pub fn decode_header(b: &[u8]) -> Record {
        Record::decode(&b[..32.min(b.len())])
    }

    /// Whether this record marks a deletion.
    pub fn is_tombstone(&self) -> bool {
        self.version == 0
    }

    /// The protobuf `KeyValue` for `key` at this version.
    pub fn to_kv(&self, key: &[u8]) -> PbKeyValue {
        PbKeyValue {
            key: key.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: self.value.clone(),
            lease: self.lease,
        }
    }
}

/// A key range `[start, end)` in etcd's encoding: empty end = the single key `start`,
/// end `"\0"` = every key `>= start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyRange {
    pub start: Vec<u8>,
    /// `None` = unbounded above.
    pub end: Option<Vec<u8>>,
    /// True when the range is one key.
    pub single: bool,
}

impl KeyRange {
    /// Interpret etcd's `(key, range_end)` pair.
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        if range_end.is_empty() {
            let mut end = key.to_vec();
            end.push(0);
            KeyRange {
                start: key.to_vec(),
                end: Some(end),
                single: true,
            }
        } else if range_end == [0] {
            KeyRange {
                start: key.to_vec(),
                end: None,
                single: false,
            }
        } else {
            KeyRange {
                start: key.to_vec(),
                end: Some(range_end.to_vec()),
                single: false,
            }
        }
    }

    /// Whether `key` falls in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }

    /// True when the range cannot contain anything (`end <= start`).
    pub fn is_empty(&self) -> bool {
        self.end
            .as_deref()
            .is_some_and(|e| e <= self.start.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_roundtrip() {
        let r = Record {
            create_revision: 3,
            mod_revision: 9,
            version: 2,
            lease: -1,
            value: b"hello".to_vec(),
        };
        assert_eq!(Record::decode(&r.encode()), r);
        assert!(Record::decode_header(&r.encode()).value.is_empty());
    }

    #[test]
    fn key_ranges() {
        let single = KeyRange::new(b"a", b"");
        assert!(single.contains(b"a") && !single.contains(b"a\0") && !single.contains(b"b"));
        let from = KeyRange::new(b"b", b"\0");
        assert!(from.contains(b"zzz") && !from.contains(b"a"));
        let prefix = KeyRange::new(b"p/", b"p0");
        assert!(prefix.contains(b"p/x") && !prefix.contains(b"p0"));
        assert!(KeyRange::new(b"b", b"a").is_empty());
    }
}
