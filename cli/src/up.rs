//! `cirrus up`: the all-in-one cloud in one process (the k3s model): the embedded etcd-API
//! store (or an external etcd), the API server, and the controllers (scheduler, node
//! lifecycle), which talk to the API over loopback like any other client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use cirrus_store::embedded::{self, EmbeddedConfig, Listen};
use cirrus_store::objects::ObjectStore;
use cirrus_store::perms;
use tokio::sync::watch;

/// Arguments of `cirrus up`.
#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Directory for the embedded store's data and, under `images/`, uploaded image data.
    #[arg(long, env = "CIRRUS_DATA_DIR", default_value = "/var/lib/cirrus")]
    pub data_dir: PathBuf,
    /// Address the API listens on.
    #[arg(long, env = "CIRRUS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The URL clients reach the API at (`scheme://host[:port]`): every link and the
    /// Keystone catalog name it, whatever `Host` a request carries. Default: the address the
    /// API listens on, unless that is a wildcard address (then the request's `Host`).
    #[arg(long, env = "CIRRUS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Serve the API and the local node agent's endpoint over TLS, with certificates of the
    /// cloud's own CA, made once in DATA_DIR/tls: `ca.pem` there is what clients trust
    /// (`openrc` sets OS_CACERT to it, `clouds.yaml` names it as `cacert`). Every start
    /// issues a new server certificate for the listen address (localhost, 127.0.0.1, ::1 and
    /// this host's name when it is a wildcard) and the host of `--public-url`.
    #[arg(long)]
    pub tls: bool,
    /// Use these etcd endpoints (comma-separated URLs) instead of the embedded store.
    #[arg(long, env = "CIRRUS_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Also serve the embedded store's etcd v3 API on this TCP address (port 0 picks a free
    /// one), for controllers in other processes or `etcdctl endpoint status`. Off by default:
    /// the store has no authentication, so anyone who can reach the port reads every object.
    /// The store is always served on DATA_DIR/store/etcd.sock (mode 0600, in a 0700
    /// directory); DATA_DIR/etcd-endpoint records this TCP endpoint when given, else the
    /// socket's `unix://` URL.
    #[arg(long, env = "CIRRUS_STORE_LISTEN")]
    pub store_listen: Option<SocketAddr>,
    /// Seconds between compactions of the embedded store's history; each keeps the
    /// revisions of the last one to two intervals (the Kubernetes API server's policy and
    /// default). 0 never compacts.
    #[arg(long, env = "CIRRUS_STORE_COMPACTION_INTERVAL", default_value_t = 300)]
    pub store_compaction_interval_secs: u64,
    /// Seconds between BOOKMARK events on API watches.
    #[arg(long, default_value_t = 10)]
    pub bookmark_interval_secs: u64,
    /// Don't run the controllers (scheduler, node lifecycle) in this process.
    #[arg(long)]
    pub no_controllers: bool,
    /// The local node agent's hypervisor: `libvirt` (default; skipped with a warning when
    /// libvirtd is not reachable), `fake` (a hollow node) or `none`.
    #[arg(long, default_value = "libvirt", value_parser = ["libvirt", "fake", "none"])]
    pub node_agent: String,
    /// The local node's name (default: the host name).
    #[arg(long, env = "CIRRUS_NODE_NAME")]
    pub node_name: Option<String>,
    /// The local node's Open vSwitch integration bridge.
    #[arg(long, default_value = "br-int")]
    pub bridge: String,
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the control plane until SIGINT or SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    init_tracing();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the API to {}", args.listen))?;
    prepare_data_dir(&args.data_dir)?;
    let api_addr = listener.local_addr()?;
    let tls = args
        .tls
        .then(|| {
            TlsSetup::new(
                &args.data_dir.join(TLS_DIR),
                api_addr,
                args.public_url.as_deref(),
            )
        })
        .transpose()?;
    let (endpoints, embedded) = if args.etcd_endpoints.is_empty() {
        let server = embedded::start(EmbeddedConfig {
            extra_listen: args.store_listen.map(Listen::Tcp).into_iter().collect(),
            progress_notify_interval: Duration::from_secs(10),
            compaction_interval: (args.store_compaction_interval_secs > 0)
                .then(|| Duration::from_secs(args.store_compaction_interval_secs)),
            ..EmbeddedConfig::private(args.data_dir.join("store"))
        })
        .await
        .context("starting the embedded store")?;
        // In-process clients use the socket; the file tells other processes where to go:
        // the opt-in TCP endpoint (listed after the socket) when there is one.
        let all = server.endpoints();
        let advertised = all.last().cloned().unwrap_or_else(|| server.endpoint());
        perms::write_private_file(
            &args.data_dir.join(ENDPOINT_FILE),
            format!("{advertised}\n").as_bytes(),
        )
        .context("recording the store endpoint")?;
        (vec![server.endpoint()], Some((server, all)))
    } else {
        (args.etcd_endpoints.clone(), None)
    };
    let store = ObjectStore::connect(&endpoints)
        .await
        .with_context(|| format!("connecting to the store at {}", endpoints.join(",")))?;
    store
        .current_revision()
        .await
        .with_context(|| format!("reading from the store at {}", endpoints.join(",")))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let api_url = format!("{scheme}://{api_addr}");
    let identity = crate::up_identity::identity(&args.data_dir)?;
    let cacert = tls.as_ref().map(|tls| tls.ca_path.clone());
    cirrus_api::identity::bootstrap::migrate_project_admins(&store, &identity)
        .await
        .context("migrating the project admins of the previous release")?;
    crate::up_identity::bootstrap_admin(&store, &args.data_dir, &api_url, cacert.as_deref())
        .await
        .context("bootstrapping the admin user")?;
    let controllers_user =
        crate::up_identity::service_user(&store, crate::up_identity::CONTROLLERS_USER, None)
            .await
            .context("creating the controllers' user")?;
    let mut state = cirrus_api::ApiState::new(store.clone()).with_identity(identity.clone());
    state.bookmark_interval = Duration::from_secs(args.bookmark_interval_secs.max(1));
    // Links and the catalog name the configured address, whatever Host a client sends.
    let public_url = match &args.public_url {
        Some(url) => Some(url.clone()),
        None if api_addr.ip().is_unspecified() => None,
        None => Some(api_url.clone()),
    };
    state.public_url = public_url
        .map(|url| cirrus_api::public_endpoint::PublicEndpoint::parse(&url))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let images = args.data_dir.join("images");
    let blobs = cirrus_api::blobs::BlobStore::open(&images)
        .with_context(|| format!("opening the image blob directory {}", images.display()))?;
    state.blobs = Some(std::sync::Arc::new(blobs));

    // Controllers stop first (releasing their lease through the API), then the API.
    let (stop_api_tx, stop_api) = watch::channel(false);
    let (stop_tx, stop) = watch::channel(false);
    let mut api = tokio::spawn(cirrus_api::serve(
        listener,
        tls.as_ref().map(|tls| tls.api.clone()),
        state,
        stopped(stop_api),
    ));
    let controllers = (!args.no_controllers).then(|| {
        let client = cirrus_client::Client::new(api_url.clone()).with_token_source(
            crate::up_identity::MintedTokens::new(identity.clone(), controllers_user.clone()),
        );
        tokio::spawn(crate::controllers::run_all(client, None, stop.clone()))
    });
    let agent = match args.node_agent.as_str() {
        "none" => None,
        driver => {
            let agent_args = crate::node_agent::NodeAgentArgs {
                node: args.node_name.clone(),
                driver: if driver == "fake" {
                    crate::node_agent::Driver::Fake
                } else {
                    crate::node_agent::Driver::Libvirt
                },
                libvirt_uri: "qemu:///system".into(),
                state_dir: args.data_dir.join("node"),
                endpoint_listen: "127.0.0.1:0".parse().expect("a valid address"),
                // The in-process agent gets its certificate in memory (TlsSetup).
                tls_cert: None,
                tls_key: None,
                bridge: args.bridge.clone(),
                ovsdb: "unix:/var/run/openvswitch/db.sock".into(),
                no_network: false,
                volume_dir: None,
                lvm_vg: None,
            };
            match crate::node_agent::driver(&agent_args) {
                Ok(hypervisor) => {
                    let mut config = crate::node_agent::config(&agent_args, &api_url, hypervisor);
                    let node_user = crate::up_identity::service_user(
                        &store,
                        &format!("node-{}", config.node_name),
                        Some(&config.node_name),
                    )
                    .await
                    .context("creating the node agent's user")?;
                    config.auth = Some(crate::up_identity::MintedTokens::new(
                        identity.clone(),
                        node_user,
                    ));
                    config.endpoint_tls = tls.as_ref().map(|tls| tls.agent.clone());
                    Some(tokio::spawn(cirrus_node_agent::run(
                        config,
                        stopped(stop.clone()),
                    )))
                }
                Err(err) => {
                    tracing::warn!("no local node agent: {err:#}");
                    eprintln!("cirrus up: no local node agent: {err:#}");
                    None
                }
            }
        }
    };
    let served = match &embedded {
        Some((_, all)) => all.join(","),
        None => endpoints.join(","),
    };
    tracing::info!(api = %api_url, store = %served, "cirrus up");
    println!("cirrus up: API on {api_url}, store at {served}");

    tokio::select! {
        _ = shutdown_signal() => {}
        result = &mut api => {
            result.context("the API task failed")?.context("serving the API")?;
        }
    }
    let _ = stop_tx.send(true);
    if let Some(controllers) = controllers {
        let _ = tokio::time::timeout(Duration::from_secs(5), controllers).await;
    }
    if let Some(agent) = agent {
        let _ = tokio::time::timeout(Duration::from_secs(5), agent).await;
    }
    let _ = stop_api_tx.send(true);
    if !api.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(5), api).await;
    }
    if let Some((server, _)) = embedded {
        server.shutdown().await;
    }
    Ok(())
}

/// The cloud's CA and server certificates, inside the data dir.
pub const TLS_DIR: &str = "tls";

/// What `--tls` sets up: the CA (trusted by this process's own clients), the API's server
/// configuration and the local node agent endpoint's.
struct TlsSetup {
    ca_path: PathBuf,
    api: cirrus_tls::ServerConfig,
    agent: cirrus_tls::ServerConfig,
}

impl TlsSetup {
    fn new(dir: &Path, api_addr: SocketAddr, public_url: Option<&str>) -> anyhow::Result<Self> {
        let authority = cirrus_tls::Authority::open_or_create(dir)
            .with_context(|| format!("opening the cloud's CA in {}", dir.display()))?;
        cirrus_tls::trust_pem(authority.cert_pem().as_bytes())?;
        let hosts = api_hosts(api_addr, public_url)?;
        let (cert, key) = authority
            .write_server("api", &hosts)
            .context("issuing the API's certificate")?;
        let api = cirrus_tls::server_config_from_files(&cert, &key)?;
        // The local agent endpoint listens on loopback only.
        let issued = authority.issue_server("node-agent", &["127.0.0.1".into()])?;
        let agent = cirrus_tls::server_config(&issued.cert_pem, &issued.key_pem)?;
        tracing::info!(ca = %authority.cert_path().display(), ?hosts, "serving TLS");
        Ok(Self {
            ca_path: authority.cert_path(),
            api,
            agent,
        })
    }
}

/// The names and addresses the API's certificate covers: the listen address (for a wildcard
/// one, loopback and this host's name) and the host of the public URL.
fn api_hosts(api_addr: SocketAddr, public_url: Option<&str>) -> anyhow::Result<Vec<String>> {
    let mut hosts = vec!["localhost".to_string()];
    if api_addr.ip().is_unspecified() {
        hosts.extend([
            "127.0.0.1".into(),
            "::1".into(),
            crate::node_agent::host_name(),
        ]);
    } else {
        hosts.push(api_addr.ip().to_string());
    }
    if let Some(url) = public_url {
        let parsed = reqwest::Url::parse(url)
            .with_context(|| format!("--public-url {url:?} is not a URL"))?;
        let host = parsed
            .host_str()
            .filter(|host| !host.is_empty())
            .with_context(|| format!("--public-url {url:?} names no host"))?;
        // An IPv6 literal comes back bracketed, as URLs write it.
        hosts.push(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        );
    }
    hosts.sort();
    hosts.dedup();
    Ok(hosts)
}

/// Where `cirrus up` records the store endpoint for other processes, inside the data dir.
pub const ENDPOINT_FILE: &str = "etcd-endpoint";

/// Mode of the data directory: others may traverse it (QEMU, running as `libvirt-qemu`, must
/// reach the node agent's disks under `node/`) but not list it; everything secret in it is
/// private on its own (`store/`, `keys/`, `images/` 0700; `etcd-endpoint`, `openrc`,
/// `clouds.yaml` 0600).
pub const DATA_DIR_MODE: u32 = 0o711;

/// Creates the data directory and its private subdirectories with their modes whatever the
/// umask, and fixes them when an earlier start left them looser. (`store/` is made 0700 by
/// the embedded store itself.)
fn prepare_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    perms::ensure_dir(data_dir, DATA_DIR_MODE)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    for private in ["keys", "images"] {
        let dir = data_dir.join(private);
        perms::ensure_dir(&dir, perms::PRIVATE_DIR)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_api_certificate_covers_the_listen_address_and_the_public_host() {
        let hosts = api_hosts(
            "10.0.0.5:8080".parse().unwrap(),
            Some("https://cloud.example.org:443"),
        )
        .unwrap();
        assert_eq!(hosts, ["10.0.0.5", "cloud.example.org", "localhost"]);
        let wildcard = api_hosts(
            "0.0.0.0:8080".parse().unwrap(),
            Some("https://[2001:db8::1]/"),
        )
        .unwrap();
        assert!(
            wildcard.contains(&"127.0.0.1".to_string()) && wildcard.contains(&"::1".to_string())
        );
        assert!(
            wildcard.contains(&"2001:db8::1".to_string()),
            "{wildcard:?}"
        );
        let err = api_hosts("127.0.0.1:1".parse().unwrap(), Some("not a url")).unwrap_err();
        assert!(err.to_string().contains("--public-url"), "{err}");
    }

    #[test]
    fn data_dir_modes_are_set_and_fixed() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        prepare_data_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o711);
        assert_eq!(mode(&data.join("keys")), 0o700);
        assert_eq!(mode(&data.join("images")), 0o700);
        // Left loose by an older version: fixed on the next start, contents kept.
        for (dir, loose) in [(data.clone(), 0o777), (data.join("keys"), 0o755)] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(loose)).unwrap();
        }
        std::fs::write(data.join("images/keep"), b"x").unwrap();
        prepare_data_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o711);
        assert_eq!(mode(&data.join("keys")), 0o700);
        assert_eq!(std::fs::read(data.join("images/keep")).unwrap(), b"x");
    }
}
