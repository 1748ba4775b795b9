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
mod tests;
