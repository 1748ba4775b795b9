//! The Cirrus controllers and the runtime they share.
//!
//! Controllers and automations see the world through the API, never the store.
//! - [`runtime`]: the generic machinery (typed watcher, reflector cache, work queue with
//!   backoff and resync, finalizers, events, leader election), modelled on kube-runtime.
//! - [`scheduler`]: placement (a pure function) and the controller binding servers to nodes.
//! - [`network`]: IPAM (a pure function), MACs, ports for servers, DHCP ports, segments and
//!   default security groups.
//! - [`volume`]: volume placement on the nodes' storage pools, snapshots to their volume's
//!   node, `deleteOnTermination`.
//! - [`nodelifecycle`]: nodes whose heartbeat lease expired become not ready.
//! - [`watcher`]: an untyped list+watch over HTTP for automations (see
//!   `examples/automation`), resuming from the last resourceVersion and relisting on `410`.

pub mod network;
pub mod nodelifecycle;
pub mod runtime;
pub mod scheduler;
pub mod volume;
pub mod watcher;
