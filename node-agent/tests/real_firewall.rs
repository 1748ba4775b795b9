//! The rendered firewall on the REAL Open vSwitch (userspace datapath): a throwaway bridge
//! in `fail_mode=secure`, OVS internal ports moved into network namespaces standing in for
//! guests, flows installed with `ovs-ofctl --bundle replace-flows`, traffic with busybox.
//!
//! Fails with instructions when OVS does not answer, unless `CIRRUS_SKIP_OVS=1`. Bridges and
//! namespaces are unique to the test and removed on drop (`Lab`).

use std::io::Read;
use std::net::IpAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cirrus_crds::kinds::port::FixedIp;
use cirrus_crds::kinds::securitygroup::{
    Direction, Ethertype, Protocol, SecurityGroupRule, SecurityGroupSpec,
};
use cirrus_crds::{ObjectMeta, Port, PortSpec, SecurityGroup};
use cirrus_node_agent::net::firewall::lab::{Lab, LabGuest, measure_rule_change};
use cirrus_node_agent::net::firewall::{
    FirewallPort, Mac, Remote, ResolvedRule, render, resolve_port_rules,
};

/// False (after a SKIP line) when the OVS tests are switched off; panics with instructions
/// when OVS does not answer.
fn ovs_ready(test: &str) -> bool {
    if std::env::var("CIRRUS_SKIP_OVS").is_ok_and(|v| v == "1") {
        println!("SKIP {test}: CIRRUS_SKIP_OVS=1");
        return false;
    }
    assert!(
        Lab::ovs_available(),
        "Open vSwitch does not answer (`ovs-vsctl show` failed): start it with \
         `setsid hack/start-ovs.sh start`, or set CIRRUS_SKIP_OVS=1 to skip the real_* OVS tests"
    );
    true
}

fn mac(last: u8) -> Mac {
    Mac([0xfa, 0x16, 0x3e, 0x00, 0x0b, last])
}

fn guest(lab: &mut Lab, tag: u16, last: u8) -> LabGuest {
    lab.add_guest(
        tag,
        mac(last),
        format!("10.66.0.{last}/24").parse().unwrap(),
    )
    .expect("guest")
}

fn egress_all() -> ResolvedRule {
    ResolvedRule::allow_all(Direction::Egress, Ethertype::IPv4)
}

fn ingress(protocol: Option<u8>, remote: Remote) -> ResolvedRule {
    ResolvedRule {
        direction: Direction::Ingress,
        ethertype: Ethertype::IPv4,
        protocol,
        port_range_min: None,
        port_range_max: None,
        remote,
    }
}

fn host(g: &LabGuest) -> ipnet::IpNet {
    ipnet::IpNet::from(g.addr())
}

fn install(lab: &Lab, ports: &[FirewallPort]) {
    lab.install(&render(ports, &[])).expect("replace-flows");
}

#[track_caller]
fn assert_ping(lab: &Lab, from: &LabGuest, to: IpAddr, want: bool) {
    let got = lab.ping(from, to);
    assert_eq!(
        got,
        want,
        "ping {} -> {to}: expected {}\n{}",
        from.ip,
        if want { "an answer" } else { "no answer" },
        lab.dump_flows()
    );
}

/// Static neighbour entry, so only IP-level checks decide (no ARP involved).
fn neigh(lab: &Lab, on: &LabGuest, ip: &str, mac: Mac) {
    lab.netns_run(
        &on.netns,
        &[
            "ip",
            "neigh",
            "replace",
            ip,
            "lladdr",
            &mac.to_string(),
            "dev",
            &on.name,
        ],
    )
    .expect("ip neigh");
}

#[test]
fn real_firewall_icmp_rule_allows_ping_both_ways() {
    if !ovs_ready("real_firewall_icmp_rule_allows_ping_both_ways") {
        return;
    }
    let mut lab = Lab::new().unwrap();
    let a = guest(&mut lab, 1, 1);
    let b = guest(&mut lab, 1, 2);
    // Egress only: nothing new gets in.
    install(
        &lab,
        &[
            a.firewall_port(vec![egress_all()]),
            b.firewall_port(vec![egress_all()]),
        ],
    );
    assert_ping(&lab, &a, b.addr(), false);
    // ICMP ingress from anywhere on both.
    let icmp = ingress(Some(1), Remote::Any);
    install(
        &lab,
        &[
            a.firewall_port(vec![egress_all(), icmp.clone()]),
            b.firewall_port(vec![egress_all(), icmp]),
        ],
    );
    assert_ping(&lab, &a, b.addr(), true);
    assert_ping(&lab, &b, a.addr(), true);
}

fn crd_port(name: &str, groups: &[&str], g: &LabGuest) -> Port {
    let mut p = Port::new(
        ObjectMeta {
            name: name.into(),
            project: Some("p".into()),
            ..Default::default()
        },
        PortSpec {
            network: "net".into(),
            security_groups: groups.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    );
    p.status.mac_address = Some(g.mac.to_string());
    p.status.fixed_ips = vec![FixedIp {
        subnet: "sub".into(),
        ip_address: g.addr(),
    }];
    p
}

/// A group like `default`: ingress from its own members, all egress.
fn default_like(name: &str) -> SecurityGroup {
    let mut rules = Vec::new();
    for et in [Ethertype::IPv4, Ethertype::IPv6] {
        rules.push(SecurityGroupRule {
            direction: Direction::Ingress,
            ethertype: et,
            remote_group: Some(name.into()),
            ..Default::default()
        });
        rules.push(SecurityGroupRule {
            direction: Direction::Egress,
            ethertype: et,
            ..Default::default()
        });
    }
    SecurityGroup::new(
        ObjectMeta {
            name: name.into(),
            project: Some("p".into()),
            ..Default::default()
        },
        SecurityGroupSpec {
            rules,
            ..Default::default()
        },
    )
}

fn render_crds(lab: &Lab, guests: &[(&LabGuest, &Port)], groups: &[SecurityGroup]) -> Vec<String> {
    let ports: Vec<Port> = guests.iter().map(|(_, p)| (*p).clone()).collect();
    let fw: Vec<FirewallPort> = guests
        .iter()
        .map(|(g, p)| {
            let rules = resolve_port_rules(p, true, groups, &ports);
            FirewallPort::from_port(p, g.ofport, g.tag, true, rules).unwrap()
        })
        .collect();
    let flows = render(&fw, &[]);
    lab.install(&flows).expect("replace-flows");
    flows
}

#[test]
fn real_firewall_default_group_semantics_and_live_rule_change() {
    if !ovs_ready("real_firewall_default_group_semantics_and_live_rule_change") {
        return;
    }
    let mut lab = Lab::new().unwrap();
    let a = guest(&mut lab, 1, 1);
    let b = guest(&mut lab, 1, 2);
    let c = guest(&mut lab, 1, 3);
    let pa = crd_port("a", &["default"], &a);
    let pb = crd_port("b", &["other"], &b);
    let pc = crd_port("c", &[], &c); // no groups listed: default
    let mut groups = vec![default_like("default"), default_like("other")];
    render_crds(&lab, &[(&a, &pa), (&b, &pb), (&c, &pc)], &groups);
    // Same group: both ways.
    assert_ping(&lab, &a, c.addr(), true);
    assert_ping(&lab, &c, a.addr(), true);
    // Different groups: neither way.
    assert_ping(&lab, &a, b.addr(), false);
    assert_ping(&lab, &b, a.addr(), false);
    // An ICMP ingress rule on `other`: a reaches b, on the running "guests".
    groups[1].spec.rules.push(SecurityGroupRule {
        direction: Direction::Ingress,
        ethertype: Ethertype::IPv4,
        protocol: Some(Protocol("icmp".into())),
        ..Default::default()
    });
    render_crds(&lab, &[(&a, &pa), (&b, &pb), (&c, &pc)], &groups);
    assert_ping(&lab, &a, b.addr(), true);
    assert_ping(&lab, &b, a.addr(), false); // default still admits only its members
    // And removing it again stops new pings.
    groups[1].spec.rules.pop();
    render_crds(&lab, &[(&a, &pa), (&b, &pb), (&c, &pc)], &groups);
    assert_ping(&lab, &a, b.addr(), false);
}

#[test]
fn real_firewall_is_stateful() {
    if !ovs_ready("real_firewall_is_stateful") {
        return;
    }
    let mut lab = Lab::new().unwrap();
    let a = guest(&mut lab, 1, 1);
    let b = guest(&mut lab, 1, 2);
    // a: all egress, no ingress. b: ICMP in from a only, no egress at all.
    install(
        &lab,
        &[
            a.firewall_port(vec![egress_all()]),
            b.firewall_port(vec![ingress(Some(1), Remote::Cidrs(vec![host(&a)]))]),
        ],
    );
    // Replies pass both firewalls as part of a's connection.
    assert_ping(&lab, &a, b.addr(), true);
    // But b cannot start anything towards a.
    assert_ping(&lab, &b, a.addr(), false);
}

#[test]
fn real_firewall_anti_spoofing() {
    if !ovs_ready("real_firewall_anti_spoofing") {
        return;
    }
    let mut lab = Lab::new().unwrap();
    let a = guest(&mut lab, 1, 1);
    let b = guest(&mut lab, 1, 2);
    let all_in = ingress(None, Remote::Any);
    install(
        &lab,
        &[
            a.firewall_port(vec![egress_all(), all_in.clone()]),
            b.firewall_port(vec![egress_all(), all_in]),
        ],
    );
    let before = ipv4_to(&lab, &b);
    assert_ping(&lab, &a, b.addr(), true);
    assert!(ipv4_to(&lab, &b) > before, "the counter sees a's ping");

    // a takes another address; neighbours are static so only the IP check can stop it.
    // (Entries are added after the change: removing an address or a link flushes them.)
    let spoofed = "10.66.0.9";
    let ns = &a.netns;
    lab.netns_run(ns, &["ip", "addr", "flush", "dev", &a.name])
        .unwrap();
    lab.netns_run(
        ns,
        &[
            "ip",
            "addr",
            "add",
            &format!("{spoofed}/24"),
            "dev",
            &a.name,
        ],
    )
    .unwrap();
    neigh(&lab, &a, "10.66.0.2", b.mac);
    neigh(&lab, &b, spoofed, a.mac);
    let before = ipv4_to(&lab, &b);
    assert_ping(&lab, &a, b.addr(), false);
    assert_eq!(
        ipv4_to(&lab, &b),
        before,
        "a spoofed packet reached b's pipeline"
    );
    // ARP with the spoofed address gets nothing either (no static entry this time).
    lab.netns_run(ns, &["ip", "neigh", "flush", "dev", &a.name])
        .unwrap();
    let arping = lab.netns_run(
        ns,
        &[
            "busybox",
            "arping",
            "-c",
            "1",
            "-w",
            "1",
            "-I",
            &a.name,
            "10.66.0.2",
        ],
    );
    assert!(arping.is_err(), "ARP from a spoofed address was answered");
    // Back to its own address: traffic flows again.
    lab.netns_run(ns, &["ip", "addr", "flush", "dev", &a.name])
        .unwrap();
    lab.netns_run(
        ns,
        &["ip", "addr", "add", &a.ip.to_string(), "dev", &a.name],
    )
    .unwrap();
    assert_ping(&lab, &a, b.addr(), true);

    // a changes its MAC: nothing gets through, even with static neighbours.
    let other = mac(0x99);
    for cmd in [
        vec!["ip", "link", "set", &a.name, "down"],
        vec!["ip", "link", "set", &a.name, "address", &other.to_string()],
        vec!["ip", "link", "set", &a.name, "up"],
    ] {
        lab.netns_run(ns, &cmd).unwrap();
    }
    lab.netns_run(
        ns,
        &["ip", "addr", "replace", &a.ip.to_string(), "dev", &a.name],
    )
    .unwrap();
    neigh(&lab, &a, "10.66.0.2", b.mac);
    neigh(&lab, &b, "10.66.0.1", other);
    let before = ipv4_to(&lab, &b);
    assert_ping(&lab, &a, b.addr(), false);
    assert_eq!(
        ipv4_to(&lab, &b),
        before,
        "a packet from a foreign MAC reached b's pipeline"
    );
}

/// IPv4 packets that reached the ingress pipeline of `g` (table 40's conntrack flow). Waits
/// first: packets handled by the datapath's flow cache are added to the OpenFlow counters
/// by the revalidators (every 500 ms by default).
fn ipv4_to(lab: &Lab, g: &LabGuest) -> u64 {
    std::thread::sleep(Duration::from_millis(1100));
    lab.flow_packets(40, &format!("priority=90,ip,reg7={:#x}", g.ofport))
}

#[test]
fn real_firewall_networks_are_isolated() {
    if !ovs_ready("real_firewall_networks_are_isolated") {
        return;
    }
    let mut lab = Lab::new().unwrap();
    let a = guest(&mut lab, 1, 1);
    let b = guest(&mut lab, 1, 2);
    let c = guest(&mut lab, 2, 3); // same subnet, other network
    let all_in = ingress(None, Remote::Any);
    install(
        &lab,
        &[
            a.firewall_port(vec![egress_all(), all_in.clone()]),
            b.firewall_port(vec![egress_all(), all_in.clone()]),
            c.firewall_port(vec![egress_all(), all_in]),
        ],
    );
    assert_ping(&lab, &a, b.addr(), true);
    // Static neighbours so ARP isolation alone does not decide.
    neigh(&lab, &a, "10.66.0.3", c.mac);
    neigh(&lab, &c, "10.66.0.1", a.mac);
    assert_ping(&lab, &c, a.addr(), false);
    assert_ping(&lab, &a, c.addr(), false);
}

#[test]
fn real_firewall_tcp_port_range() {
    if !ovs_ready("real_firewall_tcp_port_range") {
        return;
    }
    let mut lab = Lab::new().unwrap();
    let a = guest(&mut lab, 1, 1);
    let b = guest(&mut lab, 1, 2);
    let tcp = ResolvedRule {
        direction: Direction::Ingress,
        ethertype: Ethertype::IPv4,
        protocol: Some(6),
        port_range_min: Some(8000),
        port_range_max: Some(8001),
        remote: Remote::Any,
    };
    install(
        &lab,
        &[
            a.firewall_port(vec![egress_all()]),
            b.firewall_port(vec![egress_all(), tcp]),
        ],
    );
    assert!(tcp_works(&lab, &a, &b, 8001), "tcp 8001 is in the range");
    assert!(
        !tcp_works(&lab, &a, &b, 8002),
        "tcp 8002 is outside the range"
    );
    assert!(
        !tcp_works(&lab, &a, &b, 7999),
        "tcp 7999 is outside the range"
    );
}

/// Whether a line sent from `from` reaches a listener on `to:port`.
fn tcp_works(lab: &Lab, from: &LabGuest, to: &LabGuest, port: u16) -> bool {
    let mut server = lab
        .command(to, &["busybox", "nc", "-l", "-p", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("nc -l");
    std::thread::sleep(Duration::from_millis(200));
    let client = lab
        .command(
            from,
            &[
                "sh",
                "-c",
                &format!("echo hello | busybox nc -w 1 {} {port}", to.ip.addr()),
            ],
        )
        .output()
        .expect("nc");
    let _ = server.kill();
    let _ = server.wait();
    let mut got = String::new();
    server
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    client.status.success() && got.contains("hello")
}

/// ping6 to the link-local address of `to` (NDP and the ICMPv6 echo both through the
/// firewall), retried while the addresses are still tentative (DAD).
fn ping6_link_local(lab: &Lab, from: &LabGuest, to: &LabGuest, tries: u32) -> bool {
    let target = to.mac.link_local().to_string();
    let mut last = String::new();
    for _ in 0..tries {
        let args = [
            "busybox", "ping6", "-c", "1", "-W", "1", "-I", &from.name, &target,
        ];
        match lab.netns_run(&from.netns, &args) {
            Ok(_) => return true,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("ping6 {} -> {target}: {last}", from.name);
    false
}

#[test]
fn real_firewall_ipv6_link_local_with_ndp() {
    if !ovs_ready("real_firewall_ipv6_link_local_with_ndp") {
        return;
    }
    let mut lab = Lab::new().unwrap();
    let a = guest(&mut lab, 1, 1);
    let b = guest(&mut lab, 1, 2);
    let egress6 = ResolvedRule::allow_all(Direction::Egress, Ethertype::IPv6);
    let icmp6_in = ResolvedRule {
        direction: Direction::Ingress,
        ethertype: Ethertype::IPv6,
        protocol: Some(58),
        port_range_min: None,
        port_range_max: None,
        remote: Remote::Any,
    };
    install(
        &lab,
        &[
            a.firewall_port(vec![egress6.clone()]),
            b.firewall_port(vec![egress6.clone(), icmp6_in]),
        ],
    );
    assert!(
        ping6_link_local(&lab, &a, &b, 5),
        "ping6 a -> b link-local\n{}",
        lab.dump_flows()
    );
    // a has no ICMPv6 ingress rule: b cannot start an echo towards it (NDP still passes).
    assert!(!ping6_link_local(&lab, &b, &a, 1), "ping6 b -> a passed");
}

#[test]
fn real_firewall_rule_change_latency() {
    if !ovs_ready("real_firewall_rule_change_latency") {
        return;
    }
    for extra in [0, 200] {
        let start = Instant::now();
        let (mut samples, flows) = measure_rule_change(5, extra).expect("measure");
        samples.sort();
        let p50 = samples[samples.len() / 2];
        let max = *samples.last().unwrap();
        println!(
            "rule change -> data path with {flows} flows: p50 {:.1} ms, max {:.1} ms \
             ({} samples, {:.1} s total)",
            p50.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            samples.len(),
            start.elapsed().as_secs_f64()
        );
        // Every change reached the data path (how fast is `cirrus bench network`'s to say,
        // against a plain ping of the same run).
        assert_eq!(samples.len(), 5, "every rule change took effect");
    }
}
