//! `Image`: a bootable disk image (Glance's image).
//!
//! DESIGN lists public images as cluster-scoped and private ones as project-scoped; one kind
//! cannot have two scopes, so `Image` is **project-scoped** and visibility is a field, as in
//! Glance: `spec.visibility: public` images are listed and usable in every project (the
//! owning project — normally `admin` — manages them), `private` ones only in their own
//! project, `shared` ones also in the projects named in `spec.members`, and `community` ones
//! by anyone who names them but are not listed elsewhere. Name lookups from another project
//! (`image: cirros` in a Server) resolve to the project's own image first, then to a public
//! image of that name.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A disk image servers and volumes boot from. Project-scoped; `spec.visibility`
    /// decides who else sees it.
    Image {
        spec: ImageSpec,
        status: ImageStatus,
        plural: "images",
        singular: "image",
        short_names: ["img"],
        scope: Project,
    }
}

/// Who may see and use an image.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Every project (setting it needs the admin role).
    Public,
    /// Only the owning project.
    #[default]
    Private,
    /// The owning project and those listed in `spec.members`.
    Shared,
    /// Anyone, but listed only for the owner.
    Community,
}

/// Format of the disk inside the image (Glance's `disk_format`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// QEMU copy-on-write v2.
    #[default]
    Qcow2,
    /// Raw bytes.
    Raw,
    /// ISO 9660 optical disc.
    Iso,
    /// VMware disk.
    Vmdk,
    /// VirtualBox disk.
    Vdi,
    /// Hyper-V disk.
    Vhd,
    /// Hyper-V disk, newer format.
    Vhdx,
    /// Virtuozzo loop device.
    Ploop,
    /// Amazon machine image.
    Ami,
    /// Amazon ramdisk image.
    Ari,
    /// Amazon kernel image.
    Aki,
}

/// Wrapper around the disk (Glance's `container_format`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ContainerFormat {
    /// No container: the file is the disk.
    #[default]
    Bare,
    /// Open Virtualization Format descriptor.
    Ovf,
    /// OVF package as a tar archive.
    Ova,
    /// Amazon machine image.
    Ami,
    /// Amazon ramdisk.
    Ari,
    /// Amazon kernel.
    Aki,
    /// Docker tar archive.
    Docker,
    /// Compressed archive.
    Compressed,
}

/// Where the image controller fetches the data from (Glance's `web-download` import).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageSource {
    /// `http://`, `https://` or `file://` URL of the image data.
    pub url: String,
    /// Expected SHA-256 of the data, hex; a mismatch makes the image `killed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Desired state of an image.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageSpec {
    /// Who may see and use the image.
    #[serde(default)]
    pub visibility: Visibility,
    /// Projects the image is shared with (only with `visibility: shared`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Format of the disk.
    #[serde(default)]
    pub disk_format: DiskFormat,
    /// Container around the disk.
    #[serde(default)]
    pub container_format: ContainerFormat,
    /// Where to download the data from; absent when the data is uploaded through the API
    /// (`PUT /v2/images/{id}/file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ImageSource>,
    /// Smallest root disk, in GiB, a server booting it needs.
    #[serde(default, skip_serializing_if = "crate::kinds::is_zero")]
    pub min_disk: u64,
    /// Smallest RAM, in MiB, a server booting it needs.
    #[serde(default, skip_serializing_if = "crate::kinds::is_zero")]
    pub min_ram: u64,
    /// A protected image cannot be deleted.
    #[serde(default, skip_serializing_if = "crate::kinds::is_false")]
    pub protected: bool,
    /// Free-form properties; `hw_*` and `os_*` ones (`hw_disk_bus`, `hw_firmware_type`,
    /// `os_distro`, `os_type`) guide drivers and the scheduler.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// Free-form tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// Lifecycle of an image, Glance's image statuses.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ImagePhase {
    /// Created, no data yet.
    Queued,
    /// Data being written.
    Saving,
    /// Data staged through the interoperable import, not yet imported.
    Uploading,
    /// Import in progress (download from `spec.source`).
    Importing,
    /// Usable.
    Active,
    /// Data hidden from non-admins.
    Deactivated,
    /// Upload or import failed.
    Killed,
    /// Deleted; kept for bookkeeping.
    Deleted,
    /// Deleted, data removal pending.
    PendingDelete,
}

/// Observed state of an image.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageStatus {
    /// Where the image is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ImagePhase>,
    /// Size of the image file in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Size of the disk the image expands to, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<u64>,
    /// MD5 of the data, hex (Glance's legacy `checksum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Algorithm of `osHashValue`: `sha256` or `sha512`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_hash_algo: Option<String>,
    /// Secure hash of the data, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_hash_value: Option<String>,
    /// Where the image store keeps the data (internal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observations; `Ready` when the image is active.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Validate for Image {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        if !spec.members.is_empty() && spec.visibility != Visibility::Shared {
            errors.add(
                "spec.members",
                "only images with visibility \"shared\" have members",
            );
        }
        crate::kinds::check_refs(errors, "spec.members", &spec.members);
        if let Some(source) = &spec.source {
            let ok = ["http://", "https://", "file://"]
                .iter()
                .any(|p| source.url.starts_with(p) && source.url.len() > p.len());
            if !ok {
                errors.add(
                    "spec.source.url",
                    "must be an http://, https:// or file:// URL",
                );
            }
            if let Some(sum) = &source.sha256
                && (sum.len() != 64 || !sum.chars().all(|c| c.is_ascii_hexdigit()))
            {
                errors.add("spec.source.sha256", "must be 64 hex digits");
            }
        }
        crate::kinds::check_metadata(errors, "spec.properties", &spec.properties);
        let mut seen = BTreeSet::new();
        for (i, tag) in spec.tags.iter().enumerate() {
            if tag.is_empty() || tag.chars().count() > 255 {
                errors.add(format!("spec.tags[{i}]"), "tags are 1 to 255 characters");
            }
            if !seen.insert(tag) {
                errors.add(format!("spec.tags[{i}]"), format!("duplicate tag {tag:?}"));
            }
        }
    }
}
