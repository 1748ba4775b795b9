//! The node lifecycle controller: a node whose heartbeat stops becomes not ready.
//!
//! Node agents renew a `Lease` named `node-<node name>` every few seconds. When a lease has
//! not been renewed for its `leaseDurationSeconds` (or is missing), this controller sets the
//! node's `Ready` condition to `Unknown` with reason [`LEASE_EXPIRED`] — `Unknown`, not
//! `False`: a silent agent is not evidence that the host or its guests are down, only that
//! nobody can tell (the scheduler places nothing there either way). The agent sets `Ready`
//! back to `True` when it renews again.
//!
//! # Guarantees
//! - Writes only when the condition changes; a healthy node costs no writes.
//! - Wakes exactly at a lease's expiry (requeue), and on every lease or node change.
//!
//! # Assumptions
//! The lease's `renewTime` is the agent's clock; clock skew between agent and controller
//! shortens or lengthens the grace period by the skew (keep clocks within a few seconds).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cirrus_client::{Api, Client, ClientError};
use cirrus_crds::{Condition, ConditionStatus, Lease, Node};
use futures::StreamExt;
use tokio::sync::watch;

use crate::runtime::reflector::{Store, Writer};
use crate::runtime::watcher;
use crate::runtime::{Action, Controller, ObjectRef};

/// Prefix of the heartbeat lease of each node (`node-<name>`).
pub const NODE_LEASE_PREFIX: &str = "node-";
/// Reason of `Ready=Unknown` after a missed heartbeat.
pub const LEASE_EXPIRED: &str = "NodeLeaseExpired";
/// Grace used when a lease has no duration.
const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(40);

/// What the reconciler shares.
pub struct Context {
    client: Client,
    leases: Store<Lease>,
}

/// Runs the controller until `shutdown`; it acts only while `gate` says it leads.
pub async fn run(
    client: Client,
    gate: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut writer = Writer::<Lease>::new();
    let leases = writer.as_reader();
    let lease_events =
        watcher::watcher(Api::<Lease>::all(client.clone()), Default::default()).map(move |event| {
            if let Ok(event) = &event {
                writer.apply(event);
            }
            event
        });
    let controller = Controller::new(Api::<Node>::all(client.clone()), Default::default())
        .with_leader_gate(gate)
        .graceful_shutdown_on(shutdown)
        .watches_stream(lease_events, |lease: &Lease| {
            lease
                .metadata
                .name
                .strip_prefix(NODE_LEASE_PREFIX)
                .map(|node| vec![ObjectRef::cluster(node)])
                .unwrap_or_default()
        });
    let ctx = Arc::new(Context { client, leases });
    controller.run(reconcile, error_policy, ctx).await;
}

fn error_policy(_node: Arc<Node>, err: &ClientError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "node lifecycle update failed");
    Action::backoff()
}

/// When the heartbeat lease of a node stops being valid, if it ever was.
pub fn lease_expiry(lease: Option<&Lease>) -> Option<DateTime<Utc>> {
    let spec = &lease?.spec;
    let renewed = spec.renew_time?;
    let duration = spec
        .lease_duration_seconds
        .map(|s| Duration::from_secs(u64::from(s)))
        .unwrap_or(DEFAULT_LEASE_DURATION);
    Some(renewed + chrono::Duration::from_std(duration).ok()?)
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, ClientError> {
    ctx.leases.wait_until_ready().await;
    let lease = ctx.leases.get(&ObjectRef::cluster(format!(
        "{NODE_LEASE_PREFIX}{}",
        node.metadata.name
    )));
    let now = Utc::now();
    let expiry = lease_expiry(lease.as_deref());
    if let Some(expiry) = expiry.filter(|e| *e > now) {
        // Alive: look again right when the lease would run out.
        let wait = (expiry - now).to_std().unwrap_or_default() + Duration::from_millis(100);
        return Ok(Action::requeue(wait));
    }
    let ready = Condition::find(&node.status.conditions, "Ready");
    if ready.is_some_and(|c| c.status == ConditionStatus::Unknown && c.reason == LEASE_EXPIRED) {
        return Ok(Action::await_change());
    }
    let message = match expiry {
        Some(expiry) => format!("node agent stopped renewing its lease (expired {expiry})"),
        None => "node agent has never renewed its lease".to_string(),
    };
    let mut updated = node.as_ref().clone();
    Condition::set(
        &mut updated.status.conditions,
        Condition {
            type_: "Ready".into(),
            status: ConditionStatus::Unknown,
            reason: LEASE_EXPIRED.into(),
            message,
            last_transition_time: Some(now),
            observed_generation: node.metadata.generation,
        },
    );
    match Api::<Node>::all(ctx.client.clone())
        .replace_status(&updated)
        .await
    {
        Ok(_) => tracing::warn!(node = %node.metadata.name, "node not ready: lease expired"),
        Err(err) if err.is_conflict() || err.is_not_found() => {}
        Err(err) => return Err(err),
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::{LeaseSpec, ObjectMeta};

    #[test]
    fn expiry_is_renew_time_plus_duration() {
        let renewed = DateTime::from_timestamp(1000, 0).unwrap();
        let lease = Lease::new(
            ObjectMeta {
                name: "node-a".into(),
                ..Default::default()
            },
            LeaseSpec {
                holder_identity: Some("a".into()),
                lease_duration_seconds: Some(40),
                renew_time: Some(renewed),
                ..Default::default()
            },
        );
        assert_eq!(
            lease_expiry(Some(&lease)),
            DateTime::from_timestamp(1040, 0)
        );
        assert_eq!(lease_expiry(None), None);
        let mut never = lease.clone();
        never.spec.renew_time = None;
        assert_eq!(lease_expiry(Some(&never)), None);
    }
}
