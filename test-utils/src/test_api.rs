//! The whole API over an in-memory embedded store on a free loopback port, so every crate's
//! tests run against the real HTTP surface with one line instead of a private copy of it.

use cirrus_store::embedded::{self, EmbeddedConfig, EmbeddedEtcd};
use cirrus_store::objects::ObjectStore;

use std::sync::Arc;

use cirrus_auth::Role;

use cirrus_api::ApiState;
use cirrus_api::identity::Identity;
use cirrus_api::identity::bootstrap;

/// Password of the test API's `admin` user.
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// A running API; stopped (task aborted, store shut) when dropped.
pub struct TestApi {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// The object store behind it, for tests that look underneath the API.
    pub store: ObjectStore,
    /// A cloud-admin token (user `admin`, admin in project `admin`, password
    /// [`ADMIN_PASSWORD`]).
    pub admin_token: String,
    /// The token keys and revocations the API checks against.
    pub identity: Arc<Identity>,
    server: Option<EmbeddedEtcd>,
    task: tokio::task::JoinHandle<()>,
}

impl TestApi {
    /// Starts the API with default settings.
    ///
    /// # Panics
    /// When the embedded store or the listener cannot start (a broken test machine).
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts the API after `configure` adjusts its state (bookmark interval, blob store...).
    ///
    /// # Panics
    /// As [`TestApi::start`].
    pub async fn start_with(configure: impl FnOnce(&mut ApiState)) -> Self {
        let server = embedded::start(EmbeddedConfig::in_memory())
            .await
            .expect("the embedded store starts");
        let store = ObjectStore::connect(&[server.endpoint()])
            .await
            .expect("the embedded store answers");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let base_url = format!("http://{}", listener.local_addr().expect("bound address"));
        let mut state = ApiState::new(store.clone());
        configure(&mut state);
        let identity = state.identity.clone();
        let admin = bootstrap_user(&store, "admin", ADMIN_PASSWORD, "admin", Role::Admin).await;
        let admin_token = identity
            .mint(&admin, Some("admin"), Some(Role::Admin))
            .expect("a token can be sealed");
        let task = tokio::spawn(async move {
            cirrus_api::serve(listener, None, state, std::future::pending())
                .await
                .expect("the API serves");
        });
        Self {
            base_url,
            store,
            admin_token,
            identity,
            server: Some(server),
            task,
        }
    }

    /// Creates project `name` without quota limits (tests and benchmarks that make more
    /// objects than OpenStack's default quotas allow).
    ///
    /// # Panics
    /// When the store refuses (a broken test).
    pub async fn unlimited_project(&self, name: &str) {
        let quota: std::collections::BTreeMap<String, i64> =
            cirrus_crds::kinds::project::DEFAULT_QUOTAS
                .iter()
                .map(|(q, _)| (q.to_string(), -1))
                .collect();
        let project = cirrus_crds::Project::new(
            cirrus_crds::meta::ObjectMeta {
                name: name.to_string(),
                ..Default::default()
            },
            cirrus_crds::ProjectSpec {
                quota,
                ..Default::default()
            },
        );
        let api = cirrus_store::objects::Api::<cirrus_crds::Project>::all(self.store.clone());
        match api.get(name).await {
            Ok(mut existing) => {
                existing.spec.quota = project.spec.quota;
                api.replace(&existing).await.expect("project updated");
            }
            Err(_) => {
                api.create(&project).await.expect("project created");
            }
        }
    }

    /// An HTTP client that sends the admin token with every request.
    pub fn client(&self) -> reqwest::Client {
        client_with_token(&self.admin_token)
    }

    /// Creates (or reuses) project `project` and user `user` with `role` there (password
    /// `user`'s name + `-password`) and returns a token scoped to the project.
    ///
    /// # Panics
    /// When the store refuses (a broken test).
    pub async fn user_token(&self, user: &str, project: &str, role: Role) -> String {
        let password = format!("{user}-password");
        let object = bootstrap_user(&self.store, user, &password, project, role).await;
        self.identity
            .mint(&object, Some(project), Some(role))
            .expect("a token can be sealed")
    }
}

/// An HTTP client that sends `token` as `X-Auth-Token` with every request.
///
/// # Panics
/// When `token` is not a valid header value (tokens are base64url, so never).
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        cirrus_crds::conventions::AUTH_HEADER,
        reqwest::header::HeaderValue::from_str(token).expect("tokens are header-safe"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("an HTTP client")
}

async fn bootstrap_user(
    store: &ObjectStore,
    user: &str,
    password: &str,
    project: &str,
    role: Role,
) -> cirrus_crds::User {
    bootstrap::ensure_project(store, project)
        .await
        .expect("project created");
    let object = bootstrap::ensure_user(store, user, password, None)
        .await
        .expect("user created");
    bootstrap::ensure_binding(store, user, project, role)
        .await
        .expect("binding created");
    object
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.task.abort();
        drop(self.server.take());
    }
}
