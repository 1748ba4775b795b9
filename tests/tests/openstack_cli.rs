//! The real OpenStack clients against `cirrus up`: python-openstackclient (the `openstack`
//! command) and openstacksdk, installed from PyPI by `hack/install-openstack-clients.sh`,
//! drive the workflow of issue 5 unchanged with a clouds.yaml: identity administration with
//! Keystone's free-text names (project `Marketing`, user `John.Doe@example.com`, a rename that
//! keeps the project's server), flavors, key pairs, public images with data, networks, a security group rule, servers on
//! real libvirt guests (TCG) with user data and their console, a member's server on the
//! admin's shared network (DHCP and metadata through it), power actions, deletion, image
//! download; a member of a second project cannot see the first project's servers; bad
//! requests and a quota overrun get OpenStack's errors and leave nothing behind; an
//! openstacksdk script does the same round trip.
//!
//! Needs libvirtd, Open vSwitch, the guest (`hack/build-guest.sh`) and the clients; fails
//! with a hint when missing unless `CIRRUS_SKIP_LIBVIRT=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Cloud, DomainSweeper, NetworkSweeper, eventually, guest_dir, repo_root};
use serde_json::Value;

/// The clients' virtualenv (made by hack/install-openstack-clients.sh).
fn venv() -> PathBuf {
    let venv = repo_root().join("target/osc-venv");
    assert!(
        venv.join("bin/openstack").exists(),
        "the OpenStack clients are missing: run hack/install-openstack-clients.sh"
    );
    venv
}

/// Runs `openstack` as cloud `cloud` of `config`.
struct Osc {
    bin: PathBuf,
    config: PathBuf,
}

impl Osc {
    fn run(&self, cloud: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .args(args)
            .env("OS_CLIENT_CONFIG_FILE", &self.config)
            .env("OS_CLOUD", cloud)
            .env_remove("OS_AUTH_URL")
            .env_remove("OS_USERNAME")
            .env_remove("OS_PASSWORD")
            .env_remove("OS_PROJECT_NAME")
            .stdin(Stdio::null())
            .output()
            .expect("run openstack");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("{stdout}{stderr}"))
        }
    }

    /// Runs a command that must succeed.
    fn ok(&self, cloud: &str, args: &[&str]) -> String {
        self.run(cloud, args)
            .unwrap_or_else(|e| panic!("openstack {args:?} as {cloud} failed: {e}"))
    }

    /// Runs a command with `-f json` and parses its output.
    fn json(&self, cloud: &str, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-f", "json"]);
        let out = self.ok(cloud, &all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("openstack {args:?}: {e}: {out}"))
    }

    /// Runs a command that must fail; returns its output.
    fn fails(&self, cloud: &str, args: &[&str]) -> String {
        match self.run(cloud, args) {
            Ok(out) => panic!("openstack {args:?} as {cloud} succeeded: {out}"),
            Err(e) => e,
        }
    }
}

/// Appends cloud `cloud` (user `user` in project `project`, both by name) to the
/// clouds.yaml `cirrus up` wrote.
fn member_cloud(config: &Path, base: &str, cloud: &str, user: &str, password: &str, project: &str) {
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str(&format!(
        "  {cloud}:\n    auth:\n      auth_url: {base}/identity/v3\n      username: '{user}'\n      \
         password: '{password}'\n      project_name: '{project}'\n      user_domain_name: Default\n      \
         project_domain_name: Default\n    region_name: RegionOne\n    identity_api_version: 3\n"
    ));
    std::fs::write(config, text).unwrap();
}

fn status(osc: &Osc, cloud: &str, server: &str) -> String {
    osc.json(cloud, &["server", "show", server])["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn wait_status(osc: &Osc, cloud: &str, server: &str, want: &str) {
    eventually(
        &format!("{server} {want}"),
        Duration::from_secs(120),
        || (status(osc, cloud, server) == want).then_some(()),
    );
}

fn wait_volume(osc: &Osc, volume: &str, want: &str) {
    eventually(
        &format!("volume {volume} {want}"),
        Duration::from_secs(120),
        || (osc.json("alice", &["volume", "show", volume])["status"] == want).then_some(()),
    );
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn real_openstack_cli_and_sdk_workflow() {
    if common::skipped_by(&["CIRRUS_SKIP_LIBVIRT"]) {
        return;
    }
    let venv = venv();
    let guest = guest_dir();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bridge = format!("cbro{}", std::process::id() % 100_000);
    let _network = NetworkSweeper {
        bridge: bridge.clone(),
        state_dir: data.join("node"),
    };
    let _domains = DomainSweeper {
        state_dir: data.join("node"),
    };
    let cloud = Cloud::start(
        &data,
        &[
            "--node-agent",
            "libvirt",
            "--node-name",
            "osc-node",
            "--bridge",
            &bridge,
        ],
    );
    let config = dir.path().join("clouds.yaml");
    std::fs::copy(data.join("clouds.yaml"), &config).unwrap();
    let osc = Osc {
        bin: venv.join("bin/openstack"),
        config: config.clone(),
    };
    let admin = "cirrus";

    // Identity: a token, the catalog, two projects with a member each.
    let token = osc.json(admin, &["token", "issue"]);
    assert_eq!(token["project_id"], "admin", "{token}");
    assert!(token["expires"].is_string(), "{token}");
    let catalog = osc.json(admin, &["catalog", "list"]);
    let types: Vec<&str> = catalog
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Type"].as_str().unwrap())
        .collect();
    for t in [
        "identity",
        "compute",
        "image",
        "network",
        "block-storage",
        "volumev3",
    ] {
        assert!(types.contains(&t), "{t} missing from {catalog}");
    }
    // Keystone's names are free text and its ids generated: cloud "alice" is the user
    // John.Doe@example.com in project Marketing.
    let mut project_ids = Vec::new();
    for (cloud_name, user, project) in [
        ("alice", "John.Doe@example.com", "Marketing"),
        ("bob", "bob", "osc-two"),
    ] {
        let made = osc.json(admin, &["project", "create", project]);
        assert_eq!(made["name"], project, "{made}");
        let id = made["id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 32, "{made}");
        project_ids.push(id);
        let password = format!("pw-{cloud_name}");
        let made = osc.json(
            admin,
            &[
                "user",
                "create",
                "--password",
                &password,
                "--project",
                project,
                user,
            ],
        );
        assert_eq!(made["name"], user, "{made}");
        assert_ne!(made["id"], user, "{made}");
        osc.ok(
            admin,
            &[
                "role",
                "add",
                "--user",
                user,
                "--project",
                project,
                "member",
            ],
        );
        member_cloud(&config, &cloud.base, cloud_name, user, &password, project);
    }
    let bob_project = project_ids[1].clone();
    let assignments = osc.json(
        admin,
        &[
            "role",
            "assignment",
            "list",
            "--project",
            "Marketing",
            "--names",
        ],
    );
    assert_eq!(assignments.as_array().unwrap().len(), 1, "{assignments}");
    assert_eq!(
        assignments[0]["User"], "John.Doe@example.com@Default",
        "{assignments}"
    );
    let alice_token = osc.json("alice", &["token", "issue"]);
    assert_eq!(
        alice_token["project_id"],
        project_ids[0].as_str(),
        "{alice_token}"
    );

    // A flavor and the public test guest (kernel, ramdisk, root disk) with its data.
    osc.ok(
        admin,
        &[
            "flavor", "create", "--vcpus", "1", "--ram", "256", "--disk", "1", "m1.tiny",
        ],
    );
    let upload = |name: &str, file: &str, format: &str, extra: &[&str]| -> String {
        let path = guest.join(file);
        let mut args = vec![
            "image",
            "create",
            "--file",
            path.to_str().unwrap(),
            "--disk-format",
            format,
            "--container-format",
            if format == "qcow2" { "bare" } else { format },
            "--public",
        ];
        args.extend_from_slice(extra);
        args.push(name);
        let image = osc.json(admin, &args);
        assert_eq!(image["status"], "active", "{image}");
        image["id"].as_str().unwrap().to_string()
    };
    let kernel = upload("osc-kernel", "vmlinuz", "aki", &[]);
    let ramdisk = upload("osc-ramdisk", "initrd.img", "ari", &[]);
    let kernel_prop = format!("kernel_id={kernel}");
    let ramdisk_prop = format!("ramdisk_id={ramdisk}");
    upload(
        "osc-guest",
        "root.qcow2",
        "qcow2",
        &[
            "--property",
            &kernel_prop,
            "--property",
            &ramdisk_prop,
            "--property",
            "os_command_line=console=ttyS0 quiet panic=-1",
        ],
    );

    // A shared image: alice offers it to bob's project; it is in bob's list only once he
    // accepts, and alice sees his answer (Glance's members, through the real CLI).
    let shared_file = dir.path().join("shared.raw");
    std::fs::write(&shared_file, vec![0u8; 1 << 20]).unwrap();
    let shared = osc.json(
        "alice",
        &[
            "image",
            "create",
            "--file",
            shared_file.to_str().unwrap(),
            "--disk-format",
            "raw",
            "--shared",
            "alice-shared",
        ],
    );
    let shared_id = shared["id"].as_str().unwrap().to_string();
    // A member cannot look other projects up by name (Keystone's 403), so the share names
    // bob's project by its id, as OpenStack users do.
    osc.ok(
        "alice",
        &["image", "add", "project", &shared_id, &bob_project],
    );
    let ids = |list: Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|i| i["ID"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!ids(osc.json("bob", &["image", "list"])).contains(&shared_id));
    osc.ok("bob", &["image", "set", "--accept", &shared_id]);
    assert!(ids(osc.json("bob", &["image", "list"])).contains(&shared_id));
    let members = osc.json("alice", &["image", "member", "list", &shared_id]);
    assert_eq!(members[0]["Member ID"], bob_project.as_str(), "{members}");
    assert_eq!(members[0]["Status"], "accepted", "{members}");
    let e = osc.fails("alice", &["image", "set", "--accept", &shared_id]);
    assert!(
        e.contains("403") || e.to_lowercase().contains("forbidden") || e.contains("member"),
        "{e}"
    );
    osc.ok(
        "alice",
        &["image", "remove", "project", &shared_id, &bob_project],
    );
    assert!(!ids(osc.json("bob", &["image", "list"])).contains(&shared_id));

    // A shared network, as a private cloud's provider network: the admin shares it, and bob
    // boots on it below.
    osc.ok(admin, &["network", "create", "--share", "public"]);
    osc.ok(
        admin,
        &[
            "subnet",
            "create",
            "--network",
            "public",
            "--subnet-range",
            "10.93.9.0/24",
            "public-sub",
        ],
    );
    // A port made through Neutron comes back with its MAC and address, as Neutron's do (the
    // API waits for the network controller's assignment).
    let made = osc.json(
        "bob",
        &["port", "create", "--network", "public", "bob-port"],
    );
    assert!(made["fixed_ips"].to_string().contains("10.93.9."), "{made}");
    assert!(
        made["mac_address"]
            .as_str()
            .is_some_and(|m| m.starts_with("fa:16:3e:")),
        "{made}"
    );
    osc.ok("bob", &["port", "delete", "bob-port"]);

    // Each member: key pair, network, subnet, ICMP in the default group, a server with user
    // data that reaches ACTIVE and runs its script — alice's on her network, bob's on the
    // admin's shared one.
    let user_data = dir.path().join("user-data.sh");
    let mut servers = Vec::new();
    for (user, cidr, boot_on) in [
        ("alice", "10.93.1.0/24", "alice-net"),
        ("bob", "10.93.2.0/24", "public"),
    ] {
        let key = osc.ok(user, &["keypair", "create", &format!("{user}-key")]);
        assert!(key.contains("PRIVATE KEY"), "{key}");
        osc.ok(user, &["network", "create", &format!("{user}-net")]);
        osc.ok(
            user,
            &[
                "subnet",
                "create",
                "--network",
                &format!("{user}-net"),
                "--subnet-range",
                cidr,
                &format!("{user}-sub"),
            ],
        );
        osc.ok(
            user,
            &[
                "security", "group", "rule", "create", "--proto", "icmp", "default",
            ],
        );
        std::fs::write(&user_data, format!("#!/bin/sh\necho OSC-MARKER-{user}\n")).unwrap();
        let server = osc.json(
            user,
            &[
                "server",
                "create",
                "--image",
                "osc-guest",
                "--flavor",
                "m1.tiny",
                "--network",
                boot_on,
                "--key-name",
                &format!("{user}-key"),
                "--user-data",
                user_data.to_str().unwrap(),
                "--wait",
                &format!("{user}-web"),
            ],
        );
        assert_eq!(server["status"], "ACTIVE", "{server}");
        assert_eq!(server["key_name"], format!("{user}-key"));
        servers.push((user, server["id"].as_str().unwrap().to_string()));
    }

    // Isolation: each member lists only its own server and cannot show the other's.
    let (alice_id, bob_id) = (&servers[0].1, &servers[1].1);
    assert_eq!(
        names(&osc.json("alice", &["server", "list"])),
        ["alice-web"]
    );
    assert_eq!(names(&osc.json("bob", &["server", "list"])), ["bob-web"]);
    let refused = osc.fails("bob", &["server", "show", alice_id]);
    assert!(refused.contains("No Server found"), "{refused}");
    osc.fails("alice", &["server", "delete", bob_id]);
    // The admin sees both.
    let all = osc.json(admin, &["server", "list", "--all-projects"]);
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");

    // Renaming a project keeps its id, so its server stays: the admin finds it under the
    // new name and the member logs in with it.
    osc.ok(admin, &["project", "set", "--name", "Sales", "Marketing"]);
    assert_eq!(
        names(&osc.json(admin, &["server", "list", "--project", "Sales"])),
        ["alice-web"]
    );
    member_cloud(
        &config,
        &cloud.base,
        "alice-sales",
        "John.Doe@example.com",
        "pw-alice",
        "Sales",
    );
    assert_eq!(
        names(&osc.json("alice-sales", &["server", "list"])),
        ["alice-web"]
    );
    osc.fails("alice", &["server", "list"]);
    osc.ok(admin, &["project", "set", "--name", "Marketing", "Sales"]);

    // Bob's server on the shared network: its port is bob's, the network stays the admin's;
    // the guest's DHCP lease and its user data (through the metadata service) came over the
    // admin's network. Alice sees the network but not bob's port; the admin can neither
    // unshare nor delete the network while bob uses it.
    let bob_ports = osc.json("bob", &["port", "list", "--server", "bob-web", "--long"]);
    assert!(bob_ports.to_string().contains("10.93.9."), "{bob_ports}");
    let port_id = bob_ports[0]["ID"].as_str().unwrap().to_string();
    let port = osc.json(admin, &["port", "show", &port_id]);
    assert_eq!(port["project_id"], bob_project.as_str(), "{port}");
    eventually(
        "bob's guest on the shared network is up",
        Duration::from_secs(120),
        || {
            let console = osc.ok("bob", &["console", "log", "show", "bob-web"]);
            (console.contains("ADDR 10.93.9.") && console.contains("OSC-MARKER-bob")).then_some(())
        },
    );
    assert!(names(&osc.json("alice", &["network", "list"])).contains(&"public".to_string()));
    osc.fails("alice", &["port", "show", &port_id]);
    let e = osc.fails(admin, &["network", "set", "--no-share", "public"]);
    assert!(e.contains("cannot stop being shared"), "{e}");
    let e = osc.fails(admin, &["network", "delete", "public"]);
    assert!(e.contains("in use"), "{e}");

    // Show: the address from the subnet; the console: the user data ran.
    let shown = osc.json("alice", &["server", "show", "alice-web"]);
    let addresses = shown["addresses"].to_string();
    assert!(addresses.contains("10.93.1."), "{shown}");
    eventually("alice's user data ran", Duration::from_secs(120), || {
        osc.ok("alice", &["console", "log", "show", "alice-web"])
            .contains("OSC-MARKER-alice")
            .then_some(())
    });

    // Block storage from the CLI: a volume hot-plugged into the running guest (which reports
    // the new disk on its console), removed again (the busybox guest never lets go of a
    // hot-unplugged disk, so it stays `detaching` until the power-off below), a snapshot.
    osc.ok("alice", &["volume", "create", "--size", "1", "alice-data"]);
    wait_volume(&osc, "alice-data", "available");
    osc.ok(
        "alice",
        &["server", "add", "volume", "alice-web", "alice-data"],
    );
    wait_volume(&osc, "alice-data", "in-use");
    eventually("the guest sees the volume", Duration::from_secs(60), || {
        osc.ok("alice", &["console", "log", "show", "alice-web"])
            .contains("BLOCKDEV-ADDED")
            .then_some(())
    });
    let attached = osc.json("alice", &["server", "show", "alice-web"]);
    assert!(
        attached["volumes_attached"].to_string().contains(
            osc.json("alice", &["volume", "show", "alice-data"])["id"]
                .as_str()
                .unwrap()
        ),
        "{attached}"
    );
    osc.ok(
        "alice",
        &["server", "remove", "volume", "alice-web", "alice-data"],
    );

    // Power actions (the stop also completes the detach).
    osc.ok("alice", &["server", "stop", "alice-web"]);
    wait_status(&osc, "alice", "alice-web", "SHUTOFF");
    wait_volume(&osc, "alice-data", "available");
    osc.ok(
        "alice",
        &[
            "volume",
            "snapshot",
            "create",
            "--volume",
            "alice-data",
            "alice-snap",
        ],
    );
    eventually("snapshot available", Duration::from_secs(60), || {
        (osc.json("alice", &["volume", "snapshot", "show", "alice-snap"])["status"] == "available")
            .then_some(())
    });
    osc.ok("alice", &["server", "start", "alice-web"]);
    wait_status(&osc, "alice", "alice-web", "ACTIVE");
    osc.ok("alice", &["server", "reboot", "--hard", "alice-web"]);
    wait_status(&osc, "alice", "alice-web", "ACTIVE");

    // Boot from a volume made from the image; without delete-on-termination it outlives
    // the server.
    osc.ok(
        "alice",
        &[
            "volume",
            "create",
            "--image",
            "osc-guest",
            "--size",
            "1",
            "--bootable",
            "alice-boot",
        ],
    );
    wait_volume(&osc, "alice-boot", "available");
    let bfv = osc.json(
        "alice",
        &[
            "server",
            "create",
            "--volume",
            "alice-boot",
            "--flavor",
            "m1.tiny",
            "--network",
            "alice-net",
            "--wait",
            "alice-bfv",
        ],
    );
    assert_eq!(bfv["status"], "ACTIVE", "{bfv}");
    eventually(
        "the volume-booted guest is up",
        Duration::from_secs(120),
        || {
            osc.ok("alice", &["console", "log", "show", "alice-bfv"])
                .contains("CIRRUS-READY")
                .then_some(())
        },
    );
    osc.ok("alice", &["server", "delete", "--wait", "alice-bfv"]);
    wait_volume(&osc, "alice-boot", "available");

    // Errors: unknown flavor and image, malformed user data (too big), a quota overrun —
    // OpenStack's codes, messages naming the problem, nothing created.
    let e = osc.fails(
        "alice",
        &[
            "server",
            "create",
            "--image",
            "osc-guest",
            "--flavor",
            "m9.nope",
            "--network",
            "alice-net",
            "x1",
        ],
    );
    assert!(e.contains("m9.nope"), "{e}");
    let e = osc.fails(
        "alice",
        &[
            "server",
            "create",
            "--image",
            "no-such-image",
            "--flavor",
            "m1.tiny",
            "--network",
            "alice-net",
            "x2",
        ],
    );
    assert!(e.contains("no-such-image"), "{e}");
    let big = dir.path().join("big-user-data");
    std::fs::write(&big, vec![b'x'; 70 * 1024]).unwrap();
    let e = osc.fails(
        "alice",
        &[
            "server",
            "create",
            "--image",
            "osc-guest",
            "--flavor",
            "m1.tiny",
            "--network",
            "alice-net",
            "--user-data",
            big.to_str().unwrap(),
            "x3",
        ],
    );
    assert!(
        e.contains("400") || e.to_lowercase().contains("user_data"),
        "{e}"
    );
    osc.ok(admin, &["quota", "set", "--instances", "1", "Marketing"]);
    let e = osc.fails(
        "alice",
        &[
            "server",
            "create",
            "--image",
            "osc-guest",
            "--flavor",
            "m1.tiny",
            "--network",
            "alice-net",
            "x4",
        ],
    );
    assert!(e.contains("instances") && e.contains("403"), "{e}");
    assert_eq!(
        names(&osc.json("alice", &["server", "list"])),
        ["alice-web"]
    );

    // Deletion finishes through the finalizers; the image downloads byte for byte.
    for (user, _) in &servers {
        osc.ok(
            user,
            &["server", "delete", "--wait", &format!("{user}-web")],
        );
        assert!(
            osc.json(user, &["server", "list"])
                .as_array()
                .unwrap()
                .is_empty()
        );
    }
    let saved = dir.path().join("saved.qcow2");
    osc.ok(
        "alice",
        &[
            "image",
            "save",
            "--file",
            saved.to_str().unwrap(),
            "osc-guest",
        ],
    );
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        std::fs::read(guest.join("root.qcow2")).unwrap(),
        "image save returned other bytes"
    );

    // openstacksdk: the same round trip from a script.
    osc.ok(admin, &["quota", "set", "--instances", "10", "Marketing"]);
    let script = repo_root().join("tests/openstack/sdk_round_trip.py");
    let out = Command::new(venv.join("bin/python"))
        .arg(&script)
        .env("OS_CLIENT_CONFIG_FILE", &config)
        .env("OS_CLOUD", "alice")
        .stdin(Stdio::null())
        .output()
        .expect("run the openstacksdk script");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "openstacksdk round trip failed: {text}"
    );
    assert!(text.contains("SDK-ROUND-TRIP-OK"), "{text}");

    // Everything the members made can go; afterwards no domain is left.
    osc.ok("alice", &["volume", "snapshot", "delete", "alice-snap"]);
    eventually("snapshot gone", Duration::from_secs(60), || {
        osc.run("alice", &["volume", "snapshot", "show", "alice-snap"])
            .is_err()
            .then_some(())
    });
    for volume in ["alice-data", "alice-boot"] {
        osc.ok("alice", &["volume", "delete", volume]);
    }
    eventually("volumes gone", Duration::from_secs(60), || {
        osc.json("alice", &["volume", "list"])
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
    eventually(
        "the shared network is free again",
        Duration::from_secs(60),
        || osc.run(admin, &["network", "delete", "public"]).ok(),
    );
    for user in ["alice", "bob"] {
        osc.ok(user, &["subnet", "delete", &format!("{user}-sub")]);
        osc.ok(user, &["network", "delete", &format!("{user}-net")]);
        osc.ok(user, &["keypair", "delete", &format!("{user}-key")]);
    }
    let domains = Command::new("virsh")
        .args(["-c", "qemu:///system", "list", "--all", "--name"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&domains.stdout).to_string();
    for (_, id) in &servers {
        assert!(
            !listed.contains(id.as_str()),
            "domain of {id} left: {listed}"
        );
    }
    drop(cloud);
}
