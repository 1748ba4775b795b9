//! Cleanup: the finalizer's removal of a deleted server's domain and files (releasing its
//! volumes), the [`orphans_sweep`] of domains no server owns, and the console log read.

use std::collections::HashSet;
use std::path::Path;

use cirrus_client::{Api, ListParams};
use cirrus_crds::Server;
use cirrus_runtime::Action;
use uuid::Uuid;

use super::context::{ServerContext, ServerError, lock, server_uid};
use crate::disks::{self, InstancePaths};
use crate::hypervisor::{DomainName, HypervisorOp};

impl ServerContext {
    pub(super) async fn cleanup(&self, server: &Server) -> Result<Action, ServerError> {
        let Ok(uid) = server_uid(server) else {
            return Ok(Action::await_change());
        };
        let name = DomainName::for_server(uid);
        self.hv(HypervisorOp::DomainDelete, move |d| d.domain_delete(&name))
            .await?;
        disks::instance_delete(&InstancePaths::new(&self.state_dir, uid)).await?;
        // The domain is gone and with it every attachment: release the volumes.
        self.report_attachments(server, &[], None).await?;
        lock(&self.stops).remove(&uid);
        lock(&self.reboots).remove(&uid);
        tracing::info!("domain and instance files removed");
        Ok(Action::await_change())
    }
}

/// What one [`orphans_sweep`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Domains deleted.
    pub domains: Vec<DomainName>,
    /// Instance directories removed (server uids).
    pub instance_dirs: Vec<Uuid>,
}

/// Deletes every Cirrus domain and instance directory whose uid belongs to no server bound to
/// this node — among the domains this agent made (those with an instance directory in its state
/// dir), so other agents or tools sharing the hypervisor are never touched.
///
/// Domains and directories are listed *before* the servers, so anything a reconcile creates
/// for a server bound meanwhile is either not listed or belongs to a listed server; only a
/// successful list of the node's servers counts as evidence.
///
/// # Errors
/// Listing failed (nothing is deleted) or a deletion failed.
pub async fn orphans_sweep(ctx: &ServerContext) -> Result<SweepReport, ServerError> {
    let domains = ctx
        .hv(HypervisorOp::DomainList, |d| d.domain_list())
        .await?;
    let state_dir = ctx.state_dir.clone();
    let dirs = tokio::task::spawn_blocking(move || disks::instance_list(&state_dir))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
    let params = ListParams::default().fields(format!("spec.nodeName={}", ctx.node_name));
    let servers = Api::<Server>::all(ctx.client.clone())
        .list_all_matching(&params)
        .await?;
    let known: HashSet<Uuid> = servers
        .items
        .iter()
        .filter_map(|s| server_uid(s).ok())
        .collect();
    // Only domains this agent made are its to remove: every domain it defines has an instance
    // directory in its state dir first (the disk is made before the domain, and removed after
    // it). Domains of other agents or tools sharing the hypervisor are never touched.
    let ours: HashSet<Uuid> = dirs.iter().copied().collect();
    let mut report = SweepReport::default();
    for d in domains {
        let uid = d.name.server_uid();
        if known.contains(&uid) || !ours.contains(&uid) {
            continue;
        }
        tracing::warn!(domain = %d.name, "deleting orphaned domain");
        let name = d.name.clone();
        ctx.hv(HypervisorOp::DomainDelete, move |h| h.domain_delete(&name))
            .await?;
        report.domains.push(d.name);
    }
    for uid in dirs {
        if known.contains(&uid) {
            continue;
        }
        tracing::warn!(%uid, "removing orphaned instance directory");
        disks::instance_delete(&InstancePaths::new(&ctx.state_dir, uid)).await?;
        report.instance_dirs.push(uid);
    }
    Ok(report)
}

/// The last `max_bytes` of the serial console log of the server with `server_uid` on this
/// node (a plain file read; `None` when the server has no log here). For
/// `cirrus console-log` and Nova's `os-getConsoleOutput`.
///
/// # Errors
/// The log exists but cannot be read.
pub fn console_log(
    state_dir: &Path,
    server_uid: Uuid,
    max_bytes: u64,
) -> std::io::Result<Option<String>> {
    disks::console_log_tail(
        &InstancePaths::new(state_dir, server_uid).console_log,
        max_bytes,
    )
}
