//! The typed object layer: Kubernetes-style objects over any etcd v3 endpoint.
//!
//! Objects are JSON values of a kind described by [`cirrus_crds::KindInfo`]; the store gives
//! them identity and versioning:
//!
//! # Guarantees
//! - **Unique names**: create is a transaction on `create_revision == 0` of the object's key,
//!   so two creators of one name never both succeed.
//! - **Optimistic concurrency**: `metadata.resourceVersion` is the key's etcd mod revision; an
//!   update carrying one is a compare-and-swap on it and fails with
//!   [`ObjectError::Conflict`] when stale. Updates without one retry internally on races.
//! - **Spec/status split**: writes to the object keep the stored `status`; writes to the status
//!   keep everything else. `metadata.generation` increments only when `spec` changes.
//! - **Store-owned metadata** (`uid`, `creationTimestamp`, `deletionTimestamp`, `generation`)
//!   cannot be changed by clients.
//! - **Finalizers**: deleting an object with finalizers only sets `deletionTimestamp`; the key
//!   is removed by the write that empties `finalizers`.
//! - **No-op writes cost nothing**: an update that changes nothing writes nothing and returns
//!   the stored object (a converged controller's resync makes no store writes).
//! - **Nothing half-written**: every write is a single etcd transaction, and validation runs
//!   before it.

mod document;
mod error;
mod keys;
mod list;
pub mod merge_patch;
mod typed;
mod watch;

use cirrus_crds::KindInfo;
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde_json::Value;

pub(crate) use document::decode;
use document::{
    check_identity, check_precondition, encode, merge_part, metadata_mut, now, object_name,
    object_project, parse_resource_version, place_in_project, resource_version_of, validated,
    with_resource_version,
};
pub use error::{ObjectError, Refusal};
pub use list::{ListOptions, ObjectList};
pub use typed::Api;
pub use watch::{WatchEvent, WatchOptions};

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Everything but `status` (the main resource).
    Main,
    /// Only `status` (the status subresource).
    Status,
}

/// A check run inside a write's compare-and-swap loop with the stored object and the
/// object as it would be stored (before validation): an `Err` stops the write, which fails
/// with [`ObjectError::Refused`]. Because it runs on exactly what is about to be written, a
/// rule it enforces cannot be raced by a concurrent writer.
pub type WriteGuard<'a> = &'a (dyn Fn(&Value, &Value) -> Result<(), Refusal> + Send + Sync);

/// The guard that lets every write through.
fn no_guard(_: &Value, _: &Value) -> Result<(), Refusal> {
    Ok(())
}

/// Objects of every kind in one etcd key space.
#[derive(Clone)]
pub struct ObjectStore {
    client: etcd_client::Client,
    prefix: String,
}

impl std::fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// What an object must still be for a [`ObjectStore::delete_with`] to go ahead.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// The object's `metadata.uid`: the very object, not a later one of the same name.
    pub uid: Option<String>,
    /// The object's `metadata.resourceVersion`: unchanged since it was read.
    pub resource_version: Option<i64>,
}

impl Preconditions {
    /// The precondition that the object is the one with `uid`.
    pub fn uid(uid: impl Into<String>) -> Self {
        Self {
            uid: Some(uid.into()),
            resource_version: None,
        }
    }

    /// Refuses `current` when it is not what the preconditions name.
    fn check(
        &self,
        kind: &'static KindInfo,
        name: &str,
        current: &Stored,
    ) -> Result<(), ObjectError> {
        let failed = |field: &'static str, expected: String, actual: String| {
            Err(ObjectError::PreconditionFailed {
                kind: kind.kind,
                name: name.to_string(),
                field,
                expected,
                actual,
            })
        };
        if let Some(uid) = &self.uid {
            let actual = current
                .object
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if actual != uid {
                return failed("metadata.uid", uid.clone(), actual.to_string());
            }
        }
        if let Some(rv) = self.resource_version
            && rv != current.mod_revision
        {
            return failed(
                "metadata.resourceVersion",
                rv.to_string(),
                current.mod_revision.to_string(),
            );
        }
        Ok(())
    }
}

/// One stored object as read, with the store's version of it.
struct Stored {
    object: Value,
    mod_revision: i64,
}

impl ObjectStore {
    /// Uses `client`; objects live under `prefix` (normally `/cirrus`).
    pub fn new(client: etcd_client::Client, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into().trim_end_matches('/').to_string();
        Self { client, prefix }
    }

    /// Connects to `endpoints` (etcd URLs, or the embedded server's `unix:///…` socket; see
    /// [`crate::connect::connect`]) and uses prefix `/cirrus`.
    pub async fn connect(endpoints: &[String]) -> Result<Self, ObjectError> {
        let client = crate::connect::connect(endpoints, None)
            .await
            .map_err(ObjectError::Unavailable)?;
        Ok(Self::new(client, "/cirrus"))
    }

    /// The underlying etcd client (for leases, compaction and tests).
    pub fn client(&self) -> &etcd_client::Client {
        &self.client
    }

    /// The store's current revision: every object's resourceVersion is at most this.
    pub async fn current_revision(&self) -> Result<i64, ObjectError> {
        let resp = self
            .client
            .kv_client()
            .get(
                format!("{}/", self.prefix),
                Some(GetOptions::new().with_count_only()),
            )
            .await
            .map_err(ObjectError::Unavailable)?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    /// How many objects of `kind` exist (in `project`, when given), without reading them: a
    /// count-only range read (quota checks use it on every create).
    pub async fn count(&self, kind: &KindInfo, project: Option<&str>) -> Result<i64, ObjectError> {
        let prefix = keys::list_prefix(&self.prefix, kind, project)?;
        let end = keys::prefix_end(prefix.as_bytes());
        let resp = self
            .client
            .kv_client()
            .get(
                prefix.into_bytes(),
                Some(GetOptions::new().with_range(end).with_count_only()),
            )
            .await
            .map_err(ObjectError::Unavailable)?;
        Ok(resp.count())
    }

    /// Reads one object.
    pub async fn get(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        name: &str,
    ) -> Result<Value, ObjectError> {
        let key = keys::object_key(&self.prefix, kind, project, name)?;
        Ok(self.read(kind, &key, name).await?.object)
    }

    /// Creates `object` (in `project` for project-scoped kinds) and returns it as stored.
    ///
    /// # Errors
    /// [`ObjectError::Invalid`] naming every bad field, [`ObjectError::AlreadyExists`] when the
    /// name is taken, [`ObjectError::Unavailable`] when the store fails.
    pub async fn create(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        object: Value,
        dry_run: bool,
    ) -> Result<Value, ObjectError> {
        let mut object = object;
        let name = object_name(&object);
        let meta = metadata_mut(kind, &name, &mut object)?;
        place_in_project(kind, &name, meta, project)?;
        for owned in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
        ] {
            meta.remove(owned);
        }
        meta.insert("uid".into(), Value::from(uuid::Uuid::new_v4().to_string()));
        meta.insert("generation".into(), Value::from(1));
        meta.insert("creationTimestamp".into(), Value::from(now()));
        if let Some(map) = object.as_object_mut() {
            map.remove("status");
        }
        let object = validated(kind, &name, object)?;
        let project = object_project(&object);
        let key = keys::object_key(&self.prefix, kind, project.as_deref(), &name)?;
        if dry_run {
            return Ok(object);
        }
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), encode(&object), None)]);
        let resp = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(ObjectError::Unavailable)?;
        if !resp.succeeded() {
            return Err(ObjectError::AlreadyExists {
                kind: kind.kind,
                name,
            });
        }
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        Ok(with_resource_version(object, revision))
    }

    /// Replaces the `part` of an object with the one in `object`.
    ///
    /// A `metadata.resourceVersion` in `object` is a precondition; without one the write
    /// applies to whatever is stored now.
    pub async fn update(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        name: &str,
        object: Value,
        part: Part,
        dry_run: bool,
    ) -> Result<Value, ObjectError> {
        self.update_guarded(kind, project, name, object, part, dry_run, &no_guard)
            .await
    }

    /// [`ObjectStore::update`] with `guard` judging the write inside the compare-and-swap
    /// loop.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_guarded(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        name: &str,
        object: Value,
        part: Part,
        dry_run: bool,
        guard: WriteGuard<'_>,
    ) -> Result<Value, ObjectError> {
        let key = keys::object_key(&self.prefix, kind, project, name)?;
        let mut object = object;
        let meta = metadata_mut(kind, name, &mut object)?;
        check_identity(kind, name, project, meta)?;
        let expected = resource_version_of(meta)?;
        self.rewrite(kind, &key, name, expected, dry_run, |current| {
            let merged = merge_part(current, &object, part);
            guard(current, &merged).map_err(ObjectError::Refused)?;
            Ok(merged)
        })
        .await
    }

    /// Applies a JSON merge patch (RFC 7386) to the `part` of an object.
    ///
    /// A `metadata.resourceVersion` in the patch is a precondition.
    pub async fn patch(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        name: &str,
        patch: &Value,
        part: Part,
        dry_run: bool,
    ) -> Result<Value, ObjectError> {
        self.patch_guarded(kind, project, name, patch, part, dry_run, &no_guard)
            .await
    }

    /// [`ObjectStore::patch`] with `guard` judging the write inside the compare-and-swap
    /// loop.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch_guarded(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        name: &str,
        patch: &Value,
        part: Part,
        dry_run: bool,
        guard: WriteGuard<'_>,
    ) -> Result<Value, ObjectError> {
        let key = keys::object_key(&self.prefix, kind, project, name)?;
        if !patch.is_object() {
            return Err(ObjectError::BadRequest(
                "a merge patch must be a JSON object".into(),
            ));
        }
        let expected = match patch.pointer("/metadata/resourceVersion") {
            Some(Value::String(rv)) => Some(parse_resource_version(rv)?),
            Some(Value::Null) | None => None,
            Some(other) => {
                return Err(ObjectError::BadRequest(format!(
                    "metadata.resourceVersion must be a string, got {other}"
                )));
            }
        };
        self.rewrite(kind, &key, name, expected, dry_run, |current| {
            let mut patched = current.clone();
            merge_patch::apply(&mut patched, patch);
            if let Some(meta) = patched.get_mut("metadata").and_then(Value::as_object_mut) {
                check_identity(kind, name, project, meta)?;
            }
            let merged = merge_part(current, &patched, part);
            guard(current, &merged).map_err(ObjectError::Refused)?;
            Ok(merged)
        })
        .await
    }

    /// Read-modify-write of one object: `build` makes the new object from the stored one,
    /// which is then validated and written with a compare-and-swap. With an `expected`
    /// version a lost race is a [`ObjectError::Conflict`]; without one it is retried.
    async fn rewrite(
        &self,
        kind: &'static KindInfo,
        key: &str,
        name: &str,
        expected: Option<i64>,
        dry_run: bool,
        build: impl Fn(&Value) -> Result<Value, ObjectError>,
    ) -> Result<Value, ObjectError> {
        loop {
            let current = self.read(kind, key, name).await?;
            check_precondition(kind, name, expected, current.mod_revision)?;
            let merged = build(&current.object)?;
            let written = self
                .finish_write(kind, key, name, &current, merged, dry_run)
                .await?;
            match (written, expected) {
                (Some(done), _) => return Ok(done),
                (None, Some(expected)) => {
                    return Err(self.conflict(kind, key, name, expected).await);
                }
                (None, None) => continue,
            }
        }
    }

    /// Deletes an object: removes it now when it has no finalizers, else marks it with
    /// `deletionTimestamp` and leaves removal to the write that empties its finalizers.
    /// Returns the object's last state.
    pub async fn delete(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        name: &str,
        dry_run: bool,
    ) -> Result<Value, ObjectError> {
        self.delete_with(kind, project, name, &Preconditions::default(), dry_run)
            .await
    }

    /// [`Self::delete`] of the object only while it matches `preconditions` (Kubernetes'
    /// `DeleteOptions.preconditions`): a cleanup that deletes by name must not take a newer
    /// object that reuses the name. A mismatch is [`ObjectError::PreconditionFailed`]; the
    /// check and the delete are one compare-and-swap.
    pub async fn delete_with(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        name: &str,
        preconditions: &Preconditions,
        dry_run: bool,
    ) -> Result<Value, ObjectError> {
        let key = keys::object_key(&self.prefix, kind, project, name)?;
        loop {
            let current = self.read(kind, &key, name).await?;
            preconditions.check(kind, name, &current)?;
            let has_finalizers = current
                .object
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            if has_finalizers {
                if current
                    .object
                    .pointer("/metadata/deletionTimestamp")
                    .is_some()
                {
                    return Ok(current.object);
                }
                let mut marked = current.object.clone();
                if let Some(meta) = marked.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("deletionTimestamp".into(), Value::from(now()));
                    meta.remove("resourceVersion");
                }
                if dry_run {
                    return Ok(marked);
                }
                if let Some(rev) = self
                    .put_if_unchanged(&key, &marked, current.mod_revision)
                    .await?
                {
                    return Ok(with_resource_version(marked, rev));
                }
            } else {
                if dry_run {
                    return Ok(current.object);
                }
                if self
                    .delete_if_unchanged(&key, current.mod_revision)
                    .await?
                    .is_some()
                {
                    return Ok(current.object);
                }
            }
        }
    }

    /// Validates `merged` and writes it if it differs from `current`.
    ///
    /// Returns `None` when the compare-and-swap lost a race (the caller decides whether that
    /// is a conflict or a retry).
    async fn finish_write(
        &self,
        kind: &'static KindInfo,
        key: &str,
        name: &str,
        current: &Stored,
        merged: Value,
        dry_run: bool,
    ) -> Result<Option<Value>, ObjectError> {
        let mut merged = validated(kind, name, merged)?;
        let spec_changed = merged.get("spec") != current.object.get("spec");
        let generation = current
            .object
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if let Some(meta) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
            let generation = if spec_changed {
                generation + 1
            } else {
                generation
            };
            meta.insert("generation".into(), Value::from(generation));
            meta.remove("resourceVersion");
        }
        let mut current_plain = current.object.clone();
        if let Some(meta) = current_plain
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
        {
            meta.remove("resourceVersion");
        }
        if merged == current_plain {
            return Ok(Some(current.object.clone()));
        }
        let deleting = merged.pointer("/metadata/deletionTimestamp").is_some();
        let finalizers_empty = merged
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if dry_run {
            return Ok(Some(with_resource_version(merged, current.mod_revision)));
        }
        if deleting && finalizers_empty {
            return Ok(self
                .delete_if_unchanged(key, current.mod_revision)
                .await?
                .map(|rev| with_resource_version(merged, rev)));
        }
        Ok(self
            .put_if_unchanged(key, &merged, current.mod_revision)
            .await?
            .map(|rev| with_resource_version(merged, rev)))
    }

    /// Writes `object` at `key` if the key is still at `mod_revision`; the new revision, or
    /// `None` when someone else wrote first.
    async fn put_if_unchanged(
        &self,
        key: &str,
        object: &Value,
        mod_revision: i64,
    ) -> Result<Option<i64>, ObjectError> {
        self.if_unchanged(key, mod_revision, TxnOp::put(key, encode(object), None))
            .await
    }

    /// Deletes `key` if it is still at `mod_revision`; as [`Self::put_if_unchanged`].
    async fn delete_if_unchanged(
        &self,
        key: &str,
        mod_revision: i64,
    ) -> Result<Option<i64>, ObjectError> {
        self.if_unchanged(key, mod_revision, TxnOp::delete(key, None))
            .await
    }

    /// Runs `op` in a transaction guarded by `mod_revision(key) == mod_revision`.
    async fn if_unchanged(
        &self,
        key: &str,
        mod_revision: i64,
        op: TxnOp,
    ) -> Result<Option<i64>, ObjectError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, mod_revision)])
            .and_then([op]);
        let resp = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(ObjectError::Unavailable)?;
        Ok(resp
            .succeeded()
            .then(|| resp.header().map(|h| h.revision()).unwrap_or_default()))
    }

    async fn read(
        &self,
        kind: &'static KindInfo,
        key: &str,
        name: &str,
    ) -> Result<Stored, ObjectError> {
        let resp = self
            .client
            .kv_client()
            .get(key, None)
            .await
            .map_err(ObjectError::Unavailable)?;
        let kv = resp.kvs().first().ok_or_else(|| ObjectError::NotFound {
            kind: kind.kind,
            name: name.to_string(),
        })?;
        Ok(Stored {
            object: decode(kv)?,
            mod_revision: kv.mod_revision(),
        })
    }

    async fn conflict(
        &self,
        kind: &'static KindInfo,
        key: &str,
        name: &str,
        expected: i64,
    ) -> ObjectError {
        let current = match self.read(kind, key, name).await {
            Ok(stored) => stored.mod_revision,
            Err(err) => return err,
        };
        ObjectError::Conflict {
            kind: kind.kind,
            name: name.to_string(),
            expected,
            current,
        }
    }
}
