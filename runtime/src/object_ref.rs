//! [`ObjectRef`]: how the runtime names one object of the controlled kind (cache key, queue
//! key, the target of a secondary watch's mapping).

use std::fmt;

use cirrus_crds::{Resource, Scope};

/// The identity of one object within a kind: its project (for project-scoped kinds) and name.
///
/// The uid is deliberately not part of it: a deleted and recreated object with the same name
/// is the same work item, and the reconciler always reads the latest cached object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// Project of a project-scoped object; `None` for cluster-scoped kinds.
    pub project: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// A reference to a cluster-scoped object.
    pub fn cluster(name: impl Into<String>) -> Self {
        Self {
            project: None,
            name: name.into(),
        }
    }

    /// A reference to a project-scoped object.
    pub fn in_project(project: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            project: Some(project.into()),
            name: name.into(),
        }
    }

    /// The reference of `obj` (the project is dropped for cluster-scoped kinds).
    pub fn from_obj<K: Resource>(obj: &K) -> Self {
        let meta = obj.meta();
        Self {
            project: match K::SCOPE {
                Scope::Project => meta.project.clone(),
                Scope::Cluster => None,
            },
            name: meta.name.clone(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.project {
            Some(project) => write!(f, "{project}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}
