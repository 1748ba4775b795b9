//! Unit tests of [`super`] (dhcp.rs), kept beside it so the module reads on its own.

use super::*;

fn network() -> DhcpNetwork {
    DhcpNetwork {
        network_uid: "0b5c6a4e-1111-2222-3333-444455556666".into(),
        project: "demo".into(),
        name: "net1".into(),
        tag: 7,
        mtu: 1450,
        subnets: vec![
            DhcpSubnet {
                cidr: "10.0.0.0/24".parse().unwrap(),
                gateway: Some("10.0.0.1".parse().unwrap()),
                dns_servers: vec!["10.1.1.1".parse().unwrap(), "10.1.1.2".parse().unwrap()],
                host_routes: vec![(
                    "192.168.0.0/16".parse().unwrap(),
                    "10.0.0.254".parse().unwrap(),
                )],
                enable_dhcp: true,
            },
            DhcpSubnet {
                cidr: "fd00::/64".parse().unwrap(),
                gateway: None,
                dns_servers: vec![],
                host_routes: vec![],
                enable_dhcp: true,
            },
            DhcpSubnet {
                cidr: "10.9.0.0/16".parse().unwrap(),
                gateway: None,
                dns_servers: vec![],
                host_routes: vec![],
                enable_dhcp: false,
            },
        ],
        port: DhcpPort {
            uid: "abcdef01-2345-6789".into(),
            ifname: port_ifname("abcdef01-2345-6789"),
            mac: "fa:16:3e:00:00:02".into(),
            ips: vec!["10.0.0.2/24".parse().unwrap()],
        },
        hosts: vec![
            DhcpHost {
                mac: "FA:16:3E:00:00:05".into(),
                ip: "10.0.0.5".parse().unwrap(),
                hostname: Some("Web_0".into()),
            },
            DhcpHost {
                mac: "fa:16:3e:00:00:04".into(),
                ip: "10.0.0.4".parse().unwrap(),
                hostname: None,
            },
            // Not on a served subnet: left out.
            DhcpHost {
                mac: "fa:16:3e:00:00:06".into(),
                ip: "10.9.0.6".parse().unwrap(),
                hostname: None,
            },
        ],
    }
}

#[test]
fn interface_names_fit_and_are_deterministic() {
    let name = port_ifname("3f2a9c1e-77aa-4bcd-9e00-000000000001");
    assert_eq!(name, "dh3f2a9c1e77a");
    assert!(name.len() <= 15);
}

#[test]
fn hosts_are_sorted_lowercase_with_sane_names() {
    assert_eq!(
        render_hosts(&network()),
        "fa:16:3e:00:00:04,host-10-0-0-4,10.0.0.4\nfa:16:3e:00:00:05,web0,10.0.0.5\n"
    );
    let mut empty = network();
    empty.hosts.clear();
    assert_eq!(render_hosts(&empty), "");
}

#[test]
fn options_carry_router_dns_mtu_and_classless_routes() {
    let opts = render_opts(&network());
    let routes = "169.254.169.254/32,10.0.0.2,192.168.0.0/16,10.0.0.254,0.0.0.0/0,10.0.0.1";
    assert_eq!(
        opts,
        format!(
            "tag:subnet0,option:router,10.0.0.1\n\
                 tag:subnet0,option:dns-server,10.1.1.1,10.1.1.2\n\
                 tag:subnet0,option:mtu,1450\n\
                 tag:subnet0,option:classless-static-route,{routes}\n\
                 tag:subnet0,249,{routes}\n"
        )
    );
}

#[test]
fn no_gateway_means_no_router_and_no_default_route() {
    let mut net = network();
    net.subnets[0].gateway = None;
    net.subnets[0].dns_servers.clear();
    let opts = render_opts(&net);
    assert!(opts.contains("tag:subnet0,option:router\n"));
    assert!(opts.contains("tag:subnet0,option:dns-server\n"));
    assert!(!opts.contains("0.0.0.0/0"));
    assert!(opts.contains("169.254.169.254/32,10.0.0.2"));
}

#[test]
fn a_default_host_route_replaces_the_gateway_route() {
    let mut net = network();
    net.subnets[0].host_routes =
        vec![("0.0.0.0/0".parse().unwrap(), "10.0.0.253".parse().unwrap())];
    let routes = classless_routes(&net, &net.subnets[0]);
    assert_eq!(
        routes,
        vec![
            (
                "169.254.169.254/32".parse().unwrap(),
                "10.0.0.2".parse().unwrap()
            ),
            ("0.0.0.0/0".parse().unwrap(), "10.0.0.253".parse().unwrap()),
        ]
    );
}

#[test]
fn dnsmasq_serves_only_static_v4_ranges_without_ping() {
    let paths = DhcpPaths {
        dir: "/var/lib/cirrus/dhcp/n1".into(),
    };
    let args = dnsmasq_args(&network(), &paths);
    assert!(args.contains(&"--no-ping".to_string()));
    assert!(args.contains(&"--interface=dhabcdef01234".to_string()));
    assert!(args.contains(&"--pid-file=/var/lib/cirrus/dhcp/n1/pid".to_string()));
    assert!(args.contains(&"--dhcp-hostsfile=/var/lib/cirrus/dhcp/n1/host".to_string()));
    let ranges: Vec<&String> = args
        .iter()
        .filter(|a| a.starts_with("--dhcp-range"))
        .collect();
    assert_eq!(
        ranges,
        vec!["--dhcp-range=set:subnet0,10.0.0.0,static,255.255.255.0,86400s"]
    );
    assert!(args.contains(&"--dhcp-lease-max=256".to_string()));
    // Hosts are not on the command line: a host change needs no restart.
    assert!(!args.iter().any(|a| a.contains("fa:16:3e")));
}

#[test]
fn only_dnsmasq_with_our_pid_file_is_ours() {
    let paths = DhcpPaths {
        dir: "/s/n1".into(),
    };
    let ours = vec!["dnsmasq".to_string(), "--pid-file=/s/n1/pid".into()];
    let other = vec!["dnsmasq".to_string(), "--pid-file=/s/n2/pid".into()];
    let not_dnsmasq = vec!["sleep".to_string(), "--pid-file=/s/n1/pid".into()];
    assert!(is_our_dnsmasq(&ours, &paths));
    assert!(!is_our_dnsmasq(&other, &paths));
    assert!(!is_our_dnsmasq(&not_dnsmasq, &paths));
}

#[test]
fn files_are_rewritten_only_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host");
    assert!(write_if_changed(&path, "a\n").unwrap());
    assert!(!write_if_changed(&path, "a\n").unwrap());
    assert!(write_if_changed(&path, "b\n").unwrap());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "b\n");
}

#[test]
fn invalid_networks_are_refused_before_touching_anything() {
    let mut net = network();
    net.port.ifname = "much-too-long-interface".into();
    let manager = DhcpManager::new("/nonexistent", Box::new(Refuse));
    assert!(matches!(
        manager.ensure(&net),
        Err(DhcpError::Invalid { .. })
    ));
}

#[test]
fn switch_plumbing_plugs_tagged_internal_ports() {
    use crate::net::switch::fake::FakeSwitch;
    let switch = std::sync::Arc::new(FakeSwitch::new());
    switch.bridge_ensure("br-test").unwrap();
    let plumbing = SwitchPlumbing::new(switch.clone(), "br-test");
    let port = InternalPort {
        name: "dhabc".into(),
        tag: 9,
        external_ids: BTreeMap::from([("iface-id".to_string(), "p1".to_string())]),
    };
    plumbing.ensure_internal(&port).unwrap();
    let ports = switch.ports("br-test").unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].name, "dhabc");
    assert_eq!(ports[0].tag, Some(9));
    assert_eq!(ports[0].kind, PortKind::Internal);
    assert_eq!(ports[0].external_ids["iface-id"], "p1");
    plumbing.delete("dhabc").unwrap();
    plumbing.delete("dhabc").unwrap();
    assert!(switch.ports("br-test").unwrap().is_empty());
}

struct Refuse;
impl PortPlumbing for Refuse {
    fn ensure_internal(&self, _: &InternalPort) -> std::result::Result<(), PlumbingError> {
        Err("no".into())
    }
    fn delete(&self, _: &str) -> std::result::Result<(), PlumbingError> {
        Err("no".into())
    }
}
