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
mod tests;
