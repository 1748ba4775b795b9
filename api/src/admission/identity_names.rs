//! Keystone names are unique: no two projects, and no two users, share a name
//! ([`cirrus_crds::keystone`]), whichever front end wrote them — a Keystone create or rename
//! and a native `Project`/`User` alike pass here.
//!
//! A name is `spec.name`, or the object's own name when it has none. The check lists the
//! kind (identity objects are few) under a lock per kind in this process, held until the
//! write is done. A create is checked again after the write, as quotas are: when another
//! API replica stored the same name at the same moment, the later of the two is removed
//! again and answered with the conflict (renames are checked before the write only).

use axum::http::StatusCode;
use cirrus_crds::{KindInfo, Project, Resource, User};
use cirrus_store::objects::{ListOptions, ObjectStore, Preconditions};
use serde_json::Value;

use super::quota_lock::{self, ProjectQuotaGuard};
use crate::error::ApiError;

/// Whether objects of `kind` carry a Keystone name.
pub(crate) fn named_kind(kind: &KindInfo) -> bool {
    kind.plural == Project::info().plural || kind.plural == User::info().plural
}

/// The Keystone name of a stored or proposed identity object.
pub(crate) fn name_of(object: &Value) -> Option<&str> {
    let id = object.pointer("/metadata/name").and_then(Value::as_str)?;
    Some(cirrus_crds::keystone::keystone_name(
        object.pointer("/spec/name").and_then(Value::as_str),
        id,
    ))
}

/// Held while a name is checked and written; other writers of the kind wait.
pub(crate) struct NameGuard {
    _lock: ProjectQuotaGuard,
}

/// Before a create of `object`: `None` for kinds without names, else the held lock once no
/// other object of `kind` has its name (`409` naming `spec.name` otherwise).
pub(crate) async fn before_create(
    store: &ObjectStore,
    kind: &'static KindInfo,
    object: &Value,
) -> Result<Option<NameGuard>, ApiError> {
    if !named_kind(kind) {
        return Ok(None);
    }
    let guard = lock(kind).await;
    refuse_taken(store, kind, object, |_| true).await?;
    Ok(Some(guard))
}

/// Before a write that turns `current` into `proposed`: the held lock when it renames and
/// the new name is free (`409` when it is taken), `None` when the name stays.
pub(crate) async fn before_rename(
    store: &ObjectStore,
    kind: &'static KindInfo,
    current: &Value,
    proposed: &Value,
) -> Result<Option<NameGuard>, ApiError> {
    if !named_kind(kind) || name_of(current) == name_of(proposed) {
        return Ok(None);
    }
    let guard = lock(kind).await;
    refuse_taken(store, kind, proposed, |_| true).await?;
    Ok(Some(guard))
}

/// After a create: when an object made earlier (or at the same moment, with a smaller id)
/// has the same name — another replica's write raced this one — removes `created` and
/// answers the conflict.
pub(crate) async fn after_create(
    store: &ObjectStore,
    kind: &'static KindInfo,
    created: &Value,
) -> Result<(), ApiError> {
    let mine = order_key(created);
    let taken = refuse_taken(store, kind, created, |other| order_key(other) < mine).await;
    if let Err(conflict) = taken {
        let id = created
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let uid = created
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Err(e) = store
            .delete_with(kind, None, id, &Preconditions::uid(uid), false)
            .await
        {
            tracing::warn!(error = %e, %id, "could not undo a create with a duplicate name");
        }
        return Err(conflict);
    }
    Ok(())
}

/// Which of two objects with the same name was made first.
fn order_key(object: &Value) -> (String, String) {
    let field = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (
        field("/metadata/creationTimestamp"),
        field("/metadata/name"),
    )
}

async fn lock(kind: &KindInfo) -> NameGuard {
    // Object names cannot contain ':', so these keys never meet a project's quota lock.
    NameGuard {
        _lock: quota_lock::lock(&format!("keystone-names:{}", kind.plural)).await,
    }
}

/// `409` when another object of `kind` for which `counts` holds has `object`'s name.
async fn refuse_taken(
    store: &ObjectStore,
    kind: &'static KindInfo,
    object: &Value,
    counts: impl Fn(&Value) -> bool,
) -> Result<(), ApiError> {
    let (Some(name), Some(id)) = (
        name_of(object),
        object.pointer("/metadata/name").and_then(Value::as_str),
    ) else {
        return Ok(());
    };
    let all = store.list(kind, None, &ListOptions::default()).await?;
    let clash = all.items.iter().find(|other| {
        other.pointer("/metadata/name").and_then(Value::as_str) != Some(id)
            && name_of(other) == Some(name)
            && counts(other)
    });
    match clash {
        None => Ok(()),
        Some(other) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!(
                "spec.name: a {} named {name:?} already exists (id {}); names are unique",
                kind.singular,
                other
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ),
        )),
    }
}
