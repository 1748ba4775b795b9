//! A server comes to life through `cirrus up` on real libvirt/QEMU (TCG where KVM doesn't
//! work): apply flavor + images + server → ACTIVE with its console marker; stop → SHUTOFF with
//! the domain shut off; start → ACTIVE; a reboot bump reboots it; a domain destroyed behind
//! Cirrus's back is repaired; delete → no domain, no disk, object gone.
//!
//! Needs libvirtd (`hack/start-libvirt.sh`) and the guest (`hack/build-guest.sh`); fails with
//! a hint when either is missing unless `CIRRUS_SKIP_LIBVIRT=1`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Cloud, DomainSweeper, eventually, guest_dir, repo_root, run_ok};
use serde_json::Value;

fn skip() -> bool {
    common::skipped_by(&["CIRRUS_SKIP_LIBVIRT"])
}

fn virsh(args: &[&str]) -> String {
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("virsh is installed (hack/install-libvirt.sh)");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn server(cloud: &Cloud, name: &str) -> Value {
    serde_json::from_str(&run_ok(
        cloud,
        &["get", "server", name, "-p", "demo", "-o", "json"],
    ))
    .unwrap()
}

fn phase(cloud: &Cloud, name: &str) -> String {
    server(cloud, name)["status"]["phase"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn console(cloud: &Cloud, name: &str) -> String {
    let out = cloud.cli(&["console-log", "server", name, "-p", "demo"]);
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn apply_server(cloud: &Cloud, dir: &std::path::Path, name: &str, extra: &str) {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: cirrus.dev/v1\nkind: Server\nmetadata:\n  name: {name}\n  project: demo\nspec:\n  flavor: m1.tiny\n  image: guest\n{extra}"
        ),
    )
    .unwrap();
    run_ok(cloud, &["apply", "-f", path.to_str().unwrap()]);
}

#[test]
fn real_server_lifecycle_through_cirrus_up() {
    if skip() {
        return;
    }
    let version = virsh(&["version"]);
    assert!(
        version.contains("QEMU"),
        "libvirtd is not reachable at qemu:///system: run hack/start-libvirt.sh (or set CIRRUS_SKIP_LIBVIRT=1)"
    );
    let guest = guest_dir();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _sweeper = DomainSweeper {
        state_dir: data.join("node"),
    };
    let cloud = Cloud::start(
        &data,
        &["--node-agent", "libvirt", "--node-name", "e2e-node"],
    );
    let examples = repo_root().join("examples");
    for file in ["flavors.yaml", "guest-images.yaml"] {
        run_ok(
            &cloud,
            &["apply", "-f", examples.join(file).to_str().unwrap()],
        );
    }
    for (image, file) in [
        ("guest-kernel", "vmlinuz"),
        ("guest-initrd", "initrd.img"),
        ("guest", "root.qcow2"),
    ] {
        let out = run_ok(
            &cloud,
            &[
                "upload-image",
                image,
                guest.join(file).to_str().unwrap(),
                "-p",
                "demo",
            ],
        );
        assert!(out.contains("uploaded"), "{out}");
    }

    // Create → ACTIVE, bound to the local node, with the guest's marker on its console.
    apply_server(&cloud, dir.path(), "vm-1", "");
    run_ok(
        &cloud,
        &[
            "wait",
            "server/vm-1",
            "--for=condition=Ready",
            "-p",
            "demo",
            "--timeout",
            "180s",
        ],
    );
    let s = server(&cloud, "vm-1");
    assert_eq!(s["status"]["phase"], "ACTIVE", "{s}");
    assert_eq!(s["spec"]["nodeName"], "e2e-node");
    let uid = s["metadata"]["uid"].as_str().unwrap().to_string();
    let domain = format!("cirrus-{uid}");
    eventually("boot marker", Duration::from_secs(60), || {
        console(&cloud, "vm-1")
            .contains("CIRRUS-READY vm-1")
            .then_some(())
    });
    assert_eq!(virsh(&["domstate", &domain]).trim(), "running");
    let instance_dir = data.join("node/instances").join(&uid);
    assert!(
        instance_dir.join("disk.qcow2").exists(),
        "root disk at {}",
        instance_dir.display()
    );

    // powerState Stopped → SHUTOFF, domain shut off; Running → ACTIVE again.
    apply_server(&cloud, dir.path(), "vm-1", "  powerState: Stopped\n");
    eventually("SHUTOFF", Duration::from_secs(120), || {
        (phase(&cloud, "vm-1") == "SHUTOFF").then_some(())
    });
    assert_eq!(virsh(&["domstate", &domain]).trim(), "shut off");
    apply_server(&cloud, dir.path(), "vm-1", "  powerState: Running\n");
    eventually("ACTIVE again", Duration::from_secs(120), || {
        (phase(&cloud, "vm-1") == "ACTIVE").then_some(())
    });
    eventually("second boot", Duration::from_secs(60), || {
        (console(&cloud, "vm-1").matches("CIRRUS-READY vm-1").count() >= 2).then_some(())
    });

    // A reboot request (counter bump) reboots it once: one more boot marker.
    apply_server(
        &cloud,
        dir.path(),
        "vm-1",
        "  powerState: Running\n  rebootCount: 1\n  rebootType: hard\n",
    );
    eventually("rebooted", Duration::from_secs(120), || {
        (console(&cloud, "vm-1").matches("CIRRUS-BOOT vm-1").count() >= 3).then_some(())
    });
    eventually("reboot recorded", Duration::from_secs(60), || {
        (server(&cloud, "vm-1")["status"]["observedRebootCount"] == 1).then_some(())
    });

    // Out-of-band destroy is repaired without user action (next resync).
    virsh(&["destroy", &domain]);
    eventually(
        "repaired after virsh destroy",
        Duration::from_secs(120),
        || (virsh(&["domstate", &domain]).trim() == "running").then_some(()),
    );

    // Delete → object, domain and disk all gone.
    run_ok(
        &cloud,
        &[
            "delete",
            "server",
            "vm-1",
            "-p",
            "demo",
            "--wait",
            "--timeout",
            "120s",
        ],
    );
    assert!(
        !virsh(&["list", "--all", "--name"]).contains(&domain),
        "domain left behind"
    );
    assert!(!instance_dir.exists(), "instance files left behind");
}
