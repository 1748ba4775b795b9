//! What can go wrong reading or writing objects, in terms a client can act on.

use cirrus_crds::FieldErrors;

/// A failed object operation. Each variant maps to one HTTP status in the API.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// No object of that kind with that name (in that project).
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// Kind name.
        kind: &'static str,
        /// Object name.
        name: String,
    },
    /// Create of a name that is taken.
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// Kind name.
        kind: &'static str,
        /// Object name.
        name: String,
    },
    /// A resourceVersion precondition failed: someone else wrote first.
    #[error(
        "operation on {kind} {name:?} failed: the object has been modified (resourceVersion {expected} is stale, current is {current}); read it again and retry"
    )]
    Conflict {
        /// Kind name.
        kind: &'static str,
        /// Object name.
        name: String,
        /// The version the client sent.
        expected: i64,
        /// The version stored now.
        current: i64,
    },
    /// A delete's precondition ([`crate::objects::Preconditions`]) does not hold: the object
    /// is another one of the same name, or it changed.
    #[error(
        "operation on {kind} {name:?} failed: precondition {field} is {expected:?}, but the object's is {actual:?}"
    )]
    PreconditionFailed {
        /// Kind name.
        kind: &'static str,
        /// Object name.
        name: String,
        /// The field the precondition names (`metadata.uid`, `metadata.resourceVersion`).
        field: &'static str,
        /// What the precondition asked for.
        expected: String,
        /// What the stored object has.
        actual: String,
    },
    /// The object breaks the kind's schema or rules; every problem is listed.
    #[error("{kind} {name:?} is invalid: {errors}")]
    Invalid {
        /// Kind name.
        kind: &'static str,
        /// Object name (may be empty when the name itself is missing).
        name: String,
        /// Every problem, each naming its field.
        errors: FieldErrors,
    },
    /// The request itself is malformed (bad continue token, unparseable resourceVersion, ...).
    #[error("{0}")]
    BadRequest(String),
    /// A resourceVersion or continue token older than the store's compaction point.
    #[error("{0}")]
    Expired(String),
    /// The store could not be reached or failed; retrying later may succeed.
    #[error("store unavailable")]
    Unavailable(#[source] etcd_client::Error),
    /// The caller's write guard ([`crate::objects::WriteGuard`]) refused the write; the
    /// payload is the caller's own error, handed back untouched.
    #[error("the write was refused by admission")]
    Refused(Refusal),
    /// A stored value could not be decoded: the data was written by something else.
    #[error("stored object at {key:?} is unreadable")]
    Corrupt {
        /// Store key of the bad value.
        key: String,
        /// Decoding error.
        #[source]
        source: serde_json::Error,
    },
}

/// A guard's refusal: any error value of the caller's, boxed so the store need not know its
/// type (the API puts its own HTTP error in and takes it out again).
pub struct Refusal(pub Box<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Refusal(..)")
    }
}

impl ObjectError {
    /// True when the same request may succeed if simply retried later.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ObjectError::Unavailable(_) | ObjectError::Conflict { .. }
        )
    }
}

/// True when `err` is etcd's "required revision has been compacted".
pub(crate) fn is_compacted(err: &etcd_client::Error) -> bool {
    err.to_string()
        .contains("required revision has been compacted")
}

/// True when `err` is etcd's "required revision is a future revision".
pub(crate) fn is_future_revision(err: &etcd_client::Error) -> bool {
    err.to_string().contains("future revision")
}
