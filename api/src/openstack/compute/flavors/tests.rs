use super::*;

fn flavor(name: &str, ram: u64, disk: u64, public: bool) -> Value {
    json!({
        "metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"vcpus": 1, "ram": ram, "disk": disk, "public": public, "rxtxFactor": 1.0},
    })
}

fn names(page: &[Value]) -> Vec<String> {
    page.iter().map(common::name).collect()
}

#[test]
fn render_matches_nova_2_1() {
    let mut f = flavor("m1.tiny", 256, 1, true);
    f["metadata"]["annotations"] = json!({NAME_ANNOTATION: "M1 Tiny"});
    let body = render(&f, "http://h:1");
    assert_eq!(body["id"], "m1.tiny");
    assert_eq!(body["name"], "M1 Tiny");
    assert_eq!(body["swap"], "");
    assert_eq!(body["OS-FLV-EXT-DATA:ephemeral"], 0);
    assert_eq!(body["os-flavor-access:is_public"], true);
    assert_eq!(
        body["links"][0]["href"],
        "http://h:1/compute/v2.1/flavors/m1.tiny"
    );
    f["spec"]["swap"] = json!(512);
    assert_eq!(render(&f, "")["swap"], 512);
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 11, "exactly the 2.1 fields: {keys:?}");
}

#[test]
fn filters_and_pages_like_nova() {
    let all = vec![
        flavor("c", 2048, 20, true),
        flavor("a", 256, 1, true),
        flavor("b", 512, 10, false),
        flavor("d", 4096, 40, true),
    ];
    let query = |q: &str| -> ListQuery { serde_urlencoded_like(q) };
    let (page, more) = select(all.clone(), &query(""), true).unwrap();
    assert_eq!(names(&page), ["a", "c", "d"], "admin default: public only");
    assert!(!more);
    let (page, _) = select(all.clone(), &query("is_public=none"), true).unwrap();
    assert_eq!(names(&page), ["a", "b", "c", "d"]);
    let (page, _) = select(all.clone(), &query("is_public=none"), false).unwrap();
    assert_eq!(
        names(&page),
        ["a", "c", "d"],
        "non-admins see public ones only"
    );
    let (page, _) = select(all.clone(), &query("is_public=false"), true).unwrap();
    assert_eq!(names(&page), ["b"]);
    let (page, _) = select(all.clone(), &query("minRam=1000&minDisk=30"), true).unwrap();
    assert_eq!(names(&page), ["d"]);
    let (page, more) = select(all.clone(), &query("limit=2"), true).unwrap();
    assert_eq!(names(&page), ["a", "c"]);
    assert!(more);
    let (page, more) = select(all.clone(), &query("limit=2&marker=c"), true).unwrap();
    assert_eq!(names(&page), ["d"]);
    assert!(!more);
    let (page, _) = select(
        all.clone(),
        &query("sort_key=memory_mb&sort_dir=desc"),
        true,
    )
    .unwrap();
    assert_eq!(names(&page), ["d", "c", "a"]);
    assert_eq!(
        select(all.clone(), &query("marker=zz"), true)
            .unwrap_err()
            .code,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        select(all, &query("is_public=maybe"), true)
            .unwrap_err()
            .code,
        StatusCode::BAD_REQUEST
    );
}

/// Parses `a=b&c=d` into the list query (the same parser axum's `Query` uses).
fn serde_urlencoded_like(q: &str) -> ListQuery {
    let uri: axum::http::Uri = format!("/x?{q}").parse().unwrap();
    axum::extract::Query::<ListQuery>::try_from_uri(&uri)
        .unwrap()
        .0
}

#[test]
fn create_body_is_validated_naming_the_field() {
    let ok = parse_create(&json!({"flavor": {
        "name": "m1.tiny", "ram": 256, "vcpus": 1, "disk": 1, "id": null,
        "OS-FLV-EXT-DATA:ephemeral": 0, "swap": 0, "rxtx_factor": 1.0,
        "os-flavor-access:is_public": true
    }}))
    .unwrap();
    assert_eq!(ok.name, "m1.tiny");
    assert_eq!((ok.ram, ok.vcpus, ok.disk, ok.id), (256, 1, 1, None));
    let auto = parse_create(
        &json!({"flavor": {"name": "x", "ram": "64", "vcpus": 1, "disk": 0, "id": "auto"}}),
    )
    .unwrap();
    assert_eq!((auto.ram, auto.id), (64, None));
    // What tempest sends: an integer id, a string boolean.
    let tempest = parse_create(&json!({"flavor": {
        "name": "t", "ram": 64, "vcpus": 1, "disk": 0, "id": 4242,
        "os-flavor-access:is_public": "False"
    }}))
    .unwrap();
    assert_eq!(tempest.id.as_deref(), Some("4242"));
    assert!(!tempest.public);
    let yes = parse_create(&json!({"flavor": {
        "name": "t", "ram": 64, "vcpus": 1, "disk": 0, "os-flavor-access:is_public": "True"
    }}))
    .unwrap();
    assert!(yes.public);
    for (body, field) in [
        (
            json!({"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": 0, "os-flavor-access:is_public": "maybe"}}),
            "is_public",
        ),
        (
            json!({"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": 0, "id": -3}}),
            "id",
        ),
        (
            json!({"flavor": {"name": "x", "ram": 0, "vcpus": 1, "disk": 0}}),
            "ram",
        ),
        (
            json!({"flavor": {"name": "x", "ram": 1, "disk": 0}}),
            "vcpus",
        ),
        (
            json!({"flavor": {"name": " x", "ram": 1, "vcpus": 1, "disk": 0}}),
            "name",
        ),
        (
            json!({"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": 0, "id": "Bad Id"}}),
            "id",
        ),
        (
            json!({"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": 0, "bogus": 1}}),
            "bogus",
        ),
        (
            json!({"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": -1}}),
            "disk",
        ),
    ] {
        let fault = parse_create(&body).unwrap_err();
        assert_eq!(fault.code, StatusCode::BAD_REQUEST);
        assert!(fault.message.contains(field), "{field}: {}", fault.message);
    }
}
