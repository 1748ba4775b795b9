//! Handlers of the resource paths: a thin layer from HTTP to [`ObjectStore`] calls.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cirrus_crds::{KindInfo, Scope};
use cirrus_store::fields::FieldSelector;
use cirrus_store::objects::{ListOptions, Part, Preconditions, WatchEvent, WatchOptions};
use cirrus_store::selector::LabelSelector;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ApiState;
use crate::admission::{self, Writer};
use crate::auth::Caller;
use crate::error::ApiError;
use authz::Op;

pub(crate) mod authz;
mod users;

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
        let kind = <cirrus_crds::Project as cirrus_crds::Resource>::info();
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
        Writer::Caller(&caller),
        target.kind,
        target.project.as_deref(),
        object,
        query.dry_run()?,
    )
    .await?;
    authz::redact(target.kind, &mut created);
    Ok(json_response(StatusCode::CREATED, created))
}

/// Creates `object` the way every API does (native and OpenStack alike): defaults, the
/// write rules of [`admission`], quota, then the store's validation and write. Callers have
/// authorized the request.
pub(crate) async fn create(
    state: &ApiState,
    writer: Writer<'_>,
    kind: &'static KindInfo,
    project: Option<&str>,
    mut object: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    admission::defaults::on_create(kind, &mut object);
    admission::admit(writer, kind, None, &object, Part::Main)?;
    admission::image_use::check(state, kind, project, &object).await?;
    admission::network_use::check(&state.store, kind, project, None, &object).await?;
    let names = admission::identity_names::before_create(&state.store, kind, &object).await?;
    // Counting usage and writing is one step per project in this process.
    let _quota = match project {
        Some(p) if crate::quota::limits_kind(kind) => Some(admission::quota_lock::lock(p).await),
        _ => None,
    };
    let limited = crate::quota::check(&state.store, kind, project, &object, false).await?;
    let created = state.store.create(kind, project, object, dry_run).await?;
    if names.is_some() && !dry_run {
        admission::identity_names::after_create(&state.store, kind, &created).await?;
    }
    if dry_run || limited == crate::quota::Limited::No {
        return Ok(created);
    }
    // Recheck: another API replica may have taken the last unit between check and write.
    if let Err(over) = crate::quota::check(&state.store, kind, project, &created, true).await {
        let name = created
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // Only the object this call made: a client may have deleted it and made another.
        let made = Preconditions::uid(
            created
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        if let Err(e) = state
            .store
            .delete_with(kind, project, name, &made, false)
            .await
        {
            tracing::warn!(error = %e, %name, "could not undo a create over quota");
        }
        return Err(over);
    }
    Ok(created)
}

/// The change a [`write`] makes to the stored object.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Change<'a> {
    /// Replace the part with this object's (`PUT`).
    Replace(&'a Value),
    /// Apply this JSON merge patch (RFC 7386) to the part (`PATCH`).
    MergePatch(&'a Value),
}

/// Whether `change` can give an identity object another Keystone name: a replacement can,
/// a merge patch only when it touches `spec.name` (or the whole `spec`).
fn may_rename(change: Change<'_>) -> bool {
    match change {
        Change::Replace(_) => true,
        Change::MergePatch(patch) => match patch.get("spec") {
            None => false,
            Some(Value::Object(spec)) => spec.contains_key("name"),
            Some(_) => true,
        },
    }
}

/// Updates `part` of `name` the way every API does: [`admission`] judges the object exactly
/// as it is about to be stored (field policies, status writers, immutability) inside the
/// store's compare-and-swap loop, so no concurrent write can slip between the judgement and
/// the write; a change that can grow quota usage is checked first, under the project's quota
/// lock; identity writes revoke what they take away. A `metadata.resourceVersion` in the body
/// is the client's precondition (a `409` when stale). Callers have authorized the request.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write(
    state: &ApiState,
    writer: Writer<'_>,
    kind: &'static KindInfo,
    project: Option<&str>,
    name: &str,
    change: Change<'_>,
    part: Part,
    dry_run: bool,
) -> Result<Value, ApiError> {
    // A rebuild names its new image in the change: the same acceptance rule as a create.
    if part == Part::Main {
        let named = match change {
            Change::Replace(object) | Change::MergePatch(object) => object,
        };
        admission::image_use::check_change(state, kind, project, name, named).await?;
        let replace = matches!(change, Change::Replace(_));
        if let Some(p) = project
            && admission::network_use::concerns(kind, p, named, replace)
        {
            let current = state.store.get(kind, project, name).await?;
            let proposed = proposed(&current, change);
            // Who may write the fields at all is answered first (again in the write).
            admission::admit(writer, kind, Some(&current), &proposed, part)?;
            admission::network_use::check(&state.store, kind, project, Some(&current), &proposed)
                .await?;
            admission::network_use::check_unshare(&state.store, kind, project, &current, &proposed)
                .await?;
        }
    }
    let _names = match part {
        Part::Main if admission::identity_names::named_kind(kind) && may_rename(change) => {
            let current = state.store.get(kind, project, name).await?;
            let proposed = proposed(&current, change);
            admission::identity_names::before_rename(&state.store, kind, &current, &proposed)
                .await?
        }
        _ => None,
    };
    let _quota = match project {
        Some(p) if part == Part::Main && crate::quota::limits_kind(kind) => {
            quota_for_update(state, kind, p, name, change).await?
        }
        _ => None,
    };
    let judged: std::sync::Mutex<Option<Value>> = std::sync::Mutex::new(None);
    let guard = |current: &Value, new: &Value| {
        admission::admit(writer, kind, Some(current), new, part)
            .map_err(|e| cirrus_store::objects::Refusal(Box::new(e)))?;
        *judged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(current.clone());
        Ok(())
    };
    let written = match change {
        Change::Replace(object) => {
            state
                .store
                .update_guarded(kind, project, name, object.clone(), part, dry_run, &guard)
                .await?
        }
        Change::MergePatch(patch) => {
            state
                .store
                .patch_guarded(kind, project, name, patch, part, dry_run, &guard)
                .await?
        }
    };
    let old = judged
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !dry_run && let Some(old) = &old {
        admission::revoke::after_write(state, kind, Some(old), Some(&written)).await?;
    }
    Ok(written)
}

/// The quota check of an update that can grow usage (a resize, an extend, added rules):
/// returns the project's quota lock, held until the write is done, or `None` when the change
/// grows nothing.
async fn quota_for_update(
    state: &ApiState,
    kind: &'static KindInfo,
    project: &str,
    name: &str,
    change: Change<'_>,
) -> Result<Option<admission::quota_lock::ProjectQuotaGuard>, ApiError> {
    let current = state.store.get(kind, Some(project), name).await?;
    let proposed = proposed(&current, change);
    if !crate::quota::may_grow(kind, &current, &proposed) {
        return Ok(None);
    }
    let lock = admission::quota_lock::lock(project).await;
    crate::quota::check_update(&state.store, kind, Some(project), &current, &proposed).await?;
    Ok(Some(lock))
}

/// The object `change` would make of `current`.
fn proposed(current: &Value, change: Change<'_>) -> Value {
    match change {
        Change::Replace(object) => object.clone(),
        Change::MergePatch(patch) => {
            let mut merged = current.clone();
            cirrus_store::objects::merge_patch::apply(&mut merged, patch);
            merged
        }
    }
}

/// Deletes `name` the way every API does: the in-use and protection checks, then the
/// store's delete (finalizers finish it), then the revocations an identity delete implies.
/// Callers have authorized the request.
pub(crate) async fn delete(
    state: &ApiState,
    kind: &'static KindInfo,
    project: Option<&str>,
    name: &str,
    dry_run: bool,
) -> Result<Value, ApiError> {
    delete_with(
        state,
        kind,
        project,
        name,
        &Preconditions::default(),
        false,
        dry_run,
    )
    .await
}

/// [`delete`] of the object only while it matches `preconditions` (a `409` otherwise);
/// `cloud_admin`: the caller is one (a project's `default` security group is theirs to
/// remove, as in Neutron).
pub(crate) async fn delete_with(
    state: &ApiState,
    kind: &'static KindInfo,
    project: Option<&str>,
    name: &str,
    preconditions: &Preconditions,
    cloud_admin: bool,
    dry_run: bool,
) -> Result<Value, ApiError> {
    admission::delete::check_delete(&state.store, kind, project, name, cloud_admin).await?;
    let last = state
        .store
        .delete_with(kind, project, name, preconditions, dry_run)
        .await?;
    if !dry_run {
        admission::revoke::after_write(state, kind, Some(&last), None).await?;
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
    let mut updated = write(
        &state,
        Writer::Caller(&caller),
        target.kind,
        target.project.as_deref(),
        name_of(&params),
        Change::Replace(&object),
        part,
        query.dry_run()?,
    )
    .await?;
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
    let mut patched = write(
        &state,
        Writer::Caller(&caller),
        target.kind,
        target.project.as_deref(),
        name_of(&params),
        Change::MergePatch(&patch),
        part,
        query.dry_run()?,
    )
    .await?;
    authz::redact(target.kind, &mut patched);
    Ok(json_response(StatusCode::OK, patched))
}

/// `DELETE` of one object.
pub async fn item_delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<ResourceQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let target = resolve(&params, false)?;
    target
        .authorize(&state, &caller, Some(name_of(&params)), Op::Delete)
        .await?;
    let preconditions = delete_options(&read_body(body, state.body_limit).await?)?;
    let mut last = delete_with(
        &state,
        target.kind,
        target.project.as_deref(),
        name_of(&params),
        &preconditions,
        caller.is_cloud_admin(),
        query.dry_run()?,
    )
    .await?;
    authz::redact(target.kind, &mut last);
    Ok(json_response(StatusCode::OK, last))
}

/// A `DELETE` body as Kubernetes' `DeleteOptions`: optional, and of its fields only
/// `preconditions` (`uid`, `resourceVersion`) means anything here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeleteOptions {
    #[serde(default)]
    #[allow(dead_code)]
    kind: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    api_version: Option<String>,
    #[serde(default)]
    preconditions: Option<DeletePreconditions>,
}

/// `DeleteOptions.preconditions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeletePreconditions {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
}

/// The preconditions of a `DELETE` body (none when the body is empty).
fn delete_options(body: &[u8]) -> Result<Preconditions, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Preconditions::default());
    }
    let options: DeleteOptions = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("request body is not valid DeleteOptions: {e}"))
    })?;
    let Some(wanted) = options.preconditions else {
        return Ok(Preconditions::default());
    };
    let resource_version = match wanted.resource_version.as_deref() {
        None => None,
        Some(rv) => Some(rv.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
            ApiError::bad_request(format!(
                "preconditions.resourceVersion: {rv:?} is not a resourceVersion (a positive integer)"
            ))
        })?),
    };
    Ok(Preconditions {
        uid: wanted.uid,
        resource_version,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_changes_that_touch_spec_name_can_rename() {
        let replace = json!({"spec": {"description": "x"}});
        assert!(may_rename(Change::Replace(&replace)));
        assert!(may_rename(Change::MergePatch(
            &json!({"spec": {"name": "Sales"}})
        )));
        assert!(may_rename(Change::MergePatch(&json!({"spec": null}))));
        assert!(!may_rename(Change::MergePatch(
            &json!({"spec": {"enabled": false}})
        )));
        assert!(!may_rename(Change::MergePatch(
            &json!({"metadata": {"labels": {"a": "b"}}})
        )));
    }
}
