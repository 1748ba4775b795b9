//! `os-quota-sets`, `limits` and `os-availability-zone`.
//!
//! The limits are [`crate::quota`]'s (OpenStack defaults overridden by `Project.spec.quota`),
//! the ones the admission enforces on every create through any API, and the usage is
//! [`crate::quota::usage`] (`gigabytes` counts volumes' sizes, as the admission does).
//! Cirrus enforces [`ENFORCED`]; Cinder's other quotas ([`FIXED`]: backups, groups...) and
//! the per-type ones (`volumes_<type>`, `gigabytes_<type>`, `snapshots_<type>`: unlimited,
//! with their usage counted) are shown and can only be "set" to what they are.
//!
//! Members read their own project's quotas; another project's is `403` as Cinder's policy
//! says. Updates and resets are for cloud admins. As in Cinder, an update may go below what
//! is in use unless the body says `"skip_validation": false`.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cirrus_auth::Action;
use serde_json::{Map, Value, json};

use super::render::{DEFAULT_TYPE, Index};
use super::types::TYPES;
use super::{Ctx, DIALECT, api_fault, parse_bool, project_of, query_flag};
use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common;
use crate::openstack::fault::Fault;

/// The block-storage quotas Cirrus enforces (limits from [`crate::quota`]).
pub const ENFORCED: &[&str] = &["volumes", "gigabytes", "snapshots"];

/// Cinder quotas Cirrus does not enforce, with Cinder's defaults (`-1`: unlimited).
pub const FIXED: &[(&str, i64)] = &[
    ("backups", 10),
    ("backup_gigabytes", 1000),
    ("groups", 10),
    ("per_volume_gigabytes", -1),
];

/// The per-volume-type quota keys (`volumes_file`...), all unlimited.
fn per_type_keys() -> Vec<String> {
    TYPES
        .iter()
        .flat_map(|(t, _)| ENFORCED.iter().map(move |k| format!("{k}_{t}")))
        .collect()
}

/// Every key with its limit, the enforced ones from `limits`.
pub fn limits_body(limits: &BTreeMap<String, i64>) -> Map<String, Value> {
    let mut body = common::quota_body(limits, ENFORCED, FIXED);
    for key in per_type_keys() {
        body.insert(key, json!(-1));
    }
    body
}

/// What `project` uses per volume type (`volumes_file`, `gigabytes_file`, `snapshots_file`).
fn per_type_usage(index: &Index, project: &str) -> BTreeMap<String, i64> {
    let type_of = |v: &Value| {
        v.pointer("/spec/volumeType")
            .and_then(Value::as_str)
            .and_then(super::types::resolve)
            .unwrap_or(DEFAULT_TYPE)
            .to_string()
    };
    let mut used = BTreeMap::new();
    let mut volume_types = HashMap::new();
    for v in index.volumes().iter().filter(|v| project_of(v) == project) {
        let t = type_of(v);
        *used.entry(format!("volumes_{t}")).or_default() += 1;
        *used.entry(format!("gigabytes_{t}")).or_default() +=
            v.pointer("/spec/size").and_then(Value::as_i64).unwrap_or(0);
        volume_types.insert(common::name(v), t);
    }
    for s in index
        .snapshots()
        .iter()
        .filter(|s| project_of(s) == project)
    {
        let volume = s
            .pointer("/spec/volume")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let t = volume_types
            .get(volume)
            .cloned()
            .unwrap_or_else(|| DEFAULT_TYPE.to_string());
        *used.entry(format!("snapshots_{t}")).or_default() += 1;
    }
    used
}

/// Who may read the quotas of `target`: its own members and cloud admins; others `403`.
fn check_target(ctx: &Ctx, target: &str) -> Result<(), Fault> {
    if ctx.admin || ctx.project == target {
        Ok(())
    } else {
        Err(Fault::forbidden(
            DIALECT,
            format!("Policy doesn't allow volume_extension:quotas:show for project {target}."),
        ))
    }
}

/// Only cloud admins change quotas.
fn check_admin(ctx: &Ctx, rule: &str) -> Result<(), Fault> {
    if ctx.admin {
        Ok(())
    } else {
        Err(Fault::forbidden(
            DIALECT,
            format!("Policy doesn't allow volume_extension:quotas:{rule} to be performed."),
        ))
    }
}

fn answer(mut set: Map<String, Value>, id: Option<&str>) -> Response {
    if let Some(id) = id {
        set.insert("id".into(), Value::from(id));
    }
    Json(json!({ "quota_set": set })).into_response()
}

/// `GET …/os-quota-sets/{target}[?usage=true]`.
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project_id, target)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Read)?;
    check_target(&ctx, &target)?;
    let limits = crate::quota::limits(&state.store, &target)
        .await
        .map_err(api_fault)?;
    let body = limits_body(&limits);
    if !query_flag(&query, "usage") {
        return Ok(answer(body, Some(&target)));
    }
    let mut used = crate::quota::usage(&state.store, &target)
        .await
        .map_err(api_fault)?;
    let index = Index::load(&state, Some(&target)).await?;
    used.extend(per_type_usage(&index, &target));
    let set = body
        .into_iter()
        .map(|(key, limit)| {
            let in_use = used.get(&key).copied().unwrap_or(0);
            (
                key,
                json!({"limit": limit, "in_use": in_use, "reserved": 0, "allocated": 0}),
            )
        })
        .collect();
    Ok(answer(set, Some(&target)))
}

/// `GET …/os-quota-sets/{target}/defaults`.
pub async fn defaults(
    State(_state): State<ApiState>,
    caller: Caller,
    Path((project_id, target)): Path<(String, String)>,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Read)?;
    check_target(&ctx, &target)?;
    Ok(answer(
        limits_body(&crate::quota::default_limits()),
        Some(&target),
    ))
}

/// What an update asks: the enforced limits to set, and whether to check them against
/// what is in use.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Enforced quota → new limit.
    pub limits: BTreeMap<String, i64>,
    /// `"skip_validation": false`: refuse a limit below what is in use.
    pub validate: bool,
}

/// Parses `{"quota_set": {...}, "skip_validation": …}` as Cinder: unknown keys
/// ("Bad key(s)"), non-integers and other values for what Cirrus does not enforce are `400`.
pub fn parse_update(body: &Value) -> Result<Update, Fault> {
    let bad = |m: String| Fault::bad_request(DIALECT, m);
    let Some(set) = body.get("quota_set").and_then(Value::as_object) else {
        return Err(bad(
            "Missing required element 'quota_set' in request body.".into()
        ));
    };
    let per_type = per_type_keys();
    let unknown: Vec<&str> = set
        .keys()
        .map(String::as_str)
        .filter(|k| {
            !matches!(*k, "id" | "tenant_id")
                && !ENFORCED.contains(k)
                && !FIXED.iter().any(|(f, _)| f == k)
                && !per_type.iter().any(|p| p == k)
        })
        .collect();
    if !unknown.is_empty() {
        return Err(bad(format!(
            "Bad key(s) in quota set: {}",
            unknown.join(", ")
        )));
    }
    let validate = match body.get("skip_validation") {
        None => false,
        Some(v) => !parse_bool(v)
            .ok_or_else(|| bad(format!("Invalid value '{v}' for skip_validation.")))?,
    };
    let mut update = Update {
        limits: BTreeMap::new(),
        validate,
    };
    for (key, value) in set {
        if matches!(key.as_str(), "id" | "tenant_id") {
            continue;
        }
        let limit = common::quota_limit(value).map_err(|why| bad(format!("{key}: {why}.")))?;
        if ENFORCED.contains(&key.as_str()) {
            update.limits.insert(key.clone(), limit);
            continue;
        }
        let fixed = FIXED.iter().find(|(f, _)| f == key).map_or(-1, |(_, v)| *v);
        if limit != fixed {
            return Err(bad(format!(
                "Quota {key} is not enforced by this cloud and stays {fixed}; the settable volume quotas are {}.",
                ENFORCED.join(", ")
            )));
        }
    }
    Ok(update)
}

/// `PUT …/os-quota-sets/{target}` (admins): sets the limits given, answers all of them.
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project_id, target)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Read)?;
    check_admin(&ctx, "update")?;
    let update = parse_update(&common::json_body(DIALECT, &body)?)?;
    if !common::project_exists(&state, &target)
        .await
        .map_err(api_fault)?
    {
        return Err(Fault::not_found(
            DIALECT,
            format!("Project {target} could not be found."),
        ));
    }
    if update.validate
        && let Some((key, _, n)) = common::limit_below_usage(&state, &target, &update.limits)
            .await
            .map_err(api_fault)?
    {
        return Err(Fault::bad_request(
            DIALECT,
            format!("Quota {key} limit must be equal or greater than existing resources ({n})."),
        ));
    }
    let limits = common::set_project_limits(&state, &caller, &target, &update.limits)
        .await
        .map_err(api_fault)?;
    Ok(answer(limits_body(&limits), None))
}

/// `DELETE …/os-quota-sets/{target}` (admins): the volume quotas back to the defaults.
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project_id, target)): Path<(String, String)>,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Read)?;
    check_admin(&ctx, "delete")?;
    if common::project_exists(&state, &target)
        .await
        .map_err(api_fault)?
    {
        common::reset_project_quota(&state, &caller, &target, ENFORCED)
            .await
            .map_err(api_fault)?;
    }
    Ok(StatusCode::OK.into_response())
}

/// `GET …/limits`: absolute limits and usage, no rate limits.
pub async fn limits(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Read)?;
    let limits = crate::quota::limits(&state.store, &ctx.project)
        .await
        .map_err(api_fault)?;
    let used = crate::quota::usage(&state.store, &ctx.project)
        .await
        .map_err(api_fault)?;
    let limit = |k: &str| limits.get(k).copied().unwrap_or(-1);
    let in_use = |k: &str| used.get(k).copied().unwrap_or(0);
    let fixed = |k: &str| FIXED.iter().find(|(f, _)| *f == k).map_or(-1, |(_, v)| *v);
    Ok(Json(json!({"limits": {
        "rate": [],
        "absolute": {
            "maxTotalVolumes": limit("volumes"),
            "maxTotalSnapshots": limit("snapshots"),
            "maxTotalVolumeGigabytes": limit("gigabytes"),
            "maxTotalBackups": fixed("backups"),
            "maxTotalBackupGigabytes": fixed("backup_gigabytes"),
            "totalVolumesUsed": in_use("volumes"),
            "totalSnapshotsUsed": in_use("snapshots"),
            "totalGigabytesUsed": in_use("gigabytes"),
            "totalBackupsUsed": 0,
            "totalBackupGigabytesUsed": 0,
        },
    }}))
    .into_response())
}

/// `GET …/os-availability-zone`: `nova` and the zones of the nodes.
pub async fn availability_zones(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Fault> {
    Ctx::new(&caller, &project_id, Action::Read)?;
    let zones = super::volumes::zones(&state).await?;
    let info: Vec<Value> = zones
        .iter()
        .map(|z| json!({"zoneName": z, "zoneState": {"available": true}}))
        .collect();
    Ok(Json(json!({ "availabilityZoneInfo": info })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_parse_like_cinder() {
        let update = parse_update(&json!({
            "quota_set": {"volumes": "3", "gigabytes": 50, "backups": 10, "volumes_lvm": -1},
            "skip_validation": false,
        }))
        .unwrap();
        assert!(update.validate);
        assert_eq!(
            update.limits,
            BTreeMap::from([("gigabytes".into(), 50), ("volumes".into(), 3)])
        );
        assert!(!parse_update(&json!({"quota_set": {}})).unwrap().validate);
        let unknown = parse_update(&json!({"quota_set": {"cores": 1}})).unwrap_err();
        assert_eq!(unknown.code, StatusCode::BAD_REQUEST);
        assert_eq!(unknown.message, "Bad key(s) in quota set: cores");
        let bad = parse_update(&json!({"quota_set": {"snapshots": "x"}})).unwrap_err();
        assert!(bad.message.contains("snapshots"), "{}", bad.message);
        let fixed = parse_update(&json!({"quota_set": {"volumes_file": 3}})).unwrap_err();
        assert!(fixed.message.contains("volumes_file"), "{}", fixed.message);
    }

    #[test]
    fn every_cinder_key_is_shown() {
        let body = limits_body(&crate::quota::default_limits());
        assert_eq!(body["volumes"], 10);
        assert_eq!(body["gigabytes"], 1000);
        assert_eq!(body["snapshots"], 10);
        assert_eq!(body["backups"], 10);
        assert_eq!(body["per_volume_gigabytes"], -1);
        assert_eq!(body["gigabytes_lvm"], -1);
        assert_eq!(body["volumes_file"], -1);
    }
}
