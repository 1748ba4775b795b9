//! An in-memory [`Hypervisor`] for unit tests and simulated ("hollow") nodes.
//!
//! It keeps domains in a map, transitions states instantly, and can simulate a guest console:
//! on every boot it appends `CIRRUS-BOOT <marker>` (the marker from `cirrus.marker=` on the
//! kernel command line, default `CIRRUS-GUEST-UP`) to the spec's console-log file, as the test
//! guest from `hack/build-guest.sh` does — except when it restores a saved domain
//! ([`Hypervisor::domain_save`] then `domain_start`): memory is restored, nothing boots. Faults can be injected per operation
//! ([`FakeHypervisor::fail_next`]) or globally ([`FakeHypervisor::set_unreachable`]), and
//! out-of-band changes (someone ran `virsh destroy`) simulated with the `oob_*` methods.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::Mutex;

use super::{
    DomainName, DomainSpec, DomainState, DomainSummary, EnsureOutcome, HostInfo, Hypervisor,
    HypervisorError, HypervisorOp, RebootKind, Result,
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
}

#[derive(Debug, Default)]
struct State {
    domains: BTreeMap<DomainName, FakeDomain>,
    faults: HashMap<HypervisorOp, (u32, Fault)>,
    unreachable: bool,
    ignore_acpi: bool,
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
            d.state = DomainState::ShutOff;
        }
    }

    /// Out of band: removes the domain behind Cirrus's back (`virsh undefine` after destroy).
    pub fn oob_undefine(&self, name: &DomainName) {
        self.lock().domains.remove(name);
    }

    /// Out of band: the guest crashes.
    pub fn oob_crash(&self, name: &DomainName) {
        if let Some(d) = self.lock().domains.get_mut(name) {
            d.state = DomainState::Crashed;
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
        if !self.simulate_console {
            return;
        }
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
                "CIRRUS-BOOT {marker}\nBLOCKDEVS vda\nCIRRUS-READY {marker}"
            );
        }
    }
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
        match st.domains.get_mut(&name) {
            Some(d) if d.spec == *spec => Ok(EnsureOutcome::Unchanged),
            Some(d) => {
                d.spec = spec.clone();
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
            d.state = DomainState::ShutOff;
        }
        Ok(())
    }

    fn domain_destroy(&self, name: &DomainName) -> Result<()> {
        let mut st = self.enter(HypervisorOp::DomainDestroy, name.as_str())?;
        let d = get(&mut st, name)?;
        // A saved domain has no process to kill: it stays saved.
        if d.state != DomainState::Saved {
            d.state = DomainState::ShutOff;
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
            RebootKind::Soft | RebootKind::Hard => {
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
