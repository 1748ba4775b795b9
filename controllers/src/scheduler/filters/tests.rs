//! Unit tests of the parent module (kept apart so the module reads on its own).

use cirrus_crds::kinds::servergroup::ServerGroupPolicy;
use cirrus_crds::meta::ConditionStatus;

use super::*;
use crate::scheduler::placement::Resources;
use crate::scheduler::testutil::{group, node, req, set_ready};

fn check(
    f: Filter,
    n: &cirrus_crds::kinds::node::Node,
    used: Resources,
    r: &PlacementRequest,
) -> Result<(), Reason> {
    f(&Candidate::new(n, used), r, &SchedulerConfig::default())
}

#[test]
fn ready_filter() {
    let mut n = node("a", 4, 4096, 40);
    assert_eq!(check(ready, &n, Resources::ZERO, &req(1, 1, 1)), Ok(()));
    set_ready(&mut n, ConditionStatus::Unknown);
    assert_eq!(
        check(ready, &n, Resources::ZERO, &req(1, 1, 1)),
        Err(Reason::NotReady {
            detail: "Ready=Unknown: NodeLeaseExpired".into()
        })
    );
    set_ready(&mut n, ConditionStatus::False);
    assert!(
        matches!(check(ready, &n, Resources::ZERO, &req(1, 1, 1)), Err(Reason::NotReady { detail }) if detail.starts_with("Ready=False"))
    );
    n.status.conditions.clear();
    assert_eq!(
        check(ready, &n, Resources::ZERO, &req(1, 1, 1)),
        Err(Reason::NotReady {
            detail: "no Ready condition reported".into()
        })
    );
}

#[test]
fn cordon_filter() {
    let mut n = node("a", 4, 4096, 40);
    assert_eq!(
        check(not_cordoned, &n, Resources::ZERO, &req(1, 1, 1)),
        Ok(())
    );
    n.spec.unschedulable = true;
    assert_eq!(
        check(not_cordoned, &n, Resources::ZERO, &req(1, 1, 1)),
        Err(Reason::Cordoned { why: None })
    );
    n.spec.unschedulable_reason = Some("maintenance".into());
    assert_eq!(
        check(not_cordoned, &n, Resources::ZERO, &req(1, 1, 1)),
        Err(Reason::Cordoned {
            why: Some("maintenance".into())
        })
    );
}

#[test]
fn availability_zone_filter() {
    // (node zone, wanted zone, passes)
    let table: [(Option<&str>, Option<&str>, bool); 6] = [
        (None, None, true),
        (Some("az1"), None, true),
        (None, Some("nova"), true),
        (None, Some("az1"), false),
        (Some("az1"), Some("az1"), true),
        (Some("az2"), Some("az1"), false),
    ];
    for (zone, wanted, passes) in table {
        let mut n = node("a", 4, 4096, 40);
        n.spec.availability_zone = zone.map(str::to_owned);
        let mut r = req(1, 1, 1);
        r.availability_zone = wanted.map(str::to_owned);
        let got = check(availability_zone, &n, Resources::ZERO, &r);
        assert_eq!(got.is_ok(), passes, "{zone:?} {wanted:?}: {got:?}");
        if !passes {
            assert_eq!(
                got,
                Err(Reason::AvailabilityZone {
                    wanted: wanted.unwrap().into(),
                    node_zone: zone.unwrap_or("nova").into()
                })
            );
        }
    }
    // The scheduler-wide default zone applies to nodes that name none.
    let n = node("a", 4, 4096, 40);
    let mut r = req(1, 1, 1);
    r.availability_zone = Some("az0".into());
    let config = SchedulerConfig {
        default_availability_zone: "az0".into(),
        ..Default::default()
    };
    assert_eq!(
        availability_zone(&Candidate::new(&n, Resources::ZERO), &r, &config),
        Ok(())
    );
}

#[test]
fn ram_filter_with_ratio_and_reserved() {
    // (capacity MiB, ratio, reserved, used, need, Ok or free)
    let table: [(u64, f64, u64, u64, u64, Result<(), i64>); 8] = [
        (4096, 1.0, 0, 0, 4096, Ok(())),
        (4096, 1.0, 0, 0, 4097, Err(4096)),
        (4096, 1.0, 512, 0, 4096, Err(3584)),
        (4096, 1.0, 512, 1024, 2560, Ok(())),
        (4096, 1.5, 512, 0, 5632, Ok(())),
        (4096, 1.5, 512, 0, 5633, Err(5632)),
        (4096, 1.0, 0, 5000, 1, Err(-904)),
        (4096, 1.0, 0, 5000, 0, Ok(())),
    ];
    for (cap, ratio, reserved, used, need, want) in table {
        let mut n = node("a", 4, cap, 40);
        n.spec.ram_allocation_ratio = ratio;
        n.spec.reserved_host_memory_mib = reserved;
        let used = Resources {
            memory_mib: used,
            ..Resources::ZERO
        };
        let got = check(ram, &n, used, &req(1, need, 1));
        let want = want.map_err(|free| Reason::InsufficientRam {
            need_mib: need,
            free_mib: free,
        });
        assert_eq!(
            got, want,
            "cap {cap} ratio {ratio} reserved {reserved} need {need}"
        );
    }
}

#[test]
fn vcpu_filter_with_ratio_and_fallback() {
    // (capacity, node ratio, reserved, used, need, config ratio, Ok or free)
    let table: [(u32, f64, u32, u64, u64, f64, Result<(), i64>); 7] = [
        (4, 4.0, 0, 0, 16, 4.0, Ok(())),
        (4, 4.0, 0, 0, 17, 4.0, Err(16)),
        (4, 1.0, 0, 2, 3, 4.0, Err(2)),
        (4, 16.0, 0, 60, 4, 4.0, Ok(())),
        (4, 4.0, 2, 0, 15, 4.0, Err(14)),
        // A node ratio that is not a positive number falls back to the config.
        (4, 0.0, 0, 0, 8, 2.0, Ok(())),
        (4, f64::NAN, 0, 0, 9, 2.0, Err(8)),
    ];
    for (cap, ratio, reserved, used, need, default, want) in table {
        let mut n = node("a", cap, 4096, 40);
        n.spec.cpu_allocation_ratio = ratio;
        n.spec.reserved_host_cpus = reserved;
        let config = SchedulerConfig {
            cpu_allocation_ratio: default,
            ..Default::default()
        };
        let used = Resources {
            vcpus: used,
            ..Resources::ZERO
        };
        let got = vcpus(&Candidate::new(&n, used), &req(need, 1, 1), &config);
        let want = want.map_err(|free| Reason::InsufficientVcpus { need, free });
        assert_eq!(got, want, "cap {cap} ratio {ratio} need {need}");
    }
}

#[test]
fn disk_filter_with_ratio_and_reserved() {
    // (capacity GiB, ratio, reserved, used, need, Ok or free)
    let table: [(u64, f64, u64, u64, u64, Result<(), i64>); 5] = [
        (100, 1.0, 0, 0, 100, Ok(())),
        (100, 1.0, 10, 0, 100, Err(90)),
        (100, 2.0, 10, 50, 140, Ok(())),
        (100, 2.0, 10, 50, 141, Err(140)),
        (100, 1.0, 0, 100, 0, Ok(())),
    ];
    for (cap, ratio, reserved, used, need, want) in table {
        let mut n = node("a", 4, 4096, cap);
        n.spec.disk_allocation_ratio = ratio;
        n.spec.reserved_host_disk_gib = reserved;
        let used = Resources {
            disk_gib: used,
            ..Resources::ZERO
        };
        let got = check(disk, &n, used, &req(1, 1, need));
        let want = want.map_err(|free| Reason::InsufficientDisk {
            need_gib: need,
            free_gib: free,
        });
        assert_eq!(
            got, want,
            "cap {cap} ratio {ratio} reserved {reserved} need {need}"
        );
    }
}

#[test]
fn image_properties_filter() {
    // (node arch, node hv, node traits, image arch, image hv, required, forbidden, result)
    type Row<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        &'a [&'a str],
        Option<&'a str>,
        Option<&'a str>,
        &'a [&'a str],
        &'a [&'a str],
        Result<(), Reason>,
    );
    let table: Vec<Row<'_>> = vec![
        (None, None, &[], None, None, &[], &[], Ok(())),
        (
            Some("x86_64"),
            Some("QEMU"),
            &[],
            Some("x86_64"),
            Some("qemu"),
            &[],
            &[],
            Ok(()),
        ),
        (
            Some("x86_64"),
            None,
            &[],
            Some("amd64"),
            None,
            &[],
            &[],
            Ok(()),
        ),
        (
            Some("aarch64"),
            None,
            &[],
            Some("ARM64"),
            None,
            &[],
            &[],
            Ok(()),
        ),
        (
            Some("x86_64"),
            None,
            &[],
            Some("aarch64"),
            None,
            &[],
            &[],
            Err(Reason::Architecture {
                wanted: "aarch64".into(),
                node: Some("x86_64".into()),
            }),
        ),
        (
            None,
            None,
            &[],
            Some("x86_64"),
            None,
            &[],
            &[],
            Err(Reason::Architecture {
                wanted: "x86_64".into(),
                node: None,
            }),
        ),
        (None, Some("KVM"), &[], None, Some("qemu"), &[], &[], Ok(())),
        (
            None,
            Some("QEMU"),
            &[],
            None,
            Some("kvm"),
            &[],
            &[],
            Err(Reason::HypervisorType {
                wanted: "kvm".into(),
                node: Some("QEMU".into()),
            }),
        ),
        (
            None,
            None,
            &["HW_CPU_X86_AVX2"],
            None,
            None,
            &["HW_CPU_X86_AVX2"],
            &[],
            Ok(()),
        ),
        (
            None,
            None,
            &[],
            None,
            None,
            &["HW_CPU_X86_AVX2"],
            &[],
            Err(Reason::MissingTrait {
                name: "HW_CPU_X86_AVX2".into(),
            }),
        ),
        (
            None,
            None,
            &["CUSTOM_GPU"],
            None,
            None,
            &[],
            &["CUSTOM_GPU"],
            Err(Reason::ForbiddenTrait {
                name: "CUSTOM_GPU".into(),
            }),
        ),
    ];
    for (i, (arch, hv, traits, iarch, ihv, required, forbidden, want)) in
        table.into_iter().enumerate()
    {
        let mut n = node("a", 4, 4096, 40);
        n.status.architecture = arch.map(str::to_owned);
        n.status.hypervisor_type = hv.map(str::to_owned);
        n.spec.traits = traits.iter().map(|t| (*t).to_owned()).collect();
        let mut r = req(1, 1, 1);
        r.image.architecture = iarch.map(str::to_owned);
        r.image.hypervisor_type = ihv.map(str::to_owned);
        r.image.required_traits = required.iter().map(|t| (*t).to_owned()).collect();
        r.image.forbidden_traits = forbidden.iter().map(|t| (*t).to_owned()).collect();
        assert_eq!(
            check(image_properties, &n, Resources::ZERO, &r),
            want,
            "row {i}"
        );
    }
}

#[test]
fn group_filters() {
    use ServerGroupPolicy::*;
    // (policy, members, max per host, node, affinity ok, anti-affinity ok)
    let table: [(ServerGroupPolicy, &[(&str, u32)], u32, &str, bool, bool); 9] = [
        (Affinity, &[], 1, "a", true, true),
        (Affinity, &[("a", 1)], 1, "a", true, true),
        (Affinity, &[("a", 1)], 1, "b", false, true),
        (AntiAffinity, &[], 1, "a", true, true),
        (AntiAffinity, &[("a", 1)], 1, "a", true, false),
        (AntiAffinity, &[("a", 1)], 1, "b", true, true),
        (AntiAffinity, &[("a", 1)], 2, "a", true, true),
        (AntiAffinity, &[("a", 2)], 2, "a", true, false),
        // Soft policies never filter.
        (SoftAntiAffinity, &[("a", 3)], 1, "a", true, true),
    ];
    for (policy, members, max, name, aff, anti) in table {
        let n = node(name, 4, 4096, 40);
        let mut r = req(1, 1, 1);
        let mut g = group(policy, members);
        g.max_server_per_host = max;
        r.group = Some(g);
        let got_aff = check(group_affinity, &n, Resources::ZERO, &r);
        let got_anti = check(group_anti_affinity, &n, Resources::ZERO, &r);
        assert_eq!(
            got_aff.is_ok(),
            aff,
            "{policy:?} {members:?} {name}: {got_aff:?}"
        );
        assert_eq!(
            got_anti.is_ok(),
            anti,
            "{policy:?} {members:?} {name}: {got_anti:?}"
        );
        if !aff {
            assert_eq!(
                got_aff,
                Err(Reason::GroupAffinity {
                    group: "web".into()
                })
            );
        }
        if !anti {
            let on = members.iter().find(|(n, _)| *n == name).unwrap().1;
            assert_eq!(
                got_anti,
                Err(Reason::GroupAntiAffinity {
                    group: "web".into(),
                    members: on,
                    max_per_node: max
                })
            );
        }
    }
}

#[test]
fn host_hint_filter() {
    // (different, same, node, result)
    let table: [(&[&str], &[&str], &str, Result<(), Reason>); 6] = [
        (&[], &[], "a", Ok(())),
        (&["a"], &[], "a", Err(Reason::DifferentHost)),
        (&["a"], &[], "b", Ok(())),
        (&[], &["a", "c"], "a", Ok(())),
        (&[], &["a", "c"], "b", Err(Reason::SameHost)),
        (&["a"], &["a"], "a", Err(Reason::DifferentHost)),
    ];
    for (different, same, name, want) in table {
        let n = node(name, 4, 4096, 40);
        let mut r = req(1, 1, 1);
        r.different_host = different.iter().map(|s| (*s).to_owned()).collect();
        r.same_host = same.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(
            check(host_hints, &n, Resources::ZERO, &r),
            want,
            "{different:?} {same:?} {name}"
        );
    }
}

#[test]
fn volume_affinity_filter() {
    let pins = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    let apart = Err(Reason::VolumesApart {
        volumes: pins(&[("d1", "a"), ("d2", "b")]),
    });
    // (placed volumes, node, result)
    let table: Vec<(Vec<(String, String)>, &str, Result<(), Reason>)> = vec![
        // No placed volume: no constraint.
        (vec![], "a", Ok(())),
        (pins(&[("d1", "a")]), "a", Ok(())),
        (
            pins(&[("d1", "a")]),
            "b",
            Err(Reason::VolumeElsewhere {
                volume: "d1".into(),
                node: "a".into(),
            }),
        ),
        (pins(&[("d1", "a"), ("d2", "a")]), "a", Ok(())),
        (pins(&[("d1", "a"), ("d2", "b")]), "a", apart.clone()),
        (pins(&[("d1", "a"), ("d2", "b")]), "b", apart.clone()),
        (pins(&[("d1", "a"), ("d2", "b")]), "c", apart),
    ];
    for (volumes, name, want) in table {
        let n = node(name, 4, 4096, 40);
        let mut r = req(1, 1, 1);
        r.volume_nodes = volumes.clone();
        assert_eq!(
            check(volume_affinity, &n, Resources::ZERO, &r),
            want,
            "{volumes:?} {name}"
        );
    }
    // The per-node text, as `describe` shows it.
    let got = check(
        volume_affinity,
        &node("b", 4, 4096, 40),
        Resources::ZERO,
        &{
            let mut r = req(1, 1, 1);
            r.volume_nodes = pins(&[("data-1", "node-a")]);
            r
        },
    );
    assert_eq!(got.unwrap_err().to_string(), "volume data-1 is on node-a");
}

#[test]
fn first_failing_filter_is_the_reason() {
    let mut n = node("a", 1, 512, 1);
    n.spec.unschedulable = true;
    set_ready(&mut n, ConditionStatus::False);
    let got = run(
        &Candidate::new(&n, Resources::ZERO),
        &req(8, 8192, 80),
        &SchedulerConfig::default(),
    );
    assert!(
        matches!(got, Err(("ComputeFilter", Reason::NotReady { .. }))),
        "{got:?}"
    );
    set_ready(&mut n, ConditionStatus::True);
    let got = run(
        &Candidate::new(&n, Resources::ZERO),
        &req(8, 8192, 80),
        &SchedulerConfig::default(),
    );
    assert_eq!(got, Err(("CordonFilter", Reason::Cordoned { why: None })));
    n.spec.unschedulable = false;
    let got = run(
        &Candidate::new(&n, Resources::ZERO),
        &req(8, 8192, 80),
        &SchedulerConfig::default(),
    );
    assert_eq!(
        got,
        Err((
            "RamFilter",
            Reason::InsufficientRam {
                need_mib: 8192,
                free_mib: 512
            }
        ))
    );
}
