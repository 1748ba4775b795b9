//! `cirrus up --tls` as a user runs it: the API and the local node agent's endpoint speak only
//! TLS with certificates of the cloud's own CA; `openrc` and `clouds.yaml` name the CA, so the
//! `cirrus` CLI and the real `openstack` CLI work unchanged, and a client that does not trust
//! it (or speaks plain HTTP) gets nothing; the console log travels API → agent over TLS; a
//! restart keeps the CA, so clients keep trusting the cloud.
//!
//! Needs the OpenStack clients in target/osc-venv (hack/install-openstack-clients.sh) and
//! qemu-img.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{Cloud, eventually, http_builder, repo_root, run_ok};
use serde_json::json;

fn openstack() -> PathBuf {
    let bin = repo_root().join("target/osc-venv/bin/openstack");
    assert!(
        bin.exists(),
        "the OpenStack clients are missing: run hack/install-openstack-clients.sh"
    );
    bin
}

/// Runs `openstack <args>` as the admin of `clouds` (a clouds.yaml); output or error text.
fn osc(clouds: &Path, args: &[&str]) -> Result<String, String> {
    let out = common::clean_command(&openstack())
        .args(args)
        .env("OS_CLIENT_CONFIG_FILE", clouds)
        .env("OS_CLOUD", "cirrus")
        .stdin(Stdio::null())
        .output()
        .expect("run openstack");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// A tiny qcow2 image uploaded through the `cirrus` CLI (a streamed upload over TLS).
fn upload_image(cloud: &Cloud, dir: &Path) {
    cloud.post_ok(
        "/projects/demo/images",
        json!({"metadata": {"name": "disk"}, "spec": {"diskFormat": "qcow2", "containerFormat": "bare"}}),
    );
    let image = common::tiny_qcow2(dir);
    run_ok(
        cloud,
        &[
            "upload-image",
            "disk",
            image.to_str().unwrap(),
            "-p",
            "demo",
        ],
    );
}

#[test]
fn a_tls_cloud_speaks_only_tls_and_its_clients_trust_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let node = format!("tls-{}", std::process::id());
    let mut cloud = Cloud::start(
        &data,
        &["--tls", "--node-agent", "fake", "--node-name", &node],
    );
    assert!(cloud.base.starts_with("https://"), "{}", cloud.base);
    let ca = cloud.ca_path();
    let ca_pem = std::fs::read(&ca).unwrap();
    // The credentials files name the CA and the https URL.
    assert_eq!(
        cloud.openrc.get("OS_CACERT").map(String::as_str),
        Some(ca.to_str().unwrap())
    );
    assert_eq!(cloud.openrc.get("CIRRUS_URL"), Some(&cloud.base));
    let clouds = data.join("clouds.yaml");
    let clouds_text = std::fs::read_to_string(&clouds).unwrap();
    assert!(
        clouds_text.contains(&format!("cacert: '{}'", ca.display())),
        "{clouds_text}"
    );
    let key = std::fs::metadata(data.join("tls/ca-key.pem")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        key.permissions().mode() & 0o777,
        0o600,
        "the CA key is private"
    );

    // Plain HTTP to the API's port gets no answer; a client not trusting the CA is refused.
    let readyz = format!("{}/readyz", cloud.base);
    let plain = reqwest::blocking::Client::new()
        .get(readyz.replacen("https://", "http://", 1))
        .send();
    assert!(plain.is_err(), "plain HTTP must not be served: {plain:?}");
    let untrusted = reqwest::blocking::Client::new().get(&readyz).send();
    let err = untrusted.expect_err("a client without the cloud's CA must not connect");
    assert!(
        format!("{err:?}").to_lowercase().contains("certificate"),
        "the refusal names the certificate: {err:?}"
    );

    // The cirrus CLI: with the openrc's OS_CACERT it works; without, it says why not.
    run_ok(&cloud, &["get", "nodes"]);
    let without = common::clean_command(&common::bin("cirrus"))
        .args(["get", "nodes"])
        .env("CIRRUS_URL", &cloud.base)
        .envs(cloud.admin_env())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !without.status.success(),
        "the CLI must not trust an unknown CA"
    );
    let stderr = String::from_utf8_lossy(&without.stderr);
    assert!(
        stderr.contains("cannot verify the TLS certificate") && stderr.contains("OS_CACERT"),
        "the CLI says why it did not connect and what to do: {stderr}"
    );

    // The local node agent's endpoint is TLS too, and the API reaches it: a server's
    // console log comes API → agent over TLS.
    let agent = eventually("the node registers", Duration::from_secs(60), || {
        cloud.get_json(&format!("/nodes/{node}"))["status"]["agentEndpoint"]
            .as_str()
            .map(str::to_string)
    });
    assert!(agent.starts_with("https://127.0.0.1:"), "{agent}");
    let agent_plain = reqwest::blocking::Client::new()
        .get(format!(
            "{}/healthz",
            agent.replacen("https://", "http://", 1)
        ))
        .send();
    assert!(
        agent_plain.is_err(),
        "the agent endpoint must not speak plain HTTP"
    );
    let agent_tls = http_builder()
        .build()
        .unwrap()
        .get(format!("{agent}/healthz"))
        .send()
        .unwrap();
    assert_eq!(agent_tls.status(), 200);

    cloud.post_ok(
        "/flavors",
        json!({"metadata": {"name": "small"}, "spec": {"vcpus": 1, "ram": 256, "disk": 1}}),
    );
    upload_image(&cloud, dir.path());
    cloud.post_ok(
        "/projects/demo/servers",
        json!({"metadata": {"name": "web"}, "spec": {"flavor": "small", "image": "disk"}}),
    );
    eventually("the server is ACTIVE", Duration::from_secs(60), || {
        (cloud.get_json("/projects/demo/servers/web")["status"]["phase"] == "ACTIVE").then_some(())
    });
    let log = eventually("the console log", Duration::from_secs(30), || {
        let out = cloud.cli(&["console-log", "server", "web", "-p", "demo"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success() && text.contains("CIRRUS-GUEST-UP")).then_some(text)
    });
    assert!(log.contains("CIRRUS-GUEST-UP"));

    // The real openstack CLI with the clouds.yaml cirrus up wrote: token, catalog, servers.
    let token = osc(&clouds, &["token", "issue", "-f", "value", "-c", "id"]).unwrap();
    assert!(!token.trim().is_empty());
    let catalog = osc(&clouds, &["catalog", "list", "-f", "json"]).unwrap();
    assert!(
        catalog.contains(&format!("{}/", cloud.base)) || catalog.contains(&cloud.base),
        "the catalog names the https endpoints: {catalog}"
    );
    let servers = osc(&clouds, &["server", "list", "--all-projects", "-f", "json"]).unwrap();
    assert!(servers.contains("\"web\""), "{servers}");
    // The same file without `cacert`: the client refuses the unknown CA.
    let no_ca = dir.path().join("clouds-no-ca.yaml");
    let stripped: String = clouds_text
        .lines()
        .filter(|line| !line.trim_start().starts_with("cacert:"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&no_ca, stripped).unwrap();
    let refused = osc(&no_ca, &["token", "issue"]).expect_err("an untrusted CA");
    assert!(
        refused.to_lowercase().contains("certificate") || refused.contains("SSL"),
        "{refused}"
    );

    // A restart issues a new server certificate from the same CA: clients keep working.
    let api_cert = std::fs::read(data.join("tls/api.pem")).unwrap();
    cloud.restart();
    assert_eq!(
        std::fs::read(&ca).unwrap(),
        ca_pem,
        "the CA survives restarts"
    );
    assert_ne!(
        std::fs::read(data.join("tls/api.pem")).unwrap(),
        api_cert,
        "each start issues a fresh server certificate"
    );
    run_ok(&cloud, &["get", "nodes"]);
    osc(&clouds, &["server", "list", "--all-projects"]).unwrap();
}

#[test]
fn a_node_agent_in_its_own_process_serves_its_endpoint_with_an_issued_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cloud = Cloud::start(&data, &["--tls"]);
    let node = format!("tls-remote-{}", std::process::id());

    // Bad input is refused, naming the argument.
    let bad = common::clean_command(&common::bin("cirrus"))
        .args(["admin", "issue-certificate", "../x", "--host", "127.0.0.1"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("<NAME>"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let issued = common::clean_command(&common::bin("cirrus"))
        .args(["admin", "issue-certificate", &node, "--host", "127.0.0.1"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let cert = data.join(format!("tls/{node}.pem"));
    let key = data.join(format!("tls/{node}-key.pem"));

    let mut env = cloud.node_env(&node);
    env.push(("OS_CACERT".into(), cloud.ca_path().display().to_string()));
    let _agent = common::Proc::start(
        &[
            "node-agent".into(),
            "--driver".into(),
            "fake".into(),
            "--node".into(),
            node.clone(),
            "--server".into(),
            cloud.base.clone(),
            "--state-dir".into(),
            dir.path().join("agent").display().to_string(),
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
        ],
        &env,
        &dir.path().join("agent.log"),
    );
    let endpoint = eventually("the remote node registers", Duration::from_secs(60), || {
        cloud.get_json(&format!("/nodes/{node}"))["status"]["agentEndpoint"]
            .as_str()
            .map(str::to_string)
    });
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
    let health = http_builder()
        .build()
        .unwrap()
        .get(format!("{endpoint}/healthz"))
        .send()
        .unwrap();
    assert_eq!(health.status(), 200);
}
