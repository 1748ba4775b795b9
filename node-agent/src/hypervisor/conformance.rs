//! The one conformance suite every [`Hypervisor`] implementation must pass: the in-memory
//! fake, libvirt's in-process `test:///default` driver, and the real QEMU driver booting the
//! test guest from `hack/build-guest.sh` (see `node-agent/tests/hypervisor_conformance.rs`).
//!
//! The suite checks behavior, never timings: every wait polls with a bound
//! ([`SuiteConfig::timeout`]) and fails with what it saw. Every domain it defines is guarded by
//! a [`DomainGuard`] that deletes it even when an assertion fails.
//!
//! Compiled only for tests and with the `testing` feature (which this crate's own
//! dev-dependency and `cirrus-bench` enable): it is generic over this crate's trait and run
//! by this crate's integration tests against every implementation, so it stays next to the
//! trait, but a production build does not contain it.

use std::path::Path;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{
    DetachState, DiskFormat, DomainName, DomainSpec, DomainState, EnsureOutcome, Hypervisor,
    HypervisorError, RebootKind, VolumeDisk,
};

/// How to run the suite against one implementation.
pub struct SuiteConfig<'a> {
    /// Builds the spec of a fresh server with this uid whose guest prints
    /// `CIRRUS-BOOT <marker>` on its console at every boot (kernel command line
    /// `cirrus.marker=<marker>`).
    pub make_spec: &'a dyn Fn(Uuid, &str) -> DomainSpec,
    /// Whether the implementation really writes the console log (fake with simulation, real
    /// QEMU), so boot markers can be counted. `test:///default` doesn't.
    pub console: bool,
    /// Bound for every wait (state change, console marker).
    pub timeout: Duration,
}

/// Deletes a domain when dropped (also while a failed assertion unwinds), so tests leak no
/// domains.
pub struct DomainGuard<'a> {
    hv: &'a dyn Hypervisor,
    name: DomainName,
}

impl<'a> DomainGuard<'a> {
    /// Guards `name` on `hv`.
    pub fn new(hv: &'a dyn Hypervisor, name: DomainName) -> Self {
        Self { hv, name }
    }
}

impl Drop for DomainGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.hv.domain_delete(&self.name) {
            eprintln!("cleanup: deleting {} failed: {e}", self.name);
        }
    }
}

/// Polls `domain_state` until it is `want` or the bound passes.
///
/// # Panics
/// When the state is not reached in time, or the state can't be read.
pub fn wait_state(
    hv: &dyn Hypervisor,
    name: &DomainName,
    want: Option<DomainState>,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let now = hv.domain_state(name).expect("domain_state");
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: wanted state {want:?}, still {now:?} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The console line the test guest prints first at every boot.
pub const BOOT: &str = "CIRRUS-BOOT";
/// The console line the test guest prints once booted and listening for the ACPI power button.
pub const READY: &str = "CIRRUS-READY";

/// Counts the lines `<what> <marker>` (e.g. [`BOOT`]) in a console log (0 if it doesn't exist
/// yet).
pub fn count_markers(log: &Path, what: &str, marker: &str) -> usize {
    let want = format!("{what} {marker}");
    std::fs::read(log)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .filter(|l| l.trim_end_matches('\r').trim() == want)
                .count()
        })
        .unwrap_or(0)
}

/// Polls the console log until it holds at least `n` lines `<what> <marker>`, or the bound
/// passes.
///
/// # Panics
/// When fewer markers appeared in time (the log's tail is shown).
pub fn wait_markers(log: &Path, what: &str, marker: &str, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = count_markers(log, what, marker);
        if seen >= n {
            return;
        }
        if Instant::now() >= deadline {
            let text = std::fs::read(log)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|e| format!("<{e}>"));
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            panic!(
                "{}: wanted {n} x '{what} {marker}', saw {seen} after {timeout:?}; log tail:\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn step(what: &str) {
    eprintln!("conformance: {what}");
}

/// Runs the whole suite against `hv`.
///
/// # Panics
/// On the first behavior that breaks the [`Hypervisor`] contract.
pub fn run(hv: &dyn Hypervisor, cfg: &SuiteConfig<'_>) {
    let t = cfg.timeout;

    step("host_info");
    let host = hv.host_info().expect("host_info");
    assert!(host.vcpus > 0 && host.memory_mib > 0, "{host:?}");
    assert!(
        !host.hypervisor_type.is_empty() && !host.hypervisor_version.is_empty(),
        "{host:?}"
    );

    step("absent domains: state None, delete ok, start/destroy/save NotFound");
    let absent = DomainName::for_server(Uuid::new_v4());
    assert_eq!(hv.domain_state(&absent).unwrap(), None);
    hv.domain_delete(&absent)
        .expect("delete of an absent domain succeeds");
    assert!(matches!(
        hv.domain_start(&absent),
        Err(HypervisorError::NotFound(_))
    ));
    assert!(matches!(
        hv.domain_destroy(&absent),
        Err(HypervisorError::NotFound(_))
    ));
    assert!(matches!(
        hv.domain_save(&absent),
        Err(HypervisorError::NotFound(_))
    ));

    let uid = Uuid::new_v4();
    let marker = format!("M{}", &uid.simple().to_string()[..12]);
    let spec = (cfg.make_spec)(uid, &marker);
    let name = spec.domain_name();
    assert_eq!(name, DomainName::for_server(uid));
    let _guard = DomainGuard::new(hv, name.clone());
    let log = spec.console_log.clone();
    // Other tests and agents may share the hypervisor: count only this test's domain.
    let ours = |list: &[super::DomainSummary]| list.iter().filter(|d| d.name == name).count();

    step("ensure: created once, unchanged after, one domain even under concurrency");
    assert_eq!(hv.domain_ensure(&spec).unwrap(), EnsureOutcome::Created);
    assert_eq!(hv.domain_ensure(&spec).unwrap(), EnsureOutcome::Unchanged);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| hv.domain_ensure(&spec).expect("concurrent ensure"));
        }
    });
    let list = hv.domain_list().expect("domain_list");
    assert_eq!(ours(&list), 1, "{list:?}");
    assert!(list.iter().all(|d| d.name.as_str().starts_with("cirrus-")));
    assert_eq!(hv.domain_state(&name).unwrap(), Some(DomainState::ShutOff));

    step("ensure with a changed spec redefines");
    let mut bigger = spec.clone();
    bigger.memory_mib += 64;
    assert_eq!(hv.domain_ensure(&bigger).unwrap(), EnsureOutcome::Updated);
    assert_eq!(hv.domain_ensure(&bigger).unwrap(), EnsureOutcome::Unchanged);
    assert_eq!(hv.domain_ensure(&spec).unwrap(), EnsureOutcome::Updated);
    assert_eq!(ours(&hv.domain_list().unwrap()), 1);

    step("soft reboot of a shut-off domain is refused");
    assert!(matches!(
        hv.domain_reboot(&name, RebootKind::Soft),
        Err(HypervisorError::InvalidState { .. })
    ));

    step("start (twice) -> running, console marker");
    hv.domain_start(&name).expect("start");
    hv.domain_start(&name).expect("start is idempotent");
    wait_state(hv, &name, Some(DomainState::Running), t);
    if cfg.console {
        wait_markers(&log, BOOT, &marker, 1, t);
        wait_markers(&log, READY, &marker, 1, t);
    }

    step("suspend/resume (each twice)");
    hv.domain_suspend(&name).expect("suspend");
    hv.domain_suspend(&name).expect("suspend is idempotent");
    assert_eq!(hv.domain_state(&name).unwrap(), Some(DomainState::Paused));
    hv.domain_resume(&name).expect("resume");
    hv.domain_resume(&name).expect("resume is idempotent");
    assert_eq!(hv.domain_state(&name).unwrap(), Some(DomainState::Running));

    step("save (managed save, twice) -> Saved; start restores without a boot");
    hv.domain_save(&name).expect("save");
    assert_eq!(hv.domain_state(&name).unwrap(), Some(DomainState::Saved));
    hv.domain_save(&name).expect("save is idempotent");
    assert_eq!(hv.domain_state(&name).unwrap(), Some(DomainState::Saved));
    assert!(!DomainState::Saved.is_active());
    let list = hv.domain_list().unwrap();
    assert_eq!(
        list.iter()
            .filter(|d| d.name == name && d.state == DomainState::Saved)
            .count(),
        1,
        "{list:?}"
    );
    hv.domain_destroy(&name)
        .expect("destroying a saved domain is a no-op");
    assert_eq!(hv.domain_state(&name).unwrap(), Some(DomainState::Saved));
    hv.domain_start(&name).expect("start restores");
    wait_state(hv, &name, Some(DomainState::Running), t);
    if cfg.console {
        // Memory was restored, not rebooted: give a boot the time to show up, then check.
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            count_markers(&log, BOOT, &marker),
            1,
            "a restore must not boot the guest again"
        );
    }

    step("hard reboot -> marker twice");
    hv.domain_reboot(&name, RebootKind::Hard)
        .expect("hard reboot");
    wait_state(hv, &name, Some(DomainState::Running), t);
    if cfg.console {
        wait_markers(&log, BOOT, &marker, 2, t);
        wait_markers(&log, READY, &marker, 2, t);
    }

    step("soft (ACPI) reboot -> marker three times");
    hv.domain_reboot(&name, RebootKind::Soft)
        .expect("soft reboot");
    if cfg.console {
        wait_markers(&log, BOOT, &marker, 3, t);
        wait_markers(&log, READY, &marker, 3, t);
    }
    wait_state(hv, &name, Some(DomainState::Running), t);

    step("graceful shutdown (ACPI) -> shut off; again is a no-op");
    hv.domain_shutdown(&name).expect("shutdown");
    wait_state(hv, &name, Some(DomainState::ShutOff), t);
    hv.domain_shutdown(&name).expect("shutdown is idempotent");

    step("start, destroy (twice) -> shut off");
    hv.domain_start(&name).expect("start again");
    wait_state(hv, &name, Some(DomainState::Running), t);
    if cfg.console {
        wait_markers(&log, BOOT, &marker, 4, t);
        wait_markers(&log, READY, &marker, 4, t);
    }
    hv.domain_destroy(&name).expect("destroy");
    hv.domain_destroy(&name).expect("destroy is idempotent");
    assert_eq!(hv.domain_state(&name).unwrap(), Some(DomainState::ShutOff));
    assert!(
        matches!(
            hv.domain_save(&name),
            Err(HypervisorError::InvalidState {
                state: DomainState::ShutOff,
                ..
            })
        ),
        "saving a shut-off domain without a saved state is refused"
    );

    step("hard reboot of a shut-off domain starts it");
    hv.domain_reboot(&name, RebootKind::Hard)
        .expect("hard reboot from shut off");
    wait_state(hv, &name, Some(DomainState::Running), t);

    step("delete a running domain (twice) -> gone");
    hv.domain_delete(&name).expect("delete");
    assert_eq!(hv.domain_state(&name).unwrap(), None);
    hv.domain_delete(&name).expect("delete is idempotent");
    assert!(matches!(
        hv.domain_start(&name),
        Err(HypervisorError::NotFound(_))
    ));
    let list = hv.domain_list().unwrap();
    assert_eq!(ours(&list), 0, "{list:?}");

    step("delete a saved domain removes its saved state too");
    assert_eq!(hv.domain_ensure(&spec).unwrap(), EnsureOutcome::Created);
    hv.domain_start(&name).expect("start");
    wait_state(hv, &name, Some(DomainState::Running), t);
    hv.domain_save(&name).expect("save");
    assert_eq!(hv.domain_state(&name).unwrap(), Some(DomainState::Saved));
    hv.domain_delete(&name).expect("delete a saved domain");
    assert_eq!(hv.domain_state(&name).unwrap(), None);
    assert_eq!(hv.domain_ensure(&spec).unwrap(), EnsureOutcome::Created);
    assert_eq!(
        hv.domain_state(&name).unwrap(),
        Some(DomainState::ShutOff),
        "a redefined domain must not find the deleted domain's saved state"
    );
    hv.domain_delete(&name).expect("delete");
    assert_eq!(hv.domain_state(&name).unwrap(), None);
    step("done");
}

/// A guest releasing the disk at a target of a domain (see [`DiskSuiteConfig::release`]).
pub type ReleaseFn<'a> = dyn Fn(&DomainName, &str) + 'a;

/// How to run the volume-disk part of the suite ([`run_disks`]) against one implementation.
pub struct DiskSuiteConfig<'a> {
    /// The domain settings, as for [`run`].
    pub suite: &'a SuiteConfig<'a>,
    /// Creates a small raw volume file named after its argument and returns its path (QEMU
    /// must be able to open it).
    pub make_volume: &'a dyn Fn(&str) -> std::path::PathBuf,
    /// The guest's release of a disk whose unplug is pending (the fake's
    /// `guest_release`); `None` when the guest can't be made to (the busybox test guest never
    /// releases).
    pub release: Option<&'a ReleaseFn<'a>>,
}

fn volume(cfg: &DiskSuiteConfig<'_>, target: &str) -> VolumeDisk {
    VolumeDisk {
        target: target.to_owned(),
        path: (cfg.make_volume)(&format!("{target}-{}", Uuid::new_v4().simple())),
        format: DiskFormat::Raw,
        serial: VolumeDisk::serial_for(Uuid::new_v4()),
        readonly: false,
    }
}

/// The volumes the hypervisor reports, as (target, serial) pairs.
fn seen(hv: &dyn Hypervisor, name: &DomainName) -> Vec<(String, String)> {
    hv.disks(name)
        .expect("disks")
        .into_iter()
        .map(|v| (v.target, v.serial))
        .collect()
}

fn pair(v: &VolumeDisk) -> (String, String) {
    (v.target.clone(), v.serial.clone())
}

/// Volumes in the spec only (no hot-plug): a defined domain's persistent disks, for drivers
/// without device attach (libvirt's `test:///default`) too.
///
/// # Panics
/// On the first behavior that breaks the [`Hypervisor`] contract.
pub fn run_disks_in_spec(hv: &dyn Hypervisor, cfg: &DiskSuiteConfig<'_>) {
    step("volumes in the spec: defined, listed, digest ignores their order");
    let uid = Uuid::new_v4();
    let mut spec = (cfg.suite.make_spec)(uid, "SPECVOLS");
    let name = spec.domain_name();
    let _guard = DomainGuard::new(hv, name.clone());
    let (a, b) = (volume(cfg, "vdc"), volume(cfg, "vdb"));
    spec.volumes = vec![a.clone(), b.clone()];
    assert_eq!(hv.domain_ensure(&spec).unwrap(), EnsureOutcome::Created);
    let got = hv.disks(&name).expect("disks");
    assert_eq!(
        got,
        vec![b.clone(), a.clone()],
        "sorted by target, all fields"
    );
    spec.volumes.reverse();
    assert_eq!(hv.domain_ensure(&spec).unwrap(), EnsureOutcome::Unchanged);
    spec.volumes.pop();
    assert_eq!(hv.domain_ensure(&spec).unwrap(), EnsureOutcome::Updated);
    assert_eq!(seen(hv, &name), vec![pair(&b)]);
    let mut bad = spec.clone();
    bad.volumes.push(VolumeDisk {
        target: "vda".into(),
        ..a.clone()
    });
    assert!(
        matches!(
            hv.domain_ensure(&bad),
            Err(HypervisorError::InvalidSpec { .. })
        ),
        "a volume on the root disk's target is refused"
    );
    hv.domain_delete(&name).expect("delete");
}

/// The first `n` bytes of the qcow2 file `path` as the guest would read them (shared lock).
fn qcow2_head(path: &Path, n: usize) -> Vec<u8> {
    let raw = path.with_extension("head.raw");
    let out = std::process::Command::new("qemu-img")
        .args(["convert", "-U", "-f", "qcow2", "-O", "raw"])
        .arg(path)
        .arg(&raw)
        .output()
        .expect("run qemu-img");
    assert!(
        out.status.success(),
        "qemu-img convert {}: {out:?}",
        path.display()
    );
    let mut bytes = std::fs::read(&raw).expect("read the converted backup");
    let _ = std::fs::remove_file(&raw);
    bytes.truncate(n);
    bytes
}

/// [`Hypervisor::disk_backup`] of `disk` (attached to the running domain `name`, a raw file
/// whose first sector the guest does not write): `dest` is a qcow2 without backing file
/// holding the disk's bytes as of the call — a later write to the disk is not in it; an
/// absent target is refused.
fn check_backup(hv: &dyn Hypervisor, name: &DomainName, disk: &VolumeDisk) {
    use std::io::{Seek as _, SeekFrom, Write as _};
    let dest = disk.path.with_extension("backup.qcow2");
    let before = std::fs::read(&disk.path).expect("read the volume");
    let t = Instant::now();
    hv.disk_backup(name, &disk.target, &dest)
        .expect("disk_backup of an attached disk of a running domain");
    eprintln!(
        "conformance: disk_backup of a {} KiB disk took {:?}",
        before.len() / 1024,
        t.elapsed()
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&disk.path)
        .expect("open the volume");
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(b"WRITTEN-AFTER-THE-BACKUP").unwrap();
    f.sync_all().unwrap();
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(
        &mut std::fs::File::open(&dest).expect("dest exists"),
        &mut magic,
    )
    .unwrap();
    assert_eq!(&magic, b"QFI\xfb", "dest is a qcow2 file");
    let info = std::process::Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(&dest)
        .output()
        .expect("run qemu-img info");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        !info.contains("backing-filename"),
        "dest has a backing file: {info}"
    );
    assert_eq!(
        qcow2_head(&dest, 64),
        before[..64],
        "the backup holds the disk's bytes as of the call"
    );
    assert!(
        matches!(
            hv.disk_backup(name, "vdz", &dest.with_extension("vdz.qcow2")),
            Err(HypervisorError::InvalidSpec { .. })
        ),
        "a target the domain lacks is refused"
    );
    let _ = std::fs::remove_file(&dest);
}

/// The volume-disk suite: hot-plug into a running domain (live + persistent), idempotence,
/// conflicts, a live backup of an attached disk ([`Hypervisor::disk_backup`]), asynchronous
/// detach completed by the guest or by power-off, attach to a shut-off domain persisting to
/// the next boot. Runs [`run_disks_in_spec`] first.
///
/// # Panics
/// On the first behavior that breaks the [`Hypervisor`] contract.
pub fn run_disks(hv: &dyn Hypervisor, cfg: &DiskSuiteConfig<'_>) {
    let t = cfg.suite.timeout;
    let console = cfg.suite.console;
    run_disks_in_spec(hv, cfg);

    step("disks: absent domain");
    let absent = DomainName::for_server(Uuid::new_v4());
    let v1 = volume(cfg, "vdb");
    assert!(matches!(
        hv.disk_attach(&absent, &v1),
        Err(HypervisorError::NotFound(_))
    ));
    assert!(matches!(
        hv.disks(&absent),
        Err(HypervisorError::NotFound(_))
    ));
    assert_eq!(hv.disk_detach(&absent, "vdb").unwrap(), DetachState::Done);
    assert!(matches!(
        hv.disk_backup(&absent, "vdb", &v1.path.with_extension("absent.qcow2")),
        Err(HypervisorError::NotFound(_))
    ));

    let uid = Uuid::new_v4();
    let marker = format!("D{}", &uid.simple().to_string()[..12]);
    let spec = (cfg.suite.make_spec)(uid, &marker);
    let name = spec.domain_name();
    let _guard = DomainGuard::new(hv, name.clone());
    let log = spec.console_log.clone();
    assert_eq!(hv.domain_ensure(&spec).unwrap(), EnsureOutcome::Created);
    hv.domain_start(&name).expect("start");
    wait_state(hv, &name, Some(DomainState::Running), t);
    if console {
        wait_markers(&log, READY, &marker, 1, t);
    }

    step("attach to a running domain (twice): listed, seen by the guest");
    hv.disk_attach(&name, &v1).expect("attach");
    assert_eq!(hv.disks(&name).unwrap(), vec![v1.clone()]);
    hv.disk_attach(&name, &v1).expect("attach is idempotent");
    assert_eq!(seen(hv, &name), vec![pair(&v1)]);
    if console {
        wait_markers(&log, "BLOCKDEV-ADDED", &format!("vdb {}", v1.serial), 1, t);
    }

    step("backup of an attached disk while the guest runs: a standalone point-in-time qcow2");
    check_backup(hv, &name, &v1);

    step("conflicts: a taken target, a serial at another target, the root disk's target");
    let other = volume(cfg, "vdb");
    assert!(matches!(
        hv.disk_attach(&name, &other),
        Err(HypervisorError::InvalidSpec { .. })
    ));
    let moved = VolumeDisk {
        target: "vdd".into(),
        ..v1.clone()
    };
    assert!(matches!(
        hv.disk_attach(&name, &moved),
        Err(HypervisorError::InvalidSpec { .. })
    ));
    let root = VolumeDisk {
        target: "vda".into(),
        ..other.clone()
    };
    assert!(matches!(
        hv.disk_attach(&name, &root),
        Err(HypervisorError::InvalidSpec { .. })
    ));
    assert_eq!(seen(hv, &name), vec![pair(&v1)]);

    step(
        "the reconciler's way: ensure with the volume in the spec (running: no restart), then attach",
    );
    let v2 = volume(cfg, "vdc");
    let mut with = spec.clone();
    with.volumes = vec![v1.clone(), v2.clone()];
    assert_eq!(hv.domain_ensure(&with).unwrap(), EnsureOutcome::Updated);
    assert!(with.same_except_volumes(&spec));
    assert_eq!(hv.domain_state(&name).unwrap(), Some(DomainState::Running));
    assert_eq!(
        seen(hv, &name),
        vec![pair(&v1)],
        "live view: not plugged yet"
    );
    hv.disk_attach(&name, &v2)
        .expect("attach (already in the definition)");
    assert_eq!(seen(hv, &name), vec![pair(&v1), pair(&v2)]);
    assert_eq!(hv.domain_ensure(&with).unwrap(), EnsureOutcome::Unchanged);
    if console {
        // Let the guest take it before it is unplugged (a disk the guest never enabled is
        // removed at once, which would not test a release).
        wait_markers(&log, "BLOCKDEV-ADDED", &format!("vdc {}", v2.serial), 1, t);
    }

    step("detach from a running domain: Pending while the guest holds it, or Done");
    let first = hv.disk_detach(&name, "vdc").expect("detach");
    let again = hv.disk_detach(&name, "vdc").expect("detach again");
    for state in [first, again] {
        let listed = seen(hv, &name).contains(&pair(&v2));
        match state {
            DetachState::Pending => assert!(listed, "Pending but the live domain lacks vdc"),
            DetachState::Done => assert!(!listed, "Done but the live domain still has vdc"),
        }
    }
    eprintln!("conformance: detach of a running domain's disk: {first:?}, then {again:?}");
    if console && first == DetachState::Done {
        // The guest let go of it, so its hot-plug reporter saw it go.
        wait_markers(&log, "BLOCKDEV-REMOVED", "vdc", 1, t);
    }
    if first == DetachState::Pending
        && let Some(release) = cfg.release
    {
        release(&name, "vdc");
        assert_eq!(hv.disk_detach(&name, "vdc").unwrap(), DetachState::Done);
        assert_eq!(seen(hv, &name), vec![pair(&v1)]);
        if console {
            wait_markers(&log, "BLOCKDEV-REMOVED", "vdc", 1, t);
        }
    }
    assert_eq!(
        hv.disk_detach(&name, "vdz").unwrap(),
        DetachState::Done,
        "detaching an absent target is done"
    );

    step("detach vdb while running, then power off: Done, in neither view");
    let pending = hv.disk_detach(&name, "vdb").expect("detach vdb");
    eprintln!("conformance: detach vdb while running: {pending:?}");
    hv.domain_destroy(&name).expect("destroy");
    assert_eq!(hv.disk_detach(&name, "vdb").unwrap(), DetachState::Done);
    assert_eq!(hv.disk_detach(&name, "vdc").unwrap(), DetachState::Done);
    assert_eq!(
        seen(hv, &name),
        vec![],
        "persistent definition still has volumes"
    );

    step("attach to a shut-off domain (twice): persistent, plugged at the next start");
    hv.disk_attach(&name, &v1).expect("attach shut off");
    hv.disk_attach(&name, &v1)
        .expect("attach shut off is idempotent");
    assert_eq!(seen(hv, &name), vec![pair(&v1)]);
    assert_eq!(hv.domain_state(&name).unwrap(), Some(DomainState::ShutOff));
    assert!(
        matches!(
            hv.disk_backup(&name, "vdb", &v1.path.with_extension("off.qcow2")),
            Err(HypervisorError::InvalidState { .. })
        ),
        "a backup needs an active domain (a shut-off one holds no file: copy it offline)"
    );
    hv.domain_start(&name).expect("start with the volume");
    wait_state(hv, &name, Some(DomainState::Running), t);
    assert_eq!(seen(hv, &name), vec![pair(&v1)]);
    if console {
        wait_markers(&log, "BLOCKDEVS", "vda vdb", 1, t);
    }

    step("detach from a shut-off domain: Done at once");
    hv.domain_destroy(&name).expect("destroy");
    assert_eq!(hv.disk_detach(&name, "vdb").unwrap(), DetachState::Done);
    assert_eq!(seen(hv, &name), vec![]);
    hv.domain_delete(&name).expect("delete");
    step("disks done");
}
