//! Tenant networks end to end through `cirrus up` on real Open vSwitch (userspace datapath
//! here), dnsmasq in namespaces and libvirt guests under TCG. The guests are driven by their
//! user data (a shell script the test guest runs, output on the serial console):
//! - two servers on one network get the addresses their ports say (DHCP), read their own
//!   metadata and user data, and ping each other; a server on a second network with the same
//!   CIDR cannot reach them (L2 isolation, not routing); a guest spoofing another's address
//!   cannot read that one's metadata;
//! - a server in another security group cannot ping one in `default` until an ICMP ingress
//!   rule is added to `default` on the running guests; a guest that changes its MAC or IP
//!   gets nothing through;
//! - deleting everything leaves no OVS port, no namespace, no dnsmasq, no allocation.
//!
//! Needs libvirtd (`hack/start-libvirt.sh`), Open vSwitch (`hack/start-ovs.sh`) and the guest
//! (`hack/build-guest.sh`); fails with a hint when one is missing unless
//! `CIRRUS_SKIP_LIBVIRT=1` or `CIRRUS_SKIP_OVS=1`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::{Cloud, DomainSweeper, NetworkSweeper, eventually, guest_dir, run_ok};
use serde_json::Value;

fn skip() -> bool {
    common::skipped_by(&["CIRRUS_SKIP_LIBVIRT", "CIRRUS_SKIP_OVS"])
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is not installed: {e}"));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn require_daemons() {
    assert!(
        sh("virsh", &["-c", "qemu:///system", "version"]).contains("QEMU"),
        "libvirtd is not reachable at qemu:///system: run hack/start-libvirt.sh (or set CIRRUS_SKIP_LIBVIRT=1)"
    );
    let ovs = Command::new("ovs-vsctl")
        .args(["--timeout=5", "show"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        ovs.is_ok_and(|s| s.success()),
        "Open vSwitch is not running: run hack/start-ovs.sh (or set CIRRUS_SKIP_OVS=1)"
    );
}

/// A test cloud with a libvirt node agent on its own bridge, with the guest images uploaded.
struct Env {
    cloud: Cloud,
    bridge: String,
    // Dropped after the cloud, in this order (fields drop in declaration order): the domains,
    // the host network state, and last the directory the sweepers read.
    _domains: DomainSweeper,
    _network: NetworkSweeper,
    dir: tempfile::TempDir,
}

impl Env {
    fn start(tag: &str) -> Env {
        let guest = guest_dir();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let bridge = format!("cbr{tag}{}", std::process::id() % 100_000);
        let network = NetworkSweeper {
            bridge: bridge.clone(),
            state_dir: data.join("node"),
        };
        let domains = DomainSweeper {
            state_dir: data.join("node"),
        };
        let cloud = Cloud::start(
            &data,
            &[
                "--node-agent",
                "libvirt",
                "--node-name",
                "net-node",
                "--bridge",
                &bridge,
            ],
        );
        cloud.add_flavors_and_guest_images(&guest);
        Env {
            cloud,
            dir,
            bridge,
            _domains: domains,
            _network: network,
        }
    }

    fn apply(&self, name: &str, yaml: &str) {
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        run_ok(&self.cloud, &["apply", "-f", path.to_str().unwrap()]);
    }

    fn network(&self, name: &str, cidr: &str) {
        self.apply(
            name,
            &format!(
                "apiVersion: cirrus.dev/v1\nkind: Network\nmetadata: {{name: {name}, project: demo}}\nspec: {{}}\n---\n\
                 apiVersion: cirrus.dev/v1\nkind: Subnet\nmetadata: {{name: {name}-v4, project: demo}}\n\
                 spec: {{network: {name}, cidr: {cidr}}}\n"
            ),
        );
    }

    fn server(&self, name: &str, network: &str, ip: &str, groups: &[&str], script: &str) {
        self.server_with(name, network, ip, groups, script, "");
    }

    fn server_with(
        &self,
        name: &str,
        network: &str,
        ip: &str,
        groups: &[&str],
        script: &str,
        extra: &str,
    ) {
        let user_data = base64::engine::general_purpose::STANDARD.encode(script);
        let groups = if groups.is_empty() {
            String::new()
        } else {
            format!("  securityGroups: [{}]\n", groups.join(", "))
        };
        self.apply(
            name,
            &format!(
                "apiVersion: cirrus.dev/v1\nkind: Server\nmetadata: {{name: {name}, project: demo}}\nspec:\n  flavor: m1.tiny\n  image: guest\n  networks:\n  - network: {network}\n    fixedIp: {ip}\n{groups}  userData: {user_data}\n{extra}"
            ),
        );
    }

    fn get(&self, kind: &str, name: &str) -> Value {
        serde_json::from_str(&run_ok(
            &self.cloud,
            &["get", kind, name, "-p", "demo", "-o", "json"],
        ))
        .unwrap()
    }

    fn list(&self, plural: &str) -> Vec<Value> {
        let out = run_ok(&self.cloud, &["get", plural, "-p", "demo", "-o", "json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["items"].as_array().cloned().unwrap_or_default()
    }

    fn console(&self, name: &str) -> String {
        let out = self
            .cloud
            .cli(&["console-log", "server", name, "-p", "demo"]);
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn wait_console(&self, name: &str, needle: &str, timeout: Duration) -> String {
        eventually(&format!("{name} console shows {needle:?}"), timeout, || {
            let c = self.console(name);
            c.contains(needle).then_some(c)
        })
    }

    fn delete(&self, kind: &str, name: &str) {
        run_ok(
            &self.cloud,
            &[
                "delete",
                kind,
                name,
                "-p",
                "demo",
                "--wait",
                "--timeout",
                "120s",
            ],
        );
    }

    fn bridge_ports(&self) -> Vec<String> {
        sh("ovs-vsctl", &["list-ports", &self.bridge])
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

/// A guest script pinging `ip` until it answers (at most `tries` times), printing
/// `PING <label> ok|fail`.
fn ping_until(label: &str, ip: &str, tries: u32) -> String {
    format!(
        "i=0; r=fail; while [ $i -lt {tries} ]; do if ping -c1 -W1 {ip} >/dev/null 2>&1; then r=ok; break; fi; i=$((i+1)); done; echo \"PING {label} $r\"\n"
    )
}

fn dhcp_namespaces() -> Vec<String> {
    sh("ip", &["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("qdhcp-"))
        .map(str::to_string)
        .collect()
}

fn dnsmasq_for(state_dir: &Path) -> usize {
    let needle = state_dir.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| {
            let cmd = std::fs::read_to_string(e.path().join("cmdline")).unwrap_or_default();
            cmd.starts_with("dnsmasq") && cmd.contains(&needle)
        })
        .count()
}

#[test]
fn real_network_dhcp_metadata_and_isolation() {
    if skip() {
        return;
    }
    require_daemons();
    let mut env = Env::start("n");
    env.network("net-a", "10.10.0.0/24");
    // Same CIDR on another network: only L2 isolation keeps b1 away from a1/a2.
    env.network("net-b", "10.10.0.0/24");

    let a1 = format!(
        "#!/bin/sh\necho MARKER-a1-userdata\n{}",
        ping_until("a2", "10.10.0.12", 150)
    );
    // a2 spoofs a1's address only once a1 has pinged it (its ICMP InEchos counter moved),
    // so a1's own test is not disturbed.
    let a2 = format!(
        "#!/bin/sh\n{}\
         n=0; while [ $n -lt 300 ]; do e=$(awk '/^Icmp:/ {{ if (!h) {{ for (i = 1; i <= NF; i++) if ($i == \"InEchos\") c = i; h = 1 }} else print $c }}' /proc/net/snmp); [ \"${{e:-0}}\" -gt 0 ] && break; n=$((n+1)); sleep 0.5; done\n\
         echo \"PINGED-BY-A1 ${{e:-0}}\"\n\
         via=$(ip route | awk '/^169.254.169.254/ {{print $3}}')\n\
         ip addr flush dev eth0; ip addr add 10.10.0.11/24 dev eth0; ip route add 169.254.169.254/32 via $via dev eth0\n\
         md=$(timeout 3 wget -q -O - http://169.254.169.254/openstack/latest/meta_data.json 2>/dev/null | grep -o '\"uuid\": *\"[^\"]*\"')\n\
         echo \"SPOOF-META ${{md:-none}}\"\n",
        ping_until("a1", "10.10.0.11", 150)
    );
    let b1 = format!("#!/bin/sh\n{}", ping_until("a1", "10.10.0.11", 15));
    env.server("a1", "net-a", "10.10.0.11", &[], &a1);
    env.server("a2", "net-a", "10.10.0.12", &[], &a2);
    env.server("b1", "net-b", "10.10.0.13", &[], &b1);

    let a1_console = env.wait_console("a1", "CIRRUS-READY a1", Duration::from_secs(240));
    let a1_uid = env.get("server", "a1")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(a1_console.contains("ADDR 10.10.0.11"), "{a1_console}");
    assert!(
        a1_console.contains(&format!("META {a1_uid} a1")),
        "{a1_console}"
    );
    assert!(a1_console.contains("MARKER-a1-userdata"), "{a1_console}");
    assert!(
        a1_console.contains("PING a2 ok"),
        "{a1_console}\n--- a2:\n{}\n--- host:\n{}",
        env.console("a2"),
        sh("ovs-vsctl", &["show"])
    );

    let a2_console = env.wait_console("a2", "CIRRUS-READY a2", Duration::from_secs(240));
    assert!(a2_console.contains("ADDR 10.10.0.12"), "{a2_console}");
    assert!(a2_console.contains("PING a1 ok"), "{a2_console}");
    assert!(a2_console.contains("SPOOF-META none"), "{a2_console}");
    assert!(
        !a2_console.contains(&a1_uid),
        "a2 read a1's metadata: {a2_console}"
    );

    let b1_console = env.wait_console("b1", "CIRRUS-READY b1", Duration::from_secs(240));
    assert!(b1_console.contains("ADDR 10.10.0.13"), "{b1_console}");
    assert!(
        b1_console.contains("PING a1 fail"),
        "b1 reached another network: {b1_console}"
    );

    let a1 = env.get("server", "a1");
    assert_eq!(
        a1["status"]["addresses"]["net-a"][0]["ip"], "10.10.0.11",
        "{a1}"
    );
    let port_name = a1["status"]["addresses"]["net-a"][0]["port"]
        .as_str()
        .unwrap()
        .to_string();
    let port = env.get("port", &port_name);
    assert_eq!(port["status"]["phase"], "ACTIVE", "{port}");
    assert!(
        port["status"]["macAddress"]
            .as_str()
            .unwrap()
            .starts_with("fa:16:3e:"),
        "{port}"
    );

    // Drift: a1's OVS port deleted behind Cirrus's back comes back (tagged) by itself.
    let tap = format!("tap{}", &port["metadata"]["uid"].as_str().unwrap()[..11]);
    assert!(
        env.bridge_ports().contains(&tap),
        "{:?}",
        env.bridge_ports()
    );
    sh("ovs-vsctl", &["del-port", &env.bridge, &tap]);
    eventually("tap re-plugged", Duration::from_secs(30), || {
        env.bridge_ports().contains(&tap).then_some(())
    });
    assert_ne!(sh("ovs-vsctl", &["get", "port", &tap, "tag"]).trim(), "[]");

    // kill -9 of the whole cloud (agent included) and a restart: the host state converges
    // to the same thing, nothing duplicated (one dnsmasq per network, same OVS ports).
    let state_dir = env.dir.path().join("data/node");
    let mut before = env.bridge_ports();
    before.sort();
    env.cloud.restart();
    std::thread::sleep(Duration::from_secs(3));
    eventually(
        "same host state after restart",
        Duration::from_secs(60),
        || {
            let mut now = env.bridge_ports();
            now.sort();
            (now == before && dnsmasq_for(&state_dir) == 2).then_some(())
        },
    );
    assert_eq!(env.get("port", &port_name)["status"]["phase"], "ACTIVE");

    // Everything goes; nothing stays behind.
    let net_uids: Vec<String> = ["net-a", "net-b"]
        .iter()
        .map(|n| {
            env.get("network", n)["metadata"]["uid"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for s in ["a1", "a2", "b1"] {
        env.delete("server", s);
    }
    for n in ["net-a", "net-b"] {
        env.delete("network", n);
    }
    eventually(
        "host network state removed",
        Duration::from_secs(60),
        || {
            let ns = dhcp_namespaces();
            let left = net_uids.iter().any(|u| ns.contains(&format!("qdhcp-{u}")));
            (!left && env.bridge_ports().is_empty() && dnsmasq_for(&state_dir) == 0).then_some(())
        },
    );
    assert!(
        !Path::new("/sys/class/net").join(&tap).exists(),
        "tap {tap} left behind"
    );
    assert!(
        env.list("ports").is_empty(),
        "ports left: {:?}",
        env.list("ports")
    );
    assert!(
        env.list("ipallocations").is_empty(),
        "allocations left: {:?}",
        env.list("ipallocations")
    );
    assert!(
        env.list("subnets").is_empty(),
        "subnets left: {:?}",
        env.list("subnets")
    );
}

#[test]
fn real_security_groups_on_running_guests() {
    if skip() {
        return;
    }
    require_daemons();
    let env = Env::start("s");
    env.network("net-s", "10.30.0.0/24");
    env.apply(
        "g2",
        "apiVersion: cirrus.dev/v1\nkind: SecurityGroup\nmetadata: {name: g2, project: demo}\n\
         spec:\n  rules:\n  - {direction: egress, ethertype: IPv4}\n",
    );
    // s2 (group g2) pings s1 (group default) until it answers, then spoofs its MAC and its IP.
    let s2 = "#!/bin/sh\n\
        mac=$(cat /sys/class/net/eth0/address)\n\
        i=0; last=; while [ $i -lt 240 ]; do\n\
          if ping -c1 -W1 10.30.0.11 >/dev/null 2>&1; then r=ok; else r=fail; fi\n\
          [ \"$r\" != \"$last\" ] && echo \"PING s1 $r\"; last=$r\n\
          [ $r = ok ] && break; i=$((i+1)); sleep 0.5\n\
        done\n\
        ip link set eth0 down; ip link set eth0 address fa:16:3e:00:00:99; ip link set eth0 up\n\
        if ping -c3 -W1 10.30.0.11 >/dev/null 2>&1; then echo SPOOFMAC ok; else echo SPOOFMAC fail; fi\n\
        ip link set eth0 down; ip link set eth0 address $mac; ip link set eth0 up\n\
        if ping -c5 -W1 10.30.0.11 >/dev/null 2>&1; then echo RESTORED ok; else echo RESTORED fail; fi\n\
        ip addr flush dev eth0; ip addr add 10.30.0.99/24 dev eth0\n\
        if ping -c3 -W1 10.30.0.11 >/dev/null 2>&1; then echo SPOOFIP ok; else echo SPOOFIP fail; fi\n";
    // s1 also gets a config drive.
    env.server_with(
        "s1",
        "net-s",
        "10.30.0.11",
        &[],
        "#!/bin/sh\necho s1-up\n",
        "  configDrive: true\n",
    );
    env.server("s2", "net-s", "10.30.0.12", &["g2"], s2);

    let s1_console = env.wait_console("s1", "CIRRUS-READY s1", Duration::from_secs(240));
    let s1_uid = env.get("server", "s1")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        s1_console.contains(&format!("CONFIGDRIVE vdb {s1_uid}")),
        "{s1_console}"
    );
    env.wait_console("s2", "PING s1 fail", Duration::from_secs(240));
    // Both guests run; s1's `default` group admits only its own members: still failing.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !env.console("s2").contains("PING s1 ok"),
        "{}",
        env.console("s2")
    );

    // Add an ICMP ingress rule to `default` on the running guests.
    let mut group = env.get("securitygroup", "default");
    group["spec"]["rules"]
        .as_array_mut()
        .expect("default has rules")
        .push(serde_json::json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp"}));
    let url = format!(
        "{}/apis/cirrus.dev/v1/projects/demo/securitygroups/default",
        env.cloud.base
    );
    let resp = env.cloud.http().put(&url).json(&group).send().unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text());

    let c = env.wait_console("s2", "PING s1 ok", Duration::from_secs(60));
    assert!(c.contains("PING s1 fail"), "{c}");
    let c = env.wait_console("s2", "SPOOFIP", Duration::from_secs(120));
    assert!(
        c.contains("SPOOFMAC fail"),
        "a spoofed MAC got through: {c}"
    );
    assert!(
        c.contains("RESTORED ok"),
        "the real MAC should work again: {c}"
    );
    assert!(c.contains("SPOOFIP fail"), "a spoofed IP got through: {c}");

    // The default group cannot be deleted.
    let out = env
        .cloud
        .cli(&["delete", "securitygroup", "default", "-p", "demo"]);
    assert!(!out.status.success(), "deleting default succeeded");

    for s in ["s1", "s2"] {
        env.delete("server", s);
    }
    let net_uid = env.get("network", "net-s")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    env.delete("network", "net-s");
    let state_dir = env.dir.path().join("data/node");
    eventually(
        "host network state removed",
        Duration::from_secs(60),
        || {
            (env.bridge_ports().is_empty()
                && dnsmasq_for(&state_dir) == 0
                && !dhcp_namespaces().contains(&format!("qdhcp-{net_uid}")))
            .then_some(())
        },
    );
    assert!(env.list("ipallocations").is_empty());
}
