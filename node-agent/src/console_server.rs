//! The node agent's own small HTTP endpoint: what only this host has, for the API server to
//! proxy (`GET /servers/{uid}/console`), like the kubelet's port serves `kubectl logs`.
//!
//! It reads files named from the server uid only (the path segment must parse as a uuid), so
//! a request can never reach outside the instances directory.

use std::path::PathBuf;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
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
}

/// The router serving the console logs under `state_dir`.
pub fn router(state_dir: PathBuf) -> Router {
    Router::new()
        .route("/servers/{uid}/console", get(console))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state_dir)
}

async fn console(
    State(state_dir): State<PathBuf>,
    Path(uid): Path<String>,
    Query(query): Query<ConsoleQuery>,
) -> Response {
    let Ok(uid) = Uuid::parse_str(&uid) else {
        return (StatusCode::BAD_REQUEST, "not a server uid\n").into_response();
    };
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

    #[tokio::test]
    async fn serves_the_tail_of_a_console_log_by_uid_only() {
        let state = tempfile::tempdir().unwrap();
        let uid = Uuid::new_v4();
        let paths = InstancePaths::new(state.path(), uid);
        std::fs::create_dir_all(&paths.dir).unwrap();
        std::fs::write(&paths.console_log, "first line\nCIRRUS-BOOT web\n").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server =
            tokio::spawn(axum::serve(listener, router(state.path().to_path_buf())).into_future());
        let http = reqwest::Client::new();
        let get = |path: String| http.get(format!("{base}{path}")).send();

        let all = get(format!("/servers/{uid}/console")).await.unwrap();
        assert_eq!(all.status().as_u16(), 200);
        assert_eq!(all.text().await.unwrap(), "first line\nCIRRUS-BOOT web\n");
        let tail = get(format!("/servers/{uid}/console?tailBytes=17"))
            .await
            .unwrap();
        assert_eq!(tail.text().await.unwrap(), "CIRRUS-BOOT web\n");
        let missing = get(format!("/servers/{}/console", Uuid::new_v4()))
            .await
            .unwrap();
        assert_eq!(missing.status().as_u16(), 404);
        let escape = get("/servers/..%2F..%2Fetc/console".to_string())
            .await
            .unwrap();
        assert_eq!(escape.status().as_u16(), 400);
        server.abort();
    }
}
