//! The host network reconciler: makes this host's integration bridge, DHCP namespaces,
//! metadata proxies and firewall flows match the `Port`s bound to this node.
//!
//! # Why one host-wide sync instead of one reconcile per port
//! The firewall is a function of *every* port on the bridge (remote groups, broadcast
//! fan-out, the table is replaced atomically), and a DHCP server's host list is a function of
//! every port of its network. So each pass computes the whole desired host state from the
//! caches ([`plan`], pure) and converges the host to it ([`NetworkAgent::apply`]): cheap on
//! one host (a few ms for hundreds of ports) and trivially level-triggered.
//!
//! # Expected flow (one pass)
//! 1. Plan from the caches (ports, networks, subnets, security groups): the compute ports
//!    bound here (tap, local VLAN, `external_ids`, firewall rules) and one DHCP network per
//!    DHCP port bound here.
//! 2. Ensure the bridge (`fail_mode=secure`: nothing passes until the flows are in).
//! 3. Re-plug every compute port whose tap exists (libvirt plugs it when the domain starts;
//!    this repairs a port deleted or retagged behind Cirrus's back).
//! 4. Ensure each DHCP namespace + dnsmasq + metadata proxy; remove the ones no longer wanted.
//! 5. Render the firewall for the plugged ports and replace the flow table when it changed.
//! 6. Remove OVS ports Cirrus plugged for ports that are gone; free local VLANs nobody uses.
//! 7. Report each port's status (`ACTIVE` once plugged, `DOWN` otherwise).
//!
//! A pass runs after any watched change (debounced), when the switch reports a port change,
//! and every resync period.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cirrus_client::{Api, Client, ClientError};
use cirrus_crds::kinds::network::NetworkPhase;
use cirrus_crds::{Network, Port, Resource, SecurityGroup, Subnet};
use cirrus_runtime::reflector::{Writer, reflector};
use cirrus_runtime::{Store, watcher};
use futures::StreamExt;
use ipnet::IpNet;
use tokio::sync::Notify;

use crate::hypervisor::NicSpec;
use crate::net::dhcp::{
    self, DhcpHost, DhcpManager, DhcpNetwork, DhcpPort, DhcpSubnet, DnsmasqAction,
};
use crate::net::firewall::{self, FirewallPort, TrustedPort};
use crate::net::host::HostNetwork;
use crate::net::metadata_proxy::MetadataProxies;
use crate::net::switch::{PluggedPort, PortKind, PortPlug, Switch, SwitchError};

/// `deviceOwner` of DHCP ports.
pub use cirrus_crds::conventions::DEVICE_OWNER_DHCP;
/// The `external_ids` key marking ports Cirrus plugged, with the network uid.
pub const EXTERNAL_ID_NETWORK: &str = "cirrus-network";
/// A local VLAN handed out this recently is never freed (a server may be about to plug it).
const VLAN_RELEASE_GRACE: Duration = Duration::from_secs(300);

/// Timing of the host network reconciler.
#[derive(Clone, Debug)]
pub struct PortsConfig {
    /// A full pass at least this often (drift repair). Default 10 s.
    pub resync: Duration,
    /// Changes arriving within this window are handled by one pass. Default 50 ms.
    pub debounce: Duration,
}

impl Default for PortsConfig {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(10),
            debounce: Duration::from_millis(50),
        }
    }
}

/// Why a pass failed (the next pass retries).
#[derive(Debug, thiserror::Error)]
pub enum PortsError {
    /// A switch operation failed.
    #[error("switch")]
    Switch(#[from] SwitchError),
    /// A DHCP namespace could not be converged.
    #[error("dhcp")]
    Dhcp(#[from] dhcp::DhcpError),
    /// A metadata proxy could not be started.
    #[error("metadata proxy")]
    Metadata(#[from] crate::net::metadata_proxy::ProxyError),
    /// An API write failed.
    #[error("API")]
    Api(#[from] ClientError),
    /// The blocking task running the host changes failed.
    #[error("host task failed: {0}")]
    Task(String),
}

/// A compute port this host should have plugged.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedPort {
    /// `project/name` of the `Port`.
    pub key: String,
    /// The port's uid (its OVS `iface-id`).
    pub uid: String,
    /// The tap libvirt creates for it.
    pub tap: String,
    /// Its network's uid.
    pub network_uid: String,
    /// Its network's local VLAN.
    pub tag: u16,
    /// The `external_ids` its OVS interface carries.
    pub external_ids: BTreeMap<String, String>,
    /// Its firewall entry, with a placeholder ofport (filled in once plugged).
    pub firewall: FirewallPort,
}

/// What this host's networking should look like.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostPlan {
    /// Compute ports bound here.
    pub compute: Vec<PlannedPort>,
    /// DHCP servers (one per network with a DHCP port bound here), with their port's key.
    pub dhcp: Vec<(String, DhcpNetwork)>,
    /// Networks with something on this host (their local VLANs stay).
    pub networks: BTreeSet<String>,
    /// Ports that could not be planned, with the reason (logged; they stay DOWN).
    pub skipped: Vec<(String, String)>,
}

/// The caches a plan is computed from.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every port (all nodes: DHCP hosts and remote groups need them).
    pub ports: Vec<Arc<Port>>,
    /// Every network.
    pub networks: Vec<Arc<Network>>,
    /// Every subnet.
    pub subnets: Vec<Arc<Subnet>>,
    /// Every security group.
    pub groups: Vec<Arc<SecurityGroup>>,
}

fn project_of<K: Resource>(o: &K) -> String {
    o.meta().project.clone().unwrap_or_default()
}

fn key_of<K: Resource>(o: &K) -> String {
    format!("{}/{}", project_of(o), o.meta().name)
}

/// Computes the host's desired networking for `node` from `snap` (pure). `vlan` gives a
/// network's local VLAN (allocating it).
pub fn plan(
    node: &str,
    snap: &Snapshot,
    mut vlan: impl FnMut(&str) -> Result<u16, String>,
) -> HostPlan {
    let networks: HashMap<String, &Network> = snap
        .networks
        .iter()
        .map(|n| (key_of(n.as_ref()), n.as_ref()))
        .collect();
    let all_groups: Vec<SecurityGroup> = snap.groups.iter().map(|g| (**g).clone()).collect();
    let all_ports: Vec<Port> = snap.ports.iter().map(|p| (**p).clone()).collect();
    let mut plan = HostPlan::default();
    for port in &snap.ports {
        if port.spec.binding_host.as_deref() != Some(node)
            || port.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let key = key_of(port.as_ref());
        // A port on another project's shared network names that project.
        let network_key = format!("{}/{}", port.network_project(), port.spec.network);
        let Some(network) = networks.get(&network_key) else {
            plan.skipped
                .push((key, format!("network {:?} not found", port.spec.network)));
            continue;
        };
        let (Some(uid), Some(network_uid)) =
            (port.metadata.uid.clone(), network.metadata.uid.clone())
        else {
            continue;
        };
        let Some(mac) = port.status.mac_address.clone() else {
            plan.skipped.push((key, "no MAC address yet".into()));
            continue;
        };
        let tag = match vlan(&network_uid) {
            Ok(t) => t,
            Err(e) => {
                plan.skipped.push((key, e));
                continue;
            }
        };
        plan.networks.insert(network_uid.clone());
        if port.spec.device_owner.as_deref() == Some(DEVICE_OWNER_DHCP) {
            plan.dhcp.push((
                key,
                dhcp_network(port, network, &network_uid, &uid, &mac, tag, snap),
            ));
            continue;
        }
        let rules = firewall::resolve_port_rules(
            port,
            network.spec.port_security_enabled,
            &all_groups,
            &all_ports,
        );
        let Some(fw) =
            FirewallPort::from_port(port, 0, tag, network.spec.port_security_enabled, rules)
        else {
            plan.skipped
                .push((key, format!("MAC {mac:?} is not valid")));
            continue;
        };
        let tap = port_tap(&uid);
        let mut external_ids = BTreeMap::new();
        external_ids.insert("iface-id".to_string(), uid.clone());
        external_ids.insert("attached-mac".to_string(), mac.clone());
        external_ids.insert("iface-status".to_string(), "active".to_string());
        external_ids.insert(EXTERNAL_ID_NETWORK.to_string(), network_uid.clone());
        if let Some(vm) = &port.spec.device_id {
            external_ids.insert("vm-id".to_string(), vm.clone());
        }
        plan.compute.push(PlannedPort {
            key,
            uid,
            tap,
            network_uid,
            tag,
            external_ids,
            firewall: fw,
        });
    }
    plan.compute.sort_by(|a, b| a.key.cmp(&b.key));
    plan.dhcp.sort_by(|a, b| a.0.cmp(&b.0));
    plan
}

/// The tap name of the port with `uid` (as [`NicSpec::tap_name`]).
fn port_tap(uid: &str) -> String {
    match uuid::Uuid::try_parse(uid) {
        Ok(u) => NicSpec::tap_name(u),
        Err(_) => format!("tap{}", uid.chars().take(11).collect::<String>()),
    }
}

fn dhcp_network(
    port: &Port,
    network: &Network,
    network_uid: &str,
    uid: &str,
    mac: &str,
    tag: u16,
    snap: &Snapshot,
) -> DhcpNetwork {
    // A DHCP port is its network's project's; the hosts it serves are every port on the
    // network, whichever project owns them (a shared network serves many).
    let project = port.network_project().to_string();
    let subnets: Vec<&Subnet> = snap
        .subnets
        .iter()
        .filter(|s| project_of(s.as_ref()) == project && s.spec.network == port.spec.network)
        .map(|s| s.as_ref())
        .collect();
    let prefix_of = |ip: std::net::IpAddr| {
        subnets
            .iter()
            .find(|s| s.spec.cidr.contains(&ip))
            .map(|s| s.spec.cidr.prefix_len())
    };
    let ips: Vec<IpNet> = port
        .status
        .fixed_ips
        .iter()
        .filter_map(|f| prefix_of(f.ip_address).and_then(|p| IpNet::new(f.ip_address, p).ok()))
        .collect();
    let hosts: Vec<DhcpHost> = snap
        .ports
        .iter()
        .filter(|p| {
            p.is_on(&project, &port.spec.network)
                && p.spec.device_owner.as_deref() != Some(DEVICE_OWNER_DHCP)
                && p.metadata.deletion_timestamp.is_none()
        })
        .flat_map(|p| {
            let mac = p.status.mac_address.clone();
            let hostname = p.spec.device_id.as_ref().map(|_| p.metadata.name.clone());
            p.status.fixed_ips.iter().filter_map(move |f| {
                mac.clone().map(|mac| DhcpHost {
                    mac,
                    ip: f.ip_address,
                    hostname: hostname.clone(),
                })
            })
        })
        .collect();
    DhcpNetwork {
        network_uid: network_uid.to_string(),
        project: project.clone(),
        name: port.spec.network.clone(),
        tag,
        mtu: network.status.mtu.or(network.spec.mtu).unwrap_or(1500),
        subnets: subnets
            .iter()
            .map(|s| DhcpSubnet {
                cidr: s.spec.cidr,
                gateway: s.spec.gateway(),
                dns_servers: s.spec.dns_nameservers.clone(),
                host_routes: s
                    .spec
                    .host_routes
                    .iter()
                    .map(|r| (r.destination, r.nexthop))
                    .collect(),
                enable_dhcp: s.spec.enable_dhcp,
            })
            .collect(),
        port: DhcpPort {
            uid: uid.to_string(),
            ifname: dhcp::port_ifname(uid),
            mac: mac.to_string(),
            ips,
        },
        hosts,
    }
}

/// What one pass did, for status reporting and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// `project/name` → plugged (has an ofport / its DHCP server runs).
    pub plugged: BTreeMap<String, bool>,
    /// Whether the flow table was replaced.
    pub flows_replaced: bool,
    /// DHCP namespaces removed.
    pub dhcp_removed: Vec<String>,
    /// OVS ports removed.
    pub ports_removed: Vec<String>,
}

/// The host network reconciler's state.
pub struct NetworkAgent {
    client: Client,
    node: String,
    host: Arc<HostNetwork>,
    switch: Arc<dyn Switch>,
    dhcp: DhcpManager,
    proxies: MetadataProxies,
    config: PortsConfig,
    last_flows: Mutex<Option<Vec<String>>>,
    device_exists: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

impl std::fmt::Debug for NetworkAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkAgent")
            .field("node", &self.node)
            .field("bridge", &self.host.bridge())
            .finish_non_exhaustive()
    }
}

impl NetworkAgent {
    /// The reconciler for `node`, plugging into `host`'s bridge through `switch`, keeping
    /// DHCP state under `state_dir/network/dhcp` and forwarding metadata requests to
    /// `api_url`.
    pub fn new(
        client: Client,
        node: impl Into<String>,
        host: Arc<HostNetwork>,
        switch: Arc<dyn Switch>,
        state_dir: PathBuf,
        api_url: impl Into<String>,
        config: PortsConfig,
    ) -> Self {
        let plumbing = dhcp::SwitchPlumbing::new(switch.clone(), host.bridge());
        Self {
            client: client.clone(),
            node: node.into(),
            dhcp: DhcpManager::new(state_dir.join("network").join("dhcp"), Box::new(plumbing)),
            proxies: MetadataProxies::new(cirrus_client::Client {
                base_url: api_url.into().trim_end_matches('/').to_string(),
                ..client.clone()
            }),
            host,
            switch,
            config,
            last_flows: Mutex::new(None),
            device_exists: Box::new(|name| {
                std::path::Path::new("/sys/class/net").join(name).exists()
            }),
        }
    }

    /// Replaces the check whether a network device exists on the host (tests with the fake
    /// switch).
    #[must_use]
    pub fn with_device_probe(
        mut self,
        probe: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.device_exists = Box::new(probe);
        self
    }

    /// The metadata proxies (tests).
    pub fn proxies(&self) -> &MetadataProxies {
        &self.proxies
    }

    fn vlan(&self, network_uid: &str) -> Result<u16, String> {
        self.host.local_vlan(network_uid).map_err(|e| e.to_string())
    }

    /// Converges the host to `plan` (blocking: switch, namespaces, dnsmasq).
    ///
    /// # Errors
    /// The bridge could not be ensured; per-port and per-network failures are logged and
    /// leave that port/network unplugged instead.
    pub fn apply(&self, plan: &HostPlan) -> Result<Applied, PortsError> {
        let bridge = self.host.bridge();
        // Nothing to plug and no bridge yet: leave the host alone (no bridge is made on a
        // node that never carries a network).
        if plan.compute.is_empty() && plan.dhcp.is_empty() {
            match self.switch.ports(bridge) {
                Err(SwitchError::NoSuchBridge(_)) => return Ok(Applied::default()),
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }
        let info = self.switch.bridge_ensure(bridge)?;
        self.host.set_datapath_type(&info.datapath_type);
        let mut applied = Applied::default();
        let existing: HashMap<String, PluggedPort> = self
            .switch
            .ports(bridge)?
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect();

        // Compute ports: re-plug what libvirt plugged (or what drifted away).
        let mut filtered = Vec::new();
        for p in &plan.compute {
            let present = existing.get(&p.tap);
            let in_sync = present.is_some_and(|e| {
                e.ofport.is_some()
                    && e.tag == Some(p.tag)
                    && p.external_ids
                        .iter()
                        .all(|(k, v)| e.external_ids.get(k) == Some(v))
            });
            let ofport = if in_sync {
                present.and_then(|e| e.ofport)
            } else if present.is_some() || (self.device_exists)(&p.tap) {
                let plug = PortPlug {
                    name: p.tap.clone(),
                    kind: PortKind::System,
                    tag: Some(p.tag),
                    external_ids: p.external_ids.clone(),
                };
                match self.switch.port_ensure(bridge, &plug) {
                    Ok(plugged) => plugged.ofport,
                    Err(e) => {
                        tracing::warn!(port = %p.key, tap = %p.tap, error = %e, "plugging the tap failed");
                        None
                    }
                }
            } else {
                None
            };
            applied.plugged.insert(p.key.clone(), ofport.is_some());
            if let Some(ofport) = ofport {
                let mut fw = p.firewall.clone();
                fw.ofport = ofport;
                filtered.push(fw);
            }
        }

        // DHCP namespaces (+ metadata proxies).
        let wanted: BTreeSet<&str> = plan
            .dhcp
            .iter()
            .map(|(_, n)| n.network_uid.as_str())
            .collect();
        for (key, net) in &plan.dhcp {
            let ok = match self.dhcp.ensure(net) {
                Ok(action) => {
                    tracing::debug!(network = %net.network_uid, ?action, "dhcp ensured");
                    if matches!(action, DnsmasqAction::Started | DnsmasqAction::Restarted) {
                        // The namespace may be new: a listener bound in the old one would
                        // serve nobody.
                        self.proxies.stop(&net.network_uid);
                    }
                    let label = format!("{}/{}", net.project, net.name);
                    match self.proxies.ensure(
                        &net.network_uid,
                        &dhcp::namespace_name(&net.network_uid),
                        &label,
                    ) {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::warn!(network = %net.network_uid, error = %e, "metadata proxy failed");
                            false
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(network = %net.network_uid, error = %e, "dhcp failed");
                    false
                }
            };
            applied.plugged.insert(key.clone(), ok);
        }
        for uid in self.dhcp.present()? {
            // Only what this agent made (its state directory exists): another agent's
            // namespaces on the same host (tests, several bridges) are not ours to remove.
            if !wanted.contains(uid.as_str()) && self.dhcp.paths(&uid).dir.exists() {
                self.proxies.stop(&uid);
                if let Err(e) = self.dhcp.remove(&uid, None) {
                    tracing::warn!(network = %uid, error = %e, "removing a DHCP namespace failed");
                } else {
                    applied.dhcp_removed.push(uid);
                }
            }
        }
        for uid in self.proxies.networks() {
            if !wanted.contains(uid.as_str()) {
                self.proxies.stop(&uid);
            }
        }

        // Firewall: the whole table, replaced when it changed (or drifted).
        let after: Vec<PluggedPort> = self.switch.ports(bridge)?;
        let trusted: Vec<TrustedPort> = plan
            .dhcp
            .iter()
            .filter_map(|(_, net)| {
                after
                    .iter()
                    .find(|p| p.name == net.port.ifname)
                    .and_then(|p| p.ofport)
                    .map(|ofport| TrustedPort {
                        ofport,
                        tag: net.tag,
                    })
            })
            .collect();
        let flows = firewall::render(&filtered, &trusted);
        let changed = self
            .last_flows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            != Some(&flows);
        if changed || self.switch.flows(bridge)?.len() != flows.len() {
            self.switch.flows_replace(bridge, &flows)?;
            *self.last_flows.lock().unwrap_or_else(|p| p.into_inner()) = Some(flows);
            applied.flows_replaced = true;
        }

        // Ports Cirrus plugged whose Port is gone.
        let taps: BTreeSet<&str> = plan.compute.iter().map(|p| p.tap.as_str()).collect();
        let dhcp_ifs: BTreeSet<&str> = plan
            .dhcp
            .iter()
            .map(|(_, n)| n.port.ifname.as_str())
            .collect();
        for p in &after {
            if p.external_ids.contains_key(EXTERNAL_ID_NETWORK)
                && !taps.contains(p.name.as_str())
                && !dhcp_ifs.contains(p.name.as_str())
            {
                match self.switch.port_delete(bridge, &p.name) {
                    Ok(_) => applied.ports_removed.push(p.name.clone()),
                    Err(e) => {
                        tracing::warn!(port = %p.name, error = %e, "removing a stale port failed")
                    }
                }
            }
        }

        // Local VLANs nobody uses any more (and not just handed out).
        let in_use: BTreeSet<u16> = after.iter().filter_map(|p| p.tag).collect();
        for (network_uid, tag) in self.host.local_vlans().all() {
            let fresh = self.host.allocated_within(&network_uid, VLAN_RELEASE_GRACE);
            if !plan.networks.contains(&network_uid)
                && !in_use.contains(&tag)
                && !fresh
                && let Err(e) = self.host.local_vlans().release(&network_uid)
            {
                tracing::warn!(network = %network_uid, error = %e, "freeing a local VLAN failed");
            }
        }
        Ok(applied)
    }

    /// Writes each planned port's status (`ACTIVE` when plugged, else `DOWN`; `vifType: ovs`)
    /// where it differs.
    async fn report(&self, snap: &Snapshot, applied: &Applied) -> Result<(), ClientError> {
        for port in &snap.ports {
            let key = key_of(port.as_ref());
            let Some(plugged) = applied.plugged.get(&key) else {
                continue;
            };
            let phase = if *plugged {
                NetworkPhase::Active
            } else {
                NetworkPhase::Down
            };
            if port.status.phase == Some(phase) && port.status.vif_type.as_deref() == Some("ovs") {
                continue;
            }
            let api = Api::<Port>::for_object(self.client.clone(), port.as_ref());
            let patch = serde_json::json!({"status": {"phase": phase, "vifType": "ovs"}});
            match api.patch_status(&port.metadata.name, &patch).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Runs the host network reconciler until `shutdown` completes.
pub async fn run(
    agent: Arc<NetworkAgent>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let wake = Arc::new(Notify::new());
    let ports = cache::<Port>(&agent.client, wake.clone());
    let networks = cache::<Network>(&agent.client, wake.clone());
    let subnets = cache::<Subnet>(&agent.client, wake.clone());
    let groups = cache::<SecurityGroup>(&agent.client, wake.clone());
    // The switch tells us when its ports change (a port deleted behind our back). The
    // blocking watcher checks `stop` twice a second so shutdown never waits on it.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let switch = agent.switch.clone();
        let bridge = agent.host.bridge().to_string();
        let wake = wake.clone();
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let Ok(rx) = switch.watch_ports(&bridge) else {
                return;
            };
            while !stop.load(Ordering::Relaxed) {
                match rx.recv_timeout(Duration::from_millis(500)) {
                    Ok(()) => wake.notify_one(),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        });
    }
    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => {
            stop.store(true, Ordering::Relaxed);
            return;
        }
        () = async {
            ports.0.wait_until_ready().await;
            networks.0.wait_until_ready().await;
            subnets.0.wait_until_ready().await;
            groups.0.wait_until_ready().await;
        } => {}
    }
    loop {
        let snap = Snapshot {
            ports: ports.0.list(),
            networks: networks.0.list(),
            subnets: subnets.0.list(),
            groups: groups.0.list(),
        };
        let span = tracing::info_span!("host_network_sync", node = %agent.node);
        let _entered = span.enter();
        let a = agent.clone();
        let node = agent.node.clone();
        let snap_for_plan = snap.clone();
        let result = tokio::task::spawn_blocking(move || {
            let plan = plan(&node, &snap_for_plan, |uid| a.vlan(uid));
            for (key, why) in &plan.skipped {
                tracing::debug!(port = %key, reason = %why, "port not planned");
            }
            a.apply(&plan)
        })
        .await
        .map_err(|e| PortsError::Task(e.to_string()))
        .and_then(|r| r);
        drop(_entered);
        match result {
            Ok(applied) => {
                if let Err(e) = agent.report(&snap, &applied).await {
                    tracing::warn!(error = %e, "writing port status failed");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "host network pass failed")
            }
        }
        tokio::select! {
            () = &mut shutdown => break,
            () = wake.notified() => tokio::time::sleep(agent.config.debounce).await,
            () = tokio::time::sleep(agent.config.resync) => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Keep the caches' tasks from outliving the loop.
    for task in [ports.1, networks.1, subnets.1, groups.1] {
        task.abort();
    }
}

/// A cache of every `K`, notifying `wake` on each change.
fn cache<K: Resource + 'static>(
    client: &Client,
    wake: Arc<Notify>,
) -> (Store<K>, tokio::task::JoinHandle<()>) {
    let writer = Writer::<K>::new();
    let store = writer.as_reader();
    let stream = reflector(
        writer,
        watcher::watcher(Api::<K>::all(client.clone()), watcher::Config::default()),
    );
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::debug!(kind = K::KIND, error = %e, "watch error");
            }
            wake.notify_one();
        }
    });
    (store, task)
}

#[cfg(test)]
mod tests;
