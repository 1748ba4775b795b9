//! Keystone v3 projects over `Project` objects: generated ids, free-text names unique among
//! projects, renames that keep the id ([`cirrus_crds::keystone`]).
//!
//! Writes go through [`crate::resources`] like every other front end's, so the name check
//! and the revocations of a disabled or deleted project ([`crate::admission`]) apply here too.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use cirrus_crds::Project;
use cirrus_store::objects::Api;
use serde_json::{Map, Value, json};

use super::KeystoneError;
use super::admin::{
    DOMAIN, Reply, bindings, check_domain, create_object, created, delete_with_bindings,
    list_reply, matches_filters, ok, opt_bool, opt_str, parse_body, patch_spec, require_admin,
    store_err,
};
use super::discovery::base_url;
use crate::ApiState;
use crate::admission::Writer;
use crate::auth::Caller;

/// Keystone's view of a project.
pub(super) fn project_json(p: &Project, base: &str) -> Value {
    let id = &p.metadata.name;
    json!({
        "id": id, "name": p.keystone_name(), "domain_id": DOMAIN, "parent_id": DOMAIN,
        "description": p.spec.description.clone().unwrap_or_default(),
        "enabled": p.spec.enabled, "is_domain": false, "tags": p.spec.tags, "options": {},
        "links": {"self": format!("{base}/identity/v3/projects/{id}")},
    })
}

async fn projects(state: &ApiState) -> Result<Vec<Project>, KeystoneError> {
    Api::<Project>::all(state.store.clone())
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
    let mut projects = projects(&state).await?;
    projects.retain(|p| matches_filters(&q, p.keystone_name(), p.spec.enabled));
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
    let items = projects(&state)
        .await?
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

fn valid_name(map: &Map<String, Value>) -> Result<Option<String>, KeystoneError> {
    super::admin::valid_name(map, "project", cirrus_crds::keystone::PROJECT_NAME_MAX)
}

fn tags(map: &Map<String, Value>) -> Option<Vec<String>> {
    match map.get("tags") {
        Some(Value::Array(tags)) => Some(
            tags.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}

/// `POST /v3/projects`: a new id, the name as given.
pub async fn create_project(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    require_admin(&caller)?;
    let map = parse_body(&body, "project")?;
    let name = valid_name(&map)?
        .ok_or_else(|| KeystoneError::bad_request("'name' is a required property of 'project'"))?;
    check_domain(&map, "project")?;
    let spec = cirrus_crds::ProjectSpec {
        name: Some(name.clone()),
        description: opt_str(&map, "description", "project")?,
        enabled: opt_bool(&map, "enabled", "project")?.unwrap_or(true),
        tags: tags(&map).unwrap_or_default(),
        ..Default::default()
    };
    let meta = cirrus_crds::meta::ObjectMeta {
        name: cirrus_crds::keystone::new_id(),
        ..Default::default()
    };
    let project = create_object(&state, &caller, &Project::new(meta, spec)).await?;
    tracing::info!(project = %project.metadata.name, %name, by = %caller.name(), "project created");
    Ok(created(
        "project",
        project_json(&project, &base_url(&headers)),
    ))
}

/// `PATCH /v3/projects/{id}`: name, description, enabled, tags. A rename keeps the id, so
/// everything in the project stays where it is.
pub async fn update_project(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    require_admin(&caller)?;
    let map = parse_body(&body, "project")?;
    let mut spec = Map::new();
    if let Some(name) = valid_name(&map)? {
        spec.insert("name".into(), json!(name));
    }
    if let Some(d) = opt_str(&map, "description", "project")? {
        spec.insert("description".into(), json!(d));
    }
    if let Some(enabled) = opt_bool(&map, "enabled", "project")? {
        spec.insert("enabled".into(), json!(enabled));
    }
    if let Some(tags) = tags(&map) {
        spec.insert("tags".into(), json!(tags));
    }
    let project: Project = patch_spec(&state, Writer::Caller(&caller), &id, spec).await?;
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
    delete_with_bindings::<Project>(&state, &id, |b| b.project == id).await?;
    Ok(StatusCode::NO_CONTENT)
}
