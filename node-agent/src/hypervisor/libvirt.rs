//! The real [`Hypervisor`]: libvirt through the `virt` crate.
//!
//! # Expected flow
//! One [`LibvirtHypervisor`] per node agent, shared as `Arc<dyn Hypervisor>`. It opens its
//! connection lazily, reuses it across threads (libvirt connections are thread-safe), and
//! reopens it on the next call after it broke (daemon restart). Calls block: async callers use
//! `spawn_blocking`.
//!
//! # Errors
//! libvirt's `VIR_ERR_NO_DOMAIN` becomes [`HypervisorError::NotFound`] (or `Ok(None)` /
//! success where absence is an answer); RPC, connection and timeout errors become
//! [`HypervisorError::Unreachable`] (and drop the cached connection); the rest
//! [`HypervisorError::Backend`] with libvirt's error as the source.
//!
//! # Caveats
//! - `virt`'s `Connect` and `Domain` panic in `Drop` if libvirt fails to release them; every
//!   handle is held in a [`Quiet`] wrapper that contains such a panic, so a broken connection
//!   can't take the node agent down.
//! - `domain_state` uses `virDomainGetInfo` (`virt`'s `Domain::state` ignores errors and would
//!   report a vanished domain as "no state").
//! - Suspend to disk is libvirt's managed save (`virDomainManagedSave`, saved with
//!   `VIR_DOMAIN_SAVE_RUNNING` so a domain saved while paused restores running). A shut-off
//!   domain with a managed save image is reported as [`DomainState::Saved`]; `virDomainCreate`
//!   restores it, a hard reboot discards it first (a power-cycle boots afresh), and
//!   `domain_delete` removes it with the domain. Redefining a saved domain with a changed spec
//!   may make the restore fail (libvirt checks the saved ABI against the new definition).
//! - Volumes: `disk_attach` / `disk_detach` use `virDomainAttachDeviceFlags` /
//!   `virDomainDetachDeviceFlags` with `VIR_DOMAIN_AFFECT_LIVE` (active domains) and/or
//!   `VIR_DOMAIN_AFFECT_CONFIG` (persistent ones), each only where the disk is missing /
//!   present, read from the live (`xml_desc(0)`) and inactive XML. libvirt's live detach waits
//!   up to 5 s for QEMU's DEVICE_DELETED and then returns success even when the guest has not
//!   released the disk, so the result is decided by re-reading the live XML, never by the
//!   call's success. The persistent definition's spec digest is not changed by attach/detach:
//!   the next `domain_ensure` with the volumes in its spec redefines it once (same disks).
//!   libvirt's `test:///default` driver supports neither config attach nor detach.
//! - Backups ([`Hypervisor::disk_backup`]) use libvirt's push-mode backup job
//!   (`virDomainBackupBegin` with a `<domainbackup>` naming only that disk, target a new
//!   qcow2 file; QEMU copies the disk as of the job's start while the guest runs). The `virt`
//!   crate has no safe wrapper for it and `unsafe` is forbidden here, so the job is started
//!   with `virsh -c <uri> backup-begin` (a subprocess); its end is polled with
//!   `virDomainGetJobInfo` every 50 ms and its outcome read with `virsh domjobinfo
//!   --completed` (`virt`'s `job_stats` aborts the process when libvirt returns no
//!   statistics). A job still running after 30 min is aborted
//!   (`virsh domjobabort`). One job per domain: a migration or a second backup of the same
//!   domain makes `backup-begin` fail (retry later).
//! - KVM use is probed once per driver ([`super::kvm`]) for local `qemu:` URIs.
//! - Graceful shutdown and soft reboot use libvirt's default method: with no guest agent
//!   configured, QEMU presses the ACPI power button (a soft reboot is libvirt's "fake reboot":
//!   the guest powers off and libvirt resets and resumes it). The test guest handles the power
//!   button once its `/init` printed `CIRRUS-READY`; a guest that ignores it stays up, and the
//!   caller falls back to `domain_destroy` after its grace period.
//!
//! # Why this file is long
//! It is one implementation of the whole [`Hypervisor`] trait against one
//! daemon: each method is a short translation to libvirt calls, and splitting them apart would
//! scatter the error mapping (`map_err`, "gone" vs "unreachable") they share.

use std::ops::Deref;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

use virt::connect::Connect;
use virt::domain::{Domain, DomainState as VirState};
use virt::enumutil::Enum;
use virt::error::{Error as VirError, ErrorDomain, ErrorNumber};
use virt::sys;

use super::kvm::{KvmProbe, probe_kvm};
use super::xml::{
    disk_targets, render_backup_xml, render_domain_xml, render_volume_disk, spec_digest_from_xml,
    volumes_from_xml,
};
use super::{
    DetachState, DomainName, DomainSpec, DomainState, DomainSummary, EnsureOutcome, HostInfo,
    Hypervisor, HypervisorError, HypervisorOp, RebootKind, Result, VirtType, VolumeDisk,
    check_volume, volume_conflict,
};

/// The default libvirt URI: the system QEMU driver.
pub const DEFAULT_URI: &str = "qemu:///system";

/// The longest a [`Hypervisor::disk_backup`] may take before its job is aborted.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often a running backup job is polled.
const BACKUP_POLL: Duration = Duration::from_millis(50);

/// How long the KVM probe waits for guest firmware to run.
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Holds a `virt` handle whose `Drop` may panic; releasing it never propagates that panic.
#[derive(Debug)]
pub struct Quiet<T>(Option<T>);

impl<T> Quiet<T> {
    fn new(v: T) -> Self {
        Self(Some(v))
    }
}

impl<T> Deref for Quiet<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<T> Drop for Quiet<T> {
    fn drop(&mut self) {
        if let Some(v) = self.0.take()
            && catch_unwind(AssertUnwindSafe(move || drop(v))).is_err()
        {
            tracing::warn!("libvirt refused to release a handle; continuing");
        }
    }
}

/// The libvirt driver.
#[derive(Debug)]
pub struct LibvirtHypervisor {
    uri: String,
    conn: Mutex<Option<Quiet<Connect>>>,
    kvm: OnceLock<KvmProbe>,
}

impl LibvirtHypervisor {
    /// A driver for `uri` (e.g. [`DEFAULT_URI`], `test:///default`). Connects lazily.
    pub fn new(uri: impl Into<String>) -> Self {
        static SILENCE: Once = Once::new();
        // libvirt's default error handler prints every error to stderr; we report them.
        SILENCE.call_once(virt::error::clear_error_callback);
        Self {
            uri: uri.into(),
            conn: Mutex::new(None),
            kvm: OnceLock::new(),
        }
    }

    /// A driver for `uri` that connects now, so a missing daemon shows up at start-up.
    ///
    /// # Errors
    /// [`HypervisorError::Unreachable`] when libvirt can't be reached.
    pub fn connect(uri: impl Into<String>) -> Result<Self> {
        let hv = Self::new(uri);
        hv.conn(HypervisorOp::HostInfo)?;
        Ok(hv)
    }

    /// The libvirt URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }
}

fn map_state(s: virt::domain::DomainStateEnum) -> DomainState {
    match s {
        Enum::Known(VirState::Running | VirState::Blocked) => DomainState::Running,
        Enum::Known(VirState::Paused) => DomainState::Paused,
        Enum::Known(VirState::Shutdown) => DomainState::ShuttingDown,
        Enum::Known(VirState::Shutoff) => DomainState::ShutOff,
        Enum::Known(VirState::Crashed) => DomainState::Crashed,
        Enum::Known(VirState::PMSuspended) => DomainState::PmSuspended,
        Enum::Known(VirState::NoState) | Enum::Unknown(_) => DomainState::NoState,
    }
}

fn is(e: &VirError, n: ErrorNumber) -> bool {
    e.code() == Enum::Known(n)
}

/// Whether the error means "the daemon/connection failed", not "the operation failed".
fn is_connection_error(e: &VirError) -> bool {
    matches!(
        e.domain(),
        Enum::Known(ErrorDomain::Rpc | ErrorDomain::Remote)
    ) || [
        ErrorNumber::NoConnect,
        ErrorNumber::InvalidConn,
        ErrorNumber::AuthFailed,
        ErrorNumber::AuthUnavailable,
        ErrorNumber::OperationTimeout,
        ErrorNumber::Rpc,
    ]
    .into_iter()
    .any(|n| is(e, n))
}

impl LibvirtHypervisor {
    /// The shared connection (opened or reopened as needed).
    fn conn(&self, op: HypervisorOp) -> Result<Quiet<Connect>> {
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref()
            && matches!(c.is_alive(), Ok(true))
        {
            return Ok(Quiet::new(Connect::clone(c)));
        }
        *slot = None; // release a dead connection before opening a new one
        match Connect::open(Some(&self.uri)) {
            Ok(c) => {
                let c = Quiet::new(c);
                let out = Quiet::new(Connect::clone(&c));
                *slot = Some(c);
                Ok(out)
            }
            Err(e) => Err(HypervisorError::Unreachable {
                op,
                reason: format!("cannot connect to {}: {}", self.uri, e.message()),
            }),
        }
    }

    /// Maps a libvirt error; connection errors also drop the cached connection.
    fn err(&self, op: HypervisorOp, name: Option<&DomainName>, e: VirError) -> HypervisorError {
        if let Some(name) = name
            && is(&e, ErrorNumber::NoDomain)
        {
            return HypervisorError::NotFound(name.clone());
        }
        if is_connection_error(&e) {
            *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
            return HypervisorError::Unreachable {
                op,
                reason: format!("{}: {}", self.uri, e.message()),
            };
        }
        HypervisorError::Backend {
            op,
            target: name.map_or_else(|| "host".to_owned(), |n| n.to_string()),
            source: Box::new(e),
        }
    }

    /// The domain, or `None` when libvirt positively says it does not exist.
    fn lookup(
        &self,
        c: &Connect,
        op: HypervisorOp,
        name: &DomainName,
    ) -> Result<Option<Quiet<Domain>>> {
        match c.lookup_domain_by_name(name.as_str()) {
            Ok(d) => Ok(Some(Quiet::new(d))),
            Err(e) if is(&e, ErrorNumber::NoDomain) => Ok(None),
            Err(e) => Err(self.err(op, Some(name), e)),
        }
    }

    fn must(&self, c: &Connect, op: HypervisorOp, name: &DomainName) -> Result<Quiet<Domain>> {
        self.lookup(c, op, name)?
            .ok_or_else(|| HypervisorError::NotFound(name.clone()))
    }

    /// The domain's state; a shut-off domain with a managed save image is
    /// [`DomainState::Saved`].
    fn state_of(&self, d: &Domain, op: HypervisorOp, name: &DomainName) -> Result<DomainState> {
        let state = d
            .info()
            .map(|i| map_state(i.state))
            .map_err(|e| self.err(op, Some(name), e))?;
        if state != DomainState::ShutOff {
            return Ok(state);
        }
        match d.has_managed_save(0) {
            Ok(true) => Ok(DomainState::Saved),
            Ok(false) => Ok(state),
            // A driver without managed save has no saved state.
            Err(e) if is(&e, ErrorNumber::NoSupport) => Ok(state),
            Err(e) => Err(self.err(op, Some(name), e)),
        }
    }

    /// Runs `act` unless the domain is already in a state where it is unnecessary; if `act`
    /// fails because the state changed underneath (e.g. "domain is not running"), re-reads the
    /// state and succeeds when the goal was reached anyway.
    fn transition(
        &self,
        op: HypervisorOp,
        name: &DomainName,
        done: impl Fn(DomainState) -> bool,
        allowed: impl Fn(DomainState) -> bool,
        act: impl Fn(&Domain) -> std::result::Result<(), VirError>,
    ) -> Result<()> {
        let c = self.conn(op)?;
        let d = self.must(&c, op, name)?;
        let state = self.state_of(&d, op, name)?;
        if done(state) {
            return Ok(());
        }
        if !allowed(state) {
            return Err(HypervisorError::InvalidState {
                op,
                name: name.clone(),
                state,
            });
        }
        match act(&d) {
            Ok(()) => Ok(()),
            Err(e) if is(&e, ErrorNumber::OperationInvalid) => {
                let now = self.state_of(&d, op, name)?;
                if done(now) {
                    Ok(())
                } else {
                    Err(self.err(op, Some(name), e))
                }
            }
            Err(e) => Err(self.err(op, Some(name), e)),
        }
    }

    /// The volumes of the live (`live`) or persistent definition of `d`.
    fn volumes_of(
        &self,
        d: &Domain,
        op: HypervisorOp,
        name: &DomainName,
        live: bool,
    ) -> Result<Vec<VolumeDisk>> {
        let flags = if live {
            0
        } else {
            sys::VIR_DOMAIN_XML_INACTIVE
        };
        d.xml_desc(flags)
            .map(|x| volumes_from_xml(&x))
            .map_err(|e| self.err(op, Some(name), e))
    }

    /// Whether the persistent definition has a config drive (the `vdb` disk without a serial).
    fn has_config_drive(&self, d: &Domain, op: HypervisorOp, name: &DomainName) -> Result<bool> {
        let xml = d
            .xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
            .map_err(|e| self.err(op, Some(name), e))?;
        Ok(xml.contains("<target dev='vdb'")
            && !volumes_from_xml(&xml)
                .iter()
                .any(|v| v.target == super::CONFIG_DRIVE_TARGET))
    }

    /// The (cached) KVM verdict for this connection.
    fn kvm(&self, c: &Connect) -> KvmProbe {
        self.kvm
            .get_or_init(|| {
                if !self.uri.starts_with("qemu:///") {
                    return KvmProbe {
                        usable: false,
                        detail: format!("no KVM probe for {}", self.uri),
                    };
                }
                let caps = match c.domain_capabilities(
                    None,
                    Some("x86_64"),
                    Some("q35"),
                    Some("kvm"),
                    0,
                ) {
                    Ok(x) => x,
                    Err(e) => {
                        return KvmProbe {
                            usable: false,
                            detail: format!("libvirt offers no KVM: {}", e.message()),
                        };
                    }
                };
                let qemu = caps
                    .split_once("<path>")
                    .and_then(|(_, rest)| rest.split_once("</path>"))
                    .map_or_else(
                        || PathBuf::from("qemu-system-x86_64"),
                        |(p, _)| PathBuf::from(p.trim()),
                    );
                let probe = probe_kvm(&qemu, KVM_PROBE_TIMEOUT);
                tracing::info!(usable = probe.usable, detail = %probe.detail, "KVM probe");
                probe
            })
            .clone()
    }
}

/// Formats libvirt's `major * 1_000_000 + minor * 1_000 + release` version numbers.
fn version_string(v: u32) -> String {
    format!("{}.{}.{}", v / 1_000_000, (v / 1_000) % 1_000, v % 1_000)
}

impl Hypervisor for LibvirtHypervisor {
    fn host_info(&self) -> Result<HostInfo> {
        let op = HypervisorOp::HostInfo;
        let c = self.conn(op)?;
        let node = c.node_info().map_err(|e| self.err(op, None, e))?;
        let hostname = c.hostname().map_err(|e| self.err(op, None, e))?;
        let hypervisor_type = c.driver_type().map_err(|e| self.err(op, None, e))?;
        let hypervisor_version = c
            .hyp_version()
            .map(version_string)
            .map_err(|e| self.err(op, None, e))?;
        let kvm = self.kvm(&c);
        Ok(HostInfo {
            hostname,
            vcpus: node.cpus,
            memory_mib: node.memory / 1024,
            hypervisor_type,
            hypervisor_version,
            kvm_usable: kvm.usable,
            kvm_detail: kvm.detail,
        })
    }

    fn domain_ensure(&self, spec: &DomainSpec) -> Result<EnsureOutcome> {
        let op = HypervisorOp::DomainEnsure;
        let name = spec.domain_name();
        let c = self.conn(op)?;
        if spec.virt_type == VirtType::Kvm && !self.kvm(&c).usable {
            return Err(HypervisorError::InvalidSpec {
                name,
                reason: format!("KVM is not usable here ({})", self.kvm(&c).detail),
            });
        }
        if let Err(reason) = spec.validate_volumes() {
            return Err(HypervisorError::InvalidSpec { name, reason });
        }
        let outcome = match self.lookup(&c, op, &name)? {
            None => EnsureOutcome::Created,
            Some(d) => {
                let xml = d
                    .xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
                    .map_err(|e| self.err(op, Some(&name), e))?;
                if spec_digest_from_xml(&xml).as_deref() == Some(spec.digest().as_str()) {
                    return Ok(EnsureOutcome::Unchanged);
                }
                EnsureOutcome::Updated
            }
        };
        let xml = render_domain_xml(spec);
        let d = c
            .define_domain_xml_flags(&xml, sys::VIR_DOMAIN_DEFINE_VALIDATE)
            .map_err(|e| self.err(op, Some(&name), e))?;
        drop(Quiet::new(d));
        tracing::info!(domain = %name, ?outcome, "domain defined");
        Ok(outcome)
    }

    fn domain_state(&self, name: &DomainName) -> Result<Option<DomainState>> {
        let op = HypervisorOp::DomainState;
        let c = self.conn(op)?;
        let Some(d) = self.lookup(&c, op, name)? else {
            return Ok(None);
        };
        match self.state_of(&d, op, name) {
            Ok(s) => Ok(Some(s)),
            // Vanished between lookup and info: that is positive evidence too.
            Err(HypervisorError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn domain_list(&self) -> Result<Vec<DomainSummary>> {
        let op = HypervisorOp::DomainList;
        let c = self.conn(op)?;
        let all = c
            .list_all_domains(0)
            .map_err(|e| self.err(op, None, e))?
            .into_iter()
            .map(Quiet::new)
            .collect::<Vec<_>>();
        let mut out = Vec::new();
        for d in &all {
            let Ok(raw) = d.name() else { continue };
            let Some(name) = DomainName::parse(&raw) else {
                continue;
            };
            match self.state_of(d, op, &name) {
                Ok(state) => out.push(DomainSummary { name, state }),
                Err(HypervisorError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn domain_start(&self, name: &DomainName) -> Result<()> {
        self.transition(
            HypervisorOp::DomainStart,
            name,
            DomainState::is_active,
            |_| true,
            |d| d.create().map(|_| ()),
        )
    }

    fn domain_shutdown(&self, name: &DomainName) -> Result<()> {
        self.transition(
            HypervisorOp::DomainShutdown,
            name,
            |s| !s.is_active(),
            |_| true,
            |d| d.shutdown().map(|_| ()),
        )
    }

    fn domain_destroy(&self, name: &DomainName) -> Result<()> {
        self.transition(
            HypervisorOp::DomainDestroy,
            name,
            |s| !s.is_active(),
            |_| true,
            |d| d.destroy(),
        )
    }

    fn domain_reboot(&self, name: &DomainName, kind: RebootKind) -> Result<()> {
        let op = HypervisorOp::DomainReboot;
        match kind {
            RebootKind::Soft => self.transition(
                op,
                name,
                |_| false,
                |s| s == DomainState::Running,
                |d| d.reboot(sys::VIR_DOMAIN_REBOOT_DEFAULT),
            ),
            RebootKind::Hard => {
                let c = self.conn(op)?;
                let d = self.must(&c, op, name)?;
                match self.state_of(&d, op, name)? {
                    s if s.is_active() => match d.destroy() {
                        Ok(()) => {}
                        Err(e) if is(&e, ErrorNumber::OperationInvalid) => {}
                        Err(e) => return Err(self.err(op, Some(name), e)),
                    },
                    // A power-cycle boots afresh: the saved memory is discarded.
                    DomainState::Saved => d
                        .managed_save_remove(0)
                        .map_err(|e| self.err(op, Some(name), e))?,
                    _ => {}
                }
                d.create()
                    .map(|_| ())
                    .map_err(|e| self.err(op, Some(name), e))
            }
        }
    }

    fn domain_suspend(&self, name: &DomainName) -> Result<()> {
        self.transition(
            HypervisorOp::DomainSuspend,
            name,
            |s| s == DomainState::Paused,
            |s| s == DomainState::Running,
            |d| d.suspend().map(|_| ()),
        )
    }

    fn domain_resume(&self, name: &DomainName) -> Result<()> {
        self.transition(
            HypervisorOp::DomainResume,
            name,
            |s| s == DomainState::Running,
            |s| s == DomainState::Paused,
            |d| d.resume().map(|_| ()),
        )
    }

    fn domain_save(&self, name: &DomainName) -> Result<()> {
        self.transition(
            HypervisorOp::DomainSave,
            name,
            |s| s == DomainState::Saved,
            |s| matches!(s, DomainState::Running | DomainState::Paused),
            // RUNNING: a domain saved while paused is restored running (the caller asked for
            // suspend-to-disk, not for a pause that survives it).
            |d| d.managed_save(sys::VIR_DOMAIN_SAVE_RUNNING),
        )?;
        tracing::info!(domain = %name, "domain saved (managed save)");
        Ok(())
    }

    fn domain_delete(&self, name: &DomainName) -> Result<()> {
        let op = HypervisorOp::DomainDelete;
        let c = self.conn(op)?;
        let Some(d) = self.lookup(&c, op, name)? else {
            return Ok(());
        };
        let gone = |e: &VirError| is(e, ErrorNumber::NoDomain);
        match d.info() {
            Ok(i) if map_state(i.state).is_active() => match d.destroy() {
                Ok(()) => {}
                Err(e) if gone(&e) || is(&e, ErrorNumber::OperationInvalid) => {}
                Err(e) => return Err(self.err(op, Some(name), e)),
            },
            Ok(_) => {}
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(self.err(op, Some(name), e)),
        }
        let flags = sys::VIR_DOMAIN_UNDEFINE_NVRAM
            | sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | sys::VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA;
        let unsupported =
            |e: &VirError| is(e, ErrorNumber::InvalidArg) || is(e, ErrorNumber::NoSupport);
        let undefined = match d.undefine_flags(flags) {
            // Drivers without NVRAM/checkpoint support (e.g. the test driver) reject the flags;
            // the managed save image must still go (a plain undefine refuses while one exists).
            Err(e) if unsupported(&e) => match d.undefine_flags(
                sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
            ) {
                Err(e) if unsupported(&e) => d.undefine(),
                r => r,
            },
            r => r,
        };
        match undefined {
            Ok(()) => {}
            Err(e) if gone(&e) => {}
            // A transient domain disappears with destroy ("not persistent"); anything else
            // refused as invalid (e.g. a managed save image left behind) is a failure.
            Err(e) if is(&e, ErrorNumber::OperationInvalid) => {
                if self.lookup(&c, op, name)?.is_some() {
                    return Err(self.err(op, Some(name), e));
                }
            }
            Err(e) => return Err(self.err(op, Some(name), e)),
        }
        tracing::info!(domain = %name, "domain deleted");
        Ok(())
    }

    fn disk_attach(&self, name: &DomainName, disk: &VolumeDisk) -> Result<()> {
        self.attach(name, disk)
    }

    fn disk_detach(&self, name: &DomainName, target: &str) -> Result<DetachState> {
        self.detach(name, target)
    }

    fn disk_backup(&self, name: &DomainName, target: &str, dest: &Path) -> Result<()> {
        self.backup(name, target, dest)
    }

    fn disks(&self, name: &DomainName) -> Result<Vec<VolumeDisk>> {
        let op = HypervisorOp::Disks;
        let c = self.conn(op)?;
        let d = self.must(&c, op, name)?;
        let live = d.is_active().map_err(|e| self.err(op, Some(name), e))?;
        self.volumes_of(&d, op, name, live)
    }
}

impl LibvirtHypervisor {
    fn attach(&self, name: &DomainName, disk: &VolumeDisk) -> Result<()> {
        let op = HypervisorOp::DiskAttach;
        let c = self.conn(op)?;
        let d = self.must(&c, op, name)?;
        let invalid = |reason: String| HypervisorError::InvalidSpec {
            name: name.clone(),
            reason,
        };
        check_volume(disk, self.has_config_drive(&d, op, name)?).map_err(invalid)?;
        let state = self.state_of(&d, op, name)?;
        if state == DomainState::Saved {
            return Err(HypervisorError::InvalidState {
                op,
                name: name.clone(),
                state,
            });
        }
        let persistent = d.is_persistent().map_err(|e| self.err(op, Some(name), e))?;
        let config = if persistent {
            Some(self.volumes_of(&d, op, name, false)?)
        } else {
            None
        };
        let live = if state.is_active() {
            Some(self.volumes_of(&d, op, name, true)?)
        } else {
            None
        };
        let mut flags = 0;
        for (view, flag) in [
            (&config, sys::VIR_DOMAIN_AFFECT_CONFIG),
            (&live, sys::VIR_DOMAIN_AFFECT_LIVE),
        ] {
            let Some(view) = view else { continue };
            volume_conflict(view, disk).map_err(invalid)?;
            if !view
                .iter()
                .any(|v| v.target == disk.target && v.serial == disk.serial)
            {
                flags |= flag;
            }
        }
        if flags == 0 {
            return Ok(());
        }
        let xml = render_volume_disk(disk, "");
        d.attach_device_flags(&xml, flags)
            .map_err(|e| self.err(op, Some(name), e))?;
        tracing::info!(domain = %name, target = %disk.target, serial = %disk.serial, live = flags & sys::VIR_DOMAIN_AFFECT_LIVE != 0, "volume attached");
        Ok(())
    }

    fn detach(&self, name: &DomainName, target: &str) -> Result<DetachState> {
        let op = HypervisorOp::DiskDetach;
        let c = self.conn(op)?;
        let Some(d) = self.lookup(&c, op, name)? else {
            return Ok(DetachState::Done);
        };
        let state = self.state_of(&d, op, name)?;
        let persistent = d.is_persistent().map_err(|e| self.err(op, Some(name), e))?;
        let find = |view: Vec<VolumeDisk>| view.into_iter().find(|v| v.target == target);
        let in_config = if persistent {
            find(self.volumes_of(&d, op, name, false)?)
        } else {
            None
        };
        let in_live = if state.is_active() {
            find(self.volumes_of(&d, op, name, true)?)
        } else {
            None
        };
        if state == DomainState::Saved && in_config.is_some() {
            return Err(HypervisorError::InvalidState {
                op,
                name: name.clone(),
                state,
            });
        }
        if let Some(disk) = &in_config {
            let xml = render_volume_disk(disk, "");
            match d.detach_device_flags(&xml, sys::VIR_DOMAIN_AFFECT_CONFIG) {
                Ok(()) => {}
                // Gone meanwhile (a concurrent detach): that is the goal.
                Err(e)
                    if !is_connection_error(&e)
                        && find(self.volumes_of(&d, op, name, false)?).is_none() => {}
                Err(e) => return Err(self.err(op, Some(name), e)),
            }
        }
        let Some(disk) = in_live else {
            return Ok(DetachState::Done);
        };
        // (Re-)request the unplug. libvirt waits a few seconds for the guest and then returns
        // success or "unplug already in progress" alike: only the live XML tells.
        let xml = render_volume_disk(&disk, "");
        if let Err(e) = d.detach_device_flags(&xml, sys::VIR_DOMAIN_AFFECT_LIVE) {
            if is_connection_error(&e) || is(&e, ErrorNumber::NoDomain) {
                return Err(self.err(op, Some(name), e));
            }
            tracing::debug!(domain = %name, target, error = %e.message(), "live detach request refused; re-checking");
        }
        let now = self.state_of(&d, op, name)?;
        if !now.is_active() || find(self.volumes_of(&d, op, name, true)?).is_none() {
            tracing::info!(domain = %name, target, "volume detached");
            return Ok(DetachState::Done);
        }
        tracing::info!(domain = %name, target, "volume detach pending: the guest has not released it");
        Ok(DetachState::Pending)
    }
}

impl LibvirtHypervisor {
    /// Runs `virsh -q -c <uri> <args>`; its standard output, or why it failed.
    fn virsh(&self, args: &[&str]) -> std::result::Result<String, String> {
        let out = std::process::Command::new("virsh")
            .args(["-q", "-c", &self.uri])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run virsh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "virsh {}: {}",
                args.first().copied().unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A push-mode backup of one disk (see the module docs): `virsh backup-begin`, then polls
    /// the domain's job until it is over and reads how it ended.
    fn backup(&self, name: &DomainName, target: &str, dest: &Path) -> Result<()> {
        let op = HypervisorOp::DiskBackup;
        let c = self.conn(op)?;
        let d = self.must(&c, op, name)?;
        let state = self.state_of(&d, op, name)?;
        if !state.is_active() {
            return Err(HypervisorError::InvalidState {
                op,
                name: name.clone(),
                state,
            });
        }
        let live = d.xml_desc(0).map_err(|e| self.err(op, Some(name), e))?;
        if !volumes_from_xml(&live).iter().any(|v| v.target == target) {
            return Err(HypervisorError::InvalidSpec {
                name: name.clone(),
                reason: format!("the running domain has no volume at {target}"),
            });
        }
        let failed = |why: String| HypervisorError::Backend {
            op,
            target: name.to_string(),
            source: why.into(),
        };
        let xml = render_backup_xml(target, dest, &disk_targets(&live));
        let mut file = tempfile::Builder::new()
            .prefix("cirrus-backup-")
            .suffix(".xml")
            .tempfile()
            .map_err(|e| failed(format!("cannot write the backup XML: {e}")))?;
        std::io::Write::write_all(&mut file, xml.as_bytes())
            .map_err(|e| failed(format!("cannot write the backup XML: {e}")))?;
        let started = std::time::Instant::now();
        let xml_path = file.path().to_string_lossy().into_owned();
        self.virsh(&["backup-begin", name.as_str(), &xml_path])
            .map_err(failed)?;
        // The job runs in QEMU; poll until the domain has no job any more. (`job_info`, not
        // `virt`'s `job_stats`: that one aborts the process when libvirt returns no
        // parameters, as it does for "no job".)
        let none = sys::VIR_DOMAIN_JOB_NONE as i32;
        loop {
            let job = d.job_info().map_err(|e| self.err(op, Some(name), e))?;
            if job.r#type == none {
                break;
            }
            if started.elapsed() > BACKUP_TIMEOUT {
                let _ = self.virsh(&["domjobabort", name.as_str()]);
                return Err(failed(format!(
                    "the backup of {target} did not finish in {BACKUP_TIMEOUT:?}; aborted"
                )));
            }
            std::thread::sleep(BACKUP_POLL);
        }
        // How it ended: the completed job's statistics (`Job type: Completed|Failed|...`).
        let done = self
            .virsh(&["domjobinfo", "--completed", name.as_str()])
            .map_err(failed)?;
        let field = |key: &str| {
            done.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_owned())
        };
        let kind = field("Job type:").unwrap_or_default();
        let operation = field("Operation:").unwrap_or_default();
        if kind != "Completed" || operation != "Backup" {
            return Err(failed(format!(
                "the backup of {target} ended as {kind:?} ({operation:?}): {}",
                field("Error message:").unwrap_or_else(|| "no reason given".into())
            )));
        }
        tracing::info!(domain = %name, target, dest = %dest.display(), took_ms = started.elapsed().as_millis() as u64, "disk backed up");
        Ok(())
    }
}

impl Drop for LibvirtHypervisor {
    fn drop(&mut self) {
        // Dropping the Quiet<Connect> closes the connection without risking a panic.
        let slot = self.conn.get_mut().unwrap_or_else(|p| p.into_inner());
        slot.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_numbers_format_like_libvirt() {
        assert_eq!(version_string(10_000_002), "10.0.2");
        assert_eq!(version_string(11_003_000), "11.3.0");
    }
}
