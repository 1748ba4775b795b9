//! The [`VolumeBackend`] conformance suite: every implementation (the fake, the file backend,
//! LVM on a loop-backed volume group) must pass [`run`]. Where the backend has a data path
//! ([`Capabilities::data_path`](super::Capabilities)) the suite also checks the bytes: it
//! writes recognizable first sectors into images and volumes and reads them back through
//! [`VolumeInfo::path`] (`qemu-io` / `qemu-img dd` for qcow2, plain reads for block devices).
//! Snapshot cases run where [`Capabilities::snapshots`](super::Capabilities) says they work,
//! and otherwise assert [`VolumeError::Unsupported`] leaving nothing behind. Image sources
//! that lie about their format or name host files (a qcow2 backed by a host file declared
//! `raw` or `qcow2`, an external data file) must be [`VolumeError::SourceRefused`] with
//! nothing made, and [`VolumeBackend::volume_verify`] must pass on the volumes the suite made.
//!
//! The pool must be exclusive to the suite (it asserts [`VolumeBackend::volumes`] lists
//! exactly the volumes it made); put foreign LVs/files in it beforehand to prove they are
//! never listed.
//!
//! Compiled only for tests and with the `testing` feature (which this crate's own
//! dev-dependency and `cirrus-bench` enable): it is generic over this crate's trait and run
//! by this crate's integration tests against every implementation, so it stays next to the
//! trait, but a production build does not contain it.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use uuid::Uuid;

use super::{
    EnsureOutcome, PoolKind, VolumeBackend, VolumeError, VolumeFormat, VolumeInfo, VolumeSource,
    VolumeSpec,
};

const MIB: u64 = 1 << 20;
/// The size of most volumes in the suite (a multiple of LVM's default 4 MiB extent).
pub const SIZE: u64 = 16 * MIB;
const SECTOR: usize = 512;

/// What the suite needs from the test that runs it.
pub struct SuiteConfig<'a> {
    /// A scratch directory for the test images.
    pub scratch: &'a Path,
    /// Simulates a crash in the middle of creating `spec`: leaves a half-created volume the
    /// way this backend would (a `.part` file, an LV without its final tag, ...).
    pub make_partial: &'a dyn Fn(&VolumeSpec),
}

/// Deletes what the suite made, even when an assertion fails.
struct Cleanup<'a> {
    backend: &'a dyn VolumeBackend,
    volumes: Vec<Uuid>,
    snapshots: Vec<Uuid>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for s in &self.snapshots {
            let _ = self.backend.snapshot_delete(*s);
        }
        for v in self.volumes.iter().rev() {
            let _ = self.backend.volume_delete(*v);
        }
        for s in &self.snapshots {
            let _ = self.backend.snapshot_delete(*s);
        }
    }
}

fn step(what: &str) {
    eprintln!("volume conformance: {what}");
}

fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Writes a sector of `pattern` bytes at offset 0 of the volume's data.
///
/// # Panics
/// When the write fails.
pub fn write_first_sector(info: &VolumeInfo, pattern: u8) {
    let path = info.path.as_ref().expect("volume has a data path");
    match info.format {
        VolumeFormat::Raw => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            f.write_all(&[pattern; SECTOR]).unwrap();
            f.sync_all().unwrap();
        }
        VolumeFormat::Qcow2 => {
            run_ok(
                Command::new("qemu-io")
                    .args(["-f", "qcow2", "-c"])
                    .arg(format!("write -P {pattern:#04x} 0 {SECTOR}"))
                    .arg(path),
            );
        }
    }
}

/// Reads the first sector of the volume's data.
///
/// # Panics
/// When the read fails.
pub fn read_first_sector(info: &VolumeInfo) -> Vec<u8> {
    let path = info.path.as_ref().expect("volume has a data path");
    match info.format {
        VolumeFormat::Raw => {
            let mut buf = vec![0u8; SECTOR];
            std::fs::File::open(path)
                .and_then(|mut f| f.read_exact(&mut buf))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            buf
        }
        VolumeFormat::Qcow2 => {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("sector.raw");
            run_ok(
                Command::new("qemu-img")
                    .args(["dd", "-f", "qcow2", "-O", "raw", "bs=512", "count=1"])
                    .arg(format!("if={}", path.display()))
                    .arg(format!("of={}", out.display())),
            );
            let mut b = std::fs::read(&out).unwrap();
            b.truncate(SECTOR);
            b
        }
    }
}

fn assert_pattern(backend: &dyn VolumeBackend, uid: Uuid, pattern: u8, what: &str) {
    if !backend.capabilities().data_path {
        return;
    }
    let info = backend.volume_info(uid).unwrap().expect(what);
    let got = read_first_sector(&info);
    assert!(
        got.iter().all(|b| *b == pattern),
        "{what}: first sector of {:?} is {:02x?}..., want {pattern:#04x}",
        info.path,
        &got[..16]
    );
}

/// Makes an 8 MiB image of `format` in `dir` whose first sector is `pattern`.
fn make_image(dir: &Path, format: &str, pattern: u8) -> PathBuf {
    let raw = dir.join(format!("image-{pattern:02x}.raw"));
    let f = std::fs::File::create(&raw).unwrap();
    f.set_len(8 * MIB).unwrap();
    drop(f);
    let mut f = std::fs::OpenOptions::new().write(true).open(&raw).unwrap();
    f.write_all(&[pattern; SECTOR]).unwrap();
    drop(f);
    if format == "raw" {
        return raw;
    }
    let out = dir.join(format!("image-{pattern:02x}.{format}"));
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", format])
            .arg(&raw)
            .arg(&out),
    );
    out
}

/// A qcow2 image (made with `qemu-img`) whose backing file is `secret`, a host file.
fn qcow2_backed_by(dir: &Path, secret: &Path) -> PathBuf {
    let out = dir.join("backed-by-secret.qcow2");
    run_ok(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(secret)
            .arg(&out)
            .arg(SIZE.to_string()),
    );
    out
}

/// Images that lie about their format or name host files: every declaration of them is
/// [`VolumeError::SourceRefused`] (permanent) and nothing is made.
fn refused_sources(backend: &dyn VolumeBackend, scratch: &Path, made: &mut Cleanup<'_>) {
    let before = backend.volumes().unwrap();
    let secret = scratch.join("host-secret");
    std::fs::write(&secret, [b'S'; SECTOR]).unwrap();
    let backed = qcow2_backed_by(scratch, &secret);
    let with_data_file = scratch.join("data-file.qcow2");
    run_ok(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-o"])
            .arg(format!(
                "data_file={}",
                scratch.join("data-file.raw").display()
            ))
            .arg(&with_data_file)
            .arg(SIZE.to_string()),
    );
    let plain_qcow2 = make_image(scratch, "qcow2", 0xd1);
    for (path, format) in [
        (&backed, "raw"),
        (&backed, "qcow2"),
        (&backed, "vmdk"),
        (&with_data_file, "qcow2"),
        (&with_data_file, "raw"),
        (&plain_qcow2, "raw"),
    ] {
        let uid = Uuid::new_v4();
        made.volumes.push(uid);
        let source = VolumeSource::Image {
            path: path.clone(),
            format: format.into(),
        };
        let e = backend
            .volume_ensure(&spec(uid, SIZE, source))
            .expect_err("a lying image source must be refused");
        assert!(
            matches!(e, VolumeError::SourceRefused { .. }) && e.is_permanent(),
            "{} declared {format}: {e:?}",
            path.display()
        );
        assert_eq!(backend.volume_info(uid).unwrap(), None, "nothing is made");
    }
    assert_eq!(backend.volumes().unwrap(), before, "nothing is left behind");
}

fn spec(uid: Uuid, size_bytes: u64, source: VolumeSource) -> VolumeSpec {
    VolumeSpec {
        uid,
        size_bytes,
        source,
    }
}

/// Runs the whole suite against `backend`.
///
/// # Panics
/// On the first behavior that breaks the [`VolumeBackend`] contract.
pub fn run(backend: &dyn VolumeBackend, cfg: &SuiteConfig<'_>) {
    let caps = backend.capabilities();
    eprintln!("volume conformance: capabilities {caps:?}");
    let mut made = Cleanup {
        backend,
        volumes: Vec::new(),
        snapshots: Vec::new(),
    };
    let empty = |uid, size| spec(uid, size, VolumeSource::Empty);

    step("capacity and an exclusive pool");
    let pool = backend.capacity().expect("capacity");
    assert!(
        pool.total_bytes > 0 && pool.free_bytes <= pool.total_bytes,
        "{pool:?}"
    );
    assert_eq!(
        backend.volumes().unwrap(),
        Vec::<Uuid>::new(),
        "foreign objects must not be listed"
    );
    assert!(backend.snapshots().unwrap().is_empty());

    step("absent objects: info None, delete false, extend NotFound");
    let absent = Uuid::new_v4();
    assert_eq!(backend.volume_info(absent).unwrap(), None);
    assert!(!backend.volume_delete(absent).unwrap());
    assert!(matches!(
        backend.volume_extend(absent, SIZE),
        Err(VolumeError::NotFound { kind: "volume", .. })
    ));
    assert_eq!(backend.snapshot_info(absent).unwrap(), None);
    assert!(!backend.snapshot_delete(absent).unwrap());
    assert!(matches!(
        backend.volume_ensure(&spec(
            Uuid::new_v4(),
            SIZE,
            VolumeSource::Volume { uid: absent }
        )),
        Err(VolumeError::NotFound { kind: "volume", .. })
    ));

    step("ensure: created once, exists after, one volume under concurrency");
    let a = Uuid::new_v4();
    made.volumes.push(a);
    assert_eq!(
        backend.volume_ensure(&empty(a, SIZE)).unwrap(),
        EnsureOutcome::Created
    );
    assert_eq!(
        backend.volume_ensure(&empty(a, SIZE)).unwrap(),
        EnsureOutcome::Exists
    );
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                assert_eq!(
                    backend
                        .volume_ensure(&empty(a, SIZE))
                        .expect("concurrent ensure"),
                    EnsureOutcome::Exists
                )
            });
        }
    });
    assert_eq!(backend.volumes().unwrap(), vec![a]);
    let info = backend.volume_info(a).unwrap().expect("a exists");
    assert_eq!(info.uid, a);
    assert_eq!(info.size_bytes, SIZE);
    assert!(info.backing.is_none(), "{info:?}");
    if caps.data_path {
        let path = info.path.clone().expect("data path");
        assert!(path.exists(), "{}", path.display());
        // What a domain attaches: a qcow2 file or a raw block device.
        match info.format {
            VolumeFormat::Qcow2 => assert!(path.is_file()),
            VolumeFormat::Raw => {
                use std::os::unix::fs::FileTypeExt as _;
                assert!(
                    std::fs::metadata(&path)
                        .unwrap()
                        .file_type()
                        .is_block_device()
                );
            }
        }
        write_first_sector(&info, 0x11);
        assert_pattern(backend, a, 0x11, "written data");
    }

    step("extend grows (same size is a no-op), shrinking is refused");
    backend.volume_extend(a, 2 * SIZE).expect("extend");
    backend
        .volume_extend(a, 2 * SIZE)
        .expect("extend to the same size");
    let e = backend.volume_extend(a, SIZE).unwrap_err();
    assert!(
        matches!(e, VolumeError::ShrinkRefused { current, requested, .. } if current == 2 * SIZE && requested == SIZE),
        "{e:?}"
    );
    assert!(e.is_permanent());
    let info = backend.volume_info(a).unwrap().unwrap();
    assert_eq!(info.size_bytes, 2 * SIZE);
    if caps.data_path {
        assert!(
            info.path.is_some(),
            "an extended volume keeps its data path"
        );
        assert_pattern(backend, a, 0x11, "data after extend");
    }

    step("insufficient space is typed and leaves nothing behind");
    let free = backend.capacity().unwrap().free_bytes;
    let too_big = (free / (4 * MIB) + 16) * 4 * MIB;
    let b = Uuid::new_v4();
    let e = backend.volume_ensure(&empty(b, too_big)).unwrap_err();
    assert!(
        matches!(e, VolumeError::InsufficientSpace { requested, .. } if requested >= free),
        "{e:?}"
    );
    assert_eq!(backend.volume_info(b).unwrap(), None);
    assert_eq!(backend.volumes().unwrap(), vec![a]);
    let e = backend.volume_extend(a, 2 * SIZE + too_big).unwrap_err();
    assert!(matches!(e, VolumeError::InsufficientSpace { .. }), "{e:?}");
    assert_eq!(
        backend.volume_info(a).unwrap().unwrap().size_bytes,
        2 * SIZE
    );

    step("volumes from raw and qcow2 images hold the image's data");
    let raw_image = make_image(cfg.scratch, "raw", 0xc1);
    let qcow2_image = make_image(cfg.scratch, "qcow2", 0xc2);
    let from_raw = Uuid::new_v4();
    let from_qcow2 = Uuid::new_v4();
    made.volumes.extend([from_raw, from_qcow2]);
    let raw_src = VolumeSource::Image {
        path: raw_image.clone(),
        format: "raw".into(),
    };
    assert_eq!(
        backend
            .volume_ensure(&spec(from_raw, SIZE, raw_src.clone()))
            .unwrap(),
        EnsureOutcome::Created
    );
    backend
        .volume_ensure(&spec(
            from_qcow2,
            SIZE,
            VolumeSource::Image {
                path: qcow2_image,
                format: "qcow2".into(),
            },
        ))
        .unwrap();
    assert_eq!(
        backend.volume_info(from_raw).unwrap().unwrap().size_bytes,
        SIZE
    );
    assert_pattern(backend, from_raw, 0xc1, "volume from a raw image");
    assert_pattern(backend, from_qcow2, 0xc2, "volume from a qcow2 image");
    let small = Uuid::new_v4();
    let e = backend
        .volume_ensure(&spec(small, 4 * MIB, raw_src.clone()))
        .unwrap_err();
    assert!(matches!(e, VolumeError::InvalidSpec { .. }), "{e:?}");
    assert_eq!(backend.volume_info(small).unwrap(), None);
    let e = backend
        .volume_ensure(&spec(
            small,
            SIZE,
            VolumeSource::Image {
                path: raw_image.clone(),
                format: "iso".into(),
            },
        ))
        .unwrap_err();
    assert!(matches!(e, VolumeError::InvalidSpec { .. }), "{e:?}");

    step("an image that is not what it is declared, or reads another file, is refused");
    refused_sources(backend, cfg.scratch, &mut made);
    for v in [a, from_raw, from_qcow2] {
        backend
            .volume_verify(v)
            .unwrap_or_else(|e| panic!("volume_verify {v}: {e}"));
    }

    step("a volume cloned from a volume holds its data");
    let copy = Uuid::new_v4();
    made.volumes.push(copy);
    backend
        .volume_ensure(&spec(
            copy,
            2 * SIZE,
            VolumeSource::Volume { uid: from_raw },
        ))
        .unwrap();
    assert_eq!(
        backend.volume_info(copy).unwrap().unwrap().size_bytes,
        2 * SIZE
    );
    assert_pattern(backend, copy, 0xc1, "clone of a volume");

    let snap = Uuid::new_v4();
    if caps.snapshots {
        step("snapshot, write on, clone from the snapshot: the clone has the snapshot-time data");
        made.snapshots.push(snap);
        if caps.data_path {
            write_first_sector(&backend.volume_info(a).unwrap().unwrap(), 0xa1);
        }
        assert_eq!(
            backend.snapshot_ensure(a, snap).unwrap(),
            EnsureOutcome::Created
        );
        assert_eq!(
            backend.snapshot_ensure(a, snap).unwrap(),
            EnsureOutcome::Exists
        );
        let si = backend
            .snapshot_info(snap)
            .unwrap()
            .expect("snapshot exists");
        assert_eq!((si.volume_uid, si.size_bytes), (a, 2 * SIZE));
        assert_eq!(backend.snapshots().unwrap(), vec![si]);
        if caps.data_path {
            write_first_sector(&backend.volume_info(a).unwrap().unwrap(), 0xa2);
        }
        let clone = Uuid::new_v4();
        made.volumes.push(clone);
        let e = backend
            .volume_ensure(&spec(clone, SIZE, VolumeSource::Snapshot { uid: snap }))
            .unwrap_err();
        assert!(
            matches!(e, VolumeError::InvalidSpec { .. }),
            "smaller than the snapshot: {e:?}"
        );
        backend
            .volume_ensure(&spec(clone, 2 * SIZE, VolumeSource::Snapshot { uid: snap }))
            .unwrap();
        assert_pattern(backend, clone, 0xa1, "clone of the snapshot");
        assert_pattern(backend, a, 0xa2, "the volume after the snapshot");
        let e = backend.volume_delete(a).unwrap_err();
        assert!(
            matches!(&e, VolumeError::HasDependents { dependents, .. } if dependents == &vec![snap]),
            "{e:?}"
        );
        if caps.cow_clones {
            let e = backend.snapshot_delete(snap).unwrap_err();
            assert!(
                matches!(&e, VolumeError::HasDependents { dependents, .. } if dependents == &vec![clone]),
                "{e:?}"
            );
        }
        assert!(backend.volume_delete(clone).unwrap());
        assert!(backend.snapshot_delete(snap).unwrap());
        assert!(!backend.snapshot_delete(snap).unwrap());
        assert_eq!(backend.snapshot_info(snap).unwrap(), None);
    } else {
        step("snapshots are Unsupported and leave nothing behind");
        let e = backend.snapshot_ensure(a, snap).unwrap_err();
        assert!(matches!(e, VolumeError::Unsupported { .. }), "{e:?}");
        assert!(e.is_permanent());
        let c = Uuid::new_v4();
        let e = backend
            .volume_ensure(&spec(c, SIZE, VolumeSource::Snapshot { uid: snap }))
            .unwrap_err();
        assert!(matches!(e, VolumeError::Unsupported { .. }), "{e:?}");
        assert_eq!(backend.volume_info(c).unwrap(), None);
        assert!(backend.snapshots().unwrap().is_empty());
    }

    step("a crash mid-create is repaired by the next ensure");
    let p = Uuid::new_v4();
    made.volumes.push(p);
    let p_spec = spec(p, SIZE, raw_src);
    (cfg.make_partial)(&p_spec);
    assert_eq!(
        backend.volume_info(p).unwrap(),
        None,
        "a half-created volume is not a volume"
    );
    assert!(
        backend.volumes().unwrap().contains(&p),
        "half-created volumes are listed for sweeps"
    );
    assert_eq!(
        backend.volume_ensure(&p_spec).unwrap(),
        EnsureOutcome::Repaired
    );
    assert_eq!(
        backend.volume_ensure(&p_spec).unwrap(),
        EnsureOutcome::Exists
    );
    assert_pattern(backend, p, 0xc1, "repaired volume");

    step("volumes() lists exactly ours");
    let want: BTreeSet<Uuid> = [a, from_raw, from_qcow2, copy, p].into_iter().collect();
    let got: BTreeSet<Uuid> = backend.volumes().unwrap().into_iter().collect();
    assert_eq!(got, want);

    step("delete: true then false; nothing left");
    for v in &want {
        assert!(backend.volume_delete(*v).unwrap(), "delete {v}");
        assert!(!backend.volume_delete(*v).unwrap(), "delete {v} again");
        assert_eq!(backend.volume_info(*v).unwrap(), None);
    }
    assert!(backend.volumes().unwrap().is_empty());
    let after = backend.capacity().unwrap();
    if matches!(after.kind, PoolKind::Lvm | PoolKind::Fake) {
        assert_eq!(after.free_bytes, pool.free_bytes, "all space returned");
    }
    step("done");
}
