//! Shared by `api`, `servers` and `overhead`: a `cirrus up` child process and the set-up
//! every benchmark does through the typed client ([`cirrus_client::Api`]): the bench
//! project and flavor, images with their data, node users, and waiting for Ready nodes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cirrus_client::{Api, Client, ListParams};
use cirrus_crds::{
    Condition, ConditionStatus, Flavor, FlavorSpec, Image, ImageSpec, Node, Project, ProjectSpec,
    Server, User, UserSpec,
};
use cirrus_test_utils::{meta, meta_in};
use serde_json::json;

/// The project every benchmark object lives in.
pub(crate) const BENCH_PROJECT: &str = "bench";

/// A `cirrus up` child process on a temporary data dir (its log in `cirrus.log` there),
/// killed by PID on drop (before the data dir goes).
pub(crate) struct UpProcess {
    /// The child process.
    pub(crate) child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    /// Its data directory.
    pub(crate) data: tempfile::TempDir,
    /// A token of its admin (logged in with the password from the `openrc` it wrote).
    token: String,
}

impl Drop for UpProcess {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// The `cirrus` binary next to this one (`cirrus-bench` is built into the same directory).
fn cirrus_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("finding the cirrus-bench binary")?;
    let cirrus = me.with_file_name("cirrus");
    anyhow::ensure!(
        cirrus.is_file(),
        "{} not found next to {} (build it with `cargo build --bins`)",
        cirrus.display(),
        me.display()
    );
    Ok(cirrus)
}

impl UpProcess {
    /// Starts `cirrus up` (the `cirrus` binary next to this one) with `extra` arguments on a
    /// fresh temporary data dir and free loopback ports, waits until `/readyz` answers and
    /// logs in as its admin. Returns the process and the time from spawn to ready (the
    /// login excluded).
    pub(crate) async fn start(prefix: &str, extra: &[&str]) -> anyhow::Result<(Self, Duration)> {
        let data = tempfile::Builder::new().prefix(prefix).tempdir()?;
        let port = cirrus_test_utils::try_free_port()?;
        let log = std::fs::File::create(data.path().join("cirrus.log"))?;
        let started = Instant::now();
        let child = Command::new(cirrus_binary()?)
            .args(["up", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--store-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting cirrus up")?;
        let mut up = UpProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            data,
            token: String::new(),
        };
        let http = reqwest::Client::new();
        loop {
            if let Ok(resp) = http.get(format!("{}/readyz", up.base)).send().await
                && resp.status().is_success()
            {
                let ready = started.elapsed();
                up.token = up
                    .admin_token()
                    .await
                    .with_context(|| format!("logging in as the admin:\n{}", up.log_tail()))?;
                return Ok((up, ready));
            }
            if let Some(status) = up.child.try_wait()? {
                anyhow::bail!("cirrus up exited ({status}):\n{}", up.log_tail());
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "cirrus up did not become ready:\n{}",
                up.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Logs in as the admin with the password `cirrus up` wrote to `<data-dir>/openrc`.
    async fn admin_token(&self) -> anyhow::Result<String> {
        use cirrus_client::auth::TokenSource;
        let openrc = std::fs::read_to_string(self.data.path().join("openrc"))
            .context("reading the openrc of cirrus up")?;
        let var = |name: &str| {
            openrc.lines().find_map(|line| {
                let value = line.trim().strip_prefix(&format!("export {name}="))?;
                Some(value.trim_matches('\'').to_owned())
            })
        };
        let (Some(user), Some(password)) = (var("OS_USERNAME"), var("OS_PASSWORD")) else {
            anyhow::bail!("the openrc of cirrus up has no OS_USERNAME/OS_PASSWORD");
        };
        let login = cirrus_client::auth::PasswordLogin::new(
            &self.base,
            user,
            password,
            var("OS_PROJECT_NAME"),
        );
        Ok(login.token().await?)
    }

    /// A client of its API acting as the admin.
    pub(crate) fn client(&self) -> Client {
        Client::new(self.base.clone()).with_token(self.token.clone())
    }

    /// Creates the node user `node-<node>` (bound to that node, with a random password)
    /// and returns a token source logging in as it: a node agent's own identity, allowed to
    /// write only its node and what is bound to it.
    pub(crate) async fn node_login(
        &self,
        node: &str,
    ) -> anyhow::Result<Arc<dyn cirrus_client::auth::TokenSource>> {
        let user = format!("node-{node}");
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
        let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let users = Api::<User>::all(self.client());
        let spec = UserSpec {
            node: Some(node.to_owned()),
            ..UserSpec::default()
        };
        users
            .create(&User::new(meta(&user), spec))
            .await
            .with_context(|| format!("creating user {user}"))?;
        // The plain password is write-only (the API stores its hash), so it is no field of
        // the typed spec: a merge patch sets it.
        users
            .patch(&user, &json!({"spec": {"password": password}}))
            .await
            .with_context(|| format!("setting the password of {user}"))?;
        Ok(cirrus_client::auth::PasswordLogin::new(
            &self.base, user, password, None,
        ))
    }

    /// The last lines of the child's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.data.path().join("cirrus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Creates [`BENCH_PROJECT`] and the flavor `flavor`.
pub(crate) async fn create_project_and_flavor(
    client: &Client,
    flavor: &str,
    vcpus: u32,
    ram_mib: u64,
    disk_gib: u64,
) -> anyhow::Result<()> {
    let project = ProjectSpec {
        description: Some("cirrus bench".into()),
        ..ProjectSpec::default()
    };
    Api::<Project>::all(client.clone())
        .create(&Project::new(meta(BENCH_PROJECT), project))
        .await
        .context("creating the bench project")?;
    let spec = FlavorSpec {
        vcpus,
        ram: ram_mib,
        disk: disk_gib,
        ..FlavorSpec::default()
    };
    Api::<Flavor>::all(client.clone())
        .create(&Flavor::new(meta(flavor), spec))
        .await
        .with_context(|| format!("creating flavor {flavor}"))?;
    Ok(())
}

/// Creates the Image `name` in [`BENCH_PROJECT`] with `spec` and uploads `file` into it.
pub(crate) async fn create_image(
    client: &Client,
    name: &str,
    spec: ImageSpec,
    file: &Path,
) -> anyhow::Result<()> {
    Api::<Image>::in_project(client.clone(), BENCH_PROJECT)
        .create(&Image::new(meta_in(BENCH_PROJECT, name), spec))
        .await
        .with_context(|| format!("creating image {name}"))?;
    let url = client.url(&[
        "apis",
        "cirrus.dev",
        "v1",
        "projects",
        BENCH_PROJECT,
        "images",
        name,
        "file",
    ])?;
    let f = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let length = f.metadata().await?.len();
    let (request, _) = client.request(reqwest::Method::PUT, &url).await?;
    let resp = request
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .header(reqwest::header::CONTENT_LENGTH, length)
        .body(reqwest::Body::wrap_stream(
            tokio_util::io::ReaderStream::new(f),
        ))
        .send()
        .await
        .with_context(|| format!("PUT {url}"))?;
    let status = resp.status();
    anyhow::ensure!(
        status.is_success(),
        "PUT {url}: {status}: {}",
        resp.text().await.unwrap_or_default()
    );
    Ok(())
}

/// Waits until at least `count` Nodes report `Ready=True`.
pub(crate) async fn wait_nodes_ready(
    client: &Client,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let nodes = Api::<Node>::all(client.clone());
    let started = Instant::now();
    loop {
        let list = nodes.list_all(None).await?;
        let ready = list
            .items
            .iter()
            .filter(|n| is_true(&n.status.conditions, "Ready"))
            .count();
        if ready >= count {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "only {ready}/{count} nodes are Ready after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The store revision a watch of every Server can start from.
pub(crate) async fn servers_revision(client: &Client) -> anyhow::Result<String> {
    let list = Api::<Server>::all(client.clone())
        .list(&ListParams::default().limit(1))
        .await?;
    Ok(list.resource_version)
}

/// Whether `conditions` hold `kind` with status `True`.
pub(crate) fn is_true(conditions: &[Condition], kind: &str) -> bool {
    Condition::find(conditions, kind).is_some_and(|c| c.status == ConditionStatus::True)
}

/// Runs `qemu-img` with `args`.
pub(crate) async fn qemu_img<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("qemu-img")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running qemu-img (install it with hack/install-deps.sh)")?;
    anyhow::ensure!(
        out.status.success(),
        "qemu-img failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
