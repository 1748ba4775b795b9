//! What can go wrong talking to the API, told apart so callers can react: an answer from the
//! API (with its Status `code` and `reason`), a transport failure, or a body we can't read.

use serde_json::Value;

/// An error from one API call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with an error Status (`404 NotFound`, `409 Conflict`, `410 Gone`, ...).
    #[error("API error {code} {reason}: {message}")]
    Api {
        /// HTTP status code (also the Status body's `code`).
        code: u16,
        /// CamelCase Status reason, e.g. `NotFound`, `Conflict`, `AlreadyExists`, `Gone`.
        reason: String,
        /// Human-readable message from the Status body.
        message: String,
    },
    /// The request could not be sent or the connection broke mid-response.
    #[error("request {method} {url} failed")]
    Http {
        /// HTTP method.
        method: String,
        /// What was requested.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// A streamed answer (a watch) broke after it had started: resume from the last event.
    #[error("the stream from {url} broke")]
    StreamBroken {
        /// What was requested.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The API answered with a body that is not what was expected.
    #[error("cannot decode the answer of {url}")]
    Decode {
        /// What was requested.
        url: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// An object-level call on a project-scoped kind through an all-projects [`crate::Api`]
    /// (`Api::all`), where the object carries no project either.
    #[error("{kind} is project-scoped: use Api::in_project or give the object a project")]
    ProjectRequired {
        /// The kind.
        kind: &'static str,
    },
    /// The object lacks something the call needs (a name, a resourceVersion).
    #[error("invalid object: {0}")]
    InvalidObject(String),
    /// The server address is not an http(s) URL.
    #[error("invalid server URL {url:?}: {message}")]
    BadUrl {
        /// The address given.
        url: String,
        /// Why it is not usable.
        message: String,
    },
    /// A local file to send could not be read.
    #[error("cannot read {path}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a request got no answer at all, told apart so a message can say what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Nothing answered at the address (refused, unreachable, timed out connecting).
    Unreachable {
        /// The innermost cause, e.g. `Connection refused (os error 111)`.
        reason: String,
    },
    /// The server's TLS certificate is not signed by a CA this client trusts.
    Untrusted {
        /// The innermost cause, e.g. `invalid peer certificate: UnknownIssuer`.
        reason: String,
    },
}

impl ClientError {
    /// Builds an [`ClientError::Api`] from an HTTP status and the body the API sent, which is a
    /// Kubernetes-style `Status` on native routes (anything else is kept as the message).
    pub fn from_status(code: u16, body: &[u8]) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let reason = field("reason").unwrap_or_else(|| default_reason(code).to_string());
        let message =
            field("message").unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
        ClientError::Api {
            code,
            reason,
            message,
        }
    }

    /// The HTTP status code of an API answer, if this is one.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The Status reason of an API answer, if this is one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            ClientError::Api { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// `404`: the object (or its project's collection) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// `409 Conflict`: a resourceVersion precondition failed (someone else wrote first).
    /// Re-read and try again. `409 AlreadyExists` is not a conflict (see
    /// [`ClientError::is_already_exists`]).
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409) && self.reason() != Some("AlreadyExists")
    }

    /// `409 AlreadyExists`: a create found the name taken.
    pub fn is_already_exists(&self) -> bool {
        self.code() == Some(409) && self.reason() == Some("AlreadyExists")
    }

    /// `410 Gone`: the requested revision has been compacted; list again.
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }

    /// True when the same call may succeed later without changing anything: transport
    /// failures, `429` and `5xx` answers. Conflicts are not retryable as-is: re-read first.
    pub fn retryable(&self) -> bool {
        match self {
            ClientError::Http { .. } | ClientError::StreamBroken { .. } => true,
            ClientError::Api { code, .. } => *code == 429 || *code >= 500,
            ClientError::Decode { .. }
            | ClientError::ProjectRequired { .. }
            | ClientError::InvalidObject(_)
            | ClientError::BadUrl { .. }
            | ClientError::File { .. } => false,
        }
    }

    /// A broken stream ([`ClientError::StreamBroken`]): the watch had started and may be
    /// resumed from its last event.
    pub fn is_stream_broken(&self) -> bool {
        matches!(self, ClientError::StreamBroken { .. })
    }

    /// For a request that could not connect: whether nothing answered or the answer's
    /// certificate is not trusted, with the innermost cause. `None` for every other error.
    pub fn connect_failure(&self) -> Option<ConnectFailure> {
        let ClientError::Http { source, .. } = self else {
            return None;
        };
        if !source.is_connect() {
            return None;
        }
        let mut reason = source.to_string();
        let mut chain = reason.clone();
        let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(source);
        while let Some(c) = cause {
            reason = c.to_string();
            chain.push_str(": ");
            chain.push_str(&reason);
            cause = c.source();
        }
        Some(if chain.to_ascii_lowercase().contains("certificate") {
            ConnectFailure::Untrusted { reason }
        } else {
            ConnectFailure::Unreachable { reason }
        })
    }
}

/// The Status reason the API would use for `code`, for bodies that are not a Status.
fn default_reason(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Gone",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        500..=599 => "InternalError",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_status_bodies() {
        let body = br#"{"kind":"Status","code":409,"reason":"Conflict","message":"stale"}"#;
        let err = ClientError::from_status(409, body);
        assert!(err.is_conflict());
        assert!(!err.is_already_exists());
        assert!(!err.retryable());
        assert_eq!(err.to_string(), "API error 409 Conflict: stale");

        let err = ClientError::from_status(409, br#"{"reason":"AlreadyExists","message":"x"}"#);
        assert!(err.is_already_exists() && !err.is_conflict());

        let err = ClientError::from_status(404, b"no route");
        assert!(err.is_not_found());
        assert_eq!(err.reason(), Some("NotFound"));
        assert!(ClientError::from_status(410, b"").is_gone());
        assert!(ClientError::from_status(503, b"").retryable());
        assert!(ClientError::from_status(429, b"").retryable());
        assert!(!ClientError::from_status(400, b"").retryable());
    }
}
