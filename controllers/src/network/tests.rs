//! The network controller against a real in-process API over the embedded store.
//!
//! Why this file is long: the network controller's scenarios (IPAM, MACs, DHCP ports, security
//! groups, cleanup after deletes and restarts) share one in-process API harness; each is a
//! separate case of that one controller.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use cirrus_client::{Api, Client};
use cirrus_crds::kinds::ipallocation::PORT_UID_LABEL;
use cirrus_crds::kinds::server::ServerNetwork;
use cirrus_crds::kinds::subnet::AllocationPool;
use cirrus_crds::{
    ConditionStatus, IpAllocation, IpAllocationSpec, Network, NetworkSpec, ObjectMeta, Port,
    PortSpec, Project, ProjectSpec, SecurityGroup, Server, ServerSpec, Subnet, SubnetSpec,
};
use futures::StreamExt;

use cirrus_test_utils::{eventually_holds, meta_in};

use super::*;
use crate::network::networks::dhcp_port_name;

const P: &str = "demo";

/// The shared harness; the network tests' helpers are methods of this wrapper.
struct Harness(cirrus_test_utils::Harness);

impl std::ops::Deref for Harness {
    type Target = cirrus_test_utils::Harness;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

async fn harness() -> Harness {
    Harness(cirrus_test_utils::harness().await)
}

fn test_config() -> NetworkConfig {
    NetworkConfig {
        port_concurrency: 64,
        resync: Some(Duration::from_secs(5)),
        sweep: Some(Duration::from_millis(500)),
    }
}

impl Harness {
    /// Starts a network controller; aborting the handle kills it mid-flight.
    fn start(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(run(
            self.client.clone(),
            test_config(),
            self.gate.clone(),
            std::future::pending(),
        ))
    }

    fn api<K: cirrus_crds::Resource>(&self) -> Api<K> {
        Api::in_project(self.client.clone(), P)
    }

    async fn network(&self, name: &str, cidr: &str, pool: Option<(&str, &str)>) {
        self.api::<Network>()
            .create(&Network::new(meta(name), NetworkSpec::default()))
            .await
            .unwrap();
        let spec = SubnetSpec {
            network: name.into(),
            cidr: cidr.parse().unwrap(),
            allocation_pools: pool
                .map(|(a, b)| {
                    vec![AllocationPool {
                        start: a.parse().unwrap(),
                        end: b.parse().unwrap(),
                    }]
                })
                .unwrap_or_default(),
            ..Default::default()
        };
        self.api::<Subnet>()
            .create(&Subnet::new(meta(&format!("{name}-v4")), spec))
            .await
            .unwrap();
    }

    async fn port(&self, name: &str, network: &str) -> Port {
        self.api::<Port>()
            .create(&Port::new(
                meta(name),
                PortSpec {
                    network: network.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
    }

    async fn ports(&self) -> Vec<Port> {
        self.api::<Port>().list_all(None).await.unwrap().items
    }

    async fn allocations(&self) -> Vec<IpAllocation> {
        self.api::<IpAllocation>()
            .list_all(None)
            .await
            .unwrap()
            .items
    }
}

fn meta(name: &str) -> ObjectMeta {
    meta_in(P, name)
}

fn allocated(p: &Port) -> Option<bool> {
    cirrus_crds::Condition::find(&p.status.conditions, ALLOCATED)
        .map(|c| c.status == ConditionStatus::True)
}

/// Every allocation's address is unique, and every allocated port's status shows exactly the
/// allocations labelled with its uid.
async fn assert_consistent(h: &Harness) {
    let allocations = h.allocations().await;
    let mut seen = BTreeSet::new();
    let mut by_uid: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for a in &allocations {
        assert!(
            seen.insert((a.spec.subnet.clone(), a.spec.ip_address)),
            "{} allocated twice",
            a.spec.ip_address
        );
        by_uid
            .entry(a.metadata.labels[PORT_UID_LABEL].clone())
            .or_default()
            .push(a.spec.ip_address);
    }
    let ports = h.ports().await;
    let uids: BTreeSet<String> = ports
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    for uid in by_uid.keys() {
        assert!(
            uids.contains(uid),
            "allocation of vanished port {uid} leaked"
        );
    }
    for p in ports.iter().filter(|p| allocated(p) == Some(true)) {
        let mut status: Vec<IpAddr> = p.status.fixed_ips.iter().map(|f| f.ip_address).collect();
        let mut held = by_uid
            .get(p.metadata.uid.as_deref().unwrap())
            .cloned()
            .unwrap_or_default();
        status.sort();
        held.sort();
        assert_eq!(status, held, "port {}", p.metadata.name);
    }
}

#[tokio::test]
async fn server_ports_follow_the_server_and_user_ports_outlive_it() {
    let h = harness().await;
    let _ctl = h.start();
    h.network("net-a", "10.1.0.0/24", None).await;
    h.network("net-b", "10.2.0.0/24", None).await;
    let user_port = h.port("mine", "net-b").await;
    let server = h
        .api::<Server>()
        .create(&Server::new(
            meta("web"),
            ServerSpec {
                flavor: "m1".into(),
                image: Some("img".into()),
                networks: vec![
                    ServerNetwork {
                        network: Some("net-a".into()),
                        fixed_ip: Some("10.1.0.50".parse().unwrap()),
                        ..Default::default()
                    },
                    ServerNetwork {
                        network: Some("net-b".into()),
                        ..Default::default()
                    },
                    ServerNetwork {
                        port: Some("mine".into()),
                        ..Default::default()
                    },
                ],
                node_name: Some("node-a".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let uid = server.metadata.uid.clone().unwrap();
    let owned: Vec<String> = (0..2)
        .map(|i| cirrus_crds::kinds::port::server_port_name("web", &uid, i))
        .collect();
    eventually_holds(
        "owned ports with addresses, user port claimed",
        Duration::from_secs(20),
        || async {
            let ports = h.ports().await;
            let by_name: BTreeMap<&str, &Port> = ports
                .iter()
                .map(|p| (p.metadata.name.as_str(), p))
                .collect();
            owned.iter().all(|n| {
                by_name.get(n.as_str()).is_some_and(|p| {
                    allocated(p) == Some(true)
                        && p.status.fixed_ips.len() == 1
                        && p.spec.binding_host.as_deref() == Some("node-a")
                })
            }) && by_name.get("mine").is_some_and(|p| {
                p.spec.device_id.as_deref() == Some(uid.as_str())
                    && p.spec.binding_host.as_deref() == Some("node-a")
                    && allocated(p) == Some(true)
            })
        },
    )
    .await;
    let ports = h.ports().await;
    let first = ports.iter().find(|p| p.metadata.name == owned[0]).unwrap();
    assert_eq!(
        first.status.fixed_ips[0].ip_address.to_string(),
        "10.1.0.50"
    );
    assert_eq!(
        first.spec.device_owner.as_deref(),
        Some(DEVICE_OWNER_COMPUTE)
    );
    assert_eq!(first.metadata.owner_references[0].uid, uid);
    let mac = first.status.mac_address.clone().unwrap();
    assert!(mac.starts_with("fa:16:3e:"), "{mac}");
    assert_eq!(
        first.status.phase,
        Some(cirrus_crds::kinds::network::NetworkPhase::Down)
    );
    assert_consistent(&h).await;
    // A DHCP port per network on the node the server's ports are bound to.
    for net in ["net-a", "net-b"] {
        let name = dhcp_port_name(net, "node-a");
        eventually_holds("DHCP port", Duration::from_secs(20), || async {
            h.api::<Port>().get_opt(&name).await.unwrap().is_some()
        })
        .await;
    }
    // Network status: segment, MTU, subnets.
    eventually_holds("network status", Duration::from_secs(10), || async {
        let n = h.api::<Network>().get("net-a").await.unwrap();
        n.status.mtu == Some(1450)
            && n.status.subnets == vec!["net-a-v4".to_string()]
            && n.status.segmentation.as_ref().and_then(|s| s.id).is_some()
    })
    .await;
    let a = h.api::<Network>().get("net-a").await.unwrap();
    let b = h.api::<Network>().get("net-b").await.unwrap();
    assert_ne!(
        a.status.segmentation.unwrap().id,
        b.status.segmentation.unwrap().id,
        "VNIs are unique"
    );

    h.api::<Server>().delete("web").await.unwrap();
    eventually_holds(
        "owned ports gone, user port released",
        Duration::from_secs(20),
        || async {
            let ports = h.ports().await;
            let names: BTreeSet<&str> = ports.iter().map(|p| p.metadata.name.as_str()).collect();
            let mine = ports.iter().find(|p| p.metadata.name == "mine");
            owned.iter().all(|n| !names.contains(n.as_str()))
                && mine.is_some_and(|p| p.spec.device_id.is_none() && p.spec.binding_host.is_none())
        },
    )
    .await;
    eventually_holds(
        "server gone, DHCP ports gone",
        Duration::from_secs(20),
        || async {
            h.api::<Server>().get_opt("web").await.unwrap().is_none()
                && h.ports()
                    .await
                    .iter()
                    .all(|p| p.spec.device_owner.as_deref() != Some(DEVICE_OWNER_DHCP))
        },
    )
    .await;
    // Only the user port's address is left allocated, and it is still its own.
    eventually_holds(
        "owned addresses released",
        Duration::from_secs(20),
        || async {
            let allocations = h.allocations().await;
            allocations.len() == 1
                && allocations[0].spec.port_uid == user_port.metadata.uid.clone().unwrap()
        },
    )
    .await;
    assert_consistent(&h).await;
}

#[tokio::test]
async fn concurrent_ports_on_a_small_subnet_get_unique_addresses_then_exhaust() {
    let h = harness().await;
    let _ctl = h.start();
    // 200 addresses in the pool, 210 ports.
    h.network("small", "10.3.0.0/24", Some(("10.3.0.10", "10.3.0.209")))
        .await;
    futures::stream::iter(0..210)
        .map(|i| {
            let h = &h;
            async move { h.port(&format!("p-{i}"), "small").await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    eventually_holds(
        "200 allocated, 10 exhausted",
        Duration::from_secs(60),
        || async {
            let ports = h.ports().await;
            let ok = ports.iter().filter(|p| allocated(p) == Some(true)).count();
            let exhausted = ports
                .iter()
                .filter(|p| {
                    cirrus_crds::Condition::find(&p.status.conditions, ALLOCATED).is_some_and(|c| {
                        c.status == ConditionStatus::False && c.reason == "PoolExhausted"
                    })
                })
                .count();
            ok == 200 && exhausted == 10
        },
    )
    .await;
    let allocations = h.allocations().await;
    assert_eq!(allocations.len(), 200);
    let addresses: BTreeSet<IpAddr> = allocations.iter().map(|a| a.spec.ip_address).collect();
    assert_eq!(addresses.len(), 200, "no address twice");
    let ports = h.ports().await;
    let status_addresses: BTreeSet<IpAddr> = ports
        .iter()
        .flat_map(|p| p.status.fixed_ips.iter().map(|f| f.ip_address))
        .collect();
    assert_eq!(status_addresses, addresses);
    let macs: BTreeSet<String> = ports
        .iter()
        .filter_map(|p| p.status.mac_address.clone())
        .collect();
    assert_eq!(macs.len(), 210, "MACs are unique in the network");
    let exhausted = ports.iter().find(|p| allocated(p) == Some(false)).unwrap();
    let cond = cirrus_crds::Condition::find(&exhausted.status.conditions, ALLOCATED).unwrap();
    assert!(
        cond.message.contains("small-v4") && cond.message.contains("200 addresses"),
        "{}",
        cond.message
    );
    assert_consistent(&h).await;
}

#[tokio::test]
async fn fixed_ip_requests_report_clear_conditions() {
    let h = harness().await;
    let _ctl = h.start();
    h.network("n", "10.4.0.0/24", None).await;
    h.network("other", "10.5.0.0/24", None).await;
    let want = |name: &str, subnet: Option<&str>, ip: Option<&str>| {
        Port::new(
            meta(name),
            PortSpec {
                network: "n".into(),
                fixed_ips: vec![cirrus_crds::kinds::port::FixedIpRequest {
                    subnet: subnet.map(str::to_string),
                    ip_address: ip.map(|i| i.parse().unwrap()),
                }],
                ..Default::default()
            },
        )
    };
    let ports = h.api::<Port>();
    ports
        .create(&want("first", None, Some("10.4.0.7")))
        .await
        .unwrap();
    eventually_holds("first allocated", Duration::from_secs(20), || async {
        allocated(&ports.get("first").await.unwrap()) == Some(true)
    })
    .await;
    ports
        .create(&want("second", None, Some("10.4.0.7")))
        .await
        .unwrap();
    ports
        .create(&want("elsewhere", Some("other-v4"), None))
        .await
        .unwrap();
    ports
        .create(&want("gateway", None, Some("10.4.0.1")))
        .await
        .unwrap();
    ports
        .create(&want("outside", None, Some("10.9.0.1")))
        .await
        .unwrap();
    ports
        .create(&Port::new(
            meta("lost"),
            PortSpec {
                network: "nowhere".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    for (name, reason) in [
        ("second", "AddressInUse"),
        ("elsewhere", "SubnetNotOnNetwork"),
        ("gateway", "InvalidAddress"),
        ("outside", "NoSubnetForAddress"),
        ("lost", "NetworkNotFound"),
    ] {
        eventually_holds(name, Duration::from_secs(20), || async {
            let p = ports.get(name).await.unwrap();
            cirrus_crds::Condition::find(&p.status.conditions, ALLOCATED)
                .is_some_and(|c| c.status == ConditionStatus::False && c.reason == reason)
        })
        .await;
    }
    let second = ports.get("second").await.unwrap();
    let cond = cirrus_crds::Condition::find(&second.status.conditions, ALLOCATED).unwrap();
    assert!(cond.message.contains("10.4.0.7"), "{}", cond.message);
    assert_consistent(&h).await;
}

#[tokio::test]
async fn restarted_controller_converges_without_duplicates_or_leaks() {
    let h = harness().await;
    h.network("crash", "10.6.0.0/24", None).await;
    // The pre-crash world: a port whose allocation was created but whose status was never
    // written, and an allocation of a port that is gone.
    let early = h.port("early", "crash").await;
    let early_uid = early.metadata.uid.clone().unwrap();
    let stale = |ip: &str, port: &str, uid: &str| {
        let ip: IpAddr = ip.parse().unwrap();
        IpAllocation::new(
            ObjectMeta {
                name: cirrus_crds::kinds::ipallocation::allocation_name("crash-v4", ip),
                project: Some(P.into()),
                labels: [
                    (
                        cirrus_crds::kinds::ipallocation::SUBNET_LABEL.to_string(),
                        "crash-v4".to_string(),
                    ),
                    (PORT_UID_LABEL.to_string(), uid.to_string()),
                ]
                .into(),
                ..Default::default()
            },
            IpAllocationSpec {
                subnet: "crash-v4".into(),
                ip_address: ip,
                port: port.into(),
                port_uid: uid.into(),
                port_project: None,
            },
        )
    };
    let allocations = h.api::<IpAllocation>();
    allocations
        .create(&stale("10.6.0.77", "early", &early_uid))
        .await
        .unwrap();
    allocations
        .create(&stale("10.6.0.78", "gone", "00000000-dead"))
        .await
        .unwrap();

    // The ports exist before the controller starts, so that it is surely killed mid-way
    // through allocating them (not racing the creates).
    futures::stream::iter(0..120)
        .map(|i| {
            let h = &h;
            async move { h.port(&format!("c-{i}"), "crash").await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let first = h.start();
    // Kill it mid-way.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while h.allocations().await.len() < 30 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: some allocations made"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.abort();
    let _ = first.await;
    let at_kill = h.allocations().await.len();
    assert!(
        at_kill < 122,
        "killed mid-way ({at_kill} of 122 allocations made)"
    );
    let _second = h.start();
    eventually_holds("every port allocated", Duration::from_secs(60), || async {
        let ports = h.ports().await;
        ports.len() == 121 && ports.iter().all(|p| allocated(p) == Some(true))
    })
    .await;
    eventually_holds("orphan swept", Duration::from_secs(20), || async {
        h.allocations().await.len() == 121
    })
    .await;
    let early = h.api::<Port>().get("early").await.unwrap();
    assert_eq!(
        early.status.fixed_ips[0].ip_address.to_string(),
        "10.6.0.77",
        "the allocation made before the crash is adopted"
    );
    assert_consistent(&h).await;
}

#[tokio::test]
async fn default_security_group_per_project_cannot_be_deleted_but_by_an_admin() {
    let h = harness().await;
    let _ctl = h.start();
    Api::<Project>::all(h.client.clone())
        .create(&Project::new(
            ObjectMeta {
                name: "tenant".into(),
                ..Default::default()
            },
            ProjectSpec::default(),
        ))
        .await
        .unwrap();
    // A project with no Project object gets one too once a port appears in it.
    h.network("n", "10.7.0.0/24", None).await;
    h.port("p", "n").await;
    for project in ["tenant", P] {
        let groups = Api::<SecurityGroup>::in_project(h.client.clone(), project);
        eventually_holds("default group", Duration::from_secs(20), || async {
            groups.get_opt(DEFAULT_GROUP).await.unwrap().is_some()
        })
        .await;
        let group = groups.get(DEFAULT_GROUP).await.unwrap();
        assert_eq!(group.spec, groups::default_group_spec());
        let member = Client::new(h.api.base_url.clone()).with_token(
            h.api
                .user_token("m", project, cirrus_crds::kinds::rolebinding::Role::Member)
                .await,
        );
        let err = Api::<SecurityGroup>::in_project(member, project)
            .delete(DEFAULT_GROUP)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(409), "{err}");
        assert!(err.to_string().contains("\"default\""), "{err}");
        assert!(groups.get_opt(DEFAULT_GROUP).await.unwrap().is_some());
    }
    // A cloud admin may remove one (Neutron allows it) — not while a port is in it (demo's
    // port `p` has no groups, so it is in `default`) — and the controller makes it again
    // while the project lives.
    let err = h
        .api::<SecurityGroup>()
        .delete(DEFAULT_GROUP)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(409), "{err}");
    assert!(err.to_string().contains("\"p\""), "names the port: {err}");
    let groups = Api::<SecurityGroup>::in_project(h.client.clone(), "tenant");
    let before = groups.get(DEFAULT_GROUP).await.unwrap().metadata.uid;
    groups.delete(DEFAULT_GROUP).await.unwrap();
    eventually_holds(
        "default group made again",
        Duration::from_secs(20),
        || async {
            groups
                .get_opt(DEFAULT_GROUP)
                .await
                .unwrap()
                .is_some_and(|g| g.metadata.uid != before)
        },
    )
    .await;
    // Other groups delete normally.
    let groups = h.api::<SecurityGroup>();
    groups
        .create(&SecurityGroup::new(meta("web"), Default::default()))
        .await
        .unwrap();
    groups.delete("web").await.unwrap();
}

#[tokio::test]
async fn network_deletion_is_refused_while_ports_exist() {
    let h = harness().await;
    let _ctl = h.start();
    h.network("busy", "10.8.0.0/24", None).await;
    let port = h.port("p", "busy").await;
    eventually_holds("port allocated", Duration::from_secs(20), || async {
        allocated(&h.api::<Port>().get("p").await.unwrap()) == Some(true)
    })
    .await;
    let err = h.api::<Network>().delete("busy").await.unwrap_err();
    assert_eq!(err.code(), Some(409), "{err}");
    assert!(err.to_string().contains("\"p\""), "names the port: {err}");
    h.api::<Port>().delete(&port.metadata.name).await.unwrap();
    eventually_holds(
        "port gone, address released",
        Duration::from_secs(20),
        || async {
            h.api::<Port>().get_opt("p").await.unwrap().is_none()
                && h.allocations().await.is_empty()
        },
    )
    .await;
    h.api::<Network>().delete("busy").await.unwrap();
    eventually_holds(
        "network and its subnet gone",
        Duration::from_secs(20),
        || async {
            h.api::<Network>().get_opt("busy").await.unwrap().is_none()
                && h.api::<Subnet>()
                    .get_opt("busy-v4")
                    .await
                    .unwrap()
                    .is_none()
        },
    )
    .await;
}

#[tokio::test]
async fn a_port_on_another_projects_shared_network_gets_its_address_from_the_owner() {
    const OWNER: &str = "ops";
    let h = harness().await;
    let _ctl = h.start();
    let owner_meta = |name: &str| ObjectMeta {
        name: name.into(),
        project: Some(OWNER.into()),
        ..Default::default()
    };
    let shared = NetworkSpec {
        shared: true,
        ..Default::default()
    };
    Api::<Network>::in_project(h.client.clone(), OWNER)
        .create(&Network::new(owner_meta("public"), shared))
        .await
        .unwrap();
    let subnet = SubnetSpec {
        network: "public".into(),
        cidr: "10.20.0.0/29".parse().unwrap(),
        ..Default::default()
    };
    Api::<Subnet>::in_project(h.client.clone(), OWNER)
        .create(&Subnet::new(owner_meta("public-v4"), subnet))
        .await
        .unwrap();
    // The owner's own port and a member project's port with the same name.
    let owner_ports = Api::<Port>::in_project(h.client.clone(), OWNER);
    owner_ports
        .create(&Port::new(
            owner_meta("p"),
            PortSpec {
                network: "public".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let theirs = h
        .api::<Port>()
        .create(&Port::new(
            meta("p"),
            PortSpec {
                network: "public".into(),
                network_project: Some(OWNER.into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    eventually_holds("both ports allocated", Duration::from_secs(20), || async {
        allocated(&h.api::<Port>().get("p").await.unwrap()) == Some(true)
            && allocated(&owner_ports.get("p").await.unwrap()) == Some(true)
    })
    .await;
    let mine = h.api::<Port>().get("p").await.unwrap();
    let owner_port = owner_ports.get("p").await.unwrap();
    let ip = mine.status.fixed_ips[0].ip_address;
    assert_eq!(mine.status.fixed_ips[0].subnet, "public-v4");
    assert!(
        "10.20.0.0/29"
            .parse::<ipnet::IpNet>()
            .unwrap()
            .contains(&ip),
        "{ip}"
    );
    assert_ne!(ip, owner_port.status.fixed_ips[0].ip_address);
    // The addresses live with the subnet, in the owner's project; the member's names its port.
    let held = Api::<IpAllocation>::in_project(h.client.clone(), OWNER)
        .list_all(None)
        .await
        .unwrap()
        .items;
    assert_eq!(held.len(), 2, "{held:?}");
    let member_allocation = held
        .iter()
        .find(|a| a.spec.port_uid == theirs.metadata.uid.clone().unwrap())
        .expect("the member port's allocation is the owner's");
    assert_eq!(member_allocation.spec.port_project.as_deref(), Some(P));
    assert!(
        h.allocations().await.is_empty(),
        "nothing in the member's project"
    );
    // The owner may neither unshare nor delete the network while the member uses it.
    let owner_networks = Api::<Network>::in_project(h.client.clone(), OWNER);
    let err = owner_networks
        .patch("public", &serde_json::json!({"spec": {"shared": false}}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(409), "{err}");
    let err = owner_networks.delete("public").await.unwrap_err();
    assert_eq!(err.code(), Some(409), "{err}");
    assert!(
        err.to_string().contains(&format!("(project \"{P}\")")),
        "{err}"
    );
    // Deleting the member's port releases its address in the owner's project, and only
    // that one.
    h.api::<Port>().delete("p").await.unwrap();
    eventually_holds(
        "the member's address released",
        Duration::from_secs(20),
        || async {
            Api::<IpAllocation>::in_project(h.client.clone(), OWNER)
                .list_all(None)
                .await
                .unwrap()
                .items
                .len()
                == 1
        },
    )
    .await;
    let left = Api::<IpAllocation>::in_project(h.client.clone(), OWNER)
        .list_all(None)
        .await
        .unwrap()
        .items;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].spec.port_uid, owner_port.metadata.uid.unwrap());
    owner_networks
        .patch("public", &serde_json::json!({"spec": {"shared": false}}))
        .await
        .unwrap();
}

#[tokio::test]
async fn ports_are_created_with_the_finalizer_and_deletion_waits_for_the_controller() {
    let h = harness().await;
    h.network("fin", "10.9.0.0/24", None).await;
    // No controller runs: the API put the controller's finalizer on at creation.
    let port = h.port("early", "fin").await;
    assert_eq!(port.metadata.finalizers, vec![FINALIZER.to_string()]);
    let ctl = h.start();
    eventually_holds("port allocated", Duration::from_secs(20), || async {
        allocated(&h.api::<Port>().get("early").await.unwrap()) == Some(true)
    })
    .await;
    assert_eq!(h.allocations().await.len(), 1);
    // Deleted while no controller runs: it stays, holding its address, until one does.
    ctl.abort();
    let _ = ctl.await;
    h.api::<Port>().delete("early").await.unwrap();
    let pending = h.api::<Port>().get("early").await.unwrap();
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(
        h.allocations().await.len(),
        1,
        "not released without the controller"
    );
    let _ctl = h.start();
    eventually_holds(
        "port gone and its address released",
        Duration::from_secs(20),
        || async {
            h.api::<Port>().get_opt("early").await.unwrap().is_none()
                && h.allocations().await.is_empty()
        },
    )
    .await;
}

#[tokio::test]
async fn two_racing_controllers_never_hand_out_an_address_twice_and_reuse_freed_ones() {
    let h = harness().await;
    // Both lead (no election): every port is reconciled by both at once.
    let _a = h.start();
    let _b = h.start();
    // 120 addresses, 100 ports, then 40 deleted and 60 more: the freed addresses are found
    // again below the controllers' scan starts.
    h.network("race", "10.4.0.0/24", Some(("10.4.0.10", "10.4.0.129")))
        .await;
    let create = |range: std::ops::Range<usize>| {
        futures::stream::iter(range)
            .map(|i| {
                let h = &h;
                async move { h.port(&format!("r-{i}"), "race").await }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
    };
    // Settled: every port allocated, one allocation each, and every status showing exactly
    // its port's allocations (a race may leave a moment where counts match but not owners).
    let settled = |n: usize| {
        let h = &h;
        async move {
            let ports = h.ports().await;
            let allocations = h.allocations().await;
            ports.len() == n
                && ports.iter().all(|p| allocated(p) == Some(true))
                && allocations.len() == n
                && ports.iter().all(|p| {
                    let uid = p.metadata.uid.as_deref().unwrap_or_default();
                    let mut held: Vec<IpAddr> = allocations
                        .iter()
                        .filter(|a| a.spec.port_uid == uid)
                        .map(|a| a.spec.ip_address)
                        .collect();
                    let mut shown: Vec<IpAddr> =
                        p.status.fixed_ips.iter().map(|f| f.ip_address).collect();
                    held.sort();
                    shown.sort();
                    held == shown
                })
        }
    };
    create(0..100).await;
    eventually_holds(
        "100 ports allocated once each",
        Duration::from_secs(60),
        || settled(100),
    )
    .await;
    assert_consistent(&h).await;
    for i in 0..40 {
        h.api::<Port>().delete(&format!("r-{i}")).await.unwrap();
    }
    eventually_holds("40 ports gone", Duration::from_secs(30), || settled(60)).await;
    create(100..160).await;
    eventually_holds(
        "120 ports allocated once each",
        Duration::from_secs(60),
        || settled(120),
    )
    .await;
    assert_consistent(&h).await;
    let addresses: BTreeSet<IpAddr> = h
        .allocations()
        .await
        .iter()
        .map(|a| a.spec.ip_address)
        .collect();
    assert_eq!(addresses.len(), 120, "the whole pool, each address once");
}
