//! `TokenRevocation`: a token (or all of a user's or a project's tokens up to an instant) revoked before its
//! expiry, kept as an object so that every API replica — and the same API after a restart,
//! since token keys persist — refuses it.
//!
//! Tokens are validated without a store round trip; each API process keeps an in-memory
//! revocation list fed by a watch on these objects. An object is useless once the tokens it
//! names have expired (`spec.expiresAt`); the API deletes such objects.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A revoked token (by audit id) or a cut-off for all of a user's tokens. Cluster-scoped,
    /// written only by the API.
    TokenRevocation {
        spec: TokenRevocationSpec,
        status: TokenRevocationStatus,
        plural: "tokenrevocations",
        singular: "tokenrevocation",
        short_names: [],
        scope: Cluster,
    }
}

/// What is revoked, and until when the revocation matters.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRevocationSpec {
    /// The audit id (32 hex digits) of the one revoked token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<String>,
    /// The uid of the user whose tokens issued at or before `issuedBefore` are revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_uid: Option<String>,
    /// The project (name) whose tokens issued at or before `issuedBefore` are revoked: it was
    /// disabled or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The cut-off for `userUid` or `project`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_before: Option<DateTime<Utc>>,
    /// When every token this revokes has expired anyway (the object may be deleted then).
    pub expires_at: DateTime<Utc>,
}

/// Revocations have no observed state; kept for the common object shape.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRevocationStatus {
    /// Unused; present for uniformity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Validate for TokenRevocation {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        let targets = [
            spec.audit_id.is_some(),
            spec.user_uid.is_some(),
            spec.project.is_some(),
        ];
        if targets.iter().filter(|t| **t).count() != 1 {
            errors.add(
                "spec",
                "exactly one of auditId, userUid and project must be set",
            );
            return;
        }
        if let Some(audit) = &spec.audit_id
            && (audit.len() != 32 || !audit.chars().all(|c| c.is_ascii_hexdigit()))
        {
            errors.add("spec.auditId", "must be 32 hexadecimal digits");
        }
        if spec.audit_id.is_none() && spec.issued_before.is_none() {
            errors.add("spec.issuedBefore", "is required with userUid or project");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::ObjectMeta;
    use crate::resource::Resource;

    #[test]
    fn exactly_one_target_and_a_well_formed_audit_id() {
        let value = |spec| {
            serde_json::to_value(TokenRevocation::new(
                ObjectMeta {
                    name: "r".into(),
                    ..Default::default()
                },
                spec,
            ))
            .unwrap()
        };
        let validate = TokenRevocation::info().validate;
        let now = Utc::now();
        let audit = TokenRevocationSpec {
            audit_id: Some("0123456789abcdef0123456789abcdef".into()),
            expires_at: now,
            ..Default::default()
        };
        assert!(validate(value(audit.clone())).is_ok());
        let bad = TokenRevocationSpec {
            audit_id: Some("xyz".into()),
            ..audit.clone()
        };
        assert!(format!("{:?}", validate(value(bad)).unwrap_err()).contains("auditId"));
        let both = TokenRevocationSpec {
            user_uid: Some("u".into()),
            issued_before: Some(now),
            ..audit
        };
        assert!(validate(value(both)).is_err());
        let user = TokenRevocationSpec {
            user_uid: Some("u".into()),
            expires_at: now,
            ..Default::default()
        };
        assert!(format!("{:?}", validate(value(user)).unwrap_err()).contains("issuedBefore"));
        let project = TokenRevocationSpec {
            project: Some("demo".into()),
            issued_before: Some(now),
            expires_at: now,
            ..Default::default()
        };
        assert!(validate(value(project)).is_ok());
    }
}
