//! The `Switch` backend: the integration bridge, its ports, and its OpenFlow table.
//!
//! One narrow trait with idempotent, name-first methods (like [`crate::hypervisor`]):
//! - [`ovs::OvsSwitch`]: Open vSwitch — bridges/ports/interfaces through our own OVSDB client
//!   ([`crate::net::ovsdb`]), flows through `ovs-ofctl` (OpenFlow is not in the database);
//! - [`fake::FakeSwitch`]: in memory, with fault injection and out-of-band changes;
//! - `conformance`: the one suite both must pass (`node-agent/tests/switch_conformance.rs`);
//! - `bench`: port plug timings for `cirrus bench` (both built for tests and the `testing`
//!   feature only).
//!
//! Ports are named deterministically by the caller (e.g. `tap<11 hex of port uid>`), so every
//! "create" is an "ensure" and a crash between plugging and recording leaks nothing.

#[cfg(any(test, feature = "testing"))]
pub mod bench;
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod fake;
pub mod ovs;

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;

/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

/// Which operation a [`SwitchError`] or injected fault is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SwitchOp {
    /// [`Switch::bridge_ensure`].
    BridgeEnsure,
    /// [`Switch::bridge_delete`].
    BridgeDelete,
    /// [`Switch::port_ensure`].
    PortEnsure,
    /// [`Switch::port_delete`].
    PortDelete,
    /// [`Switch::ports`].
    Ports,
    /// [`Switch::flows_replace`].
    FlowsReplace,
    /// [`Switch::flows`].
    Flows,
    /// [`Switch::watch_ports`].
    WatchPorts,
}

/// What went wrong in a switch operation.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// The switch daemon could not be reached (connection refused, closed, timed out).
    #[error("{op:?}: switch unreachable: {reason}")]
    Unreachable {
        /// The operation.
        op: SwitchOp,
        /// Why.
        reason: String,
    },
    /// The database refused or failed the operation.
    #[error("{op:?} {target}: ovsdb: {source}")]
    Ovsdb {
        /// The operation.
        op: SwitchOp,
        /// Bridge or port name.
        target: String,
        /// The client error.
        #[source]
        source: crate::net::ovsdb::Error,
    },
    /// The bridge does not exist.
    #[error("bridge {0} does not exist")]
    NoSuchBridge(String),
    /// The port exists on another bridge (OVS port names are host-wide).
    #[error("port {port} is on bridge {on}, not {wanted}")]
    PortOnOtherBridge {
        /// The port.
        port: String,
        /// Where it is.
        on: String,
        /// Where it was wanted.
        wanted: String,
    },
    /// A name is not a valid interface/bridge name.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it's refused.
        reason: &'static str,
    },
    /// A helper command (`ovs-ofctl`, `ip`) failed.
    #[error("{op:?}: `{command}` failed: {detail}")]
    Command {
        /// The operation.
        op: SwitchOp,
        /// The command line.
        command: String,
        /// Exit status and stderr.
        detail: String,
    },
    /// vswitchd did not act on the database change in time.
    #[error("{op:?} {target}: {what} not done after {after:?}")]
    Timeout {
        /// The operation.
        op: SwitchOp,
        /// Bridge or port.
        target: String,
        /// What we waited for.
        what: &'static str,
        /// How long.
        after: std::time::Duration,
    },
    /// OVS could not attach the bridge's or port's device (the interface's `error`).
    #[error("{op:?} {target}: not attached: {error}")]
    NotAttached {
        /// The operation.
        op: SwitchOp,
        /// Bridge or port.
        target: String,
        /// OVS's `Interface.error`.
        error: String,
    },
    /// A fault injected into the fake.
    #[error("{op:?} {target}: injected fault")]
    Injected {
        /// The operation.
        op: SwitchOp,
        /// Bridge or port.
        target: String,
    },
}

/// Result alias for switch operations.
pub type Result<T> = std::result::Result<T, SwitchError>;

/// A bridge as ensured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeInfo {
    /// Bridge name.
    pub name: String,
    /// `netdev` (userspace) or `system` (kernel module).
    pub datapath_type: String,
}

/// How a port's device comes to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortKind {
    /// An existing network device (a libvirt tap): OVS opens it; until it exists the port
    /// has no ofport and reports an error.
    System,
    /// OVS creates the device (DHCP namespaces, tests).
    Internal,
    /// Any other OVS interface type (`patch`, `vxlan`, `tap`, …) found on the bridge; Cirrus
    /// lists these but does not create them.
    Other(String),
}

impl PortKind {
    /// The OVSDB `Interface.type` for this kind.
    pub fn ovs_type(&self) -> &str {
        match self {
            PortKind::System => "",
            PortKind::Internal => "internal",
            PortKind::Other(t) => t,
        }
    }

    /// The kind for an OVSDB `Interface.type`.
    pub fn from_ovs_type(t: &str) -> Self {
        match t {
            "" | "system" => PortKind::System,
            "internal" => PortKind::Internal,
            other => PortKind::Other(other.to_owned()),
        }
    }
}

/// What [`Switch::port_ensure`] should make true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPlug {
    /// Port (and interface) name, at most [`MAX_IFNAME`] bytes.
    pub name: String,
    /// Device kind.
    pub kind: PortKind,
    /// Access VLAN tag (the network's local VLAN on this host); `None` = untagged.
    pub tag: Option<u16>,
    /// Interface `external_ids` (iface-id, attached-mac, vm-uuid, iface-status,
    /// cirrus-network). Replaced as a whole.
    pub external_ids: BTreeMap<String, String>,
}

/// A port as the switch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluggedPort {
    /// Port name.
    pub name: String,
    /// OpenFlow port number; `None` while the device is not attached (OVS reports -1 or
    /// nothing).
    pub ofport: Option<u32>,
    /// Access VLAN tag.
    pub tag: Option<u16>,
    /// Interface `external_ids`.
    pub external_ids: BTreeMap<String, String>,
    /// Device kind.
    pub kind: PortKind,
    /// Why the device is not attached (e.g. "could not open network device tapX (No such
    /// device)"), as OVS reports it.
    pub error: Option<String>,
}

/// The switch backend. Every method is idempotent and synchronous (call it through
/// `spawn_blocking`); names are the identity.
pub trait Switch: Send + Sync {
    /// Creates the bridge if missing (`fail_mode=secure`: nothing passes until flows are
    /// installed; datapath chosen at run time) and brings its local interface up. Fixes a
    /// wrong `fail_mode`/`datapath_type` in place.
    fn bridge_ensure(&self, bridge: &str) -> Result<BridgeInfo>;

    /// Deletes the bridge and all its ports; `false` if it did not exist. For tests.
    fn bridge_delete(&self, bridge: &str) -> Result<bool>;

    /// Makes the port exist on `bridge` with exactly `plug`'s kind, tag and external_ids
    /// (fixing them in place), and waits (bounded) until the device is attached or OVS
    /// reports why not. A System port whose device does not exist returns `Ok` with
    /// `ofport: None` and `error` set.
    fn port_ensure(&self, bridge: &str, plug: &PortPlug) -> Result<PluggedPort>;

    /// Removes the port from `bridge`; `false` if it was not there.
    fn port_delete(&self, bridge: &str, name: &str) -> Result<bool>;

    /// The ports of `bridge` (not the bridge's own local port), sorted by name.
    fn ports(&self, bridge: &str) -> Result<Vec<PluggedPort>>;

    /// Makes the bridge's OpenFlow tables exactly `flows` (ovs-ofctl syntax), atomically.
    fn flows_replace(&self, bridge: &str, flows: &[String]) -> Result<()>;

    /// The bridge's flows, each passed through [`normalize_flow`], sorted.
    fn flows(&self, bridge: &str) -> Result<Vec<String>>;

    /// A drift signal: a message (coalesced) every time the set of ports of `bridge` or one
    /// of their interfaces changes, from whatever source — so a port deleted behind Cirrus's
    /// back is repaired at once instead of at the next resync. The channel disconnects when
    /// the watch breaks (e.g. the daemon restarted); watch again then.
    fn watch_ports(&self, bridge: &str) -> Result<Receiver<()>>;
}

/// Checks a bridge/port name: 1..=15 bytes, no `/`, whitespace or NUL.
pub fn check_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_IFNAME {
        Some("longer than 15 bytes")
    } else if name
        .chars()
        .any(|c| c == '/' || c.is_whitespace() || c == '\0' || c == ':')
    {
        Some("contains '/', ':', whitespace or NUL")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SwitchError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A flow in the canonical text both implementations report: what `ovs-ofctl dump-flows
/// --no-stats` prints, with `table=0` dropped, no blanks after commas, and one space before
/// `actions=`. Write flows with match fields in OVS's order (e.g. `priority` first, then the
/// protocol shorthand, then fields) and they compare equal to what [`Switch::flows`] returns.
pub fn normalize_flow(flow: &str) -> String {
    let flow = flow.trim();
    let (matches, actions) = match flow.find("actions=") {
        Some(i) => (&flow[..i], &flow[i..]),
        None => (flow, ""),
    };
    let fields: Vec<&str> = matches
        .split([',', ' '])
        .map(str::trim)
        .filter(|f| !f.is_empty() && *f != "table=0")
        .collect();
    let m = fields.join(",");
    match (m.is_empty(), actions.is_empty()) {
        (_, true) => m,
        (true, false) => actions.to_owned(),
        (false, false) => format!("{m} {actions}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_flow_matches_ovs_dump_form() {
        assert_eq!(
            normalize_flow("table=0, priority=10,in_port=1,actions=drop"),
            "priority=10,in_port=1 actions=drop"
        );
        assert_eq!(
            normalize_flow(" priority=10,in_port=1 actions=drop"),
            "priority=10,in_port=1 actions=drop"
        );
        assert_eq!(
            normalize_flow("table=1, priority=5,ip actions=ct(commit,zone=5),output:2"),
            "table=1,priority=5,ip actions=ct(commit,zone=5),output:2"
        );
        assert_eq!(normalize_flow("actions=NORMAL"), "actions=NORMAL");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("tap0123456789a").is_ok());
        assert!(check_name("tap0123456789abc").is_err(), "16 bytes");
        assert!(check_name("").is_err());
        assert!(check_name("a/b").is_err());
    }

    #[test]
    fn kinds_map_to_ovs_types() {
        for k in [
            PortKind::System,
            PortKind::Internal,
            PortKind::Other("patch".into()),
        ] {
            assert_eq!(PortKind::from_ovs_type(k.ovs_type()), k);
        }
    }
}
