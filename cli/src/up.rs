//! `cirrus up`: the all-in-one control plane in one process.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of `cirrus up`.
#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Directory for the embedded store's data.
    #[arg(long, env = "CIRRUS_DATA_DIR", default_value = "/var/lib/cirrus")]
    pub data_dir: PathBuf,
    /// Address the API listens on.
    #[arg(long, env = "CIRRUS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Use these etcd endpoints (comma-separated URLs) instead of the embedded store.
    #[arg(long, env = "CIRRUS_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
}

/// Runs the control plane until interrupted.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("cirrus up: not wired yet")
}
