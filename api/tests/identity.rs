//! Keystone v3 tokens under `/identity`: password login against `User` objects, project scope
//! from `RoleBinding`s, validation and revocation, Keystone's error bodies, version discovery.

use cirrus_test_utils::TestApi;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

/// The API with user `alice` (member in `demo`), user `bob` (no bindings), projects `demo`
/// and `other`.
async fn cloud() -> (TestApi, reqwest::Client) {
    let api = TestApi::start().await;
    let http = api.client();
    let base = format!("{}/apis/cirrus.dev/v1", api.base_url);
    let objects = [
        (
            "users",
            json!({"metadata": {"name": "alice"}, "spec": {"password": PASSWORD}}),
        ),
        (
            "users",
            json!({"metadata": {"name": "bob"}, "spec": {"password": PASSWORD}}),
        ),
        (
            "users",
            json!({"metadata": {"name": "carol"}, "spec": {"password": PASSWORD, "enabled": false}}),
        ),
        ("projects", json!({"metadata": {"name": "demo"}})),
        ("projects", json!({"metadata": {"name": "other"}})),
        (
            "rolebindings",
            json!({"metadata": {"name": "alice-demo"},
                   "spec": {"user": "alice", "project": "demo", "role": "member"}}),
        ),
        (
            "rolebindings",
            json!({"metadata": {"name": "carol-demo"},
                   "spec": {"user": "carol", "project": "demo", "role": "admin"}}),
        ),
    ];
    for (plural, body) in objects {
        let resp = http
            .post(format!("{base}/{plural}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::CREATED,
            "{}",
            resp.text().await.unwrap()
        );
    }
    (api, http)
}

fn login(user: &str, password: &str, project: &str) -> Value {
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}},
    }})
}

async fn post_token(api: &TestApi, http: &reqwest::Client, body: &Value) -> reqwest::Response {
    http.post(format!("{}/identity/v3/auth/tokens", api.base_url))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn issue(api: &TestApi, http: &reqwest::Client) -> String {
    let resp = post_token(api, http, &login("alice", PASSWORD, "demo")).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.headers()["x-subject-token"]
        .to_str()
        .unwrap()
        .to_string()
}

async fn assert_keystone_error(resp: reqwest::Response, code: u16, needle: &str) {
    assert_eq!(resp.status().as_u16(), code);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["title"].is_string(), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
}

#[tokio::test]
async fn the_right_password_gets_a_project_scoped_token_with_implied_roles() {
    let (api, http) = cloud().await;
    let resp = post_token(&api, &http, &login("alice", PASSWORD, "demo")).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let token = resp.headers()["x-subject-token"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(token.len() > 40, "an opaque token: {token}");
    let body: Value = resp.json().await.unwrap();
    let t = &body["token"];
    assert_eq!(t["methods"], json!(["password"]));
    assert_eq!(t["user"]["name"], "alice");
    assert_eq!(t["user"]["domain"]["id"], "default");
    assert_eq!(t["project"]["id"], "demo");
    assert_eq!(t["project"]["name"], "demo");
    assert_eq!(t["project"]["domain"]["id"], "default");
    let mut roles: Vec<&str> = t["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    roles.sort();
    assert_eq!(roles, ["member", "reader"]);
    let types: Vec<&str> = t["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "identity",
            "compute",
            "image",
            "network",
            "block-storage",
            "volumev3"
        ]
    );
    assert_eq!(t["audit_ids"].as_array().unwrap().len(), 1);
    let issued = chrono::DateTime::parse_from_rfc3339(t["issued_at"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(t["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires - issued, chrono::Duration::hours(1));
    assert!(t["expires_at"].as_str().unwrap().ends_with(".000000Z"));
}

#[tokio::test]
async fn wrong_password_unknown_or_disabled_user_and_no_binding_are_401() {
    let (api, http) = cloud().await;
    let cases = [
        login("alice", "wrong", "demo"),
        login("nobody", PASSWORD, "demo"),
        login("carol", PASSWORD, "demo"),
        login("bob", PASSWORD, "demo"),
        login("alice", PASSWORD, "other"),
        login("alice", PASSWORD, "missing"),
    ];
    for body in cases {
        let resp = post_token(&api, &http, &body).await;
        assert!(resp.headers().get("x-subject-token").is_none());
        assert_keystone_error(resp, 401, "requires authentication").await;
    }
}

#[tokio::test]
async fn malformed_bodies_are_400_naming_the_field() {
    let (api, http) = cloud().await;
    let mut no_password = login("alice", PASSWORD, "demo");
    no_password["auth"]["identity"]["password"]["user"]
        .as_object_mut()
        .unwrap()
        .remove("password");
    assert_keystone_error(
        post_token(&api, &http, &no_password).await,
        400,
        "auth.identity.password.user.password",
    )
    .await;
    assert_keystone_error(
        post_token(&api, &http, &json!({"auth": {"identity": {}}})).await,
        400,
        "auth.identity.methods",
    )
    .await;
    let resp = http
        .post(format!("{}/identity/v3/auth/tokens", api.base_url))
        .header("content-type", "application/json")
        .body("{\"auth\":")
        .send()
        .await
        .unwrap();
    assert_keystone_error(resp, 400, "not JSON").await;
}

#[tokio::test]
async fn a_token_validates_until_revoked_then_is_404() {
    let (api, http) = cloud().await;
    let caller = issue(&api, &http).await;
    let subject = issue(&api, &http).await;
    assert_ne!(caller, subject);
    let url = format!("{}/identity/v3/auth/tokens", api.base_url);
    let get = |token: &str| {
        http.get(&url)
            .header("X-Auth-Token", &caller)
            .header("X-Subject-Token", token)
            .send()
    };

    let resp = get(&subject).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-subject-token"], subject.as_str());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token"]["user"]["name"], "alice");
    assert_eq!(body["token"]["project"]["name"], "demo");

    let head = http
        .head(&url)
        .header("X-Auth-Token", &caller)
        .header("X-Subject-Token", &subject)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);

    // Without the caller's own token: 401.
    let anonymous = reqwest::Client::new()
        .get(&url)
        .header("X-Subject-Token", &subject)
        .send()
        .await
        .unwrap();
    assert_keystone_error(anonymous, 401, "requires authentication").await;
    // Another user's (unscoped) token may not look at alice's: 403.
    let mut unscoped = login("bob", PASSWORD, "demo");
    unscoped["auth"].as_object_mut().unwrap().remove("scope");
    let resp = post_token(&api, &http, &unscoped).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let bob = resp.headers()["x-subject-token"]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = resp.json().await.unwrap();
    assert!(body["token"].get("project").is_none(), "{body}");
    let peek = http
        .get(&url)
        .header("X-Auth-Token", &bob)
        .header("X-Subject-Token", &subject)
        .send()
        .await
        .unwrap();
    assert_keystone_error(peek, 403, "own user").await;
    // A forged subject: 404.
    assert_keystone_error(
        get("not-a-token").await.unwrap(),
        404,
        "Could not find token",
    )
    .await;

    let deleted = http
        .delete(&url)
        .header("X-Auth-Token", &caller)
        .header("X-Subject-Token", &subject)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_keystone_error(get(&subject).await.unwrap(), 404, "revoked").await;
    let head = http
        .head(&url)
        .header("X-Auth-Token", &caller)
        .header("X-Subject-Token", &subject)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    // The caller's own, unrevoked token still works.
    assert_eq!(get(&caller).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn version_discovery_has_keystones_shapes() {
    let api = TestApi::start().await;
    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{}/identity", api.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::MULTIPLE_CHOICES);
    let body: Value = resp.json().await.unwrap();
    let values = body["versions"]["values"].as_array().unwrap();
    assert_eq!(values.len(), 1);
    assert_eq!(values[0]["id"], "v3.14");
    assert_eq!(values[0]["status"], "stable");

    let body: Value = http
        .get(format!("{}/identity/v3", api.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let v = &body["version"];
    assert_eq!(v["id"], "v3.14");
    assert_eq!(v["status"], "stable");
    assert_eq!(v["links"][0]["rel"], "self");
    let host = api.base_url.trim_start_matches("http://");
    assert_eq!(v["links"][0]["href"], format!("http://{host}/identity/v3/"));
    assert_eq!(
        v["media-types"][0]["type"],
        "application/vnd.openstack.identity-v3+json"
    );
}
