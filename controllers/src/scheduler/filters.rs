//! Filters: each a small pure function saying whether one node can take the server, and
//! if not, why ([`Reason`]). They run in the order of [`FILTERS`], cheapest and most
//! fundamental first; the first failure is the node's reason.

use cirrus_crds::kinds::servergroup::ServerGroupPolicy;
use cirrus_crds::meta::{Condition, ConditionStatus};

use super::SchedulerConfig;
use super::explain::Reason;
use super::placement::{Candidate, PlacementRequest};

/// The shape of every filter: `Ok(())` when the node passes, else the reason.
pub type Filter = fn(&Candidate<'_>, &PlacementRequest, &SchedulerConfig) -> Result<(), Reason>;

/// Every filter with its name (as Nova names them), in the order they run.
pub const FILTERS: [(&str, Filter); 11] = [
    ("ComputeFilter", ready),
    ("CordonFilter", not_cordoned),
    ("VolumeAffinityFilter", volume_affinity),
    ("AvailabilityZoneFilter", availability_zone),
    ("RamFilter", ram),
    ("CoreFilter", vcpus),
    ("DiskFilter", disk),
    ("ImagePropertiesFilter", image_properties),
    ("ServerGroupAffinityFilter", group_affinity),
    ("ServerGroupAntiAffinityFilter", group_anti_affinity),
    ("DifferentHostSameHostFilter", host_hints),
];

/// Runs [`FILTERS`] in order, stopping at the first failure, which it returns with the
/// failing filter's name.
pub fn run(
    c: &Candidate<'_>,
    req: &PlacementRequest,
    config: &SchedulerConfig,
) -> Result<(), (&'static str, Reason)> {
    for (name, filter) in FILTERS {
        filter(c, req, config).map_err(|r| (name, r))?;
    }
    Ok(())
}

/// The node's `Ready` condition must be `True` (Nova's ComputeFilter: service up).
pub fn ready(c: &Candidate<'_>, _: &PlacementRequest, _: &SchedulerConfig) -> Result<(), Reason> {
    match Condition::find(&c.node.status.conditions, "Ready") {
        Some(cond) if cond.status == ConditionStatus::True => Ok(()),
        Some(cond) => {
            let status = match cond.status {
                ConditionStatus::False => "False",
                _ => "Unknown",
            };
            let mut detail = format!("Ready={status}");
            if !cond.reason.is_empty() {
                detail.push_str(": ");
                detail.push_str(&cond.reason);
            }
            Err(Reason::NotReady { detail })
        }
        None => Err(Reason::NotReady {
            detail: "no Ready condition reported".to_owned(),
        }),
    }
}

/// The node must not be cordoned (`spec.unschedulable`).
pub fn not_cordoned(
    c: &Candidate<'_>,
    _: &PlacementRequest,
    _: &SchedulerConfig,
) -> Result<(), Reason> {
    if c.node.spec.unschedulable {
        Err(Reason::Cordoned {
            why: c.node.spec.unschedulable_reason.clone(),
        })
    } else {
        Ok(())
    }
}

/// The server's placed volumes pin it: it must go to the node holding them (local volumes
/// can't move; moving the decision is free). Volumes on different nodes reject every node;
/// unplaced volumes don't constrain (they follow the server).
pub fn volume_affinity(
    c: &Candidate<'_>,
    req: &PlacementRequest,
    _: &SchedulerConfig,
) -> Result<(), Reason> {
    let Some((volume, node)) = req.volume_nodes.first() else {
        return Ok(());
    };
    if req.volume_nodes.iter().any(|(_, n)| n != node) {
        return Err(Reason::VolumesApart {
            volumes: req.volume_nodes.clone(),
        });
    }
    if c.name() == node {
        Ok(())
    } else {
        Err(Reason::VolumeElsewhere {
            volume: volume.clone(),
            node: node.clone(),
        })
    }
}

/// When the server asks for a zone, the node must be in it; a node naming no zone is in
/// [`SchedulerConfig::default_availability_zone`].
pub fn availability_zone(
    c: &Candidate<'_>,
    req: &PlacementRequest,
    config: &SchedulerConfig,
) -> Result<(), Reason> {
    let Some(wanted) = &req.availability_zone else {
        return Ok(());
    };
    let zone = c
        .node
        .spec
        .availability_zone
        .as_deref()
        .unwrap_or(&config.default_availability_zone);
    if zone == wanted {
        Ok(())
    } else {
        Err(Reason::AvailabilityZone {
            wanted: wanted.clone(),
            node_zone: zone.to_owned(),
        })
    }
}

/// Free RAM (`floor(capacity × ram ratio) − reserved − used`) must cover the request.
pub fn ram(
    c: &Candidate<'_>,
    req: &PlacementRequest,
    config: &SchedulerConfig,
) -> Result<(), Reason> {
    let need = req.resources.memory_mib;
    let free = c.free(config).memory_mib;
    if fits(need, free) {
        Ok(())
    } else {
        Err(Reason::InsufficientRam {
            need_mib: need,
            free_mib: free,
        })
    }
}

/// Free vCPUs (`floor(capacity × cpu ratio) − reserved − used`) must cover the request.
pub fn vcpus(
    c: &Candidate<'_>,
    req: &PlacementRequest,
    config: &SchedulerConfig,
) -> Result<(), Reason> {
    let need = req.resources.vcpus;
    let free = c.free(config).vcpus;
    if fits(need, free) {
        Ok(())
    } else {
        Err(Reason::InsufficientVcpus { need, free })
    }
}

/// Free disk (`floor(capacity × disk ratio) − reserved − used`) must cover the request.
pub fn disk(
    c: &Candidate<'_>,
    req: &PlacementRequest,
    config: &SchedulerConfig,
) -> Result<(), Reason> {
    let need = req.resources.disk_gib;
    let free = c.free(config).disk_gib;
    if fits(need, free) {
        Ok(())
    } else {
        Err(Reason::InsufficientDisk {
            need_gib: need,
            free_gib: free,
        })
    }
}

/// Nothing requested always fits; otherwise the request must not exceed what is free.
fn fits(need: u64, free: i64) -> bool {
    need == 0 || u64::try_from(free).is_ok_and(|f| need <= f)
}

/// The image's architecture and hypervisor type must match what the node reports
/// (`status.architecture`, `status.hypervisorType`; a node reporting nothing does not
/// match), and the node's `spec.traits` must include every required trait and no
/// forbidden one.
pub fn image_properties(
    c: &Candidate<'_>,
    req: &PlacementRequest,
    _: &SchedulerConfig,
) -> Result<(), Reason> {
    let status = &c.node.status;
    let image = &req.image;
    if let Some(wanted) = &image.architecture {
        let have = status.architecture.as_deref();
        if !have.is_some_and(|h| same_architecture(wanted, h)) {
            return Err(Reason::Architecture {
                wanted: wanted.clone(),
                node: have.map(str::to_owned),
            });
        }
    }
    if let Some(wanted) = &image.hypervisor_type {
        let have = status.hypervisor_type.as_deref();
        if !have.is_some_and(|h| hypervisor_serves(wanted, h)) {
            return Err(Reason::HypervisorType {
                wanted: wanted.clone(),
                node: have.map(str::to_owned),
            });
        }
    }
    let traits = &c.node.spec.traits;
    if let Some(t) = image.required_traits.iter().find(|t| !traits.contains(t)) {
        return Err(Reason::MissingTrait { name: t.clone() });
    }
    if let Some(t) = image.forbidden_traits.iter().find(|t| traits.contains(t)) {
        return Err(Reason::ForbiddenTrait { name: t.clone() });
    }
    Ok(())
}

/// Spellings of the same architecture (Nova's `arch.canonicalize`).
const ARCH_ALIASES: [(&str, &str); 7] = [
    ("amd64", "x86_64"),
    ("x64", "x86_64"),
    ("x86-64", "x86_64"),
    ("arm64", "aarch64"),
    ("i386", "i686"),
    ("x86", "i686"),
    ("ppc64el", "ppc64le"),
];

fn canonical_arch(a: &str) -> &str {
    ARCH_ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(a))
        .map_or(a, |(_, canon)| canon)
}

/// Whether two architecture names mean the same thing, ignoring case and aliases.
pub fn same_architecture(a: &str, b: &str) -> bool {
    canonical_arch(a).eq_ignore_ascii_case(canonical_arch(b))
}

/// Whether a node reporting hypervisor type `node` serves images wanting `wanted`,
/// ignoring case. `qemu` images also run on `KVM` nodes (KVM is QEMU with hardware
/// acceleration, and Nova reports both as QEMU); `kvm` images need a KVM node.
pub fn hypervisor_serves(wanted: &str, node: &str) -> bool {
    wanted.eq_ignore_ascii_case(node)
        || (wanted.eq_ignore_ascii_case("qemu") && node.eq_ignore_ascii_case("kvm"))
}

/// Hard affinity: once some member of the server's group is bound, the node must host a
/// member (Nova's ServerGroupAffinityFilter).
pub fn group_affinity(
    c: &Candidate<'_>,
    req: &PlacementRequest,
    _: &SchedulerConfig,
) -> Result<(), Reason> {
    match &req.group {
        Some(g) if g.policy == ServerGroupPolicy::Affinity => {
            if g.member_nodes.is_empty() || g.members_on(c.name()) > 0 {
                Ok(())
            } else {
                Err(Reason::GroupAffinity {
                    group: g.name.clone(),
                })
            }
        }
        _ => Ok(()),
    }
}

/// Hard anti-affinity: the node must hold fewer than `maxServerPerHost` (default 1)
/// members of the server's group (Nova's ServerGroupAntiAffinityFilter).
pub fn group_anti_affinity(
    c: &Candidate<'_>,
    req: &PlacementRequest,
    _: &SchedulerConfig,
) -> Result<(), Reason> {
    match &req.group {
        Some(g) if g.policy == ServerGroupPolicy::AntiAffinity => {
            let members = g.members_on(c.name());
            if members < g.max_server_per_host {
                Ok(())
            } else {
                Err(Reason::GroupAntiAffinity {
                    group: g.name.clone(),
                    members,
                    max_per_node: g.max_server_per_host,
                })
            }
        }
        _ => Ok(()),
    }
}

/// `differentHost`: the node must host none of the named servers; `sameHost`: when given,
/// the node must host at least one of them (Nova's DifferentHostFilter and SameHostFilter).
pub fn host_hints(
    c: &Candidate<'_>,
    req: &PlacementRequest,
    _: &SchedulerConfig,
) -> Result<(), Reason> {
    let name = c.name();
    if req.different_host.iter().any(|n| n == name) {
        return Err(Reason::DifferentHost);
    }
    if !req.same_host.is_empty() && !req.same_host.iter().any(|n| n == name) {
        return Err(Reason::SameHost);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // test tables are tuples of rows
mod tests {
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
}
