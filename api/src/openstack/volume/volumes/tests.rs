use super::*;

#[test]
fn sizes_are_positive_integers() {
    assert_eq!(parse_size(&json!(3), "size").unwrap(), 3);
    assert_eq!(parse_size(&json!("4"), "size").unwrap(), 4);
    for bad in [json!(0), json!(-1), json!("x"), json!(1.5), json!(true)] {
        let err = parse_size(&bad, "size").unwrap_err();
        assert!(err.message.contains("size"), "{}", err.message);
    }
}

#[test]
fn metadata_filters_accept_python_dicts() {
    let m = parse_metadata_filter("{'tier': 'gold'}").unwrap();
    assert_eq!(m.get("tier").map(String::as_str), Some("gold"));
    assert!(parse_metadata_filter("{\"a\": \"b\"}").is_some());
    assert!(parse_metadata_filter("nope").is_none());
}

fn vol(uid: &str, t: &str) -> Value {
    json!({"metadata": {"uid": uid, "creationTimestamp": t}})
}

#[test]
fn pages_are_newest_first_with_markers() {
    let items = vec![
        vol("a", "2026-01-01T00:00:01Z"),
        vol("b", "2026-01-01T00:00:03Z"),
        vol("c", "2026-01-01T00:00:02Z"),
    ];
    let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (page, more) = paginate(items.clone(), &q(&[("limit", "2")]), "volumes").unwrap();
    assert_eq!(page.iter().map(common::uid).collect::<Vec<_>>(), ["b", "c"]);
    assert!(more);
    let (page, more) = paginate(
        items.clone(),
        &q(&[("limit", "2"), ("marker", "c")]),
        "volumes",
    )
    .unwrap();
    assert_eq!(page.iter().map(common::uid).collect::<Vec<_>>(), ["a"]);
    assert!(!more);
    assert!(paginate(items.clone(), &q(&[("marker", "zz")]), "volumes").is_err());
    assert!(paginate(items, &q(&[("limit", "x")]), "volumes").is_err());
    let link = next_link(
        "http://h",
        "p",
        "volumes",
        &q(&[("limit", "2")]),
        &vol("c", ""),
    );
    assert_eq!(
        link[0]["href"],
        "http://h/volume/v3/p/volumes?limit=2&marker=c"
    );
}
