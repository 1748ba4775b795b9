//! Builders shared by the scheduler's tests.

use cirrus_crds::kinds::node::{Node, NodeResources, NodeSpec};
use cirrus_crds::kinds::servergroup::ServerGroupPolicy;
use cirrus_crds::meta::{Condition, ConditionStatus, ObjectMeta};

use super::placement::{GroupRequirement, PlacementRequest, Resources};

/// A Ready node with default ratios (cpu 4, ram 1, disk 1) and no reservations.
pub fn node(name: &str, vcpus: u32, memory_mib: u64, disk_gib: u64) -> Node {
    let mut n = Node::new(
        ObjectMeta {
            name: name.to_owned(),
            ..Default::default()
        },
        NodeSpec {
            reserved_host_memory_mib: 0,
            ..Default::default()
        },
    );
    n.status.capacity = NodeResources {
        vcpus,
        memory_mib,
        disk_gib,
    };
    set_ready(&mut n, ConditionStatus::True);
    n
}

/// Sets the node's Ready condition.
pub fn set_ready(n: &mut Node, status: ConditionStatus) {
    n.status.conditions = vec![Condition {
        type_: "Ready".to_owned(),
        status,
        reason: if status == ConditionStatus::True {
            "AgentReady".to_owned()
        } else {
            "NodeLeaseExpired".to_owned()
        },
        ..Default::default()
    }];
}

/// A request for these resources and nothing else.
pub fn req(vcpus: u64, memory_mib: u64, disk_gib: u64) -> PlacementRequest {
    PlacementRequest {
        resources: Resources {
            vcpus,
            memory_mib,
            disk_gib,
        },
        ..Default::default()
    }
}

/// A group requirement with members on the given nodes.
pub fn group(policy: ServerGroupPolicy, members: &[(&str, u32)]) -> GroupRequirement {
    GroupRequirement {
        name: "web".to_owned(),
        policy,
        max_server_per_host: 1,
        member_nodes: members.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect(),
    }
}
