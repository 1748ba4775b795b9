//! Deletion admission: refusals the store can't express, answered before anything is
//! deleted (`409` with a message naming the object and the reason).
//!
//! - A project's `default` security group can't be deleted unless its `Project` is being
//!   deleted (every project keeps one; the network controller creates it).
//! - A `Network` that still has ports other than its DHCP ports can't be deleted (Neutron's
//!   "network in use"); the message names the ports.

use axum::http::StatusCode;
use cirrus_crds::KindInfo;
use cirrus_store::fields::FieldSelector;
use cirrus_store::objects::{ListOptions, ObjectError, ObjectStore};
use serde_json::Value;

use crate::error::ApiError;

use cirrus_crds::conventions::{DEFAULT_SECURITY_GROUP as DEFAULT_GROUP, DEVICE_OWNER_DHCP};
/// How many blocking ports a refusal names.
const NAMED: usize = 10;

/// Refuses the deletion of `name` when a rule above forbids it.
pub(crate) async fn check_delete(
    store: &ObjectStore,
    kind: &'static KindInfo,
    project: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    match (kind.kind, project) {
        ("SecurityGroup", Some(project)) if name == DEFAULT_GROUP => {
            default_group(store, project).await
        }
        ("Network", Some(project)) => network_in_use(store, project, name).await,
        ("Volume", Some(p)) => super::volume_in_use::volume_in_use(store, p, name).await,
        _ => Ok(()),
    }
}

async fn default_group(store: &ObjectStore, project: &str) -> Result<(), ApiError> {
    let projects = cirrus_crds::kind_by_plural("projects").expect("projects is a kind");
    let deleting = match store.get(projects, None, project).await {
        Ok(p) => p.pointer("/metadata/deletionTimestamp").is_some(),
        Err(ObjectError::NotFound { .. }) => false,
        Err(err) => return Err(err.into()),
    };
    if deleting {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "Protected",
        format!(
            "securitygroup {DEFAULT_GROUP:?} of project {project:?} cannot be deleted \
             (metadata.name: {DEFAULT_GROUP}): every project keeps its default security group \
             until the project itself is deleted"
        ),
    ))
}

async fn network_in_use(store: &ObjectStore, project: &str, network: &str) -> Result<(), ApiError> {
    let ports = cirrus_crds::kind_by_plural("ports").expect("ports is a kind");
    let fields = FieldSelector::parse(&format!("spec.network={network}"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let options = ListOptions {
        fields,
        ..Default::default()
    };
    let list = store.list(ports, Some(project), &options).await?;
    let blocking: Vec<&str> = list
        .items
        .iter()
        .filter(|p| {
            p.pointer("/spec/deviceOwner").and_then(Value::as_str) != Some(DEVICE_OWNER_DHCP)
        })
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .filter_map(|p| p.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    if blocking.is_empty() {
        return Ok(());
    }
    let mut named = blocking
        .iter()
        .take(NAMED)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if blocking.len() > NAMED {
        named.push_str(&format!(" and {} more", blocking.len() - NAMED));
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "InUse",
        format!(
            "network {network:?} of project {project:?} is in use by {} port(s): {named}; \
             delete them first",
            blocking.len()
        ),
    ))
}
