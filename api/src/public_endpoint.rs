//! The address clients are told to use, when the operator has configured one.
//!
//! OpenStack bodies carry absolute URLs (the Keystone catalog, version documents, `links`,
//! `Location`), built from the request's `Host` and `X-Forwarded-Proto`/`X-Forwarded-Host`
//! ([`crate::openstack::common::base_url`]). Taken from the request, any client can make the
//! API hand out a catalog pointing elsewhere. With [`crate::ApiState::public_url`] set (as
//! `cirrus up` does), this layer replaces those headers on every request with the configured
//! endpoint before any handler reads them, so every link names it — Keystone's configured
//! endpoints, not the caller's say-so. Without it (tests, a development API behind nothing)
//! the request's headers are used as sent.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::ApiState;

/// `X-Forwarded-Proto`: the scheme the links use.
const FORWARDED_PROTO: &str = "x-forwarded-proto";
/// `X-Forwarded-Host`: dropped when an endpoint is configured.
const FORWARDED_HOST: &str = "x-forwarded-host";

/// The configured endpoint split into what the link builder reads: scheme and authority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicEndpoint {
    scheme: HeaderValue,
    authority: HeaderValue,
}

impl PublicEndpoint {
    /// Parses `url` (`http://host:port`, `https://name`; a path is not allowed: links add
    /// their own). `Err` names what is wrong.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("public endpoint {url:?}: expected scheme://host[:port]"))?;
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "public endpoint {url:?}: the scheme must be http or https"
            ));
        }
        let authority = rest.trim_end_matches('/');
        if authority.is_empty()
            || authority.contains(['/', '?', '#', '@'])
            || authority
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "public endpoint {url:?}: expected scheme://host[:port] without path, query or user"
            ));
        }
        Ok(Self {
            scheme: HeaderValue::from_str(scheme).map_err(|e| e.to_string())?,
            authority: HeaderValue::from_str(authority).map_err(|e| e.to_string())?,
        })
    }
}

/// The layer: with an endpoint configured, `Host` and `X-Forwarded-Proto` are set from it
/// and `X-Forwarded-Host` removed on every request.
pub async fn apply(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    if let Some(public) = &state.public_url {
        let headers = request.headers_mut();
        headers.insert(header::HOST, public.authority.clone());
        headers.insert(FORWARDED_PROTO, public.scheme.clone());
        headers.remove(FORWARDED_HOST);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_scheme_and_authority_only() {
        let p = PublicEndpoint::parse("https://cloud.example:5000/").unwrap();
        assert_eq!(p.scheme, "https");
        assert_eq!(p.authority, "cloud.example:5000");
        assert!(PublicEndpoint::parse("127.0.0.1:8080").is_err());
        assert!(PublicEndpoint::parse("ftp://x").is_err());
        assert!(PublicEndpoint::parse("http://x/identity").is_err());
        assert!(PublicEndpoint::parse("http://user@x").is_err());
        assert!(PublicEndpoint::parse("http://").is_err());
        assert!(PublicEndpoint::parse("http://a b").is_err());
    }
}
