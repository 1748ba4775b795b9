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
    let mut err = ApiError::not_found(format!("no such path {}", uri.path())).into_response();
    *err.status_mut() = StatusCode::NOT_FOUND;
    err
}
