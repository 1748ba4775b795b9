//! Compute (Nova) API v2.1 under `/compute`: version discovery, the microversion
//! negotiation every compute response carries, and the routers of the compute resources.
//!
//! Cirrus implements microversion 2.1 only (min = max = 2.1). A request may ask for it
//! with `X-OpenStack-Nova-API-Version: 2.1` or `OpenStack-API-Version: compute 2.1` (or
//! `latest`, which means 2.1); every response under `/compute/v2.1` says which version
//! answered in both headers and `Vary`s on them, as Nova does. Any other version is `406`
//! (`400` when it is not a version string at all).

mod actions;
mod flavors;
mod hosts;
mod keypairs;
mod limits;
mod microversion;
mod quota_sets;
mod related;
mod server_create;
mod server_view;
mod servers;
mod volume_attachments;

use axum::Json;
use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::{Value, json};

use super::common::base_url;
use crate::ApiState;

pub use microversion::{MAX_VERSION, MIN_VERSION};

/// When the v2.1 API was declared (Nova's constant, which clients only display).
const V21_UPDATED: &str = "2013-07-23T11:33:21Z";

/// All compute routes, with the microversion layer around them.
pub fn router() -> Router<ApiState> {
    let routes = Router::new()
        .route("/compute", get(versions))
        .route("/compute/", get(versions))
        .route("/compute/v2.1", get(version))
        .route("/compute/v2.1/", get(version))
        .merge(servers::router())
        .merge(flavors::router())
        .merge(keypairs::router())
        .merge(hosts::router())
        .merge(limits::router())
        .merge(volume_attachments::router())
        .merge(quota_sets::router());
    // Other compute resources merge their routers above this line, so that the
    // microversion layer below wraps them too.
    routes.layer(axum::middleware::from_fn(microversion::layer))
}

/// The v2.1 version entry, with absolute links for the host the client used.
fn v21(headers: &HeaderMap) -> Value {
    json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": MAX_VERSION,
        "min_version": MIN_VERSION,
        "updated": V21_UPDATED,
        "links": [
            {"rel": "self", "href": format!("{}/compute/v2.1/", base_url(headers))},
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
        ],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.compute+json;version=2.1",
        }],
    })
}

/// `GET /compute`: the versions list (only v2.1 is served).
async fn versions(headers: HeaderMap) -> Json<Value> {
    let mut entry = v21(&headers);
    if let Some(map) = entry.as_object_mut() {
        map.remove("media-types");
        map.insert(
            "links".into(),
            json!([{"rel": "self", "href": format!("{}/compute/v2.1/", base_url(&headers))}]),
        );
    }
    Json(json!({ "versions": [entry] }))
}

/// `GET /compute/v2.1`: the v2.1 document.
async fn version(headers: HeaderMap) -> Json<Value> {
    Json(json!({ "version": v21(&headers) }))
}

/// Absolute `self` and `bookmark` links of a compute resource (`servers`, `flavors`,
/// `images`) with id `id`.
pub(crate) fn links(headers: &HeaderMap, collection: &str, id: &str) -> Value {
    let base = base_url(headers);
    json!([
        {"rel": "self", "href": format!("{base}/compute/v2.1/{collection}/{id}")},
        {"rel": "bookmark", "href": format!("{base}/compute/{collection}/{id}")},
    ])
}

/// The `bookmark` link alone (how Nova links a server's image and flavor).
pub(crate) fn bookmark(headers: &HeaderMap, collection: &str, id: &str) -> Value {
    json!([{"rel": "bookmark", "href": format!("{}/compute/{collection}/{id}", base_url(headers))}])
}
