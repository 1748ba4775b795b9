//! Why a server fits nowhere, the way `kubectl describe pod` says it: one line counting the
//! reasons over all nodes for the `Scheduled=False` condition and the `FailedScheduling`
//! event, and each node's own reason for `describe`. Never a bare "No valid host".

use std::fmt;

/// Why one node cannot take the server (the first filter it failed).
///
/// `Display` gives the detailed, per-node text (`describe`); [`NoValidHost::message`]
/// aggregates nodes with the same kind of reason into one summary item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The node's `Ready` condition is not `True`.
    NotReady {
        /// What the condition says, e.g. `Ready=Unknown: NodeLeaseExpired`.
        detail: String,
    },
    /// `spec.unschedulable` is set.
    Cordoned {
        /// `spec.unschedulableReason`, if any.
        why: Option<String>,
    },
    /// A volume the server uses is placed on another node (local volumes can't move; the
    /// server goes to them).
    VolumeElsewhere {
        /// The volume.
        volume: String,
        /// The node holding it.
        node: String,
    },
    /// The server's placed volumes are on different nodes: no node can hold them all.
    VolumesApart {
        /// Each placed volume with its node, by volume name.
        volumes: Vec<(String, String)>,
    },
    /// The node is in another availability zone.
    AvailabilityZone {
        /// The zone the server asks for.
        wanted: String,
        /// The node's zone.
        node_zone: String,
    },
    /// Not enough free RAM.
    InsufficientRam {
        /// MiB the server needs.
        need_mib: u64,
        /// MiB free on the node (negative when overbooked).
        free_mib: i64,
    },
    /// Not enough free vCPUs.
    InsufficientVcpus {
        /// vCPUs the server needs.
        need: u64,
        /// vCPUs free on the node (negative when overbooked).
        free: i64,
    },
    /// Not enough free disk.
    InsufficientDisk {
        /// GiB the server needs.
        need_gib: u64,
        /// GiB free on the node (negative when overbooked).
        free_gib: i64,
    },
    /// The image needs another CPU architecture.
    Architecture {
        /// What the image needs.
        wanted: String,
        /// What the node reports, if anything.
        node: Option<String>,
    },
    /// The image needs another hypervisor type.
    HypervisorType {
        /// What the image needs.
        wanted: String,
        /// What the node reports, if anything.
        node: Option<String>,
    },
    /// The node lacks a required trait.
    MissingTrait {
        /// The trait.
        name: String,
    },
    /// The node has a forbidden trait.
    ForbiddenTrait {
        /// The trait.
        name: String,
    },
    /// Hard affinity: the group's members are on other nodes.
    GroupAffinity {
        /// The server group.
        group: String,
    },
    /// Hard anti-affinity: the node already holds as many members as allowed.
    GroupAntiAffinity {
        /// The server group.
        group: String,
        /// Members on the node.
        members: u32,
        /// Members allowed per node.
        max_per_node: u32,
    },
    /// The node hosts a server named in `differentHost`.
    DifferentHost,
    /// The node hosts none of the servers named in `sameHost`.
    SameHost,
}

impl Reason {
    /// Position of the reason's kind in filter order, for a stable summary order.
    fn ordinal(&self) -> u8 {
        match self {
            Reason::NotReady { .. } => 0,
            Reason::Cordoned { .. } => 1,
            Reason::VolumeElsewhere { .. } => 2,
            Reason::VolumesApart { .. } => 3,
            Reason::AvailabilityZone { .. } => 4,
            Reason::InsufficientRam { .. } => 5,
            Reason::InsufficientVcpus { .. } => 6,
            Reason::InsufficientDisk { .. } => 7,
            Reason::Architecture { .. } => 8,
            Reason::HypervisorType { .. } => 9,
            Reason::MissingTrait { .. } => 10,
            Reason::ForbiddenTrait { .. } => 11,
            Reason::GroupAffinity { .. } => 12,
            Reason::GroupAntiAffinity { .. } => 13,
            Reason::DifferentHost => 14,
            Reason::SameHost => 15,
        }
    }

    /// Reasons with the same key are counted together in the summary: the kind plus what
    /// the request asked for (the zone, the architecture, the trait, the group).
    fn key(&self) -> (u8, &str) {
        let detail = match self {
            Reason::AvailabilityZone { wanted, .. }
            | Reason::Architecture { wanted, .. }
            | Reason::HypervisorType { wanted, .. } => wanted.as_str(),
            Reason::MissingTrait { name } | Reason::ForbiddenTrait { name } => name.as_str(),
            Reason::VolumeElsewhere { volume, .. } => volume.as_str(),
            Reason::GroupAffinity { group } | Reason::GroupAntiAffinity { group, .. } => {
                group.as_str()
            }
            _ => "",
        };
        (self.ordinal(), detail)
    }

    /// The summary text for a set of nodes rejected for reasons sharing `self`'s key.
    fn summary(&self, same: &[&Reason]) -> String {
        // For resources, show the most free among the nodes: the one closest to fitting.
        let max_free = |f: fn(&Reason) -> i64| {
            let frees: Vec<i64> = same.iter().map(|r| f(r).max(0)).collect();
            let max = frees.iter().copied().max().unwrap_or(0);
            if frees.iter().all(|&v| v == max) {
                format!("free {max}")
            } else {
                format!("free at most {max}")
            }
        };
        match self {
            Reason::NotReady { .. } => "not ready".to_owned(),
            Reason::Cordoned { .. } => "cordoned".to_owned(),
            Reason::VolumeElsewhere { volume, node } => {
                format!("not holding volume {volume} (it is on {node})")
            }
            Reason::VolumesApart { volumes } => format!(
                "can't hold all the server's volumes, which are on different nodes ({})",
                volumes_text(volumes)
            ),
            Reason::AvailabilityZone { wanted, .. } => {
                format!("not in availability zone {wanted}")
            }
            Reason::InsufficientRam { need_mib, .. } => format!(
                "insufficient RAM (need {need_mib} MiB, {} MiB)",
                max_free(|r| match r {
                    Reason::InsufficientRam { free_mib, .. } => *free_mib,
                    _ => 0,
                })
            ),
            Reason::InsufficientVcpus { need, .. } => format!(
                "insufficient vCPUs (need {need}, {})",
                max_free(|r| match r {
                    Reason::InsufficientVcpus { free, .. } => *free,
                    _ => 0,
                })
            ),
            Reason::InsufficientDisk { need_gib, .. } => format!(
                "insufficient disk (need {need_gib} GiB, {} GiB)",
                max_free(|r| match r {
                    Reason::InsufficientDisk { free_gib, .. } => *free_gib,
                    _ => 0,
                })
            ),
            Reason::Architecture { wanted, .. } => {
                format!("wrong architecture (image needs {wanted})")
            }
            Reason::HypervisorType { wanted, .. } => {
                format!("wrong hypervisor type (image needs {wanted})")
            }
            Reason::MissingTrait { name } => format!("missing trait {name}"),
            Reason::ForbiddenTrait { name } => format!("forbidden trait {name}"),
            Reason::GroupAffinity { group } => {
                format!("not hosting server group {group} (affinity)")
            }
            Reason::GroupAntiAffinity { group, .. } => {
                format!("already hosting server group {group} (anti-affinity)")
            }
            Reason::DifferentHost => "hosting a differentHost server".to_owned(),
            Reason::SameHost => "not hosting a sameHost server".to_owned(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotReady { detail } => write!(f, "not ready ({detail})"),
            Reason::Cordoned { why: Some(why) } => write!(f, "cordoned ({why})"),
            Reason::Cordoned { why: None } => write!(f, "cordoned"),
            Reason::VolumeElsewhere { volume, node } => {
                write!(f, "volume {volume} is on {node}")
            }
            Reason::VolumesApart { volumes } => write!(
                f,
                "the server's volumes are on different nodes ({})",
                volumes_text(volumes)
            ),
            Reason::AvailabilityZone { wanted, node_zone } => {
                write!(f, "in availability zone {node_zone}, server wants {wanted}")
            }
            Reason::InsufficientRam { need_mib, free_mib } => write!(
                f,
                "insufficient RAM (need {need_mib} MiB, free {} MiB)",
                free_mib.max(&0)
            ),
            Reason::InsufficientVcpus { need, free } => {
                write!(f, "insufficient vCPUs (need {need}, free {})", free.max(&0))
            }
            Reason::InsufficientDisk { need_gib, free_gib } => write!(
                f,
                "insufficient disk (need {need_gib} GiB, free {} GiB)",
                free_gib.max(&0)
            ),
            Reason::Architecture { wanted, node } => write!(
                f,
                "architecture is {}, image needs {wanted}",
                node.as_deref().unwrap_or("unreported")
            ),
            Reason::HypervisorType { wanted, node } => write!(
                f,
                "hypervisor type is {}, image needs {wanted}",
                node.as_deref().unwrap_or("unreported")
            ),
            Reason::MissingTrait { name } => write!(f, "missing required trait {name}"),
            Reason::ForbiddenTrait { name } => write!(f, "has forbidden trait {name}"),
            Reason::GroupAffinity { group } => write!(
                f,
                "server group {group} (affinity) has its members on other nodes"
            ),
            Reason::GroupAntiAffinity {
                group,
                members,
                max_per_node,
            } => write!(
                f,
                "hosts {members} member(s) of server group {group} (anti-affinity, at most \
                 {max_per_node} per node)"
            ),
            Reason::DifferentHost => write!(f, "hosts a server named in differentHost"),
            Reason::SameHost => write!(f, "hosts none of the servers named in sameHost"),
        }
    }
}

/// `data-1 on node-a, data-2 on node-b`.
fn volumes_text(volumes: &[(String, String)]) -> String {
    volumes
        .iter()
        .map(|(v, n)| format!("{v} on {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One node's rejection: which node, which filter, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRejection {
    /// The node.
    pub node: String,
    /// The filter that rejected it (Nova's filter name).
    pub filter: &'static str,
    /// Why.
    pub reason: Reason,
}

/// No node can take the server: how many were considered and why each was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoValidHost {
    /// Nodes considered.
    pub total: usize,
    /// Every rejected node, sorted by node name.
    pub rejections: Vec<NodeRejection>,
}

impl NoValidHost {
    /// The `reason` of the `Scheduled=False` condition and of the event.
    pub const CONDITION_REASON: &'static str = "NoValidHost";

    /// Collects the rejections of `total` considered nodes, sorting them by node name so the
    /// result does not depend on the order nodes were given in.
    pub fn new(total: usize, mut rejections: Vec<NodeRejection>) -> Self {
        rejections.sort_by(|a, b| a.node.cmp(&b.node));
        Self { total, rejections }
    }

    /// The aggregated reasons, most frequent first (then in filter order): each item is
    /// the number of nodes and the summary text, e.g. `(2, "insufficient RAM (need 2048
    /// MiB, free 1024 MiB)")`.
    pub fn summary(&self) -> Vec<(usize, String)> {
        let mut groups: Vec<((u8, &str), Vec<&Reason>)> = Vec::new();
        for r in &self.rejections {
            let key = r.reason.key();
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(&r.reason),
                None => groups.push((key, vec![&r.reason])),
            }
        }
        groups.sort_by(|(ka, a), (kb, b)| b.len().cmp(&a.len()).then(ka.cmp(kb)));
        groups
            .iter()
            .map(|(_, members)| (members.len(), members[0].summary(members)))
            .collect()
    }

    /// The Kubernetes-style one-liner, e.g. `0/3 nodes are available: 2 insufficient RAM
    /// (need 2048 MiB, free 1024 MiB), 1 cordoned`.
    pub fn message(&self) -> String {
        if self.total == 0 {
            return "0/0 nodes are available: no nodes are registered".to_owned();
        }
        let items: Vec<String> = self
            .summary()
            .into_iter()
            .map(|(n, text)| format!("{n} {text}"))
            .collect();
        format!("0/{} nodes are available: {}", self.total, items.join(", "))
    }

    /// Each rejected node with its reason, by node name.
    pub fn per_node(&self) -> impl Iterator<Item = (&str, &Reason)> {
        self.rejections.iter().map(|r| (r.node.as_str(), &r.reason))
    }

    /// The reason `node` was rejected, if it was considered.
    pub fn reason_for(&self, node: &str) -> Option<&Reason> {
        self.rejections
            .binary_search_by(|r| r.node.as_str().cmp(node))
            .ok()
            .map(|i| &self.rejections[i].reason)
    }

    /// One line per node, `node: reason [Filter]`, for `describe`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for r in &self.rejections {
            out.push_str(&format!("{}: {} [{}]\n", r.node, r.reason, r.filter));
        }
        out
    }
}

impl fmt::Display for NoValidHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for NoValidHost {}

#[cfg(test)]
mod tests {
    use super::*;

    fn rej(node: &str, reason: Reason) -> NodeRejection {
        NodeRejection {
            node: node.to_owned(),
            filter: "TestFilter",
            reason,
        }
    }

    fn ram(free_mib: i64) -> Reason {
        Reason::InsufficientRam {
            need_mib: 2048,
            free_mib,
        }
    }

    #[test]
    fn message_formats() {
        let table: Vec<(usize, Vec<NodeRejection>, &str)> = vec![
            (
                3,
                vec![
                    rej("c", Reason::Cordoned { why: None }),
                    rej("a", ram(1024)),
                    rej("b", ram(1024)),
                ],
                "0/3 nodes are available: 2 insufficient RAM (need 2048 MiB, free 1024 MiB), \
                 1 cordoned",
            ),
            (
                2,
                vec![rej("a", ram(1024)), rej("b", ram(-50))],
                "0/2 nodes are available: 2 insufficient RAM (need 2048 MiB, free at most \
                 1024 MiB)",
            ),
            (
                4,
                vec![
                    rej("a", ram(0)),
                    rej(
                        "b",
                        Reason::Cordoned {
                            why: Some("disk swap".into()),
                        },
                    ),
                    rej(
                        "c",
                        Reason::NotReady {
                            detail: "Ready=False".into(),
                        },
                    ),
                    rej("d", Reason::InsufficientVcpus { need: 4, free: 2 }),
                ],
                "0/4 nodes are available: 1 not ready, 1 cordoned, 1 insufficient RAM (need \
                 2048 MiB, free 0 MiB), 1 insufficient vCPUs (need 4, free 2)",
            ),
            (
                3,
                vec![
                    rej(
                        "a",
                        Reason::AvailabilityZone {
                            wanted: "az1".into(),
                            node_zone: "nova".into(),
                        },
                    ),
                    rej(
                        "b",
                        Reason::AvailabilityZone {
                            wanted: "az1".into(),
                            node_zone: "az2".into(),
                        },
                    ),
                    rej(
                        "c",
                        Reason::InsufficientDisk {
                            need_gib: 20,
                            free_gib: 10,
                        },
                    ),
                ],
                "0/3 nodes are available: 2 not in availability zone az1, 1 insufficient disk \
                 (need 20 GiB, free 10 GiB)",
            ),
            (
                3,
                vec![
                    rej(
                        "a",
                        Reason::GroupAntiAffinity {
                            group: "web".into(),
                            members: 1,
                            max_per_node: 1,
                        },
                    ),
                    rej("b", Reason::GroupAffinity { group: "db".into() }),
                    rej(
                        "c",
                        Reason::Architecture {
                            wanted: "aarch64".into(),
                            node: None,
                        },
                    ),
                ],
                "0/3 nodes are available: 1 wrong architecture (image needs aarch64), 1 not \
                 hosting server group db (affinity), 1 already hosting server group web \
                 (anti-affinity)",
            ),
            (
                4,
                vec![
                    rej(
                        "a",
                        Reason::MissingTrait {
                            name: "HW_CPU_X86_AVX2".into(),
                        },
                    ),
                    rej(
                        "b",
                        Reason::ForbiddenTrait {
                            name: "CUSTOM_GPU".into(),
                        },
                    ),
                    rej("c", Reason::DifferentHost),
                    rej("d", Reason::SameHost),
                ],
                "0/4 nodes are available: 1 missing trait HW_CPU_X86_AVX2, 1 forbidden trait \
                 CUSTOM_GPU, 1 hosting a differentHost server, 1 not hosting a sameHost server",
            ),
            (
                3,
                vec![
                    rej(
                        "a",
                        Reason::VolumeElsewhere {
                            volume: "data-1".into(),
                            node: "c".into(),
                        },
                    ),
                    rej(
                        "b",
                        Reason::VolumeElsewhere {
                            volume: "data-1".into(),
                            node: "c".into(),
                        },
                    ),
                    rej("c", ram(1024)),
                ],
                "0/3 nodes are available: 2 not holding volume data-1 (it is on c), 1 \
                 insufficient RAM (need 2048 MiB, free 1024 MiB)",
            ),
            (
                2,
                vec![
                    rej(
                        "a",
                        Reason::VolumesApart {
                            volumes: vec![("d1".into(), "a".into()), ("d2".into(), "b".into())],
                        },
                    ),
                    rej(
                        "b",
                        Reason::VolumesApart {
                            volumes: vec![("d1".into(), "a".into()), ("d2".into(), "b".into())],
                        },
                    ),
                ],
                "0/2 nodes are available: 2 can't hold all the server's volumes, which are on \
                 different nodes (d1 on a, d2 on b)",
            ),
            (
                0,
                vec![],
                "0/0 nodes are available: no nodes are registered",
            ),
        ];
        for (total, rejections, want) in table {
            let e = NoValidHost::new(total, rejections);
            assert_eq!(e.message(), want);
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn per_node_details_for_describe() {
        let e = NoValidHost::new(
            3,
            vec![
                rej(
                    "node-c",
                    Reason::Cordoned {
                        why: Some("maintenance".into()),
                    },
                ),
                rej("node-a", ram(1024)),
                rej(
                    "node-b",
                    Reason::NotReady {
                        detail: "Ready=Unknown: NodeLeaseExpired".into(),
                    },
                ),
            ],
        );
        assert_eq!(
            e.describe(),
            "node-a: insufficient RAM (need 2048 MiB, free 1024 MiB) [TestFilter]\n\
             node-b: not ready (Ready=Unknown: NodeLeaseExpired) [TestFilter]\n\
             node-c: cordoned (maintenance) [TestFilter]\n"
        );
        assert_eq!(e.reason_for("node-a"), Some(&ram(1024)));
        assert_eq!(e.reason_for("node-z"), None);
        let nodes: Vec<&str> = e.per_node().map(|(n, _)| n).collect();
        assert_eq!(nodes, ["node-a", "node-b", "node-c"]);
        let details = [
            (
                Reason::AvailabilityZone {
                    wanted: "az1".into(),
                    node_zone: "nova".into(),
                },
                "in availability zone nova, server wants az1",
            ),
            (
                Reason::GroupAntiAffinity {
                    group: "web".into(),
                    members: 2,
                    max_per_node: 2,
                },
                "hosts 2 member(s) of server group web (anti-affinity, at most 2 per node)",
            ),
            (
                Reason::HypervisorType {
                    wanted: "kvm".into(),
                    node: Some("QEMU".into()),
                },
                "hypervisor type is QEMU, image needs kvm",
            ),
            (
                Reason::InsufficientDisk {
                    need_gib: 5,
                    free_gib: -3,
                },
                "insufficient disk (need 5 GiB, free 0 GiB)",
            ),
        ];
        for (reason, want) in details {
            assert_eq!(reason.to_string(), want);
        }
    }
}
