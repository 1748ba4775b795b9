//! Version discovery documents at `/identity` and `/identity/v3`, as keystoneauth reads them.

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// The Keystone API version Cirrus claims (the v3 minor keystoneauth sees).
pub const VERSION_ID: &str = "v3.14";
const UPDATED: &str = "2020-04-07T00:00:00Z";

/// `http://<Host>` of the request, for absolute links (`localhost` without a Host header).
pub(super) fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

fn v3(headers: &HeaderMap) -> Value {
    json!({
        "id": VERSION_ID,
        "status": "stable",
        "updated": UPDATED,
        "links": [{"rel": "self", "href": format!("{}/identity/v3/", base_url(headers))}],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.identity-v3+json",
        }],
    })
}

/// `GET /identity`: every version (only v3), with Keystone's `300 Multiple Choices`.
pub async fn versions(headers: HeaderMap) -> impl IntoResponse {
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({"versions": {"values": [v3(&headers)]}})),
    )
}

/// `GET /identity/v3`: the v3 document.
pub async fn version(headers: HeaderMap) -> Json<Value> {
    Json(json!({"version": v3(&headers)}))
}
