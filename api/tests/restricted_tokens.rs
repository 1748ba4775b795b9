//! Restricted tokens: a node's metadata token works on `/metadata` only and only for that
//! node's servers; a console read reaches the node agent with a short-lived token of the API's
//! own, good only for checking back that one server, never with the reader's token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use cirrus_api::identity::bootstrap::ensure_user;
use cirrus_auth::Role;
use cirrus_test_utils::{TestApi, client_with_token};
use serde_json::{Value, json};

async fn create(http: &reqwest::Client, url: String, body: Value) -> Value {
    let resp = http.post(&url).json(&body).send().await.unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.json().await.unwrap()
}

async fn patch_status(http: &reqwest::Client, url: String, status: Value) {
    let resp = http
        .patch(format!("{url}/status"))
        .header("Content-Type", "application/merge-patch+json")
        .body(json!({ "status": status }).to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
}

async fn node_token(api: &TestApi, node: &str) -> String {
    let user = ensure_user(&api.store, &format!("node-{node}"), "pw", Some(node))
        .await
        .unwrap();
    api.identity.mint(&user, None, None).unwrap()
}

/// Server `name` in project demo on `node` (`spec.nodeName`), with a compute port holding
/// `ip` on net1; returns its uid.
async fn server(api: &TestApi, name: &str, node: Option<&str>, ip: &str) -> String {
    let v1 = format!("{}/apis/cirrus.dev/v1/projects/demo", api.base_url);
    let admin = api.client();
    let mut spec = json!({"flavor": "m1", "image": "guest", "networks": [{"network": "net1"}]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    let created = create(
        &admin,
        format!("{v1}/servers"),
        json!({"metadata": {"name": name}, "spec": spec}),
    )
    .await;
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let port = format!("{name}-port");
    create(
        &admin,
        format!("{v1}/ports"),
        json!({"metadata": {"name": port}, "spec": {
            "network": "net1", "deviceOwner": "compute:nova", "deviceId": uid}}),
    )
    .await;
    patch_status(
        &admin,
        format!("{v1}/ports/{port}"),
        json!({"fixedIps": [{"subnet": "net1-sub", "ipAddress": ip}]}),
    )
    .await;
    uid
}

async fn metadata(http: &reqwest::Client, root: &str, ip: &str) -> (u16, String) {
    let resp = http
        .get(format!("{root}/metadata/openstack/latest/meta_data.json"))
        .header("X-Cirrus-Network", "demo/net1")
        .header("X-Cirrus-Source-Ip", ip)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn a_metadata_token_reads_only_metadata_and_a_node_only_its_own_servers() {
    let api = TestApi::start().await;
    let root = api.base_url.clone();
    let v1 = format!("{root}/apis/cirrus.dev/v1");
    let admin = api.client();
    create(
        &admin,
        format!("{v1}/projects/demo/networks"),
        json!({"metadata": {"name": "net1"}, "spec": {}}),
    )
    .await;
    create(
        &admin,
        format!("{v1}/projects/demo/subnets"),
        json!({"metadata": {"name": "net1-sub"},
            "spec": {"network": "net1", "cidr": "10.0.0.0/24"}}),
    )
    .await;
    let mine = server(&api, "vm-a", Some("n1"), "10.0.0.5").await;
    let theirs = server(&api, "vm-b", Some("n2"), "10.0.0.6").await;
    let unplaced = server(&api, "vm-c", None, "10.0.0.7").await;
    let running_here = server(&api, "vm-d", None, "10.0.0.8").await;
    patch_status(
        &admin,
        format!("{v1}/projects/demo/servers/vm-d"),
        json!({"node": "n1"}),
    )
    .await;
    let n1 = client_with_token(&node_token(&api, "n1").await);
    let n2_token = node_token(&api, "n2").await;

    // The node asks for its metadata token; nobody else gets one.
    let issued = n1
        .post(format!("{v1}/nodes/n1/metadatatoken"))
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status().as_u16(), 201);
    let issued: Value = issued.json().await.unwrap();
    assert_eq!(issued["kind"], "MetadataToken");
    assert_eq!(issued["node"], "n1");
    assert!(issued["expiresAt"].as_str().is_some(), "{issued}");
    let token = issued["token"].as_str().unwrap().to_string();
    let member = api.user_token("alice", "demo", Role::Member).await;
    for (who, t) in [
        ("another node", n2_token.as_str()),
        ("a member", member.as_str()),
        ("a cloud admin", api.admin_token.as_str()),
        ("the metadata token itself", token.as_str()),
    ] {
        let resp = client_with_token(t)
            .post(format!("{v1}/nodes/n1/metadatatoken"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 403, "{who}");
    }
    let resp = n1
        .post(format!("{v1}/flavors/m1/metadatatoken"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    // The metadata token: 403 everywhere but /metadata, anonymous routes included.
    let restricted = client_with_token(&token);
    for (method, path) in [
        ("GET", "/apis/cirrus.dev/v1/nodes".to_string()),
        ("GET", "/apis/cirrus.dev/v1/nodes/n1".to_string()),
        (
            "GET",
            "/apis/cirrus.dev/v1/projects/demo/servers/vm-a".to_string(),
        ),
        (
            "GET",
            "/apis/cirrus.dev/v1/servers?fieldSelector=spec.nodeName%3Dn1".to_string(),
        ),
        (
            "GET",
            "/apis/cirrus.dev/v1/projects/demo/servers/vm-a/configdrive".to_string(),
        ),
        (
            "GET",
            "/apis/cirrus.dev/v1/projects/demo/servers/vm-a/console".to_string(),
        ),
        (
            "GET",
            "/apis/cirrus.dev/v1/projects/demo/servers/vm-a/consoleaccess".to_string(),
        ),
        ("PATCH", "/apis/cirrus.dev/v1/nodes/n1/status".to_string()),
        ("GET", "/apis/cirrus.dev/v1".to_string()),
        ("GET", "/apis".to_string()),
        ("GET", "/openapi/v3".to_string()),
        ("GET", "/identity/v3/auth/tokens".to_string()),
        ("POST", "/identity/v3/auth/tokens".to_string()),
        ("GET", "/identity/v3/users".to_string()),
        ("GET", "/compute/v2.1/servers".to_string()),
        ("GET", "/network/v2.0/ports".to_string()),
        ("GET", "/healthz".to_string()),
        ("GET", "/version".to_string()),
        ("POST", "/metadata/openstack".to_string()),
        ("GET", "/metadatax".to_string()),
    ] {
        let resp = restricted
            .request(method.parse().unwrap(), format!("{root}{path}"))
            .header("X-Subject-Token", &token)
            .header("Content-Type", "application/merge-patch+json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 403, "{method} {path}");
        let body = resp.text().await.unwrap();
        assert!(
            !body.contains(&mine) && !body.contains("items"),
            "{path}: {body}"
        );
    }

    // On /metadata it speaks for n1: its servers (by spec.nodeName or status.node), nothing
    // of n2's or of a server on no node.
    let (code, body) = metadata(&restricted, &root, "10.0.0.5").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["uuid"], mine);
    let (code, body) = metadata(&restricted, &root, "10.0.0.8").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["uuid"],
        running_here
    );
    for (ip, uid) in [("10.0.0.6", &theirs), ("10.0.0.7", &unplaced)] {
        for (who, client) in [("metadata token", &restricted), ("node token", &n1)] {
            let (code, body) = metadata(client, &root, ip).await;
            assert_eq!(code, 404, "{who} {ip}: {body}");
            assert!(!body.contains(uid.as_str()), "{body}");
        }
    }
    // The node token is bound the same way; a cloud admin sees any.
    let (code, _) = metadata(&n1, &root, "10.0.0.5").await;
    assert_eq!(code, 200);
    let (code, body) = metadata(&admin, &root, "10.0.0.6").await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = metadata(&client_with_token(&member), &root, "10.0.0.5").await;
    assert_eq!(code, 403, "a person is not a metadata proxy");
}

/// What the stand-in agent saw of each console request.
#[derive(Clone, Debug, Default)]
struct Seen {
    token: String,
    query: HashMap<String, String>,
    check: Option<(u16, Value)>,
}

#[derive(Clone)]
struct Agent {
    api: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A stand-in node agent that checks the token it got back with the API, as the real one does.
async fn agent_console(
    State(agent): State<Agent>,
    Path(uid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> String {
    let token = headers
        .get("x-auth-token")
        .and_then(|t| t.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let check = reqwest::Client::new()
        .get(format!(
            "{}/apis/cirrus.dev/v1/projects/{}/servers/{}/consoleaccess",
            agent.api, query["project"], query["name"]
        ))
        .header("x-auth-token", &token)
        .send()
        .await
        .unwrap();
    let code = check.status().as_u16();
    let body: Value = check.json().await.unwrap_or(Value::Null);
    agent.seen.lock().unwrap().push(Seen {
        token,
        query,
        check: Some((code, body)),
    });
    format!("console of {uid}\n")
}

async fn serve(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

#[tokio::test]
async fn a_console_read_reaches_the_agent_with_a_token_of_the_apis_own_for_that_server_only() {
    let api = TestApi::start().await;
    let v1 = format!("{}/apis/cirrus.dev/v1", api.base_url);
    let admin = api.client();
    let agent = Agent {
        api: api.base_url.clone(),
        seen: Arc::default(),
    };
    let (agent_url, agent_task) = serve(
        axum::Router::new()
            .route("/servers/{uid}/console", get(agent_console))
            .with_state(agent.clone()),
    )
    .await;
    // A node whose endpoint redirects elsewhere: the API must not follow.
    let trap_hits = Arc::new(Mutex::new(0u32));
    let hits = trap_hits.clone();
    let (trap_url, trap_task) = serve(axum::Router::new().fallback(move || {
        let hits = hits.clone();
        async move {
            *hits.lock().unwrap() += 1;
            "trapped\n"
        }
    }))
    .await;
    let target = format!("{trap_url}/steal");
    let (redirector_url, redirector_task) = serve(axum::Router::new().fallback(move || {
        let target = target.clone();
        async move { axum::response::Redirect::temporary(&target) }
    }))
    .await;
    let mut uids = HashMap::new();
    for (name, node) in [("web", "n1"), ("web2", "n1"), ("bent", "n3")] {
        let created = create(
            &admin,
            format!("{v1}/projects/demo/servers"),
            json!({"metadata": {"name": name},
                "spec": {"flavor": "m1", "image": "guest", "nodeName": node}}),
        )
        .await;
        uids.insert(
            name,
            created["metadata"]["uid"].as_str().unwrap().to_string(),
        );
    }
    for (node, endpoint) in [("n1", &agent_url), ("n3", &redirector_url)] {
        create(
            &admin,
            format!("{v1}/nodes"),
            json!({"metadata": {"name": node}}),
        )
        .await;
        patch_status(
            &admin,
            format!("{v1}/nodes/{node}"),
            json!({"agentEndpoint": endpoint}),
        )
        .await;
    }
    let reader = api.user_token("alice", "demo", Role::Reader).await;
    let alice = client_with_token(&reader);

    let resp = alice
        .get(format!(
            "{v1}/projects/demo/servers/web/console?tailBytes=10"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        format!("console of {}\n", uids["web"])
    );
    let seen = agent.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_ne!(seen.token, reader, "the reader's token reached the node");
    assert!(!seen.token.is_empty());
    assert_eq!(seen.query["project"], "demo");
    assert_eq!(seen.query["name"], "web");
    assert_eq!(seen.query["tailBytes"], "10");
    let (code, check) = seen.check.clone().unwrap();
    assert_eq!(code, 200, "{check}");
    assert_eq!(check["kind"], "ConsoleAccess");
    assert_eq!(check["serverUid"], uids["web"].as_str());
    assert_eq!(check["node"], "n1");

    // The token the node got is good for nothing but that check-back: not for the server,
    // its console, anything else of the API, or another server's check-back.
    let parent = cirrus_auth::token::open(&api.identity.keys, &reader).unwrap();
    let got = cirrus_auth::token::open(&api.identity.keys, &seen.token).unwrap();
    assert_eq!(got.user, format!("system:console:{}", uids["web"]));
    assert_eq!(got.user_uid, parent.user_uid);
    assert!(got.expires_at - got.issued_at <= cirrus_api::restricted::CONSOLE_TOKEN_TTL);
    let fresh = client_with_token(&seen.token);
    for path in [
        format!("{v1}/projects/demo/servers/web"),
        format!("{v1}/projects/demo/servers/web/console"),
        format!("{v1}/nodes"),
        format!("{}/metadata/openstack", api.base_url),
        format!("{}/healthz", api.base_url),
    ] {
        let resp = fresh.get(&path).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 403, "{path}");
    }
    let other = fresh
        .get(format!("{v1}/projects/demo/servers/web2/consoleaccess"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 403, "another server's check");
    let other_project = fresh
        .get(format!("{v1}/projects/other/servers/web/consoleaccess"))
        .send()
        .await
        .unwrap();
    assert_eq!(other_project.status().as_u16(), 404);
    let ok = fresh
        .get(format!("{v1}/projects/demo/servers/web/consoleaccess"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    // Only console tokens are checked there: a person's or a node's own token is refused.
    let n1 = node_token(&api, "n1").await;
    for token in [&reader, &api.admin_token, &n1] {
        let resp = client_with_token(token)
            .get(format!("{v1}/projects/demo/servers/web/consoleaccess"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 403);
    }

    // A redirecting endpoint: 503, and the redirect target never hears of it.
    let resp = alice
        .get(format!("{v1}/projects/demo/servers/bent/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let status: Value = resp.json().await.unwrap();
    assert!(
        status["message"].as_str().unwrap().contains("307"),
        "{status}"
    );
    assert_eq!(*trap_hits.lock().unwrap(), 0);
    for task in [agent_task, trap_task, redirector_task] {
        task.abort();
    }
}
