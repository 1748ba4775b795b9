//! The dynamic (KindInfo + JSON) Api, image data and consoles against a real in-process API
//! over the embedded store (in memory).

use std::sync::Arc;

use cirrus_api::blobs::BlobStore;
use cirrus_client::dynamic::{name_of, resource_version_of};
use cirrus_client::{Client, ClientError, DynamicApi, ListParams, WatchEvent};
use cirrus_crds::{Flavor, Image, Network, Resource, Server};
use cirrus_test_utils::TestApi;
use futures::StreamExt;
use serde_json::{Value, json};

struct Harness {
    client: Client,
    _api: TestApi,
    _blobs: tempfile::TempDir,
}

async fn harness() -> Harness {
    let blobs = tempfile::tempdir().unwrap();
    let mut store = BlobStore::open(blobs.path()).unwrap();
    // The test's 64 KiB need no room kept for a control plane on the test machine's disk.
    store.reserved_bytes = 0;
    let store = Arc::new(store);
    let api = TestApi::start_with(|state| state.blobs = Some(store)).await;
    Harness {
        client: Client::new(api.base_url.clone()).with_token(api.admin_token.clone()),
        _api: api,
        _blobs: blobs,
    }
}

fn flavor(name: &str, size: &str) -> Value {
    json!({
        "apiVersion": "cirrus.dev/v1", "kind": "Flavor",
        "metadata": {"name": name, "labels": {"size": size}},
        "spec": {"vcpus": 1, "ram": 512}
    })
}

fn rv(object: &Value) -> String {
    resource_version_of(object).unwrap().to_string()
}

#[tokio::test]
async fn crud_with_status_errors() {
    let h = harness().await;
    let flavors = DynamicApi::new(h.client.clone(), Flavor::info(), None);

    let created = flavors.create(&flavor("m1", "small")).await.unwrap();
    assert_eq!(name_of(&created), "m1");
    let err = flavors.create(&flavor("m1", "small")).await.unwrap_err();
    assert!(err.is_already_exists() && !err.is_conflict(), "{err}");

    assert_eq!(flavors.get("m1").await.unwrap(), created);
    assert!(flavors.get_opt("nope").await.unwrap().is_none());
    let err = flavors.get("nope").await.unwrap_err();
    assert!(err.is_not_found() && !err.retryable(), "{err}");
    assert_eq!(err.reason(), Some("NotFound"));

    // Merge patch with a stale resourceVersion precondition: someone wrote first.
    let patched = flavors
        .patch("m1", &json!({"metadata": {"labels": {"tier": "gold"}}}))
        .await
        .unwrap();
    assert_eq!(patched["metadata"]["labels"]["tier"], "gold");
    let stale = json!({"metadata": {"resourceVersion": rv(&created)}, "spec": {"vcpus": 3}});
    let err = flavors.patch("m1", &stale).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    let mut replaced = created.clone();
    replaced["spec"]["vcpus"] = json!(2);
    assert!(
        flavors
            .replace("m1", &replaced)
            .await
            .unwrap_err()
            .is_conflict()
    );
    replaced["metadata"]["resourceVersion"] = json!(rv(&patched));
    let replaced = flavors.replace("m1", &replaced).await.unwrap();
    assert_eq!(replaced["spec"]["vcpus"], 2);

    // An invalid object names its field.
    let mut bad = flavor("bad", "small");
    bad["spec"]["colour"] = json!("red");
    let err = flavors.create(&bad).await.unwrap_err();
    assert_eq!(err.code(), Some(400), "{err}");

    // Dry runs are checked by the server and store nothing.
    let dry = flavors.clone().dry_run(true);
    let answer = dry.create(&flavor("ghost", "small")).await.unwrap();
    assert_eq!(name_of(&answer), "ghost");
    assert!(flavors.get_opt("ghost").await.unwrap().is_none());
    dry.delete("m1").await.unwrap();
    assert!(flavors.get_opt("m1").await.unwrap().is_some());

    flavors.delete("m1").await.unwrap();
    assert!(flavors.delete("m1").await.unwrap_err().is_not_found());

    // A project-scoped kind needs a project for object calls, not for reads across them.
    let all_servers = DynamicApi::new(h.client.clone(), Server::info(), None);
    assert!(matches!(
        all_servers.get("vm").await,
        Err(ClientError::ProjectRequired { kind: "Server" })
    ));
    assert!(
        all_servers
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // Names are whole path segments: a dot segment is refused before anything is sent.
    assert!(matches!(
        flavors.get("..").await,
        Err(ClientError::InvalidObject(_))
    ));
}

#[tokio::test]
async fn lists_follow_selectors_pages_and_projects() {
    let h = harness().await;
    let flavors = DynamicApi::new(h.client.clone(), Flavor::info(), None);
    for (name, size) in [("a", "small"), ("b", "large"), ("c", "small")] {
        flavors.create(&flavor(name, size)).await.unwrap();
    }
    let small = flavors
        .list_all_matching(&ListParams::default().labels("size=small"))
        .await
        .unwrap();
    let names: Vec<&str> = small.items.iter().map(name_of).collect();
    assert_eq!(names, ["a", "c"]);
    let by_field = flavors
        .list_all_matching(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 1);
    let page = flavors.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.continue_token.is_some());
    assert_eq!(
        flavors
            .list_all_matching(&ListParams::default().limit(1))
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    assert!(
        flavors
            .list(&ListParams::default().labels("size in ("))
            .await
            .unwrap_err()
            .code()
            == Some(400)
    );

    // A project-scoped kind: in its project, and across projects.
    let net = json!({"metadata": {"name": "n1"}, "spec": {}});
    let demo = DynamicApi::new(h.client.clone(), Network::info(), Some("demo"));
    assert_eq!(demo.project(), Some("demo"));
    demo.create(&net).await.unwrap();
    let other = DynamicApi::new(h.client.clone(), Network::info(), Some("other"));
    other.create(&net).await.unwrap();
    let across = DynamicApi::new(h.client.clone(), Network::info(), None);
    assert_eq!(
        across
            .list_all_matching(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    assert_eq!(
        demo.list_all_matching(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn watch_resumes_after_a_revision_or_from_now() {
    let h = harness().await;
    let flavors = DynamicApi::new(h.client.clone(), Flavor::info(), None);
    let first = flavors.create(&flavor("w1", "small")).await.unwrap();

    // From a revision: only what came after it.
    let mut events = Box::pin(flavors.watch_matching(&rv(&first), &ListParams::default()));
    flavors.create(&flavor("w2", "small")).await.unwrap();
    flavors.delete("w2").await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match events.next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => seen.push(("added", name_of(&o).to_string())),
            WatchEvent::Modified(o) => seen.push(("modified", name_of(&o).to_string())),
            WatchEvent::Deleted(o) => seen.push(("deleted", name_of(&o).to_string())),
            WatchEvent::Bookmark { .. } => {}
        }
    }
    assert_eq!(
        seen,
        [("added", "w2".to_string()), ("deleted", "w2".to_string())]
    );

    // From now (no revision): the current objects first, filtered by the selector.
    flavors.create(&flavor("w3", "large")).await.unwrap();
    let mut from_now =
        Box::pin(flavors.watch_matching("", &ListParams::default().labels("size=large")));
    let Some(Ok(WatchEvent::Added(o))) = from_now.next().await else {
        panic!("the existing object first")
    };
    assert_eq!(name_of(&o), "w3");
}

#[tokio::test]
async fn image_data_round_trips_and_consoles_say_why_not() {
    let h = harness().await;
    let images = DynamicApi::new(h.client.clone(), Image::info(), Some("demo"));
    images
        .create(&json!({
            "metadata": {"name": "disk"},
            "spec": {"diskFormat": "raw", "containerFormat": "bare"}
        }))
        .await
        .unwrap();
    let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &data).unwrap();
    let image = h
        .client
        .image_upload_file("demo", "disk", file.path())
        .await
        .unwrap();
    assert_eq!(image["status"]["virtualSize"], data.len());
    let mut downloaded = Vec::new();
    let mut chunks = Box::pin(h.client.image_download("demo", "disk").await.unwrap());
    while let Some(chunk) = chunks.next().await {
        downloaded.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(downloaded, data);

    let err = h
        .client
        .image_upload_file("demo", "nope", file.path())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let missing = file.path().with_extension("missing");
    assert!(matches!(
        h.client.image_upload_file("demo", "disk", &missing).await,
        Err(ClientError::File { .. })
    ));
    assert!(
        h.client
            .image_download("demo", "nope")
            .await
            .err()
            .unwrap()
            .is_not_found()
    );

    let err = h
        .client
        .server_console("demo", "vm", Some(100))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn unreachable_and_malformed_servers_are_told_apart() {
    assert!(matches!(
        Client::parse("ftp://x"),
        Err(ClientError::BadUrl { .. })
    ));
    assert!(Client::parse("not a url").is_err());
    assert!(Client::parse("https://x").is_ok());
    // Nothing listens on port 1.
    let client = Client::parse("http://127.0.0.1:1").unwrap();
    let err = DynamicApi::new(client, Flavor::info(), None)
        .get("a")
        .await
        .unwrap_err();
    assert!(err.retryable());
    assert!(
        matches!(
            err.connect_failure(),
            Some(cirrus_client::ConnectFailure::Unreachable { .. })
        ),
        "{err:?}"
    );
}
