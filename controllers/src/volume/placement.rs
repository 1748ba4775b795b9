//! Where a volume's data goes: a pure function from what the volume needs and what the
//! nodes' storage pools have to one pool, or to a message saying, node by node, why none
//! can hold it.
//!
//! # Rules
//! - Only pools of the volume's backend ([`backend_of`]: `spec.volumeType`, default
//!   `file`) count.
//! - A free-choice volume goes to a Ready, uncordoned node in its availability zone (when
//!   it names one); a volume pinned to a node (its server runs there, or its source's data
//!   is there) goes there whatever the node's state, because the decision is forced.
//! - A pool's free bytes are `min(freeBytes − pending, totalBytes − placed)` ([`PoolUsage`]):
//!   `pending` are the volumes placed on the pool that the node has not reported creating
//!   yet (so not in its `freeBytes`), `placed` every live volume placed on it. The first
//!   term sees space used outside Cirrus, the second is exact for Cirrus' own volumes even
//!   before the next heartbeat refreshes `freeBytes`.
//! - Among the pools that fit, the one with the most free bytes wins (spreading volumes);
//!   ties go to the smallest (node, pool) name, so the result never depends on input order.

use std::collections::BTreeMap;
use std::fmt;

use cirrus_crds::kinds::node::{Node, StorageBackend};
use cirrus_crds::kinds::volume::{Volume, VolumePhase};
use cirrus_crds::meta::{Condition, ConditionStatus};

/// Bytes in one GiB (volume sizes are whole GiB).
pub const GIB: u64 = 1 << 30;

/// The zone of nodes that name none (Nova's and Cinder's default).
pub const DEFAULT_ZONE: &str = "nova";

/// The backend a volume type names: `file` (also spelled `qcow2`, and the default when no
/// type is given) or `lvm`; `None` for a type no backend serves.
pub fn backend_of(volume_type: Option<&str>) -> Option<StorageBackend> {
    match volume_type.map(str::to_ascii_lowercase).as_deref() {
        None | Some("file") | Some("qcow2") => Some(StorageBackend::File),
        Some("lvm") => Some(StorageBackend::Lvm),
        Some(_) => None,
    }
}

/// Where a volume must go regardless of free-choice rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// Anywhere that fits.
    Free,
    /// On this node (a server using the volume runs there); `why` is said in messages.
    Node {
        /// The node.
        node: String,
        /// Why, e.g. `server web runs there`.
        why: String,
    },
    /// In this pool of this node (the volume is made from data that lives there).
    Pool {
        /// The node.
        node: String,
        /// The pool.
        pool: String,
        /// Why, e.g. `its source snapshot s1 is there`.
        why: String,
    },
}

/// What one volume needs from a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeRequest {
    /// The backend its type names.
    pub backend: StorageBackend,
    /// Its size in bytes.
    pub bytes: u64,
    /// The availability zone it asks for, if any.
    pub zone: Option<String>,
    /// Where it must go.
    pub pin: Pin,
}

/// Bytes already promised in each `(node, pool)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Volumes placed there that the node has not reported creating (not yet in its
    /// `freeBytes`).
    pub pending: BTreeMap<(String, String), u64>,
    /// Every live volume placed there.
    pub placed: BTreeMap<(String, String), u64>,
}

impl PoolUsage {
    /// Counts `bytes` placed on `(node, pool)`; `pending` when the node has not reported
    /// creating it yet.
    pub fn add(&mut self, node: &str, pool: &str, bytes: u64, pending: bool) {
        let key = (node.to_owned(), pool.to_owned());
        if pending {
            *self.pending.entry(key.clone()).or_default() += bytes;
        }
        *self.placed.entry(key).or_default() += bytes;
    }

    /// The usage of every placed, live volume in `volumes` (see [`volume_counts`]).
    pub fn of_volumes<'a>(volumes: impl IntoIterator<Item = &'a Volume>) -> Self {
        let mut usage = Self::default();
        for v in volumes {
            if let Some((node, pool, bytes, pending)) = volume_counts(v) {
                usage.add(node, pool, bytes, pending);
            }
        }
        usage
    }

    fn get(map: &BTreeMap<(String, String), u64>, node: &str, pool: &str) -> u64 {
        map.get(&(node.to_owned(), pool.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// How a volume counts against its pool: `(node, pool, bytes, pending)`, or `None` when it
/// is not placed. A volume counts until it is gone (a deleting one still holds its data);
/// its bytes are the larger of its asked and provisioned sizes (an extension is promised
/// as soon as it is asked); it is pending until the node reports a phase past `creating`.
pub fn volume_counts(v: &Volume) -> Option<(&str, &str, u64, bool)> {
    let node = v.status.node.as_deref()?;
    let pool = v.status.pool.as_deref()?;
    let gib = v.spec.size.max(v.status.size.unwrap_or(0));
    let pending = matches!(v.status.phase, None | Some(VolumePhase::Creating));
    Some((node, pool, gib.saturating_mul(GIB), pending))
}

/// The chosen pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolChoice {
    /// The node.
    pub node: String,
    /// The pool on it.
    pub pool: String,
    /// Bytes free there before this volume.
    pub free_bytes: u64,
}

/// Why one node cannot hold the volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The node's `Ready` condition is not `True`.
    NotReady,
    /// `spec.unschedulable` is set.
    Cordoned,
    /// The node is in another availability zone.
    OtherZone {
        /// The node's zone.
        zone: String,
    },
    /// The node reports no pool of the volume's backend (or not the pinned pool).
    NoPool,
    /// The best pool of the backend has too little room.
    Full {
        /// The pool.
        pool: String,
        /// Its free bytes (after what is already promised).
        free_bytes: u64,
    },
}

/// No pool can hold the volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaceable {
    /// What was asked.
    pub request: VolumeRequest,
    /// Nodes considered (for a pinned volume, the pinned node when it exists).
    pub total: usize,
    /// Each considered node's reason, by node name.
    pub rejections: Vec<(String, Rejection)>,
}

/// How many rejected nodes a message names.
const NAMED: usize = 8;

fn gib_text(bytes: u64) -> String {
    if bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NotReady => f.write_str("not ready"),
            Rejection::Cordoned => f.write_str("cordoned"),
            Rejection::OtherZone { zone } => write!(f, "in availability zone {zone}"),
            Rejection::NoPool => f.write_str("no such pool"),
            Rejection::Full { pool, free_bytes } => {
                write!(f, "pool {pool} has {} free", gib_text(*free_bytes))
            }
        }
    }
}

impl Unplaceable {
    /// The message of the `Scheduled=False` condition and of the event, e.g. `no lvm pool
    /// can hold 10 GiB (0/2 nodes fit): node-a: not ready; node-b: pool vg0 has 4 GiB free`.
    pub fn message(&self) -> String {
        let r = &self.request;
        let what = format!("{} of {}", gib_text(r.bytes), r.backend.as_str());
        let mut head = match &r.pin {
            Pin::Free => format!("no storage pool can hold {what}"),
            Pin::Node { node, why } => {
                format!("the volume must be on node {node} ({why}) but it can't hold {what}")
            }
            Pin::Pool { node, pool, why } => format!(
                "the volume must be in pool {pool} of node {node} ({why}) but it can't hold \
                 {what}"
            ),
        };
        if self.total == 0 {
            head.push_str(match r.pin {
                Pin::Free => ": no nodes are registered",
                _ => ": the node is not registered",
            });
            return head;
        }
        let items: Vec<String> = self
            .rejections
            .iter()
            .take(NAMED)
            .map(|(node, why)| match why {
                Rejection::NoPool => format!("{node}: no {} pool", r.backend.as_str()),
                other => format!("{node}: {other}"),
            })
            .collect();
        let more = self.rejections.len().saturating_sub(NAMED);
        let mut text = format!("{head} (0/{} nodes fit): {}", self.total, items.join("; "));
        if more > 0 {
            text.push_str(&format!("; and {more} more"));
        }
        text
    }
}

fn ready(node: &Node) -> bool {
    Condition::find(&node.status.conditions, "Ready")
        .is_some_and(|c| c.status == ConditionStatus::True)
}

/// Picks the pool for `request` among `nodes`' pools given what `usage` already promised.
///
/// # Errors
/// [`Unplaceable`] when no pool fits, with each considered node's reason.
pub fn place(
    request: &VolumeRequest,
    nodes: &[Node],
    usage: &PoolUsage,
) -> Result<PoolChoice, Box<Unplaceable>> {
    let mut best: Option<PoolChoice> = None;
    let mut rejections = Vec::new();
    let mut total = 0;
    for node in nodes {
        let name = node.metadata.name.as_str();
        let (pinned_pool, free_choice) = match &request.pin {
            Pin::Free => (None, true),
            Pin::Node { node, .. } if node == name => (None, false),
            Pin::Pool { node, pool, .. } if node == name => (Some(pool.as_str()), false),
            _ => continue,
        };
        total += 1;
        if free_choice {
            if !ready(node) {
                rejections.push((name.to_owned(), Rejection::NotReady));
                continue;
            }
            if node.spec.unschedulable {
                rejections.push((name.to_owned(), Rejection::Cordoned));
                continue;
            }
            let zone = node
                .spec
                .availability_zone
                .as_deref()
                .unwrap_or(DEFAULT_ZONE);
            if request.zone.as_deref().is_some_and(|z| z != zone) {
                rejections.push((
                    name.to_owned(),
                    Rejection::OtherZone {
                        zone: zone.to_owned(),
                    },
                ));
                continue;
            }
        }
        // The roomiest pool of the backend on this node (ties: smallest pool name).
        let mut node_best: Option<(u64, &str)> = None;
        for pool in &node.status.storage_pools {
            if pool.backend != request.backend
                || pinned_pool.is_some_and(|p| p != pool.name.as_str())
            {
                continue;
            }
            let pending = PoolUsage::get(&usage.pending, name, &pool.name);
            let placed = PoolUsage::get(&usage.placed, name, &pool.name);
            let free = pool
                .free_bytes
                .saturating_sub(pending)
                .min(pool.total_bytes.saturating_sub(placed));
            let better = match node_best {
                None => true,
                Some((f, p)) => free > f || (free == f && pool.name.as_str() < p),
            };
            if better {
                node_best = Some((free, &pool.name));
            }
        }
        let Some((free, pool)) = node_best else {
            rejections.push((name.to_owned(), Rejection::NoPool));
            continue;
        };
        if free < request.bytes {
            rejections.push((
                name.to_owned(),
                Rejection::Full {
                    pool: pool.to_owned(),
                    free_bytes: free,
                },
            ));
            continue;
        }
        let better = match &best {
            None => true,
            Some(b) => {
                free > b.free_bytes
                    || (free == b.free_bytes && (name, pool) < (b.node.as_str(), b.pool.as_str()))
            }
        };
        if better {
            best = Some(PoolChoice {
                node: name.to_owned(),
                pool: pool.to_owned(),
                free_bytes: free,
            });
        }
    }
    best.ok_or_else(|| {
        rejections.sort_by(|a, b| a.0.cmp(&b.0));
        Box::new(Unplaceable {
            request: request.clone(),
            total,
            rejections,
        })
    })
}

#[cfg(test)]
mod tests {
    use cirrus_crds::kinds::node::{NodeSpec, StoragePool};
    use cirrus_crds::meta::ObjectMeta;

    use super::*;

    fn node(name: &str, pools: &[(&str, StorageBackend, u64, u64)]) -> Node {
        let mut n = Node::new(
            ObjectMeta {
                name: name.into(),
                ..Default::default()
            },
            NodeSpec::default(),
        );
        n.status.conditions = vec![Condition {
            type_: "Ready".into(),
            status: ConditionStatus::True,
            ..Default::default()
        }];
        n.status.storage_pools = pools
            .iter()
            .map(|(p, b, total, free)| StoragePool {
                name: (*p).into(),
                backend: *b,
                total_bytes: total * GIB,
                free_bytes: free * GIB,
                capabilities: Vec::new(),
            })
            .collect();
        n
    }

    fn req(backend: StorageBackend, gib: u64) -> VolumeRequest {
        VolumeRequest {
            backend,
            bytes: gib * GIB,
            zone: None,
            pin: Pin::Free,
        }
    }

    use StorageBackend::{File, Lvm};

    #[test]
    fn backend_names() {
        assert_eq!(backend_of(None), Some(File));
        assert_eq!(backend_of(Some("qcow2")), Some(File));
        assert_eq!(backend_of(Some("LVM")), Some(Lvm));
        assert_eq!(backend_of(Some("ceph")), None);
    }

    #[test]
    fn roomiest_pool_of_the_backend_wins() {
        let nodes = [
            node("a", &[("/var/vols", File, 100, 90), ("vg0", Lvm, 50, 10)]),
            node("b", &[("vg0", Lvm, 50, 40)]),
            node("c", &[("/var/vols", File, 100, 20)]),
        ];
        let usage = PoolUsage::default();
        let got = place(&req(Lvm, 5), &nodes, &usage).unwrap();
        assert_eq!((got.node.as_str(), got.pool.as_str()), ("b", "vg0"));
        let got = place(&req(File, 5), &nodes, &usage).unwrap();
        assert_eq!((got.node.as_str(), got.pool.as_str()), ("a", "/var/vols"));
        // Promised bytes count: b's vg0 has 40 - 35 pending = 5 left.
        let mut usage = PoolUsage::default();
        usage.add("b", "vg0", 35 * GIB, true);
        let got = place(&req(Lvm, 6), &nodes, &usage).unwrap();
        assert_eq!(got.node, "a");
        let err = place(&req(Lvm, 11), &nodes, &usage).unwrap_err();
        assert_eq!(
            err.message(),
            "no storage pool can hold 11 GiB of lvm (0/3 nodes fit): a: pool vg0 has 10 GiB \
             free; b: pool vg0 has 5 GiB free; c: no lvm pool"
        );
    }

    #[test]
    fn placed_volumes_bound_the_pool_before_the_node_reports() {
        // The node still reports 50 free, but 45 GiB of volumes are already there (created,
        // not pending): total - placed = 5.
        let nodes = [node("a", &[("vg0", Lvm, 50, 50)])];
        let mut usage = PoolUsage::default();
        usage.add("a", "vg0", 45 * GIB, false);
        assert!(place(&req(Lvm, 5), &nodes, &usage).is_ok());
        assert!(place(&req(Lvm, 6), &nodes, &usage).is_err());
    }

    #[test]
    fn free_choice_skips_unready_cordoned_and_other_zones() {
        let mut down = node("a", &[("p", File, 100, 100)]);
        down.status.conditions.clear();
        let mut cordoned = node("b", &[("p", File, 100, 100)]);
        cordoned.spec.unschedulable = true;
        let mut az1 = node("c", &[("p", File, 100, 100)]);
        az1.spec.availability_zone = Some("az1".into());
        let nodes = [down, cordoned, az1];
        let mut r = req(File, 1);
        r.zone = Some("nova".into());
        let err = place(&r, &nodes, &PoolUsage::default()).unwrap_err();
        assert_eq!(
            err.rejections,
            vec![
                ("a".into(), Rejection::NotReady),
                ("b".into(), Rejection::Cordoned),
                ("c".into(), Rejection::OtherZone { zone: "az1".into() }),
            ]
        );
        // Pinned to the not-ready node: it goes there anyway.
        r.pin = Pin::Node {
            node: "a".into(),
            why: "server web runs there".into(),
        };
        assert_eq!(place(&r, &nodes, &PoolUsage::default()).unwrap().node, "a");
    }

    #[test]
    fn pinned_volume_that_does_not_fit_says_why() {
        let nodes = [
            node("a", &[("p", File, 10, 2)]),
            node("b", &[("p", File, 100, 100)]),
        ];
        let mut r = req(File, 5);
        r.pin = Pin::Node {
            node: "a".into(),
            why: "server web runs there".into(),
        };
        let err = place(&r, &nodes, &PoolUsage::default()).unwrap_err();
        assert_eq!(
            err.message(),
            "the volume must be on node a (server web runs there) but it can't hold 5 GiB of \
             file (0/1 nodes fit): a: pool p has 2 GiB free"
        );
        r.pin = Pin::Pool {
            node: "b".into(),
            pool: "q".into(),
            why: "its source is there".into(),
        };
        let err = place(&r, &nodes, &PoolUsage::default()).unwrap_err();
        assert_eq!(err.rejections, vec![("b".into(), Rejection::NoPool)]);
        r.pin = Pin::Node {
            node: "gone".into(),
            why: "server web runs there".into(),
        };
        let err = place(&r, &nodes, &PoolUsage::default()).unwrap_err();
        assert!(
            err.message().ends_with("the node is not registered"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn order_of_nodes_does_not_matter() {
        let a = node("a", &[("p", File, 100, 50)]);
        let b = node("b", &[("p", File, 100, 50)]);
        let usage = PoolUsage::default();
        let one = place(&req(File, 1), &[a.clone(), b.clone()], &usage).unwrap();
        let two = place(&req(File, 1), &[b, a], &usage).unwrap();
        assert_eq!(one, two);
        assert_eq!(one.node, "a");
    }
}
