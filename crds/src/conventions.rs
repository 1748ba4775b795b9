//! Names and rules every crate must agree on, defined once.
//!
//! The API, the controllers and the node agent each act on these values (a port's
//! `deviceOwner`, the name of a project's default security group, the headers of the metadata
//! path, finalizer names); a copy per crate drifts. `hack/check-conventions.sh` (run by the
//! test suite) fails when one of these literals is defined again outside this module.

/// `Port.spec.deviceOwner` of the ports the network controller makes for servers (Nova's).
pub const DEVICE_OWNER_COMPUTE: &str = "compute:nova";

/// `Port.spec.deviceOwner` of DHCP ports: one per network and node, owned by the network
/// (they go with their network and subnet, never with a user's delete).
pub const DEVICE_OWNER_DHCP: &str = "network:dhcp";

/// Name of every project's default security group (made by the network controller, used by
/// a server that names no group, never deletable while the project lives).
pub const DEFAULT_SECURITY_GROUP: &str = "default";

/// The finalizer the network controller keeps on ports, servers with networks and networks
/// (the API adds it to every port at creation).
pub const NETWORK_FINALIZER: &str = "cirrus.dev/network";

/// The condition on a `Port` saying whether the network controller assigned its MAC and
/// addresses (`True`), or why not (`False`).
pub const PORT_ALLOCATED_CONDITION: &str = "Allocated";

/// Name of the `Lease` the controller replicas compete for: held and fresh while a leader
/// runs (the API reads it to know whether a port's addresses will come).
pub const CONTROLLERS_LEASE: &str = "cirrus-controllers";

/// The request header carrying a Keystone token (also accepted: `Authorization: Bearer`).
pub const AUTH_HEADER: &str = "x-auth-token";

/// Header the node's metadata proxy sets: `<project>/<network name>` the request came in on.
pub const METADATA_NETWORK_HEADER: &str = "x-cirrus-network";

/// Header the node's metadata proxy sets: the guest's TCP peer address.
pub const METADATA_SOURCE_IP_HEADER: &str = "x-cirrus-source-ip";

/// The name of the DHCP port of `network` on `node`.
pub fn dhcp_port_name(network: &str, node: &str) -> String {
    format!("{network}-dhcp-{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcp_port_names_join_network_and_node() {
        assert_eq!(dhcp_port_name("net1", "node-a"), "net1-dhcp-node-a");
    }
}
