//! Per-project quotas, counted from the objects themselves (no usage records to drift).
//!
//! Limits are OpenStack's defaults, overridden per project by `Project.spec.quota` (`-1`:
//! unlimited). Every create through any API (`crate::resources::create`) is checked before
//! the write, and re-checked after it like Nova's "recheck": two racing creates may both pass
//! the first check, but the one that finds the project over its limit afterwards deletes what
//! it made and fails, so usage never stays above a limit.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use cirrus_crds::{
    Image, Keypair, KindInfo, Network, Port, Resource, SecurityGroup, Server, Subnet, Volume,
    VolumeSnapshot,
};
use cirrus_store::objects::{ListOptions, ObjectStore};
use serde_json::Value;

use crate::error::ApiError;

/// Quota names with their default limits (the one list, in the crds crate).
pub use cirrus_crds::kinds::project::DEFAULT_QUOTAS as DEFAULTS;

/// Bytes per MiB: `image_size_total` counts uploaded data in MiB, rounded up per image.
const MIB: i64 = 1 << 20;

/// The kinds whose objects count against some quota.
fn limited_kinds() -> [&'static KindInfo; 9] {
    [
        Server::info(),
        Keypair::info(),
        Network::info(),
        Subnet::info(),
        Port::info(),
        SecurityGroup::info(),
        Volume::info(),
        VolumeSnapshot::info(),
        Image::info(),
    ]
}

/// The `reason` of a quota refusal (all APIs map it to their own fault).
pub const REASON: &str = "QuotaExceeded";

/// What one object of `kind` consumes: `(quota, amount)` pairs. Needs the flavor for servers.
/// The non-negative amount at `pointer` of `object` as `i64`: an amount beyond `i64::MAX` (the
/// native API lets a `u64` in) counts as `i64::MAX`, never as zero.
fn amount_at(object: &Value, pointer: &str) -> i64 {
    object
        .pointer(pointer)
        .and_then(Value::as_u64)
        .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

async fn consumption(
    store: &ObjectStore,
    kind: &KindInfo,
    object: &Value,
) -> Result<Vec<(&'static str, i64)>, ApiError> {
    Ok(match kind.plural {
        "servers" => {
            let flavor = object
                .pointer("/spec/flavor")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let flavors = cirrus_crds::Flavor::info();
            let flavor = store.get(flavors, None, flavor).await.ok();
            let used = ServerUsage::of_one(flavor.as_ref());
            vec![
                ("instances", used.instances),
                ("cores", used.cores),
                ("ram", used.ram_mib),
            ]
        }
        "keypairs" => vec![("key_pairs", 1)],
        "networks" => vec![("network", 1)],
        "subnets" => vec![("subnet", 1)],
        "ports" => vec![("port", 1)],
        "securitygroups" => vec![
            ("security_group", 1),
            (
                "security_group_rule",
                object
                    .pointer("/spec/rules")
                    .and_then(Value::as_array)
                    .map_or(0, |r| i64::try_from(r.len()).unwrap_or(i64::MAX)),
            ),
        ],
        "volumes" => vec![
            ("volumes", 1),
            ("gigabytes", amount_at(object, "/spec/size")),
        ],
        "volumesnapshots" => vec![("snapshots", 1)],
        "images" => vec![
            ("image_count_total", 1),
            (
                "image_size_total",
                image_mib(amount_at(object, "/status/size")),
            ),
        ],
        _ => vec![],
    })
}

/// What servers use of the compute quotas (`instances`, `cores`, `ram`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerUsage {
    /// Servers.
    pub instances: i64,
    /// vCPUs of their flavors.
    pub cores: i64,
    /// RAM of their flavors, MiB.
    pub ram_mib: i64,
}

impl ServerUsage {
    /// What one server of `flavor` uses (`None`: its flavor is gone, so only the instance
    /// counts). Amounts beyond `i64::MAX` count as `i64::MAX`.
    pub fn of_one(flavor: Option<&Value>) -> Self {
        Self {
            instances: 1,
            cores: flavor.map_or(0, |f| amount_at(f, "/spec/vcpus")),
            ram_mib: flavor.map_or(0, |f| amount_at(f, "/spec/ram")),
        }
    }

    /// `self` and `other` together (saturating).
    pub fn plus(self, other: Self) -> Self {
        Self {
            instances: self.instances.saturating_add(other.instances),
            cores: self.cores.saturating_add(other.cores),
            ram_mib: self.ram_mib.saturating_add(other.ram_mib),
        }
    }
}

/// The quota names a kind counts against (empty: not limited).
fn quotas_of(kind: &KindInfo) -> &'static [&'static str] {
    match kind.plural {
        "servers" => &["instances", "cores", "ram"],
        "keypairs" => &["key_pairs"],
        "networks" => &["network"],
        "subnets" => &["subnet"],
        "ports" => &["port"],
        "securitygroups" => &["security_group", "security_group_rule"],
        "volumes" => &["volumes", "gigabytes"],
        "volumesnapshots" => &["snapshots"],
        "images" => &["image_count_total", "image_size_total"],
        _ => &[],
    }
}

/// The MiB `bytes` of image data count as (rounded up).
pub fn image_mib(bytes: i64) -> i64 {
    bytes.saturating_add(MIB - 1) / MIB
}

/// How many bytes of image data `project` may still upload under `image_size_total`, or
/// `None` when unlimited. Counted from the images' `status.size` (only uploaded data).
pub async fn image_bytes_left(store: &ObjectStore, project: &str) -> Result<Option<u64>, ApiError> {
    let limit = limits(store, project)
        .await?
        .get("image_size_total")
        .copied()
        .unwrap_or(-1);
    if limit < 0 {
        return Ok(None);
    }
    let images = cirrus_crds::Image::info();
    let mut used = BTreeMap::new();
    add_usage(store, images, project, &mut used).await?;
    let in_use = used.get("image_size_total").copied().unwrap_or(0);
    let left = limit.saturating_sub(in_use).max(0).saturating_mul(MIB);
    Ok(Some(u64::try_from(left).unwrap_or(0)))
}

/// Whether an update of `old` to `new` can change what the object consumes (without any
/// read): a server's flavor, a volume's size, a security group's rules. Everything else
/// costs nothing to check.
pub fn may_grow(kind: &KindInfo, old: &Value, new: &Value) -> bool {
    let changed = |pointer: &str| old.pointer(pointer) != new.pointer(pointer);
    match kind.plural {
        "servers" => changed("/spec/flavor"),
        "volumes" => changed("/spec/size"),
        "securitygroups" => changed("/spec/rules"),
        _ => false,
    }
}

/// Whether objects of `kind` count against some quota.
pub fn limits_kind(kind: &KindInfo) -> bool {
    !quotas_of(kind).is_empty()
}

/// Whether every object of `kind` uses exactly one unit of each of its quotas (so usage is
/// a count), unlike servers (cores, ram), volumes (gigabytes) and security groups (rules).
fn counts_only(kind: &KindInfo) -> bool {
    matches!(
        kind.plural,
        "keypairs" | "networks" | "subnets" | "ports" | "volumesnapshots"
    )
}

/// Every quota with its default limit: what a project has before `Project.spec.quota`
/// changes any (every API's "defaults" answer).
pub fn default_limits() -> BTreeMap<String, i64> {
    DEFAULTS
        .iter()
        .map(|(k, v)| ((*k).to_string(), *v))
        .collect()
}

/// The limits of `project`: defaults overridden by `Project.spec.quota`.
pub async fn limits(store: &ObjectStore, project: &str) -> Result<BTreeMap<String, i64>, ApiError> {
    let mut limits = default_limits();
    let projects = cirrus_crds::Project::info();
    if let Ok(p) = store.get(projects, None, project).await
        && let Some(over) = p.pointer("/spec/quota").and_then(Value::as_object)
    {
        for (k, v) in over {
            if let Some(v) = v.as_i64() {
                limits.insert(k.clone(), v);
            }
        }
    }
    Ok(limits)
}

/// What `project` uses now, per quota (objects being deleted still count, as in Nova until
/// they are gone).
pub async fn usage(store: &ObjectStore, project: &str) -> Result<BTreeMap<String, i64>, ApiError> {
    let mut used: BTreeMap<String, i64> =
        DEFAULTS.iter().map(|(k, _)| (k.to_string(), 0)).collect();
    for kind in limited_kinds() {
        add_usage(store, kind, project, &mut used).await?;
    }
    Ok(used)
}

async fn add_usage(
    store: &ObjectStore,
    kind: &'static KindInfo,
    project: &str,
    used: &mut BTreeMap<String, i64>,
) -> Result<(), ApiError> {
    let list = store
        .list(kind, Some(project), &ListOptions::default())
        .await?;
    for item in &list.items {
        for (quota, amount) in consumption(store, kind, item).await? {
            let total = used.entry(quota.to_string()).or_default();
            *total = total.saturating_add(amount);
        }
    }
    Ok(())
}

/// The refusal of `amount` more of `quota` (`in_use` of `limit` used) in `project`.
fn exceeded(quota: &str, amount: i64, in_use: i64, limit: i64, project: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        REASON,
        format!(
            "Quota exceeded for {quota}: requested {amount}, but already used {in_use} of \
             {limit} {quota} in project {project:?}"
        ),
    )
}

/// Refuses adding `amount` of `quota` in `project` beyond its limit, for additions that are
/// not object creates (a security group rule added to an existing group).
pub async fn check_more(
    store: &ObjectStore,
    project: &str,
    quota: &str,
    amount: i64,
) -> Result<(), ApiError> {
    let limit = limits(store, project)
        .await?
        .get(quota)
        .copied()
        .unwrap_or(-1);
    if limit < 0 {
        return Ok(());
    }
    let kind = match quota {
        "security_group_rule" | "security_group" => SecurityGroup::info(),
        "instances" | "cores" | "ram" => Server::info(),
        "volumes" | "gigabytes" => Volume::info(),
        "image_count_total" | "image_size_total" => Image::info(),
        "key_pairs" => Keypair::info(),
        "network" => Network::info(),
        "subnet" => Subnet::info(),
        "port" => Port::info(),
        "snapshots" => VolumeSnapshot::info(),
        _ => return Ok(()),
    };
    let mut used = BTreeMap::new();
    add_usage(store, kind, project, &mut used).await?;
    let in_use = used.get(quota).copied().unwrap_or(0);
    if in_use.saturating_add(amount) > limit {
        return Err(exceeded(quota, amount, in_use, limit, project));
    }
    Ok(())
}

/// Refuses an update of `old` to `new` (same kind, in `project`) whose consumption grows past
/// a limit: a server resized to a bigger flavor, a volume extended, rules added to a group.
/// Returns whether any quota of the kind is limited (the caller then holds the project's
/// quota lock around the write).
pub async fn check_update(
    store: &ObjectStore,
    kind: &'static KindInfo,
    project: Option<&str>,
    old: &Value,
    new: &Value,
) -> Result<Limited, ApiError> {
    let Some(project) = project else {
        return Ok(Limited::No);
    };
    if !may_grow(kind, old, new) {
        return Ok(Limited::No);
    }
    let before: BTreeMap<&str, i64> = consumption(store, kind, old).await?.into_iter().collect();
    let mut limited = Limited::No;
    for (quota, after) in consumption(store, kind, new).await? {
        let grown = after - before.get(quota).copied().unwrap_or(0);
        if grown > 0 {
            limited = Limited::Yes;
            check_more(store, project, quota, grown).await?;
        }
    }
    Ok(limited)
}

/// Whether a create was checked against a limit (so it needs the recheck after the write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limited {
    /// Some quota of the kind is limited in the project: recheck after the write.
    Yes,
    /// Nothing to check (an unlimited or unquoted kind, or a cluster-scoped object).
    No,
}

/// Refuses creating `object` of `kind` in `project` when it would exceed a limit;
/// `already_created`: the object is in the store already (the recheck after the write).
pub async fn check(
    store: &ObjectStore,
    kind: &'static KindInfo,
    project: Option<&str>,
    object: &Value,
    already_created: bool,
) -> Result<Limited, ApiError> {
    let Some(project) = project else {
        return Ok(Limited::No);
    };
    if quotas_of(kind).is_empty() {
        return Ok(Limited::No);
    }
    let limits = limits(store, project).await?;
    let limited = quotas_of(kind)
        .iter()
        .any(|q| limits.get(*q).copied().unwrap_or(-1) >= 0);
    if !limited {
        return Ok(Limited::No);
    }
    let wanted = consumption(store, kind, object).await?;
    let mut used = BTreeMap::new();
    if counts_only(kind) {
        // One object, one unit: a count-only read instead of reading every object.
        let count = store.count(kind, Some(project)).await?;
        for quota in quotas_of(kind) {
            used.insert(quota.to_string(), count);
        }
    } else {
        add_usage(store, kind, project, &mut used).await?;
    }
    for (quota, amount) in wanted {
        let limit = limits.get(quota).copied().unwrap_or(-1);
        if limit < 0 || amount == 0 {
            continue;
        }
        let in_use = used
            .get(quota)
            .copied()
            .unwrap_or(0)
            .saturating_sub(if already_created { amount } else { 0 });
        if in_use.saturating_add(amount) > limit {
            return Err(exceeded(quota, amount, in_use, limit, project));
        }
    }
    Ok(Limited::Yes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limited_kind_counts_against_known_quotas() {
        let names: Vec<&str> = DEFAULTS.iter().map(|(k, _)| *k).collect();
        for kind in limited_kinds() {
            let plural = kind.plural;
            for q in quotas_of(kind) {
                assert!(names.contains(q), "{plural}: {q}");
            }
        }
    }

    #[test]
    fn amounts_beyond_i64_count_as_the_largest_not_as_zero() {
        let object = serde_json::json!({"spec": {"ram": u64::MAX, "vcpus": 4, "size": -3}});
        assert_eq!(amount_at(&object, "/spec/ram"), i64::MAX);
        assert_eq!(amount_at(&object, "/spec/vcpus"), 4);
        assert_eq!(amount_at(&object, "/spec/size"), 0, "negative is no amount");
        assert_eq!(amount_at(&object, "/spec/missing"), 0);
    }
}
