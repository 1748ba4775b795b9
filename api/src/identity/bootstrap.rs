//! Idempotent creation of the identities a cloud starts with: the `admin` project, users with
//! a password (the bootstrap admin, service users, node agents) and their role bindings.
//!
//! `cirrus up` calls these on every start; each converges (creates what is missing, resets a
//! password that no longer verifies) and never duplicates anything.

use cirrus_auth::{ADMIN_PROJECT, Role, hash_password, verify_password};
use cirrus_crds::kinds::rolebinding::RoleBindingSpec;
use cirrus_crds::meta::ObjectMeta;
use cirrus_crds::{Project, ProjectSpec, RoleBinding, User, UserSpec};
use cirrus_store::objects::{Api, ObjectError, ObjectStore};

/// Why bootstrapping failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The store refused or failed.
    #[error("store: {0}")]
    Store(#[from] ObjectError),
    /// The password could not be hashed.
    #[error("password: {0}")]
    Password(#[from] cirrus_auth::PasswordError),
    /// The hashing task died.
    #[error("password hashing task failed: {0}")]
    Task(String),
}

/// Creates the enabled project `name` when it does not exist.
pub async fn ensure_project(store: &ObjectStore, name: &str) -> Result<Project, BootstrapError> {
    let api = Api::<Project>::all(store.clone());
    match api.get(name).await {
        Ok(project) => Ok(project),
        Err(ObjectError::NotFound { .. }) => {
            let project = Project::new(named(name), ProjectSpec::default());
            match api.create(&project).await {
                Ok(created) => Ok(created),
                Err(ObjectError::AlreadyExists { .. }) => Ok(api.get(name).await?),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes `name` an enabled user whose password is `password` (bound to `node` when it is a
/// node agent's identity); an existing user keeps its uid and gets a new hash only when the
/// stored one does not verify.
pub async fn ensure_user(
    store: &ObjectStore,
    name: &str,
    password: &str,
    node: Option<&str>,
) -> Result<User, BootstrapError> {
    let api = Api::<User>::all(store.clone());
    let existing = match api.get(name).await {
        Ok(user) => Some(user),
        Err(ObjectError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(user) = &existing {
        let verified = match &user.spec.password_hash {
            Some(hash) => verify_blocking(password, hash).await?,
            None => false,
        };
        if verified && user.spec.enabled && user.spec.node.as_deref() == node {
            return Ok(user.clone());
        }
    }
    let hash = hash_blocking(password).await?;
    match existing {
        Some(mut user) => {
            user.spec.password_hash = Some(hash);
            user.spec.enabled = true;
            user.spec.node = node.map(str::to_string);
            Ok(api.replace(&user).await?)
        }
        None => {
            let spec = UserSpec {
                password_hash: Some(hash),
                node: node.map(str::to_string),
                ..UserSpec::default()
            };
            Ok(api.create(&User::new(named(name), spec)).await?)
        }
    }
}

/// Annotation on the `admin` project once [`migrate_project_admins`] has run on the store.
pub const ADMIN_ROLE_MIGRATED: &str = "cirrus.dev/admin-role-is-global";

/// Once per store, before the API serves: releases before the admin role became global
/// (`admin` in any project is a cloud admin, as OpenStack's policy has it) gave `admin` in a
/// project other than `admin` no more power than `member` there. Each such binding becomes
/// a `member` binding, after the user's tokens are revoked (a token names its role, and an
/// old one must not turn into a cloud admin's), so upgrading makes nobody a cloud admin.
/// The `admin` project is then marked with [`ADMIN_ROLE_MIGRATED`], so later grants of
/// `admin` are left alone. Returns how many bindings were changed; safe to interrupt and
/// run again.
///
/// # Errors
/// The store failed; the next start tries again.
pub async fn migrate_project_admins(
    store: &ObjectStore,
    identity: &crate::identity::Identity,
) -> Result<usize, BootstrapError> {
    let admin = ensure_project(store, ADMIN_PROJECT).await?;
    if admin.metadata.annotations.contains_key(ADMIN_ROLE_MIGRATED) {
        return Ok(0);
    }
    let bindings = Api::<RoleBinding>::all(store.clone());
    let users = Api::<User>::all(store.clone());
    let mut changed = 0;
    for binding in bindings.list().await? {
        if binding.spec.role != Role::Admin || binding.spec.project == ADMIN_PROJECT {
            continue;
        }
        let (user, project) = (&binding.spec.user, &binding.spec.project);
        match users.get(user).await {
            Ok(found) => {
                let uid = found.metadata.uid.unwrap_or_default();
                super::revocations::revoke_user(store, identity, &uid).await?;
            }
            Err(ObjectError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        ensure_binding(store, user, project, Role::Member).await?;
        match bindings.delete(&binding.metadata.name).await {
            Ok(_) | Err(ObjectError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::warn!(%user, %project, "the admin role is now cloud-wide: a project admin of the previous release is a member of its project");
        changed += 1;
    }
    let projects = Api::<Project>::all(store.clone());
    let mut admin = projects.get(ADMIN_PROJECT).await?;
    admin
        .metadata
        .annotations
        .insert(ADMIN_ROLE_MIGRATED.to_string(), "true".to_string());
    projects.replace(&admin).await?;
    Ok(changed)
}

/// Grants `user` the role `role` in `project` (one binding per user, project and role, as
/// Keystone keeps one assignment per role).
pub async fn ensure_binding(
    store: &ObjectStore,
    user: &str,
    project: &str,
    role: Role,
) -> Result<RoleBinding, BootstrapError> {
    let api = Api::<RoleBinding>::all(store.clone());
    let name = binding_name(user, project, role);
    let spec = RoleBindingSpec {
        user: user.to_string(),
        project: project.to_string(),
        role,
    };
    match api.get(&name).await {
        Ok(binding) if binding.spec == spec => Ok(binding),
        Ok(mut binding) => {
            binding.spec = spec;
            Ok(api.replace(&binding).await?)
        }
        Err(ObjectError::NotFound { .. }) => {
            Ok(api.create(&RoleBinding::new(named(&name), spec)).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// The name of the binding of `role` for `user` in `project` that bootstrap and Keystone
/// role assignments write: `<role>-<len(user)>-<user>.<project>`; the length makes it
/// unambiguous although names may contain `.` and `-`.
pub fn binding_name(user: &str, project: &str, role: Role) -> String {
    use cirrus_auth::RoleExt;
    format!("{}-{}-{user}.{project}", role.name(), user.len())
}

fn named(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.to_string(),
        ..ObjectMeta::default()
    }
}

async fn hash_blocking(password: &str) -> Result<String, BootstrapError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| BootstrapError::Task(e.to_string()))?
        .map_err(Into::into)
}

async fn verify_blocking(password: &str, hash: &str) -> Result<bool, BootstrapError> {
    let (password, hash) = (password.to_string(), hash.to_string());
    let verdict = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| BootstrapError::Task(e.to_string()))?;
    Ok(verdict.unwrap_or(false))
}
