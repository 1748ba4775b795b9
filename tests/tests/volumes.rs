//! Volumes end to end through `cirrus up` on real libvirt guests (TCG) and the file pool:
//! a volume is placed on the node's pool and made; attached to a running guest it shows up
//! (the guest reports hot-plugged disks on its console) and the guest writes a marker into
//! it; a snapshot taken while the guest runs holds that marker after the guest overwrote it
//! (and so do volumes made from it); detached (the busybox guest never releases a
//! hot-unplugged disk, so the detach completes when the guest is powered off — never
//! `available` while a guest holds it) and
//! attached to a second running guest, the marker is there; deleting a volume in use is
//! refused; deleting everything leaves no volume file.
//!
//! Needs libvirtd (`hack/start-libvirt.sh`) and the guest (`hack/build-guest.sh`); fails with
//! a hint when missing unless `CIRRUS_SKIP_LIBVIRT=1`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::{Cloud, DomainSweeper, eventually, guest_dir, run_ok};
use serde_json::{Value, json};

fn get(cloud: &Cloud, kind: &str, name: &str) -> Value {
    serde_json::from_str(&run_ok(
        cloud,
        &["get", kind, name, "-p", "demo", "-o", "json"],
    ))
    .unwrap()
}

fn console(cloud: &Cloud, name: &str) -> String {
    let out = cloud.cli(&["console-log", "server", name, "-p", "demo"]);
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn patch(cloud: &Cloud, plural: &str, name: &str, body: Value) {
    let url = format!(
        "{}/apis/cirrus.dev/v1/projects/demo/{plural}/{name}",
        cloud.base
    );
    let resp = cloud
        .http()
        .patch(&url)
        .header("Content-Type", "application/merge-patch+json")
        .body(body.to_string())
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text());
}

/// The first line of a qcow2 volume's first 64 bytes, read beside a running guest
/// (`qemu-img dd -U`: shared, read-only).
fn head(path: &std::path::Path) -> String {
    let out_dir = tempfile::tempdir().unwrap();
    let raw = out_dir.path().join("head.raw");
    let out = Command::new("qemu-img")
        .args(["dd", "-U", "-f", "qcow2", "-O", "raw", "bs=64", "count=1"])
        .arg(format!("if={}", path.display()))
        .arg(format!("of={}", raw.display()))
        .output()
        .expect("qemu-img dd");
    assert!(out.status.success(), "{out:?}");
    let bytes = std::fs::read(&raw).unwrap();
    String::from_utf8_lossy(&bytes)
        .trim_end_matches('\0')
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn apply(cloud: &Cloud, dir: &std::path::Path, name: &str, yaml: &str) {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    run_ok(cloud, &["apply", "-f", path.to_str().unwrap()]);
}

#[test]
fn real_volume_attach_detach_and_data_survives() {
    if common::skipped_by(&["CIRRUS_SKIP_LIBVIRT"]) {
        return;
    }
    let version = Command::new("virsh")
        .args(["-c", "qemu:///system", "version"])
        .stdin(Stdio::null())
        .output()
        .expect("virsh is installed (hack/install-libvirt.sh)");
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("QEMU"),
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
        &[
            "--node-agent",
            "libvirt",
            "--node-name",
            "vol-node",
            "--bridge",
            &format!("cbrv{}", std::process::id() % 100_000),
        ],
    );
    cloud.add_flavors_and_guest_images(&guest);

    // A 1 GiB volume on the node's file pool.
    apply(
        &cloud,
        dir.path(),
        "data-1",
        "apiVersion: cirrus.dev/v1\nkind: Volume\nmetadata: {name: data-1, project: demo}\nspec: {size: 1}\n",
    );
    let vol = eventually("volume available", Duration::from_secs(60), || {
        let v = get(&cloud, "volume", "data-1");
        (v["status"]["phase"] == "available").then_some(v)
    });
    assert_eq!(vol["status"]["node"], "vol-node", "{vol}");
    let vol_uid = vol["metadata"]["uid"].as_str().unwrap().to_string();
    let file = data.join(format!("node/volumes/vol-{vol_uid}.qcow2"));
    assert!(file.exists(), "{} missing", file.display());

    // v1 waits for a hot-plugged disk and writes a marker (A) into its first sector; once a
    // second disk (vdd) shows up it overwrites it with the final marker (B). The guests have
    // no network: their user data comes on the config drive (vdb), so the volume is vdc.
    let writer = "#!/bin/sh\n\
        i=0; while [ ! -b /dev/vdc ] && [ $i -lt 400 ]; do sleep 0.5; i=$((i+1)); done\n\
        printf 'MARKER-BEFORE-SNAP\\n' | dd of=/dev/vdc conv=notrunc 2>/dev/null && sync && echo WROTE vdc\n\
        i=0; while [ ! -b /dev/vdd ] && [ $i -lt 600 ]; do sleep 0.5; i=$((i+1)); done\n\
        printf 'MARKER-VOLUME-DATA\\n' | dd of=/dev/vdc conv=notrunc,fsync 2>/dev/null && echo WROTE-B vdc\n";
    let server = |name: &str, script: &str| {
        let ud = base64::engine::general_purpose::STANDARD.encode(script);
        apply(
            &cloud,
            dir.path(),
            name,
            &format!(
                "apiVersion: cirrus.dev/v1\nkind: Server\nmetadata: {{name: {name}, project: demo}}\nspec:\n  flavor: m1.tiny\n  image: guest\n  configDrive: true\n  userData: {ud}\n"
            ),
        );
    };
    server("v1", writer);
    eventually("v1 runs its user data", Duration::from_secs(240), || {
        console(&cloud, "v1")
            .contains("USERDATA script")
            .then_some(())
    });

    // Attach to the running guest: it sees the disk, writes the marker; the volume is in-use.
    patch(
        &cloud,
        "servers",
        "v1",
        json!({"spec": {"volumes": [{"volume": "data-1"}]}}),
    );
    let c = eventually("v1 wrote the marker", Duration::from_secs(120), || {
        let c = console(&cloud, "v1");
        (c.contains("WROTE vdc") && c.contains("BLOCKDEV-ADDED vdc")).then_some(c)
    });
    assert!(c.contains("BLOCKDEV-ADDED vdc"), "{c}");
    let vol = eventually("volume in-use", Duration::from_secs(30), || {
        let v = get(&cloud, "volume", "data-1");
        (v["status"]["phase"] == "in-use").then_some(v)
    });
    assert_eq!(vol["status"]["attachments"][0]["server"], "v1", "{vol}");
    assert_eq!(
        vol["status"]["attachments"][0]["device"], "/dev/vdc",
        "{vol}"
    );

    // A snapshot while attached to the running guest (Cinder's force=true): copied by
    // libvirt's backup job while the guest runs, point-in-time. A volume made from it and
    // attached as vdd makes the guest overwrite vdc with B; the clone still reads A, and so
    // does a volume made from the snapshot after B was written.
    apply(
        &cloud,
        dir.path(),
        "snap-live",
        "apiVersion: cirrus.dev/v1\nkind: VolumeSnapshot\nmetadata: {name: snap-live, project: demo}\nspec: {volume: data-1, force: true}\n",
    );
    let t = std::time::Instant::now();
    let snap = eventually(
        "snapshot of the attached volume available",
        Duration::from_secs(60),
        || {
            let s = get(&cloud, "volumesnapshot", "snap-live");
            assert_ne!(s["status"]["phase"], "error", "{s}");
            (s["status"]["phase"] == "available").then_some(s)
        },
    );
    eprintln!(
        "snapshot of a volume attached to a running guest: available after {:?}",
        t.elapsed()
    );
    let snap_file = data.join(format!(
        "node/volumes/snap-{}@{vol_uid}.qcow2",
        snap["metadata"]["uid"].as_str().unwrap()
    ));
    assert!(snap_file.exists(), "{} missing", snap_file.display());
    assert_eq!(head(&snap_file), "MARKER-BEFORE-SNAP");
    let clone_of_live = |name: &str| {
        apply(
            &cloud,
            dir.path(),
            name,
            &format!(
                "apiVersion: cirrus.dev/v1\nkind: Volume\nmetadata: {{name: {name}, project: demo}}\nspec: {{size: 1, source: {{type: snapshot, name: snap-live}}}}\n"
            ),
        );
        let v = eventually(
            "clone of the live snapshot",
            Duration::from_secs(60),
            || {
                let v = get(&cloud, "volume", name);
                (v["status"]["phase"] == "available").then_some(v)
            },
        );
        data.join(format!(
            "node/volumes/vol-{}.qcow2",
            v["metadata"]["uid"].as_str().unwrap()
        ))
    };
    let clone3 = clone_of_live("data-3");
    patch(
        &cloud,
        "servers",
        "v1",
        json!({"spec": {"volumes": [{"volume": "data-1"}, {"volume": "data-3"}]}}),
    );
    // The guest's hot-plug reporter prints the new disk's first bytes on its own time: wait
    // for that line as well as for the write of B.
    let c = eventually(
        "v1 wrote B and reported vdd",
        Duration::from_secs(120),
        || {
            let c = console(&cloud, "v1");
            (c.contains("WROTE-B vdc") && c.contains("BLOCKDEV-DATA vdd")).then_some(c)
        },
    );
    assert!(
        c.contains("BLOCKDEV-DATA vdd MARKER-BEFORE-SNAP"),
        "the clone of the live snapshot holds A: {c}"
    );
    // (B was written with fsync: QEMU flushed the qcow2 metadata, so the file shows it.)
    assert_eq!(head(&file), "MARKER-VOLUME-DATA", "the volume holds B");
    assert_eq!(head(&clone3), "MARKER-BEFORE-SNAP");
    let clone4 = clone_of_live("data-4");
    assert_eq!(
        head(&clone4),
        "MARKER-BEFORE-SNAP",
        "a clone made after B was written holds A"
    );

    // In use: deleting the volume is refused with the reason.
    let out = cloud.cli(&["delete", "volume", "data-1", "-p", "demo"]);
    assert!(!out.status.success(), "deleting a volume in use succeeded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("v1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Detach: the busybox guest keeps the device, so the volume stays detaching (never
    // available while a guest holds it) until v1 is powered off.
    patch(&cloud, "servers", "v1", json!({"spec": {"volumes": []}}));
    eventually("volume detaching", Duration::from_secs(60), || {
        let v = get(&cloud, "volume", "data-1");
        (v["status"]["phase"] == "detaching" || v["status"]["phase"] == "available").then_some(())
    });
    let phase = get(&cloud, "volume", "data-1")["status"]["phase"].clone();
    if phase == "detaching" {
        patch(
            &cloud,
            "servers",
            "v1",
            json!({"spec": {"powerState": "Stopped"}}),
        );
    }
    let vol = eventually("volume available again", Duration::from_secs(120), || {
        let v = get(&cloud, "volume", "data-1");
        (v["status"]["phase"] == "available").then_some(v)
    });
    assert!(
        vol["status"]["attachments"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{vol}"
    );

    // Attached to a second running guest, the data is there.
    server("v2", "#!/bin/sh\necho v2-up\n");
    eventually("v2 ready", Duration::from_secs(240), || {
        console(&cloud, "v2")
            .contains("CIRRUS-READY v2")
            .then_some(())
    });
    patch(
        &cloud,
        "servers",
        "v2",
        json!({"spec": {"volumes": [{"volume": "data-1"}]}}),
    );
    let c = eventually("v2 sees the marker", Duration::from_secs(120), || {
        let c = console(&cloud, "v2");
        c.contains("BLOCKDEV-DATA").then_some(c)
    });
    assert!(c.contains("MARKER-VOLUME-DATA"), "{c}");

    // A snapshot holds the data of its moment: detach, snapshot, overwrite the volume, make
    // a volume from the snapshot and attach it: the guest sees the old marker.
    patch(&cloud, "servers", "v2", json!({"spec": {"volumes": []}}));
    eventually("detached from v2", Duration::from_secs(60), || {
        (get(&cloud, "volume", "data-1")["status"]["phase"] == "available").then_some(())
    });
    apply(
        &cloud,
        dir.path(),
        "snap-1",
        "apiVersion: cirrus.dev/v1\nkind: VolumeSnapshot\nmetadata: {name: snap-1, project: demo}\nspec: {volume: data-1}\n",
    );
    eventually("snapshot available", Duration::from_secs(60), || {
        (get(&cloud, "volumesnapshot", "snap-1")["status"]["phase"] == "available").then_some(())
    });
    let overwrite = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x43 0 64"])
        .arg(&file)
        .output()
        .expect("qemu-io");
    assert!(overwrite.status.success(), "{overwrite:?}");
    apply(
        &cloud,
        dir.path(),
        "data-2",
        "apiVersion: cirrus.dev/v1\nkind: Volume\nmetadata: {name: data-2, project: demo}\nspec: {size: 1, source: {type: snapshot, name: snap-1}}\n",
    );
    eventually("clone available", Duration::from_secs(60), || {
        (get(&cloud, "volume", "data-2")["status"]["phase"] == "available").then_some(())
    });
    patch(
        &cloud,
        "servers",
        "v2",
        json!({"spec": {"volumes": [{"volume": "data-2"}]}}),
    );
    let c = eventually(
        "v2 sees the snapshot's data",
        Duration::from_secs(120),
        || {
            let c = console(&cloud, "v2");
            (c.matches("MARKER-VOLUME-DATA").count() >= 2).then_some(c)
        },
    );
    assert!(
        !c.contains("CCCCCCCC"),
        "the clone has data written after the snapshot: {c}"
    );

    // Boot from a volume made from the guest image; deleteOnTermination takes it along.
    apply(
        &cloud,
        dir.path(),
        "boot-1",
        "apiVersion: cirrus.dev/v1\nkind: Volume\nmetadata: {name: boot-1, project: demo}\nspec: {size: 1, bootable: true, source: {type: image, name: guest}}\n",
    );
    apply(
        &cloud,
        dir.path(),
        "b1",
        "apiVersion: cirrus.dev/v1\nkind: Server\nmetadata: {name: b1, project: demo}\nspec:\n  flavor: m1.tiny\n  bootVolume: boot-1\n  volumes: [{volume: boot-1, deleteOnTermination: true}]\n",
    );
    let c = eventually(
        "b1 booted from its volume",
        Duration::from_secs(240),
        || {
            let c = console(&cloud, "b1");
            c.contains("CIRRUS-READY b1").then_some(c)
        },
    );
    assert!(c.contains("ROOTDISK CIRRUS-ROOT-DISK v1"), "{c}");
    let boot = eventually("boot volume in-use", Duration::from_secs(30), || {
        let v = get(&cloud, "volume", "boot-1");
        (v["status"]["phase"] == "in-use").then_some(v)
    });
    assert_eq!(
        boot["status"]["attachments"][0]["device"], "/dev/vda",
        "{boot}"
    );
    let boot_file = data.join(format!(
        "node/volumes/vol-{}.qcow2",
        boot["metadata"]["uid"].as_str().unwrap()
    ));
    assert!(boot_file.exists());

    // Everything goes: servers first; boot-1 goes with b1, the data volumes stay available.
    for s in ["v1", "v2", "b1"] {
        run_ok(
            &cloud,
            &[
                "delete",
                "server",
                s,
                "-p",
                "demo",
                "--wait",
                "--timeout",
                "120s",
            ],
        );
    }
    eventually(
        "boot volume deleted with its server",
        Duration::from_secs(60),
        || {
            let out = cloud.cli(&["get", "volume", "boot-1", "-p", "demo"]);
            (!out.status.success()).then_some(())
        },
    );
    assert!(!boot_file.exists(), "{} left behind", boot_file.display());
    for v in ["data-1", "data-2"] {
        let vol = eventually("data volume released", Duration::from_secs(60), || {
            let v = get(&cloud, "volume", v);
            (v["status"]["phase"] == "available").then_some(v)
        });
        assert!(
            vol["status"]["attachments"]
                .as_array()
                .is_none_or(|a| a.is_empty()),
            "{vol}"
        );
    }
    // Volumes with a snapshot wait for it (Cinder's rule): the clone and the snapshot first.
    for (kind, name) in [
        ("volume", "data-2"),
        ("volume", "data-3"),
        ("volume", "data-4"),
        ("volumesnapshot", "snap-1"),
        ("volumesnapshot", "snap-live"),
        ("volume", "data-1"),
    ] {
        run_ok(
            &cloud,
            &[
                "delete",
                kind,
                name,
                "-p",
                "demo",
                "--wait",
                "--timeout",
                "60s",
            ],
        );
    }
    assert!(!file.exists(), "{} left behind", file.display());
    let left: Vec<_> = std::fs::read_dir(data.join("node/volumes"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in the pool: {left:?}");
}
