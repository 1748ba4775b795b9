//! The role lattice and the roles a user effectively holds.
//!
//! Cirrus has Keystone's three default roles, totally ordered: `reader < member < admin`.
//! A higher role includes every lower one ([`RoleExt::includes`]), so a user's effective
//! role in a project is simply the highest role any of their `RoleBinding`s grants there.
//! Holding `admin` in any project makes a user a cloud admin, as OpenStack's default policy
//! has it (Nova, Neutron, Cinder, Glance and Keystone check `role:admin` whatever the
//! project; tempest's dynamic admin credentials are `admin` in a project of their own):
//! a token scoped with it is allowed everything, in every project, and on cluster-scoped
//! objects. Only a cloud admin grants roles. [`ADMIN_PROJECT`] is the project `cirrus up`
//! makes for its own admin. Stores of releases where `admin` elsewhere meant only the top
//! role of that project are migrated on start (`bootstrap::migrate_project_admins`).

use std::collections::BTreeMap;

use cirrus_crds::RoleBindingSpec;
pub use cirrus_crds::kinds::rolebinding::Role;

/// The project whose admins are cloud admins; `cirrus up` bootstraps it.
pub const ADMIN_PROJECT: &str = "admin";

/// The lattice operations on [`Role`] (a trait because `Role` lives in `cirrus-crds`).
pub trait RoleExt: Sized {
    /// Whether holding `self` grants everything `other` grants (`admin ⊇ member ⊇ reader`).
    fn includes(self, other: Role) -> bool;
    /// `self` and every role it implies, lowest first — what Keystone lists in a token's
    /// `roles` (a member's token shows `reader` and `member`).
    fn implied(self) -> &'static [Role];
    /// The Keystone role name: `reader`, `member` or `admin`.
    fn name(self) -> &'static str;
    /// Parses a Keystone role name (case-insensitive, like Keystone's role lookup).
    fn from_name(name: &str) -> Option<Self>;
}

impl RoleExt for Role {
    fn includes(self, other: Role) -> bool {
        self >= other
    }

    fn implied(self) -> &'static [Role] {
        const ALL: [Role; 3] = [Role::Reader, Role::Member, Role::Admin];
        match self {
            Role::Reader => &ALL[..1],
            Role::Member => &ALL[..2],
            Role::Admin => &ALL,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Role::Reader, Role::Member, Role::Admin]
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(name))
    }
}

/// The highest role `user` holds in `project` through `bindings`, or `None` when no binding
/// gives them any (they may not get a token scoped there and see nothing in it).
pub fn effective_role<'a>(
    bindings: impl IntoIterator<Item = &'a RoleBindingSpec>,
    user: &str,
    project: &str,
) -> Option<Role> {
    bindings
        .into_iter()
        .filter(|b| b.user == user && b.project == project)
        .map(|b| b.role)
        .max()
}

/// Whether `user` is a cloud admin: `admin` in any project.
pub fn is_cloud_admin<'a>(
    bindings: impl IntoIterator<Item = &'a RoleBindingSpec>,
    user: &str,
) -> bool {
    bindings
        .into_iter()
        .any(|b| b.user == user && b.role == Role::Admin)
}

/// Every project `user` has a role in, with the effective role there (Keystone's
/// `GET /v3/auth/projects` and the scope choices at login).
pub fn projects_of<'a>(
    bindings: impl IntoIterator<Item = &'a RoleBindingSpec>,
    user: &str,
) -> BTreeMap<String, Role> {
    let mut out = BTreeMap::<String, Role>::new();
    for b in bindings.into_iter().filter(|b| b.user == user) {
        let role = out.entry(b.project.clone()).or_insert(b.role);
        *role = (*role).max(b.role);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rb(user: &str, project: &str, role: Role) -> RoleBindingSpec {
        RoleBindingSpec {
            user: user.into(),
            project: project.into(),
            role,
        }
    }

    #[test]
    fn lattice_includes_exactly_the_lower_roles() {
        use Role::*;
        let table = [
            (Reader, Reader, true),
            (Reader, Member, false),
            (Reader, Admin, false),
            (Member, Reader, true),
            (Member, Member, true),
            (Member, Admin, false),
            (Admin, Reader, true),
            (Admin, Member, true),
            (Admin, Admin, true),
        ];
        for (held, asked, want) in table {
            assert_eq!(
                Role::includes(held, asked),
                want,
                "{held:?} includes {asked:?}"
            );
        }
        assert_eq!(Member.implied(), &[Reader, Member]);
        assert_eq!(Admin.implied(), &[Reader, Member, Admin]);
        assert_eq!(Reader.implied(), &[Reader]);
    }

    #[test]
    fn names_round_trip() {
        for role in [Role::Reader, Role::Member, Role::Admin] {
            assert_eq!(Role::from_name(role.name()), Some(role));
        }
        assert_eq!(Role::from_name("Admin"), Some(Role::Admin));
        assert_eq!(Role::from_name("_member_"), None);
    }

    #[test]
    fn effective_role_is_the_highest_binding_in_that_project() {
        let bindings = [
            rb("alice", "p1", Role::Reader),
            rb("alice", "p1", Role::Member),
            rb("alice", "p2", Role::Admin),
            rb("bob", "p1", Role::Admin),
        ];
        assert_eq!(effective_role(&bindings, "alice", "p1"), Some(Role::Member));
        assert_eq!(effective_role(&bindings, "alice", "p2"), Some(Role::Admin));
        assert_eq!(effective_role(&bindings, "alice", "p3"), None);
        assert_eq!(effective_role(&bindings, "carol", "p1"), None);
        assert!(
            is_cloud_admin(&bindings, "alice"),
            "admin of p2 is admin everywhere"
        );
        let projects = projects_of(&bindings, "alice");
        assert_eq!(projects.len(), 2);
        assert_eq!(projects["p1"], Role::Member);
    }

    #[test]
    fn admin_in_any_project_is_cloud_admin() {
        let bindings = [
            rb("root", ADMIN_PROJECT, Role::Admin),
            rb("ops", ADMIN_PROJECT, Role::Member),
            rb("tempest", "p7", Role::Admin),
            rb("alice", "p7", Role::Member),
        ];
        assert!(is_cloud_admin(&bindings, "root"));
        assert!(is_cloud_admin(&bindings, "tempest"));
        assert!(!is_cloud_admin(&bindings, "ops"));
        assert!(!is_cloud_admin(&bindings, "alice"));
    }
}
