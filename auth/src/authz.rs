//! The authorization decision: who may do what to which project's objects.
//!
//! [`authorize`] is a pure function of the caller ([`Subject`], taken from a validated
//! token), the [`Action`] and the project that owns the target (`None` for cluster-scoped
//! kinds such as flavors, projects, users, nodes). The rules (issue 5):
//!
//! | caller                          | own project        | other project | cluster-scoped      |
//! |---------------------------------|--------------------|---------------|---------------------|
//! | cloud admin (admin in a project)| read, write        | read, write   | read, write         |
//! | member of its project           | read, write        | `NotFound`    | read; write: `Deny` |
//! | reader                          | read; write `Deny` | `NotFound`    | read; write: `Deny` |
//! | unscoped user token             | —                  | `NotFound`    | read; write: `Deny` |
//! | node                            | read; write `Deny` (see [`authorize_node`])                   |
//!
//! Another project's objects answer `NotFound` (404), never `Deny` (403): a user must not
//! learn that something exists where they cannot look. `Deny` is only for what the caller
//! can see but not change. Per-kind refinements of cluster-scoped reads (a non-admin sees
//! only itself among users, only public images) belong to the API layer that knows kinds.

use crate::roles::{Role, RoleExt};
use crate::token::TokenPayload;

/// What the request does to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// GET/HEAD/list/watch.
    Read,
    /// Create, update, patch, delete, actions.
    Write,
}

/// The outcome, mapped to HTTP by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// 403: the caller may see the target but not do this.
    Deny,
    /// 404: the caller may not even know the target exists.
    NotFound,
}

/// A user acting through a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSubject {
    /// User name (`User` object name).
    pub name: String,
    /// The `User` object's uid (a re-created user of the same name is someone else).
    pub uid: String,
    /// The project the token is scoped to; `None` for an unscoped token.
    pub project: Option<String>,
    /// The effective role in `project` when the token was issued.
    pub role: Option<Role>,
}

impl UserSubject {
    /// Whether this token carries cloud-admin power: scoped to a project with the `admin`
    /// role there (OpenStack's `role:admin`, whichever project; an unscoped token or a
    /// member's is not).
    pub fn is_cloud_admin(&self) -> bool {
        self.project.is_some() && self.role == Some(Role::Admin)
    }
}

impl From<&TokenPayload> for UserSubject {
    fn from(t: &TokenPayload) -> Self {
        Self {
            name: t.user.clone(),
            uid: t.user_uid.clone(),
            project: t.project.clone(),
            role: t.role,
        }
    }
}

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A person or service account with a token (roles from `RoleBinding`s).
    User(UserSubject),
    /// A node agent, authenticated as its `Node` (`name`). Node agents serve every project's
    /// servers placed on them, so a project boundary means nothing to them; what bounds them
    /// is the node binding: they may read the objects bound to their node (servers with
    /// `spec.nodeName`, their ports, volumes, images) and write the status of those objects
    /// and of their own `Node`, nothing else. [`authorize`] answers only the project-level
    /// question for them (reads yes, writes no); the API must also call [`authorize_node`]
    /// with the object's binding. How nodes authenticate (a per-node credential issued by
    /// `cirrus up`/join) and the enforcement in the API come with the wiring.
    Node {
        /// The `Node` object's name.
        name: String,
    },
}

/// Decides whether `subject` may perform `action` on an object owned by `target_project`
/// (`None`: a cluster-scoped object). See the module table.
pub fn authorize(subject: &Subject, action: Action, target_project: Option<&str>) -> Decision {
    let user = match subject {
        Subject::Node { .. } => {
            return match action {
                Action::Read => Decision::Allow,
                Action::Write => Decision::Deny,
            };
        }
        Subject::User(user) => user,
    };
    if user.is_cloud_admin() {
        return Decision::Allow;
    }
    let Some(target) = target_project else {
        return match action {
            Action::Read => Decision::Allow,
            Action::Write => Decision::Deny,
        };
    };
    let role = match (&user.project, user.role) {
        (Some(own), Some(role)) if own == target => role,
        _ => return Decision::NotFound,
    };
    let needed = match action {
        Action::Read => Role::Reader,
        Action::Write => Role::Member,
    };
    if role.includes(needed) {
        Decision::Allow
    } else {
        Decision::Deny
    }
}

/// The node-binding check for a [`Subject::Node`] named `node`: `object_node` is the node the
/// target is bound to (`spec.nodeName`; for a `Node` object, its own name; `None` when not
/// bound anywhere), `status_only` whether the write touches only the status subresource.
/// Objects bound elsewhere are `NotFound`; bound ones are readable, and writable only in
/// their status.
pub fn authorize_node(
    node: &str,
    action: Action,
    object_node: Option<&str>,
    status_only: bool,
) -> Decision {
    if object_node != Some(node) {
        return Decision::NotFound;
    }
    match action {
        Action::Read => Decision::Allow,
        Action::Write if status_only => Decision::Allow,
        Action::Write => Decision::Deny,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::ADMIN_PROJECT;
    use Action::*;
    use Decision::*;

    fn user(project: Option<&str>, role: Option<Role>) -> Subject {
        Subject::User(UserSubject {
            name: "u".into(),
            uid: "uid".into(),
            project: project.map(str::to_string),
            role,
        })
    }

    /// The whole matrix: subject × action × (own project, other project, cluster-scoped).
    #[test]
    fn authorization_table() {
        let reader = user(Some("p1"), Some(Role::Reader));
        let member = user(Some("p1"), Some(Role::Member));
        let padmin = user(Some("p1"), Some(Role::Admin));
        let cloud = user(Some(ADMIN_PROJECT), Some(Role::Admin));
        let admin_proj_member = user(Some(ADMIN_PROJECT), Some(Role::Member));
        let unscoped = user(None, None);
        let node = Subject::Node { name: "n1".into() };
        #[rustfmt::skip]
        let table: &[(&str, &Subject, Action, Option<&str>, Decision)] = &[
            ("reader own read",      &reader, Read,  Some("p1"), Allow),
            ("reader own write",     &reader, Write, Some("p1"), Deny),
            ("reader other read",    &reader, Read,  Some("p2"), NotFound),
            ("reader other write",   &reader, Write, Some("p2"), NotFound),
            ("reader cluster read",  &reader, Read,  None,       Allow),
            ("reader cluster write", &reader, Write, None,       Deny),
            ("member own read",      &member, Read,  Some("p1"), Allow),
            ("member own write",     &member, Write, Some("p1"), Allow),
            ("member other read",    &member, Read,  Some("p2"), NotFound),
            ("member other write",   &member, Write, Some("p2"), NotFound),
            ("member cluster read",  &member, Read,  None,       Allow),
            ("member cluster write", &member, Write, None,       Deny),
            ("padmin own write",     &padmin, Write, Some("p1"), Allow),
            ("padmin other read",    &padmin, Read,  Some("p2"), Allow),
            ("padmin cluster write", &padmin, Write, None,       Allow),
            ("cloud own read",       &cloud,  Read,  Some(ADMIN_PROJECT), Allow),
            ("cloud other read",     &cloud,  Read,  Some("p2"), Allow),
            ("cloud other write",    &cloud,  Write, Some("p2"), Allow),
            ("cloud cluster write",  &cloud,  Write, None,       Allow),
            ("admin-proj member other read", &admin_proj_member, Read, Some("p2"), NotFound),
            ("admin-proj member cluster write", &admin_proj_member, Write, None, Deny),
            ("admin-proj member own write", &admin_proj_member, Write, Some(ADMIN_PROJECT), Allow),
            ("unscoped project read",  &unscoped, Read,  Some("p1"), NotFound),
            ("unscoped cluster read",  &unscoped, Read,  None,       Allow),
            ("unscoped cluster write", &unscoped, Write, None,       Deny),
            ("node any project read",  &node, Read,  Some("p1"), Allow),
            ("node other project read",&node, Read,  Some("p2"), Allow),
            ("node project write",     &node, Write, Some("p1"), Deny),
            ("node cluster read",      &node, Read,  None,       Allow),
            ("node cluster write",     &node, Write, None,       Deny),
        ];
        for (what, subject, action, target, want) in table {
            assert_eq!(authorize(subject, *action, *target), *want, "{what}");
        }
    }

    #[test]
    fn node_binding_table() {
        #[rustfmt::skip]
        let table = [
            (Read,  Some("n1"), false, Allow),
            (Write, Some("n1"), true,  Allow),
            (Write, Some("n1"), false, Deny),
            (Read,  Some("n2"), false, NotFound),
            (Write, Some("n2"), true,  NotFound),
            (Read,  None,       false, NotFound),
        ];
        for (action, bound, status_only, want) in table {
            assert_eq!(
                authorize_node("n1", action, bound, status_only),
                want,
                "{action:?} bound={bound:?} status_only={status_only}"
            );
        }
    }

    #[test]
    fn cloud_admin_needs_the_admin_role_in_a_project_scope() {
        let s = |p: &str, r| UserSubject {
            name: "u".into(),
            uid: "x".into(),
            project: Some(p.into()),
            role: Some(r),
        };
        assert!(s(ADMIN_PROJECT, Role::Admin).is_cloud_admin());
        assert!(!s(ADMIN_PROJECT, Role::Member).is_cloud_admin());
        assert!(s("p1", Role::Admin).is_cloud_admin());
        assert!(!s("p1", Role::Member).is_cloud_admin());
        let unscoped = UserSubject {
            project: None,
            ..s("p1", Role::Admin)
        };
        assert!(!unscoped.is_cloud_admin());
    }
}
