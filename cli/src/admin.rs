//! `cirrus admin`: operator commands that work on a data directory rather than through the
//! API.
//!
//! `cirrus admin rotate-keys --data-dir DIR` rotates the token key ring in `DIR/keys` (the
//! one `cirrus up` loads): a new primary key seals new tokens, the previous keys stay in the
//! ring (up to `--keep` keys in all) so that outstanding tokens keep validating until they
//! expire. A running `cirrus up` on that directory re-reads the ring every 10 s
//! (`cirrus_api::identity::key_reload`), so no restart and no signal is needed. Rotating
//! more often than `--keep - 1` times per token lifetime (1 h) drops keys that live tokens
//! were sealed with: those tokens stop validating (their holders log in again).
//!
//! `cirrus admin issue-certificate NAME --host H... --data-dir DIR` issues a server
//! certificate from the cloud's CA in `DIR/tls` (the one `cirrus up --tls` made) for a
//! process started on its own — a node agent on another host serving its endpoint with
//! `--tls-cert DIR/tls/NAME.pem --tls-key DIR/tls/NAME-key.pem` (copied there).

use std::path::PathBuf;

use anyhow::Context;
use cirrus_auth::KeyRing;
use cirrus_auth::keys::DEFAULT_KEEP;

/// Arguments of `cirrus admin`.
#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(clap::Subcommand, Debug)]
enum AdminCommand {
    /// Rotate the token keys in DATA_DIR/keys, keeping the previous ones so outstanding
    /// tokens stay valid; a running `cirrus up` picks the new ring up within 10 s.
    RotateKeys(RotateKeysArgs),
    /// Issue a server certificate from the cloud's CA in DATA_DIR/tls for the given hosts:
    /// writes NAME.pem and NAME-key.pem (0600) there, e.g. for `cirrus node-agent --tls-cert`.
    IssueCertificate(IssueCertificateArgs),
}

/// Arguments of `cirrus admin issue-certificate`.
#[derive(clap::Args, Debug)]
struct IssueCertificateArgs {
    /// The certificate's name: its common name and the files' base name (letters, digits,
    /// `-`, `.`, `_`).
    #[arg(value_parser = parse_cert_name)]
    name: String,
    /// A DNS name or IP address the server is reached at (repeatable; at least one).
    #[arg(long = "host", required = true)]
    hosts: Vec<String>,
    /// The data directory of `cirrus up` (the CA is in `tls/` under it; made when missing).
    #[arg(long, env = "CIRRUS_DATA_DIR", default_value = "/var/lib/cirrus")]
    data_dir: PathBuf,
}

fn parse_cert_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && !text.starts_with('.')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if ok {
        Ok(text.to_string())
    } else {
        Err("letters, digits, '-', '.' and '_' only, not starting with '.' (it names files)".into())
    }
}

/// Arguments of `cirrus admin rotate-keys`.
#[derive(clap::Args, Debug)]
struct RotateKeysArgs {
    /// The data directory of `cirrus up` (its token keys are in `keys/` under it).
    #[arg(long, env = "CIRRUS_DATA_DIR", default_value = "/var/lib/cirrus")]
    data_dir: PathBuf,
    /// Keys kept in the ring, the new primary included (at least 2, so that the tokens
    /// sealed with the current primary stay valid).
    #[arg(long, default_value_t = DEFAULT_KEEP, value_parser = parse_keep)]
    keep: usize,
}

fn parse_keep(text: &str) -> Result<usize, String> {
    let keep: usize = text.parse().map_err(|e| format!("{e}"))?;
    if keep < 2 {
        return Err(
            "at least 2: with 1 every token sealed with the current key would die at once".into(),
        );
    }
    Ok(keep)
}

/// Runs `cirrus admin ...`.
pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::RotateKeys(args) => rotate_keys(&args),
        AdminCommand::IssueCertificate(args) => issue_certificate(&args),
    }
}

fn issue_certificate(args: &IssueCertificateArgs) -> anyhow::Result<()> {
    let dir = args.data_dir.join(crate::up::TLS_DIR);
    let authority = cirrus_tls::Authority::open_or_create(&dir)
        .with_context(|| format!("opening the cloud's CA in {}", dir.display()))?;
    let (cert, key) = authority
        .write_server(&args.name, &args.hosts)
        .with_context(|| format!("issuing a certificate for {:?}", args.hosts))?;
    println!(
        "issued {} (key {}) for {:?}, signed by {}",
        cert.display(),
        key.display(),
        args.hosts,
        authority.cert_path().display()
    );
    Ok(())
}

fn rotate_keys(args: &RotateKeysArgs) -> anyhow::Result<()> {
    let dir = args.data_dir.join("keys");
    let before = KeyRing::load(&dir)
        .with_context(|| format!("reading the token keys in {}", dir.display()))?
        .key_ids();
    let ring = KeyRing::rotate_in(&dir, args.keep)
        .with_context(|| format!("rotating the token keys in {}", dir.display()))?;
    let kept = ring.key_ids();
    println!(
        "rotated the token keys in {}: new primary key {}, keys {kept:?}",
        dir.display(),
        ring.primary_id()
    );
    let dropped: Vec<u32> = before.into_iter().filter(|id| !kept.contains(id)).collect();
    if !dropped.is_empty() {
        println!("tokens sealed with key(s) {dropped:?} no longer validate");
    }
    println!(
        "a running `cirrus up` on {} switches to the new key within {} s",
        args.data_dir.display(),
        cirrus_api::identity::key_reload::DEFAULT_INTERVAL.as_secs()
    );
    Ok(())
}
