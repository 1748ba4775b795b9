//! Transport security for Cirrus.
//!
//! A cloud that carries tokens and passwords must be able to carry them encrypted. This crate
//! is the one place that knows how:
//!
//! - [`Authority`]: the cloud's own certificate authority (`cirrus up --tls` makes one under its
//!   data directory and keeps it across restarts) issuing server certificates for the API and
//!   the node agents' endpoints;
//! - [`serve`]: serves an axum router over TLS (HTTP/1.1 and HTTP/2 by ALPN, upgrades for
//!   websockets, the peer address as `ConnectInfo`, graceful shutdown);
//! - [`http_client`]: the one way Cirrus builds an HTTP client, trusting the system's roots plus
//!   the cloud's CA named by `CIRRUS_CACERT` / `OS_CACERT` or registered with [`trust_pem`].
//!
//! Keys use ECDSA P-256 (rcgen's default); the crypto is rustls on aws-lc-rs.

mod authority;
mod client;
mod server;

pub use authority::{Authority, IssuedCert};
pub use client::{
    CACERT_ENV, OS_CACERT_ENV, default_client, http_client, trust_pem, trusted_roots,
};
pub use server::{ServerConfig, serve, server_config, server_config_from_files};

/// What can go wrong making, reading or using certificates.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Generating or signing a certificate failed.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file held no certificate or key, or an unreadable one.
    #[error("{what}: {reason}")]
    Pem {
        /// What was being read (a file name or "certificate").
        what: String,
        /// Why it could not be used.
        reason: String,
    },
    /// rustls refused the certificate and key pair.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}
