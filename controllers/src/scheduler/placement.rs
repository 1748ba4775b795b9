//! What a server asks for, what the nodes have, and the placement decision itself.

use std::collections::BTreeMap;
use std::ops::{Add, AddAssign};

use cirrus_crds::kinds::flavor::FlavorSpec;
use cirrus_crds::kinds::node::Node;
use cirrus_crds::kinds::server::{Server, ServerSpec};
use cirrus_crds::kinds::servergroup::{ServerGroup, ServerGroupPolicy};
use cirrus_crds::kinds::volume::Volume;

use super::SchedulerConfig;
use super::explain::{NoValidHost, NodeRejection};
use super::filters;
use super::weighers;

/// An amount of the three resources the scheduler accounts for.
///
/// Requests and usage are both expressed in it, so "fits" is a plain comparison.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    /// Virtual CPUs.
    pub vcpus: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Local disk in GiB.
    pub disk_gib: u64,
}

impl Resources {
    /// Nothing at all.
    pub const ZERO: Resources = Resources {
        vcpus: 0,
        memory_mib: 0,
        disk_gib: 0,
    };

    /// What a flavor takes on a node: its vCPUs, RAM, and root + ephemeral + swap disk
    /// (swap is in MiB in a flavor and is rounded up to whole GiB).
    pub fn of_flavor(flavor: &FlavorSpec) -> Self {
        Self {
            vcpus: u64::from(flavor.vcpus),
            memory_mib: flavor.ram,
            disk_gib: flavor
                .disk
                .saturating_add(flavor.ephemeral)
                .saturating_add(flavor.swap.div_ceil(1024)),
        }
    }

    /// What a server with this spec and flavor takes on its node: [`Resources::of_flavor`],
    /// without the root disk when the server boots from a volume (its root is then not on
    /// the node's local disk). The same function serves requests and usage, so the two
    /// always agree.
    pub fn for_server(spec: &ServerSpec, flavor: &FlavorSpec) -> Self {
        let mut r = Self::of_flavor(flavor);
        if spec.boot_volume.is_some() {
            r.disk_gib = r.disk_gib.saturating_sub(flavor.disk);
        }
        r
    }
}

impl Add for Resources {
    type Output = Resources;

    fn add(self, other: Resources) -> Resources {
        Resources {
            vcpus: self.vcpus.saturating_add(other.vcpus),
            memory_mib: self.memory_mib.saturating_add(other.memory_mib),
            disk_gib: self.disk_gib.saturating_add(other.disk_gib),
        }
    }
}

impl AddAssign for Resources {
    fn add_assign(&mut self, other: Resources) {
        *self = *self + other;
    }
}

/// Placement-relevant requirements of an image (and of a flavor's extra specs), Nova's
/// `ImagePropertiesFilter` and required/forbidden traits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageRequirements {
    /// CPU architecture the guest needs (`hw_architecture`, or the legacy `architecture`).
    pub architecture: Option<String>,
    /// Hypervisor type the guest needs (`img_hv_type`, or the legacy `hypervisor_type`).
    pub hypervisor_type: Option<String>,
    /// Traits the node must have (`trait:NAME=required`).
    pub required_traits: Vec<String>,
    /// Traits the node must not have (`trait:NAME=forbidden`).
    pub forbidden_traits: Vec<String>,
}

impl ImageRequirements {
    /// Reads the requirements from image properties or flavor extra specs.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Self {
        let mut r = Self::default();
        r.merge_properties(props);
        r
    }

    /// Adds the requirements found in `props`; values already set are kept (the image is
    /// read first, then the flavor).
    pub fn merge_properties(&mut self, props: &BTreeMap<String, String>) {
        let get = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| props.get(*k))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if self.architecture.is_none() {
            self.architecture = get(&["hw_architecture", "architecture"]);
        }
        if self.hypervisor_type.is_none() {
            self.hypervisor_type = get(&["img_hv_type", "hypervisor_type"]);
        }
        for (key, value) in props {
            let Some(name) = key.strip_prefix("trait:") else {
                continue;
            };
            let list = match value.trim().to_ascii_lowercase().as_str() {
                "required" => &mut self.required_traits,
                "forbidden" => &mut self.forbidden_traits,
                _ => continue,
            };
            if !list.iter().any(|t| t == name) {
                list.push(name.to_owned());
            }
        }
    }
}

/// A server group's policy as it applies to one placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRequirement {
    /// Name of the `ServerGroup`, for messages.
    pub name: String,
    /// Its policy.
    pub policy: ServerGroupPolicy,
    /// With hard anti-affinity: how many members one node may hold (at least 1).
    pub max_server_per_host: u32,
    /// How many *other* members are already bound to each node.
    pub member_nodes: BTreeMap<String, u32>,
}

impl GroupRequirement {
    /// Number of other group members bound to `node`.
    pub fn members_on(&self, node: &str) -> u32 {
        self.member_nodes.get(node).copied().unwrap_or(0)
    }
}

/// Everything the scheduler needs to know about the server being placed, with names
/// already resolved to nodes so placement itself never looks anything up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlacementRequest {
    /// Resources the server takes.
    pub resources: Resources,
    /// Wanted availability zone; `None` means any.
    pub availability_zone: Option<String>,
    /// Image (and flavor) requirements on the node.
    pub image: ImageRequirements,
    /// Server-group policy, when the server joins a group.
    pub group: Option<GroupRequirement>,
    /// Nodes hosting servers named in `differentHost`: excluded.
    pub different_host: Vec<String>,
    /// Nodes hosting servers named in `sameHost`: when the hint is given, the server must
    /// go to one of them (Nova's `SameHostFilter`: any overlap passes). Empty means no
    /// constraint, so the controller should wait until named servers are bound.
    pub same_host: Vec<String>,
    /// The server's volumes that are placed, with their node (`(volume, node)`, by volume
    /// name; see [`volume_nodes`]): the server must go where they are.
    pub volume_nodes: Vec<(String, String)>,
}

impl PlacementRequest {
    /// The request for `server` with its flavor and image properties (image first, then
    /// flavor extra specs), and the hints already resolved by [`resolve_hints`].
    pub fn for_server(
        server: &Server,
        flavor: &FlavorSpec,
        image_properties: Option<&BTreeMap<String, String>>,
        hints: Hints,
    ) -> Self {
        let mut image = ImageRequirements::default();
        if let Some(props) = image_properties {
            image.merge_properties(props);
        }
        image.merge_properties(&flavor.extra_specs);
        Self {
            resources: Resources::for_server(&server.spec, flavor),
            availability_zone: server.spec.availability_zone.clone(),
            image,
            group: hints.group,
            different_host: hints.different_host,
            same_host: hints.same_host,
            volume_nodes: Vec::new(),
        }
    }
}

/// The placed volumes `server` uses (its `spec.bootVolume` and `spec.volumes`, in its
/// project) with the node holding each (`status.node`), sorted by volume name. Unplaced
/// volumes are left out: they follow the server (the volume controller places them on the
/// server's node).
pub fn volume_nodes<'a>(
    server: &Server,
    volumes: impl IntoIterator<Item = &'a Volume>,
) -> Vec<(String, String)> {
    let project = &server.metadata.project;
    let uses = |name: &str| {
        server.spec.boot_volume.as_deref() == Some(name)
            || server.spec.volumes.iter().any(|v| v.volume == name)
    };
    let mut found: Vec<(String, String)> = volumes
        .into_iter()
        .filter(|v| &v.metadata.project == project && uses(&v.metadata.name))
        .filter_map(|v| {
            v.status
                .node
                .clone()
                .map(|node| (v.metadata.name.clone(), node))
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// A server's scheduler hints resolved to nodes (see [`resolve_hints`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hints {
    /// The group policy, when the server names a group that exists.
    pub group: Option<GroupRequirement>,
    /// Nodes of the bound servers named in `differentHost`, sorted, deduplicated.
    pub different_host: Vec<String>,
    /// Nodes of the bound servers named in `sameHost`, sorted, deduplicated.
    pub same_host: Vec<String>,
}

/// Resolves `server`'s scheduler hints against the servers of its project and its
/// `ServerGroup` (when `spec.schedulerHints.group` names one that exists).
///
/// Group members are the servers naming the group in their hints plus the group's
/// `status.members`, except `server` itself; only bound members (with `spec.nodeName`)
/// count. Servers of other projects in `servers` are ignored. Unbound servers named in
/// `differentHost`/`sameHost` are skipped.
pub fn resolve_hints(server: &Server, servers: &[Server], group: Option<&ServerGroup>) -> Hints {
    let project = &server.metadata.project;
    let same_project = |s: &&Server| &s.metadata.project == project;
    let nodes_of = |names: &[String]| {
        let mut nodes: Vec<String> = servers
            .iter()
            .filter(same_project)
            .filter(|s| names.contains(&s.metadata.name))
            .filter_map(|s| s.spec.node_name.clone())
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    };
    let hints = &server.spec.scheduler_hints;
    let group = group
        .filter(|g| hints.group.as_deref() == Some(g.metadata.name.as_str()))
        .map(|g| {
            let name = &g.metadata.name;
            let mut member_nodes = BTreeMap::new();
            for s in servers.iter().filter(same_project) {
                if s.metadata.name == server.metadata.name {
                    continue;
                }
                let member = s.spec.scheduler_hints.group.as_ref() == Some(name)
                    || g.status.members.contains(&s.metadata.name);
                if let (true, Some(node)) = (member, &s.spec.node_name) {
                    *member_nodes.entry(node.clone()).or_insert(0) += 1;
                }
            }
            GroupRequirement {
                name: name.clone(),
                policy: g.spec.policy,
                max_server_per_host: g.spec.rules.max_server_per_host.unwrap_or(1).max(1),
                member_nodes,
            }
        });
    Hints {
        group,
        different_host: nodes_of(&hints.different_host),
        same_host: nodes_of(&hints.same_host),
    }
}

/// Resources consumed on each node by the servers bound to it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeUsage {
    /// Node name to the sum of its servers' resources.
    pub by_node: BTreeMap<String, Resources>,
    /// `project/name` of bound servers whose flavor was not found; their usage is unknown
    /// and not counted, which the controller should report.
    pub missing_flavors: Vec<String>,
}

/// Sums, per node, the resources of the servers bound to it (`spec.nodeName`), using
/// [`Resources::for_server`] with the flavor `flavor` returns for the server's flavor
/// name. Unbound servers are skipped; servers being deleted still count until they are
/// gone, since their domain still holds the resources.
pub fn node_usage<'a, 'f>(
    servers: impl IntoIterator<Item = &'a Server>,
    flavor: impl Fn(&str) -> Option<&'f FlavorSpec>,
) -> NodeUsage {
    let mut usage = NodeUsage::default();
    for s in servers {
        let Some(node) = &s.spec.node_name else {
            continue;
        };
        match flavor(&s.spec.flavor) {
            Some(f) => {
                *usage.by_node.entry(node.clone()).or_default() += Resources::for_server(&s.spec, f)
            }
            None => usage.missing_flavors.push(format!(
                "{}/{}",
                s.metadata.project.as_deref().unwrap_or(""),
                s.metadata.name
            )),
        }
    }
    usage
}

/// One node as the scheduler sees it: the object and what is already used on it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// The node object (spec and status).
    pub node: &'a Node,
    /// Resources the servers bound to it consume.
    pub used: Resources,
}

impl<'a> Candidate<'a> {
    /// A candidate with `used` already consumed.
    pub fn new(node: &'a Node, used: Resources) -> Self {
        Self { node, used }
    }

    /// The node's name.
    pub fn name(&self) -> &'a str {
        &self.node.metadata.name
    }

    /// What the node can hand out in all (`floor(capacity × ratio) − reserved`, possibly
    /// negative when reservations exceed capacity).
    pub fn limits(&self, config: &SchedulerConfig) -> Limits {
        let spec = &self.node.spec;
        let cap = &self.node.status.capacity;
        Limits {
            vcpus: limit(
                u64::from(cap.vcpus),
                ratio(spec.cpu_allocation_ratio, config.cpu_allocation_ratio),
                u64::from(spec.reserved_host_cpus),
            ),
            memory_mib: limit(
                cap.memory_mib,
                ratio(spec.ram_allocation_ratio, config.ram_allocation_ratio),
                spec.reserved_host_memory_mib,
            ),
            disk_gib: limit(
                cap.disk_gib,
                ratio(spec.disk_allocation_ratio, config.disk_allocation_ratio),
                spec.reserved_host_disk_gib,
            ),
        }
    }

    /// What is still free: [`Candidate::limits`] minus `used` (negative when overbooked,
    /// e.g. after a ratio was lowered).
    pub fn free(&self, config: &SchedulerConfig) -> Limits {
        let l = self.limits(config);
        Limits {
            vcpus: l.vcpus - to_i64(self.used.vcpus),
            memory_mib: l.memory_mib - to_i64(self.used.memory_mib),
            disk_gib: l.disk_gib - to_i64(self.used.disk_gib),
        }
    }
}

/// Signed amounts of each resource: totals a node can hand out, or what is free.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Virtual CPUs.
    pub vcpus: i64,
    /// Memory in MiB.
    pub memory_mib: i64,
    /// Disk in GiB.
    pub disk_gib: i64,
}

/// The node's own ratio when it is usable, else the scheduler default.
fn ratio(node: f64, default: f64) -> f64 {
    if node.is_finite() && node > 0.0 {
        node
    } else {
        default
    }
}

fn limit(capacity: u64, ratio: f64, reserved: u64) -> i64 {
    // `as` saturates for out-of-range floats, which is what we want here.
    let scaled = (capacity as f64 * ratio).floor() as i64;
    scaled.saturating_sub(to_i64(reserved))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Candidates for every node in `nodes`, with the usage [`node_usage`] computed.
pub fn candidates<'a>(nodes: &'a [Node], usage: &NodeUsage) -> Vec<Candidate<'a>> {
    nodes
        .iter()
        .map(|n| {
            let used = usage
                .by_node
                .get(&n.metadata.name)
                .copied()
                .unwrap_or_default();
            Candidate::new(n, used)
        })
        .collect()
}

/// A successful placement.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// The chosen node.
    pub node: String,
    /// Its total weight (sum of normalized weights times multipliers).
    pub weight: f64,
    /// How many nodes passed every filter.
    pub feasible: usize,
    /// How many nodes were considered.
    pub total: usize,
}

/// Places one server: filters, then weighers, then the tie-break by node name.
///
/// # Errors
/// [`NoValidHost`] when no candidate passes every filter, with each node's reason.
pub fn place(
    request: &PlacementRequest,
    candidates: &[Candidate<'_>],
    config: &SchedulerConfig,
) -> Result<Placement, NoValidHost> {
    let mut feasible: Vec<usize> = Vec::with_capacity(candidates.len());
    let mut rejections = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        match filters::run(c, request, config) {
            Ok(()) => feasible.push(i),
            Err((filter, reason)) => rejections.push(NodeRejection {
                node: c.name().to_owned(),
                filter,
                reason,
            }),
        }
    }
    if feasible.is_empty() {
        return Err(NoValidHost::new(candidates.len(), rejections));
    }
    let totals = weighers::weigh(&feasible, candidates, request, config);
    let mut best = 0;
    for k in 1..feasible.len() {
        let (a, b) = (totals[k], totals[best]);
        let better = match a.total_cmp(&b) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => {
                candidates[feasible[k]].name() < candidates[feasible[best]].name()
            }
        };
        if better {
            best = k;
        }
    }
    Ok(Placement {
        node: candidates[feasible[best]].name().to_owned(),
        weight: totals[best],
        feasible: feasible.len(),
        total: candidates.len(),
    })
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // test tables are tuples of rows
mod tests {
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
}
