//! Port plug timings for `cirrus bench` (issue 4 target: port plug, OVS + tap, p99 ≤ 200 ms).
//!
//! [`bench_port_plug`] creates `n` tap devices (`ip tuntap add … mode tap`), then times
//! [`Switch::port_ensure`] of each as a System port — from the call until vswitchd has
//! attached the tap (ofport assigned). As a baseline it plugs `n` other taps with `ovs-vsctl
//! add-port` (which itself waits for vswitchd to reconfigure). Everything it created is
//! removed, also on failure.
//!
//! Compiled only for tests and with the `testing` feature: `cirrus-bench` reports it and the
//! real switch tests run it, so it stays next to the switch, out of production builds.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{PortKind, PortPlug, Switch};

/// The measured latencies of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct PlugTimings {
    /// How many plugs of each kind were timed.
    pub n: usize,
    /// `port_ensure` until attached: median.
    pub ensure_p50: Duration,
    /// `port_ensure` until attached: 99th percentile.
    pub ensure_p99: Duration,
    /// `ovs-vsctl add-port` baseline: median.
    pub vsctl_p50: Duration,
    /// `ovs-vsctl add-port` baseline: 99th percentile.
    pub vsctl_p99: Duration,
}

/// Nearest-rank percentile of `d` (sorted in place); zero when empty.
pub fn percentile(d: &mut [Duration], p: f64) -> Duration {
    if d.is_empty() {
        return Duration::ZERO;
    }
    d.sort();
    let rank = ((p / 100.0) * d.len() as f64).ceil() as usize;
    d[rank.clamp(1, d.len()) - 1]
}

/// Deletes the taps (and any port left on them) when dropped.
struct Taps {
    bridge: String,
    names: Vec<String>,
}

impl Drop for Taps {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ovs-vsctl")
                .args(["--if-exists", "del-port", &self.bridge, n])
                .output();
            let _ = Command::new("ip").args(["link", "del", n]).output();
        }
    }
}

fn sh(prog: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Plugs `n` taps through `switch` and `n` through `ovs-vsctl` into `bridge` (which must
/// exist), timing each; taps are named `<prefix>s<i>` / `<prefix>v<i>` (keep the prefix ≤ 9
/// bytes so names fit 15). Needs root and a running OVS.
pub fn bench_port_plug(
    switch: &dyn Switch,
    bridge: &str,
    prefix: &str,
    n: usize,
) -> Result<PlugTimings, String> {
    let mut taps = Taps {
        bridge: bridge.to_owned(),
        names: Vec::new(),
    };
    let mut make = |kind: char, i: usize| -> Result<String, String> {
        let name = format!("{prefix}{kind}{i}");
        sh("ip", &["tuntap", "add", "dev", &name, "mode", "tap"])?;
        taps.names.push(name.clone());
        sh("ip", &["link", "set", &name, "up"])?;
        Ok(name)
    };
    let mut ours = Vec::with_capacity(n);
    let mut base = Vec::with_capacity(n);
    let (mut s_names, mut v_names) = (Vec::new(), Vec::new());
    for i in 0..n {
        s_names.push(make('s', i)?);
        v_names.push(make('v', i)?);
    }
    for (s, v) in s_names.iter().zip(&v_names) {
        let plug = PortPlug {
            name: s.clone(),
            kind: PortKind::System,
            tag: Some(1),
            external_ids: BTreeMap::from([("iface-id".to_owned(), s.clone())]),
        };
        let t = Instant::now();
        let p = switch
            .port_ensure(bridge, &plug)
            .map_err(|e| e.to_string())?;
        ours.push(t.elapsed());
        if p.ofport.is_none() {
            return Err(format!("{s} not attached: {:?}", p.error));
        }
        let t = Instant::now();
        sh(
            "ovs-vsctl",
            &[
                "add-port",
                bridge,
                v,
                "tag=1",
                "--",
                "set",
                "Interface",
                v,
                &format!("external_ids:iface-id={v}"),
            ],
        )?;
        base.push(t.elapsed());
    }
    let timings = PlugTimings {
        n,
        ensure_p50: percentile(&mut ours, 50.0),
        ensure_p99: percentile(&mut ours, 99.0),
        vsctl_p50: percentile(&mut base, 50.0),
        vsctl_p99: percentile(&mut base, 99.0),
    };
    for s in &s_names {
        let _ = switch.port_delete(bridge, s);
    }
    drop(taps);
    Ok(timings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut d: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut d, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&mut d, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&mut [], 99.0), Duration::ZERO);
        assert_eq!(
            percentile(&mut [Duration::from_millis(7)], 99.0),
            Duration::from_millis(7)
        );
    }
}
