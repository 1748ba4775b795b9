//! Per-object retry delays after failed reconciles.
//!
//! [`Backoff`] is deliberately small (next delay, reset) so a controller can plug in its own
//! policy; [`ExponentialBackoff`] is the default: 800 ms doubling to 30 s, with jitter so that
//! many objects failing together (an API outage) don't retry in lockstep, and reset by the
//! runtime after the object's next successful reconcile.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

/// A source of retry delays for one object.
pub trait Backoff: Send {
    /// The delay before the next retry; each call moves the policy one step on.
    fn next_delay(&mut self) -> Duration;
    /// Starts over (called after a success).
    fn reset(&mut self);
}

/// Exponential backoff: `initial`, then ×`factor` per failure, capped at `max`; each delay is
/// shortened by a random fraction of at most `jitter` (so it never exceeds the cap).
#[derive(Clone, Debug)]
pub struct ExponentialBackoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Growth per failure.
    pub factor: f64,
    /// Largest random fraction taken off a delay, in `0.0..=1.0` (0 = no jitter).
    pub jitter: f64,
    current: Duration,
    rng: u64,
}

impl Default for ExponentialBackoff {
    /// 800 ms → 30 s, ×2, up to 20 % jitter.
    fn default() -> Self {
        Self::new(Duration::from_millis(800), Duration::from_secs(30), 2.0).with_jitter(0.2)
    }
}

impl ExponentialBackoff {
    /// A backoff without jitter.
    pub fn new(initial: Duration, max: Duration, factor: f64) -> Self {
        Self {
            initial,
            max,
            factor,
            jitter: 0.0,
            current: initial,
            rng: RandomState::new().hash_one(0u64) | 1,
        }
    }

    /// The same backoff with up to `jitter` (clamped to `0.0..=1.0`) taken off each delay.
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// A uniform sample in `[0, 1)` (xorshift64; quality is irrelevant here).
    fn sample(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Backoff for ExponentialBackoff {
    fn next_delay(&mut self) -> Duration {
        let base = self.current.min(self.max);
        self.current = self.current.mul_f64(self.factor.max(1.0)).min(self.max);
        if self.jitter > 0.0 {
            let cut = self.jitter * self.sample();
            base.mul_f64(1.0 - cut)
        } else {
            base
        }
    }

    fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b =
            ExponentialBackoff::new(Duration::from_millis(800), Duration::from_secs(30), 2.0);
        let delays: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(800));
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let mut b = ExponentialBackoff::default();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            b.reset();
            let d = b.next_delay();
            assert!(
                d <= Duration::from_millis(800) && d >= Duration::from_millis(640),
                "{d:?}"
            );
            seen.insert(d);
        }
        assert!(seen.len() > 1, "jitter should vary the delay");
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
    }
}
