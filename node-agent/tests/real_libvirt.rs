//! The node agent on the REAL libvirt daemon (`qemu:///system`) booting the test guest from
//! `hack/build-guest.sh`, uploaded as three images (aki kernel, ari ramdisk, qcow2 root naming
//! them): ACTIVE, console marker, reboot (marker twice), delete (no domain, no instance dir).
//!
//! Fails with instructions when libvirtd is unreachable, unless `CIRRUS_SKIP_LIBVIRT=1`.
//! Whatever happens, the domain and the state directory are removed (Drop guards).

mod common;

use common::test_guest;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cirrus_crds::kinds::server::ServerPhase;
use cirrus_node_agent::hypervisor::libvirt::{DEFAULT_URI, LibvirtHypervisor};
use cirrus_node_agent::hypervisor::{DomainName, Hypervisor};
use cirrus_node_agent::servers::ServerConfig;
use common::*;
use uuid::Uuid;

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// Removes the server's domain and the state directory however the test ends.
struct Cleanup {
    uids: Arc<Mutex<Vec<Uuid>>>,
    state: Option<tempfile::TempDir>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(hv) = LibvirtHypervisor::connect(DEFAULT_URI) {
            for uid in self.uids.lock().unwrap().iter() {
                let _ = hv.domain_delete(&DomainName::for_server(*uid));
            }
        }
        drop(self.state.take());
    }
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_libvirt_server_boots() {
    if std::env::var("CIRRUS_SKIP_LIBVIRT").as_deref() == Ok("1") {
        eprintln!("CIRRUS_SKIP_LIBVIRT=1: skipping the real libvirt test");
        return;
    }
    let hv = match LibvirtHypervisor::connect(DEFAULT_URI) {
        Ok(hv) => Arc::new(hv),
        Err(e) => panic!(
            "libvirtd is not reachable at {DEFAULT_URI}: {e}\n\
             install and start it with `hack/install-libvirt.sh && hack/start-libvirt.sh`, \
             or set CIRRUS_SKIP_LIBVIRT=1 to skip the real-daemon tests"
        ),
    };
    let guest = test_guest();
    let state = tempfile::Builder::new()
        .prefix("cirrus-agent-real-")
        .tempdir()
        .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        // QEMU (libvirt-qemu) must traverse it to reach the disk, kernel and console log.
        std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let state_path = state.path().to_path_buf();
    let uids = Arc::new(Mutex::new(Vec::new()));
    let _cleanup = Cleanup {
        uids: uids.clone(),
        state: Some(state),
    };

    let mut h = harness().await;
    h.flavor("tiny", 1, 256, 1).await;
    let cmdline = std::fs::read_to_string(guest.join("cmdline")).unwrap();
    h.guest_images(
        "guest",
        &guest.join("vmlinuz"),
        &guest.join("initrd.img"),
        &guest.join("root.qcow2"),
        cmdline.trim(),
    )
    .await;

    let mut config = agent_config("real-node", &state_path, hv.clone());
    config.servers = ServerConfig {
        shutdown_grace: Duration::from_secs(30),
        poll: Duration::from_millis(500),
        resync: Duration::from_secs(5),
        concurrency: 2,
    };
    let ctx = h.start_agent(config).await;

    let created = h.server("real-1", "tiny", "guest", "real-node").await;
    let uid = Uuid::parse_str(created.metadata.uid.as_deref().unwrap()).unwrap();
    uids.lock().unwrap().push(uid);
    let name = DomainName::for_server(uid);
    let servers = h.servers();

    eventually("real-1 ACTIVE", BOOT_TIMEOUT, async || {
        let s = servers.get("real-1").await.ok()?;
        if s.status.phase == Some(ServerPhase::Error) {
            panic!("server went to ERROR: {:?}", s.status);
        }
        (s.status.phase == Some(ServerPhase::Active)).then_some(())
    })
    .await;
    eprintln!("ACTIVE after {} status writes", ctx.status_writes(uid));
    let log_of = || {
        cirrus_node_agent::console_log(&state_path, uid, 1 << 20)
            .unwrap()
            .unwrap_or_default()
    };
    eventually("boot marker", BOOT_TIMEOUT, async || {
        (count(&log_of(), "CIRRUS-READY real-1") >= 1).then_some(())
    })
    .await;
    assert!(log_of().contains("CIRRUS-BOOT real-1"));

    // Reboot bump → the guest boots again (marker twice), recorded once.
    let mut s = servers.get("real-1").await.unwrap();
    s.spec.reboot_count = 1;
    servers.replace(&s).await.unwrap();
    eventually("second boot marker", BOOT_TIMEOUT, async || {
        (count(&log_of(), "CIRRUS-BOOT real-1") >= 2).then_some(())
    })
    .await;
    eventually("reboot recorded, ACTIVE", BOOT_TIMEOUT, async || {
        let s = servers.get("real-1").await.ok()?;
        (s.status.observed_reboot_count == 1 && s.status.phase == Some(ServerPhase::Active))
            .then_some(())
    })
    .await;

    // Delete → no domain, no instance directory, object gone.
    servers.delete("real-1").await.unwrap();
    eventually("server gone", Duration::from_secs(60), async || {
        servers
            .get_opt("real-1")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(hv.domain_state(&name).unwrap(), None, "domain left behind");
    assert!(
        !state_path.join("instances").join(uid.to_string()).exists(),
        "instance directory left behind"
    );
    h.stop_agent().await;
}

/// Deletes a domain however the test ends.
struct DomainCleanup(DomainName);

impl Drop for DomainCleanup {
    fn drop(&mut self) {
        if let Ok(hv) = LibvirtHypervisor::connect(DEFAULT_URI)
            && let Err(e) = hv.domain_delete(&self.0)
        {
            eprintln!("cleanup: deleting {} failed: {e}", self.0);
        }
    }
}

/// Detaches a loop device however the test ends.
struct LoopGuard(String);

impl Drop for LoopGuard {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// Polls the console log until a line equals `line`; returns how long it took.
fn wait_line(log: &Path, line: &str, n: usize, timeout: Duration) -> Duration {
    let start = std::time::Instant::now();
    loop {
        let text = std::fs::read(log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if text.lines().filter(|l| l.trim_end() == line).count() >= n {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "no {n} x '{line}' on the console after {timeout:?}; console:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Hot-plug of a raw volume into the running test guest, as the volume attach path does it:
/// the guest sees it (serial and first-sector marker), detach, re-attach, power-off.
/// Measures attach → visible in the guest (after the domain reports the disk). What detach
/// does on this guest (measured): QEMU 10 + the Debian cloud kernel's PCIe native hot-plug
/// release the disk within libvirt's wait, so the first `disk_detach` of the running guest is
/// `Done` in ~0.1 s (the platform notes saw a busybox guest that never released; this guest
/// must, and the test fails when it does not). A *paused* guest can't release it: `Pending`,
/// still listed, until it is resumed.
#[test]
fn real_libvirt_disk_hotplug() {
    use cirrus_node_agent::hypervisor::{
        DetachState, DiskFormat, DomainSpec, KernelBoot, VolumeDisk,
    };
    use std::io::Write as _;
    use std::time::Instant;

    if std::env::var("CIRRUS_SKIP_LIBVIRT").as_deref() == Ok("1") {
        eprintln!("CIRRUS_SKIP_LIBVIRT=1: skipping the real libvirt test");
        return;
    }
    let hv = match LibvirtHypervisor::connect(DEFAULT_URI) {
        Ok(hv) => hv,
        Err(e) => panic!(
            "libvirtd is not reachable at {DEFAULT_URI}: {e}\n\
             install and start it with `hack/install-libvirt.sh && hack/start-libvirt.sh`, \
             or set CIRRUS_SKIP_LIBVIRT=1 to skip the real-daemon tests"
        ),
    };
    let guest = test_guest();
    let work = tempfile::Builder::new()
        .prefix("cirrus-hotplug-")
        .tempdir()
        .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let uid = Uuid::new_v4();
    let name = DomainName::for_server(uid);
    let _cleanup = DomainCleanup(name.clone());
    let root = work.path().join("root.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(guest.join("root.qcow2"))
        .arg(&root)
        .status()
        .expect("qemu-img");
    assert!(st.success());
    let cmdline = std::fs::read_to_string(guest.join("cmdline")).unwrap();
    let log = work.path().join("console.log");
    let spec = DomainSpec {
        server_uid: uid,
        server_name: "hotplug".into(),
        project: "test".into(),
        virt_type: hv.host_info().expect("host_info").virt_type(),
        vcpus: 1,
        memory_mib: 256,
        root_disk: root,
        kernel_boot: Some(KernelBoot {
            kernel: guest.join("vmlinuz"),
            initrd: Some(guest.join("initrd.img")),
            cmdline: format!("{} cirrus.marker=hotplug", cmdline.trim()),
        }),
        console_log: log.clone(),
        nics: vec![],
        config_drive: None,
        volumes: Vec::new(),
    };
    hv.domain_ensure(&spec).expect("ensure");
    hv.domain_start(&name).expect("start");
    wait_line(&log, "CIRRUS-READY hotplug", 1, BOOT_TIMEOUT);
    wait_line(&log, "BLOCKDEVS vda", 1, Duration::from_secs(1));

    // A raw volume whose first sector holds a marker.
    let serial = VolumeDisk::serial_for(Uuid::new_v4());
    let data = work.path().join("vol.raw");
    {
        let mut f = std::fs::File::create(&data).unwrap();
        writeln!(f, "CIRRUS-VOLUME {serial}").unwrap();
        f.set_len(4 << 20).unwrap();
    }
    let disk = VolumeDisk {
        target: "vdb".into(),
        path: data,
        format: DiskFormat::Raw,
        serial: serial.clone(),
        readonly: false,
    };

    let t = Instant::now();
    hv.disk_attach(&name, &disk).expect("attach");
    let attach_call = t.elapsed();
    assert_eq!(hv.disks(&name).unwrap(), vec![disk.clone()]);
    let reported = Instant::now();
    let added = format!("BLOCKDEV-ADDED vdb {serial}");
    let visible = wait_line(&log, &added, 1, Duration::from_secs(30));
    wait_line(
        &log,
        &format!("BLOCKDEV-DATA vdb CIRRUS-VOLUME {serial}"),
        1,
        Duration::from_secs(10),
    );
    let since_reported = reported.elapsed().min(visible);
    eprintln!(
        "MEASURE disk_attach call {:.0} ms; domain reports it -> visible in the guest {:.0} ms \
         (target <= 2000 ms; the guest polls every 500 ms)",
        attach_call.as_secs_f64() * 1e3,
        since_reported.as_secs_f64() * 1e3
    );
    // How fast is for `cirrus bench volumes` to say (against a baseline of the same run);
    // here only that the guest saw it (wait_line above) counts.

    // Detach from the running guest: record each answer until Done (bounded).
    let t = Instant::now();
    let mut answers = Vec::new();
    let state = loop {
        let call = Instant::now();
        let s = hv.disk_detach(&name, "vdb").expect("detach");
        answers.push((s, call.elapsed()));
        if s == DetachState::Done || t.elapsed() > Duration::from_secs(30) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "MEASURE detach from the running guest: {state:?} after {:.1} s; answers (state, call time): {answers:?}",
        t.elapsed().as_secs_f64()
    );
    // The running guest releases it (QEMU 10 + the Debian cloud kernel's PCIe hot-plug): a
    // detach that stays pending is a failure, not a reason to skip what follows.
    assert_eq!(
        state,
        DetachState::Done,
        "the running guest never released the disk: {answers:?}"
    );
    // Released: gone from the live domain, and the guest saw it go.
    assert_eq!(hv.disks(&name).unwrap(), vec![]);
    wait_line(&log, "BLOCKDEV-REMOVED vdb", 1, Duration::from_secs(10));

    // Re-attach: the data is still there.
    hv.disk_attach(&name, &disk).expect("re-attach");
    wait_line(&log, &added, 2, Duration::from_secs(30));
    wait_line(
        &log,
        &format!("BLOCKDEV-DATA vdb CIRRUS-VOLUME {serial}"),
        2,
        Duration::from_secs(10),
    );

    // A paused guest can't release it: Pending (and still listed) until it runs again.
    hv.domain_suspend(&name).expect("suspend");
    let call = Instant::now();
    let s = hv.disk_detach(&name, "vdb").expect("detach while paused");
    eprintln!(
        "MEASURE detach while paused: {s:?} (call {:.1} s)",
        call.elapsed().as_secs_f64()
    );
    assert_eq!(
        s,
        DetachState::Pending,
        "a paused guest cannot release a disk"
    );
    assert_eq!(hv.disks(&name).unwrap(), vec![disk.clone()]);
    let call = Instant::now();
    assert_eq!(hv.disk_detach(&name, "vdb").unwrap(), DetachState::Pending);
    eprintln!(
        "MEASURE re-requested detach while paused: call {:.1} s",
        call.elapsed().as_secs_f64()
    );
    hv.domain_resume(&name).expect("resume");
    let t = Instant::now();
    loop {
        if hv.disk_detach(&name, "vdb").expect("detach after resume") == DetachState::Done {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the resumed guest never released the disk"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "MEASURE resumed guest released the disk after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    wait_line(&log, "BLOCKDEV-REMOVED vdb", 2, Duration::from_secs(10));
    assert_eq!(hv.disks(&name).unwrap(), vec![]);

    // Attached again, then powered off with the disk in: detach is done at once.
    hv.disk_attach(&name, &disk).expect("attach a third time");
    wait_line(&log, &added, 3, Duration::from_secs(30));

    // A block device (how an LVM volume reaches a guest here: a loop device over its
    // extents) is attached as `<disk type='block'>`.
    let block_data = work.path().join("block.raw");
    {
        let mut f = std::fs::File::create(&block_data).unwrap();
        writeln!(f, "CIRRUS-VOLUME block").unwrap();
        f.set_len(4 << 20).unwrap();
    }
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&block_data)
        .output()
        .expect("losetup");
    assert!(
        out.status.success(),
        "losetup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loop_dev = LoopGuard(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    let block = VolumeDisk {
        target: "vdc".into(),
        path: loop_dev.0.clone().into(),
        format: DiskFormat::Raw,
        serial: VolumeDisk::serial_for(Uuid::new_v4()),
        readonly: false,
    };
    assert!(block.is_block_device());
    hv.disk_attach(&name, &block)
        .expect("attach a block device");
    let listed = hv.disks(&name).unwrap();
    assert!(listed.contains(&block), "{listed:?}");
    // vdb is held in the guest: the new disk is its next name.
    let guest_name = "vdc";
    wait_line(
        &log,
        &format!("BLOCKDEV-ADDED {guest_name} {}", block.serial),
        1,
        Duration::from_secs(30),
    );
    wait_line(
        &log,
        &format!("BLOCKDEV-DATA {guest_name} CIRRUS-VOLUME block"),
        1,
        Duration::from_secs(10),
    );

    // Power-off completes whatever is pending; the definition keeps no volume.
    hv.domain_destroy(&name).expect("destroy");
    assert_eq!(hv.disk_detach(&name, "vdc").unwrap(), DetachState::Done);
    assert_eq!(hv.disk_detach(&name, "vdb").unwrap(), DetachState::Done);
    assert_eq!(hv.disks(&name).unwrap(), vec![]);
    hv.domain_delete(&name).expect("delete");
}
