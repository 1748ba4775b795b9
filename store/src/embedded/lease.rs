//! Leases: the etcd `Lease` service, the in-memory deadline table and the expiry task.
//!
//! Leases (ID → granted TTL) and their attached keys are persisted by the writer; deadlines
//! live only in memory ([`LeaseClock`]). After a restart every deadline is reset to
//! `now + TTL`, which is what etcd does on a leader change. An expired lease is revoked by
//! [`run_expiry`] through the writer, so its keys are deleted in one revision and watchers see
//! DELETE events.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::proto::{
    PbLeaseGrantRequest, PbLeaseGrantResponse, PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse,
    PbLeaseLeasesRequest, PbLeaseLeasesResponse, PbLeaseRevokeRequest, PbLeaseRevokeResponse,
    PbLeaseService, PbLeaseStatus, PbLeaseTimeToLiveRequest, PbLeaseTimeToLiveResponse,
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use super::apply::LeaseChange;
use super::error::EtcdError;
use super::server::Core;
use super::writer::{WriteOp, WriteOutcome, WriterHandle};

/// How often the expiry task looks for expired leases.
const EXPIRY_TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
struct LeaseState {
    ttl: i64,
    deadline: Instant,
}

/// In-memory lease deadlines, mirrored from the persisted lease table by the writer.
#[derive(Debug, Default)]
pub(crate) struct LeaseClock {
    inner: Mutex<HashMap<i64, LeaseState>>,
}

impl LeaseClock {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, LeaseState>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Track a persisted lease, with a fresh deadline.
    pub fn insert(&self, id: i64, ttl: i64) {
        let deadline = Instant::now() + Duration::from_secs(ttl.max(0) as u64);
        self.lock().insert(id, LeaseState { ttl, deadline });
    }

    /// Mirror a committed lease change.
    pub fn apply(&self, change: LeaseChange) {
        match change {
            LeaseChange::Granted { id, ttl } => self.insert(id, ttl),
            LeaseChange::Revoked { id } => {
                self.lock().remove(&id);
            }
        }
    }

    /// Refresh a live lease; returns its TTL, or `None` if unknown or already expired.
    pub fn keep_alive(&self, id: i64) -> Option<i64> {
        let mut map = self.lock();
        let now = Instant::now();
        let st = map.get_mut(&id)?;
        if st.deadline <= now {
            return None;
        }
        st.deadline = now + Duration::from_secs(st.ttl.max(0) as u64);
        Some(st.ttl)
    }

    /// `(granted ttl, whole seconds remaining)` of a live lease.
    pub fn remaining(&self, id: i64) -> Option<(i64, i64)> {
        let map = self.lock();
        let st = map.get(&id)?;
        let left = st.deadline.saturating_duration_since(Instant::now());
        Some((st.ttl, left.as_secs() as i64))
    }

    /// IDs of all known leases.
    pub fn ids(&self) -> Vec<i64> {
        self.lock().keys().copied().collect()
    }

    /// IDs whose deadline has passed.
    pub fn expired(&self) -> Vec<i64> {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter(|(_, st)| st.deadline <= now)
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Background task: revoke expired leases until the writer stops.
pub(crate) async fn run_expiry(clock: Arc<LeaseClock>, writer: WriterHandle) {
    let mut tick = tokio::time::interval(EXPIRY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for id in clock.expired() {
            let span = tracing::debug_span!("lease_expire", lease = id);
            let _g = span.enter();
            match writer.submit(WriteOp::LeaseRevoke(id)).await {
                Ok(_) => debug!("expired lease revoked"),
                Err(EtcdError::LeaseNotFound) => clock.apply(LeaseChange::Revoked { id }),
                Err(EtcdError::Storage(e)) => {
                    warn!(error = %e, "cannot revoke expired lease; stopping expiry");
                    return;
                }
                Err(e) => warn!(error = %e, "cannot revoke expired lease"),
            }
        }
    }
}

/// The etcd `Lease` gRPC service.
#[derive(Clone)]
pub(crate) struct LeaseService {
    pub core: Arc<Core>,
}

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<PbLeaseKeepAliveResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl PbLeaseService for LeaseService {
    #[tracing::instrument(skip_all, fields(ttl = req.get_ref().ttl, id = req.get_ref().id))]
    async fn lease_grant(
        &self,
        req: Request<PbLeaseGrantRequest>,
    ) -> Result<Response<PbLeaseGrantResponse>, Status> {
        let r = req.into_inner();
        let reply = self
            .core
            .writer
            .submit(WriteOp::LeaseGrant {
                id: r.id,
                ttl: r.ttl,
            })
            .await?;
        let WriteOutcome::LeaseGrant { id, ttl } = reply.outcome else {
            return Err(Status::internal("unexpected writer outcome"));
        };
        Ok(Response::new(PbLeaseGrantResponse {
            header: Some(self.core.header(reply.rev)),
            id,
            ttl,
            error: String::new(),
        }))
    }

    #[tracing::instrument(skip_all, fields(id = req.get_ref().id))]
    async fn lease_revoke(
        &self,
        req: Request<PbLeaseRevokeRequest>,
    ) -> Result<Response<PbLeaseRevokeResponse>, Status> {
        let reply = self
            .core
            .writer
            .submit(WriteOp::LeaseRevoke(req.into_inner().id))
            .await?;
        Ok(Response::new(PbLeaseRevokeResponse {
            header: Some(self.core.header(reply.rev)),
        }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<PbLeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let core = self.core.clone();
        let mut stopping = core.stopping.clone();
        tokio::spawn(async move {
            loop {
                let ka = tokio::select! {
                    _ = stopping.changed() => break,
                    msg = inbound.message() => match msg {
                        Ok(Some(ka)) => ka,
                        _ => break,
                    },
                };
                let ttl = core.leases.keep_alive(ka.id).unwrap_or(0);
                let resp = PbLeaseKeepAliveResponse {
                    header: Some(core.header(core.hub.current_rev())),
                    id: ka.id,
                    ttl,
                };
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<PbLeaseTimeToLiveRequest>,
    ) -> Result<Response<PbLeaseTimeToLiveResponse>, Status> {
        let r = req.into_inner();
        let header = Some(self.core.header(self.core.hub.current_rev()));
        let Some((granted, left)) = self.core.leases.remaining(r.id) else {
            return Ok(Response::new(PbLeaseTimeToLiveResponse {
                header,
                id: r.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            }));
        };
        let mut keys = Vec::new();
        if r.keys {
            let snap = self.core.engine.snapshot()?;
            let lo: (i64, &[u8]) = (r.id, &[]);
            let hi: (i64, &[u8]) = (r.id.saturating_add(1), &[]);
            for item in snap
                .lease_keys
                .range::<(i64, &[u8])>(lo..hi)
                .map_err(EtcdError::from)?
            {
                let (k, _) = item.map_err(EtcdError::from)?;
                keys.push(k.value().1.to_vec());
            }
        }
        Ok(Response::new(PbLeaseTimeToLiveResponse {
            header,
            id: r.id,
            ttl: left,
            granted_ttl: granted,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        _req: Request<PbLeaseLeasesRequest>,
    ) -> Result<Response<PbLeaseLeasesResponse>, Status> {
        let mut ids = self.core.leases.ids();
        ids.sort_unstable();
        Ok(Response::new(PbLeaseLeasesResponse {
            header: Some(self.core.header(self.core.hub.current_rev())),
            leases: ids.into_iter().map(|id| PbLeaseStatus { id }).collect(),
        }))
    }
}
