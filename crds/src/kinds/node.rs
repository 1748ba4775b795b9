//! `Node`: one hypervisor host (Nova's compute service and hypervisor, Kubernetes' Node).
//!
//! The node agent creates its `Node` when it starts, reports capacity, addresses and the
//! hypervisor in `status`, and heartbeats through `status.lastHeartbeatTime` (and a store
//! lease). Operators cordon a node with `spec.unschedulable` and tune overcommit in `spec`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A hypervisor host that runs servers. Cluster-scoped.
    Node {
        spec: NodeSpec,
        status: NodeStatus,
        plural: "nodes",
        singular: "node",
        short_names: ["no"],
        scope: Cluster,
    }
}

/// Desired scheduling properties of a node, set by operators.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// Cordoned: the scheduler places no new servers here (`openstack compute service set
    /// --disable`); servers already running stay.
    #[serde(default, skip_serializing_if = "crate::kinds::is_false")]
    pub unschedulable: bool,
    /// Why the node was cordoned (Nova's disabled reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable_reason: Option<String>,
    /// Availability zone the node belongs to; absent means the default zone `nova`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Capability traits the scheduler can match (Placement-style, e.g.
    /// `HW_CPU_X86_AVX2`, `COMPUTE_STATUS_DISABLED`); labels in `metadata.labels` work as
    /// host-aggregate metadata.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traits: Vec<String>,
    /// Virtual CPUs schedulable per physical CPU (Nova's `cpu_allocation_ratio`).
    #[serde(default = "default_cpu_ratio")]
    pub cpu_allocation_ratio: f64,
    /// Memory overcommit factor (Nova's `ram_allocation_ratio`).
    #[serde(default = "default_ratio")]
    pub ram_allocation_ratio: f64,
    /// Disk overcommit factor (Nova's `disk_allocation_ratio`).
    #[serde(default = "default_ratio")]
    pub disk_allocation_ratio: f64,
    /// Physical CPUs kept for the host itself.
    #[serde(default)]
    pub reserved_host_cpus: u32,
    /// Memory in MiB kept for the host itself (Nova's `reserved_host_memory_mb`).
    #[serde(default = "default_reserved_memory", rename = "reservedHostMemoryMiB")]
    pub reserved_host_memory_mib: u64,
    /// Disk in GiB kept for the host itself.
    #[serde(default, rename = "reservedHostDiskGiB")]
    pub reserved_host_disk_gib: u64,
}

impl Default for NodeSpec {
    fn default() -> Self {
        Self {
            unschedulable: false,
            unschedulable_reason: None,
            availability_zone: None,
            traits: Vec::new(),
            cpu_allocation_ratio: default_cpu_ratio(),
            ram_allocation_ratio: default_ratio(),
            disk_allocation_ratio: default_ratio(),
            reserved_host_cpus: 0,
            reserved_host_memory_mib: default_reserved_memory(),
            reserved_host_disk_gib: 0,
        }
    }
}

fn default_cpu_ratio() -> f64 {
    4.0
}

fn default_ratio() -> f64 {
    1.0
}

fn default_reserved_memory() -> u64 {
    512
}

/// An amount of each schedulable resource.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeResources {
    /// Virtual CPUs.
    #[serde(default)]
    pub vcpus: u32,
    /// Memory in MiB.
    #[serde(default, rename = "memoryMiB")]
    pub memory_mib: u64,
    /// Local disk for root and ephemeral disks, in GiB.
    #[serde(default, rename = "diskGiB")]
    pub disk_gib: u64,
}

/// Kind of a node address.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeAddressType {
    /// The host's DNS name.
    Hostname,
    /// An address on the management network, used by the control plane.
    InternalIP,
    /// An address reachable from outside the cloud.
    ExternalIP,
    /// The tunnel endpoint (VXLAN/Geneve local IP) of the host's virtual switch.
    TunnelIP,
}

/// One address of a node.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAddress {
    /// What the address is for.
    #[serde(rename = "type")]
    pub type_: NodeAddressType,
    /// The address or host name.
    pub address: String,
}

/// The kind of storage a pool holds volumes on (a volume's `spec.volumeType` picks it).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// qcow2 files in a directory (the embedded default, works everywhere).
    File,
    /// Logical volumes in an LVM volume group.
    Lvm,
}

impl StorageBackend {
    /// The backend's name as volume types and pools spell it (`file`, `lvm`).
    pub fn as_str(self) -> &'static str {
        match self {
            StorageBackend::File => "file",
            StorageBackend::Lvm => "lvm",
        }
    }
}

/// One storage pool of a node, as its agent reports it for volume scheduling.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoragePool {
    /// The pool's name, unique on the node: the volume group, or the directory.
    pub name: String,
    /// What the pool stores volumes as.
    pub backend: StorageBackend,
    /// Size of the pool in bytes.
    pub total_bytes: u64,
    /// Bytes a new volume can still get (file pools count every volume as fully
    /// allocated, so volumes are never overcommitted).
    pub free_bytes: u64,
    /// Optional features the pool supports on this host (e.g. `snapshot`, `clone`,
    /// `extend`); LVM without device-mapper lacks `snapshot`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
}

/// What the node agent observes about its host.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    /// Everything the host has.
    #[serde(default)]
    pub capacity: NodeResources,
    /// What the scheduler may hand out: capacity minus reservations, times the allocation
    /// ratios.
    #[serde(default)]
    pub allocatable: NodeResources,
    /// Hypervisor type as Nova reports it (`QEMU`, `KVM`, `fake`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervisor_type: Option<String>,
    /// Hypervisor version, e.g. `8.2.2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervisor_version: Option<String>,
    /// Host name the hypervisor reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervisor_hostname: Option<String>,
    /// CPU architecture (`x86_64`, `aarch64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Version of the node agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Base URL where the node agent serves what only the host has (server console logs),
    /// reachable from the API server, which proxies to it (like the kubelet's port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_endpoint: Option<String>,
    /// Addresses of the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    /// Storage pools for volumes on local backends (LVM volume groups, qcow2 directories),
    /// with their capacity, refreshed with the heartbeat. The volume controller places
    /// volumes by their free bytes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_pools: Vec<StoragePool>,
    /// Last time the node agent reported in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<DateTime<Utc>>,
    /// The `metadata.generation` the agent last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observations; `Ready` says the agent is up and its drivers work.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Validate for Node {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        for (path, ratio) in [
            ("spec.cpuAllocationRatio", spec.cpu_allocation_ratio),
            ("spec.ramAllocationRatio", spec.ram_allocation_ratio),
            ("spec.diskAllocationRatio", spec.disk_allocation_ratio),
        ] {
            if !(ratio > 0.0 && ratio.is_finite()) {
                errors.add(path, "must be a positive number");
            }
        }
        if let Some(zone) = &spec.availability_zone
            && (zone.is_empty() || zone.len() > 255)
        {
            errors.add("spec.availabilityZone", "must be 1 to 255 characters");
        }
        for (i, t) in spec.traits.iter().enumerate() {
            let ok = !t.is_empty()
                && t.len() <= 255
                && t.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                errors.add(
                    format!("spec.traits[{i}]"),
                    "traits are 1 to 255 characters of A-Z, 0-9 and _",
                );
            }
        }
        for (i, pool) in self.status.storage_pools.iter().enumerate() {
            let path = format!("status.storagePools[{i}]");
            if pool.name.is_empty() || pool.name.len() > 255 {
                errors.add(format!("{path}.name"), "must be 1 to 255 characters");
            }
            if self.status.storage_pools[..i]
                .iter()
                .any(|p| p.name == pool.name)
            {
                errors.add(
                    format!("{path}.name"),
                    format!("pool {:?} is reported twice", pool.name),
                );
            }
            if pool.free_bytes > pool.total_bytes {
                errors.add(format!("{path}.freeBytes"), "must not exceed totalBytes");
            }
            for (j, c) in pool.capabilities.iter().enumerate() {
                if c.is_empty() || c.len() > 63 {
                    errors.add(
                        format!("{path}.capabilities[{j}]"),
                        "must be 1 to 63 characters",
                    );
                }
            }
        }
        for (i, a) in self.status.addresses.iter().enumerate() {
            if a.address.is_empty() {
                errors.add(
                    format!("status.addresses[{i}].address"),
                    "must not be empty",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::ObjectMeta;

    fn errors_of(pools: Vec<StoragePool>) -> Vec<String> {
        let mut node = Node::new(ObjectMeta::default(), NodeSpec::default());
        node.status.storage_pools = pools;
        let mut errors = FieldErrors::default();
        node.validate(&mut errors);
        errors.0.iter().map(|e| e.field.clone()).collect()
    }

    fn pool(name: &str, total: u64, free: u64) -> StoragePool {
        StoragePool {
            name: name.into(),
            backend: StorageBackend::Lvm,
            total_bytes: total,
            free_bytes: free,
            capabilities: vec!["extend".into()],
        }
    }

    #[test]
    fn storage_pools_are_validated() {
        assert!(errors_of(vec![pool("vg0", 10, 10), pool("/var/vols", 10, 0)]).is_empty());
        assert_eq!(
            errors_of(vec![pool("vg0", 10, 11)]),
            ["status.storagePools[0].freeBytes"]
        );
        assert_eq!(
            errors_of(vec![pool("vg0", 10, 1), pool("vg0", 10, 1)]),
            ["status.storagePools[1].name"]
        );
        assert_eq!(
            errors_of(vec![pool("", 1, 1)]),
            ["status.storagePools[0].name"]
        );
    }

    #[test]
    fn storage_pools_are_camel_case() {
        let json = serde_json::to_value(pool("vg0", 2, 1)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "vg0", "backend": "lvm", "totalBytes": 2, "freeBytes": 1,
                "capabilities": ["extend"]})
        );
    }
}
