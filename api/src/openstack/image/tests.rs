use super::list::{ListQuery, select, tags_of};
use super::update::{apply_op, diff_to_patch};
use super::*;

fn image(project: &str, uid: &str, visibility: &str) -> Value {
    json!({
        "metadata": {"name": uid, "uid": uid, "project": project,
                     "creationTimestamp": format!("2026-01-01T00:00:0{}Z", uid.len() % 10)},
        "spec": {"visibility": visibility, "diskFormat": "qcow2", "containerFormat": "bare",
                 "properties": {"hw_disk_bus": "virtio"}, "tags": ["a"]},
        "status": {"phase": "active", "size": 10, "checksum": "c", "osHashAlgo": "sha256", "osHashValue": "h"},
    })
}

#[test]
fn render_flattens_properties_under_core_fields() {
    let mut i = image("demo", "u1", "private");
    i["spec"]["properties"]["status"] = json!("sneaky");
    let body = render(&i);
    assert_eq!(body["id"], "u1");
    assert_eq!(
        body["status"], "active",
        "core attributes win over properties"
    );
    assert_eq!(body["hw_disk_bus"], "virtio");
    assert_eq!(body["owner"], "demo");
    assert_eq!(body["os_hash_algo"], "sha256");
    assert_eq!(body["file"], "/v2/images/u1/file");
    let mut queued = image("demo", "u2", "private");
    queued["status"] = json!({});
    assert_eq!(render(&queued)["status"], "queued");
    assert_eq!(render(&queued)["size"], Value::Null);
}

#[test]
fn visibility_rules() {
    let private = image("a", "p", "private");
    let public = image("a", "q", "public");
    let mut shared = image("a", "s", "shared");
    shared["spec"]["members"] = json!(["b"]);
    let community = image("a", "c", "community");
    assert!(can_see(false, Some("a"), &private));
    assert!(!can_see(false, Some("b"), &private));
    assert!(can_see(true, Some("admin"), &private));
    assert!(can_see(false, Some("b"), &public));
    assert!(can_see(false, Some("b"), &shared));
    assert!(!can_see(false, Some("c"), &shared));
    assert!(can_see(false, Some("b"), &community));
    let all = vec![private, public, shared, community];
    let answers = std::cell::RefCell::new(HashMap::new());
    let ids = |q: &str, project: &str| -> Vec<String> {
        let uri: axum::http::Uri = format!("/x?{q}").parse().unwrap();
        let query = Query::<ListQuery>::try_from_uri(&uri).unwrap().0;
        let (page, _) = select(
            all.clone(),
            false,
            Some(project),
            &answers.borrow(),
            &query,
            &[],
        )
        .unwrap();
        let mut ids: Vec<String> = page
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids("", "b"),
        ["q"],
        "community is not listed for others, nor an unanswered share"
    );
    assert_eq!(ids("member_status=pending", "b"), ["q", "s"]);
    assert_eq!(ids("member_status=all", "b"), ["q", "s"]);
    answers
        .borrow_mut()
        .insert("s".to_string(), MemberStatus::Accepted);
    assert_eq!(ids("", "b"), ["q", "s"], "an accepted share is listed");
    assert_eq!(ids("member_status=rejected", "b"), ["q"]);
    answers
        .borrow_mut()
        .insert("s".to_string(), MemberStatus::Rejected);
    assert_eq!(ids("", "b"), ["q"]);
    assert_eq!(ids("member_status=rejected", "b"), ["q", "s"]);
    assert_eq!(
        ids("", "a"),
        ["c", "p", "q", "s"],
        "the owner lists all its own"
    );
    assert_eq!(ids("visibility=community", "b"), ["c"]);
    assert_eq!(ids("visibility=public", "a"), ["q"]);
}

#[test]
fn lists_page_with_markers_in_sort_order() {
    let all: Vec<Value> = (1..=5)
        .map(|n| {
            let mut i = image("a", &format!("id{n}"), "private");
            i["metadata"]["creationTimestamp"] = json!(format!("2026-01-01T00:00:0{n}Z"));
            i
        })
        .collect();
    let page = |q: &str| -> (Vec<String>, bool) {
        let uri: axum::http::Uri = format!("/x?{q}").parse().unwrap();
        let query = Query::<ListQuery>::try_from_uri(&uri).unwrap().0;
        let (page, more) =
            select(all.clone(), false, Some("a"), &HashMap::new(), &query, &[]).unwrap();
        (
            page.iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect(),
            more,
        )
    };
    assert_eq!(
        page("limit=2"),
        (vec!["id5".into(), "id4".into()], true),
        "newest first"
    );
    assert_eq!(
        page("limit=2&marker=id4"),
        (vec!["id3".into(), "id2".into()], true)
    );
    assert_eq!(page("limit=2&marker=id2"), (vec!["id1".into()], false));
    assert_eq!(page("sort=created_at:asc&limit=1").0, ["id1"]);
    assert_eq!(page("sort_key=created_at&sort_dir=asc&limit=1").0, ["id1"]);
}

#[test]
fn create_body_maps_to_spec_and_refuses_what_it_must() {
    let new = parse_create(
        &json!({"name": "cirros", "disk_format": "qcow2", "container_format": "bare",
                "visibility": "private", "min_ram": 64, "tags": ["x", "x"],
                "owner_specified.openstack.md5": "", "hw_disk_bus": "scsi"}),
        false,
    )
    .unwrap();
    assert_eq!(new.name.as_deref(), Some("cirros"));
    assert_eq!(new.spec["diskFormat"], "qcow2");
    assert_eq!(new.spec["minRam"], 64);
    assert_eq!(new.spec["tags"], json!(["x"]));
    assert_eq!(new.spec["properties"]["hw_disk_bus"], "scsi");
    assert_eq!(new.spec["properties"]["owner_specified.openstack.md5"], "");
    let code = |body: Value, admin: bool| parse_create(&body, admin).unwrap_err().code;
    assert_eq!(
        code(json!({"visibility": "public"}), false),
        StatusCode::FORBIDDEN
    );
    assert!(parse_create(&json!({"visibility": "public"}), true).is_ok());
    assert_eq!(
        code(json!({"disk_format": "exe"}), false),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        code(json!({"status": "active"}), false),
        StatusCode::FORBIDDEN
    );
    assert_eq!(code(json!({"hw_x": 3}), false), StatusCode::BAD_REQUEST);
    assert_eq!(
        code(json!({"protected": "yes"}), false),
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn json_patch_becomes_an_object_patch() {
    let mut i = image("a", "u1", "private");
    i["metadata"]["resourceVersion"] = json!("7");
    let before = render(&i);
    let mut after = before.clone();
    for op in [
        json!({"op": "replace", "path": "/name", "value": "new name"}),
        json!({"op": "add", "path": "/tags/-", "value": "b"}),
        json!({"op": "remove", "path": "/hw_disk_bus"}),
        json!({"op": "add", "path": "/os~1distro", "value": "debian"}),
        json!({"op": "replace", "path": "/protected", "value": true}),
    ] {
        apply_op(&mut after, &op).unwrap();
    }
    // The v2.0 form (operation as key), with and without the leading slash: the same.
    let mut draft4 = before.clone();
    for op in [
        json!({"replace": "/name", "value": "new name"}),
        json!({"add": "tags/-", "value": "b"}),
        json!({"remove": "/hw_disk_bus"}),
        json!({"add": "/os~1distro", "value": "debian"}),
        json!({"replace": "/protected", "value": true}),
    ] {
        apply_op(&mut draft4, &op).unwrap();
    }
    assert_eq!(draft4, after, "both patch forms make the same document");
    let patch = diff_to_patch(&i, &before, &after, false).unwrap();
    assert_eq!(patch["metadata"]["resourceVersion"], "7");
    assert_eq!(
        patch["metadata"]["annotations"][NAME_ANNOTATION],
        "new name"
    );
    assert_eq!(patch["spec"]["tags"], json!(["a", "b"]));
    assert_eq!(patch["spec"]["protected"], true);
    assert_eq!(patch["spec"]["properties"]["hw_disk_bus"], Value::Null);
    assert_eq!(patch["spec"]["properties"]["os/distro"], "debian");

    let fails = |op: Value, admin: bool| {
        let mut after = before.clone();
        apply_op(&mut after, &op)
            .and_then(|_| diff_to_patch(&i, &before, &after, admin).map(|_| ()))
            .unwrap_err()
            .code
    };
    assert_eq!(
        fails(
            json!({"op": "replace", "path": "/status", "value": "x"}),
            true
        ),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        fails(
            json!({"op": "replace", "path": "/visibility", "value": "public"}),
            false
        ),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        fails(json!({"op": "remove", "path": "/nope"}), false),
        StatusCode::CONFLICT
    );
    assert_eq!(
        fails(json!({"op": "move", "path": "/name", "from": "/x"}), false),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        fails(
            json!({"op": "replace", "path": "/disk_format", "value": "raw"}),
            false
        ),
        StatusCode::FORBIDDEN,
        "active images keep their format"
    );
}

#[test]
fn tags_come_from_the_raw_query() {
    assert_eq!(tags_of(Some("tag=a&limit=1&tag=b%20c")), ["a", "b c"]);
    assert!(tags_of(None).is_empty());
}
