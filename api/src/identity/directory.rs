//! Finding projects and users as Keystone clients name them — by id (the object's name) or
//! by Keystone name ([`cirrus_crds::keystone`]) — and the names to show for ids.

use std::collections::HashMap;

use cirrus_crds::{Project, Resource, User};
use cirrus_store::objects::{Api, ObjectError, ObjectStore};

use super::KeystoneError;
use super::request::Reference;

/// The cluster-scoped object with id `id`, `None` when it does not exist.
pub(crate) async fn by_id<K: Resource>(
    store: &ObjectStore,
    id: &str,
) -> Result<Option<K>, KeystoneError> {
    match Api::<K>::all(store.clone()).get(id).await {
        Ok(object) => Ok(Some(object)),
        Err(ObjectError::NotFound { .. }) => Ok(None),
        Err(e) => Err(KeystoneError::internal(e.to_string())),
    }
}

/// The user `reference` names, `None` when there is none.
pub(crate) async fn user(
    store: &ObjectStore,
    reference: &Reference,
) -> Result<Option<User>, KeystoneError> {
    match reference {
        Reference::Id(id) => by_id(store, id).await,
        Reference::Name(name) => Ok(all::<User>(store)
            .await?
            .into_iter()
            .find(|u| u.keystone_name() == name)),
    }
}

/// The project `reference` names, `None` when there is none.
pub(crate) async fn project(
    store: &ObjectStore,
    reference: &Reference,
) -> Result<Option<Project>, KeystoneError> {
    match reference {
        Reference::Id(id) => by_id(store, id).await,
        Reference::Name(name) => Ok(all::<Project>(store)
            .await?
            .into_iter()
            .find(|p| p.keystone_name() == name)),
    }
}

async fn all<K: Resource>(store: &ObjectStore) -> Result<Vec<K>, KeystoneError> {
    Api::<K>::all(store.clone())
        .list()
        .await
        .map_err(|e| KeystoneError::internal(e.to_string()))
}

/// The Keystone names of every project and user, by id: for answers that show names next to
/// ids (role assignments with `include_names`).
#[derive(Debug, Default)]
pub(crate) struct Names {
    projects: HashMap<String, String>,
    users: HashMap<String, String>,
}

impl Names {
    /// Reads every project and user once.
    pub(crate) async fn load(store: &ObjectStore) -> Result<Self, KeystoneError> {
        let projects = all::<Project>(store).await?;
        let users = all::<User>(store).await?;
        Ok(Self {
            projects: projects
                .iter()
                .map(|p| (p.metadata.name.clone(), p.keystone_name().to_string()))
                .collect(),
            users: users
                .iter()
                .map(|u| (u.metadata.name.clone(), u.keystone_name().to_string()))
                .collect(),
        })
    }

    /// The name of project `id` (the id itself when it is gone).
    pub(crate) fn project<'a>(&'a self, id: &'a str) -> &'a str {
        self.projects.get(id).map_or(id, String::as_str)
    }

    /// The name of user `id` (the id itself when it is gone).
    pub(crate) fn user<'a>(&'a self, id: &'a str) -> &'a str {
        self.users.get(id).map_or(id, String::as_str)
    }
}
