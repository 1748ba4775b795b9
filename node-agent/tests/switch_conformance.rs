//! The switch conformance suite against every implementation:
//! - `fake_switch_conformance`: the in-memory fake (always);
//! - `real_switch_conformance`: the running Open vSwitch (bridge `cbt<pid>b`, removed on
//!   drop); `real_switch_bench_port_plug` prints plug timings.
//!
//! The real tests fail with instructions when ovsdb-server is unreachable, unless
//! `CIRRUS_SKIP_OVS=1`. Start OVS with `setsid hack/start-ovs.sh start`.

use std::process::Command;
use std::time::Duration;

use cirrus_node_agent::net::ovsdb::DEFAULT_SOCKET;
use cirrus_node_agent::net::switch::conformance::{self, BridgeGuard, SuiteConfig};
use cirrus_node_agent::net::switch::fake::FakeSwitch;
use cirrus_node_agent::net::switch::ovs::OvsSwitch;
use cirrus_node_agent::net::switch::{Switch, bench};

#[test]
fn fake_switch_conformance() {
    let fake = FakeSwitch::new();
    conformance::run(
        &fake,
        &SuiteConfig {
            prefix: "fk",
            make_device: &|n| fake.add_device(n),
            remove_device: &|n| fake.remove_device(n),
            oob_delete_port: &|b, p| assert!(fake.oob_delete_port(b, p)),
            timeout: Duration::from_secs(2),
        },
    );
}

/// The real switch, or `None` when the caller opted out with `CIRRUS_SKIP_OVS=1`.
fn real_ovs(test: &str) -> Option<OvsSwitch> {
    if std::env::var("CIRRUS_SKIP_OVS").as_deref() == Ok("1") {
        eprintln!("SKIP {test}: CIRRUS_SKIP_OVS=1");
        return None;
    }
    match OvsSwitch::connect(DEFAULT_SOCKET) {
        Ok(sw) => Some(sw),
        Err(e) => panic!(
            "Open vSwitch is not reachable at {DEFAULT_SOCKET}: {e}\n\
             start it with `setsid hack/start-ovs.sh start`, or set CIRRUS_SKIP_OVS=1"
        ),
    }
}

fn cmd(prog: &str, args: &[&str]) {
    let out = Command::new(prog).args(args).output().expect(prog);
    assert!(
        out.status.success(),
        "{prog} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A per-process prefix: `cbt` + pid mod 10000 + a test letter (≤ 9 bytes).
fn prefix(letter: char) -> String {
    format!("cbt{}{letter}", std::process::id() % 10000)
}

#[test]
fn real_switch_conformance() {
    let Some(sw) = real_ovs("real_switch_conformance") else {
        return;
    };
    let p = prefix('c');
    conformance::run(
        &sw,
        &SuiteConfig {
            prefix: &p,
            make_device: &|n| {
                cmd("ip", &["tuntap", "add", "dev", n, "mode", "tap"]);
                cmd("ip", &["link", "set", n, "up"]);
            },
            remove_device: &|n| {
                let _ = Command::new("ip").args(["link", "del", n]).output();
            },
            oob_delete_port: &|b, n| cmd("ovs-vsctl", &["del-port", b, n]),
            timeout: Duration::from_secs(10),
        },
    );
}

/// OVS specifics the fake can't show: a bridge changed behind our back (fail_mode, local
/// interface down) is fixed by `bridge_ensure`; the datapath override is honoured; only one
/// bridge row exists after ensures.
#[test]
fn real_bridge_ensure_fixes_drift() {
    let Some(sw) = real_ovs("real_bridge_ensure_fixes_drift") else {
        return;
    };
    let sw = sw.with_datapath_type("netdev");
    let bridge = format!("{}b", prefix('f'));
    let _g = BridgeGuard::new(&sw, &bridge);
    let info = sw.bridge_ensure(&bridge).expect("bridge_ensure");
    assert_eq!(info.datapath_type, "netdev");
    let get = |col: &str| {
        let out = Command::new("ovs-vsctl")
            .args(["get", "Bridge", &bridge, col])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(get("fail_mode"), "secure");
    assert_eq!(get("datapath_type"), "netdev");
    let up = || {
        std::fs::read_to_string(format!("/sys/class/net/{bridge}/flags"))
            .ok()
            .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
            .is_some_and(|f| f & 1 == 1)
    };
    assert!(up(), "the bridge's local interface is up");
    cmd(
        "ovs-vsctl",
        &["set", "Bridge", &bridge, "fail_mode=standalone"],
    );
    cmd("ip", &["link", "set", &bridge, "down"]);
    sw.bridge_ensure(&bridge).expect("bridge_ensure again");
    assert_eq!(get("fail_mode"), "secure");
    assert!(up(), "brought up again");
    let out = Command::new("ovs-vsctl").arg("list-br").output().unwrap();
    let n = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == bridge)
        .count();
    assert_eq!(n, 1);
}

#[test]
fn real_switch_bench_port_plug() {
    let Some(sw) = real_ovs("real_switch_bench_port_plug") else {
        return;
    };
    let p = prefix('p');
    let bridge = format!("{p}b");
    let _g = BridgeGuard::new(&sw, &bridge);
    sw.bridge_ensure(&bridge).expect("bridge_ensure");
    let n = std::env::var("CIRRUS_PLUG_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let t = bench::bench_port_plug(&sw, &bridge, &p, n).expect("bench");
    eprintln!(
        "port plug (OVS + tap), n={}: port_ensure p50={:?} p99={:?}; ovs-vsctl add-port p50={:?} p99={:?}",
        t.n, t.ensure_p50, t.ensure_p99, t.vsctl_p50, t.vsctl_p99
    );
    assert_eq!(
        sw.ports(&bridge).expect("ports"),
        vec![],
        "bench cleaned up"
    );
    assert!(t.ensure_p99 > Duration::ZERO);
}
