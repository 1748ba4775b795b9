//! Handlers of the resource paths: a thin layer from HTTP to [`ObjectStore`] calls.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cirrus_crds::{KindInfo, Scope};
use cirrus_store::fields::FieldSelector;
use cirrus_store::objects::{ListOptions, Part, WatchEvent, WatchOptions};
use cirrus_store::selector::LabelSelector;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use authz::Op;

mod admission;
pub(crate) mod authz;
mod defaults;
mod users;
mod volume_admission;

/// Query parameters the resource paths understand.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceQuery {
    watch: Option<String>,
    resource_version: Option<String>,
    label_selector: Option<String>,
    field_selector: Option<String>,
    limit: Option<usize>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
    dry_run: Option<String>,
    timeout_seconds: Option<u64>,
}

impl ResourceQuery {
    fn dry_run(&self) -> Result<bool, ApiError> {
        match self.dry_run.as_deref() {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "dryRun must be \"All\", got {other:?}"
            ))),
        }
    }

    fn watching(&self) -> bool {
        matches!(self.watch.as_deref(), Some("true") | Some("1"))
    }

    fn selector(&self) -> Result<LabelSelector, ApiError> {
        LabelSelector::parse(self.label_selector.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    fn fields(&self) -> Result<FieldSelector, ApiError> {
        FieldSelector::parse(self.field_selector.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    fn resource_version(&self) -> Result<Option<i64>, ApiError> {
        match self.resource_version.as_deref() {
            None | Some("") => Ok(None),
            Some(rv) => rv
                .parse::<i64>()
                .ok()
                .filter(|v| *v >= 0)
                .map(Some)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}: not a revision"))
                }),
        }
    }
}

/// The kind and project a request addresses.
struct Target {
    kind: &'static KindInfo,
    project: Option<String>,
}

impl Target {
    /// [`authz::authorize`] for this kind and project.
    async fn authorize(
        &self,
        state: &ApiState,
        caller: &Caller,
        name: Option<&str>,
        op: Op<'_>,
    ) -> Result<Option<String>, ApiError> {
        authz::authorize(state, caller, self.kind, self.project.as_deref(), name, op).await
    }
}

/// Resolves path parameters to a kind and project; `collection_read` allows a project-scoped
/// kind without a project (listing across projects).
///
/// `/projects/{project}` without a plural addresses the `Project` object itself.
fn resolve(params: &HashMap<String, String>, collection_read: bool) -> Result<Target, ApiError> {
    let Some(plural) = params.get("plural").map(String::as_str) else {
        let kind = cirrus_crds::kind_by_plural("projects")
            .ok_or_else(|| ApiError::not_found("the server has no resource type \"projects\""))?;
        return Ok(Target {
            kind,
            project: None,
        });
    };
    let kind = cirrus_crds::kind_by_plural(plural).ok_or_else(|| {
        ApiError::not_found(format!("the server has no resource type {plural:?}"))
    })?;
    let project = params.get("project").cloned();
    match (kind.scope, &project) {
        (Scope::Cluster, Some(_)) => Err(ApiError::not_found(format!(
            "{plural} is cluster-scoped: use /apis/cirrus.dev/v1/{plural}"
        ))),
        (Scope::Project, None) if !collection_read => Err(ApiError::not_found(format!(
            "{plural} is project-scoped: use /apis/cirrus.dev/v1/projects/{{project}}/{plural}"
        ))),
        _ => Ok(Target { kind, project }),
    }
}

fn name_of(params: &HashMap<String, String>) -> &str {
    let key = if params.contains_key("plural") {
        "name"
    } else {
        "project"
    };
    params.get(key).map(String::as_str).unwrap_or_default()
}

/// Reads a request body up to the configured limit.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::too_large(limit))
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "request body is empty: expected a JSON object",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))
}

fn json_response(code: StatusCode, value: Value) -> Response {
    (code, axum::Json(value)).into_response()
}

/// `GET` on a collection: list, or watch with `?watch=true`.
pub async fn collection_get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<ResourceQuery>,
) -> Result<Response, ApiError> {
    let mut target = resolve(&params, true)?;
    if let Some(narrowed) = target
        .authorize(
            &state,
            &caller,
            None,
            Op::List(query.field_selector.as_deref()),
        )
        .await?
    {
        target.project = Some(narrowed);
    }
    if query.watching() {
        return watch(state, target, query).await;
    }
    let options = ListOptions {
        selector: query.selector()?,
        fields: query.fields()?,
        limit: query.limit,
        continue_token: query.continue_token.clone().filter(|t| !t.is_empty()),
    };
    let mut list = state
        .store
        .list(target.kind, target.project.as_deref(), &options)
        .await?;
    for item in &mut list.items {
        authz::redact(target.kind, item);
    }
    let mut metadata = json!({ "resourceVersion": list.resource_version.to_string() });
    if let Some(token) = list.continue_token {
        metadata["continue"] = Value::from(token);
    }
    Ok(json_response(
        StatusCode::OK,
        json!({
            "apiVersion": cirrus_crds::API_VERSION,
            "kind": format!("{}List", target.kind.kind),
            "metadata": metadata,
            "items": list.items,
        }),
    ))
}

/// `POST` on a collection: create.
pub async fn collection_post(
    State(state): State<ApiState>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<ResourceQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let target = resolve(&params, false)?;
    let mut object = parse_json(&read_body(body, state.body_limit).await?)?;
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string);
    target
        .authorize(&state, &caller, name.as_deref(), Op::Create)
        .await?;
    users::hash_password_field(target.kind, &mut object, None).await?;
    let mut created = create(
        &state,
        target.kind,
        target.project.as_deref(),
        object,
        query.dry_run()?,
    )
    .await?;
    authz::redact(target.kind, &mut created);
    Ok(json_response(StatusCode::CREATED, created))
}

/// Creates `object` the way every API does (native and OpenStack alike): defaults, quota,
/// then the store's validation and write. Callers have authorized the request.
pub(crate) async fn create(
    state: &ApiState,
    kind: &'static KindInfo,
    project: Option<&str>,
    mut object: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    defaults::on_create(kind, &mut object);
    let limited = crate::quota::check(&state.store, kind, project, &object, false).await?;
    let created = state.store.create(kind, project, object, dry_run).await?;
    if dry_run || limited == crate::quota::Limited::No {
        return Ok(created);
    }
    // Recheck: a concurrent create may have taken the last unit between check and write.
    if let Err(over) = crate::quota::check(&state.store, kind, project, &created, true).await {
        let name = created
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Err(e) = state.store.delete(kind, project, name, false).await {
            tracing::warn!(error = %e, %name, "could not undo a create over quota");
        }
        return Err(over);
    }
    Ok(created)
}

/// What a write to an identity object implies beyond the object: a disabled project's
/// tokens stop working at once.
async fn after_write(state: &ApiState, kind: &KindInfo, object: &Value) -> Result<(), ApiError> {
    let disabled = object.pointer("/spec/enabled") == Some(&Value::Bool(false));
    if kind.plural != "projects" || !disabled {
        return Ok(());
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    revoke_project_tokens(state, name).await
}

/// Revokes every token scoped to `project` (disabled or deleted).
async fn revoke_project_tokens(state: &ApiState, project: &str) -> Result<(), ApiError> {
    crate::identity::revocations::revoke_project(&state.store, &state.identity, project)
        .await
        .map_err(|e| ApiError::internal(format!("revoking the project's tokens: {e}")))
}

/// Deletes `name` the way every API does: the in-use and protection checks, then the
/// store's delete (finalizers finish it). Callers have authorized the request.
pub(crate) async fn delete(
    state: &ApiState,
    kind: &'static KindInfo,
    project: Option<&str>,
    name: &str,
    dry_run: bool,
) -> Result<Value, ApiError> {
    admission::check_delete(&state.store, kind, project, name).await?;
    let last = state.store.delete(kind, project, name, dry_run).await?;
    if !dry_run && kind.plural == "projects" {
        revoke_project_tokens(state, name).await?;
    }
    Ok(last)
}

/// `GET` of one object or its status.
pub async fn item_get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let target = resolve(&params, false)?;
    target
        .authorize(&state, &caller, Some(name_of(&params)), Op::Get)
        .await?;
    let mut object = state
        .store
        .get(target.kind, target.project.as_deref(), name_of(&params))
        .await?;
    authz::redact(target.kind, &mut object);
    Ok(json_response(StatusCode::OK, object))
}

/// `PUT` of one object.
pub async fn item_put(
    state: State<ApiState>,
    caller: Caller,
    params: Path<HashMap<String, String>>,
    query: Query<ResourceQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    put(state, caller, params, query, body, Part::Main).await
}

/// `PUT` of one object's status.
pub async fn status_put(
    state: State<ApiState>,
    caller: Caller,
    params: Path<HashMap<String, String>>,
    query: Query<ResourceQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    put(state, caller, params, query, body, Part::Status).await
}

/// `PATCH` of one object.
pub async fn item_patch(
    state: State<ApiState>,
    caller: Caller,
    params: Path<HashMap<String, String>>,
    query: Query<ResourceQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    patch(state, caller, params, query, headers, body, Part::Main).await
}

/// `PATCH` of one object's status.
pub async fn status_patch(
    state: State<ApiState>,
    caller: Caller,
    params: Path<HashMap<String, String>>,
    query: Query<ResourceQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    patch(state, caller, params, query, headers, body, Part::Status).await
}

async fn put(
    State(state): State<ApiState>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<ResourceQuery>,
    body: Body,
    part: Part,
) -> Result<Response, ApiError> {
    let target = resolve(&params, false)?;
    let mut object = parse_json(&read_body(body, state.body_limit).await?)?;
    target
        .authorize(
            &state,
            &caller,
            Some(name_of(&params)),
            Op::Update(part, &object),
        )
        .await?;
    if part == Part::Main {
        let stored = users::stored_hash(&state, target.kind, name_of(&params)).await?;
        users::hash_password_field(target.kind, &mut object, stored).await?;
    }
    let mut updated = state
        .store
        .update(
            target.kind,
            target.project.as_deref(),
            name_of(&params),
            object,
            part,
            query.dry_run()?,
        )
        .await?;
    after_write(&state, target.kind, &updated).await?;
    authz::redact(target.kind, &mut updated);
    Ok(json_response(StatusCode::OK, updated))
}

/// Applies a JSON merge patch to `part` of the addressed object.
async fn patch(
    State(state): State<ApiState>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<ResourceQuery>,
    headers: HeaderMap,
    body: Body,
    part: Part,
) -> Result<Response, ApiError> {
    let target = resolve(&params, false)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media != "application/merge-patch+json" {
        return Err(ApiError::unsupported_media_type(format!(
            "PATCH needs Content-Type application/merge-patch+json, got {content_type:?}"
        )));
    }
    let mut patch = parse_json(&read_body(body, state.body_limit).await?)?;
    target
        .authorize(
            &state,
            &caller,
            Some(name_of(&params)),
            Op::Patch(part, &patch),
        )
        .await?;
    if part == Part::Main {
        users::hash_password_field(target.kind, &mut patch, None).await?;
    }
    let mut patched = state
        .store
        .patch(
            target.kind,
            target.project.as_deref(),
            name_of(&params),
            &patch,
            part,
            query.dry_run()?,
        )
        .await?;
    after_write(&state, target.kind, &patched).await?;
    authz::redact(target.kind, &mut patched);
    Ok(json_response(StatusCode::OK, patched))
}

/// `DELETE` of one object.
pub async fn item_delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<ResourceQuery>,
) -> Result<Response, ApiError> {
    let target = resolve(&params, false)?;
    target
        .authorize(&state, &caller, Some(name_of(&params)), Op::Delete)
        .await?;
    let mut last = delete(
        &state,
        target.kind,
        target.project.as_deref(),
        name_of(&params),
        query.dry_run()?,
    )
    .await?;
    authz::redact(target.kind, &mut last);
    Ok(json_response(StatusCode::OK, last))
}

/// Streams watch events as JSON lines until the client leaves, the timeout passes or the
/// watch ends.
async fn watch(
    state: ApiState,
    target: Target,
    query: ResourceQuery,
) -> Result<Response, ApiError> {
    let options = WatchOptions {
        selector: query.selector()?,
        fields: query.fields()?,
        resource_version: query.resource_version()?,
        bookmark_interval: state.bookmark_interval,
    };
    let events = state
        .store
        .watch(target.kind, target.project.as_deref(), options)
        .await?;
    let kind_info = target.kind;
    let kind = target.kind.kind;
    let lines = events.map(move |event| {
        let (kind_word, mut object) = match event {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(rv) => (
                "BOOKMARK",
                json!({
                    "apiVersion": cirrus_crds::API_VERSION,
                    "kind": kind,
                    "metadata": { "resourceVersion": rv.to_string() },
                }),
            ),
            WatchEvent::Error(err) => ("ERROR", ApiError::from(err).to_status_json()),
        };
        authz::redact(kind_info, &mut object);
        let mut line = serde_json::to_vec(&json!({ "type": kind_word, "object": object }))
            .expect("events serialize");
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    let body = match query.timeout_seconds {
        Some(secs) => {
            let deadline = tokio::time::sleep(Duration::from_secs(secs));
            Body::from_stream(lines.take_until(deadline))
        }
        None => Body::from_stream(lines),
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json;stream=watch")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .expect("static headers are valid"))
}
