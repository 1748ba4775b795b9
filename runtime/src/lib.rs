//! The controller runtime: the machinery every Cirrus controller (and the node agent) runs on,
//! naming no concrete kind. Modelled on kube-rs' `kube-runtime`.
//!
//! ```text
//! Api<K> ──watcher──▶ reflector (Writer ▶ Store cache) ──▶ WorkQueue (dedupe, delay, one at a time)
//!   secondary watches / owns ──map to ObjectRef──┘              │
//!   periodic resync ─────────────────────────────┘              ▼
//!                                        reconcile(Arc<K>, Arc<Ctx>) -> Result<Action, E>
//!                                        error_policy(Arc<K>, &E, Arc<Ctx>) -> Action (backoff)
//! ```
//! - [`watcher`]: list+watch (typed [`cirrus_client::Api`] or [`cirrus_client::DynamicApi`],
//!   through [`watcher::ListWatch`]) that resumes after disconnects and relists after
//!   `410 Gone`.
//! - [`reflector`]: a single [`reflector::Writer`] and cloneable read-only [`reflector::Store`].
//! - [`queue`]: the work queue rules (dedupe, earliest wins, never twice at once, bounded).
//! - [`controller`]: the runner tying it together, with [`controller::Action`], per-object
//!   [`backoff`], periodic resync and a leadership gate.
//! - [`mod@finalizer`]: cleanup before deletion completes, with its contract.
//! - [`shared`]: one watch per kind shared by several controllers (events fan-out, caches).
//! - [`events`]: an [`events::Recorder`] publishing aggregated `Event` objects.
//! - [`leader`]: leader election through a `Lease` object and compare-and-swap.
//!
//! Reconcilers are level-triggered: they get the newest cached object, never the event or the
//! reason they were woken (that is in the `reconcile{kind, object, reason}` tracing span).

pub mod backoff;
pub mod controller;
pub mod events;
pub mod finalizer;
pub mod leader;
mod list_watch;
pub mod object_ref;
pub mod queue;
pub mod reflector;
pub mod shared;
pub mod watcher;

#[cfg(test)]
mod api_tests;
#[cfg(test)]
mod tests;

pub use backoff::{Backoff, ExponentialBackoff};
pub use controller::{Action, Config, Controller, ReconcileReason, owners};
pub use events::Recorder;
pub use finalizer::{FinalizerError, FinalizerEvent, finalizer};
pub use leader::{LeaderConfig, LeaderElector};
pub use object_ref::ObjectRef;
pub use reflector::{Store, Writer};
