//! Cirrus node agent: the per-host process (like kubelet / nova-compute) that reconciles the
//! servers, ports and volumes bound to its node against the real host.
//!
//! # Design notes
//! - Every backend is reached through one narrow trait with idempotent, resource-first methods
//!   ([`hypervisor::Hypervisor`], [`net::switch::Switch`], [`volumes::VolumeBackend`]). Each
//!   trait has a real implementation and an in-memory fake with fault injection, and both pass
//!   the same conformance suite (`hypervisor::conformance`, `net::switch::conformance`,
//!   `volumes::conformance`, built for tests and the `testing` feature). The real hypervisor driver (libvirt) is behind the default
//!   cargo feature `libvirt`; the fakes are always built.
//! - The server reconciler ([`servers`]) reads the objects it needs from reflector caches fed
//!   by its watches, and every status field it shares has one writer: the server reconciler
//!   writes a volume's `status.attachments`, the volume reconciler ([`storage`]) its phase.
//! - Backend objects are named deterministically from the owning object's uid
//!   ([`hypervisor::DomainName`]), so "create" is always "ensure" and a crash between creating
//!   a thing and recording it never leaks it.
//! - "Gone" and "unreachable" are kept apart: `Ok(None)` from
//!   [`hypervisor::Hypervisor::domain_state`] is positive evidence that a domain does not exist;
//!   an error means the agent could not tell.

pub mod agent;
pub mod configdrive;
pub mod console_server;
pub mod disks;
pub mod hypervisor;
pub mod image_inspect;
pub mod images;
pub mod net;
pub mod registration;
pub mod servers;
pub mod storage;
pub mod volumes;

pub use agent::{AgentConfig, AgentError, run};
pub use servers::console_log;
