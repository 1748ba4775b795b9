//! Named network namespaces (the `ip netns` kind, bind-mounted under `/run/netns`): create,
//! delete, list, run a command inside one, move a link into one and configure it, and open a
//! TCP listener inside one.
//!
//! The DHCP manager keeps one namespace per network (`qdhcp-<network uid>`); the metadata
//! proxy listens inside it. Everything goes through the `ip` tool except entering a namespace
//! for a socket, which a short-lived thread does with `setns(2)` so the agent's own threads
//! never change namespace.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ipnet::IpNet;
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// Where `ip netns` keeps its namespace handles.
pub const NETNS_DIR: &str = "/run/netns";

/// Why a namespace operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The name cannot be a namespace name (empty, too long, or with `/`).
    #[error("{0:?} is not a usable namespace name")]
    InvalidName(String),
    /// The tool could not be started at all.
    #[error("cannot run {command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// The tool ran and failed.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The namespace handle could not be opened (the namespace does not exist).
    #[error("cannot open namespace {name:?}: {source}")]
    Open {
        /// The namespace.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// `setns(2)` into the namespace failed.
    #[error("cannot enter namespace {name:?}: {source}")]
    Enter {
        /// The namespace.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// Binding the socket inside the namespace failed.
    #[error("cannot listen on {addr} in namespace {name:?}: {source}")]
    Bind {
        /// The namespace.
        name: String,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Output of `ip` could not be understood.
    #[error("unexpected output of {command}: {detail}")]
    Parse {
        /// The command line.
        command: String,
        /// What was wrong.
        detail: String,
    },
}

/// Result of namespace operations.
pub type Result<T> = std::result::Result<T, NetnsError>;

/// The handle file of namespace `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 200 || name.contains('/') || name.starts_with('.') {
        return Err(NetnsError::InvalidName(name.to_string()));
    }
    Ok(())
}

/// Runs `program args`, failing with its stderr on a non-zero exit.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<Output> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| NetnsError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(NetnsError::Command {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output)
}

/// True when namespace `name` exists.
pub fn exists(name: &str) -> bool {
    check_name(name).is_ok() && path(name).exists()
}

/// Creates namespace `name` with its loopback up; `Ok(false)` when it already existed.
#[tracing::instrument(level = "debug")]
pub fn create(name: &str) -> Result<bool> {
    check_name(name)?;
    let created = if exists(name) {
        false
    } else {
        match run("ip", &["netns", "add", name]) {
            Ok(_) => true,
            // Lost a race with another creator: fine, it exists now.
            Err(_) if exists(name) => false,
            Err(e) => return Err(e),
        }
    };
    exec(name, &["ip", "link", "set", "lo", "up"])?;
    Ok(created)
}

/// Deletes namespace `name` (its links go with it); `Ok(false)` when it did not exist.
#[tracing::instrument(level = "debug")]
pub fn delete(name: &str) -> Result<bool> {
    check_name(name)?;
    if !exists(name) {
        return Ok(false);
    }
    run("ip", &["netns", "delete", name])?;
    Ok(true)
}

/// Names of all namespaces under [`NETNS_DIR`], sorted.
pub fn list() -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(NetnsError::Open {
                name: NETNS_DIR.into(),
                source,
            });
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// A command that runs `program args` inside namespace `name` (for callers that spawn).
pub fn command(name: &str, program: &str, args: &[&str]) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", name, program]).args(args);
    command
}

/// Runs `argv` inside namespace `name` and waits, failing on a non-zero exit.
pub fn exec(name: &str, argv: &[&str]) -> Result<Output> {
    check_name(name)?;
    let mut args = vec!["netns", "exec", name];
    args.extend_from_slice(argv);
    run("ip", &args)
}

/// True when `link` exists in namespace `ns` (`None`: the agent's own namespace).
pub fn link_exists(ns: Option<&str>, link: &str) -> bool {
    let argv = ["ip", "link", "show", "dev", link];
    match ns {
        Some(ns) => exists(ns) && exec(ns, &argv).is_ok(),
        None => run("ip", &argv[1..]).is_ok(),
    }
}

/// Moves `link` from the agent's namespace into namespace `ns`.
#[tracing::instrument(level = "debug")]
pub fn move_link(link: &str, ns: &str) -> Result<()> {
    check_name(ns)?;
    run("ip", &["link", "set", "dev", link, "netns", ns])?;
    Ok(())
}

/// How a link inside a namespace should look.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkConfig {
    /// MAC address to set.
    pub mac: Option<String>,
    /// MTU to set.
    pub mtu: Option<u32>,
    /// Exactly these global addresses (with prefix length); others are removed.
    pub addresses: Vec<IpNet>,
}

/// Gives `link` in namespace `ns` the MAC, MTU and exactly the addresses of `config`, and
/// brings it up. Idempotent: only differences are applied to addresses.
#[tracing::instrument(level = "debug", skip(config))]
pub fn configure_link(ns: &str, link: &str, config: &LinkConfig) -> Result<()> {
    if let Some(mac) = &config.mac {
        exec(ns, &["ip", "link", "set", "dev", link, "address", mac])?;
    }
    if let Some(mtu) = config.mtu {
        exec(
            ns,
            &["ip", "link", "set", "dev", link, "mtu", &mtu.to_string()],
        )?;
    }
    let current = addresses(ns, link)?;
    for stale in current.iter().filter(|a| !config.addresses.contains(a)) {
        exec(ns, &["ip", "addr", "del", &stale.to_string(), "dev", link])?;
    }
    for wanted in config.addresses.iter().filter(|a| !current.contains(a)) {
        exec(
            ns,
            &["ip", "addr", "replace", &wanted.to_string(), "dev", link],
        )?;
    }
    exec(ns, &["ip", "link", "set", "dev", link, "up"])?;
    Ok(())
}

/// The global-scope addresses of `link` in namespace `ns`.
pub fn addresses(ns: &str, link: &str) -> Result<Vec<IpNet>> {
    let output = exec(ns, &["ip", "-j", "addr", "show", "dev", link])?;
    parse_addresses(&output.stdout).map_err(|detail| NetnsError::Parse {
        command: format!("ip -j addr show dev {link}"),
        detail,
    })
}

/// Global addresses from `ip -j addr show` output.
fn parse_addresses(json: &[u8]) -> std::result::Result<Vec<IpNet>, String> {
    let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for link in value.as_array().into_iter().flatten() {
        for info in link["addr_info"].as_array().into_iter().flatten() {
            if info["scope"].as_str() != Some("global") {
                continue;
            }
            let (Some(local), Some(prefix)) = (info["local"].as_str(), info["prefixlen"].as_u64())
            else {
                continue;
            };
            let ip: IpAddr = local.parse().map_err(|e| format!("{local:?}: {e}"))?;
            let net = IpNet::new(ip, prefix as u8).map_err(|e| e.to_string())?;
            out.push(net);
        }
    }
    Ok(out)
}

/// Opens a TCP listener on `addr` inside namespace `name`.
///
/// A short-lived thread enters the namespace (`setns(2)`), binds, and ends; the socket stays
/// in the namespace it was created in, so the caller (any thread, any runtime) accepts
/// connections arriving there. The listener is blocking; call `set_nonblocking` before
/// handing it to tokio.
#[tracing::instrument(level = "debug")]
pub fn tcp_listener_in(name: &str, addr: SocketAddr) -> Result<TcpListener> {
    check_name(name)?;
    let name = name.to_string();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let handle =
                    std::fs::File::open(path(&name)).map_err(|source| NetnsError::Open {
                        name: name.clone(),
                        source,
                    })?;
                move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&handle),
                    Some(LinkNameSpaceType::Network),
                )
                .map_err(|e| NetnsError::Enter {
                    name: name.clone(),
                    source: e.into(),
                })?;
                TcpListener::bind(addr).map_err(|source| NetnsError::Bind {
                    name: name.clone(),
                    addr,
                    source,
                })
            })
            .join()
            .expect("the namespace thread does not panic")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_global_addresses_only() {
        let json = br#"[{"ifname":"dh1","addr_info":[
            {"family":"inet","local":"10.0.0.2","prefixlen":24,"scope":"global"},
            {"family":"inet","local":"169.254.169.254","prefixlen":32,"scope":"global"},
            {"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"}]}]"#;
        let got = parse_addresses(json).unwrap();
        assert_eq!(
            got,
            vec![
                "10.0.0.2/24".parse::<IpNet>().unwrap(),
                "169.254.169.254/32".parse().unwrap()
            ]
        );
    }

    #[test]
    fn refuses_names_that_escape_the_directory() {
        assert!(matches!(create("../etc"), Err(NetnsError::InvalidName(_))));
        assert!(matches!(delete(""), Err(NetnsError::InvalidName(_))));
        assert!(!exists("a/b"));
    }
}
