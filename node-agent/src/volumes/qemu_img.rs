//! `qemu-img` calls shared by the backends. Formats are always explicit (`-f`, `-F`, `-O`),
//! never probed: probing a raw image a guest wrote a qcow2 header into would hand the guest
//! the host's files.

use std::path::Path;

use super::VolumeError;
use super::cmd::{self, command};

/// The formats an image source may have (`qemu-img` names).
pub(crate) const IMAGE_FORMATS: &[&str] = &["raw", "qcow2", "vmdk", "vdi", "vpc", "vhdx"];

/// Runs `qemu-img` with `args`; QEMU's image-lock refusals become [`VolumeError::InUse`].
pub(crate) fn run(args: &[&std::ffi::OsStr], what: &Path) -> Result<Vec<u8>, VolumeError> {
    match cmd::run(&mut command("qemu-img", args)) {
        Ok(out) => Ok(out.stdout),
        Err(VolumeError::Command { stderr, .. })
            if stderr.contains("lock") && stderr.contains("another process") =>
        {
            Err(VolumeError::InUse {
                what: what.display().to_string(),
                detail: stderr,
            })
        }
        Err(e) => Err(e),
    }
}

/// The facts `qemu-img info` gives about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageInfo {
    /// The virtual size in bytes.
    pub virtual_size: u64,
    /// The backing file, as recorded in the image.
    pub backing: Option<String>,
}

/// `qemu-img info -f <format>` of `path` (with `-U`: reading metadata while a guest runs is
/// fine).
pub(crate) fn info(path: &Path, format: &str) -> Result<ImageInfo, VolumeError> {
    let out = run(
        &[
            "info".as_ref(),
            "-U".as_ref(),
            "-f".as_ref(),
            format.as_ref(),
            "--output=json".as_ref(),
            path.as_os_str(),
        ],
        path,
    )?;
    let v: serde_json::Value = serde_json::from_slice(&out).map_err(|e| VolumeError::Command {
        cmd: format!("qemu-img info {}", path.display()),
        stderr: format!("unreadable output: {e}"),
    })?;
    Ok(ImageInfo {
        virtual_size: v
            .get("virtual-size")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
        backing: v
            .get("backing-filename")
            .and_then(|b| b.as_str())
            .map(str::to_owned),
    })
}

/// Checks a source image's format name and that it fits in `size_bytes`; returns its
/// virtual size.
pub(crate) fn check_image(
    uid: uuid::Uuid,
    path: &Path,
    format: &str,
    size_bytes: u64,
) -> Result<u64, VolumeError> {
    if !IMAGE_FORMATS.contains(&format) {
        return Err(VolumeError::InvalidSpec {
            uid,
            reason: format!("image format {format:?} is not one of {IMAGE_FORMATS:?}"),
        });
    }
    let vs = info(path, format)?.virtual_size;
    if vs > size_bytes {
        return Err(VolumeError::InvalidSpec {
            uid,
            reason: format!(
                "{size_bytes} bytes is smaller than the image's virtual size {vs} bytes"
            ),
        });
    }
    Ok(vs)
}
