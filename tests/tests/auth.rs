//! Token authentication of `cirrus up` as a user meets it: the credentials files it writes
//! (private, working), `401` without a token, node users confined to their node, and
//! passwords and tokens that survive a restart (the token keys are persisted).

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Cloud, client_with_token, login, parse_exports};
use serde_json::json;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Status of `GET /apis/cirrus.dev/v1/flavors` with `http`.
fn flavors_status(http: &reqwest::blocking::Client, cloud: &Cloud) -> u16 {
    http.get(format!("{}/apis/cirrus.dev/v1/flavors", cloud.base))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn credentials_files_work_requests_need_a_token_and_both_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cloud = Cloud::start(&data, &[]);

    // Both credentials files exist, readable by their owner only, and agree.
    let openrc = data.join("openrc");
    let clouds = data.join("clouds.yaml");
    assert_eq!(mode(&openrc), 0o600, "openrc is private");
    assert_eq!(mode(&clouds), 0o600, "clouds.yaml is private");
    let vars = parse_exports(&std::fs::read_to_string(&openrc).unwrap());
    assert_eq!(vars["OS_USERNAME"], "admin");
    assert_eq!(vars["OS_PROJECT_NAME"], "admin");
    assert_eq!(vars["OS_AUTH_URL"], format!("{}/identity/v3", cloud.base));
    assert_eq!(vars["CIRRUS_URL"], cloud.base);
    let password = vars["OS_PASSWORD"].clone();
    assert!(password.len() >= 16, "a generated password: {password:?}");
    let yaml = std::fs::read_to_string(&clouds).unwrap();
    assert!(yaml.contains("cirrus:"), "{yaml}");
    assert!(
        yaml.contains(&password),
        "clouds.yaml has the same password"
    );
    assert!(
        yaml.contains(&format!("auth_url: {}/identity/v3", cloud.base)),
        "{yaml}"
    );

    // The password logs in; its token opens the API; nothing else does.
    let (status, token) = login(&cloud.base, "admin", &password, Some("admin"));
    assert_eq!(status, 201, "admin login");
    let token = token.expect("X-Subject-Token");
    assert_eq!(flavors_status(&client_with_token(&token), &cloud), 200);
    let anonymous = reqwest::blocking::Client::new();
    assert_eq!(flavors_status(&anonymous, &cloud), 401, "no token");
    assert_eq!(
        flavors_status(&client_with_token("not-a-token"), &cloud),
        401,
        "a forged token"
    );
    let status = anonymous
        .post(format!("{}/apis/cirrus.dev/v1/flavors", cloud.base))
        .json(&json!({"metadata": {"name": "anon"}, "spec": {"vcpus": 1, "ram": 64}}))
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 401, "no anonymous writes");
    for open in ["/healthz", "/readyz", "/version"] {
        let status = anonymous
            .get(format!("{}{open}", cloud.base))
            .send()
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, 200, "{open} needs no token");
    }
    let (status, token_for_wrong) = login(&cloud.base, "admin", "wrong-password", Some("admin"));
    assert_eq!(status, 401, "a wrong password is refused");
    assert!(token_for_wrong.is_none());

    // The CLI: with the openrc credentials it works; without any it is refused.
    let out = cloud.cli(&["get", "flavors"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `-p` takes a Keystone project's free-text name as well as its generated id.
    let made: serde_json::Value = cloud
        .http()
        .post(format!("{}/identity/v3/projects", cloud.base))
        .json(&json!({"project": {"name": "Team Blue"}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let team = made["project"]["id"]
        .as_str()
        .expect("a project id")
        .to_string();
    cloud.post_ok(
        &format!("/projects/{team}/networks"),
        json!({"metadata": {"name": "blue-net"}, "spec": {}}),
    );
    for project in ["Team Blue", team.as_str()] {
        let out = cloud.cli(&["-p", project, "get", "networks"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("blue-net"),
            "-p {project:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = common::clean_command(&common::bin("cirrus"))
        .args(["--server", &cloud.base, "get", "flavors"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the CLI without credentials failed");

    // A node's user may act for its node only: it reads, but writes no flavor.
    let node_env = cloud.node_env("auth-node");
    let (status, node_token) = login(&cloud.base, &node_env[0].1, &node_env[1].1, None);
    assert_eq!(status, 201, "node user login");
    let node = client_with_token(&node_token.unwrap());
    assert_eq!(flavors_status(&node, &cloud), 200, "a node reads flavors");
    let status = node
        .post(format!("{}/apis/cirrus.dev/v1/flavors", cloud.base))
        .json(&json!({"metadata": {"name": "by-node"}, "spec": {"vcpus": 1, "ram": 64}}))
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 403, "a node creates no flavor");

    // Restart on the same data dir: same password, the old token still valid (the keys
    // were persisted), and the files name the new address.
    let before = cloud.base.clone();
    cloud.restart();
    assert_ne!(before, cloud.base, "a new port");
    let vars = parse_exports(&std::fs::read_to_string(&openrc).unwrap());
    assert_eq!(vars["OS_PASSWORD"], password, "the password is kept");
    assert_eq!(vars["CIRRUS_URL"], cloud.base, "openrc names the new API");
    assert_eq!(mode(&openrc), 0o600, "openrc is still private");
    assert_eq!(mode(&clouds), 0o600, "clouds.yaml is still private");
    let (status, again) = login(&cloud.base, "admin", &password, Some("admin"));
    assert_eq!(status, 201, "the same password after the restart");
    assert_eq!(
        flavors_status(&client_with_token(&again.unwrap()), &cloud),
        200
    );
    assert_eq!(
        flavors_status(&client_with_token(&token), &cloud),
        200,
        "a token issued before the restart"
    );
    assert_eq!(
        flavors_status(&reqwest::blocking::Client::new(), &cloud),
        401,
        "still no anonymous access"
    );
}
