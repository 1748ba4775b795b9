//! Version discovery documents at `/identity` and `/identity/v3`, as keystoneauth reads them.

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// The Keystone API version Cirrus claims (the v3 minor keystoneauth sees).
pub const VERSION_ID: &str = "v3.14";
const UPDATED: &str = "2020-04-07T00:00:00Z";

/// `scheme://host` for absolute links: the configured public endpoint, else the request's
/// (the one rule every service's links follow).
pub(super) use crate::openstack::common::base_url;

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
