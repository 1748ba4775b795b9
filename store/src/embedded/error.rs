//! Errors of the embedded store.
//!
//! Two kinds live here:
//! - [`EmbeddedError`]: what `start` and the storage layer return to Rust callers;
//! - [`EtcdError`]: request-level errors that must reach gRPC clients with *exactly* the code
//!   and message etcd uses, so `etcd_client` (and `etcdctl`) classify them the same way
//!   against the embedded server and a real etcd. [`EtcdError::to_status`] is the single place
//!   where that mapping happens.

use std::path::PathBuf;

/// Failure to start, run or persist the embedded etcd-API server.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}")]
    DataDir {
        /// The directory that was requested.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A store file or socket could not be created with, or set to, its private mode.
    #[error("cannot make {path} private to this user")]
    Private {
        /// The file or socket.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The Unix socket path is already served by another live process.
    #[error("{0} is in use by another running server")]
    SocketInUse(PathBuf),
    /// The redb database could not be opened or created.
    #[error("cannot open database {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The underlying redb error.
        #[source]
        source: redb::DatabaseError,
    },
    /// A redb storage operation failed.
    #[error("storage operation failed")]
    Storage(#[source] redb::Error),
    /// Reading the store's initial state failed.
    #[error("cannot read the store")]
    Read(#[source] EtcdError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address (or socket path) that was requested.
        addr: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server failed")]
    Serve(#[source] tonic::transport::Error),
    /// The single writer thread is gone (it panicked or the server is shutting down).
    #[error("store writer has stopped")]
    WriterStopped,
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for EmbeddedError {
            fn from(e: $t) -> Self {
                EmbeddedError::Storage(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// A request-level error, mirroring etcd's `rpctypes` errors (code and message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// The requested revision is below the compact revision.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// The requested revision is above the current revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    /// The lease does not exist (or has expired).
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A lease with the requested ID already exists.
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    /// The requested TTL exceeds etcd's maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// `ignore_value` / `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// The request has an empty key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// A transaction writes the same key twice.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A transaction has more operations than etcd allows.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// `ignore_value`/`ignore_lease` combined with a value/lease.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` combined with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// The RPC is not supported by the embedded server.
    #[error("{0} is not supported by the embedded store")]
    Unsupported(&'static str),
    /// Storage failure (reported as `Unavailable`, like an etcd backend failure).
    #[error("etcdserver: storage failure: {0}")]
    Storage(String),
}

impl EtcdError {
    /// The gRPC status etcd would send for this error.
    pub fn to_status(&self) -> tonic::Status {
        use tonic::Code;
        let code = match self {
            EtcdError::Compacted | EtcdError::FutureRev | EtcdError::LeaseTtlTooLarge => {
                Code::OutOfRange
            }
            EtcdError::LeaseNotFound => Code::NotFound,
            EtcdError::LeaseExist => Code::FailedPrecondition,
            EtcdError::KeyNotFound
            | EtcdError::EmptyKey
            | EtcdError::DuplicateKey
            | EtcdError::TooManyOps
            | EtcdError::ValueProvided
            | EtcdError::LeaseProvided => Code::InvalidArgument,
            EtcdError::Unsupported(_) => Code::Unimplemented,
            EtcdError::Storage(_) => Code::Unavailable,
        };
        tonic::Status::new(code, self.to_string())
    }
}

impl From<EtcdError> for tonic::Status {
    fn from(e: EtcdError) -> Self {
        e.to_status()
    }
}

macro_rules! etcd_from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for EtcdError {
            fn from(e: $t) -> Self {
                EtcdError::Storage(e.to_string())
            }
        }
    )*};
}
etcd_from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
