//! [`Switch`] on Open vSwitch.
//!
//! Bridges, ports and interfaces live in the OVSDB and are written with our own client
//! ([`crate::net::ovsdb`]), one transaction per change. "Insert if absent" is guarded by a
//! `wait` (timeout 0) that the name is still absent, and the database's unique name indexes
//! back it up; when a concurrent writer wins, we re-read and take the update path, so
//! concurrent ensures never create duplicates. Waiting for vswitchd to attach a device is a
//! server-side `wait` on `Interface.ofport` (no polling).
//!
//! Flows are OpenFlow, not OVSDB: they go through `ovs-ofctl -O OpenFlow14 --bundle
//! replace-flows` (an atomic bundle; ovs-ofctl computes the difference, so unchanged flows
//! keep their counters and conntrack actions are accepted), and are read back with
//! `dump-flows --no-stats --no-names`, normalized by [`normalize_flow`]. Speaking OpenFlow
//! ourselves would save a process spawn per change but needs an OpenFlow encoder for every
//! match field and action the firewall uses; ovs-ofctl already is that encoder.
//!
//! # Why this file is long
//! It is one implementation of the whole [`Switch`] trait (ports, flows,
//! bridges) over OVSDB and `ovs-ofctl`, with the flow normalization its idempotence needs.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    BridgeInfo, PluggedPort, PortKind, PortPlug, Result, Switch, SwitchError, SwitchOp, check_name,
    normalize_flow,
};
use crate::net::ovsdb::{
    self, Atom, Client, Cond, Datum, Mutation, NewRow, OPEN_VSWITCH_DB, Op, OpResult, Row, Until,
};

/// How often a guarded write is retried after losing a race.
const MAX_ATTEMPTS: usize = 5;

/// The OpenFlow version used with ovs-ofctl: 1.4 is the first with bundles, and includes the
/// conntrack (`ct()`) actions of 1.3.
const OFCTL_VERSION: &str = "OpenFlow14";

/// Chooses the datapath for new bridges: `system` (the kernel datapath) when the
/// `openvswitch` kernel module is loaded (`/sys/module/openvswitch`) and vswitchd lists
/// `system` among its `datapath_types`; otherwise `netdev` (userspace), which always works
/// but is slower. Containers and CI machines usually lack the module. Override with
/// [`OvsSwitch::with_datapath_type`].
pub fn detect_datapath_type(supported: &[String]) -> &'static str {
    if Path::new("/sys/module/openvswitch").exists() && supported.iter().any(|t| t == "system") {
        "system"
    } else {
        "netdev"
    }
}

/// Open vSwitch through ovsdb-server's socket and `ovs-ofctl`.
pub struct OvsSwitch {
    remote: String,
    client: Mutex<Option<Arc<Client>>>,
    datapath_type: Option<String>,
    attach_timeout: Duration,
}

impl std::fmt::Debug for OvsSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OvsSwitch")
            .field("remote", &self.remote)
            .field("datapath_type", &self.datapath_type)
            .finish()
    }
}

fn s(v: &str) -> Datum {
    Datum::Atom(Atom::str(v))
}

fn named(n: &str) -> Datum {
    Datum::Set(vec![Atom::NamedUuid(n.to_owned())])
}

fn optional_int(v: Option<u16>) -> Datum {
    Datum::optional(v.map(|t| Atom::Int(t.into())))
}

/// `ofport` unset, the state a new interface is in until vswitchd handles it.
fn ofport_unset() -> NewRow {
    [("ofport".to_owned(), Datum::empty())].into()
}

fn plugged(port: &Row, iface: Option<&Row>) -> PluggedPort {
    PluggedPort {
        name: port.str("name").unwrap_or_default(),
        ofport: iface
            .and_then(|i| i.int("ofport"))
            .filter(|p| *p > 0)
            .and_then(|p| u32::try_from(p).ok()),
        tag: port.int("tag").and_then(|t| u16::try_from(t).ok()),
        external_ids: iface.map(|i| i.str_map("external_ids")).unwrap_or_default(),
        kind: PortKind::from_ovs_type(&iface.and_then(|i| i.str("type")).unwrap_or_default()),
        error: iface.and_then(|i| i.str("error")),
    }
}

impl OvsSwitch {
    /// A switch talking to `remote` (`unix:/path`, `tcp:host:port` or a socket path; normally
    /// [`ovsdb::DEFAULT_SOCKET`]). Connects lazily and reconnects after the connection drops.
    pub fn new(remote: &str) -> Self {
        Self {
            remote: remote.to_owned(),
            client: Mutex::new(None),
            datapath_type: None,
            attach_timeout: Duration::from_secs(5),
        }
    }

    /// Like [`OvsSwitch::new`], but connects now so a missing daemon is reported at startup.
    pub fn connect(remote: &str) -> Result<Self> {
        let sw = Self::new(remote);
        sw.client(SwitchOp::Ports)?;
        Ok(sw)
    }

    /// Forces the datapath type of new bridges instead of [`detect_datapath_type`].
    pub fn with_datapath_type(mut self, dp: &str) -> Self {
        self.datapath_type = Some(dp.to_owned());
        self
    }

    /// How long `port_ensure`/`bridge_ensure` wait for vswitchd to attach a device
    /// (default 5 s).
    pub fn with_attach_timeout(mut self, d: Duration) -> Self {
        self.attach_timeout = d;
        self
    }

    /// The shared connection, (re)connecting when there is none or it closed.
    fn connected(&self) -> ovsdb::Result<Arc<Client>> {
        let mut c = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cl) = c.as_ref()
            && !cl.is_closed()
        {
            return Ok(cl.clone());
        }
        let cl = Arc::new(Client::connect(&self.remote)?);
        *c = Some(cl.clone());
        Ok(cl)
    }

    fn client(&self, op: SwitchOp) -> Result<Arc<Client>> {
        self.connected().map_err(|e| SwitchError::Unreachable {
            op,
            reason: format!("{}: {e}", self.remote),
        })
    }

    fn transact(&self, op: SwitchOp, target: &str, ops: &[Op]) -> ovsdb::Result<Vec<OpResult>> {
        let r = self.connected()?.transact(OPEN_VSWITCH_DB, ops);
        if let Err(e) = &r {
            tracing::debug!(?op, target, error = %e, "ovsdb transaction failed");
        }
        r
    }

    fn err(&self, op: SwitchOp, target: &str, e: ovsdb::Error) -> SwitchError {
        if e.is_connection() || matches!(e, ovsdb::Error::Timeout { .. }) {
            SwitchError::Unreachable {
                op,
                reason: format!("{}: {e}", self.remote),
            }
        } else {
            SwitchError::Ovsdb {
                op,
                target: target.to_owned(),
                source: e,
            }
        }
    }

    /// Runs a transaction, mapping errors to [`SwitchError`].
    fn tx(&self, op: SwitchOp, target: &str, ops: &[Op]) -> Result<Vec<OpResult>> {
        self.transact(op, target, ops)
            .map_err(|e| self.err(op, target, e))
    }

    fn want_datapath(&self, supported: &[String]) -> String {
        self.datapath_type
            .clone()
            .unwrap_or_else(|| detect_datapath_type(supported).to_owned())
    }

    /// Waits server-side until vswitchd has acted on interface `name` (its `ofport` is set,
    /// to a port number or -1 on failure), then returns the interface and its port. `None`
    /// when the wait timed out; the rows are then read anyway.
    fn wait_attached(&self, op: SwitchOp, name: &str) -> Result<(Option<Row>, Option<Row>)> {
        let wait = Op::Wait {
            table: "Interface".into(),
            r#where: vec![Cond::eq_str("name", name)],
            columns: vec!["ofport".into()],
            until: Until::Ne,
            rows: vec![ofport_unset()],
            timeout_ms: Some(self.attach_timeout.as_millis() as u64),
        };
        let reads = [
            Op::select(
                "Interface",
                vec![Cond::eq_str("name", name)],
                &["name", "type", "ofport", "error", "external_ids"],
            ),
            Op::select("Port", vec![Cond::eq_str("name", name)], &["name", "tag"]),
        ];
        let mut ops = vec![wait];
        ops.extend(reads.iter().cloned());
        let r = match self.transact(op, name, &ops) {
            Ok(r) => r[1..].to_vec(),
            Err(e @ ovsdb::Error::OperationFailed { index: 0, .. }) => {
                tracing::warn!(port = name, error = %e, "vswitchd did not attach the interface in time");
                self.tx(op, name, &reads)?
            }
            Err(e) => return Err(self.err(op, name, e)),
        };
        Ok((r[0].rows.first().cloned(), r[1].rows.first().cloned()))
    }

    fn link_up(&self, dev: &str) -> Result<()> {
        let flags = std::fs::read_to_string(format!("/sys/class/net/{dev}/flags")).ok();
        let up = flags
            .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
            .is_some_and(|f| f & 1 == 1);
        if up {
            return Ok(());
        }
        run(
            SwitchOp::BridgeEnsure,
            "ip",
            &["link", "set", dev, "up"],
            None,
        )
        .map(drop)
    }

    fn bridge_uuid_ports(
        &self,
        op: SwitchOp,
        bridge: &str,
    ) -> Result<Option<(String, Vec<String>)>> {
        let r = self.tx(
            op,
            bridge,
            &[Op::select(
                "Bridge",
                vec![Cond::eq_str("name", bridge)],
                &["_uuid", "ports"],
            )],
        )?;
        Ok(r[0]
            .rows
            .first()
            .map(|b| (b.uuid().unwrap_or_default(), b.uuids("ports"))))
    }

    /// Subscribes to changes of `bridge`'s ports and their interfaces; see
    /// [`Switch::watch_ports`]. Uses its own connection and a thread that lives until the
    /// receiver is dropped (noticed at the next change) or the connection closes.
    pub fn watch_ports_ovs(&self, bridge: &str) -> Result<Receiver<()>> {
        let op = SwitchOp::WatchPorts;
        let client =
            Arc::new(
                Client::connect(&self.remote).map_err(|e| SwitchError::Unreachable {
                    op,
                    reason: format!("{}: {e}", self.remote),
                })?,
            );
        let m = client
            .monitor(
                OPEN_VSWITCH_DB,
                &[
                    ("Bridge", &["name", "ports"]),
                    ("Port", &["name", "interfaces", "tag"]),
                    ("Interface", &["name", "ofport", "external_ids"]),
                ],
            )
            .map_err(|e| self.err(op, bridge, e))?;
        let (tx, rx) = mpsc::sync_channel(1);
        let mut model = PortsModel::new(bridge);
        model.apply(&m.initial);
        let bridge = bridge.to_owned();
        std::thread::Builder::new()
            .name(format!("ovs-watch-{bridge}"))
            .spawn(move || {
                let _keep = client;
                while let Ok(u) = m.updates.recv() {
                    if model.apply(&u) {
                        match tx.try_send(()) {
                            Ok(()) | Err(mpsc::TrySendError::Full(())) => {}
                            Err(mpsc::TrySendError::Disconnected(())) => return,
                        }
                    }
                }
                tracing::debug!(bridge, "ovs port watch ended (connection closed)");
            })
            .map_err(|e| SwitchError::Unreachable {
                op,
                reason: format!("spawn watch thread: {e}"),
            })?;
        Ok(rx)
    }
}

/// What the drift watch tracks: the bridge's ports and their interfaces, to tell whether a
/// monitor update concerns this bridge.
struct PortsModel {
    bridge: String,
    bridge_ports: HashSet<String>,
    port_ifaces: HashMap<String, Vec<String>>,
}

impl PortsModel {
    fn new(bridge: &str) -> Self {
        Self {
            bridge: bridge.to_owned(),
            bridge_ports: HashSet::new(),
            port_ifaces: HashMap::new(),
        }
    }

    fn ifaces(&self) -> HashSet<&String> {
        self.bridge_ports
            .iter()
            .filter_map(|p| self.port_ifaces.get(p))
            .flatten()
            .collect()
    }

    /// Applies one batch of updates; whether it touched this bridge's ports.
    fn apply(&mut self, u: &ovsdb::TableUpdates) -> bool {
        let mut touched = false;
        // Interfaces first, against the ports as they were (a deleted port's interface).
        if let Some(ifs) = u.get("Interface") {
            let mine = self.ifaces();
            touched |= ifs.keys().any(|k| mine.contains(k));
        }
        if let Some(ports) = u.get("Port") {
            for (uuid, ru) in ports {
                touched |= self.bridge_ports.contains(uuid);
                match &ru.new {
                    Some(n) => {
                        self.port_ifaces.insert(uuid.clone(), n.uuids("interfaces"));
                    }
                    None => {
                        self.port_ifaces.remove(uuid);
                    }
                }
            }
        }
        if let Some(bridges) = u.get("Bridge") {
            for ru in bridges.values() {
                let is_mine = |r: &Option<Row>| {
                    r.as_ref().and_then(|r| r.str("name")).as_deref() == Some(&self.bridge)
                };
                if is_mine(&ru.new) {
                    let ports: HashSet<String> = ru
                        .new
                        .as_ref()
                        .map(|n| n.uuids("ports").into_iter().collect())
                        .unwrap_or_default();
                    touched |= ports != self.bridge_ports;
                    self.bridge_ports = ports;
                } else if is_mine(&ru.old) {
                    touched = true;
                    self.bridge_ports.clear();
                }
            }
        }
        touched
    }
}

/// Runs a command, feeding `stdin`; its stdout, or [`SwitchError::Command`].
fn run(op: SwitchOp, prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let cmdline = format!("{prog} {}", args.join(" "));
    let fail = |detail: String| SwitchError::Command {
        op,
        command: cmdline.clone(),
        detail,
    };
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("spawn: {e}")))?;
    if let Some(input) = stdin {
        let mut w = child.stdin.take().expect("piped stdin");
        // A write error shows up as the command's failure below.
        let _ = w.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("wait: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Switch for OvsSwitch {
    #[tracing::instrument(level = "debug", skip(self))]
    fn bridge_ensure(&self, bridge: &str) -> Result<BridgeInfo> {
        let op = SwitchOp::BridgeEnsure;
        check_name(bridge)?;
        let mut attempt = 0;
        let dp = loop {
            attempt += 1;
            let r = self.tx(
                op,
                bridge,
                &[
                    Op::select("Open_vSwitch", vec![], &["_uuid", "datapath_types"]),
                    Op::select(
                        "Bridge",
                        vec![Cond::eq_str("name", bridge)],
                        &["_uuid", "datapath_type", "fail_mode"],
                    ),
                ],
            )?;
            let supported = r[0]
                .rows
                .first()
                .map(|o| o.strs("datapath_types"))
                .unwrap_or_default();
            let want_dp = self.want_datapath(&supported);
            let write = match r[1].rows.first() {
                None => {
                    let iface: NewRow = [
                        ("name".to_owned(), s(bridge)),
                        ("type".to_owned(), s("internal")),
                    ]
                    .into();
                    let port: NewRow = [
                        ("name".to_owned(), s(bridge)),
                        ("interfaces".to_owned(), named("i")),
                    ]
                    .into();
                    let br: NewRow = [
                        ("name".to_owned(), s(bridge)),
                        ("ports".to_owned(), named("p")),
                        ("datapath_type".to_owned(), s(&want_dp)),
                        ("fail_mode".to_owned(), s("secure")),
                    ]
                    .into();
                    vec![
                        Op::Comment(format!("cirrus: bridge_ensure {bridge}")),
                        Op::wait_absent("Bridge", vec![Cond::eq_str("name", bridge)]),
                        Op::insert("Interface", iface, Some("i")),
                        Op::insert("Port", port, Some("p")),
                        Op::insert("Bridge", br, Some("b")),
                        Op::mutate(
                            "Open_vSwitch",
                            vec![],
                            vec![Mutation::insert("bridges", named("b"))],
                        ),
                    ]
                }
                Some(b)
                    if b.str("datapath_type").as_deref() != Some(&want_dp)
                        || b.str("fail_mode").as_deref() != Some("secure") =>
                {
                    let row: NewRow = [
                        ("datapath_type".to_owned(), s(&want_dp)),
                        ("fail_mode".to_owned(), s("secure")),
                    ]
                    .into();
                    tracing::info!(bridge, datapath_type = want_dp, "fixing bridge settings");
                    vec![Op::update(
                        "Bridge",
                        vec![Cond::eq_str("name", bridge)],
                        row,
                    )]
                }
                Some(_) => break want_dp,
            };
            match self.transact(op, bridge, &write) {
                Ok(_) => break want_dp,
                Err(e) if e.is_conflict() && attempt < MAX_ATTEMPTS => continue,
                Err(e) => return Err(self.err(op, bridge, e)),
            }
        };
        let (iface, _) = self.wait_attached(op, bridge)?;
        match iface.as_ref().and_then(|i| i.int("ofport")) {
            Some(p) if p > 0 => {}
            _ => {
                let error = iface.and_then(|i| i.str("error"));
                return Err(match error {
                    Some(error) => SwitchError::NotAttached {
                        op,
                        target: bridge.to_owned(),
                        error,
                    },
                    None => SwitchError::Timeout {
                        op,
                        target: bridge.to_owned(),
                        what: "bridge interface creation",
                        after: self.attach_timeout,
                    },
                });
            }
        }
        self.link_up(bridge)?;
        Ok(BridgeInfo {
            name: bridge.to_owned(),
            datapath_type: dp,
        })
    }

    #[tracing::instrument(level = "debug", skip(self))]
    fn bridge_delete(&self, bridge: &str) -> Result<bool> {
        let op = SwitchOp::BridgeDelete;
        let Some((uuid, _)) = self.bridge_uuid_ports(op, bridge)? else {
            return Ok(false);
        };
        let r = self.tx(
            op,
            bridge,
            &[
                Op::mutate(
                    "Open_vSwitch",
                    vec![],
                    vec![Mutation::delete("bridges", Datum::uuids([&uuid]))],
                ),
                Op::delete("Bridge", vec![Cond::uuid(&uuid)]),
            ],
        )?;
        Ok(r[1].count == Some(1))
    }

    #[tracing::instrument(level = "debug", skip(self, plug), fields(port = %plug.name))]
    fn port_ensure(&self, bridge: &str, plug: &PortPlug) -> Result<PluggedPort> {
        let op = SwitchOp::PortEnsure;
        let name = plug.name.as_str();
        check_name(name)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self.tx(
                op,
                name,
                &[
                    Op::select(
                        "Bridge",
                        vec![Cond::eq_str("name", bridge)],
                        &["_uuid", "ports"],
                    ),
                    Op::select(
                        "Port",
                        vec![Cond::eq_str("name", name)],
                        &["_uuid", "tag", "interfaces"],
                    ),
                    Op::select(
                        "Interface",
                        vec![Cond::eq_str("name", name)],
                        &["_uuid", "type", "external_ids"],
                    ),
                ],
            )?;
            let Some(br) = r[0].rows.first() else {
                return Err(SwitchError::NoSuchBridge(bridge.to_owned()));
            };
            let write = match (r[1].rows.first(), r[2].rows.first()) {
                (None, _) => {
                    let iface: NewRow = [
                        ("name".to_owned(), s(name)),
                        ("type".to_owned(), s(plug.kind.ovs_type())),
                        (
                            "external_ids".to_owned(),
                            Datum::str_map(&plug.external_ids),
                        ),
                    ]
                    .into();
                    let port: NewRow = [
                        ("name".to_owned(), s(name)),
                        ("interfaces".to_owned(), named("i")),
                        ("tag".to_owned(), optional_int(plug.tag)),
                    ]
                    .into();
                    Some(vec![
                        Op::wait_absent("Port", vec![Cond::eq_str("name", name)]),
                        Op::insert("Interface", iface, Some("i")),
                        Op::insert("Port", port, Some("p")),
                        Op::mutate(
                            "Bridge",
                            vec![Cond::eq_str("name", bridge)],
                            vec![Mutation::insert("ports", named("p"))],
                        ),
                    ])
                }
                (Some(p), iface) => {
                    let pu = p.uuid().unwrap_or_default();
                    if !br.uuids("ports").contains(&pu) {
                        let on = self.tx(
                            op,
                            name,
                            &[Op::select(
                                "Bridge",
                                vec![Cond::includes("ports", Datum::uuids([&pu]))],
                                &["name"],
                            )],
                        )?;
                        return Err(SwitchError::PortOnOtherBridge {
                            port: name.to_owned(),
                            on: on[0]
                                .rows
                                .first()
                                .and_then(|b| b.str("name"))
                                .unwrap_or_default(),
                            wanted: bridge.to_owned(),
                        });
                    }
                    let tag = p.int("tag").and_then(|t| u16::try_from(t).ok());
                    let iface_ok = iface.is_some_and(|i| {
                        i.str("type").unwrap_or_default() == plug.kind.ovs_type()
                            && i.str_map("external_ids") == plug.external_ids
                    });
                    if tag == plug.tag && iface_ok {
                        None
                    } else {
                        tracing::info!(port = name, "fixing port tag/external_ids in place");
                        let prow: NewRow = [("tag".to_owned(), optional_int(plug.tag))].into();
                        let irow: NewRow = [
                            ("type".to_owned(), s(plug.kind.ovs_type())),
                            (
                                "external_ids".to_owned(),
                                Datum::str_map(&plug.external_ids),
                            ),
                        ]
                        .into();
                        Some(vec![
                            Op::update("Port", vec![Cond::uuid(&pu)], prow),
                            Op::update("Interface", vec![Cond::eq_str("name", name)], irow),
                        ])
                    }
                }
            };
            if let Some(write) = write {
                match self.transact(op, name, &write) {
                    Ok(res) => {
                        // An update that matched nothing lost a race with a delete: redo.
                        if res.iter().any(|r| r.count == Some(0)) && attempt < MAX_ATTEMPTS {
                            continue;
                        }
                    }
                    Err(e) if e.is_conflict() && attempt < MAX_ATTEMPTS => continue,
                    Err(e) => return Err(self.err(op, name, e)),
                }
            }
            break;
        }
        let (iface, port) = self.wait_attached(op, name)?;
        let Some(port) = port else {
            // Deleted between the write and the read: report it as not attached.
            return Err(SwitchError::NotAttached {
                op,
                target: name.to_owned(),
                error: "port vanished while being ensured".into(),
            });
        };
        Ok(plugged(&port, iface.as_ref()))
    }

    #[tracing::instrument(level = "debug", skip(self))]
    fn port_delete(&self, bridge: &str, name: &str) -> Result<bool> {
        let op = SwitchOp::PortDelete;
        let r = self.tx(
            op,
            name,
            &[
                Op::select(
                    "Bridge",
                    vec![Cond::eq_str("name", bridge)],
                    &["_uuid", "ports"],
                ),
                Op::select("Port", vec![Cond::eq_str("name", name)], &["_uuid"]),
            ],
        )?;
        let (Some(br), Some(p)) = (r[0].rows.first(), r[1].rows.first()) else {
            return Ok(false);
        };
        let (bu, pu) = (br.uuid().unwrap_or_default(), p.uuid().unwrap_or_default());
        if !br.uuids("ports").contains(&pu) {
            return Ok(false);
        }
        let r = self.tx(
            op,
            name,
            &[
                Op::mutate(
                    "Bridge",
                    vec![Cond::uuid(&bu)],
                    vec![Mutation::delete("ports", Datum::uuids([&pu]))],
                ),
                Op::delete("Port", vec![Cond::uuid(&pu)]),
            ],
        )?;
        Ok(r[1].count == Some(1))
    }

    #[tracing::instrument(level = "debug", skip(self))]
    fn ports(&self, bridge: &str) -> Result<Vec<PluggedPort>> {
        let op = SwitchOp::Ports;
        let r = self.tx(
            op,
            bridge,
            &[
                Op::select("Bridge", vec![Cond::eq_str("name", bridge)], &["ports"]),
                Op::select("Port", vec![], &["_uuid", "name", "tag", "interfaces"]),
                Op::select(
                    "Interface",
                    vec![],
                    &["_uuid", "name", "type", "ofport", "error", "external_ids"],
                ),
            ],
        )?;
        let Some(br) = r[0].rows.first() else {
            return Err(SwitchError::NoSuchBridge(bridge.to_owned()));
        };
        let mine: HashSet<String> = br.uuids("ports").into_iter().collect();
        let ifaces: HashMap<String, &Row> = r[2]
            .rows
            .iter()
            .filter_map(|i| Some((i.uuid()?, i)))
            .collect();
        let mut out: Vec<PluggedPort> = r[1]
            .rows
            .iter()
            .filter(|p| p.uuid().is_some_and(|u| mine.contains(&u)))
            .filter(|p| p.str("name").as_deref() != Some(bridge))
            .map(|p| {
                let iface = p
                    .uuids("interfaces")
                    .first()
                    .and_then(|u| ifaces.get(u))
                    .copied();
                plugged(p, iface)
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    #[tracing::instrument(level = "debug", skip(self, flows), fields(n = flows.len()))]
    fn flows_replace(&self, bridge: &str, flows: &[String]) -> Result<()> {
        check_name(bridge)?;
        let mut input = flows.join("\n");
        input.push('\n');
        run(
            SwitchOp::FlowsReplace,
            "ovs-ofctl",
            &[
                "-O",
                OFCTL_VERSION,
                "--bundle",
                "replace-flows",
                bridge,
                "-",
            ],
            Some(&input),
        )
        .map(drop)
        .map_err(|e| self.no_such_bridge(bridge, e))
    }

    #[tracing::instrument(level = "debug", skip(self))]
    fn flows(&self, bridge: &str) -> Result<Vec<String>> {
        check_name(bridge)?;
        let out = run(
            SwitchOp::Flows,
            "ovs-ofctl",
            &[
                "-O",
                OFCTL_VERSION,
                "--no-names",
                "dump-flows",
                "--no-stats",
                bridge,
            ],
            None,
        )
        .map_err(|e| self.no_such_bridge(bridge, e))?;
        let mut flows: Vec<String> = out
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains(" reply"))
            .map(normalize_flow)
            .collect();
        flows.sort();
        Ok(flows)
    }

    fn watch_ports(&self, bridge: &str) -> Result<Receiver<()>> {
        self.watch_ports_ovs(bridge)
    }
}

impl OvsSwitch {
    fn no_such_bridge(&self, bridge: &str, e: SwitchError) -> SwitchError {
        match &e {
            SwitchError::Command { detail, .. } if detail.contains("is not a bridge") => {
                SwitchError::NoSuchBridge(bridge.to_owned())
            }
            _ => e,
        }
    }
}

/// The Interface rows' `ofport` as OVS's tools report it (for tests and benches that compare
/// against `ovs-vsctl`): `None` when unset or -1.
pub fn ofport_of(row: &Row) -> Option<u32> {
    row.int("ofport")
        .filter(|p| *p > 0)
        .and_then(|p| u32::try_from(p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ovsdb::RowUpdate;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn row(v: serde_json::Value) -> Option<Row> {
        Some(Row(v.as_object().unwrap().clone()))
    }

    #[test]
    fn ports_model_signals_only_for_its_bridge() {
        let mut m = PortsModel::new("br1");
        let mut initial = ovsdb::TableUpdates::new();
        initial.insert(
            "Bridge".into(),
            BTreeMap::from([
                (
                    "b1".into(),
                    RowUpdate {
                        old: None,
                        new: row(json!({"name": "br1", "ports": ["set", [["uuid", "p1"]]]})),
                    },
                ),
                (
                    "b2".into(),
                    RowUpdate {
                        old: None,
                        new: row(json!({"name": "br2", "ports": ["uuid", "p2"]})),
                    },
                ),
            ]),
        );
        initial.insert(
            "Port".into(),
            BTreeMap::from([
                (
                    "p1".into(),
                    RowUpdate {
                        old: None,
                        new: row(json!({"interfaces": ["uuid", "i1"]})),
                    },
                ),
                (
                    "p2".into(),
                    RowUpdate {
                        old: None,
                        new: row(json!({"interfaces": ["uuid", "i2"]})),
                    },
                ),
            ]),
        );
        m.apply(&initial);
        let iface = |u: &str| {
            ovsdb::TableUpdates::from([(
                "Interface".to_owned(),
                BTreeMap::from([(
                    u.to_owned(),
                    RowUpdate {
                        old: row(json!({"ofport": -1})),
                        new: row(json!({"ofport": 3})),
                    },
                )]),
            )])
        };
        assert!(m.apply(&iface("i1")), "an interface of br1 changed");
        assert!(!m.apply(&iface("i2")), "br2's interface is not ours");
        // br1 loses p1 (deleted behind our back).
        let del = ovsdb::TableUpdates::from([(
            "Bridge".to_owned(),
            BTreeMap::from([(
                "b1".to_owned(),
                RowUpdate {
                    old: row(json!({"ports": ["uuid", "p1"]})),
                    new: row(json!({"name": "br1", "ports": ["set", []]})),
                },
            )]),
        )]);
        assert!(m.apply(&del));
        assert!(!m.apply(&iface("i1")), "p1 is no longer on br1");
    }

    #[test]
    fn a_missing_daemon_is_unreachable_with_the_reason() {
        let sw = OvsSwitch::new("unix:/nonexistent/cirrus-test/db.sock");
        match sw.ports("br0") {
            Err(SwitchError::Unreachable { op, reason }) => {
                assert_eq!(op, SwitchOp::Ports);
                assert!(
                    reason.contains("/nonexistent/cirrus-test/db.sock"),
                    "{reason}"
                );
                assert!(reason.contains("No such file"), "{reason}");
            }
            r => panic!("want Unreachable, got {r:?}"),
        }
        assert!(OvsSwitch::connect("/nonexistent/cirrus-test/db.sock").is_err());
    }

    #[test]
    fn datapath_detection_needs_the_kernel_module() {
        let module = Path::new("/sys/module/openvswitch").exists();
        let both = vec!["netdev".to_owned(), "system".to_owned()];
        assert_eq!(
            detect_datapath_type(&both),
            if module { "system" } else { "netdev" }
        );
        assert_eq!(detect_datapath_type(&["netdev".to_owned()]), "netdev");
    }
}
