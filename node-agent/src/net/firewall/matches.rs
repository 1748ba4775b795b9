//! One security-group rule → OpenFlow match strings (protocol, ports, ICMP, remote).

use cirrus_crds::kinds::securitygroup::{Direction, Ethertype};
use ipnet::IpNet;

use super::types::{Remote, ResolvedRule};

const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;
const SCTP: u8 = 132;

/// A port range as the fewest `value/mask` matches covering exactly `[min, max]`.
pub(crate) fn port_range_masks(min: u16, max: u16) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let (mut lo, hi) = (u32::from(min), u32::from(max));
    while lo <= hi {
        // The largest aligned block starting at lo that stays within hi.
        let mut size = 1u32;
        while lo % (size * 2) == 0 && lo + size * 2 - 1 <= hi && size < 0x10000 {
            size *= 2;
        }
        out.push((lo as u16, (!(size - 1) & 0xffff) as u16));
        lo += size;
    }
    out
}

/// `tp_dst` matches for a port range (empty vec entry = any port).
fn port_matches(min: Option<u32>, max: Option<u32>) -> Vec<String> {
    let (min, max) = match (min, max) {
        (None, None) => return vec![String::new()],
        (Some(a), None) | (None, Some(a)) => (a, a),
        (Some(a), Some(b)) => (a, b),
    };
    let (min, max) = (min.min(65535) as u16, max.min(65535) as u16);
    if min > max {
        return Vec::new();
    }
    if min <= 1 && max == 65535 {
        return vec![String::new()];
    }
    port_range_masks(min, max)
        .into_iter()
        .map(|(v, m)| {
            if m == 0xffff {
                format!(",tp_dst={v}")
            } else {
                format!(",tp_dst=0x{v:04x}/0x{m:04x}")
            }
        })
        .collect()
}

/// The protocol part of a match and the port/type part(s); empty: the rule matches nothing.
fn protocol_matches(rule: &ResolvedRule) -> Vec<String> {
    let v6 = rule.ethertype == Ethertype::IPv6;
    let named = |v4: &str, v6name: &str| if v6 { v6name } else { v4 }.to_string();
    match rule.protocol {
        None => vec![named("ip", "ipv6")],
        Some(p @ (TCP | UDP | SCTP)) => {
            let base = match p {
                TCP => named("tcp", "tcp6"),
                UDP => named("udp", "udp6"),
                _ => named("sctp", "sctp6"),
            };
            port_matches(rule.port_range_min, rule.port_range_max)
                .into_iter()
                .map(|ports| format!("{base}{ports}"))
                .collect()
        }
        // Neutron treats "icmp" on an IPv6 rule as ICMPv6.
        Some(p) if p == ICMP || (v6 && p == ICMPV6) => {
            let mut m = named("icmp", "icmp6");
            if let Some(t) = rule.port_range_min {
                if t > 255 {
                    return Vec::new();
                }
                m.push_str(&format!(",icmp_type={t}"));
                if let Some(c) = rule.port_range_max {
                    if c > 255 {
                        return Vec::new();
                    }
                    m.push_str(&format!(",icmp_code={c}"));
                }
            }
            vec![m]
        }
        Some(p) => {
            if rule.port_range_min.is_some() || rule.port_range_max.is_some() {
                // OVS cannot match ports of this protocol: matching nothing is the safe side.
                return Vec::new();
            }
            vec![format!("{},nw_proto={p}", named("ip", "ipv6"))]
        }
    }
}

/// The remote part(s): source for ingress, destination for egress.
fn remote_matches(rule: &ResolvedRule) -> Vec<String> {
    let v6 = rule.ethertype == Ethertype::IPv6;
    let field = match (rule.direction, v6) {
        (Direction::Ingress, false) => "nw_src",
        (Direction::Ingress, true) => "ipv6_src",
        (Direction::Egress, false) => "nw_dst",
        (Direction::Egress, true) => "ipv6_dst",
    };
    match &rule.remote {
        Remote::Any => vec![String::new()],
        Remote::Cidrs(cidrs) => {
            let mut nets: Vec<IpNet> = cidrs
                .iter()
                .filter(|n| matches!(n, IpNet::V6(_)) == v6)
                .map(|n| n.trunc())
                .collect();
            nets.sort();
            nets.dedup();
            nets.into_iter()
                .map(|n| format!(",{field}={}", cidr(&n)))
                .collect()
        }
    }
}

/// A network as OVS writes it (a bare address for host routes).
pub(crate) fn cidr(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// All match strings for a rule (without registers or conntrack state): the cross product of
/// protocol/port matches and remote matches. Empty when the rule can match nothing.
pub(crate) fn rule_matches(rule: &ResolvedRule) -> Vec<String> {
    let protos = protocol_matches(rule);
    let remotes = remote_matches(rule);
    let mut out = Vec::with_capacity(protos.len() * remotes.len());
    for p in &protos {
        for r in &remotes {
            out.push(format!("{p}{r}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(proto: Option<u8>, min: Option<u32>, max: Option<u32>) -> ResolvedRule {
        ResolvedRule {
            direction: Direction::Ingress,
            ethertype: Ethertype::IPv4,
            protocol: proto,
            port_range_min: min,
            port_range_max: max,
            remote: Remote::Any,
        }
    }

    /// Expands masks back into the set of ports they match.
    fn covered(masks: &[(u16, u16)]) -> Vec<u16> {
        (0..=65535u16)
            .filter(|p| masks.iter().any(|(v, m)| p & m == *v))
            .collect()
    }

    #[test]
    fn port_range_masks_cover_exactly_the_range() {
        for (min, max) in [
            (8000, 8001),
            (22, 22),
            (1000, 1999),
            (1, 65535),
            (0, 0),
            (65535, 65535),
            (3, 1030),
        ] {
            let masks = port_range_masks(min, max);
            assert_eq!(
                covered(&masks),
                (min..=max).collect::<Vec<_>>(),
                "{min}-{max}"
            );
        }
        assert_eq!(port_range_masks(8000, 8001), vec![(8000, 0xfffe)]);
        assert_eq!(port_range_masks(22, 22), vec![(22, 0xffff)]);
        assert_eq!(port_range_masks(1000, 1999).len(), 7);
    }

    #[test]
    fn tcp_port_ranges_become_tp_dst_masks() {
        assert_eq!(
            rule_matches(&rule(Some(6), Some(8000), Some(8001))),
            vec!["tcp,tp_dst=0x1f40/0xfffe"]
        );
        assert_eq!(
            rule_matches(&rule(Some(6), Some(22), Some(22))),
            vec!["tcp,tp_dst=22"]
        );
        assert_eq!(
            rule_matches(&rule(Some(17), Some(53), None)),
            vec!["udp,tp_dst=53"]
        );
        assert_eq!(
            rule_matches(&rule(Some(6), Some(1), Some(65535))),
            vec!["tcp"]
        );
        assert_eq!(
            rule_matches(&rule(Some(132), Some(5000), Some(5003))),
            vec!["sctp,tp_dst=0x1388/0xfffc"]
        );
        assert!(rule_matches(&rule(Some(6), Some(10), Some(9))).is_empty());
    }

    #[test]
    fn icmp_type_and_code() {
        assert_eq!(rule_matches(&rule(Some(1), None, None)), vec!["icmp"]);
        assert_eq!(
            rule_matches(&rule(Some(1), Some(8), None)),
            vec!["icmp,icmp_type=8"]
        );
        assert_eq!(
            rule_matches(&rule(Some(1), Some(3), Some(4))),
            vec!["icmp,icmp_type=3,icmp_code=4"]
        );
        let mut v6 = rule(Some(1), Some(128), None);
        v6.ethertype = Ethertype::IPv6;
        assert_eq!(rule_matches(&v6), vec!["icmp6,icmp_type=128"]);
        v6.protocol = Some(58);
        assert_eq!(rule_matches(&v6), vec!["icmp6,icmp_type=128"]);
        assert!(rule_matches(&rule(Some(1), Some(300), None)).is_empty());
    }

    #[test]
    fn other_protocols_by_number_and_ports_on_them_match_nothing() {
        assert_eq!(rule_matches(&rule(None, None, None)), vec!["ip"]);
        assert_eq!(
            rule_matches(&rule(Some(47), None, None)),
            vec!["ip,nw_proto=47"]
        );
        assert!(rule_matches(&rule(Some(33), Some(1), Some(2))).is_empty());
    }

    #[test]
    fn remote_cidrs_by_direction_and_family() {
        let mut r = rule(Some(6), Some(22), None);
        r.remote = Remote::Cidrs(vec![
            "10.0.0.7/32".parse().unwrap(),
            "10.1.0.9/16".parse().unwrap(),
            "fd00::1/128".parse().unwrap(),
        ]);
        assert_eq!(
            rule_matches(&r),
            vec![
                "tcp,tp_dst=22,nw_src=10.0.0.7",
                "tcp,tp_dst=22,nw_src=10.1.0.0/16"
            ]
        );
        r.direction = Direction::Egress;
        r.ethertype = Ethertype::IPv6;
        assert_eq!(rule_matches(&r), vec!["tcp6,tp_dst=22,ipv6_dst=fd00::1"]);
        r.remote = Remote::Cidrs(vec![]);
        assert!(rule_matches(&r).is_empty());
    }
}
