//! Nova's microversion negotiation: which version a request asks for, and the headers every
//! compute response carries.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::openstack::fault::{Dialect, Fault};

/// The lowest microversion served.
pub const MIN_VERSION: &str = "2.1";
/// The highest microversion served.
pub const MAX_VERSION: &str = "2.1";

/// Nova's legacy microversion header.
const NOVA_HEADER: &str = "x-openstack-nova-api-version";
/// The service-qualified header (`compute 2.1`).
const GENERIC_HEADER: &str = "openstack-api-version";

/// Why a requested microversion cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionError {
    /// Not `X.Y` nor `latest` (Nova: 400).
    Malformed(String),
    /// A well-formed version outside `MIN_VERSION..=MAX_VERSION` (Nova: 406).
    Unsupported(String),
}

/// The microversion `headers` ask for: `Ok(None)` when they ask for none (the minimum
/// applies), `Ok(Some("2.1"))` for 2.1 or `latest`. `OpenStack-API-Version` wins over the
/// legacy header when both name compute.
pub fn requested(headers: &HeaderMap) -> Result<Option<&'static str>, VersionError> {
    let generic = headers
        .get_all(GENERIC_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|entry| {
            let mut words = entry.split_whitespace();
            match (words.next(), words.next()) {
                (Some(service), Some(version)) if service.eq_ignore_ascii_case("compute") => {
                    Some(version.to_string())
                }
                _ => None,
            }
        });
    let legacy = headers
        .get(NOVA_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string());
    match generic.or(legacy) {
        None => Ok(None),
        Some(v) => check(&v).map(Some),
    }
}

/// Whether `version` (`X.Y` or `latest`) is served; the version that answers.
fn check(version: &str) -> Result<&'static str, VersionError> {
    if version.eq_ignore_ascii_case("latest") {
        return Ok(MAX_VERSION);
    }
    let parsed = version
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?)));
    match parsed {
        None => Err(VersionError::Malformed(version.to_string())),
        Some((2, 1)) => Ok(MAX_VERSION),
        Some(_) => Err(VersionError::Unsupported(version.to_string())),
    }
}

/// Middleware of every compute route: refuses versions not served (except on the version
/// documents, which answer whatever is asked) and stamps the version headers and `Vary` on
/// every response.
pub async fn layer(request: Request, next: Next) -> Response {
    let path = request.uri().path().trim_end_matches('/');
    let is_document = path == "/compute" || path == "/compute/v2.1";
    let mut response = match requested(request.headers()) {
        Err(VersionError::Malformed(v)) if !is_document => Fault::bad_request(
            Dialect::Compute,
            format!("API Version String {v} is of invalid format. Must be of format MajorNum.MinorNum."),
        )
        .into_response(),
        Err(VersionError::Unsupported(v)) if !is_document => Fault::new(
            Dialect::Compute,
            axum::http::StatusCode::NOT_ACCEPTABLE,
            format!(
                "Version {v} is not supported by the API. Minimum is {MIN_VERSION} and maximum is {MAX_VERSION}."
            ),
        )
        .into_response(),
        _ => next.run(request).await,
    };
    if !is_document {
        let headers = response.headers_mut();
        headers.insert(NOVA_HEADER, HeaderValue::from_static(MAX_VERSION));
        headers.insert(GENERIC_HEADER, HeaderValue::from_static("compute 2.1"));
        headers.append(
            axum::http::header::VARY,
            HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn no_header_means_the_minimum() {
        assert_eq!(requested(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn both_headers_and_latest_resolve_to_2_1() {
        assert_eq!(
            requested(&headers(&[(NOVA_HEADER, "2.1")])),
            Ok(Some("2.1"))
        );
        assert_eq!(
            requested(&headers(&[(NOVA_HEADER, "latest")])),
            Ok(Some("2.1"))
        );
        assert_eq!(
            requested(&headers(&[(GENERIC_HEADER, "volume 3.0, compute 2.1")])),
            Ok(Some("2.1"))
        );
    }

    #[test]
    fn the_generic_header_wins_and_other_services_are_ignored() {
        assert_eq!(
            requested(&headers(&[
                (GENERIC_HEADER, "compute 2.1"),
                (NOVA_HEADER, "2.60")
            ])),
            Ok(Some("2.1"))
        );
        assert_eq!(
            requested(&headers(&[
                (GENERIC_HEADER, "volume 3.60"),
                (NOVA_HEADER, "2.1")
            ])),
            Ok(Some("2.1"))
        );
    }

    #[test]
    fn higher_versions_are_unsupported_and_garbage_is_malformed() {
        assert_eq!(
            requested(&headers(&[(NOVA_HEADER, "2.60")])),
            Err(VersionError::Unsupported("2.60".into()))
        );
        assert_eq!(
            requested(&headers(&[(GENERIC_HEADER, "compute 2.10")])),
            Err(VersionError::Unsupported("2.10".into()))
        );
        assert_eq!(
            requested(&headers(&[(NOVA_HEADER, "two")])),
            Err(VersionError::Malformed("two".into()))
        );
    }
}
