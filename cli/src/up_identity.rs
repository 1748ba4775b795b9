//! The identities an all-in-one cloud starts with, and the files that let people use it.
//!
//! On every start `cirrus up`:
//! - loads (or creates) the token key ring in `<data-dir>/keys`, so tokens survive restarts,
//!   and has the API re-read it periodically (`cirrus admin rotate-keys` rotates it);
//! - makes sure the `admin` project and the `admin` user (admin there: a cloud admin) exist.
//!   The first time, it generates the password and writes it only into
//!   `<data-dir>/clouds.yaml` and `<data-dir>/openrc` (mode 0600) — never to the output or
//!   the log, which are often readable by more people; later starts reuse the password from
//!   `openrc` and rewrite both files with the current API address;
//! - gives its in-process controllers and node agent their own users (`cirrus-controllers`,
//!   a cloud admin; `node-<name>`, bound to the node) without passwords: their tokens are
//!   minted from the key ring ([`MintedTokens`]) and renewed before they expire.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cirrus_api::identity::{Identity, bootstrap};
use cirrus_auth::{KeyRing, Role};
use cirrus_client::ClientError;
use cirrus_client::auth::TokenSource;
use cirrus_crds::{User, UserSpec};
use cirrus_store::objects::{Api, ObjectError, ObjectStore};
use futures::future::BoxFuture;

/// The region every catalog entry and credentials file names.
pub const REGION: &str = "RegionOne";
/// The bootstrap admin user and project.
pub const ADMIN: &str = "admin";
/// The in-process controllers' user.
pub const CONTROLLERS_USER: &str = "cirrus-controllers";

/// Loads or creates the key ring under `data_dir/keys`, re-read from there while the API
/// serves.
pub fn identity(data_dir: &Path) -> anyhow::Result<Arc<Identity>> {
    let dir = data_dir.join("keys");
    let keys = KeyRing::load_or_create(&dir)
        .with_context(|| format!("loading the token keys in {}", dir.display()))?;
    Ok(Arc::new(Identity::new(keys).with_key_dir(dir)))
}

/// Ensures the admin project and user; writes `clouds.yaml` and `openrc` for `api_url`
/// (with `cacert`, the CA certificate clients must trust, when the API speaks TLS).
pub async fn bootstrap_admin(
    store: &ObjectStore,
    data_dir: &Path,
    api_url: &str,
    cacert: Option<&Path>,
) -> anyhow::Result<()> {
    bootstrap::ensure_project(store, ADMIN).await?;
    let openrc = data_dir.join("openrc");
    let known = std::fs::read_to_string(&openrc)
        .ok()
        .and_then(|text| password_in(&text));
    let exists = match Api::<User>::all(store.clone()).get(ADMIN).await {
        Ok(_) => true,
        Err(ObjectError::NotFound { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    let password = match known {
        Some(password) if exists => password,
        _ => {
            let password = generate_password()?;
            bootstrap::ensure_user(store, ADMIN, &password, None).await?;
            println!(
                "cirrus up: created user {ADMIN:?} (cloud admin); its password is only in {} \
                 and {} (mode 0600); `source {}` to use them",
                openrc.display(),
                data_dir.join("clouds.yaml").display(),
                openrc.display()
            );
            password
        }
    };
    bootstrap::ensure_binding(store, ADMIN, ADMIN, Role::Admin).await?;
    write_private(&openrc, &openrc_text(api_url, &password, cacert))?;
    write_private(
        &data_dir.join("clouds.yaml"),
        &clouds_yaml_text(api_url, &password, cacert),
    )?;
    Ok(())
}

/// A user without a password for an in-process component (`node`: a node agent's identity),
/// bound as cloud admin unless it is a node.
pub async fn service_user(
    store: &ObjectStore,
    name: &str,
    node: Option<&str>,
) -> anyhow::Result<User> {
    let api = Api::<User>::all(store.clone());
    let wanted = UserSpec {
        node: node.map(str::to_string),
        description: Some(
            "identity of a cirrus up component (no password: tokens are minted)".into(),
        ),
        ..UserSpec::default()
    };
    let user = match api.get(name).await {
        Ok(user) if user.spec.node == wanted.node && user.spec.password_hash.is_none() => user,
        Ok(mut user) => {
            user.spec = wanted;
            api.replace(&user).await?
        }
        Err(ObjectError::NotFound { .. }) => {
            let meta = cirrus_crds::meta::ObjectMeta {
                name: name.to_string(),
                ..Default::default()
            };
            match api.create(&User::new(meta, wanted)).await {
                Ok(user) => user,
                Err(ObjectError::AlreadyExists { .. }) => api.get(name).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    if node.is_none() {
        bootstrap::ensure_project(store, ADMIN).await?;
        bootstrap::ensure_binding(store, name, ADMIN, Role::Admin).await?;
    }
    Ok(user)
}

/// Tokens minted from the key ring for an in-process component, renewed at half their life.
pub struct MintedTokens {
    identity: Arc<Identity>,
    user: User,
    scope: Option<(String, Role)>,
    cached: cirrus_client::auth::TokenCache,
}

impl std::fmt::Debug for MintedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedTokens")
            .field("user", &self.user.metadata.name)
            .finish_non_exhaustive()
    }
}

impl MintedTokens {
    /// Tokens for `user`, scoped to the admin project as admin unless it is a node.
    pub fn new(identity: Arc<Identity>, user: User) -> Arc<Self> {
        let scope = user
            .spec
            .node
            .is_none()
            .then(|| (ADMIN.to_string(), Role::Admin));
        Arc::new(Self {
            identity,
            user,
            scope,
            cached: cirrus_client::auth::TokenCache::new(),
        })
    }

    fn mint(&self) -> Result<(String, Instant), ClientError> {
        let (project, role) = match &self.scope {
            Some((p, r)) => (Some(p.as_str()), Some(*r)),
            None => (None, None),
        };
        let token =
            self.identity
                .mint(&self.user, project, role)
                .map_err(|e| ClientError::Api {
                    code: 500,
                    reason: "InternalError".into(),
                    message: format!("minting a token: {e}"),
                })?;
        let half = self
            .identity
            .token_ttl
            .to_std()
            .unwrap_or(Duration::from_secs(3600))
            / 2;
        Ok((token, Instant::now() + half))
    }
}

impl TokenSource for MintedTokens {
    fn token(&self) -> BoxFuture<'_, Result<String, ClientError>> {
        Box::pin(self.cached.get_or_renew(|| async { self.mint() }))
    }

    fn refused(&self, token: &str) -> bool {
        self.cached.forget(token);
        true
    }
}

fn generate_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    use base64::Engine;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn password_in(openrc: &str) -> Option<String> {
    openrc.lines().find_map(|line| {
        let value = line.trim().strip_prefix("export OS_PASSWORD=")?;
        Some(value.trim_matches('\'').to_string())
    })
}

fn openrc_text(api_url: &str, password: &str, cacert: Option<&Path>) -> String {
    // Both CLIs read OS_CACERT (cirrus also CIRRUS_CACERT); without TLS it is unset, so a
    // stale value from an earlier TLS run does not linger in the shell.
    let cacert = match cacert {
        Some(path) => format!("export OS_CACERT='{}'\n", path.display()),
        None => "unset OS_CACERT\n".to_string(),
    };
    format!(
        "# Credentials of the cirrus up admin; `source` this file (python-openstackclient and cirrus).\n\
         export OS_AUTH_URL='{api_url}/identity/v3'\n\
         export OS_IDENTITY_API_VERSION=3\n\
         export OS_USERNAME='{ADMIN}'\n\
         export OS_PASSWORD='{password}'\n\
         export OS_PROJECT_NAME='{ADMIN}'\n\
         export OS_USER_DOMAIN_NAME=Default\n\
         export OS_PROJECT_DOMAIN_NAME=Default\n\
         export OS_REGION_NAME={REGION}\n\
         export OS_INTERFACE=public\n\
         export CIRRUS_URL='{api_url}'\n\
         {cacert}"
    )
}

fn clouds_yaml_text(api_url: &str, password: &str, cacert: Option<&Path>) -> String {
    let cacert = cacert
        .map(|path| format!("\x20   cacert: '{}'\n", path.display()))
        .unwrap_or_default();
    format!(
        "# Credentials of the cirrus up admin (OS_CLOUD=cirrus).\n\
         clouds:\n\
         \x20 cirrus:\n\
         \x20   auth:\n\
         \x20     auth_url: {api_url}/identity/v3\n\
         \x20     username: {ADMIN}\n\
         \x20     password: '{password}'\n\
         \x20     project_name: {ADMIN}\n\
         \x20     user_domain_name: Default\n\
         \x20     project_domain_name: Default\n\
         \x20   region_name: {REGION}\n\
         \x20   interface: public\n\
         \x20   identity_api_version: 3\n\
         {cacert}"
    )
}

/// Writes `text` to `path` readable only by its owner (replacing it atomically).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_written_to_openrc_is_read_back() {
        let text = openrc_text("http://127.0.0.1:1", "s3cr-et_x", None);
        assert_eq!(password_in(&text).as_deref(), Some("s3cr-et_x"));
        assert!(text.contains("export OS_AUTH_URL='http://127.0.0.1:1/identity/v3'"));
        assert!(text.contains("unset OS_CACERT"), "{text}");
    }

    #[test]
    fn a_tls_cloud_s_credentials_name_its_ca() {
        let ca = Path::new("/var/lib/cirrus/tls/ca.pem");
        let openrc = openrc_text("https://127.0.0.1:1", "pw", Some(ca));
        assert!(
            openrc.contains("export OS_CACERT='/var/lib/cirrus/tls/ca.pem'\n"),
            "{openrc}"
        );
        assert!(openrc.contains("export CIRRUS_URL='https://127.0.0.1:1'"));
        let clouds = clouds_yaml_text("https://127.0.0.1:1", "pw", Some(ca));
        assert!(
            clouds.contains("\n    cacert: '/var/lib/cirrus/tls/ca.pem'\n"),
            "{clouds}"
        );
        assert!(!clouds_yaml_text("http://x", "pw", None).contains("cacert"));
    }

    #[test]
    fn credentials_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openrc");
        write_private(&path, "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
