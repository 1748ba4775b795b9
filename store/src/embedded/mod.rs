//! The embedded store: a single-machine server that speaks the etcd v3 gRPC API itself,
//! persisted with redb (the k3s/kine model), so every Cirrus component — and `etcdctl` — uses
//! one client path whether the cloud runs on a real etcd or on one machine.
//!
//! # Layout
//! - `schema` — redb tables and record encoding;
//! - `engine` — opening the database, read snapshots; `read` — `Range` evaluation;
//! - `apply` — write requests applied in a write transaction; `writer` — the single writer
//!   thread with group commit (one fsync for everything queued);
//! - `kv`, `watch`, `lease`, `maintenance` — the gRPC services; `server` — wiring;
//! - [`compactor`] — the background compaction (policy and bounded steps);
//!
//! A real `etcd` child for the conformance suite and the benchmark is `RealEtcd` in the
//! dev-only `cirrus-test-utils` crate.
//!
//! # Guarantees
//! - Revisions, `create_revision`, `mod_revision` and `version` behave as in etcd (the store
//!   starts at revision 1; one revision per effective write request).
//! - An acknowledged write is durable (fsync before the reply) when `data_dir` is set.
//! - Watches replay from any revision at or above the compact revision, then follow live
//!   events with no gap and no duplicate, one response per revision at most per watcher.
//! - Errors carry etcd's gRPC codes and messages (see [`EtcdError`]).
//! - History is bounded: compaction runs every [`EmbeddedConfig::compaction_interval`] (the
//!   Kubernetes API server's policy, see [`compactor`]) in steps that hold the writer for at
//!   most [`EmbeddedConfig::compaction_step`] row deletions.
//! - On disk, the data directory is mode 0700 and the database file 0600, whatever the
//!   umask; a Unix socket ([`Listen::Unix`], [`EmbeddedConfig::private`]) is 0600. A TCP
//!   listener has no authentication: anyone who reaches it reads everything.
//!
//! # Caveats
//! - Single member: no raft; `serializable` reads are served like linearizable ones.
//! - `Snapshot`, `Hash`, `HashKV`, membership changes and the `Auth` service are not
//!   implemented (`Unimplemented`).
//! - A `Txn` made only of reads still goes through the writer (it is linearised with writes).
//! - `etcdctl` 3.4 (grpc-go) sends the endpoint's host part as the HTTP/2 `:authority`, and
//!   for some commands the whole endpoint; the hyper/h2 server rejects an authority that is
//!   not `host[:port]` (`PROTOCOL_ERROR`). So over a Unix socket, run etcdctl in the socket's
//!   directory with the bare file name, `etcdctl --endpoints unix://etcd.sock get …` (the
//!   authority is then `etcd.sock`); `unix:///abs/path` fails. `endpoint status` fails over
//!   any `unix://` or `http://…` endpoint; use a TCP listener and `--endpoints=127.0.0.1:PORT`
//!   for it. `etcd_client` through [`crate::connect::connect`] is unaffected (it sends
//!   `localhost`), and so are `etcdctl put/get/watch/txn/lease/compaction/member list`.

mod apply;
pub mod compactor;
mod engine;
mod error;
mod kv;
mod lease;
mod maintenance;
mod read;
mod schema;
mod server;
mod watch;
mod writer;

pub use engine::DB_FILE;
pub use error::{EmbeddedError, EtcdError};
pub use maintenance::REPORTED_VERSION;
pub use schema::{CLUSTER_ID, MEMBER_ID, RAFT_TERM};
pub use server::{EmbeddedConfig, EmbeddedEtcd, Listen, SOCKET_FILE, start};
