//! Loop devices through `losetup`: the LVM backend's data path when the kernel has no
//! device-mapper. A linear LV is a contiguous byte range of its physical volume, so a loop
//! device over the PV with `--offset` (the PV's data start plus the LV's first extent) and
//! `--sizelimit` (its extents) is a block device holding exactly the LV's data.
//!
//! Devices are found again by their backing device and offset (`losetup --json --list`),
//! so a crash never leaks one: the next call reuses it, and deleting the LV detaches it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::VolumeError;
use super::cmd::{self, command};

/// One attached loop device.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub name: PathBuf,
    /// What it reads: a file or a block device (`None` when losetup cannot tell).
    #[serde(rename = "back-file")]
    pub back_file: Option<PathBuf>,
    /// Byte offset into the backing file.
    #[serde(default)]
    pub offset: u64,
    /// Size limit in bytes (0: to the end of the backing file).
    #[serde(default)]
    pub sizelimit: u64,
}

#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    loopdevices: Vec<LoopDevice>,
}

/// Every attached loop device.
///
/// # Errors
/// `losetup` failed or printed something unreadable.
pub fn list() -> Result<Vec<LoopDevice>, VolumeError> {
    let out = cmd::run(&mut command("losetup", ["--json", "--list"]))?;
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new()); // no loop devices: losetup prints nothing
    }
    let l: Listing = serde_json::from_slice(&out.stdout).map_err(|e| VolumeError::Command {
        cmd: "losetup --json --list".into(),
        stderr: format!("unreadable output: {e}"),
    })?;
    Ok(l.loopdevices)
}

/// Whether `dev` reads `backing` (compared after resolving symlinks).
fn same_backing(dev: &LoopDevice, backing: &Path) -> bool {
    let Some(b) = &dev.back_file else {
        return false;
    };
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    b == backing || canon(b) == canon(backing)
}

/// The loop devices over `backing` that start inside `[start, end)`.
///
/// # Errors
/// Listing failed.
pub fn find_in_range(backing: &Path, start: u64, end: u64) -> Result<Vec<LoopDevice>, VolumeError> {
    Ok(list()?
        .into_iter()
        .filter(|d| same_backing(d, backing) && d.offset >= start && d.offset < end)
        .collect())
}

/// A loop device over `backing` at exactly `offset`/`size`, attaching one when none exists;
/// devices at the same offset with another size (the LV was extended) are detached first.
///
/// # Errors
/// `losetup` failed.
pub fn ensure(backing: &Path, offset: u64, size: u64) -> Result<PathBuf, VolumeError> {
    for d in find_in_range(backing, offset, offset + 1)? {
        if d.sizelimit == size {
            return Ok(d.name);
        }
        tracing::info!(dev = %d.name.display(), old = d.sizelimit, new = size, "loop device has a stale size; replacing it");
        detach(&d.name)?;
    }
    let out = cmd::run(
        command("losetup", ["--find", "--show"])
            .arg("--offset")
            .arg(offset.to_string())
            .arg("--sizelimit")
            .arg(size.to_string())
            .arg(backing),
    )?;
    let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    tracing::info!(dev = %name, backing = %backing.display(), offset, size, "attached loop device");
    Ok(PathBuf::from(name))
}

/// Detaches a loop device (if it is open, the kernel detaches it when the last user closes
/// it). Already detached is fine.
///
/// # Errors
/// `losetup -d` failed for another reason.
pub fn detach(dev: &Path) -> Result<(), VolumeError> {
    match cmd::run(command("losetup", ["-d"]).arg(dev)) {
        Ok(_) => Ok(()),
        Err(VolumeError::Command { stderr, .. })
            if stderr.contains("No such device")
                || stderr.contains("No such device or address") =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}
