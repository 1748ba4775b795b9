//! Passwords in `User` writes: the plain `spec.password` a client sends becomes
//! `spec.passwordHash` (argon2id) before anything is stored, and a `PUT` without either keeps
//! the stored hash — reads never show the hash, so a read-modify-write must not erase it.

use cirrus_crds::KindInfo;
use cirrus_crds::Resource as _;
use serde_json::Value;

use crate::ApiState;
use crate::error::ApiError;

/// Replaces `spec.password` by its hash in a `User` body (object or merge patch); a client
/// may not write `spec.passwordHash` itself. Without a password, `stored` (the current hash,
/// for a `PUT`) is kept.
pub(crate) async fn hash_password_field(
    kind: &KindInfo,
    body: &mut Value,
    stored: Option<String>,
) -> Result<(), ApiError> {
    if kind.plural != "users" {
        return Ok(());
    }
    let Some(spec) = body.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if spec.contains_key("passwordHash") {
        return Err(ApiError::bad_request(
            "spec.passwordHash: set spec.password instead; the API stores only its hash",
        ));
    }
    match spec.remove("password") {
        Some(Value::String(password)) => {
            if password.is_empty() {
                return Err(ApiError::bad_request("spec.password: must not be empty"));
            }
            let hash = tokio::task::spawn_blocking(move || cirrus_auth::hash_password(&password))
                .await
                .map_err(|e| ApiError::internal(format!("password hashing failed: {e}")))?
                .map_err(|e| ApiError::bad_request(format!("spec.password: {e}")))?;
            spec.insert("passwordHash".into(), Value::String(hash));
        }
        Some(Value::Null) | None => {
            if let Some(hash) = stored {
                spec.insert("passwordHash".into(), Value::String(hash));
            }
        }
        Some(_) => return Err(ApiError::bad_request("spec.password: must be a string")),
    }
    Ok(())
}

/// The stored password hash of user `name` (for `PUT`s that do not change it).
pub(crate) async fn stored_hash(
    state: &ApiState,
    kind: &KindInfo,
    name: &str,
) -> Result<Option<String>, ApiError> {
    if kind.plural != "users" {
        return Ok(None);
    }
    let users = cirrus_crds::User::info();
    match state.store.get(users, None, name).await {
        Ok(user) => Ok(user
            .pointer("/spec/passwordHash")
            .and_then(Value::as_str)
            .map(str::to_string)),
        Err(cirrus_store::objects::ObjectError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
