//! Login throttling: what keeps anonymous `POST /identity/v3/auth/tokens` from exhausting
//! the API. (About 900 lines: the limiter is ~450, the rest are its table tests, which
//! belong beside it.)
//!
//! Every password login costs one argon2id verification: 19 MiB of memory and tens of
//! milliseconds of a core (`cirrus_auth::password`). Unbounded, a flood of logins fills the
//! blocking pool (hundreds of threads × 19 MiB) and starves everything else. A login passes,
//! in this order (the cheap checks first, nothing here touches the store):
//!
//! 1. **Lockout** (Keystone's `lockout_failure_attempts` / `lockout_duration`): after
//!    [`LoginLimits::lockout_failure_attempts`] consecutive wrong passwords for a user name,
//!    the name is locked for [`LoginLimits::lockout_duration`]: `401` saying that the account
//!    is temporarily locked, without running argon2 (even for the right password). A
//!    successful login clears the count. Names are locked whether or not such a user exists,
//!    so a lockout tells nothing about which users exist. When a lock ends, the name starts
//!    afresh; failures are also forgotten once `lockout_duration` has passed since the last
//!    one (Keystone keeps counting across lock periods; keeping nothing past the period is
//!    what keeps the table bounded).
//! 2. **Token buckets** per source address ([`LoginLimits::per_address`]) and per user name
//!    ([`LoginLimits::per_user`]): an attempt takes one token from both (or from neither);
//!    an empty bucket answers `429` with `Retry-After` (the seconds until it holds a token).
//!    The source is the TCP peer's address (IPv6 by /64, the block one host usually holds);
//!    `X-Forwarded-For` (its rightmost entry, the one the proxy appended) only when
//!    [`LoginLimits::trust_forwarded_for`] says a proxy is in front — otherwise any client
//!    could claim any address. Without a known peer (a server run without connection
//!    info) every login shares one global bucket.
//! 3. **Hashing permits**: at most [`LoginLimits::max_concurrent_hashes`] verifications run
//!    at once (the number of cores by default). A login that gets no permit within
//!    [`LoginLimits::hash_wait`] answers `429` with `Retry-After: 1`. The permit moves into
//!    the blocking task, so a client that hangs up does not free it while its hash still
//!    runs.
//!
//! **Bounded memory**: user names are kept as 64-bit keyed hashes (never the name: a
//! 100 KiB name costs 8 bytes), and each table holds at most [`LoginLimits::max_tracked`]
//! entries. A bucket that has refilled is the same as no bucket and is dropped; when a
//! bucket table is full of live buckets, newcomers share one overflow bucket (so churning
//! through addresses or names gains nothing); when the failure table is full, expired
//! entries go first, then the one whose count would be forgotten soonest.
//!
//! **Clock**: a monotonic clock that tests can move forward ([`LoginThrottle::advance`]),
//! so that lock periods and refills are tested without sleeping.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::KeystoneError;

/// Header naming the client behind a proxy (`client, proxy1, proxy2`).
pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// The longest `Retry-After` announced (an empty bucket refilled at a tiny rate).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How often, at most, a full bucket table is scanned for buckets that refilled.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// A token bucket's shape: `burst` attempts at once, regained at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketLimits {
    /// Attempts allowed in a burst (the bucket's capacity); `0` turns this limit off.
    pub burst: u32,
    /// Attempts regained per second (a rate of `0` never refills).
    pub per_second: f64,
}

impl BucketLimits {
    fn enabled(&self) -> bool {
        self.burst > 0
    }
}

/// The limits on password logins; part of [`ApiState`](crate::ApiState) (through its
/// [`LoginThrottle`]). The defaults suit one API process on a small host and let a CI run or
/// dozens of node agents log in at once from one address.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginLimits {
    /// Password verifications running at once (default: the number of cores).
    pub max_concurrent_hashes: usize,
    /// How long a login waits for a verification permit before `429` (default 3 s).
    pub hash_wait: Duration,
    /// Logins per source address (default: bursts of 100, 10 per second).
    pub per_address: BucketLimits,
    /// Logins per user name (default: bursts of 20, 2 per second).
    pub per_user: BucketLimits,
    /// Consecutive wrong passwords that lock a user name (Keystone's
    /// `lockout_failure_attempts`; default 10; `0` never locks).
    pub lockout_failure_attempts: u32,
    /// How long a lock lasts (Keystone's `lockout_duration`; default 5 minutes).
    pub lockout_duration: Duration,
    /// Entries kept per table (addresses, user names, failure counts); default 10 000.
    pub max_tracked: usize,
    /// Take the client's address from `X-Forwarded-For` (only behind a proxy that sets it;
    /// default `false`: the TCP peer's address).
    pub trust_forwarded_for: bool,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            max_concurrent_hashes: std::thread::available_parallelism()
                .map(std::num::NonZeroUsize::get)
                .unwrap_or(1),
            hash_wait: Duration::from_secs(3),
            per_address: BucketLimits {
                burst: 1000,
                per_second: 100.0,
            },
            per_user: BucketLimits {
                burst: 300,
                per_second: 30.0,
            },
            lockout_failure_attempts: 10,
            lockout_duration: Duration::from_secs(300),
            max_tracked: 10_000,
            trust_forwarded_for: false,
        }
    }
}

/// Where a login comes from, as far as the rate limits are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A client address (IPv4, or an IPv6 /64 prefix).
    Address(IpAddr),
    /// No address known: all such logins share one bucket.
    Unknown,
}

impl Source {
    /// The source for `ip`: IPv4-mapped IPv6 as IPv4, other IPv6 addresses by their /64.
    pub fn of(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))),
            },
            v4 => v4,
        };
        Self::Address(ip)
    }
}

/// Which rate limit refused a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The source address's bucket was empty.
    Address,
    /// The user name's bucket was empty.
    User,
}

/// Why a login was refused before its password was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The user name is locked after too many wrong passwords: `401`.
    Locked {
        /// Time left until the lock ends.
        retry_after: Duration,
    },
    /// A rate limit's bucket is empty: `429`.
    RateLimited {
        /// Which limit.
        limit: Limit,
        /// Time until the bucket holds a token again.
        retry_after: Duration,
    },
    /// No verification permit came free within [`LoginLimits::hash_wait`]: `429`.
    Busy,
}

impl Refusal {
    /// Whole seconds for `Retry-After` (rounded up, at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        let wait = match self {
            Refusal::Locked { retry_after } | Refusal::RateLimited { retry_after, .. } => {
                *retry_after
            }
            Refusal::Busy => Duration::from_secs(1),
        };
        let secs = wait.min(MAX_RETRY_AFTER).as_secs_f64().ceil();
        // At most MAX_RETRY_AFTER (3600 s), so the conversion is exact.
        (secs as u64).max(1)
    }

    /// The Keystone error this refusal answers with.
    pub fn error(&self) -> KeystoneError {
        let secs = self.retry_after_secs();
        match self {
            Refusal::Locked { .. } => KeystoneError::unauthorized(format!(
                "The request you have made requires authentication. The account is temporarily \
                 locked after too many failed login attempts; try again in {secs} seconds."
            )),
            Refusal::RateLimited { limit, .. } => KeystoneError {
                code: StatusCode::TOO_MANY_REQUESTS,
                message: format!(
                    "Too many login attempts {}; retry in {secs} seconds.",
                    match limit {
                        Limit::Address => "from this address",
                        Limit::User => "for this user",
                    }
                ),
            },
            Refusal::Busy => KeystoneError {
                code: StatusCode::TOO_MANY_REQUESTS,
                message: format!(
                    "The identity service is busy checking other passwords; retry in {secs} \
                     seconds."
                ),
            },
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = self.error().into_response();
        if !matches!(self, Refusal::Locked { .. }) {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(self.retry_after_secs()),
            );
        }
        response
    }
}

/// Counts of what the throttle decided since it was made (for tests and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginStats {
    /// Logins that reached the throttle.
    pub attempts: u64,
    /// Refused with `401` because the user name was locked.
    pub locked: u64,
    /// Refused with `429` by a rate limit.
    pub rate_limited: u64,
    /// Refused with `429` for want of a verification permit.
    pub busy: u64,
    /// Password verifications run (argon2).
    pub hashes: u64,
    /// Wrong passwords (or unknown, disabled or password-less users) recorded.
    pub failures: u64,
    /// Times a user name became locked.
    pub lockouts: u64,
}

#[derive(Debug, Default)]
struct Counters {
    attempts: AtomicU64,
    locked: AtomicU64,
    rate_limited: AtomicU64,
    busy: AtomicU64,
    hashes: AtomicU64,
    failures: AtomicU64,
    lockouts: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A monotonic clock that tests can move forward.
#[derive(Debug, Default)]
struct Clock {
    skew_nanos: AtomicU64,
}

impl Clock {
    fn now(&self) -> Instant {
        Instant::now() + Duration::from_nanos(self.skew_nanos.load(Ordering::Relaxed))
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(limits: BucketLimits, now: Instant) -> Self {
        Self {
            tokens: f64::from(limits.burst),
            at: now,
        }
    }

    fn refill(&mut self, limits: BucketLimits, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limits.per_second).min(f64::from(limits.burst));
        self.at = self.at.max(now);
    }

    /// `None` when a token is there; else the time until one is.
    fn shortfall(&self, limits: BucketLimits) -> Option<Duration> {
        if self.tokens >= 1.0 {
            return None;
        }
        let secs = (1.0 - self.tokens) / limits.per_second;
        Some(Duration::try_from_secs_f64(secs).map_or(MAX_RETRY_AFTER, |d| d.min(MAX_RETRY_AFTER)))
    }

    fn is_full(&self, limits: BucketLimits) -> bool {
        self.tokens >= f64::from(limits.burst)
    }
}

#[derive(Debug)]
struct BucketTable<K> {
    limits: BucketLimits,
    buckets: HashMap<K, Bucket>,
    overflow: Bucket,
    next_purge: Instant,
}

impl<K: std::hash::Hash + Eq + Copy> BucketTable<K> {
    fn new(limits: BucketLimits, now: Instant) -> Self {
        Self {
            limits,
            buckets: HashMap::new(),
            overflow: Bucket::full(limits, now),
            next_purge: now,
        }
    }

    /// The refilled bucket of `key` (the shared overflow bucket when the table is full of
    /// live buckets).
    fn bucket(&mut self, key: K, now: Instant, max: usize) -> &mut Bucket {
        let limits = self.limits;
        if !self.buckets.contains_key(&key) && self.buckets.len() >= max && now >= self.next_purge {
            self.next_purge = now + PURGE_EVERY;
            self.buckets.retain(|_, b| {
                b.refill(limits, now);
                !b.is_full(limits)
            });
        }
        let bucket = if self.buckets.contains_key(&key) || self.buckets.len() < max {
            self.buckets
                .entry(key)
                .or_insert_with(|| Bucket::full(limits, now))
        } else {
            &mut self.overflow
        };
        bucket.refill(limits, now);
        bucket
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

impl Failures {
    /// When this entry means nothing any more.
    fn expires(&self, duration: Duration) -> Instant {
        self.locked_until.unwrap_or(self.last + duration)
    }
}

#[derive(Debug)]
struct Tables {
    addresses: BucketTable<Source>,
    users: BucketTable<u64>,
    failures: HashMap<u64, Failures>,
}

/// The login throttle of one API process: lockouts, per-address and per-user token buckets
/// and the verification permits (see the module documentation).
pub struct LoginThrottle {
    limits: LoginLimits,
    hashing: Arc<Semaphore>,
    tables: Mutex<Tables>,
    names: RandomState,
    clock: Clock,
    counters: Counters,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("limits", &self.limits)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(LoginLimits::default())
    }
}

impl LoginThrottle {
    /// A throttle enforcing `limits` (at least one verification permit).
    pub fn new(limits: LoginLimits) -> Self {
        let clock = Clock::default();
        let now = clock.now();
        Self {
            hashing: Arc::new(Semaphore::new(limits.max_concurrent_hashes.max(1))),
            tables: Mutex::new(Tables {
                addresses: BucketTable::new(limits.per_address, now),
                users: BucketTable::new(limits.per_user, now),
                failures: HashMap::new(),
            }),
            names: RandomState::new(),
            clock,
            counters: Counters::default(),
            limits,
        }
    }

    /// The limits enforced.
    pub fn limits(&self) -> &LoginLimits {
        &self.limits
    }

    /// What was decided so far.
    pub fn stats(&self) -> LoginStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LoginStats {
            attempts: get(&c.attempts),
            locked: get(&c.locked),
            rate_limited: get(&c.rate_limited),
            busy: get(&c.busy),
            hashes: get(&c.hashes),
            failures: get(&c.failures),
            lockouts: get(&c.lockouts),
        }
    }

    /// Moves this throttle's clock forward by `by`: buckets refill and locks end as if that
    /// much time had passed (tests; nothing in the product calls it).
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.clock.skew_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The source of a login from TCP peer `peer` (`None`: unknown) with `headers`.
    pub fn source(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Source {
        if self.limits.trust_forwarded_for
            && let Some(ip) = forwarded_for(headers)
        {
            return Source::of(ip);
        }
        peer.map_or(Source::Unknown, |p| Source::of(p.ip()))
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn name_key(&self, user: &str) -> u64 {
        self.names.hash_one(user)
    }

    /// Admits a login for `user` from `source`, or says why not: the name is locked (`401`),
    /// or the address's or the name's bucket is empty (`429`). An admitted login has taken
    /// one token from each bucket.
    pub fn admit(&self, user: &str, source: Source) -> Result<(), Refusal> {
        bump(&self.counters.attempts);
        let now = self.clock.now();
        let key = self.name_key(user);
        let max = self.limits.max_tracked.max(1);
        let mut tables = self.tables();
        if let Err(refusal) = self.check_lock(&mut tables, key, now) {
            bump(&self.counters.locked);
            return Err(refusal);
        }
        let Tables {
            addresses, users, ..
        } = &mut *tables;
        let mut address = addresses
            .limits
            .enabled()
            .then(|| addresses.bucket(source, now, max));
        let mut name = users.limits.enabled().then(|| users.bucket(key, now, max));
        let short_address = address
            .as_ref()
            .and_then(|b| b.shortfall(self.limits.per_address));
        let short_name = name
            .as_ref()
            .and_then(|b| b.shortfall(self.limits.per_user));
        let refusal = match (short_address, short_name) {
            (None, None) => None,
            (Some(a), Some(u)) if u > a => Some((Limit::User, u)),
            (Some(a), _) => Some((Limit::Address, a)),
            (None, Some(u)) => Some((Limit::User, u)),
        };
        if let Some((limit, retry_after)) = refusal {
            bump(&self.counters.rate_limited);
            return Err(Refusal::RateLimited { limit, retry_after });
        }
        for bucket in [address.as_mut(), name.as_mut()].into_iter().flatten() {
            bucket.tokens -= 1.0;
        }
        Ok(())
    }

    fn check_lock(&self, tables: &mut Tables, key: u64, now: Instant) -> Result<(), Refusal> {
        if self.limits.lockout_failure_attempts == 0 {
            return Ok(());
        }
        let Some(failures) = tables.failures.get(&key) else {
            return Ok(());
        };
        match failures.locked_until {
            Some(until) if until > now => Err(Refusal::Locked {
                retry_after: until - now,
            }),
            Some(_) => {
                tables.failures.remove(&key);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Waits (at most [`LoginLimits::hash_wait`]) for a verification permit for a login of
    /// `user`; `Busy` without one. The name's lock is checked again once the permit is there
    /// (it may have been locked while this login waited), so that no hash runs for it.
    pub async fn hash_permit(&self, user: &str) -> Result<OwnedSemaphorePermit, Refusal> {
        let acquire = self.hashing.clone().acquire_owned();
        let Ok(Ok(permit)) = tokio::time::timeout(self.limits.hash_wait, acquire).await else {
            bump(&self.counters.busy);
            return Err(Refusal::Busy);
        };
        let now = self.clock.now();
        let key = self.name_key(user);
        if let Err(refusal) = self.check_lock(&mut self.tables(), key, now) {
            bump(&self.counters.locked);
            return Err(refusal);
        }
        Ok(permit)
    }

    /// Runs `verify` (a password verification) on the blocking pool, holding `permit` until
    /// it returns, even if the caller stops waiting.
    pub async fn verify<T: Send + 'static>(
        &self,
        permit: OwnedSemaphorePermit,
        verify: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        bump(&self.counters.hashes);
        tokio::task::spawn_blocking(move || {
            let verdict = verify();
            drop(permit);
            verdict
        })
        .await
    }

    /// Records a wrong password for `user`; the failure that reaches
    /// [`LoginLimits::lockout_failure_attempts`] locks the name.
    pub fn record_failure(&self, user: &str) {
        bump(&self.counters.failures);
        let attempts = self.limits.lockout_failure_attempts;
        if attempts == 0 {
            return;
        }
        let duration = self.limits.lockout_duration;
        let now = self.clock.now();
        let key = self.name_key(user);
        let max = self.limits.max_tracked.max(1);
        let mut tables = self.tables();
        let failures = &mut tables.failures;
        if !failures.contains_key(&key) && failures.len() >= max {
            failures.retain(|_, f| f.expires(duration) > now);
            if failures.len() >= max
                && let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, f)| f.expires(duration))
                    .map(|(k, _)| *k)
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(key).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        if entry.expires(duration) <= now {
            *entry = Failures {
                count: 0,
                last: now,
                locked_until: None,
            };
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        if entry.count >= attempts && entry.locked_until.is_none() {
            entry.locked_until = Some(now + duration);
            bump(&self.counters.lockouts);
            tracing::warn!(
                %user,
                failures = entry.count,
                seconds = duration.as_secs(),
                "user name locked after consecutive failed logins"
            );
        }
    }

    /// Records a right password for `user`: its failure count starts again from zero.
    pub fn record_success(&self, user: &str) {
        let key = self.name_key(user);
        self.tables().failures.remove(&key);
    }
}

/// The rightmost address of the last `X-Forwarded-For` header: the one the proxy in front
/// appended (every entry left of it is whatever the client sent).
fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all(FORWARDED_FOR).iter().next_back()?;
    let entry = last.to_str().ok()?.rsplit(',').next()?.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests;
