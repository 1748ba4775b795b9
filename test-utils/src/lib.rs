//! Dev-only helpers shared by the Cirrus tests and benches, so no test file keeps a private
//! copy of them and no production crate ships them:
//!
//! - [`TestApi`] — the whole API in-process over an in-memory embedded store;
//! - [`Harness`] / [`harness`] — a [`TestApi`] with an admin [`cirrus_client::Client`], an
//!   open leadership gate and background tasks aborted on drop;
//! - [`eventually`], [`eventually_holds`], [`eventually_blocking`] — poll a probe until it
//!   holds (state is asserted, never timing);
//! - [`meta`], [`meta_in`] — object metadata with just a name (and a project);
//! - [`RealEtcd`] — a real `etcd` child process on loopback;
//! - [`free_port`] — a free loopback TCP port.
//!
//! Production crates list this crate only under `[dev-dependencies]`; with resolver 2 it
//! never reaches a normal build (`cargo tree -e normal -p cirrus-cli` does not show it).
//! It depends on `api`, `client`, `store`, `auth` and `crds`, so a crate's unit tests
//! (`src/…#[cfg(test)]`) may use it only when it is none of those (a second copy of the
//! crate's own types otherwise); their integration tests (`tests/*.rs`) always may.

mod harness;
mod poll;
mod real_etcd;
mod test_api;

use cirrus_crds::ObjectMeta;

pub use harness::{Harness, harness};
pub use poll::{eventually, eventually_blocking, eventually_holds};
pub use real_etcd::{DEFAULT_ETCD_BIN, RealEtcd, RealEtcdError};
pub use test_api::{ADMIN_PASSWORD, TestApi, client_with_token};

/// Metadata naming a cluster-scoped object `name` (everything else default).
pub fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        ..Default::default()
    }
}

/// Metadata naming object `name` in `project` (everything else default).
pub fn meta_in(project: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        project: Some(project.into()),
        ..Default::default()
    }
}

/// A currently free TCP port on 127.0.0.1 (bound and released: good enough for tests).
///
/// # Errors
/// When no loopback port can be bound.
pub fn try_free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// [`try_free_port`] for tests.
///
/// # Panics
/// When no loopback port can be bound (a broken test machine).
pub fn free_port() -> u16 {
    try_free_port().expect("a free loopback port")
}
