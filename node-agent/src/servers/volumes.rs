//! The server's volumes: the boot volume's data path, the data volumes as disks (each placed
//! on this node, made and verified), hot-plug and unplug on the domain, and the report of what
//! the domain holds into each volume's status.
//!
//! # One writer per status field
//! This module writes only `Volume.status.attachments` (which server's domain holds the
//! volume, as which device). `status.phase` (`available`, `in-use`, `detaching`, ...), `size`
//! and the `Ready` condition are the volume reconciler's ([`crate::storage`]), which derives
//! the attachment phases from the attachments and the servers' specs.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use cirrus_client::Api;
use cirrus_crds::kinds::volume::{VolumeAttachment, VolumePhase};
use cirrus_crds::{Server, Volume};
use uuid::Uuid;

use super::context::{ServerContext, ServerError};
use super::prepare::{PrepFailure, PrepStep};
use crate::hypervisor::{
    DetachState, DomainName, DomainState, HypervisorError, HypervisorOp, VolumeDisk,
};

/// The node's own inspection of a volume before a domain is given it
/// ([`crate::volumes::VolumeBackend::volume_verify`]): a refusal is permanent (`refused`), any
/// other failure waits (`waiting`).
pub(super) async fn verify_volume(
    pool: Arc<dyn crate::volumes::VolumeBackend>,
    vuid: Uuid,
    label: String,
    refused: &'static str,
    waiting: &'static str,
) -> Result<(), PrepFailure> {
    let (reason, permanent, message) =
        match tokio::task::spawn_blocking(move || pool.volume_verify(vuid)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e @ crate::volumes::VolumeError::SourceRefused { .. })) => {
                (refused, true, format!("{label}: {e}"))
            }
            Ok(Err(e)) => (waiting, false, format!("{label}: {e}")),
            Err(e) => (waiting, false, format!("volume task: {e}")),
        };
    Err(PrepFailure::new(
        PrepStep::Volumes,
        reason,
        permanent,
        ServerError::Prepare(message),
    ))
}

impl ServerContext {
    /// The boot volume's data on this host (it must be placed here and ready) and the name
    /// of the image it was made from (for its boot settings).
    pub(super) async fn boot_volume(
        &self,
        project: &str,
        name: &str,
    ) -> Result<(PathBuf, Option<String>), PrepFailure> {
        let waiting = |message: String| {
            PrepFailure::new(
                PrepStep::Volumes,
                "BootVolumeNotReady",
                false,
                ServerError::Prepare(message),
            )
        };
        let volume = self
            .caches
            .volume(project, name)
            .map_err(|e| PrepFailure::not_known(PrepStep::Volumes, e))?
            .ok_or_else(|| waiting(format!("boot volume {name:?} does not exist")))?;
        if volume.status.node.as_deref() != Some(self.node_name.as_str())
            || !matches!(
                volume.status.phase,
                Some(VolumePhase::Available | VolumePhase::InUse)
            )
        {
            return Err(waiting(format!(
                "boot volume {name:?} is not ready on this node yet ({:?})",
                volume.status.phase
            )));
        }
        let vuid = volume
            .metadata
            .uid
            .as_deref()
            .and_then(|u| Uuid::try_parse(u).ok())
            .ok_or_else(|| waiting(format!("boot volume {name:?} has no uid")))?;
        let pool_name = volume.status.pool.clone().unwrap_or_default();
        let pool = self
            .pools
            .get(&pool_name)
            .cloned()
            .ok_or_else(|| waiting(format!("this node has no pool {pool_name:?}")))?;
        let verify = pool.clone();
        let info = tokio::task::spawn_blocking(move || pool.volume_info(vuid))
            .await
            .map_err(|e| waiting(format!("volume task: {e}")))?
            .map_err(|e| waiting(format!("boot volume {name:?}: {e}")))?
            .ok_or_else(|| waiting(format!("boot volume {name:?} is not made yet")))?;
        let label = format!("boot volume {name:?}");
        verify_volume(
            verify,
            vuid,
            label,
            "BootVolumeRefused",
            "BootVolumeNotReady",
        )
        .await?;
        match (info.path, info.format) {
            (Some(path), crate::volumes::VolumeFormat::Qcow2) => {
                let source_image = volume
                    .spec
                    .source
                    .as_ref()
                    .filter(|s| s.type_ == cirrus_crds::kinds::volume::VolumeSourceType::Image)
                    .and_then(|s| s.name.clone());
                Ok((path, source_image))
            }
            _ => Err(PrepFailure::new(
                PrepStep::Volumes,
                "BootVolumeUnsupported",
                true,
                ServerError::Prepare(format!(
                    "boot volume {name:?} must be a qcow2 volume of a file pool (raw boot volumes are not supported yet)"
                )),
            )),
        }
    }

    /// The server's data volumes as disks (boot volume excluded): each must be placed on this
    /// node, made, and reachable from the host. A volume already attached keeps its target;
    /// the others take the requested device or the next free `vdX`.
    pub(super) async fn volume_disks(
        &self,
        server: &Server,
        uid: Uuid,
        project: &str,
        config_drive: bool,
    ) -> Result<Vec<VolumeDisk>, PrepFailure> {
        let entries: Vec<_> = server
            .spec
            .volumes
            .iter()
            .filter(|v| server.spec.boot_volume.as_deref() != Some(v.volume.as_str()))
            .collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let waiting = |message: String| {
            PrepFailure::new(
                PrepStep::Volumes,
                "VolumesNotReady",
                false,
                ServerError::Prepare(message),
            )
        };
        let name = DomainName::for_server(uid);
        let current = match self.hv(HypervisorOp::Disks, move |d| d.disks(&name)).await {
            Ok(disks) => disks,
            Err(HypervisorError::NotFound(_)) => Vec::new(),
            Err(e) => {
                return Err(PrepFailure::new(
                    PrepStep::Volumes,
                    "HypervisorUnreachable",
                    false,
                    e.into(),
                ));
            }
        };
        let mut out: Vec<VolumeDisk> = Vec::new();
        for entry in entries {
            let volume = self
                .caches
                .volume(project, &entry.volume)
                .map_err(|e| PrepFailure::not_known(PrepStep::Volumes, e))?
                .ok_or_else(|| waiting(format!("volume {:?} does not exist", entry.volume)))?;
            if volume.status.node.as_deref() != Some(self.node_name.as_str()) {
                return Err(waiting(format!(
                    "volume {:?} is not placed on this node (yet)",
                    entry.volume
                )));
            }
            if !matches!(
                volume.status.phase,
                Some(
                    VolumePhase::Available
                        | VolumePhase::InUse
                        | VolumePhase::Attaching
                        | VolumePhase::Detaching
                )
            ) {
                return Err(waiting(format!(
                    "volume {:?} is {:?}",
                    entry.volume, volume.status.phase
                )));
            }
            let vuid = volume
                .metadata
                .uid
                .as_deref()
                .and_then(|u| Uuid::try_parse(u).ok())
                .ok_or_else(|| waiting(format!("volume {:?} has no uid", entry.volume)))?;
            let pool_name = volume.status.pool.clone().unwrap_or_default();
            let pool = self.pools.get(&pool_name).cloned().ok_or_else(|| {
                waiting(format!(
                    "volume {:?} is on pool {pool_name:?}, which this node does not have",
                    entry.volume
                ))
            })?;
            let verify = pool.clone();
            let info = tokio::task::spawn_blocking(move || pool.volume_info(vuid))
                .await
                .map_err(|e| waiting(format!("volume task: {e}")))?
                .map_err(|e| waiting(format!("volume {:?}: {e}", entry.volume)))?
                .ok_or_else(|| waiting(format!("volume {:?} is not made yet", entry.volume)))?;
            let label = format!("volume {:?}", entry.volume);
            verify_volume(verify, vuid, label, "VolumeRefused", "VolumesNotReady").await?;
            let Some(path) = info.path else {
                return Err(PrepFailure::new(
                    PrepStep::Volumes,
                    "NoDataPath",
                    true,
                    ServerError::Prepare(format!(
                        "volume {:?} cannot be exposed to a guest on this host",
                        entry.volume
                    )),
                ));
            };
            let serial = VolumeDisk::serial_for(vuid);
            let taken: Vec<String> = out
                .iter()
                .map(|d| d.target.clone())
                .chain(
                    current
                        .iter()
                        .filter(|d| d.serial != serial)
                        .map(|d| d.target.clone()),
                )
                .collect();
            let requested = entry
                .device
                .as_deref()
                .map(|d| d.trim_start_matches("/dev/").to_string())
                .filter(|t| !taken.contains(t));
            let target = current
                .iter()
                .find(|d| d.serial == serial)
                .map(|d| d.target.clone())
                .or(requested)
                .or_else(|| {
                    crate::hypervisor::pick_volume_target(
                        taken.iter().map(String::as_str),
                        config_drive,
                    )
                })
                .ok_or_else(|| waiting("no free disk target (vdb..vdz) left".into()))?;
            out.push(VolumeDisk {
                target,
                path,
                format: match info.format {
                    crate::volumes::VolumeFormat::Raw => crate::hypervisor::DiskFormat::Raw,
                    crate::volumes::VolumeFormat::Qcow2 => crate::hypervisor::DiskFormat::Qcow2,
                },
                serial,
                readonly: false,
            });
        }
        Ok(out)
    }

    /// Attaches the wanted volumes the domain lacks and detaches the ones no longer wanted,
    /// then reports which volumes of the project the domain holds
    /// ([`ServerContext::report_attachments`]). Returns whether a detach is still pending.
    pub(super) async fn sync_volumes(
        &self,
        server: &Server,
        name: &DomainName,
        wanted: &[VolumeDisk],
    ) -> Result<bool, ServerError> {
        let current = {
            let n = name.clone();
            match self.hv(HypervisorOp::Disks, move |d| d.disks(&n)).await {
                Ok(disks) => disks,
                Err(HypervisorError::NotFound(_)) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        };
        if wanted.is_empty() && current.is_empty() && server.spec.boot_volume.is_none() {
            return Ok(false);
        }
        if matches!(self.state_of(name).await?, Some(DomainState::Saved)) {
            // A saved domain's device state must not change until it runs again.
            return Ok(false);
        }
        // One volume that cannot be attached (no free PCIe slot left, a backend error) must
        // not stop the others, nor the status report of what the guest really holds.
        let mut failed: Option<ServerError> = None;
        for disk in wanted {
            if !current.iter().any(|c| c.serial == disk.serial) {
                let (n, d) = (name.clone(), disk.clone());
                match self
                    .hv(HypervisorOp::DiskAttach, move |h| h.disk_attach(&n, &d))
                    .await
                {
                    Ok(()) => {
                        tracing::info!(target = %disk.target, serial = %disk.serial, "volume attached");
                    }
                    Err(e) => {
                        tracing::warn!(target = %disk.target, serial = %disk.serial, error = %e, "attaching a volume failed");
                        failed.get_or_insert(e.into());
                    }
                }
            }
        }
        let mut pending = Vec::new();
        for disk in &current {
            if !wanted.iter().any(|w| w.serial == disk.serial) {
                let (n, t) = (name.clone(), disk.target.clone());
                let state = self
                    .hv(HypervisorOp::DiskDetach, move |h| h.disk_detach(&n, &t))
                    .await?;
                if state == DetachState::Pending {
                    pending.push(disk.serial.clone());
                }
            }
        }
        let attached = {
            let n = name.clone();
            match self.hv(HypervisorOp::Disks, move |d| d.disks(&n)).await {
                Ok(disks) => disks,
                Err(HypervisorError::NotFound(_)) => Vec::new(),
                Err(e) => return Err(e.into()),
            }
        };
        self.report_attachments(server, &attached, server.spec.boot_volume.as_deref())
            .await?;
        match failed {
            Some(e) => Err(e),
            None => Ok(!pending.is_empty()),
        }
    }

    /// Writes which of the project's volumes this server's domain holds, into each volume's
    /// `status.attachments` (the field this reconciler is the one writer of): the `attached`
    /// disks (a detach still pending included: the guest has the disk until it lets go) are
    /// listed with their device, and any other volume still listing this server is released.
    /// `root` is the boot volume, held as `vda` while the domain exists. The volume reconciler
    /// ([`crate::storage`]) derives `status.phase` from the attachments.
    pub(super) async fn report_attachments(
        &self,
        server: &Server,
        attached: &[VolumeDisk],
        root: Option<&str>,
    ) -> Result<(), ServerError> {
        let project = server.metadata.project.clone().unwrap_or_default();
        let api = Api::<Volume>::in_project(self.client.clone(), &project);
        // A server's volumes live on its node (the volume controller places them there), and
        // a node agent may only list the volumes placed on it: the cache holds exactly those.
        let volumes = self.caches.project_volumes(&project)?;
        let me = server.metadata.name.as_str();
        for volume in volumes {
            let Some(vuid) = volume
                .metadata
                .uid
                .as_deref()
                .and_then(|u| Uuid::try_parse(u).ok())
            else {
                continue;
            };
            let serial = VolumeDisk::serial_for(vuid);
            let mine = volume.status.attachments.iter().any(|a| a.server == me);
            let mut attachments: Vec<VolumeAttachment> = volume
                .status
                .attachments
                .iter()
                .filter(|a| a.server != me)
                .cloned()
                .collect();
            let root_disk = (root == Some(volume.metadata.name.as_str())).then(|| VolumeDisk {
                target: "vda".into(),
                path: PathBuf::new(),
                format: crate::hypervisor::DiskFormat::Qcow2,
                serial: serial.clone(),
                readonly: false,
            });
            if let Some(disk) = attached
                .iter()
                .find(|d| d.serial == serial)
                .or(root_disk.as_ref())
            {
                let previous = volume.status.attachments.iter().find(|a| a.server == me);
                attachments.push(VolumeAttachment {
                    server: me.to_string(),
                    device: Some(format!("/dev/{}", disk.target)),
                    node: Some(self.node_name.clone()),
                    attached_at: previous.and_then(|a| a.attached_at).or(Some(Utc::now())),
                });
            } else if !mine {
                continue;
            }
            if volume.status.attachments == attachments {
                continue;
            }
            // Conditioned on the version read: a concurrent write (the volume reconciler)
            // makes this one fail and the next reconcile decides again from fresh data.
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": volume.metadata.resource_version},
                "status": {"attachments": attachments},
            });
            match api.patch_status(&volume.metadata.name, &patch).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
