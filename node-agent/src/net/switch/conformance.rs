//! The one conformance suite every [`Switch`] implementation must pass: the in-memory fake
//! and real Open vSwitch (see `node-agent/tests/switch_conformance.rs`).
//!
//! The suite checks behavior, never timings: every wait is bounded ([`SuiteConfig::timeout`])
//! and fails with what it saw. Bridges are deleted by a [`BridgeGuard`] and devices by a
//! [`DeviceGuard`], also when an assertion fails.
//!
//! Compiled only for tests and with the `testing` feature (which this crate's own
//! dev-dependency and `cirrus-bench` enable): it is generic over this crate's trait and run
//! by this crate's integration tests against every implementation, so it stays next to the
//! trait, but a production build does not contain it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{PluggedPort, PortKind, PortPlug, Switch, SwitchError, normalize_flow};

/// How to run the suite against one implementation.
pub struct SuiteConfig<'a> {
    /// A host-unique prefix of at most 9 bytes: the suite's bridge is `<prefix>b` and its
    /// ports `<prefix><suffix>` (within 15 bytes).
    pub prefix: &'a str,
    /// Creates a network device (a tap) named so, as libvirt would for a guest.
    pub make_device: &'a dyn Fn(&str),
    /// Removes a device made by `make_device` (no error if it is gone).
    pub remove_device: &'a dyn Fn(&str),
    /// Deletes a port behind the switch's back (`ovs-vsctl del-port`, or the fake's hook).
    pub oob_delete_port: &'a dyn Fn(&str, &str),
    /// Bound for every wait.
    pub timeout: Duration,
}

/// Deletes a bridge when dropped (also while a failed assertion unwinds).
pub struct BridgeGuard<'a> {
    sw: &'a dyn Switch,
    name: String,
}

impl<'a> BridgeGuard<'a> {
    /// Guards `name` on `sw`.
    pub fn new(sw: &'a dyn Switch, name: &str) -> Self {
        Self {
            sw,
            name: name.to_owned(),
        }
    }
}

impl Drop for BridgeGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.sw.bridge_delete(&self.name) {
            eprintln!("cleanup: deleting bridge {} failed: {e}", self.name);
        }
    }
}

/// Removes a device when dropped.
pub struct DeviceGuard<'a> {
    remove: &'a dyn Fn(&str),
    name: String,
}

impl<'a> DeviceGuard<'a> {
    /// Guards device `name`, removed with `remove`.
    pub fn new(remove: &'a dyn Fn(&str), name: &str) -> Self {
        Self {
            remove,
            name: name.to_owned(),
        }
    }
}

impl Drop for DeviceGuard<'_> {
    fn drop(&mut self) {
        (self.remove)(&self.name);
    }
}

fn plug(name: &str, kind: PortKind, tag: Option<u16>, ids: &[(&str, &str)]) -> PortPlug {
    PortPlug {
        name: name.to_owned(),
        kind,
        tag,
        external_ids: ids
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn port<'p>(ports: &'p [PluggedPort], name: &str) -> Option<&'p PluggedPort> {
    ports.iter().find(|p| p.name == name)
}

/// Polls `ports(bridge)` until `pred` holds for the port named `name` (or its absence).
///
/// # Panics
/// When it does not hold within `timeout`.
pub fn wait_port(
    sw: &dyn Switch,
    bridge: &str,
    name: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(Option<&PluggedPort>) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let ports = sw.ports(bridge).expect("ports");
        if pred(port(&ports, name)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: wanted {what}, still {:?} after {timeout:?}",
            port(&ports, name)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs every check against `sw`.
pub fn run(sw: &dyn Switch, cfg: &SuiteConfig<'_>) {
    assert!(cfg.prefix.len() <= 9, "prefix too long");
    let bridge = format!("{}b", cfg.prefix);
    let _g = BridgeGuard::new(sw, &bridge);
    bridge_ensure_is_idempotent(sw, &bridge);
    internal_port_ensure_is_idempotent(sw, &bridge, cfg);
    tag_and_external_ids_change_in_place(sw, &bridge, cfg);
    port_delete_reports_whether_it_existed(sw, &bridge, cfg);
    ports_lists_what_was_ensured(sw, &bridge, cfg);
    drift_is_signalled_and_repaired(sw, &bridge, cfg);
    flows_replace_sets_exactly_the_given_flows(sw, &bridge);
    system_port_without_device_reports_error(sw, &bridge, cfg);
    concurrent_port_ensure_makes_one_port(sw, &bridge, cfg);
    port_names_are_host_wide(sw, &bridge, cfg);
    concurrent_bridge_ensure_makes_one_bridge(sw, cfg);
    missing_bridge_is_an_error(sw, cfg);
}

/// A port name belongs to one bridge: ensuring it on another is refused, not moved.
pub fn port_names_are_host_wide(sw: &dyn Switch, bridge: &str, cfg: &SuiteConfig<'_>) {
    let other = format!("{}o", cfg.prefix);
    let _g = BridgeGuard::new(sw, &other);
    sw.bridge_ensure(&other).expect("bridge_ensure other");
    let name = format!("{}h1", cfg.prefix);
    let p = plug(&name, PortKind::Internal, None, &[]);
    sw.port_ensure(bridge, &p).expect("port_ensure");
    match sw.port_ensure(&other, &p) {
        Err(SwitchError::PortOnOtherBridge { on, wanted, .. }) => {
            assert_eq!((on.as_str(), wanted.as_str()), (bridge, other.as_str()));
        }
        r => panic!("want PortOnOtherBridge, got {r:?}"),
    }
    assert!(
        !sw.port_delete(&other, &name).expect("port_delete"),
        "not on that bridge"
    );
    assert!(port(&sw.ports(bridge).expect("ports"), &name).is_some());
    assert!(sw.port_delete(bridge, &name).expect("port_delete"));
}

/// Several threads ensuring the same bridge at once leave one bridge that works.
pub fn concurrent_bridge_ensure_makes_one_bridge(sw: &dyn Switch, cfg: &SuiteConfig<'_>) {
    let bridge = format!("{}k", cfg.prefix);
    let _g = BridgeGuard::new(sw, &bridge);
    let infos: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| s.spawn(|| sw.bridge_ensure(&bridge)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("thread").expect("concurrent bridge_ensure"))
            .collect()
    });
    assert!(infos.iter().all(|i| *i == infos[0]), "{infos:?}");
    assert_eq!(sw.ports(&bridge).expect("ports"), vec![]);
    assert!(sw.bridge_delete(&bridge).expect("bridge_delete"));
    assert!(!sw.bridge_delete(&bridge).expect("bridge_delete again"));
}

/// Ensuring a bridge twice gives the same answer and no ports; the datapath is reported.
pub fn bridge_ensure_is_idempotent(sw: &dyn Switch, bridge: &str) {
    let a = sw.bridge_ensure(bridge).expect("bridge_ensure");
    let b = sw.bridge_ensure(bridge).expect("bridge_ensure again");
    assert_eq!(a, b);
    assert_eq!(a.name, bridge);
    assert!(
        a.datapath_type == "netdev" || a.datapath_type == "system",
        "datapath {}",
        a.datapath_type
    );
    assert_eq!(
        sw.ports(bridge).expect("ports"),
        vec![],
        "a new bridge has no ports"
    );
}

/// An internal port ensured twice is one port with one stable ofport > 0.
pub fn internal_port_ensure_is_idempotent(sw: &dyn Switch, bridge: &str, cfg: &SuiteConfig<'_>) {
    let name = format!("{}i1", cfg.prefix);
    let p = plug(&name, PortKind::Internal, Some(7), &[("iface-id", "u1")]);
    let a = sw.port_ensure(bridge, &p).expect("port_ensure");
    assert!(
        a.ofport.is_some_and(|o| o > 0),
        "internal port attached: {a:?}"
    );
    assert_eq!(a.error, None);
    assert_eq!(a.kind, PortKind::Internal);
    assert_eq!(a.tag, Some(7));
    let b = sw.port_ensure(bridge, &p).expect("port_ensure again");
    assert_eq!(a, b, "ensuring again changes nothing");
    let ports = sw.ports(bridge).expect("ports");
    assert_eq!(ports.iter().filter(|q| q.name == name).count(), 1);
    assert!(sw.port_delete(bridge, &name).expect("port_delete"));
}

/// A wrong tag or external_ids is fixed in place: same port, same ofport.
pub fn tag_and_external_ids_change_in_place(sw: &dyn Switch, bridge: &str, cfg: &SuiteConfig<'_>) {
    let name = format!("{}i2", cfg.prefix);
    let a = sw
        .port_ensure(
            bridge,
            &plug(
                &name,
                PortKind::Internal,
                Some(5),
                &[("iface-id", "a"), ("x", "1")],
            ),
        )
        .expect("port_ensure");
    let b = sw
        .port_ensure(
            bridge,
            &plug(&name, PortKind::Internal, Some(6), &[("iface-id", "b")]),
        )
        .expect("port_ensure with new tag/ids");
    assert_eq!(a.ofport, b.ofport, "fixed in place, not re-created");
    assert_eq!(b.tag, Some(6));
    assert_eq!(
        b.external_ids,
        BTreeMap::from([("iface-id".to_owned(), "b".to_owned())]),
        "external_ids replaced as a whole"
    );
    let listed = sw.ports(bridge).expect("ports");
    assert_eq!(port(&listed, &name), Some(&b), "ports() agrees");
    let c = sw
        .port_ensure(bridge, &plug(&name, PortKind::Internal, None, &[]))
        .expect("port_ensure untagged");
    assert_eq!(c.tag, None);
    assert!(c.external_ids.is_empty());
    assert_eq!(c.ofport, a.ofport);
    assert!(sw.port_delete(bridge, &name).expect("port_delete"));
}

/// `port_delete` is true once, then false.
pub fn port_delete_reports_whether_it_existed(
    sw: &dyn Switch,
    bridge: &str,
    cfg: &SuiteConfig<'_>,
) {
    let name = format!("{}i3", cfg.prefix);
    sw.port_ensure(bridge, &plug(&name, PortKind::Internal, None, &[]))
        .expect("port_ensure");
    assert!(sw.port_delete(bridge, &name).expect("port_delete"));
    assert!(!sw.port_delete(bridge, &name).expect("port_delete again"));
    assert!(port(&sw.ports(bridge).expect("ports"), &name).is_none());
}

/// `ports()` lists exactly the ensured ports, sorted by name, with their settings.
pub fn ports_lists_what_was_ensured(sw: &dyn Switch, bridge: &str, cfg: &SuiteConfig<'_>) {
    let names = [format!("{}l2", cfg.prefix), format!("{}l1", cfg.prefix)];
    let mut ensured = Vec::new();
    for (i, n) in names.iter().enumerate() {
        ensured.push(
            sw.port_ensure(
                bridge,
                &plug(
                    n,
                    PortKind::Internal,
                    Some(10 + i as u16),
                    &[("iface-id", n)],
                ),
            )
            .expect("port_ensure"),
        );
    }
    ensured.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(sw.ports(bridge).expect("ports"), ensured);
    for n in &names {
        assert!(sw.port_delete(bridge, n).expect("port_delete"));
    }
    assert_eq!(sw.ports(bridge).expect("ports"), vec![]);
}

/// A port deleted behind our back fires the watch, is reported missing, and `port_ensure`
/// brings it back.
pub fn drift_is_signalled_and_repaired(sw: &dyn Switch, bridge: &str, cfg: &SuiteConfig<'_>) {
    let name = format!("{}d1", cfg.prefix);
    let p = plug(&name, PortKind::Internal, Some(9), &[("iface-id", "d")]);
    sw.port_ensure(bridge, &p).expect("port_ensure");
    let watch = sw.watch_ports(bridge).expect("watch_ports");
    // Drain what our own ensure may have queued before the watch started.
    while watch.try_recv().is_ok() {}
    (cfg.oob_delete_port)(bridge, &name);
    watch
        .recv_timeout(cfg.timeout)
        .expect("watch_ports fired after the out-of-band delete");
    assert!(
        port(&sw.ports(bridge).expect("ports"), &name).is_none(),
        "the deleted port is reported missing"
    );
    let back = sw.port_ensure(bridge, &p).expect("port_ensure repairs");
    assert!(back.ofport.is_some_and(|o| o > 0), "{back:?}");
    assert_eq!(back.tag, Some(9));
    assert!(sw.port_delete(bridge, &name).expect("port_delete"));
}

/// `flows_replace` makes the table exactly the given flows; a subset removes the rest.
pub fn flows_replace_sets_exactly_the_given_flows(sw: &dyn Switch, bridge: &str) {
    let all: Vec<String> = [
        "table=0,priority=0,actions=drop",
        "priority=10,in_port=1,actions=resubmit(,1)",
        "table=1, priority=5,ip,nw_src=10.0.0.1 actions=ct(commit,zone=5),output:2",
        "table=1,priority=1 actions=NORMAL",
    ]
    .map(str::to_owned)
    .to_vec();
    let canon = |fs: &[String]| {
        let mut v: Vec<String> = fs.iter().map(|f| normalize_flow(f)).collect();
        v.sort();
        v
    };
    sw.flows_replace(bridge, &all).expect("flows_replace");
    assert_eq!(sw.flows(bridge).expect("flows"), canon(&all));
    sw.flows_replace(bridge, &all).expect("flows_replace again");
    assert_eq!(sw.flows(bridge).expect("flows"), canon(&all), "idempotent");
    let subset = vec![all[0].clone(), all[3].clone()];
    sw.flows_replace(bridge, &subset)
        .expect("flows_replace subset");
    assert_eq!(sw.flows(bridge).expect("flows"), canon(&subset));
    sw.flows_replace(bridge, &[]).expect("flows_replace empty");
    assert_eq!(sw.flows(bridge).expect("flows"), Vec::<String>::new());
}

/// A System port for a device that does not exist reports an error and no ofport (without
/// hanging), and attaches once the device appears.
pub fn system_port_without_device_reports_error(
    sw: &dyn Switch,
    bridge: &str,
    cfg: &SuiteConfig<'_>,
) {
    let name = format!("{}t1", cfg.prefix);
    let started = Instant::now();
    let p = sw
        .port_ensure(bridge, &plug(&name, PortKind::System, Some(4), &[]))
        .expect("port_ensure of a missing device is not an error");
    assert!(started.elapsed() < cfg.timeout, "did not hang");
    assert_eq!(p.ofport, None, "{p:?}");
    assert!(p.error.is_some(), "OVS says why: {p:?}");
    assert_eq!(p.kind, PortKind::System);
    (cfg.make_device)(&name);
    let _dev = DeviceGuard::new(cfg.remove_device, &name);
    wait_port(sw, bridge, &name, cfg.timeout, "attached", |p| {
        p.is_some_and(|p| p.ofport.is_some() && p.error.is_none())
    });
    let again = sw
        .port_ensure(bridge, &plug(&name, PortKind::System, Some(4), &[]))
        .expect("port_ensure with the device present");
    assert!(again.ofport.is_some());
    assert!(sw.port_delete(bridge, &name).expect("port_delete"));
}

/// Several threads ensuring the same port at once leave exactly one port, and all see the
/// same ofport.
pub fn concurrent_port_ensure_makes_one_port(sw: &dyn Switch, bridge: &str, cfg: &SuiteConfig<'_>) {
    let name = format!("{}c1", cfg.prefix);
    let p = plug(&name, PortKind::Internal, Some(2), &[("iface-id", "c")]);
    let results: Vec<PluggedPort> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| sw.port_ensure(bridge, &p)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("thread").expect("concurrent port_ensure"))
            .collect()
    });
    let ofports: Vec<_> = results.iter().map(|r| r.ofport).collect();
    assert!(ofports[0].is_some());
    assert!(ofports.iter().all(|o| *o == ofports[0]), "{ofports:?}");
    let ports = sw.ports(bridge).expect("ports");
    assert_eq!(ports.iter().filter(|q| q.name == name).count(), 1);
    assert!(sw.port_delete(bridge, &name).expect("port_delete"));
}

/// Ports on a bridge that does not exist are an error, not a silent no-op.
pub fn missing_bridge_is_an_error(sw: &dyn Switch, cfg: &SuiteConfig<'_>) {
    let bridge = format!("{}x", cfg.prefix);
    let name = format!("{}m1", cfg.prefix);
    assert!(matches!(
        sw.port_ensure(&bridge, &plug(&name, PortKind::Internal, None, &[])),
        Err(SwitchError::NoSuchBridge(_))
    ));
    assert!(matches!(
        sw.ports(&bridge),
        Err(SwitchError::NoSuchBridge(_))
    ));
    assert!(!sw.port_delete(&bridge, &name).expect("port_delete"));
    assert!(!sw.bridge_delete(&bridge).expect("bridge_delete"));
}
