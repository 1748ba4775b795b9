//! Power: brings the domain's power state in line with `spec.powerState` (start, ACPI
//! shutdown then destroy after the grace period, pause, managed save) and carries out each
//! `rebootCount` bump once.

use cirrus_crds::Server;
use cirrus_crds::kinds::server::{PowerState, RebootType};
use cirrus_runtime::Action;
use tokio::time::Instant;
use uuid::Uuid;

use super::context::{ServerContext, ServerError, lock};
use super::status::Observation;
use crate::hypervisor::{
    DomainName, DomainState, Hypervisor, HypervisorError, HypervisorOp, RebootKind,
};

impl ServerContext {
    /// Brings the domain's power state in line with the spec; handles reboots.
    pub(super) async fn power(
        &self,
        server: &Server,
        uid: Uuid,
        name: &DomainName,
        obs: &mut Observation,
    ) -> Result<Action, ServerError> {
        let Some(state) = self.state_of(name).await? else {
            // Defined a moment ago but gone: drift; the next reconcile defines it again.
            return Ok(Action::requeue(self.config.poll));
        };
        let wanted = server.spec.power_state;
        let requested = server.spec.reboot_count;
        let done = lock(&self.reboots).get(&uid).copied().unwrap_or(0);
        let reboot_pending = requested > server.status.observed_reboot_count;
        if wanted != PowerState::Stopped {
            lock(&self.stops).remove(&uid);
        }
        let call =
            |op: HypervisorOp,
             f: fn(&dyn Hypervisor, &DomainName) -> crate::hypervisor::Result<()>| {
                let n = name.clone();
                self.hv(op, move |d| f(d, &n))
            };
        let mut action = Action::await_change();
        match wanted {
            PowerState::Running => match state {
                DomainState::Running if reboot_pending => {
                    if done < requested {
                        let kind = match server.spec.reboot_type {
                            RebootType::Soft => RebootKind::Soft,
                            RebootType::Hard => RebootKind::Hard,
                        };
                        let n = name.clone();
                        let result = self
                            .hv(HypervisorOp::DomainReboot, move |d| {
                                d.domain_reboot(&n, kind)
                            })
                            .await;
                        let kind = match result {
                            Ok(()) => kind,
                            Err(HypervisorError::InvalidState { .. }) => {
                                let n = name.clone();
                                self.hv(HypervisorOp::DomainReboot, move |d| {
                                    d.domain_reboot(&n, RebootKind::Hard)
                                })
                                .await?;
                                RebootKind::Hard
                            }
                            Err(e) => return Err(e.into()),
                        };
                        tracing::info!(?kind, count = requested, "rebooted");
                        lock(&self.reboots).insert(uid, requested);
                        obs.reboot_issued = Some(kind);
                        action = Action::requeue(self.config.poll);
                    }
                    obs.observed_reboot_count = Some(requested);
                }
                DomainState::Running => {}
                DomainState::Paused | DomainState::PmSuspended => {
                    call(HypervisorOp::DomainResume, |d, n| d.domain_resume(n)).await?;
                }
                DomainState::ShuttingDown => {
                    obs.task = Some("powering-on".into());
                    action = Action::requeue(self.config.poll);
                }
                DomainState::Saved => {
                    // Restores the saved memory: not a boot, so a pending reboot is carried
                    // out by the next reconcile, on the running domain.
                    call(HypervisorOp::DomainStart, |d, n| d.domain_start(n)).await?;
                    tracing::info!("domain restored from its saved state");
                    if reboot_pending {
                        action = Action::requeue(self.config.poll);
                    }
                }
                DomainState::ShutOff | DomainState::Crashed | DomainState::NoState => {
                    call(HypervisorOp::DomainStart, |d, n| d.domain_start(n)).await?;
                    tracing::info!("domain started");
                    if reboot_pending {
                        // Starting a stopped domain is the reboot.
                        lock(&self.reboots).insert(uid, requested);
                        obs.observed_reboot_count = Some(requested);
                    }
                }
            },
            PowerState::Stopped => {
                if reboot_pending {
                    obs.observed_reboot_count = Some(requested);
                }
                match state {
                    DomainState::ShutOff | DomainState::Crashed => {
                        lock(&self.stops).remove(&uid);
                    }
                    DomainState::Saved => {
                        // Not running; the saved state is kept (see the module docs).
                        lock(&self.stops).remove(&uid);
                        obs.note = Some(
                            "the domain's suspended (saved) state is kept; Running restores it"
                                .into(),
                        );
                    }
                    DomainState::Paused => {
                        // A paused guest cannot see the ACPI button.
                        call(HypervisorOp::DomainDestroy, |d, n| d.domain_destroy(n)).await?;
                        lock(&self.stops).remove(&uid);
                    }
                    _ => {
                        let started = lock(&self.stops).get(&uid).copied();
                        match started {
                            None => {
                                call(HypervisorOp::DomainShutdown, |d, n| d.domain_shutdown(n))
                                    .await?;
                                lock(&self.stops).insert(uid, Instant::now());
                                obs.task = Some("powering-off".into());
                                action = Action::requeue(self.config.poll);
                            }
                            Some(at) if at.elapsed() >= self.config.shutdown_grace => {
                                tracing::warn!(
                                    grace = ?self.config.shutdown_grace,
                                    "guest ignored the ACPI shutdown; destroying the domain"
                                );
                                call(HypervisorOp::DomainDestroy, |d, n| d.domain_destroy(n))
                                    .await?;
                                lock(&self.stops).remove(&uid);
                            }
                            Some(at) => {
                                obs.task = Some("powering-off".into());
                                let left = self.config.shutdown_grace.saturating_sub(at.elapsed());
                                action = Action::requeue(self.config.poll.min(left));
                            }
                        }
                    }
                }
            }
            PowerState::Paused => {
                if reboot_pending {
                    obs.observed_reboot_count = Some(requested);
                }
                match state {
                    DomainState::Paused => {}
                    DomainState::Running => {
                        call(HypervisorOp::DomainSuspend, |d, n| d.domain_suspend(n)).await?;
                    }
                    DomainState::ShutOff
                    | DomainState::Saved
                    | DomainState::Crashed
                    | DomainState::NoState => {
                        // From Saved, start restores the guest, which is then paused.
                        call(HypervisorOp::DomainStart, |d, n| d.domain_start(n)).await?;
                        call(HypervisorOp::DomainSuspend, |d, n| d.domain_suspend(n)).await?;
                    }
                    DomainState::ShuttingDown | DomainState::PmSuspended => {
                        action = Action::requeue(self.config.poll);
                    }
                }
            }
            PowerState::Suspended => {
                if reboot_pending {
                    obs.observed_reboot_count = Some(requested);
                }
                match state {
                    DomainState::Saved => {}
                    DomainState::Running | DomainState::Paused => {
                        call(HypervisorOp::DomainSave, |d, n| d.domain_save(n)).await?;
                        tracing::info!("domain suspended to disk (managed save)");
                    }
                    DomainState::ShutOff | DomainState::Crashed | DomainState::NoState => {
                        // Like Paused from shut off: boot, then save what runs.
                        call(HypervisorOp::DomainStart, |d, n| d.domain_start(n)).await?;
                        call(HypervisorOp::DomainSave, |d, n| d.domain_save(n)).await?;
                    }
                    DomainState::ShuttingDown | DomainState::PmSuspended => {
                        action = Action::requeue(self.config.poll);
                    }
                }
            }
        }
        Ok(action)
    }
}
