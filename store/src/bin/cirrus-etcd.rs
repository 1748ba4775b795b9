//! `cirrus-etcd`: the embedded etcd-API store as a standalone server.
//!
//! ```text
//! cirrus-etcd [--data-dir DIR] [--listen 127.0.0.1:2379 | --listen unix:/path]
//!             [--also-listen ADDR|unix:PATH]... [--progress-notify-interval-ms N]
//!             [--compaction-interval-secs N] [--compaction-step N]
//! ```
//! Without `--data-dir` the store is in memory (the directory is made 0700 and its files
//! 0600). A `unix:` socket is created 0600; a TCP address is open to everyone who can reach
//! it. History is compacted every `--compaction-interval-secs` (default 300, 0 = never) in
//! steps of `--compaction-step` rows. Once the listeners are bound it prints
//! `listening on <endpoint>` on stdout (tests wait for that line), then serves until
//! SIGINT/SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use cirrus_store::embedded::{self, EmbeddedConfig, Listen};
use tokio::signal::unix::{SignalKind, signal};

fn parse_args() -> anyhow::Result<EmbeddedConfig> {
    let mut config = EmbeddedConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = || -> anyhow::Result<String> {
            inline
                .clone()
                .or_else(|| args.next())
                .with_context(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--data-dir" => config.data_dir = Some(PathBuf::from(value()?)),
            "--listen" => config.listen = parse_listen(&value()?)?,
            "--also-listen" => config.extra_listen.push(parse_listen(&value()?)?),
            "--progress-notify-interval-ms" => {
                config.progress_notify_interval =
                    Duration::from_millis(value()?.parse().context("bad interval")?);
            }
            "--compaction-interval-secs" => {
                let secs: u64 = value()?.parse().context("bad compaction interval")?;
                config.compaction_interval = (secs > 0).then(|| Duration::from_secs(secs));
            }
            "--compaction-step" => {
                config.compaction_step = value()?.parse().context("bad compaction step")?;
            }
            "-h" | "--help" => {
                println!(
                    "usage: cirrus-etcd [--data-dir DIR] [--listen ADDR|unix:PATH] \
                     [--also-listen ADDR|unix:PATH]... [--progress-notify-interval-ms N] \
                     [--compaction-interval-secs N] [--compaction-step N]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(config)
}

/// `unix:PATH` / `unix://PATH` or a TCP address (`http://` optional).
fn parse_listen(v: &str) -> anyhow::Result<Listen> {
    Ok(match cirrus_store::connect::unix_socket_path(v) {
        Some(path) => Listen::Unix(path),
        None => Listen::Tcp(
            v.trim_start_matches("http://")
                .parse()
                .with_context(|| format!("bad listen address {v}"))?,
        ),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = parse_args()?;
    let server = embedded::start(config)
        .await
        .context("starting embedded etcd")?;
    println!("listening on {}", server.endpoint());
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    server.shutdown().await;
    Ok(())
}
