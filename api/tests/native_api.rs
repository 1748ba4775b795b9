//! The native API end to end over HTTP, against the embedded store in memory.

use std::time::Duration;

use cirrus_store::objects::ObjectStore;
use cirrus_test_utils::TestApi;
use futures::StreamExt;
use serde_json::{Value, json};

struct Harness {
    base: String,
    http: reqwest::Client,
    store: ObjectStore,
    _api: TestApi,
}

const V1: &str = "/apis/cirrus.dev/v1";

async fn harness() -> Harness {
    harness_with(Duration::from_secs(10)).await
}

async fn harness_with(bookmark_interval: Duration) -> Harness {
    let api = TestApi::start_with(|state| state.bookmark_interval = bookmark_interval).await;
    Harness {
        base: api.base_url.clone(),
        http: api.client(),
        store: api.store.clone(),
        _api: api,
    }
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{V1}{path}", self.base)
    }
    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.expect("request");
        let code = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (code, body)
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(self.url(path)).json(&body)).await
    }
    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.put(self.url(path)).json(&body)).await
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.url(path))).await
    }
    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        let req = self
            .http
            .patch(self.url(path))
            .header("Content-Type", "application/merge-patch+json")
            .body(body.to_string());
        self.send(req).await
    }
    async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(self.url(path))).await
    }
}

fn flavor(name: &str, ram: u64) -> Value {
    json!({
        "apiVersion": "cirrus.dev/v1", "kind": "Flavor",
        "metadata": {"name": name, "labels": {"size": if ram > 1024 { "big" } else { "small" }}},
        "spec": {"vcpus": 1, "ram": ram, "disk": 1}
    })
}

fn rv(object: &Value) -> i64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn create_sets_identity_and_refuses_duplicates() {
    let h = harness().await;
    let (code, created) = h.post("/flavors", flavor("m1.tiny", 512)).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(
        created["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );
    assert!(created["metadata"]["creationTimestamp"].is_string());
    assert_eq!(created["spec"]["rxtxFactor"], 1.0, "defaults are filled in");
    let (code, fetched) = h.get("/flavors/m1.tiny").await;
    assert_eq!(code, 200);
    assert_eq!(fetched, created);
    let (code, status) = h.post("/flavors", flavor("m1.tiny", 1024)).await;
    assert_eq!(code, 409);
    assert_eq!(status["reason"], "AlreadyExists");
    assert_eq!(status["kind"], "Status");
}

#[tokio::test]
async fn unknown_and_bad_fields_are_refused_naming_the_field() {
    let h = harness().await;
    let mut bad = flavor("m1.bad", 512);
    bad["spec"]["bogus"] = json!(1);
    let (code, status) = h.post("/flavors", bad).await;
    assert_eq!(code, 400, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["details"]["causes"][0]["field"], "spec.bogus",
        "{status}"
    );
    assert!(status["message"].as_str().unwrap().contains("bogus"));

    let mut bad = flavor("m1.bad", 512);
    bad["extra"] = json!("x");
    let (code, status) = h.post("/flavors", bad).await;
    assert_eq!(code, 400);
    assert_eq!(status["details"]["causes"][0]["field"], "extra", "{status}");

    let (code, status) = h.post("/flavors", flavor("m1.bad", 0)).await;
    assert_eq!(code, 400);
    assert_eq!(
        status["details"]["causes"][0]["field"], "spec.ram",
        "{status}"
    );

    let (code, status) = h.post("/flavors", flavor("Bad_Name", 512)).await;
    assert_eq!(code, 400);
    assert_eq!(
        status["details"]["causes"][0]["field"], "metadata.name",
        "{status}"
    );

    let resp = h
        .http
        .post(h.url("/flavors"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    let (code, _) = h.get("/flavors/m1.bad").await;
    assert_eq!(code, 404, "nothing half-written stays behind");
    let (_, list) = h.get("/flavors").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn updates_are_compare_and_swap_and_bump_generation_on_spec_change() {
    let h = harness().await;
    let (_, created) = h.post("/flavors", flavor("m1.small", 2048)).await;
    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh["spec"]["vcpus"] = json!(2);
    let (code, updated) = h.put("/flavors/m1.small", fresh).await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["metadata"]["generation"], 2);
    assert!(rv(&updated) > rv(&created));

    stale["spec"]["vcpus"] = json!(4);
    let (code, status) = h.put("/flavors/m1.small", stale).await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");

    // A write that changes nothing costs no store write.
    let (code, same) = h.put("/flavors/m1.small", updated.clone()).await;
    assert_eq!(code, 200);
    assert_eq!(rv(&same), rv(&updated));

    // Store-owned metadata can't be changed; a label change is not a spec change.
    let mut relabel = updated.clone();
    relabel["metadata"]["uid"] = json!("00000000-0000-0000-0000-000000000000");
    relabel["metadata"]["labels"]["tier"] = json!("gold");
    let (code, relabelled) = h.put("/flavors/m1.small", relabel).await;
    assert_eq!(code, 200);
    assert_eq!(relabelled["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(relabelled["metadata"]["generation"], 2);
    assert_eq!(relabelled["metadata"]["labels"]["tier"], "gold");

    // Body naming another object is refused.
    let mut other = relabelled.clone();
    other["metadata"]["name"] = json!("m1.other");
    let (code, status) = h.put("/flavors/m1.small", other).await;
    assert_eq!(code, 400);
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");

    let (code, _) = h.put("/flavors/missing", flavor("missing", 512)).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn status_subresource_is_separate_from_spec() {
    let h = harness().await;
    let (_, created) = h.post("/flavors", flavor("m1.s", 512)).await;
    let mut with_status = created.clone();
    with_status["status"] =
        json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Checked"}]});
    with_status["spec"]["vcpus"] = json!(8);
    let (code, after) = h.put("/flavors/m1.s/status", with_status.clone()).await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(after["spec"]["vcpus"], 1, "a status write ignores spec");
    assert_eq!(
        after["metadata"]["generation"], 1,
        "status writes don't bump generation"
    );

    let mut spec_write = after.clone();
    spec_write["status"] = json!({});
    spec_write["spec"]["vcpus"] = json!(2);
    let (code, after_spec) = h.put("/flavors/m1.s", spec_write).await;
    assert_eq!(code, 200);
    assert_eq!(
        after_spec["status"]["conditions"][0]["type"], "Ready",
        "a spec write keeps status"
    );
    assert_eq!(after_spec["metadata"]["generation"], 2);

    let (code, patched) = h
        .patch(
            "/flavors/m1.s/status",
            json!({"status": {"conditions": []}}),
        )
        .await;
    assert_eq!(code, 200, "{patched}");
    assert!(patched["status"].get("conditions").is_none());

    // Status in a create body is dropped.
    let mut f = flavor("m1.t", 512);
    f["status"] = with_status["status"].clone();
    let (_, created) = h.post("/flavors", f).await;
    assert!(created["status"].get("conditions").is_none());
}

#[tokio::test]
async fn merge_patch_with_precondition_and_content_type() {
    let h = harness().await;
    let (_, created) = h.post("/flavors", flavor("m1.p", 512)).await;
    let (code, patched) = h
        .patch(
            "/flavors/m1.p",
            json!({"metadata": {"labels": {"team": "a", "size": null}}, "spec": {"ram": 1024}}),
        )
        .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["metadata"]["labels"], json!({"team": "a"}));
    assert_eq!(patched["spec"]["ram"], 1024);
    assert_eq!(patched["spec"]["vcpus"], 1);
    let stale = json!({"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "spec": {"ram": 4096}});
    let (code, _) = h.patch("/flavors/m1.p", stale).await;
    assert_eq!(code, 409);
    let (code, status) = h
        .patch("/flavors/m1.p", json!({"spec": {"ram": "lots"}}))
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        status["details"]["causes"][0]["field"], "spec.ram",
        "{status}"
    );
    let resp = h
        .http
        .patch(h.url("/flavors/m1.p"))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
}

#[tokio::test]
async fn delete_waits_for_finalizers() {
    let h = harness().await;
    let mut f = flavor("m1.f", 512);
    f["metadata"]["finalizers"] = json!(["cirrus.dev/test"]);
    let (code, _) = h.post("/flavors", f).await;
    assert_eq!(code, 201);
    let (code, marked) = h.delete("/flavors/m1.f").await;
    assert_eq!(code, 200);
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    let (code, still) = h.get("/flavors/m1.f").await;
    assert_eq!(code, 200, "finalizers keep the object");
    assert_eq!(
        still["metadata"]["deletionTimestamp"],
        marked["metadata"]["deletionTimestamp"]
    );
    let (code, _) = h
        .patch("/flavors/m1.f", json!({"metadata": {"finalizers": []}}))
        .await;
    assert_eq!(code, 200);
    let (code, _) = h.get("/flavors/m1.f").await;
    assert_eq!(code, 404, "emptying finalizers removes the object");

    let (_, _) = h.post("/flavors", flavor("m1.g", 512)).await;
    let (code, last) = h.delete("/flavors/m1.g").await;
    assert_eq!(code, 200);
    assert_eq!(last["metadata"]["name"], "m1.g");
    let (code, _) = h.delete("/flavors/m1.g").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn delete_preconditions_name_the_very_object() {
    let h = harness().await;
    let (_, old) = h.post("/flavors", flavor("m1.p", 512)).await;
    h.delete("/flavors/m1.p").await;
    let (_, new) = h.post("/flavors", flavor("m1.p", 512)).await;
    let delete_with = |body: Value| h.send(h.http.delete(h.url("/flavors/m1.p")).json(&body));
    let (code, status) =
        delete_with(json!({"preconditions": {"uid": old["metadata"]["uid"]}})).await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");
    assert!(
        status["message"].as_str().unwrap().contains("metadata.uid"),
        "{status}"
    );
    let (code, status) = delete_with(json!({"preconditions": {"resourceVersion": "x"}})).await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("preconditions.resourceVersion")
    );
    let (code, status) = delete_with(json!({"gracePeriod": 3})).await;
    assert_eq!(code, 400, "unknown fields are refused: {status}");
    assert!(
        status["message"].as_str().unwrap().contains("gracePeriod"),
        "{status}"
    );
    let (code, _) = h.get("/flavors/m1.p").await;
    assert_eq!(code, 200, "refused deletes delete nothing");
    let (code, last) = delete_with(json!({
        "apiVersion": "v1", "kind": "DeleteOptions",
        "preconditions": {"uid": new["metadata"]["uid"], "resourceVersion": new["metadata"]["resourceVersion"]},
    }))
    .await;
    assert_eq!(code, 200, "{last}");
    let (code, _) = h.get("/flavors/m1.p").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn dry_run_stores_nothing() {
    let h = harness().await;
    let resp = h
        .http
        .post(h.url("/flavors?dryRun=All"))
        .json(&flavor("m1.d", 512))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let (code, _) = h.get("/flavors/m1.d").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn list_filters_by_label_and_pages_consistently() {
    let h = harness().await;
    for i in 0..5 {
        let (code, _) = h
            .post("/flavors", flavor(&format!("f{i}"), 512 + i * 1024))
            .await;
        assert_eq!(code, 201);
    }
    let (_, big) = h.get("/flavors?labelSelector=size%3Dbig").await;
    let names: Vec<&str> = big["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["f1", "f2", "f3", "f4"]);
    assert_eq!(big["kind"], "FlavorList");
    let (code, _) = h.get("/flavors?labelSelector=bad%20key%3D1").await;
    assert_eq!(code, 400);

    let (_, page1) = h.get("/flavors?limit=2").await;
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    let token = page1["metadata"]["continue"].as_str().unwrap().to_string();
    // Created after the first page: not part of this listing's snapshot.
    h.post("/flavors", flavor("f9", 512)).await;
    let mut all: Vec<String> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let mut token = Some(token);
    while let Some(t) = token {
        let (code, page) = h.get(&format!("/flavors?limit=2&continue={t}")).await;
        assert_eq!(code, 200, "{page}");
        assert_eq!(
            page["metadata"]["resourceVersion"],
            page1["metadata"]["resourceVersion"]
        );
        all.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        token = page["metadata"]["continue"].as_str().map(str::to_string);
    }
    assert_eq!(all, ["f0", "f1", "f2", "f3", "f4"]);
    let (code, _) = h.get("/flavors?limit=2&continue=garbage").await;
    assert_eq!(code, 400);
}

/// Reads watch lines until `n` non-bookmark events arrived.
async fn read_events(resp: reqwest::Response, n: usize) -> Vec<Value> {
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.len() < n {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("events arrive")
            .expect("stream open")
            .unwrap();
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let event: Value = serde_json::from_slice(&line).unwrap();
            if event["type"] != "BOOKMARK" {
                events.push(event);
            }
        }
    }
    events
}

#[tokio::test]
async fn watch_resumes_from_a_revision_without_gaps_or_repeats() {
    let h = harness().await;
    let (_, a) = h.post("/flavors", flavor("a", 512)).await;
    let start = rv(&a);
    h.patch("/flavors/a", json!({"spec": {"vcpus": 2}})).await;
    h.post("/flavors", flavor("b", 512)).await;
    h.delete("/flavors/a").await;

    let resp = h
        .http
        .get(h.url(&format!("/flavors?watch=true&resourceVersion={start}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let events = read_events(resp, 3).await;
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().into(),
                e["object"]["metadata"]["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("MODIFIED".into(), "a".into()),
            ("ADDED".into(), "b".into()),
            ("DELETED".into(), "a".into())
        ]
    );
    let revs: Vec<i64> = events.iter().map(|e| rv(&e["object"])).collect();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "in revision order: {revs:?}"
    );

    // Resume from the middle: exactly the later events, then live ones.
    let resp = h
        .http
        .get(h.url(&format!("/flavors?watch=true&resourceVersion={}", revs[0])))
        .send()
        .await
        .unwrap();
    let live = tokio::spawn(read_events(resp, 3));
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.post("/flavors", flavor("c", 512)).await;
    let events = live.await.unwrap();
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().into(),
                e["object"]["metadata"]["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ADDED".into(), "b".into()),
            ("DELETED".into(), "a".into()),
            ("ADDED".into(), "c".into())
        ]
    );
}

#[tokio::test]
async fn watch_without_version_starts_with_current_objects_and_honours_selectors() {
    let h = harness().await;
    h.post("/flavors", flavor("small", 512)).await;
    h.post("/flavors", flavor("big", 4096)).await;
    let resp = h
        .http
        .get(h.url("/flavors?watch=true&labelSelector=size%3Dbig"))
        .send()
        .await
        .unwrap();
    let live = tokio::spawn(read_events(resp, 3));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Leaves the selector: DELETED. Enters it: ADDED.
    h.patch(
        "/flavors/big",
        json!({"metadata": {"labels": {"size": "small"}}}),
    )
    .await;
    h.patch(
        "/flavors/small",
        json!({"metadata": {"labels": {"size": "big"}}}),
    )
    .await;
    let events = live.await.unwrap();
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().into(),
                e["object"]["metadata"]["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ADDED".into(), "big".into()),
            ("DELETED".into(), "big".into()),
            ("ADDED".into(), "small".into())
        ]
    );
}

#[tokio::test]
async fn watch_sends_bookmarks() {
    let h = harness_with(Duration::from_millis(200)).await;
    let (_, a) = h.post("/flavors", flavor("a", 512)).await;
    let resp = h
        .http
        .get(h.url(&format!("/flavors?watch=true&resourceVersion={}", rv(&a))))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let event: Value =
        serde_json::from_slice(&chunk[..chunk.iter().position(|b| *b == b'\n').unwrap()]).unwrap();
    assert_eq!(event["type"], "BOOKMARK");
    assert!(rv(&event["object"]) >= rv(&a));
}

#[tokio::test]
async fn compacted_versions_are_gone() {
    let h = harness().await;
    let (_, a) = h.post("/flavors", flavor("a", 512)).await;
    let old = rv(&a);
    for i in 0..3 {
        h.patch("/flavors/a", json!({"spec": {"vcpus": i + 2}}))
            .await;
    }
    h.post("/flavors", flavor("b", 512)).await;
    let (_, page) = h.get("/flavors?limit=1").await;
    h.post("/flavors", flavor("c", 512)).await;
    let current = h.store.current_revision().await.unwrap();
    h.store
        .client()
        .kv_client()
        .compact(current, None)
        .await
        .unwrap();

    let (code, status) = h
        .get(&format!("/flavors?watch=true&resourceVersion={old}"))
        .await;
    assert_eq!(code, 410, "{status}");
    assert_eq!(status["reason"], "Expired");
    let token = page["metadata"]["continue"].as_str().unwrap();
    let (code, _) = h.get(&format!("/flavors?limit=1&continue={token}")).await;
    assert_eq!(code, 410);
    // The current revision still works.
    let resp = h
        .http
        .get(h.url(&format!("/flavors?watch=true&resourceVersion={current}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn oversized_bodies_and_unknown_paths() {
    let h = harness().await;
    let mut big = flavor("huge", 512);
    big["spec"]["description"] = json!("x".repeat(2 * 1024 * 1024));
    let (code, status) = h.post("/flavors", big).await;
    assert_eq!(code, 413);
    assert_eq!(status["reason"], "RequestEntityTooLarge");
    let (code, status) = h.get("/nosuchthings").await;
    assert_eq!(code, 404);
    assert_eq!(status["kind"], "Status");
    let (code, _) = h.send(h.http.get(format!("{}/nope", h.base))).await;
    assert_eq!(code, 404);
    let (code, discovery) = h.get("").await;
    assert_eq!(code, 200);
    assert!(
        discovery["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "flavors")
    );
}

#[tokio::test]
async fn field_selectors_filter_lists_and_watches() {
    let h = harness().await;
    h.post("/flavors", flavor("one", 512)).await;
    h.post("/flavors", flavor("two", 4096)).await;
    let (code, list) = h.get("/flavors?fieldSelector=spec.ram%3D4096").await;
    assert_eq!(code, 200, "{list}");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["two"]);
    let (_, list) = h
        .get("/flavors?fieldSelector=metadata.name!%3Dtwo,spec.description%3D")
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (code, _) = h.get("/flavors?fieldSelector=nonsense").await;
    assert_eq!(code, 400);

    let resp = h
        .http
        .get(h.url("/flavors?watch=true&fieldSelector=spec.vcpus%3D2"))
        .send()
        .await
        .unwrap();
    let live = tokio::spawn(read_events(resp, 2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.patch("/flavors/one", json!({"spec": {"vcpus": 2}})).await;
    h.patch("/flavors/one", json!({"spec": {"vcpus": 3}})).await;
    let events = live.await.unwrap();
    let seen: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        seen,
        ["ADDED", "DELETED"],
        "moving into and out of the selection"
    );
}
