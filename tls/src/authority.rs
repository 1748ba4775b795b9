//! The cloud's certificate authority: one CA key pair kept in a directory (the key 0600),
//! issuing short-lived server certificates for the names and addresses a server answers on.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::TlsError;

/// The CA certificate's file name inside the authority's directory (give it to clients).
const CA_CERT: &str = "ca.pem";
/// The CA private key's file name (mode 0600; never leaves the directory).
const CA_KEY: &str = "ca-key.pem";
/// The CA's subject; issued certificates name it as their issuer.
const CA_NAME: &str = "Cirrus cloud CA";
/// How long the CA is valid (it signs every server certificate of the cloud).
const CA_DAYS: i64 = 3650;
/// How long an issued server certificate is valid; `cirrus up` issues a new one every start.
const SERVER_DAYS: i64 = 365;

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert").finish_non_exhaustive()
    }
}

/// A certificate authority stored in a directory: `ca.pem` (public) and `ca-key.pem` (0600).
pub struct Authority {
    dir: PathBuf,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The CA's parameters; the same every time, so an issuer rebuilt from them and the stored
/// key signs certificates that chain to the stored CA certificate.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_NAME);
    name.push(DnType::OrganizationName, "Cirrus");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::File {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `contents` to `path` with `mode`, replacing it atomically (a temporary file renamed).
fn write(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| TlsError::File {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(contents.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

impl Authority {
    /// Opens the authority kept in `dir`, creating the directory and a new CA when there is
    /// none yet (so clients given `ca.pem` once keep trusting the cloud across restarts).
    pub fn open_or_create(dir: &Path) -> Result<Self, TlsError> {
        let err = |source| TlsError::File {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        if cert_path.exists() && key_path.exists() {
            let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| TlsError::Pem {
                what: key_path.display().to_string(),
                reason: e.to_string(),
            })?;
            return Ok(Self {
                dir: dir.to_path_buf(),
                key,
                cert_pem: read(&cert_path)?,
            });
        }
        let key = KeyPair::generate()?;
        let mut params = ca_params();
        params.not_before = now() - time::Duration::days(1);
        params.not_after = now() + time::Duration::days(CA_DAYS);
        let cert = params.self_signed(&key)?;
        // The key first: a crash between the two leaves no certificate without its key.
        write(&key_path, &key.serialize_pem(), 0o600)?;
        write(&cert_path, &cert.pem(), 0o644)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            key,
            cert_pem: cert.pem(),
        })
    }

    /// The CA certificate (PEM): what a client must trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The path of the CA certificate, for `OS_CACERT` / `CIRRUS_CACERT`.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// Issues a server certificate (with a fresh key) for `hosts`: DNS names and IP addresses
    /// the server is reached by. At least one is needed.
    pub fn issue_server(
        &self,
        common_name: &str,
        hosts: &[String],
    ) -> Result<IssuedCert, TlsError> {
        if hosts.is_empty() {
            return Err(TlsError::Pem {
                what: common_name.to_string(),
                reason: "a server certificate needs at least one host name or address".into(),
            });
        }
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        params.distinguished_name = name;
        params.subject_alt_names = hosts
            .iter()
            .map(|host| match host.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => host.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now() - time::Duration::days(1);
        params.not_after = now() + time::Duration::days(SERVER_DAYS);
        let key = KeyPair::generate()?;
        let issuer = Issuer::new(ca_params(), &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a server certificate for `hosts` and writes it to `<name>.pem` and
    /// `<name>-key.pem` (0600) in the authority's directory, returning both paths; for
    /// processes started separately (a node agent) that take `--tls-cert`/`--tls-key`.
    pub fn write_server(
        &self,
        name: &str,
        hosts: &[String],
    ) -> Result<(PathBuf, PathBuf), TlsError> {
        let issued = self.issue_server(name, hosts)?;
        let cert = self.dir.join(format!("{name}.pem"));
        let key = self.dir.join(format!("{name}-key.pem"));
        write(&key, &issued.key_pem, 0o600)?;
        write(&cert, &issued.cert_pem, 0o644)?;
        Ok((cert, key))
    }
}
