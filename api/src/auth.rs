//! Authentication of every request and the caller it yields.
//!
//! [`authenticate`] is the one middleware in front of all routes: it takes the token from
//! `X-Auth-Token` or `Authorization: Bearer`, validates it with the key ring and the
//! revocation list held in [`crate::identity::Identity`] (no store round trip), and puts a
//! [`Caller`] into the request's extensions. Requests without a valid token get `401`,
//! except the few routes that OpenStack and Kubernetes serve anonymously ([`is_anonymous`]:
//! health, version documents, the login itself).
//!
//! Authorization is not decided here: each handler knows the project of what it touches and
//! asks [`Caller::check`] (which applies [`cirrus_auth::authorize`]), so that another
//! project's objects answer `404` and read-only roles `403` in every API the same way.
//!
//! One thing is decided here: **restricted tokens** ([`Restriction`]) — credentials the API
//! mints for one narrow job (a node's metadata proxy, one console read; see
//! [`crate::restricted`]) — are refused with `403` on every route but their own
//! ([`Restriction::allows`]), before any handler runs, anonymous routes included.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use cirrus_auth::token::{self, TokenPayload};
use cirrus_auth::{Action, Decision, Subject, UserSubject};

use crate::ApiState;

/// Header carrying the caller's own token (Keystone's).
pub use cirrus_crds::conventions::AUTH_HEADER;

/// User name prefix that marks a node agent's token: object names cannot contain `:`, so no
/// person's login can produce it; only the API issues it, for users bound to a node.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// Prefix of every user name only the API can put into a token (object names cannot contain
/// `:`). Names under it other than [`NODE_USER_PREFIX`] are [`Restriction`]s.
pub const SYSTEM_USER_PREFIX: &str = "system:";

/// User name prefix of a node's metadata proxy token (`system:metadata:<node>`): good for
/// `GET /metadata/...` only, for the servers bound to that node.
pub const METADATA_USER_PREFIX: &str = "system:metadata:";

/// User name prefix of a console read token (`system:console:<server uid>`): good for the
/// node agent's check-back route of that one server only.
pub const CONSOLE_USER_PREFIX: &str = "system:console:";

/// The one job a restricted token is good for, read from its user name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restriction {
    /// A node agent's metadata proxy: `GET`/`HEAD` `/metadata` and `/metadata/...`, for
    /// servers bound to `node`.
    Metadata {
        /// The node whose proxy holds the token.
        node: String,
    },
    /// One console read: `GET .../projects/{p}/servers/{name}/consoleaccess`, which a node
    /// agent calls to check the token the API sent it; only for the server with `server_uid`.
    Console {
        /// The uid of the server whose console may be read.
        server_uid: String,
    },
    /// A `system:` name this API does not know (a newer replica's, or forged by nobody since
    /// tokens are sealed): good for nothing.
    Unrecognized,
}

impl Restriction {
    /// The restriction a token's user name carries; `None` for ordinary users and node
    /// agents (`system:node:`).
    pub fn of_user(user: &str) -> Option<Self> {
        if user.starts_with(NODE_USER_PREFIX) || !user.starts_with(SYSTEM_USER_PREFIX) {
            return None;
        }
        let named = |prefix: &str| {
            user.strip_prefix(prefix)
                .filter(|rest| !rest.is_empty())
                .map(str::to_string)
        };
        Some(if let Some(node) = named(METADATA_USER_PREFIX) {
            Restriction::Metadata { node }
        } else if let Some(server_uid) = named(CONSOLE_USER_PREFIX) {
            Restriction::Console { server_uid }
        } else {
            Restriction::Unrecognized
        })
    }

    /// The user name a token with this restriction carries.
    pub fn user_name(&self) -> String {
        match self {
            Restriction::Metadata { node } => format!("{METADATA_USER_PREFIX}{node}"),
            Restriction::Console { server_uid } => format!("{CONSOLE_USER_PREFIX}{server_uid}"),
            Restriction::Unrecognized => format!("{SYSTEM_USER_PREFIX}unrecognized"),
        }
    }

    /// Whether a token with this restriction may be used for `method path` (the raw path,
    /// as routed: no decoding, so nothing can be smuggled past this check by encoding).
    pub fn allows(&self, method: &Method, path: &str) -> bool {
        match self {
            Restriction::Metadata { .. } => {
                (method == Method::GET || method == Method::HEAD)
                    && (path == "/metadata" || path.starts_with("/metadata/"))
            }
            Restriction::Console { .. } => {
                let segments: Vec<&str> = path.split('/').collect();
                let [
                    "",
                    "apis",
                    "cirrus.dev",
                    "v1",
                    "projects",
                    project,
                    "servers",
                    name,
                    last,
                ] = segments.as_slice()
                else {
                    return false;
                };
                method == Method::GET
                    && *last == "consoleaccess"
                    && !project.is_empty()
                    && !name.is_empty()
            }
            Restriction::Unrecognized => false,
        }
    }
}

/// Who is making the request: the subject of a validated token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The subject the token names.
    pub subject: Subject,
    /// The token itself. It is never sent anywhere: what the API asks of others on the
    /// caller's behalf carries a restricted token of its own ([`crate::restricted`]), which
    /// this one is reopened to bound (its expiry, its user's uid).
    pub token: RawToken,
}

/// A token as the client sent it; `Debug` never prints it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RawToken(pub String);

impl std::fmt::Debug for RawToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawToken(<redacted>)")
    }
}

/// Why [`Caller::check`] refused, mapped to HTTP by each API's error type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 403: the caller may see the target but not do this.
    Forbidden,
    /// 404: the caller may not even learn that the target exists.
    NotFound,
}

impl Caller {
    /// The caller a validated token describes (node tokens become [`Subject::Node`]).
    pub fn from_token(payload: &TokenPayload) -> Self {
        let subject = match payload.user.strip_prefix(NODE_USER_PREFIX) {
            Some(node) => Subject::Node {
                name: node.to_string(),
            },
            None => Subject::User(UserSubject::from(payload)),
        };
        Self {
            subject,
            token: RawToken::default(),
        }
    }

    /// The job a restricted token is limited to; `None` for ordinary users and node agents.
    pub fn restriction(&self) -> Option<Restriction> {
        self.user().and_then(|u| Restriction::of_user(&u.name))
    }

    /// The payload of the caller's own token, opened again with the API's keys (for the
    /// user's uid and the expiry, which a restricted token minted from it must not outlive).
    ///
    /// # Errors
    /// When the token no longer validates (expired or revoked since the request began).
    pub fn token_payload(
        &self,
        identity: &crate::identity::Identity,
    ) -> Result<TokenPayload, token::TokenError> {
        let revoked = identity
            .revoked
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        token::validate(&identity.keys, &revoked, &self.token.0, Utc::now())
    }

    /// The user behind the token, `None` for a node agent.
    pub fn user(&self) -> Option<&UserSubject> {
        match &self.subject {
            Subject::User(user) => Some(user),
            Subject::Node { .. } => None,
        }
    }

    /// The node a node agent's token speaks for.
    pub fn node(&self) -> Option<&str> {
        match &self.subject {
            Subject::Node { name } => Some(name),
            Subject::User(_) => None,
        }
    }

    /// The project the token is scoped to (`None`: unscoped token or a node).
    pub fn project(&self) -> Option<&str> {
        self.user().and_then(|u| u.project.as_deref())
    }

    /// The user's name (the node's `system:node:` name for node agents), for logs and
    /// `user_id` fields.
    pub fn name(&self) -> String {
        match &self.subject {
            Subject::User(user) => user.name.clone(),
            Subject::Node { name } => format!("{NODE_USER_PREFIX}{name}"),
        }
    }

    /// Whether the caller may act on every project (the admin role, in whichever project).
    pub fn is_cloud_admin(&self) -> bool {
        self.user().is_some_and(UserSubject::is_cloud_admin)
    }

    /// Whether the caller may do `action` to objects of `project` (`None`: cluster-scoped).
    pub fn check(&self, action: Action, project: Option<&str>) -> Result<(), Refusal> {
        match cirrus_auth::authorize(&self.subject, action, project) {
            Decision::Allow => Ok(()),
            Decision::Deny => Err(Refusal::Forbidden),
            Decision::NotFound => Err(Refusal::NotFound),
        }
    }

    /// The project the caller works in: its token's scope; `401`-worthy when unscoped.
    pub fn scoped_project(&self) -> Option<&str> {
        self.project()
    }
}

/// `Caller` as a handler argument: present on every authenticated route; a route that
/// forgot to require authentication answers `401` instead of running without a caller.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            unauthorized(
                parts.uri.path(),
                "The request you have made requires authentication.",
            )
        })
    }
}

/// The token a request carries: `X-Auth-Token`, else `Authorization: Bearer`.
pub fn request_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(t) = headers.get(AUTH_HEADER).and_then(|h| h.to_str().ok()) {
        return Some(t.trim());
    }
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Routes served without a token: health and version, Keystone's discovery and login, and
/// each OpenStack service's version documents (clients read them before authenticating).
pub fn is_anonymous(method: &Method, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    match path {
        "/healthz" | "/readyz" | "/version" => true,
        "/identity/v3/auth/tokens" => method == Method::POST,
        "" | "/identity" | "/identity/v3" | "/compute" | "/compute/v2.1" | "/image"
        | "/image/versions" | "/network" | "/network/v2.0" | "/volume" | "/volume/v3" => {
            method == Method::GET || method == Method::HEAD
        }
        _ => false,
    }
}

/// The middleware: validates the token and records the [`Caller`]; `401` without one.
pub async fn authenticate(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    let token = request_token(request.headers()).map(str::to_string);
    match token {
        Some(raw) => {
            let validated = {
                let revoked = state
                    .identity
                    .revoked
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                token::validate(&state.identity.keys, &revoked, &raw, Utc::now())
            };
            match validated {
                Ok(payload) => {
                    let caller = Caller {
                        token: RawToken(raw.clone()),
                        ..Caller::from_token(&payload)
                    };
                    if let Some(restriction) = caller.restriction()
                        && !restriction.allows(request.method(), &path)
                    {
                        tracing::info!(user = %payload.user, method = %request.method(), %path,
                            "request refused: a restricted token outside its route");
                        return forbidden(
                            &path,
                            "This token is restricted to one purpose and cannot be used here.",
                        );
                    }
                    request.extensions_mut().insert(caller);
                    next.run(request).await
                }
                Err(e) if is_anonymous(request.method(), &path) => {
                    tracing::debug!(error = %e, %path, "ignoring an invalid token on an anonymous route");
                    next.run(request).await
                }
                Err(e) => {
                    tracing::info!(error = %e, %path, "request refused: invalid token");
                    unauthorized(&path, "The request you have made requires authentication.")
                }
            }
        }
        None if is_anonymous(request.method(), &path) => next.run(request).await,
        None => unauthorized(&path, "The request you have made requires authentication."),
    }
}

/// `403` in the error format of the API `path` belongs to.
pub fn forbidden(path: &str, message: &str) -> Response {
    let code = StatusCode::FORBIDDEN;
    if path.starts_with("/apis") || path.starts_with("/metadata") {
        crate::error::ApiError::new(code, "Forbidden", message).into_response()
    } else {
        (
            code,
            axum::Json(serde_json::json!({
                "error": {"code": 403, "title": "Forbidden", "message": message}
            })),
        )
            .into_response()
    }
}

/// `401` in the error format of the API `path` belongs to.
pub fn unauthorized(path: &str, message: &str) -> Response {
    let code = StatusCode::UNAUTHORIZED;
    let mut response = if path.starts_with("/apis") || path.starts_with("/metadata") {
        crate::error::ApiError::new(code, "Unauthorized", message).into_response()
    } else {
        (
            code,
            axum::Json(serde_json::json!({
                "error": {"code": 401, "title": "Unauthorized", "message": message}
            })),
        )
            .into_response()
    };
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Keystone uri=\"/identity\""),
    );
    response
}
