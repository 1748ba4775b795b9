//! Unit tests of [`super`] (ports.rs), kept beside it so the module reads on its own.

use super::*;
use crate::net::switch::fake::FakeSwitch;
use cirrus_crds::kinds::port::FixedIp;
use cirrus_crds::kinds::securitygroup::{Direction, SecurityGroupRule};
use cirrus_crds::{NetworkSpec, ObjectMeta, PortSpec, SecurityGroupSpec, SubnetSpec};

const NET_UID: &str = "6f1c2a7e-8d7b-4c1e-9a55-0b8e6f2d3c41";

fn meta(name: &str, uid: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        project: Some("demo".into()),
        uid: Some(uid.into()),
        ..Default::default()
    }
}

fn port(name: &str, uid: &str, node: &str, ip: &str, owner: &str) -> Arc<Port> {
    let mut p = Port::new(
        meta(name, uid),
        PortSpec {
            network: "net".into(),
            binding_host: Some(node.into()),
            device_owner: Some(owner.into()),
            device_id: Some("0b8e6f2d-0000-4000-8000-000000000001".into()),
            ..Default::default()
        },
    );
    let last = ip.rsplit('.').next().unwrap().parse::<u8>().unwrap();
    p.status.mac_address = Some(format!("fa:16:3e:00:00:{last:02x}"));
    p.status.fixed_ips = vec![FixedIp {
        subnet: "net-v4".into(),
        ip_address: ip.parse().unwrap(),
    }];
    Arc::new(p)
}

fn snapshot(ports: Vec<Arc<Port>>) -> Snapshot {
    let network = Network::new(meta("net", NET_UID), NetworkSpec::default());
    let subnet = Subnet::new(
        meta("net-v4", "11111111-0000-4000-8000-000000000000"),
        SubnetSpec {
            network: "net".into(),
            cidr: "10.0.0.0/24".parse().unwrap(),
            ..Default::default()
        },
    );
    let group = SecurityGroup::new(
        meta("default", "22222222-0000-4000-8000-000000000000"),
        SecurityGroupSpec {
            rules: vec![SecurityGroupRule {
                direction: Direction::Egress,
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    Snapshot {
        ports,
        networks: vec![Arc::new(network)],
        subnets: vec![Arc::new(subnet)],
        groups: vec![Arc::new(group)],
    }
}

const P1: &str = "aaaaaaaa-1111-4000-8000-000000000001";
const P2: &str = "bbbbbbbb-2222-4000-8000-000000000002";
const DHCP: &str = "cccccccc-3333-4000-8000-000000000003";

#[test]
fn plan_takes_ports_bound_here_and_serves_the_whole_network_by_dhcp() {
    let mut no_mac = (*port(
        "nomac",
        "dddddddd-4444-4000-8000-000000000004",
        "n1",
        "10.0.0.9",
        "compute:nova",
    ))
    .clone();
    no_mac.status.mac_address = None;
    let snap = snapshot(vec![
        port("p1", P1, "n1", "10.0.0.11", "compute:nova"),
        port("p2", P2, "n2", "10.0.0.12", "compute:nova"),
        port("net-dhcp-n1", DHCP, "n1", "10.0.0.2", DEVICE_OWNER_DHCP),
        Arc::new(no_mac),
    ]);
    let plan = plan("n1", &snap, |_| Ok(7));
    assert_eq!(plan.compute.len(), 1, "{plan:?}");
    let p1 = &plan.compute[0];
    assert_eq!(p1.key, "demo/p1");
    assert_eq!(p1.tap, "tapaaaaaaaa-11");
    assert_eq!(p1.tag, 7);
    assert_eq!(p1.external_ids["iface-id"], P1);
    assert_eq!(p1.external_ids[EXTERNAL_ID_NETWORK], NET_UID);
    assert_eq!(
        p1.firewall.fixed_ips,
        vec!["10.0.0.11".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(plan.dhcp.len(), 1);
    let (key, net) = &plan.dhcp[0];
    assert_eq!(key, "demo/net-dhcp-n1");
    assert_eq!(net.tag, 7);
    assert_eq!(net.port.ips, vec!["10.0.0.2/24".parse::<IpNet>().unwrap()]);
    // Every port of the network gets a host entry (p2 lives on another node), never
    // the DHCP port itself nor a port without a MAC.
    let mut ips: Vec<String> = net.hosts.iter().map(|h| h.ip.to_string()).collect();
    ips.sort();
    assert_eq!(ips, ["10.0.0.11", "10.0.0.12"]);
    assert_eq!(plan.skipped.len(), 1, "{:?}", plan.skipped);
    assert!(plan.networks.contains(NET_UID));
}

#[test]
fn a_port_of_another_project_on_the_shared_network_is_plugged_and_served_by_its_dhcp() {
    let foreign = |name: &str, uid: &str, ip: &str, network_project: Option<&str>| {
        let mut p = (*port(name, uid, "n1", ip, "compute:nova")).clone();
        p.metadata.project = Some("tenant".into());
        p.spec.network_project = network_project.map(str::to_string);
        Arc::new(p)
    };
    let snap = snapshot(vec![
        foreign("t1", P1, "10.0.0.21", Some("demo")),
        // Without networkProject it names the tenant's own (missing) network "net".
        foreign("t2", P2, "10.0.0.22", None),
        port("net-dhcp-n1", DHCP, "n1", "10.0.0.2", DEVICE_OWNER_DHCP),
    ]);
    let plan = plan("n1", &snap, |_| Ok(7));
    assert_eq!(plan.compute.len(), 1, "{plan:?}");
    assert_eq!(plan.compute[0].key, "tenant/t1");
    assert_eq!(plan.compute[0].external_ids[EXTERNAL_ID_NETWORK], NET_UID);
    assert_eq!(plan.skipped.len(), 1, "{:?}", plan.skipped);
    assert_eq!(plan.skipped[0].0, "tenant/t2");
    let (_, net) = &plan.dhcp[0];
    assert_eq!(net.project, "demo");
    let ips: Vec<String> = net.hosts.iter().map(|h| h.ip.to_string()).collect();
    assert_eq!(
        ips,
        ["10.0.0.21"],
        "the shared network's DHCP serves the tenant's port"
    );
}

fn agent(switch: Arc<FakeSwitch>, dir: &std::path::Path) -> NetworkAgent {
    let host = Arc::new(HostNetwork::new("br-test", dir).unwrap());
    NetworkAgent::new(
        Client::new("http://127.0.0.1:9"),
        "n1",
        host,
        switch,
        dir.to_path_buf(),
        "http://127.0.0.1:9",
        PortsConfig::default(),
    )
    .with_device_probe(|name| name.starts_with("tap"))
}

#[test]
fn apply_plugs_repairs_drift_and_removes_what_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Arc::new(FakeSwitch::new());
    let agent = agent(switch.clone(), dir.path());

    // Nothing to plug on a host without the bridge: the host is left alone.
    let empty = plan("n1", &snapshot(vec![]), |_| Ok(1));
    assert_eq!(agent.apply(&empty).unwrap(), Applied::default());
    assert!(matches!(
        switch.ports("br-test"),
        Err(SwitchError::NoSuchBridge(_))
    ));

    let snap = snapshot(vec![port("p1", P1, "n1", "10.0.0.11", "compute:nova")]);
    let one = plan("n1", &snap, |uid| agent.vlan(uid));
    switch.add_device("tapaaaaaaaa-11");
    let applied = agent.apply(&one).unwrap();
    assert_eq!(applied.plugged.get("demo/p1"), Some(&true));
    assert!(applied.flows_replaced);
    let plugged = switch.ports("br-test").unwrap();
    assert_eq!(plugged.len(), 1);
    assert_eq!(plugged[0].tag, Some(1));
    assert_eq!(plugged[0].external_ids["iface-id"], P1);
    let flows = switch.flows("br-test").unwrap();
    assert!(
        flows.iter().any(|f| f.contains("fa:16:3e:00:00:0b")),
        "{flows:?}"
    );

    // Converged: a second pass changes nothing.
    let again = agent.apply(&one).unwrap();
    assert!(!again.flows_replaced);
    assert!(again.ports_removed.is_empty());

    // Deleted and retagged behind our back: both repaired.
    assert!(switch.oob_delete_port("br-test", "tapaaaaaaaa-11"));
    agent.apply(&one).unwrap();
    assert_eq!(switch.ports("br-test").unwrap().len(), 1);
    switch.oob_set_tag("br-test", "tapaaaaaaaa-11", Some(99));
    agent.apply(&one).unwrap();
    assert_eq!(switch.ports("br-test").unwrap()[0].tag, Some(1));

    // The port is gone: its OVS port goes, the flows follow, the tag is kept while fresh.
    let gone = agent.apply(&empty).unwrap();
    assert_eq!(gone.ports_removed, vec!["tapaaaaaaaa-11".to_string()]);
    assert!(gone.flows_replaced);
    assert!(switch.ports("br-test").unwrap().is_empty());
    assert_eq!(agent.host.local_vlans().get(NET_UID), Some(1));
}

#[test]
fn a_port_whose_tap_does_not_exist_stays_down() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Arc::new(FakeSwitch::new());
    let agent = agent(switch.clone(), dir.path()).with_device_probe(|_| false);
    let snap = snapshot(vec![port("p1", P1, "n1", "10.0.0.11", "compute:nova")]);
    let one = plan("n1", &snap, |uid| agent.vlan(uid));
    let applied = agent.apply(&one).unwrap();
    assert_eq!(applied.plugged.get("demo/p1"), Some(&false));
    assert!(switch.ports("br-test").unwrap().is_empty());
}
