//! Status derivation, pure: one reconcile's [`Observation`] becomes the Server's status
//! ([`derive_status`]). No I/O here, so every phase rule is a unit test.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cirrus_crds::kinds::server::{
    ObservedPowerState, PowerState, ServerAddress, ServerFault, ServerPhase, ServerStatus,
};
use cirrus_crds::{Condition, ConditionStatus, Server};

use super::{DISK_READY, DOMAIN_RUNNING, IMAGE_READY, NETWORK_READY, READY, VOLUMES_READY};
use crate::hypervisor::{DomainState, RebootKind};

/// A condition's value as observed in one reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// True / False / Unknown.
    pub status: ConditionStatus,
    /// CamelCase cause.
    pub reason: String,
    /// What happened, for humans.
    pub message: String,
}

impl Observed {
    pub(super) fn new(status: ConditionStatus, reason: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Everything one reconcile observed and did: the input of [`derive_status`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// `ImageReady`, when checked this time (else the stored condition stays).
    pub image: Option<Observed>,
    /// `DiskReady`, when checked this time.
    pub disk: Option<Observed>,
    /// `NetworkReady`, when checked this time (servers with networks only).
    pub network: Option<Observed>,
    /// `VolumesReady`, when checked this time (servers with volumes only).
    pub volumes: Option<Observed>,
    /// The server's addresses by network name, when its ports were read this time.
    pub addresses: Option<BTreeMap<String, Vec<ServerAddress>>>,
    /// The domain's state after acting: `Ok(None)` not defined, `Err` unreachable (message).
    pub domain: Option<Result<Option<DomainState>, String>>,
    /// Positive evidence the server cannot be built: (reason, message) → ERROR.
    pub fatal: Option<(String, String)>,
    /// A reboot issued in this reconcile.
    pub reboot_issued: Option<RebootKind>,
    /// The `rebootCount` now carried out.
    pub observed_reboot_count: Option<u64>,
    /// A transition in progress (e.g. `powering-off`), Nova's task_state.
    pub task: Option<String>,
    /// A note for the `Ready` message (e.g. a saved state kept while Stopped).
    pub note: Option<String>,
}

pub(super) fn observed_power(state: DomainState) -> ObservedPowerState {
    match state {
        DomainState::Running | DomainState::ShuttingDown => ObservedPowerState::Running,
        DomainState::Paused => ObservedPowerState::Paused,
        DomainState::ShutOff => ObservedPowerState::Stopped,
        DomainState::Crashed => ObservedPowerState::Crashed,
        DomainState::PmSuspended | DomainState::Saved => ObservedPowerState::Suspended,
        DomainState::NoState => ObservedPowerState::NoState,
    }
}

/// Whether the domain is in the state `wanted` asks for.
pub(super) fn achieved(wanted: PowerState, state: Option<DomainState>) -> bool {
    matches!(
        (wanted, state),
        (PowerState::Running, Some(DomainState::Running))
            | (
                PowerState::Stopped,
                // A saved (suspended-to-disk) guest is not running either; see the module docs.
                Some(DomainState::ShutOff | DomainState::Crashed | DomainState::Saved)
            )
            | (PowerState::Paused, Some(DomainState::Paused))
            | (PowerState::Suspended, Some(DomainState::Saved))
    )
}

/// The status `server` should have after a reconcile observed `obs` at `now` (pure).
/// Conditions keep their transition times when their status did not change, so the result
/// equals the stored status when nothing changed.
pub fn derive_status(
    server: &Server,
    obs: &Observation,
    node: &str,
    now: DateTime<Utc>,
) -> ServerStatus {
    let mut st = server.status.clone();
    let generation = server.metadata.generation;
    let cond = |type_: &str, o: &Observed| Condition {
        type_: type_.into(),
        status: o.status,
        reason: o.reason.clone(),
        message: o.message.clone(),
        last_transition_time: Some(now),
        observed_generation: generation,
    };
    st.node = Some(node.to_string());
    if let Some(o) = &obs.image {
        Condition::set(&mut st.conditions, cond(IMAGE_READY, o));
    }
    if let Some(o) = &obs.disk {
        Condition::set(&mut st.conditions, cond(DISK_READY, o));
    }
    if let Some(o) = &obs.network {
        Condition::set(&mut st.conditions, cond(NETWORK_READY, o));
    }
    if let Some(o) = &obs.volumes {
        Condition::set(&mut st.conditions, cond(VOLUMES_READY, o));
    }
    if let Some(addresses) = &obs.addresses {
        st.addresses = addresses.clone();
    }
    let wanted = server.spec.power_state;
    let unreachable = matches!(obs.domain, Some(Err(_)));
    let state = match &obs.domain {
        Some(Ok(s)) => *s,
        _ => None,
    };
    let domain_cond = match &obs.domain {
        None => Observed::new(ConditionStatus::Unknown, "NotChecked", ""),
        Some(Err(msg)) => Observed::new(ConditionStatus::Unknown, "HypervisorUnreachable", msg),
        Some(Ok(None)) => Observed::new(
            ConditionStatus::False,
            "NotDefined",
            "the domain is not defined on the node",
        ),
        Some(Ok(Some(DomainState::Running))) => {
            Observed::new(ConditionStatus::True, "Running", "the domain is running")
        }
        Some(Ok(Some(s))) => Observed::new(
            ConditionStatus::False,
            &format!("{s:?}"),
            format!("the domain is {s:?}"),
        ),
    };
    Condition::set(&mut st.conditions, cond(DOMAIN_RUNNING, &domain_cond));
    if let Some(s) = state {
        st.power_state = Some(observed_power(s));
        if s == DomainState::Running && st.launched_at.is_none() {
            st.launched_at = Some(now);
        }
    } else if matches!(obs.domain, Some(Ok(None))) {
        st.power_state = Some(ObservedPowerState::NoState);
    }
    if let Some(n) = obs.observed_reboot_count {
        st.observed_reboot_count = st.observed_reboot_count.max(n);
    }
    st.task_state = obs.task.clone();
    let launched = st.launched_at.is_some();
    let phase = if obs.fatal.is_some() {
        ServerPhase::Error
    } else if unreachable {
        st.phase.unwrap_or(ServerPhase::Build)
    } else if let Some(kind) = obs.reboot_issued {
        match kind {
            RebootKind::Soft => ServerPhase::Reboot,
            RebootKind::Hard => ServerPhase::HardReboot,
        }
    } else {
        match state {
            Some(DomainState::Running | DomainState::ShuttingDown) => ServerPhase::Active,
            Some(DomainState::Paused) => ServerPhase::Paused,
            Some(DomainState::Saved) if wanted == PowerState::Stopped => ServerPhase::Shutoff,
            Some(DomainState::Saved | DomainState::PmSuspended) => ServerPhase::Suspended,
            Some(DomainState::ShutOff | DomainState::Crashed)
                if launched || wanted == PowerState::Stopped =>
            {
                ServerPhase::Shutoff
            }
            _ if !launched => ServerPhase::Build,
            _ => st.phase.unwrap_or(ServerPhase::Build),
        }
    };
    st.phase = Some(phase);
    st.fault = obs.fatal.as_ref().map(|(reason, message)| ServerFault {
        code: 500,
        message: format!("{reason}: {message}"),
        details: None,
        created: server
            .status
            .fault
            .as_ref()
            .filter(|f| f.message == format!("{reason}: {message}"))
            .and_then(|f| f.created)
            .or(Some(now)),
    });
    let failing = [IMAGE_READY, DISK_READY, NETWORK_READY, VOLUMES_READY]
        .into_iter()
        .find_map(|t| {
            Condition::find(&st.conditions, t)
                .filter(|c| c.status != ConditionStatus::True)
                .cloned()
        });
    let ready = if let Some((reason, message)) = &obs.fatal {
        Observed::new(ConditionStatus::False, reason, message.clone())
    } else if unreachable {
        domain_cond.clone()
    } else if let Some(c) = failing {
        Observed::new(c.status, &c.reason, c.message)
    } else if achieved(wanted, state) {
        let mut message = format!("the server is {wanted:?} as requested");
        if let Some(note) = &obs.note {
            message = format!("{message}; {note}");
        }
        Observed::new(ConditionStatus::True, &format!("{wanted:?}"), message)
    } else {
        let is = state.map_or("not defined".to_string(), |s| format!("{s:?}"));
        let mut message = format!("wants {wanted:?}, the domain is {is}");
        if let Some(task) = &obs.task {
            message = format!("{message} ({task})");
        }
        Observed::new(ConditionStatus::False, "PowerStateTransition", message)
    };
    Condition::set(&mut st.conditions, cond(READY, &ready));
    st.observed_generation = generation;
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::{ObjectMeta, ServerSpec};
    use uuid::Uuid;

    fn server() -> Server {
        let mut s = Server::new(
            ObjectMeta {
                name: "vm".into(),
                project: Some("demo".into()),
                uid: Some(Uuid::new_v4().to_string()),
                generation: Some(1),
                ..Default::default()
            },
            ServerSpec {
                flavor: "small".into(),
                image: Some("guest".into()),
                node_name: Some("n1".into()),
                ..Default::default()
            },
        );
        s.status.phase = Some(ServerPhase::Build);
        s
    }

    fn ok(reason: &str) -> Option<Observed> {
        Some(Observed::new(ConditionStatus::True, reason, "ok"))
    }

    fn running() -> Observation {
        Observation {
            image: ok("ImageCached"),
            disk: ok("DiskReady"),
            domain: Some(Ok(Some(DomainState::Running))),
            ..Default::default()
        }
    }

    #[test]
    fn active_once_running_and_stable_afterwards() {
        let mut s = server();
        let now = Utc::now();
        let st = derive_status(&s, &running(), "n1", now);
        assert_eq!(st.phase, Some(ServerPhase::Active));
        assert_eq!(st.launched_at, Some(now));
        assert_eq!(st.power_state, Some(ObservedPowerState::Running));
        assert!(Condition::is_true(&st.conditions, READY));
        s.status = st.clone();
        let later = now + chrono::Duration::seconds(30);
        assert_eq!(
            derive_status(&s, &running(), "n1", later),
            st,
            "no write on resync"
        );
    }

    #[test]
    fn unreachable_is_unknown_never_error() {
        let mut s = server();
        s.status = derive_status(&s, &running(), "n1", Utc::now());
        let obs = Observation {
            domain: Some(Err("hypervisor unreachable".into())),
            ..Default::default()
        };
        let st = derive_status(&s, &obs, "n1", Utc::now());
        assert_eq!(st.phase, Some(ServerPhase::Active));
        let ready = Condition::find(&st.conditions, READY).unwrap();
        assert_eq!(ready.status, ConditionStatus::Unknown);
        assert_eq!(
            Condition::find(&st.conditions, DOMAIN_RUNNING)
                .unwrap()
                .status,
            ConditionStatus::Unknown
        );
        assert!(st.fault.is_none());
    }

    #[test]
    fn positive_evidence_is_error_with_fault() {
        let s = server();
        let obs = Observation {
            image: Some(Observed::new(
                ConditionStatus::False,
                "ImageNotFound",
                "image \"guest\" does not exist",
            )),
            domain: Some(Ok(None)),
            fatal: Some((
                "ImageNotFound".into(),
                "image \"guest\" does not exist".into(),
            )),
            ..Default::default()
        };
        let st = derive_status(&s, &obs, "n1", Utc::now());
        assert_eq!(st.phase, Some(ServerPhase::Error));
        assert!(st.fault.unwrap().message.contains("ImageNotFound"));
        let ready = Condition::find(&st.conditions, READY).unwrap();
        assert_eq!(ready.reason, "ImageNotFound");
    }

    #[test]
    fn phases_follow_power_state() {
        let mut s = server();
        s.spec.power_state = PowerState::Stopped;
        let mut obs = running();
        obs.domain = Some(Ok(Some(DomainState::ShutOff)));
        assert_eq!(
            derive_status(&s, &obs, "n1", Utc::now()).phase,
            Some(ServerPhase::Shutoff)
        );
        // Suspended is suspend to disk: only a saved domain satisfies it.
        s.spec.power_state = PowerState::Suspended;
        obs.domain = Some(Ok(Some(DomainState::Saved)));
        let st = derive_status(&s, &obs, "n1", Utc::now());
        assert_eq!(st.phase, Some(ServerPhase::Suspended));
        assert_eq!(st.power_state, Some(ObservedPowerState::Suspended));
        assert!(Condition::is_true(&st.conditions, READY));
        obs.domain = Some(Ok(Some(DomainState::Paused)));
        let st = derive_status(&s, &obs, "n1", Utc::now());
        assert_eq!(st.phase, Some(ServerPhase::Paused));
        assert!(!Condition::is_true(&st.conditions, READY));
        // Stopped with a saved domain: not running, saved state kept (said so), SHUTOFF.
        s.spec.power_state = PowerState::Stopped;
        obs.domain = Some(Ok(Some(DomainState::Saved)));
        obs.note = Some("saved state is kept".into());
        let st = derive_status(&s, &obs, "n1", Utc::now());
        assert_eq!(st.phase, Some(ServerPhase::Shutoff));
        assert_eq!(st.power_state, Some(ObservedPowerState::Suspended));
        let ready = Condition::find(&st.conditions, READY).unwrap();
        assert_eq!(ready.status, ConditionStatus::True);
        assert!(ready.message.contains("saved state is kept"));
        // Running with a saved domain is a transition (the reconciler restores it).
        s.spec.power_state = PowerState::Running;
        obs.note = None;
        let st = derive_status(&s, &obs, "n1", Utc::now());
        assert_eq!(st.phase, Some(ServerPhase::Suspended));
        assert!(!Condition::is_true(&st.conditions, READY));
        s.spec.power_state = PowerState::Running;
        let mut obs = running();
        obs.reboot_issued = Some(RebootKind::Hard);
        obs.observed_reboot_count = Some(1);
        let st = derive_status(&s, &obs, "n1", Utc::now());
        assert_eq!(st.phase, Some(ServerPhase::HardReboot));
        assert_eq!(st.observed_reboot_count, 1);
    }
}
