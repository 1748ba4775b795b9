//! Token key rotation on a running API (`api/src/identity/key_reload.rs`): the ring is
//! rotated on disk the way `cirrus admin rotate-keys` does it; the API re-reads its key
//! directory, seals new tokens with the new primary and keeps validating the tokens sealed
//! before, until their key leaves the ring.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cirrus_api::identity::Identity;
use cirrus_auth::{KeyRing, Role};
use cirrus_test_utils::{TestApi, client_with_token};
use serde_json::json;

/// The key id a token was sealed with (bytes 1..5 of the token, in the clear).
fn key_id(token: &str) -> u32 {
    let raw = URL_SAFE_NO_PAD.decode(token).expect("base64url");
    u32::from_be_bytes(raw[1..5].try_into().unwrap())
}

async fn login(api: &TestApi, user: &str) -> String {
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": format!("{user}-password")}}},
        "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}});
    let resp = reqwest::Client::new()
        .post(format!("{}/identity/v3/auth/tokens", api.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.headers()["x-subject-token"]
        .to_str()
        .unwrap()
        .to_string()
}

/// `GET /identity/v3/auth/tokens` of `subject` with `subject` itself as the caller.
async fn validates(api: &TestApi, subject: &str) -> bool {
    let resp = client_with_token(subject)
        .get(format!("{}/identity/v3/auth/tokens", api.base_url))
        .header("x-subject-token", subject)
        .send()
        .await
        .unwrap();
    resp.status() == 200
}

/// Waits (polling the shared ring) until the API's ring has `primary` as its primary key.
async fn wait_for_primary(api: &TestApi, primary: u32) {
    for _ in 0..3000 {
        if api.identity.keys.primary_id() == primary {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the API never reloaded its keys: primary {} (wanted {primary})",
        api.identity.keys.primary_id()
    );
}

#[tokio::test]
async fn a_rotation_on_disk_is_picked_up_and_old_tokens_stay_valid_until_their_key_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let ring = KeyRing::load_or_create(&keys).unwrap();
    let mut identity = Identity::new(ring).with_key_dir(&keys);
    identity.key_reload_interval = Duration::from_millis(20);
    let identity = Arc::new(identity);
    let api = TestApi::start_with(move |state| state.identity = identity).await;
    api.user_token("alice", "demo", Role::Member).await;

    let before = login(&api, "alice").await;
    assert_eq!(key_id(&before), 0);
    assert!(validates(&api, &before).await);

    let rotated = KeyRing::rotate_in(&keys, 3).unwrap();
    assert_eq!(rotated.key_ids(), [0, 1]);
    wait_for_primary(&api, 1).await;

    let after = login(&api, "alice").await;
    assert_eq!(
        key_id(&after),
        1,
        "new tokens are sealed with the new primary"
    );
    assert!(validates(&api, &after).await);
    assert!(
        validates(&api, &before).await,
        "a token issued before the rotation still validates"
    );
    let servers = client_with_token(&before)
        .get(format!(
            "{}/apis/cirrus.dev/v1/projects/demo/servers",
            api.base_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(servers.status(), 200, "and still opens the API");

    // Two more rotations keeping three keys: key 0 leaves the ring, its tokens die.
    KeyRing::rotate_in(&keys, 3).unwrap();
    KeyRing::rotate_in(&keys, 3).unwrap();
    wait_for_primary(&api, 3).await;
    assert_eq!(api.identity.keys.key_ids(), [1, 2, 3]);
    assert!(!validates(&api, &before).await, "key 0 was dropped");
    assert!(validates(&api, &after).await, "key 1 is still in the ring");
    println!(
        "key ring after three rotations: {:?}; token of key 0 refused, of key 1 valid",
        api.identity.keys.key_ids()
    );
}
