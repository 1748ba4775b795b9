//! `cirrus bench servers`: a hollow-node scale run: `cirrus up` (store, API, controllers) in
//! a child process and N node agents with the fake hypervisor in this one; M servers created
//! concurrently and watched until ACTIVE (throughput, create→ACTIVE latency, placements/s,
//! store writes per server, writes of idle servers on resync).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cirrus_client::{Api, Client};
use cirrus_crds::kinds::image::{ContainerFormat, DiskFormat};
use cirrus_crds::{ImageSpec, Server, ServerSpec};
use cirrus_node_agent::hypervisor::fake::FakeHypervisor;
use cirrus_node_agent::hypervisor::{HostInfo, Hypervisor, HypervisorOp};
use cirrus_test_utils::meta_in;
use tokio::sync::watch;

use crate::cloud::{
    BENCH_PROJECT, UpProcess, create_image, create_project_and_flavor, qemu_img, servers_revision,
    wait_nodes_ready,
};
use crate::server_watch::ServerWatch;
use crate::store_measure::latency_stats;
use crate::{BenchArgs, ms, verdict};

/// The flavor of the scale run's servers (m1.tiny).
const TINY_FLAVOR: &str = "bench.tiny";
/// The image of the scale run's servers: an empty 64 MiB qcow2.
const TINY_IMAGE: &str = "tiny";

/// Node agents with the fake hypervisor, running in this process ("hollow" nodes).
struct HollowNodes {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), cirrus_node_agent::AgentError>>>,
    drivers: Vec<Arc<FakeHypervisor>>,
}

impl Drop for HollowNodes {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl HollowNodes {
    /// The name of hollow node `i`.
    fn name(i: usize) -> String {
        format!("hollow-{i:03}")
    }

    /// Starts one agent per entry of `logins` (node `i` acts as `logins[i]`, its node's
    /// user), named [`HollowNodes::name`], against `api_url`, each with its state under
    /// `state_root/<i>`, a fake host big enough for its share of `servers` m1.tiny servers
    /// (twice over), and servers resynced every `resync`.
    fn start(
        logins: Vec<Arc<dyn cirrus_client::auth::TokenSource>>,
        servers: usize,
        api_url: &str,
        state_root: &Path,
        resync: Duration,
    ) -> Self {
        let nodes = logins.len().max(1);
        let per_node = u64::try_from(servers.div_ceil(nodes)).unwrap_or(u64::MAX);
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::with_capacity(nodes);
        let mut drivers = Vec::with_capacity(nodes);
        for (i, login) in logins.into_iter().enumerate() {
            let name = Self::name(i);
            let driver = Arc::new(
                FakeHypervisor::with_host(hollow_host(&name, per_node)).simulate_console(false),
            );
            let dyn_driver: Arc<dyn Hypervisor> = driver.clone();
            let mut config = cirrus_node_agent::AgentConfig::new(
                name,
                api_url,
                state_root.join(i.to_string()),
                dyn_driver,
            );
            config.servers.resync = resync;
            config.auth = Some(login);
            let mut rx = stop_rx.clone();
            let shutdown = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            tasks.push(tokio::spawn(cirrus_node_agent::agent::run_with_handle(
                config,
                shutdown,
                |_| {},
            )));
            drivers.push(driver);
        }
        Self {
            stop,
            tasks,
            drivers,
        }
    }

    /// `domain_state` calls so far across all nodes: every server reconcile reads its domain's
    /// state, so a difference over a window shows that reconciles (the resync) did run.
    fn reconciles(&self) -> u64 {
        self.drivers
            .iter()
            .map(|d| d.calls(HypervisorOp::DomainState))
            .sum()
    }

    /// Stops every agent and waits (briefly) for them to finish.
    async fn stop(&mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// A fake host for `per_node` m1.tiny servers (1 vCPU, 512 MiB), with room to spare.
fn hollow_host(name: &str, per_node: u64) -> HostInfo {
    HostInfo {
        hostname: name.to_owned(),
        vcpus: u32::try_from(per_node.max(8)).unwrap_or(u32::MAX),
        memory_mib: (per_node * 2 * 512).max(16 * 1024),
        hypervisor_type: "fake".into(),
        hypervisor_version: "1.0.0".into(),
        kvm_usable: false,
        kvm_detail: "hollow node (fake hypervisor)".into(),
    }
}

/// What the scale run saw of one server.
#[derive(Debug, Default, Clone, Copy)]
struct ServerTrace {
    /// The create's acknowledgement (201) arrived.
    created: Option<Instant>,
    /// The first event with `spec.nodeName` set.
    bound: Option<Instant>,
    /// The first event with phase ACTIVE.
    active: Option<Instant>,
    /// Store writes up to and including ACTIVE: the create (ADDED) and every MODIFIED.
    writes: u32,
}

/// The outcome of creating the servers and watching them converge.
struct ScaleRun {
    started: Instant,
    /// When the last server turned ACTIVE (or the wait gave up).
    finished: Instant,
    traces: std::collections::HashMap<String, ServerTrace>,
}

impl ScaleRun {
    fn active(&self) -> usize {
        self.traces.values().filter(|t| t.active.is_some()).count()
    }

    /// Latencies `to(trace) - created` of every server that has both.
    fn latencies(&self, to: impl Fn(&ServerTrace) -> Option<Instant>) -> Vec<Duration> {
        self.traces
            .values()
            .filter_map(|t| Some(to(t)?.saturating_duration_since(t.created?)))
            .collect()
    }

    /// The last time `at(trace)` over every server.
    fn last(&self, at: impl Fn(&ServerTrace) -> Option<Instant>) -> Option<Instant> {
        self.traces.values().filter_map(at).max()
    }

    /// The first time `at(trace)` over every server.
    fn first(&self, at: impl Fn(&ServerTrace) -> Option<Instant>) -> Option<Instant> {
        self.traces.values().filter_map(at).min()
    }
}

/// Runs the scale run and prints its report.
pub(crate) async fn bench_servers(args: &BenchArgs) -> anyhow::Result<()> {
    let servers = args.servers.unwrap_or(500).max(1);
    let nodes = args.nodes.max(1);
    let resync = Duration::from_secs(args.resync_secs.max(1));
    let (up, _) = UpProcess::start("cirrus-bench-servers", &["--node-agent", "none"]).await?;
    let client = up.client();
    let work = tempfile::Builder::new()
        .prefix("cirrus-bench-hollow")
        .tempdir()?;
    create_project_and_flavor(&client, TINY_FLAVOR, 1, 512, 1).await?;
    let image = work.path().join("tiny.qcow2");
    qemu_img(&[
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        image.as_os_str(),
        "64M".as_ref(),
    ])
    .await?;
    let spec = ImageSpec {
        disk_format: DiskFormat::Qcow2,
        container_format: ContainerFormat::Bare,
        ..ImageSpec::default()
    };
    create_image(&client, TINY_IMAGE, spec, &image).await?;

    println!(
        "servers benchmark: {servers} servers (1 vCPU, 512 MiB, 1 GiB) on {nodes} hollow nodes \
         (fake hypervisor, resync {} s), {} creating clients; store, API and controllers in a \
         `cirrus up` child process",
        resync.as_secs(),
        args.writers.max(1)
    );
    let mut logins = Vec::with_capacity(nodes);
    for i in 0..nodes {
        logins.push(up.node_login(&HollowNodes::name(i)).await?);
    }
    let mut hollow = HollowNodes::start(
        logins,
        servers,
        &up.base,
        &work.path().join("nodes"),
        resync,
    );
    let t = Instant::now();
    wait_nodes_ready(&client, nodes, Duration::from_secs(120)).await?;
    println!(
        "{nodes} hollow nodes Ready in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let revision = servers_revision(&client).await?;
    let mut watch = ServerWatch::start(&client, &revision);
    let run = create_and_converge(&client, &mut watch, servers, args.writers.max(1)).await?;
    let (idle_events, idle_reconciles) = if run.active() == servers {
        idle_window(&mut watch, &hollow, resync + Duration::from_secs(2)).await?
    } else {
        (usize::MAX, 0)
    };
    report_servers(&run, servers, nodes, resync, idle_events, idle_reconciles);
    hollow.stop().await;
    Ok(())
}

/// Creates `count` servers from `writers` concurrent clients while following `watch` until
/// every one is ACTIVE (or 5 minutes passed).
async fn create_and_converge(
    client: &Client,
    watch: &mut ServerWatch,
    count: usize,
    writers: usize,
) -> anyhow::Result<ScaleRun> {
    let started = Instant::now();
    let mut creators = tokio::spawn(create_servers(client.clone(), count, writers));
    let mut acks = None;
    let mut traces = std::collections::HashMap::<String, ServerTrace>::with_capacity(count);
    let mut active = 0;
    let deadline = started + Duration::from_secs(300);
    while active < count {
        tokio::select! {
            done = &mut creators, if acks.is_none() => {
                acks = Some(done.context("the creating clients panicked")??);
            }
            event = watch.next_until(deadline) => {
                let Some(event) = event? else { break };
                let trace = traces.entry(event.name.clone()).or_default();
                if trace.active.is_some() {
                    continue;
                }
                trace.writes += u32::from(event.is_write());
                if event.bound && trace.bound.is_none() {
                    trace.bound = Some(event.at);
                }
                if event.is_active() {
                    trace.active = Some(event.at);
                    active += 1;
                }
            }
        }
    }
    let finished = Instant::now();
    let acks = match acks {
        Some(acks) => acks,
        None => creators.await.context("the creating clients panicked")??,
    };
    for (name, at) in acks {
        traces.entry(name).or_default().created = Some(at);
    }
    Ok(ScaleRun {
        started,
        finished,
        traces,
    })
}

/// Creates servers `s-0000` … from `writers` concurrent clients; returns when each create
/// was acknowledged.
async fn create_servers(
    client: Client,
    count: usize,
    writers: usize,
) -> anyhow::Result<Vec<(String, Instant)>> {
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let servers = Api::<Server>::in_project(client.clone(), BENCH_PROJECT);
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in (w..count).step_by(writers) {
                let name = format!("s-{i:04}");
                let spec = ServerSpec {
                    flavor: TINY_FLAVOR.into(),
                    image: Some(TINY_IMAGE.into()),
                    ..ServerSpec::default()
                };
                servers
                    .create(&Server::new(meta_in(BENCH_PROJECT, &name), spec))
                    .await
                    .with_context(|| format!("creating server {name}"))?;
                acks.push((name, Instant::now()));
            }
            Ok::<_, anyhow::Error>(acks)
        }));
    }
    let mut all = Vec::with_capacity(count);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// Counts server events during `window` once everything converged (a resync of idle
/// servers should write nothing), and the reconciles the hollow nodes ran meanwhile.
async fn idle_window(
    watch: &mut ServerWatch,
    hollow: &HollowNodes,
    window: Duration,
) -> anyhow::Result<(usize, u64)> {
    let reconciles = hollow.reconciles();
    let deadline = Instant::now() + window;
    let mut events = 0;
    while watch.next_until(deadline).await?.is_some() {
        events += 1;
    }
    Ok((events, hollow.reconciles() - reconciles))
}

/// Prints the scale run's report.
fn report_servers(
    run: &ScaleRun,
    servers: usize,
    nodes: usize,
    resync: Duration,
    idle_events: usize,
    idle_reconciles: u64,
) {
    let active = run.active();
    let total = run.finished - run.started;
    let to_active = latency_stats(run.latencies(|t| t.active));
    let to_bound = latency_stats(run.latencies(|t| t.bound));
    let created_last = run.last(|t| t.created).unwrap_or(run.finished);
    let created_first = run.first(|t| t.created).unwrap_or(run.started);
    let bound_last = run.last(|t| t.bound).unwrap_or(run.finished);
    let bound = run.traces.values().filter(|t| t.bound.is_some()).count();
    let placements = bound as f64 / (bound_last - created_first).as_secs_f64();
    let create_rate = servers as f64 / (created_last - run.started).as_secs_f64();
    let writes: Vec<u32> = run
        .traces
        .values()
        .filter(|t| t.active.is_some())
        .map(|t| t.writes)
        .collect();
    let max_writes = writes.iter().copied().max().unwrap_or(0);
    let mean_writes = f64::from(writes.iter().sum::<u32>()) / writes.len().max(1) as f64;

    println!(
        "{active}/{servers} servers ACTIVE in {:.2} s: {:.1} servers/s",
        total.as_secs_f64(),
        active as f64 / total.as_secs_f64()
    );
    println!(
        "create -> ACTIVE   p50 {:>8.1} ms   p99 {:>8.1} ms   max {:>8.1} ms",
        ms(to_active.p50),
        ms(to_active.p99),
        ms(to_active.max)
    );
    println!(
        "create -> bound    p50 {:>8.1} ms   p99 {:>8.1} ms   max {:>8.1} ms",
        ms(to_bound.p50),
        ms(to_bound.p99),
        ms(to_bound.max)
    );
    println!(
        "scheduler: {bound} placements in {:.2} s after the first create: {placements:.0} placements/s \
         (creates arrived at {create_rate:.0}/s)",
        (bound_last - created_first).as_secs_f64()
    );
    println!("store writes per server create -> ACTIVE: mean {mean_writes:.1}, max {max_writes}");
    if active == servers {
        println!(
            "idle converged servers over {:.0} s (one resync period {} s + 2 s; the hollow nodes \
             read domain states {idle_reconciles} times meanwhile, so the resync ran): \
             {idle_events} server writes",
            (resync + Duration::from_secs(2)).as_secs_f64(),
            resync.as_secs()
        );
    }
    println!(
        "targets: {servers} on {nodes} nodes all ACTIVE <= 60 s ({}), scheduler >= 200 placements/s ({}), \
         <= 10 writes/server ({}), 0 writes on resync ({})",
        verdict(active == servers && total <= Duration::from_secs(60)),
        verdict(placements >= 200.0),
        verdict(active == servers && max_writes <= 10),
        verdict(idle_events == 0 && idle_reconciles > 0),
    );
}
