//! A typed view of one kind for Rust callers (controllers, tests): the same operations as
//! [`ObjectStore`] with values converted to and from the kind's struct.

use std::marker::PhantomData;

use cirrus_crds::Resource;
use serde_json::Value;

use super::{ListOptions, ObjectError, ObjectStore, Part};

/// Typed access to the objects of kind `K` (in one project for project-scoped kinds).
#[derive(Clone, Debug)]
pub struct Api<K> {
    store: ObjectStore,
    project: Option<String>,
    kind: PhantomData<fn() -> K>,
}

impl<K: Resource> Api<K> {
    /// Access to cluster-scoped `K`, or to project-scoped `K` across all projects (reads).
    pub fn all(store: ObjectStore) -> Self {
        Self {
            store,
            project: None,
            kind: PhantomData,
        }
    }

    /// Access to `K` in `project`.
    pub fn in_project(store: ObjectStore, project: impl Into<String>) -> Self {
        Self {
            store,
            project: Some(project.into()),
            kind: PhantomData,
        }
    }

    /// Reads `name`.
    pub async fn get(&self, name: &str) -> Result<K, ObjectError> {
        from_value(
            self.store
                .get(K::info(), self.project.as_deref(), name)
                .await?,
        )
    }

    /// Creates `object`.
    pub async fn create(&self, object: &K) -> Result<K, ObjectError> {
        let value = to_value(object);
        from_value(
            self.store
                .create(K::info(), self.project.as_deref(), value, false)
                .await?,
        )
    }

    /// Replaces `object` (spec and metadata) with a compare-and-swap on its resourceVersion.
    pub async fn replace(&self, object: &K) -> Result<K, ObjectError> {
        let name = object.meta().name.clone();
        let value = to_value(object);
        from_value(
            self.store
                .update(
                    K::info(),
                    self.project.as_deref(),
                    &name,
                    value,
                    Part::Main,
                    false,
                )
                .await?,
        )
    }

    /// Replaces the status of `object` with a compare-and-swap on its resourceVersion.
    pub async fn replace_status(&self, object: &K) -> Result<K, ObjectError> {
        let name = object.meta().name.clone();
        let value = to_value(object);
        from_value(
            self.store
                .update(
                    K::info(),
                    self.project.as_deref(),
                    &name,
                    value,
                    Part::Status,
                    false,
                )
                .await?,
        )
    }

    /// Deletes `name` (or marks it for deletion while finalizers remain).
    pub async fn delete(&self, name: &str) -> Result<K, ObjectError> {
        from_value(
            self.store
                .delete(K::info(), self.project.as_deref(), name, false)
                .await?,
        )
    }

    /// Lists every object (all pages).
    pub async fn list(&self) -> Result<Vec<K>, ObjectError> {
        let list = self
            .store
            .list(K::info(), self.project.as_deref(), &ListOptions::default())
            .await?;
        list.items.into_iter().map(from_value).collect()
    }
}

fn to_value<K: Resource>(object: &K) -> Value {
    serde_json::to_value(object).expect("typed objects always serialize")
}

fn from_value<K: Resource>(value: Value) -> Result<K, ObjectError> {
    let key = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    serde_json::from_value(value).map_err(|source| ObjectError::Corrupt { key, source })
}
