//! IP address management as a pure function: which address of a subnet a port gets.
//!
//! [`allocate`] takes the subnet's spec (CIDR, gateway, allocation pools), the addresses
//! already taken and a [`Request`] and returns an address or an [`IpamError`] saying
//! exactly why not. It does no I/O: the controller makes the answer stick by creating the
//! `IpAllocation` named after it (a compare-and-swap in the store) and asks again with the
//! address marked taken when it lost a race.
//!
//! # Rules (Neutron's)
//! - The usable range is the allocation pools; without pools, the whole CIDR minus the
//!   network address, the IPv4 broadcast address (ranges larger than /31) and the gateway.
//! - `Any` hands out the lowest free address of the pools, pools in order.
//! - A `Specific` address must be inside the CIDR and may be outside the pools (as Neutron
//!   allows for fixed IPs), but never the network, broadcast or gateway address, and never a
//!   taken one.
//!
//! # Guarantees
//! - `Any` never returns a taken address, the gateway, or an address outside the pools.
//! - Repeated `Any` allocations (each result added to `taken`) hand out exactly the pool
//!   addresses that were free, then fail with [`IpamError::Exhausted`].
//! - Cost: O(ranges + taken addresses inside the pools) per call.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cirrus_crds::kinds::subnet::SubnetSpec;
use ipnet::IpNet;

/// What a port asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Any free address of the pools.
    Any,
    /// Exactly this address.
    Specific(IpAddr),
}

/// Why no address could be given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// Every address of the allocation pools is taken.
    #[error("no free address: all {size} addresses of the allocation pools are in use")]
    Exhausted {
        /// Addresses in the pools.
        size: u128,
    },
    /// The requested address is not in the subnet's CIDR (or of the other IP version).
    #[error("{ip} is outside the subnet's range {cidr}")]
    OutsideCidr {
        /// The address asked for.
        ip: IpAddr,
        /// The subnet's CIDR.
        cidr: IpNet,
    },
    /// The requested address is allocated to another port.
    #[error("{ip} is already allocated")]
    Taken {
        /// The address asked for.
        ip: IpAddr,
    },
    /// The requested address is the subnet's gateway.
    #[error("{ip} is the subnet's gateway")]
    Gateway {
        /// The address asked for.
        ip: IpAddr,
    },
    /// The requested address is the network address of the CIDR.
    #[error("{ip} is the network address of {cidr}")]
    NetworkAddress {
        /// The address asked for.
        ip: IpAddr,
        /// The subnet's CIDR.
        cidr: IpNet,
    },
    /// The requested address is the IPv4 broadcast address of the CIDR.
    #[error("{ip} is the broadcast address of {cidr}")]
    Broadcast {
        /// The address asked for.
        ip: IpAddr,
        /// The subnet's CIDR.
        cidr: IpNet,
    },
}

/// The usable ranges of a subnet, as inclusive integer ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pools {
    cidr: IpNet,
    gateway: Option<IpAddr>,
    ranges: Vec<(u128, u128)>,
}

impl Pools {
    /// The pools of `spec`: its allocation pools, or the default range of its CIDR.
    pub fn of(spec: &SubnetSpec) -> Self {
        let cidr = spec.cidr;
        let gateway = spec.gateway();
        let ranges = if spec.allocation_pools.is_empty() {
            let (first, last) = (to_int(cidr.network()), to_int(cidr.broadcast()));
            let (lo, hi) = match cidr {
                IpNet::V4(n) if n.prefix_len() >= 31 => (first, last),
                IpNet::V4(_) => (first + 1, last - 1),
                IpNet::V6(n) if n.prefix_len() == 128 => (first, last),
                IpNet::V6(_) => (first + 1, last),
            };
            let mut ranges = Vec::new();
            match gateway.map(to_int).filter(|g| (lo..=hi).contains(g)) {
                Some(g) => {
                    if g > lo {
                        ranges.push((lo, g - 1));
                    }
                    if g < hi {
                        ranges.push((g + 1, hi));
                    }
                }
                None if lo <= hi => ranges.push((lo, hi)),
                None => {}
            }
            ranges
        } else {
            spec.allocation_pools
                .iter()
                .map(|p| (to_int(p.start), to_int(p.end)))
                .filter(|(a, b)| a <= b)
                .collect()
        };
        Self {
            cidr,
            gateway,
            ranges,
        }
    }

    /// How many addresses the pools hold (saturating for huge IPv6 ranges).
    pub fn size(&self) -> u128 {
        self.ranges
            .iter()
            .fold(0u128, |n, (a, b)| n.saturating_add(b - a).saturating_add(1))
    }

    /// True when `ip` is in one of the pools.
    pub fn contains(&self, ip: IpAddr) -> bool {
        same_version(&self.cidr, ip) && {
            let i = to_int(ip);
            self.ranges.iter().any(|(a, b)| *a <= i && i <= *b)
        }
    }

    /// True when the pools are in ascending address order without overlap, so the `Any`
    /// scan visits addresses in numeric order (always the case without explicit pools).
    pub fn ascending(&self) -> bool {
        self.ranges.windows(2).all(|w| w[0].1 < w[1].0)
    }

    /// How many of `taken` lie in the pools.
    pub fn count_in<'a>(&self, taken: impl IntoIterator<Item = &'a IpAddr>) -> u128 {
        taken.into_iter().filter(|ip| self.contains(**ip)).count() as u128
    }
}

/// The address `request` gets in the subnet `spec` when `taken` are in use.
///
/// # Errors
/// [`IpamError`] naming why: pools exhausted, address outside the CIDR, taken, the gateway,
/// the network or the broadcast address.
pub fn allocate(
    spec: &SubnetSpec,
    taken: &HashSet<IpAddr>,
    request: Request,
) -> Result<IpAddr, IpamError> {
    allocate_in(&Pools::of(spec), |ip| taken.contains(ip), request)
}

/// [`allocate`] with the pools computed once and `taken` as a predicate (the controller
/// asks its index and its assumptions without copying them into a set).
///
/// # Errors
/// As [`allocate`].
pub fn allocate_in(
    pools: &Pools,
    taken: impl Fn(&IpAddr) -> bool,
    request: Request,
) -> Result<IpAddr, IpamError> {
    allocate_from(pools, taken, request, 0)
}

/// [`allocate_in`] for a caller that knows every pool address numerically below `start`
/// is taken (or the gateway): an `Any` scan begins there instead of at the first pool
/// address, so handing out a whole subnet costs O(pool size) instead of O(pool size²).
/// The answer is the same as [`allocate_in`]'s when that premise holds; `Exhausted` only
/// means "nothing free at or above `start`" when `start > 0` (ask again from 0 to be sure).
///
/// # Errors
/// As [`allocate`].
pub fn allocate_from(
    pools: &Pools,
    taken: impl Fn(&IpAddr) -> bool,
    request: Request,
    start: u128,
) -> Result<IpAddr, IpamError> {
    let cidr = pools.cidr;
    match request {
        Request::Specific(ip) => {
            if !same_version(&cidr, ip) || !cidr.contains(&ip) {
                return Err(IpamError::OutsideCidr { ip, cidr });
            }
            let single = match cidr {
                IpNet::V4(n) => n.prefix_len() >= 31,
                IpNet::V6(n) => n.prefix_len() == 128,
            };
            if !single && ip == cidr.network() {
                return Err(IpamError::NetworkAddress { ip, cidr });
            }
            if !single && matches!(cidr, IpNet::V4(_)) && ip == cidr.broadcast() {
                return Err(IpamError::Broadcast { ip, cidr });
            }
            if pools.gateway == Some(ip) {
                return Err(IpamError::Gateway { ip });
            }
            if taken(&ip) {
                return Err(IpamError::Taken { ip });
            }
            Ok(ip)
        }
        Request::Any => {
            let gateway = pools
                .gateway
                .filter(|g| same_version(&cidr, *g))
                .map(to_int);
            for (first, end) in &pools.ranges {
                if *end < start {
                    continue;
                }
                let mut i = (*first).max(start);
                loop {
                    let ip = from_int(&cidr, i);
                    if Some(i) != gateway && !taken(&ip) {
                        return Ok(ip);
                    }
                    if i == *end {
                        break;
                    }
                    i += 1;
                }
            }
            Err(IpamError::Exhausted { size: pools.size() })
        }
    }
}

fn same_version(cidr: &IpNet, ip: IpAddr) -> bool {
    matches!(
        (cidr, ip),
        (IpNet::V4(_), IpAddr::V4(_)) | (IpNet::V6(_), IpAddr::V6(_))
    )
}

/// `ip` as an integer (IPv4 in the low 32 bits): the order [`allocate_from`]'s `start` uses.
pub fn to_int(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_int(cidr: &IpNet, i: u128) -> IpAddr {
    match cidr {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(i as u32)),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(i)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::kinds::subnet::AllocationPool;
    use proptest::prelude::*;

    fn subnet(cidr: &str) -> SubnetSpec {
        SubnetSpec {
            network: "net".into(),
            cidr: cidr.parse().unwrap(),
            ..Default::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn set(ips: &[&str]) -> HashSet<IpAddr> {
        ips.iter().map(|s| ip(s)).collect()
    }

    #[test]
    fn table() {
        let v4 = subnet("10.0.0.0/29"); // gateway .1, pool .2-.6
        let mut pooled = subnet("10.0.0.0/24");
        pooled.allocation_pools = vec![AllocationPool {
            start: ip("10.0.0.100"),
            end: ip("10.0.0.101"),
        }];
        let mut no_gw = subnet("10.0.0.0/30");
        no_gw.gateway_ip = Some(None);
        let v6 = subnet("fd00::/64"); // gateway fd00::1
        type Case<'a> = (
            &'a str,
            &'a SubnetSpec,
            HashSet<IpAddr>,
            Request,
            Result<IpAddr, IpamError>,
        );
        let cases: Vec<Case> = vec![
            (
                "lowest free",
                &v4,
                set(&[]),
                Request::Any,
                Ok(ip("10.0.0.2")),
            ),
            (
                "skips taken",
                &v4,
                set(&["10.0.0.2", "10.0.0.3"]),
                Request::Any,
                Ok(ip("10.0.0.4")),
            ),
            (
                "exhausted",
                &v4,
                set(&["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]),
                Request::Any,
                Err(IpamError::Exhausted { size: 5 }),
            ),
            (
                "pool start",
                &pooled,
                set(&[]),
                Request::Any,
                Ok(ip("10.0.0.100")),
            ),
            (
                "pool exhausted",
                &pooled,
                set(&["10.0.0.100", "10.0.0.101"]),
                Request::Any,
                Err(IpamError::Exhausted { size: 2 }),
            ),
            (
                "no gateway: .1 is usable",
                &no_gw,
                set(&[]),
                Request::Any,
                Ok(ip("10.0.0.1")),
            ),
            (
                "specific ok",
                &v4,
                set(&[]),
                Request::Specific(ip("10.0.0.5")),
                Ok(ip("10.0.0.5")),
            ),
            (
                "specific outside pools but in cidr (Neutron allows it)",
                &pooled,
                set(&[]),
                Request::Specific(ip("10.0.0.7")),
                Ok(ip("10.0.0.7")),
            ),
            (
                "specific taken",
                &v4,
                set(&["10.0.0.5"]),
                Request::Specific(ip("10.0.0.5")),
                Err(IpamError::Taken { ip: ip("10.0.0.5") }),
            ),
            (
                "specific gateway",
                &v4,
                set(&[]),
                Request::Specific(ip("10.0.0.1")),
                Err(IpamError::Gateway { ip: ip("10.0.0.1") }),
            ),
            (
                "specific network",
                &v4,
                set(&[]),
                Request::Specific(ip("10.0.0.0")),
                Err(IpamError::NetworkAddress {
                    ip: ip("10.0.0.0"),
                    cidr: v4.cidr,
                }),
            ),
            (
                "specific broadcast",
                &v4,
                set(&[]),
                Request::Specific(ip("10.0.0.7")),
                Err(IpamError::Broadcast {
                    ip: ip("10.0.0.7"),
                    cidr: v4.cidr,
                }),
            ),
            (
                "specific outside cidr",
                &v4,
                set(&[]),
                Request::Specific(ip("10.0.1.5")),
                Err(IpamError::OutsideCidr {
                    ip: ip("10.0.1.5"),
                    cidr: v4.cidr,
                }),
            ),
            (
                "specific of the other version",
                &v4,
                set(&[]),
                Request::Specific(ip("fd00::5")),
                Err(IpamError::OutsideCidr {
                    ip: ip("fd00::5"),
                    cidr: v4.cidr,
                }),
            ),
            ("v6 lowest", &v6, set(&[]), Request::Any, Ok(ip("fd00::2"))),
            (
                "v6 skips taken",
                &v6,
                set(&["fd00::2"]),
                Request::Any,
                Ok(ip("fd00::3")),
            ),
            (
                "v6 gateway",
                &v6,
                set(&[]),
                Request::Specific(ip("fd00::1")),
                Err(IpamError::Gateway { ip: ip("fd00::1") }),
            ),
            (
                "v6 network (subnet-router anycast)",
                &v6,
                set(&[]),
                Request::Specific(ip("fd00::")),
                Err(IpamError::NetworkAddress {
                    ip: ip("fd00::"),
                    cidr: v6.cidr,
                }),
            ),
            (
                "v6 specific",
                &v6,
                set(&[]),
                Request::Specific(ip("fd00::abcd")),
                Ok(ip("fd00::abcd")),
            ),
        ];
        for (name, spec, taken, request, want) in cases {
            assert_eq!(allocate(spec, &taken, request), want, "{name}");
        }
    }

    #[test]
    fn default_pool_sizes() {
        assert_eq!(Pools::of(&subnet("10.0.0.0/22")).size(), 1021);
        assert_eq!(Pools::of(&subnet("10.0.0.0/30")).size(), 1);
        assert_eq!(Pools::of(&subnet("10.0.0.0/31")).size(), 1);
        assert_eq!(Pools::of(&subnet("10.0.0.0/32")).size(), 0);
        let mut gw_last = subnet("10.0.0.0/29");
        gw_last.gateway_ip = Some(Some(ip("10.0.0.6")));
        let pools = Pools::of(&gw_last);
        assert_eq!(pools.size(), 5);
        assert!(!pools.contains(ip("10.0.0.6")));
        assert!(pools.contains(ip("10.0.0.1")));
        assert_eq!(Pools::of(&subnet("fd00::/120")).size(), 254);
    }

    fn arb_subnet() -> impl Strategy<Value = SubnetSpec> {
        (24u8..=30, any::<bool>(), 0u32..64, 0u32..64, any::<bool>()).prop_map(
            |(prefix, pooled, a, b, no_gateway)| {
                let mut spec = subnet(&format!("10.1.0.0/{prefix}"));
                let hosts = (1u32 << (32 - prefix)) - 2;
                if no_gateway {
                    spec.gateway_ip = Some(None);
                }
                if pooled && hosts > 2 {
                    // A pool inside .2 ..= last host (the gateway is .1 unless none).
                    let (lo, hi) = (2 + a % (hosts - 1), 2 + b % (hosts - 1));
                    let (lo, hi) = (lo.min(hi), lo.max(hi));
                    let base = u32::from(Ipv4Addr::new(10, 1, 0, 0));
                    spec.allocation_pools = vec![AllocationPool {
                        start: IpAddr::V4((base + lo).into()),
                        end: IpAddr::V4((base + hi).into()),
                    }];
                }
                spec
            },
        )
    }

    proptest! {
        #[test]
        fn never_hands_out_taken_or_out_of_pool(spec in arb_subnet(), seed in proptest::collection::vec(0u32..256, 0..40)) {
            let pools = Pools::of(&spec);
            let base = u32::from(Ipv4Addr::new(10, 1, 0, 0));
            let mut taken: HashSet<IpAddr> = seed.iter().map(|o| IpAddr::V4((base + o).into())).collect();
            let free_in_pools = pools.size() - pools.count_in(&taken);
            let mut handed = 0u128;
            loop {
                match allocate_in(&pools, |ip| taken.contains(ip), Request::Any) {
                    Ok(ip) => {
                        prop_assert!(pools.contains(ip), "{ip} outside the pools");
                        prop_assert!(!taken.contains(&ip), "{ip} handed out twice");
                        prop_assert!(Some(ip) != spec.gateway(), "{ip} is the gateway");
                        taken.insert(ip);
                        handed += 1;
                        prop_assert!(handed <= free_in_pools);
                    }
                    Err(IpamError::Exhausted { size }) => {
                        prop_assert_eq!(size, pools.size());
                        break;
                    }
                    Err(other) => prop_assert!(false, "unexpected {other}"),
                }
            }
            prop_assert_eq!(handed, free_in_pools);
        }

        #[test]
        fn a_start_below_the_first_free_address_changes_nothing(spec in arb_subnet(), seed in proptest::collection::vec(0u32..256, 0..80), cut in 0u32..300) {
            let pools = Pools::of(&spec);
            prop_assert!(pools.ascending(), "one pool, or the default range split at the gateway");
            let base = u32::from(Ipv4Addr::new(10, 1, 0, 0));
            let taken: HashSet<IpAddr> = seed.iter().map(|o| IpAddr::V4((base + o).into())).collect();
            let full = allocate_in(&pools, |ip| taken.contains(ip), Request::Any);
            // Every pool address below the lowest free one is taken (or the gateway).
            let limit = full.as_ref().map_or(u128::MAX, |ip| to_int(*ip));
            let start = (u128::from(base) + u128::from(cut)).min(limit);
            prop_assert_eq!(allocate_from(&pools, |ip| taken.contains(ip), Request::Any, start), full);
        }
    }

    #[test]
    fn start_skips_and_reports_exhaustion_above_it() {
        let pools = Pools::of(&subnet("10.0.0.0/29")); // .2-.6
        let none = |_: &IpAddr| false;
        assert_eq!(
            allocate_from(&pools, none, Request::Any, to_int(ip("10.0.0.5"))),
            Ok(ip("10.0.0.5"))
        );
        assert_eq!(
            allocate_from(&pools, none, Request::Any, to_int(ip("10.0.0.7"))),
            Err(IpamError::Exhausted { size: 5 }),
            "nothing at or above the start"
        );
        assert_eq!(
            allocate_from(&pools, none, Request::Specific(ip("10.0.0.2")), u128::MAX),
            Ok(ip("10.0.0.2")),
            "a specific request ignores the start"
        );
        let mut unordered = subnet("10.0.0.0/24");
        unordered.allocation_pools = vec![
            AllocationPool {
                start: ip("10.0.0.50"),
                end: ip("10.0.0.60"),
            },
            AllocationPool {
                start: ip("10.0.0.10"),
                end: ip("10.0.0.20"),
            },
        ];
        assert!(!Pools::of(&unordered).ascending());
    }
}
