//! A watch of every Server through the typed client, each event stamped when it arrived:
//! how `servers` and `overhead` time create → bound → ACTIVE and delete → gone.

use std::time::{Duration, Instant};

use cirrus_client::{Api, Client, WatchEvent};
use cirrus_crds::Server;
use cirrus_crds::kinds::server::ServerPhase;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::cloud::is_true;

/// What a Server watch event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// The server was created.
    Added,
    /// The server was updated.
    Modified,
    /// The server is gone.
    Deleted,
}

/// One Server watch event, stamped when it arrived.
#[derive(Debug, Clone)]
pub(crate) struct ServerEvent {
    /// When it arrived.
    pub(crate) at: Instant,
    /// What happened (BOOKMARKs are dropped).
    pub(crate) kind: EventKind,
    /// The server's name.
    pub(crate) name: String,
    /// `spec.nodeName` is set.
    pub(crate) bound: bool,
    /// `status.phase`, when set.
    phase: Option<ServerPhase>,
    /// `status.conditions` has `DomainRunning=True`.
    pub(crate) domain_running: bool,
    /// `status.fault.message`, when set.
    fault: Option<String>,
}

impl ServerEvent {
    /// The event of `server`, arrived `at`.
    fn new(kind: EventKind, server: &Server, at: Instant) -> Self {
        Self {
            at,
            kind,
            name: server.metadata.name.clone(),
            bound: server.spec.node_name.is_some(),
            phase: server.status.phase,
            domain_running: is_true(&server.status.conditions, "DomainRunning"),
            fault: server.status.fault.as_ref().map(|f| f.message.clone()),
        }
    }

    /// The server is ACTIVE.
    pub(crate) fn is_active(&self) -> bool {
        self.phase == Some(ServerPhase::Active)
    }

    /// A store write of the object (its creation or an update).
    pub(crate) fn is_write(&self) -> bool {
        matches!(self.kind, EventKind::Added | EventKind::Modified)
    }
}

/// A watch of every Server from a revision, read by a background task (aborted on drop).
pub(crate) struct ServerWatch {
    rx: mpsc::UnboundedReceiver<anyhow::Result<ServerEvent>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ServerWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ServerWatch {
    /// Starts watching every Server (all projects) after `revision`.
    pub(crate) fn start(client: &Client, revision: &str) -> Self {
        let mut events = Box::pin(Api::<Server>::all(client.clone()).watch(revision, None));
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = match events.next().await {
                    None => Err(anyhow::anyhow!("the server watch ended")),
                    Some(Err(e)) => Err(anyhow::Error::new(e).context("the server watch")),
                    Some(Ok(event)) => {
                        let at = Instant::now();
                        match event {
                            WatchEvent::Added(s) => Ok(ServerEvent::new(EventKind::Added, &s, at)),
                            WatchEvent::Modified(s) => {
                                Ok(ServerEvent::new(EventKind::Modified, &s, at))
                            }
                            WatchEvent::Deleted(s) => {
                                Ok(ServerEvent::new(EventKind::Deleted, &s, at))
                            }
                            WatchEvent::Bookmark { .. } => continue,
                        }
                    }
                };
                let failed = event.is_err();
                if tx.send(event).is_err() || failed {
                    return;
                }
            }
        });
        Self { rx, task }
    }

    /// The next event, or `None` once `deadline` passed.
    pub(crate) async fn next_until(
        &mut self,
        deadline: Instant,
    ) -> anyhow::Result<Option<ServerEvent>> {
        match tokio::time::timeout_at(deadline.into(), self.rx.recv()).await {
            Err(_) => Ok(None),
            Ok(Some(event)) => event.map(Some),
            Ok(None) => anyhow::bail!("the server watch stopped"),
        }
    }

    /// Waits for the first event of server `name` that satisfies `done`; returns its arrival.
    /// A server that turns ERROR fails the wait with its fault.
    pub(crate) async fn wait_for(
        &mut self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&ServerEvent) -> bool,
    ) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(event) = self.next_until(deadline).await? else {
                anyhow::bail!("server {name}: timed out after {timeout:?}");
            };
            if event.name != name {
                continue;
            }
            if done(&event) {
                return Ok(event.at);
            }
            if event.phase == Some(ServerPhase::Error) {
                anyhow::bail!(
                    "server {name} went ERROR: {}",
                    event.fault.as_deref().unwrap_or("no fault recorded")
                );
            }
        }
    }
}
