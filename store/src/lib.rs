//! Cirrus desired-state storage.
//!
//! Everything Cirrus stores lives in an etcd v3 key space reached through `etcd-client`:
//! either a real etcd cluster or, on one machine, the embedded server in [`embedded`], which
//! speaks the same gRPC API over a redb file. [`objects`] maps Kubernetes-style objects onto
//! that key space (names, uids, resourceVersions as mod revisions, spec/status, finalizers,
//! list and watch); [`selector`] and [`fields`] parse label and field selectors.
//! [`connect`] reaches any endpoint, the embedded server's Unix socket included, and [`perms`]
//! creates the store's files private to the user running it.
//!
//! Tests of the object layer run against the embedded server in memory (no daemon needed);
//! the conformance suite (`tests/conformance.rs`) holds the embedded server to the behaviour
//! of a real etcd.

pub mod connect;
pub mod embedded;
pub mod fields;
pub mod objects;
pub mod perms;
pub mod selector;
