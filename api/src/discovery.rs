//! Discovery, health and version endpoints.

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cirrus_crds::Scope;
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::ApiError;

/// `GET /apis/cirrus.dev/v1`: every resource type, Kubernetes `APIResourceList` shape.
pub async fn resources() -> Response {
    axum::Json(resource_list()).into_response()
}

/// The `APIResourceList` document.
pub fn resource_list() -> Value {
    let resources: Vec<Value> = cirrus_crds::all_kinds()
        .into_iter()
        .flat_map(|k| {
            let main = json!({
                "name": k.plural,
                "singularName": k.singular,
                "namespaced": k.scope == Scope::Project,
                "kind": k.kind,
                "shortNames": k.short_names,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            });
            let status = json!({
                "name": format!("{}/status", k.plural),
                "singularName": "",
                "namespaced": k.scope == Scope::Project,
                "kind": k.kind,
                "verbs": ["get", "patch", "update"],
            });
            [main, status]
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "APIResourceList",
        "groupVersion": cirrus_crds::API_VERSION,
        "resources": resources,
    })
}

/// `GET /apis`: the API groups served.
pub async fn groups() -> Response {
    axum::Json(json!({
        "apiVersion": "v1",
        "kind": "APIGroupList",
        "groups": [{
            "name": "cirrus.dev",
            "versions": [{"groupVersion": cirrus_crds::API_VERSION, "version": "v1"}],
            "preferredVersion": {"groupVersion": cirrus_crds::API_VERSION, "version": "v1"},
        }],
    }))
    .into_response()
}

/// `GET /healthz`: the process is serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the store answers.
pub async fn readyz(State(state): State<ApiState>) -> Result<&'static str, ApiError> {
    state.store.current_revision().await?;
    Ok("ok")
}

/// `GET /version`: what is running.
pub async fn version() -> Response {
    axum::Json(json!({
        "name": "cirrus",
        "version": env!("CARGO_PKG_VERSION"),
        "apiVersion": cirrus_crds::API_VERSION,
    }))
    .into_response()
}

/// Any other path: a Status 404 naming the path.
pub async fn fallback(uri: Uri) -> Response {
    not_found_in_dialect(uri.path())
}

/// The `404` for an unknown `path` in the error format of the service it falls under — an
/// OpenStack client parses only its own service's faults (`itemNotFound`, `NeutronError`,
/// Glance's and Keystone's bodies) — and a Kubernetes `Status` elsewhere.
fn not_found_in_dialect(path: &str) -> Response {
    use crate::openstack::fault::{Dialect, Fault};
    let message = format!("The resource could not be found: no such path {path}");
    let service = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    let dialect = match service {
        "compute" => Dialect::Compute,
        "volume" => Dialect::Volume,
        "network" => Dialect::Network,
        "image" => Dialect::Image,
        "identity" => {
            return crate::identity::error::KeystoneError::not_found(message).into_response();
        }
        _ => {
            let mut err = ApiError::not_found(format!("no such path {path}")).into_response();
            *err.status_mut() = StatusCode::NOT_FOUND;
            return err;
        }
    };
    Fault::not_found(dialect, message).into_response()
}

#[cfg(test)]
mod fallback_tests {
    use super::*;

    async fn body(path: &str) -> (StatusCode, Value) {
        let response = not_found_in_dialect(path);
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// Each service answers an unknown path in its own fault format.
    #[tokio::test]
    async fn unknown_paths_get_their_service_s_fault() {
        let (code, nova) = body("/compute/v2.1/no-such").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(nova["itemNotFound"]["code"], 404, "{nova}");
        let (_, cinder) = body("/volume/v3/p/no-such").await;
        assert_eq!(cinder["itemNotFound"]["code"], 404, "{cinder}");
        let (_, neutron) = body("/network/v2.0/no-such").await;
        assert!(neutron["NeutronError"]["message"].is_string(), "{neutron}");
        let (_, glance) = body("/image/v2/no-such").await;
        assert_eq!(glance["code"], 404, "{glance}");
        let (_, keystone) = body("/identity/v3/no-such").await;
        assert_eq!(keystone["error"]["code"], 404, "{keystone}");
        let (code, native) = body("/apis/cirrus.dev/v2").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(native["kind"], "Status", "{native}");
    }
}
