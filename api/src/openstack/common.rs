//! Conventions every OpenStack translation shares.
//!
//! - **Ids.** An OpenStack `id` is the object's `metadata.uid` (a UUID, what clients expect)
//!   for servers, images, networks, subnets, ports, security groups, volumes and snapshots.
//!   Flavors, key pairs, projects, users and roles use the object *name* as id (Nova lets
//!   flavor ids be any string and names key pairs by name; Keystone ids are names here).
//! - **Names.** OpenStack names are free text; object names are DNS-like. A resource created
//!   through OpenStack keeps its OpenStack name in the annotation [`NAME_ANNOTATION`]; its
//!   object name is that name when it is a valid, free object name, else a generated
//!   `<prefix>-<8 hex>` ([`object_name_for`]). [`display_name`] reads it back.
//! - **Lookups.** Objects are found by uid within the caller's project ([`find_by_uid`]),
//!   or across projects for cloud admins.

use cirrus_crds::KindInfo;
use cirrus_crds::Resource as _;
use cirrus_store::objects::ListOptions;
use serde_json::Value;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::openstack::fault::Fault;

/// Annotation holding the name a resource was given through an OpenStack API.
pub const NAME_ANNOTATION: &str = "openstack.org/name";

/// The largest size or amount OpenStack's APIs accept (their databases' `MAX_INT`,
/// 2³¹ − 1): Nova's flavor `ram`/`vcpus`/`disk`/`swap`/ephemeral and `volume_size`, Cinder's
/// volume `size`/`new_size`. Larger ones are refused with a `400` naming the field, so no
/// sum of them (quota usage) can overflow.
pub const MAX_INT: u64 = 0x7fff_ffff;

/// The OpenStack name of `object`: [`NAME_ANNOTATION`] when set, else `metadata.name`.
pub fn display_name(object: &Value) -> String {
    object
        .pointer("/metadata/annotations/openstack.org~1name")
        .and_then(Value::as_str)
        .or_else(|| object.pointer("/metadata/name").and_then(Value::as_str))
        .unwrap_or_default()
        .to_string()
}

/// The object's uid (its OpenStack id for uid-identified kinds).
pub fn uid(object: &Value) -> String {
    object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The object's name.
pub fn name(object: &Value) -> String {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The object name to create for OpenStack name `wanted`: `wanted` itself when it is a valid
/// object name not yet used in `project`, else `<prefix>-<8 random hex>`. Also returns
/// whether the name annotation is needed (the names differ).
pub async fn object_name_for(
    state: &ApiState,
    kind: &'static KindInfo,
    project: Option<&str>,
    prefix: &str,
    wanted: &str,
) -> Result<(String, bool), ApiError> {
    if cirrus_crds::validation::name_problem(wanted).is_none() {
        match state.store.get(kind, project, wanted).await {
            Err(cirrus_store::objects::ObjectError::NotFound { .. }) => {
                return Ok((wanted.to_string(), false));
            }
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(e.to_string()))?;
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok((format!("{prefix}-{suffix}"), true))
}

/// Every object of `kind` in `project` (`None`: all projects, cluster-scoped kinds).
pub async fn list(
    state: &ApiState,
    kind: &'static KindInfo,
    project: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    let mut items = Vec::new();
    let mut options = ListOptions::default();
    loop {
        let page = state.store.list(kind, project, &options).await?;
        items.extend(page.items);
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => return Ok(items),
        }
    }
}

/// The object of `kind` in `project` whose uid is `id`, or whose name is `id` (clients
/// sometimes pass names where ids go); `None` when neither exists.
pub async fn find_by_uid(
    state: &ApiState,
    kind: &'static KindInfo,
    project: Option<&str>,
    id: &str,
) -> Result<Option<Value>, ApiError> {
    let items = list(state, kind, project).await?;
    if let Some(found) = items.iter().find(|o| uid(o) == id) {
        return Ok(Some(found.clone()));
    }
    Ok(items.into_iter().find(|o| name(o) == id))
}

/// RFC 3339 time with seconds and a `Z`, as Nova and Neutron print (`2026-11-26T03:00:00Z`).
pub fn openstack_time(rfc3339: Option<&str>) -> Option<String> {
    let parsed = chrono::DateTime::parse_from_rfc3339(rfc3339?).ok()?;
    Some(
        parsed
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
    )
}

/// The request body as a JSON value, or a `400` in `dialect` saying why it is not one (the
/// services answer malformed bodies with their own error shape, not axum's plain text).
pub fn json_body(
    dialect: super::fault::Dialect,
    bytes: &[u8],
) -> Result<Value, super::fault::Fault> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(super::fault::Fault::bad_request(
            dialect,
            "The request body is empty: expected a JSON object.",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        super::fault::Fault::bad_request(dialect, format!("Malformed request body: {e}"))
    })
}

/// `scheme://host` for the absolute `links` OpenStack bodies carry: from `Host`,
/// `X-Forwarded-Host` and `X-Forwarded-Proto`, which [`crate::public_endpoint`] has replaced
/// with the configured endpoint when there is one (so a client cannot choose the links).
pub fn base_url(headers: &axum::http::HeaderMap) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let scheme = header("x-forwarded-proto").unwrap_or("http");
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// Whether project `project` exists (the quota APIs only write the quotas of real projects).
pub async fn project_exists(state: &ApiState, project: &str) -> Result<bool, ApiError> {
    let projects = cirrus_crds::Project::info();
    match state.store.get(projects, None, project).await {
        Ok(_) => Ok(true),
        Err(cirrus_store::objects::ObjectError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A quota limit as every quota API accepts it: a JSON integer or a string of one, `-1`
/// (unlimited) or more; `Err` says why not.
pub fn quota_limit(value: &Value) -> Result<i64, String> {
    let parsed = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match parsed {
        Some(n) if (-1..=i64::from(i32::MAX)).contains(&n) => Ok(n),
        Some(n) => Err(format!(
            "{n} is out of range: a limit is -1 (unlimited) to {}",
            i32::MAX
        )),
        None => Err(format!("{value} is not an integer")),
    }
}

/// Sets (`Some`) or resets to the default (`None`) quotas of `project` in
/// `Project.spec.quota`, with one merge patch: the one place every OpenStack quota API
/// writes the limits the admission enforces ([`crate::quota`]).
pub async fn write_project_quota(
    state: &ApiState,
    caller: &crate::auth::Caller,
    project: &str,
    changes: &std::collections::BTreeMap<String, Option<i64>>,
) -> Result<(), ApiError> {
    if changes.is_empty() {
        return Ok(());
    }
    let projects = cirrus_crds::Project::info();
    let quota: serde_json::Map<String, Value> = changes
        .iter()
        .map(|(k, v)| (k.clone(), v.map_or(Value::Null, Value::from)))
        .collect();
    let patch = serde_json::json!({"spec": {"quota": quota}});
    crate::resources::write(
        state,
        crate::admission::Writer::Caller(caller),
        projects,
        None,
        project,
        crate::resources::Change::MergePatch(&patch),
        cirrus_store::objects::Part::Main,
        false,
    )
    .await?;
    tracing::info!(%project, ?changes, "quota limits changed through an OpenStack API");
    Ok(())
}

/// The first of the new quota `limits` (key → limit, `-1` unlimited) below what `project`
/// uses now, as `(key, limit, used)`; `None` when all fit. Quota-set updates without
/// `force` refuse such a limit, each API in its own words.
pub async fn limit_below_usage(
    state: &ApiState,
    project: &str,
    limits: &std::collections::BTreeMap<String, i64>,
) -> Result<Option<(String, i64, i64)>, ApiError> {
    let used = crate::quota::usage(&state.store, project).await?;
    Ok(limits.iter().find_map(|(key, limit)| {
        let n = used.get(key).copied().unwrap_or(0);
        (*limit >= 0 && *limit < n).then(|| (key.clone(), *limit, n))
    }))
}

/// Sets the quota `limits` of `project` and answers all its limits as they then are: the
/// end of every quota-set update (compute, network, volume).
pub async fn set_project_limits(
    state: &ApiState,
    caller: &crate::auth::Caller,
    project: &str,
    limits: &std::collections::BTreeMap<String, i64>,
) -> Result<std::collections::BTreeMap<String, i64>, ApiError> {
    let changes = limits.iter().map(|(k, v)| (k.clone(), Some(*v))).collect();
    write_project_quota(state, caller, project, &changes).await?;
    crate::quota::limits(&state.store, project).await
}

/// Clears the quotas `keys` of `project`, which then has the defaults again: what every
/// quota-set delete does.
pub async fn reset_project_quota(
    state: &ApiState,
    caller: &crate::auth::Caller,
    project: &str,
    keys: &[&str],
) -> Result<(), ApiError> {
    let changes = keys.iter().map(|k| ((*k).to_string(), None)).collect();
    write_project_quota(state, caller, project, &changes).await
}

/// The start of every quota-set body: each `enforced` quota with its limit from `limits`
/// (`-1`, unlimited, when unset), then each `fixed` one (not enforced here) with its
/// constant value. Each API then adds its own extra keys.
pub fn quota_body(
    limits: &std::collections::BTreeMap<String, i64>,
    enforced: &[&str],
    fixed: &[(&str, i64)],
) -> serde_json::Map<String, Value> {
    let mut body = serde_json::Map::new();
    for key in enforced {
        body.insert(
            (*key).into(),
            serde_json::json!(limits.get(*key).copied().unwrap_or(-1)),
        );
    }
    for (key, limit) in fixed {
        body.insert((*key).into(), serde_json::json!(limit));
    }
    body
}

/// Read-modify-write of one object's main part, as every OpenStack update needs it: `change`
/// edits the stored object, which goes back through the one write path (admission and
/// authorization included) conditioned on the `resourceVersion` read; a lost race reads
/// again and re-applies `change`, after a short random pause so the losers of one round do
/// not collide again, up to `attempts` times. `to_fault` words a refusal in the service's
/// dialect (the last conflict, too, when every attempt lost).
///
/// # Errors
/// What `change` refuses, and the read or write failing.
#[allow(clippy::too_many_arguments)] // one call shape for every service's updates
pub async fn update_object(
    state: &ApiState,
    caller: &Caller,
    kind: &'static KindInfo,
    project: &str,
    name: &str,
    attempts: usize,
    to_fault: impl Fn(ApiError) -> Fault,
    mut change: impl FnMut(&mut Value) -> Result<(), Fault>,
) -> Result<Value, Fault> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut object = state
            .store
            .get(kind, Some(project), name)
            .await
            .map_err(|e| to_fault(e.into()))?;
        change(&mut object)?;
        let writer = crate::admission::Writer::Caller(caller);
        let replace = crate::resources::Change::Replace(&object);
        let main = cirrus_store::objects::Part::Main;
        let written = crate::resources::write(
            state,
            writer,
            kind,
            Some(project),
            name,
            replace,
            main,
            false,
        )
        .await;
        match written {
            Ok(written) => return Ok(written),
            Err(e) if e.code() == axum::http::StatusCode::CONFLICT && attempt < attempts => {
                tracing::debug!(kind = kind.kind, %project, %name, attempt, "update raced, retrying");
                let mut byte = [0u8; 1];
                let _ = getrandom::fill(&mut byte);
                let millis = u64::from(byte[0] % 8) * (attempt.min(8) as u64);
                tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
            }
            Err(e) => return Err(to_fault(e)),
        }
    }
}
