//! `cirrus-bench` (run as `cirrus bench …`, which forwards here): measurements reported as ratios against a baseline measured in the same
//! run on the same machine — never as pass/fail timings.
//!
//! - `store`: the embedded store against a real etcd (write throughput with concurrent
//!   clients, watch delivery latency), both on disk with fsync.
//! - `api`: a `cirrus up` process holding N objects: start-up time, GET of one object and a
//!   full LIST through the API, each against the same read straight from the store (the
//!   baseline: what the API adds), and the process's resident memory.
//! - `servers`: a hollow-node scale run: `cirrus up` (store, API, controllers) in a child
//!   process and N node agents with the fake hypervisor in this one; M servers created
//!   concurrently and watched until ACTIVE (throughput, create→ACTIVE latency, placements/s,
//!   store writes per server, writes of idle servers on resync).
//! - `overhead`: create→domain running through Cirrus on the real libvirt driver, against the
//!   same qemu-img/libvirt steps done directly (the baseline), guest boot excluded.
//! - `ipam`: ports created concurrently on one /22 subnet with the network controller
//!   running: allocations/s against raw creates/s of the same API (see `ipam`).
//! - `network`: port plug and security-group rule change on the real Open vSwitch, against
//!   `ovs-vsctl add-port` and a plain ping (see `network`).
//! - `volumes`: volume create → available per storage backend against the raw
//!   `qemu-img create` / `lvcreate` (see `volumes`).
//!
//! A binary of its own so that no benchmark or test support ships in the `cirrus` binary or
//! in the production libraries (like omicron's dev-tools): `cirrus bench` execs this file
//! from the `cirrus` binary's directory.

mod api;
mod cloud;
mod ipam;
mod network;
mod overhead;
mod server_watch;
mod servers;
mod store;
mod store_measure;
mod volumes;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Arguments of `cirrus bench` (and of `cirrus-bench`).
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "cirrus bench",
    about = "Measure Cirrus against a baseline of the same run"
)]
struct BenchArgs {
    /// What to measure: `store`, `api`, `servers`, `overhead`, `ipam`, `network` or `volumes`.
    #[arg(value_parser = ["store", "api", "servers", "overhead", "ipam", "network", "volumes"])]
    target: String,
    /// store: concurrent writers.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// store: seconds of writing per backend.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// store: watch latency samples; api: GET samples; network: rule changes (at most 50);
    /// volumes: volumes per backend (at most 100).
    #[arg(long, default_value_t = 500)]
    samples: usize,
    /// api: objects to create before measuring.
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
    /// servers: hollow nodes (node agents with the fake hypervisor).
    #[arg(long, default_value_t = 50)]
    nodes: usize,
    /// servers: servers to create (default 500); overhead: servers per side (default 5).
    #[arg(long)]
    servers: Option<usize>,
    /// volumes: also measure this LVM volume group.
    #[arg(long)]
    lvm_vg: Option<String>,
    /// network: taps plugged each way.
    #[arg(long, default_value_t = 100)]
    plugs: usize,
    /// ipam: ports to create on the /22 subnet (at most 1021).
    #[arg(long, default_value_t = 1000)]
    ports: usize,
    /// servers, ipam: concurrent creating clients.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// servers: the hollow agents' resync period in seconds (the idle window waits one).
    #[arg(long, default_value_t = 5)]
    resync_secs: u64,
    /// overhead: the test guest built by hack/build-guest.sh.
    #[arg(long, default_value = "target/guest")]
    guest_dir: PathBuf,
}

/// Runs the benchmark and prints its report.
///
/// SIGINT/SIGTERM end the run early through the same path as an error, so the child
/// process, the domains and the temporary files made so far are cleaned up by their guards.
async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let bench = async {
        match args.target.as_str() {
            "store" => store::bench_store(&args).await,
            "servers" => servers::bench_servers(&args).await,
            "overhead" => overhead::bench_overhead(&args).await,
            "ipam" => ipam::bench_ipam(args.ports, args.writers).await,
            "volumes" => volumes::bench_volumes(args.samples.min(100), args.lvm_vg.clone()).await,
            "network" => network::bench_network(args.plugs, args.samples.min(50), 200).await,
            _ => api::bench_api(&args).await,
        }
    };
    tokio::select! {
        result = bench => result,
        () = shutdown_signal() => anyhow::bail!("interrupted; cleaned up"),
    }
}

fn main() -> ExitCode {
    let args = BenchArgs::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `d` in milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prints one report row: `name`, the two latencies in ms (the first `width` wide, both
/// with `decimals`) and their `ratio`.
fn latency_row(
    name: &str,
    (a, b): (Duration, Duration),
    ratio: f64,
    (width, decimals): (usize, usize),
) {
    println!(
        "{name:<34} {:>width$.decimals$}ms {:>14.decimals$}ms {ratio:>8.2}",
        ms(a),
        ms(b)
    );
}

/// How a report names a target that was or was not met.
fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// The mean of `v` (zero when empty).
fn mean(v: &[Duration]) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.iter().sum::<Duration>() / u32::try_from(v.len()).unwrap_or(u32::MAX)
}
