//! The node lifecycle controller against a real in-process API.

use std::time::{Duration, Instant};

use chrono::Utc;
use cirrus_client::{Api, Client};
use cirrus_controllers::nodelifecycle::{self, LEASE_EXPIRED};
use cirrus_crds::{Condition, ConditionStatus, Lease, LeaseSpec, Node, NodeSpec};
use cirrus_test_utils::meta;

#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_lease_expires_becomes_not_ready_and_a_live_one_stays_ready() {
    let api = cirrus_test_utils::TestApi::start().await;
    let client = Client::new(api.base_url.clone()).with_token(api.admin_token.clone());

    let nodes = Api::<Node>::all(client.clone());
    let leases = Api::<Lease>::all(client.clone());
    for name in ["dying", "alive"] {
        let mut node = nodes
            .create(&Node::new(meta(name), NodeSpec::default()))
            .await
            .unwrap();
        node.status.conditions = vec![Condition {
            type_: "Ready".into(),
            status: ConditionStatus::True,
            reason: "AgentReady".into(),
            ..Default::default()
        }];
        nodes.replace_status(&node).await.unwrap();
        let lease = LeaseSpec {
            holder_identity: Some(name.into()),
            lease_duration_seconds: Some(if name == "dying" { 2 } else { 3600 }),
            renew_time: Some(Utc::now()),
            ..Default::default()
        };
        leases
            .create(&Lease::new(meta(&format!("node-{name}")), lease))
            .await
            .unwrap();
    }

    let (gate_tx, gate) = tokio::sync::watch::channel(true);
    let controller_client = client.clone();
    let controller = tokio::spawn(async move {
        let _gate_open = gate_tx;
        nodelifecycle::run(controller_client, gate, std::future::pending()).await;
    });

    let deadline = Instant::now() + Duration::from_secs(15);
    let dying = loop {
        let node = nodes.get("dying").await.unwrap();
        let ready = Condition::find(&node.status.conditions, "Ready")
            .unwrap()
            .clone();
        if ready.status == ConditionStatus::Unknown {
            break ready;
        }
        assert!(Instant::now() < deadline, "the expired lease was noticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dying.reason, LEASE_EXPIRED);
    let alive = nodes.get("alive").await.unwrap();
    assert!(
        Condition::is_true(&alive.status.conditions, "Ready"),
        "a renewed node stays ready"
    );
    controller.abort();
}
