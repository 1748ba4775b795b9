//! The one place errors become HTTP responses: a Kubernetes-style `Status` body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cirrus_store::objects::ObjectError;
use serde::Serialize;

/// An error response of the native API.
#[derive(Debug)]
pub struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
    details: Option<Details>,
}

/// `details` of a Status: which object, and which fields were wrong.
#[derive(Debug, Serialize, Clone)]
struct Details {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<Cause>,
}

/// One field-level cause of an `Invalid` error.
#[derive(Debug, Serialize, Clone)]
struct Cause {
    field: String,
    reason: &'static str,
    message: String,
}

/// The wire form of a failure Status.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody<'a> {
    api_version: &'static str,
    kind: &'static str,
    status: &'static str,
    code: u16,
    reason: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a Details>,
}

impl ApiError {
    /// A failure with `code`, machine-readable `reason` and human `message`.
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 400: the request could not be understood.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 500: something on the server's side failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    /// 403: the caller may see the target but not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// The status message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The machine-readable reason (`NotFound`, `Conflict`, `Invalid`...).
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// 404: no such resource type or path.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// 405: the path exists but not with that method.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
    }

    /// 413: the body is larger than the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 415: the body's content type is not accepted here.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            message,
        )
    }

    /// The HTTP status code.
    pub fn code(&self) -> StatusCode {
        self.code
    }

    /// The Status body as JSON (also used inside watch `ERROR` events).
    pub fn to_status_json(&self) -> serde_json::Value {
        serde_json::to_value(StatusBody {
            api_version: "v1",
            kind: "Status",
            status: "Failure",
            code: self.code.as_u16(),
            reason: self.reason,
            message: &self.message,
            details: self.details.as_ref(),
        })
        .expect("status serializes")
    }
}

impl From<ObjectError> for ApiError {
    fn from(err: ObjectError) -> Self {
        let message = err.to_string();
        match err {
            ObjectError::NotFound { kind, name } => Self {
                code: StatusCode::NOT_FOUND,
                reason: "NotFound",
                message,
                details: Some(Details {
                    name: Some(name),
                    kind: Some(kind.into()),
                    causes: vec![],
                }),
            },
            ObjectError::AlreadyExists { kind, name } => Self {
                code: StatusCode::CONFLICT,
                reason: "AlreadyExists",
                message,
                details: Some(Details {
                    name: Some(name),
                    kind: Some(kind.into()),
                    causes: vec![],
                }),
            },
            ObjectError::Conflict { kind, name, .. }
            | ObjectError::PreconditionFailed { kind, name, .. } => Self {
                code: StatusCode::CONFLICT,
                reason: "Conflict",
                message,
                details: Some(Details {
                    name: Some(name),
                    kind: Some(kind.into()),
                    causes: vec![],
                }),
            },
            ObjectError::Invalid { kind, name, errors } => {
                let causes = errors
                    .0
                    .iter()
                    .map(|e| Cause {
                        field: e.field.clone(),
                        reason: if e.reason.starts_with("unknown field") {
                            "FieldValueNotSupported"
                        } else {
                            "FieldValueInvalid"
                        },
                        message: e.reason.clone(),
                    })
                    .collect();
                Self {
                    code: StatusCode::BAD_REQUEST,
                    reason: "Invalid",
                    message,
                    details: Some(Details {
                        name: (!name.is_empty()).then_some(name),
                        kind: Some(kind.into()),
                        causes,
                    }),
                }
            }
            ObjectError::BadRequest(_) => Self::bad_request(message),
            ObjectError::Expired(_) => Self::new(StatusCode::GONE, "Expired", message),
            ObjectError::Unavailable(source) => {
                tracing::warn!(error = %source, "store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    format!("the object store is unavailable: {source}"),
                )
            }
            ObjectError::Refused(refusal) => match refusal.0.downcast::<ApiError>() {
                Ok(refusal) => *refusal,
                Err(_) => Self::new(StatusCode::FORBIDDEN, "Forbidden", message),
            },
            ObjectError::Corrupt {
                ref key,
                ref source,
            } => {
                tracing::error!(%key, error = %source, "unreadable object in store");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code, axum::Json(self.to_status_json())).into_response()
    }
}
