//! Keystone's error body: `{"error": {"code", "title", "message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error of the identity API, rendered the way Keystone renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystoneError {
    /// HTTP status.
    pub code: StatusCode,
    /// Human message (never says which of user or password was wrong).
    pub message: String,
}

impl KeystoneError {
    /// 400: the request body is not what Keystone accepts; `message` names the field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 401: the credentials or the scope were refused.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
    }

    /// 403: authenticated, but not allowed to do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }

    /// 404: e.g. a subject token that is invalid, expired or revoked.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// 500: a server-side problem (store unreachable, unusable stored hash).
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl IntoResponse for KeystoneError {
    fn into_response(self) -> Response {
        let title = self.code.canonical_reason().unwrap_or("Error");
        let body = json!({"error": {
            "code": self.code.as_u16(),
            "title": title,
            "message": self.message,
        }});
        (self.code, Json(body)).into_response()
    }
}

impl From<crate::error::ApiError> for KeystoneError {
    /// A refusal of the layers every front end shares (admission, the store), in Keystone's
    /// body: the same status (a store's `422` is Keystone's `400`) and the message that
    /// names the field.
    fn from(e: crate::error::ApiError) -> Self {
        let code = match e.code() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            code => code,
        };
        Self {
            code,
            message: e.message().to_string(),
        }
    }
}
