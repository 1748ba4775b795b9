//! The kind registry: names the CLI and API resolve are unique and well-formed.

use std::collections::BTreeMap;

use cirrus_crds::{Scope, all_kinds, find_kind, kind_by_plural};

#[test]
fn names_are_unique_and_resolve() {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for k in all_kinds() {
        assert_eq!(k.plural, k.plural.to_ascii_lowercase());
        assert!(!k.plural.contains('-'), "{}", k.plural);
        assert_eq!(k.singular, k.kind.to_ascii_lowercase());
        for name in [k.plural, k.singular].iter().chain(k.short_names) {
            if let Some(other) = seen.insert(name.to_string(), k.kind) {
                panic!("{name:?} names both {other} and {}", k.kind);
            }
            assert_eq!(find_kind(name).unwrap().kind, k.kind);
        }
        assert_eq!(find_kind(k.kind).unwrap().kind, k.kind);
        assert_eq!(kind_by_plural(k.plural).unwrap().kind, k.kind);
    }
}

#[test]
fn scopes() {
    let cluster = [
        "Flavor",
        "Node",
        "Project",
        "User",
        "RoleBinding",
        "ApplySet",
        "Lease",
        "TokenRevocation",
    ];
    assert_eq!(all_kinds().len(), 23);
    for k in all_kinds() {
        let want = if cluster.contains(&k.kind) {
            Scope::Cluster
        } else {
            Scope::Project
        };
        assert_eq!(k.scope, want, "{}", k.kind);
    }
}
