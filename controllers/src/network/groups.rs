//! Every project's `default` security group (Neutron's): members may reach each other
//! (ingress IPv4 and IPv6 from the group itself), everything may leave (egress IPv4 and
//! IPv6 to anywhere), nothing else comes in.
//!
//! It is created for every `Project` object and for any project a port or server appears
//! in; recreated if it disappears while its project lives. The API refuses to delete it
//! unless its project is being deleted.

use std::sync::Arc;

use cirrus_client::Api;
use cirrus_crds::kinds::securitygroup::{Direction, Ethertype, SecurityGroupRule};
use cirrus_crds::{ObjectMeta, Project, SecurityGroup, SecurityGroupSpec};

use super::{DEFAULT_GROUP, NetError, NetworkContext};
use crate::runtime::{Action, ObjectRef};

/// The spec of a project's default security group.
pub fn default_group_spec() -> SecurityGroupSpec {
    let rule = |direction, ethertype, remote: Option<&str>| SecurityGroupRule {
        direction,
        ethertype,
        remote_group: remote.map(str::to_string),
        ..Default::default()
    };
    SecurityGroupSpec {
        description: Some("Default security group".into()),
        rules: vec![
            rule(Direction::Ingress, Ethertype::IPv4, Some(DEFAULT_GROUP)),
            rule(Direction::Ingress, Ethertype::IPv6, Some(DEFAULT_GROUP)),
            rule(Direction::Egress, Ethertype::IPv4, None),
            rule(Direction::Egress, Ethertype::IPv6, None),
        ],
        stateful: true,
    }
}

/// Makes sure `project` has its default group. Best effort: a failure is logged and tried
/// again on the next reconcile that needs it.
pub async fn ensure_default_group(ctx: &NetworkContext, project: &str) {
    if project.is_empty() {
        return;
    }
    ctx.groups.wait_until_ready().await;
    if ctx
        .groups
        .get(&ObjectRef::in_project(project, DEFAULT_GROUP))
        .is_some()
    {
        return;
    }
    if ctx
        .ensured_groups
        .lock()
        .expect("groups lock")
        .contains(project)
    {
        return;
    }
    let group = SecurityGroup::new(
        ObjectMeta {
            name: DEFAULT_GROUP.into(),
            project: Some(project.to_string()),
            ..Default::default()
        },
        default_group_spec(),
    );
    match Api::<SecurityGroup>::in_project(ctx.client.clone(), project)
        .create(&group)
        .await
    {
        Ok(_) => tracing::info!(%project, "created the default security group"),
        Err(err) if err.is_already_exists() => {}
        Err(err) => {
            tracing::warn!(%project, error = %err, "creating the default security group failed");
            return;
        }
    }
    ctx.ensured_groups
        .lock()
        .expect("groups lock")
        .insert(project.to_string());
}

/// Reconciles one project (the controller's entry point).
pub async fn reconcile_project(
    project: Arc<Project>,
    ctx: Arc<NetworkContext>,
) -> Result<Action, NetError> {
    if project.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = &project.metadata.name;
    // A group that vanished (while the project lives) is recreated.
    if ctx
        .groups
        .get(&ObjectRef::in_project(name, DEFAULT_GROUP))
        .is_none()
    {
        ctx.ensured_groups.lock().expect("groups lock").remove(name);
    }
    ensure_default_group(&ctx, name).await;
    Ok(Action::await_change())
}
