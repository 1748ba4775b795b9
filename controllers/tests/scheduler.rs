//! The scheduler controller against a real in-process API over the embedded store.

use std::time::Duration;

use cirrus_client::{Api, Client};
use cirrus_controllers::scheduler::SchedulerConfig;
use cirrus_controllers::scheduler::controller::{self, SCHEDULED};
use cirrus_crds::kinds::node::NodeResources;
use cirrus_crds::kinds::server::ServerPhase;
use cirrus_crds::{
    Condition, ConditionStatus, Flavor, FlavorSpec, Image, ImageSpec, Node, NodeSpec, Server,
    ServerSpec,
};
use cirrus_test_utils::{Harness, eventually, meta};

/// The shared harness, with a `guest` image in project `demo`.
async fn harness() -> Harness {
    let h = cirrus_test_utils::harness().await;
    Api::<Image>::in_project(h.client.clone(), "demo")
        .create(&Image::new(meta("guest"), ImageSpec::default()))
        .await
        .unwrap();
    h
}

trait StartScheduler {
    fn start_scheduler(&mut self);
}

impl StartScheduler for Harness {
    /// Starts the scheduler (after the test has registered its nodes, so its first list
    /// already holds them).
    fn start_scheduler(&mut self) {
        let gate = self.gate.clone();
        let scheduler_client = self.client.clone();
        let scheduler = tokio::spawn(async move {
            controller::run(
                scheduler_client,
                SchedulerConfig::default(),
                gate,
                std::future::pending(),
            )
            .await;
        });
        self.tasks.push(scheduler);
    }
}

async fn add_node(client: &Client, name: &str, memory_mib: u64) {
    let api = Api::<Node>::all(client.clone());
    let node = api
        .create(&Node::new(
            meta(name),
            NodeSpec {
                reserved_host_memory_mib: 0,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let mut node = node;
    node.status.capacity = NodeResources {
        vcpus: 8,
        memory_mib,
        disk_gib: 100,
    };
    node.status.conditions = vec![Condition {
        type_: "Ready".into(),
        status: ConditionStatus::True,
        reason: "AgentReady".into(),
        ..Default::default()
    }];
    api.replace_status(&node).await.unwrap();
}

async fn add_server(client: &Client, name: &str, flavor: &str) {
    let spec = ServerSpec {
        flavor: flavor.into(),
        image: Some("guest".into()),
        ..Default::default()
    };
    Api::<Server>::in_project(client.clone(), "demo")
        .create(&Server::new(meta(name), spec))
        .await
        .unwrap();
}

/// How long a state may take to appear.
const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread")]
async fn binds_servers_spreading_by_free_ram_and_explains_what_does_not_fit() {
    let mut h = harness().await;
    let flavors = Api::<Flavor>::all(h.client.clone());
    flavors
        .create(&Flavor::new(
            meta("small"),
            FlavorSpec {
                vcpus: 1,
                ram: 1024,
                disk: 1,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    flavors
        .create(&Flavor::new(
            meta("huge"),
            FlavorSpec {
                vcpus: 1,
                ram: 8192,
                disk: 1,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    add_node(&h.client, "node-a", 4096).await;
    add_node(&h.client, "node-b", 4096).await;
    h.start_scheduler();
    for i in 0..4 {
        add_server(&h.client, &format!("web-{i}"), "small").await;
    }
    add_server(&h.client, "big", "huge").await;
    let servers = Api::<Server>::in_project(h.client.clone(), "demo");

    // Four 1 GiB servers on two 4 GiB nodes: spread two and two, never more than fits.
    let bound = eventually("4 servers bound", WAIT, async || {
        let list = servers.list_all(None).await.ok()?;
        let bound: Vec<Server> = list
            .items
            .into_iter()
            .filter(|s| s.spec.node_name.is_some())
            .collect();
        (bound.len() == 4).then_some(bound)
    })
    .await;
    let on_a = bound
        .iter()
        .filter(|s| s.spec.node_name.as_deref() == Some("node-a"))
        .count();
    assert_eq!(on_a, 2, "spread by free RAM");
    for s in &bound {
        let scheduled = Condition::find(&s.status.conditions, SCHEDULED);
        assert!(scheduled.is_none() || scheduled.unwrap().status == ConditionStatus::True);
    }

    // The 8 GiB server fits nowhere and says why, node by node.
    let big = eventually("big explained", WAIT, async || {
        let s = servers.get("big").await.ok()?;
        let c = Condition::find(&s.status.conditions, SCHEDULED)?.clone();
        (c.status == ConditionStatus::False).then_some((s, c))
    })
    .await;
    assert_eq!(big.1.reason, "NoValidHost");
    assert!(
        big.1
            .message
            .starts_with("0/2 nodes are available: 2 insufficient RAM (need 8192 MiB"),
        "{}",
        big.1.message
    );
    assert_eq!(big.0.status.phase, Some(ServerPhase::Build));
    assert!(big.0.spec.node_name.is_none());

    // Capacity appears: a bigger node registers and the server lands there.
    add_node(&h.client, "node-c", 16384).await;
    let big = eventually("big bound", WAIT, async || {
        let s = servers.get("big").await.ok()?;
        s.spec.node_name.is_some().then_some(s)
    })
    .await;
    assert_eq!(big.spec.node_name.as_deref(), Some("node-c"));
    let scheduled = eventually("Scheduled=True", WAIT, async || {
        let s = servers.get("big").await.ok()?;
        let c = Condition::find(&s.status.conditions, SCHEDULED)?.clone();
        (c.status == ConditionStatus::True).then_some(c)
    })
    .await;
    assert!(
        scheduled.message.contains("node-c"),
        "{}",
        scheduled.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_flavor_is_explained() {
    let mut h = harness().await;
    add_node(&h.client, "node-a", 4096).await;
    h.start_scheduler();
    add_server(&h.client, "orphan", "nope").await;
    let servers = Api::<Server>::in_project(h.client.clone(), "demo");
    let c = eventually("FlavorNotFound", WAIT, async || {
        let s = servers.get("orphan").await.ok()?;
        Condition::find(&s.status.conditions, SCHEDULED).cloned()
    })
    .await;
    assert_eq!(c.reason, "FlavorNotFound");
    assert!(c.message.contains("\"nope\""));
}
