//! `cirrus bench store`: the embedded store against a real etcd, both on disk with fsync
//! (the measurements themselves are in [`crate::store_measure`]).

use std::time::Duration;

use anyhow::Context;

use crate::store_measure::{BenchOptions, compare};
use crate::{BenchArgs, ms, verdict};

/// Runs the store comparison and prints its report.
pub(crate) async fn bench_store(args: &BenchArgs) -> anyhow::Result<()> {
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
