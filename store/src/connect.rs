//! Connecting an `etcd_client::Client` to any store endpoint, Unix sockets included.
//!
//! `etcd_client::Client::connect` only dials TCP: an endpoint that is not `http://…` or
//! `https://…` gets `http://` prepended, so `unix:///path` would become a host named `unix`.
//! [`connect`] accepts `unix:///path` (or `unix:/path`) too: it builds the tonic channel
//! itself over a [`tokio::net::UnixStream`] (`Endpoint::connect_with_connector`) and hands it
//! to `Client::from_channel` (etcd-client's `raw-channel` feature). The HTTP/2 `:authority`
//! it sends is `localhost`, which the embedded server (hyper/h2) accepts. Everything else is
//! passed to `Client::connect` unchanged, so a real etcd cluster is reached exactly as before.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use hyper_util::rt::TokioIo;
use tonic::codegen::Service;
use tonic::transport::{Endpoint, Uri};

/// How long dialling a Unix socket may take before [`connect`] gives up.
const UNIX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The Unix socket path of `endpoint` when it is a `unix:` URL (`unix:///abs/path`,
/// `unix:/abs/path` or `unix://relative`), `None` for anything else.
pub fn unix_socket_path(endpoint: &str) -> Option<PathBuf> {
    let rest = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))?;
    (!rest.is_empty()).then(|| PathBuf::from(rest))
}

/// The `unix://` URL of the socket at `path` (what [`connect`] and
/// [`crate::embedded::EmbeddedEtcd::endpoint`] use).
pub fn unix_endpoint(path: &Path) -> String {
    format!("unix://{}", path.display())
}

/// Connect to `endpoints`: one `unix:` socket URL, or any endpoints `Client::connect` takes.
///
/// Over a Unix socket the connection is dialled eagerly (a missing socket or a permission
/// error fails here) with a 5 s connect timeout; `options` then only carry what
/// `Client::from_channel` honours (credentials, `require_leader`) — its TCP timeouts and
/// keep-alives do not apply to a local socket.
///
/// # Errors
/// [`etcd_client::Error::InvalidArgs`] for a `unix:` endpoint mixed with others, transport
/// errors when the socket cannot be reached, and whatever `Client::connect` returns.
pub async fn connect<E: AsRef<str>>(
    endpoints: &[E],
    options: Option<ConnectOptions>,
) -> Result<Client, etcd_client::Error> {
    let unix: Vec<PathBuf> = endpoints
        .iter()
        .filter_map(|e| unix_socket_path(e.as_ref()))
        .collect();
    match unix.as_slice() {
        [] => Client::connect(endpoints, options).await,
        [path] if endpoints.len() == 1 => {
            let channel = Endpoint::from_static("http://localhost")
                .connect_timeout(UNIX_CONNECT_TIMEOUT)
                .connect_with_connector(UnixConnector {
                    path: Arc::new(path.clone()),
                })
                .await?;
            Client::from_channel(etcd_client::Channel::Tonic(channel), options).await
        }
        _ => Err(etcd_client::Error::InvalidArgs(format!(
            "a unix: endpoint must be the only endpoint (got {})",
            endpoints
                .iter()
                .map(|e| e.as_ref())
                .collect::<Vec<_>>()
                .join(",")
        ))),
    }
}

/// A tonic connector that ignores the URI and dials one Unix socket (re-dialled by tonic on
/// every reconnect).
#[derive(Clone, Debug)]
struct UnixConnector {
    path: Arc<PathBuf>,
}

impl Service<Uri> for UnixConnector {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let path = self.path.clone();
        Box::pin(async move {
            tokio::net::UnixStream::connect(path.as_path())
                .await
                .map(TokioIo::new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_endpoints_are_recognised() {
        assert_eq!(
            unix_socket_path("unix:///run/c/etcd.sock"),
            Some(PathBuf::from("/run/c/etcd.sock"))
        );
        assert_eq!(
            unix_socket_path("unix:/run/c/etcd.sock"),
            Some(PathBuf::from("/run/c/etcd.sock"))
        );
        assert_eq!(
            unix_socket_path("unix://etcd.sock"),
            Some(PathBuf::from("etcd.sock"))
        );
        assert_eq!(unix_socket_path("http://127.0.0.1:2379"), None);
        assert_eq!(unix_socket_path("127.0.0.1:2379"), None);
        assert_eq!(unix_socket_path("unix://"), None);
        assert_eq!(
            unix_endpoint(Path::new("/d/store/etcd.sock")),
            "unix:///d/store/etcd.sock"
        );
    }

    #[tokio::test]
    async fn a_unix_endpoint_must_be_alone() {
        let err = connect(&["unix:///nonexistent.sock", "http://127.0.0.1:1"], None)
            .await
            .err()
            .expect("mixing a unix endpoint with others is refused");
        assert!(matches!(err, etcd_client::Error::InvalidArgs(_)), "{err:?}");
        let err = connect(&["unix:///nonexistent/etcd.sock"], None)
            .await
            .err()
            .expect("a missing socket fails at connect");
        assert!(
            matches!(err, etcd_client::Error::TransportError(_)),
            "{err:?}"
        );
    }
}
