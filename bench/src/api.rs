//! `cirrus bench api`: a `cirrus up` process holding N flavors: start-up time, GET of one
//! object and a full LIST through the API (with the typed client), each against the same
//! read straight from the store (the baseline: what the API adds), and the process's
//! resident memory.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cirrus_client::{Api, ListParams};
use cirrus_crds::{Flavor, FlavorSpec, ObjectMeta};
use serde_json::Value;

use crate::cloud::UpProcess;
use crate::store_measure::latency_stats;
use crate::{BenchArgs, latency_row, ms, verdict};

/// Runs the API benchmark and prints its report.
pub(crate) async fn bench_api(args: &BenchArgs) -> anyhow::Result<()> {
    let (up, startup) = UpProcess::start("cirrus-bench-api", &["--node-agent", "none"]).await?;
    let flavors = Api::<Flavor>::all(up.client());
    println!(
        "api benchmark: cirrus up (embedded store on disk), {} flavors",
        args.objects
    );

    let fill_started = Instant::now();
    let writers = 8;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let flavors = flavors.clone();
        let count = args.objects;
        tasks.push(tokio::spawn(async move {
            for i in (w..count).step_by(writers) {
                let flavor = Flavor::new(
                    ObjectMeta {
                        name: format!("bench-{i:05}"),
                        labels: BTreeMap::from([("bench".to_owned(), "api".to_owned())]),
                        ..Default::default()
                    },
                    FlavorSpec {
                        vcpus: 1 + (i % 8) as u32,
                        ram: 512,
                        disk: 1,
                        description: Some("flavor created by cirrus bench api".into()),
                        ..Default::default()
                    },
                );
                flavors.create(&flavor).await?;
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
        flavors.get(&name).await?;
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
        let list = flavors.list(&ListParams::default()).await?;
        anyhow::ensure!(list.items.len() == args.objects, "LIST returned everything");
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
        latency_row(name, (a, b), ms(a) / ms(b), (10, 2));
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
