//! Encoding, framing and routing tests against a scripted server on a `UnixStream` pair, plus
//! one `real_` test against the running ovsdb-server.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;

/// A client over one end of a socket pair; the other end is the scripted server.
fn pair() -> (Client, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    let r = a.try_clone().unwrap();
    let sd = a.try_clone().unwrap();
    let c = Client::from_parts(
        r,
        a,
        Box::new(move || {
            let _ = sd.shutdown(std::net::Shutdown::Both);
        }),
        Duration::from_secs(5),
    );
    (c, b)
}

/// Reads exactly one JSON value from the server end (frames are bare concatenated JSON).
fn read_msg(s: &mut UnixStream) -> Value {
    let mut de = serde_json::Deserializer::from_reader(s.try_clone().unwrap()).into_iter();
    de.next().unwrap().unwrap()
}

#[test]
fn atoms_sets_and_maps_encode_as_rfc7047() {
    assert_eq!(Atom::Uuid("u1".into()).to_json(), json!(["uuid", "u1"]));
    assert_eq!(
        Atom::NamedUuid("p".into()).to_json(),
        json!(["named-uuid", "p"])
    );
    assert_eq!(Datum::empty().to_json(), json!(["set", []]));
    assert_eq!(
        Datum::optional(Some(Atom::Int(7))).to_json(),
        json!(7),
        "an optional column with a value is the bare atom"
    );
    let m: BTreeMap<_, _> = [("iface-id".to_owned(), "abc".to_owned())].into();
    assert_eq!(
        Datum::str_map(&m).to_json(),
        json!(["map", [["iface-id", "abc"]]])
    );
    assert_eq!(
        Datum::uuids(["a", "b"]).to_json(),
        json!(["set", [["uuid", "a"], ["uuid", "b"]]])
    );
    // And back.
    for v in [
        json!(["map", [["k", "v"], ["k2", "v2"]]]),
        json!(["set", [1, 2]]),
        json!(["uuid", "x"]),
        json!("s"),
        json!(true),
        json!(1.5),
    ] {
        assert_eq!(Datum::from_json(&v).unwrap().to_json(), v);
    }
    assert!(Datum::from_json(&json!(["bogus", []])).is_none());
}

#[test]
fn row_accessors_decode_optional_and_set_columns() {
    let row = Row(json!({
        "_uuid": ["uuid", "r1"],
        "name": "p1",
        "tag": ["set", []],
        "ofport": 5,
        "ports": ["set", [["uuid", "a"], ["uuid", "b"]]],
        "interfaces": ["uuid", "i1"],
        "external_ids": ["map", [["iface-id", "x"]]],
        "datapath_types": ["set", ["netdev", "system"]],
    })
    .as_object()
    .unwrap()
    .clone());
    assert_eq!(row.uuid().as_deref(), Some("r1"));
    assert_eq!(row.str("name").as_deref(), Some("p1"));
    assert_eq!(row.int("tag"), None, "an empty optional is None");
    assert_eq!(row.int("ofport"), Some(5));
    assert_eq!(row.uuids("ports"), vec!["a", "b"]);
    assert_eq!(
        row.uuids("interfaces"),
        vec!["i1"],
        "a one-element set may be bare"
    );
    assert_eq!(row.str_map("external_ids")["iface-id"], "x");
    assert_eq!(row.strs("datapath_types"), vec!["netdev", "system"]);
}

#[test]
fn operations_encode_as_rfc7047() {
    let mut row = NewRow::new();
    row.insert("name".into(), Datum::Atom(Atom::str("p")));
    assert_eq!(
        Op::insert("Port", row, Some("np")).to_json(),
        json!({"op": "insert", "table": "Port", "row": {"name": "p"}, "uuid-name": "np"})
    );
    assert_eq!(
        Op::wait_absent("Port", vec![Cond::eq_str("name", "p")]).to_json(),
        json!({"op": "wait", "table": "Port", "where": [["name", "==", "p"]],
               "columns": ["_uuid"], "until": "==", "rows": [], "timeout": 0})
    );
    assert_eq!(
        Op::mutate(
            "Bridge",
            vec![Cond::eq_str("name", "b")],
            vec![Mutation::insert(
                "ports",
                Datum::Set(vec![Atom::NamedUuid("np".into())])
            )]
        )
        .to_json(),
        json!({"op": "mutate", "table": "Bridge", "where": [["name", "==", "b"]],
               "mutations": [["ports", "insert", ["set", [["named-uuid", "np"]]]]]})
    );
    assert_eq!(
        Op::delete("Port", vec![Cond::uuid("u")]).to_json(),
        json!({"op": "delete", "table": "Port", "where": [["_uuid", "==", ["uuid", "u"]]]})
    );
    assert_eq!(
        Op::Comment("hi".into()).to_json(),
        json!({"op": "comment", "comment": "hi"})
    );
}

#[test]
fn transact_routes_reply_answers_echo_and_decodes_results() {
    let (c, mut srv) = pair();
    let t = std::thread::spawn(move || {
        c.transact(
            "Open_vSwitch",
            &[
                Op::select("Bridge", vec![], &["name"]),
                Op::Comment("x".into()),
            ],
        )
    });
    let req = read_msg(&mut srv);
    assert_eq!(req["method"], "transact");
    assert_eq!(req["params"][0], "Open_vSwitch");
    assert_eq!(req["params"][1]["op"], "select");
    // The server pings first; the client must answer with the same id and params.
    srv.write_all(br#"{"id":"echo","method":"echo","params":[1]}"#)
        .unwrap();
    let echo = read_msg(&mut srv);
    assert_eq!(echo, json!({"id": "echo", "result": [1], "error": null}));
    // Two frames in one write, split oddly: an unrelated reply, then ours in two pieces.
    let reply = json!({"id": req["id"], "error": null,
        "result": [{"rows": [{"name": "br-x"}]}, {}]})
    .to_string();
    let (a, b) = reply.split_at(reply.len() / 2);
    srv.write_all(format!(r#"{{"id":999,"result":[],"error":null}}{a}"#).as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    srv.write_all(b.as_bytes()).unwrap();
    let res = t.join().unwrap().unwrap();
    assert_eq!(res.len(), 2);
    assert_eq!(res[0].rows[0].str("name").as_deref(), Some("br-x"));
}

#[test]
fn operation_error_is_typed_with_its_index() {
    let (c, mut srv) = pair();
    let t = std::thread::spawn(move || {
        c.transact(
            "Open_vSwitch",
            &[Op::Comment("a".into()), Op::wait_absent("Port", vec![])],
        )
    });
    let req = read_msg(&mut srv);
    srv.write_all(
        json!({"id": req["id"], "error": null,
               "result": [{}, {"error": "timed out", "details": "wait"}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    match t.join().unwrap() {
        Err(e @ Error::OperationFailed { index: 1, .. }) => assert!(e.is_conflict()),
        other => panic!("want OperationFailed at 1, got {other:?}"),
    }
}

#[test]
fn commit_error_after_the_results_is_reported() {
    let (c, mut srv) = pair();
    let t = std::thread::spawn(move || c.transact("db", &[Op::Comment("a".into())]));
    let req = read_msg(&mut srv);
    srv.write_all(
        json!({"id": req["id"], "error": null,
               "result": [{}, {"error": "constraint violation", "details": "dup"}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let e = t.join().unwrap().unwrap_err();
    assert!(
        matches!(&e, Error::OperationFailed { index: 1, error, details: Some(d) }
            if error == "constraint violation" && d == "dup"),
        "{e:?}"
    );
}

#[test]
fn rpc_error_and_close_are_typed() {
    let (c, mut srv) = pair();
    let c = std::sync::Arc::new(c);
    let c2 = c.clone();
    let t = std::thread::spawn(move || c2.transact("nope", &[]));
    let req = read_msg(&mut srv);
    srv.write_all(
        json!({"id": req["id"], "result": null,
               "error": {"error": "unknown database", "details": "nope"}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert!(matches!(
        t.join().unwrap(),
        Err(Error::Rpc { error, .. }) if error == "unknown database"
    ));
    // A call in flight when the server goes away fails with Closed, not a hang.
    let c2 = c.clone();
    let t = std::thread::spawn(move || c2.list_dbs());
    let _ = read_msg(&mut srv);
    drop(srv);
    assert!(matches!(t.join().unwrap(), Err(Error::Closed)));
    assert!(c.is_closed());
    assert!(matches!(c.list_dbs(), Err(Error::Closed)));
}

#[test]
fn a_missing_reply_times_out() {
    let (a, mut srv) = UnixStream::pair().unwrap();
    let c = Client::from_parts(
        a.try_clone().unwrap(),
        a,
        Box::new(|| {}),
        Duration::from_millis(100),
    );
    let t = std::thread::spawn(move || c.list_dbs());
    let _ = read_msg(&mut srv);
    assert!(matches!(t.join().unwrap(), Err(Error::Timeout { .. })));
}

#[test]
fn monitor_returns_initial_rows_then_updates() {
    let (c, mut srv) = pair();
    let t = std::thread::spawn(move || {
        let m = c.monitor("Open_vSwitch", &[("Bridge", &["name", "ports"])])?;
        Ok::<_, Error>((c, m))
    });
    let req = read_msg(&mut srv);
    assert_eq!(req["method"], "monitor");
    assert_eq!(
        req["params"][2],
        json!({"Bridge": {"columns": ["name", "ports"]}})
    );
    let mid = req["params"][1].clone();
    srv.write_all(
        json!({"id": req["id"], "error": null,
               "result": {"Bridge": {"u1": {"new": {"name": "b1", "ports": ["set", []]}}}}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let (_c, m) = t.join().unwrap().unwrap();
    assert_eq!(
        m.initial["Bridge"]["u1"].new.as_ref().unwrap().str("name"),
        Some("b1".into())
    );
    srv.write_all(
        json!({"id": null, "method": "update",
               "params": [mid, {"Bridge": {"u1": {"old": {"name": "b1"}}}}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let u = m.updates.recv_timeout(Duration::from_secs(5)).unwrap();
    let ru = &u["Bridge"]["u1"];
    assert!(ru.new.is_none(), "a delete has no new row");
    assert_eq!(ru.old.as_ref().unwrap().str("name"), Some("b1".into()));
    // Dropping the monitor cancels it on the server.
    drop(m);
    let cancel = read_msg(&mut srv);
    assert_eq!(cancel["method"], "monitor_cancel");
    assert_eq!(cancel["params"][0], mid);
}

#[test]
fn dropping_the_client_stops_the_reader() {
    let (c, mut srv) = pair();
    drop(c);
    let mut buf = [0u8; 1];
    // The client shut its end down: the server reads EOF.
    srv.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(srv.read(&mut buf).unwrap(), 0);
}

/// The real ovsdb-server: list_dbs, a read transaction, a failing wait, and a monitor that
/// sees a change made by another connection (a test-unique `external_ids` key added to the
/// Open_vSwitch row and removed again).
#[test]
fn real_ovsdb_transact_and_monitor() {
    if std::env::var("CIRRUS_SKIP_OVS").as_deref() == Ok("1") {
        eprintln!("SKIP real_ovsdb_transact_and_monitor: CIRRUS_SKIP_OVS=1");
        return;
    }
    let c = Client::connect_unix(Path::new(DEFAULT_SOCKET)).unwrap_or_else(|e| {
        panic!(
            "ovsdb-server is not reachable at {DEFAULT_SOCKET}: {e}\n\
             start it with `setsid /work/main/hack/start-ovs.sh start`, or set CIRRUS_SKIP_OVS=1"
        )
    });
    assert!(c.list_dbs().unwrap().contains(&OPEN_VSWITCH_DB.to_owned()));
    let r = c
        .transact(
            OPEN_VSWITCH_DB,
            &[
                Op::select("Open_vSwitch", vec![], &["_uuid", "datapath_types"]),
                Op::Comment("cirrus ovsdb test".into()),
            ],
        )
        .unwrap();
    assert_eq!(r[0].rows.len(), 1);
    assert!(!r[0].rows[0].strs("datapath_types").is_empty());
    // A wait that cannot hold fails with a typed error at its index.
    let e = c
        .transact(
            OPEN_VSWITCH_DB,
            &[
                Op::Comment("x".into()),
                Op::Wait {
                    table: "Open_vSwitch".into(),
                    r#where: vec![],
                    columns: vec!["_uuid".into()],
                    until: Until::Eq,
                    rows: vec![],
                    timeout_ms: Some(0),
                },
            ],
        )
        .unwrap_err();
    assert!(
        matches!(&e, Error::OperationFailed { index: 1, error, .. } if error == "timed out"),
        "{e:?}"
    );
    // Monitor, then change something from a second connection.
    let m = c
        .monitor(OPEN_VSWITCH_DB, &[("Open_vSwitch", &["external_ids"])])
        .unwrap();
    assert_eq!(m.initial["Open_vSwitch"].len(), 1);
    let key = format!("cirrus-test-{}", std::process::id());
    let c2 = Client::connect_unix(Path::new(DEFAULT_SOCKET)).unwrap();
    let kv = Datum::Map(vec![(Atom::str(&key), Atom::str("1"))]);
    c2.transact(
        OPEN_VSWITCH_DB,
        &[Op::mutate(
            "Open_vSwitch",
            vec![],
            vec![Mutation::insert("external_ids", kv)],
        )],
    )
    .unwrap();
    let cleanup = || {
        c2.transact(
            OPEN_VSWITCH_DB,
            &[Op::mutate(
                "Open_vSwitch",
                vec![],
                vec![Mutation::delete(
                    "external_ids",
                    Datum::Set(vec![Atom::str(&key)]),
                )],
            )],
        )
    };
    let u = m.updates.recv_timeout(Duration::from_secs(5));
    cleanup().unwrap();
    let u = u.expect("an update notification");
    let new = u["Open_vSwitch"]
        .values()
        .next()
        .unwrap()
        .new
        .clone()
        .unwrap();
    assert_eq!(
        new.str_map("external_ids").get(&key).map(String::as_str),
        Some("1")
    );
}
