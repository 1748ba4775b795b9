//! Keystone v3 resources over the identity objects: domains (the one `default`), projects,
//! users, roles (the fixed `reader` ⊂ `member` ⊂ `admin`), role assignments, and the
//! catalog, services and endpoints.
//!
//! Ids are names (module docs of [`super`]). Policy follows Keystone's defaults: cloud admins
//! manage everything; a user may read itself, its own projects and its own assignments.
//! Deleting or disabling a user, or changing its password, revokes its tokens at once.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cirrus_auth::{Role, RoleExt};
use cirrus_crds::{Project, RoleBinding, User};
use cirrus_store::objects::{Api, ObjectError};
use serde_json::{Map, Value, json};

use super::KeystoneError;
use super::bootstrap::binding_name;
use super::discovery::base_url;
use crate::ApiState;
use crate::auth::Caller;

type Reply = Result<Response, KeystoneError>;

const DOMAIN: &str = "default";

fn store_err(e: ObjectError) -> KeystoneError {
    match e {
        ObjectError::NotFound { .. } => KeystoneError::not_found(e.to_string()),
        ObjectError::AlreadyExists { .. }
        | ObjectError::Conflict { .. }
        | ObjectError::PreconditionFailed { .. } => KeystoneError {
            code: StatusCode::CONFLICT,
            message: e.to_string(),
        },
        ObjectError::Invalid { .. } => KeystoneError::bad_request(e.to_string()),
        other => KeystoneError::internal(other.to_string()),
    }
}

fn require_admin(caller: &Caller) -> Result<(), KeystoneError> {
    if caller.is_cloud_admin() {
        Ok(())
    } else {
        Err(KeystoneError::forbidden(
            "You are not authorized to perform the requested action: this needs the admin role \
             in the admin project.",
        ))
    }
}

fn parse_body(body: &Bytes, key: &str) -> Result<Map<String, Value>, KeystoneError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| KeystoneError::bad_request(format!("request body is not JSON: {e}")))?;
    match value.get(key) {
        Some(Value::Object(map)) => Ok(map.clone()),
        _ => Err(KeystoneError::bad_request(format!(
            "'{key}' is a required property and must be an object"
        ))),
    }
}

fn opt_str(
    map: &Map<String, Value>,
    field: &str,
    what: &str,
) -> Result<Option<String>, KeystoneError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(KeystoneError::bad_request(format!(
            "Invalid input for field '{what}.{field}': must be a string"
        ))),
    }
}

fn opt_bool(
    map: &Map<String, Value>,
    field: &str,
    what: &str,
) -> Result<Option<bool>, KeystoneError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(KeystoneError::bad_request(format!(
            "Invalid input for field '{what}.{field}': must be a boolean"
        ))),
    }
}

fn check_domain(map: &Map<String, Value>, what: &str) -> Result<(), KeystoneError> {
    match opt_str(map, "domain_id", what)? {
        None => Ok(()),
        Some(d) if d == DOMAIN => Ok(()),
        Some(d) => Err(KeystoneError::bad_request(format!(
            "Invalid input for field '{what}.domain_id': only the domain 'default' exists, got {d:?}"
        ))),
    }
}

fn valid_name(name: &str, what: &str) -> Result<(), KeystoneError> {
    match cirrus_crds::validation::name_problem(name) {
        None => Ok(()),
        Some(problem) => Err(KeystoneError::bad_request(format!(
            "Invalid input for field '{what}.name': {problem} (Cirrus {what} names are also their ids)"
        ))),
    }
}

fn meta(name: &str) -> cirrus_crds::meta::ObjectMeta {
    cirrus_crds::meta::ObjectMeta {
        name: name.to_string(),
        ..Default::default()
    }
}

fn created(key: &str, value: Value) -> Response {
    (StatusCode::CREATED, Json(json!({ key: value }))).into_response()
}

fn ok(key: &str, value: Value) -> Response {
    Json(json!({ key: value })).into_response()
}

fn list_reply(key: &str, items: Vec<Value>, base: &str, path: &str) -> Response {
    Json(json!({
        key: items,
        "links": {"self": format!("{base}/identity/v3/{path}"), "previous": null, "next": null},
    }))
    .into_response()
}

/// Keystone's list filters on projects and users: `name`, `enabled`, `domain_id` (everything
/// is in the one domain).
fn matches_filters(q: &BTreeMap<String, String>, name: &str, enabled: bool) -> bool {
    q.get("name").is_none_or(|n| n == name)
        && q.get("enabled")
            .is_none_or(|e| (e != "false" && e != "0") == enabled)
        && q.get("domain_id").is_none_or(|d| d == DOMAIN)
}

// ---- domains ----

fn domain_json(base: &str) -> Value {
    json!({
        "id": DOMAIN, "name": "Default", "enabled": true,
        "description": "The default domain", "tags": [], "options": {},
        "links": {"self": format!("{base}/identity/v3/domains/{DOMAIN}")},
    })
}

/// `GET /v3/domains` (filter `name`).
pub async fn list_domains(headers: HeaderMap, Query(q): Query<BTreeMap<String, String>>) -> Reply {
    let base = base_url(&headers);
    let items = match q.get("name") {
        Some(n) if n != "Default" && n != DOMAIN => vec![],
        _ => vec![domain_json(&base)],
    };
    Ok(list_reply("domains", items, &base, "domains"))
}

/// `GET /v3/domains/{id}`: only `default` (also found by its name `Default`).
pub async fn get_domain(headers: HeaderMap, Path(id): Path<String>) -> Reply {
    if id != DOMAIN && id != "Default" {
        return Err(KeystoneError::not_found(format!(
            "Could not find domain: {id}."
        )));
    }
    Ok(ok("domain", domain_json(&base_url(&headers))))
}

// ---- projects ----

fn project_json(p: &Project, base: &str) -> Value {
    let name = &p.metadata.name;
    json!({
        "id": name, "name": name, "domain_id": DOMAIN, "parent_id": DOMAIN,
        "description": p.spec.description.clone().unwrap_or_default(),
        "enabled": p.spec.enabled, "is_domain": false, "tags": p.spec.tags, "options": {},
        "links": {"self": format!("{base}/identity/v3/projects/{name}")},
    })
}

async fn bindings(state: &ApiState) -> Result<Vec<RoleBinding>, KeystoneError> {
    Api::<RoleBinding>::all(state.store.clone())
        .list()
        .await
        .map_err(store_err)
}

/// `GET /v3/projects` (filters `name`, `enabled`, `domain_id`): cloud admins only, as
/// Keystone's `identity:list_projects` policy (a user lists its own projects at
/// `/v3/auth/projects` or `/v3/users/{user}/projects`). Clients rely on the 403: `openstack
/// image add project` then takes the name it was given as the project's id.
pub async fn list_projects(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Reply {
    if !caller.is_cloud_admin() {
        return Err(KeystoneError::forbidden(
            "You are not authorized to perform the requested action: identity:list_projects.",
        ));
    }
    let base = base_url(&headers);
    let mut projects = Api::<Project>::all(state.store.clone())
        .list()
        .await
        .map_err(store_err)?;
    projects.retain(|p| matches_filters(&q, &p.metadata.name, p.spec.enabled));
    let items = projects.iter().map(|p| project_json(p, &base)).collect();
    Ok(list_reply("projects", items, &base, "projects"))
}

/// `GET /v3/users/{user}/projects` and `GET /v3/auth/projects`: the projects a user has a
/// role in (itself, or anyone for admins).
pub async fn user_projects(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    user: Option<Path<String>>,
) -> Reply {
    let me = caller.user().map(|u| u.name.clone()).unwrap_or_default();
    let user = user.map(|Path(u)| u).unwrap_or_else(|| me.clone());
    if user != me {
        require_admin(&caller)?;
    }
    let base = base_url(&headers);
    let mine =
        cirrus_auth::roles::projects_of(bindings(&state).await?.iter().map(|b| &b.spec), &user);
    let projects = Api::<Project>::all(state.store.clone())
        .list()
        .await
        .map_err(store_err)?;
    let items = projects
        .iter()
        .filter(|p| mine.contains_key(&p.metadata.name))
        .map(|p| project_json(p, &base))
        .collect();
    Ok(list_reply("projects", items, &base, "auth/projects"))
}

/// `GET /v3/projects/{id}`: admins, or members of it.
pub async fn get_project(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    // Keystone's policy: another project answers 403 whether or not it exists (so nothing
    // leaks), and clients rely on it — `openstack image add project` takes the name as the
    // id when the lookup is forbidden.
    if !caller.is_cloud_admin() && caller.project() != Some(id.as_str()) {
        return Err(KeystoneError::forbidden(
            "You are not authorized to perform the requested action: identity:get_project.",
        ));
    }
    let project = Api::<Project>::all(state.store.clone())
        .get(&id)
        .await
        .map_err(|_| KeystoneError::not_found(format!("Could not find project: {id}.")))?;
    Ok(ok("project", project_json(&project, &base_url(&headers))))
}

/// `POST /v3/projects`.
pub async fn create_project(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    require_admin(&caller)?;
    let map = parse_body(&body, "project")?;
    let name = opt_str(&map, "name", "project")?
        .ok_or_else(|| KeystoneError::bad_request("'name' is a required property of 'project'"))?;
    valid_name(&name, "project")?;
    check_domain(&map, "project")?;
    let mut spec = cirrus_crds::ProjectSpec {
        description: opt_str(&map, "description", "project")?,
        enabled: opt_bool(&map, "enabled", "project")?.unwrap_or(true),
        ..Default::default()
    };
    if let Some(Value::Array(tags)) = map.get("tags") {
        spec.tags = tags
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
    }
    let project = Api::<Project>::all(state.store.clone())
        .create(&Project::new(meta(&name), spec))
        .await
        .map_err(|e| match e {
            ObjectError::AlreadyExists { .. } => KeystoneError {
                code: StatusCode::CONFLICT,
                message: format!(
                    "Conflict occurred attempting to store project - it is duplicated: {name:?}."
                ),
            },
            other => store_err(other),
        })?;
    tracing::info!(project = %name, by = %caller.name(), "project created");
    Ok(created(
        "project",
        project_json(&project, &base_url(&headers)),
    ))
}

/// `PATCH /v3/projects/{id}`: description, enabled, tags.
pub async fn update_project(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    require_admin(&caller)?;
    let map = parse_body(&body, "project")?;
    if let Some(name) = opt_str(&map, "name", "project")?
        && name != id
    {
        return Err(KeystoneError::bad_request(
            "Invalid input for field 'project.name': Cirrus project names are their ids and cannot change",
        ));
    }
    let api = Api::<Project>::all(state.store.clone());
    let mut project = api.get(&id).await.map_err(store_err)?;
    if let Some(d) = opt_str(&map, "description", "project")? {
        project.spec.description = Some(d);
    }
    if let Some(enabled) = opt_bool(&map, "enabled", "project")? {
        project.spec.enabled = enabled;
    }
    if let Some(Value::Array(tags)) = map.get("tags") {
        project.spec.tags = tags
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
    }
    let project = api.replace(&project).await.map_err(store_err)?;
    if !project.spec.enabled {
        revoke_project_tokens(&state, &id).await?;
    }
    Ok(ok("project", project_json(&project, &base_url(&headers))))
}

/// `DELETE /v3/projects/{id}`: the project and its role assignments (its resources stay
/// until deleted, as in OpenStack). The `admin` project cannot be deleted.
pub async fn delete_project(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, KeystoneError> {
    require_admin(&caller)?;
    if id == cirrus_auth::ADMIN_PROJECT {
        return Err(KeystoneError::forbidden(
            "the admin project cannot be deleted",
        ));
    }
    Api::<Project>::all(state.store.clone())
        .delete(&id)
        .await
        .map_err(store_err)?;
    revoke_project_tokens(&state, &id).await?;
    let api = Api::<RoleBinding>::all(state.store.clone());
    for b in bindings(&state).await? {
        if b.spec.project == id {
            api.delete(&b.metadata.name).await.ok();
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---- users ----

fn user_json(u: &User, base: &str) -> Value {
    let name = &u.metadata.name;
    let mut body = json!({
        "id": name, "name": name, "domain_id": DOMAIN, "enabled": u.spec.enabled,
        "password_expires_at": null, "options": {},
        "links": {"self": format!("{base}/identity/v3/users/{name}")},
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
    users.retain(|u| matches_filters(&q, &u.metadata.name, u.spec.enabled));
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

/// `POST /v3/users`.
pub async fn create_user(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    require_admin(&caller)?;
    let map = parse_body(&body, "user")?;
    let name = opt_str(&map, "name", "user")?
        .ok_or_else(|| KeystoneError::bad_request("'name' is a required property of 'user'"))?;
    valid_name(&name, "user")?;
    check_domain(&map, "user")?;
    let mut spec = cirrus_crds::UserSpec {
        enabled: opt_bool(&map, "enabled", "user")?.unwrap_or(true),
        email: opt_str(&map, "email", "user")?,
        description: opt_str(&map, "description", "user")?,
        default_project: opt_str(&map, "default_project_id", "user")?,
        ..Default::default()
    };
    if let Some(p) = &spec.default_project
        && Api::<Project>::all(state.store.clone())
            .get(p)
            .await
            .is_err()
    {
        return Err(KeystoneError::bad_request(format!(
            "Invalid input for field 'user.default_project_id': project {p:?} does not exist"
        )));
    }
    if let Some(password) = opt_str(&map, "password", "user")? {
        spec.password_hash = Some(hash(password).await?);
    }
    let user = Api::<User>::all(state.store.clone())
        .create(&User::new(meta(&name), spec))
        .await
        .map_err(|e| match e {
            ObjectError::AlreadyExists { .. } => KeystoneError {
                code: StatusCode::CONFLICT,
                message: format!("Conflict occurred attempting to store user - Duplicate entry found with name {name}."),
            },
            other => store_err(other),
        })?;
    tracing::info!(user = %name, by = %caller.name(), "user created");
    Ok(created("user", user_json(&user, &base_url(&headers))))
}

async fn revoke_project_tokens(state: &ApiState, project: &str) -> Result<(), KeystoneError> {
    super::revocations::revoke_project(&state.store, &state.identity, project)
        .await
        .map_err(|e| KeystoneError::internal(format!("revoking the project's tokens: {e}")))
}

async fn revoke_user_tokens(state: &ApiState, user: &User) -> Result<(), KeystoneError> {
    let uid = user.metadata.uid.as_deref().unwrap_or_default();
    super::revocations::revoke_user(&state.store, &state.identity, uid)
        .await
        .map_err(|e| KeystoneError::internal(format!("revoking the user's tokens: {e}")))
}

/// `PATCH /v3/users/{id}`: enabled, password, email, description, default project.
pub async fn update_user(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    require_admin(&caller)?;
    let map = parse_body(&body, "user")?;
    let api = Api::<User>::all(state.store.clone());
    let mut user = api.get(&id).await.map_err(store_err)?;
    let mut revoke = false;
    if let Some(enabled) = opt_bool(&map, "enabled", "user")? {
        revoke |= user.spec.enabled && !enabled;
        user.spec.enabled = enabled;
    }
    if let Some(password) = opt_str(&map, "password", "user")? {
        user.spec.password_hash = Some(hash(password).await?);
        revoke = true;
    }
    if let Some(e) = opt_str(&map, "email", "user")? {
        user.spec.email = Some(e);
    }
    if let Some(d) = opt_str(&map, "description", "user")? {
        user.spec.description = Some(d);
    }
    if map.contains_key("default_project_id") {
        user.spec.default_project = opt_str(&map, "default_project_id", "user")?;
    }
    let user = api.replace(&user).await.map_err(store_err)?;
    if revoke {
        revoke_user_tokens(&state, &user).await?;
    }
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
    let user = Api::<User>::all(state.store.clone())
        .delete(&id)
        .await
        .map_err(store_err)?;
    revoke_user_tokens(&state, &user).await?;
    let api = Api::<RoleBinding>::all(state.store.clone());
    for b in bindings(&state).await? {
        if b.spec.user == id {
            api.delete(&b.metadata.name).await.ok();
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---- roles and assignments ----

const ROLES: [Role; 3] = [Role::Reader, Role::Member, Role::Admin];

fn role_json(role: Role, base: &str) -> Value {
    let name = role.name();
    json!({
        "id": name, "name": name, "domain_id": null, "options": {},
        "description": match role {
            Role::Reader => "Read the project's resources",
            Role::Member => "Create, change and delete the project's resources (implies reader)",
            Role::Admin => "Everything; in the admin project: the whole cloud (implies member)",
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

async fn existing<K: cirrus_crds::Resource>(
    state: &ApiState,
    name: &str,
    what: &str,
) -> Result<K, KeystoneError> {
    Api::<K>::all(state.store.clone())
        .get(name)
        .await
        .map_err(|_| KeystoneError::not_found(format!("Could not find {what}: {name}.")))
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
    match Api::<RoleBinding>::all(state.store.clone())
        .create(&RoleBinding::new(meta(&name), spec))
        .await
    {
        Ok(_) | Err(ObjectError::AlreadyExists { .. }) => Ok(StatusCode::NO_CONTENT),
        Err(e) => Err(store_err(e)),
    }
}

/// `HEAD`/`GET /v3/projects/{p}/users/{u}/roles/{r}`: 204 when granted, else 404.
pub async fn check_grant(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project, user, role)): Path<(String, String, String)>,
) -> Result<StatusCode, KeystoneError> {
    if !caller.is_cloud_admin() && caller.user().map(|u| u.name.as_str()) != Some(user.as_str()) {
        return Err(KeystoneError::forbidden(
            "you may only check your own role assignments",
        ));
    }
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
    let api = Api::<RoleBinding>::all(state.store.clone());
    let mut found = false;
    for b in bindings(&state).await? {
        if b.spec.user == user && b.spec.project == project && b.spec.role == role {
            api.delete(&b.metadata.name).await.map_err(store_err)?;
            found = true;
        }
    }
    if !found {
        return Err(KeystoneError::not_found(format!(
            "Could not find role assignment: {} for {user} on {project}.",
            role.name()
        )));
    }
    if let Ok(u) = existing::<User>(&state, &user, "user").await {
        revoke_user_tokens(&state, &u).await?;
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
    if !caller.is_cloud_admin() && caller.user().map(|u| u.name.as_str()) != Some(user.as_str()) {
        return Err(KeystoneError::forbidden(
            "you may only list your own role assignments",
        ));
    }
    let base = base_url(&headers);
    let items = bindings(&state)
        .await?
        .iter()
        .filter(|b| b.spec.user == user && b.spec.project == project)
        .map(|b| role_json(b.spec.role, &base))
        .collect();
    Ok(list_reply("roles", items, &base, "roles"))
}

/// `GET /v3/role_assignments` (filters `user.id`, `scope.project.id`, `role.id`;
/// `include_names` adds names, which are the ids anyway).
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
    let items = bindings(&state)
        .await?
        .iter()
        .filter(|b| user_filter.as_ref().is_none_or(|u| &b.spec.user == u))
        .filter(|b| q.get("scope.project.id").is_none_or(|p| &b.spec.project == p))
        .filter(|b| q.get("role.id").is_none_or(|r| r == b.spec.role.name()))
        .map(|b| {
            let (p, u, r) = (&b.spec.project, &b.spec.user, b.spec.role.name());
            json!({
                "role": {"id": r, "name": r},
                "user": {"id": u, "name": u, "domain": {"id": DOMAIN, "name": "Default"}},
                "scope": {"project": {"id": p, "name": p, "domain": {"id": DOMAIN, "name": "Default"}}},
                "links": {"assignment": format!("{base}/identity/v3/projects/{p}/users/{u}/roles/{r}")},
            })
        })
        .collect();
    Ok(list_reply(
        "role_assignments",
        items,
        &base,
        "role_assignments",
    ))
}

// ---- catalog ----

/// `GET /v3/auth/catalog`: the catalog of the caller's token scope.
pub async fn auth_catalog(caller: Caller, headers: HeaderMap) -> Reply {
    let base = base_url(&headers);
    Ok(Json(json!({
        "catalog": super::catalog::catalog(&base, caller.project()),
        "links": {"self": format!("{base}/identity/v3/auth/catalog"), "previous": null, "next": null},
    }))
    .into_response())
}

/// `GET /v3/services` (filter `type`).
pub async fn list_services(headers: HeaderMap, Query(q): Query<BTreeMap<String, String>>) -> Reply {
    let base = base_url(&headers);
    let items = super::catalog::services(&base)
        .into_iter()
        .filter(|s| q.get("type").is_none_or(|t| s["type"] == t.as_str()))
        .collect();
    Ok(list_reply("services", items, &base, "services"))
}

/// `GET /v3/endpoints` (filters `interface`, `service_id`, `region_id`).
pub async fn list_endpoints(
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Reply {
    let base = base_url(&headers);
    let items = super::catalog::endpoints(&base)
        .into_iter()
        .filter(|e| {
            q.get("interface")
                .is_none_or(|i| e["interface"] == i.as_str())
        })
        .filter(|e| {
            q.get("service_id")
                .is_none_or(|s| e["service_id"] == s.as_str())
        })
        .filter(|e| {
            q.get("region_id")
                .is_none_or(|r| e["region_id"] == r.as_str())
        })
        .collect();
    Ok(list_reply("endpoints", items, &base, "endpoints"))
}

/// `GET /v3/regions`.
pub async fn list_regions(headers: HeaderMap) -> Reply {
    let base = base_url(&headers);
    let items = vec![json!({
        "id": super::catalog::REGION, "description": "", "parent_region_id": null,
        "links": {"self": format!("{base}/identity/v3/regions/{}", super::catalog::REGION)},
    })];
    Ok(list_reply("regions", items, &base, "regions"))
}
