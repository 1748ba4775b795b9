//! The store conformance suite: one set of test functions, written against
//! `etcd_client::Client`, run against the embedded server (`embedded::*`) and a real etcd
//! (`real_etcd::*`, needs `/usr/bin/etcd`; set `CIRRUS_SKIP_REAL_ETCD=1` to skip).
//!
//! Why this file is long: it is one conformance suite, written once against the etcd API and
//! run against both the embedded server and a real etcd; splitting it would split what must
//! stay one list.
//!
//! Each test gets its own fresh server, so revisions are absolute.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Kind, Proc, Server};
use etcd_client::{
    Client, Compare, CompareOp, Event, EventType, GetOptions, PutOptions, SortOrder, SortTarget,
    Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};

/// Generate `embedded::<name>` and `real_etcd::<name>` for every test function.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = crate::common::Server::embedded().await;
                    super::$name(&server).await;
                    server.stop().await;
                }
            )*
        }
        mod real_etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(server) = crate::common::Server::real().await else { return };
                    super::$name(&server).await;
                    server.stop().await;
                }
            )*
        }
    };
}

conformance!(
    revisions_and_versions,
    cas_txn,
    range_at_past_revision,
    pagination_and_sort,
    watch_order_and_resume,
    watch_filters_and_prev_kv,
    watch_compacted_revision,
    compaction_range_errors,
    progress_request,
    progress_notify,
    lease_expiry_deletes_keys,
    lease_revoke_and_errors,
    lease_keepalive_extends,
);

fn grpc(err: etcd_client::Error) -> (tonic::Code, String) {
    match err {
        etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

async fn rev(c: &mut Client) -> i64 {
    c.get("\0probe", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

async fn put_rev(c: &mut Client, k: &str, v: &str) -> i64 {
    c.put(k, v, None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

/// Wait for the next response of `w` carrying events (skips created/progress responses).
async fn next_events(w: &mut WatchStream) -> Vec<Event> {
    loop {
        let resp = tokio::time::timeout(Duration::from_secs(5), w.message())
            .await
            .expect("watch event within 5 s")
            .unwrap()
            .expect("watch stream open");
        if !resp.events().is_empty() {
            return resp.events().to_vec();
        }
        assert!(!resp.canceled(), "watch canceled unexpectedly: {resp:?}");
    }
}

/// Collect at least `n` events.
async fn collect_events(w: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut all = Vec::new();
    while all.len() < n {
        all.extend(next_events(w).await);
    }
    all
}

async fn revisions_and_versions(s: &Server) {
    let mut c = s.client().await;
    assert_eq!(rev(&mut c).await, 1, "an empty store is at revision 1");

    let r = put_rev(&mut c, "a", "1").await;
    assert_eq!(r, 2);
    let kv = c.get("a", None).await.unwrap().kvs()[0].clone();
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 2, 1)
    );

    assert_eq!(put_rev(&mut c, "a", "2").await, 3);
    let kv = c.get("a", None).await.unwrap().kvs()[0].clone();
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 3, 2)
    );

    assert_eq!(put_rev(&mut c, "b", "1").await, 4);
    let del = c.delete("a", None).await.unwrap();
    assert_eq!(del.deleted(), 1);
    assert_eq!(del.header().unwrap().revision(), 5);

    // Deleting nothing does not bump the revision.
    let del = c.delete("nope", None).await.unwrap();
    assert_eq!((del.deleted(), del.header().unwrap().revision()), (0, 5));

    // Re-created key: fresh create revision, version restarts at 1.
    assert_eq!(put_rev(&mut c, "a", "3").await, 6);
    let kv = c.get("a", None).await.unwrap().kvs()[0].clone();
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (6, 6, 1)
    );

    // A txn with several writes is one revision.
    let t = Txn::new().and_then([TxnOp::put("x", "1", None), TxnOp::put("y", "1", None)]);
    let resp = c.txn(t).await.unwrap();
    assert_eq!(resp.header().unwrap().revision(), 7);
    let got = c
        .get("x", Some(GetOptions::new().with_range("z")))
        .await
        .unwrap();
    assert!(got.kvs().iter().all(|kv| kv.mod_revision() == 7));
    assert_eq!(got.count(), 2);

    // prev_kv on put, header on every response.
    let p = c
        .put("x", "2", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(p.prev_key().unwrap().value(), b"1");
    let h = p.header().unwrap();
    assert!(h.cluster_id() != 0 && h.member_id() != 0 && h.raft_term() != 0);
    assert_eq!(h.revision(), 8);
}

async fn cas_txn(s: &Server) {
    let mut c = s.client().await;
    let r = put_rev(&mut c, "cas", "v1").await;

    // Success branch: mod revision matches.
    let t = Txn::new()
        .when([Compare::mod_revision("cas", CompareOp::Equal, r)])
        .and_then([TxnOp::put("cas", "v2", None), TxnOp::get("cas", None)])
        .or_else([TxnOp::get("cas", None)]);
    let resp = c.txn(t).await.unwrap();
    assert!(resp.succeeded());
    assert_eq!(resp.op_responses().len(), 2);
    match &resp.op_responses()[1] {
        TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"v2"),
        other => panic!("expected get, got {other:?}"),
    }

    // Failure branch: stale mod revision; nothing written, revision unchanged.
    let before = rev(&mut c).await;
    let t = Txn::new()
        .when([Compare::mod_revision("cas", CompareOp::Equal, r)])
        .and_then([TxnOp::put("cas", "v3", None)])
        .or_else([TxnOp::get("cas", None)]);
    let resp = c.txn(t).await.unwrap();
    assert!(!resp.succeeded());
    assert_eq!(resp.header().unwrap().revision(), before);
    match &resp.op_responses()[0] {
        TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"v2"),
        other => panic!("expected get, got {other:?}"),
    }

    // Create-if-absent: version == 0 holds for a missing key; a value compare does not.
    let t = Txn::new()
        .when([Compare::version("new", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("new", "1", None)]);
    assert!(c.txn(t.clone()).await.unwrap().succeeded());
    assert!(!c.txn(t).await.unwrap().succeeded());
    let t = Txn::new().when([Compare::value("missing", CompareOp::NotEqual, "x")]);
    assert!(!c.txn(t).await.unwrap().succeeded());

    // Other targets and operators.
    let t = Txn::new().when([
        Compare::value("cas", CompareOp::Greater, "v1"),
        Compare::value("cas", CompareOp::Less, "v3"),
        Compare::version("cas", CompareOp::Equal, 2),
        Compare::create_revision("cas", CompareOp::Equal, r),
        Compare::mod_revision("cas", CompareOp::Greater, r),
        Compare::lease("cas", CompareOp::Equal, 0),
    ]);
    assert!(c.txn(t).await.unwrap().succeeded());

    // Nested txn and delete inside a txn, one revision.
    let before = rev(&mut c).await;
    let inner = Txn::new()
        .when([Compare::value("cas", CompareOp::Equal, "v2")])
        .and_then([TxnOp::delete("new", None)]);
    let t = Txn::new().and_then([TxnOp::put("n1", "x", None), TxnOp::txn(inner)]);
    let resp = c.txn(t).await.unwrap();
    assert_eq!(resp.header().unwrap().revision(), before + 1);
    assert!(c.get("new", None).await.unwrap().kvs().is_empty());
}

async fn range_at_past_revision(s: &Server) {
    let mut c = s.client().await;
    let r1 = put_rev(&mut c, "p/k", "v1").await;
    let r2 = put_rev(&mut c, "p/k", "v2").await;
    put_rev(&mut c, "p/other", "o").await;
    let r3 = c
        .delete("p/k", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();

    let at = |r| Some(GetOptions::new().with_revision(r));
    assert_eq!(c.get("p/k", at(r1)).await.unwrap().kvs()[0].value(), b"v1");
    let kv = c.get("p/k", at(r2)).await.unwrap().kvs()[0].clone();
    assert_eq!(
        (kv.value(), kv.version(), kv.mod_revision()),
        (&b"v2"[..], 2, r2)
    );
    assert!(c.get("p/k", at(r3)).await.unwrap().kvs().is_empty());
    // Header revision is the current revision even for a past read.
    assert_eq!(
        c.get("p/k", at(r1))
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision(),
        r3
    );
    let prefix = c
        .get(
            "p/",
            Some(GetOptions::new().with_prefix().with_revision(r2 + 1)),
        )
        .await
        .unwrap();
    assert_eq!(prefix.count(), 2);

    let err = c.get("p/k", at(r3 + 100)).await.unwrap_err();
    assert_eq!(
        grpc(err),
        (
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision".to_string()
        )
    );
}

async fn pagination_and_sort(s: &Server) {
    let mut c = s.client().await;
    for i in 0..10 {
        put_rev(&mut c, &format!("pg/{i:02}"), &format!("{i}")).await;
    }
    let first = c
        .get("pg/", Some(GetOptions::new().with_prefix().with_limit(3)))
        .await
        .unwrap();
    assert_eq!(
        (first.kvs().len(), first.more(), first.count()),
        (3, true, 10)
    );
    let at = first.header().unwrap().revision();

    // A write between pages must not show up when paging at a fixed revision.
    put_rev(&mut c, "pg/05a", "late").await;
    let mut keys: Vec<Vec<u8>> = first.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    loop {
        let mut from = keys.last().unwrap().clone();
        from.push(0);
        let page = c
            .get(
                from,
                Some(
                    GetOptions::new()
                        .with_range("pg0")
                        .with_limit(3)
                        .with_revision(at),
                ),
            )
            .await
            .unwrap();
        keys.extend(page.kvs().iter().map(|kv| kv.key().to_vec()));
        if !page.more() {
            break;
        }
    }
    let expected: Vec<Vec<u8>> = (0..10).map(|i| format!("pg/{i:02}").into_bytes()).collect();
    assert_eq!(keys, expected);

    let desc = c
        .get(
            "pg/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Key, SortOrder::Descend)
                    .with_limit(2),
            ),
        )
        .await
        .unwrap();
    let got: Vec<&[u8]> = desc.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(got, vec![&b"pg/09"[..], b"pg/08"]);
    assert!(desc.more());
    assert_eq!(desc.count(), 11);

    let by_mod = c
        .get(
            "pg/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Mod, SortOrder::Descend)
                    .with_limit(1),
            ),
        )
        .await
        .unwrap();
    assert_eq!(by_mod.kvs()[0].key(), b"pg/05a");

    let count = c
        .get(
            "pg/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!((count.count(), count.kvs().len()), (11, 0));
    let keys_only = c
        .get("pg/00", Some(GetOptions::new().with_keys_only()))
        .await
        .unwrap();
    assert!(keys_only.kvs()[0].value().is_empty());
    let all = c
        .get("\0", Some(GetOptions::new().with_from_key()))
        .await
        .unwrap();
    assert_eq!(all.count(), 11);
}

async fn watch_order_and_resume(s: &Server) {
    let mut c = s.client().await;
    let mut w = c
        .watch("w/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut writer = s.client().await;
    let mut expected = Vec::new();
    for i in 0..10 {
        expected.push(put_rev(&mut writer, &format!("w/{i}"), "v").await);
    }
    // One txn, two events, one revision, delivered in one response.
    let t = Txn::new().and_then([TxnOp::put("w/a", "1", None), TxnOp::put("w/b", "1", None)]);
    let txn_rev = writer.txn(t).await.unwrap().header().unwrap().revision();
    let events = collect_events(&mut w, 10).await;
    let revs: Vec<i64> = events
        .iter()
        .map(|e| e.kv().unwrap().mod_revision())
        .collect();
    assert_eq!(revs, expected);
    let txn_events = next_events(&mut w).await;
    assert_eq!(
        txn_events.len(),
        2,
        "events of one txn arrive in one response"
    );
    assert!(
        txn_events
            .iter()
            .all(|e| e.kv().unwrap().mod_revision() == txn_rev)
    );

    // Resume from a revision: writes made while no watch was open are replayed exactly once.
    drop(w);
    let last_seen = txn_rev;
    let mut missed = Vec::new();
    for i in 0..5 {
        missed.push(put_rev(&mut writer, &format!("w/m{i}"), "v").await);
    }
    writer.put("unrelated", "x", None).await.unwrap();
    let mut w = c
        .watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(last_seen + 1),
            ),
        )
        .await
        .unwrap();
    // Live writes right after the watch is created must follow the replay with no gap.
    let mut live = Vec::new();
    for i in 0..5 {
        live.push(put_rev(&mut writer, &format!("w/l{i}"), "v").await);
    }
    let events = collect_events(&mut w, 10).await;
    let revs: Vec<i64> = events
        .iter()
        .map(|e| e.kv().unwrap().mod_revision())
        .collect();
    let mut want = missed.clone();
    want.extend(&live);
    assert_eq!(revs, want, "no miss, no repeat, in order");
    // Nothing else pending.
    writer.put("w/final", "v", None).await.unwrap();
    let tail = next_events(&mut w).await;
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].kv().unwrap().key(), b"w/final");
}

async fn watch_filters_and_prev_kv(s: &Server) {
    let mut c = s.client().await;
    put_rev(&mut c, "f", "old").await;
    let mut w = c
        .watch(
            "f",
            Some(
                WatchOptions::new()
                    .with_prev_key()
                    .with_filters([etcd_client::WatchFilterType::NoPut]),
            ),
        )
        .await
        .unwrap();
    let mut w2 = c
        .watch("f", Some(WatchOptions::new().with_prev_key()))
        .await
        .unwrap();
    let mut writer = s.client().await;
    writer.put("f", "new", None).await.unwrap();
    let r = writer
        .delete("f", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let ev = next_events(&mut w).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].event_type(), EventType::Delete);
    assert_eq!(ev[0].kv().unwrap().mod_revision(), r);
    assert_eq!(ev[0].prev_kv().unwrap().value(), b"new");
    let ev = collect_events(&mut w2, 2).await;
    assert_eq!(ev[0].event_type(), EventType::Put);
    assert_eq!(ev[0].prev_kv().unwrap().value(), b"old");
    assert_eq!(ev[1].event_type(), EventType::Delete);
}

async fn watch_compacted_revision(s: &Server) {
    let mut c = s.client().await;
    for i in 0..5 {
        put_rev(&mut c, "cw", &format!("{i}")).await;
    }
    let r = rev(&mut c).await;
    c.compact(r - 1, None).await.unwrap();
    let mut w = c
        .watch("cw", Some(WatchOptions::new().with_start_revision(2)))
        .await
        .unwrap();
    let resp = loop {
        let resp = tokio::time::timeout(Duration::from_secs(5), w.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if resp.canceled() || !resp.events().is_empty() {
            break resp;
        }
    };
    assert!(resp.canceled());
    assert_eq!(resp.compact_revision(), r - 1);
    assert!(resp.events().is_empty());

    // Watching from exactly the compact revision still works and replays it.
    let mut w = c
        .watch("cw", Some(WatchOptions::new().with_start_revision(r - 1)))
        .await
        .unwrap();
    let ev = collect_events(&mut w, 2).await;
    assert_eq!(ev[0].kv().unwrap().mod_revision(), r - 1);
    assert_eq!(ev[1].kv().unwrap().mod_revision(), r);
}

async fn compaction_range_errors(s: &Server) {
    let mut c = s.client().await;
    let r1 = put_rev(&mut c, "c", "1").await;
    let r2 = put_rev(&mut c, "c", "2").await;
    let r3 = put_rev(&mut c, "c", "3").await;
    put_rev(&mut c, "d", "1").await;
    c.delete("d", None).await.unwrap();
    c.compact(r3, None).await.unwrap();

    let compacted = (
        tonic::Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted".to_string(),
    );
    for r in [r1, r2] {
        let err = c
            .get("c", Some(GetOptions::new().with_revision(r)))
            .await
            .unwrap_err();
        assert_eq!(grpc(err), compacted);
    }
    let at = c
        .get("c", Some(GetOptions::new().with_revision(r3)))
        .await
        .unwrap();
    assert_eq!(at.kvs()[0].value(), b"3");
    assert_eq!(at.kvs()[0].version(), 3);
    assert!(c.get("d", None).await.unwrap().kvs().is_empty());
    // Compacting at or below the compact revision again is an error.
    assert_eq!(grpc(c.compact(r2, None).await.unwrap_err()), compacted);
    let future = c.compact(r3 + 100, None).await.unwrap_err();
    assert_eq!(grpc(future).0, tonic::Code::OutOfRange);
    // Writes keep working after compaction.
    let kv = c.put("c", "4", None).await.unwrap();
    assert!(kv.header().unwrap().revision() > r3);
    assert_eq!(c.get("c", None).await.unwrap().kvs()[0].version(), 4);
}

async fn progress_request(s: &Server) {
    let mut c = s.client().await;
    let mut w = c.watch("pr/watched", None).await.unwrap();
    let created = w.message().await.unwrap().unwrap();
    assert!(created.created());
    let r = put_rev(&mut c, "pr/other", "x").await;
    w.request_progress().await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), w.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(resp.events().is_empty());
    assert!(!resp.canceled());
    assert!(
        resp.header().unwrap().revision() >= r,
        "progress revision {} < {r}",
        resp.header().unwrap().revision()
    );
}

async fn progress_notify(s: &Server) {
    let mut c = s.client().await;
    let mut w = c
        .watch("pn", Some(WatchOptions::new().with_progress_notify()))
        .await
        .unwrap();
    let r = put_rev(&mut c, "unrelated", "x").await;
    let start = Instant::now();
    loop {
        let resp = tokio::time::timeout(Duration::from_secs(5), w.message())
            .await
            .expect("progress notification within 5 s")
            .unwrap()
            .unwrap();
        if !resp.created() && resp.events().is_empty() && resp.header().unwrap().revision() >= r {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}

async fn lease_expiry_deletes_keys(s: &Server) {
    let mut c = s.client().await;
    let lease = c.lease_grant(2, None).await.unwrap();
    assert_eq!(lease.ttl(), 2);
    c.put("ttl/a", "1", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap();
    c.put("ttl/b", "1", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap();
    let ttl = c
        .lease_time_to_live(
            lease.id(),
            Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await
        .unwrap();
    assert_eq!(ttl.granted_ttl(), 2);
    assert_eq!(ttl.keys().len(), 2);
    let mut w = c
        .watch("ttl/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let start = Instant::now();
    let mut events = Vec::new();
    while events.len() < 2 {
        let resp = tokio::time::timeout(Duration::from_secs(8), w.message())
            .await
            .expect("lease expiry within 8 s")
            .unwrap()
            .unwrap();
        events.extend(resp.events().iter().cloned());
    }
    assert!(start.elapsed() >= Duration::from_millis(1000));
    assert!(events.iter().all(|e| e.event_type() == EventType::Delete));
    assert_eq!(
        events[0].kv().unwrap().mod_revision(),
        events[1].kv().unwrap().mod_revision(),
        "a lease's keys are deleted in one revision"
    );
    assert!(
        c.get("ttl/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap()
            .kvs()
            .is_empty()
    );
    assert_eq!(
        c.lease_time_to_live(lease.id(), None).await.unwrap().ttl(),
        -1
    );
}

async fn lease_revoke_and_errors(s: &Server) {
    let mut c = s.client().await;
    let lease = c.lease_grant(60, None).await.unwrap();
    c.put("rv/a", "1", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap();
    c.put("rv/b", "1", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap();
    let kv = c.get("rv/a", None).await.unwrap().kvs()[0].clone();
    assert_eq!(kv.lease(), lease.id());
    let listed = c.leases().await.unwrap();
    assert!(listed.leases().iter().any(|l| l.id() == lease.id()));

    let before = rev(&mut c).await;
    let r = c.lease_revoke(lease.id()).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), before + 1);
    assert_eq!(
        c.get("rv/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap()
            .count(),
        0
    );
    let listed = c.leases().await.unwrap();
    assert!(!listed.leases().iter().any(|l| l.id() == lease.id()));

    let not_found = (
        tonic::Code::NotFound,
        "etcdserver: requested lease not found".to_string(),
    );
    assert_eq!(
        grpc(c.lease_revoke(lease.id()).await.unwrap_err()),
        not_found
    );
    let err = c
        .put("rv/c", "1", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap_err();
    assert_eq!(grpc(err), not_found);

    // Client-chosen lease IDs; a duplicate is refused.
    let opts = etcd_client::LeaseGrantOptions::new().with_id(4242);
    assert_eq!(
        c.lease_grant(30, Some(opts.clone())).await.unwrap().id(),
        4242
    );
    let err = c.lease_grant(30, Some(opts)).await.unwrap_err();
    assert_eq!(
        grpc(err),
        (
            tonic::Code::FailedPrecondition,
            "etcdserver: lease already exists".to_string()
        )
    );
    // ignore_lease keeps the key's lease.
    c.put("rv/d", "1", Some(PutOptions::new().with_lease(4242)))
        .await
        .unwrap();
    c.put("rv/d", "2", Some(PutOptions::new().with_ignore_lease()))
        .await
        .unwrap();
    assert_eq!(c.get("rv/d", None).await.unwrap().kvs()[0].lease(), 4242);
    let err = c
        .put(
            "rv/missing",
            "",
            Some(PutOptions::new().with_ignore_value()),
        )
        .await
        .unwrap_err();
    assert_eq!(
        grpc(err),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: key not found".to_string()
        )
    );
}

async fn lease_keepalive_extends(s: &Server) {
    let mut c = s.client().await;
    let lease = c.lease_grant(2, None).await.unwrap();
    c.put("ka", "1", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap();
    let (mut keeper, mut stream) = c.lease_keep_alive(lease.id()).await.unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(3500) {
        keeper.keep_alive().await.unwrap();
        let resp = stream.message().await.unwrap().unwrap();
        assert_eq!(resp.id(), lease.id());
        assert_eq!(resp.ttl(), 2);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        c.get("ka", None).await.unwrap().count(),
        1,
        "kept alive past its TTL"
    );
    let ttl = c.lease_time_to_live(lease.id(), None).await.unwrap();
    assert!(ttl.ttl() >= 0 && ttl.ttl() <= 2);
    // Keep-alive of an unknown lease answers TTL 0, which etcd_client reports as an error.
    match c.lease_keep_alive(999_999).await {
        Err(etcd_client::Error::LeaseKeepAliveError(m)) => assert_eq!(m, "lease not found"),
        other => panic!("expected lease not found, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Durability: acknowledged writes survive SIGKILL.

async fn durability(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = Proc::start(kind, dir.path(), None).await.unwrap();
    let endpoint = proc.endpoint();
    let acked: Arc<Mutex<BTreeMap<String, (String, i64)>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let endpoint = endpoint.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut c) = common::connect(&endpoint).await else {
                return;
            };
            for i in 0.. {
                let key = format!("dur/{t}/{i:05}");
                let value = format!("value-{t}-{i}");
                match c.put(key.as_str(), value.as_str(), None).await {
                    Ok(r) => {
                        let rev = r.header().map_or(0, |h| h.revision());
                        acked.lock().unwrap().insert(key, (value, rev));
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    // Let writes flow, then kill while they are in flight.
    let start = Instant::now();
    while acked.lock().unwrap().len() < 300 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ports = proc.ports();
    proc.kill9();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 300,
        "only {} writes acknowledged",
        acked.len()
    );
    drop(proc);

    let proc = Proc::start(kind, dir.path(), ports).await.unwrap();
    let mut c = common::connect(&proc.endpoint()).await.unwrap();
    let got = c
        .get("dur/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let stored: BTreeMap<String, String> = got
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap().to_string(),
                kv.value_str().unwrap().to_string(),
            )
        })
        .collect();
    let max_rev = acked.values().map(|(_, r)| *r).max().unwrap();
    for (k, (v, _)) in &acked {
        assert_eq!(
            stored.get(k),
            Some(v),
            "acknowledged write {k} lost after kill -9"
        );
    }
    assert!(got.header().unwrap().revision() >= max_rev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_kill9_embedded() {
    durability(Kind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_kill9_real_etcd() {
    if !common::require_real() {
        return;
    }
    durability(Kind::Real).await;
}

// ---------------------------------------------------------------------------------------------
// Embedded-only: restart in process, leases and revisions persist.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_restart_keeps_state_and_leases() {
    use cirrus_store::embedded::{self, EmbeddedConfig};
    let dir = tempfile::tempdir().unwrap();
    let server = embedded::start(EmbeddedConfig::on_disk(dir.path()))
        .await
        .unwrap();
    let mut c = common::connect(&server.endpoint()).await.unwrap();
    let lease = c.lease_grant(30, None).await.unwrap().id();
    c.put("k", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    let r = put_rev(&mut c, "k2", "v").await;
    c.compact(r - 1, None).await.unwrap();
    drop(c);
    server.shutdown().await;

    let server = embedded::start(EmbeddedConfig::on_disk(dir.path()))
        .await
        .unwrap();
    let mut c = common::connect(&server.endpoint()).await.unwrap();
    assert_eq!(rev(&mut c).await, r);
    let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
    assert_eq!(kv.lease(), lease);
    let ttl = c.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 30);
    assert!(ttl.ttl() >= 28, "deadline reset to now + TTL on restart");
    let err = c
        .get("k", Some(GetOptions::new().with_revision(r - 2)))
        .await
        .unwrap_err();
    assert_eq!(grpc(err).0, tonic::Code::OutOfRange);
    server.shutdown().await;
}
