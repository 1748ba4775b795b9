//! HTTP client of the Cirrus native API (`cirrus.dev/v1`, see `docs/api.md`): the one client
//! of that API in the workspace.
//!
//! [`Client`] holds the base URL, an optional token source and a `reqwest::Client`. Objects
//! are reached through a view of one kind, either across the cloud (cluster-scoped kinds, or
//! all projects of a project-scoped kind for reads) or inside one project:
//! - [`Api<K>`] for a typed kind (`Api::<Server>::in_project(client, "demo")`), decoding
//!   into `K`;
//! - [`DynamicApi`] for a kind known only at run time by its [`cirrus_crds::KindInfo`] (the
//!   CLI, automation), over [`serde_json::Value`] objects, with server-side dry runs.
//!
//! Both share one URL builder (whole percent-encoded path segments, [`url_from_segments`]),
//! one request path (token, one retry after a refused renewable token, Status errors), one
//! list-page decoder and one watch-stream reader. Image data and server consoles are
//! [`Client::image_upload`], [`Client::image_download`] and [`Client::server_console`].
//! Every failure is a [`ClientError`], with the API's Status `code`/`reason` kept so callers
//! can tell "not found", "someone wrote first" and "compacted" apart.
//!
//! # Guarantees
//! - Writes carry the object's `metadata.resourceVersion` when it has one, so a stale
//!   [`Api::replace`] or a patch holding a resourceVersion fails with `409 Conflict`
//!   ([`ClientError::is_conflict`]) instead of overwriting a newer object.
//! - [`Api::watch`] and [`DynamicApi::watch_matching`] yield changes after the given revision
//!   in order; they end after an error (a `410 Gone` is reported as [`ClientError::is_gone`])
//!   or when the server closes the stream. Resuming and relisting are the caller's job (the
//!   runtime's watcher, which takes either Api).
//!
//! This crate does no retries of its own beyond renewing a refused token once:
//! [`ClientError::retryable`] says when one may help.

pub mod auth;
mod collection;
pub mod dynamic;
mod error;
pub mod images;
mod transfer;
mod typed;
mod url;
mod watch;

use std::fmt;
use std::sync::Arc;

use cirrus_crds::Resource;
use serde::de::DeserializeOwned;

pub use dynamic::DynamicApi;
pub use error::{ClientError, ConnectFailure};
pub use images::find_image;
pub use typed::Api;
pub use url::{encode_query_value, url_from_segments};

/// Result of a client call.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Where the API is and how to authenticate; cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Client {
    /// API base URL without a trailing slash, e.g. `http://127.0.0.1:6443`.
    pub base_url: String,
    /// Where the token sent with every request comes from (`None`: no token).
    pub auth: Option<Arc<dyn auth::TokenSource>>,
    /// The HTTP client (connection pool, timeouts).
    pub http: reqwest::Client,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the API at `base_url` with a default HTTP client and no token.
    pub fn new(base_url: impl Into<String>) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_string();
        Self {
            base_url,
            auth: None,
            http: cirrus_tls::default_client(),
        }
    }

    /// A client of the API at `server`, which must be an `http` or `https` URL (as a user
    /// types it: `--server`, `CIRRUS_URL`).
    ///
    /// # Errors
    /// [`ClientError::BadUrl`] when `server` is not such a URL.
    pub fn parse(server: &str) -> Result<Self> {
        let bad = |message: String| ClientError::BadUrl {
            url: server.to_string(),
            message,
        };
        let url = reqwest::Url::parse(server).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "the scheme must be http or https, not {}",
                url.scheme()
            )));
        }
        Ok(Self::new(server))
    }

    /// The same client, sending its requests through `http` (its own timeouts, say).
    pub fn with_http(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// The same client, sending the fixed `token`.
    pub fn with_token(self, token: impl Into<String>) -> Self {
        self.with_token_source(Arc::new(auth::StaticToken(token.into())))
    }

    /// The same client, taking its tokens from `source` (e.g. a [`auth::PasswordLogin`]
    /// that renews them).
    pub fn with_token_source(mut self, source: Arc<dyn auth::TokenSource>) -> Self {
        self.auth = Some(source);
        self
    }

    /// The same client, logging in as `user` with `password` (scoped to `project`) at this
    /// API's identity service and renewing the token as needed.
    pub fn with_password(
        self,
        user: impl Into<String>,
        password: impl Into<String>,
        project: Option<String>,
    ) -> Self {
        let login = auth::PasswordLogin::new(&self.base_url, user, password, project);
        self.with_token_source(login)
    }

    /// The token to send now, if the client has a source.
    pub async fn current_token(&self) -> Result<Option<String>> {
        match &self.auth {
            Some(source) => Ok(Some(source.token().await?)),
            None => Ok(None),
        }
    }

    /// `base_url` followed by `segments`, each one percent-encoded as a single path segment
    /// (so a `/`, `?`, `#` or `%` inside a name can never change which route the URL
    /// reaches). The one way to build a native-API URL from names.
    ///
    /// # Errors
    /// [`ClientError::InvalidObject`] for an empty, `.` or `..` segment: URL parsers resolve
    /// dot segments (encoded ones too), so they are refused rather than sent.
    pub fn url(&self, segments: &[&str]) -> Result<String> {
        url_from_segments(&self.base_url, segments)
    }

    /// A request builder carrying the current token.
    pub async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<(reqwest::RequestBuilder, Option<String>)> {
        let builder = self.http.request(method, url);
        let token = self.current_token().await?;
        Ok(match &token {
            Some(t) => (
                builder.header(cirrus_crds::conventions::AUTH_HEADER, t),
                token,
            ),
            None => (builder, None),
        })
    }

    /// Sends a request and returns the successful response, or the API's error. A `401` to
    /// a token its source can renew is retried once with a new token.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<reqwest::Response> {
        let mut retried = false;
        let response = loop {
            let (mut builder, token) = self.request(method.clone(), url).await?;
            if let Some((content_type, body)) = &body {
                builder = builder
                    .header(reqwest::header::CONTENT_TYPE, *content_type)
                    .body(body.clone());
            }
            tracing::trace!(%method, url, "api request");
            let response = builder.send().await.map_err(|source| ClientError::Http {
                method: method.to_string(),
                url: url.to_string(),
                source,
            })?;
            let refused = response.status() == reqwest::StatusCode::UNAUTHORIZED;
            if refused
                && !retried
                && let (Some(source), Some(token)) = (&self.auth, &token)
                && source.refused(token)
            {
                retried = true;
                continue;
            }
            break response;
        };
        Self::answer(url, method, response).await
    }

    /// `response` when it is a success, else the API's error read from its body.
    pub(crate) async fn answer(
        url: &str,
        method: reqwest::Method,
        response: reqwest::Response,
    ) -> Result<reqwest::Response> {
        if response.status().is_success() {
            return Ok(response);
        }
        let code = response.status().as_u16();
        let body = response.bytes().await.map_err(|source| ClientError::Http {
            method: method.to_string(),
            url: url.to_string(),
            source,
        })?;
        Err(ClientError::from_status(code, &body))
    }

    /// The JSON body of a successful `response`.
    pub(crate) async fn decode<T: DeserializeOwned>(
        url: &str,
        method: reqwest::Method,
        response: reqwest::Response,
    ) -> Result<T> {
        let bytes = response.bytes().await.map_err(|source| ClientError::Http {
            method: method.to_string(),
            url: url.to_string(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            url: url.to_string(),
            source,
        })
    }

    /// Sends a request and decodes the JSON answer.
    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<T> {
        let response = self.send(method.clone(), url, body).await?;
        Self::decode(url, method, response).await
    }

    /// `GET` of a JSON document at `url` (this API's identity routes, say), with the token.
    ///
    /// # Errors
    /// As every call: the API's error, a transport failure, an undecodable body.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T> {
        self.send_json(reqwest::Method::GET, url, None).await
    }
}

/// Options of a list call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListParams {
    /// Label selector (`a=b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`; comma = and).
    pub label_selector: Option<String>,
    /// Field selector (`spec.nodeName=node-a`, `metadata.name!=x`; comma = and).
    pub field_selector: Option<String>,
    /// Page size; the answer carries a continue token when more remain.
    pub limit: Option<u32>,
    /// Continue token from the previous page (`metadata.continue`).
    pub continue_token: Option<String>,
}

impl ListParams {
    /// Selects objects by label.
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Selects objects by field.
    pub fn fields(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = Some(selector.into());
        self
    }

    /// Limits the page size.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// One page of a list: the objects and the revision they were read at.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectList<K> {
    /// The objects.
    pub items: Vec<K>,
    /// The list's revision (`metadata.resourceVersion`): watch from here to see later changes.
    pub resource_version: String,
    /// Token of the next page, when the list was limited and more remain.
    pub continue_token: Option<String>,
}

/// One change reported by [`Api::watch`].
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<K> {
    /// An object was created (or existed at the start of a watch from revision 0).
    Added(K),
    /// An object was changed.
    Modified(K),
    /// An object was deleted; this is its last state.
    Deleted(K),
    /// No change, but the watch has reached this revision (resume from it).
    Bookmark {
        /// The revision.
        resource_version: String,
    },
}

impl<K: Resource> WatchEvent<K> {
    /// The revision to resume a watch from after handling this event.
    pub fn resource_version(&self) -> Option<&str> {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                o.meta().resource_version.as_deref()
            }
            WatchEvent::Bookmark { resource_version } => Some(resource_version),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_built_from_whole_segments() {
        let client = Client::new("http://127.0.0.1:6443/");
        assert_eq!(
            client
                .url(&[
                    "apis",
                    "cirrus.dev",
                    "v1",
                    "projects",
                    "demo",
                    "images",
                    "web"
                ])
                .unwrap(),
            "http://127.0.0.1:6443/apis/cirrus.dev/v1/projects/demo/images/web"
        );
        // Nothing inside a segment can reach another route.
        let url = client
            .url(&["projects", "../admin", "x?y#z", "%2e%2e", "a%2Fb"])
            .unwrap();
        assert_eq!(
            url,
            "http://127.0.0.1:6443/projects/..%2Fadmin/x%3Fy%23z/%252e%252e/a%252Fb"
        );
        let parsed = reqwest::Url::parse(&url).unwrap();
        assert_eq!(parsed.path_segments().unwrap().count(), 5);
        // Dot and empty segments, which URL parsers resolve or collapse, are refused.
        for bad in ["..", ".", ""] {
            assert!(client.url(&["a", bad, "b"]).is_err(), "{bad:?}");
        }
    }
}
