//! Deletion admission: refusals the store can't express, answered before anything is
//! deleted (`409` with a message naming the object and the reason).
//!
//! - A project's `default` security group can't be deleted unless its `Project` is being
//!   deleted or a cloud admin deletes it, as Neutron allows (every project keeps one: the
//!   network controller makes it again while the project lives) — and not even then while a
//!   port of the project is in it (named, or with no groups and port security on: Neutron's
//!   `SecurityGroupInUse`), since the group made again would have only the default rules.
//! - A `Network` that still has ports other than its DHCP ports, in any project (a shared
//!   network's users), can't be deleted (Neutron's "network in use"); the message names
//!   the ports.

use axum::http::StatusCode;
use cirrus_crds::KindInfo;
use cirrus_store::objects::{ObjectError, ObjectStore};

use crate::error::ApiError;

use cirrus_crds::conventions::DEFAULT_SECURITY_GROUP as DEFAULT_GROUP;

/// Refuses the deletion of `name` when a rule above forbids it; `cloud_admin`: the caller is
/// one.
pub(crate) async fn check_delete(
    store: &ObjectStore,
    kind: &'static KindInfo,
    project: Option<&str>,
    name: &str,
    cloud_admin: bool,
) -> Result<(), ApiError> {
    match (kind.kind, project) {
        ("SecurityGroup", Some(project)) if name == DEFAULT_GROUP && !cloud_admin => {
            default_group(store, project).await
        }
        ("SecurityGroup", Some(project)) if name == DEFAULT_GROUP => {
            default_group_in_use(store, project).await
        }
        ("Network", Some(project)) => network_in_use(store, project, name).await,
        ("Volume", Some(p)) => super::volume_in_use::volume_in_use(store, p, name).await,
        _ => Ok(()),
    }
}

async fn default_group_in_use(store: &ObjectStore, project: &str) -> Result<(), ApiError> {
    let ports = cirrus_crds::kind_by_plural("ports").expect("ports is a kind");
    let list = store
        .list(ports, Some(project), &Default::default())
        .await?;
    let users: Vec<(String, String)> = list
        .items
        .iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|p| {
            let groups = p
                .pointer("/spec/securityGroups")
                .and_then(serde_json::Value::as_array);
            let secured = p.pointer("/spec/portSecurityEnabled") != Some(&false.into());
            match groups {
                Some(g) if !g.is_empty() => g.iter().any(|g| g.as_str() == Some(DEFAULT_GROUP)),
                _ => secured,
            }
        })
        .filter_map(|p| {
            let name = p
                .pointer("/metadata/name")
                .and_then(serde_json::Value::as_str)?;
            Some((project.to_string(), name.to_string()))
        })
        .collect();
    super::network_use::refuse_while_used(project, &users, |count, names| {
        format!(
            "securitygroup {DEFAULT_GROUP:?} of project {project:?} is in use by {count} \
             port(s): {names}; delete them first"
        )
    })
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
    // Every project's ports count: a shared network's users are other projects'.
    let blocking = super::network_use::ports_on(store, project, network, false).await?;
    super::network_use::refuse_while_used(project, &blocking, |count, names| {
        format!(
            "network {network:?} of project {project:?} is in use by {count} port(s): {names}; \
             delete them first"
        )
    })
}
