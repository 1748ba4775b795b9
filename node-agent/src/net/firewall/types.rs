//! The firewall's pure input types.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use cirrus_crds::Port;
use cirrus_crds::kinds::securitygroup::{Direction, Ethertype};
use ipnet::IpNet;

/// A MAC address (so flows always carry the canonical lowercase form).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

/// A string that is not `xx:xx:xx:xx:xx:xx`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a MAC address (xx:xx:xx:xx:xx:xx)")]
pub struct MacParseError(pub String);

impl FromStr for Mac {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let p = parts.next().ok_or_else(err)?;
            if p.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl Mac {
    /// The IPv6 link-local address a host derives from this MAC (modified EUI-64, RFC 4291):
    /// a port may always send from it (NDP, DHCPv6), as in Neutron.
    pub fn link_local(&self) -> Ipv6Addr {
        let m = self.0;
        Ipv6Addr::new(
            0xfe80,
            0,
            0,
            0,
            u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
            u16::from_be_bytes([m[2], 0xff]),
            u16::from_be_bytes([0xfe, m[3]]),
            u16::from_be_bytes([m[4], m[5]]),
        )
    }
}

/// Remote addresses a rule matches (source for ingress, destination for egress).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Remote {
    /// Any address.
    Any,
    /// Only these networks; empty matches nothing (a remote group without members).
    Cidrs(Vec<IpNet>),
}

/// One allow rule with its remote group already expanded to addresses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResolvedRule {
    /// Ingress (to the port) or egress (from the port).
    pub direction: Direction,
    /// IPv4 or IPv6.
    pub ethertype: Ethertype,
    /// IP protocol number; `None`: any.
    pub protocol: Option<u8>,
    /// Lowest destination port (TCP/UDP/SCTP) or the ICMP type.
    pub port_range_min: Option<u32>,
    /// Highest destination port, or the ICMP code.
    pub port_range_max: Option<u32>,
    /// Remote addresses.
    pub remote: Remote,
}

impl ResolvedRule {
    /// A rule allowing everything of `ethertype` in `direction` (tests, trusted setups).
    pub fn allow_all(direction: Direction, ethertype: Ethertype) -> Self {
        Self {
            direction,
            ethertype,
            protocol: None,
            port_range_min: None,
            port_range_max: None,
            remote: Remote::Any,
        }
    }
}

/// A port whose traffic the firewall filters (a guest NIC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallPort {
    /// OpenFlow port number on the bridge (also its conntrack zone).
    pub ofport: u32,
    /// Local VLAN tag of its network on this host.
    pub tag: u16,
    /// Its MAC address.
    pub mac: Mac,
    /// Its fixed IPs.
    pub fixed_ips: Vec<IpAddr>,
    /// Extra sources it may use: a network and the MAC allowed with it (`None`: its own).
    pub allowed_address_pairs: Vec<(IpNet, Option<Mac>)>,
    /// Anti-spoofing and security groups on; off: forwarded unfiltered within its network.
    pub port_security: bool,
    /// Allow rules (both directions); no rule in a direction: nothing new passes that way.
    pub rules: Vec<ResolvedRule>,
}

/// A port that skips filtering but stays in its network (DHCP namespace ports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustedPort {
    /// OpenFlow port number on the bridge.
    pub ofport: u32,
    /// Local VLAN tag of its network on this host.
    pub tag: u16,
}

impl FirewallPort {
    /// Builds the firewall's view of a `Port` plugged at `ofport` with local VLAN `tag`:
    /// MAC and fixed IPs from its status, allowed address pairs from its spec (invalid
    /// entries skipped). `network_port_security` is the network's default when the port does
    /// not say. `None` while the port has no MAC yet.
    pub fn from_port(
        port: &Port,
        ofport: u32,
        tag: u16,
        network_port_security: bool,
        rules: Vec<ResolvedRule>,
    ) -> Option<Self> {
        let mac = port
            .status
            .mac_address
            .as_deref()
            .or(port.spec.mac_address.as_deref())?
            .parse()
            .ok()?;
        Some(Self {
            ofport,
            tag,
            mac,
            fixed_ips: port.status.fixed_ips.iter().map(|f| f.ip_address).collect(),
            allowed_address_pairs: super::resolve::address_pairs(port),
            port_security: super::resolve::port_security_enabled(port, network_port_security),
            rules,
        })
    }
}
