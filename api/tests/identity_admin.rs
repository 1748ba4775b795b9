//! Keystone v3 resources (projects, users, roles, assignments, catalog), revocations that
//! outlive the process, and quotas counted at admission.
//!
//! Why this file is long: one walk through Keystone's admin resources against one in-memory
//! cloud; each test is a user's whole workflow (create, assign, revoke, restart), and
//! splitting them would copy the fixture.

use std::sync::Arc;
use std::time::Duration;

use cirrus_api::identity::Identity;
use cirrus_auth::Role;
use cirrus_test_utils::{TestApi, client_with_token};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.unwrap();
    let code = resp.status();
    (code, resp.json().await.unwrap_or(Value::Null))
}

fn login(user: &str, password: &str, project: &str) -> Value {
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}},
    }})
}

async fn token_of(
    api: &TestApi,
    user: &str,
    password: &str,
    project: &str,
) -> (StatusCode, Option<String>, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/identity/v3/auth/tokens", api.base_url))
        .json(&login(user, password, project))
        .send()
        .await
        .unwrap();
    let code = resp.status();
    let token = resp
        .headers()
        .get("x-subject-token")
        .map(|t| t.to_str().unwrap().to_string());
    (code, token, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn admins_manage_projects_users_and_role_assignments_like_keystone() {
    let api = TestApi::start().await;
    let admin = api.client();
    let v3 = format!("{}/identity/v3", api.base_url);

    // Keystone's names: free text, a generated id, unique.
    let (code, body) = send(admin.post(format!("{v3}/projects")).json(
        &json!({"project": {"name": "Demo Team", "description": "d", "domain_id": "default"}}),
    ))
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let demo = body["project"]["id"].as_str().unwrap().to_string();
    assert_eq!(demo.len(), 32, "{body}");
    assert_eq!(body["project"]["name"], "Demo Team");
    assert_eq!(body["project"]["domain_id"], "default");
    let (code, body) = send(
        admin
            .post(format!("{v3}/projects"))
            .json(&json!({"project": {"name": "Demo Team"}})),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    for bad in ["", "   ", "a\u{7}b"] {
        let (code, body) = send(
            admin
                .post(format!("{v3}/projects"))
                .json(&json!({"project": {"name": bad}})),
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("project.name"),
            "{body}"
        );
    }

    let alice_name = "Alice.Smith@example.com";
    let (code, body) = send(admin.post(format!("{v3}/users")).json(
        &json!({"user": {"name": alice_name, "password": "pw-a", "default_project_id": demo}}),
    ))
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert!(body["user"].get("password").is_none());
    assert_eq!(body["user"]["default_project_id"], demo.as_str());
    assert_eq!(body["user"]["name"], alice_name);
    let alice_id = body["user"]["id"].as_str().unwrap().to_string();
    assert_ne!(alice_id, alice_name);
    let (code, _) = send(
        admin
            .post(format!("{v3}/users"))
            .json(&json!({"user": {"name": alice_name, "password": "x"}})),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    // Found by name, as clients look names up.
    let (_, body) = send(admin.get(format!("{v3}/users?name=Alice.Smith%40example.com"))).await;
    assert_eq!(body["users"][0]["id"], alice_id.as_str(), "{body}");
    let (_, body) = send(admin.get(format!("{v3}/projects?name=Demo%20Team"))).await;
    assert_eq!(body["projects"][0]["id"], demo.as_str(), "{body}");

    // No role yet: a scoped login is refused.
    assert_eq!(
        token_of(&api, alice_name, "pw-a", "Demo Team").await.0,
        StatusCode::UNAUTHORIZED
    );
    let grant = format!("{v3}/projects/{demo}/users/{alice_id}/roles/member");
    assert_eq!(
        admin.put(&grant).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        admin.put(&grant).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        admin.head(&grant).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let (code, alice_token, body) = token_of(&api, alice_name, "pw-a", "Demo Team").await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    // The token carries ids and shows the names.
    assert_eq!(body["token"]["user"]["id"], alice_id.as_str());
    assert_eq!(body["token"]["user"]["name"], alice_name);
    assert_eq!(body["token"]["project"]["id"], demo.as_str());
    assert_eq!(body["token"]["project"]["name"], "Demo Team");
    let roles: Vec<&str> = body["token"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["reader", "member"]);
    // The token carries the catalog with the project's id in Cinder's URL.
    let catalog = body["token"]["catalog"].as_array().unwrap();
    let volume = catalog
        .iter()
        .find(|s| s["type"] == "block-storage")
        .unwrap();
    assert!(
        volume["endpoints"][0]["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/volume/v3/{demo}"))
    );

    let (code, body) = send(admin.get(format!(
        "{v3}/role_assignments?scope.project.id={demo}&include_names=1"
    )))
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        body["role_assignments"].as_array().unwrap().len(),
        1,
        "{body}"
    );
    let assignment = &body["role_assignments"][0];
    assert_eq!(assignment["role"]["id"], "member");
    assert_eq!(assignment["user"]["name"], alice_name, "{body}");
    assert_eq!(assignment["scope"]["project"]["name"], "Demo Team");
    let (_, body) = send(admin.get(format!("{v3}/role_assignments?scope.project.id={demo}"))).await;
    assert!(body["role_assignments"][0]["user"].get("name").is_none());

    // Alice sees herself and her project, nothing else, and cannot administer: listing all
    // projects and reading another one are Keystone's 403 (whether or not it exists).
    let alice = client_with_token(alice_token.as_deref().unwrap());
    assert_eq!(
        send(alice.get(format!("{v3}/projects"))).await.0,
        StatusCode::FORBIDDEN
    );
    for other in ["admin", "no-such-project"] {
        assert_eq!(
            send(alice.get(format!("{v3}/projects/{other}"))).await.0,
            StatusCode::FORBIDDEN,
            "{other}"
        );
    }
    assert_eq!(
        send(alice.get(format!("{v3}/projects/{demo}"))).await.0,
        StatusCode::OK
    );
    let (_, body) = send(alice.get(format!("{v3}/auth/projects"))).await;
    let ids: Vec<&str> = body["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [demo.as_str()]);
    assert_eq!(
        send(alice.get(format!("{v3}/users/admin"))).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(alice.get(format!("{v3}/users/{alice_id}"))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(
            alice
                .post(format!("{v3}/projects"))
                .json(&json!({"project": {"name": "x"}}))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (code, body) = send(alice.get(format!("{v3}/auth/catalog"))).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["catalog"].as_array().unwrap().len(), 6);

    // Renames keep the ids: the token stays good, the login takes the new names.
    let (code, body) = send(
        admin
            .patch(format!("{v3}/projects/{demo}"))
            .json(&json!({"project": {"name": "Marketing"}})),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["project"]["id"], demo.as_str());
    assert_eq!(body["project"]["name"], "Marketing");
    let (code, _) = send(
        admin
            .patch(format!("{v3}/users/{alice_id}"))
            .json(&json!({"user": {"name": "alice"}})),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        send(alice.get(format!("{v3}/users/{alice_id}"))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        token_of(&api, alice_name, "pw-a", "Marketing").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (code, _, body) = token_of(&api, "alice", "pw-a", "Marketing").await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(body["token"]["project"]["id"], demo.as_str());
    // A rename onto a taken name is refused, and so is a native object taking it.
    let (code, body) = send(
        admin
            .patch(format!("{v3}/projects/{demo}"))
            .json(&json!({"project": {"name": "admin"}})),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    let resp = admin
        .post(format!("{}/apis/cirrus.dev/v1/projects", api.base_url))
        .json(&json!({"metadata": {"name": "marketing-copy"}, "spec": {"name": "Marketing"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("spec.name"),
        "{body}"
    );

    // Revoking the role cuts alice's existing token off at once.
    assert_eq!(
        admin.delete(&grant).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(alice.get(format!("{v3}/users/{alice_id}"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        token_of(&api, "alice", "pw-a", "Marketing").await.0,
        StatusCode::UNAUTHORIZED
    );

    // Disabling and deleting.
    admin.put(&grant).send().await.unwrap();
    let (_, new_token, _) = token_of(&api, "alice", "pw-a", "Marketing").await;
    let alice = client_with_token(new_token.as_deref().unwrap());
    assert_eq!(
        send(alice.get(format!("{v3}/users/{alice_id}"))).await.0,
        StatusCode::OK
    );
    let (code, _) = send(
        admin
            .patch(format!("{v3}/users/{alice_id}"))
            .json(&json!({"user": {"enabled": false}})),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        send(alice.get(format!("{v3}/users/{alice_id}"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        token_of(&api, "alice", "pw-a", "Marketing").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        admin
            .delete(format!("{v3}/users/{alice_id}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    let (_, body) = send(admin.get(format!("{v3}/role_assignments?user.id={alice_id}"))).await;
    assert_eq!(body["role_assignments"].as_array().unwrap().len(), 0);
    assert_eq!(
        admin
            .delete(format!("{v3}/projects/{demo}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(admin.get(format!("{v3}/projects/{demo}"))).await.0,
        StatusCode::NOT_FOUND
    );
}

/// What a store written before generated ids holds: projects and users named by their ids,
/// with no `spec.name` (the documents as that release stored them, written raw).
#[tokio::test]
async fn identities_stored_by_the_previous_release_keep_working() {
    let api = TestApi::start().await;
    let hash = cirrus_auth::hash_password("old-pw").unwrap();
    let old = [
        (
            "projects",
            json!({"apiVersion": "cirrus.dev/v1", "kind": "Project",
                   "metadata": {"name": "legacy"},
                   "spec": {"enabled": true, "domain": "default"}}),
        ),
        (
            "users",
            json!({"apiVersion": "cirrus.dev/v1", "kind": "User",
                   "metadata": {"name": "carol"},
                   "spec": {"enabled": true, "defaultProject": "legacy", "passwordHash": hash}}),
        ),
        (
            "rolebindings",
            json!({"apiVersion": "cirrus.dev/v1", "kind": "RoleBinding",
                   "metadata": {"name": "member-5-carol.legacy"},
                   "spec": {"user": "carol", "project": "legacy", "role": "member"}}),
        ),
    ];
    for (plural, doc) in old {
        let kind = cirrus_crds::kind_by_plural(plural).unwrap();
        api.store.create(kind, None, doc, false).await.unwrap();
    }
    let v3 = format!("{}/identity/v3", api.base_url);
    // Logins by name and by id, as before.
    let (code, token, body) = token_of(&api, "carol", "old-pw", "legacy").await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(body["token"]["user"]["id"], "carol");
    assert_eq!(body["token"]["user"]["name"], "carol");
    assert_eq!(body["token"]["project"]["id"], "legacy");
    assert_eq!(body["token"]["project"]["name"], "legacy");
    let by_id = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"id": "carol", "password": "old-pw"}}},
        "scope": {"project": {"id": "legacy"}},
    }});
    let resp = reqwest::Client::new()
        .post(format!("{v3}/auth/tokens"))
        .json(&by_id)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // Keystone shows them with their ids as names; the project's objects stay reachable.
    let admin = api.client();
    let (_, body) = send(admin.get(format!("{v3}/projects/legacy"))).await;
    assert_eq!(body["project"]["name"], "legacy", "{body}");
    let (_, body) = send(admin.get(format!("{v3}/users?name=carol"))).await;
    assert_eq!(body["users"][0]["id"], "carol", "{body}");
    let carol = client_with_token(token.as_deref().unwrap());
    let servers = format!(
        "{}/apis/cirrus.dev/v1/projects/legacy/servers",
        api.base_url
    );
    assert_eq!(
        carol.get(&servers).send().await.unwrap().status(),
        StatusCode::OK
    );
    // A rename gives the old project a Keystone name; its id and its token stay.
    let (code, body) = send(
        admin
            .patch(format!("{v3}/projects/legacy"))
            .json(&json!({"project": {"name": "Legacy Team"}})),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["project"]["id"], "legacy");
    assert_eq!(
        carol.get(&servers).send().await.unwrap().status(),
        StatusCode::OK
    );
    let (code, _, body) = token_of(&api, "carol", "old-pw", "Legacy Team").await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(body["token"]["project"]["id"], "legacy");
}

#[tokio::test]
async fn a_revoked_token_stays_revoked_for_another_api_process_with_the_same_keys() {
    let api = TestApi::start().await;
    let token = api.user_token("alice", "demo", Role::Member).await;
    let url = format!("{}/identity/v3/auth/tokens", api.base_url);
    let resp = api
        .client()
        .delete(&url)
        .header("x-subject-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    // Refused at once here.
    let alice = client_with_token(&token);
    let flavors = format!("{}/apis/cirrus.dev/v1/flavors", api.base_url);
    assert_eq!(
        alice.get(&flavors).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // A fresh process with the same keys (a restart, another replica) learns it from the store.
    let restarted = Arc::new(Identity::new(api.identity.keys.clone()));
    let payload = cirrus_auth::token::open(&restarted.keys, &token).unwrap();
    let sync = tokio::spawn(cirrus_api::identity::revocations::sync(
        api.store.clone(),
        restarted.clone(),
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let revoked = restarted.revoked.read().unwrap().is_revoked(
            &payload.audit_id,
            &payload.user_uid,
            payload.issued_at,
        );
        if revoked {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the revocation never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sync.abort();
}

#[tokio::test]
async fn quotas_refuse_what_would_exceed_them_and_leave_nothing_behind() {
    let api = TestApi::start().await;
    let admin = api.client();
    let v1 = format!("{}/apis/cirrus.dev/v1", api.base_url);
    let (code, body) =
        send(admin.post(format!("{v1}/flavors")).json(
            &json!({"metadata": {"name": "m1"}, "spec": {"vcpus": 2, "ram": 512, "disk": 1}}),
        ))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let (code, body) = send(admin.post(format!("{v1}/projects")).json(
        &json!({"metadata": {"name": "small"}, "spec": {"quota": {"instances": 5, "cores": 3}}}),
    ))
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let (code, body) = send(
        admin
            .post(format!("{v1}/projects"))
            .json(&json!({"metadata": {"name": "typo"}, "spec": {"quota": {"instancez": 5}}})),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("spec.quota.instancez"), "{body}");
    let server = |name: &str| json!({"metadata": {"name": name}, "spec": {"flavor": "m1", "image": "guest"}});
    let (code, body) = send(
        admin
            .post(format!("{v1}/projects/small/servers"))
            .json(&server("a")),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    // 2 + 2 cores > 3.
    let (code, body) = send(
        admin
            .post(format!("{v1}/projects/small/servers"))
            .json(&server("b")),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "QuotaExceeded");
    assert!(
        body["message"].as_str().unwrap().contains("cores"),
        "{body}"
    );
    let (_, list) = send(admin.get(format!("{v1}/projects/small/servers"))).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // Usage and limits as the APIs report them.
    let usage = cirrus_api::quota::usage(&api.store, "small").await.unwrap();
    assert_eq!(usage["instances"], 1);
    assert_eq!(usage["cores"], 2);
    assert_eq!(usage["ram"], 512);
    let limits = cirrus_api::quota::limits(&api.store, "small")
        .await
        .unwrap();
    assert_eq!(limits["cores"], 3);
    assert_eq!(limits["volumes"], 10);
}

#[tokio::test]
async fn a_token_is_rejected_once_it_expires() {
    let api = TestApi::start_with(|state| {
        let mut identity = Identity::new(state.identity.keys.clone());
        identity.token_ttl = chrono::Duration::seconds(1);
        state.identity = Arc::new(identity);
    })
    .await;
    let (code, token, body) =
        token_of(&api, "admin", cirrus_test_utils::ADMIN_PASSWORD, "admin").await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let client = client_with_token(token.as_deref().unwrap());
    let flavors = format!("{}/apis/cirrus.dev/v1/flavors", api.base_url);
    assert_eq!(
        client.get(&flavors).send().await.unwrap().status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (code, body) = send(client.get(&flavors)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{body}");
    // Keystone's own validation says it is gone too.
    let (_, fresh, _) = token_of(&api, "admin", cirrus_test_utils::ADMIN_PASSWORD, "admin").await;
    let resp = client_with_token(fresh.as_deref().unwrap())
        .get(format!("{}/identity/v3/auth/tokens", api.base_url))
        .header("x-subject-token", token.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn disabling_or_deleting_a_project_cuts_its_tokens_off_at_once() {
    let api = TestApi::start().await;
    let admin = api.client();
    let flavors = format!("{}/apis/cirrus.dev/v1/flavors", api.base_url);
    // Disabled through Keystone: the member's token stops working, other projects' don't.
    let alice = client_with_token(&api.user_token("alice", "demo", Role::Member).await);
    let bob = client_with_token(&api.user_token("bob", "other", Role::Member).await);
    assert_eq!(
        alice.get(&flavors).send().await.unwrap().status(),
        StatusCode::OK
    );
    let (code, body) = send(
        admin
            .patch(format!("{}/identity/v3/projects/demo", api.base_url))
            .json(&json!({"project": {"enabled": false}})),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        alice.get(&flavors).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        bob.get(&flavors).send().await.unwrap().status(),
        StatusCode::OK
    );
    // No new token for a disabled project.
    assert_eq!(
        token_of(&api, "alice", "alice-password", "demo").await.0,
        StatusCode::UNAUTHORIZED
    );
    // Re-enabled: a fresh login works at once (it waits out the cut-off's second).
    let (code, _) = send(
        admin
            .patch(format!("{}/identity/v3/projects/demo", api.base_url))
            .json(&json!({"project": {"enabled": true}})),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, token, _) = token_of(&api, "alice", "alice-password", "demo").await;
    assert_eq!(code, StatusCode::CREATED);
    let alice = client_with_token(token.as_deref().unwrap());
    assert_eq!(
        alice.get(&flavors).send().await.unwrap().status(),
        StatusCode::OK
    );

    // Disabled through the native API (a merge patch of the Project): same effect.
    let resp = admin
        .patch(format!(
            "{}/apis/cirrus.dev/v1/projects/other",
            api.base_url
        ))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"spec": {"enabled": false}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        bob.get(&flavors).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // Deleted through the native API: its tokens die with it.
    assert_eq!(
        admin
            .delete(format!("{}/apis/cirrus.dev/v1/projects/demo", api.base_url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        alice.get(&flavors).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // The admin's own token is untouched.
    assert_eq!(
        admin.get(&flavors).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_user_changes_its_own_password_proving_the_old_one() {
    let api = TestApi::start().await;
    let v3 = format!("{}/identity/v3", api.base_url);
    let token = api.user_token("erin", "demo", Role::Member).await;
    let erin = client_with_token(&token);
    let change = |original: &str, new: &str| json!({"user": {"original_password": original, "password": new}});
    // Another user's password is not its to change; a wrong original is refused.
    let (code, _) = send(
        erin.post(format!("{v3}/users/admin/password"))
            .json(&change("x", "y")),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, body) = send(
        erin.post(format!("{v3}/users/erin/password"))
            .json(&change("not-it", "new-pw")),
    )
    .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{body}");
    let (code, body) = send(
        erin.post(format!("{v3}/users/erin/password"))
            .json(&json!({"user": {"password": "new-pw"}})),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("original_password")
    );
    // The right one: 204, the old token ends, the new password logs in.
    let (code, body) = send(
        erin.post(format!("{v3}/users/erin/password"))
            .json(&change("erin-password", "new-pw")),
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        send(erin.get(format!("{v3}/users/erin"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        token_of(&api, "erin", "erin-password", "demo").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        token_of(&api, "erin", "new-pw", "demo").await.0,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn the_admin_role_is_cloud_wide_and_project_admins_of_the_previous_release_become_members() {
    let api = TestApi::start().await;
    let v1 = format!("{}/apis/cirrus.dev/v1", api.base_url);
    let flavor = json!({"metadata": {"name": "m9"}, "spec": {"vcpus": 1, "ram": 64, "disk": 1}});
    // As OpenStack's policy has it, `admin` in any project is a cloud admin.
    let tempest_admin = client_with_token(&api.user_token("t-admin", "p7", Role::Admin).await);
    let resp = tempest_admin
        .post(format!("{v1}/flavors"))
        .json(&flavor)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let member = client_with_token(&api.user_token("t-member", "p7", Role::Member).await);
    let resp = member
        .get(format!("{v1}/projects/other/servers"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // A store of the previous release: dave's `admin` in project `legacy` meant no more than
    // `member` there. Upgrading must not make him a cloud admin, not even through a token he
    // already holds.
    let old_token = api.user_token("dave", "legacy", Role::Admin).await;
    let changed =
        cirrus_api::identity::bootstrap::migrate_project_admins(&api.store, &api.identity)
            .await
            .unwrap();
    // t-admin's binding (made by this release's harness) is one too: the store was never
    // marked, so it is taken for a previous release's.
    assert_eq!(changed, 2);
    let resp = client_with_token(&old_token)
        .get(format!("{v1}/projects/legacy/servers"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "the old token is revoked"
    );
    let bindings = api
        .store
        .list(
            cirrus_crds::kind_by_plural("rolebindings").unwrap(),
            None,
            &Default::default(),
        )
        .await
        .unwrap()
        .items;
    let daves: Vec<&Value> = bindings
        .iter()
        .filter(|b| b["spec"]["user"] == "dave")
        .collect();
    assert_eq!(daves.len(), 1, "{daves:?}");
    assert_eq!(daves[0]["spec"]["role"], "member");
    let (code, token, body) = token_of(&api, "dave", "dave-password", "legacy").await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let roles: Vec<&str> = body["token"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(!roles.contains(&"admin"), "{roles:?}");
    let resp = client_with_token(token.as_deref().unwrap())
        .post(format!("{v1}/flavors"))
        .json(&flavor)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // Once marked, later grants of `admin` stay what they are.
    let admin_project = api
        .store
        .get(
            cirrus_crds::kind_by_plural("projects").unwrap(),
            None,
            "admin",
        )
        .await
        .unwrap();
    assert_eq!(
        admin_project["metadata"]["annotations"]
            [cirrus_api::identity::bootstrap::ADMIN_ROLE_MIGRATED],
        "true"
    );
    let grant = format!(
        "{}/identity/v3/projects/legacy/users/dave/roles/admin",
        api.base_url
    );
    let resp = api.client().put(&grant).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let again = cirrus_api::identity::bootstrap::migrate_project_admins(&api.store, &api.identity)
        .await
        .unwrap();
    assert_eq!(again, 0);
    let (_, _, body) = token_of(&api, "dave", "dave-password", "legacy").await;
    assert!(
        body["token"]["roles"].to_string().contains("\"admin\""),
        "{body}"
    );
}

#[tokio::test]
async fn an_unknown_domain_is_not_found_as_in_keystone() {
    let api = TestApi::start().await;
    let v3 = format!("{}/identity/v3", api.base_url);
    for (path, body) in [
        (
            "users",
            json!({"user": {"name": "u1", "domain_id": "17763db3662640969d9c86e00e9c5a7d"}}),
        ),
        (
            "projects",
            json!({"project": {"name": "p1", "domain_id": "nope"}}),
        ),
    ] {
        let (code, body) = send(api.client().post(format!("{v3}/{path}")).json(&body)).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
        assert!(body.to_string().contains("Could not find domain"), "{body}");
    }
    let (code, body) = send(api.client().get(format!("{v3}/users?name=u1"))).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        body["users"].as_array().unwrap().len(),
        0,
        "nothing was made"
    );
}
