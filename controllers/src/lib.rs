//! The Cirrus controller runtime.
//!
//! Controllers and automations see the world through the API, never the store: [`watcher`]
//! turns a collection URL into a stream of what is there and what changes, the Kubernetes
//! list+watch contract (kube-runtime's `watcher`), resuming from the last resourceVersion after
//! a disconnect and relisting when that version has been compacted (`410 Gone`). It names no
//! concrete kind.

pub mod runtime;
pub mod scheduler;
pub mod watcher;
