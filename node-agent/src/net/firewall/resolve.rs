//! A `Port`'s security groups → [`ResolvedRule`]s, remote groups expanded to addresses.

use std::collections::BTreeSet;
use std::net::IpAddr;

use cirrus_crds::kinds::securitygroup::Ethertype;
use cirrus_crds::{Port, SecurityGroup};
use ipnet::IpNet;

use super::types::{Mac, Remote, ResolvedRule};

/// Whether anti-spoofing and security groups apply to the port (`None` on the port: the
/// network's setting).
pub fn port_security_enabled(port: &Port, network_default: bool) -> bool {
    port.spec.port_security_enabled.unwrap_or(network_default)
}

/// The names of the groups applied to a port: its own list, or `default` when it lists none.
pub fn effective_groups(port: &Port) -> Vec<String> {
    if port.spec.security_groups.is_empty() {
        vec!["default".to_string()]
    } else {
        let set: BTreeSet<&String> = port.spec.security_groups.iter().collect();
        set.into_iter().cloned().collect()
    }
}

/// The port's allowed address pairs, parsed (entries that are neither an address nor a CIDR,
/// or carry a bad MAC, are skipped; validation refuses them anyway).
pub(crate) fn address_pairs(port: &Port) -> Vec<(IpNet, Option<Mac>)> {
    port.spec
        .allowed_address_pairs
        .iter()
        .filter_map(|pair| {
            let net = pair
                .ip_address
                .parse::<IpNet>()
                .ok()
                .or_else(|| pair.ip_address.parse::<IpAddr>().ok().map(IpNet::from))?;
            let mac = match &pair.mac_address {
                Some(m) => Some(m.parse::<Mac>().ok()?),
                None => None,
            };
            Some((net, mac))
        })
        .collect()
}

/// The addresses a port contributes as a remote-group member: its fixed IPs (host routes)
/// and its allowed address pairs.
fn member_addresses(port: &Port) -> impl Iterator<Item = IpNet> + '_ {
    port.status
        .fixed_ips
        .iter()
        .map(|f| IpNet::from(f.ip_address))
        .chain(address_pairs(port).into_iter().map(|(net, _)| net))
}

fn family_matches(net: &IpNet, ethertype: Ethertype) -> bool {
    matches!(
        (net, ethertype),
        (IpNet::V4(_), Ethertype::IPv4) | (IpNet::V6(_), Ethertype::IPv6)
    )
}

/// Resolves the rules applied to `port`: every rule of each of its [`effective_groups`]
/// found in `groups` (same project as the port), with `remoteGroup` expanded to the
/// addresses of the `ports` of the port's project that are members of that group (with port
/// security on), restricted to the rule's IP version. A port with port security off gets
/// no rules (it is not filtered). Rules with an unknown protocol name, or a remote prefix of
/// the other IP version, are skipped (they cannot match anything).
pub fn resolve_port_rules(
    port: &Port,
    network_port_security: bool,
    groups: &[SecurityGroup],
    ports: &[Port],
) -> Vec<ResolvedRule> {
    if !port_security_enabled(port, network_port_security) {
        return Vec::new();
    }
    let project = &port.metadata.project;
    let mut out = Vec::new();
    for name in effective_groups(port) {
        let Some(group) = groups
            .iter()
            .find(|g| g.metadata.name == name && &g.metadata.project == project)
        else {
            tracing::debug!(group = %name, port = %port.metadata.name, "security group not found");
            continue;
        };
        for rule in &group.spec.rules {
            let protocol = match &rule.protocol {
                None => None,
                Some(p) if p.0.eq_ignore_ascii_case("any") => None,
                Some(p) => match p.number() {
                    Some(n) => Some(n),
                    None => continue,
                },
            };
            let remote = if let Some(remote_group) = &rule.remote_group {
                let mut nets: Vec<IpNet> = ports
                    .iter()
                    .filter(|m| &m.metadata.project == project)
                    .filter(|m| port_security_enabled(m, network_port_security))
                    .filter(|m| effective_groups(m).contains(remote_group))
                    .flat_map(member_addresses)
                    .filter(|n| family_matches(n, rule.ethertype))
                    .map(|n| n.trunc())
                    .collect();
                nets.sort();
                nets.dedup();
                Remote::Cidrs(nets)
            } else if let Some(prefix) = rule.remote_ip_prefix {
                if !family_matches(&prefix, rule.ethertype) {
                    continue;
                }
                Remote::Cidrs(vec![prefix.trunc()])
            } else {
                Remote::Any
            };
            let resolved = ResolvedRule {
                direction: rule.direction,
                ethertype: rule.ethertype,
                protocol,
                port_range_min: rule.port_range_min,
                port_range_max: rule.port_range_max,
                remote,
            };
            if !out.contains(&resolved) {
                out.push(resolved);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::kinds::port::{AllowedAddressPair, FixedIp, PortSpec};
    use cirrus_crds::kinds::securitygroup::SecurityGroupSpec;
    use cirrus_crds::kinds::securitygroup::{Direction, Protocol, SecurityGroupRule};
    use cirrus_crds::meta::ObjectMeta;

    fn port(name: &str, project: &str, groups: &[&str], ips: &[&str]) -> Port {
        let mut p = Port::new(ObjectMeta::default(), PortSpec::default());
        p.metadata.name = name.into();
        p.metadata.project = Some(project.into());
        p.spec.network = "net".into();
        p.spec.security_groups = groups.iter().map(|s| s.to_string()).collect();
        p.status.fixed_ips = ips
            .iter()
            .map(|ip| FixedIp {
                subnet: "sub".into(),
                ip_address: ip.parse().unwrap(),
            })
            .collect();
        p.status.mac_address = Some("fa:16:3e:00:00:01".into());
        p
    }

    fn group(name: &str, project: &str, rules: Vec<SecurityGroupRule>) -> SecurityGroup {
        let mut g = SecurityGroup::new(ObjectMeta::default(), SecurityGroupSpec::default());
        g.metadata.name = name.into();
        g.metadata.project = Some(project.into());
        g.spec.rules = rules;
        g
    }

    fn default_group(project: &str) -> SecurityGroup {
        let mut rules = Vec::new();
        for et in [Ethertype::IPv4, Ethertype::IPv6] {
            rules.push(SecurityGroupRule {
                direction: Direction::Ingress,
                ethertype: et,
                remote_group: Some("default".into()),
                ..Default::default()
            });
            rules.push(SecurityGroupRule {
                direction: Direction::Egress,
                ethertype: et,
                ..Default::default()
            });
        }
        group("default", project, rules)
    }

    #[test]
    fn default_group_expands_to_member_addresses_by_family() {
        let a = port("a", "p1", &[], &["10.0.0.3", "fd00::3"]);
        let mut b = port("b", "p1", &["default", "web"], &["10.0.0.4"]);
        b.spec.allowed_address_pairs = vec![AllowedAddressPair {
            ip_address: "10.0.0.100".into(),
            mac_address: None,
        }];
        let c = port("c", "p1", &["web"], &["10.0.0.5"]); // not in default
        let d = port("d", "p2", &[], &["10.0.0.6"]); // other project
        let mut e = port("e", "p1", &[], &["10.0.0.7"]);
        e.spec.port_security_enabled = Some(false); // no groups at all
        let ports = vec![a.clone(), b, c, d, e];
        let groups = vec![default_group("p1"), default_group("p2")];
        let rules = resolve_port_rules(&a, true, &groups, &ports);
        assert_eq!(rules.len(), 4);
        let v4_in = &rules[0];
        assert_eq!(v4_in.direction, Direction::Ingress);
        assert_eq!(
            v4_in.remote,
            Remote::Cidrs(vec![
                "10.0.0.3/32".parse().unwrap(),
                "10.0.0.4/32".parse().unwrap(),
                "10.0.0.100/32".parse().unwrap(),
            ])
        );
        assert_eq!(
            rules[1],
            ResolvedRule::allow_all(Direction::Egress, Ethertype::IPv4)
        );
        assert_eq!(
            rules[2].remote,
            Remote::Cidrs(vec!["fd00::3/128".parse().unwrap()])
        );
    }

    #[test]
    fn protocols_ports_prefixes_and_port_security() {
        let rules = vec![
            SecurityGroupRule {
                protocol: Some(Protocol("tcp".into())),
                port_range_min: Some(8000),
                port_range_max: Some(8001),
                remote_ip_prefix: Some("192.168.1.7/24".parse().unwrap()),
                ..Default::default()
            },
            SecurityGroupRule {
                protocol: Some(Protocol("icmp".into())),
                port_range_min: Some(8),
                ..Default::default()
            },
            SecurityGroupRule {
                protocol: Some(Protocol("any".into())),
                ..Default::default()
            },
            // Skipped: unknown protocol; remote prefix of the wrong family.
            SecurityGroupRule {
                protocol: Some(Protocol("bogus".into())),
                ..Default::default()
            },
            SecurityGroupRule {
                remote_ip_prefix: Some("fd00::/64".parse().unwrap()),
                ..Default::default()
            },
        ];
        let p = port("a", "p1", &["g"], &["10.0.0.3"]);
        let groups = vec![group("g", "p1", rules), group("g", "p2", vec![])];
        let got = resolve_port_rules(&p, true, &groups, std::slice::from_ref(&p));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].protocol, Some(6));
        assert_eq!(
            (got[0].port_range_min, got[0].port_range_max),
            (Some(8000), Some(8001))
        );
        assert_eq!(
            got[0].remote,
            Remote::Cidrs(vec!["192.168.1.0/24".parse().unwrap()])
        );
        assert_eq!((got[1].protocol, got[1].port_range_min), (Some(1), Some(8)));
        assert_eq!(
            got[2],
            ResolvedRule::allow_all(Direction::Ingress, Ethertype::IPv4)
        );

        let mut off = p.clone();
        off.spec.port_security_enabled = Some(false);
        assert!(resolve_port_rules(&off, true, &groups, &[]).is_empty());
        // The network's default applies when the port does not say.
        assert!(resolve_port_rules(&p, false, &groups, &[]).is_empty());
    }

    #[test]
    fn from_port_reads_status_and_pairs() {
        let mut p = port("a", "p1", &[], &["10.0.0.3"]);
        p.spec.allowed_address_pairs = vec![
            AllowedAddressPair {
                ip_address: "10.0.0.0/28".into(),
                mac_address: Some("FA:16:3E:00:00:09".into()),
            },
            AllowedAddressPair {
                ip_address: "not-an-ip".into(),
                mac_address: None,
            },
        ];
        let fp = super::super::FirewallPort::from_port(&p, 7, 3, true, vec![]).unwrap();
        assert_eq!(fp.mac.to_string(), "fa:16:3e:00:00:01");
        assert_eq!(fp.fixed_ips, vec!["10.0.0.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            fp.allowed_address_pairs,
            vec![(
                "10.0.0.0/28".parse().unwrap(),
                Some("fa:16:3e:00:00:09".parse().unwrap())
            )]
        );
        assert!(fp.port_security);
        p.status.mac_address = None;
        assert!(super::super::FirewallPort::from_port(&p, 7, 3, true, vec![]).is_none());
    }
}
