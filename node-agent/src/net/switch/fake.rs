//! An in-memory [`Switch`] for unit tests and simulated ("hollow") nodes.
//!
//! It behaves like Open vSwitch where callers can tell: port names are unique host-wide,
//! ofports are assigned incrementally per bridge and never reused, an Internal port creates
//! its device, and a System port only gets an ofport once its device exists
//! ([`FakeSwitch::add_device`]) — until then it reports ofport `None` and OVS's error text.
//! Faults can be injected per operation ([`FakeSwitch::fail_next`]) or globally
//! ([`FakeSwitch::set_unreachable`]), and out-of-band changes (someone ran `ovs-vsctl
//! del-port`) simulated with [`FakeSwitch::oob_delete_port`], which also fires
//! [`Switch::watch_ports`] like the real monitor does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, SyncSender};

use super::{
    BridgeInfo, PluggedPort, PortKind, PortPlug, Result, Switch, SwitchError, SwitchOp, check_name,
    normalize_flow,
};

/// What an injected fault looks like to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// [`SwitchError::Unreachable`]: the daemon did not answer.
    Unreachable,
    /// [`SwitchError::Injected`]: the switch refused the operation.
    Backend,
}

#[derive(Debug, Clone)]
struct FakePort {
    kind: PortKind,
    tag: Option<u16>,
    external_ids: BTreeMap<String, String>,
    ofport: Option<u32>,
}

#[derive(Debug, Default)]
struct FakeBridge {
    datapath_type: String,
    ports: BTreeMap<String, FakePort>,
    next_ofport: u32,
    flows: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    bridges: BTreeMap<String, FakeBridge>,
    /// Network devices that exist on the "host" (System ports can open them).
    devices: BTreeSet<String>,
    faults: HashMap<SwitchOp, (u32, Fault)>,
    unreachable: bool,
    calls: HashMap<SwitchOp, u64>,
    watchers: Vec<(String, SyncSender<()>)>,
}

impl State {
    fn notify(&mut self, bridge: &str) {
        self.watchers.retain(|(b, tx)| {
            b != bridge || !matches!(tx.try_send(()), Err(mpsc::TrySendError::Disconnected(())))
        });
    }

    fn attach(&mut self, bridge: &str, name: &str) {
        let has_dev = self.devices.contains(name);
        if let Some(b) = self.bridges.get_mut(bridge) {
            let next = &mut b.next_ofport;
            if let Some(p) = b.ports.get_mut(name)
                && p.ofport.is_none()
                && (p.kind == PortKind::Internal || has_dev)
            {
                *next += 1;
                p.ofport = Some(*next);
            }
        }
    }

    fn find_port(&self, name: &str) -> Option<&str> {
        self.bridges
            .iter()
            .find(|(_, b)| b.ports.contains_key(name))
            .map(|(n, _)| n.as_str())
    }
}

/// The in-memory fake switch. Share it as `Arc<dyn Switch>`.
#[derive(Debug)]
pub struct FakeSwitch {
    datapath_type: String,
    state: Mutex<State>,
}

impl Default for FakeSwitch {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeSwitch {
    /// A fake with no bridges, reporting the `netdev` datapath.
    pub fn new() -> Self {
        Self {
            datapath_type: "netdev".into(),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the next `n` calls of `op` fail with `fault`.
    pub fn fail_next(&self, op: SwitchOp, n: u32, fault: Fault) {
        self.lock().faults.insert(op, (n, fault));
    }

    /// While on, every call fails with [`SwitchError::Unreachable`].
    pub fn set_unreachable(&self, on: bool) {
        self.lock().unreachable = on;
    }

    /// How many times `op` was called (including failed calls).
    pub fn calls(&self, op: SwitchOp) -> u64 {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// A network device appears on the host (libvirt created a tap). System ports waiting
    /// for it get their ofport, as vswitchd does when the device shows up.
    pub fn add_device(&self, name: &str) {
        let mut st = self.lock();
        st.devices.insert(name.to_owned());
        if let Some(b) = st.find_port(name).map(str::to_owned) {
            st.attach(&b, name);
            st.notify(&b);
        }
    }

    /// A network device disappears (the VM stopped): its System port loses its ofport.
    pub fn remove_device(&self, name: &str) {
        let mut st = self.lock();
        st.devices.remove(name);
        if let Some(b) = st.find_port(name).map(str::to_owned) {
            if let Some(p) = st.bridges.get_mut(&b).and_then(|br| br.ports.get_mut(name))
                && p.kind != PortKind::Internal
            {
                p.ofport = None;
            }
            st.notify(&b);
        }
    }

    /// Out of band: deletes a port behind Cirrus's back (`ovs-vsctl del-port`), firing the
    /// bridge's watchers. Returns whether it existed.
    pub fn oob_delete_port(&self, bridge: &str, name: &str) -> bool {
        let mut st = self.lock();
        let Some(p) = st
            .bridges
            .get_mut(bridge)
            .and_then(|b| b.ports.remove(name))
        else {
            return false;
        };
        if p.kind == PortKind::Internal {
            st.devices.remove(name);
        }
        st.notify(bridge);
        true
    }

    /// Out of band: changes a port's tag behind Cirrus's back (`ovs-vsctl set port`).
    pub fn oob_set_tag(&self, bridge: &str, name: &str, tag: Option<u16>) {
        let mut st = self.lock();
        if let Some(p) = st
            .bridges
            .get_mut(bridge)
            .and_then(|b| b.ports.get_mut(name))
        {
            p.tag = tag;
            st.notify(bridge);
        }
    }

    /// Counts the call and applies injected faults.
    fn enter(&self, op: SwitchOp, target: &str) -> Result<std::sync::MutexGuard<'_, State>> {
        let mut st = self.lock();
        *st.calls.entry(op).or_default() += 1;
        if st.unreachable {
            return Err(SwitchError::Unreachable {
                op,
                reason: "fake switch set unreachable".into(),
            });
        }
        if let Some((n, fault)) = st.faults.get_mut(&op) {
            let fault = *fault;
            *n -= 1;
            if *n == 0 {
                st.faults.remove(&op);
            }
            return Err(match fault {
                Fault::Unreachable => SwitchError::Unreachable {
                    op,
                    reason: "injected fault".into(),
                },
                Fault::Backend => SwitchError::Injected {
                    op,
                    target: target.to_owned(),
                },
            });
        }
        Ok(st)
    }
}

fn report(name: &str, p: &FakePort) -> PluggedPort {
    PluggedPort {
        name: name.to_owned(),
        ofport: p.ofport,
        tag: p.tag,
        external_ids: p.external_ids.clone(),
        kind: p.kind.clone(),
        error: match (&p.kind, p.ofport) {
            (PortKind::Internal, _) | (_, Some(_)) => None,
            _ => Some(format!(
                "could not open network device {name} (No such device)"
            )),
        },
    }
}

impl Switch for FakeSwitch {
    fn bridge_ensure(&self, bridge: &str) -> Result<BridgeInfo> {
        check_name(bridge)?;
        let mut st = self.enter(SwitchOp::BridgeEnsure, bridge)?;
        let dp = self.datapath_type.clone();
        let b = st.bridges.entry(bridge.to_owned()).or_default();
        b.datapath_type = dp.clone();
        st.devices.insert(bridge.to_owned());
        Ok(BridgeInfo {
            name: bridge.to_owned(),
            datapath_type: dp,
        })
    }

    fn bridge_delete(&self, bridge: &str) -> Result<bool> {
        let mut st = self.enter(SwitchOp::BridgeDelete, bridge)?;
        let Some(b) = st.bridges.remove(bridge) else {
            return Ok(false);
        };
        st.devices.remove(bridge);
        for (name, p) in b.ports {
            if p.kind == PortKind::Internal {
                st.devices.remove(&name);
            }
        }
        st.notify(bridge);
        Ok(true)
    }

    fn port_ensure(&self, bridge: &str, plug: &PortPlug) -> Result<PluggedPort> {
        check_name(&plug.name)?;
        let name = plug.name.as_str();
        let mut st = self.enter(SwitchOp::PortEnsure, name)?;
        if !st.bridges.contains_key(bridge) {
            return Err(SwitchError::NoSuchBridge(bridge.to_owned()));
        }
        if let Some(on) = st.find_port(name)
            && on != bridge
        {
            return Err(SwitchError::PortOnOtherBridge {
                port: name.to_owned(),
                on: on.to_owned(),
                wanted: bridge.to_owned(),
            });
        }
        let b = st.bridges.get_mut(bridge).expect("checked");
        let changed = match b.ports.get_mut(name) {
            Some(p) => {
                let changed =
                    p.tag != plug.tag || p.external_ids != plug.external_ids || p.kind != plug.kind;
                if p.kind != plug.kind {
                    p.ofport = None;
                }
                p.tag = plug.tag;
                p.external_ids = plug.external_ids.clone();
                p.kind = plug.kind.clone();
                changed
            }
            None => {
                b.ports.insert(
                    name.to_owned(),
                    FakePort {
                        kind: plug.kind.clone(),
                        tag: plug.tag,
                        external_ids: plug.external_ids.clone(),
                        ofport: None,
                    },
                );
                true
            }
        };
        if plug.kind == PortKind::Internal {
            st.devices.insert(name.to_owned());
        }
        st.attach(bridge, name);
        if changed {
            st.notify(bridge);
        }
        let p = &st.bridges[bridge].ports[name];
        Ok(report(name, p))
    }

    fn port_delete(&self, bridge: &str, name: &str) -> Result<bool> {
        let mut st = self.enter(SwitchOp::PortDelete, name)?;
        let Some(p) = st
            .bridges
            .get_mut(bridge)
            .and_then(|b| b.ports.remove(name))
        else {
            return Ok(false);
        };
        if p.kind == PortKind::Internal {
            st.devices.remove(name);
        }
        st.notify(bridge);
        Ok(true)
    }

    fn ports(&self, bridge: &str) -> Result<Vec<PluggedPort>> {
        let st = self.enter(SwitchOp::Ports, bridge)?;
        let b = st
            .bridges
            .get(bridge)
            .ok_or_else(|| SwitchError::NoSuchBridge(bridge.to_owned()))?;
        Ok(b.ports.iter().map(|(n, p)| report(n, p)).collect())
    }

    fn flows_replace(&self, bridge: &str, flows: &[String]) -> Result<()> {
        let mut st = self.enter(SwitchOp::FlowsReplace, bridge)?;
        let b = st
            .bridges
            .get_mut(bridge)
            .ok_or_else(|| SwitchError::NoSuchBridge(bridge.to_owned()))?;
        let mut f: Vec<String> = flows.iter().map(|f| normalize_flow(f)).collect();
        f.sort();
        f.dedup();
        b.flows = f;
        Ok(())
    }

    fn flows(&self, bridge: &str) -> Result<Vec<String>> {
        let st = self.enter(SwitchOp::Flows, bridge)?;
        st.bridges
            .get(bridge)
            .map(|b| b.flows.clone())
            .ok_or_else(|| SwitchError::NoSuchBridge(bridge.to_owned()))
    }

    fn watch_ports(&self, bridge: &str) -> Result<Receiver<()>> {
        let mut st = self.enter(SwitchOp::WatchPorts, bridge)?;
        let (tx, rx) = mpsc::sync_channel(1);
        st.watchers.push((bridge.to_owned(), tx));
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plug(name: &str, kind: PortKind) -> PortPlug {
        PortPlug {
            name: name.into(),
            kind,
            tag: Some(3),
            external_ids: BTreeMap::new(),
        }
    }

    #[test]
    fn system_port_attaches_when_its_device_appears() {
        let f = FakeSwitch::new();
        f.bridge_ensure("br0").unwrap();
        let w = f.watch_ports("br0").unwrap();
        let p = f
            .port_ensure("br0", &plug("tapa", PortKind::System))
            .unwrap();
        assert_eq!(p.ofport, None);
        assert!(
            p.error
                .unwrap()
                .contains("could not open network device tapa")
        );
        w.try_recv().expect("the new port fired the watch");
        f.add_device("tapa");
        w.try_recv().expect("attaching fired the watch");
        let ports = f.ports("br0").unwrap();
        assert_eq!(ports[0].ofport, Some(1));
        assert_eq!(ports[0].error, None);
        // ofports are not reused.
        f.port_delete("br0", "tapa").unwrap();
        let q = f
            .port_ensure("br0", &plug("in1", PortKind::Internal))
            .unwrap();
        assert_eq!(q.ofport, Some(2));
    }

    #[test]
    fn faults_are_injected_and_counted() {
        let f = FakeSwitch::new();
        f.fail_next(SwitchOp::BridgeEnsure, 1, Fault::Unreachable);
        assert!(matches!(
            f.bridge_ensure("br0"),
            Err(SwitchError::Unreachable { .. })
        ));
        f.bridge_ensure("br0").unwrap();
        assert_eq!(f.calls(SwitchOp::BridgeEnsure), 2);
        f.set_unreachable(true);
        assert!(f.ports("br0").is_err());
        f.set_unreachable(false);
        f.port_ensure("br0", &plug("p1", PortKind::Internal))
            .unwrap();
        assert!(matches!(
            f.port_ensure("nope", &plug("p2", PortKind::Internal)),
            Err(SwitchError::NoSuchBridge(_))
        ));
        f.bridge_ensure("br1").unwrap();
        assert!(matches!(
            f.port_ensure("br1", &plug("p1", PortKind::Internal)),
            Err(SwitchError::PortOnOtherBridge { .. })
        ));
    }
}
