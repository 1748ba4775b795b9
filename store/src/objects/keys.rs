//! Where objects live in the key space.
//!
//! `{prefix}/{plural}/{name}` for cluster-scoped kinds and `{prefix}/{plural}/{project}/{name}`
//! for project-scoped ones, so a prefix range lists one kind (all projects) or one project.

use cirrus_crds::{KindInfo, Scope};

use super::ObjectError;

/// The key of one object.
pub(crate) fn object_key(
    prefix: &str,
    kind: &KindInfo,
    project: Option<&str>,
    name: &str,
) -> Result<String, ObjectError> {
    match (kind.scope, project) {
        (Scope::Cluster, None) => Ok(format!("{prefix}/{}/{name}", kind.plural)),
        (Scope::Project, Some(project)) => Ok(format!("{prefix}/{}/{project}/{name}", kind.plural)),
        (Scope::Cluster, Some(_)) => Err(ObjectError::BadRequest(format!(
            "{} is cluster-scoped: it has no project",
            kind.kind
        ))),
        (Scope::Project, None) => Err(ObjectError::BadRequest(format!(
            "{} is project-scoped: a project is required",
            kind.kind
        ))),
    }
}

/// The prefix under which a kind's objects (in one project, when given) are stored.
pub(crate) fn list_prefix(
    prefix: &str,
    kind: &KindInfo,
    project: Option<&str>,
) -> Result<String, ObjectError> {
    match (kind.scope, project) {
        (Scope::Cluster, Some(_)) => Err(ObjectError::BadRequest(format!(
            "{} is cluster-scoped: it has no project",
            kind.kind
        ))),
        (_, Some(project)) => Ok(format!("{prefix}/{}/{project}/", kind.plural)),
        (_, None) => Ok(format!("{prefix}/{}/", kind.plural)),
    }
}

/// The exclusive end of the range of keys starting with `prefix` (etcd's prefix rule).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
