//! The node agent on the REAL libvirt daemon (`qemu:///system`) booting the test guest from
//! `hack/build-guest.sh`, uploaded as three images (aki kernel, ari ramdisk, qcow2 root naming
//! them): ACTIVE, console marker, reboot (marker twice), delete (no domain, no instance dir).
//!
//! Fails with instructions when libvirtd is unreachable, unless `CIRRUS_SKIP_LIBVIRT=1`.
//! Whatever happens, the domain and the state directory are removed (Drop guards).

mod common;

use std::path::{Path, PathBuf};
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

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The test guest, built by `hack/build-guest.sh` when missing.
fn test_guest() -> PathBuf {
    let dir = std::env::var_os("CIRRUS_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/guest"));
    let complete = ["vmlinuz", "initrd.img", "root.qcow2", "cmdline"]
        .iter()
        .all(|f| dir.join(f).is_file());
    if !complete {
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
    }
    dir
}

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
