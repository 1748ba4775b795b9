//! `cirrus node-agent`: the per-host agent (like kubelet / nova-compute) in its own process,
//! talking only to the API. `cirrus up` runs one in-process on the local host.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use cirrus_node_agent::AgentConfig;
use cirrus_node_agent::agent::NetworkConfig;
use cirrus_node_agent::hypervisor::Hypervisor;
use cirrus_node_agent::hypervisor::fake::FakeHypervisor;
#[cfg(feature = "libvirt")]
use cirrus_node_agent::hypervisor::libvirt::LibvirtHypervisor;
use cirrus_node_agent::net::ports::PortsConfig;
use cirrus_node_agent::net::switch::ovs::OvsSwitch;

/// Which hypervisor driver a node agent uses.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// libvirt (QEMU/KVM; TCG where KVM does not work).
    Libvirt,
    /// In-memory fake: a "hollow" node for tests and scale runs.
    Fake,
}

/// Arguments of `cirrus node-agent`.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeAgentArgs {
    /// This node's name (default: the host name).
    #[arg(long, env = "CIRRUS_NODE_NAME")]
    pub node: Option<String>,
    /// Hypervisor driver.
    #[arg(long, value_enum, default_value = "libvirt")]
    pub driver: Driver,
    /// libvirt connection URI.
    #[arg(long, default_value = "qemu:///system")]
    pub libvirt_uri: String,
    /// Where images are cached and instance files (disks, console logs) live.
    #[arg(long, default_value = "/var/lib/cirrus/node")]
    pub state_dir: PathBuf,
    /// Where the agent endpoint (console logs for the API to proxy) listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub endpoint_listen: SocketAddr,
    /// Serve the agent endpoint over TLS with this certificate (PEM; with `--tls-key`),
    /// e.g. one issued by the cloud's CA (`cirrus up --tls` keeps it in `<data-dir>/tls`).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The Open vSwitch integration bridge guests and DHCP namespaces are plugged into.
    #[arg(long, default_value = "br-int")]
    pub bridge: String,
    /// The OVSDB server to manage the bridge through.
    #[arg(long, default_value = "unix:/var/run/openvswitch/db.sock")]
    pub ovsdb: String,
    /// Run without host networking (servers with networks then wait). Implied by
    /// `--driver fake`.
    #[arg(long)]
    pub no_network: bool,
    /// Directory of the `file` volume pool (qcow2 volumes); default `<state-dir>/volumes`.
    #[arg(long)]
    pub volume_dir: Option<PathBuf>,
    /// An LVM volume group to offer as an `lvm` pool too (device-mapper detected at run time;
    /// without it volumes are made with activation disabled and reached through loop devices).
    #[arg(long)]
    pub lvm_vg: Option<String>,
}

/// Builds the driver `args` asks for; libvirt is connected now so a missing daemon is reported
/// at start-up rather than as a not-ready node.
///
/// # Errors
/// libvirt unreachable.
pub fn driver(args: &NodeAgentArgs) -> anyhow::Result<Arc<dyn Hypervisor>> {
    Ok(match args.driver {
        Driver::Fake => {
            // Hollow guests release hot-unplugged disks at once, as the real test guest does.
            let fake = FakeHypervisor::new();
            fake.set_guest_releases(true);
            Arc::new(fake)
        }
        #[cfg(feature = "libvirt")]
        Driver::Libvirt => Arc::new(
            LibvirtHypervisor::connect(args.libvirt_uri.clone()).with_context(|| {
                format!(
                    "libvirt is not reachable at {} (start it with hack/start-libvirt.sh, or use --driver fake)",
                    args.libvirt_uri
                )
            })?,
        ),
        #[cfg(not(feature = "libvirt"))]
        Driver::Libvirt => anyhow::bail!(
            "this cirrus was built without libvirt (cargo feature `libvirt` off): the libvirt driver is not available; use --driver fake, or build with the default features"
        ),
    })
}

/// The agent configuration for `args` against the API at `api_url`.
pub fn config(args: &NodeAgentArgs, api_url: &str, driver: Arc<dyn Hypervisor>) -> AgentConfig {
    let node = args.node.clone().unwrap_or_else(host_name);
    let mut config = AgentConfig::new(node, api_url, args.state_dir.clone(), driver);
    config.endpoint_listen = Some(args.endpoint_listen);
    config.network = network(args);
    config.storage = storage(args);
    config
}

/// Size of a hollow node's in-memory volume pool: 1 TiB.
const HOLLOW_POOL_BYTES: u64 = 1 << 40;

/// The node's storage pools: a `file` pool always (real nodes), plus `--lvm-vg`. A pool that
/// cannot be opened is left out with a warning. Hollow nodes hold their volumes in an
/// in-memory fake pool (the same conformance suite as the real backends), so volumes on
/// them go through every phase (available, in-use, snapshots) without disks.
fn storage(args: &NodeAgentArgs) -> cirrus_node_agent::storage::Pools {
    use cirrus_node_agent::volumes::VolumeBackend;
    let mut pools = cirrus_node_agent::storage::Pools::new();
    if args.driver == Driver::Fake {
        let fake: Arc<dyn VolumeBackend> = Arc::new(
            cirrus_node_agent::volumes::fake::FakeVolumeBackend::new(HOLLOW_POOL_BYTES),
        );
        pools.insert("fake".to_string(), fake);
        return pools;
    }
    let dir = args
        .volume_dir
        .clone()
        .unwrap_or_else(|| args.state_dir.join("volumes"));
    let mut add = |backend: Result<Arc<dyn VolumeBackend>, String>, what: &str| match backend
        .and_then(|b| b.capacity().map(|c| (c.name, b)).map_err(|e| e.to_string()))
    {
        Ok((name, b)) => {
            pools.insert(name, b);
        }
        Err(e) => {
            tracing::warn!("no {what} volume pool: {e}");
            eprintln!("cirrus node-agent: no {what} volume pool: {e}");
        }
    };
    add(
        std::fs::create_dir_all(&dir)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                cirrus_node_agent::volumes::file::FileBackend::new(dir.clone())
                    .map(|b| Arc::new(b) as Arc<dyn VolumeBackend>)
                    .map_err(|e| e.to_string())
            }),
        "file",
    );
    if let Some(vg) = &args.lvm_vg {
        add(
            cirrus_node_agent::volumes::lvm::LvmBackend::new(
                cirrus_node_agent::volumes::lvm::LvmConfig {
                    vg: vg.clone(),
                    device_mapper: cirrus_node_agent::volumes::lvm::DeviceMapper::Auto,
                    extra_config: None,
                },
            )
            .map(|b| Arc::new(b) as Arc<dyn VolumeBackend>)
            .map_err(|e| e.to_string()),
            "lvm",
        );
    }
    pools
}

/// Host networking for `args`: Open vSwitch at `--ovsdb`, or none (with a warning) when it
/// is not reachable, for hollow nodes and with `--no-network`.
fn network(args: &NodeAgentArgs) -> Option<NetworkConfig> {
    if args.no_network || args.driver == Driver::Fake {
        return None;
    }
    match OvsSwitch::connect(&args.ovsdb) {
        Ok(switch) => Some(NetworkConfig {
            bridge: args.bridge.clone(),
            switch: Arc::new(switch),
            ports: PortsConfig::default(),
        }),
        Err(err) => {
            tracing::warn!(
                ovsdb = %args.ovsdb,
                "no host networking: Open vSwitch is not reachable ({err}); start it with hack/start-ovs.sh"
            );
            eprintln!(
                "cirrus node-agent: no host networking: Open vSwitch is not reachable at {} ({err})",
                args.ovsdb
            );
            None
        }
    }
}

/// Runs `cirrus node-agent` against `server` until SIGINT/SIGTERM.
///
/// # Errors
/// The driver can't be reached or the agent can't start.
pub async fn run(
    server: &str,
    credentials: &crate::credentials::CredentialArgs,
    args: NodeAgentArgs,
) -> anyhow::Result<()> {
    crate::up::init_tracing();
    let source = credentials.token_source(server).ok_or_else(|| {
        anyhow::anyhow!(
            "cirrus node-agent needs the credentials of its node's user (a User with \
             spec.node set to this node): OS_USERNAME and OS_PASSWORD (or CIRRUS_TOKEN)"
        )
    })?;
    let driver = driver(&args)?;
    let mut config = config(&args, server, driver);
    config.auth = Some(source);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.endpoint_tls = Some(
            cirrus_tls::server_config_from_files(cert, key)
                .context("loading the agent endpoint's TLS certificate")?,
        );
    }
    cirrus_node_agent::run(config, crate::up::shutdown_signal())
        .await
        .context("running the node agent")
}

/// This host's name, lowercased to be a valid object name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_ascii_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
