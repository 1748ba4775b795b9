//! API fuzzing of the native API: schemathesis (PyPI, pinned in
//! `hack/install-openstack-clients.sh`, virtualenv `target/osc-venv`) generates requests from
//! the checked-in OpenAPI document `api/openapi.json` — its coverage phase (boundary and
//! negative values of every parameter and body field) then its fuzzing phase — and sends
//! them to `cirrus up` on loopback, as the cloud admin and as a member of a project. The
//! check is `not_a_server_error`: no 5xx (a panic would be one, or a dropped connection).
//!
//! Bounded: at most [`MAX_EXAMPLES`] fuzzed examples per operation and [`MAX_TIME`] seconds
//! for the whole run (schemathesis stops by itself), 2 workers. Reproducible: the seed is
//! fixed (`CIRRUS_FUZZ_SEED` overrides it) and printed with the run's counts (operations,
//! test cases, failures) from schemathesis' JSON report.
//!
//! The admin's run leaves out the writes that would lock it out of its own cloud halfway
//! (replacing, patching or deleting projects, users, role bindings; revoking tokens): the
//! member's run sends those, and must be refused.
//!
//! Without schemathesis the tests fail with a hint, unless `CIRRUS_SKIP_FUZZ=1` is set:
//! then they say why they skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Cloud, client_with_token, login, repo_root};
use serde_json::{Value, json};

/// Fuzzed examples per operation (the coverage phase sends what the schema defines).
const MAX_EXAMPLES: u32 = 20;

/// Seconds for one whole schemathesis run.
const MAX_TIME: u32 = 75;

/// Default seed of the generated cases.
const SEED: u64 = 20_261_207;

/// The project the fuzzed project-scoped paths are in.
const PROJECT: &str = "fuzz";

/// Operations the admin's run leaves out: writes to the identity objects its own token
/// rests on (schemathesis reuses names from earlier responses, so it would delete project
/// `admin` or the admin's role binding and 401 the rest of the run).
const ADMIN_EXCLUDED: &str = r"^((PUT|PATCH|DELETE) /apis/cirrus\.dev/v1/(projects|users|rolebindings|tokenrevocations)/\{name\}(/status)?|POST /apis/cirrus\.dev/v1/tokenrevocations)$";

/// The schemathesis command of the clients' virtualenv; `None` (skip) only when it is missing
/// and `CIRRUS_SKIP_FUZZ=1`.
fn schemathesis() -> Option<PathBuf> {
    let bin = repo_root().join("target/osc-venv/bin/schemathesis");
    let works = Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Some(bin);
    }
    if std::env::var("CIRRUS_SKIP_FUZZ").is_ok_and(|v| v == "1") {
        println!(
            "SKIPPED: schemathesis is missing from target/osc-venv and CIRRUS_SKIP_FUZZ=1 \
             (run hack/install-openstack-clients.sh to fuzz)"
        );
        return None;
    }
    panic!(
        "schemathesis is missing from target/osc-venv: run hack/install-openstack-clients.sh \
         (or set CIRRUS_SKIP_FUZZ=1 to skip the API fuzzing)"
    );
}

/// `cirrus up` with project `fuzz` (unlimited quotas) holding a network, flavor `m1.tiny`, a
/// public image, and the member `fuzzer` of `fuzz`; returns the member's token.
fn seeded_cloud(data: &Path) -> (Cloud, String) {
    let cloud = Cloud::start(data, &[]);
    cloud.create_project(
        PROJECT,
        json!({"instances": -1, "cores": -1, "ram": -1, "volumes": -1, "gigabytes": -1,
            "network": -1, "subnet": -1, "port": -1, "security_group": -1,
            "security_group_rule": -1, "key_pairs": -1, "snapshots": -1}),
    );
    let native = format!("{}/apis/cirrus.dev/v1", cloud.base);
    let http = cloud.http();
    for (path, body) in [
        (
            "users".to_string(),
            json!({"metadata": {"name": "fuzzer"}, "spec": {"password": "fuzzer-password-1"}}),
        ),
        (
            "rolebindings".to_string(),
            json!({"metadata": {"name": "fuzzer.fuzz"},
                "spec": {"user": "fuzzer", "project": PROJECT, "role": "member"}}),
        ),
        (
            "flavors".to_string(),
            json!({"metadata": {"name": "m1.tiny"}, "spec": {"vcpus": 1, "ram": 512, "disk": 1}}),
        ),
        (
            format!("projects/{PROJECT}/images"),
            json!({"metadata": {"name": "cirros"}, "spec": {"visibility": "public",
                "diskFormat": "qcow2", "containerFormat": "bare"}}),
        ),
        (
            format!("projects/{PROJECT}/networks"),
            json!({"metadata": {"name": "net1"}, "spec": {}}),
        ),
    ] {
        let resp = http
            .post(format!("{native}/{path}"))
            .json(&body)
            .send()
            .unwrap();
        let status = resp.status();
        assert!(
            status.is_success(),
            "seeding {path}: {status} {}",
            resp.text().unwrap_or_default()
        );
    }
    let (status, token) = login(&cloud.base, "fuzzer", "fuzzer-password-1", Some(PROJECT));
    let token = token.unwrap_or_else(|| panic!("the member's login answered {status}"));
    (cloud, token)
}

/// The counts of a run, from schemathesis' JSON report.
#[derive(Debug)]
struct Counts {
    operations: u64,
    generated: u64,
    with_failures: u64,
    unique_failures: u64,
    errored: u64,
    stop_reason: String,
    seconds: f64,
}

/// Runs schemathesis against `cloud` with `token`; fails the test on a non-zero exit (a 5xx,
/// a crash, an error) with its output, and prints the run's counts.
fn fuzz(bin: &Path, cloud: &Cloud, token: &str, who: &str, exclude: Option<&str>) -> Counts {
    let dir = tempfile::tempdir().unwrap();
    // Project-scoped paths go to the seeded project (else nearly every request is a 404).
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!("[parameters]\n\"path.project\" = \"{PROJECT}\"\n"),
    )
    .unwrap();
    let report = dir.path().join("report.json");
    let seed: u64 = std::env::var("CIRRUS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    let spec = repo_root().join("api/openapi.json");
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(&spec)
        .args(["--url", &cloud.base])
        .args(["--header", &format!("X-Auth-Token: {token}")])
        .args(["--checks", "not_a_server_error"])
        .args(["--phases", "coverage,fuzzing"])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        .args(["--max-time", &MAX_TIME.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--workers", "2"])
        .args(["--suppress-health-check", "all"])
        .args(["--generation-database", "none"])
        .args(["--report", "json"])
        .arg("--report-json-path")
        .arg(&report)
        .arg("--no-color");
    if let Some(regex) = exclude {
        cmd.args(["--exclude-name-regex", regex]);
    }
    let out = cmd
        // Loopback only: no proxy from the environment.
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env("NO_PROXY", "*")
        .stdin(Stdio::null())
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let parsed: Option<Value> = std::fs::read(&report)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    assert!(
        out.status.success(),
        "schemathesis as {who} against {} failed ({}; seed {seed}):\n{stdout}\n{stderr}",
        cloud.base,
        out.status
    );
    let report = parsed.unwrap_or_else(|| panic!("no JSON report from schemathesis:\n{stdout}"));
    let n = |p: &str| report.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let counts = Counts {
        operations: n("/operations/tested"),
        generated: n("/test_cases/generated"),
        with_failures: n("/test_cases/with_failures"),
        unique_failures: n("/test_cases/unique_failures"),
        errored: n("/test_cases/errored"),
        stop_reason: report["stop_reason"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        seconds: report["running_time"].as_f64().unwrap_or_default(),
    };
    println!(
        "schemathesis {} as {who}: {} operations, {} test cases, {} with failures ({} unique), \
         {} errored; stopped: {} after {:.0} s; seed {seed}",
        report["schemathesis_version"].as_str().unwrap_or("?"),
        counts.operations,
        counts.generated,
        counts.with_failures,
        counts.unique_failures,
        counts.errored,
        counts.stop_reason,
        counts.seconds,
    );
    assert_eq!(
        (counts.with_failures, counts.errored),
        (0, 0),
        "schemathesis as {who} reported failures:\n{stdout}"
    );
    assert!(
        counts.operations > 0 && counts.generated > 0,
        "schemathesis as {who} tested nothing:\n{stdout}"
    );
    counts
}

/// The server still serves, and `token` still works (the run did not lock itself out, so
/// its answers were not all 401s).
fn still_serving(cloud: &Cloud, token: &str) {
    let health = reqwest::blocking::get(format!("{}/healthz", cloud.base)).unwrap();
    assert!(
        health.status().is_success(),
        "/healthz: {}",
        health.status()
    );
    let resp = client_with_token(token)
        .get(format!(
            "{}/apis/cirrus.dev/v1/projects/{PROJECT}/networks",
            cloud.base
        ))
        .send()
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().unwrap_or_default()
    );
}

#[test]
fn real_schemathesis_native_api_as_admin() {
    let Some(bin) = schemathesis() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (cloud, _) = seeded_cloud(&dir.path().join("data"));
    let token = cloud.token();
    fuzz(&bin, &cloud, &token, "admin", Some(ADMIN_EXCLUDED));
    still_serving(&cloud, &token);
}

#[test]
fn real_schemathesis_native_api_as_member() {
    let Some(bin) = schemathesis() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (cloud, token) = seeded_cloud(&dir.path().join("data"));
    fuzz(&bin, &cloud, &token, "member", None);
    still_serving(&cloud, &token);
}
