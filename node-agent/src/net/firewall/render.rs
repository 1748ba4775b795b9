//! The complete flow table of the bridge (see the module docs for the pipeline).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use cirrus_crds::kinds::securitygroup::Direction;
use ipnet::IpNet;

use super::matches::{cidr, rule_matches};
use super::types::{FirewallPort, Mac, TrustedPort};

/// Table 0: in_port → registers; filtered ports to anti-spoofing, the others to forwarding.
pub const TABLE_CLASSIFY: u8 = 0;
/// Table 10: anti-spoofing of filtered ports; IP traffic enters conntrack in the port's zone.
pub const TABLE_EGRESS_SPOOF: u8 = 10;
/// Table 20: egress security-group rules (stateful).
pub const TABLE_EGRESS_FILTER: u8 = 20;
/// Table 30: forwarding within the packet's network (sets `reg7`).
pub const TABLE_FORWARD: u8 = 30;
/// Table 40: per destination port: output, or conntrack in its zone.
pub const TABLE_INGRESS_CT: u8 = 40;
/// Table 50: ingress security-group rules (stateful), then output.
pub const TABLE_INGRESS_FILTER: u8 = 50;

/// ICMPv6 types a filtered port may send without a rule (MLD query/report/done, router
/// solicitation, neighbour solicitation, MLDv2 report). Neighbour advertisements (136) are
/// allowed separately, only for the port's own addresses as target.
const ICMPV6_EGRESS: [u8; 6] = [130, 131, 132, 133, 135, 143];
/// ICMPv6 types always delivered to a port (MLD, RS, RA, NS, NA, MLDv2), as in Neutron.
const ICMPV6_INGRESS: [u8; 8] = [130, 131, 132, 133, 134, 135, 136, 143];

/// Conntrack states (always with `+trk`).
const CT_NEW: &str = "ct_state=+new-est+trk";
const CT_EST: &str = "ct_state=-new+est-rel-inv+trk";
const CT_REL: &str = "ct_state=-new-est+rel-inv+trk";
const CT_INV: &str = "ct_state=+inv+trk";

/// Flows keyed by (table, priority high first, match); the first writer of a key wins.
#[derive(Default)]
struct Table(BTreeMap<(u8, Reverse<u16>, String), String>);

impl Table {
    fn add(
        &mut self,
        table: u8,
        priority: u16,
        matches: impl Into<String>,
        actions: impl Into<String>,
    ) {
        let key = (table, Reverse(priority), matches.into());
        if let Some(existing) = self.0.get(&key) {
            tracing::warn!(table, priority, matches = %key.2, %existing, "conflicting flow ignored");
            return;
        }
        self.0.insert(key, actions.into());
    }

    fn into_lines(self) -> Vec<String> {
        self.0
            .into_iter()
            .map(|((table, Reverse(priority), m), actions)| {
                if m.is_empty() {
                    format!("table={table},priority={priority} actions={actions}")
                } else {
                    format!("table={table},priority={priority},{m} actions={actions}")
                }
            })
            .collect()
    }
}

/// A port as forwarding sees it.
struct Member {
    ofport: u32,
    tag: u16,
    /// Unicast MACs delivered to it (empty for trusted ports: they get unknown unicast).
    macs: BTreeSet<Mac>,
    filtered: bool,
}

/// Renders the bridge's complete, deterministic flow table (ovs-ofctl syntax, valid with
/// `-O OpenFlow13`) for these ports. Install it with `--bundle replace-flows` on a bridge in
/// `fail_mode=secure`. Two ports claiming the same MAC in one network: the lower ofport wins.
pub fn render(ports: &[FirewallPort], trusted: &[TrustedPort]) -> Vec<String> {
    let mut ports: Vec<&FirewallPort> = ports.iter().collect();
    ports.sort_by_key(|p| p.ofport);
    let mut trusted = trusted.to_vec();
    trusted.sort();

    let mut members: Vec<Member> = ports
        .iter()
        .map(|p| Member {
            ofport: p.ofport,
            tag: p.tag,
            macs: port_macs(p),
            filtered: p.port_security,
        })
        .collect();
    members.extend(trusted.iter().map(|t| Member {
        ofport: t.ofport,
        tag: t.tag,
        macs: BTreeSet::new(),
        filtered: false,
    }));
    members.sort_by_key(|m| m.ofport);

    let mut t = Table::default();
    static_flows(&mut t);
    for m in &members {
        classify(&mut t, m);
        ingress_ct(&mut t, m);
    }
    for p in ports.iter().filter(|p| p.port_security) {
        egress_spoof(&mut t, p);
        rules(&mut t, p);
    }
    forward(&mut t, &members);
    t.into_lines()
}

/// Default drops and the conntrack-state flows shared by all ports.
fn static_flows(t: &mut Table) {
    for table in [
        TABLE_CLASSIFY,
        TABLE_EGRESS_SPOOF,
        TABLE_EGRESS_FILTER,
        TABLE_FORWARD,
        TABLE_INGRESS_CT,
        TABLE_INGRESS_FILTER,
    ] {
        t.add(table, 0, "", "drop");
    }
    // Guests may not act as DHCP servers or routers.
    t.add(TABLE_EGRESS_SPOOF, 200, "udp,tp_src=67,tp_dst=68", "drop");
    t.add(
        TABLE_EGRESS_SPOOF,
        200,
        "udp6,tp_src=547,tp_dst=546",
        "drop",
    );
    t.add(TABLE_EGRESS_SPOOF, 200, "icmp6,icmp_type=134", "drop");
    t.add(TABLE_EGRESS_SPOOF, 200, "icmp6,icmp_type=137", "drop");
    let forward = format!("goto_table:{TABLE_FORWARD}");
    t.add(TABLE_EGRESS_FILTER, 65000, CT_INV, "drop");
    t.add(TABLE_EGRESS_FILTER, 64000, CT_EST, forward.clone());
    t.add(TABLE_EGRESS_FILTER, 64000, CT_REL, forward);
    t.add(TABLE_INGRESS_FILTER, 65000, CT_INV, "drop");
    t.add(TABLE_INGRESS_FILTER, 64000, CT_EST, "output:NXM_NX_REG7[]");
    t.add(TABLE_INGRESS_FILTER, 64000, CT_REL, "output:NXM_NX_REG7[]");
}

/// Table 0 for one port.
fn classify(t: &mut Table, m: &Member) {
    let next = if m.filtered {
        TABLE_EGRESS_SPOOF
    } else {
        TABLE_FORWARD
    };
    t.add(
        TABLE_CLASSIFY,
        100,
        format!("in_port={}", m.ofport),
        format!(
            "set_field:{}->reg5,set_field:{}->reg6,goto_table:{next}",
            m.ofport, m.tag
        ),
    );
}

/// The unicast MACs of a port: its own and those of its allowed address pairs.
fn port_macs(p: &FirewallPort) -> BTreeSet<Mac> {
    let mut macs = BTreeSet::from([p.mac]);
    macs.extend(p.allowed_address_pairs.iter().filter_map(|(_, m)| *m));
    macs
}

/// (MAC, source network) pairs a port may send from.
type Sources = BTreeSet<(Mac, IpNet)>;

/// The (MAC, source network) pairs a filtered port may send from, IPv4 and IPv6 (with the
/// link-local address of each of its MACs).
fn sources(p: &FirewallPort) -> (Sources, Sources) {
    let (mut v4, mut v6) = (BTreeSet::new(), BTreeSet::new());
    let mut add = |mac: Mac, net: IpNet| {
        let net = net.trunc();
        match net {
            IpNet::V4(_) => v4.insert((mac, net)),
            IpNet::V6(_) => v6.insert((mac, net)),
        };
    };
    for ip in &p.fixed_ips {
        add(p.mac, IpNet::from(*ip));
    }
    for (net, mac) in &p.allowed_address_pairs {
        add(mac.unwrap_or(p.mac), *net);
    }
    for mac in port_macs(p) {
        add(mac, IpNet::from(IpAddr::V6(mac.link_local())));
    }
    (v4, v6)
}

/// Table 10 for one filtered port: what it may send, and conntrack in its zone.
fn egress_spoof(t: &mut Table, p: &FirewallPort) {
    let (port, zone) = (p.ofport, p.ofport);
    let forward = format!("goto_table:{TABLE_FORWARD}");
    let to_ct = format!("ct(table={TABLE_EGRESS_FILTER},zone={zone})");
    let (v4, v6) = sources(p);
    // DHCP client requests, also before the port has an address.
    t.add(
        TABLE_EGRESS_SPOOF,
        150,
        format!(
            "reg5={port},udp,dl_src={},nw_src=0.0.0.0,tp_src=68,tp_dst=67",
            p.mac
        ),
        forward.clone(),
    );
    for (mac, net) in &v4 {
        let src = cidr(net);
        t.add(
            TABLE_EGRESS_SPOOF,
            150,
            format!("reg5={port},arp,dl_src={mac},arp_sha={mac},arp_spa={src}"),
            forward.clone(),
        );
        t.add(
            TABLE_EGRESS_SPOOF,
            150,
            format!("reg5={port},udp,dl_src={mac},nw_src={src},tp_src=68,tp_dst=67"),
            forward.clone(),
        );
        t.add(
            TABLE_EGRESS_SPOOF,
            100,
            format!("reg5={port},ip,dl_src={mac},nw_src={src}"),
            to_ct.clone(),
        );
    }
    let targets: BTreeSet<&IpNet> = v6.iter().map(|(_, n)| n).collect();
    for (mac, net) in &v6 {
        let src = cidr(net);
        t.add(
            TABLE_EGRESS_SPOOF,
            150,
            format!("reg5={port},udp6,dl_src={mac},ipv6_src={src},tp_src=546,tp_dst=547"),
            forward.clone(),
        );
        for ty in ICMPV6_EGRESS {
            t.add(
                TABLE_EGRESS_SPOOF,
                150,
                format!("reg5={port},icmp6,dl_src={mac},ipv6_src={src},icmp_type={ty}"),
                forward.clone(),
            );
        }
        for target in &targets {
            t.add(
                TABLE_EGRESS_SPOOF,
                150,
                format!(
                    "reg5={port},icmp6,dl_src={mac},ipv6_src={src},icmp_type=136,icmp_code=0,nd_target={}",
                    cidr(target)
                ),
                forward.clone(),
            );
        }
        t.add(
            TABLE_EGRESS_SPOOF,
            100,
            format!("reg5={port},ipv6,dl_src={mac},ipv6_src={src}"),
            to_ct.clone(),
        );
    }
    // Duplicate address detection and MLD before an address is configured (source ::).
    let macs = port_macs(p);
    for mac in &macs {
        for ty in [131, 135, 143] {
            t.add(
                TABLE_EGRESS_SPOOF,
                150,
                format!("reg5={port},icmp6,dl_src={mac},ipv6_src=::,icmp_type={ty}"),
                forward.clone(),
            );
        }
    }
}

/// Tables 20 and 50 for one filtered port: its security-group rules.
fn rules(t: &mut Table, p: &FirewallPort) {
    let port = p.ofport;
    for rule in &p.rules {
        for m in rule_matches(rule) {
            match rule.direction {
                Direction::Egress => t.add(
                    TABLE_EGRESS_FILTER,
                    100,
                    format!("reg5={port},{CT_NEW},{m}"),
                    format!("ct(commit,zone={port}),goto_table:{TABLE_FORWARD}"),
                ),
                Direction::Ingress => t.add(
                    TABLE_INGRESS_FILTER,
                    100,
                    format!("reg7={port},{CT_NEW},{m}"),
                    format!("ct(commit,zone={port}),output:{port}"),
                ),
            }
        }
    }
}

/// Table 30: forwarding within each network.
fn forward(t: &mut Table, members: &[Member]) {
    let mut by_tag: BTreeMap<u16, Vec<&Member>> = BTreeMap::new();
    for m in members {
        by_tag.entry(m.tag).or_default().push(m);
    }
    let to_ingress = format!("goto_table:{TABLE_INGRESS_CT}");
    for (tag, members) in by_tag {
        for m in &members {
            for mac in &m.macs {
                t.add(
                    TABLE_FORWARD,
                    100,
                    format!("reg6={tag},dl_dst={mac}"),
                    format!("set_field:{}->reg7,{to_ingress}", m.ofport),
                );
            }
        }
        let flood: Vec<String> = members
            .iter()
            .map(|m| {
                format!(
                    "clone(set_field:{}->reg7,resubmit(,{TABLE_INGRESS_CT}))",
                    m.ofport
                )
            })
            .collect();
        t.add(
            TABLE_FORWARD,
            50,
            format!("reg6={tag},dl_dst=01:00:00:00:00:00/01:00:00:00:00:00"),
            flood.join(","),
        );
        let unknown: Vec<String> = members
            .iter()
            .filter(|m| !m.filtered)
            .map(|m| format!("output:{}", m.ofport))
            .collect();
        if !unknown.is_empty() {
            t.add(TABLE_FORWARD, 10, format!("reg6={tag}"), unknown.join(","));
        }
    }
}

/// Table 40 for one destination port.
fn ingress_ct(t: &mut Table, m: &Member) {
    let port = m.ofport;
    // Never loop a port's own broadcast back to it (nor through its conntrack zone).
    t.add(
        TABLE_INGRESS_CT,
        200,
        format!("reg5={port},reg7={port}"),
        "drop",
    );
    let out = format!("output:{port}");
    if !m.filtered {
        t.add(TABLE_INGRESS_CT, 100, format!("reg7={port}"), out);
        return;
    }
    t.add(
        TABLE_INGRESS_CT,
        100,
        format!("reg7={port},arp"),
        out.clone(),
    );
    t.add(
        TABLE_INGRESS_CT,
        100,
        format!("reg7={port},udp,tp_src=67,tp_dst=68"),
        out.clone(),
    );
    t.add(
        TABLE_INGRESS_CT,
        100,
        format!("reg7={port},udp6,tp_src=547,tp_dst=546"),
        out.clone(),
    );
    for ty in ICMPV6_INGRESS {
        t.add(
            TABLE_INGRESS_CT,
            100,
            format!("reg7={port},icmp6,icmp_type={ty}"),
            out.clone(),
        );
    }
    for proto in ["ip", "ipv6"] {
        t.add(
            TABLE_INGRESS_CT,
            90,
            format!("reg7={port},{proto}"),
            format!("ct(table={TABLE_INGRESS_FILTER},zone={port})"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::firewall::{Remote, ResolvedRule};
    use cirrus_crds::kinds::securitygroup::Ethertype;

    fn port(ofport: u32, tag: u16, last: u8, ip: &str) -> FirewallPort {
        FirewallPort {
            ofport,
            tag,
            mac: Mac([0xfa, 0x16, 0x3e, 0, 0, last]),
            fixed_ips: vec![ip.parse().unwrap()],
            allowed_address_pairs: Vec::new(),
            port_security: true,
            rules: vec![ResolvedRule::allow_all(Direction::Egress, Ethertype::IPv4)],
        }
    }

    fn has(flows: &[String], needle: &str) -> bool {
        flows.iter().any(|f| f == needle)
    }

    fn assert_has(flows: &[String], needle: &str) {
        assert!(
            has(flows, needle),
            "missing {needle:?} in\n{}",
            flows.join("\n")
        );
    }

    #[test]
    fn empty_bridge_drops_everything() {
        let flows = render(&[], &[]);
        assert_eq!(flows.len(), 6 + 4 + 6);
        for table in [0, 10, 20, 30, 40, 50] {
            assert_has(&flows, &format!("table={table},priority=0 actions=drop"));
        }
        assert!(!flows.iter().any(|f| f.contains("NORMAL")));
    }

    #[test]
    fn deterministic_whatever_the_input_order() {
        let a = port(3, 1, 1, "10.0.0.3");
        let b = port(5, 1, 2, "10.0.0.5");
        let t = [
            TrustedPort { ofport: 9, tag: 1 },
            TrustedPort { ofport: 8, tag: 2 },
        ];
        let one = render(&[a.clone(), b.clone()], &t);
        let two = render(&[b, a], &[t[1], t[0]]);
        assert_eq!(one, two);
        let mut sorted = one.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), one.len(), "no duplicate flows");
    }

    #[test]
    fn classify_anti_spoof_and_conntrack_zone_per_port() {
        let flows = render(
            &[port(3, 7, 1, "10.0.0.3")],
            &[TrustedPort { ofport: 4, tag: 7 }],
        );
        assert_has(
            &flows,
            "table=0,priority=100,in_port=3 actions=set_field:3->reg5,set_field:7->reg6,goto_table:10",
        );
        assert_has(
            &flows,
            "table=0,priority=100,in_port=4 actions=set_field:4->reg5,set_field:7->reg6,goto_table:30",
        );
        assert_has(
            &flows,
            "table=10,priority=100,reg5=3,ip,dl_src=fa:16:3e:00:00:01,nw_src=10.0.0.3 actions=ct(table=20,zone=3)",
        );
        assert_has(
            &flows,
            "table=10,priority=150,reg5=3,arp,dl_src=fa:16:3e:00:00:01,arp_sha=fa:16:3e:00:00:01,arp_spa=10.0.0.3 actions=goto_table:30",
        );
        assert_has(
            &flows,
            "table=10,priority=150,reg5=3,udp,dl_src=fa:16:3e:00:00:01,nw_src=0.0.0.0,tp_src=68,tp_dst=67 actions=goto_table:30",
        );
        // IPv6 from the MAC's link-local address only; NA only for its own targets.
        assert_has(
            &flows,
            "table=10,priority=100,reg5=3,ipv6,dl_src=fa:16:3e:00:00:01,ipv6_src=fe80::f816:3eff:fe00:1 actions=ct(table=20,zone=3)",
        );
        assert_has(
            &flows,
            "table=10,priority=150,reg5=3,icmp6,dl_src=fa:16:3e:00:00:01,ipv6_src=fe80::f816:3eff:fe00:1,icmp_type=136,icmp_code=0,nd_target=fe80::f816:3eff:fe00:1 actions=goto_table:30",
        );
        assert_has(
            &flows,
            "table=10,priority=200,icmp6,icmp_type=134 actions=drop",
        );
        assert_has(
            &flows,
            "table=10,priority=200,udp,tp_src=67,tp_dst=68 actions=drop",
        );
        // Only the filtered port has anti-spoof flows.
        assert!(
            !flows
                .iter()
                .any(|f| f.contains("reg5=4,") && f.starts_with("table=10"))
        );
        // Ingress: own zone, DHCP replies and ARP pass, trusted port unfiltered.
        assert_has(
            &flows,
            "table=40,priority=90,reg7=3,ip actions=ct(table=50,zone=3)",
        );
        assert_has(&flows, "table=40,priority=100,reg7=3,arp actions=output:3");
        assert_has(&flows, "table=40,priority=100,reg7=4 actions=output:4");
        assert_has(&flows, "table=40,priority=200,reg5=3,reg7=3 actions=drop");
    }

    #[test]
    fn stateful_rules_commit_in_the_ports_zone() {
        let mut p = port(3, 1, 1, "10.0.0.3");
        p.rules.push(ResolvedRule {
            direction: Direction::Ingress,
            ethertype: Ethertype::IPv4,
            protocol: Some(6),
            port_range_min: Some(8000),
            port_range_max: Some(8001),
            remote: Remote::Cidrs(vec![
                "10.0.0.5/32".parse().unwrap(),
                "fd00::5/128".parse().unwrap(),
            ]),
        });
        p.rules.push(ResolvedRule {
            direction: Direction::Ingress,
            ethertype: Ethertype::IPv4,
            protocol: Some(1),
            port_range_min: Some(8),
            port_range_max: Some(0),
            remote: Remote::Any,
        });
        let flows = render(&[p], &[]);
        assert_has(
            &flows,
            "table=20,priority=100,reg5=3,ct_state=+new-est+trk,ip actions=ct(commit,zone=3),goto_table:30",
        );
        assert_has(
            &flows,
            "table=50,priority=100,reg7=3,ct_state=+new-est+trk,tcp,tp_dst=0x1f40/0xfffe,nw_src=10.0.0.5 actions=ct(commit,zone=3),output:3",
        );
        assert_has(
            &flows,
            "table=50,priority=100,reg7=3,ct_state=+new-est+trk,icmp,icmp_type=8,icmp_code=0 actions=ct(commit,zone=3),output:3",
        );
        assert!(
            !flows.iter().any(|f| f.contains("fd00::5")),
            "v6 remote on a v4 rule"
        );
        assert_has(
            &flows,
            "table=20,priority=65000,ct_state=+inv+trk actions=drop",
        );
        assert_has(
            &flows,
            "table=50,priority=64000,ct_state=-new+est-rel-inv+trk actions=output:NXM_NX_REG7[]",
        );
        // No ingress rule means no ingress flow for new connections.
        let bare = render(&[port(3, 1, 1, "10.0.0.3")], &[]);
        assert!(!bare.iter().any(|f| f.starts_with("table=50,priority=100")));
    }

    #[test]
    fn forwarding_stays_within_the_network() {
        let a = port(3, 1, 1, "10.0.0.3");
        let b = port(5, 1, 2, "10.0.0.5");
        let c = port(6, 2, 3, "10.0.0.6");
        let mut open = port(7, 2, 4, "10.0.0.7");
        open.port_security = false;
        let flows = render(&[a, b, c, open], &[TrustedPort { ofport: 9, tag: 1 }]);
        assert_has(
            &flows,
            "table=30,priority=100,reg6=1,dl_dst=fa:16:3e:00:00:02 actions=set_field:5->reg7,goto_table:40",
        );
        assert_has(
            &flows,
            "table=30,priority=50,reg6=1,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=clone(set_field:3->reg7,resubmit(,40)),clone(set_field:5->reg7,resubmit(,40)),clone(set_field:9->reg7,resubmit(,40))",
        );
        assert_has(&flows, "table=30,priority=10,reg6=1 actions=output:9");
        assert_has(&flows, "table=30,priority=10,reg6=2 actions=output:7");
        // Port 6 (network 2) is never a destination of network 1 and vice versa.
        assert!(
            !flows
                .iter()
                .any(|f| f.contains("reg6=1,") && f.contains("set_field:6->reg7"))
        );
        assert!(
            !flows
                .iter()
                .any(|f| f.contains("reg6=2,") && f.contains("set_field:3->reg7"))
        );
        // Port security off: straight to forwarding, no anti-spoofing.
        assert_has(
            &flows,
            "table=0,priority=100,in_port=7 actions=set_field:7->reg5,set_field:2->reg6,goto_table:30",
        );
        assert!(
            !flows
                .iter()
                .any(|f| f.starts_with("table=10") && f.contains("reg5=7,"))
        );
    }

    #[test]
    fn allowed_address_pairs_extend_sources_and_macs() {
        let mut p = port(3, 1, 1, "10.0.0.3");
        let vmac = Mac([0, 0, 0x5e, 0, 1, 1]);
        p.allowed_address_pairs = vec![
            ("10.0.0.100/32".parse().unwrap(), None),
            ("10.0.1.0/24".parse().unwrap(), Some(vmac)),
        ];
        let flows = render(&[p], &[]);
        assert_has(
            &flows,
            "table=10,priority=100,reg5=3,ip,dl_src=fa:16:3e:00:00:01,nw_src=10.0.0.100 actions=ct(table=20,zone=3)",
        );
        assert_has(
            &flows,
            "table=10,priority=100,reg5=3,ip,dl_src=00:00:5e:00:01:01,nw_src=10.0.1.0/24 actions=ct(table=20,zone=3)",
        );
        assert_has(
            &flows,
            "table=10,priority=150,reg5=3,arp,dl_src=00:00:5e:00:01:01,arp_sha=00:00:5e:00:01:01,arp_spa=10.0.1.0/24 actions=goto_table:30",
        );
        assert_has(
            &flows,
            "table=30,priority=100,reg6=1,dl_dst=00:00:5e:00:01:01 actions=set_field:3->reg7,goto_table:40",
        );
        // The pair's network with the port's own MAC is not allowed.
        assert!(!has(
            &flows,
            "table=10,priority=100,reg5=3,ip,dl_src=fa:16:3e:00:00:01,nw_src=10.0.1.0/24 actions=ct(table=20,zone=3)"
        ));
    }
}
