//! `qemu-img` calls shared by the backends. Formats are always explicit (`-f`, `-F`, `-O`),
//! never probed: probing a raw image a guest wrote a qcow2 header into would hand the guest
//! the host's files. Every source is inspected first ([`crate::image_inspect`]): a declared
//! format is not trusted either.

use std::path::Path;

use super::VolumeError;
use super::cmd::{self, command};

/// The formats an image source may have (`qemu-img` names).
pub(crate) const IMAGE_FORMATS: &[&str] = crate::image_inspect::FORMATS;

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

/// Checks a source image before a volume is made from it: its declared format name, the
/// node's own inspection of the bytes ([`crate::image_inspect::inspect`]: no backing or data
/// file, no format mismatch), and that it fits in `size_bytes`; returns its virtual size.
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
    let vs = crate::image_inspect::inspect(path, format)
        .map_err(|e| VolumeError::from_inspection(path, e))?
        .virtual_size;
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

/// Checks a snapshot file before a volume reads from it: a standalone qcow2 (snapshots are
/// flattened copies), inspected like an image.
pub(crate) fn check_snapshot(path: &Path) -> Result<u64, VolumeError> {
    crate::image_inspect::inspect(path, "qcow2")
        .map(|i| i.virtual_size)
        .map_err(|e| VolumeError::from_inspection(path, e))
}

/// Checks a volume file (ours, maybe an overlay) before it is copied or handed to a domain
/// ([`crate::image_inspect::inspect_volume_file`]).
pub(crate) fn check_volume_file(path: &Path) -> Result<(), VolumeError> {
    crate::image_inspect::inspect_volume_file(path)
        .map(|_| ())
        .map_err(|e| VolumeError::from_inspection(path, e))
}
