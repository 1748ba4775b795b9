//! The Cirrus HTTP API.
//!
//! Handlers are thin: they parse a request into a call on the
//! [`ObjectStore`](cirrus_store::objects::ObjectStore) and render the result; all
//! semantics (validation, versioning, finalizers, watch) live in the store layer, and every
//! error becomes a response in one place ([`error::ApiError`]). The native resource API is
//! described in `docs/api.md` and by the OpenAPI document in [`openapi`].

pub(crate) mod admission;
pub mod auth;
pub mod blob_gc;
pub mod blobs;
pub mod console;
pub mod discovery;
pub mod error;
pub mod identity;
pub mod image_format;
pub mod images;
pub mod metadata;
pub mod openapi;
pub mod openstack;
pub mod public_endpoint;
pub mod quota;
pub(crate) mod resources;
pub mod restricted;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use cirrus_store::objects::ObjectStore;
use tower_http::trace::TraceLayer;

/// The largest request body accepted (etcd refuses values over 1.5 MiB anyway).
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// Where objects live.
    pub store: ObjectStore,
    /// How often watch streams carry a `BOOKMARK`.
    pub bookmark_interval: Duration,
    /// Request body limit in bytes (JSON bodies; image data has its own limit in
    /// [`blobs::BlobStore::max_upload_bytes`]).
    pub body_limit: usize,
    /// Where image data lives; `None`: `PUT`/`GET .../images/{name}/file` answer `503`.
    pub blobs: Option<Arc<blobs::BlobStore>>,
    /// Token keys and revocations: every request but the anonymous ones is authenticated
    /// with them ([`auth::authenticate`]).
    pub identity: Arc<identity::Identity>,
    /// Limits on password logins (lockout, rate limits, concurrent argon2 runs), shared by
    /// every clone of this state ([`identity::throttle`]).
    pub login: Arc<identity::throttle::LoginThrottle>,
    /// The endpoint every absolute link and the catalog name; `None`: the request's `Host`
    /// ([`public_endpoint`]).
    pub public_url: Option<public_endpoint::PublicEndpoint>,
}

impl ApiState {
    /// State with the default bookmark interval (10 s) and body limit (1 MiB), serving no
    /// image data, with a token key ring generated in memory (tokens die with the process).
    ///
    /// # Panics
    /// When the operating system's random source is unavailable (no key can be made).
    pub fn new(store: ObjectStore) -> Self {
        Self {
            store,
            bookmark_interval: Duration::from_secs(10),
            body_limit: DEFAULT_BODY_LIMIT,
            blobs: None,
            identity: Arc::new(identity::Identity::new(
                cirrus_auth::KeyRing::generate().expect("the random source yields a token key"),
            )),
            login: Arc::default(),
            public_url: None,
        }
    }

    /// The same state with password logins held to `limits`.
    pub fn with_login_limits(mut self, limits: identity::throttle::LoginLimits) -> Self {
        self.login = Arc::new(identity::throttle::LoginThrottle::new(limits));
        self
    }

    /// The same state with tokens checked against `identity` (a key ring loaded from disk).
    pub fn with_identity(mut self, identity: Arc<identity::Identity>) -> Self {
        self.identity = identity;
        self
    }
}

/// The whole HTTP surface.
pub fn router(state: ApiState) -> Router {
    use resources::*;
    const V1: &str = "/apis/cirrus.dev/v1";
    let collection = || get(collection_get).post(collection_post);
    let item = || {
        get(item_get)
            .put(item_put)
            .patch(item_patch)
            .delete(item_delete)
    };
    let status = || get(item_get).put(status_put).patch(status_patch);
    Router::new()
        .route(V1, get(discovery::resources))
        .route("/apis", get(discovery::groups))
        .route(&format!("{V1}/projects"), collection())
        .route(&format!("{V1}/projects/{{project}}"), item())
        .route(&format!("{V1}/projects/{{project}}/status"), status())
        .route(
            &format!("{V1}/projects/{{project}}/{{plural}}"),
            collection(),
        )
        .route(
            &format!("{V1}/projects/{{project}}/{{plural}}/{{name}}"),
            item(),
        )
        .route(
            &format!("{V1}/projects/{{project}}/{{plural}}/{{name}}/status"),
            status(),
        )
        .route(
            &format!("{V1}/projects/{{project}}/{{plural}}/{{name}}/console"),
            get(console::server_console),
        )
        .route(
            &format!("{V1}/projects/{{project}}/{{plural}}/{{name}}/configdrive"),
            get(metadata::server_configdrive),
        )
        .route(
            &format!("{V1}/projects/{{project}}/{{plural}}/{{name}}/consoleaccess"),
            get(restricted::console_access),
        )
        .route(
            &format!("{V1}/{{plural}}/{{name}}/metadatatoken"),
            axum::routing::post(restricted::issue_metadata_token),
        )
        .route("/metadata", get(metadata::serve))
        .route("/metadata/{*path}", get(metadata::serve))
        .route(
            &format!("{V1}/projects/{{project}}/images/{{name}}/file"),
            get(images::download).put(images::upload),
        )
        .route(&format!("{V1}/{{plural}}"), collection())
        .route(&format!("{V1}/{{plural}}/{{name}}"), item())
        .route(&format!("{V1}/{{plural}}/{{name}}/status"), status())
        .route("/openapi/v3", get(openapi::serve))
        .route("/healthz", get(discovery::healthz))
        .route("/readyz", get(discovery::readyz))
        .route("/version", get(discovery::version))
        .merge(identity::router())
        .merge(openstack::router())
        .fallback(discovery::fallback)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            public_endpoint::apply,
        ))
        .layer(axum::middleware::from_fn(openstack::request_id::stamp))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves — over TLS with `tls`, in the clear
/// without — with each connection's peer address available to handlers (`ConnectInfo`, for
/// the login rate limits); while it
/// serves, revocations are mirrored from the store, the token keys re-read from their
/// directory ([`identity::key_reload`]) and unreferenced image blobs collected
/// ([`blob_gc`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<cirrus_tls::ServerConfig>,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let revocations = tokio::spawn(identity::revocations::sync(
        state.store.clone(),
        state.identity.clone(),
    ));
    let keys = tokio::spawn(identity::key_reload::run(state.identity.clone()));
    let blob_gc = state.blobs.clone().map(|blobs| {
        tokio::spawn(blob_gc::run(
            state.store.clone(),
            blobs,
            blob_gc::INTERVAL,
            blob_gc::GRACE,
        ))
    });
    let app = router(state);
    let served = match tls {
        Some(tls) => cirrus_tls::serve(listener, tls, app, shutdown).await,
        None => {
            let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    revocations.abort();
    keys.abort();
    if let Some(gc) = blob_gc {
        gc.abort();
    }
    served
}
