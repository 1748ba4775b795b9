//! The hypervisor driver: one narrow trait, [`Hypervisor`], implemented by the real libvirt
//! driver (`libvirt::LibvirtHypervisor`, behind the default cargo feature `libvirt`: a build
//! without it links no libvirt) and an in-memory fake ([`fake::FakeHypervisor`], always built).
//!
//! # Guarantees (checked by `conformance` against every implementation)
//! - Methods are idempotent: `domain_ensure` twice leaves exactly one domain, `domain_delete`
//!   of an absent domain succeeds, starting a running domain or destroying a shut-off one is a
//!   no-op.
//! - Only Cirrus-owned domains are visible through [`Hypervisor::domain_list`]: their names are
//!   `cirrus-<server uid>` ([`DomainName`]) and their libvirt uuid is the server uid.
//! - `domain_state` returns `Ok(None)` only on positive evidence that the domain does not
//!   exist; any doubt (daemon down, timeout) is an `Err` ([`HypervisorError::Unreachable`]).
//! - Volume disks ([`VolumeDisk`]) are attached to the live domain *and* its persistent
//!   definition ([`Hypervisor::disk_attach`]); detaching is asynchronous
//!   ([`Hypervisor::disk_detach`] says [`DetachState::Pending`] while the guest still holds
//!   the device) and never reports done while the live domain has the disk.
//!
//! # Volumes: the contract for the server reconciler
//! - Put the server's attached volumes in [`DomainSpec::volumes`] (any order: they are
//!   rendered and digested sorted by target), then `domain_ensure`: a changed volume set only
//!   redefines the persistent configuration ([`EnsureOutcome::Updated`]) and never restarts or
//!   touches a running domain — an `Updated` whose old and new specs differ only in volumes
//!   ([`DomainSpec::same_except_volumes`]) needs no reboot.
//! - Then `disk_attach` every wanted volume (idempotent; it plugs only what the live domain
//!   lacks, and on a shut-off domain it only edits the definition) and `disk_detach` every
//!   disk from [`Hypervisor::disks`] whose serial is no longer wanted, until it says
//!   [`DetachState::Done`]; report the volume `detaching` meanwhile and requeue. Powering the
//!   domain off completes a pending detach. Either order (ensure first or attach first) ends
//!   in the same state; ensure first saves one redefinition.
//! - Report a volume attached (`in-use`, device name) once [`Hypervisor::disks`] lists its
//!   serial, and detached (`available`) only after `disk_detach` said `Done`: never while the
//!   live domain still has it. A saved (suspended-to-disk) domain refuses both
//!   ([`HypervisorError::InvalidState`]): keep the volume as it is until it runs again.
//! - Targets are `vdb`..`vdz` ([`pick_volume_target`]); `vdb` is taken by the config drive
//!   when the spec has one. The guest names hot-plugged disks in probe order, so the guest's
//!   name may differ from the target: identify a volume by its serial
//!   (`/sys/block/vdX/serial`, [`VolumeDisk::serial_for`]).
//!
//! # Caveats
//! The trait is synchronous because libvirt's client library is blocking. Async callers run
//! calls on the blocking pool (`tokio::task::spawn_blocking`); every implementation is
//! `Send + Sync` and meant to be shared as `Arc<dyn Hypervisor>`.

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod fake;
pub mod kvm;
#[cfg(feature = "libvirt")]
pub mod libvirt;
pub mod xml;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use xml::render_domain_xml;

/// Prefix of every Cirrus-owned domain name; the rest is the owning server's uid.
pub const DOMAIN_NAME_PREFIX: &str = "cirrus-";

/// The libvirt name of a Cirrus domain: `cirrus-<server uid>` (deterministic from the uid, so
/// creating is always ensuring and nothing can be orphaned by a crash between steps).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(String);

impl DomainName {
    /// The domain name of the server with this uid.
    pub fn for_server(uid: Uuid) -> Self {
        Self(format!("{DOMAIN_NAME_PREFIX}{}", uid.hyphenated()))
    }

    /// Parses a libvirt domain name; `None` when it is not a Cirrus-owned name
    /// (`cirrus-` followed by a hyphenated lowercase uuid).
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix(DOMAIN_NAME_PREFIX)?;
        let uid = Uuid::try_parse(rest).ok()?;
        (uid.hyphenated().to_string() == rest).then(|| Self(name.to_owned()))
    }

    /// The owning server's uid.
    pub fn server_uid(&self) -> Uuid {
        Uuid::try_parse(&self.0[DOMAIN_NAME_PREFIX.len()..]).expect("validated on construction")
    }

    /// The name as libvirt knows it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DomainName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| format!("{s:?} is not a Cirrus domain name (cirrus-<uuid>)"))
    }
}

impl From<DomainName> for String {
    fn from(n: DomainName) -> String {
        n.0
    }
}

/// How guest code runs: hardware virtualization or QEMU's software emulator (TCG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VirtType {
    /// KVM (`<domain type='kvm'>`), only when [`HostInfo::kvm_usable`] says it really works.
    Kvm,
    /// TCG emulation (`<domain type='qemu'>`): slower, works everywhere.
    Qemu,
}

impl VirtType {
    /// The libvirt `<domain type=...>` value.
    pub fn as_str(self) -> &'static str {
        match self {
            VirtType::Kvm => "kvm",
            VirtType::Qemu => "qemu",
        }
    }
}

/// Direct kernel boot (the AMI convention: an image's `kernel_id` / `ramdisk_id` /
/// `os_command_line` properties): QEMU loads the kernel and initrd itself, no bootloader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelBoot {
    /// Kernel image on the host (the `aki` image, cached on the node).
    pub kernel: PathBuf,
    /// Optional initrd on the host (the `ari` image).
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
}

/// One guest NIC: a tap device libvirt creates and plugs into an Open vSwitch bridge as an
/// access port of the network's local VLAN (so the guest never sees other networks' frames,
/// not even before the firewall flows are in place).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
    /// The OVS bridge, e.g. `br-int`.
    pub bridge: String,
    /// The OVS `external_ids:iface-id`: the Cirrus port uid.
    pub interface_id: Uuid,
    /// The guest MAC address (the port's, `fa:16:3e:xx:xx:xx`).
    pub mac: String,
    /// The host-side tap name, [`NicSpec::tap_name`] of the port uid (at most 15 bytes).
    pub tap: String,
    /// The network's local VLAN on this host's bridge; `None`: untagged.
    pub vlan_tag: Option<u16>,
    /// The network's MTU, handed to the guest's virtio NIC; `None`: the default.
    pub mtu: Option<u32>,
    /// Let the guest and the host offload checksums (and segmentation) to each other. Off
    /// for Open vSwitch's userspace datapath: its conntrack checks TCP/UDP checksums, and a
    /// packet with a checksum left for offload is `+inv` there, so the firewall would drop
    /// every connection.
    #[serde(default = "default_true")]
    pub offload: bool,
}

fn default_true() -> bool {
    true
}

impl NicSpec {
    /// The tap device name for a port: `tap` plus the first 11 characters of its uid, as
    /// Neutron names them, so an operator can map a device to its port at a glance.
    pub fn tap_name(port_uid: Uuid) -> String {
        let id = port_uid.hyphenated().to_string();
        format!("tap{}", &id[..11])
    }
}

/// Everything the hypervisor needs to define one server's domain. Built by the node agent from
/// the Server, its Flavor and its image; rendered to XML by [`render_domain_xml`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainSpec {
    /// The owning server's uid: the domain's uuid and (through [`DomainName`]) its name.
    pub server_uid: Uuid,
    /// The owning server's name, recorded in the domain metadata so orphans can be traced.
    pub server_name: String,
    /// The owning server's project, recorded in the domain metadata.
    pub project: String,
    /// KVM or TCG; pick [`HostInfo::virt_type`] (the libvirt driver refuses KVM where it does
    /// not work).
    pub virt_type: VirtType,
    /// vCPUs, from the flavor.
    pub vcpus: u32,
    /// Memory in MiB, from the flavor.
    pub memory_mib: u64,
    /// The root disk (a qcow2 file, the server's copy-on-write overlay), attached as `vda`.
    pub root_disk: PathBuf,
    /// Direct kernel boot, when the image names a kernel; otherwise the disk is booted.
    pub kernel_boot: Option<KernelBoot>,
    /// Where the serial console is written (appended across boots), read by `console-log`.
    pub console_log: PathBuf,
    /// NICs, in guest order (eth0, eth1, ...).
    pub nics: Vec<NicSpec>,
    /// A config drive (an ISO9660 image labelled `config-2`), attached read-only as the
    /// second virtio disk; `None`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_drive: Option<PathBuf>,
    /// Attached volumes (virtio disks after the root disk and the config drive), in any
    /// order. Skipped in the JSON form when empty, so specs without volumes keep the digest
    /// they had before volumes existed (no redefinition of existing domains on upgrade).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeDisk>,
}

/// The on-disk format of a volume's data, as QEMU must open it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// Raw bytes (LVM logical volumes, loop devices, raw files).
    Raw,
    /// A qcow2 file (the file backend).
    Qcow2,
}

impl DiskFormat {
    /// The libvirt `<driver type=...>` value.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }

    /// Parses a libvirt `<driver type=...>` value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "raw" => Some(DiskFormat::Raw),
            "qcow2" => Some(DiskFormat::Qcow2),
            _ => None,
        }
    }
}

/// Longest serial a virtio-blk disk carries (the guest sees at most 20 bytes).
pub const SERIAL_MAX: usize = 20;

/// The root disk's target; never a volume's.
pub const ROOT_TARGET: &str = "vda";

/// The config drive's target when the spec has one; then never a volume's.
pub const CONFIG_DRIVE_TARGET: &str = "vdb";

/// One volume attached to a domain as a virtio disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VolumeDisk {
    /// The libvirt target, `vdb`..`vdz` (a hint for the guest's name, see the module docs).
    pub target: String,
    /// The volume's data on the host: a file (qcow2 or raw) or a block device (`/dev/...`,
    /// rendered as `<disk type='block'>`).
    pub path: PathBuf,
    /// How QEMU opens it.
    pub format: DiskFormat,
    /// The disk serial the guest sees (`/sys/block/vdX/serial`): [`VolumeDisk::serial_for`]
    /// the volume's uid. How attached volumes are identified.
    pub serial: String,
    /// Attach read-only.
    #[serde(default)]
    pub readonly: bool,
}

impl VolumeDisk {
    /// The serial for a volume uid: the first [`SERIAL_MAX`] characters of its hyphenated
    /// form (as Nova does; unique enough: 72 random bits).
    pub fn serial_for(volume_uid: Uuid) -> String {
        volume_uid.hyphenated().to_string()[..SERIAL_MAX].to_owned()
    }

    /// Whether the path is a block device (checked on the host; a path that can't be read
    /// counts as a block device when it lies under `/dev/`).
    pub fn is_block_device(&self) -> bool {
        use std::os::unix::fs::FileTypeExt as _;
        match std::fs::metadata(&self.path) {
            Ok(m) => m.file_type().is_block_device(),
            Err(_) => self.path.starts_with("/dev/"),
        }
    }
}

/// Whether `target` is a valid volume target name: `vd` and one letter `b`..`z`.
pub fn is_volume_target(target: &str) -> bool {
    matches!(target.as_bytes(), [b'v', b'd', c] if (b'b'..=b'z').contains(c))
}

/// The first free volume target (`vdb`..`vdz`) given the targets in use, skipping the config
/// drive's [`CONFIG_DRIVE_TARGET`] when the domain has one; `None` when all are taken.
pub fn pick_volume_target<'a>(
    taken: impl IntoIterator<Item = &'a str>,
    config_drive: bool,
) -> Option<String> {
    let taken: Vec<&str> = taken.into_iter().collect();
    (b'b'..=b'z')
        .map(|c| format!("vd{}", c as char))
        .find(|t| !(taken.contains(&t.as_str()) || (config_drive && t == CONFIG_DRIVE_TARGET)))
}

/// How far a [`Hypervisor::disk_detach`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DetachState {
    /// The disk is in neither the live domain nor its persistent definition.
    Done,
    /// The detach was requested (and the disk removed from the persistent definition) but
    /// the live domain still has it: the guest has not released it. Call again later;
    /// powering the domain off completes it.
    Pending,
}

impl DomainSpec {
    /// The domain's libvirt name, `cirrus-<server uid>`.
    pub fn domain_name(&self) -> DomainName {
        DomainName::for_server(self.server_uid)
    }

    /// A stable digest of the spec (FNV-1a 64 over its JSON form, volumes sorted by target),
    /// stored in the domain's metadata so `domain_ensure` can tell whether a defined domain
    /// matches without comparing libvirt's normalized XML. Volumes are part of it: a changed
    /// volume set redefines the persistent configuration (see the module docs).
    pub fn digest(&self) -> String {
        let mut canonical = self.clone();
        canonical.volumes.sort_by(|a, b| a.target.cmp(&b.target));
        let json = serde_json::to_vec(&canonical).expect("DomainSpec serializes");
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in json {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// Whether `other` is this spec but for its volumes: a redefinition between the two needs
    /// no restart (volumes are hot-plugged).
    pub fn same_except_volumes(&self, other: &DomainSpec) -> bool {
        let mut a = self.clone();
        a.volumes.clear();
        let mut b = other.clone();
        b.volumes.clear();
        a == b
    }

    /// Checks the volumes: valid, unique targets that are not the root disk's or the config
    /// drive's, unique non-empty serials of at most [`SERIAL_MAX`] characters.
    ///
    /// # Errors
    /// What is wrong, for [`HypervisorError::InvalidSpec`].
    pub fn validate_volumes(&self) -> Result<(), String> {
        let mut targets = std::collections::BTreeSet::new();
        let mut serials = std::collections::BTreeSet::new();
        for v in &self.volumes {
            check_volume(v, self.config_drive.is_some())?;
            if !targets.insert(v.target.as_str()) {
                return Err(format!("two volumes use target {}", v.target));
            }
            if !serials.insert(v.serial.as_str()) {
                return Err(format!("two volumes have serial {}", v.serial));
            }
        }
        Ok(())
    }
}

/// Why `disk` can't join `view`: its target holds another disk, or its serial is attached at
/// another target.
pub(crate) fn volume_conflict(
    view: &[VolumeDisk],
    disk: &VolumeDisk,
) -> std::result::Result<(), String> {
    for v in view {
        if v.target == disk.target && v.serial != disk.serial {
            return Err(format!(
                "target {} holds another disk (serial {})",
                v.target, v.serial
            ));
        }
        if v.serial == disk.serial && v.target != disk.target {
            return Err(format!(
                "serial {} is already attached at {}",
                v.serial, v.target
            ));
        }
    }
    Ok(())
}

/// Checks one volume disk on its own (target, serial); see [`DomainSpec::validate_volumes`].
///
/// # Errors
/// What is wrong.
pub fn check_volume(v: &VolumeDisk, config_drive: bool) -> Result<(), String> {
    if !is_volume_target(&v.target) {
        return Err(format!("volume target {:?} is not vdb..vdz", v.target));
    }
    if config_drive && v.target == CONFIG_DRIVE_TARGET {
        return Err(format!("volume target {} is the config drive's", v.target));
    }
    if v.serial.is_empty()
        || v.serial.len() > SERIAL_MAX
        || !v
            .serial
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "volume serial {:?} must be 1..={SERIAL_MAX} characters of [A-Za-z0-9_-]",
            v.serial
        ));
    }
    Ok(())
}

/// A domain's power state, as the hypervisor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DomainState {
    /// Running (libvirt's "blocked", i.e. idle, counts as running).
    Running,
    /// Paused (`domain_suspend`), memory kept.
    Paused,
    /// Shutting down after an ACPI request.
    ShuttingDown,
    /// Defined but not running.
    ShutOff,
    /// The guest crashed.
    Crashed,
    /// Suspended by the guest's power management (S3/S4).
    PmSuspended,
    /// Shut off *with* a managed save image ([`Hypervisor::domain_save`], OpenStack's
    /// "suspend"): no QEMU process, the guest's memory and device state are on disk, and the
    /// next [`Hypervisor::domain_start`] restores it (the guest resumes where it was, no boot).
    /// Not active.
    Saved,
    /// The hypervisor reports no state (transitional).
    NoState,
}

impl DomainState {
    /// Whether a QEMU process exists for the domain (anything but shut off / saved /
    /// crashed).
    pub fn is_active(self) -> bool {
        !matches!(
            self,
            DomainState::ShutOff | DomainState::Saved | DomainState::Crashed
        )
    }
}

/// A Cirrus-owned domain seen on the host ([`Hypervisor::domain_list`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainSummary {
    /// Its name, `cirrus-<server uid>`.
    pub name: DomainName,
    /// Its power state.
    pub state: DomainState,
}

/// What [`Hypervisor::domain_ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnsureOutcome {
    /// The domain did not exist and was defined.
    Created,
    /// The domain existed with a different spec and was redefined. A running domain keeps its
    /// old configuration until it is next started (hard reboot or stop/start).
    Updated,
    /// The domain already matched the spec; nothing was done.
    Unchanged,
}

/// Soft or hard reboot, as Nova's `reboot` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RebootKind {
    /// Ask the guest (ACPI power button; libvirt restarts it after it powers off).
    Soft,
    /// Power-cycle: destroy and start again (also starts a shut-off domain and picks up a
    /// redefined configuration).
    Hard,
}

/// The host as the hypervisor sees it: the Node's capacity and hypervisor facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// The host name.
    pub hostname: String,
    /// Logical CPUs.
    pub vcpus: u32,
    /// Physical memory in MiB.
    pub memory_mib: u64,
    /// Hypervisor type, e.g. `QEMU` (libvirt's driver type) or `fake`.
    pub hypervisor_type: String,
    /// Hypervisor version, e.g. `10.0.2`.
    pub hypervisor_version: String,
    /// Whether KVM really works here (probed, not assumed: `/dev/kvm` may exist and still be
    /// unusable, e.g. KVM-PVM hosts).
    pub kvm_usable: bool,
    /// Why KVM is or is not used, for the Node's status.
    pub kvm_detail: String,
}

impl HostInfo {
    /// The virtualization type domains on this host should use.
    pub fn virt_type(&self) -> VirtType {
        if self.kvm_usable {
            VirtType::Kvm
        } else {
            VirtType::Qemu
        }
    }
}

/// Names the trait's operations (fault injection, error context, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[allow(missing_docs)] // each variant is the method of the same name
pub enum HypervisorOp {
    HostInfo,
    DomainEnsure,
    DomainState,
    DomainList,
    DomainStart,
    DomainShutdown,
    DomainDestroy,
    DomainReboot,
    DomainSuspend,
    DomainResume,
    DomainSave,
    DomainDelete,
    DiskAttach,
    DiskDetach,
    Disks,
    DiskBackup,
}

impl fmt::Display for HypervisorOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            HypervisorOp::HostInfo => "host_info",
            HypervisorOp::DomainEnsure => "domain_ensure",
            HypervisorOp::DomainState => "domain_state",
            HypervisorOp::DomainList => "domain_list",
            HypervisorOp::DomainStart => "domain_start",
            HypervisorOp::DomainShutdown => "domain_shutdown",
            HypervisorOp::DomainDestroy => "domain_destroy",
            HypervisorOp::DomainReboot => "domain_reboot",
            HypervisorOp::DomainSuspend => "domain_suspend",
            HypervisorOp::DomainResume => "domain_resume",
            HypervisorOp::DomainSave => "domain_save",
            HypervisorOp::DomainDelete => "domain_delete",
            HypervisorOp::DiskAttach => "disk_attach",
            HypervisorOp::DiskDetach => "disk_detach",
            HypervisorOp::Disks => "disks",
            HypervisorOp::DiskBackup => "disk_backup",
        };
        f.write_str(s)
    }
}

/// Errors of a [`Hypervisor`]. The source is never repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    /// The domain does not exist (positive evidence). Only returned by operations that need an
    /// existing domain; `domain_state` says `Ok(None)` instead and `domain_delete` succeeds.
    #[error("domain {0} does not exist")]
    NotFound(DomainName),
    /// The hypervisor could not be reached or did not answer: nothing can be concluded about
    /// the domain. Retry later; never treat as "gone".
    #[error("hypervisor unreachable during {op}: {reason}")]
    Unreachable {
        /// The operation attempted.
        op: HypervisorOp,
        /// What failed (connection refused, daemon restarted, ...).
        reason: String,
    },
    /// The domain is in a state that does not allow the operation (e.g. a soft reboot of a
    /// shut-off domain, resuming a domain that is not running).
    #[error("cannot {op} domain {name}: it is {state:?}")]
    InvalidState {
        /// The operation attempted.
        op: HypervisorOp,
        /// The domain.
        name: DomainName,
        /// Its state at the time.
        state: DomainState,
    },
    /// The spec cannot be realized on this host (e.g. KVM requested where it does not work).
    #[error("invalid domain spec for {name}: {reason}")]
    InvalidSpec {
        /// The domain.
        name: DomainName,
        /// Why.
        reason: String,
    },
    /// The hypervisor refused or failed the operation.
    #[error("{op} failed for {target}")]
    Backend {
        /// The operation attempted.
        op: HypervisorOp,
        /// The domain name or `host`.
        target: String,
        /// The hypervisor's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl HypervisorError {
    /// Whether retrying the same call later may succeed (the reconciler backs off and retries;
    /// non-retryable errors need a spec change).
    pub fn retryable(&self) -> bool {
        !matches!(self, HypervisorError::InvalidSpec { .. })
    }

    /// Whether this is [`HypervisorError::Unreachable`].
    pub fn is_unreachable(&self) -> bool {
        matches!(self, HypervisorError::Unreachable { .. })
    }
}

/// Result alias for hypervisor calls.
pub type Result<T, E = HypervisorError> = std::result::Result<T, E>;

/// The hypervisor driver contract. Every method is idempotent and names its resource first.
/// See the [module docs](self) for the guarantees every implementation gives.
pub trait Hypervisor: Send + Sync + fmt::Debug {
    /// Host capacity and hypervisor facts (for the Node object).
    fn host_info(&self) -> Result<HostInfo>;

    /// Defines the domain for `spec`, or redefines it when the defined one differs (compared
    /// by [`DomainSpec::digest`]). Never creates a second domain. Does not start it.
    fn domain_ensure(&self, spec: &DomainSpec) -> Result<EnsureOutcome>;

    /// The domain's state; `Ok(None)` means it positively does not exist.
    fn domain_state(&self, name: &DomainName) -> Result<Option<DomainState>>;

    /// All Cirrus-owned domains (name `cirrus-<uuid>`) with their states, sorted by name.
    fn domain_list(&self) -> Result<Vec<DomainSummary>>;

    /// Starts a defined domain — restoring it when it is [`DomainState::Saved`] (the managed
    /// save image is consumed). A no-op when it is already active (running or paused).
    fn domain_start(&self, name: &DomainName) -> Result<()>;

    /// Asks the guest to power off (ACPI power button) and returns without waiting. A no-op
    /// when the domain is not active. A guest may ignore it: the caller falls back to
    /// [`Hypervisor::domain_destroy`] after a grace period.
    fn domain_shutdown(&self, name: &DomainName) -> Result<()>;

    /// Powers the domain off at once (pulls the plug). A no-op when it is not active.
    fn domain_destroy(&self, name: &DomainName) -> Result<()>;

    /// Reboots the domain. Soft needs a running guest ([`HypervisorError::InvalidState`]
    /// otherwise); hard works from any state and leaves the domain running.
    fn domain_reboot(&self, name: &DomainName, kind: RebootKind) -> Result<()>;

    /// Pauses the domain's vCPUs (memory kept). A no-op when already paused.
    fn domain_suspend(&self, name: &DomainName) -> Result<()>;

    /// Resumes a paused domain. A no-op when it is running.
    fn domain_resume(&self, name: &DomainName) -> Result<()>;

    /// Saves a running or paused domain's memory and device state to disk and stops it
    /// (libvirt's managed save, OpenStack's "suspend"): the domain becomes
    /// [`DomainState::Saved`] and the next [`Hypervisor::domain_start`] restores it. A no-op
    /// when it is already saved; [`HypervisorError::NotFound`] when it does not exist;
    /// [`HypervisorError::InvalidState`] when it is shut off (or crashed) without a saved
    /// state, or in a transitional state.
    fn domain_save(&self, name: &DomainName) -> Result<()>;

    /// Destroys (if active) and undefines the domain, including NVRAM, managed-save image and
    /// snapshot metadata. Succeeds when the domain does not exist. Disk and console-log files
    /// are the caller's (they belong to the storage driver and the node agent).
    fn domain_delete(&self, name: &DomainName) -> Result<()>;

    /// Attaches a volume: hot-plugs it into the live domain when it is active and adds it to
    /// the persistent definition (only the parts that lack it). Idempotent: a disk already at
    /// `disk.target` with the same serial is success. Errors: [`HypervisorError::NotFound`];
    /// [`HypervisorError::InvalidSpec`] for a bad target/serial, a target held by another
    /// disk or the serial attached at another target; [`HypervisorError::InvalidState`] for a
    /// [`DomainState::Saved`] domain (its saved device state would no longer match).
    fn disk_attach(&self, name: &DomainName, disk: &VolumeDisk) -> Result<()>;

    /// Detaches the volume at `target`: removes it from the persistent definition and asks the
    /// live domain to unplug it. [`DetachState::Pending`] while the live domain still has it
    /// (the guest must release it; call again to re-check, which re-requests the unplug);
    /// [`DetachState::Done`] once it is in neither (at once for an inactive domain, an absent
    /// target, or an absent domain). Never `Done` while the guest may still use the disk.
    /// [`HypervisorError::InvalidState`] for a [`DomainState::Saved`] domain that has it.
    ///
    /// Blocking: on libvirt a live unplug the guest does not complete at once (a paused or
    /// still-booting guest) makes the call wait ~5 s (libvirt's wait for DEVICE_DELETED)
    /// before it answers `Pending`; a guest that releases answers in ~0.1 s (measured with the
    /// test guest). Call it on the blocking pool and requeue with a backoff while `Pending`.
    fn disk_detach(&self, name: &DomainName, target: &str) -> Result<DetachState>;

    /// The attached volumes (disks with a serial; not the root disk or the config drive),
    /// sorted by target: the live view when the domain is active, else the persistent one.
    fn disks(&self, name: &DomainName) -> Result<Vec<VolumeDisk>>;

    /// Copies the volume at `target` of an active (running or paused) domain into `dest`
    /// while the guest keeps running: afterwards `dest` is a standalone qcow2 file (no
    /// backing file) holding the disk's content as of the call — crash-consistent, like
    /// pulling the plug at that moment (the guest is neither paused nor quiesced). This is
    /// how a volume a running QEMU holds (and image-locks) is snapshotted.
    ///
    /// `dest` must not exist (remove a leftover first); its directory must be writable by
    /// the hypervisor. Blocks until the copy is complete (seconds per GiB written). Errors:
    /// [`HypervisorError::NotFound`]; [`HypervisorError::InvalidState`] when the domain is
    /// not active (then the file is not held: copy it offline); [`HypervisorError::InvalidSpec`]
    /// when the live domain has no volume at `target`; [`HypervisorError::Backend`] when
    /// the copy failed (then `dest` may hold a partial file: the caller removes it).
    fn disk_backup(&self, name: &DomainName, target: &str, dest: &Path) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_name_round_trips_and_rejects_foreign_names() {
        let uid = Uuid::parse_str("6f1c2a7e-8d7b-4c1e-9a55-0b8e6f2d3c41").unwrap();
        let n = DomainName::for_server(uid);
        assert_eq!(n.as_str(), "cirrus-6f1c2a7e-8d7b-4c1e-9a55-0b8e6f2d3c41");
        assert_eq!(DomainName::parse(n.as_str()), Some(n.clone()));
        assert_eq!(n.server_uid(), uid);
        for bad in [
            "test",
            "cirrus-",
            "cirrus-xyz",
            "cirrus-6F1C2A7E-8D7B-4C1E-9A55-0B8E6F2D3C41",
            "cirrus-6f1c2a7e8d7b4c1e9a550b8e6f2d3c41",
            "other-6f1c2a7e-8d7b-4c1e-9a55-0b8e6f2d3c41",
        ] {
            assert_eq!(DomainName::parse(bad), None, "{bad}");
        }
    }
}
