//! Keystone v3 under `/identity`: version discovery and password tokens
//! (`POST`/`GET`/`HEAD`/`DELETE /identity/v3/auth/tokens`).
//!
//! This is the first, additive slice of issue 5: the routes exist and issue, validate and
//! revoke real tokens (see [`cirrus_auth::token`]), but the rest of the API does not yet
//! demand them. Decisions made here:
//!
//! - **Ids are names.** Users, projects and roles are Cirrus objects identified by name, so
//!   their Keystone `id` is that name (the token, validated without a store round trip, carries
//!   names). The one domain is `{"id": "default", "name": "Default"}`.
//! - **Key ring.** [`router`] generates a fresh in-memory [`KeyRing`] when the API starts, so
//!   tokens do not survive a restart and are not shared between replicas. `cirrus up` will
//!   load it from its data directory next ([`KeyRing::load_or_create`]) and pass it through
//!   [`router_with`].
//! - **Revocation.** `DELETE` records the token's audit id in this process's
//!   [`RevocationList`]; turning revocations into store objects fed by a watch (so every
//!   replica sees them) is a later step.
//! - **Catalog.** Token bodies carry an empty `catalog` until the other services exist.
//! - **Still to do:** validation does not yet recheck that the user and project are still
//!   enabled (the informer-cache step of the auth middleware); role bindings are read with a
//!   list per login.

mod discovery;
mod error;
mod request;
mod tokens;

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use cirrus_auth::{KeyRing, RevocationList};

use crate::ApiState;

pub use error::KeystoneError;
pub use request::{PasswordAuth, ProjectScope};

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
}

impl Identity {
    /// Identity state around `keys`, with no revocations and the default token lifetime.
    pub fn new(keys: KeyRing) -> Self {
        Self {
            keys,
            revoked: RwLock::new(RevocationList::new()),
            token_ttl: cirrus_auth::DEFAULT_TOKEN_TTL,
        }
    }
}

/// The `/identity` routes with a key ring generated in memory (see the module docs).
///
/// # Panics
/// When the operating system's random source is unavailable (no key can be made).
pub fn router() -> Router<ApiState> {
    let keys = KeyRing::generate().expect("the random source yields a token key");
    router_with(Arc::new(Identity::new(keys)))
}

/// The `/identity` routes over an existing [`Identity`] (a key ring loaded from disk).
pub fn router_with(identity: Arc<Identity>) -> Router<ApiState> {
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
        .layer(axum::Extension(identity))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}
