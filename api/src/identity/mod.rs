//! Keystone v3 under `/identity`: version discovery, password tokens
//! (`POST`/`GET`/`HEAD`/`DELETE /identity/v3/auth/tokens`), the catalog, and projects,
//! users, roles and role assignments over the identity objects (`docs/identity.md`).
//!
//! Decisions made here:
//!
//! - **Ids and names.** A project's or user's Keystone `id` is its object's name: generated
//!   (32 hex digits) for what Keystone creates, chosen for what the native API or `cirrus up`
//!   writes. Its Keystone name is `spec.name` (free text, unique, renameable), else the id
//!   ([`cirrus_crds::keystone`]). Everything inside Cirrus (objects' projects, role bindings,
//!   tokens, quotas) refers to ids; logins and lists find names ([`directory`]). Roles are
//!   the fixed `reader`, `member` and `admin`, ids and names alike; the one domain is
//!   `{"id": "default", "name": "Default"}`.
//! - **Key ring.** [`ApiState::identity`] holds it: generated in memory by
//!   [`ApiState::new`], loaded from the data directory by `cirrus up`
//!   ([`KeyRing::load_or_create`]) so tokens survive a restart, and re-read from there
//!   periodically so that a rotation on disk is picked up ([`key_reload`]).
//! - **Login limits.** Password logins pass a lockout, per-address and per-user rate limits
//!   and a cap on concurrent argon2 runs ([`throttle`], [`ApiState::login`]).
//! - **Revocation.** Revoking writes a `TokenRevocation` object and updates this process's
//!   [`RevocationList`] at once; [`revocations::sync`] mirrors the objects into every API
//!   process (and after a restart).
//! - **Catalog.** Built from the address the client reached ([`catalog`]).
//! - **Limits:** role bindings are read with a list per login.

mod admin;
mod assignments;
pub mod bootstrap;
pub mod catalog;
mod directory;
mod discovery;
pub(crate) mod error;
pub mod key_reload;
mod projects;
mod request;
pub mod revocations;
pub mod throttle;
mod tokens;
mod users;

use std::sync::RwLock;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use cirrus_auth::{KeyRing, RevocationList};

use crate::ApiState;

pub use error::KeystoneError;
pub use request::{PasswordAuth, ProjectScope, Reference};
pub use tokens::TokenNames;

/// Largest `/identity` request body (Keystone's own default is 112 KiB).
pub const MAX_BODY_BYTES: usize = 112 * 1024;

/// What the identity handlers share besides the store: the token keys and the revocations.
#[derive(Debug)]
pub struct Identity {
    /// Keys that seal and open tokens.
    pub keys: KeyRing,
    /// Tokens revoked before their expiry.
    pub revoked: RwLock<RevocationList>,
    /// Lifetime of issued tokens.
    pub token_ttl: chrono::Duration,
    /// The directory the keys were loaded from, re-read every `key_reload_interval` while
    /// the API serves ([`key_reload`]); `None`: keys only in memory.
    pub key_dir: Option<std::path::PathBuf>,
    /// Time between two reads of `key_dir`.
    pub key_reload_interval: std::time::Duration,
}

impl Identity {
    /// Identity state around `keys`, with no revocations and the default token lifetime.
    pub fn new(keys: KeyRing) -> Self {
        Self {
            keys,
            revoked: RwLock::new(RevocationList::new()),
            token_ttl: cirrus_auth::DEFAULT_TOKEN_TTL,
            key_dir: None,
            key_reload_interval: key_reload::DEFAULT_INTERVAL,
        }
    }

    /// The same identity with its keys re-read from `dir` while the API serves.
    pub fn with_key_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.key_dir = Some(dir.into());
        self
    }

    /// Issues a token for `user` (scoped to `project` with `role`) without a password: for
    /// the cloud's own in-process components and for tests. A user bound to a node gets a
    /// node token.
    pub fn mint(
        &self,
        user: &cirrus_crds::User,
        project: Option<&str>,
        role: Option<cirrus_auth::Role>,
    ) -> Result<String, cirrus_auth::TokenError> {
        let payload = self.payload_for(user, project, role)?;
        cirrus_auth::token::issue(&self.keys, &payload)
    }

    /// The payload of a token for `user`, as [`Identity::mint`] and logins seal it.
    pub fn payload_for(
        &self,
        user: &cirrus_crds::User,
        project: Option<&str>,
        role: Option<cirrus_auth::Role>,
    ) -> Result<cirrus_auth::TokenPayload, cirrus_auth::TokenError> {
        let name = match &user.spec.node {
            Some(node) => format!("{}{node}", crate::auth::NODE_USER_PREFIX),
            None => user.metadata.name.clone(),
        };
        let (project, role) = match user.spec.node {
            Some(_) => (None, None),
            None => (project.map(str::to_string), role),
        };
        cirrus_auth::TokenPayload::new(
            name,
            user.metadata.uid.clone().unwrap_or_default(),
            project,
            role,
            chrono::Utc::now(),
            self.token_ttl,
        )
    }
}

/// The `/identity` routes; they use the [`Identity`] in [`ApiState::identity`].
pub fn router() -> Router<ApiState> {
    let tokens = || {
        get(tokens::validate)
            .head(tokens::check)
            .post(tokens::issue)
            .delete(tokens::revoke)
    };
    Router::new()
        .route("/identity", get(discovery::versions))
        .route("/identity/", get(discovery::versions))
        .route("/identity/v3", get(discovery::version))
        .route("/identity/v3/", get(discovery::version))
        .route("/identity/v3/auth/tokens", tokens())
        .route("/identity/v3/auth/catalog", get(admin::auth_catalog))
        .route("/identity/v3/auth/projects", get(projects::user_projects))
        .route("/identity/v3/domains", get(admin::list_domains))
        .route("/identity/v3/domains/{id}", get(admin::get_domain))
        .route(
            "/identity/v3/projects",
            get(projects::list_projects).post(projects::create_project),
        )
        .route(
            "/identity/v3/projects/{id}",
            get(projects::get_project)
                .patch(projects::update_project)
                .delete(projects::delete_project),
        )
        .route(
            "/identity/v3/projects/{project}/users/{user}/roles",
            get(assignments::list_grants),
        )
        .route(
            "/identity/v3/projects/{project}/users/{user}/roles/{role}",
            get(assignments::check_grant)
                .head(assignments::check_grant)
                .put(assignments::grant)
                .delete(assignments::revoke_grant),
        )
        .route(
            "/identity/v3/users",
            get(users::list_users).post(users::create_user),
        )
        .route(
            "/identity/v3/users/{id}",
            get(users::get_user)
                .patch(users::update_user)
                .delete(users::delete_user),
        )
        .route(
            "/identity/v3/users/{id}/password",
            axum::routing::post(users::change_own_password),
        )
        .route(
            "/identity/v3/users/{id}/projects",
            get(projects::user_projects),
        )
        .route(
            "/identity/v3/roles",
            get(assignments::list_roles).post(assignments::create_role),
        )
        .route("/identity/v3/roles/{id}", get(assignments::get_role))
        .route(
            "/identity/v3/role_assignments",
            get(assignments::role_assignments),
        )
        .route("/identity/v3/services", get(admin::list_services))
        .route("/identity/v3/endpoints", get(admin::list_endpoints))
        .route("/identity/v3/regions", get(admin::list_regions))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}
