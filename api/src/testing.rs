//! Test support: the whole API over an in-memory embedded store on a free loopback port, so
//! every crate's tests run against the real HTTP surface with one line instead of a private
//! copy of this harness.

use cirrus_store::embedded::{self, EmbeddedConfig, EmbeddedEtcd};
use cirrus_store::objects::ObjectStore;

use crate::ApiState;

/// A running API; stopped (task aborted, store shut) when dropped.
pub struct TestApi {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// The object store behind it, for tests that look underneath the API.
    pub store: ObjectStore,
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
        let task = tokio::spawn(async move {
            crate::serve(listener, state, std::future::pending())
                .await
                .expect("the API serves");
        });
        Self {
            base_url,
            store,
            server: Some(server),
            task,
        }
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.task.abort();
        drop(self.server.take());
    }
}
