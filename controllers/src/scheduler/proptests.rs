//! Property tests of placement: whatever the nodes and the request, the chosen node passes
//! every filter, a feasible node is always found, sequential placement never overbooks,
//! and the result is deterministic and independent of the order of the nodes.

use std::collections::BTreeMap;
use std::time::Instant;

use cirrus_crds::kinds::node::Node;
use cirrus_crds::kinds::servergroup::ServerGroupPolicy;
use cirrus_crds::meta::ConditionStatus;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

use super::testutil::{node, req, set_ready};
use super::{
    Candidate, GroupRequirement, PlacementRequest, Resources, SchedulerConfig, filters, place,
};

const ZONES: [Option<&str>; 3] = [None, Some("az1"), Some("nova")];
const ARCHES: [Option<&str>; 3] = [None, Some("x86_64"), Some("aarch64")];
const HVS: [Option<&str>; 3] = [None, Some("QEMU"), Some("KVM")];
const TRAITS: [&str; 2] = ["HW_CPU_X86_AVX2", "CUSTOM_GPU"];
/// 0.0 is not a usable ratio: the scheduler default applies.
const RATIOS: [f64; 6] = [0.0, 0.5, 1.0, 1.5, 4.0, 16.0];

fn name(i: usize) -> String {
    format!("node-{i:02}")
}

/// One node (without its name) and what is used on it.
fn arb_node() -> impl Strategy<Value = (Node, Resources)> {
    (
        (0u32..=32, 0u64..=65536, 0u64..=500),
        (
            select(&RATIOS[..]),
            select(&RATIOS[..]),
            select(&RATIOS[..]),
        ),
        (0u32..=2, 0u64..=1024, 0u64..=20),
        (prop::bool::weighted(0.85), prop::bool::weighted(0.1)),
        (select(&ZONES[..]), select(&ARCHES[..]), select(&HVS[..])),
        subsequence(&TRAITS[..], 0..=2),
        (0u64..=16, 0u64..=16384, 0u64..=100),
    )
        .prop_map(
            |(
                (vcpus, mem, disk),
                (cr, rr, dr),
                (rc, rm, rd),
                (ready, cordoned),
                (zone, arch, hv),
                traits,
                (uv, um, ud),
            )| {
                let mut n = node("", vcpus, mem, disk);
                n.spec.cpu_allocation_ratio = cr;
                n.spec.ram_allocation_ratio = rr;
                n.spec.disk_allocation_ratio = dr;
                n.spec.reserved_host_cpus = rc;
                n.spec.reserved_host_memory_mib = rm;
                n.spec.reserved_host_disk_gib = rd;
                n.spec.unschedulable = cordoned;
                n.spec.availability_zone = zone.map(str::to_owned);
                n.spec.traits = traits.into_iter().map(str::to_owned).collect();
                n.status.architecture = arch.map(str::to_owned);
                n.status.hypervisor_type = hv.map(str::to_owned);
                if !ready {
                    set_ready(&mut n, ConditionStatus::False);
                }
                let used = Resources {
                    vcpus: uv,
                    memory_mib: um,
                    disk_gib: ud,
                };
                (n, used)
            },
        )
}

/// 0 to 12 nodes with unique names.
fn arb_nodes() -> impl Strategy<Value = Vec<(Node, Resources)>> {
    prop::collection::vec(arb_node(), 0..=12).prop_map(|mut v| {
        for (i, (n, _)) in v.iter_mut().enumerate() {
            n.metadata.name = name(i);
        }
        v
    })
}

fn arb_policy() -> impl Strategy<Value = ServerGroupPolicy> {
    select(
        &[
            ServerGroupPolicy::Affinity,
            ServerGroupPolicy::AntiAffinity,
            ServerGroupPolicy::SoftAffinity,
            ServerGroupPolicy::SoftAntiAffinity,
        ][..],
    )
}

/// A request whose group and host hints name nodes among the first 12.
fn arb_request() -> impl Strategy<Value = PlacementRequest> {
    let names: Vec<String> = (0..12).map(name).collect();
    (
        (0u64..=8, 0u64..=8192, 0u64..=100),
        prop::option::weighted(0.3, select(&ZONES[1..])),
        (
            prop::option::weighted(0.3, select(&ARCHES[1..])),
            select(&["qemu", "kvm", "QEMU"][..]),
            prop::bool::weighted(0.2),
        ),
        (
            prop::option::weighted(0.2, select(&TRAITS[..])),
            prop::option::weighted(0.2, select(&TRAITS[..])),
        ),
        prop::option::weighted(
            0.5,
            (
                arb_policy(),
                1u32..=2,
                prop::collection::btree_map(select(names.clone()), 1u32..=3, 0..=4),
            ),
        ),
        (
            subsequence(names.clone(), 0..=2),
            prop::option::weighted(0.2, subsequence(names.clone(), 1..=3)),
            // Placed volumes: mostly none, sometimes on one node, sometimes on two.
            prop::collection::vec(select(names), 0..=2),
        ),
    )
        .prop_map(
            |(
                (v, m, d),
                zone,
                (arch, hv, want_hv),
                (required, forbidden),
                group,
                (diff, same, volume_nodes),
            )| {
                let mut r = req(v, m, d);
                r.availability_zone = zone.flatten().map(str::to_owned);
                r.image.architecture = arch.flatten().map(str::to_owned);
                r.image.hypervisor_type = want_hv.then(|| hv.to_owned());
                r.image.required_traits = required.into_iter().map(str::to_owned).collect();
                r.image.forbidden_traits = forbidden.into_iter().map(str::to_owned).collect();
                // A trait both required and forbidden can never be met.
                r.image
                    .forbidden_traits
                    .retain(|t| !r.image.required_traits.contains(t));
                r.group = group.map(|(policy, max, member_nodes)| GroupRequirement {
                    name: "g".to_owned(),
                    policy,
                    max_server_per_host: max,
                    member_nodes,
                });
                r.different_host = diff;
                r.same_host = same.unwrap_or_default();
                r.volume_nodes = volume_nodes
                    .into_iter()
                    .enumerate()
                    .map(|(i, node)| (format!("vol-{i}"), node))
                    .collect();
                r
            },
        )
}

fn arb_config() -> impl Strategy<Value = SchedulerConfig> {
    (
        select(&[-1.0, 0.0, 1.0, 2.5][..]),
        select(&[0.0, 1.0, 3.0][..]),
        select(&[0.0, 1.0, 3.0][..]),
        select(&[1.0, 2.0, 4.0][..]),
    )
        .prop_map(|(ram, soft, anti, cpu)| SchedulerConfig {
            ram_weight_multiplier: ram,
            soft_affinity_weight_multiplier: soft,
            soft_anti_affinity_weight_multiplier: anti,
            cpu_allocation_ratio: cpu,
            ..Default::default()
        })
}

fn cands(nodes: &[(Node, Resources)]) -> Vec<Candidate<'_>> {
    nodes.iter().map(|(n, u)| Candidate::new(n, *u)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The chosen node passes every filter; a feasible node means placement succeeds; a
    /// failure explains every node and its counts add up.
    #[test]
    fn chosen_node_passes_and_feasible_means_placed(
        nodes in arb_nodes(), r in arb_request(), config in arb_config(),
    ) {
        let cs = cands(&nodes);
        let feasible: Vec<&str> = cs
            .iter()
            .filter(|c| filters::run(c, &r, &config).is_ok())
            .map(|c| c.name())
            .collect();
        match place(&r, &cs, &config) {
            Ok(p) => {
                prop_assert!(feasible.contains(&p.node.as_str()));
                let c = cs.iter().find(|c| c.name() == p.node).unwrap();
                prop_assert_eq!(filters::run(c, &r, &config), Ok(()));
                prop_assert_eq!(p.feasible, feasible.len());
                prop_assert_eq!(p.total, cs.len());
            }
            Err(e) => {
                prop_assert!(feasible.is_empty(), "feasible {:?} but {}", feasible, e);
                prop_assert_eq!(e.total, cs.len());
                prop_assert_eq!(e.rejections.len(), cs.len());
                let counted: usize = e.summary().iter().map(|(n, _)| n).sum();
                prop_assert_eq!(counted, cs.len());
                let prefix = format!("0/{} nodes are available: ", cs.len());
                prop_assert!(e.message().starts_with(&prefix));
                for rej in &e.rejections {
                    let c = cs.iter().find(|c| c.name() == rej.node).unwrap();
                    prop_assert_eq!(
                        filters::run(c, &r, &config),
                        Err((rej.filter, rej.reason.clone()))
                    );
                }
            }
        }
    }

    /// A server whose volumes are placed lands on the node holding every one of them, or
    /// nowhere.
    #[test]
    fn placed_volumes_pin_the_server(
        nodes in arb_nodes(), r in arb_request(), config in arb_config(),
    ) {
        if let Ok(p) = place(&r, &cands(&nodes), &config) {
            for (_, node) in &r.volume_nodes {
                prop_assert_eq!(&p.node, node);
            }
        }
    }

    /// Same input, same output; and the order of the nodes does not matter.
    #[test]
    fn deterministic_and_order_independent(
        (nodes, shuffled) in arb_nodes().prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        r in arb_request(),
        config in arb_config(),
    ) {
        let a = place(&r, &cands(&nodes), &config);
        let again = place(&r, &cands(&nodes), &config);
        let b = place(&r, &cands(&shuffled), &config);
        prop_assert_eq!(&a, &again);
        prop_assert_eq!(&a, &b);
    }

    /// Placing servers one at a time, adding each to its node's usage, never takes a node
    /// beyond `floor(capacity × ratio) − reserved` (so never beyond capacity × ratio).
    #[test]
    fn sequential_placement_never_overbooks(
        nodes in arb_nodes(),
        requests in prop::collection::vec(
            ((0u64..=8, 0u64..=8192, 0u64..=100), select(&ZONES[..])), 1..=40),
        config in arb_config(),
    ) {
        let mut nodes = nodes;
        for (_, used) in &mut nodes {
            *used = Resources::ZERO;
        }
        for ((v, m, d), zone) in requests {
            let mut r = req(v, m, d);
            r.availability_zone = zone.map(str::to_owned);
            let chosen = place(&r, &cands(&nodes), &config).ok().map(|p| p.node);
            if let Some(chosen) = chosen {
                let (_, used) = nodes.iter_mut().find(|(n, _)| n.metadata.name == chosen).unwrap();
                *used += r.resources;
            }
            for (n, used) in &nodes {
                let c = Candidate::new(n, *used);
                let limits = c.limits(&config);
                let cap = &n.status.capacity;
                let spec = &n.spec;
                let ratio = |own: f64, default: f64| if own > 0.0 { own } else { default };
                for (used, limit, scaled) in [
                    (used.vcpus, limits.vcpus,
                     (f64::from(cap.vcpus) * ratio(spec.cpu_allocation_ratio, config.cpu_allocation_ratio)).floor()),
                    (used.memory_mib, limits.memory_mib,
                     (cap.memory_mib as f64 * ratio(spec.ram_allocation_ratio, config.ram_allocation_ratio)).floor()),
                    (used.disk_gib, limits.disk_gib,
                     (cap.disk_gib as f64 * ratio(spec.disk_allocation_ratio, config.disk_allocation_ratio)).floor()),
                ] {
                    // Only requests of zero of a resource may land where none is left.
                    prop_assert!(used == 0 || used as i64 <= limit, "{} used {} > {}", n.metadata.name, used, limit);
                    prop_assert!(used == 0 || used as f64 <= scaled);
                }
            }
        }
    }
}

/// 500 servers over 50 nodes, the way the controller does it: usage from the bound
/// servers, candidates, place, bind. Returns placements per second.
fn placements_per_second() -> f64 {
    let nodes: Vec<Node> = (0..50).map(|i| node(&name(i), 32, 131072, 2000)).collect();
    let flavors = [req(1, 512, 1), req(2, 2048, 20), req(4, 8192, 40)];
    let mut usage: BTreeMap<String, Resources> = BTreeMap::new();
    let config = SchedulerConfig::default();
    let start = Instant::now();
    for i in 0..500 {
        let r = &flavors[i % flavors.len()];
        let cs: Vec<Candidate<'_>> = nodes
            .iter()
            .map(|n| Candidate::new(n, usage.get(&n.metadata.name).copied().unwrap_or_default()))
            .collect();
        let p = place(r, &cs, &config).expect("500 small servers fit on 50 large nodes");
        *usage.entry(p.node).or_default() += r.resources;
    }
    500.0 / start.elapsed().as_secs_f64()
}

/// 500 servers fill 50 nodes without an error (speed is measured by the ignored bench
/// below and `cirrus bench`, never asserted).
#[test]
fn five_hundred_servers_fit_on_fifty_nodes() {
    assert!(placements_per_second() > 0.0);
}

/// Prints placements/s for 50 nodes × 500 servers (`--ignored --nocapture`, ideally with
/// `--release`).
#[test]
#[ignore]
fn bench_placements_per_second() {
    let runs: Vec<f64> = (0..5).map(|_| placements_per_second()).collect();
    let best = runs.iter().copied().fold(0.0, f64::max);
    println!("scheduler: 50 nodes x 500 servers: {best:.0} placements/s (best of 5: {runs:.0?})");
}
