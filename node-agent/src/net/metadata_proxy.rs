//! The metadata proxy: `169.254.169.254:80` inside each DHCP namespace, forwarding guests'
//! `GET`s of metadata paths to the API's metadata service (`<api>/metadata/<path>`).
//!
//! The API identifies the instance from two headers only the proxy sets:
//! `X-Cirrus-Network: <project>/<network name>` (which namespace the request came in on) and
//! `X-Cirrus-Source-Ip` (the TCP peer address). Of what a guest sends only a few harmless
//! headers go on ([`forward_headers`]), so a guest cannot claim to be another one.
//!
//! # What a guest can reach
//! Guests are not trusted with anything, so the proxy is strict about what it forwards:
//! - only `GET`/`HEAD` of an origin-form request target (`/path?query`): absolute-form
//!   (`GET http://evil/ HTTP/1.1`) and the rest are `400`;
//! - [`metadata_path`] decodes each path segment's percent escapes and refuses `.`/`..`
//!   segments (however spelled: `%2e%2e`, `%2E.`), encoded separators (`%2f`, `%5c`),
//!   backslashes, control characters (`%00`, `%0d%0a`), empty inner segments, anything but
//!   unreserved characters, and paths over [`MAX_PATH_BYTES`] or queries over
//!   [`MAX_QUERY_BYTES`] (`414`); headers over [`MAX_HEADER_BYTES`] in all are `431`;
//! - only the metadata trees the API serves ([`METADATA_TREES`], and the root listing) are
//!   forwarded, anything else is `404` without asking the API;
//! - the upstream URL is built from the decoded segments with `Url::path_segments_mut`
//!   (never by pasting text), the query is dropped (the metadata service takes none), and
//!   redirects are not followed.
//!
//! And what it forwards carries a credential good for nothing else: the node's restricted
//! `system:metadata:<node>` token ([`MetadataToken`], see `cirrus_api::restricted`), which
//! the API refuses on every route but `/metadata` and answers only about this node's servers.
//!
//! The listening socket is created inside the namespace by [`netns::tcp_listener_in`]; the
//! serving task runs on the agent's tokio runtime like any other.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use cirrus_client::{Client, ClientError};
use futures::future::BoxFuture;
use reqwest::Url;

use crate::net::dhcp::METADATA_IP;
use crate::net::netns::{self, NetnsError};

/// Header naming the network a request came in on (`<project>/<network name>`).
pub use cirrus_crds::conventions::METADATA_NETWORK_HEADER as NETWORK_HEADER;
/// Header with the guest's address, taken from the TCP peer.
pub use cirrus_crds::conventions::METADATA_SOURCE_IP_HEADER as SOURCE_IP_HEADER;

/// The first path segments forwarded: the metadata trees the API's metadata service serves
/// (`cirrus_api::metadata::resolve`: the OpenStack layout under `openstack/`, the EC2 layout
/// under `latest/`; it serves no dated EC2 versions such as `2009-04-04`). The root (`/`,
/// the listing of these) is forwarded too.
pub const METADATA_TREES: &[&str] = &["openstack", "latest"];
/// Longest request path forwarded (metadata paths are a few dozen bytes).
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest query accepted (and dropped).
pub const MAX_QUERY_BYTES: usize = 1024;
/// Most header bytes (names and values) a guest request may carry.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Most headers a guest request may carry.
pub const MAX_HEADERS: usize = 64;

/// How long the proxy waits for the API.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a guest's request target is not forwarded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not `/path[?query]`: absolute-form (`http://host/...`), authority-form or `*`.
    #[error("only origin-form request targets (/path) are served")]
    NotOriginForm,
    /// The path or the query is longer than allowed.
    #[error("the {0} is too long")]
    TooLong(&'static str),
    /// A raw byte that has no place in a request target: a control character, a space,
    /// non-ASCII, a backslash or a `#`.
    #[error("byte 0x{0:02x} is not allowed in a request target")]
    Byte(u8),
    /// A `%` not followed by two hex digits.
    #[error("malformed percent escape")]
    BadEscape,
    /// A segment that decodes to `.` or `..`.
    #[error("dot segments are not allowed")]
    DotSegment,
    /// A segment that decodes to something containing `/` or `\`.
    #[error("encoded path separators are not allowed")]
    EncodedSeparator,
    /// A segment that decodes to a control character (NUL, CR, LF, ...).
    #[error("encoded control characters are not allowed")]
    EncodedControl,
    /// An empty segment other than a trailing slash (`//`).
    #[error("empty path segments are not allowed")]
    EmptySegment,
    /// A segment with a character metadata paths never have.
    #[error("path segments hold letters, digits, '-', '_', '.' and '~' only")]
    Character,
    /// A well-formed path outside the metadata trees.
    #[error("not a metadata path")]
    NotMetadata,
    /// The request's headers are too many or too large.
    #[error("request headers too large")]
    HeadersTooLarge,
}

impl Refusal {
    /// The status the guest gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::TooLong(_) => StatusCode::URI_TOO_LONG,
            Refusal::NotMetadata => StatusCode::NOT_FOUND,
            Refusal::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One raw segment with its percent escapes decoded (once).
fn decode_segment(raw: &str) -> Result<Vec<u8>, Refusal> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(Refusal::BadEscape);
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// The decoded path segments of a metadata request target (`/openstack/latest/x` →
/// `["openstack", "latest", "x"]`; a trailing slash leaves a last empty segment; `/` is
/// `[]`), or why it is not forwarded. `target` is the request target exactly as the guest
/// sent it (`/path[?query]`); the query is checked and then ignored.
///
/// # Errors
/// See [`Refusal`]: anything but an origin-form target made of plain segments under one of
/// the [`METADATA_TREES`].
pub fn metadata_path(target: &str) -> Result<Vec<String>, Refusal> {
    if let Some(bad) = target
        .bytes()
        .find(|&b| !(0x21..0x7f).contains(&b) || b == b'\\' || b == b'#')
    {
        return Err(Refusal::Byte(bad));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let Some(rest) = path.strip_prefix('/') else {
        return Err(Refusal::NotOriginForm);
    };
    if path.len() > MAX_PATH_BYTES {
        return Err(Refusal::TooLong("path"));
    }
    if query.len() > MAX_QUERY_BYTES {
        return Err(Refusal::TooLong("query"));
    }
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let raw: Vec<&str> = rest.split('/').collect();
    let mut segments = Vec::with_capacity(raw.len());
    for (i, segment) in raw.iter().enumerate() {
        let decoded = decode_segment(segment)?;
        if decoded.iter().any(|&b| b == b'/' || b == b'\\') {
            return Err(Refusal::EncodedSeparator);
        }
        if decoded.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return Err(Refusal::EncodedControl);
        }
        if decoded == b"." || decoded == b".." {
            return Err(Refusal::DotSegment);
        }
        if decoded.is_empty() && i + 1 < raw.len() {
            return Err(Refusal::EmptySegment);
        }
        if !decoded.iter().all(|&b| unreserved(b)) {
            return Err(Refusal::Character);
        }
        segments.push(String::from_utf8(decoded).map_err(|_| Refusal::Character)?);
    }
    if !METADATA_TREES.contains(&segments[0].as_str()) {
        return Err(Refusal::NotMetadata);
    }
    Ok(segments)
}

/// `<api>/metadata/<segments...>`, each segment pushed with `Url::path_segments_mut` (the
/// API's own base path kept); `None` when `api` cannot be a base URL.
pub fn upstream_url(api: &Url, segments: &[String]) -> Option<Url> {
    let mut url = api.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .push("metadata")
        .extend(segments);
    Some(url)
}

/// Whether a guest request's headers are within [`MAX_HEADERS`] and [`MAX_HEADER_BYTES`].
fn headers_fit(headers: &HeaderMap) -> bool {
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    headers.len() <= MAX_HEADERS && bytes <= MAX_HEADER_BYTES
}

/// Guest headers passed on: content negotiation and the client's name, nothing that could
/// claim an identity, steer the connection or change the encoding the proxy relays.
fn forwarded(name: &HeaderName) -> bool {
    matches!(name.as_str(), "accept" | "accept-language" | "user-agent")
}

/// The headers sent to the API for a guest request: the guest's harmless headers plus the
/// network and the peer address.
pub fn forward_headers(guest: &HeaderMap, network: &str, peer: IpAddr) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in guest {
        if forwarded(name) {
            out.append(name.clone(), value.clone());
        }
    }
    if let Ok(v) = HeaderValue::from_str(network) {
        out.insert(HeaderName::from_static(NETWORK_HEADER), v);
    }
    out.insert(
        HeaderName::from_static(SOURCE_IP_HEADER),
        HeaderValue::from_str(&peer.to_string()).expect("an IP is a header value"),
    );
    out
}

/// The proxy's credential: a restricted `system:metadata:<node>` token, obtained with the
/// node's own token (`POST /apis/cirrus.dev/v1/nodes/<node>/metadatatoken`) and renewed at
/// half its life, or at once after the API refused it (`401`).
pub struct MetadataToken {
    node_client: Client,
    node: String,
    cached: cirrus_client::auth::TokenCache,
}

impl fmt::Debug for MetadataToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataToken")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Issued {
    token: String,
    expires_at: chrono::DateTime<chrono::Utc>,
}

impl MetadataToken {
    /// Metadata tokens of `node`, asked for with `node_client` (the node agent's client,
    /// carrying its node token).
    pub fn new(node_client: Client, node: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            node_client,
            node: node.into(),
            cached: cirrus_client::auth::TokenCache::new(),
        })
    }

    /// The issuing route's URL, built from segments.
    fn url(&self) -> Result<Url, ClientError> {
        let mut url = Url::parse(&self.node_client.base_url).map_err(|e| {
            ClientError::InvalidObject(format!(
                "the API URL {:?} is not a URL: {e}",
                self.node_client.base_url
            ))
        })?;
        url.path_segments_mut()
            .map_err(|()| {
                ClientError::InvalidObject(format!(
                    "the API URL {:?} cannot be a base",
                    self.node_client.base_url
                ))
            })?
            .pop_if_empty()
            .extend([
                "apis",
                "cirrus.dev",
                "v1",
                "nodes",
                &self.node,
                "metadatatoken",
            ]);
        Ok(url)
    }

    async fn fetch(&self) -> Result<(String, Instant), ClientError> {
        let url = self.url()?;
        let http_err = |source| ClientError::Http {
            method: "POST".into(),
            url: url.to_string(),
            source,
        };
        let mut retried = false;
        loop {
            let (builder, node_token) = self
                .node_client
                .request(reqwest::Method::POST, url.as_str())
                .await?;
            let response = builder
                .timeout(API_TIMEOUT)
                .send()
                .await
                .map_err(http_err)?;
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED
                && !retried
                && let (Some(source), Some(token)) = (&self.node_client.auth, &node_token)
                && source.refused(token)
            {
                retried = true;
                continue;
            }
            let body = response.bytes().await.map_err(http_err)?;
            if !status.is_success() {
                return Err(ClientError::from_status(status.as_u16(), &body));
            }
            let issued: Issued =
                serde_json::from_slice(&body).map_err(|source| ClientError::Decode {
                    url: url.to_string(),
                    source,
                })?;
            let lifetime = (issued.expires_at - chrono::Utc::now())
                .to_std()
                .unwrap_or_default();
            tracing::debug!(node = %self.node, expires_at = %issued.expires_at,
                "metadata token obtained");
            return Ok((issued.token, Instant::now() + lifetime / 2));
        }
    }
}

impl cirrus_client::auth::TokenSource for MetadataToken {
    fn token(&self) -> BoxFuture<'_, Result<String, ClientError>> {
        Box::pin(self.cached.get_or_renew(|| self.fetch()))
    }

    fn refused(&self, token: &str) -> bool {
        self.cached.forget(token);
        true
    }
}

/// A client of the same API as `node_client` whose token is `node`'s restricted metadata
/// token ([`MetadataToken`]): what the proxies of a real node forward with.
pub fn metadata_client(node_client: &Client, node: &str) -> Client {
    Client {
        base_url: node_client.base_url.clone(),
        auth: Some(MetadataToken::new(node_client.clone(), node)),
        http: node_client.http.clone(),
    }
}

/// The API a proxy forwards to, shared by a host's proxies so that
/// [`MetadataProxies::use_api`] reaches the running ones at once.
type SharedApi = Arc<std::sync::RwLock<Client>>;

/// What one proxy needs to forward.
#[derive(Debug)]
struct ProxyState {
    /// Where requests go, with which credential.
    api: SharedApi,
    /// The HTTP client: timeout, no redirects.
    http: reqwest::Client,
    network: String,
}

fn refuse(why: &Refusal) -> Response {
    (why.status(), format!("refused: {why}\n")).into_response()
}

async fn forward(
    State(state): State<Arc<ProxyState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let method = request.method().clone();
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "only GET\n").into_response();
    }
    let uri = request.uri();
    if uri.scheme().is_some() || uri.authority().is_some() {
        return refuse(&Refusal::NotOriginForm);
    }
    let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let segments = match metadata_path(target) {
        Ok(segments) => segments,
        Err(why) => {
            tracing::debug!(peer = %peer.ip(), network = %state.network, %why,
                "metadata request refused");
            return refuse(&why);
        }
    };
    if !headers_fit(request.headers()) {
        return refuse(&Refusal::HeadersTooLarge);
    }
    let api = state
        .api
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let Some(url) = Url::parse(&api.base_url)
        .ok()
        .and_then(|base| upstream_url(&base, &segments))
    else {
        tracing::warn!(api = %api.base_url, "the API URL cannot be a base URL");
        return (StatusCode::BAD_GATEWAY, "metadata service unreachable\n").into_response();
    };
    let headers = forward_headers(request.headers(), &state.network, peer.ip());
    let mut retried = false;
    let upstream = loop {
        let token = match api.current_token().await {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!(error = %e, "no token for the metadata service");
                return (StatusCode::BAD_GATEWAY, "metadata service unreachable\n").into_response();
            }
        };
        let mut builder = state
            .http
            .request(method.clone(), url.clone())
            .headers(headers.clone());
        if let Some(token) = &token {
            builder = builder.header(cirrus_crds::conventions::AUTH_HEADER, token);
        }
        let upstream = match builder.send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, %url, "metadata service unreachable");
                return (StatusCode::BAD_GATEWAY, "metadata service unreachable\n").into_response();
            }
        };
        if upstream.status() == reqwest::StatusCode::UNAUTHORIZED
            && !retried
            && let (Some(source), Some(token)) = (&api.auth, &token)
            && source.refused(token)
        {
            retried = true;
            continue;
        }
        break upstream;
    };
    let mut response = Response::builder().status(upstream.status().as_u16());
    if let Some(ct) = upstream.headers().get(reqwest::header::CONTENT_TYPE) {
        response = response.header("content-type", ct.as_bytes());
    }
    match upstream.bytes().await {
        Ok(body) => response
            .body(Body::from(body))
            .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response()),
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// Serves the proxy on `listener` (already bound where guests reach it) until the task is
/// aborted, forwarding with `api`'s credential.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Client,
    network: String,
) -> std::io::Result<()> {
    serve_shared(listener, Arc::new(std::sync::RwLock::new(api)), network).await
}

async fn serve_shared(
    listener: tokio::net::TcpListener,
    api: SharedApi,
    network: String,
) -> std::io::Result<()> {
    let http = cirrus_tls::http_client()
        .timeout(API_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(std::io::Error::other)?;
    let state = Arc::new(ProxyState { api, http, network });
    let app = Router::new().fallback(forward).with_state(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The listener could not be created in the namespace.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The listener could not be handed to the runtime.
    #[error("cannot use the listener: {0}")]
    Io(#[from] std::io::Error),
}

/// The metadata proxies of this host, one per DHCP namespace, keyed by network uid.
#[derive(Debug)]
pub struct MetadataProxies {
    api: SharedApi,
    port: u16,
    running: Mutex<HashMap<String, Running>>,
}

#[derive(Debug)]
struct Running {
    namespace: String,
    network: String,
    task: tokio::task::JoinHandle<()>,
}

impl MetadataProxies {
    /// Proxies forwarding to the API `api` speaks to, with `api`'s credential (a node's
    /// should be its restricted metadata token: [`metadata_client`]), listening on port 80.
    pub fn new(api: Client) -> Self {
        Self::with_port(api, 80)
    }

    /// As [`MetadataProxies::new`] with another listening port (tests).
    pub fn with_port(api: Client, port: u16) -> Self {
        Self {
            api: Arc::new(std::sync::RwLock::new(api)),
            port,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Forwards with `api` (its URL and credential) from now on, in the running proxies
    /// too (from their next request). The node agent calls it before any proxy runs, to give
    /// them the node's restricted metadata token ([`metadata_client`]) instead of its node
    /// token.
    pub fn use_api(&self, api: Client) {
        *self
            .api
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = api;
    }

    /// Makes a proxy run for network `network_uid` in namespace `namespace`, tagging
    /// requests with `network` (`<project>/<network name>`). Must be called on a tokio
    /// runtime; the namespace must already have [`METADATA_IP`] configured. Idempotent; a
    /// proxy whose task ended is started again.
    pub fn ensure(
        &self,
        network_uid: &str,
        namespace: &str,
        network: &str,
    ) -> Result<bool, ProxyError> {
        let mut running = self.running.lock().expect("proxy table lock");
        if let Some(r) = running.get(network_uid)
            && !r.task.is_finished()
            && r.namespace == namespace
            && r.network == network
        {
            return Ok(false);
        }
        if let Some(old) = running.remove(network_uid) {
            old.task.abort();
        }
        let addr = SocketAddr::new(IpAddr::V4(METADATA_IP), self.port);
        let listener = netns::tcp_listener_in(namespace, addr)?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let api = self.api.clone();
        let net = network.to_string();
        let uid = network_uid.to_string();
        let task = tokio::spawn(async move {
            if let Err(e) = serve_shared(listener, api, net).await {
                tracing::warn!(network = %uid, error = %e, "metadata proxy stopped");
            }
        });
        tracing::info!(network = %network_uid, %namespace, "metadata proxy started");
        running.insert(
            network_uid.to_string(),
            Running {
                namespace: namespace.to_string(),
                network: network.to_string(),
                task,
            },
        );
        Ok(true)
    }

    /// Stops the proxy of `network_uid` (before its namespace is deleted); `false` when none
    /// ran.
    pub fn stop(&self, network_uid: &str) -> bool {
        let removed = self
            .running
            .lock()
            .expect("proxy table lock")
            .remove(network_uid);
        match removed {
            Some(r) => {
                r.task.abort();
                true
            }
            None => false,
        }
    }

    /// Network uids with a proxy.
    pub fn networks(&self) -> Vec<String> {
        let mut uids: Vec<String> = self
            .running
            .lock()
            .expect("proxy table lock")
            .keys()
            .cloned()
            .collect();
        uids.sort();
        uids
    }
}

impl Drop for MetadataProxies {
    fn drop(&mut self) {
        if let Ok(running) = self.running.lock() {
            for r in running.values() {
                r.task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests;
