//! Serving an axum router over TLS, the way `axum::serve` serves it in the clear.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower::ServiceExt;

use crate::TlsError;

/// A server's TLS configuration: its certificate chain and key.
pub type ServerConfig = Arc<rustls::ServerConfig>;

/// How long a client may take to finish the TLS handshake before it is dropped (so a
/// connection that never speaks holds only its own task, and not for long).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn pem_error(what: &str) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |e| TlsError::Pem {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

/// A server configuration from a PEM certificate chain (the server's first) and its key;
/// HTTP/1.1 over TLS 1.2 or 1.3.
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<ServerConfig, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error("server certificate"))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: "server certificate".into(),
            reason: "holds no PEM certificate".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(pem_error("server key"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// [`server_config`] from a certificate file and a key file.
pub fn server_config_from_files(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<ServerConfig, TlsError> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|source| TlsError::File {
            path: path.to_path_buf(),
            source,
        })
    };
    server_config(&read(cert)?, &read(key)?)
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves, then lets the open
/// connections finish their requests. Each request carries the peer's address as
/// `ConnectInfo<SocketAddr>`, as `into_make_service_with_connect_info` gives in the clear;
/// upgrades (websockets) work. A failed or slow handshake drops only that connection.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    // Told to every connection when the server stops; each then finishes its request.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    // Every connection task holds a sender; when all are gone, every connection has ended.
    let (open_tx, mut open) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let mut stopping = stopping.clone();
        let open = open_tx.clone();
        tokio::spawn(async move {
            let _open = open;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    router.clone().oneshot(request)
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    drop(open_tx);
    let _ = open.recv().await;
    Ok(())
}
