//! The node agent against an in-process API (embedded store, blob directory) and the FAKE
//! hypervisor: lifecycle, power states, reboot, drift repair, unreachable hypervisor, orphans,
//! deletion, and the number of status writes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cirrus_client::{Api, WatchEvent};
use cirrus_crds::kinds::image::DiskFormat;
use cirrus_crds::kinds::server::{ObservedPowerState, PowerState, RebootType, ServerPhase};
use cirrus_crds::{Condition, ConditionStatus, Lease, Node, Server};
use cirrus_node_agent::hypervisor::fake::FakeHypervisor;
use cirrus_node_agent::hypervisor::{
    DomainName, DomainSpec, DomainState, Hypervisor, HypervisorOp, VirtType,
};
use cirrus_node_agent::servers::{DOMAIN_RUNNING, READY, ServerConfig};
use common::*;
use futures::StreamExt;
use uuid::Uuid;

const T: Duration = Duration::from_secs(15);

async fn phase_is(h: &Harness, name: &str, phase: ServerPhase) -> Server {
    let api = h.servers();
    eventually(&format!("{name} {phase:?}"), T, async || {
        let s = api.get(name).await.ok()?;
        (s.status.phase == Some(phase)).then_some(s)
    })
    .await
}

fn fast() -> ServerConfig {
    ServerConfig {
        shutdown_grace: Duration::from_secs(1),
        poll: Duration::from_millis(100),
        resync: Duration::from_secs(1),
        concurrency: 4,
    }
}

async fn set_spec(h: &Harness, name: &str, f: impl Fn(&mut Server)) {
    let api = h.servers();
    loop {
        let mut s = api.get(name).await.unwrap();
        f(&mut s);
        match api.replace(&s).await {
            Ok(_) => return,
            Err(e) if e.is_conflict() => continue,
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fake_server_lifecycle() {
    let mut h = harness().await;
    let work = tempfile::tempdir().unwrap();
    h.flavor("small", 2, 256, 1).await;
    let root = qcow2_file(work.path(), "64M");
    let kernel = h
        .image(
            "guest-kernel",
            DiskFormat::Aki,
            &[],
            b"kernel bytes".to_vec(),
        )
        .await;
    h.image(
        "guest-ramdisk",
        DiskFormat::Ari,
        &[],
        b"initrd bytes".to_vec(),
    )
    .await;
    h.image(
        "guest",
        DiskFormat::Qcow2,
        &[
            ("kernel_id", "guest-kernel"),
            ("ramdisk_id", "guest-ramdisk"),
            ("os_command_line", "console=ttyS0 quiet"),
        ],
        std::fs::read(&root).unwrap(),
    )
    .await;

    let fake = Arc::new(FakeHypervisor::new());
    let state = tempfile::tempdir().unwrap();
    let mut config = agent_config("n1", state.path(), fake.clone());
    config.servers = fast();
    config.heartbeat.lease_renew = Duration::from_millis(200);
    let ctx = h.start_agent(config).await;

    // The node registered with real capacity and a lease.
    let node = Api::<Node>::all(h.client.clone()).get("n1").await.unwrap();
    assert_eq!(node.status.capacity.vcpus, 8);
    assert!(Condition::is_true(&node.status.conditions, "Ready"));
    assert_eq!(node.status.hypervisor_type.as_deref(), Some("fake"));
    let lease = eventually("lease", T, async || {
        Api::<Lease>::all(h.client.clone())
            .get_opt("node-n1")
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(lease.spec.holder_identity.as_deref(), Some("n1"));
    assert_eq!(lease.spec.lease_duration_seconds, Some(40));

    // Count every write to the server from its creation (watch events).
    let writes = Arc::new(AtomicU64::new(0));
    let mut watch = Box::pin(h.servers().watch("0", None));
    let counter = writes.clone();
    let watcher = tokio::spawn(async move {
        while let Some(Ok(ev)) = watch.next().await {
            if let WatchEvent::Added(s) | WatchEvent::Modified(s) = ev
                && s.metadata.name == "web-1"
            {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });

    let created = h.server("web-1", "small", "guest", "n1").await;
    let uid = Uuid::parse_str(created.metadata.uid.as_deref().unwrap()).unwrap();
    let name = DomainName::for_server(uid);
    let active = phase_is(&h, "web-1", ServerPhase::Active).await;
    let to_active = writes.load(Ordering::SeqCst);
    eprintln!(
        "writes create→ACTIVE: {to_active} (status writes by the agent: {})",
        ctx.status_writes(uid)
    );
    assert!(to_active <= 10, "{to_active} writes to ACTIVE");
    assert!(
        active
            .metadata
            .finalizers
            .iter()
            .any(|f| f == "cirrus.dev/node-agent")
    );
    assert!(active.status.launched_at.is_some());
    assert_eq!(active.status.node.as_deref(), Some("n1"));
    for c in ["ImageReady", "DiskReady", DOMAIN_RUNNING, READY] {
        assert!(Condition::is_true(&active.status.conditions, c), "{c}");
    }

    // The domain spec.
    let spec = fake.spec(&name).expect("domain defined");
    assert_eq!(spec.vcpus, 2);
    assert_eq!(spec.memory_mib, 256);
    assert_eq!(spec.virt_type, VirtType::Qemu);
    let inst = state.path().join("instances").join(uid.to_string());
    assert_eq!(spec.root_disk, inst.join("disk.qcow2"));
    assert_eq!(spec.console_log, inst.join("console.log"));
    let kb = spec.kernel_boot.expect("direct kernel boot");
    assert_eq!(kb.cmdline, "console=ttyS0 quiet cirrus.marker=web-1");
    assert_eq!(
        kb.kernel,
        state
            .path()
            .join("images")
            .join(kernel.status.os_hash_value.unwrap())
    );
    assert_eq!(std::fs::read(&kb.kernel).unwrap(), b"kernel bytes");
    assert!(kb.initrd.is_some());
    let log = cirrus_node_agent::console_log(state.path(), uid, 4096)
        .unwrap()
        .unwrap();
    assert!(log.contains("CIRRUS-BOOT web-1"), "{log}");

    // A converged server costs no writes on resync (resync is 1 s here).
    let before = writes.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(writes.load(Ordering::SeqCst), before, "writes on resync");
    assert_eq!(fake.boots(&name), Some(1));

    // Reboot: bump → rebooted once, recorded.
    set_spec(&h, "web-1", |s| {
        s.spec.reboot_count = 1;
        s.spec.reboot_type = RebootType::Soft;
    })
    .await;
    eventually("reboot recorded", T, async || {
        let s = h.servers().get("web-1").await.ok()?;
        (s.status.observed_reboot_count == 1 && s.status.phase == Some(ServerPhase::Active))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.boots(&name), Some(2), "rebooted exactly once");

    // Drift: destroyed behind our back → started again; undefined → defined and started.
    fake.oob_destroy(&name);
    eventually("restart after destroy", T, async || {
        (fake.domain_state(&name).ok()? == Some(DomainState::Running)).then_some(())
    })
    .await;
    fake.oob_undefine(&name);
    eventually("redefine after undefine", T, async || {
        (fake.domain_state(&name).ok()? == Some(DomainState::Running)).then_some(())
    })
    .await;

    // Stop: the guest honours ACPI → SHUTOFF without destroy.
    let destroys = fake.calls(HypervisorOp::DomainDestroy);
    set_spec(&h, "web-1", |s| s.spec.power_state = PowerState::Stopped).await;
    phase_is(&h, "web-1", ServerPhase::Shutoff).await;
    assert_eq!(fake.calls(HypervisorOp::DomainDestroy), destroys);
    assert_eq!(
        fake.domain_state(&name).unwrap(),
        Some(DomainState::ShutOff)
    );
    set_spec(&h, "web-1", |s| s.spec.power_state = PowerState::Running).await;
    phase_is(&h, "web-1", ServerPhase::Active).await;

    // A guest ignoring ACPI is destroyed after the grace period.
    fake.set_ignore_acpi(true);
    set_spec(&h, "web-1", |s| s.spec.power_state = PowerState::Stopped).await;
    phase_is(&h, "web-1", ServerPhase::Shutoff).await;
    assert!(fake.calls(HypervisorOp::DomainDestroy) > destroys);
    fake.set_ignore_acpi(false);

    // Paused (in memory), Suspended (to disk: managed save), Running again (restored, no
    // boot); Stopped while suspended keeps the saved state.
    set_spec(&h, "web-1", |s| s.spec.power_state = PowerState::Paused).await;
    phase_is(&h, "web-1", ServerPhase::Paused).await;
    let boots = fake.boots(&name);
    set_spec(&h, "web-1", |s| s.spec.power_state = PowerState::Suspended).await;
    let suspended = phase_is(&h, "web-1", ServerPhase::Suspended).await;
    assert_eq!(fake.domain_state(&name).unwrap(), Some(DomainState::Saved));
    assert_eq!(
        suspended.status.power_state,
        Some(ObservedPowerState::Suspended)
    );
    assert!(Condition::is_true(&suspended.status.conditions, READY));
    set_spec(&h, "web-1", |s| s.spec.power_state = PowerState::Stopped).await;
    let stopped = phase_is(&h, "web-1", ServerPhase::Shutoff).await;
    assert_eq!(fake.domain_state(&name).unwrap(), Some(DomainState::Saved));
    let ready = Condition::find(&stopped.status.conditions, READY).unwrap();
    assert!(ready.message.contains("saved"), "{}", ready.message);
    set_spec(&h, "web-1", |s| s.spec.power_state = PowerState::Running).await;
    phase_is(&h, "web-1", ServerPhase::Active).await;
    assert_eq!(fake.boots(&name), boots, "restored, not booted");

    // Unreachable hypervisor: Unknown, never ERROR; recovers.
    fake.set_unreachable(true);
    eventually("DomainRunning Unknown", T, async || {
        let s = h.servers().get("web-1").await.ok()?;
        let c = Condition::find(&s.status.conditions, DOMAIN_RUNNING)?;
        (c.status == ConditionStatus::Unknown).then_some(())
    })
    .await;
    for _ in 0..20 {
        let s = h.servers().get("web-1").await.unwrap();
        assert_ne!(s.status.phase, Some(ServerPhase::Error));
        assert!(s.status.fault.is_none());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fake.set_unreachable(false);
    eventually("Ready again", T, async || {
        let s = h.servers().get("web-1").await.ok()?;
        Condition::is_true(&s.status.conditions, READY).then_some(())
    })
    .await;

    // An orphan domain and instance directory are removed.
    let orphan = Uuid::new_v4();
    let orphan_dir = state.path().join("instances").join(orphan.to_string());
    std::fs::create_dir_all(&orphan_dir).unwrap();
    fake.domain_ensure(&DomainSpec {
        server_uid: orphan,
        server_name: "ghost".into(),
        project: "demo".into(),
        virt_type: VirtType::Qemu,
        vcpus: 1,
        memory_mib: 64,
        root_disk: orphan_dir.join("disk.qcow2"),
        kernel_boot: None,
        console_log: orphan_dir.join("console.log"),
        nics: vec![],
        config_drive: None,
        volumes: Vec::new(),
    })
    .unwrap();
    eventually("orphan removed", T, async || {
        let gone = fake
            .domain_state(&DomainName::for_server(orphan))
            .ok()?
            .is_none();
        (gone && !orphan_dir.exists()).then_some(())
    })
    .await;
    assert_eq!(
        fake.domain_state(&name).unwrap(),
        Some(DomainState::Running),
        "the real server is kept"
    );

    // A cirrus domain this agent did not make (no instance directory in its state dir: another
    // agent or a test sharing the hypervisor) is never swept.
    let foreign = Uuid::new_v4();
    fake.domain_ensure(&DomainSpec {
        server_uid: foreign,
        server_name: "neighbour".into(),
        project: "demo".into(),
        virt_type: VirtType::Qemu,
        vcpus: 1,
        memory_mib: 64,
        root_disk: "/elsewhere/disk.qcow2".into(),
        kernel_boot: None,
        console_log: "/elsewhere/console.log".into(),
        nics: vec![],
        config_drive: None,
        volumes: Vec::new(),
    })
    .unwrap();
    let report = cirrus_node_agent::servers::orphans_sweep(&ctx)
        .await
        .unwrap();
    assert!(report.domains.is_empty(), "{report:?}");
    assert!(
        fake.domain_state(&DomainName::for_server(foreign))
            .unwrap()
            .is_some(),
        "a foreign domain survives the sweep"
    );
    fake.domain_delete(&DomainName::for_server(foreign))
        .unwrap();

    // Delete: domain gone, directory gone, object gone.
    h.servers().delete("web-1").await.unwrap();
    eventually("server gone", T, async || {
        h.servers()
            .get_opt("web-1")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(fake.domain_state(&name).unwrap(), None);
    assert!(!inst.exists());
    assert!(fake.domain_list().unwrap().is_empty());
    watcher.abort();
    h.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fake_missing_image_is_error_and_deletes_cleanly() {
    let mut h = harness().await;
    h.flavor("small", 1, 128, 0).await;
    let fake = Arc::new(FakeHypervisor::new());
    let state = tempfile::tempdir().unwrap();
    let mut config = agent_config("n1", state.path(), fake.clone());
    config.servers = fast();
    h.start_agent(config).await;
    h.server("bad", "small", "nope", "n1").await;
    let s = phase_is(&h, "bad", ServerPhase::Error).await;
    let fault = s.status.fault.expect("fault");
    assert!(fault.message.contains("ImageNotFound"), "{}", fault.message);
    let c = Condition::find(&s.status.conditions, "ImageReady").unwrap();
    assert_eq!(c.status, ConditionStatus::False);
    assert!(fake.domain_list().unwrap().is_empty());
    h.servers().delete("bad").await.unwrap();
    eventually("bad gone", T, async || {
        h.servers()
            .get_opt("bad")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    h.stop_agent().await;
}
