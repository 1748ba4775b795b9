//! Revocations as `TokenRevocation` objects, mirrored into each API process's in-memory
//! [`cirrus_auth::RevocationList`] by a watch ([`sync`]).
//!
//! Revoking writes the object first and updates the local list at once, so the revoking
//! replica refuses the token immediately and the others within a watch event; after a
//! restart the list is rebuilt from the objects (token keys persist, so revoked tokens would
//! otherwise come back). Expired revocations are deleted by [`sync`] now and then.

use cirrus_crds::Resource as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cirrus_auth::AuditId;
use cirrus_crds::{TokenRevocation, TokenRevocationSpec};
use cirrus_store::objects::{Api, ObjectError, ObjectStore, WatchEvent, WatchOptions};
use futures::StreamExt;
use serde_json::Value;

use super::Identity;

/// How often expired revocation objects are swept.
const PRUNE_EVERY: Duration = Duration::from_secs(300);

fn hex(audit: &AuditId) -> String {
    audit.0.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<AuditId> {
    if text.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(AuditId(bytes))
}

fn meta(name: String) -> cirrus_crds::meta::ObjectMeta {
    cirrus_crds::meta::ObjectMeta {
        name,
        ..Default::default()
    }
}

/// Revokes the token with `audit` (expiring at `expires_at`) everywhere.
pub async fn revoke_token(
    store: &ObjectStore,
    identity: &Identity,
    audit: AuditId,
    expires_at: DateTime<Utc>,
) -> Result<(), ObjectError> {
    let spec = TokenRevocationSpec {
        audit_id: Some(hex(&audit)),
        expires_at,
        ..Default::default()
    };
    let object = TokenRevocation::new(meta(format!("audit-{}", hex(&audit))), spec);
    match Api::<TokenRevocation>::all(store.clone())
        .create(&object)
        .await
    {
        Ok(_) | Err(ObjectError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e),
    }
    apply(identity, &object.spec);
    Ok(())
}

/// Revokes every token of the user with uid `user_uid` issued up to now, everywhere.
pub async fn revoke_user(
    store: &ObjectStore,
    identity: &Identity,
    user_uid: &str,
) -> Result<(), ObjectError> {
    let cutoff = TokenRevocationSpec {
        user_uid: Some(user_uid.to_string()),
        ..cutoff_now(identity)
    };
    write_cutoff(store, identity, format!("user-{user_uid}"), cutoff).await
}

/// Revokes every token scoped to `project` issued up to now, everywhere (the project was
/// disabled or deleted).
pub async fn revoke_project(
    store: &ObjectStore,
    identity: &Identity,
    project: &str,
) -> Result<(), ObjectError> {
    let cutoff = TokenRevocationSpec {
        project: Some(project.to_string()),
        ..cutoff_now(identity)
    };
    write_cutoff(store, identity, format!("project-{project}"), cutoff).await
}

/// A cut-off at this instant, kept as long as a token issued now could live.
fn cutoff_now(identity: &Identity) -> TokenRevocationSpec {
    let now = Utc::now();
    TokenRevocationSpec {
        issued_before: Some(now),
        expires_at: now + identity.token_ttl,
        ..Default::default()
    }
}

/// Creates or moves forward the cut-off object `name` (one per user or project), then
/// applies it locally.
async fn write_cutoff(
    store: &ObjectStore,
    identity: &Identity,
    name: String,
    spec: TokenRevocationSpec,
) -> Result<(), ObjectError> {
    let api = Api::<TokenRevocation>::all(store.clone());
    match api.get(&name).await {
        Ok(mut existing) => {
            existing.spec = spec.clone();
            api.replace(&existing).await?;
        }
        Err(ObjectError::NotFound { .. }) => {
            api.create(&TokenRevocation::new(meta(name), spec.clone()))
                .await?;
        }
        Err(e) => return Err(e),
    }
    apply(identity, &spec);
    Ok(())
}

/// Adds what `spec` revokes to the in-memory list.
fn apply(identity: &Identity, spec: &TokenRevocationSpec) {
    let mut list = identity
        .revoked
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(audit) = spec.audit_id.as_deref().and_then(from_hex) {
        list.revoke(audit, spec.expires_at);
    }
    if let (Some(uid), Some(before)) = (&spec.user_uid, spec.issued_before) {
        list.revoke_user(uid, before, spec.expires_at);
    }
    if let (Some(project), Some(before)) = (&spec.project, spec.issued_before) {
        list.revoke_project(project, before, spec.expires_at);
    }
}

fn spec_of(object: &Value) -> Option<TokenRevocationSpec> {
    serde_json::from_value(object.get("spec")?.clone()).ok()
}

/// Keeps `identity`'s revocation list equal to the `TokenRevocation` objects until the task
/// is dropped: lists, then watches; relists after any error. Deletes expired objects.
pub async fn sync(store: ObjectStore, identity: Arc<Identity>) {
    let kind = cirrus_crds::TokenRevocation::info();
    let mut last_prune = std::time::Instant::now() - PRUNE_EVERY;
    loop {
        if last_prune.elapsed() >= PRUNE_EVERY {
            prune(&store).await;
            last_prune = std::time::Instant::now();
        }
        let list = match store.list(kind, None, &Default::default()).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, "listing token revocations failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for item in &list.items {
            if let Some(spec) = spec_of(item) {
                apply(&identity, &spec);
            }
        }
        let options = WatchOptions {
            resource_version: Some(list.resource_version),
            ..Default::default()
        };
        let mut events = match store.watch(kind, None, options).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "watching token revocations failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let deadline = tokio::time::sleep(PRUNE_EVERY);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                        if let Some(spec) = spec_of(&o) {
                            apply(&identity, &spec);
                        }
                    }
                    Some(WatchEvent::Deleted(_) | WatchEvent::Bookmark(_)) => {}
                    Some(WatchEvent::Error(e)) => {
                        tracing::warn!(error = %e, "token revocation watch failed; relisting");
                        break;
                    }
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
    }
}

/// Deletes revocation objects whose tokens have all expired, and forgets them locally.
async fn prune(store: &ObjectStore) {
    let api = Api::<TokenRevocation>::all(store.clone());
    let Ok(all) = api.list().await else { return };
    let now = Utc::now();
    for r in all.iter().filter(|r| r.spec.expires_at < now) {
        if let Err(e) = api.delete(&r.metadata.name).await {
            tracing::debug!(error = %e, name = %r.metadata.name, "pruning a revocation failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_ids_round_trip_through_hex() {
        let audit = AuditId::generate().unwrap();
        assert_eq!(from_hex(&hex(&audit)), Some(audit));
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(&"g".repeat(32)), None);
    }
}
