//! `GET .../projects/{project}/servers/{name}/console`: a server's serial console log.
//!
//! The log lives on the server's node, so the API proxies to the node agent's endpoint
//! (`Node.status.agentEndpoint`), the way the Kubernetes API server proxies `kubectl logs` to
//! the kubelet. Errors say which hop failed: no node yet (409), node agent without an endpoint
//! or unreachable (503).
//!
//! The endpoint is written by the node itself, so it is not trusted with anything: the API
//! authorizes the caller itself and never forwards the caller's token. The agent gets a
//! token of the API's own, good only for checking back this one server's console access for
//! 30 s ([`crate::restricted::console_token`]); redirects are not followed, and the agent URL
//! is built from path segments and query pairs, never by pasting text.

use cirrus_crds::Resource as _;
use std::collections::HashMap;
use std::sync::OnceLock;
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
    let servers = cirrus_crds::Server::info();
    let nodes = cirrus_crds::Node::info();
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
    let url = agent_url(&endpoint, &uid, project, name, query.tail_bytes).map_err(|why| {
        unavailable(format!(
            "node {node_name:?} publishes an unusable agent endpoint {endpoint:?}: {why}"
        ))
    })?;
    let parent = caller.token_payload(&state.identity).map_err(|e| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            format!("the request's token no longer validates: {e}"),
        )
    })?;
    let (console_token, _) =
        crate::restricted::console_token(&state.identity, &parent, project, &uid)
            .map_err(|e| ApiError::internal(format!("sealing the console token: {e}")))?;
    let answer = ask_agent(url, &console_token).await;
    let (status, body) = answer.map_err(|e| {
        unavailable(format!(
            "the node agent of {node_name:?} is unreachable at {endpoint}: {e}"
        ))
    })?;
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
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(body))
        .expect("static headers are valid"))
}

/// The HTTP client for node agents: a timeout, and redirects never followed (an agent
/// endpoint is the node's word; a redirect would send the request, token included, wherever
/// the node likes).
fn agent_http() -> Result<reqwest::Client, reqwest::Error> {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = HTTP.get() {
        return Ok(client.clone());
    }
    let client = cirrus_tls::http_client()
        .timeout(AGENT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    Ok(HTTP.get_or_init(|| client).clone())
}

/// Asks the agent at `url` with `token`: its status, and its body when successful.
async fn ask_agent(
    url: reqwest::Url,
    token: &str,
) -> Result<(reqwest::StatusCode, bytes::Bytes), reqwest::Error> {
    let response = agent_http()?
        .get(url)
        .header(crate::auth::AUTH_HEADER, token)
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        return Ok((status, bytes::Bytes::new()));
    }
    Ok((status, response.bytes().await?))
}

/// `<endpoint>/servers/<uid>/console?project=..&name=..[&tailBytes=..]`, built from path
/// segments and query pairs (each escaped as needed). The endpoint must be a plain
/// `http(s)` base URL: no credentials, query or fragment.
fn agent_url(
    endpoint: &str,
    uid: &str,
    project: &str,
    name: &str,
    tail_bytes: Option<u64>,
) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(endpoint).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?} is not http or https", url.scheme()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("it carries credentials".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("it has a query or a fragment".into());
    }
    url.path_segments_mut()
        .map_err(|()| "it cannot be a base URL".to_string())?
        .pop_if_empty()
        .extend(["servers", uid, "console"]);
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("project", project)
            .append_pair("name", name);
        if let Some(tail) = tail_bytes {
            query.append_pair("tailBytes", &tail.to_string());
        }
    }
    Ok(url)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_url_is_built_from_segments() {
        let uid = "11112222-3333-4444-5555-666677778888";
        let url = agent_url("http://10.0.0.7:9000", uid, "demo", "web", Some(100)).unwrap();
        assert_eq!(
            url.as_str(),
            format!(
                "http://10.0.0.7:9000/servers/{uid}/console?project=demo&name=web&tailBytes=100"
            )
        );
        let url = agent_url("http://h:1/agent/", uid, "demo", "web", None).unwrap();
        assert_eq!(url.path(), format!("/agent/servers/{uid}/console"));
        // Whatever the text, it stays inside its segment or its query value.
        let url = agent_url("http://h:1", "../../x?y#z", "a&b=c", "n/../m", None).unwrap();
        assert_eq!(url.path(), "/servers/..%2F..%2Fx%3Fy%23z/console");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            vec![
                ("project".to_string(), "a&b=c".to_string()),
                ("name".to_string(), "n/../m".to_string())
            ]
        );
        for bad in [
            "file:///etc",
            "http://user:pw@h:1",
            "http://h:1/?a=b",
            "http://h:1/#f",
            "mailto:x@y",
            "not a url",
        ] {
            assert!(agent_url(bad, uid, "demo", "web", None).is_err(), "{bad}");
        }
    }
}
