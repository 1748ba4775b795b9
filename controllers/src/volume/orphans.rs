//! Volumes made for a server that never came.
//!
//! Booting from a new volume (Nova's `source_type: image, destination_type: volume`) is two
//! creates: the volume, then the server naming it. The API marks such a volume with
//! [`CREATED_FOR_SERVER_ANNOTATION`] (the server's name) and removes it again when the server
//! is refused; a crash between the two creates leaves it behind. This sweep settles both:
//!
//! # Expected flow
//! 1. A volume with the annotation is *pending*.
//! 2. When a live server of its project uses it (`spec.bootVolume` or `spec.volumes`), the
//!    annotation is dropped (*adopted*): from then on it is an ordinary volume, deleted with
//!    the server only if `deleteOnTermination` says so.
//! 3. When no server uses it [`VolumeConfig::orphan_grace`](super::VolumeConfig) after its
//!    creation, the store is asked once more (the server cache may lag) and the volume is
//!    deleted with a uid precondition (never a newer volume of the same name), with a
//!    Warning event `OrphanDeleted`.

use std::sync::Arc;
use std::time::Duration;

use cirrus_client::Api;
use cirrus_crds::kinds::event::EventType;
use cirrus_crds::kinds::volume::CREATED_FOR_SERVER_ANNOTATION;
use cirrus_crds::{Server, Volume};
use serde_json::json;

use super::{VolumeContext, VolumeControllerError, uses_volume};

/// Where a volume stands with respect to the server it was made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// Not made for a server that did not exist yet (or adopted earlier): nothing to do.
    No,
    /// A server uses it now; the annotation was dropped.
    Adopted,
    /// No server used it within the grace period: deleted.
    Deleted,
    /// No server uses it yet; look again after this long.
    Waiting(Duration),
}

/// Settles a volume that may have been made for a server not created yet (see the module
/// documentation).
pub async fn settle(
    volume: &Volume,
    ctx: &Arc<VolumeContext>,
) -> Result<Pending, VolumeControllerError> {
    let Some(server) = volume
        .metadata
        .annotations
        .get(CREATED_FOR_SERVER_ANNOTATION)
    else {
        return Ok(Pending::No);
    };
    let project = volume.metadata.project.clone().unwrap_or_default();
    let name = &volume.metadata.name;
    let api = Api::<Volume>::in_project(ctx.client.clone(), project.clone());
    if !ctx.servers_using(Some(&project), name).is_empty() {
        return adopt(&api, volume).await;
    }
    let age = volume
        .metadata
        .creation_timestamp
        .map(|t| (chrono::Utc::now() - t).to_std().unwrap_or_default())
        .unwrap_or_default();
    if age < ctx.orphan_grace {
        return Ok(Pending::Waiting(ctx.orphan_grace - age));
    }
    // The server cache may not have seen a server created just now: the store decides.
    let servers = Api::<Server>::in_project(ctx.client.clone(), project.clone())
        .list_all(None)
        .await?;
    if servers
        .items
        .iter()
        .any(|s| s.metadata.deletion_timestamp.is_none() && uses_volume(s, name))
    {
        return adopt(&api, volume).await;
    }
    let uid = volume.metadata.uid.clone().unwrap_or_default();
    match api.delete_if_uid(name, &uid).await {
        Ok(_) => {}
        // Gone already, or the name belongs to another volume now: nothing of ours is left.
        Err(err) if err.is_not_found() || err.is_conflict() => return Ok(Pending::Deleted),
        Err(err) => return Err(err.into()),
    }
    let message = format!(
        "volume {name} was made for server {server}, which no server of project {project} \
         used within {} s: deleted",
        ctx.orphan_grace.as_secs()
    );
    tracing::warn!(volume = %name, %server, "deleted a boot volume no server adopted");
    let _ = ctx
        .recorder
        .publish(volume, EventType::Warning, "OrphanDeleted", &message)
        .await;
    Ok(Pending::Deleted)
}

/// Drops the annotation of `volume`, which a server uses now.
async fn adopt(api: &Api<Volume>, volume: &Volume) -> Result<Pending, VolumeControllerError> {
    let patch = json!({"metadata": {
        "resourceVersion": volume.metadata.resource_version,
        "annotations": {CREATED_FOR_SERVER_ANNOTATION: null},
    }});
    match api.patch(&volume.metadata.name, &patch).await {
        Ok(_) => Ok(Pending::Adopted),
        // A newer version is on its way to the cache; it is settled then.
        Err(err) if err.is_conflict() || err.is_not_found() => Ok(Pending::Adopted),
        Err(err) => Err(err.into()),
    }
}
