//! `VolumeSnapshot`: a point-in-time copy of a volume (Cinder's snapshot; an LVM snapshot
//! or a qcow2 internal/external snapshot).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::{check_metadata, check_ref};
use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A snapshot of a `Volume`, from which new volumes can be made. Project-scoped.
    VolumeSnapshot {
        spec: VolumeSnapshotSpec,
        status: VolumeSnapshotStatus,
        plural: "volumesnapshots",
        singular: "volumesnapshot",
        short_names: ["vsnap", "snap"],
        scope: Project,
    }
}

/// Desired state of a snapshot.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeSnapshotSpec {
    /// Name of the `Volume` to snapshot.
    pub volume: String,
    /// Snapshot even while the volume is attached (crash-consistent only).
    #[serde(default, skip_serializing_if = "crate::kinds::is_false")]
    pub force: bool,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form key/value metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// Cinder's snapshot statuses.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VolumeSnapshotPhase {
    /// Being taken.
    Creating,
    /// Ready.
    Available,
    /// Being deleted.
    Deleting,
    /// Failed; see conditions.
    Error,
    /// Deletion failed.
    ErrorDeleting,
}

/// Observed state of a snapshot.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeSnapshotStatus {
    /// Cinder's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<VolumeSnapshotPhase>,
    /// Size of the source volume when taken, in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Node holding the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observations; `Ready` when available.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Validate for VolumeSnapshot {
    fn validate(&self, errors: &mut FieldErrors) {
        check_ref(errors, "spec.volume", &self.spec.volume);
        check_metadata(errors, "spec.metadata", &self.spec.metadata);
        crate::kinds::check_len(errors, "spec.description", &self.spec.description, 255);
    }
}
