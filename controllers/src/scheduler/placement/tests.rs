//! Unit tests of the parent module (kept apart so the module reads on its own).

use cirrus_crds::kinds::server::SchedulerHints;
use cirrus_crds::kinds::servergroup::{ServerGroupRules, ServerGroupSpec};
use cirrus_crds::meta::{ConditionStatus, ObjectMeta};

use super::*;
use crate::scheduler::testutil::{group, node, req, set_ready};

/// Places `r` over `nodes` (each with its used resources) with the default config.
fn run(r: &PlacementRequest, nodes: &[(Node, Resources)]) -> Result<Placement, NoValidHost> {
    run_with(r, nodes, &SchedulerConfig::default())
}

fn run_with(
    r: &PlacementRequest,
    nodes: &[(Node, Resources)],
    config: &SchedulerConfig,
) -> Result<Placement, NoValidHost> {
    let cands: Vec<Candidate<'_>> = nodes.iter().map(|(n, u)| Candidate::new(n, *u)).collect();
    place(r, &cands, config)
}

fn ram_used(mib: u64) -> Resources {
    Resources {
        memory_mib: mib,
        ..Resources::ZERO
    }
}

fn cordoned(mut n: Node) -> Node {
    n.spec.unschedulable = true;
    n
}

fn not_ready(mut n: Node) -> Node {
    set_ready(&mut n, ConditionStatus::Unknown);
    n
}

fn in_zone(mut n: Node, zone: &str) -> Node {
    n.spec.availability_zone = Some(zone.to_owned());
    n
}

fn with_group(mut r: PlacementRequest, g: GroupRequirement) -> PlacementRequest {
    r.group = Some(g);
    r
}

#[test]
fn placement_table() {
    use ServerGroupPolicy::*;
    let z = Resources::ZERO;
    let in_az1 = {
        let mut r = req(1, 1024, 10);
        r.availability_zone = Some("az1".into());
        r
    };
    // (case, request, nodes with usage, expected node or message)
    let table: Vec<(
        &str,
        PlacementRequest,
        Vec<(Node, Resources)>,
        Result<&str, &str>,
    )> = vec![
        (
            "fits on the only node",
            req(2, 2048, 20),
            vec![(node("a", 4, 4096, 100), z)],
            Ok("a"),
        ),
        (
            "spreads by free RAM",
            req(1, 1024, 10),
            vec![
                (node("a", 8, 8192, 100), ram_used(4096)),
                (node("b", 8, 8192, 100), ram_used(1024)),
                (node("c", 8, 8192, 100), ram_used(2048)),
            ],
            Ok("b"),
        ),
        (
            "ties go to the smallest name",
            req(1, 1024, 10),
            vec![(node("b", 8, 8192, 100), z), (node("a", 8, 8192, 100), z)],
            Ok("a"),
        ),
        (
            "RAM short everywhere",
            req(1, 2048, 10),
            vec![
                (node("a", 8, 4096, 100), ram_used(3072)),
                (node("b", 8, 4096, 100), ram_used(3072)),
                (cordoned(node("c", 8, 8192, 100)), z),
            ],
            Err(
                "0/3 nodes are available: 2 insufficient RAM (need 2048 MiB, free 1024 MiB), 1 cordoned",
            ),
        ),
        (
            "skips cordoned and not-ready nodes",
            req(1, 1024, 10),
            vec![
                (cordoned(node("a", 8, 65536, 100)), z),
                (not_ready(node("b", 8, 65536, 100)), z),
                (node("c", 8, 4096, 100), z),
            ],
            Ok("c"),
        ),
        (
            "nothing ready",
            req(1, 1024, 10),
            vec![
                (not_ready(node("a", 8, 8192, 100)), z),
                (not_ready(node("b", 8, 8192, 100)), z),
            ],
            Err("0/2 nodes are available: 2 not ready"),
        ),
        (
            "availability zone",
            in_az1.clone(),
            vec![
                (node("a", 8, 65536, 100), z),
                (in_zone(node("b", 8, 4096, 100), "az1"), z),
            ],
            Ok("b"),
        ),
        (
            "no node in the zone",
            in_az1,
            vec![
                (node("a", 8, 8192, 100), z),
                (in_zone(node("b", 8, 8192, 100), "az2"), z),
            ],
            Err("0/2 nodes are available: 2 not in availability zone az1"),
        ),
        (
            "vCPU overcommit 4.0 by default",
            req(16, 1024, 10),
            vec![(node("a", 4, 8192, 100), z)],
            Ok("a"),
        ),
        (
            "vCPU beyond the ratio",
            req(17, 1024, 10),
            vec![(node("a", 4, 8192, 100), z)],
            Err("0/1 nodes are available: 1 insufficient vCPUs (need 17, free 16)"),
        ),
        (
            "disk short",
            req(1, 1024, 200),
            vec![(node("a", 4, 8192, 100), z)],
            Err("0/1 nodes are available: 1 insufficient disk (need 200 GiB, free 100 GiB)"),
        ),
        (
            "hard affinity follows the group",
            with_group(req(1, 1024, 10), group(Affinity, &[("b", 1)])),
            vec![(node("a", 8, 65536, 100), z), (node("b", 8, 4096, 100), z)],
            Ok("b"),
        ),
        (
            "hard affinity with the group's node full",
            with_group(req(1, 4096, 10), group(Affinity, &[("b", 1)])),
            vec![
                (node("a", 8, 65536, 100), z),
                (node("b", 8, 4096, 100), ram_used(1024)),
            ],
            Err(
                "0/2 nodes are available: 1 insufficient RAM (need 4096 MiB, free 3072 MiB), 1 not hosting server group web (affinity)",
            ),
        ),
        (
            "first affinity member goes anywhere",
            with_group(req(1, 1024, 10), group(Affinity, &[])),
            vec![(node("a", 8, 4096, 100), z), (node("b", 8, 8192, 100), z)],
            Ok("b"),
        ),
        (
            "hard anti-affinity avoids members",
            with_group(req(1, 1024, 10), group(AntiAffinity, &[("b", 1)])),
            vec![(node("a", 8, 4096, 100), z), (node("b", 8, 65536, 100), z)],
            Ok("a"),
        ),
        (
            "volume affinity beats free RAM",
            {
                let mut r = req(1, 1024, 10);
                r.volume_nodes = vec![("data-1".into(), "b".into())];
                r
            },
            vec![(node("a", 8, 65536, 100), z), (node("b", 8, 4096, 100), z)],
            Ok("b"),
        ),
        (
            "volume's node full",
            {
                let mut r = req(1, 4096, 10);
                r.volume_nodes = vec![("data-1".into(), "b".into())];
                r
            },
            vec![
                (node("a", 8, 65536, 100), z),
                (node("b", 8, 4096, 100), ram_used(1024)),
            ],
            Err(
                "0/2 nodes are available: 1 not holding volume data-1 (it is on b), 1 insufficient RAM (need 4096 MiB, free 3072 MiB)",
            ),
        ),
        (
            "volumes on two nodes",
            {
                let mut r = req(1, 1024, 10);
                r.volume_nodes = vec![("d1".into(), "a".into()), ("d2".into(), "b".into())];
                r
            },
            vec![(node("a", 8, 65536, 100), z), (node("b", 8, 4096, 100), z)],
            Err(
                "0/2 nodes are available: 2 can't hold all the server's volumes, which are on different nodes (d1 on a, d2 on b)",
            ),
        ),
        (
            "hard anti-affinity with every node taken",
            with_group(req(1, 1024, 10), group(AntiAffinity, &[("a", 1), ("b", 1)])),
            vec![(node("a", 8, 4096, 100), z), (node("b", 8, 65536, 100), z)],
            Err("0/2 nodes are available: 2 already hosting server group web (anti-affinity)"),
        ),
    ];
    for (case, r, nodes, want) in table {
        let got = run(&r, &nodes);
        match (want, got) {
            (Ok(w), Ok(p)) => assert_eq!(p.node, w, "{case}"),
            (Err(w), Err(e)) => assert_eq!(e.message(), w, "{case}"),
            (want, got) => panic!("{case}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn volume_nodes_are_the_placed_volumes_of_the_server() {
    use cirrus_crds::kinds::server::{ServerSpec, ServerVolume};
    use cirrus_crds::kinds::volume::{Volume, VolumeSpec};
    let meta = |project: &str, name: &str| ObjectMeta {
        name: name.into(),
        project: Some(project.into()),
        ..Default::default()
    };
    let volume = |project: &str, name: &str, node: Option<&str>| {
        let mut v = Volume::new(meta(project, name), VolumeSpec::default());
        v.status.node = node.map(str::to_owned);
        v
    };
    let server = Server::new(
        meta("p", "web"),
        ServerSpec {
            flavor: "m1".into(),
            boot_volume: Some("root".into()),
            volumes: vec![
                ServerVolume {
                    volume: "data".into(),
                    ..Default::default()
                },
                ServerVolume {
                    volume: "new".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
    );
    let volumes = [
        volume("p", "root", Some("b")),
        volume("p", "data", Some("a")),
        // Not placed yet: it follows the server.
        volume("p", "new", None),
        // Not the server's (other project, other name).
        volume("q", "data", Some("c")),
        volume("p", "other", Some("c")),
    ];
    assert_eq!(
        volume_nodes(&server, &volumes),
        vec![
            ("data".to_owned(), "a".to_owned()),
            ("root".to_owned(), "b".to_owned())
        ]
    );
}

#[test]
fn soft_group_weighers() {
    use ServerGroupPolicy::*;
    let z = Resources::ZERO;
    // The group's members sit on the nodes with the least free RAM, and the node names
    // are such that the tie-break by name never helps the group's preferred node.
    let nodes = vec![
        (node("a", 8, 16384, 100), z),
        (node("b", 8, 8192, 100), z),
        (node("c", 8, 4096, 100), z),
    ];
    let strong = SchedulerConfig {
        soft_affinity_weight_multiplier: 2.0,
        soft_anti_affinity_weight_multiplier: 2.0,
        ..Default::default()
    };
    let affinity = with_group(req(1, 1024, 10), group(SoftAffinity, &[("c", 2), ("b", 1)]));
    assert_eq!(run_with(&affinity, &nodes, &strong).unwrap().node, "c");
    // At equal multipliers, RAM (a: 1 + 0) and affinity (c: 0 + 1) tie, and a wins by name.
    assert_eq!(run(&affinity, &nodes).unwrap().node, "a");
    // Soft anti-affinity: a hosts two members, b one, c none.
    let anti = with_group(
        req(1, 1024, 10),
        group(SoftAntiAffinity, &[("a", 2), ("b", 1)]),
    );
    assert_eq!(run_with(&anti, &nodes, &strong).unwrap().node, "c");
    assert_eq!(run(&anti, &nodes).unwrap().node, "a");
    // Soft policies never reject: with no room beside the members, the server still lands.
    let full = vec![
        (node("a", 8, 4096, 100), ram_used(3072)),
        (node("b", 8, 4096, 100), z),
    ];
    let affinity = with_group(req(1, 2048, 10), group(SoftAffinity, &[("a", 3)]));
    assert_eq!(run_with(&affinity, &full, &strong).unwrap().node, "b");
    let anti = with_group(req(1, 2048, 10), group(SoftAntiAffinity, &[("b", 3)]));
    assert_eq!(run_with(&anti, &full, &strong).unwrap().node, "b");
    // Without any group, the soft weighers weigh nothing.
    assert_eq!(
        run_with(&req(1, 1024, 10), &nodes, &strong).unwrap().node,
        "a"
    );
}

#[test]
fn allocation_ratios_and_reserved_memory() {
    // RAM ratio 1.5 on a 4 GiB node with 512 MiB reserved: 5632 MiB to hand out.
    let mut a = node("a", 4, 4096, 100);
    a.spec.ram_allocation_ratio = 1.5;
    a.spec.reserved_host_memory_mib = 512;
    let nodes = vec![(a, Resources::ZERO)];
    assert_eq!(run(&req(1, 5632, 1), &nodes).unwrap().node, "a");
    assert_eq!(
        run(&req(1, 5633, 1), &nodes).unwrap_err().message(),
        "0/1 nodes are available: 1 insufficient RAM (need 5633 MiB, free 5632 MiB)"
    );
    // The default reservation of a NodeSpec is 512 MiB.
    let mut b = node("b", 4, 4096, 100);
    b.spec.reserved_host_memory_mib =
        cirrus_crds::kinds::node::NodeSpec::default().reserved_host_memory_mib;
    assert_eq!(
        run(&req(1, 4096, 1), &[(b, Resources::ZERO)])
            .unwrap_err()
            .message(),
        "0/1 nodes are available: 1 insufficient RAM (need 4096 MiB, free 3584 MiB)"
    );
    // A node without a usable ratio takes the scheduler's.
    let mut c = node("c", 2, 4096, 100);
    c.spec.cpu_allocation_ratio = 0.0;
    let config = SchedulerConfig {
        cpu_allocation_ratio: 16.0,
        ..Default::default()
    };
    let nodes = vec![(c, Resources::ZERO)];
    assert_eq!(run_with(&req(32, 1, 1), &nodes, &config).unwrap().node, "c");
    assert!(run_with(&req(33, 1, 1), &nodes, &config).is_err());
}

#[test]
fn negative_ram_multiplier_stacks() {
    let z = Resources::ZERO;
    let nodes = vec![
        (node("a", 8, 8192, 100), ram_used(1024)),
        (node("b", 8, 8192, 100), ram_used(6144)),
        (node("c", 8, 8192, 100), ram_used(7680)),
        (node("d", 8, 8192, 100), z),
    ];
    let stack = SchedulerConfig {
        ram_weight_multiplier: -1.0,
        ..Default::default()
    };
    // c has only 512 MiB free: the fullest node that still fits 1 GiB is b.
    assert_eq!(
        run_with(&req(1, 1024, 1), &nodes, &stack).unwrap().node,
        "b"
    );
    assert_eq!(run(&req(1, 1024, 1), &nodes).unwrap().node, "d");
}

#[test]
fn placement_reports_counts_and_weight() {
    let nodes = vec![
        (node("a", 8, 8192, 100), Resources::ZERO),
        (node("b", 8, 4096, 100), Resources::ZERO),
        (cordoned(node("c", 8, 4096, 100)), Resources::ZERO),
    ];
    let p = run(&req(1, 1024, 1), &nodes).unwrap();
    assert_eq!(
        p,
        Placement {
            node: "a".into(),
            weight: 1.0,
            feasible: 2,
            total: 3
        }
    );
    let e = run(&req(1, 1 << 20, 1), &nodes).unwrap_err();
    assert_eq!(e.rejections.len(), 3);
    assert_eq!(e.rejections[2].filter, "CordonFilter");
    assert_eq!(e.rejections[0].filter, "RamFilter");
}

fn flavor(vcpus: u32, ram: u64, disk: u64, ephemeral: u64, swap: u64) -> FlavorSpec {
    FlavorSpec {
        vcpus,
        ram,
        disk,
        ephemeral,
        swap,
        ..Default::default()
    }
}

fn server(project: &str, name: &str, flavor: &str, node: Option<&str>) -> Server {
    Server::new(
        ObjectMeta {
            name: name.into(),
            project: Some(project.into()),
            ..Default::default()
        },
        ServerSpec {
            flavor: flavor.into(),
            image: Some("cirros".into()),
            node_name: node.map(str::to_owned),
            ..Default::default()
        },
    )
}

#[test]
fn resources_of_flavors_and_servers() {
    assert_eq!(
        Resources::of_flavor(&flavor(2, 2048, 20, 5, 1)),
        Resources {
            vcpus: 2,
            memory_mib: 2048,
            disk_gib: 26
        }
    );
    assert_eq!(
        Resources::of_flavor(&flavor(1, 512, 1, 0, 2048)).disk_gib,
        3
    );
    let mut s = server("p", "s", "m1", None);
    assert_eq!(
        Resources::for_server(&s.spec, &flavor(1, 512, 10, 5, 0)).disk_gib,
        15
    );
    s.spec.image = None;
    s.spec.boot_volume = Some("root".into());
    assert_eq!(
        Resources::for_server(&s.spec, &flavor(1, 512, 10, 5, 0)).disk_gib,
        5
    );
}

#[test]
fn usage_per_node() {
    let flavors: BTreeMap<String, FlavorSpec> = [
        ("small".to_owned(), flavor(1, 512, 1, 0, 0)),
        ("large".to_owned(), flavor(4, 8192, 40, 0, 0)),
    ]
    .into();
    let servers = vec![
        server("p", "s1", "small", Some("a")),
        server("p", "s2", "large", Some("a")),
        server("q", "s3", "small", Some("b")),
        server("p", "s4", "large", None),
        server("p", "s5", "gone", Some("b")),
    ];
    let usage = node_usage(&servers, |f| flavors.get(f));
    assert_eq!(
        usage.by_node,
        BTreeMap::from([
            (
                "a".to_owned(),
                Resources {
                    vcpus: 5,
                    memory_mib: 8704,
                    disk_gib: 41
                }
            ),
            (
                "b".to_owned(),
                Resources {
                    vcpus: 1,
                    memory_mib: 512,
                    disk_gib: 1
                }
            ),
        ])
    );
    assert_eq!(usage.missing_flavors, ["p/s5"]);
    let nodes = vec![node("a", 8, 16384, 100), node("c", 8, 16384, 100)];
    let cands = candidates(&nodes, &usage);
    assert_eq!(cands[0].used, usage.by_node["a"]);
    assert_eq!(cands[1].used, Resources::ZERO);
}

#[test]
fn hints_resolve_to_nodes() {
    let mut me = server("p", "me", "small", None);
    me.spec.scheduler_hints = SchedulerHints {
        group: Some("web".into()),
        different_host: vec!["x".into(), "unbound".into()],
        same_host: vec!["y".into(), "z".into()],
    };
    let member = |name: &str, node: Option<&str>| {
        let mut s = server("p", name, "small", node);
        s.spec.scheduler_hints.group = Some("web".into());
        s
    };
    let servers = vec![
        me.clone(),
        member("w1", Some("a")),
        member("w2", Some("a")),
        member("w3", None),
        server("p", "listed", "small", Some("b")),
        server("p", "x", "small", Some("c")),
        server("p", "unbound", "small", None),
        server("p", "y", "small", Some("d")),
        server("p", "z", "small", Some("d")),
        // Same names in another project do not count.
        server("q", "x", "small", Some("e")),
        {
            let mut s = server("q", "w9", "small", Some("e"));
            s.spec.scheduler_hints.group = Some("web".into());
            s
        },
    ];
    let mut g = ServerGroup::new(
        ObjectMeta {
            name: "web".into(),
            project: Some("p".into()),
            ..Default::default()
        },
        ServerGroupSpec {
            policy: ServerGroupPolicy::AntiAffinity,
            rules: ServerGroupRules {
                max_server_per_host: Some(2),
            },
        },
    );
    g.status.members = vec!["listed".into(), "me".into()];
    let hints = resolve_hints(&me, &servers, Some(&g));
    assert_eq!(
        hints,
        Hints {
            group: Some(GroupRequirement {
                name: "web".into(),
                policy: ServerGroupPolicy::AntiAffinity,
                max_server_per_host: 2,
                member_nodes: BTreeMap::from([("a".into(), 2), ("b".into(), 1)]),
            }),
            different_host: vec!["c".into()],
            same_host: vec!["d".into()],
        }
    );
    // A group the server does not name is ignored.
    let other = server("p", "other", "small", None);
    assert_eq!(resolve_hints(&other, &servers, Some(&g)).group, None);
}

#[test]
fn request_from_server_flavor_and_image() {
    let mut s = server("p", "s", "m1", None);
    s.spec.availability_zone = Some("az1".into());
    let mut f = flavor(2, 2048, 20, 0, 0);
    f.extra_specs = BTreeMap::from([
        ("trait:HW_CPU_X86_AVX2".into(), "required".into()),
        ("hw_architecture".into(), "aarch64".into()),
    ]);
    let props = BTreeMap::from([
        ("hw_architecture".to_owned(), "x86_64".to_owned()),
        ("img_hv_type".to_owned(), "qemu".to_owned()),
        ("trait:CUSTOM_GPU".to_owned(), "Forbidden".to_owned()),
        ("trait:CUSTOM_X".to_owned(), "preferred".to_owned()),
        ("os_distro".to_owned(), "cirros".to_owned()),
    ]);
    let r = PlacementRequest::for_server(&s, &f, Some(&props), Hints::default());
    assert_eq!(
        r,
        PlacementRequest {
            resources: Resources {
                vcpus: 2,
                memory_mib: 2048,
                disk_gib: 20
            },
            availability_zone: Some("az1".into()),
            image: ImageRequirements {
                architecture: Some("x86_64".into()),
                hypervisor_type: Some("qemu".into()),
                required_traits: vec!["HW_CPU_X86_AVX2".into()],
                forbidden_traits: vec!["CUSTOM_GPU".into()],
            },
            group: None,
            different_host: vec![],
            same_host: vec![],
            volume_nodes: vec![],
        }
    );
    let legacy = BTreeMap::from([
        ("architecture".to_owned(), "arm64".to_owned()),
        ("hypervisor_type".to_owned(), "kvm".to_owned()),
    ]);
    let i = ImageRequirements::from_properties(&legacy);
    assert_eq!(i.architecture.as_deref(), Some("arm64"));
    assert_eq!(i.hypervisor_type.as_deref(), Some("kvm"));
}
