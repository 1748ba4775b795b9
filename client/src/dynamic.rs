//! [`DynamicApi`]: the objects of a kind known only at run time (by its [`KindInfo`], as the
//! CLI resolves `cirrus get flavors`), as [`serde_json::Value`]s — the counterpart of
//! kube-rs' `Api<DynamicObject>` with an `ApiResource`. Same URLs, errors, list pages and
//! watch reader as the typed [`crate::Api`]; only the decoding differs.

use std::fmt;

use cirrus_crds::KindInfo;
use futures::Stream;
use serde_json::Value;

use crate::collection::{Collection, JSON, MERGE_PATCH};
use crate::{Client, ListParams, ObjectList, Result, WatchEvent};

/// Access to the objects of one kind as JSON values, across the cloud or in one project.
#[derive(Clone)]
pub struct DynamicApi {
    inner: Collection,
    dry_run: bool,
}

impl fmt::Debug for DynamicApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamicApi")
            .field("kind", &self.inner.kind.kind)
            .field("project", &self.inner.project)
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

impl DynamicApi {
    /// The objects of `kind` in `project` (ignored for a cluster-scoped kind), or across
    /// all projects when `None` (reads, and writes of objects that carry their project).
    pub fn new(client: Client, kind: &'static KindInfo, project: Option<&str>) -> Self {
        Self {
            inner: Collection::new(client, kind, project.map(str::to_string)),
            dry_run: false,
        }
    }

    /// The same Api whose writes (create, patch, replace, delete) are only checked by the
    /// server (`?dryRun=All`) when `dry_run` is true: nothing is stored.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// The kind this Api addresses.
    pub fn kind(&self) -> &'static KindInfo {
        self.inner.kind
    }

    /// The project this Api is limited to, if any.
    pub fn project(&self) -> Option<&str> {
        self.inner.project.as_deref()
    }

    /// The client this Api talks through.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Reads one object.
    ///
    /// # Errors
    /// `404` ([`crate::ClientError::is_not_found`]) when it does not exist,
    /// [`crate::ClientError::ProjectRequired`] for a project-scoped kind without a project.
    pub async fn get(&self, name: &str) -> Result<Value> {
        self.inner.get(name).await
    }

    /// Reads one object, `None` when it does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<Value>> {
        self.inner.get_opt(name).await
    }

    /// Lists one page of objects.
    ///
    /// # Errors
    /// `400` for a selector the API can't parse, `410 Gone` when the continue token's
    /// revision has been compacted.
    pub async fn list(&self, params: &ListParams) -> Result<ObjectList<Value>> {
        self.inner.list(params).await
    }

    /// Lists every object matching the label and field selectors of `selectors` (its limit
    /// and continue token are ignored), following continue tokens: one consistent snapshot.
    pub async fn list_all_matching(&self, selectors: &ListParams) -> Result<ObjectList<Value>> {
        self.inner.list_all(selectors).await
    }

    /// Creates `object` in the Api's project, else in the one its `metadata.project` names.
    ///
    /// # Errors
    /// `409 AlreadyExists`, `400 Invalid` naming the bad field,
    /// [`crate::ClientError::ProjectRequired`] when no project is known.
    pub async fn create(&self, object: &Value) -> Result<Value> {
        let own = object.pointer("/metadata/project").and_then(Value::as_str);
        let url = self.inner.collection_url(self.inner.project_for(own)?)?;
        let body = Some((JSON, object.to_string().into_bytes()));
        self.inner
            .write(reqwest::Method::POST, url, body, self.dry_run)
            .await
    }

    /// Applies a JSON merge patch (RFC 7386) to the object `name`; a
    /// `metadata.resourceVersion` in the patch is a precondition.
    ///
    /// # Errors
    /// `409 Conflict` when that precondition fails, `404` when the object is gone.
    pub async fn patch(&self, name: &str, patch: &Value) -> Result<Value> {
        let url = self.inner.object_url(None, name, &[])?;
        let body = Some((MERGE_PATCH, patch.to_string().into_bytes()));
        self.inner
            .write(reqwest::Method::PATCH, url, body, self.dry_run)
            .await
    }

    /// Replaces the object `name` with `object`; its `metadata.resourceVersion`, when
    /// present, must still be the stored one.
    ///
    /// # Errors
    /// `409 Conflict` when it is stale.
    pub async fn replace(&self, name: &str, object: &Value) -> Result<Value> {
        let url = self.inner.object_url(None, name, &[])?;
        let body = Some((JSON, object.to_string().into_bytes()));
        self.inner
            .write(reqwest::Method::PUT, url, body, self.dry_run)
            .await
    }

    /// Deletes the object `name`; the answer is the object as it was (or, with finalizers
    /// pending, as it is now, with `deletionTimestamp` set).
    ///
    /// # Errors
    /// `404` when it does not exist.
    pub async fn delete(&self, name: &str) -> Result<Value> {
        let url = self.inner.object_url(None, name, &[])?;
        self.inner
            .write(reqwest::Method::DELETE, url, None, self.dry_run)
            .await
    }

    /// Watches the collection for changes after `resource_version` (empty: from now, the
    /// current objects first as `Added`), filtered by the selectors of `selectors`.
    ///
    /// # Errors
    /// As [`crate::Api::watch`]: one `Err` ends the stream (`410 Gone` for a compacted
    /// revision, [`crate::ClientError::StreamBroken`] when the connection broke after the
    /// watch started).
    pub fn watch_matching(
        &self,
        resource_version: &str,
        selectors: &ListParams,
    ) -> impl Stream<Item = Result<WatchEvent<Value>>> + Send + 'static + use<> {
        self.inner.watch(resource_version, selectors)
    }
}

/// `metadata.resourceVersion` of an object or list.
pub fn resource_version_of(value: &Value) -> Option<&str> {
    value
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

/// `metadata.name` of an object (empty when it has none).
pub fn name_of(value: &Value) -> &str {
    value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.project` of an object.
pub fn project_of(value: &Value) -> Option<&str> {
    value.pointer("/metadata/project").and_then(Value::as_str)
}
