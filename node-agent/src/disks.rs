//! Per-server files: `<state-dir>/instances/<server uid>/` holding the root disk
//! (`disk.qcow2`, a copy-on-write overlay on the cached image) and the serial console log
//! (`console.log`).
//!
//! # Guarantees
//! - Names derive from the server uid only, so creating is always ensuring: an existing disk
//!   whose backing file and format are the expected ones is kept (the guest's writes live
//!   there); anything else at that path is replaced.
//! - A disk is built as `disk.qcow2.part` and renamed into place, so a crash never leaves a
//!   half-created `disk.qcow2`; a stale `.part` is simply overwritten.
//! - `qemu-img` is always called with explicit formats (`-f qcow2 -F <base format>`), never
//!   probing.
//! - The base image is inspected by the node itself before any disk is made or kept on it
//!   ([`crate::image_inspect`]): the declared `spec.diskFormat` must be what the bytes are,
//!   with no backing or data file ([`DiskError::ImageRefused`], the server becomes ERROR
//!   and no disk is created).

use std::path::{Path, PathBuf};

use cirrus_crds::kinds::image::DiskFormat;
use uuid::Uuid;

use crate::image_inspect::{self, InspectError, Refusal};

/// Where one server's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePaths {
    /// `<state-dir>/instances/<uid>`.
    pub dir: PathBuf,
    /// `<dir>/disk.qcow2`, the root disk.
    pub disk: PathBuf,
    /// `<dir>/console.log`, the serial console.
    pub console_log: PathBuf,
}

impl InstancePaths {
    /// The paths of the server with `uid` under `state_dir`.
    pub fn new(state_dir: &Path, uid: Uuid) -> Self {
        let dir = instances_dir(state_dir).join(uid.hyphenated().to_string());
        Self {
            disk: dir.join("disk.qcow2"),
            console_log: dir.join("console.log"),
            dir,
        }
    }
}

/// `<state-dir>/instances`.
pub fn instances_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("instances")
}

/// Why a root disk could not be ensured.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Local file I/O failed.
    #[error("{path}: I/O failed")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `qemu-img` failed.
    #[error("qemu-img {action} failed: {stderr}")]
    QemuImg {
        /// What it was asked to do.
        action: String,
        /// What it said.
        stderr: String,
    },
    /// `qemu-img` reports the base image as corrupt (positive evidence: the server cannot be
    /// built from it).
    #[error("base image {base} is corrupt: {detail}")]
    BaseCorrupt {
        /// The cached base.
        base: PathBuf,
        /// What qemu-img said.
        detail: String,
    },
    /// The image's disk format cannot back a root disk (positive evidence).
    #[error("image disk format {0} cannot back a root disk")]
    UnsupportedFormat(String),
    /// The node's own inspection of the base refused it (positive evidence): a backing or
    /// data file, a format mismatch with the declared `spec.diskFormat`, an unknown format.
    #[error("image {base} is refused: {reason}")]
    ImageRefused {
        /// The cached base.
        base: PathBuf,
        /// Why.
        reason: Refusal,
    },
    /// The flavor's disk is smaller than the image (positive evidence).
    #[error(
        "flavor disk {flavor_gib} GiB is smaller than the image's virtual size {virtual_size} bytes"
    )]
    TooSmall {
        /// The flavor's root disk.
        flavor_gib: u64,
        /// The image's virtual size.
        virtual_size: u64,
    },
}

impl DiskError {
    /// Positive evidence that retrying cannot help without a spec or image change.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            DiskError::BaseCorrupt { .. }
                | DiskError::UnsupportedFormat(_)
                | DiskError::ImageRefused { .. }
                | DiskError::TooSmall { .. }
        )
    }
}

/// What [`root_disk_ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskOutcome {
    /// The disk was created.
    Created,
    /// A disk with the right backing file was already there.
    Kept,
    /// Something else was at the path (wrong backing file, unreadable); it was replaced.
    Replaced,
}

/// The `qemu-img` format name of an image's disk format, when it can back a qcow2 overlay.
pub fn qemu_format(format: DiskFormat) -> Option<&'static str> {
    Some(match format {
        DiskFormat::Qcow2 => "qcow2",
        DiskFormat::Raw | DiskFormat::Ami => "raw",
        DiskFormat::Vmdk => "vmdk",
        DiskFormat::Vdi => "vdi",
        DiskFormat::Vhd => "vpc",
        DiskFormat::Vhdx => "vhdx",
        DiskFormat::Iso | DiskFormat::Ploop | DiskFormat::Aki | DiskFormat::Ari => return None,
    })
}

/// The root disk to build: the overlay's base and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDisk {
    /// The cached base image.
    pub base: PathBuf,
    /// The base's disk format.
    pub base_format: DiskFormat,
    /// The flavor's root disk in GiB; 0 keeps the image's virtual size.
    pub size_gib: u64,
    /// The image's virtual size in bytes, when known.
    pub virtual_size: Option<u64>,
}

async fn qemu_img(action: &str, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, DiskError> {
    let out = tokio::process::Command::new("qemu-img")
        .args(args)
        .output()
        .await
        .map_err(|e| DiskError::QemuImg {
            action: action.into(),
            stderr: format!("cannot run qemu-img: {e}"),
        })?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(DiskError::QemuImg {
            action: action.into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// `qemu-img info` of `path` read as `format`.
async fn info(path: &Path, format: &str) -> Result<serde_json::Value, DiskError> {
    let out = qemu_img(
        "info",
        &[
            "info".as_ref(),
            "-U".as_ref(),
            "-f".as_ref(),
            format.as_ref(),
            "--output=json".as_ref(),
            path.as_os_str(),
        ],
    )
    .await?;
    serde_json::from_slice(&out).map_err(|e| DiskError::QemuImg {
        action: "info".into(),
        stderr: format!("unreadable output: {e}"),
    })
}

fn is_corrupt(info: &serde_json::Value) -> bool {
    info.pointer("/format-specific/data/corrupt")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// Inspects the base as its declared format ([`image_inspect::inspect`]); returns its
/// virtual size.
async fn inspect_base(root: &RootDisk, base_fmt: &str) -> Result<u64, DiskError> {
    match image_inspect::inspect_async(root.base.clone(), base_fmt.to_string()).await {
        Ok(inspection) => Ok(inspection.virtual_size),
        Err(InspectError::Refused(Refusal::Corrupt { .. })) => Err(DiskError::BaseCorrupt {
            base: root.base.clone(),
            detail: "qcow2 header marked corrupt".into(),
        }),
        Err(InspectError::Refused(Refusal::NotOpenable { detail, .. }))
            if detail.to_lowercase().contains("corrupt") =>
        {
            Err(DiskError::BaseCorrupt {
                base: root.base.clone(),
                detail,
            })
        }
        Err(InspectError::Refused(reason)) => Err(DiskError::ImageRefused {
            base: root.base.clone(),
            reason,
        }),
        Err(InspectError::Tool { detail, .. }) => Err(DiskError::QemuImg {
            action: "info".into(),
            stderr: detail,
        }),
        Err(InspectError::Io { path, source }) => Err(DiskError::Io { path, source }),
    }
}

/// Ensures the root disk at `paths.disk` is a qcow2 overlay on `root.base`, after the node's
/// own inspection of the base (a refused base never gets a disk, new or kept).
///
/// # Errors
/// [`DiskError::is_permanent`] errors are positive evidence (refused or corrupt base, unusable
/// format, flavor too small); the rest are retryable.
pub async fn root_disk_ensure(
    paths: &InstancePaths,
    root: &RootDisk,
) -> Result<DiskOutcome, DiskError> {
    let base_fmt = qemu_format(root.base_format)
        .ok_or_else(|| DiskError::UnsupportedFormat(format!("{:?}", root.base_format)))?;
    // First of all: the base is what it is declared to be and reads no other file.
    let inspected_size = inspect_base(root, base_fmt).await?;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| DiskError::Io { path: p, source }
    };
    tokio::fs::create_dir_all(&paths.dir)
        .await
        .map_err(io(&paths.dir))?;
    let mut outcome = DiskOutcome::Created;
    if tokio::fs::try_exists(&paths.disk).await.unwrap_or(false) {
        match info(&paths.disk, "qcow2").await {
            Ok(i) => {
                let backing = i.get("backing-filename").and_then(|v| v.as_str());
                let backing_fmt = i.get("backing-filename-format").and_then(|v| v.as_str());
                if backing == Some(root.base.to_string_lossy().as_ref())
                    && backing_fmt == Some(base_fmt)
                    && !is_corrupt(&i)
                {
                    return Ok(DiskOutcome::Kept);
                }
                tracing::warn!(disk = %paths.disk.display(), ?backing, "root disk has the wrong backing file; replacing it");
            }
            Err(e) => {
                tracing::warn!(disk = %paths.disk.display(), error = %e, "root disk unreadable; replacing it");
            }
        }
        outcome = DiskOutcome::Replaced;
    }
    // The larger of what the API recorded and what the node measured on these very bytes.
    let vs = root.virtual_size.unwrap_or(0).max(inspected_size);
    if root.size_gib > 0 && root.size_gib.saturating_mul(1 << 30) < vs {
        return Err(DiskError::TooSmall {
            flavor_gib: root.size_gib,
            virtual_size: vs,
        });
    }
    let part = paths.dir.join("disk.qcow2.part");
    let _ = tokio::fs::remove_file(&part).await;
    let size = format!("{}G", root.size_gib);
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-F".as_ref(),
        base_fmt.as_ref(),
        "-b".as_ref(),
        root.base.as_os_str(),
        part.as_os_str(),
    ];
    if root.size_gib > 0 {
        args.push(size.as_ref());
    }
    if let Err(e) = qemu_img("create", &args).await {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(match e {
            DiskError::QemuImg { stderr, .. } if stderr.to_lowercase().contains("corrupt") => {
                DiskError::BaseCorrupt {
                    base: root.base.clone(),
                    detail: stderr,
                }
            }
            e => e,
        });
    }
    let file = tokio::fs::File::open(&part).await.map_err(io(&part))?;
    file.sync_all().await.map_err(io(&part))?;
    drop(file);
    tokio::fs::rename(&part, &paths.disk)
        .await
        .map_err(io(&paths.disk))?;
    Ok(outcome)
}

/// Removes the server's directory (disk, console log); absent is fine.
///
/// # Errors
/// I/O failures other than "not found".
pub async fn instance_delete(paths: &InstancePaths) -> Result<(), DiskError> {
    match tokio::fs::remove_dir_all(&paths.dir).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DiskError::Io {
            path: paths.dir.clone(),
            source,
        }),
    }
}

/// The uids of every instance directory under `state_dir` (names that are not uuids are
/// ignored: not ours).
///
/// # Errors
/// The directory exists but cannot be read.
pub fn instance_list(state_dir: &Path) -> std::io::Result<Vec<Uuid>> {
    let dir = instances_dir(state_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut uids = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(uid) = entry.file_name().to_str().and_then(|n| {
            Uuid::try_parse(n)
                .ok()
                .filter(|u| u.hyphenated().to_string() == n)
        }) {
            uids.push(uid);
        }
    }
    uids.sort();
    Ok(uids)
}

/// The last `max_bytes` of a console log (lossy UTF-8, starting at a line boundary when it
/// was cut); `None` when there is no log yet.
///
/// # Errors
/// The file exists but cannot be read.
pub fn console_log_tail(path: &Path, max_bytes: u64) -> std::io::Result<Option<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(max_bytes);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.take(max_bytes).read_to_end(&mut buf)?;
    if start > 0
        && let Some(nl) = buf.iter().position(|b| *b == b'\n')
    {
        buf.drain(..=nl);
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have_qemu_img() -> bool {
        std::process::Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[tokio::test]
    async fn ensure_is_idempotent_and_replaces_wrong_or_half_created_disks() {
        if !have_qemu_img() {
            eprintln!("qemu-img missing; skipped");
            return;
        }
        let state = tempfile::tempdir().unwrap();
        let base = state.path().join("base.qcow2");
        let st = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&base)
            .arg("64M")
            .status()
            .unwrap();
        assert!(st.success());
        let paths = InstancePaths::new(state.path(), Uuid::new_v4());
        let root = RootDisk {
            base: base.clone(),
            base_format: DiskFormat::Qcow2,
            size_gib: 1,
            virtual_size: None,
        };
        assert_eq!(
            root_disk_ensure(&paths, &root).await.unwrap(),
            DiskOutcome::Created
        );
        let i = info(&paths.disk, "qcow2").await.unwrap();
        assert_eq!(i["virtual-size"], 1u64 << 30);
        assert_eq!(
            root_disk_ensure(&paths, &root).await.unwrap(),
            DiskOutcome::Kept
        );
        // A crash mid-create: garbage at the final path is replaced.
        std::fs::write(&paths.disk, b"half").unwrap();
        assert_eq!(
            root_disk_ensure(&paths, &root).await.unwrap(),
            DiskOutcome::Replaced
        );
        // Flavor disk 0 keeps the image's size.
        let paths0 = InstancePaths::new(state.path(), Uuid::new_v4());
        let root0 = RootDisk {
            size_gib: 0,
            ..root.clone()
        };
        root_disk_ensure(&paths0, &root0).await.unwrap();
        assert_eq!(
            info(&paths0.disk, "qcow2").await.unwrap()["virtual-size"],
            64u64 << 20
        );
        // Too small a flavor is positive evidence.
        let err = root_disk_ensure(
            &InstancePaths::new(state.path(), Uuid::new_v4()),
            &RootDisk {
                virtual_size: Some(2 << 30),
                ..root.clone()
            },
        )
        .await
        .unwrap_err();
        assert!(err.is_permanent(), "{err}");
        assert_eq!(instance_list(state.path()).unwrap().len(), 3);
        instance_delete(&paths).await.unwrap();
        instance_delete(&paths).await.unwrap();
        assert!(!paths.dir.exists());
    }

    #[test]
    fn console_tail_cuts_at_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("console.log");
        assert_eq!(console_log_tail(&p, 10).unwrap(), None);
        std::fs::write(&p, "first line\nsecond\nthird\n").unwrap();
        assert_eq!(console_log_tail(&p, 10).unwrap().unwrap(), "third\n");
        assert_eq!(
            console_log_tail(&p, 1000).unwrap().unwrap(),
            "first line\nsecond\nthird\n"
        );
    }
}
