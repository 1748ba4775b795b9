//! OpenStack error bodies, one [`Fault`] type rendered in each service's dialect.
//!
//! - compute (Nova): `{"itemNotFound": {"code": 404, "message": "..."}}` — the key names the
//!   fault (`badRequest`, `itemNotFound`, `forbidden`, `conflictingRequest`, `overLimit`,
//!   `computeFault`, `HTTPNotImplemented`...).
//! - network (Neutron): `{"NeutronError": {"type": "...", "message": "...", "detail": ""}}`.
//! - image (Glance) and block-storage (Cinder): Glance answers `{"code", "title",
//!   "message"}`-like bodies; Cinder uses Nova's shape ([`Dialect::Volume`]).
//!
//! A quota refusal of the admission (reason [`crate::quota::REASON`]) becomes each service's
//! own over-quota fault ([`Fault::over_quota`]): Nova `403 forbidden`, Neutron `409
//! OverQuota`, Cinder and Glance `413 overLimit`, with the admission's message naming the
//! quota.
//!
//! Every handler returns `Result<_, Fault>`; `?` on an [`ApiError`] (the native admission and
//! store errors) keeps its status and message, so a validation error names the field in
//! every API.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::Refusal;
use crate::error::ApiError;

/// Which service's error format to render.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Nova (and Cinder, which shares the shape).
    Compute,
    /// Neutron.
    Network,
    /// Glance.
    Image,
    /// Cinder: Nova's body shape, its own over-quota status (413).
    Volume,
}

/// An OpenStack error: status, message and the dialect to render it in.
#[derive(Debug, Clone)]
pub struct Fault {
    /// HTTP status.
    pub code: StatusCode,
    /// Human message naming the problem (field, id, quota).
    pub message: String,
    /// Neutron's exception type (`NetworkNotFound`...); derived from the code when `None`.
    pub kind: Option<&'static str>,
    /// How to render.
    pub dialect: Dialect,
}

impl Fault {
    /// A fault with `code` and `message` in `dialect`.
    pub fn new(dialect: Dialect, code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            kind: None,
            dialect,
        }
    }

    /// 400: the request is malformed or a field is invalid (the message names it).
    pub fn bad_request(dialect: Dialect, message: impl Into<String>) -> Self {
        Self::new(dialect, StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such thing (or the caller may not see it).
    pub fn not_found(dialect: Dialect, message: impl Into<String>) -> Self {
        Self::new(dialect, StatusCode::NOT_FOUND, message)
    }

    /// 403: visible but not allowed (or a quota, for Nova).
    pub fn forbidden(dialect: Dialect, message: impl Into<String>) -> Self {
        Self::new(dialect, StatusCode::FORBIDDEN, message)
    }

    /// 409: the state does not allow it (in use, already exists, wrong status).
    pub fn conflict(dialect: Dialect, message: impl Into<String>) -> Self {
        Self::new(dialect, StatusCode::CONFLICT, message)
    }

    /// 413: over a quota or size limit.
    pub fn over_limit(dialect: Dialect, message: impl Into<String>) -> Self {
        Self::new(dialect, StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// 500.
    pub fn internal(dialect: Dialect, message: impl Into<String>) -> Self {
        Self::new(dialect, StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The same fault with Neutron exception type `kind`.
    pub fn with_kind(mut self, kind: &'static str) -> Self {
        self.kind = Some(kind);
        self
    }

    /// A native [`ApiError`] (admission, validation, store) in `dialect`, same status and
    /// message; a quota refusal becomes the service's over-quota fault ([`Fault::over_quota`]).
    pub fn from_api(dialect: Dialect, error: ApiError) -> Self {
        if error.reason() == crate::quota::REASON {
            return Self::over_quota(dialect, error.message());
        }
        Self::new(dialect, error.code(), error.message().to_string())
    }

    /// A create refused by a quota, the way each service says it: Nova `403` (`forbidden`),
    /// Neutron `409` `OverQuota`, Cinder and Glance `413` (`overLimit`).
    pub fn over_quota(dialect: Dialect, message: impl Into<String>) -> Self {
        match dialect {
            Dialect::Compute => Self::forbidden(dialect, message),
            Dialect::Network => Self::conflict(dialect, message).with_kind("OverQuota"),
            Dialect::Volume | Dialect::Image => Self::over_limit(dialect, message),
        }
    }

    /// A refused authorization: `404` naming `what` for [`Refusal::NotFound`], `403` else.
    pub fn refused(dialect: Dialect, refusal: Refusal, what: &str) -> Self {
        match refusal {
            Refusal::NotFound => Self::not_found(dialect, format!("{what} could not be found.")),
            Refusal::Forbidden => Self::forbidden(
                dialect,
                format!(
                    "Policy doesn't allow this operation on {what}: your role is read-only here."
                ),
            ),
        }
    }

    fn compute_key(&self) -> &'static str {
        match self.code.as_u16() {
            400 => "badRequest",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "itemNotFound",
            405 => "HTTPMethodNotAllowed",
            409 => "conflictingRequest",
            413 => "overLimit",
            415 => "HTTPUnsupportedMediaType",
            501 => "HTTPNotImplemented",
            503 => "serviceUnavailable",
            _ => "computeFault",
        }
    }

    fn neutron_kind(&self) -> &'static str {
        self.kind.unwrap_or(match self.code.as_u16() {
            400 => "HTTPBadRequest",
            401 => "HTTPUnauthorized",
            403 => "HTTPForbidden",
            404 => "HTTPNotFound",
            409 => "HTTPConflict",
            413 => "OverQuota",
            _ => "HTTPInternalServerError",
        })
    }
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        let body = match self.dialect {
            Dialect::Compute | Dialect::Volume => json!({
                self.compute_key(): {"code": self.code.as_u16(), "message": self.message}
            }),
            Dialect::Network => json!({
                "NeutronError": {"type": self.neutron_kind(), "message": self.message, "detail": ""}
            }),
            Dialect::Image => json!({
                "code": self.code.as_u16(),
                "title": self.code.canonical_reason().unwrap_or("Error"),
                "message": self.message,
            }),
        };
        (self.code, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn over(dialect: Dialect) -> (StatusCode, serde_json::Value) {
        let error = ApiError::new(
            StatusCode::FORBIDDEN,
            crate::quota::REASON,
            "Quota exceeded for port: requested 1, but already used 1 of 1 port",
        );
        let response = Fault::from_api(dialect, error).into_response();
        let status = response.status();
        let body = futures::executor::block_on(axum::body::to_bytes(response.into_body(), 4096))
            .expect("a body");
        (status, serde_json::from_slice(&body).expect("JSON"))
    }

    #[test]
    fn quota_refusals_are_each_services_own_fault() {
        let (status, body) = over(Dialect::Compute);
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["forbidden"]["code"], 403);
        let (status, body) = over(Dialect::Network);
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["NeutronError"]["type"], "OverQuota");
        assert!(
            body["NeutronError"]["message"]
                .as_str()
                .unwrap()
                .contains("port")
        );
        let (status, body) = over(Dialect::Volume);
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["overLimit"]["code"], 413);
        let other = Fault::from_api(Dialect::Volume, ApiError::not_found("gone"));
        assert_eq!(other.code, StatusCode::NOT_FOUND);
    }
}
