//! `cirrus controllers`: the control-plane controllers (scheduler, node lifecycle, network,
//! volume) in one process, behind leader election, talking to the API like any client.
//! `cirrus up` runs the same set in-process.

use std::time::Duration;

use cirrus_client::Client;
use cirrus_controllers::runtime::{LeaderConfig, LeaderElector};
use cirrus_controllers::scheduler::SchedulerConfig;
use tokio::sync::watch;

/// Arguments of `cirrus controllers`.
#[derive(clap::Args, Debug, Clone)]
pub struct ControllersArgs {
    /// This replica's identity in leader election (default: host name and process id).
    #[arg(long)]
    pub identity: Option<String>,
}

/// Name of the Lease the controller replicas compete for.
pub use cirrus_crds::conventions::CONTROLLERS_LEASE as LEADER_LEASE;

/// Runs `cirrus controllers` against `server` until SIGINT/SIGTERM.
pub async fn run(
    server: &str,
    credentials: &crate::credentials::CredentialArgs,
    args: ControllersArgs,
) -> anyhow::Result<()> {
    crate::up::init_tracing();
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        crate::up::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let source = credentials.token_source(server).ok_or_else(|| {
        anyhow::anyhow!(
            "cirrus controllers needs credentials of a cloud admin: OS_USERNAME, OS_PASSWORD and \
             OS_PROJECT_NAME=admin (or CIRRUS_TOKEN)"
        )
    })?;
    let client = Client::new(server).with_token_source(source);
    run_all(client, args.identity, stop).await;
    Ok(())
}

/// Runs every controller until `stop` turns true; only the elected replica acts.
pub async fn run_all(client: Client, identity: Option<String>, stop: watch::Receiver<bool>) {
    let identity = identity.unwrap_or_else(default_identity);
    let elector = LeaderElector::new(client.clone(), LeaderConfig::new(LEADER_LEASE, identity));
    let gate = elector.subscribe();
    let stopped = |mut stop: watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let elector_task = tokio::spawn(elector.run(stopped(stop.clone())));
    let scheduler = cirrus_controllers::scheduler::controller::run(
        client.clone(),
        SchedulerConfig::default(),
        gate.clone(),
        stopped(stop.clone()),
    );
    let lifecycle =
        cirrus_controllers::nodelifecycle::run(client.clone(), gate.clone(), stopped(stop.clone()));
    let network = cirrus_controllers::network::run(
        client.clone(),
        cirrus_controllers::network::NetworkConfig::default(),
        gate.clone(),
        stopped(stop.clone()),
    );
    let volume = cirrus_controllers::volume::run(
        client,
        cirrus_controllers::volume::VolumeConfig::default(),
        gate,
        stopped(stop.clone()),
    );
    tokio::join!(scheduler, lifecycle, network, volume);
    // Give the elector a moment to release the lease so a successor takes over at once.
    let _ = tokio::time::timeout(Duration::from_secs(2), elector_task).await;
}

/// `hostname-pid`, unique per process on a host.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}-{}", std::process::id())
}
