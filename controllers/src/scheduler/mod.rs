//! The scheduler: which node a new server runs on (Nova's FilterScheduler, kube-scheduler).
//!
//! # Design
//! Placement is a pure, deterministic function, [`place`], from a [`PlacementRequest`] (what
//! one server needs: resources, availability zone, image requirements, group policy and
//! host hints, all resolved to node names) and a snapshot of [`Candidate`] nodes (each node
//! with the resources the servers already bound to it consume) to either a [`Placement`] or
//! a [`NoValidHost`] that says, node by node, why nothing fits. The scheduler controller only
//! loads those inputs from its caches ([`node_usage`], [`resolve_hints`],
//! [`PlacementRequest::for_server`]), calls [`place`], and writes the binding
//! (`spec.nodeName`) with a compare-and-swap on `resourceVersion`, so two schedulers never
//! overbook one node: the loser re-reads and places again.
//!
//! It works in three steps, like Nova:
//! 1. **Filters** ([`filters::FILTERS`], in order): node Ready, not cordoned, volume
//!    affinity (the node holding the server's placed local volumes), availability zone, RAM, vCPUs, disk, image properties and traits, server-group affinity and
//!    anti-affinity, `differentHost` / `sameHost`. The first filter a node fails is its
//!    reason; a node passing every filter is *feasible*.
//! 2. **Weighers** ([`weighers::WEIGHERS`]): free RAM (spread; a negative multiplier
//!    stacks), soft affinity, soft anti-affinity. Each weigher's raw values are normalized
//!    over the feasible nodes to 0..1 (min-max, as Nova does) and multiplied by its
//!    multiplier from [`SchedulerConfig`]; the node with the largest sum wins, ties going to
//!    the smallest node name.
//! 3. **Explanation** ([`explain`]): when no node is feasible, the rejections are
//!    aggregated Kubernetes-style — `0/3 nodes are available: 2 insufficient RAM (need
//!    2048 MiB, free 1024 MiB), 1 cordoned` — and kept per node for `describe`.
//!
//! # Resource accounting
//! For each of RAM, vCPUs and disk, what a node can hand out is
//! `floor(status.capacity × ratio) − reserved`, the ratio being the node's own
//! `spec.*AllocationRatio` (falling back to the [`SchedulerConfig`] default when it is not a
//! positive finite number) and `reserved` the node's `spec.reservedHost*`; what is free is
//! that minus the sum of the flavors of the servers bound to the node. A server needs its
//! flavor's vCPUs, RAM and root + ephemeral + swap disk (swap rounded up to whole GiB; no
//! local root disk when it boots from a volume), see [`Resources::for_server`].
//!
//! # Guarantees
//! - The chosen node passes every filter.
//! - When some node passes every filter, [`place`] never returns [`NoValidHost`].
//! - Placing servers one at a time and adding each one's resources to its node's usage
//!   never takes a node beyond `floor(capacity × ratio) − reserved`.
//! - The result depends only on the request, the set of candidates and the config: not on
//!   the order of the candidates (node names must be unique), and never on a clock or a
//!   random number.
//! - Cost: O(nodes × filters) with no allocation per feasible node beyond a few vectors
//!   sized once per call; a rejected node allocates its reason.

pub mod controller;
pub mod explain;
pub mod filters;
pub mod placement;
pub mod weighers;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testutil;

pub use explain::{NoValidHost, NodeRejection, Reason};
pub use placement::{
    Candidate, GroupRequirement, Hints, ImageRequirements, NodeUsage, Placement, PlacementRequest,
    Resources, candidates, node_usage, place, resolve_hints, volume_nodes,
};

use serde::Deserialize;

/// Scheduler-wide settings (Nova's `[filter_scheduler]` and allocation-ratio options).
///
/// Ratios here are fallbacks: a node's own `spec.*AllocationRatio` wins when it is a
/// positive finite number. Multipliers scale each weigher's normalized 0..1 weight.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// vCPUs per physical CPU when a node sets no usable ratio (Nova's default 4.0).
    pub cpu_allocation_ratio: f64,
    /// RAM overcommit when a node sets no usable ratio (default 1.0).
    pub ram_allocation_ratio: f64,
    /// Disk overcommit when a node sets no usable ratio (default 1.0).
    pub disk_allocation_ratio: f64,
    /// Zone of nodes that name none (Nova's `default_availability_zone`, `nova`).
    pub default_availability_zone: String,
    /// Weight of free RAM: positive spreads servers over nodes (the default, 1.0),
    /// negative stacks them onto the fullest node that fits.
    pub ram_weight_multiplier: f64,
    /// Weight of the soft-affinity weigher (default 1.0): pulls a `soft-affinity` group's
    /// servers onto nodes that already host members.
    pub soft_affinity_weight_multiplier: f64,
    /// Weight of the soft-anti-affinity weigher (default 1.0): pushes a
    /// `soft-anti-affinity` group's servers away from nodes that already host members.
    pub soft_anti_affinity_weight_multiplier: f64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            cpu_allocation_ratio: 4.0,
            ram_allocation_ratio: 1.0,
            disk_allocation_ratio: 1.0,
            default_availability_zone: "nova".to_owned(),
            ram_weight_multiplier: 1.0,
            soft_affinity_weight_multiplier: 1.0,
            soft_anti_affinity_weight_multiplier: 1.0,
        }
    }
}
