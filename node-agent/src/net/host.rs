//! The host's networking as the rest of the node agent sees it: the integration bridge and
//! the local VLAN of each network on it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::net::local_vlans::{LocalVlanError, LocalVlans};

/// The integration bridge every guest NIC and DHCP namespace is plugged into.
pub const DEFAULT_BRIDGE: &str = "br-int";

/// This host's networking state shared by the server reconciler and the ports reconciler.
#[derive(Debug)]
pub struct HostNetwork {
    bridge: String,
    vlans: LocalVlans,
    /// When this process handed out (or first used) each network's tag.
    used_at: Mutex<HashMap<String, Instant>>,
    /// The bridge's datapath type once it has been ensured (`system` or `netdev`).
    datapath: Mutex<Option<String>>,
}

impl HostNetwork {
    /// Networking on `bridge`, with the local VLAN map kept under `state_dir/network/`.
    ///
    /// # Errors
    /// The persisted local VLAN map exists but cannot be read.
    pub fn new(bridge: impl Into<String>, state_dir: &Path) -> Result<Self, LocalVlanError> {
        Ok(Self {
            bridge: bridge.into(),
            vlans: LocalVlans::load(state_dir.join("network").join("local-vlans.json"))?,
            used_at: Mutex::new(HashMap::new()),
            datapath: Mutex::new(None),
        })
    }

    /// The integration bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The local VLAN tag of the network with `network_uid` on this host (allocated on
    /// first use).
    ///
    /// # Errors
    /// No tag is free or the map could not be saved.
    pub fn local_vlan(&self, network_uid: &str) -> Result<u16, LocalVlanError> {
        let tag = self.vlans.get_or_allocate(network_uid)?;
        self.used_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(network_uid.to_string(), Instant::now());
        Ok(tag)
    }

    /// Whether the network's tag was asked for within `window` (then it must not be freed:
    /// a server may be about to plug a NIC with it).
    pub fn allocated_within(&self, network_uid: &str, window: Duration) -> bool {
        self.used_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(network_uid)
            .is_some_and(|t| t.elapsed() < window)
    }

    /// Records the bridge's datapath type (from ensuring the bridge).
    pub fn set_datapath_type(&self, datapath: &str) {
        *self.datapath.lock().unwrap_or_else(|p| p.into_inner()) = Some(datapath.to_string());
    }

    /// Whether guest NICs may use checksum/segmentation offload: only on the kernel
    /// datapath (`system`); on the userspace one (or before the bridge is known) they may
    /// not, see [`crate::hypervisor::NicSpec::offload`].
    pub fn nic_offload(&self) -> bool {
        self.datapath
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
            == Some("system")
    }

    /// The network → tag map.
    pub fn local_vlans(&self) -> &LocalVlans {
        &self.vlans
    }
}
