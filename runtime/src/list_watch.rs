//! [`ListWatch`]: the two calls the [`crate::watcher`] needs from a collection, implemented
//! by the typed [`Api<K>`] and by the [`DynamicApi`] (JSON objects of a kind known at run
//! time), so one watcher state machine serves controllers and automation alike.

use std::future::Future;

use cirrus_client::{Api, ClientError, DynamicApi, ListParams, ObjectList, WatchEvent};
use cirrus_crds::Resource;
use futures::Stream;
use serde_json::Value;

/// A collection that can be listed and watched.
pub trait ListWatch: Clone + Send + Sync + 'static {
    /// What the collection holds (a typed kind or a JSON value).
    type Object: Clone + Send + Sync + 'static;

    /// The kind's name, for logs.
    fn kind_name(&self) -> &'static str;

    /// Every object matching `selectors`, at one revision.
    fn list_all(
        &self,
        selectors: &ListParams,
    ) -> impl Future<Output = Result<ObjectList<Self::Object>, ClientError>> + Send;

    /// The changes after `resource_version` matching `selectors`, ending after an error or
    /// when the server closes the stream.
    fn watch(
        &self,
        resource_version: &str,
        selectors: &ListParams,
    ) -> impl Stream<Item = Result<WatchEvent<Self::Object>, ClientError>> + Send + 'static;

    /// The revision an object was read at (`metadata.resourceVersion`).
    fn resource_version(object: &Self::Object) -> Option<&str>;
}

impl<K: Resource> ListWatch for Api<K> {
    type Object = K;

    fn kind_name(&self) -> &'static str {
        K::KIND
    }

    fn list_all(
        &self,
        selectors: &ListParams,
    ) -> impl Future<Output = Result<ObjectList<K>, ClientError>> + Send {
        self.list_all_matching(selectors)
    }

    fn watch(
        &self,
        resource_version: &str,
        selectors: &ListParams,
    ) -> impl Stream<Item = Result<WatchEvent<K>, ClientError>> + Send + 'static {
        self.watch_matching(resource_version, selectors)
    }

    fn resource_version(object: &K) -> Option<&str> {
        object.meta().resource_version.as_deref()
    }
}

impl ListWatch for DynamicApi {
    type Object = Value;

    fn kind_name(&self) -> &'static str {
        self.kind().kind
    }

    fn list_all(
        &self,
        selectors: &ListParams,
    ) -> impl Future<Output = Result<ObjectList<Value>, ClientError>> + Send {
        self.list_all_matching(selectors)
    }

    fn watch(
        &self,
        resource_version: &str,
        selectors: &ListParams,
    ) -> impl Stream<Item = Result<WatchEvent<Value>, ClientError>> + Send + 'static {
        self.watch_matching(resource_version, selectors)
    }

    fn resource_version(object: &Value) -> Option<&str> {
        cirrus_client::dynamic::resource_version_of(object)
    }
}
