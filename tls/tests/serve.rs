//! The cloud's CA and TLS serving, end to end on loopback: a client trusting the CA gets the
//! answer (with its own address as ConnectInfo), one that does not trust it, or that speaks
//! plain HTTP, gets nothing; a reopened authority keeps signing for the same CA.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use cirrus_tls::{Authority, serve, server_config};

async fn start(
    authority: &Authority,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let issued = authority
        .issue_server("test-api", &["127.0.0.1".into(), "localhost".into()])
        .unwrap();
    let config = server_config(&issued.cert_pem, &issued.key_pem).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = Router::new().route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
    );
    let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, config, router, async move {
        let _ = stop.await;
    }));
    (format!("127.0.0.1:{port}"), stop_tx, server)
}

fn trusting(authority: &Authority) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(authority.cert_pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_client_trusting_the_ca_is_served_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::open_or_create(dir.path()).unwrap();
    let (addr, stop, server) = start(&authority).await;

    let answer = trusting(&authority)
        .get(format!("https://{addr}/peer"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.text().await.unwrap(),
        "127.0.0.1",
        "the peer address reaches handlers"
    );

    let untrusted = reqwest::Client::new()
        .get(format!("https://{addr}/peer"))
        .send()
        .await;
    let err = untrusted.expect_err("a client not trusting the cloud's CA must not connect");
    assert!(err.is_connect(), "{err:?}");

    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/peer"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP gets no answer: {plain:?}");

    // The name the certificate does not list is refused even with the CA trusted.
    let (_, port) = addr.split_once(':').unwrap();
    let wrong_name = trusting(&authority)
        .get(format!("https://127.0.0.2:{port}/peer"))
        .send()
        .await;
    assert!(
        wrong_name.is_err(),
        "a host outside the certificate's names: {wrong_name:?}"
    );

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_reopened_authority_signs_for_the_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    let first = Authority::open_or_create(dir.path()).unwrap();
    let ca = first.cert_pem().to_string();
    drop(first);
    let reopened = Authority::open_or_create(dir.path()).unwrap();
    assert_eq!(reopened.cert_pem(), ca, "the CA is kept, not remade");
    let key_mode = std::fs::metadata(dir.path().join("ca-key.pem")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key_mode.permissions().mode() & 0o777, 0o600);

    // A certificate issued after the restart verifies against the CA a client kept.
    let (addr, stop, server) = start(&reopened).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let answer = client
        .get(format!("https://{addr}/peer"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[test]
fn bad_inputs_name_what_is_wrong() {
    let err = server_config("not a certificate", "not a key").unwrap_err();
    assert!(err.to_string().contains("server certificate"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::open_or_create(dir.path()).unwrap();
    let err = authority.issue_server("x", &[]).unwrap_err();
    assert!(err.to_string().contains("at least one host"), "{err}");
    let err = cirrus_tls::trust_pem(b"garbage").unwrap_err();
    assert!(err.to_string().contains("CA certificate"), "{err}");
}
