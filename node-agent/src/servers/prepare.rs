//! Preparing a domain: the boot image (and AMI kernel/ramdisk) cached on the node, the root
//! disk, the config drive, and the [`DomainSpec`] assembled from them, the NICs ([`super::nics`])
//! and the volumes ([`super::volumes`]). A failed step is a [`PrepFailure`]: its condition,
//! and whether it is positive evidence (ERROR) or waits.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cirrus_crds::kinds::server::ServerAddress;
use cirrus_crds::{Image, Server};
use uuid::Uuid;

use super::context::{ServerContext, ServerError, error_chain};
use crate::disks::{self, DiskError, InstancePaths, RootDisk};
use crate::hypervisor::{DomainSpec, KernelBoot};
use crate::images::{self, ImageError};

/// A step of preparation that failed: which condition it belongs to and whether it is
/// positive evidence (ERROR) or retryable.
pub(super) struct PrepFailure {
    pub(super) step: PrepStep,
    pub(super) permanent: bool,
    pub(super) reason: &'static str,
    pub(super) message: String,
    pub(super) error: ServerError,
}

/// The preparation steps, each reported as its own condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PrepStep {
    Image,
    Disk,
    Network,
    Volumes,
}

impl PrepFailure {
    pub(super) fn new(
        step: PrepStep,
        reason: &'static str,
        permanent: bool,
        error: ServerError,
    ) -> Self {
        let message = error_chain(&error);
        Self {
            step,
            permanent,
            reason,
            message,
            error,
        }
    }
    pub(super) fn image(reason: &'static str, permanent: bool, error: ServerError) -> Self {
        Self::new(PrepStep::Image, reason, permanent, error)
    }
    pub(super) fn disk(reason: &'static str, permanent: bool, error: ServerError) -> Self {
        Self::new(PrepStep::Disk, reason, permanent, error)
    }
    /// What the node could not learn (the API unreachable, a cache not synced yet): not
    /// known yet, retried; the condition becomes `Unknown`.
    pub(super) fn not_known(step: PrepStep, error: ServerError) -> Self {
        let reason = match error {
            ServerError::NotSynced(_) => "CacheNotSynced",
            _ => "ApiUnavailable",
        };
        Self::new(step, reason, false, error)
    }
    /// Ports not ready yet: retried when a port changes, or soon.
    pub(super) fn waiting_for_ports(message: String) -> Self {
        Self::new(
            PrepStep::Network,
            "PortsNotReady",
            false,
            ServerError::Prepare(message),
        )
    }
}

impl ServerContext {
    /// Resolves and caches the images, ensures the root disk, builds the domain spec.
    pub(super) async fn prepare(
        &self,
        server: &Server,
        uid: Uuid,
    ) -> Result<(DomainSpec, String, BTreeMap<String, Vec<ServerAddress>>), PrepFailure> {
        let project = server.metadata.project.clone().unwrap_or_default();
        let flavor = self
            .caches
            .flavor(&self.client, &server.spec.flavor)
            .await
            .map_err(|e| PrepFailure::not_known(PrepStep::Disk, e))?
            .ok_or_else(|| {
                PrepFailure::disk(
                    "FlavorNotFound",
                    true,
                    ServerError::Prepare(format!("flavor {:?} does not exist", server.spec.flavor)),
                )
            })?;
        let (nics, addresses) = self.nics(server, uid, &project).await?;
        let paths = InstancePaths::new(&self.state_dir, uid);
        let mut cached: Vec<String> = Vec::new();
        // The root disk and the image its boot settings come from: an overlay on the image,
        // or the boot volume itself (booted with the settings of the image it was made from,
        // like Nova's volume_image_metadata).
        let (root_disk, image) = match (
            server.spec.image.as_deref(),
            server.spec.boot_volume.as_deref(),
        ) {
            (Some(image_name), _) => {
                let image = self.resolve(&project, image_name).await?;
                let base = self.cache(&image).await?;
                cached.push(image_name.to_string());
                let root = RootDisk {
                    base,
                    base_format: image.spec.disk_format,
                    size_gib: flavor.spec.disk,
                    virtual_size: image.status.virtual_size,
                };
                disks::root_disk_ensure(&paths, &root).await.map_err(|e| {
                    let permanent = e.is_permanent();
                    let reason = match &e {
                        DiskError::BaseCorrupt { .. } => "BaseImageCorrupt",
                        DiskError::UnsupportedFormat(_) => "UnsupportedDiskFormat",
                        DiskError::ImageRefused { .. } => "ImageRefused",
                        DiskError::TooSmall { .. } => "FlavorDiskTooSmall",
                        _ => "DiskCreateFailed",
                    };
                    PrepFailure::disk(reason, permanent, e.into())
                })?;
                (paths.disk.clone(), Some(image))
            }
            (None, Some(volume)) => {
                // No root overlay, but the instance directory still holds the console log
                // (and a config drive).
                tokio::fs::create_dir_all(&paths.dir).await.map_err(|e| {
                    PrepFailure::disk("InstanceDirFailed", false, ServerError::Io(e))
                })?;
                let (path, source_image) = self.boot_volume(&project, volume).await?;
                let image = match source_image {
                    Some(name) => Some(self.resolve(&project, &name).await?),
                    None => None,
                };
                (path, image)
            }
            (None, None) => {
                return Err(PrepFailure::image(
                    "NoBootSource",
                    true,
                    ServerError::Prepare(
                        "the server names neither an image nor a boot volume".into(),
                    ),
                ));
            }
        };
        let kernel_boot = match &image {
            Some(image) => {
                self.kernel_boot(server, &project, image, &mut cached)
                    .await?
            }
            None => None,
        };
        let config_drive = if server.spec.config_drive {
            Some(self.config_drive(server, &paths).await?)
        } else {
            None
        };
        let volumes = self
            .volume_disks(server, uid, &project, config_drive.is_some())
            .await?;
        let host = self
            .host_info()
            .await
            .map_err(|e| PrepFailure::disk("HypervisorUnreachable", false, e.into()))?;
        let spec = DomainSpec {
            server_uid: uid,
            server_name: server.metadata.name.clone(),
            project,
            virt_type: host.virt_type(),
            vcpus: flavor.spec.vcpus,
            memory_mib: flavor.spec.ram,
            root_disk,
            kernel_boot,
            console_log: paths.console_log.clone(),
            nics,
            config_drive,
            volumes,
        };
        Ok((
            spec,
            format!("cached on the node: {}", cached.join(", ")),
            addresses,
        ))
    }

    /// The server's config drive image (`config.iso` in its instance directory), built once
    /// from the API's rendering of its metadata: like Nova, the drive is written when the
    /// server is first built and not rewritten afterwards.
    pub(super) async fn config_drive(
        &self,
        server: &Server,
        paths: &InstancePaths,
    ) -> Result<PathBuf, PrepFailure> {
        let iso = paths.dir.join("config.iso");
        if iso.exists() {
            return Ok(iso);
        }
        let project = server.metadata.project.clone().unwrap_or_default();
        let failed = |e: crate::configdrive::ConfigDriveError| {
            PrepFailure::disk(
                "ConfigDriveFailed",
                false,
                ServerError::Prepare(format!("config drive: {e}")),
            )
        };
        let files = crate::configdrive::fetch_files(&self.client, &project, &server.metadata.name)
            .await
            .map_err(failed)?;
        let target = iso.clone();
        tokio::task::spawn_blocking(move || crate::configdrive::build_iso(&files, &target))
            .await
            .map_err(|e| {
                PrepFailure::disk(
                    "ConfigDriveFailed",
                    false,
                    ServerError::Prepare(format!("config drive task: {e}")),
                )
            })?
            .map_err(failed)?;
        Ok(iso)
    }

    /// The kernel, initrd and command line of an AMI-style `image` (its `kernel_id` /
    /// `ramdisk_id` / `os_command_line` properties), cached on the node; `None` for images
    /// that boot from their disk.
    pub(super) async fn kernel_boot(
        &self,
        server: &Server,
        project: &str,
        image: &Image,
        cached: &mut Vec<String>,
    ) -> Result<Option<KernelBoot>, PrepFailure> {
        let image_project = image
            .metadata
            .project
            .clone()
            .unwrap_or_else(|| project.to_string());
        let props = &image.spec.properties;
        let Some(kernel_id) = props.get("kernel_id") else {
            return Ok(None);
        };
        let kernel = self.resolve(&image_project, kernel_id).await?;
        let kernel_path = self.cache(&kernel).await?;
        cached.push(kernel_id.clone());
        let initrd = match props.get("ramdisk_id") {
            Some(ramdisk_id) => {
                let ramdisk = self.resolve(&image_project, ramdisk_id).await?;
                cached.push(ramdisk_id.clone());
                Some(self.cache(&ramdisk).await?)
            }
            None => None,
        };
        let base_cmdline = props
            .get("os_command_line")
            .map(String::as_str)
            .unwrap_or("console=ttyS0");
        Ok(Some(KernelBoot {
            kernel: kernel_path,
            initrd,
            cmdline: format!("{base_cmdline} cirrus.marker={}", server.metadata.name),
        }))
    }

    pub(super) async fn resolve(&self, project: &str, name: &str) -> Result<Image, PrepFailure> {
        images::find_image(&self.client, project, name)
            .await
            .map_err(|e| PrepFailure::image("ApiUnavailable", false, e.into()))?
            .ok_or_else(|| {
                PrepFailure::image(
                    "ImageNotFound",
                    true,
                    ServerError::Prepare(format!(
                        "image {name:?} does not exist or is not visible to project {project:?}"
                    )),
                )
            })
    }

    pub(super) async fn cache(&self, image: &Image) -> Result<PathBuf, PrepFailure> {
        self.images.ensure(image).await.map_err(|e| {
            let permanent = e.is_permanent();
            let reason = match &e {
                ImageError::NotActive { .. } if permanent => "ImageUnusable",
                ImageError::NotActive { .. } => "ImageNotActive",
                ImageError::NoChecksum { .. } => "ImageNoChecksum",
                ImageError::ChecksumMismatch { .. } => "ChecksumMismatch",
                _ => "DownloadFailed",
            };
            PrepFailure::image(reason, permanent, e.into())
        })
    }
}
