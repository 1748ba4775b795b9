//! Restricted tokens: credentials the API mints for one narrow job, so that nothing on a node
//! ever holds more than that job needs.
//!
//! They are ordinary sealed tokens (`cirrus_auth::token`, same keys, same revocation list)
//! whose user name is one no object can have ([`crate::auth::Restriction`]):
//!
//! - `system:metadata:<node>`: minted for a node agent at its own request
//!   ([`issue_metadata_token`]); good for `GET`/`HEAD /metadata/...` only, answered only about
//!   the servers bound to `<node>`; lives [`METADATA_TOKEN_TTL`].
//! - `system:console:<server uid>`: minted by the API itself for one console read
//!   ([`console_token`]); good only for the node agent's check-back of that server
//!   (`GET .../projects/{p}/servers/{name}/consoleaccess`, [`console_access`]); lives
//!   [`CONSOLE_TOKEN_TTL`]. It is not revoked after its read (that would be a store write per
//!   console read, and `console-log` is polled): replayed within its life it still opens only
//!   that check-back, whose answer (the server's uid and node) the node it was sent to knows
//!   already, and another node's agent refuses it (the server is not there).
//!
//! Everywhere else [`crate::auth::authenticate`] answers them `403`.
//!
//! Each carries the uid of the user whose token it was minted from and never outlives that
//! token, so the user's revocation cut-offs (user deleted or disabled, password changed) end
//! it as well; a console token also carries the server's project, so the project's cut-off
//! ends it too.
//!
//! Why: a node's metadata proxy talks to the API on behalf of guests, which control what it
//! is asked; with the node's own token a proxy bug is the node's whole identity. The console
//! endpoint is written by the node itself (`Node.status.agentEndpoint`): it must receive
//! nothing a node could replay elsewhere, least of all the token of the person asking.

use cirrus_crds::Resource as _;
use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use cirrus_auth::TokenPayload;
use cirrus_auth::token::{self, TokenError};
use serde_json::{Value, json};

use crate::ApiState;
use crate::auth::{Caller, Restriction};
use crate::error::ApiError;
use crate::identity::Identity;

/// Lifetime of a metadata proxy token (the node agent renews it at half its life).
pub const METADATA_TOKEN_TTL: Duration = Duration::minutes(10);

/// Lifetime of a console read token: the API sends it to the node agent at once and the
/// agent checks it back at once (both within the API's 10 s agent timeout).
pub const CONSOLE_TOKEN_TTL: Duration = Duration::seconds(30);

/// Seals a token with `restriction` for the user of `parent` (its uid, so that the user's
/// cut-offs reach it), scoped to `project` for the project's, living `ttl` but never past
/// `parent`'s expiry.
///
/// # Errors
/// When the token cannot be sealed (no random source, a name too long to encode).
pub fn mint(
    identity: &Identity,
    restriction: &Restriction,
    parent: &TokenPayload,
    project: Option<&str>,
    ttl: Duration,
) -> Result<(String, TokenPayload), TokenError> {
    let mut payload = TokenPayload::new(
        restriction.user_name(),
        parent.user_uid.clone(),
        project.map(str::to_string),
        None,
        Utc::now(),
        ttl,
    )?;
    payload.expires_at = payload.expires_at.min(parent.expires_at);
    let sealed = token::issue(&identity.keys, &payload)?;
    Ok((sealed, payload))
}

/// A token good for one console read of server `server_uid` (in `project`): the node agent's
/// check-back of that server, for [`CONSOLE_TOKEN_TTL`]; minted for the caller whose token is
/// `parent`.
///
/// # Errors
/// As [`mint`].
pub fn console_token(
    identity: &Identity,
    parent: &TokenPayload,
    project: &str,
    server_uid: &str,
) -> Result<(String, TokenPayload), TokenError> {
    let restriction = Restriction::Console {
        server_uid: server_uid.to_string(),
    };
    mint(
        identity,
        &restriction,
        parent,
        Some(project),
        CONSOLE_TOKEN_TTL,
    )
}

fn param<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    params
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| ApiError::not_found("no such path"))
}

fn parent_payload(state: &ApiState, caller: &Caller) -> Result<TokenPayload, ApiError> {
    caller.token_payload(&state.identity).map_err(|e| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            format!("the request's token no longer validates: {e}"),
        )
    })
}

/// `POST /apis/cirrus.dev/v1/nodes/{node}/metadatatoken`: a `system:metadata:<node>` token
/// for that node's metadata proxies. Only the node agent of `<node>` (its node token) may
/// ask; anyone else, and any restricted token, gets `403`.
///
/// Answers `201` with `{"apiVersion", "kind": "MetadataToken", "node", "token",
/// "expiresAt"}`.
pub async fn issue_metadata_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (plural, node) = (param(&params, "plural")?, param(&params, "name")?);
    if plural != "nodes" {
        return Err(ApiError::not_found(format!(
            "{plural} have no metadata token"
        )));
    }
    if caller.restriction().is_some() || caller.node() != Some(node) {
        return Err(ApiError::forbidden(format!(
            "only the node agent of node {node:?} (with its node token) may get its metadata token"
        )));
    }
    let parent = parent_payload(&state, &caller)?;
    let restriction = Restriction::Metadata {
        node: node.to_string(),
    };
    let (sealed, payload) = mint(
        &state.identity,
        &restriction,
        &parent,
        None,
        METADATA_TOKEN_TTL,
    )
    .map_err(|e| ApiError::internal(format!("sealing the metadata token: {e}")))?;
    tracing::info!(%node, audit_id = %payload.audit_id, expires_at = %payload.expires_at,
        "metadata proxy token issued");
    let body = json!({
        "apiVersion": cirrus_crds::API_VERSION,
        "kind": "MetadataToken",
        "node": node,
        "token": sealed,
        "expiresAt": payload.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response())
}

/// `GET /apis/cirrus.dev/v1/projects/{project}/servers/{name}/consoleaccess`: what a node
/// agent asks, with the token the API sent it, before serving a console log. Only a
/// `system:console:<uid>` token is accepted (anything else: `403`), and only for the server
/// `project/name` whose uid it names (another server: `403`; outside the token's project:
/// `404`).
///
/// Answers `200` with `{"apiVersion", "kind": "ConsoleAccess", "project", "name",
/// "serverUid", "node"}` (`node`: where the server is, `status.node` else `spec.nodeName`),
/// so the agent checks both the uid it was asked for and that the server is its own.
pub async fn console_access(
    State(state): State<ApiState>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (project, plural, name) = (
        param(&params, "project")?,
        param(&params, "plural")?,
        param(&params, "name")?,
    );
    if plural != "servers" {
        return Err(ApiError::not_found(format!("{plural} have no console")));
    }
    let Some(Restriction::Console { server_uid }) = caller.restriction() else {
        return Err(ApiError::forbidden(
            "only the console token the API sent with a console request is checked here",
        ));
    };
    let servers = cirrus_crds::Server::info();
    if caller.project() != Some(project) {
        return Err(ApiError::not_found(format!(
            "servers {name:?} not found in project {project:?}"
        )));
    }
    let server = state.store.get(servers, Some(project), name).await?;
    let text = |pointer: &str| server.pointer(pointer).and_then(Value::as_str);
    if text("/metadata/uid") != Some(server_uid.as_str()) {
        return Err(ApiError::forbidden(format!(
            "this console token is for another server than {project}/{name}"
        )));
    }
    let node = text("/status/node").or_else(|| text("/spec/nodeName"));
    Ok(axum::Json(json!({
        "apiVersion": cirrus_crds::API_VERSION,
        "kind": "ConsoleAccess",
        "project": project,
        "name": name,
        "serverUid": server_uid,
        "node": node,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    fn parent(ttl: Duration) -> TokenPayload {
        TokenPayload::new(
            "alice",
            "alice-uid",
            Some("demo".into()),
            None,
            Utc::now(),
            ttl,
        )
        .unwrap()
    }

    #[test]
    fn a_restricted_token_never_outlives_the_one_it_was_minted_from() {
        let identity = Identity::new(cirrus_auth::KeyRing::generate().unwrap());
        let short = parent(Duration::seconds(5));
        let (sealed, payload) = console_token(&identity, &short, "demo", "u-1").unwrap();
        assert_eq!(payload.expires_at, short.expires_at);
        assert_eq!(payload.user, "system:console:u-1");
        assert_eq!(payload.user_uid, "alice-uid");
        assert_eq!(payload.project.as_deref(), Some("demo"));
        assert_eq!(payload.role, None);
        let opened = token::open(&identity.keys, &sealed).unwrap();
        assert_eq!(opened, payload);
        let long = parent(Duration::hours(1));
        let (_, payload) = console_token(&identity, &long, "demo", "u-1").unwrap();
        assert_eq!(payload.expires_at - payload.issued_at, CONSOLE_TOKEN_TTL);
    }

    #[test]
    fn restrictions_allow_their_own_route_only() {
        let metadata = Restriction::of_user("system:metadata:n1").unwrap();
        assert_eq!(
            metadata,
            Restriction::Metadata {
                node: "n1".to_string()
            }
        );
        let console = Restriction::of_user("system:console:u-1").unwrap();
        assert_eq!(console.user_name(), "system:console:u-1");
        assert_eq!(Restriction::of_user("system:node:n1"), None);
        assert_eq!(Restriction::of_user("alice"), None);
        assert_eq!(
            Restriction::of_user("system:whatever:x"),
            Some(Restriction::Unrecognized)
        );
        assert_eq!(
            Restriction::of_user("system:metadata:"),
            Some(Restriction::Unrecognized)
        );
        let get = Method::GET;
        for (restriction, method, path, allowed) in [
            (&metadata, &get, "/metadata", true),
            (&metadata, &Method::HEAD, "/metadata/openstack/latest", true),
            (&metadata, &Method::POST, "/metadata/openstack", false),
            (&metadata, &get, "/metadatax", false),
            (&metadata, &get, "//metadata/", false),
            (&metadata, &get, "/apis/cirrus.dev/v1/nodes", false),
            (&metadata, &get, "/identity/v3/auth/tokens", false),
            (&metadata, &get, "/healthz", false),
            (
                &console,
                &get,
                "/apis/cirrus.dev/v1/projects/demo/servers/web/consoleaccess",
                true,
            ),
            (
                &console,
                &Method::DELETE,
                "/apis/cirrus.dev/v1/projects/demo/servers/web/consoleaccess",
                false,
            ),
            (
                &console,
                &get,
                "/apis/cirrus.dev/v1/projects/demo/servers/web",
                false,
            ),
            (
                &console,
                &get,
                "/apis/cirrus.dev/v1/projects/demo/servers/web/consoleaccess/x",
                false,
            ),
            (
                &console,
                &get,
                "/apis/cirrus.dev/v1/projects//servers/web/consoleaccess",
                false,
            ),
            (&console, &get, "/metadata/openstack", false),
            (&Restriction::Unrecognized, &get, "/metadata", false),
        ] {
            assert_eq!(
                restriction.allows(method, path),
                allowed,
                "{restriction:?} {method} {path}"
            );
        }
    }
}
