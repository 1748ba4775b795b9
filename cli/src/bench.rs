//! `cirrus bench`: measurements reported as ratios against a baseline measured in the same
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
//!   running: allocations/s against raw creates/s of the same API (see `bench_ipam`).
//! - `network`: port plug and security-group rule change on the real Open vSwitch, against
//!   `ovs-vsctl add-port` and a plain ping (see `bench_network`).
//! - `volumes`: volume create → available per storage backend against the raw
//!   `qemu-img create` / `lvcreate` (see `bench_volumes`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cirrus_node_agent::hypervisor::fake::FakeHypervisor;
use cirrus_node_agent::hypervisor::libvirt::LibvirtHypervisor;
use cirrus_node_agent::hypervisor::{
    DomainName, DomainSpec, DomainState, HostInfo, Hypervisor, HypervisorOp, KernelBoot,
};
use cirrus_store::bench::{BenchOptions, compare, latency_stats};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

/// Arguments of `cirrus bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// What to measure: `store`, `api`, `servers`, `overhead`, `ipam`, `network` or `volumes`.
    #[arg(value_parser = ["store", "api", "servers", "overhead", "ipam", "network", "volumes"])]
    pub target: String,
    /// store: concurrent writers.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// store: seconds of writing per backend.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// store: watch latency samples; api: GET samples; network: rule changes (at most 50);
    /// volumes: volumes per backend (at most 100).
    #[arg(long, default_value_t = 500)]
    pub samples: usize,
    /// api: objects to create before measuring.
    #[arg(long, default_value_t = 10_000)]
    pub objects: usize,
    /// servers: hollow nodes (node agents with the fake hypervisor).
    #[arg(long, default_value_t = 50)]
    pub nodes: usize,
    /// servers: servers to create (default 500); overhead: servers per side (default 5).
    #[arg(long)]
    pub servers: Option<usize>,
    /// volumes: also measure this LVM volume group.
    #[arg(long)]
    pub lvm_vg: Option<String>,
    /// network: taps plugged each way.
    #[arg(long, default_value_t = 100)]
    pub plugs: usize,
    /// ipam: ports to create on the /22 subnet (at most 1021).
    #[arg(long, default_value_t = 1000)]
    pub ports: usize,
    /// servers, ipam: concurrent creating clients.
    #[arg(long, default_value_t = 16)]
    pub writers: usize,
    /// servers: the hollow agents' resync period in seconds (the idle window waits one).
    #[arg(long, default_value_t = 5)]
    pub resync_secs: u64,
    /// overhead: the test guest built by hack/build-guest.sh.
    #[arg(long, default_value = "target/guest")]
    pub guest_dir: PathBuf,
}

/// Runs the benchmark and prints its report.
///
/// SIGINT/SIGTERM end the run early through the same path as an error, so the child
/// process, the domains and the temporary files made so far are cleaned up by their guards.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let bench = async {
        match args.target.as_str() {
            "store" => bench_store(&args).await,
            "servers" => bench_servers(&args).await,
            "overhead" => bench_overhead(&args).await,
            "ipam" => crate::bench_ipam::bench_ipam(args.ports, args.writers).await,
            "volumes" => {
                crate::bench_volumes::bench_volumes(args.samples.min(100), args.lvm_vg.clone())
                    .await
            }
            "network" => {
                crate::bench_network::bench_network(args.plugs, args.samples.min(50), 200).await
            }
            _ => bench_api(&args).await,
        }
    };
    tokio::select! {
        result = bench => result,
        () = crate::up::shutdown_signal() => anyhow::bail!("interrupted; cleaned up"),
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

async fn bench_api(args: &BenchArgs) -> anyhow::Result<()> {
    let (up, startup) = UpProcess::start("cirrus-bench-api", &["--node-agent", "none"]).await?;
    let http = up.http();
    println!(
        "api benchmark: cirrus up (embedded store on disk), {} flavors",
        args.objects
    );

    let fill_started = Instant::now();
    let writers = 8;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let http = http.clone();
        let url =
            cirrus_client::url_from_segments(&up.base, &["apis", "cirrus.dev", "v1", "flavors"])?;
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
        let url = cirrus_client::url_from_segments(
            &up.base,
            &["apis", "cirrus.dev", "v1", "flavors", &name],
        )?;
        let resp = http.get(url).send().await?;
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
            .get(cirrus_client::url_from_segments(
                &up.base,
                &["apis", "cirrus.dev", "v1", "flavors"],
            )?)
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

// ----------------------------------------------------------------------------------------
// Shared by `api`, `servers` and `overhead`: a `cirrus up` child, a little REST helper and a
// server watch.

/// A `cirrus up` child process on a temporary data dir (its log in `cirrus.log` there),
/// killed by PID on drop (before the data dir goes).
struct UpProcess {
    child: std::process::Child,
    base: String,
    data: tempfile::TempDir,
    /// A token of its admin (logged in with the password from the `openrc` it wrote).
    token: String,
}

impl Drop for UpProcess {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl UpProcess {
    /// Starts `cirrus up` (this very binary) with `extra` arguments on a fresh temporary data
    /// dir and free loopback ports, waits until `/readyz` answers and logs in as its admin.
    /// Returns the process and the time from spawn to ready (the login excluded).
    async fn start(prefix: &str, extra: &[&str]) -> anyhow::Result<(Self, Duration)> {
        let data = tempfile::Builder::new().prefix(prefix).tempdir()?;
        let port = free_port()?;
        let log = std::fs::File::create(data.path().join("cirrus.log"))?;
        let started = Instant::now();
        let child = Command::new(std::env::current_exe()?)
            .args(["up", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--store-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting cirrus up")?;
        let mut up = UpProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            data,
            token: String::new(),
        };
        let http = reqwest::Client::new();
        loop {
            if let Ok(resp) = http.get(format!("{}/readyz", up.base)).send().await
                && resp.status().is_success()
            {
                let ready = started.elapsed();
                up.token = up
                    .admin_token()
                    .await
                    .with_context(|| format!("logging in as the admin:\n{}", up.log_tail()))?;
                return Ok((up, ready));
            }
            if let Some(status) = up.child.try_wait()? {
                anyhow::bail!("cirrus up exited ({status}):\n{}", up.log_tail());
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "cirrus up did not become ready:\n{}",
                up.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Logs in as the admin with the password `cirrus up` wrote to `<data-dir>/openrc`.
    async fn admin_token(&self) -> anyhow::Result<String> {
        use cirrus_client::auth::TokenSource;
        let openrc = std::fs::read_to_string(self.data.path().join("openrc"))
            .context("reading the openrc of cirrus up")?;
        let var = |name: &str| {
            openrc.lines().find_map(|line| {
                let value = line.trim().strip_prefix(&format!("export {name}="))?;
                Some(value.trim_matches('\'').to_owned())
            })
        };
        let (Some(user), Some(password)) = (var("OS_USERNAME"), var("OS_PASSWORD")) else {
            anyhow::bail!("the openrc of cirrus up has no OS_USERNAME/OS_PASSWORD");
        };
        let login = cirrus_client::auth::PasswordLogin::new(
            &self.base,
            user,
            password,
            var("OS_PROJECT_NAME"),
        );
        Ok(login.token().await?)
    }

    /// An HTTP client sending the admin's token with every request.
    fn http(&self) -> reqwest::Client {
        cirrus_api::testing::client_with_token(&self.token)
    }

    /// The REST helper, acting as the admin.
    fn rest(&self) -> Rest {
        Rest {
            http: self.http(),
            base: self.base.clone(),
        }
    }

    /// Creates the node user `node-<node>` (bound to that node, with a random password)
    /// and returns a token source logging in as it: a node agent's own identity, allowed to
    /// write only its node and what is bound to it.
    async fn node_login(
        &self,
        rest: &Rest,
        node: &str,
    ) -> anyhow::Result<Arc<dyn cirrus_client::auth::TokenSource>> {
        let user = format!("node-{node}");
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
        let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        rest.create(
            "users",
            &json!({"apiVersion": "cirrus.dev/v1", "kind": "User", "metadata": {"name": user},
                    "spec": {"node": node, "password": password}}),
        )
        .await?;
        Ok(cirrus_client::auth::PasswordLogin::new(
            &self.base, user, password, None,
        ))
    }

    /// The last lines of the child's log, for error messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.data.path().join("cirrus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// A free TCP port on the loopback interface.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Just enough of the native API for benchmark set-up and driving, over one HTTP client.
#[derive(Clone)]
struct Rest {
    http: reqwest::Client,
    base: String,
}

impl Rest {
    /// `<base>/apis/cirrus.dev/v1/<path>[?query]`, built from `path`'s segments and with
    /// every query value encoded (the client's rules: no empty or dot segment).
    fn url(&self, path: &str) -> anyhow::Result<String> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut segments = vec!["apis", "cirrus.dev", "v1"];
        segments.extend(path.split('/'));
        let mut url = cirrus_client::url_from_segments(&self.base, &segments)?;
        for (i, pair) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(key);
            url.push('=');
            url.push_str(&cirrus_client::encode_query_value(value));
        }
        Ok(url)
    }

    /// POSTs `body` to the collection at `path` and returns the created object.
    async fn create(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(self.url(path)?)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        anyhow::ensure!(status.as_u16() == 201, "POST {path}: {status}: {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// GETs the object or list at `path`.
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(self.url(path)?)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        anyhow::ensure!(status.is_success(), "GET {path}: {status}: {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// DELETEs the object at `path` (already gone is fine).
    async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let resp = self
            .http
            .delete(self.url(path)?)
            .send()
            .await
            .with_context(|| format!("DELETE {path}"))?;
        let status = resp.status();
        anyhow::ensure!(
            status.is_success() || status.as_u16() == 404,
            "DELETE {path}: {status}: {}",
            resp.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Streams `file` into the image data at `path` (`.../images/{name}/file`).
    async fn upload(&self, path: &str, file: &Path) -> anyhow::Result<()> {
        let f = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("opening {}", file.display()))?;
        let length = f.metadata().await?.len();
        let resp = self
            .http
            .put(self.url(path)?)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(reqwest::Body::wrap_stream(
                tokio_util::io::ReaderStream::new(f),
            ))
            .send()
            .await
            .with_context(|| format!("PUT {path}"))?;
        let status = resp.status();
        anyhow::ensure!(
            status.is_success(),
            "PUT {path}: {status}: {}",
            resp.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// The store revision a watch of `plural` can start from.
    async fn revision(&self, plural: &str) -> anyhow::Result<String> {
        let list = self.get(&format!("{plural}?limit=1")).await?;
        list["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_owned)
            .context("a list without metadata.resourceVersion")
    }

    /// Creates the Image `name` in [`BENCH_PROJECT`] with `spec` and uploads `file` into it.
    async fn create_image(&self, name: &str, spec: Value, file: &Path) -> anyhow::Result<()> {
        let images = format!("projects/{BENCH_PROJECT}/images");
        let body = json!({"metadata": {"name": name, "project": BENCH_PROJECT}, "spec": spec});
        self.create(&images, &body).await?;
        self.upload(&format!("{images}/{name}/file"), file).await
    }

    /// Waits until at least `count` Nodes report `Ready=True`.
    async fn wait_nodes_ready(&self, count: usize, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let list = self.get("nodes").await?;
            let ready = list["items"].as_array().map_or(0, |items| {
                items.iter().filter(|n| is_true(n, "Ready")).count()
            });
            if ready >= count {
                return Ok(());
            }
            anyhow::ensure!(
                started.elapsed() < timeout,
                "only {ready}/{count} nodes are Ready after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Whether `obj` has the condition `kind` with status `True`.
fn is_true(obj: &Value, kind: &str) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == kind && c["status"] == "True")
    })
}

/// The project every benchmark object lives in.
const BENCH_PROJECT: &str = "bench";

/// Creates [`BENCH_PROJECT`] and the flavor `name`.
async fn create_project_and_flavor(
    rest: &Rest,
    flavor: &str,
    vcpus: u32,
    ram_mib: u64,
    disk_gib: u64,
) -> anyhow::Result<()> {
    rest.create(
        "projects",
        &json!({"metadata": {"name": BENCH_PROJECT}, "spec": {"description": "cirrus bench"}}),
    )
    .await?;
    rest.create(
        "flavors",
        &json!({"metadata": {"name": flavor}, "spec": {"vcpus": vcpus, "ram": ram_mib, "disk": disk_gib}}),
    )
    .await?;
    Ok(())
}

/// One Server watch event, stamped when it arrived.
#[derive(Debug, Clone)]
struct ServerEvent {
    at: Instant,
    /// `ADDED`, `MODIFIED` or `DELETED` (BOOKMARKs are dropped).
    kind: String,
    name: String,
    /// `spec.nodeName` is set.
    bound: bool,
    /// `status.phase`, when set.
    phase: Option<String>,
    /// `status.conditions` has `DomainRunning=True`.
    domain_running: bool,
    /// `status.fault.message`, when set.
    fault: Option<String>,
}

impl ServerEvent {
    /// Parses one line of a watch stream; `None` for BOOKMARKs and blank lines.
    fn parse(line: &[u8], at: Instant) -> anyhow::Result<Option<Self>> {
        let line = line.trim_ascii();
        if line.is_empty() {
            return Ok(None);
        }
        let v: Value = serde_json::from_slice(line).context("an unreadable watch event")?;
        let kind = v["type"].as_str().unwrap_or_default();
        match kind {
            "BOOKMARK" => return Ok(None),
            "ERROR" => anyhow::bail!("the watch failed: {}", v["object"]),
            _ => {}
        }
        let obj = &v["object"];
        Ok(Some(Self {
            at,
            kind: kind.to_owned(),
            name: obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            bound: obj["spec"]["nodeName"].is_string(),
            phase: obj["status"]["phase"].as_str().map(str::to_owned),
            domain_running: is_true(obj, "DomainRunning"),
            fault: obj["status"]["fault"]["message"]
                .as_str()
                .map(str::to_owned),
        }))
    }

    fn is_active(&self) -> bool {
        self.phase.as_deref() == Some("ACTIVE")
    }

    /// A store write of the object (its creation or an update).
    fn is_write(&self) -> bool {
        matches!(self.kind.as_str(), "ADDED" | "MODIFIED")
    }
}

/// A watch of every Server from a revision, read by a background task (aborted on drop).
struct ServerWatch {
    rx: mpsc::UnboundedReceiver<anyhow::Result<ServerEvent>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ServerWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ServerWatch {
    /// Starts watching `/apis/cirrus.dev/v1/servers` (all projects) after `revision`.
    async fn start(rest: &Rest, revision: &str) -> anyhow::Result<Self> {
        let path = format!("servers?watch=true&resourceVersion={revision}");
        let mut resp = rest.http.get(rest.url(&path)?).send().await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "watching servers: {}",
            resp.status()
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut buf = Vec::new();
            loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
                    Ok(None) => {
                        let _ = tx.send(Err(anyhow::anyhow!("the server watch ended")));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(anyhow::Error::new(e).context("the server watch")));
                        return;
                    }
                }
                let at = Instant::now();
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let event = match ServerEvent::parse(&line, at) {
                        Ok(Some(e)) => Ok(e),
                        Ok(None) => continue,
                        Err(e) => Err(e),
                    };
                    let failed = event.is_err();
                    if tx.send(event).is_err() || failed {
                        return;
                    }
                }
            }
        });
        Ok(Self { rx, task })
    }

    /// The next event, or `None` once `deadline` passed.
    async fn next_until(&mut self, deadline: Instant) -> anyhow::Result<Option<ServerEvent>> {
        match tokio::time::timeout_at(deadline.into(), self.rx.recv()).await {
            Err(_) => Ok(None),
            Ok(Some(event)) => event.map(Some),
            Ok(None) => anyhow::bail!("the server watch stopped"),
        }
    }

    /// Waits for the first event of server `name` that satisfies `done`; returns its arrival.
    /// A server that turns ERROR fails the wait with its fault.
    async fn wait_for(
        &mut self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&ServerEvent) -> bool,
    ) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(event) = self.next_until(deadline).await? else {
                anyhow::bail!("server {name}: timed out after {timeout:?}");
            };
            if event.name != name {
                continue;
            }
            if done(&event) {
                return Ok(event.at);
            }
            if event.phase.as_deref() == Some("ERROR") {
                anyhow::bail!(
                    "server {name} went ERROR: {}",
                    event.fault.as_deref().unwrap_or("no fault recorded")
                );
            }
        }
    }
}

/// Runs `qemu-img` with `args`.
async fn qemu_img<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("qemu-img")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running qemu-img (install it with hack/install-deps.sh)")?;
    anyhow::ensure!(
        out.status.success(),
        "qemu-img failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn mean(v: &[Duration]) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.iter().sum::<Duration>() / u32::try_from(v.len()).unwrap_or(u32::MAX)
}

// ----------------------------------------------------------------------------------------
// `cirrus bench servers`: the hollow-node scale run.

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

async fn bench_servers(args: &BenchArgs) -> anyhow::Result<()> {
    let servers = args.servers.unwrap_or(500).max(1);
    let nodes = args.nodes.max(1);
    let resync = Duration::from_secs(args.resync_secs.max(1));
    let (up, _) = UpProcess::start("cirrus-bench-servers", &["--node-agent", "none"]).await?;
    let rest = up.rest();
    let work = tempfile::Builder::new()
        .prefix("cirrus-bench-hollow")
        .tempdir()?;
    create_project_and_flavor(&rest, TINY_FLAVOR, 1, 512, 1).await?;
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
    rest.create_image(
        TINY_IMAGE,
        json!({"diskFormat": "qcow2", "containerFormat": "bare"}),
        &image,
    )
    .await?;

    println!(
        "servers benchmark: {servers} servers (1 vCPU, 512 MiB, 1 GiB) on {nodes} hollow nodes \
         (fake hypervisor, resync {} s), {} creating clients; store, API and controllers in a \
         `cirrus up` child process",
        resync.as_secs(),
        args.writers.max(1)
    );
    let mut logins = Vec::with_capacity(nodes);
    for i in 0..nodes {
        logins.push(up.node_login(&rest, &HollowNodes::name(i)).await?);
    }
    let mut hollow = HollowNodes::start(
        logins,
        servers,
        &up.base,
        &work.path().join("nodes"),
        resync,
    );
    let t = Instant::now();
    rest.wait_nodes_ready(nodes, Duration::from_secs(120))
        .await?;
    println!(
        "{nodes} hollow nodes Ready in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let revision = rest.revision("servers").await?;
    let mut watch = ServerWatch::start(&rest, &revision).await?;
    let run = create_and_converge(&rest, &mut watch, servers, args.writers.max(1)).await?;
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
    rest: &Rest,
    watch: &mut ServerWatch,
    count: usize,
    writers: usize,
) -> anyhow::Result<ScaleRun> {
    let started = Instant::now();
    let mut creators = tokio::spawn(create_servers(rest.clone(), count, writers));
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
    rest: Rest,
    count: usize,
    writers: usize,
) -> anyhow::Result<Vec<(String, Instant)>> {
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let rest = rest.clone();
        tasks.push(tokio::spawn(async move {
            let path = format!("projects/{BENCH_PROJECT}/servers");
            let mut acks = Vec::new();
            for i in (w..count).step_by(writers) {
                let name = format!("s-{i:04}");
                let body = json!({"metadata": {"name": name, "project": BENCH_PROJECT},
                                  "spec": {"flavor": TINY_FLAVOR, "image": TINY_IMAGE}});
                rest.create(&path, &body).await?;
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

// ----------------------------------------------------------------------------------------
// `cirrus bench overhead`: Cirrus on the real libvirt driver against the same steps done
// directly.

/// The guest flavor of both sides (1 vCPU, 256 MiB, 1 GiB root disk).
const GUEST_FLAVOR: &str = "bench.guest";
/// The guest's kernel command line (the image's `os_command_line`, as in
/// examples/guest-images.yaml); the node agent appends `cirrus.marker=<server name>`.
const GUEST_CMDLINE: &str = "console=ttyS0 quiet panic=-1";
/// How long one create or delete may take before the run fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// The test guest's three files, built by hack/build-guest.sh.
struct Guest {
    kernel: PathBuf,
    initrd: PathBuf,
    root: PathBuf,
}

impl Guest {
    /// The guest in `dir`, or an error saying how to build it.
    fn find(dir: &Path) -> anyhow::Result<Self> {
        let guest = Self {
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            root: dir.join("root.qcow2"),
        };
        for file in [&guest.kernel, &guest.initrd, &guest.root] {
            anyhow::ensure!(
                file.is_file(),
                "the test guest is missing ({} not found): build it with `hack/build-guest.sh {}` \
                 or point --guest-dir at it",
                file.display(),
                dir.display()
            );
        }
        Ok(guest)
    }
}

/// Libvirt domains this run made and has not deleted yet; every one is deleted on drop, so an
/// error or a panic leaves none behind.
struct DomainGuard {
    hv: Arc<LibvirtHypervisor>,
    names: Mutex<Vec<DomainName>>,
}

impl Drop for DomainGuard {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.names.lock().unwrap_or_else(|p| p.into_inner()));
        for name in names {
            if let Err(e) = self.hv.domain_delete(&name) {
                eprintln!("warning: could not delete domain {name}: {e}");
            }
        }
    }
}

impl DomainGuard {
    fn track(&self, name: &DomainName) {
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.clone());
    }

    fn forget(&self, name: &DomainName) {
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|n| n != name);
    }
}

/// Create and delete times of one side: the first (cold) create apart.
#[derive(Default)]
struct Timings {
    cold_create: Duration,
    creates: Vec<Duration>,
    deletes: Vec<Duration>,
}

impl Timings {
    fn record(&mut self, i: usize, create: Duration, delete: Duration) {
        if i == 0 {
            self.cold_create = create;
        } else {
            self.creates.push(create);
            self.deletes.push(delete);
        }
    }
}

async fn bench_overhead(args: &BenchArgs) -> anyhow::Result<()> {
    let n = args.servers.unwrap_or(5).max(1);
    let guest = Guest::find(&args.guest_dir)?;
    let hv = Arc::new(
        LibvirtHypervisor::connect(cirrus_node_agent::hypervisor::libvirt::DEFAULT_URI).context(
            "libvirt is not reachable at qemu:///system (start it with hack/start-libvirt.sh)",
        )?,
    );
    let host = blocking({
        let hv = hv.clone();
        move || hv.host_info()
    })
    .await?;
    println!(
        "overhead benchmark: create -> domain running (guest boot excluded), {n} servers per side \
         after one warm-up, 1 vCPU / 256 MiB / 1 GiB, {}, direct kernel boot of the test guest",
        if host.kvm_usable {
            "KVM"
        } else {
            "TCG (KVM not usable here)"
        }
    );
    let domains = DomainGuard {
        hv: hv.clone(),
        names: Mutex::new(Vec::new()),
    };
    let direct = direct_runs(&hv, &domains, &guest, host.virt_type(), n).await?;
    let cirrus = cirrus_runs(&domains, &guest, n).await?;
    report_overhead(&direct, &cirrus);
    Ok(())
}

/// Runs a blocking hypervisor call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> cirrus_node_agent::hypervisor::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// A fresh Cirrus domain name (`cirrus-<random uuid>`, from the kernel's generator).
fn random_domain_name() -> anyhow::Result<DomainName> {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")?;
    DomainName::parse(&format!("cirrus-{}", uuid.trim())).context("the kernel gave an odd uuid")
}

/// The baseline: `n + 1` times (the first is the warm-up) the steps the node agent takes
/// for a server, done directly on copies of the guest files.
async fn direct_runs(
    hv: &Arc<LibvirtHypervisor>,
    domains: &DomainGuard,
    guest: &Guest,
    virt_type: cirrus_node_agent::hypervisor::VirtType,
    n: usize,
) -> anyhow::Result<Timings> {
    let work = tempfile::Builder::new()
        .prefix("cirrus-bench-direct")
        .tempdir()?;
    // The node's image cache: made once, outside the measurement (as Cirrus caches once).
    let cache = Guest {
        kernel: work.path().join("vmlinuz"),
        initrd: work.path().join("initrd.img"),
        root: work.path().join("root.qcow2"),
    };
    for (from, to) in [
        (&guest.kernel, &cache.kernel),
        (&guest.initrd, &cache.initrd),
        (&guest.root, &cache.root),
    ] {
        std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    }
    let mut timings = Timings::default();
    for i in 0..=n {
        let name = random_domain_name()?;
        let spec = DomainSpec {
            server_uid: name.server_uid(),
            server_name: format!("direct-{i}"),
            project: BENCH_PROJECT.into(),
            virt_type,
            vcpus: 1,
            memory_mib: 256,
            root_disk: work.path().join(format!("direct-{i}/disk.qcow2")),
            kernel_boot: Some(KernelBoot {
                kernel: cache.kernel.clone(),
                initrd: Some(cache.initrd.clone()),
                cmdline: format!("{GUEST_CMDLINE} cirrus.marker=direct-{i}"),
            }),
            console_log: work.path().join(format!("direct-{i}/console.log")),
            nics: Vec::new(),
            config_drive: None,
            volumes: Vec::new(),
        };
        let (create, delete) = direct_one(hv, domains, &cache.root, spec).await?;
        timings.record(i, create, delete);
    }
    Ok(timings)
}

/// One direct create (overlay, define, start, until running) and delete (domain and files).
async fn direct_one(
    hv: &Arc<LibvirtHypervisor>,
    domains: &DomainGuard,
    base: &Path,
    spec: DomainSpec,
) -> anyhow::Result<(Duration, Duration)> {
    let name = spec.domain_name();
    let dir = spec
        .root_disk
        .parent()
        .context("a disk in a directory")?
        .to_owned();
    domains.track(&name);
    let started = Instant::now();
    std::fs::create_dir_all(&dir)?;
    qemu_img(&[
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-F".as_ref(),
        "qcow2".as_ref(),
        "-b".as_ref(),
        base.as_os_str(),
        spec.root_disk.as_os_str(),
        "1G".as_ref(),
    ])
    .await?;
    blocking({
        let hv = hv.clone();
        move || {
            hv.domain_ensure(&spec)?;
            hv.domain_start(&spec.domain_name())
        }
    })
    .await?;
    wait_running(hv, &name).await?;
    let create = started.elapsed();

    let started = Instant::now();
    blocking({
        let hv = hv.clone();
        let name = name.clone();
        move || hv.domain_delete(&name)
    })
    .await?;
    std::fs::remove_dir_all(&dir)?;
    domains.forget(&name);
    Ok((create, started.elapsed()))
}

/// Polls the domain's state until it is running.
async fn wait_running(hv: &Arc<LibvirtHypervisor>, name: &DomainName) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let state = blocking({
            let hv = hv.clone();
            let name = name.clone();
            move || hv.domain_state(&name)
        })
        .await?;
        if state == Some(DomainState::Running) {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < STEP_TIMEOUT,
            "domain {name} is not running after {STEP_TIMEOUT:?} ({state:?})"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Through Cirrus: a `cirrus up` child with a libvirt node agent; `n + 1` servers (the first
/// is the warm-up, which also fills the node's image cache) created one at a time, watched
/// until their domain runs, then deleted and watched until gone.
async fn cirrus_runs(domains: &DomainGuard, guest: &Guest, n: usize) -> anyhow::Result<Timings> {
    let (up, _) = UpProcess::start(
        "cirrus-bench-overhead",
        &["--node-agent", "libvirt", "--node-name", "bench"],
    )
    .await?;
    let rest = up.rest();
    rest.wait_nodes_ready(1, Duration::from_secs(60))
        .await
        .with_context(|| format!("the node agent of cirrus up:\n{}", up.log_tail()))?;
    create_project_and_flavor(&rest, GUEST_FLAVOR, 1, 256, 1).await?;
    rest.create_image(
        "guest-kernel",
        json!({"diskFormat": "aki", "containerFormat": "aki"}),
        &guest.kernel,
    )
    .await?;
    rest.create_image(
        "guest-initrd",
        json!({"diskFormat": "ari", "containerFormat": "ari"}),
        &guest.initrd,
    )
    .await?;
    rest.create_image(
        "guest",
        json!({"diskFormat": "qcow2", "containerFormat": "bare",
               "properties": {"kernel_id": "guest-kernel", "ramdisk_id": "guest-initrd",
                              "os_command_line": GUEST_CMDLINE}}),
        &guest.root,
    )
    .await?;

    let revision = rest.revision("servers").await?;
    let mut watch = ServerWatch::start(&rest, &revision).await?;
    let mut timings = Timings::default();
    for i in 0..=n {
        let (create, delete) = cirrus_one(&rest, &mut watch, domains, &format!("vm-{i}"))
            .await
            .with_context(|| format!("cirrus up log:\n{}", up.log_tail()))?;
        timings.record(i, create, delete);
    }
    Ok(timings)
}

/// One server through Cirrus: POST → `DomainRunning=True` (or ACTIVE) on the watch, then
/// DELETE → DELETED on the watch.
async fn cirrus_one(
    rest: &Rest,
    watch: &mut ServerWatch,
    domains: &DomainGuard,
    name: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let path = format!("projects/{BENCH_PROJECT}/servers");
    let body = json!({"metadata": {"name": name, "project": BENCH_PROJECT},
                      "spec": {"flavor": GUEST_FLAVOR, "image": "guest"}});
    let started = Instant::now();
    let created = rest.create(&path, &body).await?;
    let uid = created["metadata"]["uid"].as_str().unwrap_or_default();
    let domain = DomainName::parse(&format!("cirrus-{uid}"))
        .with_context(|| format!("server {name} has no valid uid: {created}"))?;
    domains.track(&domain);
    let running = watch
        .wait_for(name, STEP_TIMEOUT, |e| e.domain_running || e.is_active())
        .await?;
    let create = running.saturating_duration_since(started);

    let started = Instant::now();
    rest.delete(&format!("{path}/{name}")).await?;
    let gone = watch
        .wait_for(name, STEP_TIMEOUT, |e| e.kind == "DELETED")
        .await?;
    domains.forget(&domain);
    Ok((create, gone.saturating_duration_since(started)))
}

fn report_overhead(direct: &Timings, cirrus: &Timings) {
    let d = latency_stats(direct.creates.clone());
    let c = latency_stats(cirrus.creates.clone());
    println!(
        "{:<34} {:>14} {:>16} {:>8}",
        "", "direct (baseline)", "through Cirrus", "ratio"
    );
    let row = |name: &str, a: Duration, b: Duration| {
        println!(
            "{name:<34} {:>14.1}ms {:>14.1}ms {:>8.2}",
            ms(a),
            ms(b),
            ms(b) / ms(a)
        );
    };
    row("create -> running p50", d.p50, c.p50);
    row(
        "create -> running mean",
        mean(&direct.creates),
        mean(&cirrus.creates),
    );
    row("create -> running max", d.max, c.max);
    row(
        "first create (cold)",
        direct.cold_create,
        cirrus.cold_create,
    );
    let dd = latency_stats(direct.deletes.clone());
    let cd = latency_stats(cirrus.deletes.clone());
    row("delete -> gone p50", dd.p50, cd.p50);
    println!(
        "targets: create -> running through Cirrus <= 1.5 x direct, p50 ({})",
        verdict(ms(c.p50) <= 1.5 * ms(d.p50))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_urls_are_built_from_segments() {
        let rest = Rest {
            http: reqwest::Client::new(),
            base: "http://127.0.0.1:8080/".into(),
        };
        assert_eq!(
            rest.url("projects/bench/images/a b/file").unwrap(),
            "http://127.0.0.1:8080/apis/cirrus.dev/v1/projects/bench/images/a%20b/file"
        );
        assert_eq!(
            rest.url("servers?watch=true&resourceVersion=1&x").unwrap(),
            "http://127.0.0.1:8080/apis/cirrus.dev/v1/servers?watch=true&resourceVersion=1&x="
        );
        assert!(rest.url("projects/../nodes").is_err());
        assert!(rest.url("flavors//x").is_err());
    }
}
