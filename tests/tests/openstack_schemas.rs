//! The OpenStack API's contract: every compute (Nova v2.1) and block-storage (Cinder v3.0)
//! response `tests/openstack/tempest_schemas.py` provokes — as the cloud admin and as a
//! member of a project it creates — validates against tempest's own response JSON schemas
//! (`tempest/lib/api_schema/response/...`, through `RestClient.validate_response`), against
//! `cirrus up` with a hollow node (`--node-agent fake`: servers go ACTIVE in seconds, no
//! libvirt). The script lists every violation; this test fails with its output.
//!
//! Needs the clients' virtualenv with tempest (`hack/install-openstack-clients.sh`) and
//! `qemu-img`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{Cloud, repo_root};

/// The clients' virtualenv (made by hack/install-openstack-clients.sh), with tempest.
fn venv_python() -> PathBuf {
    let python = repo_root().join("target/osc-venv/bin/python");
    let has_tempest = python.exists()
        && Command::new(&python)
            .args(["-c", "import tempest.lib.common.rest_client"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        has_tempest,
        "tempest is missing from target/osc-venv: run hack/install-openstack-clients.sh"
    );
    python
}

#[test]
fn real_openstack_responses_match_tempest_schemas() {
    let python = venv_python();
    assert!(
        Command::new("qemu-img")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "qemu-img is missing (apt-get install qemu-utils): the script makes a qcow2 image with it"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let node = format!("schemas-{}", std::process::id());
    let cloud = Cloud::start(&data, &["--node-agent", "fake", "--node-name", &node]);
    let script = repo_root().join("tests/openstack/tempest_schemas.py");
    let out = Command::new(&python)
        .arg(&script)
        .env("OS_CLIENT_CONFIG_FILE", data.join("clouds.yaml"))
        .env("OS_CLOUD", "cirrus")
        .env_remove("OS_AUTH_URL")
        .env_remove("OS_USERNAME")
        .env_remove("OS_PASSWORD")
        .env_remove("OS_PROJECT_NAME")
        // A hollow node has no host networking (see the script); its volumes live in an
        // in-memory pool, so every volume check runs: a skipped one fails the test.
        .env("TEMPEST_SCHEMAS_NETWORKS", "none")
        .env("TEMPEST_SCHEMAS_STRICT", "1")
        .env("TEMPEST_SCHEMAS_VOLUME_WAIT", "30")
        .env("TEMPEST_SCHEMAS_WAIT", "60")
        .stdin(Stdio::null())
        .output()
        .expect("run tempest_schemas.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("TEMPEST-SCHEMAS-OK"),
        "tempest schema violations against {} ({}):\n{stdout}\n{stderr}",
        cloud.base,
        out.status
    );
    println!("{stdout}");
}
