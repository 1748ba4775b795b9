//! With a public endpoint configured, every absolute link and the Keystone catalog name it,
//! whatever `Host` or `X-Forwarded-*` headers a client sends; without one, the request's.

use cirrus_api::public_endpoint::PublicEndpoint;
use cirrus_test_utils::TestApi;
use serde_json::Value;

/// Every string in `value` that looks like an absolute URL.
fn urls(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if s.starts_with("http://") || s.starts_with("https://") => {
            out.push(s.clone())
        }
        Value::Array(items) => items.iter().for_each(|v| urls(v, out)),
        Value::Object(map) => map.values().for_each(|v| urls(v, out)),
        _ => {}
    }
}

/// The absolute URLs of the catalog and of the compute version document, asked with a
/// forged `Host` and `X-Forwarded-*`.
async fn links_with_forged_host(api: &TestApi) -> Vec<String> {
    let http = api.client();
    let mut found = Vec::new();
    for path in ["/identity/v3/auth/catalog", "/compute/v2.1", "/identity/v3"] {
        let resp = http
            .get(format!("{}{path}", api.base_url))
            .header("Host", "evil.example")
            .header("X-Forwarded-Host", "evil.example:666")
            .header("X-Forwarded-Proto", "https")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let body: Value = resp.json().await.unwrap();
        urls(&body, &mut found);
    }
    // Documentation links (`describedby`) point elsewhere by design; the rest are ours.
    found.retain(|url| !url.starts_with("https://docs.openstack.org"));
    assert!(found.len() > 5, "the bodies carry links: {found:?}");
    found
}

#[tokio::test]
async fn a_configured_endpoint_names_every_link_whatever_the_host_header() {
    let api = TestApi::start_with(|state| {
        state.public_url = Some(PublicEndpoint::parse("https://cloud.example:5000").unwrap());
    })
    .await;
    for url in links_with_forged_host(&api).await {
        assert!(url.starts_with("https://cloud.example:5000/"), "{url}");
    }
}

#[tokio::test]
async fn without_one_the_request_says_where_it_came_in() {
    let api = TestApi::start().await;
    for url in links_with_forged_host(&api).await {
        assert!(url.starts_with("https://evil.example:666/"), "{url}");
    }
}
