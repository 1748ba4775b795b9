//! Login throttling through the real HTTP surface (`api/src/identity/throttle.rs`): a flood
//! of bad logins is refused cheaply (`429`, lockout `401`) and costs a bounded number of
//! argon2 runs, while a valid user logs in during the flood; a locked user logs in again
//! once the lockout has passed (the throttle's clock is moved forward, no sleeping).
//!
//! Clients come from different loopback addresses (127.0.0.1, .2, .3, .4: all of
//! 127.0.0.0/8 is loopback on Linux), so the per-address limits apply as they would to
//! different hosts.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cirrus_api::identity::throttle::{BucketLimits, LoginLimits, LoginThrottle};
use cirrus_auth::Role;
use cirrus_test_utils::TestApi;
use serde_json::{Value, json};

const LOCKOUT: Duration = Duration::from_secs(900);
const ADDRESS_BURST: u32 = 12;
const FLOOD_TASKS: usize = 24;
const MIN_ATTEMPTS_PER_TASK: usize = 8;

fn limits() -> LoginLimits {
    LoginLimits {
        max_concurrent_hashes: 2,
        // A bound on how long a login may queue for a permit, generous for a loaded CI
        // machine: the valid login below must not be turned away for want of one.
        hash_wait: Duration::from_secs(600),
        per_address: BucketLimits {
            burst: ADDRESS_BURST,
            per_second: 0.0001,
        },
        per_user: BucketLimits {
            burst: 1000,
            per_second: 1.0,
        },
        lockout_failure_attempts: 3,
        lockout_duration: LOCKOUT,
        max_tracked: 1000,
        trust_forwarded_for: false,
    }
}

fn client_from(last_octet: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)))
        .build()
        .expect("an HTTP client")
}

fn body(user: &str, password: &str) -> Value {
    json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}})
}

/// One login: the status, the `Retry-After` header and the body.
async fn login(
    http: &reqwest::Client,
    api: &str,
    user: &str,
    password: &str,
) -> (u16, Option<String>, Value) {
    let resp = http
        .post(format!("{api}/identity/v3/auth/tokens"))
        .json(&body(user, password))
        .send()
        .await
        .expect("the API answers");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, retry_after, body)
}

/// A refusal's `Retry-After` and body.
type Answer = (Option<String>, Value);

fn is_lockout(status: u16, body: &Value) -> bool {
    status == 401
        && body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("temporarily locked"))
}

async fn start(throttle: &Arc<LoginThrottle>) -> TestApi {
    let throttle = throttle.clone();
    let api = TestApi::start_with(move |state| state.login = throttle).await;
    api.user_token("target", "demo", Role::Member).await;
    api.user_token("alice", "demo", Role::Member).await;
    api.user_token("bob", "demo", Role::Member).await;
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_bad_logins_is_refused_cheaply_while_a_valid_user_logs_in() {
    let throttle = Arc::new(LoginThrottle::new(limits()));
    let api = start(&throttle).await;
    let base = api.base_url.clone();

    // The flood: half the tasks guess target's password from 127.0.0.1, half spray
    // made-up names from 127.0.0.3; each keeps going until alice has logged in.
    let statuses: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let sample_429: Arc<Mutex<Option<Answer>>> = Arc::default();
    let alice_done = Arc::new(AtomicBool::new(false));
    let first_refusal = Arc::new(tokio::sync::Notify::new());
    let mut flood = Vec::new();
    for task in 0..FLOOD_TASKS {
        let (statuses, sample_429, alice_done, first_refusal, base) = (
            statuses.clone(),
            sample_429.clone(),
            alice_done.clone(),
            first_refusal.clone(),
            base.clone(),
        );
        flood.push(tokio::spawn(async move {
            let guessing = task % 2 == 0;
            let http = client_from(if guessing { 1 } else { 3 });
            let mut attempt = 0;
            while attempt < MIN_ATTEMPTS_PER_TASK || !alice_done.load(Ordering::SeqCst) {
                let user = if guessing {
                    "target".to_string()
                } else {
                    format!("spray-{task}-{attempt}")
                };
                let (status, retry_after, body) =
                    login(&http, &base, &user, &format!("guess-{attempt}")).await;
                let kind = match status {
                    401 if is_lockout(status, &body) => "401 locked".to_string(),
                    other => other.to_string(),
                };
                if status == 429 {
                    sample_429
                        .lock()
                        .unwrap()
                        .get_or_insert((retry_after, body));
                    first_refusal.notify_one();
                }
                *statuses.lock().unwrap().entry(kind).or_default() += 1;
                attempt += 1;
            }
        }));
    }

    // During the flood (its tasks run until this login is done): alice, from her own
    // address, logs in.
    first_refusal.notified().await;
    let (alice_status, _, alice_body) =
        login(&client_from(2), &base, "alice", "alice-password").await;
    alice_done.store(true, Ordering::SeqCst);
    for task in flood {
        task.await.unwrap();
    }
    let statuses = statuses.lock().unwrap().clone();
    let stats = throttle.stats();
    let attempts: usize = statuses.values().sum();
    println!("flood answers: {statuses:?} ({attempts} attempts); alice: {alice_status}");
    println!("throttle: {stats:?}");

    assert_eq!(
        alice_status, 201,
        "alice logs in during the flood: {alice_body}"
    );
    assert!(
        statuses
            .keys()
            .all(|k| ["401", "401 locked", "429"].contains(&k.as_str())),
        "the flood only gets 401s and 429s: {statuses:?}"
    );
    assert!(
        statuses.get("429").copied().unwrap_or(0) > 0,
        "{statuses:?}"
    );
    let budget = u64::from(2 * ADDRESS_BURST) + 1;
    assert!(
        stats.hashes <= budget,
        "at most a burst of argon2 runs per flooding address (+ alice's): {} > {budget}",
        stats.hashes
    );
    assert!(stats.lockouts >= 1, "target got locked: {stats:?}");

    // A 429 is a Keystone error with a Retry-After.
    let (retry_after, error) = sample_429.lock().unwrap().clone().unwrap();
    assert_eq!(error["error"]["code"], 429, "{error}");
    assert_eq!(error["error"]["title"], "Too Many Requests", "{error}");
    let retry_after: u64 = retry_after.expect("a Retry-After").parse().unwrap();
    assert!(retry_after >= 1);

    // target is locked: even its right password, from a fresh address, is refused (and no
    // argon2 runs for it).
    let fresh = client_from(4);
    let hashes = throttle.stats().hashes;
    let (status, _, error) = login(&fresh, &base, "target", "target-password").await;
    assert!(is_lockout(status, &error), "{status} {error}");
    assert_eq!(
        throttle.stats().hashes,
        hashes,
        "no argon2 run for a locked user"
    );

    // Once the lockout duration has passed, target logs in again.
    throttle.advance(LOCKOUT);
    let (status, _, token) = login(&fresh, &base, "target", "target-password").await;
    assert_eq!(status, 201, "target logs in after the lockout: {token}");
    println!(
        "after the lockout: target logged in; throttle {:?}",
        throttle.stats()
    );
}

#[tokio::test]
async fn a_successful_login_resets_the_failure_count() {
    let mut limits = limits();
    limits.per_address.burst = 100;
    let throttle = Arc::new(LoginThrottle::new(limits));
    let api = start(&throttle).await;
    let http = client_from(1);
    let base = &api.base_url;
    for round in 0..2 {
        for _ in 0..2 {
            let (status, _, error) = login(&http, base, "bob", "wrong").await;
            assert_eq!(status, 401, "{error}");
            assert!(!is_lockout(status, &error), "round {round}: {error}");
        }
        let (status, _, token) = login(&http, base, "bob", "bob-password").await;
        assert_eq!(status, 201, "round {round}: {token}");
    }
    // Three in a row lock the name, whether or not such a user exists.
    for user in ["bob", "no-such-user"] {
        for _ in 0..3 {
            login(&http, base, user, "wrong").await;
        }
        let (status, _, error) = login(&http, base, user, "wrong").await;
        assert!(is_lockout(status, &error), "{user}: {status} {error}");
    }
    let stats = throttle.stats();
    println!("throttle: {stats:?}");
    assert_eq!(stats.lockouts, 2, "{stats:?}");
}

#[tokio::test]
async fn a_lockout_holds_whether_the_user_logs_in_by_name_or_by_id() {
    let throttle = Arc::new(LoginThrottle::new(limits()));
    let api = start(&throttle).await;
    let base = api.base_url.clone();
    let made: Value = api
        .client()
        .post(format!("{base}/identity/v3/users"))
        .json(&json!({"user": {"name": "Dana Scully", "password": "right-pw"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = made["user"]["id"].as_str().expect("a user id").to_string();
    let http = client_from(4);
    for attempt in 0..3 {
        let (status, _, _) = login(&http, &base, "Dana Scully", &format!("wrong-{attempt}")).await;
        assert_eq!(status, 401);
    }
    // The right password, by id: still locked, the failures were the user's.
    let by_id = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "id": id, "password": "right-pw"}}}}});
    let by_id_login = || async {
        let resp = http
            .post(format!("{base}/identity/v3/auth/tokens"))
            .json(&by_id)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (status, body) = by_id_login().await;
    assert!(is_lockout(status, &body), "{status} {body}");
    throttle.advance(LOCKOUT + Duration::from_secs(1));
    assert_eq!(by_id_login().await.0, 201);
}
