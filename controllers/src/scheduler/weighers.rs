//! Weighers: rank the nodes that passed every filter (Nova's weighers).
//!
//! Each weigher gives a raw value per feasible node; the values are normalized over the
//! feasible nodes to 0..1 by min-max (all 0 when they are equal), multiplied by the
//! weigher's multiplier from [`SchedulerConfig`], and summed. The largest sum wins.

use cirrus_crds::kinds::servergroup::ServerGroupPolicy;

use super::SchedulerConfig;
use super::placement::{Candidate, PlacementRequest};

/// Raw weight of one feasible node; larger is preferred (before the multiplier).
pub type RawWeight = fn(&Candidate<'_>, &PlacementRequest, &SchedulerConfig) -> f64;

/// A weigher: its name, raw weight and where its multiplier comes from.
#[derive(Clone, Copy, Debug)]
pub struct Weigher {
    /// Name, as Nova names it.
    pub name: &'static str,
    /// The raw weight.
    pub raw: RawWeight,
    /// The multiplier in the config.
    pub multiplier: fn(&SchedulerConfig) -> f64,
}

/// Every weigher, in the order their weights are added.
pub const WEIGHERS: [Weigher; 3] = [
    Weigher {
        name: "RAMWeigher",
        raw: free_ram,
        multiplier: |c| c.ram_weight_multiplier,
    },
    Weigher {
        name: "ServerGroupSoftAffinityWeigher",
        raw: soft_affinity,
        multiplier: |c| c.soft_affinity_weight_multiplier,
    },
    Weigher {
        name: "ServerGroupSoftAntiAffinityWeigher",
        raw: soft_anti_affinity,
        multiplier: |c| c.soft_anti_affinity_weight_multiplier,
    },
];

/// Free RAM in MiB after reservations and overcommit: more free RAM, more weight, so the
/// default multiplier spreads servers and a negative one stacks them.
pub fn free_ram(c: &Candidate<'_>, _: &PlacementRequest, config: &SchedulerConfig) -> f64 {
    c.free(config).memory_mib as f64
}

/// With a `soft-affinity` group: the number of members already on the node.
pub fn soft_affinity(c: &Candidate<'_>, req: &PlacementRequest, _: &SchedulerConfig) -> f64 {
    match &req.group {
        Some(g) if g.policy == ServerGroupPolicy::SoftAffinity => f64::from(g.members_on(c.name())),
        _ => 0.0,
    }
}

/// With a `soft-anti-affinity` group: minus the number of members already on the node.
pub fn soft_anti_affinity(c: &Candidate<'_>, req: &PlacementRequest, _: &SchedulerConfig) -> f64 {
    match &req.group {
        Some(g) if g.policy == ServerGroupPolicy::SoftAntiAffinity => {
            -f64::from(g.members_on(c.name()))
        }
        _ => 0.0,
    }
}

/// Min-max normalization in place: the smallest value becomes 0, the largest 1; when all
/// are equal (or there is at most one), all become 0, as in Nova.
pub fn normalize(values: &mut [f64]) {
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = max - min;
    if !(range > 0.0 && range.is_finite()) {
        values.fill(0.0);
        return;
    }
    for v in values {
        *v = (*v - min) / range;
    }
}

/// Total weight of each feasible node (`feasible` indexes `candidates`), in the order of
/// `feasible`. Allocates two vectors per call, none per node.
pub fn weigh(
    feasible: &[usize],
    candidates: &[Candidate<'_>],
    req: &PlacementRequest,
    config: &SchedulerConfig,
) -> Vec<f64> {
    let mut totals = vec![0.0; feasible.len()];
    let mut raw = vec![0.0; feasible.len()];
    for w in &WEIGHERS {
        let m = (w.multiplier)(config);
        if m == 0.0 || !m.is_finite() {
            continue;
        }
        for (slot, &i) in raw.iter_mut().zip(feasible) {
            *slot = (w.raw)(&candidates[i], req, config);
        }
        normalize(&mut raw);
        for (t, r) in totals.iter_mut().zip(&raw) {
            *t += m * r;
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_is_min_max() {
        let table: [(&[f64], &[f64]); 5] = [
            (&[], &[]),
            (&[5.0], &[0.0]),
            (&[3.0, 3.0], &[0.0, 0.0]),
            (&[0.0, 5.0, 10.0], &[0.0, 0.5, 1.0]),
            (&[-2.0, -1.0, 0.0], &[0.0, 0.5, 1.0]),
        ];
        for (input, want) in table {
            let mut v = input.to_vec();
            normalize(&mut v);
            assert_eq!(v, want, "{input:?}");
        }
    }
}
