//! `cirrus bench overhead`: create→domain running through Cirrus on the real libvirt
//! driver, against the same qemu-img/libvirt steps done directly (the baseline), guest boot
//! excluded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cirrus_client::{Api, Client};
use cirrus_crds::kinds::image::{ContainerFormat, DiskFormat};
use cirrus_crds::{ImageSpec, Server, ServerSpec};
use cirrus_node_agent::hypervisor::libvirt::LibvirtHypervisor;
use cirrus_node_agent::hypervisor::{DomainName, DomainSpec, DomainState, Hypervisor, KernelBoot};
use cirrus_test_utils::meta_in;

use crate::cloud::{
    BENCH_PROJECT, UpProcess, create_image, create_project_and_flavor, qemu_img, servers_revision,
    wait_nodes_ready,
};
use crate::server_watch::{EventKind, ServerWatch};
use crate::store_measure::latency_stats;
use crate::{BenchArgs, latency_row, mean, ms, verdict};

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

/// Runs both sides and prints the report.
pub(crate) async fn bench_overhead(args: &BenchArgs) -> anyhow::Result<()> {
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
    let client = up.client();
    wait_nodes_ready(&client, 1, Duration::from_secs(60))
        .await
        .with_context(|| format!("the node agent of cirrus up:\n{}", up.log_tail()))?;
    create_project_and_flavor(&client, GUEST_FLAVOR, 1, 256, 1).await?;
    let kernel = ImageSpec {
        disk_format: DiskFormat::Aki,
        container_format: ContainerFormat::Aki,
        ..ImageSpec::default()
    };
    create_image(&client, "guest-kernel", kernel, &guest.kernel).await?;
    let initrd = ImageSpec {
        disk_format: DiskFormat::Ari,
        container_format: ContainerFormat::Ari,
        ..ImageSpec::default()
    };
    create_image(&client, "guest-initrd", initrd, &guest.initrd).await?;
    let root = ImageSpec {
        disk_format: DiskFormat::Qcow2,
        container_format: ContainerFormat::Bare,
        properties: BTreeMap::from([
            ("kernel_id".to_owned(), "guest-kernel".to_owned()),
            ("ramdisk_id".to_owned(), "guest-initrd".to_owned()),
            ("os_command_line".to_owned(), GUEST_CMDLINE.to_owned()),
        ]),
        ..ImageSpec::default()
    };
    create_image(&client, "guest", root, &guest.root).await?;

    let revision = servers_revision(&client).await?;
    let mut watch = ServerWatch::start(&client, &revision);
    let mut timings = Timings::default();
    for i in 0..=n {
        let (create, delete) = cirrus_one(&client, &mut watch, domains, &format!("vm-{i}"))
            .await
            .with_context(|| format!("cirrus up log:\n{}", up.log_tail()))?;
        timings.record(i, create, delete);
    }
    Ok(timings)
}

/// One server through Cirrus: POST → `DomainRunning=True` (or ACTIVE) on the watch, then
/// DELETE → DELETED on the watch.
async fn cirrus_one(
    client: &Client,
    watch: &mut ServerWatch,
    domains: &DomainGuard,
    name: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let servers = Api::<Server>::in_project(client.clone(), BENCH_PROJECT);
    let spec = ServerSpec {
        flavor: GUEST_FLAVOR.into(),
        image: Some("guest".into()),
        ..ServerSpec::default()
    };
    let started = Instant::now();
    let created = servers
        .create(&Server::new(meta_in(BENCH_PROJECT, name), spec))
        .await
        .with_context(|| format!("creating server {name}"))?;
    let uid = created.metadata.uid.as_deref().unwrap_or_default();
    let domain = DomainName::parse(&format!("cirrus-{uid}"))
        .with_context(|| format!("server {name} has no valid uid: {uid:?}"))?;
    domains.track(&domain);
    let running = watch
        .wait_for(name, STEP_TIMEOUT, |e| e.domain_running || e.is_active())
        .await?;
    let create = running.saturating_duration_since(started);

    let started = Instant::now();
    match servers.delete(name).await {
        Err(e) if !e.is_not_found() => {
            return Err(anyhow::Error::new(e).context(format!("deleting server {name}")));
        }
        _ => {}
    }
    let gone = watch
        .wait_for(name, STEP_TIMEOUT, |e| e.kind == EventKind::Deleted)
        .await?;
    domains.forget(&domain);
    Ok((create, gone.saturating_duration_since(started)))
}

/// Prints both sides side by side.
fn report_overhead(direct: &Timings, cirrus: &Timings) {
    let d = latency_stats(direct.creates.clone());
    let c = latency_stats(cirrus.creates.clone());
    println!(
        "{:<34} {:>14} {:>16} {:>8}",
        "", "direct (baseline)", "through Cirrus", "ratio"
    );
    let row = |name: &str, a: Duration, b: Duration| {
        latency_row(name, (a, b), ms(b) / ms(a), (14, 1));
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
