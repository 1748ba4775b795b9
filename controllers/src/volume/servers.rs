//! Server reconciler: `deleteOnTermination` (Nova's `delete_on_termination` of a block
//! device mapping).
//!
//! # Expected flow
//! - A server with an entry in `spec.volumes` that has `deleteOnTermination` gets the
//!   finalizer [`SERVER_FINALIZER`]; a server that no longer has such an entry loses it.
//! - When the server is deleted, every volume named by such an entry (the data volumes and
//!   the boot volume's entry alike) is deleted; then the finalizer goes and the server with
//!   it. A volume another live server still uses is kept (the API refuses with `409
//!   InUse`): a Warning event says so and the server is not held back.
//! - Volumes without `deleteOnTermination` are left alone: they outlive the server.
//!
//! The finalizer is what keeps the intent when the controller is down while the server is
//! deleted: the server waits in deletion until the controller is back.

use std::sync::Arc;

use cirrus_client::Api;
use cirrus_crds::kinds::event::EventType;
use cirrus_crds::{Server, Volume};
use serde_json::json;

use super::{SERVER_FINALIZER, VolumeContext, VolumeControllerError};
use crate::runtime::{Action, FinalizerEvent, finalizer};

/// Names of the volumes `server` deletes with itself.
pub fn delete_on_termination(server: &Server) -> Vec<&str> {
    server
        .spec
        .volumes
        .iter()
        .filter(|v| v.delete_on_termination)
        .map(|v| v.volume.as_str())
        .collect()
}

/// Reconciles one server's `deleteOnTermination` volumes (the controller's entry point).
pub async fn reconcile(
    server: Arc<Server>,
    ctx: Arc<VolumeContext>,
) -> Result<Action, VolumeControllerError> {
    let ours = server
        .metadata
        .finalizers
        .iter()
        .any(|f| f == SERVER_FINALIZER);
    let wanted = !delete_on_termination(&server).is_empty();
    let deleting = server.metadata.deletion_timestamp.is_some();
    if !ours && !wanted {
        return Ok(Action::await_change());
    }
    if ours && !wanted && !deleting {
        release(&server, &ctx).await?;
        return Ok(Action::await_change());
    }
    let inner = ctx.clone();
    finalizer(&ctx.client, SERVER_FINALIZER, server, |event| async move {
        match event {
            FinalizerEvent::Apply(_) => Ok(Action::await_change()),
            FinalizerEvent::Cleanup(s) => cleanup(s, &inner).await,
        }
    })
    .await
    .map_err(|e| VolumeControllerError::Finalizer(Box::new(e)))
}

/// Removes the finalizer from a server that no longer asks for anything (conditioned on the
/// version seen).
async fn release(server: &Server, ctx: &VolumeContext) -> Result<(), VolumeControllerError> {
    let remaining: Vec<&String> = server
        .metadata
        .finalizers
        .iter()
        .filter(|f| *f != SERVER_FINALIZER)
        .collect();
    let patch = json!({"metadata": {
        "resourceVersion": server.metadata.resource_version,
        "finalizers": remaining,
    }});
    let api = Api::<Server>::for_object(ctx.client.clone(), server);
    match api.patch(&server.metadata.name, &patch).await {
        Ok(_) => Ok(()),
        Err(err) if err.is_conflict() || err.is_not_found() => Ok(()),
        Err(err) => Err(err.into()),
    }
}

async fn cleanup(
    server: Arc<Server>,
    ctx: &VolumeContext,
) -> Result<Action, VolumeControllerError> {
    let project = server.metadata.project.clone().unwrap_or_default();
    let api = Api::<Volume>::in_project(ctx.client.clone(), project);
    for name in delete_on_termination(&server) {
        match api.delete(name).await {
            Ok(_) => {
                tracing::info!(server = %server.metadata.name, volume = %name, "deleted volume with its server");
            }
            Err(err) if err.is_not_found() => {}
            Err(err) if err.is_conflict() => {
                let message = format!(
                    "volume {name} was kept: {}",
                    err.to_string().trim_end_matches('.')
                );
                let _ = ctx
                    .recorder
                    .publish(server.as_ref(), EventType::Warning, "VolumeKept", &message)
                    .await;
            }
            Err(err) => {
                let message = format!("deleting volume {name} failed: {err}");
                let _ = ctx
                    .recorder
                    .publish(
                        server.as_ref(),
                        EventType::Warning,
                        "VolumeDeleteFailed",
                        &message,
                    )
                    .await;
                return Err(err.into());
            }
        }
    }
    Ok(Action::await_change())
}
