//! An in-memory [`VolumeBackend`] for unit tests and simulated ("hollow") nodes.
//!
//! It keeps volumes and snapshots in maps and accounts capacity like the real backends (thick:
//! volumes and snapshots use their full size), and returns the same errors they do:
//! [`VolumeError::InsufficientSpace`] leaving nothing behind, [`VolumeError::ShrinkRefused`],
//! [`VolumeError::HasDependents`] (snapshots of a volume; volumes cloned from a snapshot, as
//! the file backend's copy-on-write overlays), [`VolumeError::Unsupported`] for snapshots when
//! built [`FakeVolumeBackend::without_snapshots`] (like LVM without device-mapper). It has no
//! data path (its paths are not real files): [`Capabilities::data_path`] is false. Image
//! sources are real files and are inspected like the real backends do
//! ([`crate::image_inspect`], [`VolumeError::SourceRefused`]).
//!
//! Faults can be injected per operation ([`FakeVolumeBackend::fail_next`]), and a crash in
//! the middle of a creation simulated with [`FakeVolumeBackend::insert_partial`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use uuid::Uuid;

use super::{
    Capabilities, EnsureOutcome, PoolInfo, PoolKind, Result, SnapshotInfo, VolumeBackend,
    VolumeError, VolumeFormat, VolumeInfo, VolumeOp, VolumeSource, VolumeSpec, qemu_img,
};

#[derive(Debug, Clone)]
struct FakeVolume {
    size: u64,
    complete: bool,
    backing: Option<PathBuf>,
    /// The snapshot it reads through (copy-on-write), if any.
    from_snapshot: Option<Uuid>,
}

#[derive(Debug, Default)]
struct State {
    volumes: BTreeMap<Uuid, FakeVolume>,
    snapshots: BTreeMap<Uuid, SnapshotInfo>,
    faults: HashMap<VolumeOp, u32>,
    calls: HashMap<VolumeOp, u64>,
}

impl State {
    fn used(&self) -> u64 {
        self.volumes.values().map(|v| v.size).sum::<u64>()
            + self.snapshots.values().map(|s| s.size_bytes).sum::<u64>()
    }
}

/// The in-memory fake volume backend. Cheap; share it as `Arc<dyn VolumeBackend>`.
#[derive(Debug)]
pub struct FakeVolumeBackend {
    total: u64,
    snapshots: bool,
    state: Mutex<State>,
}

impl FakeVolumeBackend {
    /// A fake pool of `total_bytes` that supports snapshots.
    pub fn new(total_bytes: u64) -> Self {
        Self {
            total: total_bytes,
            snapshots: true,
            state: Mutex::new(State::default()),
        }
    }

    /// Without snapshot support (as LVM on a host without device-mapper).
    pub fn without_snapshots(mut self) -> Self {
        self.snapshots = false;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the next `n` calls of `op` fail with [`VolumeError::Command`].
    pub fn fail_next(&self, op: VolumeOp, n: u32) {
        self.lock().faults.insert(op, n);
    }

    /// How many times `op` was called (including failed calls).
    pub fn calls(&self, op: VolumeOp) -> u64 {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// Simulates a crash in the middle of creating volume `uid`: a half-created volume that
    /// [`VolumeBackend::volume_info`] does not show and the next ensure must redo.
    pub fn insert_partial(&self, uid: Uuid, size_bytes: u64) {
        self.lock().volumes.insert(
            uid,
            FakeVolume {
                size: size_bytes,
                complete: false,
                backing: None,
                from_snapshot: None,
            },
        );
    }

    /// Counts the call and fires an injected fault.
    fn enter(&self, op: VolumeOp) -> Result<std::sync::MutexGuard<'_, State>> {
        let mut st = self.lock();
        *st.calls.entry(op).or_default() += 1;
        if let Some(n) = st.faults.get_mut(&op)
            && *n > 0
        {
            *n -= 1;
            return Err(VolumeError::Command {
                cmd: format!("fake {op}"),
                stderr: "injected fault".into(),
            });
        }
        Ok(st)
    }

    fn no_snapshots(&self, what: &str) -> VolumeError {
        VolumeError::Unsupported {
            what: what.into(),
            why: "this fake pool has no snapshot support".into(),
        }
    }
}

fn fake_path(uid: Uuid) -> PathBuf {
    PathBuf::from(format!("/fake-volumes/vol-{uid}"))
}

fn fake_snapshot_path(uid: Uuid) -> PathBuf {
    PathBuf::from(format!("/fake-volumes/snap-{uid}"))
}

impl VolumeBackend for FakeVolumeBackend {
    fn capacity(&self) -> Result<PoolInfo> {
        let st = self.enter(VolumeOp::Capacity)?;
        Ok(PoolInfo {
            name: "fake".into(),
            kind: PoolKind::Fake,
            total_bytes: self.total,
            free_bytes: self.total.saturating_sub(st.used()),
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            snapshots: self.snapshots,
            data_path: false,
            cow_clones: true,
            detail: "in-memory fake".into(),
        }
    }

    fn volume_ensure(&self, spec: &VolumeSpec) -> Result<EnsureOutcome> {
        let mut st = self.enter(VolumeOp::VolumeEnsure)?;
        let mut outcome = EnsureOutcome::Created;
        match st.volumes.get(&spec.uid) {
            Some(v) if v.complete => return Ok(EnsureOutcome::Exists),
            Some(_) => {
                st.volumes.remove(&spec.uid);
                outcome = EnsureOutcome::Repaired;
            }
            None => {}
        }
        let (backing, from_snapshot) =
            match &spec.source {
                VolumeSource::Empty => (None, None),
                VolumeSource::Image { path, format } => {
                    // The image is a real file: inspected exactly as the real backends do.
                    qemu_img::check_image(spec.uid, path, format, spec.size_bytes)?;
                    (Some(path.clone()), None)
                }
                VolumeSource::Snapshot { uid } => {
                    if !self.snapshots {
                        return Err(self.no_snapshots("a volume from a snapshot"));
                    }
                    let s = st.snapshots.get(uid).ok_or(VolumeError::NotFound {
                        kind: "snapshot",
                        uid: *uid,
                    })?;
                    if s.size_bytes > spec.size_bytes {
                        return Err(VolumeError::InvalidSpec {
                            uid: spec.uid,
                            reason: format!("smaller than snapshot {uid}"),
                        });
                    }
                    (Some(fake_snapshot_path(*uid)), Some(*uid))
                }
                VolumeSource::Volume { uid } => {
                    let v = st.volumes.get(uid).filter(|v| v.complete).ok_or(
                        VolumeError::NotFound {
                            kind: "volume",
                            uid: *uid,
                        },
                    )?;
                    if v.size > spec.size_bytes {
                        return Err(VolumeError::InvalidSpec {
                            uid: spec.uid,
                            reason: format!("smaller than volume {uid}"),
                        });
                    }
                    (None, None)
                }
            };
        let free = self.total.saturating_sub(st.used());
        if spec.size_bytes > free {
            return Err(VolumeError::InsufficientSpace {
                requested: spec.size_bytes,
                free,
            });
        }
        st.volumes.insert(
            spec.uid,
            FakeVolume {
                size: spec.size_bytes,
                complete: true,
                backing,
                from_snapshot,
            },
        );
        Ok(outcome)
    }

    /// Fake volumes are not files: nothing to check.
    fn volume_verify(&self, _uid: Uuid) -> Result<()> {
        Ok(())
    }

    fn volume_info(&self, uid: Uuid) -> Result<Option<VolumeInfo>> {
        let st = self.enter(VolumeOp::VolumeInfo)?;
        Ok(st
            .volumes
            .get(&uid)
            .filter(|v| v.complete)
            .map(|v| VolumeInfo {
                uid,
                size_bytes: v.size,
                path: Some(fake_path(uid)),
                format: VolumeFormat::Qcow2,
                backing: v.backing.clone(),
            }))
    }

    fn volume_extend(&self, uid: Uuid, new_size_bytes: u64) -> Result<()> {
        let mut st = self.enter(VolumeOp::VolumeExtend)?;
        let free = self.total.saturating_sub(st.used());
        let v = st
            .volumes
            .get_mut(&uid)
            .filter(|v| v.complete)
            .ok_or(VolumeError::NotFound {
                kind: "volume",
                uid,
            })?;
        if new_size_bytes < v.size {
            return Err(VolumeError::ShrinkRefused {
                uid,
                current: v.size,
                requested: new_size_bytes,
            });
        }
        let delta = new_size_bytes - v.size;
        if delta > free {
            return Err(VolumeError::InsufficientSpace {
                requested: delta,
                free,
            });
        }
        v.size = new_size_bytes;
        Ok(())
    }

    fn volume_delete(&self, uid: Uuid) -> Result<bool> {
        let mut st = self.enter(VolumeOp::VolumeDelete)?;
        let snaps: Vec<Uuid> = st
            .snapshots
            .values()
            .filter(|s| s.volume_uid == uid)
            .map(|s| s.uid)
            .collect();
        if !snaps.is_empty() {
            return Err(VolumeError::HasDependents {
                what: format!("volume {uid}"),
                dependents: snaps,
            });
        }
        Ok(st.volumes.remove(&uid).is_some())
    }

    fn volumes(&self) -> Result<Vec<Uuid>> {
        let st = self.enter(VolumeOp::Volumes)?;
        Ok(st.volumes.keys().copied().collect())
    }

    fn snapshot_ensure(&self, volume_uid: Uuid, snapshot_uid: Uuid) -> Result<EnsureOutcome> {
        let mut st = self.enter(VolumeOp::SnapshotEnsure)?;
        if !self.snapshots {
            return Err(self.no_snapshots("snapshot"));
        }
        if let Some(s) = st.snapshots.get(&snapshot_uid) {
            if s.volume_uid != volume_uid {
                return Err(VolumeError::InvalidSpec {
                    uid: snapshot_uid,
                    reason: format!("snapshot exists of volume {}", s.volume_uid),
                });
            }
            return Ok(EnsureOutcome::Exists);
        }
        let size = st
            .volumes
            .get(&volume_uid)
            .filter(|v| v.complete)
            .ok_or(VolumeError::NotFound {
                kind: "volume",
                uid: volume_uid,
            })?
            .size;
        let free = self.total.saturating_sub(st.used());
        if size > free {
            return Err(VolumeError::InsufficientSpace {
                requested: size,
                free,
            });
        }
        st.snapshots.insert(
            snapshot_uid,
            SnapshotInfo {
                uid: snapshot_uid,
                volume_uid,
                size_bytes: size,
            },
        );
        Ok(EnsureOutcome::Created)
    }

    fn snapshot_info(&self, snapshot_uid: Uuid) -> Result<Option<SnapshotInfo>> {
        let st = self.enter(VolumeOp::SnapshotInfo)?;
        Ok(st.snapshots.get(&snapshot_uid).cloned())
    }

    fn snapshot_delete(&self, snapshot_uid: Uuid) -> Result<bool> {
        let mut st = self.enter(VolumeOp::SnapshotDelete)?;
        if !st.snapshots.contains_key(&snapshot_uid) {
            return Ok(false);
        }
        let dependents: Vec<Uuid> = st
            .volumes
            .iter()
            .filter(|(_, v)| v.from_snapshot == Some(snapshot_uid))
            .map(|(u, _)| *u)
            .collect();
        if !dependents.is_empty() {
            return Err(VolumeError::HasDependents {
                what: format!("snapshot {snapshot_uid}"),
                dependents,
            });
        }
        st.snapshots.remove(&snapshot_uid);
        Ok(true)
    }

    fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let st = self.enter(VolumeOp::Snapshots)?;
        Ok(st.snapshots.values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fire_the_given_number_of_times_and_calls_are_counted() {
        let fake = FakeVolumeBackend::new(1 << 30);
        let spec = VolumeSpec {
            uid: Uuid::new_v4(),
            size_bytes: 1 << 20,
            source: VolumeSource::Empty,
        };
        fake.fail_next(VolumeOp::VolumeEnsure, 2);
        assert!(matches!(
            fake.volume_ensure(&spec),
            Err(VolumeError::Command { .. })
        ));
        assert!(fake.volume_ensure(&spec).is_err());
        assert_eq!(fake.volume_info(spec.uid).unwrap(), None, "nothing created");
        assert_eq!(fake.volume_ensure(&spec).unwrap(), EnsureOutcome::Created);
        assert_eq!(fake.calls(VolumeOp::VolumeEnsure), 3);
        assert_eq!(
            fake.capacity().unwrap().free_bytes,
            (1 << 30) - (1 << 20),
            "thick accounting"
        );
    }
}
