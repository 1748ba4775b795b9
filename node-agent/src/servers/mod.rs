//! The server reconciler: makes the libvirt domain of every Server bound to this node match
//! its spec, and reports what it sees in the Server's status.
//!
//! # Expected flow (one reconcile, level-triggered)
//! 1. Read the domain's state. An error (daemon unreachable) stops here: `DomainRunning` and
//!    `Ready` become `Unknown`, the phase is kept (never ERROR), the runtime backs off.
//! 2. Prepare: resolve the image (own project, then public/community), cache it and, for AMI
//!    style images (`kernel_id` / `ramdisk_id`), the kernel and ramdisk (`ImageReady`); ensure
//!    the root disk overlay (`DiskReady`); resolve the server's ports — each must exist, be
//!    attached to the server, bound to this node and have its MAC and addresses — into NICs on
//!    the network's local VLAN (`NetworkReady`, task state `networking` while waiting);
//!    `domain_ensure` the [`DomainSpec`](crate::hypervisor::DomainSpec). When the domain
//!    already exists a failed preparation leaves it alone (it keeps running from its disk).
//! 3. Power: Running → start/resume; Stopped → ACPI shutdown, then destroy once
//!    [`ServerConfig::shutdown_grace`] has passed (requeued, never blocking); Paused → pause in
//!    memory (`domain_suspend`); Suspended → suspend to disk as OpenStack means it
//!    (`domain_save`, libvirt's managed save: the domain is stopped with its memory saved,
//!    [`DomainState::Saved`](crate::hypervisor::DomainState::Saved)); Running from Saved restores it (`domain_start`: the guest
//!    continues, no boot). Stopped with a Saved domain keeps the saved state and counts as
//!    stopped (phase SHUTOFF, observed power state Suspended, the `Ready` message says so):
//!    nothing the guest had is discarded, and Running later restores it. A
//!    `spec.rebootCount` above `status.observedRebootCount` reboots (soft or hard) a running
//!    domain once and records the count.
//! 4. Status is derived from what was observed ([`derive_status`], pure) and written only when
//!    it differs from the stored status: a converged server costs no write on resync.
//!
//! # Guarantees
//! - ERROR only on positive evidence while no domain exists to run: the image or flavor does
//!   not exist, the image is killed/deactivated, qemu-img says the base is corrupt, the
//!   flavor's disk is too small. Timeouts and an unreachable hypervisor never make ERROR.
//! - Drift is repaired on the next reconcile (resync): a destroyed domain is started again, an
//!   undefined one is defined and started (`domain_state` → `Ok(None)` is positive evidence).
//! - Cleanup (deletion) deletes the domain and the instance directory before the finalizer
//!   `cirrus.dev/node-agent` is removed; [`orphans_sweep`] deletes domains and directories of
//!   uids that belong to no server bound to this node (after a successful list).
//! - One reboot per `rebootCount` bump, even when recording it races with another write.
//!
//! # Rooms
//! One job per module, in the order a reconcile meets them:
//! - `context`: [`ServerConfig`], [`ServerContext`] (what every reconcile shares), [`ServerError`].
//! - `controller`: [`run`], the watches that wake a server and feed the caches.
//! - `caches`: the ports, volumes, flavors, networks and subnets a reconcile reads, from
//!   reflector caches (no per-reconcile GETs; what the node may watch, and why, is there).
//! - `prepare`: images, root disk, config drive and the [`DomainSpec`](crate::hypervisor::DomainSpec) (`ImageReady`, `DiskReady`).
//! - `nics`: the server's ports as NICs on the integration bridge (`NetworkReady`).
//! - `volumes`: the server's volumes as disks, hot-plugged and reported (`VolumesReady`).
//! - `power`: the domain's power state and reboots.
//! - `status`: [`derive_status`], pure: what was observed becomes the Server's status.
//! - `cleanup`: the finalizer's cleanup and [`orphans_sweep`].

mod caches;
mod cleanup;
mod context;
mod controller;
mod nics;
mod power;
mod prepare;
mod status;
mod volumes;

pub use cleanup::{SweepReport, console_log, orphans_sweep};
/// An error and its sources, `: `-joined (shared with the volume reconciler's messages).
pub(crate) use context::error_chain;
pub use context::{ServerConfig, ServerContext, ServerError};
pub use controller::run;
pub use status::{Observation, Observed, derive_status};

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cirrus_client::Api;
use cirrus_crds::kinds::server::ServerStatus;
use cirrus_crds::{ConditionStatus, Server};
use cirrus_runtime::{Action, FinalizerError, FinalizerEvent, finalizer};
use uuid::Uuid;

use self::context::{lock, server_uid};
use self::prepare::PrepStep;
use crate::hypervisor::{DomainName, HypervisorOp, VolumeDisk};

/// The finalizer the node agent keeps on servers it holds resources for.
pub const FINALIZER: &str = "cirrus.dev/node-agent";
/// Condition: the image (and kernel/ramdisk) are cached on the node.
pub const IMAGE_READY: &str = "ImageReady";
/// Condition: the root disk exists.
pub const DISK_READY: &str = "DiskReady";
/// Condition: every port of the server is ready to plug (only for servers with networks).
pub const NETWORK_READY: &str = "NetworkReady";
/// Condition: every volume of the server is available on this node (servers with volumes).
pub const VOLUMES_READY: &str = "VolumesReady";
/// How soon a pending volume detach is checked again.
pub(super) const DETACH_POLL: Duration = Duration::from_secs(2);
/// Condition: the domain is running.
pub const DOMAIN_RUNNING: &str = "DomainRunning";
/// Condition: the server is in the power state its spec asks for.
pub const READY: &str = "Ready";

/// Reconciles one server (the controller's reconcile function): [`FinalizerEvent::Apply`]
/// converges it, [`FinalizerEvent::Cleanup`] removes its domain and files.
///
/// # Errors
/// Failed steps (after their conditions were written), API failures of the finalizer.
pub async fn reconcile(
    server: Arc<Server>,
    ctx: Arc<ServerContext>,
) -> Result<Action, FinalizerError<ServerError>> {
    if server.spec.node_name.as_deref() != Some(ctx.node_name.as_str()) {
        return Ok(Action::await_change());
    }
    let client = ctx.client.clone();
    finalizer(&client, FINALIZER, server, |event| async move {
        match event {
            FinalizerEvent::Apply(s) => ctx.apply(&s).await,
            FinalizerEvent::Cleanup(s) => ctx.cleanup(&s).await,
        }
    })
    .await
}

/// Backs off after a failed reconcile.
pub fn error_policy(
    _server: Arc<Server>,
    err: &FinalizerError<ServerError>,
    _ctx: Arc<ServerContext>,
) -> Action {
    tracing::warn!(error = %error_chain(err), "server reconcile failed");
    Action::backoff()
}

impl ServerContext {
    async fn apply(&self, server: &Server) -> Result<Action, ServerError> {
        let uid = server_uid(server)?;
        let mut obs = Observation::default();
        let result = self.converge(server, uid, &mut obs).await;
        let next = derive_status(server, &obs, &self.node_name, Utc::now());
        self.write_status(server, uid, next).await?;
        result
    }

    async fn converge(
        &self,
        server: &Server,
        uid: Uuid,
        obs: &mut Observation,
    ) -> Result<Action, ServerError> {
        let name = DomainName::for_server(uid);
        let state = match self.state_of(&name).await {
            Ok(s) => s,
            Err(e) => {
                obs.domain = Some(Err(e.to_string()));
                return Err(e.into());
            }
        };
        let mut retry_later: Option<ServerError> = None;
        // The volumes the server should have; unknown (None) when preparing failed, and then
        // nothing is attached or detached.
        let mut wanted_volumes: Option<Vec<VolumeDisk>> = None;
        match self.prepare(server, uid).await {
            Ok((spec, image_msg, addresses)) => {
                wanted_volumes = Some(spec.volumes.clone());
                if !spec.volumes.is_empty() {
                    obs.volumes = Some(Observed::new(
                        ConditionStatus::True,
                        "VolumesReady",
                        format!("{} volume(s) on this node", spec.volumes.len()),
                    ));
                }
                if !server.spec.networks.is_empty() {
                    obs.network = Some(Observed::new(
                        ConditionStatus::True,
                        "PortsReady",
                        format!("{} NIC(s) on the integration bridge", spec.nics.len()),
                    ));
                }
                obs.addresses = Some(addresses);
                obs.image = Some(Observed::new(
                    ConditionStatus::True,
                    "ImageCached",
                    image_msg,
                ));
                obs.disk = Some(Observed::new(
                    ConditionStatus::True,
                    "DiskReady",
                    format!("root disk {}", spec.root_disk.display()),
                ));
                let outcome = self
                    .hv(HypervisorOp::DomainEnsure, move |d| d.domain_ensure(&spec))
                    .await;
                match outcome {
                    Ok(o) => tracing::debug!(outcome = ?o, "domain ensured"),
                    Err(e) => {
                        obs.domain = Some(match &e {
                            e if e.is_unreachable() => Err(e.to_string()),
                            _ => Ok(state),
                        });
                        if !e.retryable() && state.is_none() {
                            obs.fatal = Some(("InvalidDomainSpec".into(), e.to_string()));
                            return Ok(Action::await_change());
                        }
                        return Err(e.into());
                    }
                }
            }
            Err(f) if state.is_some() => {
                // The domain exists and keeps its disk: manage its power, retry later.
                tracing::warn!(reason = f.reason, message = %f.message, "preparing the domain failed; keeping the existing one");
                retry_later = Some(f.error);
            }
            Err(f) => {
                let status = if f.permanent {
                    ConditionStatus::False
                } else if matches!(f.error, ServerError::Api(_) | ServerError::NotSynced(_)) {
                    ConditionStatus::Unknown
                } else {
                    ConditionStatus::False
                };
                let o = Observed::new(status, f.reason, f.message.clone());
                match f.step {
                    PrepStep::Image => obs.image = Some(o),
                    PrepStep::Disk => obs.disk = Some(o),
                    PrepStep::Network => {
                        obs.network = Some(o);
                        obs.task = Some("networking".into());
                    }
                    PrepStep::Volumes => {
                        obs.volumes = Some(o);
                        obs.task = Some("block_device_mapping".into());
                    }
                }
                obs.domain = Some(Ok(None));
                if f.permanent {
                    obs.fatal = Some((f.reason.to_string(), f.message));
                    return Ok(Action::await_change());
                }
                return Err(f.error);
            }
        }
        let action = self.power(server, uid, &name, obs).await;
        let synced = match &wanted_volumes {
            Some(wanted) => self.sync_volumes(server, &name, wanted).await,
            None => Ok(false),
        };
        let action = match (action, synced) {
            (Ok(a), Ok(true)) => Ok(match a.requeue_after() {
                Some(d) if d < DETACH_POLL => a,
                _ => Action::requeue(DETACH_POLL),
            }),
            (Ok(a), Ok(false)) => Ok(a),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        };
        let after = self.state_of(&name).await;
        obs.domain = Some(after.map_err(|e| e.to_string()));
        let action = action?;
        match retry_later {
            Some(e) => Err(e),
            None => Ok(action),
        }
    }

    /// Writes `next` when it differs from the stored status.
    async fn write_status(
        &self,
        server: &Server,
        uid: Uuid,
        next: ServerStatus,
    ) -> Result<bool, ServerError> {
        if next == server.status {
            return Ok(false);
        }
        let mut updated = server.clone();
        updated.status = next;
        let api = Api::<Server>::for_object(self.client.clone(), server);
        match api.replace_status(&updated).await {
            Ok(_) => {
                *lock(&self.writes).entry(uid).or_default() += 1;
                tracing::debug!(phase = ?updated.status.phase, "status written");
                Ok(true)
            }
            // A newer version exists; its change event reconciles again.
            Err(e) if e.is_conflict() || e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
