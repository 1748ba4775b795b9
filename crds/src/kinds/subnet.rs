//! `Subnet`: an IP range on a network, with DHCP and routing settings (Neutron's subnet).

use std::net::IpAddr;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::kinds::{check_cidr, check_ref, ip_version, net_version};
use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// An IPv4 or IPv6 range of a `Network` from which ports get fixed addresses.
    /// Project-scoped.
    Subnet {
        spec: SubnetSpec,
        status: SubnetStatus,
        plural: "subnets",
        singular: "subnet",
        short_names: ["subn"],
        scope: Project,
    }
}

/// An inclusive range of addresses handed out to ports.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllocationPool {
    /// First address of the range.
    pub start: IpAddr,
    /// Last address of the range.
    pub end: IpAddr,
}

/// A static route handed to instances by DHCP, or a router's extra route.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostRoute {
    /// Destination CIDR.
    #[serde(deserialize_with = "crate::kinds::de_cidr")]
    #[schemars(with = "String")]
    pub destination: IpNet,
    /// Next hop address.
    pub nexthop: IpAddr,
}

/// IPv6 address or router-advertisement mode.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Ipv6Mode {
    /// Stateless address autoconfiguration.
    Slaac,
    /// Addresses from DHCPv6.
    Dhcpv6Stateful,
    /// SLAAC addresses, other options from DHCPv6.
    Dhcpv6Stateless,
}

/// Desired state of a subnet.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubnetSpec {
    /// Name of the `Network` (same project, or a shared one).
    pub network: String,
    /// The range, e.g. `10.0.0.0/24` or `fd00::/64`; host bits must be zero.
    #[serde(deserialize_with = "crate::kinds::de_cidr")]
    #[schemars(with = "String")]
    pub cidr: IpNet,
    /// 4 or 6; absent: taken from `cidr`. Use [`SubnetSpec::ip_version`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    /// Gateway address. Absent: the first address of the range (as Neutron does);
    /// `null`: no gateway. Use [`SubnetSpec::gateway`].
    #[serde(
        default,
        deserialize_with = "some_nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<Option<IpAddr>>")]
    pub gateway_ip: Option<Option<IpAddr>>,
    /// Ranges handed out to ports; empty: the whole range except the network, broadcast
    /// and gateway addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocation_pools: Vec<AllocationPool>,
    /// DNS servers handed out by DHCP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_nameservers: Vec<IpAddr>,
    /// Static routes handed out by DHCP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_routes: Vec<HostRoute>,
    /// Serve DHCP on this subnet.
    #[serde(default = "crate::kinds::default_true")]
    pub enable_dhcp: bool,
    /// IPv6 router advertisement mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_ra_mode: Option<Ipv6Mode>,
    /// IPv6 address assignment mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address_mode: Option<Ipv6Mode>,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn some_nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<IpAddr>>, D::Error> {
    Option::<IpAddr>::deserialize(d).map(Some)
}

impl Default for SubnetSpec {
    fn default() -> Self {
        Self {
            network: String::new(),
            cidr: IpNet::V4(ipnet::Ipv4Net::default()),
            ip_version: None,
            gateway_ip: None,
            allocation_pools: Vec::new(),
            dns_nameservers: Vec::new(),
            host_routes: Vec::new(),
            enable_dhcp: true,
            ipv6_ra_mode: None,
            ipv6_address_mode: None,
            description: None,
        }
    }
}

impl SubnetSpec {
    /// 4 or 6, from `ipVersion` or else from the CIDR.
    pub fn ip_version(&self) -> u8 {
        self.ip_version.unwrap_or_else(|| net_version(&self.cidr))
    }

    /// The gateway in effect: the given one, none when `gatewayIp: null`, or the first host
    /// address of the CIDR when `gatewayIp` is absent.
    pub fn gateway(&self) -> Option<IpAddr> {
        match self.gateway_ip {
            Some(explicit) => explicit,
            None => first_host(&self.cidr),
        }
    }
}

/// The first address after the network address, if the range has one.
fn first_host(net: &IpNet) -> Option<IpAddr> {
    match net {
        IpNet::V4(n) if n.prefix_len() < 31 => {
            Some(IpAddr::V4((u32::from(n.network()) + 1).into()))
        }
        IpNet::V4(n) => Some(IpAddr::V4(n.network())),
        IpNet::V6(n) if n.prefix_len() < 128 => {
            Some(IpAddr::V6((u128::from(n.network()) + 1).into()))
        }
        IpNet::V6(n) => Some(IpAddr::V6(n.network())),
    }
}

/// True for IPv4 network and broadcast addresses of ranges larger than /31.
fn reserved_v4(net: &IpNet, ip: IpAddr) -> bool {
    match net {
        IpNet::V4(n) if n.prefix_len() < 31 => {
            ip == IpAddr::V4(n.network()) || ip == IpAddr::V4(n.broadcast())
        }
        _ => false,
    }
}

fn ip_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Observed state of a subnet.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubnetStatus {
    /// Addresses in the allocation pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ips: Option<u64>,
    /// Addresses currently given to ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_ips: Option<u64>,
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observations; `Ready` when DHCP for it is serving.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Validate for Subnet {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        let cidr = &spec.cidr;
        let version = net_version(cidr);
        check_ref(errors, "spec.network", &spec.network);
        check_cidr(errors, "spec.cidr", cidr);
        match spec.ip_version {
            Some(v) if v != 4 && v != 6 => {
                errors.add("spec.ipVersion", format!("must be 4 or 6, got {v}"))
            }
            Some(v) if v != version => errors.add(
                "spec.ipVersion",
                format!("is {v} but cidr {cidr} is an IPv{version} range"),
            ),
            _ => {}
        }
        if let Some(Some(gw)) = spec.gateway_ip {
            if ip_version(&gw) != version {
                errors.add(
                    "spec.gatewayIp",
                    format!("{gw} is not an IPv{version} address"),
                );
            } else if !cidr.contains(&gw) {
                errors.add("spec.gatewayIp", format!("{gw} is outside cidr {cidr}"));
            } else if reserved_v4(cidr, gw) {
                errors.add(
                    "spec.gatewayIp",
                    format!("{gw} is the network or broadcast address of {cidr}"),
                );
            }
        }
        let gateway = spec.gateway();
        let mut ranges: Vec<(usize, u128, u128)> = Vec::new();
        for (i, pool) in spec.allocation_pools.iter().enumerate() {
            let path = format!("spec.allocationPools[{i}]");
            let mut ok = true;
            for (field, ip) in [("start", pool.start), ("end", pool.end)] {
                if ip_version(&ip) != version {
                    errors.add(
                        format!("{path}.{field}"),
                        format!("{ip} is not an IPv{version} address"),
                    );
                    ok = false;
                } else if !cidr.contains(&ip) {
                    errors.add(
                        format!("{path}.{field}"),
                        format!("{ip} is outside cidr {cidr}"),
                    );
                    ok = false;
                } else if reserved_v4(cidr, ip) {
                    errors.add(
                        format!("{path}.{field}"),
                        format!("{ip} is the network or broadcast address of {cidr}"),
                    );
                    ok = false;
                }
            }
            if !ok {
                continue;
            }
            let (start, end) = (ip_u128(pool.start), ip_u128(pool.end));
            if start > end {
                errors.add(
                    path,
                    format!("start {} is after end {}", pool.start, pool.end),
                );
                continue;
            }
            if let Some(gw) = gateway {
                let g = ip_u128(gw);
                if ip_version(&gw) == version && start <= g && g <= end {
                    errors.add(path.clone(), format!("contains the gateway {gw}"));
                }
            }
            for (j, s, e) in &ranges {
                if start <= *e && *s <= end {
                    errors.add(path.clone(), format!("overlaps spec.allocationPools[{j}]"));
                }
            }
            ranges.push((i, start, end));
        }
        for (i, route) in spec.host_routes.iter().enumerate() {
            let path = format!("spec.hostRoutes[{i}]");
            check_cidr(errors, format!("{path}.destination"), &route.destination);
            if net_version(&route.destination) != version {
                errors.add(
                    format!("{path}.destination"),
                    format!("{} is not an IPv{version} range", route.destination),
                );
            }
            if ip_version(&route.nexthop) != version {
                errors.add(
                    format!("{path}.nexthop"),
                    format!("{} is not an IPv{version} address", route.nexthop),
                );
            }
        }
        if version == 4 && (spec.ipv6_ra_mode.is_some() || spec.ipv6_address_mode.is_some()) {
            let field = if spec.ipv6_ra_mode.is_some() {
                "spec.ipv6RaMode"
            } else {
                "spec.ipv6AddressMode"
            };
            errors.add(field, "only IPv6 subnets have IPv6 modes");
        }
        if let (Some(ra), Some(addr)) = (spec.ipv6_ra_mode, spec.ipv6_address_mode)
            && ra != addr
        {
            errors.add(
                "spec.ipv6AddressMode",
                "must equal ipv6RaMode when both are set",
            );
        }
        crate::kinds::check_len(errors, "spec.description", &spec.description, 255);
    }
}
