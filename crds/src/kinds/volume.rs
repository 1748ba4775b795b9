//! `Volume`: a block device that outlives servers (Cinder's volume; an LV or a qcow2 file
//! on a node).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::{check_metadata, check_ref};
use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A persistent block device that can be attached to servers. Project-scoped.
    Volume {
        spec: VolumeSpec,
        status: VolumeStatus,
        plural: "volumes",
        singular: "volume",
        short_names: ["vol"],
        scope: Project,
    }
}

/// Annotation on a volume made for a server that does not exist yet (Nova's boot from a new
/// volume: the volume is created first, then the server naming it). Its value is the server's
/// name. The volume controller drops it once a server uses the volume and deletes the volume
/// when none does within its grace period, so a crash or a refusal between the two creates
/// leaves no orphan behind.
pub const CREATED_FOR_SERVER_ANNOTATION: &str = "cirrus.dev/created-for-server";

/// What a new volume's content comes from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum VolumeSourceType {
    /// Blank (zeroes).
    #[default]
    Empty,
    /// Copy of an `Image` (makes the volume bootable).
    Image,
    /// Copy of a `VolumeSnapshot`.
    Snapshot,
    /// Clone of another `Volume`.
    Volume,
}

/// Initial content of a volume.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeSource {
    /// Kind of source.
    #[serde(rename = "type")]
    pub type_: VolumeSourceType,
    /// Name of the image, snapshot or volume (absent for `empty`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Desired state of a volume.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeSpec {
    /// Size in GiB; may grow (extend), never shrink.
    pub size: u64,
    /// Initial content; absent: empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<VolumeSource>,
    /// Volume type (backend choice, e.g. `lvm`, `qcow2`); absent: the default type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    /// May be used as a server's boot volume.
    #[serde(default, skip_serializing_if = "crate::kinds::is_false")]
    pub bootable: bool,
    /// Availability zone to create it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Free-form key/value metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// May be attached to several servers at once.
    #[serde(default, skip_serializing_if = "crate::kinds::is_false")]
    pub multiattach: bool,
}

impl Default for VolumeSpec {
    fn default() -> Self {
        Self {
            size: 1,
            source: None,
            volume_type: None,
            bootable: false,
            availability_zone: None,
            metadata: BTreeMap::new(),
            description: None,
            multiattach: false,
        }
    }
}

/// Cinder's volume statuses.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumePhase {
    /// Being created.
    #[serde(rename = "creating")]
    Creating,
    /// Image data being copied in.
    #[serde(rename = "downloading")]
    Downloading,
    /// Ready, not attached.
    #[serde(rename = "available")]
    Available,
    /// Held for an attachment about to happen.
    #[serde(rename = "reserved")]
    Reserved,
    /// Being attached.
    #[serde(rename = "attaching")]
    Attaching,
    /// Attached.
    #[serde(rename = "in-use")]
    InUse,
    /// Being detached.
    #[serde(rename = "detaching")]
    Detaching,
    /// Being grown.
    #[serde(rename = "extending")]
    Extending,
    /// Being deleted.
    #[serde(rename = "deleting")]
    Deleting,
    /// Failed; see conditions.
    #[serde(rename = "error")]
    Error,
    /// Deletion failed.
    #[serde(rename = "error_deleting")]
    ErrorDeleting,
    /// Extending failed.
    #[serde(rename = "error_extending")]
    ErrorExtending,
}

/// One attachment of a volume.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeAttachment {
    /// Name of the server.
    pub server: String,
    /// Guest device, e.g. `/dev/vdb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Node the server runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// When it was attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_at: Option<DateTime<Utc>>,
}

/// Observed state of a volume.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeStatus {
    /// Cinder's status (`creating`, `available`, `in-use`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<VolumePhase>,
    /// Node holding the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Storage pool on the node (LVM volume group or directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Size actually provisioned, in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Current attachments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<VolumeAttachment>,
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observations; `Ready` when available or in use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Validate for Volume {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        if spec.size < 1 {
            errors.add("spec.size", "must be at least 1 GiB");
        }
        if let Some(source) = &spec.source {
            match (source.type_, &source.name) {
                (VolumeSourceType::Empty, Some(_)) => {
                    errors.add("spec.source.name", "an empty source has no name")
                }
                (VolumeSourceType::Empty, None) => {}
                (_, None) => errors.add("spec.source.name", "required for this source type"),
                (_, Some(name)) => check_ref(errors, "spec.source.name", name),
            }
        }
        if let Some(t) = &spec.volume_type
            && (t.is_empty() || t.len() > 255)
        {
            errors.add("spec.volumeType", "must be 1 to 255 characters");
        }
        check_metadata(errors, "spec.metadata", &spec.metadata);
        crate::kinds::check_len(errors, "spec.description", &spec.description, 255);
    }
}
