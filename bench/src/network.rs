//! `cirrus bench network`: the data-path timings of host networking on this machine's real
//! Open vSwitch, each next to a baseline measured in the same run.
//!
//! - Port plug: the node agent's `Switch::port_ensure` of a fresh tap until OVS has attached
//!   it (an ofport), against the same plug done with `ovs-vsctl add-port` (what an operator
//!   would type). Target: p99 <= 200 ms.
//! - Security-group rule change → data path: from replacing the flow table with a new ICMP
//!   rule to the first answered ping between two namespaces, on a small table and on one the
//!   size of a busy host's; the baseline is the same ping with the rule already in place.
//!   Target: <= 1 s.
//!
//! Needs root and a running Open vSwitch (`hack/start-ovs.sh`); everything it makes (a
//! bridge, taps, namespaces) is removed again, also on failure.

use std::time::{Duration, Instant};

use anyhow::Context;
use cirrus_node_agent::net::firewall::lab::measure_rule_change_with_baseline;
use cirrus_node_agent::net::switch::Switch;
use cirrus_node_agent::net::switch::bench::bench_port_plug;
use cirrus_node_agent::net::switch::ovs::OvsSwitch;

/// Deletes the benchmark bridge when dropped.
struct BridgeGuard<'a> {
    switch: &'a OvsSwitch,
    name: String,
}

impl Drop for BridgeGuard<'_> {
    fn drop(&mut self) {
        let _ = self.switch.bridge_delete(&self.name);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the network benchmark: `plugs` taps plugged each way, `samples` rule changes on a
/// small table and on one with `extra_ports` more ports.
///
/// # Errors
/// Open vSwitch unreachable, or a step of the lab failed.
pub async fn bench_network(plugs: usize, samples: usize, extra_ports: usize) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run(plugs, samples, extra_ports))
        .await
        .context("benchmark task")?
}

fn run(plugs: usize, samples: usize, extra_ports: usize) -> anyhow::Result<()> {
    let switch = OvsSwitch::connect("unix:/var/run/openvswitch/db.sock")
        .context("Open vSwitch is not reachable (hack/start-ovs.sh)")?;
    let bridge = format!("cbench{}", std::process::id() % 100_000);
    let info = switch
        .bridge_ensure(&bridge)
        .context("creating the bench bridge")?;
    let _guard = BridgeGuard {
        switch: &switch,
        name: bridge.clone(),
    };
    println!(
        "network benchmark on Open vSwitch ({} datapath)",
        info.datapath_type
    );
    let plug = bench_port_plug(&switch, &bridge, "cbp", plugs)
        .map_err(|e| anyhow::anyhow!("port plug bench: {e}"))?;
    println!(
        "port plug ({} taps): port_ensure p50 {:.1} ms, p99 {:.1} ms | ovs-vsctl add-port p50 {:.1} ms, p99 {:.1} ms | ratio p99 {:.2}x (target p99 <= 200 ms: {})",
        plug.n,
        ms(plug.ensure_p50),
        ms(plug.ensure_p99),
        ms(plug.vsctl_p50),
        ms(plug.vsctl_p99),
        plug.ensure_p99.as_secs_f64() / plug.vsctl_p99.as_secs_f64().max(1e-9),
        if plug.ensure_p99 <= Duration::from_millis(200) {
            "met"
        } else {
            "MISSED"
        },
    );
    for extra in [0, extra_ports] {
        let started = Instant::now();
        let m = measure_rule_change_with_baseline(samples, extra)
            .map_err(|e| anyhow::anyhow!("rule change: {e}"))?;
        let (mut times, mut pings) = (m.changes, m.pings);
        times.sort();
        pings.sort();
        let p50 = percentile(&times, 0.5);
        let max = times.last().copied().unwrap_or_default();
        let ping50 = percentile(&pings, 0.5);
        println!(
            "rule change -> data path ({} flows, {} samples): p50 {:.1} ms, max {:.1} ms | ping with the rule in place p50 {:.1} ms | ratio p50 {:.1}x (target <= 1 s: {}) [{:.1} s]",
            m.flows,
            times.len(),
            ms(p50),
            ms(max),
            ms(ping50),
            p50.as_secs_f64() / ping50.as_secs_f64().max(1e-9),
            if max <= Duration::from_secs(1) {
                "met"
            } else {
                "MISSED"
            },
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
