//! Polling until a state holds. Tests assert states, never timings: the timeout only bounds
//! how long a broken test hangs before it fails with `what`.

use std::time::{Duration, Instant};

/// How often the async helpers probe.
const ASYNC_PERIOD: Duration = Duration::from_millis(20);

/// How often [`eventually_blocking`] probes (its probes usually start processes).
const BLOCKING_PERIOD: Duration = Duration::from_millis(100);

/// Polls `probe` until it yields a value and returns it.
///
/// # Panics
/// When `timeout` passes first ("timed out waiting for `what`").
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(ASYNC_PERIOD).await;
    }
}

/// Polls `check` until it returns `true`.
///
/// # Panics
/// When `timeout` passes first ("timed out waiting for `what`").
pub async fn eventually_holds<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(ASYNC_PERIOD).await;
    }
}

/// [`eventually`] for synchronous probes (end-to-end tests driving processes), sleeping the
/// thread between probes.
///
/// # Panics
/// When `timeout` passes first ("timed out waiting for: `what`").
pub fn eventually_blocking<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(BLOCKING_PERIOD);
    }
}
