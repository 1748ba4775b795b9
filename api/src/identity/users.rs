//! Keystone v3 users over `User` objects: generated ids, free-text names unique among users
//! (the name a user logs in with), renames that keep the id ([`cirrus_crds::keystone`]).
//!
//! Writes go through [`crate::resources`] like every other front end's, so the name check
//! and the revocations of a disabled or deleted user or a changed password
//! ([`crate::admission`]) apply here too.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use cirrus_crds::{Project, User};
use cirrus_store::objects::Api;
use serde_json::{Map, Value, json};

use super::KeystoneError;
use super::admin::{
    DOMAIN, Reply, check_domain, create_object, created, delete_with_bindings, list_reply,
    matches_filters, ok, opt_bool, opt_str, parse_body, patch_spec, require_admin, store_err,
};
use super::discovery::base_url;
use crate::ApiState;
use crate::admission::Writer;
use crate::auth::Caller;

/// Keystone's view of a user (never its password hash).
fn user_json(u: &User, base: &str) -> Value {
    let id = &u.metadata.name;
    let mut body = json!({
        "id": id, "name": u.keystone_name(), "domain_id": DOMAIN, "enabled": u.spec.enabled,
        "password_expires_at": null, "options": {},
        "links": {"self": format!("{base}/identity/v3/users/{id}")},
    });
    if let Some(p) = &u.spec.default_project {
        body["default_project_id"] = json!(p);
    }
    if let Some(e) = &u.spec.email {
        body["email"] = json!(e);
    }
    if let Some(d) = &u.spec.description {
        body["description"] = json!(d);
    }
    body
}

/// `GET /v3/users` (filters `name`, `enabled`, `domain_id`): every user for cloud admins,
/// else only the caller (node identities are never listed).
pub async fn list_users(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Reply {
    let base = base_url(&headers);
    let mut users = Api::<User>::all(state.store.clone())
        .list()
        .await
        .map_err(store_err)?;
    if !caller.is_cloud_admin() {
        let me = caller.user().map(|u| u.name.clone()).unwrap_or_default();
        users.retain(|u| u.metadata.name == me);
    }
    users.retain(|u| u.spec.node.is_none());
    users.retain(|u| matches_filters(&q, u.keystone_name(), u.spec.enabled));
    let items = users.iter().map(|u| user_json(u, &base)).collect();
    Ok(list_reply("users", items, &base, "users"))
}

/// `GET /v3/users/{id}`: admins, or oneself.
pub async fn get_user(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let me = caller.user().map(|u| u.name.as_str()) == Some(id.as_str());
    if !me && !caller.is_cloud_admin() {
        return Err(KeystoneError::not_found(format!(
            "Could not find user: {id}."
        )));
    }
    let user = Api::<User>::all(state.store.clone())
        .get(&id)
        .await
        .map_err(|_| KeystoneError::not_found(format!("Could not find user: {id}.")))?;
    Ok(ok("user", user_json(&user, &base_url(&headers))))
}

async fn hash(password: String) -> Result<String, KeystoneError> {
    if password.is_empty() {
        return Err(KeystoneError::bad_request(
            "Invalid input for field 'user.password': must not be empty",
        ));
    }
    tokio::task::spawn_blocking(move || cirrus_auth::hash_password(&password))
        .await
        .map_err(|e| KeystoneError::internal(e.to_string()))?
        .map_err(|e| {
            KeystoneError::bad_request(format!("Invalid input for field 'user.password': {e}"))
        })
}

fn valid_name(map: &Map<String, Value>) -> Result<Option<String>, KeystoneError> {
    super::admin::valid_name(map, "user", cirrus_crds::keystone::USER_NAME_MAX)
}

/// `user.default_project_id`, which must name an existing project.
async fn default_project(
    state: &ApiState,
    map: &Map<String, Value>,
) -> Result<Option<String>, KeystoneError> {
    let project = opt_str(map, "default_project_id", "user")?;
    if let Some(p) = &project
        && super::directory::by_id::<Project>(&state.store, p)
            .await?
            .is_none()
    {
        return Err(KeystoneError::bad_request(format!(
            "Invalid input for field 'user.default_project_id': project {p:?} does not exist"
        )));
    }
    Ok(project)
}

/// `POST /v3/users`: a new id, the name as given.
pub async fn create_user(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    require_admin(&caller)?;
    let map = parse_body(&body, "user")?;
    let name = valid_name(&map)?
        .ok_or_else(|| KeystoneError::bad_request("'name' is a required property of 'user'"))?;
    check_domain(&map, "user")?;
    let mut spec = cirrus_crds::UserSpec {
        name: Some(name.clone()),
        enabled: opt_bool(&map, "enabled", "user")?.unwrap_or(true),
        email: opt_str(&map, "email", "user")?,
        description: opt_str(&map, "description", "user")?,
        default_project: default_project(&state, &map).await?,
        ..Default::default()
    };
    if let Some(password) = opt_str(&map, "password", "user")? {
        spec.password_hash = Some(hash(password).await?);
    }
    let meta = cirrus_crds::meta::ObjectMeta {
        name: cirrus_crds::keystone::new_id(),
        ..Default::default()
    };
    let user = create_object(&state, &caller, &User::new(meta, spec)).await?;
    tracing::info!(user = %user.metadata.name, %name, by = %caller.name(), "user created");
    Ok(created("user", user_json(&user, &base_url(&headers))))
}

/// `PATCH /v3/users/{id}`: name, enabled, password, email, description, default project. A
/// rename keeps the id (and the user's tokens); a new password or disabling ends its tokens.
pub async fn update_user(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    require_admin(&caller)?;
    let map = parse_body(&body, "user")?;
    let mut spec = Map::new();
    if let Some(name) = valid_name(&map)? {
        spec.insert("name".into(), json!(name));
    }
    if let Some(enabled) = opt_bool(&map, "enabled", "user")? {
        spec.insert("enabled".into(), json!(enabled));
    }
    if let Some(password) = opt_str(&map, "password", "user")? {
        spec.insert("passwordHash".into(), json!(hash(password).await?));
    }
    if let Some(e) = opt_str(&map, "email", "user")? {
        spec.insert("email".into(), json!(e));
    }
    if let Some(d) = opt_str(&map, "description", "user")? {
        spec.insert("description".into(), json!(d));
    }
    if map.contains_key("default_project_id") {
        // JSON null in a merge patch removes the field.
        spec.insert(
            "defaultProject".into(),
            json!(default_project(&state, &map).await?),
        );
    }
    let user: User = patch_spec(&state, Writer::Caller(&caller), &id, spec).await?;
    Ok(ok("user", user_json(&user, &base_url(&headers))))
}

/// `DELETE /v3/users/{id}`: the user, its role assignments and its tokens.
pub async fn delete_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, KeystoneError> {
    require_admin(&caller)?;
    if caller.user().map(|u| u.name.as_str()) == Some(id.as_str()) {
        return Err(KeystoneError::forbidden("you cannot delete yourself"));
    }
    delete_with_bindings::<User>(&state, &id, |b| b.user == id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v3/users/{id}/password`: a user changes its own password, proving the old one
/// (`original_password`) → 204. The check passes the login throttle like a login (a wrong
/// original password counts towards the user's lockout, `401`); the new hash is written by
/// the API after that check, and the write layer revokes the user's tokens, as Keystone does.
pub async fn change_own_password(
    State(state): State<ApiState>,
    caller: Caller,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    if caller.user().map(|u| u.name.as_str()) != Some(id.as_str()) {
        return Err(KeystoneError::forbidden(
            "You are not authorized to perform the requested action: identity:change_password \
             (only the user itself changes its password this way).",
        ));
    }
    let map = parse_body(&body, "user")?;
    let original = opt_str(&map, "original_password", "user")?.ok_or_else(|| {
        KeystoneError::bad_request("'original_password' is a required property of 'user'")
    })?;
    let password = opt_str(&map, "password", "user")?
        .ok_or_else(|| KeystoneError::bad_request("'password' is a required property of 'user'"))?;
    let throttle = state.login.clone();
    let source = throttle.source(peer.map(|Extension(ConnectInfo(addr))| addr), &headers);
    if let Err(refusal) = throttle.admit(&id, source) {
        return Ok(refusal.into_response());
    }
    let user = super::directory::by_id::<User>(&state.store, &id).await?;
    let permit = match throttle.hash_permit(&id).await {
        Ok(permit) => permit,
        Err(refusal) => return Ok(refusal.into_response()),
    };
    if !super::tokens::password_matches(&throttle, permit, user.as_ref(), &original).await? {
        throttle.record_failure(&id);
        return Err(KeystoneError::unauthorized(
            "Invalid input for field 'user.original_password': it is not the user's password.",
        ));
    }
    throttle.record_success(&id);
    let mut spec = Map::new();
    spec.insert("passwordHash".into(), json!(hash(password).await?));
    let _: User = patch_spec(&state, Writer::Api, &id, spec).await?;
    tracing::info!(user = %id, "password changed by the user");
    Ok(StatusCode::NO_CONTENT.into_response())
}
