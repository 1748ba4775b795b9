//! `Lease`: a named, time-limited claim held by one identity, like Kubernetes'
//! `coordination.k8s.io` Lease.
//!
//! Used for leader election among controller replicas (one lease per controller, the holder
//! acts, the others wait) and for node heartbeats (one lease per node, renewed by its agent).
//! Holders acquire and renew it with a compare-and-swap on `resourceVersion`, so two writers
//! never both believe they hold it; a lease whose `renewTime + leaseDurationSeconds` has passed
//! may be taken over. Cluster-scoped: controllers and nodes are cloud-wide.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A time-limited claim held by one identity (leader election, node heartbeats).
    /// Cluster-scoped.
    Lease {
        spec: LeaseSpec,
        status: LeaseStatus,
        plural: "leases",
        singular: "lease",
        short_names: [],
        scope: Cluster,
    }
}

/// Who holds the lease and until when.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseSpec {
    /// Identity of the current holder (a controller replica's id, a node's name); absent when
    /// released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    /// How long, in seconds after `renewTime`, the claim stays valid without a renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<u32>,
    /// When the current holder acquired the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<DateTime<Utc>>,
    /// When the holder last renewed it (the holder's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<DateTime<Utc>>,
    /// How many times the lease changed hands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_transitions: Option<u32>,
}

/// Leases have no observed state; kept for the common object shape.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseStatus {
    /// Unused; present for uniformity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Validate for Lease {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        if spec.lease_duration_seconds == Some(0) {
            errors.add("spec.leaseDurationSeconds", "must be at least 1");
        }
        if let Some(holder) = &spec.holder_identity
            && (holder.is_empty() || holder.len() > 253)
        {
            errors.add(
                "spec.holderIdentity",
                "must be 1 to 253 characters when set",
            );
        }
        if let (Some(acquired), Some(renewed)) = (spec.acquire_time, spec.renew_time)
            && renewed < acquired
        {
            errors.add("spec.renewTime", "is before acquireTime");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::ObjectMeta;
    use crate::resource::Resource;

    #[test]
    fn validates_durations_and_times() {
        let lease = |spec| {
            serde_json::to_value(Lease::new(
                ObjectMeta {
                    name: "scheduler".into(),
                    ..Default::default()
                },
                spec,
            ))
            .unwrap()
        };
        let ok = LeaseSpec {
            holder_identity: Some("replica-a".into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        };
        assert!((Lease::info().validate)(lease(ok.clone())).is_ok());
        let zero = LeaseSpec {
            lease_duration_seconds: Some(0),
            ..ok.clone()
        };
        let err = (Lease::info().validate)(lease(zero)).unwrap_err();
        assert!(format!("{err:?}").contains("leaseDurationSeconds"));
        let now = Utc::now();
        let backwards = LeaseSpec {
            acquire_time: Some(now),
            renew_time: Some(now - chrono::Duration::seconds(1)),
            ..ok
        };
        assert!((Lease::info().validate)(lease(backwards)).is_err());
    }
}
