//! The LVM backend: every volume is a logical volume in one volume group, managed with the
//! lvm2 command-line tools (`--reportformat json` for every report).
//!
//! # Names and ownership
//! A volume is the LV `cirrus-vol-<uid>` tagged `cirrus` and `cirrus-vol-<uid>`; a snapshot
//! is `cirrus-snap-<uid>` tagged `cirrus`, `cirrus-snap-<uid>` and `cirrus-snapof-<volume
//! uid>`. Only LVs whose name *and* tags say so are listed or touched, so other LVs in a
//! shared volume group are safe from orphan sweeps.
//!
//! # Crash safety
//! An empty volume is one `lvcreate` that also adds the `cirrus-ready` tag: it either exists
//! complete or not at all. A volume with contents (from an image, a volume or a snapshot) is
//! created without `cirrus-ready`, filled, then tagged; an LV found without the tag is a
//! half-created volume: [`VolumeBackend::volume_info`] does not show it and the next
//! [`VolumeBackend::volume_ensure`] removes and rebuilds it ([`EnsureOutcome::Repaired`]).
//!
//! # Device-mapper
//! Detected at start ([`detect_device_mapper`]: `/dev/mapper/control` plus the `dm_mod`
//! module or `device-mapper` in `/proc/misc`), or forced by [`DeviceMapper`].
//!
//! | operation | with device-mapper (a normal host) | without (activation disabled) |
//! |---|---|---|
//! | create / extend / delete / list / tag | yes | yes (metadata only, `global/activation=0`) |
//! | data path ([`VolumeInfo::path`]) | `/dev/<vg>/<lv>` after `lvchange -ay` | a loop device over the PV at the LV's extent offset (`losetup --offset --sizelimit`); linear one-segment LVs only, so volumes are allocated `--alloc contiguous` |
//! | zeroing the head of a new LV | `lvcreate -Zy` | not possible at create (`-Zn`); the first MiB of every segment is zeroed at delete instead |
//! | volume from an image / a volume | copy with `qemu-img convert -n` onto the device | the same, onto the loop devices |
//! | snapshots, volumes from snapshots | classic copy-on-write snapshots (`lvcreate -s`, COW area = origin size, so it never overflows) | [`VolumeError::Unsupported`]: the kernel's dm-snapshot target is needed |
//! | thin pools | not used | — |
//!
//! Loop devices are found again from `losetup --json --list` (backing device + offset), so a
//! crash never leaks one; [`VolumeBackend::volume_delete`] detaches them. After an extend the
//! stale mapping is detached and the next `volume_info` maps the new size.
//!
//! # Caveats
//! Deleting does not wipe the whole LV (Cinder's `volume_clear`): only the head, so a new
//! volume never shows the previous one's partition table or filesystem signature.
//!
//! # Why this file is long
//! It is one implementation of the whole [`VolumeBackend`] trait over the
//! LVM command line (volumes, snapshots, the loop-device fallback) with the output parsers those
//! commands need; the parts share the command runner and its error mapping.

use std::collections::HashMap;
use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
#[cfg(any(test, feature = "testing"))]
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::cmd::{self, command};
use super::{
    Capabilities, EnsureOutcome, LV_SNAPSHOT_PREFIX, LV_VOLUME_PREFIX, PoolInfo, PoolKind, Result,
    SnapshotInfo, VolumeBackend, VolumeError, VolumeFormat, VolumeInfo, VolumeSource, VolumeSpec,
    loopdev, parse_uid, qemu_img,
};

/// The ownership tag on every Cirrus LV.
pub const TAG_OWNER: &str = "cirrus";
/// The tag marking a volume whose contents are complete.
pub const TAG_READY: &str = "cirrus-ready";
/// Bytes zeroed at the head of every segment of a deleted LV when device-mapper is absent.
const WIPE_BYTES: u64 = 1 << 20;

/// Whether the device-mapper is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceMapper {
    /// Probe the host ([`detect_device_mapper`]).
    Auto,
    /// Assume a normal host: LVs are activated.
    Present,
    /// Metadata only (`global/activation=0`), data path through loop devices.
    Absent,
}

/// How to reach the volume group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvmConfig {
    /// The volume group's name.
    pub vg: String,
    /// Device-mapper detection.
    pub device_mapper: DeviceMapper,
    /// Extra `--config` settings for every lvm2 call (tests pass
    /// `backup/backup=0 backup/archive=0`).
    pub extra_config: Option<String>,
}

/// Probes the kernel for device-mapper: `/dev/mapper/control` and the `dm_mod` module (or
/// the `device-mapper` misc device). Returns whether it is there and what was seen.
pub fn detect_device_mapper() -> (bool, String) {
    let control = Path::new("/dev/mapper/control").exists();
    let module = Path::new("/sys/module/dm_mod").exists()
        || std::fs::read_to_string("/proc/misc").is_ok_and(|m| m.contains("device-mapper"));
    let present = control && module;
    let detail = format!(
        "device-mapper {}: /dev/mapper/control {}, dm_mod {}",
        if present { "present" } else { "absent" },
        if control { "exists" } else { "missing" },
        if module { "loaded" } else { "not loaded" },
    );
    (present, detail)
}

/// One LV from `lvs`.
#[derive(Debug, Clone)]
struct Lv {
    name: String,
    size: u64,
    tags: Vec<String>,
    origin: String,
}

impl Lv {
    fn has_tag(&self, t: &str) -> bool {
        self.tags.iter().any(|x| x == t)
    }
}

/// One physical-volume segment from `pvs --segments`.
#[derive(Debug, Clone)]
struct PvSeg {
    pv: PathBuf,
    pe_start: u64,
    start_extent: u64,
    extents: u64,
    lv: String,
    lv_tags: Vec<String>,
    lv_size: u64,
    extent_size: u64,
}

impl PvSeg {
    fn byte_range(&self) -> (u64, u64) {
        let start = self.pe_start + self.start_extent * self.extent_size;
        (start, start + self.extents * self.extent_size)
    }
}

fn field<'a>(row: &'a HashMap<String, String>, k: &str) -> &'a str {
    row.get(k).map(String::as_str).unwrap_or("")
}

fn num(row: &HashMap<String, String>, k: &str) -> u64 {
    field(row, k).trim().parse().unwrap_or(0)
}

fn tags(row: &HashMap<String, String>, k: &str) -> Vec<String> {
    field(row, k)
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// An LVM volume group as a volume pool. See the [module docs](self).
#[derive(Debug)]
pub struct LvmBackend {
    vg: String,
    dm: bool,
    dm_detail: String,
    config: String,
    /// Serializes creations, deletions and loop-device changes in this process.
    lock: Mutex<()>,
}

impl LvmBackend {
    /// A backend over the volume group in `cfg` (checked with `vgs`).
    ///
    /// # Errors
    /// The lvm2 tools are missing or the volume group does not exist.
    pub fn new(cfg: LvmConfig) -> Result<Self> {
        let (dm, dm_detail) = match cfg.device_mapper {
            DeviceMapper::Auto => detect_device_mapper(),
            DeviceMapper::Present => (true, "device-mapper assumed present".into()),
            DeviceMapper::Absent => (false, "device-mapper assumed absent".into()),
        };
        let mut config = Vec::new();
        if !dm {
            config.push("global/activation=0".to_owned());
        }
        config.extend(cfg.extra_config);
        let b = Self {
            vg: cfg.vg,
            dm,
            dm_detail,
            config: config.join(" "),
            lock: Mutex::new(()),
        };
        b.capacity()?;
        Ok(b)
    }

    /// Whether LVs are activated (device-mapper present) rather than mapped on loop devices.
    pub fn device_mapper(&self) -> bool {
        self.dm
    }

    /// The volume group.
    pub fn vg(&self) -> &str {
        &self.vg
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An lvm2 command with our `--config` and quiet fd warnings.
    fn lvm(&self, tool: &str) -> Command {
        let mut c = command(tool, [""; 0]);
        c.env("LVM_SUPPRESS_FD_WARNINGS", "1");
        if !self.config.is_empty() {
            c.arg("--config").arg(&self.config);
        }
        c
    }

    fn lv_path(&self, name: &str) -> String {
        format!("{}/{name}", self.vg)
    }

    /// Rows of a JSON report (`report[0][key]`).
    fn report(&self, mut c: Command, key: &str) -> Result<Vec<HashMap<String, String>>> {
        let line = cmd::describe(&c);
        let out = cmd::run(&mut c)?;
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| VolumeError::Command {
                cmd: line.clone(),
                stderr: format!("unreadable report: {e}"),
            })?;
        let rows = v
            .pointer(&format!("/report/0/{key}"))
            .cloned()
            .unwrap_or_default();
        serde_json::from_value(rows).map_err(|e| VolumeError::Command {
            cmd: line,
            stderr: format!("unexpected report rows: {e}"),
        })
    }

    fn lvs(&self) -> Result<Vec<Lv>> {
        let mut c = self.lvm("lvs");
        c.args([
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "lv_name,lv_size,lv_tags,origin",
        ])
        .arg(&self.vg);
        Ok(self
            .report(c, "lv")?
            .iter()
            .map(|r| Lv {
                name: field(r, "lv_name").to_owned(),
                size: num(r, "lv_size"),
                tags: tags(r, "lv_tags"),
                origin: field(r, "origin").to_owned(),
            })
            .collect())
    }

    fn find_lv(&self, name: &str) -> Result<Option<Lv>> {
        Ok(self.lvs()?.into_iter().find(|l| l.name == name))
    }

    /// The PV segments of the LV `name` (empty: no such LV), in one `pvs` call.
    fn segments(&self, name: &str) -> Result<Vec<PvSeg>> {
        let mut c = self.lvm("pvs");
        c.args([
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "--segments",
            "-o",
            "pv_name,pe_start,pvseg_start,pvseg_size,lv_name,lv_tags,lv_size,vg_extent_size",
            "-S",
        ])
        .arg(format!("vg_name={}", self.vg));
        Ok(self
            .report(c, "pvseg")?
            .iter()
            .filter(|r| field(r, "lv_name") == name)
            .map(|r| PvSeg {
                pv: PathBuf::from(field(r, "pv_name")),
                pe_start: num(r, "pe_start"),
                start_extent: num(r, "pvseg_start"),
                extents: num(r, "pvseg_size"),
                lv: field(r, "lv_name").to_owned(),
                lv_tags: tags(r, "lv_tags"),
                lv_size: num(r, "lv_size"),
                extent_size: num(r, "vg_extent_size"),
            })
            .collect())
    }

    /// The block device holding LV `name`'s data: `/dev/<vg>/<lv>` (activated on demand)
    /// with device-mapper; a loop device over its PV segment without. `None` without
    /// device-mapper when the LV is not one contiguous segment.
    fn data_path(&self, name: &str, segs: &[PvSeg]) -> Result<Option<PathBuf>> {
        if self.dm {
            let dev = PathBuf::from(format!("/dev/{}/{name}", self.vg));
            if !dev.exists() {
                let mut c = self.lvm("lvchange");
                cmd::run(c.args(["-ay", "-K"]).arg(self.lv_path(name)))?;
            }
            return Ok(Some(dev));
        }
        let [seg] = segs else {
            tracing::warn!(
                lv = name,
                segments = segs.len(),
                "LV is not one segment; no loop data path without device-mapper"
            );
            return Ok(None);
        };
        let (start, end) = seg.byte_range();
        debug_assert_eq!(seg.lv, name);
        loopdev::ensure(&seg.pv, start, end - start).map(Some)
    }

    /// Detaches every loop device over the LV's segments (no device-mapper only).
    fn unmap(&self, segs: &[PvSeg]) -> Result<()> {
        if self.dm {
            return Ok(());
        }
        for s in segs {
            let (start, end) = s.byte_range();
            for d in loopdev::find_in_range(&s.pv, start, end)? {
                loopdev::detach(&d.name)?;
            }
        }
        Ok(())
    }

    /// Removes LV `name`: detaches its loop devices, zeroes the heads of its segments
    /// without device-mapper, `lvremove`.
    fn remove_lv(&self, name: &str) -> Result<()> {
        let segs = self.segments(name)?;
        self.unmap(&segs)?;
        if !self.dm {
            for s in &segs {
                let (start, end) = s.byte_range();
                zero(&s.pv, start, WIPE_BYTES.min(end - start))?;
            }
        }
        let mut c = self.lvm("lvremove");
        cmd::run(c.args(["-y"]).arg(self.lv_path(name)))?;
        Ok(())
    }

    fn insufficient(&self, requested: u64) -> VolumeError {
        match self.capacity() {
            Ok(p) => VolumeError::InsufficientSpace {
                requested,
                free: p.free_bytes,
            },
            Err(e) => e,
        }
    }

    /// `lvcreate` of a linear LV; "not enough space" becomes [`VolumeError::InsufficientSpace`].
    fn lvcreate(&self, name: &str, size: u64, tags: &[String]) -> Result<()> {
        let mut c = self.lvm("lvcreate");
        c.args(["-q", "-y", "-n", name, "-L"])
            .arg(format!("{size}b"));
        if self.dm {
            c.args(["-Zy", "-Wy"]);
        } else {
            c.args(["-Zn", "-Wn", "--alloc", "contiguous"]);
        }
        for t in tags {
            c.arg("--addtag").arg(t);
        }
        c.arg(&self.vg);
        match cmd::run(&mut c) {
            Ok(_) => Ok(()),
            Err(VolumeError::Command { stderr, .. }) if is_no_space(&stderr) => {
                Err(self.insufficient(size))
            }
            Err(e) => Err(e),
        }
    }

    fn volume_tags(uid: Uuid, ready: bool) -> Vec<String> {
        let mut t = vec![TAG_OWNER.to_owned(), format!("{LV_VOLUME_PREFIX}{uid}")];
        if ready {
            t.push(TAG_READY.to_owned());
        }
        t
    }

    /// The complete volume LV of `uid`, or `NotFound`.
    fn complete_volume(&self, uid: Uuid) -> Result<Lv> {
        self.find_lv(&format!("{LV_VOLUME_PREFIX}{uid}"))?
            .filter(|l| l.has_tag(TAG_READY) && l.has_tag(TAG_OWNER))
            .ok_or(VolumeError::NotFound {
                kind: "volume",
                uid,
            })
    }

    fn no_dm(&self, what: &str) -> VolumeError {
        VolumeError::Unsupported {
            what: what.into(),
            why: format!(
                "LVM snapshots need the kernel's device-mapper (dm-snapshot), and this host has none ({})",
                self.dm_detail
            ),
        }
    }

    /// Copies `src` (`fmt`) onto the block device `dev` (`qemu-img convert -n`).
    fn copy_onto(src: &Path, fmt: &str, dev: &Path) -> Result<()> {
        qemu_img::run(
            &[
                "convert".as_ref(),
                "-n".as_ref(),
                "-f".as_ref(),
                fmt.as_ref(),
                "-O".as_ref(),
                "raw".as_ref(),
                src.as_os_str(),
                dev.as_os_str(),
            ],
            src,
        )?;
        Ok(())
    }

    /// Creates a volume with contents: LV without `cirrus-ready`, copy, tag.
    fn create_filled(&self, spec: &VolumeSpec, name: &str) -> Result<()> {
        // Validate and find the source before creating anything. An image is inspected by
        // the node (declared format against the bytes, no backing or data file) before any
        // LV exists; volumes and snapshots are our own LVs, read as raw.
        let (src, fmt): (PathBuf, String) = match &spec.source {
            VolumeSource::Empty => unreachable!("empty volumes are one lvcreate"),
            VolumeSource::Image { path, format } => {
                qemu_img::check_image(spec.uid, path, format, spec.size_bytes)?;
                (path.clone(), format.clone())
            }
            VolumeSource::Volume { uid } => {
                let lv = self.complete_volume(*uid)?;
                if lv.size > spec.size_bytes {
                    return Err(VolumeError::InvalidSpec {
                        uid: spec.uid,
                        reason: format!("smaller than volume {uid} ({} bytes)", lv.size),
                    });
                }
                let segs = self.segments(&lv.name)?;
                let dev =
                    self.data_path(&lv.name, &segs)?
                        .ok_or_else(|| VolumeError::Unsupported {
                            what: format!("a copy of volume {uid}"),
                            why: "its LV is not one contiguous segment and device-mapper is absent"
                                .into(),
                        })?;
                (dev, "raw".into())
            }
            VolumeSource::Snapshot { uid } => {
                if !self.dm {
                    return Err(self.no_dm("a volume from a snapshot"));
                }
                let lv = self
                    .find_lv(&format!("{LV_SNAPSHOT_PREFIX}{uid}"))?
                    .filter(|l| l.has_tag(TAG_OWNER))
                    .ok_or(VolumeError::NotFound {
                        kind: "snapshot",
                        uid: *uid,
                    })?;
                let origin = self.find_lv(&lv.origin)?.map_or(0, |o| o.size);
                if origin > spec.size_bytes {
                    return Err(VolumeError::InvalidSpec {
                        uid: spec.uid,
                        reason: format!("smaller than snapshot {uid} ({origin} bytes)"),
                    });
                }
                let dev = self.data_path(&lv.name, &[])?.expect("device-mapper path");
                (dev, "raw".into())
            }
        };
        self.lvcreate(name, spec.size_bytes, &Self::volume_tags(spec.uid, false))?;
        let filled = (|| {
            let segs = self.segments(name)?;
            let dev = self
                .data_path(name, &segs)?
                .ok_or_else(|| VolumeError::Command {
                    cmd: format!("lvcreate {name}"),
                    stderr: "the new LV is not one contiguous segment".into(),
                })?;
            Self::copy_onto(&src, &fmt, &dev)?;
            let mut c = self.lvm("lvchange");
            cmd::run(
                c.args(["-q", "--addtag", TAG_READY])
                    .arg(self.lv_path(name)),
            )?;
            Ok(())
        })();
        if let Err(e) = filled {
            if let Err(rm) = self.remove_lv(name) {
                tracing::warn!(lv = name, error = %rm, "could not remove a half-created volume; the next ensure will");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Times the raw backend command this backend's create is measured against: `lvcreate`
    /// with the same allocation flags as a volume (then removed, untimed).
    ///
    /// # Errors
    /// `lvcreate` or `lvremove` failed.
    #[cfg(any(test, feature = "testing"))]
    pub fn raw_create_timed(&self, size_bytes: u64) -> Result<Duration> {
        let name = format!(
            "cirrus-bench-{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        let t = Instant::now();
        self.lvcreate(&name, size_bytes, &[])?;
        let took = t.elapsed();
        let mut c = self.lvm("lvremove");
        cmd::run(c.args(["-q", "-y"]).arg(self.lv_path(&name)))?;
        Ok(took)
    }
}

fn is_no_space(stderr: &str) -> bool {
    let s = stderr.to_lowercase();
    s.contains("insufficient free space")
        || s.contains("insufficient suitable")
        || s.contains("insufficient allocatable")
}

/// Writes `len` zero bytes at `offset` of the block device `dev` and syncs.
fn zero(dev: &Path, offset: u64, len: u64) -> Result<()> {
    let io = |source| VolumeError::Io {
        path: dev.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(dev)
        .map_err(io)?;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).map_err(io)?;
        left -= n as u64;
    }
    f.sync_all().map_err(io)
}

impl VolumeBackend for LvmBackend {
    fn capacity(&self) -> Result<PoolInfo> {
        let mut c = self.lvm("vgs");
        c.args([
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "vg_name,vg_size,vg_free",
        ])
        .arg(&self.vg);
        let rows = self.report(c, "vg")?;
        let row = rows.first().ok_or_else(|| VolumeError::Command {
            cmd: format!("vgs {}", self.vg),
            stderr: "volume group not reported".into(),
        })?;
        Ok(PoolInfo {
            name: self.vg.clone(),
            kind: PoolKind::Lvm,
            total_bytes: num(row, "vg_size"),
            free_bytes: num(row, "vg_free"),
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            snapshots: self.dm,
            data_path: true,
            cow_clones: false,
            detail: if self.dm {
                format!("{}; LVs are activated", self.dm_detail)
            } else {
                format!(
                    "{}; metadata only (activation disabled), data through loop devices at the LV's extent offset, no snapshots",
                    self.dm_detail
                )
            },
        }
    }

    #[tracing::instrument(level = "info", skip_all, fields(uid = %spec.uid, vg = %self.vg))]
    fn volume_ensure(&self, spec: &VolumeSpec) -> Result<EnsureOutcome> {
        let _g = self.guard();
        let name = format!("{LV_VOLUME_PREFIX}{}", spec.uid);
        let mut outcome = EnsureOutcome::Created;
        if matches!(spec.source, VolumeSource::Empty) {
            // Fast path: one lvcreate with every tag; "already exists" sends us to inspect.
            match self.lvcreate(&name, spec.size_bytes, &Self::volume_tags(spec.uid, true)) {
                Ok(()) => return Ok(EnsureOutcome::Created),
                Err(VolumeError::Command { stderr, .. }) if stderr.contains("already exists") => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(lv) = self.find_lv(&name)? {
            if !lv.has_tag(TAG_OWNER) {
                return Err(VolumeError::InvalidSpec {
                    uid: spec.uid,
                    reason: format!(
                        "LV {name} exists without the {TAG_OWNER} tag; not touching it"
                    ),
                });
            }
            if lv.has_tag(TAG_READY) {
                return Ok(EnsureOutcome::Exists);
            }
            tracing::warn!(lv = %name, "removing a half-created volume; building it again");
            self.remove_lv(&name)?;
            outcome = EnsureOutcome::Repaired;
        }
        match spec.source {
            VolumeSource::Empty => {
                self.lvcreate(&name, spec.size_bytes, &Self::volume_tags(spec.uid, true))?
            }
            _ => self.create_filled(spec, &name)?,
        }
        Ok(outcome)
    }

    /// LVs are raw block devices attached as raw, filled only from inspected images: nothing
    /// to check.
    fn volume_verify(&self, _uid: Uuid) -> Result<()> {
        Ok(())
    }

    fn volume_info(&self, uid: Uuid) -> Result<Option<VolumeInfo>> {
        let _g = self.guard();
        let name = format!("{LV_VOLUME_PREFIX}{uid}");
        let segs = self.segments(&name)?;
        let Some(first) = segs.first() else {
            return Ok(None);
        };
        if !first.lv_tags.iter().any(|t| t == TAG_READY) {
            return Ok(None);
        }
        let size = first.lv_size;
        let path = self.data_path(&name, &segs)?;
        Ok(Some(VolumeInfo {
            uid,
            size_bytes: size,
            path,
            format: VolumeFormat::Raw,
            backing: None,
        }))
    }

    #[tracing::instrument(level = "info", skip(self), fields(vg = %self.vg))]
    fn volume_extend(&self, uid: Uuid, new_size_bytes: u64) -> Result<()> {
        let _g = self.guard();
        let lv = self.complete_volume(uid)?;
        if new_size_bytes < lv.size {
            return Err(VolumeError::ShrinkRefused {
                uid,
                current: lv.size,
                requested: new_size_bytes,
            });
        }
        if new_size_bytes == lv.size {
            return Ok(());
        }
        let extend = |contiguous: bool| {
            let mut c = self.lvm("lvextend");
            c.args(["-q", "-L"]).arg(format!("{new_size_bytes}b"));
            if contiguous {
                c.args(["--alloc", "contiguous"]);
            }
            cmd::run(c.arg(self.lv_path(&lv.name)))
        };
        let mut r = extend(!self.dm);
        if !self.dm && matches!(&r, Err(VolumeError::Command { stderr, .. }) if is_no_space(stderr))
        {
            tracing::warn!(lv = %lv.name, "no contiguous extents after the LV; extending into a second segment (no loop data path until device-mapper)");
            r = extend(false);
        }
        match r {
            Ok(_) => {}
            Err(VolumeError::Command { stderr, .. }) if is_no_space(&stderr) => {
                return Err(self.insufficient(new_size_bytes - lv.size));
            }
            Err(e) => return Err(e),
        }
        // The old mapping has the old size: drop it, the next volume_info maps the new one.
        self.unmap(&self.segments(&lv.name)?)
    }

    #[tracing::instrument(level = "info", skip(self), fields(vg = %self.vg))]
    fn volume_delete(&self, uid: Uuid) -> Result<bool> {
        let _g = self.guard();
        let name = format!("{LV_VOLUME_PREFIX}{uid}");
        let lvs = self.lvs()?;
        let Some(lv) = lvs.iter().find(|l| l.name == name) else {
            return Ok(false);
        };
        if !lv.has_tag(TAG_OWNER) {
            return Err(VolumeError::InvalidSpec {
                uid,
                reason: format!("LV {name} lacks the {TAG_OWNER} tag; not deleting a foreign LV"),
            });
        }
        let snaps: Vec<Uuid> = lvs
            .iter()
            .filter(|l| l.origin == name)
            .filter_map(|l| parse_uid(&l.name, LV_SNAPSHOT_PREFIX, ""))
            .collect();
        if !snaps.is_empty() {
            return Err(VolumeError::HasDependents {
                what: format!("volume {uid}"),
                dependents: snaps,
            });
        }
        self.remove_lv(&name)?;
        Ok(true)
    }

    fn volumes(&self) -> Result<Vec<Uuid>> {
        let mut uids: Vec<Uuid> = self
            .lvs()?
            .iter()
            .filter(|l| l.has_tag(TAG_OWNER))
            .filter_map(|l| {
                let uid = parse_uid(&l.name, LV_VOLUME_PREFIX, "")?;
                l.has_tag(&l.name).then_some(uid)
            })
            .collect();
        uids.sort();
        Ok(uids)
    }

    #[tracing::instrument(level = "info", skip(self), fields(vg = %self.vg))]
    fn snapshot_ensure(&self, volume_uid: Uuid, snapshot_uid: Uuid) -> Result<EnsureOutcome> {
        if !self.dm {
            return Err(self.no_dm("snapshot"));
        }
        let _g = self.guard();
        let name = format!("{LV_SNAPSHOT_PREFIX}{snapshot_uid}");
        if let Some(s) = self.find_lv(&name)? {
            let of = format!("{LV_VOLUME_PREFIX}{volume_uid}");
            if s.origin != of {
                return Err(VolumeError::InvalidSpec {
                    uid: snapshot_uid,
                    reason: format!("snapshot exists of {}, not {of}", s.origin),
                });
            }
            return Ok(EnsureOutcome::Exists);
        }
        let vol = self.complete_volume(volume_uid)?;
        let mut c = self.lvm("lvcreate");
        c.args(["-q", "-s", "-n", &name, "-L"])
            .arg(format!("{}b", vol.size));
        for t in [
            TAG_OWNER.to_owned(),
            name.clone(),
            format!("cirrus-snapof-{volume_uid}"),
        ] {
            c.arg("--addtag").arg(t);
        }
        c.arg(self.lv_path(&vol.name));
        match cmd::run(&mut c) {
            Ok(_) => Ok(EnsureOutcome::Created),
            Err(VolumeError::Command { stderr, .. }) if is_no_space(&stderr) => {
                Err(self.insufficient(vol.size))
            }
            Err(e) => Err(e),
        }
    }

    fn snapshot_info(&self, snapshot_uid: Uuid) -> Result<Option<SnapshotInfo>> {
        Ok(self
            .snapshots()?
            .into_iter()
            .find(|s| s.uid == snapshot_uid))
    }

    #[tracing::instrument(level = "info", skip(self), fields(vg = %self.vg))]
    fn snapshot_delete(&self, snapshot_uid: Uuid) -> Result<bool> {
        let _g = self.guard();
        let name = format!("{LV_SNAPSHOT_PREFIX}{snapshot_uid}");
        match self.find_lv(&name)? {
            Some(l) if l.has_tag(TAG_OWNER) => {
                // Volumes cloned from it are full copies: nothing depends on it.
                self.remove_lv(&name)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let lvs = self.lvs()?;
        let mut out: Vec<SnapshotInfo> = lvs
            .iter()
            .filter(|l| l.has_tag(TAG_OWNER) && l.has_tag(&l.name))
            .filter_map(|l| {
                let uid = parse_uid(&l.name, LV_SNAPSHOT_PREFIX, "")?;
                let volume_uid = parse_uid(&l.origin, LV_VOLUME_PREFIX, "")?;
                let size = lvs
                    .iter()
                    .find(|o| o.name == l.origin)
                    .map_or(l.size, |o| o.size);
                Some(SnapshotInfo {
                    uid,
                    volume_uid,
                    size_bytes: size,
                })
            })
            .collect();
        out.sort_by_key(|s| s.uid);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_space_messages_are_recognized() {
        assert!(is_no_space(
            "Volume group \"vg\" has insufficient free space (58 extents): 512 required."
        ));
        assert!(is_no_space(
            "Insufficient suitable contiguous allocatable extents for logical volume x"
        ));
        assert!(!is_no_space("Logical Volume \"a\" already exists"));
    }

    #[test]
    fn segment_byte_range_starts_after_the_pv_header() {
        let s = PvSeg {
            pv: "/dev/loop0".into(),
            pe_start: 1 << 20,
            start_extent: 5,
            extents: 2,
            lv: "x".into(),
            lv_tags: vec![],
            lv_size: 8 << 20,
            extent_size: 4 << 20,
        };
        assert_eq!(
            s.byte_range(),
            ((1 << 20) + (20 << 20), (1 << 20) + (28 << 20))
        );
    }

    #[test]
    fn device_mapper_detection_explains_itself() {
        let (present, detail) = detect_device_mapper();
        assert!(detail.starts_with(if present {
            "device-mapper present"
        } else {
            "device-mapper absent"
        }));
    }
}
