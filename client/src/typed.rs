//! [`Api<K>`]: the objects of one typed kind, decoded into `K`.

use std::fmt;
use std::marker::PhantomData;

use cirrus_crds::Resource;
use futures::Stream;
use serde_json::Value;

use crate::collection::{Collection, JSON, MERGE_PATCH};
use crate::{Client, ClientError, ListParams, ObjectList, Result, WatchEvent};

/// Access to the objects of kind `K`, across the cloud or inside one project.
pub struct Api<K> {
    inner: Collection,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K> fmt::Debug for Api<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("kind", &std::any::type_name::<K>())
            .field("project", &self.inner.project)
            .finish()
    }
}

impl<K: Resource> Api<K> {
    /// Cluster-scoped kinds; for project-scoped kinds, reads (list, watch) across all
    /// projects, and object calls on objects that carry their project.
    pub fn all(client: Client) -> Self {
        Self {
            inner: Collection::new(client, K::info(), None),
            _kind: PhantomData,
        }
    }

    /// Objects of a project-scoped kind in `project`. For a cluster-scoped kind the project
    /// is ignored.
    pub fn in_project(client: Client, project: impl Into<String>) -> Self {
        Self {
            inner: Collection::new(client, K::info(), Some(project.into())),
            _kind: PhantomData,
        }
    }

    /// The Api that addresses `obj` itself: its project for a project-scoped kind.
    pub fn for_object(client: Client, obj: &K) -> Self {
        match &obj.meta().project {
            Some(project) => Self::in_project(client, project.clone()),
            None => Self::all(client),
        }
    }

    /// The client this Api talks through.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The project this Api is limited to, if any.
    pub fn project(&self) -> Option<&str> {
        self.inner.project.as_deref()
    }

    /// URL of an object we hold, preferring the Api's project and falling back to the
    /// object's own.
    fn url_of(&self, obj: &K, subresource: &[&str]) -> Result<String> {
        let meta = obj.meta();
        let project = self.inner.project.as_deref().or(meta.project.as_deref());
        self.inner.object_url(project, &meta.name, subresource)
    }

    /// Reads one object.
    ///
    /// # Errors
    /// `404` ([`ClientError::is_not_found`]) when it does not exist.
    pub async fn get(&self, name: &str) -> Result<K> {
        self.inner.get(name).await
    }

    /// Reads one object, `None` when it does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>> {
        self.inner.get_opt(name).await
    }

    /// Lists one page of objects.
    ///
    /// # Errors
    /// `410 Gone` when the continue token's revision has been compacted.
    pub async fn list(&self, params: &ListParams) -> Result<ObjectList<K>> {
        self.inner.list(params).await
    }

    /// Lists every object, following continue tokens (pages of 500, one consistent snapshot).
    pub async fn list_all(&self, label_selector: Option<&str>) -> Result<ObjectList<K>> {
        let selectors = ListParams {
            label_selector: label_selector.map(str::to_string),
            ..ListParams::default()
        };
        self.list_all_matching(&selectors).await
    }

    /// Lists every object matching the label and field selectors of `selectors` (its limit
    /// and continue token are ignored), following continue tokens.
    pub async fn list_all_matching(&self, selectors: &ListParams) -> Result<ObjectList<K>> {
        self.inner.list_all(selectors).await
    }

    /// Creates `obj` (in the Api's project, else the object's own). The answer is the stored
    /// object with uid, resourceVersion, generation and creationTimestamp set.
    ///
    /// # Errors
    /// `409 AlreadyExists` when the name is taken ([`ClientError::is_already_exists`]),
    /// `400 Invalid` naming the bad field.
    pub async fn create(&self, obj: &K) -> Result<K> {
        let project = self.inner.project_for(obj.meta().project.as_deref())?;
        let url = self.inner.collection_url(project)?;
        let body = to_json(obj)?;
        self.inner
            .write(reqwest::Method::POST, url, Some((JSON, body)), false)
            .await
    }

    /// Replaces `obj` (spec, labels, annotations, finalizers, ...; not status). When
    /// `obj.metadata.resourceVersion` is set it must still be the stored one.
    ///
    /// # Errors
    /// `409 Conflict` when it is stale ([`ClientError::is_conflict`]).
    pub async fn replace(&self, obj: &K) -> Result<K> {
        self.put(obj, &[]).await
    }

    /// Replaces only `obj.status`, with the same resourceVersion precondition as
    /// [`Api::replace`].
    pub async fn replace_status(&self, obj: &K) -> Result<K> {
        self.put(obj, &["status"]).await
    }

    /// `PUT` of `obj` to its URL followed by `subresource`.
    async fn put(&self, obj: &K, subresource: &[&str]) -> Result<K> {
        let url = self.url_of(obj, subresource)?;
        let body = Some((JSON, to_json(obj)?));
        self.inner
            .write(reqwest::Method::PUT, url, body, false)
            .await
    }

    /// Applies a JSON merge patch (RFC 7386) to the stored object. A
    /// `metadata.resourceVersion` in the patch is a precondition.
    ///
    /// # Errors
    /// `409 Conflict` when that precondition fails, `404` when the object is gone.
    pub async fn patch(&self, name: &str, patch: &Value) -> Result<K> {
        let url = self.inner.object_url(None, name, &[])?;
        let body = Some((MERGE_PATCH, patch.to_string().into_bytes()));
        self.inner
            .write(reqwest::Method::PATCH, url, body, false)
            .await
    }

    /// Applies a JSON merge patch to the status of the stored object.
    pub async fn patch_status(&self, name: &str, patch: &Value) -> Result<K> {
        let url = self.inner.object_url(None, name, &["status"])?;
        let body = Some((MERGE_PATCH, patch.to_string().into_bytes()));
        self.inner
            .write(reqwest::Method::PATCH, url, body, false)
            .await
    }

    /// Deletes an object. With finalizers pending the answer is the object, still there, with
    /// `deletionTimestamp` set; otherwise it is the object's last state.
    pub async fn delete(&self, name: &str) -> Result<K> {
        let url = self.inner.object_url(None, name, &[])?;
        self.inner
            .write(reqwest::Method::DELETE, url, None, false)
            .await
    }

    /// [`Self::delete`] of the object only while it is the one with `uid`: a cleanup that
    /// names an object must not take a newer one that reuses its name (a `409` then).
    pub async fn delete_if_uid(&self, name: &str, uid: &str) -> Result<K> {
        let url = self.inner.object_url(None, name, &[])?;
        let options = serde_json::json!({"preconditions": {"uid": uid}});
        let body = Some((JSON, options.to_string().into_bytes()));
        self.inner
            .write(reqwest::Method::DELETE, url, body, false)
            .await
    }

    /// Watches the collection for changes after `resource_version` (`"0"` or empty: the
    /// current objects first, as `Added`), optionally filtered by a label selector.
    ///
    /// # Errors
    /// The stream yields one `Err` and ends when the watch can't start (a compacted revision
    /// is `410 Gone`), when the server reports an error event (compaction during the watch is
    /// a `410`), or when the connection breaks or sends something unreadable. It ends without
    /// an error when the server closes it.
    pub fn watch(
        &self,
        resource_version: &str,
        label_selector: Option<&str>,
    ) -> impl Stream<Item = Result<WatchEvent<K>>> + Send + 'static + use<K> {
        let selectors = ListParams {
            label_selector: label_selector.map(str::to_string),
            ..ListParams::default()
        };
        self.watch_matching(resource_version, &selectors)
    }

    /// [`Api::watch`] with the label and field selectors of `selectors`.
    pub fn watch_matching(
        &self,
        resource_version: &str,
        selectors: &ListParams,
    ) -> impl Stream<Item = Result<WatchEvent<K>>> + Send + 'static + use<K> {
        self.inner.watch(resource_version, selectors)
    }
}

fn to_json<K: Resource>(obj: &K) -> Result<Vec<u8>> {
    serde_json::to_vec(obj).map_err(|e| ClientError::InvalidObject(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::{Flavor, Server};

    #[test]
    fn urls_follow_scope() {
        let client = Client::new("http://h:1/");
        let flavors = Api::<Flavor>::in_project(client.clone(), "ignored");
        assert_eq!(flavors.project(), None);
        assert_eq!(
            flavors.inner.object_url(None, "m1", &[]).unwrap(),
            "http://h:1/apis/cirrus.dev/v1/flavors/m1"
        );
        let servers = Api::<Server>::in_project(client.clone(), "demo");
        assert_eq!(
            servers.inner.object_url(None, "vm", &[]).unwrap(),
            "http://h:1/apis/cirrus.dev/v1/projects/demo/servers/vm"
        );
        let all = Api::<Server>::all(client);
        assert_eq!(
            all.inner.collection_url(None).unwrap(),
            "http://h:1/apis/cirrus.dev/v1/servers"
        );
        assert!(matches!(
            all.inner.object_url(None, "vm", &[]),
            Err(ClientError::ProjectRequired { kind: "Server" })
        ));
    }
}
