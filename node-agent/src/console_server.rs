//! The node agent's own small HTTP endpoint: what only this host has, for the API server to
//! proxy (`GET /servers/{uid}/console`), like the kubelet's port serves `kubectl logs`.
//!
//! It reads files named from the server uid only (the path segment must parse as a uuid), so
//! a request can never reach outside the instances directory. It serves nobody on their word:
//! a request carries the token of whoever asked the API (`X-Auth-Token`) and the server's
//! project and name, and the agent asks the API with that token whether the caller may read
//! that server and whether its uid is the one asked for — the API's own authorization decides.

use std::path::PathBuf;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use uuid::Uuid;

use crate::disks::{InstancePaths, console_log_tail};

/// Default amount of console log returned (the end of the log).
pub const DEFAULT_TAIL_BYTES: u64 = 64 * 1024;
/// Most a single request may ask for.
pub const MAX_TAIL_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsoleQuery {
    tail_bytes: Option<u64>,
    project: Option<String>,
    name: Option<String>,
}

/// What the endpoint needs: where logs are, and the API that authorizes readers.
#[derive(Clone, Debug)]
struct Endpoint {
    state_dir: PathBuf,
    api_url: String,
    http: reqwest::Client,
}

/// The router serving the console logs under `state_dir` to callers the API at `api_url`
/// lets read the server.
pub fn router(state_dir: PathBuf, api_url: String) -> Router {
    let endpoint = Endpoint {
        state_dir,
        api_url: api_url.trim_end_matches('/').to_string(),
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_default(),
    };
    Router::new()
        .route("/servers/{uid}/console", get(console))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(endpoint)
}

/// Asks the API, with the caller's token, for server `project/name`: `Ok` when the caller may
/// read it and it is the server with `uid`.
async fn authorized(
    endpoint: &Endpoint,
    headers: &HeaderMap,
    query: &ConsoleQuery,
    uid: Uuid,
) -> Result<(), Response> {
    let refused = |code: StatusCode, why: &str| (code, format!("{why}\n")).into_response();
    let Some(token) = headers.get("x-auth-token").and_then(|t| t.to_str().ok()) else {
        return Err(refused(StatusCode::UNAUTHORIZED, "a token is required"));
    };
    let (Some(project), Some(name)) = (&query.project, &query.name) else {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "project and name are required",
        ));
    };
    let url = format!(
        "{}/apis/cirrus.dev/v1/projects/{project}/servers/{name}",
        endpoint.api_url
    );
    let answer = endpoint
        .http
        .get(&url)
        .header("x-auth-token", token)
        .send()
        .await
        .map_err(|e| {
            refused(
                StatusCode::BAD_GATEWAY,
                &format!("the API is unreachable: {e}"),
            )
        })?;
    if !answer.status().is_success() {
        return Err(refused(
            StatusCode::FORBIDDEN,
            &format!("the API refused the caller ({})", answer.status()),
        ));
    }
    let server: serde_json::Value = answer
        .json()
        .await
        .map_err(|e| refused(StatusCode::BAD_GATEWAY, &format!("the API's answer: {e}")))?;
    if server.pointer("/metadata/uid").and_then(|u| u.as_str()) != Some(uid.to_string().as_str()) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "that server has another uid",
        ));
    }
    Ok(())
}

async fn console(
    State(endpoint): State<Endpoint>,
    Path(uid): Path<String>,
    Query(query): Query<ConsoleQuery>,
    headers: HeaderMap,
) -> Response {
    let Ok(uid) = Uuid::parse_str(&uid) else {
        return (StatusCode::BAD_REQUEST, "not a server uid\n").into_response();
    };
    if let Err(refusal) = authorized(&endpoint, &headers, &query, uid).await {
        return refusal;
    }
    let state_dir = endpoint.state_dir.clone();
    let tail = query
        .tail_bytes
        .unwrap_or(DEFAULT_TAIL_BYTES)
        .min(MAX_TAIL_BYTES);
    let path = InstancePaths::new(&state_dir, uid).console_log;
    match tokio::task::spawn_blocking(move || console_log_tail(&path, tail)).await {
        Ok(Ok(Some(text))) => text.into_response(),
        Ok(Ok(None)) => (
            StatusCode::NOT_FOUND,
            "no console log for this server here\n",
        )
            .into_response(),
        Ok(Err(err)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the console log: {err}\n"),
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_auth::Role;
    use serde_json::json;

    #[tokio::test]
    async fn serves_the_tail_of_a_console_log_to_whom_the_api_lets_read_the_server() {
        let api = cirrus_api::testing::TestApi::start().await;
        let servers = format!("{}/apis/cirrus.dev/v1/projects/demo/servers", api.base_url);
        let mut uids = Vec::new();
        for name in ["web", "quiet"] {
            let created: serde_json::Value = api
                .client()
                .post(&servers)
                .json(&json!({"metadata": {"name": name}, "spec": {"flavor": "m1", "image": "g"}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            uids.push(Uuid::parse_str(created["metadata"]["uid"].as_str().unwrap()).unwrap());
        }
        let (uid, quiet) = (uids[0], uids[1]);
        let state = tempfile::tempdir().unwrap();
        let paths = InstancePaths::new(state.path(), uid);
        std::fs::create_dir_all(&paths.dir).unwrap();
        std::fs::write(&paths.console_log, "first line\nCIRRUS-BOOT web\n").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = router(state.path().to_path_buf(), api.base_url.clone());
        let server = tokio::spawn(axum::serve(listener, app).into_future());
        let member = api.user_token("alice", "demo", Role::Reader).await;
        let stranger = api.user_token("bob", "other", Role::Admin).await;
        let http = reqwest::Client::new();
        let get = |path: String, token: &str| {
            let request = http.get(format!("{base}{path}"));
            let request = if token.is_empty() {
                request
            } else {
                request.header("x-auth-token", token)
            };
            request.send()
        };
        let web = |extra: &str| format!("/servers/{uid}/console?project=demo&name=web{extra}");

        let all = get(web(""), &member).await.unwrap();
        assert_eq!(all.status().as_u16(), 200);
        assert_eq!(all.text().await.unwrap(), "first line\nCIRRUS-BOOT web\n");
        let tail = get(web("&tailBytes=17"), &member).await.unwrap();
        assert_eq!(tail.text().await.unwrap(), "CIRRUS-BOOT web\n");
        // Nobody on their word: no token, another project's token, a mismatched uid.
        assert_eq!(get(web(""), "").await.unwrap().status().as_u16(), 401);
        assert_eq!(
            get(web(""), &stranger).await.unwrap().status().as_u16(),
            403
        );
        let other_uid = format!("/servers/{quiet}/console?project=demo&name=web");
        assert_eq!(
            get(other_uid, &member).await.unwrap().status().as_u16(),
            403
        );
        // A readable server with no log here yet.
        let missing = get(
            format!("/servers/{quiet}/console?project=demo&name=quiet"),
            &member,
        )
        .await
        .unwrap();
        assert_eq!(missing.status().as_u16(), 404);
        let escape = get("/servers/..%2F..%2Fetc/console".to_string(), &member)
            .await
            .unwrap();
        assert_eq!(escape.status().as_u16(), 400);
        server.abort();
    }
}
