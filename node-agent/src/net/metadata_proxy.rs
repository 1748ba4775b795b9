//! The metadata proxy: `169.254.169.254:80` inside each DHCP namespace, forwarding guests'
//! `GET`s to the API's metadata service (`<api>/metadata<path>`).
//!
//! The API identifies the instance from two headers only the proxy sets:
//! `X-Cirrus-Network: <project>/<network name>` (which namespace the request came in on) and
//! `X-Cirrus-Source-Ip` (the TCP peer address). Whatever `X-Cirrus-*` or `Forwarded` headers a
//! guest sends are dropped, so a guest cannot claim to be another one.
//!
//! The listening socket is created inside the namespace by [`netns::tcp_listener_in`]; the
//! serving task runs on the agent's tokio runtime like any other.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::net::dhcp::METADATA_IP;
use crate::net::netns::{self, NetnsError};

/// Header naming the network a request came in on (`<project>/<network name>`).
pub const NETWORK_HEADER: &str = "x-cirrus-network";
/// Header with the guest's address, taken from the TCP peer.
pub const SOURCE_IP_HEADER: &str = "x-cirrus-source-ip";

/// How long the proxy waits for the API.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Headers not copied from a guest request: hop-by-hop ones, `Host`, and anything that
/// could claim an identity.
fn dropped(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.starts_with("x-cirrus-")
        || name.starts_with("x-forwarded-")
        || matches!(
            name,
            "forwarded"
                | "x-real-ip"
                | "host"
                | "connection"
                | "keep-alive"
                | "proxy-connection"
                | "proxy-authorization"
                | "authorization"
                | "x-auth-token"
                | "cookie"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "content-length"
        )
}

/// The headers sent to the API for a guest request: the guest's harmless headers plus the
/// network and the peer address.
pub fn forward_headers(guest: &HeaderMap, network: &str, peer: IpAddr) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in guest {
        if !dropped(name) {
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

/// What one proxy needs to forward.
#[derive(Clone, Debug)]
struct ProxyState {
    api: cirrus_client::Client,
    network: String,
}

async fn forward(
    State(state): State<Arc<ProxyState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "only GET\n").into_response();
    }
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!(
        "{}/metadata{}",
        state.api.base_url.trim_end_matches('/'),
        path_and_query
    );
    let headers = forward_headers(request.headers(), &state.network, peer.ip());
    let builder = match state.api.request(request.method().clone(), &url).await {
        Ok((builder, _)) => builder,
        Err(e) => {
            tracing::warn!(error = %e, %url, "no token for the metadata service");
            return (StatusCode::BAD_GATEWAY, "metadata service unreachable\n").into_response();
        }
    };
    let sent = builder.headers(headers).timeout(API_TIMEOUT).send().await;
    let upstream = match sent {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, %url, "metadata service unreachable");
            return (StatusCode::BAD_GATEWAY, "metadata service unreachable\n").into_response();
        }
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
/// aborted.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: cirrus_client::Client,
    network: String,
) -> std::io::Result<()> {
    let state = Arc::new(ProxyState { api, network });
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
    api: cirrus_client::Client,
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
    /// Proxies forwarding to the API `api` speaks to (with its node token), listening on
    /// port 80.
    pub fn new(api: cirrus_client::Client) -> Self {
        Self::with_port(api, 80)
    }

    /// As [`MetadataProxies::new`] with another listening port (tests).
    pub fn with_port(api: cirrus_client::Client, port: u16) -> Self {
        Self {
            api,
            port,
            running: Mutex::new(HashMap::new()),
        }
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
        let (api, net) = (self.api.clone(), network.to_string());
        let uid = network_uid.to_string();
        let task = tokio::spawn(async move {
            if let Err(e) = serve(listener, api, net).await {
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
mod tests {
    use super::*;

    #[test]
    fn guest_identity_headers_are_replaced_by_the_proxys() {
        let mut guest = HeaderMap::new();
        guest.insert("x-cirrus-network", "evil/other".parse().unwrap());
        guest.insert("X-Cirrus-Source-Ip", "10.0.0.99".parse().unwrap());
        guest.insert("x-cirrus-anything", "x".parse().unwrap());
        guest.insert("forwarded", "for=10.0.0.99".parse().unwrap());
        guest.insert("x-forwarded-for", "10.0.0.99".parse().unwrap());
        guest.insert("host", "169.254.169.254".parse().unwrap());
        guest.insert("accept", "application/json".parse().unwrap());
        let out = forward_headers(&guest, "demo/net1", "10.0.0.5".parse().unwrap());
        assert_eq!(out.get("x-cirrus-network").unwrap(), "demo/net1");
        assert_eq!(out.get_all("x-cirrus-source-ip").iter().count(), 1);
        assert_eq!(out.get("x-cirrus-source-ip").unwrap(), "10.0.0.5");
        assert!(out.get("x-cirrus-anything").is_none());
        assert!(out.get("forwarded").is_none());
        assert!(out.get("x-forwarded-for").is_none());
        assert!(out.get("host").is_none());
        assert_eq!(out.get("accept").unwrap(), "application/json");
    }
}
