//! Property-based fuzz of the OpenStack APIs' request bodies and query strings, against the
//! whole API on an in-memory store (`TestApi`), as the cloud admin and as a member of a
//! project.
//!
//! Bodies are random JSON (objects, wrong types, huge and unicode strings, nulls, nested
//! junk), raw non-JSON bytes, and mutations of valid bodies (a field replaced, removed,
//! stringified, wrapped; a junk field added) for every create and update route; query
//! strings are random `key=value` pairs for the list routes (paging, sorting, filters with
//! junk values, repeated keys, odd percent-encoding). Every case must hold:
//! - **no 5xx** and **no panic**: an answer below 500 arrives (a panicking handler drops its
//!   connection), and the server still answers `/healthz` afterwards;
//! - **nothing half-written**: when the request is refused (4xx) the store's key space is
//!   the same after it as before (read at both revisions through the store's etcd client):
//!   no new object of any kind, none changed or removed.
//!
//! The run is bounded ([`CASES`] per route and caller) and reproducible: the seed is printed
//! and can be set with `CIRRUS_FUZZ_SEED` (and the case count with `CIRRUS_FUZZ_CASES`). It
//! prints the answers per route; every failure is listed with the request that caused it.
//! Known bugs found this way have regression rows in [`regressions`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use cirrus_auth::Role;
use cirrus_store::objects::Part;
use cirrus_test_utils::TestApi;
use etcd_client::GetOptions;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};

/// Cases per route and caller, so 64 per route (override: `CIRRUS_FUZZ_CASES`).
const CASES: u32 = 32;

/// The seed when `CIRRUS_FUZZ_SEED` is unset.
const DEFAULT_SEED: u64 = 0x00c1_7705_f022;

/// The member's project.
const PROJECT: &str = "fuzz";

/// An Ed25519 public key in OpenSSH form (imported as key pair `k1`).
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPwqlqFRmCfm8TCkhqz8CZLW8ri/uWvVgkg7nO5AHcw3 k1";

/// Glance's JSON-patch media type.
const PATCH: &str = "application/openstack-images-v2.1-json-patch";

/// What a route is fuzzed with.
#[derive(Clone, Debug)]
enum Shape {
    /// A JSON body: random, raw junk, or one of these valid bodies mutated.
    Body(Vec<Value>),
    /// A random query string (list routes).
    Query,
    /// A junk path segment in place of `{}` (show routes).
    PathSegment,
}

/// One route under fuzz.
#[derive(Clone, Debug)]
struct Route {
    method: Method,
    /// Concrete path (ids of the seeded objects filled in); `{}` marks a fuzzed segment.
    path: String,
    content_type: &'static str,
    shape: Shape,
}

impl Route {
    fn body(method: Method, path: String, valid: Vec<Value>) -> Self {
        Self {
            method,
            path,
            content_type: "application/json",
            shape: Shape::Body(valid),
        }
    }

    fn query(path: String) -> Self {
        Self {
            method: Method::GET,
            path,
            content_type: "application/json",
            shape: Shape::Query,
        }
    }

    fn segment(path: String) -> Self {
        Self {
            method: Method::GET,
            path,
            content_type: "application/json",
            shape: Shape::PathSegment,
        }
    }

    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A generated request body.
#[derive(Clone, Debug)]
enum Body {
    Json(Value),
    Raw(Vec<u8>),
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Json(v) => serde_json::to_vec(v).expect("JSON serializes"),
            Body::Raw(b) => b.clone(),
        }
    }
}

/// One generated request: a body, a query string or a path segment.
#[derive(Clone, Debug)]
enum Input {
    Body(Body),
    Query(String),
    Segment(String),
}

/// One edit of a valid body, applied at the path `at` selects.
#[derive(Clone, Debug)]
enum Edit {
    /// A leaf (number, string, boolean, null) replaced by junk of its own type when it is a
    /// number (`number`) or a string (`string`), else by `other`: the body keeps its shape,
    /// so the junk reaches the checks behind the parsing.
    Leaf {
        number: Value,
        string: String,
        other: Value,
    },
    Replace(Value),
    Remove,
    Insert(String, Value),
    Wrap,
    Stringify,
}

mod cloud;
mod generators;
mod regressions;

use cloud::*;
use generators::*;

// ---------------------------------------------------------------------------------------
// Running cases.

/// Answers per route and caller: status code → count.
type Stats = BTreeMap<(String, &'static str), BTreeMap<u16, usize>>;

/// One broken property, with the request that broke it.
#[derive(Debug)]
struct Failure {
    route: String,
    who: &'static str,
    what: String,
    request: String,
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let head: String = s.chars().take(max).collect();
    format!("{head}… ({} bytes)", s.len())
}

struct Outcome {
    status: u16,
    failures: Vec<String>,
    request: String,
}

async fn run_case(cloud: &Cloud, route: &Route, who: &Who, input: &Input) -> Outcome {
    let base = &cloud.api.base_url;
    let (url, body) = match input {
        Input::Body(b) => (format!("{base}{}", route.path), Some(b.bytes())),
        Input::Query(q) => (format!("{base}{}?{q}", route.path), None),
        Input::Segment(s) => (format!("{base}{}", route.path.replace("{}", s)), None),
    };
    let shown_body = body
        .as_deref()
        .map(|b| shorten(&String::from_utf8_lossy(b), 400))
        .unwrap_or_default();
    let request = format!("{} {} {}", route.method, shorten(&url, 400), shown_body);
    let mut failures = Vec::new();
    let before = cloud.revision().await;
    let mut req = who.http.request(route.method.clone(), url.as_str());
    if let Some(body) = body {
        req = req.header("content-type", route.content_type).body(body);
    }
    let status = match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            if status >= 500 {
                failures.push(format!("{status}: {}", shorten(&text, 300)));
            }
            status
        }
        Err(e) => {
            failures.push(format!("no answer (a panic drops the connection): {e}"));
            0
        }
    };
    let health = cloud.admin.http.get(format!("{base}/healthz")).send().await;
    if !health.is_ok_and(|r| r.status().is_success()) {
        failures.push("/healthz does not answer after the request".into());
    }
    // A refused request wrote nothing at all, or only what it undid (the key space is the
    // same at both revisions).
    if !(200..400).contains(&status) && cloud.revision().await != before {
        let changes = cloud.changes_since(before).await;
        if !changes.is_empty() {
            failures.push(format!(
                "refused with {status} but the store changed: {}",
                shorten(&changes.join(", "), 400)
            ));
        }
    }
    Outcome {
        status,
        failures,
        request,
    }
}

fn seed_for(base: u64, route: &str, who: &str) -> [u8; 32] {
    // FNV-1a of the route and caller, so each route's cases do not depend on the others.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in route.bytes().chain(who.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&base.to_le_bytes());
    seed[8..16].copy_from_slice(&h.to_le_bytes());
    seed
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn openstack_bodies_and_queries_never_5xx_panic_or_half_write() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let cloud = rt.block_on(Cloud::start());
    let seed = env_or("CIRRUS_FUZZ_SEED", DEFAULT_SEED);
    let cases = env_or("CIRRUS_FUZZ_CASES", CASES);
    println!("fuzz seed {seed} (CIRRUS_FUZZ_SEED), {cases} cases per route and caller");
    let routes = cloud.routes();
    let ids = cloud.id_pool();
    let fields = field_names(&routes);
    let started = std::time::Instant::now();
    let stats: RefCell<Stats> = RefCell::default();
    let failures: RefCell<Vec<Failure>> = RefCell::default();
    for route in &routes {
        let strategy = match &route.shape {
            Shape::Body(valid) => body_input(valid, &ids, &fields),
            Shape::Query => query_input(&ids),
            Shape::PathSegment => segment_input(&ids),
        };
        for who in [&cloud.admin, &cloud.member] {
            let label = route.label();
            let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_for(seed, &label, who.name));
            let config = Config {
                cases,
                failure_persistence: None,
                ..Config::default()
            };
            let mut runner = TestRunner::new_with_rng(config, rng);
            runner
                .run(&strategy, |input| {
                    let outcome = rt.block_on(run_case(&cloud, route, who, &input));
                    *stats
                        .borrow_mut()
                        .entry((label.clone(), who.name))
                        .or_default()
                        .entry(outcome.status)
                        .or_default() += 1;
                    for what in outcome.failures {
                        failures.borrow_mut().push(Failure {
                            route: label.clone(),
                            who: who.name,
                            what,
                            request: outcome.request.clone(),
                        });
                    }
                    Ok(())
                })
                .expect("the cases run (failures are collected, not raised)");
        }
    }
    let stats = stats.into_inner();
    let failures = failures.into_inner();
    let total: usize = stats.values().flat_map(|s| s.values()).sum();
    println!(
        "{:<78} {:>6} {:>5} {:>5} {:>5}  statuses",
        "route", "caller", "2xx", "4xx", "5xx"
    );
    for ((route, who), by_status) in &stats {
        let class = |lo: u16, hi: u16| -> usize {
            by_status
                .iter()
                .filter(|(s, _)| (lo..hi).contains(*s))
                .map(|(_, n)| n)
                .sum()
        };
        let detail: Vec<String> = by_status.iter().map(|(s, n)| format!("{s}:{n}")).collect();
        println!(
            "{:<78} {:>6} {:>5} {:>5} {:>5}  {}",
            shorten(route, 76),
            who,
            class(200, 400),
            class(400, 500),
            class(500, 600) + by_status.get(&0).copied().unwrap_or(0),
            detail.join(" ")
        );
    }
    println!(
        "fuzzed {} routes as admin and member: {total} requests, {} failures, in {:.1} s",
        routes.len(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    let kinds: Vec<String> = rt.block_on(async {
        let mut out = Vec::new();
        for kind in cirrus_crds::all_kinds() {
            let n = cloud
                .api
                .store
                .count(kind, None)
                .await
                .expect("the store answers");
            if n > 0 {
                out.push(format!("{} {n}", kind.plural));
            }
        }
        out
    });
    println!("objects in the store after the fuzz: {}", kinds.join(", "));
    let mut seen = BTreeMap::new();
    for f in &failures {
        let key = (f.route.clone(), f.who, shorten(&f.what, 120));
        seen.entry(key).or_insert_with(|| f.request.clone());
    }
    for ((route, who, what), request) in &seen {
        println!("FAIL {route} as {who}: {what}\n  request: {request}");
    }
    assert!(
        failures.is_empty(),
        "{} fuzz failures ({} distinct), listed above; seed {seed}",
        failures.len(),
        seen.len()
    );
}
