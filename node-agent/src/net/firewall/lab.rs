//! A throwaway bridge with network namespaces standing in for guests, to prove the rendered
//! flows on the real Open vSwitch (`real_firewall` tests) and to measure how fast a rule
//! change reaches the data path ([`measure_rule_change`], for `cirrus bench`).
//!
//! Drives OVS with `ovs-vsctl`/`ovs-ofctl` and namespaces with `ip`, pings with
//! `busybox ping`. Everything it creates (bridge, internal ports, namespaces) carries a
//! name unique to the process and is removed on drop.
//!
//! Compiled only for tests and with the `testing` feature: both this crate's `real_firewall`
//! tests and `cirrus-bench` use it, and it drives the crate's own flow renderer, so it stays
//! here, out of production builds.

use std::net::IpAddr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cirrus_crds::kinds::securitygroup::{Direction, Ethertype};
use ipnet::Ipv4Net;

use super::render::render;
use super::types::{FirewallPort, Mac, Remote, ResolvedRule};

/// A command of the lab failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command could not be started.
    #[error("running {cmd}: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A command exited with an error.
    #[error("{cmd} failed: {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Its standard error.
        stderr: String,
    },
    /// Something the lab expected did not happen.
    #[error("{0}")]
    Unexpected(String),
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs a command, failing on a non-zero exit.
fn run(args: &[&str]) -> Result<Output, LabError> {
    let out = output(args)?;
    if !out.status.success() {
        return Err(LabError::Failed {
            cmd: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// Runs a command, returning its output whatever the exit status.
fn output(args: &[&str]) -> Result<Output, LabError> {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            cmd: args.join(" "),
            source,
        })
}

/// A namespace with an OVS internal port standing in for a guest NIC.
#[derive(Clone, Debug)]
pub struct LabGuest {
    /// Name of the OVS port and of the interface inside the namespace.
    pub name: String,
    /// The namespace.
    pub netns: String,
    /// OpenFlow port number.
    pub ofport: u32,
    /// Local VLAN tag (network).
    pub tag: u16,
    /// MAC configured on the interface.
    pub mac: Mac,
    /// Address configured on the interface.
    pub ip: Ipv4Net,
}

impl LabGuest {
    /// The guest's address.
    pub fn addr(&self) -> IpAddr {
        IpAddr::V4(self.ip.addr())
    }

    /// A firewall port for this guest with these rules (port security on).
    pub fn firewall_port(&self, rules: Vec<ResolvedRule>) -> FirewallPort {
        FirewallPort {
            ofport: self.ofport,
            tag: self.tag,
            mac: self.mac,
            fixed_ips: vec![self.addr()],
            allowed_address_pairs: Vec::new(),
            port_security: true,
            rules,
        }
    }
}

/// A test bridge (`datapath_type=netdev`, `fail_mode=secure`) and its guests.
pub struct Lab {
    bridge: String,
    prefix: String,
    guests: Vec<LabGuest>,
}

impl Lab {
    /// Whether `ovs-vsctl show` answers.
    pub fn ovs_available() -> bool {
        output(&["ovs-vsctl", "--timeout=3", "show"]).is_ok_and(|o| o.status.success())
    }

    /// Creates a new, empty bridge in secure fail mode (nothing passes without flows).
    pub fn new() -> Result<Self, LabError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("fw{:x}{n:x}", std::process::id());
        let bridge = format!("{prefix}br");
        let lab = Self {
            bridge: bridge.clone(),
            prefix,
            guests: Vec::new(),
        };
        run(&[
            "ovs-vsctl",
            "--may-exist",
            "add-br",
            &bridge,
            "--",
            "set",
            "bridge",
            &bridge,
            "datapath_type=netdev",
            "fail_mode=secure",
            "protocols=OpenFlow10,OpenFlow13",
        ])?;
        run(&["ip", "link", "set", &bridge, "up"])?;
        Ok(lab)
    }

    /// The bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Adds a guest: an internal port with VLAN `tag`, moved into its own namespace with
    /// this MAC and address.
    pub fn add_guest(&mut self, tag: u16, mac: Mac, ip: Ipv4Net) -> Result<LabGuest, LabError> {
        let i = self.guests.len();
        let name = format!("{}g{i}", self.prefix);
        let netns = format!("cirrus-{name}");
        run(&["ip", "netns", "add", &netns])?;
        // Registered before anything else can fail, so Drop removes it.
        self.guests.push(LabGuest {
            name: name.clone(),
            netns: netns.clone(),
            ofport: 0,
            tag,
            mac,
            ip,
        });
        run(&[
            "ovs-vsctl",
            "add-port",
            &self.bridge,
            &name,
            &format!("tag={tag}"),
            "--",
            "set",
            "interface",
            &name,
            "type=internal",
        ])?;
        let ofport: u32 = String::from_utf8_lossy(
            &run(&["ovs-vsctl", "get", "interface", &name, "ofport"])?.stdout,
        )
        .trim()
        .parse()
        .map_err(|_| LabError::Unexpected(format!("no ofport for {name}")))?;
        run(&["ip", "link", "set", &name, "netns", &netns])?;
        let mac_s = mac.to_string();
        let ip_s = ip.to_string();
        for cmd in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "link", "set", &name, "address", &mac_s],
            vec!["ip", "addr", "add", &ip_s, "dev", &name],
            vec!["ip", "link", "set", &name, "up"],
        ] {
            self.netns_run(&netns, &cmd)?;
        }
        let guest = self.guests.last_mut().expect("just pushed");
        guest.ofport = ofport;
        Ok(guest.clone())
    }

    /// Runs a command inside a namespace, failing on a non-zero exit.
    pub fn netns_run(&self, netns: &str, cmd: &[&str]) -> Result<Output, LabError> {
        let mut args = vec!["ip", "netns", "exec", netns];
        args.extend_from_slice(cmd);
        run(&args)
    }

    /// A command to run inside the guest's namespace (for background processes).
    pub fn command(&self, guest: &LabGuest, cmd: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &guest.netns]).args(cmd);
        c
    }

    /// Makes the bridge's flow table exactly `flows` (atomically, OpenFlow 1.3 bundle).
    pub fn install(&self, flows: &[String]) -> Result<(), LabError> {
        let mut file = tempfile::NamedTempFile::new().map_err(|source| LabError::Spawn {
            cmd: "tempfile".into(),
            source,
        })?;
        let mut text = flows.join("\n");
        text.push('\n');
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|source| {
            LabError::Spawn {
                cmd: "write flows".into(),
                source,
            }
        })?;
        let path = file.path().to_string_lossy().to_string();
        run(&[
            "ovs-ofctl",
            "-O",
            "OpenFlow13",
            "--bundle",
            "replace-flows",
            &self.bridge,
            &path,
        ])?;
        Ok(())
    }

    /// The bridge's flows with their counters (for failure messages).
    pub fn dump_flows(&self) -> String {
        output(&["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", &self.bridge])
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    /// Packets counted by the flow of `table` whose dump reads `priority=…,<matches>`
    /// exactly as `ovs-ofctl` prints it (e.g. `priority=90,ip,reg7=0x3`); 0 when there is no
    /// such flow.
    pub fn flow_packets(&self, table: u8, flow: &str) -> u64 {
        let dump = self.dump_flows();
        let table = format!("table={table},");
        let flow = format!(" {flow} actions=");
        dump.lines()
            .filter(|l| l.contains(&table) && l.contains(&flow))
            .filter_map(|l| {
                let n = l.split("n_packets=").nth(1)?;
                n.split(',').next()?.parse::<u64>().ok()
            })
            .sum()
    }

    /// One ping from the guest to `to`, waiting at most a second for the answer.
    pub fn ping(&self, from: &LabGuest, to: IpAddr) -> bool {
        let to = to.to_string();
        let mut args = vec!["ip", "netns", "exec", &from.netns];
        args.extend(["busybox", "ping", "-c", "1", "-W", "1", &to]);
        output(&args).is_ok_and(|o| o.status.success())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for g in &self.guests {
            let _ = output(&["ip", "netns", "del", &g.netns]);
        }
        let _ = output(&["ovs-vsctl", "--if-exists", "del-br", &self.bridge]);
    }
}

/// Measures how long a security-group rule change takes to reach the data path: two guests
/// on one network, B allowing no ingress; per sample, install the flows without the rule
/// (and check ping A→B fails), then install them with an ICMP ingress rule on B and ping
/// until the first answer. `extra_ports` phantom ports (on other networks, each with a
/// remote-group-sized ingress rule) make the flow table the size of a busy host's.
/// Returns one duration per sample (from the start of `replace-flows` to the first answered
/// ping, including the ping's round trip) and the number of flows installed.
pub fn measure_rule_change(
    samples: usize,
    extra_ports: usize,
) -> Result<(Vec<Duration>, usize), LabError> {
    measure_rule_change_with_baseline(samples, extra_ports).map(|m| (m.changes, m.flows))
}

/// What [`measure_rule_change_with_baseline`] measured.
#[derive(Debug, Clone)]
pub struct RuleChangeTimings {
    /// Rule change → first answered ping, per sample.
    pub changes: Vec<Duration>,
    /// The baseline: one answered ping with the rule already in place, per sample (the part
    /// of a change sample that is the ping itself).
    pub pings: Vec<Duration>,
    /// Flows in the table with the rule.
    pub flows: usize,
}

/// [`measure_rule_change`], also timing one ping with the rule already in place after each
/// sample as the baseline.
///
/// # Errors
/// As [`measure_rule_change`].
pub fn measure_rule_change_with_baseline(
    samples: usize,
    extra_ports: usize,
) -> Result<RuleChangeTimings, LabError> {
    let mut lab = Lab::new()?;
    let a = lab.add_guest(
        1,
        "fa:16:3e:00:0a:01".parse().expect("mac"),
        "10.77.0.1/24".parse().expect("net"),
    )?;
    let b = lab.add_guest(
        1,
        "fa:16:3e:00:0a:02".parse().expect("mac"),
        "10.77.0.2/24".parse().expect("net"),
    )?;
    let egress = ResolvedRule::allow_all(Direction::Egress, Ethertype::IPv4);
    let icmp_in = ResolvedRule {
        direction: Direction::Ingress,
        ethertype: Ethertype::IPv4,
        protocol: Some(1),
        port_range_min: None,
        port_range_max: None,
        remote: Remote::Cidrs(vec![ipnet::IpNet::from(a.addr())]),
    };
    let phantoms: Vec<FirewallPort> = (0..extra_ports)
        .map(|i| {
            let i = i as u32;
            let [_, _, hi, lo] = i.to_be_bytes();
            FirewallPort {
                ofport: 1000 + i,
                tag: 100 + (i % 50) as u16,
                mac: Mac([0xfa, 0x16, 0x3e, 0x01, hi, lo]),
                fixed_ips: vec![IpAddr::from([10, 78, hi, lo])],
                allowed_address_pairs: Vec::new(),
                port_security: true,
                rules: vec![
                    egress.clone(),
                    ResolvedRule {
                        remote: Remote::Cidrs(
                            (1..=20u8)
                                .map(|k| ipnet::IpNet::from(IpAddr::from([10, 78, 0, k])))
                                .collect(),
                        ),
                        ..ResolvedRule::allow_all(Direction::Ingress, Ethertype::IPv4)
                    },
                ],
            }
        })
        .collect();
    let table = |b_rules: Vec<ResolvedRule>| {
        let mut ports = phantoms.clone();
        ports.push(a.firewall_port(vec![egress.clone()]));
        ports.push(b.firewall_port(b_rules));
        render(&ports, &[])
    };
    let without = table(vec![egress.clone()]);
    let with = table(vec![egress.clone(), icmp_in]);
    let mut out = Vec::with_capacity(samples);
    let mut pings = Vec::with_capacity(samples);
    for _ in 0..samples {
        lab.install(&without)?;
        // The datapath may serve a cached "allow" for a moment after the table changed
        // (until vswitchd revalidates it): wait for the rule's absence to take effect.
        if (0..5).all(|_| lab.ping(&a, b.addr())) {
            return Err(LabError::Unexpected(
                "ping passed without the ICMP rule".into(),
            ));
        }
        let start = Instant::now();
        lab.install(&with)?;
        loop {
            if lab.ping(&a, b.addr()) {
                out.push(start.elapsed());
                let ping = Instant::now();
                if lab.ping(&a, b.addr()) {
                    pings.push(ping.elapsed());
                }
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(LabError::Unexpected(format!(
                    "no ping 10 s after the rule change\n{}",
                    lab.dump_flows()
                )));
            }
        }
    }
    Ok(RuleChangeTimings {
        changes: out,
        pings,
        flows: with.len(),
    })
}
