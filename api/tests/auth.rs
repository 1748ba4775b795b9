//! Every native route is authenticated and authorized: tokens required, projects isolated
//! (another project's objects are 404, lists narrowed), readers read only, cluster-scoped
//! kinds admin-only except flavors and oneself, password hashes never returned, node agents
//! limited to what is bound to their node.

use cirrus_auth::Role;
use cirrus_test_utils::{TestApi, client_with_token};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn server(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"flavor": "m1", "image": "guest"}})
}

async fn status_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let code = resp.status();
    (code, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401_and_anonymous_routes_stay_open() {
    let api = TestApi::start().await;
    let anonymous = reqwest::Client::new();
    let url = format!("{}/apis/cirrus.dev/v1/flavors", api.base_url);
    let (code, body) = status_of(anonymous.get(&url).send().await.unwrap()).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(body["reason"], "Unauthorized");
    let forged = client_with_token("AQAAAAB-not-a-token");
    assert_eq!(
        forged.get(&url).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // Bearer works as well as X-Auth-Token.
    let bearer = anonymous
        .get(&url)
        .bearer_auth(&api.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);
    for open in ["/healthz", "/readyz", "/version", "/identity/v3"] {
        let resp = anonymous
            .get(format!("{}{open}", api.base_url))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{open}: {}", resp.status());
    }
}

#[tokio::test]
async fn projects_are_isolated_and_readers_cannot_write() {
    let api = TestApi::start().await;
    let alice = client_with_token(&api.user_token("alice", "demo", Role::Member).await);
    let bob = client_with_token(&api.user_token("bob", "other", Role::Member).await);
    let rita = client_with_token(&api.user_token("rita", "demo", Role::Reader).await);
    let v1 = format!("{}/apis/cirrus.dev/v1", api.base_url);

    let created = alice
        .post(format!("{v1}/projects/demo/servers"))
        .json(&server("web"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    bob.post(format!("{v1}/projects/other/servers"))
        .json(&server("db"))
        .send()
        .await
        .unwrap();

    // Bob cannot see, change or delete alice's server: 404, as if it did not exist.
    for resp in [
        bob.get(format!("{v1}/projects/demo/servers/web"))
            .send()
            .await
            .unwrap(),
        bob.delete(format!("{v1}/projects/demo/servers/web"))
            .send()
            .await
            .unwrap(),
        bob.post(format!("{v1}/projects/demo/servers"))
            .json(&server("sneaky"))
            .send()
            .await
            .unwrap(),
        bob.get(format!("{v1}/projects/demo/servers"))
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
    // A list across projects shows a member only its own project.
    let all: Value = bob
        .get(format!("{v1}/servers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db"]);
    // The admin sees both.
    let all: Value = api
        .client()
        .get(format!("{v1}/servers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 2);

    // A reader reads but may not write (403: it can see the project).
    assert_eq!(
        rita.get(format!("{v1}/projects/demo/servers/web"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let (code, body) = status_of(
        rita.delete(format!("{v1}/projects/demo/servers/web"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    // Nothing was deleted or created by the refused calls.
    let server_names: Vec<String> = api
        .store
        .list(
            cirrus_crds::kind_by_plural("servers").unwrap(),
            None,
            &Default::default(),
        )
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(server_names.len(), 2, "{server_names:?}");
}

#[tokio::test]
async fn cluster_kinds_are_admin_only_except_flavors_and_oneself_and_hashes_never_leave() {
    let api = TestApi::start().await;
    let alice = client_with_token(&api.user_token("alice", "demo", Role::Member).await);
    let v1 = format!("{}/apis/cirrus.dev/v1", api.base_url);
    // A member is not a cloud admin.
    let flavor =
        json!({"metadata": {"name": "m1"}, "spec": {"vcpus": 1, "ramMiB": 256, "diskGiB": 1}});
    assert_eq!(
        alice
            .post(format!("{v1}/flavors"))
            .json(&flavor)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        alice
            .get(format!("{v1}/flavors"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        alice
            .get(format!("{v1}/users"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        alice
            .get(format!("{v1}/users/admin"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        alice
            .get(format!("{v1}/nodes"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let me: Value = alice
        .get(format!("{v1}/users/alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["metadata"]["name"], "alice");
    assert!(me["spec"].get("passwordHash").is_none(), "{me}");

    // The admin creates a user with a plain password: stored hashed, never shown.
    let admin = api.client();
    let created: Value = admin
        .post(format!("{v1}/users"))
        .json(&json!({"metadata": {"name": "dave"}, "spec": {"password": "pw-of-dave"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(created["spec"].get("passwordHash").is_none(), "{created}");
    assert!(created["spec"].get("password").is_none(), "{created}");
    let stored = api
        .store
        .get(cirrus_crds::kind_by_plural("users").unwrap(), None, "dave")
        .await
        .unwrap();
    let hash = stored["spec"]["passwordHash"].as_str().unwrap();
    assert!(cirrus_auth::verify_password("pw-of-dave", hash).unwrap());
    // Writing a hash directly is refused; a PUT without a password keeps the stored one.
    let resp = admin
        .post(format!("{v1}/users"))
        .json(&json!({"metadata": {"name": "eve"}, "spec": {"passwordHash": hash}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let mut edited = created.clone();
    edited["spec"]["email"] = json!("dave@example.org");
    let resp = admin
        .put(format!("{v1}/users/dave"))
        .json(&edited)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{}",
        resp.text().await.unwrap()
    );
    let stored = api
        .store
        .get(cirrus_crds::kind_by_plural("users").unwrap(), None, "dave")
        .await
        .unwrap();
    assert_eq!(stored["spec"]["passwordHash"].as_str(), Some(hash));
    assert_eq!(stored["spec"]["email"], "dave@example.org");
    // Watches redact too.
    let watch = admin
        .get(format!("{v1}/users?watch=true&timeoutSeconds=1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(watch.contains("dave"));
    assert!(!watch.contains("argon2"), "{watch}");
}

#[tokio::test]
async fn node_agents_read_what_is_bound_to_them_and_write_only_its_status() {
    let api = TestApi::start().await;
    let admin = api.client();
    let v1 = format!("{}/apis/cirrus.dev/v1", api.base_url);
    let node_user =
        cirrus_api::identity::bootstrap::ensure_user(&api.store, "node-n1", "pw", Some("n1"))
            .await
            .unwrap();
    let node = client_with_token(&api.identity.mint(&node_user, None, None).unwrap());
    for (name, host) in [("mine", "n1"), ("theirs", "n2")] {
        let mut body = server(name);
        body["spec"]["nodeName"] = json!(host);
        let resp = admin
            .post(format!("{v1}/projects/demo/servers"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let get = |name: &str| {
        node.get(format!("{v1}/projects/demo/servers/{name}"))
            .send()
    };
    assert_eq!(get("mine").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("theirs").await.unwrap().status(), StatusCode::NOT_FOUND);
    // Lists of servers only with the node's own binding selected.
    let list = |query: &str| node.get(format!("{v1}/servers{query}")).send();
    assert_eq!(list("").await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        list("?fieldSelector=spec.nodeName%3Dn2")
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let mine: Value = list("?fieldSelector=spec.nodeName%3Dn1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{mine}");
    // Status of its own server: yes; of another node's, or the spec: no.
    let status_patch = json!({"status": {"node": "n1"}});
    let patch = |name: &str, suffix: &str, body: &Value| {
        node.patch(format!("{v1}/projects/demo/servers/{name}{suffix}"))
            .header("content-type", "application/merge-patch+json")
            .json(body)
            .send()
    };
    assert_eq!(
        patch("mine", "/status", &status_patch)
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        patch("theirs", "/status", &status_patch)
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        patch("mine", "", &json!({"spec": {"flavor": "m2"}}))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    // Finalizers on its own server are metadata: allowed.
    assert_eq!(
        patch(
            "mine",
            "",
            &json!({"metadata": {"finalizers": ["cirrus.dev/node-agent"]}})
        )
        .await
        .unwrap()
        .status(),
        StatusCode::OK
    );
    // No creating or deleting servers, no users.
    assert_eq!(
        node.post(format!("{v1}/projects/demo/servers"))
            .json(&server("x"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        node.delete(format!("{v1}/projects/demo/servers/mine"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        node.get(format!("{v1}/users"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    // Its own Node object: yes; another's: no.
    let node_obj = |name: &str| json!({"metadata": {"name": name}, "spec": {}});
    assert_eq!(
        node.post(format!("{v1}/nodes"))
            .json(&node_obj("n1"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        node.post(format!("{v1}/nodes"))
            .json(&node_obj("n2"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    // Metadata is served to node agents (their proxies), not to users.
    let alice = client_with_token(&api.user_token("alice", "demo", Role::Member).await);
    assert_eq!(
        alice
            .get(format!("{}/metadata/openstack", api.base_url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_ne!(
        node.get(format!("{}/metadata/openstack", api.base_url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
}
