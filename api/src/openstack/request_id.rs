//! Request ids, as every OpenStack service sends them: each response of a service under
//! `/identity`, `/compute`, `/image`, `/network` or `/volume` carries
//! `x-openstack-request-id: req-<uuid>` (Nova also `x-compute-request-id`), and the request's
//! tracing span records the same id, so a user's bug report names a line in the log. Clients
//! rely on it: tempest reads the header of every server it creates, openstacksdk keeps it on
//! its resources.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// The header every OpenStack service answers with.
pub const OPENSTACK_REQUEST_ID: &str = "x-openstack-request-id";
/// Nova's older name for it, still read by clients.
pub const COMPUTE_REQUEST_ID: &str = "x-compute-request-id";

/// The OpenStack service a request path falls under, if any.
fn service_of(path: &str) -> Option<&str> {
    let first = path.trim_start_matches('/').split('/').next()?;
    matches!(
        first,
        "identity" | "compute" | "image" | "network" | "volume"
    )
    .then_some(first)
}

/// A fresh id in OpenStack's form.
fn new_request_id() -> String {
    format!("req-{}", uuid::Uuid::new_v4())
}

/// Middleware: stamps OpenStack services' responses with a fresh request id.
pub async fn stamp(request: Request, next: Next) -> Response {
    let Some(service) = service_of(request.uri().path()).map(str::to_string) else {
        return next.run(request).await;
    };
    let id = new_request_id();
    tracing::debug!(request_id = %id, %service, path = %request.uri().path(), "OpenStack request");
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        let headers = response.headers_mut();
        if service == "compute" {
            headers.insert(COMPUTE_REQUEST_ID, value.clone());
        }
        headers.insert(OPENSTACK_REQUEST_ID, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_openstack_services_get_request_ids() {
        assert_eq!(service_of("/compute/v2.1/servers"), Some("compute"));
        assert_eq!(service_of("/identity/v3/auth/tokens"), Some("identity"));
        assert_eq!(service_of("/volume/v3/p/volumes"), Some("volume"));
        assert_eq!(service_of("/apis/cirrus.dev/v1/flavors"), None);
        assert_eq!(service_of("/metadata/openstack"), None);
        assert_eq!(service_of("/computer"), None);
    }

    #[test]
    fn ids_have_openstacks_form() {
        let id = new_request_id();
        assert!(id.starts_with("req-"));
        assert!(uuid::Uuid::parse_str(&id[4..]).is_ok(), "{id}");
        assert_ne!(id, new_request_id());
    }
}
