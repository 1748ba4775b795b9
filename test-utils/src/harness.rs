//! The common start of a test against the API: a [`TestApi`], an admin client of it, an open
//! leadership gate for controllers, and background tasks aborted when the test ends.

use cirrus_api::ApiState;
use cirrus_client::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::TestApi;

/// A running [`TestApi`] with an admin [`Client`]; its [`Harness::tasks`] are aborted on drop
/// (before the API stops).
pub struct Harness {
    /// A client of the API acting as the cloud admin.
    pub client: Client,
    /// An always-open leadership gate, for controllers that run only while they lead.
    pub gate: watch::Receiver<bool>,
    /// Background tasks (controllers, agents) the test started; aborted on drop.
    pub tasks: Vec<JoinHandle<()>>,
    /// The API itself (store, tokens, base URL).
    pub api: TestApi,
    _gate: watch::Sender<bool>,
}

impl Harness {
    /// Starts the API after `configure` adjusts its state (see [`TestApi::start_with`]).
    ///
    /// # Panics
    /// As [`TestApi::start`].
    pub async fn start_with(configure: impl FnOnce(&mut ApiState)) -> Self {
        let api = TestApi::start_with(configure).await;
        let (gate_tx, gate) = watch::channel(true);
        Self {
            client: Client::new(api.base_url.clone()).with_token(api.admin_token.clone()),
            gate,
            tasks: Vec::new(),
            api,
            _gate: gate_tx,
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A [`Harness`] over an API with default settings.
///
/// # Panics
/// As [`TestApi::start`].
pub async fn harness() -> Harness {
    Harness::start_with(|_| {}).await
}
