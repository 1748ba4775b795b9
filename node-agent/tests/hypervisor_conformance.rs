//! The hypervisor conformance suite against every implementation:
//! - `fake_conformance`: the in-memory fake (always);
//! - `libvirt_test_driver_conformance`: libvirt's in-process `test:///default` (no daemon);
//! - `real_libvirt_conformance`: the real `qemu:///system` daemon booting the test guest from
//!   `hack/build-guest.sh`. It fails with instructions when libvirtd is unreachable, unless
//!   `CIRRUS_SKIP_LIBVIRT=1`. Start the daemon with `hack/start-libvirt.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cirrus_node_agent::hypervisor::conformance::{self, SuiteConfig};
use cirrus_node_agent::hypervisor::fake::FakeHypervisor;
use cirrus_node_agent::hypervisor::libvirt::{DEFAULT_URI, LibvirtHypervisor};
use cirrus_node_agent::hypervisor::{DomainSpec, Hypervisor, KernelBoot, VirtType};
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

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The real daemon, or `None` when the caller opted out with `CIRRUS_SKIP_LIBVIRT=1`.
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

/// Builds (or finds up to date) the test guest; returns its directory.
fn test_guest() -> PathBuf {
    let dir = std::env::var_os("CIRRUS_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/guest"));
    let out = Command::new(workspace_root().join("hack/build-guest.sh"))
        .arg(&dir)
        .output()
        .expect("run hack/build-guest.sh");
    assert!(
        out.status.success(),
        "hack/build-guest.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// A per-test directory the QEMU user (libvirt-qemu) can traverse; removed on drop.
fn qemu_readable_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::Builder::new()
        .prefix("cirrus-hv-real-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

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
    let base_cmdline = std::fs::read_to_string(guest.join("cmdline")).unwrap();
    let make = |uid: Uuid, marker: &str| {
        let disk = work.path().join(format!("{uid}.qcow2"));
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
            virt_type: host.virt_type(),
            vcpus: 1,
            memory_mib: 256,
            root_disk: disk,
            kernel_boot: Some(KernelBoot {
                kernel: guest.join("vmlinuz"),
                initrd: Some(guest.join("initrd.img")),
                cmdline: format!("{} cirrus.marker={marker}", base_cmdline.trim()),
            }),
            console_log: work.path().join(format!("{uid}.console.log")),
            nics: vec![],
            config_drive: None,
            volumes: Vec::new(),
        }
    };
    conformance::run(
        &hv,
        &SuiteConfig {
            make_spec: &make,
            console: true,
            timeout: Duration::from_secs(120),
        },
    );
}
