//! The file backend (the embedded default, works everywhere): every volume is a qcow2 file in
//! one directory, made and changed with `qemu-img` (formats always explicit).
//!
//! # Layout
//! - `vol-<uid>.qcow2`: a volume. Built as `.vol-<uid>.qcow2.part` and renamed into place
//!   after an fsync, so the final name only ever holds a complete volume; a stale `.part` (a
//!   crash) is removed by the next ensure of that uid, and listed by
//!   [`VolumeBackend::volumes`] so a sweep can remove it too.
//! - `snap-<snapshot uid>@<volume uid>.qcow2`: a snapshot (same `.part` scheme).
//! - Anything else in the directory is not ours and is never listed or touched.
//!
//! # Contents
//! Every source file is inspected by the node first ([`crate::image_inspect`]): an image as
//! its declared format, a snapshot as a standalone qcow2, a volume as our qcow2 whose only
//! backing file passes the same inspection; a refusal is [`VolumeError::SourceRefused`] and
//! no file is made.
//! - Empty: `qemu-img create -f qcow2`.
//! - From an image: a copy-on-write overlay, `qemu-img create -f qcow2 -F <fmt> -b <image>`
//!   at the volume's size. The image file must outlive the volume ([`VolumeInfo::backing`]).
//! - Snapshot: a full, flattened copy of the volume at that moment
//!   (`qemu-img convert -f qcow2 -O qcow2`), independent of the volume and of its image, so
//!   deleting either never touches it. Without `-U`, `qemu-img` takes QEMU's shared image
//!   lock: while a running domain has the volume open for writing the snapshot is refused
//!   ([`VolumeError::InUse`]) instead of copying a torn image. A snapshot of a volume a
//!   running domain holds is copied by the hypervisor instead
//!   ([`VolumeBackend::snapshot_ensure_copied`]: libvirt's backup job writes the `.part`
//!   file, a standalone qcow2 as of that moment), then committed the same way.
//! - From a snapshot: a copy-on-write overlay on the snapshot file (cheap); the snapshot
//!   cannot be deleted while such volumes exist ([`VolumeError::HasDependents`]).
//! - From another volume: a full copy (`qemu-img convert`), same locking as snapshots.
//! - Extend: `qemu-img resize -f qcow2` (offline; a running domain's lock refuses it with
//!   [`VolumeError::InUse`] — online growth goes through libvirt `blockresize`).
//!
//! # Space
//! qcow2 files are thin, but [`PoolInfo::free_bytes`] counts every volume and snapshot as
//! fully allocated (filesystem free space minus what our files may still grow by), and
//! creation or extension beyond it is [`VolumeError::InsufficientSpace`], so the scheduler
//! never overcommits a host's disk.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
#[cfg(any(test, feature = "testing"))]
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{
    Capabilities, EnsureOutcome, PoolInfo, PoolKind, Result, SnapshotInfo, VolumeBackend,
    VolumeError, VolumeFormat, VolumeInfo, VolumeSource, VolumeSpec, parse_uid, qemu_img,
};

const QCOW2_MAGIC: u32 = 0x5146_49fb;

/// The facts read straight from a qcow2 header (no process spawned).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    virtual_size: u64,
    backing: Option<PathBuf>,
}

fn read_header(path: &Path) -> std::io::Result<Header> {
    let mut f = fs::File::open(path)?;
    let mut h = [0u8; 32];
    f.read_exact(&mut h)?;
    let be32 = |o: usize| u32::from_be_bytes(h[o..o + 4].try_into().expect("4 bytes"));
    let be64 = |o: usize| u64::from_be_bytes(h[o..o + 8].try_into().expect("8 bytes"));
    if be32(0) != QCOW2_MAGIC {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a qcow2 file",
        ));
    }
    let (off, len) = (be64(8), be32(16) as usize);
    let backing = if off == 0 || len == 0 || len > 4096 {
        None
    } else {
        use std::io::{Seek as _, SeekFrom};
        let mut name = vec![0u8; len];
        f.seek(SeekFrom::Start(off))?;
        f.read_exact(&mut name)?;
        Some(PathBuf::from(String::from_utf8_lossy(&name).into_owned()))
    };
    Ok(Header {
        virtual_size: be64(24),
        backing,
    })
}

/// qcow2 volumes in a directory. See the [module docs](self).
#[derive(Debug)]
pub struct FileBackend {
    dir: PathBuf,
    /// Serializes creations and deletions in this process (two ensures of one uid must not
    /// share a `.part`).
    lock: Mutex<()>,
}

impl FileBackend {
    /// A backend over `dir` (created if missing; made absolute so backing-file references
    /// never depend on the working directory).
    ///
    /// # Errors
    /// The directory cannot be created or resolved.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let io = |source| VolumeError::Io {
            path: dir.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(io)?;
        let dir = fs::canonicalize(&dir).map_err(io)?;
        Ok(Self {
            dir,
            lock: Mutex::new(()),
        })
    }

    /// The pool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of the volume with `uid`: `<dir>/vol-<uid>.qcow2`.
    pub fn volume_path(&self, uid: Uuid) -> PathBuf {
        self.dir.join(format!("vol-{uid}.qcow2"))
    }

    /// Where the volume is built before the rename: `<dir>/.vol-<uid>.qcow2.part`.
    pub fn volume_part_path(&self, uid: Uuid) -> PathBuf {
        self.dir.join(format!(".vol-{uid}.qcow2.part"))
    }

    fn snapshot_path(&self, snap: Uuid, vol: Uuid) -> PathBuf {
        self.dir.join(format!("snap-{snap}@{vol}.qcow2"))
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
        let path = path.to_path_buf();
        move |source| VolumeError::Io { path, source }
    }

    /// Our files: `(name, path)` of every entry that parses as a volume, a snapshot or a
    /// part file.
    fn entries(&self) -> Result<Vec<(String, PathBuf)>> {
        let rd = fs::read_dir(&self.dir).map_err(self.io(&self.dir))?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(self.io(&self.dir))?;
            if let Some(name) = e.file_name().to_str() {
                out.push((name.to_owned(), e.path()));
            }
        }
        Ok(out)
    }

    /// Every snapshot file: `(snapshot uid, volume uid, path)`.
    fn snapshot_files(&self) -> Result<Vec<(Uuid, Uuid, PathBuf)>> {
        Ok(self
            .entries()?
            .into_iter()
            .filter_map(|(name, path)| {
                let (s, v) = parse_snapshot_name(&name)?;
                Some((s, v, path))
            })
            .collect())
    }

    fn find_snapshot(&self, snap: Uuid) -> Result<Option<(Uuid, PathBuf)>> {
        Ok(self
            .snapshot_files()?
            .into_iter()
            .find(|(s, _, _)| *s == snap)
            .map(|(_, v, p)| (v, p)))
    }

    /// Bytes our files may still grow by (virtual size not yet allocated).
    fn reserved_bytes(&self) -> Result<u64> {
        let mut reserved = 0u64;
        for (name, path) in self.entries()? {
            let ours = parse_uid(&name, "vol-", ".qcow2").is_some()
                || parse_uid(&name, ".vol-", ".qcow2.part").is_some()
                || parse_snapshot_name(&name).is_some();
            if !ours {
                continue;
            }
            let (Ok(h), Ok(md)) = (read_header(&path), fs::metadata(&path)) else {
                continue; // a part file mid-write: its space shows as used already
            };
            reserved = reserved.saturating_add(h.virtual_size.saturating_sub(md.blocks() * 512));
        }
        Ok(reserved)
    }

    fn check_space(&self, requested: u64) -> Result<()> {
        let free = self.capacity()?.free_bytes;
        if requested > free {
            return Err(VolumeError::InsufficientSpace { requested, free });
        }
        Ok(())
    }

    /// fsyncs `part`, renames it to `dest` and fsyncs the directory.
    fn commit(&self, part: &Path, dest: &Path) -> Result<()> {
        fs::File::open(part)
            .and_then(|f| f.sync_all())
            .map_err(self.io(part))?;
        fs::rename(part, dest).map_err(self.io(dest))?;
        fs::File::open(&self.dir)
            .and_then(|f| f.sync_all())
            .map_err(self.io(&self.dir))
    }

    /// Builds the volume's contents at `part`.
    fn build(&self, spec: &VolumeSpec, part: &Path) -> Result<()> {
        let size = spec.size_bytes.to_string();
        match &spec.source {
            VolumeSource::Empty => {
                qemu_img::run(
                    &[
                        "create".as_ref(),
                        "-q".as_ref(),
                        "-f".as_ref(),
                        "qcow2".as_ref(),
                        part.as_os_str(),
                        size.as_ref(),
                    ],
                    part,
                )?;
            }
            VolumeSource::Image { path, format } => {
                let image = fs::canonicalize(path).map_err(self.io(path))?;
                qemu_img::check_image(spec.uid, &image, format, spec.size_bytes)?;
                self.overlay(&image, format, part, &size)?;
            }
            VolumeSource::Snapshot { uid } => {
                let (_, snap) = self.find_snapshot(*uid)?.ok_or(VolumeError::NotFound {
                    kind: "snapshot",
                    uid: *uid,
                })?;
                let vs = qemu_img::check_snapshot(&snap)?;
                if vs > spec.size_bytes {
                    return Err(VolumeError::InvalidSpec {
                        uid: spec.uid,
                        reason: format!("smaller than snapshot {uid} ({vs} bytes)"),
                    });
                }
                self.overlay(&snap, "qcow2", part, &size)?;
            }
            VolumeSource::Volume { uid } => {
                let src = self.volume_path(*uid);
                let h = match read_header(&src) {
                    Ok(h) => h,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(VolumeError::NotFound {
                            kind: "volume",
                            uid: *uid,
                        });
                    }
                    Err(e) => return Err(self.io(&src)(e)),
                };
                if h.virtual_size > spec.size_bytes {
                    return Err(VolumeError::InvalidSpec {
                        uid: spec.uid,
                        reason: format!("smaller than volume {uid} ({} bytes)", h.virtual_size),
                    });
                }
                qemu_img::check_volume_file(&src)?;
                self.full_copy(&src, part)?;
                if h.virtual_size < spec.size_bytes {
                    resize(part, spec.size_bytes)?;
                }
            }
        }
        Ok(())
    }

    fn overlay(&self, base: &Path, base_fmt: &str, part: &Path, size: &str) -> Result<()> {
        qemu_img::run(
            &[
                "create".as_ref(),
                "-q".as_ref(),
                "-f".as_ref(),
                "qcow2".as_ref(),
                "-F".as_ref(),
                base_fmt.as_ref(),
                "-b".as_ref(),
                base.as_os_str(),
                part.as_os_str(),
                size.as_ref(),
            ],
            part,
        )?;
        Ok(())
    }

    /// A flattened qcow2 copy of `src` (takes the shared image lock: refused while a running
    /// domain writes it).
    fn full_copy(&self, src: &Path, dest: &Path) -> Result<()> {
        qemu_img::run(
            &[
                "convert".as_ref(),
                "-f".as_ref(),
                "qcow2".as_ref(),
                "-O".as_ref(),
                "qcow2".as_ref(),
                src.as_os_str(),
                dest.as_os_str(),
            ],
            src,
        )?;
        Ok(())
    }

    /// Ensures snapshot `snapshot_uid` of `volume_uid`: unless it exists, `copy(volume file,
    /// part file)` writes its data into `.snap-<snap>@<vol>.qcow2.part`, which is then
    /// committed (fsync + rename) to `snap-<snap>@<vol>.qcow2`.
    fn snapshot_build(
        &self,
        volume_uid: Uuid,
        snapshot_uid: Uuid,
        copy: &mut dyn FnMut(&Path, &Path) -> Result<()>,
    ) -> Result<EnsureOutcome> {
        let _g = self.guard();
        if let Some((v, _)) = self.find_snapshot(snapshot_uid)? {
            if v != volume_uid {
                return Err(VolumeError::InvalidSpec {
                    uid: snapshot_uid,
                    reason: format!("snapshot exists of volume {v}, not {volume_uid}"),
                });
            }
            return Ok(EnsureOutcome::Exists);
        }
        let src = self.volume_path(volume_uid);
        let h = match read_header(&src) {
            Ok(h) => h,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(VolumeError::NotFound {
                    kind: "volume",
                    uid: volume_uid,
                });
            }
            Err(e) => return Err(self.io(&src)(e)),
        };
        let dest = self.snapshot_path(snapshot_uid, volume_uid);
        let part = self
            .dir
            .join(format!(".snap-{snapshot_uid}@{volume_uid}.qcow2.part"));
        let outcome = if remove_if_exists(&part)? {
            EnsureOutcome::Repaired
        } else {
            EnsureOutcome::Created
        };
        self.check_space(h.virtual_size)?;
        let built = copy(&src, &part).and_then(|()| self.commit(&part, &dest));
        if let Err(e) = built {
            let _ = fs::remove_file(&part);
            return Err(e);
        }
        Ok(outcome)
    }

    /// Times the raw backend command this backend's create is measured against
    /// (`qemu-img create -f qcow2` of a scratch file, which is then removed).
    ///
    /// # Errors
    /// `qemu-img` failed.
    #[cfg(any(test, feature = "testing"))]
    pub fn raw_create_timed(&self, size_bytes: u64) -> Result<Duration> {
        let path = self.dir.join(format!(".bench-{}.qcow2", Uuid::new_v4()));
        let size = size_bytes.to_string();
        let t = Instant::now();
        let r = qemu_img::run(
            &[
                "create".as_ref(),
                "-q".as_ref(),
                "-f".as_ref(),
                "qcow2".as_ref(),
                path.as_os_str(),
                size.as_ref(),
            ],
            &path,
        );
        let took = t.elapsed();
        let _ = fs::remove_file(&path);
        r.map(|_| took)
    }
}

fn resize(path: &Path, size: u64) -> Result<()> {
    let size = size.to_string();
    qemu_img::run(
        &[
            "resize".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            path.as_os_str(),
            size.as_ref(),
        ],
        path,
    )?;
    Ok(())
}

/// `snap-<snapshot uid>@<volume uid>.qcow2` -> the two uids.
fn parse_snapshot_name(name: &str) -> Option<(Uuid, Uuid)> {
    let rest = name.strip_prefix("snap-")?.strip_suffix(".qcow2")?;
    let (s, v) = rest.split_once('@')?;
    let s = parse_uid(s, "", "")?;
    let v = parse_uid(v, "", "")?;
    Some((s, v))
}

fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(VolumeError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl VolumeBackend for FileBackend {
    fn capacity(&self) -> Result<PoolInfo> {
        let st = rustix::fs::statvfs(&self.dir)
            .map_err(|e| self.io(&self.dir)(std::io::Error::from(e)))?;
        let total = st.f_blocks.saturating_mul(st.f_frsize);
        let avail = st.f_bavail.saturating_mul(st.f_frsize);
        Ok(PoolInfo {
            name: self.dir.display().to_string(),
            kind: PoolKind::File,
            total_bytes: total,
            free_bytes: avail.saturating_sub(self.reserved_bytes()?),
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            snapshots: true,
            data_path: true,
            cow_clones: true,
            detail: "qcow2 files; image and snapshot clones are copy-on-write overlays".into(),
        }
    }

    #[tracing::instrument(level = "info", skip_all, fields(uid = %spec.uid))]
    fn volume_ensure(&self, spec: &VolumeSpec) -> Result<EnsureOutcome> {
        let _g = self.guard();
        let dest = self.volume_path(spec.uid);
        let part = self.volume_part_path(spec.uid);
        if dest.exists() {
            remove_if_exists(&part)?;
            return Ok(EnsureOutcome::Exists);
        }
        let outcome = if remove_if_exists(&part)? {
            tracing::warn!(part = %part.display(), "removed a half-created volume; building it again");
            EnsureOutcome::Repaired
        } else {
            EnsureOutcome::Created
        };
        self.check_space(spec.size_bytes)?;
        let built = self
            .build(spec, &part)
            .and_then(|()| self.commit(&part, &dest));
        if let Err(e) = built {
            let _ = fs::remove_file(&part);
            return Err(e);
        }
        Ok(outcome)
    }

    fn volume_info(&self, uid: Uuid) -> Result<Option<VolumeInfo>> {
        let path = self.volume_path(uid);
        let h = match read_header(&path) {
            Ok(h) => h,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(&path)(e)),
        };
        Ok(Some(VolumeInfo {
            uid,
            size_bytes: h.virtual_size,
            path: Some(path),
            format: VolumeFormat::Qcow2,
            backing: h.backing,
        }))
    }

    #[tracing::instrument(level = "info", skip(self))]
    fn volume_extend(&self, uid: Uuid, new_size_bytes: u64) -> Result<()> {
        let _g = self.guard();
        let info = self.volume_info(uid)?.ok_or(VolumeError::NotFound {
            kind: "volume",
            uid,
        })?;
        if new_size_bytes < info.size_bytes {
            return Err(VolumeError::ShrinkRefused {
                uid,
                current: info.size_bytes,
                requested: new_size_bytes,
            });
        }
        if new_size_bytes == info.size_bytes {
            return Ok(());
        }
        self.check_space(new_size_bytes - info.size_bytes)?;
        resize(&self.volume_path(uid), new_size_bytes)
    }

    fn volume_verify(&self, uid: Uuid) -> Result<()> {
        let path = self.volume_path(uid);
        if !path.exists() {
            return Err(VolumeError::NotFound {
                kind: "volume",
                uid,
            });
        }
        qemu_img::check_volume_file(&path)
    }

    #[tracing::instrument(level = "info", skip(self))]
    fn volume_delete(&self, uid: Uuid) -> Result<bool> {
        let _g = self.guard();
        let snaps: Vec<Uuid> = self
            .snapshot_files()?
            .into_iter()
            .filter(|(_, v, _)| *v == uid)
            .map(|(s, _, _)| s)
            .collect();
        if !snaps.is_empty() {
            return Err(VolumeError::HasDependents {
                what: format!("volume {uid}"),
                dependents: snaps,
            });
        }
        let part = remove_if_exists(&self.volume_part_path(uid))?;
        Ok(remove_if_exists(&self.volume_path(uid))? || part)
    }

    fn volumes(&self) -> Result<Vec<Uuid>> {
        let mut uids: Vec<Uuid> = self
            .entries()?
            .iter()
            .filter_map(|(name, _)| {
                parse_uid(name, "vol-", ".qcow2")
                    .or_else(|| parse_uid(name, ".vol-", ".qcow2.part"))
            })
            .collect();
        uids.sort();
        uids.dedup();
        Ok(uids)
    }

    #[tracing::instrument(level = "info", skip(self))]
    fn snapshot_ensure(&self, volume_uid: Uuid, snapshot_uid: Uuid) -> Result<EnsureOutcome> {
        self.snapshot_build(volume_uid, snapshot_uid, &mut |src, part| {
            qemu_img::check_volume_file(src)?;
            self.full_copy(src, part)
        })
    }

    #[tracing::instrument(level = "info", skip(self, copy))]
    fn snapshot_ensure_copied(
        &self,
        volume_uid: Uuid,
        snapshot_uid: Uuid,
        copy: &mut super::SnapshotCopy<'_>,
    ) -> Result<EnsureOutcome> {
        self.snapshot_build(volume_uid, snapshot_uid, &mut |_, part| copy(part))
    }

    fn snapshot_info(&self, snapshot_uid: Uuid) -> Result<Option<SnapshotInfo>> {
        let Some((volume_uid, path)) = self.find_snapshot(snapshot_uid)? else {
            return Ok(None);
        };
        let h = read_header(&path).map_err(self.io(&path))?;
        Ok(Some(SnapshotInfo {
            uid: snapshot_uid,
            volume_uid,
            size_bytes: h.virtual_size,
        }))
    }

    #[tracing::instrument(level = "info", skip(self))]
    fn snapshot_delete(&self, snapshot_uid: Uuid) -> Result<bool> {
        let _g = self.guard();
        let Some((_, path)) = self.find_snapshot(snapshot_uid)? else {
            return Ok(false);
        };
        let mut dependents = Vec::new();
        for uid in self.volumes()? {
            if let Ok(h) = read_header(&self.volume_path(uid))
                && h.backing.as_deref() == Some(path.as_path())
            {
                dependents.push(uid);
            }
        }
        if !dependents.is_empty() {
            return Err(VolumeError::HasDependents {
                what: format!("snapshot {snapshot_uid}"),
                dependents,
            });
        }
        remove_if_exists(&path)
    }

    fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let mut out = Vec::new();
        for (uid, volume_uid, path) in self.snapshot_files()? {
            let h = read_header(&path).map_err(self.io(&path))?;
            out.push(SnapshotInfo {
                uid,
                volume_uid,
                size_bytes: h.virtual_size,
            });
        }
        out.sort_by_key(|s| s.uid);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_round_trip() {
        let (s, v) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            parse_snapshot_name(&format!("snap-{s}@{v}.qcow2")),
            Some((s, v))
        );
        assert_eq!(parse_snapshot_name(&format!("snap-{s}.qcow2")), None);
        assert_eq!(parse_snapshot_name(&format!("vol-{s}.qcow2")), None);
    }

    #[test]
    fn header_is_read_without_qemu_img() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        fs::write(&p, b"not qcow2 at all, but long enough for a header").unwrap();
        assert_eq!(
            read_header(&p).unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );
        // A minimal v3 header: magic, version 3, backing at 64 (4 bytes), size 1 GiB.
        let mut h = vec![0u8; 72];
        h[0..4].copy_from_slice(&QCOW2_MAGIC.to_be_bytes());
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[8..16].copy_from_slice(&64u64.to_be_bytes());
        h[16..20].copy_from_slice(&4u32.to_be_bytes());
        h[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
        h[64..68].copy_from_slice(b"/b.q");
        fs::write(&p, &h).unwrap();
        assert_eq!(
            read_header(&p).unwrap(),
            Header {
                virtual_size: 1 << 30,
                backing: Some(PathBuf::from("/b.q"))
            }
        );
    }
}
