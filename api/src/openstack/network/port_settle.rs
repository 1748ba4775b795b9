//! Neutron answers a port create with the port's MAC and fixed IPs; in Cirrus the network
//! controller assigns them just after the write (IPAM is the controller's, so two API
//! replicas never race on an address). When a controller leader is running — its lease
//! ([`CONTROLLERS_LEASE`]) is held and fresh — the Neutron create waits a moment for the
//! port's `Allocated` condition (either way) before answering, as clients and tempest expect
//! the addresses in the answer (an update that changes them waits the same way); without a
//! controller it answers at once (the addresses follow in the port's status whenever one
//! runs).

use std::time::Duration;

use chrono::Utc;
use cirrus_crds::conventions::{CONTROLLERS_LEASE, PORT_ALLOCATED_CONDITION};
use cirrus_crds::{Lease, Resource};
use serde_json::Value;

use crate::ApiState;

/// How long a create waits for the controller at most.
const SETTLE_FOR: Duration = Duration::from_secs(10);
/// How often it looks.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Whether the controller has judged `port` as it is now: its `Allocated` condition is
/// there and its status observed the current generation (an update of `fixedIps` bumps it).
fn settled(port: &Value) -> bool {
    let judged = port
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.get("type").and_then(Value::as_str) == Some(PORT_ALLOCATED_CONDITION))
        });
    let generation = port.pointer("/metadata/generation").and_then(Value::as_i64);
    let observed = port
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    judged && (generation.is_none() || observed >= generation)
}

/// Whether a controller leader holds its lease now.
async fn controller_running(state: &ApiState) -> bool {
    let Ok(stored) = state
        .store
        .get(Lease::info(), None, CONTROLLERS_LEASE)
        .await
    else {
        return false;
    };
    let Ok(lease) = serde_json::from_value::<Lease>(stored) else {
        return false;
    };
    let spec = &lease.spec;
    let duration = chrono::Duration::seconds(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    spec.holder_identity.is_some()
        && spec
            .renew_time
            .or(spec.acquire_time)
            .is_some_and(|renewed| renewed + duration > Utc::now())
}

/// `created` (the port of `project` just stored, by a create or an update) as it stands once
/// the controller has judged it, or as it is after [`SETTLE_FOR`] (or at once without a
/// controller).
pub(super) async fn settle(state: &ApiState, project: &str, created: Value) -> Value {
    if settled(&created) || !controller_running(state).await {
        return created;
    }
    let Some(name) = created
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return created;
    };
    let ports = cirrus_crds::Port::info();
    let deadline = tokio::time::Instant::now() + SETTLE_FOR;
    let mut latest = created;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL_EVERY).await;
        match state.store.get(ports, Some(project), &name).await {
            Ok(now) if settled(&now) => return now,
            Ok(now) => latest = now,
            // Deleted meanwhile, or the store is away: answer with what was written.
            Err(_) => return latest,
        }
    }
    tracing::info!(%project, port = %name, "answering a port create before its addresses were assigned");
    latest
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_port_is_settled_once_the_controller_judged_it() {
        assert!(!settled(&json!({"status": {}})));
        assert!(!settled(
            &json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
        ));
        assert!(settled(
            &json!({"status": {"conditions": [{"type": "Allocated", "status": "True"}]}})
        ));
        assert!(settled(
            &json!({"status": {"conditions": [{"type": "Allocated", "status": "False"}]}})
        ));
        // An update the controller has not seen yet is not settled.
        let judged = json!([{"type": "Allocated", "status": "True"}]);
        assert!(!settled(&json!({"metadata": {"generation": 2},
            "status": {"conditions": judged, "observedGeneration": 1}})));
        assert!(settled(&json!({"metadata": {"generation": 2},
            "status": {"conditions": judged, "observedGeneration": 2}})));
    }
}
