//! `cirrus bench`: measurements reported as ratios against a baseline measured in the same
//! run on the same machine — never as pass/fail timings.
//!
//! - `store`: the embedded store against a real etcd (write throughput with concurrent
//!   clients, watch delivery latency), both on disk with fsync.
//! - `api`: a `cirrus up` process holding N objects: start-up time, GET of one object and a
//!   full LIST through the API, each against the same read straight from the store (the
//!   baseline: what the API adds), and the process's resident memory.

use std::time::{Duration, Instant};

use anyhow::Context;
use cirrus_store::bench::{BenchOptions, compare, latency_stats};
use serde_json::{Value, json};

/// Arguments of `cirrus bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// What to measure: `store` or `api`.
    #[arg(value_parser = ["store", "api"])]
    pub target: String,
    /// store: concurrent writers.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// store: seconds of writing per backend.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// store: watch latency samples; api: GET samples.
    #[arg(long, default_value_t = 500)]
    pub samples: usize,
    /// api: objects to create before measuring.
    #[arg(long, default_value_t = 10_000)]
    pub objects: usize,
}

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.target.as_str() {
        "store" => bench_store(&args).await,
        _ => bench_api(&args).await,
    }
}

async fn bench_store(args: &BenchArgs) -> anyhow::Result<()> {
    let opts = BenchOptions {
        clients: args.clients,
        duration: Duration::from_secs(args.seconds),
        samples: args.samples.min(2000),
    };
    println!(
        "store benchmark: {} clients x {} s of 512-byte puts, {} watch samples; embedded (redb, fsync) vs etcd",
        opts.clients, args.seconds, opts.samples
    );
    let result = compare(opts).await.context("running the store benchmark")?;
    let e = result.embedded;
    println!(
        "{:<28} {:>12} {:>12} {:>10}",
        "", "embedded", "etcd", "ratio"
    );
    match result.etcd {
        Some(r) => {
            let row = |name: &str, a: f64, b: f64, unit: &str| {
                println!(
                    "{name:<28} {:>10.1}{unit} {:>10.1}{unit} {:>10.2}",
                    a,
                    b,
                    a / b
                );
            };
            row("writes/s", e.writes.per_sec, r.writes.per_sec, "  ");
            row("watch p50 (ms)", ms(e.watch.p50), ms(r.watch.p50), "  ");
            row("watch p99 (ms)", ms(e.watch.p99), ms(r.watch.p99), "  ");
            row("watch max (ms)", ms(e.watch.max), ms(r.watch.max), "  ");
            println!(
                "targets: embedded writes >= 0.5 x etcd ({}), watch p99 <= 50 ms ({})",
                verdict(e.writes.per_sec >= 0.5 * r.writes.per_sec),
                verdict(ms(e.watch.p99) <= 50.0)
            );
        }
        None => {
            println!(
                "writes/s {:>10.1} (no etcd installed: no baseline)",
                e.writes.per_sec
            );
            println!(
                "watch p50/p99 (ms) {:.1}/{:.1}",
                ms(e.watch.p50),
                ms(e.watch.p99)
            );
        }
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// A `cirrus up` child process on a temporary data dir, killed on drop.
struct UpProcess {
    child: std::process::Child,
    base: String,
    data: tempfile::TempDir,
}

impl Drop for UpProcess {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

async fn bench_api(args: &BenchArgs) -> anyhow::Result<()> {
    let data = tempfile::Builder::new()
        .prefix("cirrus-bench-api")
        .tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let child = std::process::Command::new(exe)
        .args([
            "up",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting cirrus up")?;
    let up = UpProcess {
        child,
        base: format!("http://127.0.0.1:{port}"),
        data,
    };
    let http = reqwest::Client::new();
    loop {
        if let Ok(resp) = http.get(format!("{}/readyz", up.base)).send().await
            && resp.status().is_success()
        {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "cirrus up did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let startup = started.elapsed();
    println!(
        "api benchmark: cirrus up (embedded store on disk), {} flavors",
        args.objects
    );

    let fill_started = Instant::now();
    let writers = 8;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let http = http.clone();
        let url = format!("{}/apis/cirrus.dev/v1/flavors", up.base);
        let count = args.objects;
        tasks.push(tokio::spawn(async move {
            for i in (w..count).step_by(writers) {
                let body = json!({"metadata": {"name": format!("bench-{i:05}"), "labels": {"bench": "api"}},
                                  "spec": {"vcpus": 1 + (i % 8) as u32, "ram": 512, "disk": 1,
                                           "description": "flavor created by cirrus bench api"}});
                let resp = http.post(&url).json(&body).send().await?;
                anyhow::ensure!(resp.status().as_u16() == 201, "create answered {}", resp.status());
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let fill = fill_started.elapsed();

    let endpoint = std::fs::read_to_string(up.data.path().join("etcd-endpoint"))?
        .trim()
        .to_string();
    let mut kv = etcd_client::Client::connect([endpoint.as_str()], None)
        .await?
        .kv_client();

    let mut api_get = Vec::with_capacity(args.samples);
    let mut store_get = Vec::with_capacity(args.samples);
    for i in 0..args.samples {
        let name = format!("bench-{:05}", (i * 7919) % args.objects.max(1));
        let t = Instant::now();
        let resp = http
            .get(format!("{}/apis/cirrus.dev/v1/flavors/{name}", up.base))
            .send()
            .await?;
        let _: Value = resp.json().await?;
        api_get.push(t.elapsed());
        let t = Instant::now();
        let got = kv.get(format!("/cirrus/flavors/{name}"), None).await?;
        let _: Value = serde_json::from_slice(got.kvs()[0].value())?;
        store_get.push(t.elapsed());
    }
    let api_get = latency_stats(api_get);
    let store_get = latency_stats(store_get);

    let mut api_list = Vec::new();
    let mut store_list = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let list: Value = http
            .get(format!("{}/apis/cirrus.dev/v1/flavors", up.base))
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(
            list["items"].as_array().map(Vec::len) == Some(args.objects),
            "LIST returned everything"
        );
        api_list.push(t.elapsed());
        let t = Instant::now();
        let mut start = b"/cirrus/flavors/".to_vec();
        let mut count = 0;
        loop {
            let opts = etcd_client::GetOptions::new()
                .with_range("/cirrus/flavors0")
                .with_limit(500);
            let resp = kv.get(start.clone(), Some(opts)).await?;
            for item in resp.kvs() {
                let _: Value = serde_json::from_slice(item.value())?;
            }
            count += resp.kvs().len();
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        anyhow::ensure!(count == args.objects, "store range returned everything");
        store_list.push(t.elapsed());
    }
    let api_list = latency_stats(api_list);
    let store_list = latency_stats(store_list);
    let rss_mib = resident_mib(up.child.id()).unwrap_or(f64::NAN);

    println!(
        "{:<34} {:>12} {:>16} {:>8}",
        "", "through API", "store (baseline)", "ratio"
    );
    let row = |name: &str, a: Duration, b: Duration| {
        println!(
            "{name:<34} {:>10.2}ms {:>14.2}ms {:>8.2}",
            ms(a),
            ms(b),
            ms(a) / ms(b)
        );
    };
    row("GET one object p50", api_get.p50, store_get.p50);
    row("GET one object p99", api_get.p99, store_get.p99);
    row(
        "LIST all objects (median of 5)",
        api_list.p50,
        store_list.p50,
    );
    println!(
        "create {} objects (8 clients): {:.2} s ({:.0} creates/s)",
        args.objects,
        fill.as_secs_f64(),
        args.objects as f64 / fill.as_secs_f64()
    );
    println!("cirrus up start-up to ready: {:.0} ms", ms(startup));
    println!("cirrus up resident memory: {rss_mib:.1} MiB");
    println!(
        "targets: GET p99 <= 20 ms ({}), LIST <= 1 s ({}), RSS <= 300 MiB ({}), ready <= 2 s ({})",
        verdict(ms(api_get.p99) <= 20.0),
        verdict(api_list.p50 <= Duration::from_secs(1)),
        verdict(rss_mib <= 300.0),
        verdict(startup <= Duration::from_secs(2)),
    );
    Ok(())
}

/// Resident set size of process `pid` in MiB, from /proc.
fn resident_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
