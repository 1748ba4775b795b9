//! Host networking for the node agent: the integration bridge, DHCP and metadata per network,
//! and security groups, reconciled from the `Port`s bound to this node.
//!
//! The pieces, each with one job:
//! - [`ovsdb`]: a small typed OVSDB JSON-RPC (RFC 7047) client over ovsdb-server's unix socket.
//! - [`switch`]: the `Switch` backend trait (bridges, ports, flows) with the Open vSwitch
//!   implementation, an in-memory fake and their shared conformance suite.
//! - [`local_vlans`]: the per-host network → VLAN tag map, persisted.
//! - [`firewall`]: security groups and anti-spoofing rendered to OpenFlow flows (pure).
//! - [`netns`]: network namespaces (create, delete, run a closure's socket inside one).
//! - [`dhcp`]: one dnsmasq per network in a `qdhcp-<network>` namespace on the bridge.
//! - [`host`] and [`ports`]: the host network reconciler tying them together for the ports
//!   bound to this node (and the local VLANs the server reconciler plugs NICs into).
//! - [`metadata_proxy`]: 169.254.169.254 inside each DHCP namespace, forwarded to the API's
//!   metadata service with the network and the caller's source address.

pub mod dhcp;
pub mod firewall;
pub mod host;
pub mod local_vlans;
pub mod metadata_proxy;
pub mod netns;
pub mod ovsdb;
pub mod ports;
pub mod switch;
