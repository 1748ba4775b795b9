//! The one way Cirrus builds an HTTP client: the system's trust roots plus the cloud's CA.

use std::sync::{Mutex, OnceLock};

use crate::TlsError;

/// Names a PEM file of CA certificates every Cirrus client trusts besides the system's roots.
pub const CACERT_ENV: &str = "CIRRUS_CACERT";
/// The OpenStack clients' name for the same file (`openrc` sets it); used when
/// [`CACERT_ENV`] is not set, so one `source openrc` serves both CLIs.
pub const OS_CACERT_ENV: &str = "OS_CACERT";

/// Roots registered in this process with [`trust_pem`].
fn registered() -> &'static Mutex<Vec<reqwest::Certificate>> {
    static ROOTS: OnceLock<Mutex<Vec<reqwest::Certificate>>> = OnceLock::new();
    ROOTS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Parses every certificate of a PEM bundle.
fn parse_bundle(what: &str, pem: &[u8]) -> Result<Vec<reqwest::Certificate>, TlsError> {
    let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| TlsError::Pem {
        what: what.to_string(),
        reason: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: what.to_string(),
            reason: "holds no PEM certificate".into(),
        });
    }
    Ok(certs)
}

/// The roots named by the environment, read once per process. An unreadable file is
/// logged once and trusted as nothing, so a connection fails verification and says why
/// (instead of the client silently trusting less or panicking at construction).
fn from_environment() -> &'static [reqwest::Certificate] {
    static ROOTS: OnceLock<Vec<reqwest::Certificate>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let Some(path) = std::env::var_os(CACERT_ENV)
            .or_else(|| std::env::var_os(OS_CACERT_ENV))
            .filter(|p| !p.is_empty())
        else {
            return Vec::new();
        };
        let path = std::path::PathBuf::from(path);
        let loaded = std::fs::read(&path)
            .map_err(|source| TlsError::File {
                path: path.clone(),
                source,
            })
            .and_then(|pem| parse_bundle(&path.display().to_string(), &pem));
        match loaded {
            Ok(certs) => certs,
            Err(e) => {
                tracing::error!(error = %e, "the CA certificate file in {CACERT_ENV}/{OS_CACERT_ENV} is unusable");
                Vec::new()
            }
        }
    })
}

/// Trusts the CA certificates of `pem` in every client this process builds from now on
/// (`cirrus up --tls` registers its own CA, so its controllers and node agent reach its API).
pub fn trust_pem(pem: &[u8]) -> Result<(), TlsError> {
    let certs = parse_bundle("CA certificate", pem)?;
    registered()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .extend(certs);
    Ok(())
}

/// Every root trusted besides the system's: the environment's and the registered ones.
pub fn trusted_roots() -> Vec<reqwest::Certificate> {
    let mut roots = from_environment().to_vec();
    roots.extend(
        registered()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .cloned(),
    );
    roots
}

/// A client builder trusting the system's roots and the cloud's CA ([`trusted_roots`]);
/// callers add their timeouts and build it.
pub fn http_client() -> reqwest::ClientBuilder {
    trusted_roots()
        .into_iter()
        .fold(reqwest::Client::builder(), |builder, root| {
            builder.add_root_certificate(root)
        })
}

/// [`http_client`] with no further settings: what `reqwest::Client::new()` gives, plus the
/// cloud's CA. Panics only where `reqwest::Client::new()` would (the TLS backend failing to
/// initialize).
pub fn default_client() -> reqwest::Client {
    http_client()
        .build()
        .expect("the TLS backend initializes, as reqwest::Client::new assumes")
}
