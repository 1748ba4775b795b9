//! `os-quota-sets`, `limits` and `os-availability-zone`.
//!
//! Cirrus has no quota objects yet: the limits are Cinder's defaults ([`DEFAULTS`]) and the
//! usage is counted from the project's objects (volumes, their GiB plus snapshots' GiB as
//! Cinder counts `gigabytes`, snapshots). Read-only.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use cirrus_auth::Action;
use serde_json::{Map, Value, json};

use super::render::{self, Index};
use super::{Ctx, DIALECT, project_of, query_flag};
use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::fault::Fault;

/// Cinder's default quotas (`-1`: unlimited).
pub const DEFAULTS: &[(&str, i64)] = &[
    ("volumes", 10),
    ("gigabytes", 1000),
    ("snapshots", 10),
    ("backups", 10),
    ("backup_gigabytes", 1000),
    ("groups", 10),
    ("per_volume_gigabytes", -1),
];

/// What a project uses now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Volumes (also those being deleted: they hold their space until gone).
    pub volumes: i64,
    /// GiB of volumes and snapshots.
    pub gigabytes: i64,
    /// Snapshots.
    pub snapshots: i64,
}

impl Usage {
    /// The usage of one quota key.
    pub fn of(&self, key: &str) -> i64 {
        match key {
            "volumes" => self.volumes,
            "gigabytes" => self.gigabytes,
            "snapshots" => self.snapshots,
            _ => 0,
        }
    }
}

/// Counts the usage of `project` in `index`.
pub(crate) fn usage(index: &Index, project: &str) -> Usage {
    let mut u = Usage::default();
    for v in index.volumes().iter().filter(|v| project_of(v) == project) {
        u.volumes += 1;
        u.gigabytes += v.pointer("/spec/size").and_then(Value::as_i64).unwrap_or(0);
    }
    for s in index
        .snapshots()
        .iter()
        .filter(|s| project_of(s) == project)
    {
        u.snapshots += 1;
        let body = render::snapshot_body(s, index);
        u.gigabytes += body["size"].as_i64().unwrap_or(0);
    }
    u
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

/// `GET …/os-quota-sets/{target}[?usage=true]`.
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project_id, target)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Read)?;
    check_target(&ctx, &target)?;
    let with_usage = query_flag(&query, "usage");
    let index = Index::load(&state, Some(&target)).await?;
    let used = usage(&index, &target);
    let mut set = Map::new();
    set.insert("id".into(), Value::from(target.clone()));
    for (key, limit) in DEFAULTS {
        let value = if with_usage {
            json!({"limit": limit, "in_use": used.of(key), "reserved": 0, "allocated": 0})
        } else {
            json!(limit)
        };
        set.insert((*key).into(), value);
    }
    Ok(Json(json!({ "quota_set": set })).into_response())
}

/// `GET …/os-quota-sets/{target}/defaults`.
pub async fn defaults(
    State(_state): State<ApiState>,
    caller: Caller,
    Path((project_id, target)): Path<(String, String)>,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Read)?;
    check_target(&ctx, &target)?;
    let mut set = Map::new();
    set.insert("id".into(), Value::from(target));
    for (key, limit) in DEFAULTS {
        set.insert((*key).into(), json!(limit));
    }
    Ok(Json(json!({ "quota_set": set })).into_response())
}

fn default_of(key: &str) -> i64 {
    DEFAULTS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(-1, |(_, v)| *v)
}

/// `GET …/limits`: absolute limits and usage, no rate limits.
pub async fn limits(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Fault> {
    let ctx = Ctx::new(&caller, &project_id, Action::Read)?;
    let index = Index::load(&state, Some(&ctx.project)).await?;
    let used = usage(&index, &ctx.project);
    Ok(Json(json!({"limits": {
        "rate": [],
        "absolute": {
            "maxTotalVolumes": default_of("volumes"),
            "maxTotalSnapshots": default_of("snapshots"),
            "maxTotalVolumeGigabytes": default_of("gigabytes"),
            "maxTotalBackups": default_of("backups"),
            "maxTotalBackupGigabytes": default_of("backup_gigabytes"),
            "totalVolumesUsed": used.volumes,
            "totalSnapshotsUsed": used.snapshots,
            "totalGigabytesUsed": used.gigabytes,
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
