//! Leader election through a `Lease` object, so that of several controller replicas exactly
//! one acts at a time.
//!
//! # Expected flow
//! Every `retry_period` each candidate reads the lease named `lease_name`:
//! - absent → create it holding it (a create of an existing name fails: someone was first);
//! - held by itself → renew it (`renewTime = now`);
//! - held by another whose `renewTime + leaseDurationSeconds` has passed by the candidate's
//!   clock, or released (no holder) → take it over (`leaseTransitions + 1`);
//! - otherwise → follow.
//!
//! Every write is a replace conditioned on the resourceVersion that was read, so of two
//! candidates racing for the same lease exactly one wins; the other gets `409 Conflict` and
//! follows.
//!
//! # Guarantees
//! - A candidate reports leadership ([`LeaderElector::subscribe`] yields `true`) only after a
//!   successful create/renew/take-over, and reports `false` as soon as `renew_deadline` has
//!   passed since the start of its last successful write, or a write conflicted, or the lease
//!   shows another holder — whichever comes first, even while a request hangs.
//! - Dropping the [`LeaderElector::run`] future drops the sender: gated controllers stop.
//!
//! # Assumptions (clock skew)
//! Takeover compares the holder's `renewTime` (the holder's wall clock) with the candidate's
//! wall clock. The holder stops acting `renew_deadline` after it *started* its last
//! successful renewal; a candidate takes over no earlier than `lease_duration` after that
//! `renewTime` by its own clock. Two leaders never act at once as long as the clocks of the
//! candidates differ by less than `lease_duration - renew_deadline` (5 s with the defaults;
//! NTP keeps hosts within milliseconds). A larger skew can make a candidate with a fast clock
//! take over while the holder still acts.
//!
//! # Caveats
//! Leadership is advisory to this process: writes made by a reconcile that started before
//! leadership was lost may still land (the runtime aborts running reconciles when the gate
//! closes, but a request already sent is not recalled). Reconcilers stay idempotent and use
//! compare-and-swap writes, so a late write is harmless.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cirrus_client::{Api, Client, ClientError};
use cirrus_crds::{Lease, LeaseSpec, ObjectMeta};
use tokio::sync::watch;
use tokio::time::Instant;

/// Timing and identity of one candidate.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Name of the `Lease` object (one per controller, e.g. `scheduler`).
    pub lease_name: String,
    /// This candidate's unique identity (host name plus process id, for example).
    pub identity: String,
    /// How long a claim stays valid without renewal (written into the lease). Default 15 s.
    pub lease_duration: Duration,
    /// How long after the start of its last successful renewal the leader keeps acting.
    /// Must be shorter than `lease_duration` (by more than the clock skew). Default 10 s.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire or renew. Default 2 s.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// Default timings (15 s / 10 s / 2 s) for `identity` competing for `lease_name`.
    pub fn new(lease_name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate should do with a lease it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No lease yet: create it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Expired or released: take it over.
    TakeOver,
    /// Someone else holds it until `until` (their clock).
    Follow {
        /// The holder.
        holder: String,
        /// When their claim expires.
        until: DateTime<Utc>,
    },
}

/// Decides what `identity` should do with `lease` at wall-clock time `now` (pure).
pub fn decide(lease: Option<&Lease>, identity: &str, now: DateTime<Utc>) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = &lease.spec;
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None => Decision::TakeOver,
        Some(holder) => {
            let duration =
                chrono::Duration::seconds(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
            match spec.renew_time.or(spec.acquire_time) {
                Some(renewed) if renewed + duration > now => Decision::Follow {
                    holder: holder.to_string(),
                    until: renewed + duration,
                },
                _ => Decision::TakeOver,
            }
        }
    }
}

/// One candidate in a leader election.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderConfig,
    leading: watch::Sender<bool>,
}

impl LeaderElector {
    /// A candidate (not leading until [`LeaderElector::run`] acquires the lease).
    pub fn new(client: Client, config: LeaderConfig) -> Self {
        Self {
            api: Api::all(client),
            config,
            leading: watch::Sender::new(false),
        }
    }

    /// A receiver that holds `true` while this candidate leads; pass it to
    /// [`super::Controller::with_leader_gate`].
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Whether this candidate currently leads.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    fn set_leading(&self, leading: bool) {
        let was = self.leading.send_replace(leading);
        if was != leading {
            if leading {
                tracing::info!(lease = %self.config.lease_name, identity = %self.config.identity, "became leader");
            } else {
                tracing::warn!(lease = %self.config.lease_name, identity = %self.config.identity, "stopped leading");
            }
        }
    }

    /// One round: reads the lease and creates, renews or takes it over when [`decide`] says
    /// so. Returns whether this candidate holds the lease afterwards.
    ///
    /// # Errors
    /// API failures other than the expected conflicts (which mean "someone else won").
    pub async fn try_acquire_or_renew(&self) -> Result<bool, ClientError> {
        let now = Utc::now();
        let current = self.api.get_opt(&self.config.lease_name).await?;
        let seconds = u32::try_from(self.config.lease_duration.as_secs_f64().ceil() as u64)
            .unwrap_or(u32::MAX)
            .max(1);
        let written = match decide(current.as_ref(), &self.config.identity, now) {
            Decision::Follow { holder, until } => {
                tracing::trace!(lease = %self.config.lease_name, %holder, %until, "following");
                return Ok(false);
            }
            Decision::Create => {
                let lease = Lease::new(
                    ObjectMeta {
                        name: self.config.lease_name.clone(),
                        ..Default::default()
                    },
                    LeaseSpec {
                        holder_identity: Some(self.config.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(now),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                    },
                );
                self.api.create(&lease).await
            }
            Decision::Renew => {
                let mut lease = current.expect("renew implies a lease");
                lease.spec.renew_time = Some(now);
                lease.spec.lease_duration_seconds = Some(seconds);
                self.api.replace(&lease).await
            }
            Decision::TakeOver => {
                let mut lease = current.expect("take-over implies a lease");
                let spec = &mut lease.spec;
                if spec.holder_identity.is_some() {
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.holder_identity = Some(self.config.identity.clone());
                spec.lease_duration_seconds = Some(seconds);
                spec.acquire_time = Some(now);
                spec.renew_time = Some(now);
                self.api.replace(&lease).await
            }
        };
        match written {
            Ok(_) => Ok(true),
            Err(err) if err.is_conflict() || err.is_already_exists() => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Gives the lease up (when held) so another candidate can take over at once. Stops
    /// reporting leadership first.
    pub async fn release(&self) -> Result<(), ClientError> {
        self.set_leading(false);
        let Some(mut lease) = self.api.get_opt(&self.config.lease_name).await? else {
            return Ok(());
        };
        if lease.spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        lease.spec.holder_identity = None;
        match self.api.replace(&lease).await {
            Ok(_) => Ok(()),
            Err(err) if err.is_conflict() => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Campaigns and renews until `shutdown` completes, then releases the lease. See the
    /// module docs for the guarantees.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut leading_until: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let attempt =
                tokio::time::timeout(self.config.lease_duration, self.try_acquire_or_renew());
            let mut attempt = std::pin::pin!(attempt);
            let result = loop {
                tokio::select! {
                    result = &mut attempt => break result,
                    _ = sleep_until_opt(leading_until) => {
                        // The renewal hangs past the deadline: stop acting now.
                        self.set_leading(false);
                        leading_until = None;
                    }
                    _ = &mut shutdown => {
                        if let Err(err) = self.release().await {
                            tracing::warn!(error = %err, "releasing the lease failed");
                        }
                        return;
                    }
                }
            };
            match result {
                Ok(Ok(true)) => {
                    leading_until = Some(started + self.config.renew_deadline);
                    self.set_leading(true);
                }
                Ok(Ok(false)) => {
                    leading_until = None;
                    self.set_leading(false);
                }
                Ok(Err(err)) => {
                    tracing::warn!(lease = %self.config.lease_name, error = %err, "lease request failed");
                }
                Err(_) => {
                    tracing::warn!(lease = %self.config.lease_name, "lease request timed out");
                }
            }
            if leading_until.is_some_and(|until| until <= Instant::now()) {
                leading_until = None;
                self.set_leading(false);
            }
            let next = Instant::now() + self.config.retry_period;
            let wake = leading_until.map_or(next, |until| until.min(next));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = &mut shutdown => {
                    if let Err(err) = self.release().await {
                        tracing::warn!(error = %err, "releasing the lease failed");
                    }
                    return;
                }
            }
            if leading_until.is_some_and(|until| until <= Instant::now()) {
                leading_until = None;
                self.set_leading(false);
            }
        }
    }
}

async fn sleep_until_opt(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => futures::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: Option<DateTime<Utc>>, seconds: u32) -> Lease {
        Lease::new(
            ObjectMeta {
                name: "l".into(),
                ..Default::default()
            },
            LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(seconds),
                renew_time: renewed,
                acquire_time: renewed,
                lease_transitions: Some(0),
            },
        )
    }

    #[test]
    fn decisions() {
        let now = Utc::now();
        let s = chrono::Duration::seconds;
        assert_eq!(decide(None, "a", now), Decision::Create);
        assert_eq!(
            decide(Some(&lease(Some("a"), Some(now - s(100)), 15)), "a", now),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&lease(Some("b"), Some(now - s(5)), 15)), "a", now),
            Decision::Follow {
                holder: "b".into(),
                until: now + s(10)
            }
        );
        assert_eq!(
            decide(Some(&lease(Some("b"), Some(now - s(16)), 15)), "a", now),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Some(&lease(None, Some(now), 15)), "a", now),
            Decision::TakeOver,
            "released"
        );
        assert_eq!(
            decide(Some(&lease(Some("b"), None, 15)), "a", now),
            Decision::TakeOver,
            "never renewed"
        );
    }
}
