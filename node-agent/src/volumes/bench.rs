//! Create latency of a volume backend against its raw command, for `cirrus bench volumes`.
//!
//! "Volume create → available" is [`VolumeBackend::volume_ensure`] of an empty volume: when
//! it returns, the volume exists complete and the agent may report `available` (as Cinder
//! does: the data path is set up at attach time, its `initialize_connection`). The first
//! [`VolumeBackend::volume_info`] that yields an attachable path (LVM: activation or the loop
//! device) is measured separately, so the attach-time cost is visible too. The baseline is
//! the bare `lvcreate` / `qemu-img create` the backend runs, measured in the same run and
//! interleaved so both see the same machine load.
//!
//! Compiled only for tests and with the `testing` feature: `cirrus-bench` reports it and the
//! volume conformance tests print it, so it stays next to the backends, out of production
//! builds.

use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{Result, VolumeBackend, VolumeError, VolumeSource, VolumeSpec};

/// The measured latencies (medians over the samples).
#[derive(Debug, Clone, PartialEq)]
pub struct CreateLatency {
    /// How many volumes (and raw commands) were timed.
    pub samples: usize,
    /// Median of `volume_ensure` (create → available).
    pub volume_p50: Duration,
    /// Median of the first `volume_info` after it (the data path, set up for an attach).
    pub info_p50: Duration,
    /// Median of the raw backend command.
    pub raw_p50: Duration,
}

impl CreateLatency {
    /// `volume_p50 / raw_p50` (the target is ≤ 1.5).
    pub fn ratio(&self) -> f64 {
        self.volume_p50.as_secs_f64() / self.raw_p50.as_secs_f64().max(1e-9)
    }

    /// `(volume_p50 + info_p50) / raw_p50`: create until a domain could attach it.
    pub fn ratio_with_path(&self) -> f64 {
        (self.volume_p50 + self.info_p50).as_secs_f64() / self.raw_p50.as_secs_f64().max(1e-9)
    }
}

/// The median of `d` (the upper one for an even count); zero when empty.
pub fn p50(d: &mut [Duration]) -> Duration {
    d.sort();
    d.get(d.len() / 2).copied().unwrap_or_default()
}

/// Times `samples` volume creations of `size_bytes` (each deleted, untimed, right after)
/// interleaved with `samples` calls of `raw` (which times one raw command itself, e.g.
/// [`super::file::FileBackend::raw_create_timed`]).
///
/// # Errors
/// Any backend or raw-command failure; volumes created so far are deleted first.
pub fn measure_create(
    backend: &dyn VolumeBackend,
    raw: &dyn Fn(u64) -> Result<Duration>,
    samples: usize,
    size_bytes: u64,
) -> Result<CreateLatency> {
    let mut vol = Vec::with_capacity(samples);
    let mut path = Vec::with_capacity(samples);
    let mut base = Vec::with_capacity(samples);
    for _ in 0..samples {
        base.push(raw(size_bytes)?);
        let uid = Uuid::new_v4();
        let t = Instant::now();
        let made = backend
            .volume_ensure(&VolumeSpec {
                uid,
                size_bytes,
                source: VolumeSource::Empty,
            })
            .and_then(|_| {
                vol.push(t.elapsed());
                let t = Instant::now();
                let i = backend.volume_info(uid);
                path.push(t.elapsed());
                i
            });
        let info = match made {
            Ok(i) => i,
            Err(e) => {
                let _ = backend.volume_delete(uid);
                return Err(e);
            }
        };
        backend.volume_delete(uid)?;
        if info.and_then(|i| i.path).is_none() {
            return Err(VolumeError::Command {
                cmd: format!("volume_info {uid}"),
                stderr: "a new volume has no data path".into(),
            });
        }
    }
    Ok(CreateLatency {
        samples,
        volume_p50: p50(&mut vol),
        info_p50: p50(&mut path),
        raw_p50: p50(&mut base),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p50_is_the_median() {
        let ms = Duration::from_millis;
        assert_eq!(p50(&mut [ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(p50(&mut []), Duration::ZERO);
    }

    #[test]
    fn measures_the_fake_and_leaves_nothing() {
        let fake = super::super::fake::FakeVolumeBackend::new(1 << 30);
        let raw = |_: u64| Ok(Duration::from_millis(1));
        let l = measure_create(&fake, &raw, 5, 1 << 20).unwrap();
        assert_eq!(l.samples, 5);
        assert_eq!(l.raw_p50, Duration::from_millis(1));
        assert!(l.ratio() < 1.0, "the in-memory fake is faster than 1 ms");
        assert!(fake.volumes().unwrap().is_empty());
    }
}
