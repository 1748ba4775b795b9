//! The console route proxies to the node agent of the server's node.

use axum::extract::{Path, Query};
use axum::routing::get;
use cirrus_test_utils::TestApi;
use serde_json::{Value, json};
use std::collections::HashMap;

#[tokio::test]
async fn console_is_proxied_from_the_node_agent_and_errors_name_the_hop() {
    let api = TestApi::start().await;
    let base = format!("{}/apis/cirrus.dev/v1", api.base_url);
    // A stand-in node agent serving one console log.
    let agent_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_url = format!("http://{}", agent_listener.local_addr().unwrap());
    let agent = tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/servers/{uid}/console",
            get(
                |Path(uid): Path<String>, Query(q): Query<HashMap<String, String>>| async move {
                    format!(
                        "console of {uid} tail={}\n",
                        q.get("tailBytes").cloned().unwrap_or_default()
                    )
                },
            ),
        );
        axum::serve(agent_listener, app).await.unwrap();
    });
    let http = api.client();
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();

    let created: Value = post(
        "/projects/demo/servers",
        json!({"metadata": {"name": "web"}, "spec": {"flavor": "m1", "image": "guest"}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let console = format!("{base}/projects/demo/servers/web/console?tailBytes=100");

    let resp = http.get(&console).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 409, "no node yet");

    let patch = |path: String, body: Value| {
        http.patch(format!("{base}{path}"))
            .header("Content-Type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
    };
    patch(
        "/projects/demo/servers/web".into(),
        json!({"spec": {"nodeName": "node-a"}}),
    )
    .await
    .unwrap();
    post("/nodes", json!({"metadata": {"name": "node-a"}}))
        .await
        .unwrap();
    let resp = http.get(&console).send().await.unwrap();
    assert_eq!(
        resp.status().as_u16(),
        503,
        "node without an agent endpoint"
    );
    let status: Value = resp.json().await.unwrap();
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("agent endpoint"),
        "{status}"
    );

    patch(
        "/nodes/node-a/status".into(),
        json!({"status": {"agentEndpoint": agent_url}}),
    )
    .await
    .unwrap();
    let resp = http.get(&console).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        format!("console of {uid} tail=100\n")
    );

    agent.abort();
    let _ = agent.await;
    let resp = http.get(&console).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503, "agent down");
    let resp = http
        .get(format!("{base}/projects/demo/networks/x/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}
