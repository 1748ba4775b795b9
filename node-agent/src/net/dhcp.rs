//! DHCP per network: a dnsmasq inside a `qdhcp-<network uid>` namespace, reached through an
//! OVS internal port tagged with the network's local VLAN.
//!
//! [`DhcpManager::ensure`] converges one network (namespace, port, addresses, config files,
//! process) and is idempotent; [`DhcpManager::remove`] takes all of it away;
//! [`DhcpManager::present`] lists what exists so the caller can remove orphans.
//!
//! dnsmasq only answers the MACs in its hosts file, each with exactly its port's fixed IP
//! (`--dhcp-range=<net>,static`). Hosts and options live in `--dhcp-hostsfile` /
//! `--dhcp-optsfile`, which dnsmasq re-reads on `SIGHUP`, so a changed host list is a reload
//! (same process), and only a changed command line (interface, subnets) is a restart. The
//! config is rendered by pure functions ([`render_hosts`], [`render_opts`], [`dnsmasq_args`]).
//!
//! The OVS side is behind [`PortPlumbing`] so the agent plugs its `Switch` in and tests use
//! `ovs-vsctl`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rustix::process::{Pid, Signal, kill_process};

use crate::net::netns::{self, LinkConfig, NetnsError};
use crate::net::switch::{PortKind, PortPlug, Switch};

/// Prefix of DHCP namespace names; the rest is the network uid.
pub const NAMESPACE_PREFIX: &str = "qdhcp-";

/// The metadata address, configured on every DHCP port and routed to it by option 121.
pub const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// Lease time handed out, in seconds (Neutron's default `dhcp_lease_duration`).
pub const LEASE_SECONDS: u32 = 86_400;

/// How long a stopping dnsmasq gets after `SIGTERM` before `SIGKILL`.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// The namespace of a network's DHCP server.
pub fn namespace_name(network_uid: &str) -> String {
    format!("{NAMESPACE_PREFIX}{network_uid}")
}

/// A deterministic interface name (<= 15 characters) for a DHCP port: `dh` + the first 11
/// hex digits of its uid.
pub fn port_ifname(port_uid: &str) -> String {
    let hex: String = port_uid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(11)
        .collect();
    format!("dh{}", hex.to_ascii_lowercase())
}

/// One subnet of a network as DHCP sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpSubnet {
    /// The range (host bits zero).
    pub cidr: IpNet,
    /// Default gateway handed out; `None`: no router option, no default route.
    pub gateway: Option<IpAddr>,
    /// DNS servers handed out; empty: the option is not sent.
    pub dns_servers: Vec<IpAddr>,
    /// Extra routes handed out (option 121): destination and next hop.
    pub host_routes: Vec<(IpNet, IpAddr)>,
    /// Serve DHCP on it.
    pub enable_dhcp: bool,
}

/// The network's DHCP port as it is plugged into the namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpPort {
    /// Uid of the `Port` object (becomes `external_ids:iface-id`).
    pub uid: String,
    /// Interface name, at most 15 characters ([`port_ifname`]).
    pub ifname: String,
    /// The port's MAC.
    pub mac: String,
    /// The port's fixed IPs with the prefix length of their subnet.
    pub ips: Vec<IpNet>,
}

/// A guest port that gets an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpHost {
    /// MAC of the port.
    pub mac: String,
    /// Its fixed IP.
    pub ip: IpAddr,
    /// Host name handed out; `None`: `host-<ip with dashes>`.
    pub hostname: Option<String>,
}

/// Everything DHCP needs to know about one network on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpNetwork {
    /// Uid of the `Network` (names the namespace and the state directory).
    pub network_uid: String,
    /// Its project.
    pub project: String,
    /// Its name.
    pub name: String,
    /// The network's local VLAN tag on the integration bridge.
    pub tag: u16,
    /// The MTU guests should use (option 26) and the DHCP port's MTU.
    pub mtu: u32,
    /// Its subnets.
    pub subnets: Vec<DhcpSubnet>,
    /// The DHCP port.
    pub port: DhcpPort,
    /// The guests' ports.
    pub hosts: Vec<DhcpHost>,
}

/// An OVS internal port the DHCP manager wants on the integration bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InternalPort {
    /// Interface name.
    pub name: String,
    /// Local VLAN tag.
    pub tag: u16,
    /// `external_ids` (iface-id, attached-mac, cirrus-network).
    pub external_ids: BTreeMap<String, String>,
}

/// Error of a [`PortPlumbing`] call.
pub type PlumbingError = Box<dyn std::error::Error + Send + Sync>;

/// The switch operations the DHCP manager needs (the agent implements it with its `Switch`,
/// tests with `ovs-vsctl`).
pub trait PortPlumbing: Send + Sync {
    /// Makes an internal port exist on the integration bridge with this tag and external ids
    /// (idempotent; a new port's device appears in the agent's namespace).
    fn ensure_internal(&self, port: &InternalPort) -> std::result::Result<(), PlumbingError>;
    /// Removes port `name` from the bridge (no error when it is not there).
    fn delete(&self, name: &str) -> std::result::Result<(), PlumbingError>;
}

/// [`PortPlumbing`] through the agent's [`Switch`] on one bridge (the integration bridge).
pub struct SwitchPlumbing {
    switch: std::sync::Arc<dyn Switch>,
    bridge: String,
}

impl SwitchPlumbing {
    /// Plumbing that plugs DHCP ports into `bridge` with `switch`.
    pub fn new(switch: std::sync::Arc<dyn Switch>, bridge: impl Into<String>) -> Self {
        Self {
            switch,
            bridge: bridge.into(),
        }
    }
}

impl PortPlumbing for SwitchPlumbing {
    fn ensure_internal(&self, port: &InternalPort) -> std::result::Result<(), PlumbingError> {
        let plug = PortPlug {
            name: port.name.clone(),
            kind: PortKind::Internal,
            tag: Some(port.tag),
            external_ids: port.external_ids.clone(),
        };
        self.switch.port_ensure(&self.bridge, &plug)?;
        Ok(())
    }

    fn delete(&self, name: &str) -> std::result::Result<(), PlumbingError> {
        self.switch.port_delete(&self.bridge, name)?;
        Ok(())
    }
}

/// Why a DHCP operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// A namespace or link operation failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The switch refused the port.
    #[error("switch: {0}")]
    Plumbing(PlumbingError),
    /// The port's device did not show up after plugging.
    #[error("port {0:?} has no device after plugging it")]
    NoDevice(String),
    /// State files could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// dnsmasq did not start (its log says why).
    #[error("dnsmasq for network {network} did not start: {detail}")]
    Start {
        /// Network uid.
        network: String,
        /// What went wrong.
        detail: String,
    },
    /// The input cannot be served.
    #[error("network {network}: {detail}")]
    Invalid {
        /// Network uid.
        network: String,
        /// What is wrong.
        detail: String,
    },
}

/// Result of DHCP operations.
pub type Result<T> = std::result::Result<T, DhcpError>;

/// What [`DhcpManager::ensure`] had to do to the dnsmasq process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsmasqAction {
    /// Already running with this configuration.
    Unchanged,
    /// Hosts or options changed: `SIGHUP` sent, same process.
    Reloaded,
    /// Was not running (first start, or it died): started.
    Started,
    /// Was running with another command line: stopped and started.
    Restarted,
}

/// The state files of one network.
#[derive(Clone, Debug)]
pub struct DhcpPaths {
    /// The network's state directory.
    pub dir: PathBuf,
}

impl DhcpPaths {
    /// PID file written by dnsmasq.
    pub fn pid(&self) -> PathBuf {
        self.dir.join("pid")
    }
    /// `--dhcp-hostsfile`.
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("host")
    }
    /// `--dhcp-optsfile`.
    pub fn opts(&self) -> PathBuf {
        self.dir.join("opts")
    }
    /// `--dhcp-leasefile`.
    pub fn leases(&self) -> PathBuf {
        self.dir.join("leases")
    }
    /// `--log-facility`.
    pub fn log(&self) -> PathBuf {
        self.dir.join("log")
    }
}

/// The DHCP subnets of `net` that dnsmasq serves (IPv4 with DHCP enabled; IPv6 is not served
/// yet), with their dnsmasq tag.
fn served_subnets(net: &DhcpNetwork) -> impl Iterator<Item = (String, &DhcpSubnet)> {
    net.subnets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.enable_dhcp && matches!(s.cidr, IpNet::V4(_)))
        .map(|(i, s)| (format!("subnet{i}"), s))
}

fn hostname_for(host: &DhcpHost) -> String {
    let cleaned: String = host
        .hostname
        .as_deref()
        .unwrap_or_default()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(63)
        .collect();
    let cleaned = cleaned.trim_matches('-').to_string();
    if cleaned.is_empty() {
        format!("host-{}", host.ip.to_string().replace(['.', ':'], "-"))
    } else {
        cleaned
    }
}

/// The `--dhcp-hostsfile` content: `mac,hostname,ip` per host of a served subnet, sorted.
pub fn render_hosts(net: &DhcpNetwork) -> String {
    let mut lines: Vec<String> = net
        .hosts
        .iter()
        .filter(|h| served_subnets(net).any(|(_, s)| s.cidr.contains(&h.ip)))
        .map(|h| {
            format!(
                "{},{},{}",
                h.mac.to_ascii_lowercase(),
                hostname_for(h),
                h.ip
            )
        })
        .collect();
    lines.sort();
    lines.dedup();
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// The classless static routes (option 121) for a subnet: the metadata address via the DHCP
/// port's address on that subnet, the subnet's host routes, then the default route via the
/// gateway (a client that gets option 121 ignores the router option, RFC 3442).
pub fn classless_routes(net: &DhcpNetwork, subnet: &DhcpSubnet) -> Vec<(IpNet, IpAddr)> {
    let mut routes = Vec::new();
    if let Some(port_ip) = net
        .port
        .ips
        .iter()
        .find(|ip| subnet.cidr.contains(&ip.addr()))
    {
        routes.push((IpNet::from(IpAddr::V4(METADATA_IP)), port_ip.addr()));
    }
    routes.extend(subnet.host_routes.iter().copied());
    let has_default = subnet.host_routes.iter().any(|(d, _)| d.prefix_len() == 0);
    if let (Some(gw), false) = (subnet.gateway, has_default) {
        let default = IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).expect("prefix 0");
        routes.push((default, gw));
    }
    routes
}

/// The `--dhcp-optsfile` content: router, DNS, MTU and classless routes per served subnet.
pub fn render_opts(net: &DhcpNetwork) -> String {
    let mut out = String::new();
    for (tag, subnet) in served_subnets(net) {
        match subnet.gateway {
            Some(gw) => writeln!(out, "tag:{tag},option:router,{gw}"),
            None => writeln!(out, "tag:{tag},option:router"),
        }
        .expect("writing to a String");
        let dns: Vec<String> = subnet.dns_servers.iter().map(|d| d.to_string()).collect();
        if dns.is_empty() {
            // An option without a value is not sent (instead of dnsmasq's own address).
            writeln!(out, "tag:{tag},option:dns-server").expect("writing to a String");
        } else {
            writeln!(out, "tag:{tag},option:dns-server,{}", dns.join(","))
                .expect("writing to a String");
        }
        writeln!(out, "tag:{tag},option:mtu,{}", net.mtu).expect("writing to a String");
        let routes: Vec<String> = classless_routes(net, subnet)
            .iter()
            .map(|(d, nh)| format!("{d},{nh}"))
            .collect();
        if !routes.is_empty() {
            let routes = routes.join(",");
            writeln!(out, "tag:{tag},option:classless-static-route,{routes}")
                .expect("writing to a String");
            // Windows asks for the pre-standard option 249 with the same content.
            writeln!(out, "tag:{tag},249,{routes}").expect("writing to a String");
        }
    }
    out
}

/// dnsmasq's arguments (without the program name) for `net` with state in `paths`.
pub fn dnsmasq_args(net: &DhcpNetwork, paths: &DhcpPaths) -> Vec<String> {
    let p = |path: PathBuf| path.display().to_string();
    let mut args = vec![
        "--no-hosts".to_string(),
        "--no-resolv".into(),
        "--conf-file=/dev/null".into(),
        "--port=0".into(),
        format!("--pid-file={}", p(paths.pid())),
        format!("--dhcp-hostsfile={}", p(paths.hosts())),
        format!("--dhcp-optsfile={}", p(paths.opts())),
        format!("--dhcp-leasefile={}", p(paths.leases())),
        format!("--log-facility={}", p(paths.log())),
        "--log-dhcp".into(),
        format!("--interface={}", net.port.ifname),
        "--bind-interfaces".into(),
        "--except-interface=lo".into(),
        "--no-ping".into(),
        "--dhcp-authoritative".into(),
        // The state directory may not be readable by `nobody` (SIGHUP re-reads the files).
        "--user=root".into(),
        "--group=root".into(),
    ];
    let mut lease_max: u128 = 0;
    for (tag, subnet) in served_subnets(net) {
        if let IpNet::V4(v4) = subnet.cidr {
            args.push(format!(
                "--dhcp-range=set:{tag},{},static,{},{LEASE_SECONDS}s",
                v4.network(),
                v4.netmask()
            ));
            lease_max += 1u128 << (32 - u32::from(v4.prefix_len()));
        }
    }
    args.push(format!("--dhcp-lease-max={}", lease_max.clamp(1, 1 << 24)));
    args
}

/// Writes `content` to `path` atomically (temp file + rename) unless it is already that;
/// returns whether it changed.
fn write_if_changed(path: &Path, content: &str) -> Result<bool> {
    let io = |source| DhcpError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(current) if current == content => return Ok(false),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(true)
}

/// The PID in `path`, if the file holds one.
fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The argv of a live (not zombie) process.
fn live_cmdline(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the parenthesised command name.
    let state = stat.rsplit_once(") ")?.1.chars().next()?;
    if state == 'Z' || state == 'X' {
        return None;
    }
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// A dnsmasq of ours: its command line names our PID file.
fn is_our_dnsmasq(cmdline: &[String], paths: &DhcpPaths) -> bool {
    let flag = format!("--pid-file={}", paths.pid().display());
    cmdline.first().is_some_and(|p| p.ends_with("dnsmasq")) && cmdline.contains(&flag)
}

/// The running dnsmasq of `paths` (PID file + `/proc` check), with its argv.
fn running(paths: &DhcpPaths) -> Option<(i32, Vec<String>)> {
    let pid = read_pid(&paths.pid())?;
    let cmdline = live_cmdline(pid)?;
    is_our_dnsmasq(&cmdline, paths).then_some((pid, cmdline))
}

fn signal(pid: i32, sig: Signal) -> std::io::Result<()> {
    let pid = Pid::from_raw(pid).ok_or_else(|| std::io::Error::other("pid 0"))?;
    kill_process(pid, sig).map_err(Into::into)
}

/// Stops our dnsmasq of `paths` if it runs: `SIGTERM`, then `SIGKILL` after a grace period.
fn stop(paths: &DhcpPaths) {
    let Some((pid, _)) = running(paths) else {
        return;
    };
    tracing::debug!(pid, "stopping dnsmasq");
    let _ = signal(pid, Signal::TERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if live_cmdline(pid).is_none() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still ours? (Re-check so a reused PID is never killed.)
    if running(paths).is_some_and(|(p, _)| p == pid) {
        let _ = signal(pid, Signal::KILL);
    }
}

/// Manages the DHCP namespaces and dnsmasq processes of this host.
pub struct DhcpManager {
    state_dir: PathBuf,
    plumbing: Box<dyn PortPlumbing>,
}

impl std::fmt::Debug for DhcpManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhcpManager")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

impl DhcpManager {
    /// A manager keeping its files under `state_dir/<network uid>/` and plugging ports with
    /// `plumbing`.
    pub fn new(state_dir: impl Into<PathBuf>, plumbing: Box<dyn PortPlumbing>) -> Self {
        Self {
            state_dir: state_dir.into(),
            plumbing,
        }
    }

    /// The state files of network `network_uid`.
    pub fn paths(&self, network_uid: &str) -> DhcpPaths {
        DhcpPaths {
            dir: self.state_dir.join(network_uid),
        }
    }

    /// The PID of the network's dnsmasq when it runs.
    pub fn pid(&self, network_uid: &str) -> Option<i32> {
        running(&self.paths(network_uid)).map(|(pid, _)| pid)
    }

    fn validate(net: &DhcpNetwork) -> Result<()> {
        let bad = |detail: String| {
            Err(DhcpError::Invalid {
                network: net.network_uid.clone(),
                detail,
            })
        };
        let uid_ok = !net.network_uid.is_empty()
            && net
                .network_uid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !uid_ok {
            return bad("the network uid must be letters, digits and '-'".into());
        }
        let name = &net.port.ifname;
        if name.is_empty() || name.len() > 15 || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return bad(format!(
                "interface name {name:?} must be 1-15 letters/digits"
            ));
        }
        if net.port.ips.is_empty() {
            return bad("the DHCP port has no address".into());
        }
        Ok(())
    }

    /// Converges network `net`: namespace, tagged internal port with the DHCP port's MAC,
    /// addresses and the metadata address, config files, and a dnsmasq that runs with them.
    #[tracing::instrument(skip(self, net), fields(network = %net.network_uid))]
    pub fn ensure(&self, net: &DhcpNetwork) -> Result<DnsmasqAction> {
        Self::validate(net)?;
        // The state directory first: it is the mark that this agent owns the namespace, so
        // a crash right after creating the namespace still leaves something to clean up.
        let paths = self.paths(&net.network_uid);
        std::fs::create_dir_all(&paths.dir).map_err(|source| DhcpError::Io {
            path: paths.dir.clone(),
            source,
        })?;
        let ns = namespace_name(&net.network_uid);
        netns::create(&ns)?;
        let replugged = self.plug(net, &ns)?;

        let hosts_changed = write_if_changed(&paths.hosts(), &render_hosts(net))?;
        let opts_changed = write_if_changed(&paths.opts(), &render_opts(net))?;
        let args = dnsmasq_args(net, &paths);

        let action = match running(&paths) {
            // A new device (first plug, or the switch recreated it) needs a fresh dnsmasq.
            Some((pid, cmdline)) if cmdline[1..] == args[..] && !replugged => {
                if hosts_changed || opts_changed {
                    signal(pid, Signal::HUP).map_err(|source| DhcpError::Io {
                        path: paths.pid(),
                        source,
                    })?;
                    DnsmasqAction::Reloaded
                } else {
                    DnsmasqAction::Unchanged
                }
            }
            Some(_) => {
                stop(&paths);
                self.start(net, &ns, &paths, &args)?;
                DnsmasqAction::Restarted
            }
            None => {
                self.start(net, &ns, &paths, &args)?;
                DnsmasqAction::Started
            }
        };
        if action != DnsmasqAction::Unchanged {
            tracing::info!(?action, "dnsmasq");
        }
        Ok(action)
    }

    /// Makes the DHCP port exist inside namespace `ns`, configured.
    /// Returns whether the device had to be moved in (it is new).
    fn plug(&self, net: &DhcpNetwork, ns: &str) -> Result<bool> {
        let ifname = &net.port.ifname;
        let port = InternalPort {
            name: ifname.clone(),
            tag: net.tag,
            external_ids: BTreeMap::from([
                ("iface-id".to_string(), net.port.uid.clone()),
                ("attached-mac".to_string(), net.port.mac.clone()),
                ("iface-status".to_string(), "active".to_string()),
                ("cirrus-network".to_string(), net.network_uid.clone()),
            ]),
        };
        // Always (cheap, idempotent): repairs a wrong tag or missing record.
        self.plumbing
            .ensure_internal(&port)
            .map_err(DhcpError::Plumbing)?;
        let mut replugged = false;
        if !netns::link_exists(Some(ns), ifname) {
            if !netns::link_exists(None, ifname) {
                // The record exists without its device (e.g. the namespace was deleted):
                // plug it again so the switch creates the device.
                self.plumbing.delete(ifname).map_err(DhcpError::Plumbing)?;
                self.plumbing
                    .ensure_internal(&port)
                    .map_err(DhcpError::Plumbing)?;
            }
            if !netns::link_exists(None, ifname) {
                return Err(DhcpError::NoDevice(ifname.clone()));
            }
            netns::move_link(ifname, ns)?;
            replugged = true;
        }
        let mut addresses = net.port.ips.clone();
        addresses.push(IpNet::from(IpAddr::V4(METADATA_IP)));
        netns::configure_link(
            ns,
            ifname,
            &LinkConfig {
                mac: Some(net.port.mac.clone()),
                mtu: Some(net.mtu),
                addresses,
            },
        )?;
        Ok(replugged)
    }

    fn start(&self, net: &DhcpNetwork, ns: &str, paths: &DhcpPaths, args: &[String]) -> Result<()> {
        let _ = std::fs::remove_file(paths.pid());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        // dnsmasq daemonizes: the command returns once the daemon is set up (or failed).
        let output = netns::command(ns, "dnsmasq", &argv)
            .output()
            .map_err(|source| DhcpError::Io {
                path: "dnsmasq".into(),
                source,
            })?;
        let fail = |detail: String| DhcpError::Start {
            network: net.network_uid.clone(),
            detail,
        };
        if !output.status.success() {
            return Err(fail(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if running(paths).is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(fail(format!(
            "no live process behind {} after 3 s",
            paths.pid().display()
        )))
    }

    /// Removes everything of network `network_uid`: dnsmasq, the port, the namespace and
    /// the state files. Idempotent.
    #[tracing::instrument(skip(self))]
    pub fn remove(&self, network_uid: &str, ifname: Option<&str>) -> Result<()> {
        let paths = self.paths(network_uid);
        stop(&paths);
        let ns = namespace_name(network_uid);
        // The port's name: given, or the one link in the namespace besides lo.
        let mut names: Vec<String> = ifname.map(str::to_string).into_iter().collect();
        if names.is_empty() && netns::exists(&ns) {
            names = ns_links(&ns)?;
        }
        for name in &names {
            self.plumbing.delete(name).map_err(DhcpError::Plumbing)?;
        }
        netns::delete(&ns)?;
        match std::fs::remove_dir_all(&paths.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DhcpError::Io {
                    path: paths.dir,
                    source,
                });
            }
        }
        Ok(())
    }

    /// Uids of the networks that have a DHCP namespace or state directory on this host.
    pub fn present(&self) -> Result<Vec<String>> {
        let mut uids: Vec<String> = netns::list()?
            .into_iter()
            .filter_map(|n| n.strip_prefix(NAMESPACE_PREFIX).map(str::to_string))
            .collect();
        if let Ok(entries) = std::fs::read_dir(&self.state_dir) {
            uids.extend(
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok()),
            );
        }
        uids.sort();
        uids.dedup();
        Ok(uids)
    }
}

/// Links in namespace `ns` other than loopback.
fn ns_links(ns: &str) -> Result<Vec<String>> {
    let output = netns::exec(ns, &["ip", "-j", "link", "show"])?;
    let value: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| NetnsError::Parse {
            command: "ip -j link show".into(),
            detail: e.to_string(),
        })?;
    Ok(value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| *n != "lo")
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests;
