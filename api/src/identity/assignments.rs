//! Keystone v3 roles (the fixed `reader` ⊂ `member` ⊂ `admin`) and role assignments over
//! `RoleBinding` objects (one per user, project and role: [`super::bootstrap::binding_name`]).
//!
//! Grants and revocations go through [`crate::resources`], so a revoked role ends the user's
//! tokens at once ([`crate::admission`]).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use cirrus_auth::{Role, RoleExt};
use cirrus_crds::{Project, Resource, RoleBinding, User};
use serde_json::{Value, json};

use super::KeystoneError;
use super::admin::{DOMAIN, Reply, bindings, list_reply, meta, ok, require_admin};
use super::bootstrap::binding_name;
use super::directory::{self, Names};
use super::discovery::base_url;
use crate::ApiState;
use crate::admission::Writer;
use crate::auth::Caller;
use crate::resources;

const ROLES: [Role; 3] = [Role::Reader, Role::Member, Role::Admin];

fn role_json(role: Role, base: &str) -> Value {
    let name = role.name();
    json!({
        "id": name, "name": name, "domain_id": null, "options": {},
        "description": match role {
            Role::Reader => "Read the project's resources",
            Role::Member => "Create, change and delete the project's resources (implies reader)",
            Role::Admin => "Everything, in every project: the whole cloud (implies member)",
        },
        "links": {"self": format!("{base}/identity/v3/roles/{name}")},
    })
}

fn role_named(id: &str) -> Result<Role, KeystoneError> {
    Role::from_name(id)
        .ok_or_else(|| KeystoneError::not_found(format!("Could not find role: {id}.")))
}

/// `GET /v3/roles` (filter `name`).
pub async fn list_roles(headers: HeaderMap, Query(q): Query<BTreeMap<String, String>>) -> Reply {
    let base = base_url(&headers);
    let items = ROLES
        .iter()
        .filter(|r| q.get("name").is_none_or(|n| n == r.name()))
        .map(|r| role_json(*r, &base))
        .collect();
    Ok(list_reply("roles", items, &base, "roles"))
}

/// `GET /v3/roles/{id}`.
pub async fn get_role(headers: HeaderMap, Path(id): Path<String>) -> Reply {
    Ok(ok("role", role_json(role_named(&id)?, &base_url(&headers))))
}

/// `POST /v3/roles`: the roles are fixed.
pub async fn create_role(caller: Caller) -> Reply {
    require_admin(&caller)?;
    Err(KeystoneError {
        code: StatusCode::CONFLICT,
        message: "Cirrus has the fixed roles reader, member and admin; new roles cannot be created"
            .into(),
    })
}

async fn existing<K: Resource>(state: &ApiState, id: &str, what: &str) -> Result<K, KeystoneError> {
    directory::by_id::<K>(&state.store, id)
        .await?
        .ok_or_else(|| KeystoneError::not_found(format!("Could not find {what}: {id}.")))
}

/// `PUT /v3/projects/{p}/users/{u}/roles/{r}`: grant (idempotent) → 204.
pub async fn grant(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project, user, role)): Path<(String, String, String)>,
) -> Result<StatusCode, KeystoneError> {
    require_admin(&caller)?;
    let role = role_named(&role)?;
    existing::<Project>(&state, &project, "project").await?;
    existing::<User>(&state, &user, "user").await?;
    let spec = cirrus_crds::kinds::rolebinding::RoleBindingSpec {
        user: user.clone(),
        project: project.clone(),
        role,
    };
    let name = binding_name(&user, &project, role);
    let object = serde_json::to_value(RoleBinding::new(meta(&name), spec))
        .map_err(|e| KeystoneError::internal(e.to_string()))?;
    match resources::create(
        &state,
        Writer::Caller(&caller),
        RoleBinding::info(),
        None,
        object,
        false,
    )
    .await
    {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(e) if e.code() == StatusCode::CONFLICT => Ok(StatusCode::NO_CONTENT),
        Err(e) => Err(e.into()),
    }
}

/// Only a cloud admin or the user itself may look at `user`'s role assignments; `verb`
/// names what the caller tried in the refusal.
fn require_self_or_admin(caller: &Caller, user: &str, verb: &str) -> Result<(), KeystoneError> {
    if caller.is_cloud_admin() || caller.user().map(|u| u.name.as_str()) == Some(user) {
        return Ok(());
    }
    Err(KeystoneError::forbidden(format!(
        "you may only {verb} your own role assignments"
    )))
}

/// `HEAD`/`GET /v3/projects/{p}/users/{u}/roles/{r}`: 204 when granted, else 404.
pub async fn check_grant(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project, user, role)): Path<(String, String, String)>,
) -> Result<StatusCode, KeystoneError> {
    require_self_or_admin(&caller, &user, "check")?;
    let role = role_named(&role)?;
    let granted = bindings(&state)
        .await?
        .iter()
        .any(|b| b.spec.user == user && b.spec.project == project && b.spec.role == role);
    if granted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(KeystoneError::not_found(format!(
            "Could not find role assignment with role: {}, user or group: {user}, project, domain, or system: {project}.",
            role.name()
        )))
    }
}

/// `DELETE /v3/projects/{p}/users/{u}/roles/{r}`: revoke → 204 (404 when not granted);
/// the user's tokens are revoked so the lost role takes effect at once.
pub async fn revoke_grant(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project, user, role)): Path<(String, String, String)>,
) -> Result<StatusCode, KeystoneError> {
    require_admin(&caller)?;
    let role = role_named(&role)?;
    let mut found = false;
    for b in bindings(&state).await? {
        if b.spec.user == user && b.spec.project == project && b.spec.role == role {
            // The write layer revokes the user's tokens with the binding.
            resources::delete(&state, RoleBinding::info(), None, &b.metadata.name, false).await?;
            found = true;
        }
    }
    if !found {
        return Err(KeystoneError::not_found(format!(
            "Could not find role assignment: {} for {user} on {project}.",
            role.name()
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v3/projects/{p}/users/{u}/roles`: the roles granted there (implied ones too, as
/// Keystone's implied roles show up in tokens).
pub async fn list_grants(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path((project, user)): Path<(String, String)>,
) -> Reply {
    require_self_or_admin(&caller, &user, "list")?;
    let base = base_url(&headers);
    let items = bindings(&state)
        .await?
        .iter()
        .filter(|b| b.spec.user == user && b.spec.project == project)
        .map(|b| role_json(b.spec.role, &base))
        .collect();
    Ok(list_reply("roles", items, &base, "roles"))
}

/// `GET /v3/role_assignments` (filters `user.id`, `scope.project.id`, `role.id`; `effective`
/// changes nothing, as there are no groups or inherited roles; `include_names` adds the
/// names next to the ids).
pub async fn role_assignments(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Reply {
    let base = base_url(&headers);
    let me = caller.user().map(|u| u.name.clone()).unwrap_or_default();
    let user_filter = q.get("user.id").cloned();
    if !caller.is_cloud_admin() && user_filter.as_deref() != Some(me.as_str()) {
        return Err(KeystoneError::forbidden(
            "you may only list your own role assignments (filter user.id)",
        ));
    }
    let names = match q.get("include_names").map(String::as_str) {
        Some("" | "1" | "true" | "True") => Some(Names::load(&state.store).await?),
        _ => None,
    };
    let items = bindings(&state)
        .await?
        .iter()
        .filter(|b| user_filter.as_ref().is_none_or(|u| &b.spec.user == u))
        .filter(|b| {
            q.get("scope.project.id")
                .is_none_or(|p| &b.spec.project == p)
        })
        .filter(|b| q.get("role.id").is_none_or(|r| r == b.spec.role.name()))
        .map(|b| assignment_json(b, names.as_ref(), &base))
        .collect();
    Ok(list_reply(
        "role_assignments",
        items,
        &base,
        "role_assignments",
    ))
}

/// One assignment as Keystone lists it, with names when `names` is given.
fn assignment_json(b: &RoleBinding, names: Option<&Names>, base: &str) -> Value {
    let (p, u, r) = (&b.spec.project, &b.spec.user, b.spec.role.name());
    let mut item = json!({
        "role": {"id": r},
        "user": {"id": u},
        "scope": {"project": {"id": p}},
        "links": {"assignment": format!("{base}/identity/v3/projects/{p}/users/{u}/roles/{r}")},
    });
    if let Some(names) = names {
        let domain = json!({"id": DOMAIN, "name": "Default"});
        item["role"]["name"] = json!(r);
        item["user"]["name"] = json!(names.user(u));
        item["user"]["domain"] = domain.clone();
        item["scope"]["project"]["name"] = json!(names.project(p));
        item["scope"]["project"]["domain"] = domain;
    }
    item
}
