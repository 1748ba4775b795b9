//! Identity writes whose effect must reach tokens at once, on every path (native `/apis`,
//! `cirrus apply --prune`, Keystone): tokens are self-validating, so a deleted user or role
//! binding would otherwise keep working until its tokens expire.
//!
//! | write                                              | revokes                    |
//! |----------------------------------------------------|----------------------------|
//! | `User` deleted, disabled, password or node changed | that user's tokens         |
//! | `RoleBinding` deleted, or its user/project/role changed | the bound user's tokens |
//! | `Project` deleted or disabled                      | tokens scoped to it        |

use cirrus_crds::KindInfo;
use cirrus_store::objects::ObjectError;
use serde_json::Value;

use crate::ApiState;
use crate::error::ApiError;

/// Revokes what the write from `old` to `new` (`None`: deleted) takes away.
pub(crate) async fn after_write(
    state: &ApiState,
    kind: &KindInfo,
    old: Option<&Value>,
    new: Option<&Value>,
) -> Result<(), ApiError> {
    match kind.plural {
        "users" => {
            if let Some(old) = old
                && user_loses_tokens(old, new)
            {
                revoke_user_uid(state, text(old, "/metadata/uid")).await?;
            }
        }
        "rolebindings" => {
            if let Some(old) = old
                && new.is_none_or(|new| old.get("spec") != new.get("spec"))
            {
                revoke_user_named(state, text(old, "/spec/user")).await?;
            }
        }
        "projects" => {
            let disabled = new.is_some_and(|n| n.pointer("/spec/enabled") == Some(&false.into()));
            let name = new.or(old).map(|o| text(o, "/metadata/name")).unwrap_or("");
            if (new.is_none() || disabled) && !name.is_empty() {
                crate::identity::revocations::revoke_project(&state.store, &state.identity, name)
                    .await
                    .map_err(|e| revoking(e, "project", name))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether a user write from `old` to `new` ends the old tokens.
fn user_loses_tokens(old: &Value, new: Option<&Value>) -> bool {
    let Some(new) = new else {
        return true;
    };
    let enabled = |u: &Value| u.pointer("/spec/enabled") != Some(&false.into());
    (enabled(old) && !enabled(new))
        || old.pointer("/spec/passwordHash") != new.pointer("/spec/passwordHash")
        || old.pointer("/spec/node") != new.pointer("/spec/node")
        || old.pointer("/metadata/uid") != new.pointer("/metadata/uid")
}

async fn revoke_user_named(state: &ApiState, name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Ok(());
    }
    let users = <cirrus_crds::kinds::user::User as cirrus_crds::Resource>::info();
    match state.store.get(users, None, name).await {
        Ok(user) => revoke_user_uid(state, text(&user, "/metadata/uid")).await,
        // No such user: no token of it can be valid.
        Err(ObjectError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn revoke_user_uid(state: &ApiState, uid: &str) -> Result<(), ApiError> {
    if uid.is_empty() {
        return Ok(());
    }
    crate::identity::revocations::revoke_user(&state.store, &state.identity, uid)
        .await
        .map_err(|e| revoking(e, "user", uid))
}

fn revoking(e: ObjectError, what: &str, name: &str) -> ApiError {
    ApiError::internal(format!("revoking the tokens of {what} {name:?}: {e}"))
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn which_user_writes_end_tokens() {
        let u = json!({"metadata": {"uid": "1"}, "spec": {"enabled": true, "passwordHash": "h"}});
        let renamed = json!({"metadata": {"uid": "1"}, "spec": {"enabled": true, "passwordHash": "h", "email": "x@y"}});
        let disabled =
            json!({"metadata": {"uid": "1"}, "spec": {"enabled": false, "passwordHash": "h"}});
        let password =
            json!({"metadata": {"uid": "1"}, "spec": {"enabled": true, "passwordHash": "h2"}});
        assert!(!user_loses_tokens(&u, Some(&renamed)));
        assert!(user_loses_tokens(&u, Some(&disabled)));
        assert!(user_loses_tokens(&u, Some(&password)));
        assert!(user_loses_tokens(&u, None));
    }
}
