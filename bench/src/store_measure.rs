//! Store benchmarks: write throughput and watch latency of any etcd-API endpoint, so the
//! embedded server can be measured side by side with a real etcd (`cirrus bench store`).
//!
//! Both measurements go through `etcd_client`, exactly like Cirrus components do, each
//! simulated client on its own connection.
//!
//! - [`write_throughput`]: `clients` concurrent loops of `Put` (512-byte values, distinct
//!   keys) for a fixed duration.
//! - [`watch_latency`]: one writer, one watcher on a separate connection; latency is from just
//!   before the `Put` is sent to the watch event's arrival.
//! - [`compare`]: both, against a fresh on-disk embedded server and a fresh real etcd
//!   (fsync on both sides, so the comparison is fair).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use etcd_client::{Client, WatchOptions};
use tokio::sync::mpsc;

use cirrus_store::embedded::{self, EmbeddedConfig, EmbeddedError};
use cirrus_test_utils::{RealEtcd, RealEtcdError};

/// Size of the values written by the benchmarks.
pub const VALUE_SIZE: usize = 512;

/// Result of [`write_throughput`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteStats {
    /// Acknowledged puts.
    pub writes: u64,
    /// Acknowledged puts per second.
    pub per_sec: f64,
    /// Wall-clock duration of the run.
    pub elapsed: Duration,
}

/// Result of [`watch_latency`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyStats {
    /// Number of samples.
    pub samples: usize,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Worst latency.
    pub max: Duration,
}

/// Both measurements against one backend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackendStats {
    /// Write throughput.
    pub writes: WriteStats,
    /// Watch latency.
    pub watch: LatencyStats,
}

/// Parameters of [`compare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchOptions {
    /// Concurrent writing clients.
    pub clients: usize,
    /// Duration of the write phase.
    pub duration: Duration,
    /// Number of watch latency samples.
    pub samples: usize,
}

impl Default for BenchOptions {
    /// 16 clients for 5 s, 200 latency samples.
    fn default() -> Self {
        BenchOptions {
            clients: 16,
            duration: Duration::from_secs(5),
            samples: 200,
        }
    }
}

/// Result of [`compare`]; `etcd` is `None` when no etcd binary is installed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// The embedded server (on disk).
    pub embedded: BackendStats,
    /// A real etcd, if available.
    pub etcd: Option<BackendStats>,
}

/// Failure of a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Could not connect to the endpoint.
    #[error("cannot connect to {endpoint}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The client error.
        #[source]
        source: etcd_client::Error,
    },
    /// A request failed.
    #[error("benchmark request failed")]
    Request(#[source] etcd_client::Error),
    /// The watch stream ended or stalled.
    #[error("watch stream ended or stalled after {received} of {expected} events")]
    Watch {
        /// Events received.
        received: usize,
        /// Events expected.
        expected: usize,
    },
    /// The embedded server could not start.
    #[error("cannot start the embedded server")]
    Embedded(#[from] EmbeddedError),
    /// The real etcd could not start.
    #[error("cannot start etcd")]
    RealEtcd(#[from] RealEtcdError),
    /// Temporary directory failure.
    #[error("cannot create a temporary directory")]
    TempDir(#[source] std::io::Error),
}

async fn connect(endpoint: &str) -> Result<Client, BenchError> {
    cirrus_store::connect::connect(&[endpoint], None)
        .await
        .map_err(|source| BenchError::Connect {
            endpoint: endpoint.to_string(),
            source,
        })
}

fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// Measure write throughput: `clients` connections each putting 512-byte values to distinct
/// keys in a loop for `duration`.
///
/// # Errors
/// Connection failures or a failed put.
#[tracing::instrument(skip_all, fields(endpoint, clients, ?duration))]
pub async fn write_throughput(
    endpoint: &str,
    clients: usize,
    duration: Duration,
) -> Result<WriteStats, BenchError> {
    let run = run_id();
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients.max(1) {
        conns.push(connect(endpoint).await?);
    }
    let value = vec![b'x'; VALUE_SIZE];
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for (n, mut c) in conns.into_iter().enumerate() {
        let value = value.clone();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let key = format!("bench/{run}/{n}/{done:08}");
                c.put(key, value.clone(), None)
                    .await
                    .map_err(BenchError::Request)?;
                done += 1;
            }
            Ok::<u64, BenchError>(done)
        }));
    }
    let mut writes = 0;
    for t in tasks {
        writes += t.await.map_err(|_| BenchError::Watch {
            received: 0,
            expected: 0,
        })??;
    }
    let elapsed = start.elapsed();
    Ok(WriteStats {
        writes,
        per_sec: writes as f64 / elapsed.as_secs_f64(),
        elapsed,
    })
}

/// Measure watch latency: `samples` sequential puts by one client, each timed from just
/// before it is sent until its event arrives on a watch opened by another client.
///
/// # Errors
/// Connection or request failures; a watch that stalls for 10 s.
#[tracing::instrument(skip_all, fields(endpoint, samples))]
pub async fn watch_latency(endpoint: &str, samples: usize) -> Result<LatencyStats, BenchError> {
    let prefix = format!("bench-watch/{}/", run_id());
    let mut writer = connect(endpoint).await?;
    let mut watcher = connect(endpoint).await?;
    let mut stream = watcher
        .watch(prefix.as_str(), Some(WatchOptions::new().with_prefix()))
        .await
        .map_err(BenchError::Request)?;
    // Wait for the watch to be established before timing anything.
    stream.message().await.map_err(BenchError::Request)?;

    let (arrived_tx, mut arrived_rx) = mpsc::unbounded_channel::<(Vec<u8>, Instant)>();
    let reader = tokio::spawn(async move {
        while let Ok(Some(resp)) = stream.message().await {
            let now = Instant::now();
            for ev in resp.events() {
                if let Some(kv) = ev.kv() {
                    let _ = arrived_tx.send((kv.key().to_vec(), now));
                }
            }
        }
    });

    let value = vec![b'w'; VALUE_SIZE];
    let mut sent: HashMap<Vec<u8>, Instant> = HashMap::with_capacity(samples);
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let key = format!("{prefix}{i:06}").into_bytes();
        let t0 = Instant::now();
        sent.insert(key.clone(), t0);
        writer
            .put(key.clone(), value.clone(), None)
            .await
            .map_err(BenchError::Request)?;
        // Wait for this sample's event so samples do not overlap.
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), arrived_rx.recv()).await;
            let Ok(Some((k, at))) = next else {
                reader.abort();
                return Err(BenchError::Watch {
                    received: latencies.len(),
                    expected: samples,
                });
            };
            if let Some(t) = sent.remove(&k) {
                latencies.push(at.saturating_duration_since(t));
            }
            if k == key {
                break;
            }
        }
    }
    reader.abort();
    let _ = writer
        .delete(
            prefix.as_str(),
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await;
    Ok(latency_stats(latencies))
}

/// Percentiles of a set of durations (nearest-rank).
pub fn latency_stats(mut v: Vec<Duration>) -> LatencyStats {
    v.sort_unstable();
    let pick = |p: f64| -> Duration {
        if v.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    };
    LatencyStats {
        samples: v.len(),
        p50: pick(0.50),
        p99: pick(0.99),
        max: v.last().copied().unwrap_or_default(),
    }
}

/// Run both measurements against `endpoint`.
///
/// # Errors
/// See [`write_throughput`] and [`watch_latency`].
pub async fn measure(endpoint: &str, opts: BenchOptions) -> Result<BackendStats, BenchError> {
    let writes = write_throughput(endpoint, opts.clients, opts.duration).await?;
    let watch = watch_latency(endpoint, opts.samples).await?;
    Ok(BackendStats { writes, watch })
}

/// Start a real etcd on free loopback ports with a temporary data directory (killed when
/// the returned value is dropped).
///
/// # Errors
/// See [`RealEtcdError`]; `Missing` when the binary is not installed.
pub async fn start_real_etcd() -> Result<RealEtcd, RealEtcdError> {
    RealEtcd::start().await
}

/// Measure a fresh on-disk embedded server and, when installed, a fresh real etcd, one after
/// the other (never concurrently, so they do not compete for the disk).
///
/// # Errors
/// Start-up or measurement failures (a missing etcd binary is not an error: `etcd` is `None`).
pub async fn compare(opts: BenchOptions) -> Result<Comparison, BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("cirrus-bench-embedded")
        .tempdir()
        .map_err(BenchError::TempDir)?;
    let server = embedded::start(EmbeddedConfig::on_disk(dir.path())).await?;
    let result = measure(&server.endpoint(), opts).await;
    server.shutdown().await;
    let embedded = result?;
    let etcd = if RealEtcd::available() {
        let real = start_real_etcd().await?;
        Some(measure(&real.endpoint(), opts).await?)
    } else {
        None
    };
    Ok(Comparison { embedded, etcd })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = latency_stats(v);
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(latency_stats(Vec::new()).samples, 0);
    }

    /// `cargo test -p cirrus-bench --release store_measure::tests::embedded_vs_etcd -- --ignored --nocapture`
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "benchmark; run explicitly"]
    async fn embedded_vs_etcd() {
        let opts = BenchOptions {
            clients: 16,
            duration: Duration::from_secs(5),
            samples: 200,
        };
        let c = compare(opts).await.unwrap();
        println!("embedded: {:?}", c.embedded);
        if let Some(e) = c.etcd {
            println!("etcd:     {e:?}");
            println!(
                "write ratio embedded/etcd = {:.2}",
                c.embedded.writes.per_sec / e.writes.per_sec
            );
        }
    }
}
