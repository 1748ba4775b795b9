//! Security groups and anti-spoofing as OpenFlow flows on the integration bridge.
//!
//! [`render`] turns the ports on one bridge ([`FirewallPort`]s with their already resolved
//! rules, and [`TrustedPort`]s such as DHCP namespaces) into the bridge's *complete* flow table
//! (ovs-ofctl syntax, valid with `-O OpenFlow13`), to be installed atomically with
//! `ovs-ofctl --bundle replace-flows` on a bridge in `fail_mode=secure`: whatever no flow allows
//! is dropped, including traffic of ports the agent does not know (yet). [`resolve`] expands a
//! `Port`'s security groups into [`ResolvedRule`]s (remote groups become the member ports'
//! addresses). Both are pure; `lab` drives a real bridge with network namespaces standing in
//! for guests (tests and `cirrus bench`; built only for tests and the `testing` feature).
//!
//! # Pipeline
//!
//! Registers: `reg5` = ofport the packet came from, `reg6` = local VLAN tag of its network,
//! `reg7` = ofport it is going to. Each filtered port has its own conntrack zone (zone = its
//! ofport), so a connection allowed by A's egress rules is checked again against B's ingress
//! rules in B's zone, and replies are recognised in both zones.
//!
//! | table | name           | what it does |
//! |-------|----------------|--------------|
//! | 0     | classify       | `in_port` → `reg5`, `reg6`; filtered ports go to 10, trusted ports and ports without port security to 30; unknown ports are dropped |
//! | 10    | egress spoof   | anti-spoofing: IPv4/IPv6 only from the port's MAC + fixed IPs / allowed address pairs (+ the MAC's IPv6 link-local) → `ct(zone=reg5, table=20)`; ARP only with `arp_sha` = the MAC and `arp_spa` an allowed address; DHCP client requests (also from 0.0.0.0 / link-local) and NDP/MLD (NA only for its own targets) pass without conntrack; DHCP server replies, router advertisements and redirects from guests are dropped |
//! | 20    | egress filter  | `+inv` drop; `+est`/`+rel` pass; `+new` matching one of the port's egress rules → `ct(commit)` → 30; else drop |
//! | 30    | forward        | unicast to a MAC of a port of the same network (`reg6`) → `reg7` = that port → 40; broadcast/multicast → a clone per port of the network → 40; unknown unicast → the network's unfiltered ports; everything else (other networks) dropped |
//! | 40    | ingress ct     | per destination `reg7`: trusted/unfiltered → output; filtered: ARP, DHCP replies (udp 67→68, 547→546) and NDP/MLD → output, IPv4/IPv6 → `ct(zone=reg7, table=50)`; a port's own broadcast is not looped back |
//! | 50    | ingress filter | `+inv` drop; `+est`/`+rel` → output `reg7`; `+new` matching one of the port's ingress rules → `ct(commit)` → output; else drop |
//!
//! Forwarding never uses `NORMAL`: every output port is chosen explicitly within the packet's
//! network (guest ports are access ports, so packets are untagged inside the pipeline), which
//! also means broadcast and multicast IP traffic is filtered by each receiver's ingress rules.
//!
//! # Not covered (documented limits)
//! - Removing a rule does not cut connections already established through it (their
//!   conntrack entries live until they expire), like every conntrack firewall without an
//!   explicit flush.
//! - Stateless security groups are treated as stateful.
//! - Port ranges are matched for TCP, UDP and SCTP only; a rule with a port range on another
//!   protocol (DCCP, UDP-Lite) matches nothing.
//! - IPv6: NDP (RS, NS, NA with own targets), MLD and DHCPv6 client traffic leave a port;
//!   router advertisements and redirects from guests are dropped; NDP/MLD/RA always enter.
//!   IP fragments other than the first are checked by conntrack like any packet (no special
//!   handling).
//! - Unknown unicast goes only to the network's unfiltered ports (single host: no tunnels yet).

#[cfg(any(test, feature = "testing"))]
pub mod lab;
mod matches;
mod render;
mod resolve;
mod types;

pub use render::{
    TABLE_CLASSIFY, TABLE_EGRESS_FILTER, TABLE_EGRESS_SPOOF, TABLE_FORWARD, TABLE_INGRESS_CT,
    TABLE_INGRESS_FILTER, render,
};
pub use resolve::{effective_groups, port_security_enabled, resolve_port_rules};
pub use types::{FirewallPort, Mac, MacParseError, Remote, ResolvedRule, TrustedPort};
