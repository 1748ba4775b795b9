use super::*;

fn limits() -> LoginLimits {
    LoginLimits {
        max_concurrent_hashes: 1,
        hash_wait: Duration::from_secs(5),
        per_address: BucketLimits {
            burst: 3,
            per_second: 1.0,
        },
        per_user: BucketLimits {
            burst: 100,
            per_second: 1.0,
        },
        lockout_failure_attempts: 3,
        lockout_duration: Duration::from_secs(60),
        max_tracked: 4,
        trust_forwarded_for: false,
    }
}

fn addr(last: u8) -> Source {
    Source::of(IpAddr::from([192, 0, 2, last]))
}

#[test]
fn an_address_gets_its_burst_then_429_until_the_bucket_refills() {
    let t = LoginThrottle::new(limits());
    for _ in 0..3 {
        t.admit("u", addr(1)).unwrap();
    }
    let refusal = t.admit("u", addr(1)).unwrap_err();
    assert!(
        matches!(
            refusal,
            Refusal::RateLimited {
                limit: Limit::Address,
                ..
            }
        ),
        "{refusal:?}"
    );
    assert_eq!(refusal.retry_after_secs(), 1);
    t.admit("u", addr(2))
        .expect("another address has its own bucket");
    t.advance(Duration::from_secs(1));
    t.admit("u", addr(1))
        .expect("one token back after a second");
    assert!(t.admit("u", addr(1)).is_err());
    t.advance(Duration::from_secs(3600));
    for _ in 0..3 {
        t.admit("u", addr(1)).unwrap();
    }
    assert!(t.admit("u", addr(1)).is_err(), "never more than the burst");
    assert_eq!(t.stats().rate_limited, 3);
}

#[test]
fn a_user_name_has_its_own_bucket_and_a_refused_attempt_takes_no_token() {
    let mut l = limits();
    l.per_address.burst = 100;
    l.per_user = BucketLimits {
        burst: 2,
        per_second: 0.5,
    };
    let t = LoginThrottle::new(l);
    t.admit("alice", addr(1)).unwrap();
    t.admit("alice", addr(2)).unwrap();
    let refusal = t.admit("alice", addr(3)).unwrap_err();
    assert!(matches!(
        refusal,
        Refusal::RateLimited {
            limit: Limit::User,
            ..
        }
    ));
    assert_eq!(refusal.retry_after_secs(), 2);
    t.admit("bob", addr(3)).expect("address 3 lost no token");
}

#[test]
fn consecutive_failures_lock_a_name_for_the_lockout_duration_and_success_resets() {
    let t = LoginThrottle::new(LoginLimits {
        per_address: BucketLimits {
            burst: 0,
            per_second: 0.0,
        },
        ..limits()
    });
    let ip = addr(1);
    // Two failures, a success, two failures: never three in a row, never locked.
    t.record_failure("alice");
    t.record_failure("alice");
    t.record_success("alice");
    t.record_failure("alice");
    t.record_failure("alice");
    t.admit("alice", ip).expect("not locked");
    t.record_failure("alice");
    let refusal = t.admit("alice", ip).unwrap_err();
    assert!(matches!(refusal, Refusal::Locked { .. }), "{refusal:?}");
    assert_eq!(refusal.retry_after_secs(), 60);
    let error = refusal.error();
    assert_eq!(error.code, StatusCode::UNAUTHORIZED);
    assert!(error.message.contains("temporarily locked"), "{error:?}");
    t.admit("nobody-else", ip)
        .expect("other names are not locked");
    t.advance(Duration::from_secs(59));
    assert!(t.admit("alice", ip).is_err(), "still locked");
    t.advance(Duration::from_secs(1));
    t.admit("alice", ip).expect("the lock has ended");
    t.record_failure("alice");
    t.admit("alice", ip)
        .expect("a fresh count after the lock: one failure does not lock again");
    let stats = t.stats();
    assert_eq!((stats.lockouts, stats.locked, stats.failures), (1, 2, 6));
}

#[test]
fn failures_are_forgotten_a_lockout_duration_after_the_last_one() {
    let t = LoginThrottle::new(limits());
    t.record_failure("alice");
    t.record_failure("alice");
    t.advance(Duration::from_secs(61));
    t.record_failure("alice");
    t.admit("alice", addr(1)).expect("the old failures expired");
}

#[test]
fn zero_lockout_attempts_never_locks() {
    let t = LoginThrottle::new(LoginLimits {
        lockout_failure_attempts: 0,
        ..limits()
    });
    for _ in 0..10 {
        t.record_failure("alice");
    }
    t.admit("alice", addr(1)).unwrap();
}

#[test]
fn tables_stay_bounded_and_a_full_table_shares_an_overflow_bucket() {
    let t = LoginThrottle::new(limits());
    for i in 0..4 {
        t.admit("u", addr(i)).unwrap();
    }
    // Four live buckets (each took a token): a fifth address shares the overflow bucket.
    for _ in 0..3 {
        t.admit("u", addr(100)).unwrap();
    }
    assert!(
        t.admit("u", addr(101)).is_err(),
        "the overflow bucket is shared"
    );
    assert_eq!(t.tables().addresses.buckets.len(), 4);
    // Once they refilled, the old buckets are dropped and newcomers get their own again.
    t.advance(Duration::from_secs(10));
    t.admit("u", addr(101)).unwrap();
    let tables = t.tables();
    assert_eq!(tables.addresses.buckets.len(), 1);
    assert!(tables.users.buckets.len() <= 4);
    drop(tables);

    for i in 0..100 {
        t.record_failure(&format!("user-{i}"));
    }
    assert_eq!(t.tables().failures.len(), 4, "the failure table is bounded");
    for _ in 0..3 {
        t.record_failure("victim");
    }
    assert!(matches!(
        t.admit("victim", addr(200)),
        Err(Refusal::Locked { .. })
    ));
}

#[test]
fn long_user_names_are_kept_as_hashes() {
    let t = LoginThrottle::new(limits());
    let long = "x".repeat(100_000);
    t.record_failure(&long);
    t.admit(&long, addr(1)).unwrap();
    let size = std::mem::size_of::<(u64, Failures)>();
    assert!(size < 64, "{size}");
}

#[test]
fn the_source_is_the_peer_unless_a_proxy_is_trusted() {
    let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.append(FORWARDED_FOR, "203.0.113.9".parse().unwrap());
    headers.append(FORWARDED_FOR, "198.51.100.1, 192.0.2.7".parse().unwrap());
    let t = LoginThrottle::new(limits());
    assert_eq!(
        t.source(Some(peer), &headers),
        Source::of(peer.ip()),
        "X-Forwarded-For is ignored by default"
    );
    assert_eq!(t.source(None, &headers), Source::Unknown);
    let t = LoginThrottle::new(LoginLimits {
        trust_forwarded_for: true,
        ..limits()
    });
    assert_eq!(
        t.source(Some(peer), &headers),
        addr(7),
        "the rightmost entry, appended by the proxy"
    );
    let mut garbage = HeaderMap::new();
    garbage.insert(FORWARDED_FOR, "not-an-address".parse().unwrap());
    assert_eq!(t.source(Some(peer), &garbage), Source::of(peer.ip()));
    let mut with_port = HeaderMap::new();
    with_port.insert(FORWARDED_FOR, "[2001:db8::1]:443".parse().unwrap());
    assert_eq!(
        t.source(None, &with_port),
        Source::of("2001:db8::ffff:1".parse().unwrap()),
        "IPv6 by /64"
    );
    assert_eq!(
        Source::of("::ffff:192.0.2.7".parse().unwrap()),
        addr(7),
        "IPv4-mapped IPv6 is IPv4"
    );
}

#[tokio::test]
async fn no_permit_within_the_wait_is_busy_and_a_lock_is_checked_after_the_wait() {
    let impatient = LoginThrottle::new(LoginLimits {
        hash_wait: Duration::ZERO,
        ..limits()
    });
    let held = impatient.hash_permit("a").await.unwrap();
    assert_eq!(impatient.hash_permit("a").await.unwrap_err(), Refusal::Busy);
    drop(held);
    drop(
        impatient
            .hash_permit("a")
            .await
            .expect("the permit is back"),
    );
    assert_eq!(impatient.stats().busy, 1);

    let t = Arc::new(LoginThrottle::new(LoginLimits {
        hash_wait: Duration::from_secs(3600),
        ..limits()
    }));
    let held = t.hash_permit("a").await.unwrap();
    let waiting = tokio::spawn({
        let t = t.clone();
        async move { t.hash_permit("victim").await }
    });
    tokio::task::yield_now().await;
    for _ in 0..3 {
        t.record_failure("victim");
    }
    drop(held);
    assert!(matches!(
        waiting.await.unwrap(),
        Err(Refusal::Locked { .. })
    ));
    let permit = t.hash_permit("a").await.unwrap();
    assert_eq!(t.verify(permit, || 42).await.unwrap(), 42);
    drop(
        t.hash_permit("a")
            .await
            .expect("verify gave the permit back"),
    );
    let busy = Refusal::Busy.into_response();
    assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
    let stats = t.stats();
    assert_eq!((stats.busy, stats.locked, stats.hashes), (0, 1, 1));
}
