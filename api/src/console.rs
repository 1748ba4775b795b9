//! `GET .../projects/{project}/servers/{name}/console`: a server's serial console log.
//!
//! The log lives on the server's node, so the API proxies to the node agent's endpoint
//! (`Node.status.agentEndpoint`), the way the Kubernetes API server proxies `kubectl logs` to
//! the kubelet. Errors say which hop failed: no node yet (409), node agent without an endpoint
//! or unreachable (503).

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use crate::ApiState;
use crate::error::ApiError;

/// Query of the console route.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleQuery {
    /// Only the last this many bytes (default: the agent's default, 64 KiB).
    tail_bytes: Option<u64>,
}

/// How long the API waits for a node agent.
const AGENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Proxies the console log of a server from its node agent.
pub async fn server_console(
    State(state): State<ApiState>,
    caller: crate::auth::Caller,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<ConsoleQuery>,
) -> Result<Response, ApiError> {
    let (Some(project), Some(plural), Some(name)) = (
        params.get("project"),
        params.get("plural"),
        params.get("name"),
    ) else {
        return Err(ApiError::not_found("no such path"));
    };
    if plural != "servers" {
        return Err(ApiError::not_found(format!("{plural} have no console")));
    }
    let servers = cirrus_crds::kind_by_plural("servers").expect("servers is a kind");
    let nodes = cirrus_crds::kind_by_plural("nodes").expect("nodes is a kind");
    crate::resources::authz::authorize(
        &state,
        &caller,
        servers,
        Some(project),
        Some(name),
        crate::resources::authz::Op::Get,
    )
    .await?;
    let server = state.store.get(servers, Some(project), name).await?;
    let uid = text(&server, "/metadata/uid").unwrap_or_default();
    let Some(node_name) = text(&server, "/status/node").or_else(|| text(&server, "/spec/nodeName"))
    else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("server {name:?} is not on a node yet: it has no console"),
        ));
    };
    let node = state.store.get(nodes, None, &node_name).await?;
    let Some(endpoint) = text(&node, "/status/agentEndpoint") else {
        return Err(unavailable(format!(
            "node {node_name:?} does not publish an agent endpoint (is its node agent running?)"
        )));
    };
    // The agent checks the caller's own token back with the API (may it read this server?).
    let mut url = format!(
        "{}/servers/{uid}/console?project={project}&name={name}",
        endpoint.trim_end_matches('/')
    );
    if let Some(tail) = query.tail_bytes {
        url.push_str(&format!("&tailBytes={tail}"));
    }
    let client = reqwest::Client::builder()
        .timeout(AGENT_TIMEOUT)
        .build()
        .map_err(|e| unavailable(format!("cannot build an HTTP client: {e}")))?;
    let response = client
        .get(&url)
        .header(crate::auth::AUTH_HEADER, &caller.token.0)
        .send()
        .await
        .map_err(|e| {
            unavailable(format!(
                "the node agent of {node_name:?} is unreachable at {endpoint}: {e}"
            ))
        })?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(ApiError::not_found(format!(
            "node {node_name:?} has no console log for server {name:?} (not created there yet)"
        )));
    }
    if !status.is_success() {
        return Err(unavailable(format!(
            "the node agent of {node_name:?} answered {status} for the console log"
        )));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| unavailable(format!("reading the console log from {node_name:?}: {e}")))?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(body))
        .expect("static headers are valid"))
}

fn text(object: &Value, pointer: &str) -> Option<String> {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn unavailable(message: String) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        message,
    )
}
