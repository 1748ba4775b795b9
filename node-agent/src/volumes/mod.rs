//! Block storage drivers: one narrow trait, [`VolumeBackend`], implemented by qcow2 files in a
//! directory ([`file::FileBackend`], the embedded default), LVM logical volumes in a volume
//! group ([`lvm::LvmBackend`]) and an in-memory fake ([`fake::FakeVolumeBackend`]). All three
//! pass the same `conformance` suite (built for tests and the `testing` feature).
//!
//! # Guarantees (checked by `conformance`)
//! - **Deterministic names.** A volume's backend object is named from its uid only: LV
//!   `cirrus-vol-<uid>`, file `vol-<uid>.qcow2`; snapshots `cirrus-snap-<uid>` /
//!   `snap-<uid>@<volume uid>.qcow2`. Creating is therefore always ensuring: a crash between
//!   creating a volume and recording it never leaks or duplicates it.
//! - **Crash-safe creation.** A volume only becomes visible to [`VolumeBackend::volume_info`]
//!   once it is complete (the file backend builds `.vol-<uid>.qcow2.part` and renames it; the
//!   LVM backend adds the `cirrus-ready` tag after the data copy). A half-created volume found
//!   by the next [`VolumeBackend::volume_ensure`] is removed and built again
//!   ([`EnsureOutcome::Repaired`]).
//! - **Gone vs. unknown.** `Ok(None)` from [`VolumeBackend::volume_info`] is positive
//!   evidence that the volume does not exist (or exists only half-created); an error means the
//!   backend could not tell.
//! - **Ownership.** [`VolumeBackend::volumes`] lists only Cirrus objects (name *and*, for LVM,
//!   the `cirrus` + `cirrus-vol-<uid>` tags), never other LVs or files in the same pool, so an
//!   orphan sweep can never delete somebody else's data.
//! - **No silent data loss.** Extending never shrinks ([`VolumeError::ShrinkRefused`]);
//!   deleting a volume that still has snapshots, or a snapshot a volume was cloned from
//!   (copy-on-write), is refused ([`VolumeError::HasDependents`]), as Cinder does.
//! - **Inspected sources.** Before anything is created from an image, a snapshot or another
//!   volume, the source file is inspected by the node itself ([`crate::image_inspect`]:
//!   declared format against the bytes, no backing or data file); a refusal is
//!   [`VolumeError::SourceRefused`] and leaves nothing behind. [`VolumeBackend::volume_verify`]
//!   repeats the check before a domain is given a volume.
//! - **Typed failures** ([`VolumeError`]): not enough space is
//!   [`VolumeError::InsufficientSpace`] and leaves nothing behind; a feature the host cannot
//!   provide is [`VolumeError::Unsupported`] with the reason.
//!
//! # Sizes
//! Backends round sizes up to their allocation unit (LVM: the extent size, 4 MiB by default;
//! qcow2: 512 bytes); [`VolumeInfo::size_bytes`] is the real size. Cirrus volumes are whole
//! GiB, so the rounding never shows in practice.
//!
//! # Caveats
//! The trait is synchronous (the backends run `qemu-img`, `losetup` and the lvm2 tools);
//! async callers use `tokio::task::spawn_blocking`. Implementations are `Send + Sync`, shared
//! as `Arc<dyn VolumeBackend>`. Data copies (volume from an image, snapshot, clone of a
//! volume) read their source with `qemu-img`, which takes QEMU's image locks for files: a
//! file volume attached to a running domain cannot be snapshotted or cloned offline — the
//! caller gets [`VolumeError::InUse`]. Snapshots of such volumes are copied by the
//! hypervisor instead ([`VolumeBackend::snapshot_ensure_copied`]); clones of them are not
//! (yet).

#[cfg(any(test, feature = "testing"))]
pub mod bench;
mod cmd;
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod fake;
pub mod file;
pub mod loopdev;
pub mod lvm;
mod qemu_img;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Prefix of a Cirrus LV holding a volume; the rest is the volume uid.
pub const LV_VOLUME_PREFIX: &str = "cirrus-vol-";
/// Prefix of a Cirrus LV holding a snapshot; the rest is the snapshot uid.
pub const LV_SNAPSHOT_PREFIX: &str = "cirrus-snap-";

/// Parses `<prefix><hyphenated lowercase uuid><suffix>`; `None` for anything else (not ours).
pub(crate) fn parse_uid(name: &str, prefix: &str, suffix: &str) -> Option<Uuid> {
    let rest = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    let uid = Uuid::try_parse(rest).ok()?;
    (uid.hyphenated().to_string() == rest).then_some(uid)
}

/// The on-disk format of a volume: what a domain's `<driver type=...>` must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeFormat {
    /// Raw bytes (a block device: an LV, or its loop mapping).
    Raw,
    /// A qcow2 file (possibly an overlay on a backing file).
    Qcow2,
}

impl VolumeFormat {
    /// The `qemu-img` / libvirt format name.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeFormat::Raw => "raw",
            VolumeFormat::Qcow2 => "qcow2",
        }
    }
}

/// What kind of storage pool a backend manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    /// qcow2 files in a directory.
    File,
    /// Logical volumes in an LVM volume group.
    Lvm,
    /// The in-memory fake.
    Fake,
}

/// A storage pool's identity and capacity, as a node reports it for volume scheduling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolInfo {
    /// The pool's name: the volume group, or the directory.
    pub name: String,
    /// The backend type.
    pub kind: PoolKind,
    /// Total bytes.
    pub total_bytes: u64,
    /// Bytes a new volume can still get. File pools count every volume as fully allocated
    /// (thick accounting over thin files), so the scheduler never overcommits the disk.
    pub free_bytes: u64,
}

/// What a new volume is filled with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum VolumeSource {
    /// Nothing (reads as zeros).
    Empty,
    /// A (cached) image file on this host. The file backend makes a copy-on-write overlay on
    /// it, so the caller must keep the file while volumes use it ([`VolumeInfo::backing`]);
    /// the LVM backend copies the data.
    Image {
        /// The image file.
        path: PathBuf,
        /// Its declared `qemu-img` format name (`raw`, `qcow2`, `vmdk`, ...): never probed,
        /// and checked against the bytes before use ([`crate::image_inspect::inspect`]).
        format: String,
    },
    /// A snapshot made by [`VolumeBackend::snapshot_ensure`] on this backend.
    Snapshot {
        /// The snapshot's uid.
        uid: Uuid,
    },
    /// Another volume on this backend (a full copy; the source must not be written to
    /// during the copy).
    Volume {
        /// The source volume's uid.
        uid: Uuid,
    },
}

/// Everything a backend needs to create one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    /// The volume's uid: its backend name derives from it.
    pub uid: Uuid,
    /// The size in bytes; at least the source's size.
    pub size_bytes: u64,
    /// The initial contents.
    pub source: VolumeSource,
}

/// An existing, complete volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeInfo {
    /// The volume's uid.
    pub uid: Uuid,
    /// Its real size (rounded up to the backend's allocation unit).
    pub size_bytes: u64,
    /// What a domain attaches: a qcow2 file or a block device. `None` when this host cannot
    /// expose the data (LVM without device-mapper and an LV that is not one linear segment).
    pub path: Option<PathBuf>,
    /// The format at `path`.
    pub format: VolumeFormat,
    /// The file a copy-on-write volume reads unwritten blocks from (an image or a snapshot);
    /// it must outlive the volume.
    pub backing: Option<PathBuf>,
}

/// An existing snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInfo {
    /// The snapshot's uid.
    pub uid: Uuid,
    /// The volume it was taken of.
    pub volume_uid: Uuid,
    /// The volume's size at the time.
    pub size_bytes: u64,
}

/// What an `*_ensure` call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnsureOutcome {
    /// The object did not exist and was created.
    Created,
    /// A complete object was already there; nothing was done (its size is not changed: use
    /// [`VolumeBackend::volume_extend`]).
    Exists,
    /// A half-created object (an earlier crash) was removed and created again.
    Repaired,
}

/// What a backend can do on this host (probed, not assumed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// Snapshots (and volumes from snapshots) work.
    pub snapshots: bool,
    /// Volumes can be exposed to a domain ([`VolumeInfo::path`] is a real file or device).
    pub data_path: bool,
    /// Volumes from images / snapshots are copy-on-write (cheap) rather than full copies.
    pub cow_clones: bool,
    /// Why something is missing, or how the data path works, for the node's status.
    pub detail: String,
}

/// Names the trait's operations (fault injection, error context).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[allow(missing_docs)] // each variant is the method of the same name
pub enum VolumeOp {
    Capacity,
    VolumeEnsure,
    VolumeInfo,
    VolumeExtend,
    VolumeDelete,
    Volumes,
    SnapshotEnsure,
    SnapshotInfo,
    SnapshotDelete,
    Snapshots,
}

impl fmt::Display for VolumeOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            VolumeOp::Capacity => "capacity",
            VolumeOp::VolumeEnsure => "volume_ensure",
            VolumeOp::VolumeInfo => "volume_info",
            VolumeOp::VolumeExtend => "volume_extend",
            VolumeOp::VolumeDelete => "volume_delete",
            VolumeOp::Volumes => "volumes",
            VolumeOp::SnapshotEnsure => "snapshot_ensure",
            VolumeOp::SnapshotInfo => "snapshot_info",
            VolumeOp::SnapshotDelete => "snapshot_delete",
            VolumeOp::Snapshots => "snapshots",
        };
        f.write_str(s)
    }
}

/// Errors of a [`VolumeBackend`].
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The pool has not enough free space; nothing was created or changed.
    #[error("insufficient space: {requested} bytes requested, {free} bytes free")]
    InsufficientSpace {
        /// Bytes the operation needed.
        requested: u64,
        /// Bytes free in the pool.
        free: u64,
    },
    /// A volume or snapshot the operation needs does not exist (positive evidence).
    #[error("{kind} {uid} does not exist")]
    NotFound {
        /// `volume` or `snapshot`.
        kind: &'static str,
        /// Its uid.
        uid: Uuid,
    },
    /// This backend cannot do that on this host.
    #[error("{what} is not supported: {why}")]
    Unsupported {
        /// The operation.
        what: String,
        /// Why not (e.g. no device-mapper in the kernel).
        why: String,
    },
    /// `volume_extend` to a smaller size: volumes only grow.
    #[error("volume {uid} is {current} bytes; shrinking to {requested} bytes is refused")]
    ShrinkRefused {
        /// The volume.
        uid: Uuid,
        /// Its current size.
        current: u64,
        /// The size asked for.
        requested: u64,
    },
    /// The spec cannot be realized (e.g. smaller than its source image).
    #[error("invalid volume spec for {uid}: {reason}")]
    InvalidSpec {
        /// The volume.
        uid: Uuid,
        /// Why.
        reason: String,
    },
    /// Deleting it would break other objects (snapshots of a volume; volumes cloned from a
    /// snapshot).
    #[error("{what} still has dependents: {dependents:?}")]
    HasDependents {
        /// The object that was to be deleted.
        what: String,
        /// The uids that depend on it.
        dependents: Vec<Uuid>,
    },
    /// The volume's file is open for writing by another process (a running domain): QEMU's
    /// image lock refused the offline operation.
    #[error("{what} is in use by another process: {detail}")]
    InUse {
        /// The file.
        what: String,
        /// What `qemu-img` said.
        detail: String,
    },
    /// The image source, or a file a volume reads from, was refused by the node's format
    /// inspection ([`crate::image_inspect`]): a backing or data file, a format mismatch, an
    /// unknown format. Nothing was created.
    #[error("{what} is refused: {reason}")]
    SourceRefused {
        /// The file that was inspected (an image, a snapshot, a volume).
        what: String,
        /// Why.
        reason: crate::image_inspect::Refusal,
    },
    /// An external command failed.
    #[error("`{cmd}` failed: {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its error output (or why it could not run).
        stderr: String,
    },
    /// Local file I/O failed.
    #[error("{path}: I/O failed")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl VolumeError {
    /// Positive evidence that retrying the same call cannot help without a spec change or
    /// an operator (the volume goes to `error`); everything else is retried with backoff.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            VolumeError::Unsupported { .. }
                | VolumeError::ShrinkRefused { .. }
                | VolumeError::InvalidSpec { .. }
                | VolumeError::SourceRefused { .. }
        )
    }

    /// The error of an inspection of `path` ([`crate::image_inspect`]): a refusal is
    /// [`VolumeError::SourceRefused`] (permanent), the rest retryable.
    pub fn from_inspection(path: &std::path::Path, e: crate::image_inspect::InspectError) -> Self {
        use crate::image_inspect::InspectError;
        match e {
            InspectError::Refused(reason) => VolumeError::SourceRefused {
                what: path.display().to_string(),
                reason,
            },
            InspectError::Tool { path, detail } => VolumeError::Command {
                cmd: format!("qemu-img info {}", path.display()),
                stderr: detail,
            },
            InspectError::Io { path, source } => VolumeError::Io { path, source },
        }
    }
}

/// Writes a volume's data into a new qcow2 file at the given path (see
/// [`VolumeBackend::snapshot_ensure_copied`]).
pub type SnapshotCopy<'a> = dyn FnMut(&std::path::Path) -> Result<()> + Send + 'a;

/// Result alias for volume backend calls.
pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

/// The storage driver contract. Every method is idempotent and names its resource first.
/// See the [module docs](self) for the guarantees every implementation gives.
pub trait VolumeBackend: Send + Sync + fmt::Debug {
    /// The pool's name, kind, total and free bytes (for the node's status and scheduling).
    fn capacity(&self) -> Result<PoolInfo>;

    /// What works on this host.
    fn capabilities(&self) -> Capabilities;

    /// Creates the volume unless a complete one exists; finishes or redoes a half-created
    /// one. Never changes an existing complete volume (not even its size).
    fn volume_ensure(&self, spec: &VolumeSpec) -> Result<EnsureOutcome>;

    /// The complete volume with this uid; `Ok(None)` is positive evidence it does not exist.
    /// May set up the data path (LVM: activate the LV or map it on a loop device).
    fn volume_info(&self, uid: Uuid) -> Result<Option<VolumeInfo>>;

    /// Grows the volume to `new_size_bytes`; the same size is a no-op, a smaller one
    /// [`VolumeError::ShrinkRefused`]. A running guest sees the new size only after the
    /// hypervisor is told (libvirt `blockresize`) or the volume is re-attached.
    fn volume_extend(&self, uid: Uuid, new_size_bytes: u64) -> Result<()>;

    /// Checks, before a domain is given the volume, that its data reads no file but its own
    /// and files that pass the node's image inspection ([`crate::image_inspect`]): for a qcow2
    /// file, no data file and at most one backing file (a cached image or a snapshot) that is
    /// itself inspected as its recorded format. A refusal is [`VolumeError::SourceRefused`].
    /// Backends whose volumes are raw block devices (LVM) or not files (the fake) have nothing
    /// to check.
    fn volume_verify(&self, uid: Uuid) -> Result<()>;

    /// Deletes the volume (complete or half-created) and its data path; `Ok(false)` when there
    /// was nothing to delete. Refused while snapshots of it exist.
    fn volume_delete(&self, uid: Uuid) -> Result<bool>;

    /// Every Cirrus volume in the pool, complete or half-created (for orphan sweeps), sorted.
    fn volumes(&self) -> Result<Vec<Uuid>>;

    /// Takes a snapshot of the volume's current data, unless it exists. The volume must not
    /// be written to meanwhile (see the module's caveats).
    fn snapshot_ensure(&self, volume_uid: Uuid, snapshot_uid: Uuid) -> Result<EnsureOutcome>;

    /// Takes a snapshot whose data `copy` writes, unless it exists: for a volume a running
    /// domain holds, whose data only the hypervisor can copy consistently
    /// ([`crate::hypervisor::Hypervisor::disk_backup`]). The backend hands `copy` the path the
    /// snapshot is built at (it does not exist; `copy` must leave a standalone qcow2 file
    /// there holding the volume's data) and completes it exactly as
    /// [`VolumeBackend::snapshot_ensure`] would (same name, same crash-safety), so
    /// [`VolumeBackend::snapshot_info`], clones and deletion work unchanged. An error from
    /// `copy` is returned as is and leaves nothing behind.
    ///
    /// Default: [`VolumeError::Unsupported`] (backends whose snapshots are not qcow2 files).
    fn snapshot_ensure_copied(
        &self,
        volume_uid: Uuid,
        snapshot_uid: Uuid,
        copy: &mut SnapshotCopy<'_>,
    ) -> Result<EnsureOutcome> {
        let _ = (volume_uid, snapshot_uid, copy);
        Err(VolumeError::Unsupported {
            what: "snapshots copied by the hypervisor".into(),
            why: format!(
                "{:?} does not keep snapshots as qcow2 files",
                self.capabilities().detail
            ),
        })
    }

    /// The snapshot; `Ok(None)` is positive evidence it does not exist.
    fn snapshot_info(&self, snapshot_uid: Uuid) -> Result<Option<SnapshotInfo>>;

    /// Deletes the snapshot; `Ok(false)` when it did not exist. Refused while a volume cloned
    /// from it reads through it (copy-on-write backends).
    fn snapshot_delete(&self, snapshot_uid: Uuid) -> Result<bool>;

    /// Every Cirrus snapshot in the pool, sorted by uid.
    fn snapshots(&self) -> Result<Vec<SnapshotInfo>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_only_our_uids() {
        let uid = Uuid::parse_str("6f1c2a7e-8d7b-4c1e-9a55-0b8e6f2d3c41").unwrap();
        let lv = format!("{LV_VOLUME_PREFIX}{uid}");
        assert_eq!(parse_uid(&lv, LV_VOLUME_PREFIX, ""), Some(uid));
        assert_eq!(
            parse_uid(&format!("vol-{uid}.qcow2"), "vol-", ".qcow2"),
            Some(uid)
        );
        for bad in [
            "cirrus-vol-",
            "cirrus-vol-x",
            "other",
            "cirrus-vol-6F1C2A7E-8D7B-4C1E-9A55-0B8E6F2D3C41",
            "cirrus-vol-6f1c2a7e8d7b4c1e9a550b8e6f2d3c41",
        ] {
            assert_eq!(parse_uid(bad, LV_VOLUME_PREFIX, ""), None, "{bad}");
        }
    }

    #[test]
    fn permanent_errors_are_positive_evidence() {
        let uid = Uuid::new_v4();
        assert!(
            VolumeError::ShrinkRefused {
                uid,
                current: 2,
                requested: 1
            }
            .is_permanent()
        );
        assert!(
            !VolumeError::InsufficientSpace {
                requested: 2,
                free: 1
            }
            .is_permanent()
        );
        assert!(
            !VolumeError::Command {
                cmd: "lvs".into(),
                stderr: "x".into()
            }
            .is_permanent()
        );
    }
}
