//! The node agent's own small HTTP endpoint: what only this host has, for the API server to
//! proxy (`GET /servers/{uid}/console`), like the kubelet's port serves `kubectl logs`.
//!
//! It reads files named from the server uid only (the path segment must parse as a uuid), so
//! a request can never reach outside the instances directory. It serves nobody on their word:
//! a request carries a console token the API minted for this one read (`X-Auth-Token`,
//! `system:console:<server uid>`, good for nothing but the check below, see
//! `cirrus_api::restricted`) and the server's project and name (valid object names, else
//! `400`). The agent asks the API with that token
//! (`GET .../projects/{project}/servers/{name}/consoleaccess`, URL built from segments, no
//! redirects followed) and serves the log only if the API says the token is for the server
//! with this uid and that server is on this node. A person's or a node's own token is refused
//! there, so nothing but the API's console request opens a log.

use std::path::PathBuf;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use reqwest::Url;
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

/// What the API answers about a console token.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsoleAccess {
    server_uid: String,
    node: Option<String>,
}

/// What the endpoint needs: where logs are, the API that authorizes readers, which node
/// this is.
#[derive(Clone, Debug)]
struct Endpoint {
    state_dir: PathBuf,
    api_url: String,
    node: String,
    http: reqwest::Client,
}

/// The router serving the console logs under `state_dir` of node `node`'s servers, to
/// requests carrying a console token the API at `api_url` confirms.
pub fn router(state_dir: PathBuf, api_url: String, node: String) -> Router {
    let endpoint = Endpoint {
        state_dir,
        api_url,
        node,
        http: cirrus_tls::http_client()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default(),
    };
    Router::new()
        .route("/servers/{uid}/console", get(console))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(endpoint)
}

/// `<api>/apis/cirrus.dev/v1/projects/<project>/servers/<name>/consoleaccess`, from segments.
fn access_url(api_url: &str, project: &str, name: &str) -> Option<Url> {
    let mut url = Url::parse(api_url).ok()?;
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut().ok()?.pop_if_empty().extend([
        "apis",
        "cirrus.dev",
        "v1",
        "projects",
        project,
        "servers",
        name,
        "consoleaccess",
    ]);
    Some(url)
}

/// Asks the API, with the request's console token, about server `project/name`: `Ok` when
/// the token is for the server with `uid` and that server is on this node.
async fn authorized(
    endpoint: &Endpoint,
    headers: &HeaderMap,
    query: &ConsoleQuery,
    uid: Uuid,
) -> Result<(), Response> {
    let refused = |code: StatusCode, why: &str| (code, format!("{why}\n")).into_response();
    let Some(token) = headers
        .get(cirrus_crds::conventions::AUTH_HEADER)
        .and_then(|t| t.to_str().ok())
    else {
        return Err(refused(StatusCode::UNAUTHORIZED, "a token is required"));
    };
    let (Some(project), Some(name)) = (&query.project, &query.name) else {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "project and name are required",
        ));
    };
    for (what, value) in [("project", project), ("name", name)] {
        if let Some(problem) = cirrus_crds::validation::name_problem(value) {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                &format!("{what} is not an object name: {problem}"),
            ));
        }
    }
    let Some(url) = access_url(&endpoint.api_url, project, name) else {
        return Err(refused(
            StatusCode::BAD_GATEWAY,
            "the agent's API URL is unusable",
        ));
    };
    let answer = endpoint
        .http
        .get(url)
        .header(cirrus_crds::conventions::AUTH_HEADER, token)
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
            &format!("the API refused the token ({})", answer.status()),
        ));
    }
    let access: ConsoleAccess = answer
        .json()
        .await
        .map_err(|e| refused(StatusCode::BAD_GATEWAY, &format!("the API's answer: {e}")))?;
    if access.server_uid != uid.to_string() {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "the token is for another server",
        ));
    }
    if access.node.as_deref() != Some(endpoint.node.as_str()) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "that server is not on this node",
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

    #[test]
    fn the_api_url_is_built_from_segments() {
        let url = access_url("http://127.0.0.1:8080", "demo", "web").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/apis/cirrus.dev/v1/projects/demo/servers/web/consoleaccess"
        );
        let url = access_url("http://h:1/base/", "a?b", "../x").unwrap();
        assert_eq!(
            url.path(),
            "/base/apis/cirrus.dev/v1/projects/a%3Fb/servers/..%2Fx/consoleaccess"
        );
        assert!(access_url("not a url", "demo", "web").is_none());
    }

    #[tokio::test]
    async fn serves_a_console_log_only_for_the_apis_console_token_of_that_server_on_this_node() {
        let api = cirrus_test_utils::TestApi::start().await;
        let v1 = format!("{}/apis/cirrus.dev/v1", api.base_url);
        let admin = api.client();
        let mut uids = Vec::new();
        for (name, node) in [("web", "n1"), ("quiet", "n1"), ("far", "n2")] {
            let created: serde_json::Value = admin
                .post(format!("{v1}/projects/demo/servers"))
                .json(&json!({"metadata": {"name": name},
                    "spec": {"flavor": "m1", "image": "g", "nodeName": node}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            uids.push(Uuid::parse_str(created["metadata"]["uid"].as_str().unwrap()).unwrap());
        }
        let (uid, quiet, far) = (uids[0], uids[1], uids[2]);
        let state = tempfile::tempdir().unwrap();
        for server in [uid, far] {
            let paths = InstancePaths::new(state.path(), server);
            std::fs::create_dir_all(&paths.dir).unwrap();
            std::fs::write(&paths.console_log, "first line\nCIRRUS-BOOT web\n").unwrap();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = router(
            state.path().to_path_buf(),
            api.base_url.clone(),
            "n1".into(),
        );
        let server = tokio::spawn(axum::serve(listener, app).into_future());
        let member = api.user_token("alice", "demo", Role::Reader).await;
        let parent = cirrus_auth::token::open(&api.identity.keys, &member).unwrap();
        let console_token = |server: Uuid| {
            cirrus_api::restricted::console_token(
                &api.identity,
                &parent,
                "demo",
                &server.to_string(),
            )
            .unwrap()
            .0
        };
        let http = reqwest::Client::new();
        let get = |path: String, token: String| {
            let request = http.get(format!("{base}{path}"));
            let request = if token.is_empty() {
                request
            } else {
                request.header("x-auth-token", token)
            };
            async move {
                let response = request.send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            }
        };
        let web = |extra: &str| format!("/servers/{uid}/console?project=demo&name=web{extra}");

        let (code, body) = get(web(""), console_token(uid)).await;
        assert_eq!(
            (code, body.as_str()),
            (200, "first line\nCIRRUS-BOOT web\n")
        );
        let (_, tail) = get(web("&tailBytes=17"), console_token(uid)).await;
        assert_eq!(tail, "CIRRUS-BOOT web\n");
        // Nobody on their word: no token; a person's own token (even a cloud admin's); the
        // token of another server, for this one's path or its name; a server of another
        // node, with its own token.
        assert_eq!(get(web(""), String::new()).await.0, 401);
        assert_eq!(get(web(""), member.clone()).await.0, 403);
        assert_eq!(get(web(""), api.admin_token.clone()).await.0, 403);
        assert_eq!(get(web(""), console_token(quiet)).await.0, 403);
        let quiet_path = format!("/servers/{quiet}/console?project=demo&name=web");
        assert_eq!(get(quiet_path, console_token(uid)).await.0, 403);
        let by_name = format!("/servers/{uid}/console?project=demo&name=quiet");
        assert_eq!(get(by_name, console_token(uid)).await.0, 403);
        let far_path = format!("/servers/{far}/console?project=demo&name=far");
        let (code, body) = get(far_path, console_token(far)).await;
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("not on this node"), "{body}");
        // Names are object names, so nothing is pasted into the API URL.
        for query in [
            "project=..&name=web",
            "project=demo&name=..%2Fnodes",
            "project=demo&name=web%3FfieldSelector%3Dx",
            "project=demo&name=",
            "project=Demo&name=web",
            "name=web",
        ] {
            let (code, body) = get(
                format!("/servers/{uid}/console?{query}"),
                console_token(uid),
            )
            .await;
            assert_eq!(code, 400, "{query}: {body}");
        }
        // A readable server with no log here yet.
        let missing = format!("/servers/{quiet}/console?project=demo&name=quiet");
        assert_eq!(get(missing, console_token(quiet)).await.0, 404);
        let escape = get("/servers/..%2F..%2Fetc/console".to_string(), member.clone()).await;
        assert_eq!(escape.0, 400);

        // The whole way: the API authorizes the reader, then asks this endpoint with a token
        // of its own; the reader's token never reaches it.
        admin
            .post(format!("{v1}/nodes"))
            .json(&json!({"metadata": {"name": "n1"}}))
            .send()
            .await
            .unwrap();
        let patched = admin
            .patch(format!("{v1}/nodes/n1/status"))
            .header("Content-Type", "application/merge-patch+json")
            .body(json!({"status": {"agentEndpoint": base}}).to_string())
            .send()
            .await
            .unwrap();
        assert!(patched.status().is_success());
        let through_api = cirrus_test_utils::client_with_token(&member)
            .get(format!(
                "{v1}/projects/demo/servers/web/console?tailBytes=17"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(through_api.status().as_u16(), 200);
        assert_eq!(through_api.text().await.unwrap(), "CIRRUS-BOOT web\n");
        server.abort();
    }
}
