//! The hypervisor conformance suite against every implementation:
//! - `fake_conformance`: the in-memory fake (always);
//! - `libvirt_test_driver_conformance`: libvirt's in-process `test:///default` (no daemon);
//! - `real_libvirt_conformance`: the real `qemu:///system` daemon booting the test guest from
//!   `hack/build-guest.sh`. It fails with instructions when libvirtd is unreachable, unless
//!   `CIRRUS_SKIP_LIBVIRT=1`. Start the daemon with `hack/start-libvirt.sh`.
//!
//! The volume-disk part ([`conformance::run_disks`]) runs on the fake (`fake_disk_conformance`)
//! and the real daemon (`real_libvirt_disk_conformance`); `test:///default` supports neither
//! config attach nor detach, so it only runs the spec-defined part
//! (`libvirt_test_driver_disks_in_spec`).

mod common;

#[cfg(feature = "libvirt")]
use common::test_guest;

use std::path::{Path, PathBuf};
#[cfg(feature = "libvirt")]
use std::process::Command;
use std::time::Duration;

use cirrus_node_agent::hypervisor::conformance::{self, DiskSuiteConfig, SuiteConfig};
use cirrus_node_agent::hypervisor::fake::FakeHypervisor;
#[cfg(feature = "libvirt")]
use cirrus_node_agent::hypervisor::libvirt::{DEFAULT_URI, LibvirtHypervisor};
use cirrus_node_agent::hypervisor::{DomainName, DomainSpec, Hypervisor, KernelBoot, VirtType};
use uuid::Uuid;

fn plain_spec(dir: &Path, uid: Uuid, marker: &str) -> DomainSpec {
    DomainSpec {
        server_uid: uid,
        server_name: "conformance".into(),
        project: "test".into(),
        virt_type: VirtType::Qemu,
        vcpus: 1,
        memory_mib: 128,
        root_disk: dir.join("root.qcow2"),
        kernel_boot: Some(KernelBoot {
            kernel: dir.join("vmlinuz"),
            initrd: Some(dir.join("initrd.img")),
            cmdline: format!("console=ttyS0 cirrus.marker={marker}"),
        }),
        console_log: dir.join(format!("{uid}.console.log")),
        nics: vec![],
        config_drive: None,
        volumes: Vec::new(),
    }
}

#[test]
fn fake_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let hv = FakeHypervisor::new();
    let make = |uid: Uuid, marker: &str| plain_spec(dir.path(), uid, marker);
    conformance::run(
        &hv,
        &SuiteConfig {
            make_spec: &make,
            console: true,
            timeout: Duration::from_secs(5),
        },
    );
}

/// A 1 MiB raw volume file in `dir` whose first sector reads `CIRRUS-VOLUME <name>`.
fn raw_volume(dir: &Path, name: &str) -> PathBuf {
    use std::io::Write as _;
    let path = dir.join(format!("{name}.raw"));
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "CIRRUS-VOLUME {name}").unwrap();
    f.set_len(1 << 20).unwrap();
    path
}

#[test]
fn fake_disk_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let hv = FakeHypervisor::new();
    let make = |uid: Uuid, marker: &str| plain_spec(dir.path(), uid, marker);
    let make_volume = |name: &str| raw_volume(dir.path(), name);
    let release = |name: &DomainName, target: &str| {
        assert!(hv.guest_release(name, target), "no unplug pending");
    };
    let suite = SuiteConfig {
        make_spec: &make,
        console: true,
        timeout: Duration::from_secs(5),
    };
    conformance::run_disks(
        &hv,
        &DiskSuiteConfig {
            suite: &suite,
            make_volume: &make_volume,
            release: Some(&release),
        },
    );
}

#[test]
fn fake_disk_detach_is_done_at_once_when_guests_release() {
    let dir = tempfile::tempdir().unwrap();
    let hv = FakeHypervisor::new();
    hv.set_guest_releases(true);
    let spec = plain_spec(dir.path(), Uuid::new_v4(), "REL");
    let name = spec.domain_name();
    hv.domain_ensure(&spec).unwrap();
    hv.domain_start(&name).unwrap();
    let disk = cirrus_node_agent::hypervisor::VolumeDisk {
        target: "vdb".into(),
        path: raw_volume(dir.path(), "rel"),
        format: cirrus_node_agent::hypervisor::DiskFormat::Raw,
        serial: "rel-1".into(),
        readonly: true,
    };
    hv.disk_attach(&name, &disk).unwrap();
    assert_eq!(hv.live_volumes(&name).unwrap(), vec![disk.clone()]);
    assert_eq!(
        hv.disk_detach(&name, "vdb").unwrap(),
        cirrus_node_agent::hypervisor::DetachState::Done
    );
    assert_eq!(hv.live_volumes(&name).unwrap(), vec![]);
    assert_eq!(hv.config_volumes(&name).unwrap(), vec![]);
    let log = std::fs::read_to_string(&spec.console_log).unwrap();
    assert!(
        log.contains("BLOCKDEV-ADDED vdb rel-1\nBLOCKDEV-REMOVED vdb\n"),
        "{log}"
    );
}

#[cfg(feature = "libvirt")]
#[test]
fn libvirt_test_driver_disks_in_spec() {
    let dir = tempfile::tempdir().unwrap();
    let hv = LibvirtHypervisor::connect("test:///default").expect("test:///default");
    let make = |uid: Uuid, marker: &str| plain_spec(dir.path(), uid, marker);
    let make_volume = |name: &str| raw_volume(dir.path(), name);
    let suite = SuiteConfig {
        make_spec: &make,
        console: false,
        timeout: Duration::from_secs(5),
    };
    // No hot-plug here: the test driver supports neither config attach nor detach.
    conformance::run_disks_in_spec(
        &hv,
        &DiskSuiteConfig {
            suite: &suite,
            make_volume: &make_volume,
            release: None,
        },
    );
}

#[cfg(feature = "libvirt")]
#[test]
fn libvirt_test_driver_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let hv = LibvirtHypervisor::connect("test:///default").expect("test:///default");
    let make = |uid: Uuid, marker: &str| plain_spec(dir.path(), uid, marker);
    conformance::run(
        &hv,
        &SuiteConfig {
            make_spec: &make,
            console: false,
            timeout: Duration::from_secs(5),
        },
    );
    // The test driver's own "test" domain is not Cirrus-owned and must not be listed.
    assert!(hv.domain_list().unwrap().is_empty());
}

/// The real daemon, or `None` when the caller opted out with `CIRRUS_SKIP_LIBVIRT=1`.
#[cfg(feature = "libvirt")]
fn real_libvirt() -> Option<LibvirtHypervisor> {
    if std::env::var("CIRRUS_SKIP_LIBVIRT").as_deref() == Ok("1") {
        eprintln!("CIRRUS_SKIP_LIBVIRT=1: skipping the real libvirt test");
        return None;
    }
    match LibvirtHypervisor::connect(DEFAULT_URI) {
        Ok(hv) => Some(hv),
        Err(e) => panic!(
            "libvirtd is not reachable at {DEFAULT_URI}: {e}\n\
             install and start it with `hack/install-libvirt.sh && hack/start-libvirt.sh`, \
             or set CIRRUS_SKIP_LIBVIRT=1 to skip the real-daemon tests"
        ),
    }
}

/// A per-test directory the QEMU user (libvirt-qemu) can traverse; removed on drop.
#[cfg(feature = "libvirt")]
fn qemu_readable_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::Builder::new()
        .prefix("cirrus-hv-real-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// A spec maker booting the test guest on the real daemon, with disks in `work`.
#[cfg(feature = "libvirt")]
fn real_spec<'a>(
    guest: &'a Path,
    work: &'a Path,
    virt_type: VirtType,
) -> impl Fn(Uuid, &str) -> DomainSpec + 'a {
    let base_cmdline = std::fs::read_to_string(guest.join("cmdline")).unwrap();
    move |uid: Uuid, marker: &str| {
        let disk = work.join(format!("{uid}.qcow2"));
        let st = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(guest.join("root.qcow2"))
            .arg(&disk)
            .status()
            .expect("qemu-img");
        assert!(st.success(), "qemu-img create overlay");
        DomainSpec {
            server_uid: uid,
            server_name: "conformance".into(),
            project: "test".into(),
            virt_type,
            vcpus: 1,
            memory_mib: 256,
            root_disk: disk,
            kernel_boot: Some(KernelBoot {
                kernel: guest.join("vmlinuz"),
                initrd: Some(guest.join("initrd.img")),
                cmdline: format!("{} cirrus.marker={marker}", base_cmdline.trim()),
            }),
            console_log: work.join(format!("{uid}.console.log")),
            nics: vec![],
            config_drive: None,
            volumes: Vec::new(),
        }
    }
}

#[cfg(feature = "libvirt")]
#[test]
fn real_libvirt_conformance() {
    let Some(hv) = real_libvirt() else { return };
    let guest = test_guest();
    let host = hv.host_info().expect("host_info");
    eprintln!(
        "host: {} {} vcpus={} mem={}MiB kvm={} ({})",
        host.hypervisor_type,
        host.hypervisor_version,
        host.vcpus,
        host.memory_mib,
        host.kvm_usable,
        host.kvm_detail
    );
    let work = qemu_readable_tempdir();
    let make = real_spec(&guest, work.path(), host.virt_type());
    conformance::run(
        &hv,
        &SuiteConfig {
            make_spec: &make,
            console: true,
            timeout: Duration::from_secs(120),
        },
    );
}

#[cfg(feature = "libvirt")]
#[test]
fn real_libvirt_disk_conformance() {
    let Some(hv) = real_libvirt() else { return };
    let guest = test_guest();
    let host = hv.host_info().expect("host_info");
    let work = qemu_readable_tempdir();
    let make = real_spec(&guest, work.path(), host.virt_type());
    let make_volume = |name: &str| raw_volume(work.path(), name);
    let suite = SuiteConfig {
        make_spec: &make,
        console: true,
        timeout: Duration::from_secs(120),
    };
    // The busybox guest never releases an unplugged disk: no release hook.
    conformance::run_disks(
        &hv,
        &DiskSuiteConfig {
            suite: &suite,
            make_volume: &make_volume,
            release: None,
        },
    );
}
