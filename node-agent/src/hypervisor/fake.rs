//! An in-memory [`Hypervisor`] for unit tests and simulated ("hollow") nodes.
//!
//! It keeps domains in a map, transitions states instantly, and can simulate a guest console:
//! on every boot it appends `CIRRUS-BOOT <marker>` (the marker from `cirrus.marker=` on the
//! kernel command line, default `CIRRUS-GUEST-UP`) to the spec's console-log file, as the test
//! guest from `hack/build-guest.sh` does — except when it restores a saved domain
//! ([`Hypervisor::domain_save`] then `domain_start`): memory is restored, nothing boots. Faults can be injected per operation
//! ([`FakeHypervisor::fail_next`]) or globally ([`FakeHypervisor::set_unreachable`]), and
//! out-of-band changes (someone ran `virsh destroy`) simulated with the `oob_*` methods.
//!
//! Volumes are modelled like libvirt: a persistent list (the definition's, changed by
//! `domain_ensure` and by attach/detach) and a live list (copied from the persistent one at
//! every boot, changed by hot-plug). A hot-unplug is asynchronous: by default the disk stays in
//! the live list ([`DetachState::Pending`], a guest that has not let go — paused, still booting,
//! or ignoring the request) until [`FakeHypervisor::guest_release`] is called or the domain
//! powers off; [`FakeHypervisor::set_guest_releases`] makes guests release at once, as the
//! running test guest does on real libvirt (~0.1 s). With console simulation
//! on, the guest's hot-plug reporter is simulated too: `BLOCKDEV-ADDED <target> <serial>` and
//! `BLOCKDEV-REMOVED <target>` (the fake names guest disks by their target).
//!
//! [`Hypervisor::disk_backup`] really copies the disk's file (`qemu-img convert -U` to a
//! standalone qcow2; the fake's disks are files nobody writes while it runs), so callers and
//! the conformance suite see the same `dest` a real backup leaves.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;

use super::{
    DetachState, DomainName, DomainSpec, DomainState, DomainSummary, EnsureOutcome, HostInfo,
    Hypervisor, HypervisorError, HypervisorOp, RebootKind, Result, VolumeDisk, check_volume,
    volume_conflict,
};

/// What an injected fault looks like to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// [`HypervisorError::Unreachable`]: the daemon did not answer.
    Unreachable,
    /// [`HypervisorError::Backend`]: the hypervisor refused the operation.
    Backend,
}

#[derive(Debug)]
struct FakeDomain {
    spec: DomainSpec,
    state: DomainState,
    boots: u64,
    /// A managed save image exists (state [`DomainState::Saved`]); the next start restores.
    saved: bool,
    /// Volumes in the persistent definition.
    config_volumes: Vec<VolumeDisk>,
    /// Volumes the running guest has (empty while inactive; kept while saved).
    live_volumes: Vec<VolumeDisk>,
    /// Targets whose unplug was requested and not yet released by the guest.
    unplugging: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    domains: BTreeMap<DomainName, FakeDomain>,
    faults: HashMap<HypervisorOp, (u32, Fault)>,
    unreachable: bool,
    ignore_acpi: bool,
    guest_releases: bool,
    calls: HashMap<HypervisorOp, u64>,
}

/// The in-memory fake hypervisor. Cheap; share it as `Arc<dyn Hypervisor>`.
#[derive(Debug)]
pub struct FakeHypervisor {
    host: HostInfo,
    simulate_console: bool,
    state: Mutex<State>,
}

impl Default for FakeHypervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeHypervisor {
    /// A fake host with 8 vCPUs and 16 GiB, no KVM, that simulates console output.
    pub fn new() -> Self {
        Self::with_host(HostInfo {
            hostname: "fake-host".into(),
            vcpus: 8,
            memory_mib: 16 * 1024,
            hypervisor_type: "fake".into(),
            hypervisor_version: "1.0.0".into(),
            kvm_usable: false,
            kvm_detail: "fake hypervisor".into(),
        })
    }

    /// A fake host with the given capacity and facts.
    pub fn with_host(host: HostInfo) -> Self {
        Self {
            host,
            simulate_console: true,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether to append boot markers to console-log files (default on; hollow nodes at scale
    /// may turn it off to avoid file I/O).
    pub fn simulate_console(mut self, on: bool) -> Self {
        self.simulate_console = on;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking test thread must not wedge the others: the state stays consistent
        // because every mutation is a single step.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the next `n` calls of `op` fail with `fault`.
    pub fn fail_next(&self, op: HypervisorOp, n: u32, fault: Fault) {
        self.lock().faults.insert(op, (n, fault));
    }

    /// While on, every call fails with [`HypervisorError::Unreachable`].
    pub fn set_unreachable(&self, on: bool) {
        self.lock().unreachable = on;
    }

    /// While on, guests ignore the ACPI power button (`domain_shutdown` and soft reboot do
    /// nothing), like a hung guest; the caller must fall back to destroy.
    pub fn set_ignore_acpi(&self, on: bool) {
        self.lock().ignore_acpi = on;
    }

    /// While on, guests release an unplugged disk at once (like a full Linux guest), so
    /// `disk_detach` of a running domain is [`DetachState::Done`] immediately. Default off:
    /// the test guest never releases.
    pub fn set_guest_releases(&self, on: bool) {
        self.lock().guest_releases = on;
    }

    /// The guest releases the disk at `target` whose unplug was requested: it leaves the live
    /// domain (the next `disk_detach` says [`DetachState::Done`]). Returns whether an unplug
    /// was pending.
    pub fn guest_release(&self, name: &DomainName, target: &str) -> bool {
        let mut st = self.lock();
        let Some(d) = st.domains.get_mut(name) else {
            return false;
        };
        if !d.unplugging.iter().any(|t| t == target) {
            return false;
        }
        d.unplugging.retain(|t| t != target);
        d.live_volumes.retain(|v| v.target != target);
        self.console(d, &format!("BLOCKDEV-REMOVED {target}"));
        true
    }

    /// The volumes in the domain's persistent definition.
    pub fn config_volumes(&self, name: &DomainName) -> Option<Vec<VolumeDisk>> {
        self.lock()
            .domains
            .get(name)
            .map(|d| d.config_volumes.clone())
    }

    /// The volumes the running guest has (empty when inactive).
    pub fn live_volumes(&self, name: &DomainName) -> Option<Vec<VolumeDisk>> {
        self.lock()
            .domains
            .get(name)
            .map(|d| d.live_volumes.clone())
    }

    /// How many times `op` was called (including failed calls).
    pub fn calls(&self, op: HypervisorOp) -> u64 {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// How many times the domain booted (start, reboot), or `None` if it does not exist.
    pub fn boots(&self, name: &DomainName) -> Option<u64> {
        self.lock().domains.get(name).map(|d| d.boots)
    }

    /// The spec the domain was last defined with.
    pub fn spec(&self, name: &DomainName) -> Option<DomainSpec> {
        self.lock().domains.get(name).map(|d| d.spec.clone())
    }

    /// Out of band: powers the domain off behind Cirrus's back (`virsh destroy`).
    pub fn oob_destroy(&self, name: &DomainName) {
        if let Some(d) = self.lock().domains.get_mut(name)
            && d.state != DomainState::Saved
        {
            power_off(d);
        }
    }

    /// Out of band: removes the domain behind Cirrus's back (`virsh undefine` after destroy).
    pub fn oob_undefine(&self, name: &DomainName) {
        self.lock().domains.remove(name);
    }

    /// Out of band: the guest crashes.
    pub fn oob_crash(&self, name: &DomainName) {
        if let Some(d) = self.lock().domains.get_mut(name) {
            power_off(d);
            d.state = DomainState::Crashed;
        }
    }

    /// Appends a line to the domain's console log, when simulating the console.
    fn console(&self, d: &FakeDomain, line: &str) {
        if !self.simulate_console {
            return;
        }
        // A simulation: a console file that cannot be written is not the hypervisor's failure.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&d.spec.console_log)
        {
            let _ = writeln!(f, "{line}");
        }
    }

    /// Counts the call and applies injected faults.
    fn enter(&self, op: HypervisorOp, target: &str) -> Result<std::sync::MutexGuard<'_, State>> {
        let mut st = self.lock();
        *st.calls.entry(op).or_default() += 1;
        if st.unreachable {
            return Err(HypervisorError::Unreachable {
                op,
                reason: "fake hypervisor set unreachable".into(),
            });
        }
        if let Some((n, fault)) = st.faults.get_mut(&op) {
            let fault = *fault;
            *n -= 1;
            if *n == 0 {
                st.faults.remove(&op);
            }
            return Err(match fault {
                Fault::Unreachable => HypervisorError::Unreachable {
                    op,
                    reason: "injected fault".into(),
                },
                Fault::Backend => HypervisorError::Backend {
                    op,
                    target: target.to_owned(),
                    source: "injected fault".into(),
                },
            });
        }
        Ok(st)
    }

    fn boot(&self, d: &mut FakeDomain) {
        d.state = DomainState::Running;
        d.saved = false;
        d.boots += 1;
        // A new QEMU process: the devices are the definition's.
        d.live_volumes = d.config_volumes.clone();
        d.unplugging.clear();
        if !self.simulate_console {
            return;
        }
        let mut devs = vec!["vda".to_owned()];
        if d.spec.config_drive.is_some() {
            devs.push(super::CONFIG_DRIVE_TARGET.to_owned());
        }
        devs.extend(d.live_volumes.iter().map(|v| v.target.clone()));
        devs.sort();
        let marker = d
            .spec
            .kernel_boot
            .as_ref()
            .and_then(|kb| {
                kb.cmdline
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("cirrus.marker="))
            })
            .unwrap_or("CIRRUS-GUEST-UP")
            .to_owned();
        // A simulation: a console file that cannot be written is not the hypervisor's failure.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&d.spec.console_log)
        {
            let _ = writeln!(
                f,
                "CIRRUS-BOOT {marker}\nBLOCKDEVS {}\nCIRRUS-READY {marker}",
                devs.join(" ")
            );
        }
    }
}

/// The QEMU process is gone: so are the live devices, and every pending unplug completed.
fn power_off(d: &mut FakeDomain) {
    d.state = DomainState::ShutOff;
    d.live_volumes.clear();
    d.unplugging.clear();
}

fn get<'a>(st: &'a mut State, name: &DomainName) -> Result<&'a mut FakeDomain> {
    st.domains
        .get_mut(name)
        .ok_or_else(|| HypervisorError::NotFound(name.clone()))
}

impl Hypervisor for FakeHypervisor {
    fn host_info(&self) -> Result<HostInfo> {
        drop(self.enter(HypervisorOp::HostInfo, "host")?);
        Ok(self.host.clone())
    }

    fn domain_ensure(&self, spec: &DomainSpec) -> Result<EnsureOutcome> {
        let name = spec.domain_name();
        let mut st = self.enter(HypervisorOp::DomainEnsure, name.as_str())?;
        if spec.virt_type == super::VirtType::Kvm && !self.host.kvm_usable {
            return Err(HypervisorError::InvalidSpec {
                name,
                reason: "KVM is not usable on this host".into(),
            });
        }
        if let Err(reason) = spec.validate_volumes() {
            return Err(HypervisorError::InvalidSpec { name, reason });
        }
        let mut volumes = spec.volumes.clone();
        volumes.sort_by(|a, b| a.target.cmp(&b.target));
        // Compared by digest, as libvirt's driver does: attach/detach change the definition's
        // disks but not the digest it was defined with.
        match st.domains.get_mut(&name) {
            Some(d) if d.spec.digest() == spec.digest() => Ok(EnsureOutcome::Unchanged),
            Some(d) => {
                d.spec = spec.clone();
                d.config_volumes = volumes;
                Ok(EnsureOutcome::Updated)
            }
            None => {
                st.domains.insert(
                    name,
                    FakeDomain {
                        spec: spec.clone(),
                        state: DomainState::ShutOff,
                        boots: 0,
                        saved: false,
                        config_volumes: volumes,
                        live_volumes: Vec::new(),
                        unplugging: Vec::new(),
                    },
                );
                Ok(EnsureOutcome::Created)
            }
        }
    }

    fn domain_state(&self, name: &DomainName) -> Result<Option<DomainState>> {
        let st = self.enter(HypervisorOp::DomainState, name.as_str())?;
        Ok(st.domains.get(name).map(|d| d.state))
    }

    fn domain_list(&self) -> Result<Vec<DomainSummary>> {
        let st = self.enter(HypervisorOp::DomainList, "host")?;
        Ok(st
            .domains
            .iter()
            .map(|(name, d)| DomainSummary {
                name: name.clone(),
                state: d.state,
            })
            .collect())
    }

    fn domain_start(&self, name: &DomainName) -> Result<()> {
        let mut st = self.enter(HypervisorOp::DomainStart, name.as_str())?;
        let d = get(&mut st, name)?;
        if d.saved {
            // Restored from the managed save image: the guest continues, no boot.
            d.saved = false;
            d.state = DomainState::Running;
        } else if !d.state.is_active() {
            self.boot(d);
        }
        Ok(())
    }

    fn domain_shutdown(&self, name: &DomainName) -> Result<()> {
        let mut st = self.enter(HypervisorOp::DomainShutdown, name.as_str())?;
        let ignore = st.ignore_acpi;
        let d = get(&mut st, name)?;
        if d.state.is_active() && !ignore {
            power_off(d);
        }
        Ok(())
    }

    fn domain_destroy(&self, name: &DomainName) -> Result<()> {
        let mut st = self.enter(HypervisorOp::DomainDestroy, name.as_str())?;
        let d = get(&mut st, name)?;
        // A saved domain has no process to kill: it stays saved.
        if d.state != DomainState::Saved {
            power_off(d);
        }
        Ok(())
    }

    fn domain_reboot(&self, name: &DomainName, kind: RebootKind) -> Result<()> {
        let mut st = self.enter(HypervisorOp::DomainReboot, name.as_str())?;
        let ignore = st.ignore_acpi;
        let d = get(&mut st, name)?;
        match kind {
            RebootKind::Soft if d.state != DomainState::Running => {
                Err(HypervisorError::InvalidState {
                    op: HypervisorOp::DomainReboot,
                    name: name.clone(),
                    state: d.state,
                })
            }
            RebootKind::Soft if ignore => Ok(()),
            RebootKind::Soft => {
                // The QEMU process stays (libvirt's fake reboot): the live devices too.
                let live = std::mem::take(&mut d.live_volumes);
                let config = std::mem::replace(&mut d.config_volumes, live);
                self.boot(d);
                d.config_volumes = config;
                Ok(())
            }
            RebootKind::Hard => {
                power_off(d);
                self.boot(d);
                Ok(())
            }
        }
    }

    fn domain_suspend(&self, name: &DomainName) -> Result<()> {
        let mut st = self.enter(HypervisorOp::DomainSuspend, name.as_str())?;
        let d = get(&mut st, name)?;
        match d.state {
            DomainState::Running | DomainState::Paused => {
                d.state = DomainState::Paused;
                Ok(())
            }
            state => Err(HypervisorError::InvalidState {
                op: HypervisorOp::DomainSuspend,
                name: name.clone(),
                state,
            }),
        }
    }

    fn domain_resume(&self, name: &DomainName) -> Result<()> {
        let mut st = self.enter(HypervisorOp::DomainResume, name.as_str())?;
        let d = get(&mut st, name)?;
        match d.state {
            DomainState::Running | DomainState::Paused => {
                d.state = DomainState::Running;
                Ok(())
            }
            state => Err(HypervisorError::InvalidState {
                op: HypervisorOp::DomainResume,
                name: name.clone(),
                state,
            }),
        }
    }

    fn domain_save(&self, name: &DomainName) -> Result<()> {
        let mut st = self.enter(HypervisorOp::DomainSave, name.as_str())?;
        let d = get(&mut st, name)?;
        match d.state {
            DomainState::Saved => Ok(()),
            DomainState::Running | DomainState::Paused => {
                d.state = DomainState::Saved;
                d.saved = true;
                Ok(())
            }
            state => Err(HypervisorError::InvalidState {
                op: HypervisorOp::DomainSave,
                name: name.clone(),
                state,
            }),
        }
    }

    fn domain_delete(&self, name: &DomainName) -> Result<()> {
        // Removing the domain removes its managed save image (the `saved` flag) with it.
        let mut st = self.enter(HypervisorOp::DomainDelete, name.as_str())?;
        st.domains.remove(name);
        Ok(())
    }

    fn disk_attach(&self, name: &DomainName, disk: &VolumeDisk) -> Result<()> {
        let mut st = self.enter(HypervisorOp::DiskAttach, name.as_str())?;
        let d = get(&mut st, name)?;
        let invalid = |reason: String| HypervisorError::InvalidSpec {
            name: name.clone(),
            reason,
        };
        check_volume(disk, d.spec.config_drive.is_some()).map_err(invalid)?;
        if d.state == DomainState::Saved {
            return Err(HypervisorError::InvalidState {
                op: HypervisorOp::DiskAttach,
                name: name.clone(),
                state: d.state,
            });
        }
        let active = d.state.is_active();
        // Check both views before changing either: no half-attached conflicts.
        let mut views = vec![&d.config_volumes];
        if active {
            views.push(&d.live_volumes);
        }
        for view in views {
            volume_conflict(view, disk).map_err(invalid)?;
        }
        if active && d.unplugging.contains(&disk.target) {
            return Err(invalid(format!(
                "{} is still being unplugged (the guest has not released it)",
                disk.target
            )));
        }
        if !has(&d.config_volumes, disk) {
            d.config_volumes.push(disk.clone());
            d.config_volumes.sort_by(|a, b| a.target.cmp(&b.target));
        }
        if active && !has(&d.live_volumes, disk) {
            d.live_volumes.push(disk.clone());
            d.live_volumes.sort_by(|a, b| a.target.cmp(&b.target));
            self.console(
                d,
                &format!("BLOCKDEV-ADDED {} {}", disk.target, disk.serial),
            );
        }
        Ok(())
    }

    fn disk_detach(&self, name: &DomainName, target: &str) -> Result<DetachState> {
        let mut st = self.enter(HypervisorOp::DiskDetach, name.as_str())?;
        let releases = st.guest_releases;
        let Some(d) = st.domains.get_mut(name) else {
            return Ok(DetachState::Done);
        };
        let in_config = d.config_volumes.iter().any(|v| v.target == target);
        let in_live = d.live_volumes.iter().any(|v| v.target == target);
        if d.state == DomainState::Saved && (in_config || in_live) {
            return Err(HypervisorError::InvalidState {
                op: HypervisorOp::DiskDetach,
                name: name.clone(),
                state: d.state,
            });
        }
        d.config_volumes.retain(|v| v.target != target);
        if !in_live {
            return Ok(DetachState::Done);
        }
        if !d.unplugging.iter().any(|t| t == target) {
            d.unplugging.push(target.to_owned());
        }
        if releases {
            d.unplugging.retain(|t| t != target);
            d.live_volumes.retain(|v| v.target != target);
            self.console(d, &format!("BLOCKDEV-REMOVED {target}"));
            return Ok(DetachState::Done);
        }
        Ok(DetachState::Pending)
    }

    fn disk_backup(&self, name: &DomainName, target: &str, dest: &Path) -> Result<()> {
        let op = HypervisorOp::DiskBackup;
        let disk = {
            let mut st = self.enter(op, name.as_str())?;
            let d = get(&mut st, name)?;
            if !d.state.is_active() {
                return Err(HypervisorError::InvalidState {
                    op,
                    name: name.clone(),
                    state: d.state,
                });
            }
            d.live_volumes
                .iter()
                .find(|v| v.target == target)
                .cloned()
                .ok_or_else(|| HypervisorError::InvalidSpec {
                    name: name.clone(),
                    reason: format!("the running domain has no volume at {target}"),
                })?
        };
        // The copy runs without the state lock, as a real backup job runs beside other calls.
        let out = std::process::Command::new("qemu-img")
            .args(["convert", "-U", "-f", disk.format.as_str(), "-O", "qcow2"])
            .arg(&disk.path)
            .arg(dest)
            .stdin(std::process::Stdio::null())
            .output();
        let failed = |why: String| HypervisorError::Backend {
            op,
            target: name.to_string(),
            source: why.into(),
        };
        match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(failed(format!(
                "qemu-img convert: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))),
            Err(e) => Err(failed(format!("cannot run qemu-img: {e}"))),
        }
    }

    fn disks(&self, name: &DomainName) -> Result<Vec<VolumeDisk>> {
        let mut st = self.enter(HypervisorOp::Disks, name.as_str())?;
        let d = get(&mut st, name)?;
        Ok(if d.state.is_active() {
            d.live_volumes.clone()
        } else {
            d.config_volumes.clone()
        })
    }
}

/// Whether `disk` (same target and serial) is in `view`.
fn has(view: &[VolumeDisk], disk: &VolumeDisk) -> bool {
    view.iter()
        .any(|v| v.target == disk.target && v.serial == disk.serial)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::VirtType;
    use uuid::Uuid;

    fn spec() -> DomainSpec {
        DomainSpec {
            server_uid: Uuid::new_v4(),
            server_name: "s".into(),
            project: "p".into(),
            virt_type: VirtType::Qemu,
            vcpus: 1,
            memory_mib: 128,
            root_disk: "/nonexistent/root.qcow2".into(),
            kernel_boot: None,
            console_log: "/nonexistent/console.log".into(),
            nics: vec![],
            config_drive: None,
            volumes: Vec::new(),
        }
    }

    #[test]
    fn injected_faults_fail_exactly_n_calls_and_keep_gone_apart_from_unreachable() {
        let hv = FakeHypervisor::new().simulate_console(false);
        let s = spec();
        let name = s.domain_name();
        hv.fail_next(HypervisorOp::DomainEnsure, 2, Fault::Backend);
        assert!(matches!(
            hv.domain_ensure(&s),
            Err(HypervisorError::Backend { .. })
        ));
        assert!(hv.domain_ensure(&s).is_err());
        assert_eq!(hv.domain_ensure(&s).unwrap(), EnsureOutcome::Created);
        assert_eq!(hv.calls(HypervisorOp::DomainEnsure), 3);

        hv.set_unreachable(true);
        let err = hv.domain_state(&name).unwrap_err();
        assert!(err.is_unreachable() && err.retryable(), "{err}");
        hv.set_unreachable(false);
        hv.fail_next(HypervisorOp::DomainState, 1, Fault::Unreachable);
        assert!(hv.domain_state(&name).unwrap_err().is_unreachable());
        assert_eq!(hv.domain_state(&name).unwrap(), Some(DomainState::ShutOff));

        hv.oob_undefine(&name);
        assert_eq!(hv.domain_state(&name).unwrap(), None);
    }

    #[test]
    fn out_of_band_changes_and_ignored_acpi() {
        let hv = FakeHypervisor::new().simulate_console(false);
        let s = spec();
        let name = s.domain_name();
        hv.domain_ensure(&s).unwrap();
        hv.domain_start(&name).unwrap();
        hv.oob_destroy(&name);
        assert_eq!(hv.domain_state(&name).unwrap(), Some(DomainState::ShutOff));
        hv.domain_start(&name).unwrap();
        assert_eq!(hv.boots(&name), Some(2));
        hv.set_ignore_acpi(true);
        hv.domain_shutdown(&name).unwrap();
        assert_eq!(hv.domain_state(&name).unwrap(), Some(DomainState::Running));
        hv.domain_destroy(&name).unwrap();
        assert_eq!(hv.domain_state(&name).unwrap(), Some(DomainState::ShutOff));
        hv.oob_crash(&name);
        assert_eq!(hv.domain_state(&name).unwrap(), Some(DomainState::Crashed));
    }

    #[test]
    fn kvm_refused_where_unusable() {
        let hv = FakeHypervisor::new();
        let mut s = spec();
        s.virt_type = VirtType::Kvm;
        assert!(matches!(
            hv.domain_ensure(&s),
            Err(HypervisorError::InvalidSpec { .. })
        ));
    }
}
