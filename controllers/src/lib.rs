//! The Cirrus controllers.
//!
//! Controllers and automations see the world through the API, never the store.
//! - [`runtime`]: the generic machinery (typed watcher, reflector cache, work queue with
//!   backoff and resync, finalizers, events, leader election), modelled on kube-runtime; it
//!   is its own crate, `cirrus-runtime`, re-exported here.
//! - [`scheduler`]: placement (a pure function) and the controller binding servers to nodes.
//! - [`network`]: IPAM (a pure function), MACs, ports for servers, DHCP ports, segments and
//!   default security groups.
//! - [`volume`]: volume placement on the nodes' storage pools, snapshots to their volume's
//!   node, `deleteOnTermination`.
//! - [`nodelifecycle`]: nodes whose heartbeat lease expired become not ready.

pub mod network;
pub mod nodelifecycle;
/// The runtime lives in its own crate (the node agent runs on it without the controllers).
pub use cirrus_runtime as runtime;
pub mod scheduler;
pub mod volume;
