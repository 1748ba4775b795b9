//! Version documents: `GET /volume` (all versions, `300 Multiple Choices` as Cinder answers)
//! and `GET /volume/v3` (this version). Anonymous: clients read them before they log in.

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::VERSION;
use crate::openstack::common;

/// The one version served, with links under `base` (`scheme://host`).
pub fn version_entry(base: &str) -> Value {
    json!({
        "id": "v3.0",
        "status": "CURRENT",
        "version": VERSION,
        "min_version": VERSION,
        "updated": "2026-11-26T00:00:00Z",
        "links": [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": format!("{base}/volume/v3/")},
        ],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.volume+json;version=3",
        }],
    })
}

/// `GET /volume[/]`: every version (just v3.0).
pub async fn root(headers: HeaderMap) -> Response {
    let base = common::base_url(&headers);
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({ "versions": [version_entry(&base)] })),
    )
        .into_response()
}

/// `GET /volume/v3[/]` (and the catalog URL `/volume/v3/{project_id}`): this version.
pub async fn v3(headers: HeaderMap) -> Response {
    let base = common::base_url(&headers);
    Json(json!({ "versions": [version_entry(&base)] })).into_response()
}
