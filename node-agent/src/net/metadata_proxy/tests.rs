//! Unit tests of [`super`] (metadata_proxy.rs), kept beside it so the module reads on its own.

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

#[test]
fn only_harmless_guest_headers_go_on() {
    let mut guest = HeaderMap::new();
    for (name, value) in [
        ("authorization", "Bearer x"),
        ("x-auth-token", "x"),
        ("cookie", "a=b"),
        ("accept-encoding", "gzip"),
        ("transfer-encoding", "chunked"),
        ("content-length", "5"),
        ("connection", "keep-alive"),
        ("user-agent", "cloud-init/23"),
    ] {
        guest.insert(HeaderName::from_static(name), value.parse().unwrap());
    }
    let out = forward_headers(&guest, "demo/net1", "10.0.0.5".parse().unwrap());
    let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
    assert_eq!(names, ["user-agent", NETWORK_HEADER, SOURCE_IP_HEADER]);
}

fn segments(path: &[&str]) -> Vec<String> {
    path.iter().map(|s| s.to_string()).collect()
}

#[test]
fn metadata_paths_are_served_as_decoded_segments() {
    for (target, want) in [
        ("/", segments(&[])),
        ("/openstack", segments(&["openstack"])),
        (
            "/openstack/latest/meta_data.json",
            segments(&["openstack", "latest", "meta_data.json"]),
        ),
        (
            "/openstack/2012-08-10/user_data",
            segments(&["openstack", "2012-08-10", "user_data"]),
        ),
        ("/latest/meta-data/", segments(&["latest", "meta-data", ""])),
        (
            "/latest/meta-data/public-keys/0/openssh-key",
            segments(&["latest", "meta-data", "public-keys", "0", "openssh-key"]),
        ),
        // Escapes of unreserved characters are just those characters.
        ("/%6Catest/user-data", segments(&["latest", "user-data"])),
        // The query is checked, then ignored.
        ("/latest/meta-data?x=1", segments(&["latest", "meta-data"])),
    ] {
        assert_eq!(metadata_path(target), Ok(want), "{target}");
    }
}

#[test]
fn paths_that_are_not_metadata_paths_are_refused() {
    let long = format!("/openstack/{}", "a".repeat(MAX_PATH_BYTES));
    let long_query = format!("/openstack?{}", "a".repeat(MAX_QUERY_BYTES + 1));
    for (target, why) in [
        ("/..", Refusal::DotSegment),
        (
            "/openstack/../apis/cirrus.dev/v1/nodes",
            Refusal::DotSegment,
        ),
        ("/%2e%2e/apis/cirrus.dev/v1/nodes", Refusal::DotSegment),
        ("/%2E%2e/apis/cirrus.dev/v1/nodes", Refusal::DotSegment),
        ("/openstack/.%2E/..%2e/apis", Refusal::DotSegment),
        ("/openstack/./latest", Refusal::DotSegment),
        ("/openstack/%2e/latest", Refusal::DotSegment),
        ("/openstack%2f..%2f..%2fapis", Refusal::EncodedSeparator),
        ("/openstack/%2F", Refusal::EncodedSeparator),
        ("/openstack%5c..%5capis", Refusal::EncodedSeparator),
        ("/openstack/%5C", Refusal::EncodedSeparator),
        ("/openstack\\..\\apis", Refusal::Byte(b'\\')),
        ("http://evil/openstack", Refusal::NotOriginForm),
        ("http://169.254.169.254/openstack", Refusal::NotOriginForm),
        ("169.254.169.254:80", Refusal::NotOriginForm),
        ("*", Refusal::NotOriginForm),
        ("/openstack\r\nX-Evil: 1", Refusal::Byte(b'\r')),
        ("/openstack%0d%0aX-Evil:%201", Refusal::EncodedControl),
        ("/openstack%0a", Refusal::EncodedControl),
        ("/openstack\0", Refusal::Byte(0)),
        ("/openstack%00/latest", Refusal::EncodedControl),
        ("/openstack?a=%00\0", Refusal::Byte(0)),
        ("/openstack/latest#frag", Refusal::Byte(b'#')),
        ("/openstack/l\u{e4}test", Refusal::Byte(0xc3)),
        ("/open stack", Refusal::Byte(b' ')),
        (long.as_str(), Refusal::TooLong("path")),
        (long_query.as_str(), Refusal::TooLong("query")),
        ("//apis/cirrus.dev/v1/nodes", Refusal::EmptySegment),
        ("/openstack//latest", Refusal::EmptySegment),
        ("/openstack/%zz", Refusal::BadEscape),
        ("/openstack/%2", Refusal::BadEscape),
        ("/openstack/%252e%252e", Refusal::Character),
        ("/openstack/a%3bb", Refusal::Character),
        ("/openstack/a;b", Refusal::Character),
        ("/openstack/@evil", Refusal::Character),
        ("/apis/cirrus.dev/v1/nodes", Refusal::NotMetadata),
        ("/identity/v3/auth/tokens", Refusal::NotMetadata),
        ("/metadata/openstack", Refusal::NotMetadata),
        ("/2009-04-04/meta-data", Refusal::NotMetadata),
        ("/healthz", Refusal::NotMetadata),
    ] {
        assert_eq!(metadata_path(target), Err(why.clone()), "{target:?}");
        assert!(why.status().is_client_error(), "{target:?}");
    }
}

#[test]
fn the_upstream_url_is_built_from_segments() {
    let base = Url::parse("http://127.0.0.1:8080").unwrap();
    let url = |path: &[&str]| upstream_url(&base, &segments(path)).unwrap().to_string();
    assert_eq!(url(&[]), "http://127.0.0.1:8080/metadata");
    assert_eq!(
        url(&["openstack", "latest", "meta_data.json"]),
        "http://127.0.0.1:8080/metadata/openstack/latest/meta_data.json"
    );
    assert_eq!(
        url(&["latest", "meta-data", ""]),
        "http://127.0.0.1:8080/metadata/latest/meta-data/"
    );
    // An API under a path prefix keeps it; text never leaves its segment.
    let prefixed = Url::parse("http://api.example:6443/cirrus/?q=1").unwrap();
    let built = upstream_url(&prefixed, &segments(&["latest", "a/../b?c#d"])).unwrap();
    assert_eq!(
        built.as_str(),
        "http://api.example:6443/cirrus/metadata/latest/a%2F..%2Fb%3Fc%23d"
    );
    assert!(upstream_url(&Url::parse("mailto:x@y").unwrap(), &[]).is_none());
}

#[tokio::test]
async fn the_proxy_token_is_a_restricted_one_obtained_with_the_node_token() {
    let api = cirrus_test_utils::TestApi::start().await;
    let node_user =
        cirrus_api::identity::bootstrap::ensure_user(&api.store, "node-n1", "pw", Some("n1"))
            .await
            .unwrap();
    let node_token = api.identity.mint(&node_user, None, None).unwrap();
    let node_client = Client::new(api.base_url.clone()).with_token(node_token.clone());
    let proxy_client = metadata_client(&node_client, "n1");
    let token = proxy_client.current_token().await.unwrap().unwrap();
    assert_ne!(token, node_token);
    // Cached until half its life, then renewed; a refusal renews it at once.
    assert_eq!(proxy_client.current_token().await.unwrap().unwrap(), token);
    let source = proxy_client.auth.clone().unwrap();
    assert!(source.refused(&token));
    let renewed = source.token().await.unwrap();
    assert_ne!(renewed, token);
    let http = reqwest::Client::new();
    let nodes = format!("{}/apis/cirrus.dev/v1/nodes", api.base_url);
    let with = |t: &str| http.get(&nodes).header("x-auth-token", t).send();
    assert_eq!(with(&renewed).await.unwrap().status().as_u16(), 403);
    let metadata = http
        .get(format!("{}/metadata/openstack", api.base_url))
        .header("x-auth-token", &renewed)
        .send()
        .await
        .unwrap();
    assert_eq!(
        metadata.status().as_u16(),
        400,
        "reaches /metadata (no proxy headers)"
    );
    // Another node's name: the API refuses, so the proxy has no token.
    let wrong = metadata_client(&node_client, "n2");
    assert_eq!(wrong.current_token().await.unwrap_err().code(), Some(403));
}
