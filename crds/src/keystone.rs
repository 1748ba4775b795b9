//! Keystone's identity rules that `Project` and `User` share: ids are generated, names are
//! free text.
//!
//! A project or user made through Keystone (`POST /v3/projects`, `POST /v3/users`) is stored
//! under a generated id ([`new_id`], 32 hexadecimal digits as Keystone's) and keeps its
//! Keystone name in `spec.name`, which may change without moving anything: every object,
//! role binding, token and quota refers to the id. A project or user written through the
//! native API without `spec.name` (every one a store written before generated ids holds, and
//! `cirrus up`'s `admin`) is named by its id: [`keystone_name`].

use crate::validation::FieldErrors;

/// Longest Keystone project name (Keystone's schema).
pub const PROJECT_NAME_MAX: usize = 64;
/// Longest Keystone user name (Keystone's schema).
pub const USER_NAME_MAX: usize = 255;

/// A new Keystone id: a random UUID as 32 lowercase hexadecimal digits, which is also a valid
/// object name.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The Keystone name of an identity object: `spec.name`, or its id when it has none.
pub fn keystone_name<'a>(spec_name: Option<&'a str>, id: &'a str) -> &'a str {
    spec_name.unwrap_or(id)
}

/// Why `name` is not a Keystone name of at most `max` characters, if it is not: Keystone
/// takes any text of 1 to `max` characters that is not only white space; Cirrus also refuses
/// control characters (they cannot be typed back).
pub fn name_problem(name: &str, max: usize) -> Option<String> {
    let count = name.chars().count();
    if name.trim().is_empty() {
        return Some("must contain a character other than white space".into());
    }
    if count > max {
        return Some(format!("must be at most {max} characters, got {count}"));
    }
    if let Some(bad) = name.chars().find(|c| c.is_control()) {
        return Some(format!("must not contain the control character {bad:?}"));
    }
    None
}

/// Adds the problem with `spec.name`, if any, to `errors`.
pub(crate) fn check_name(errors: &mut FieldErrors, name: Option<&str>, max: usize) {
    if let Some(problem) = name.and_then(|n| name_problem(n, max)) {
        errors.add("spec.name", problem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex_digits_and_valid_object_names() {
        let id = new_id();
        assert_eq!(id.len(), 32);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(crate::validation::name_problem(&id), None);
        assert_ne!(new_id(), id);
    }

    #[test]
    fn names_are_free_text_within_keystone_s_limits() {
        for ok in [
            "Marketing",
            "John.Doe@example.com",
            "tempest-FlavorsV2TestJSON-1234567",
            "Ünïcode team",
            "a",
        ] {
            assert_eq!(name_problem(ok, PROJECT_NAME_MAX), None, "{ok}");
        }
        assert!(name_problem("", 64).unwrap().contains("white space"));
        assert!(name_problem("   ", 64).unwrap().contains("white space"));
        assert!(
            name_problem(&"x".repeat(65), 64)
                .unwrap()
                .contains("at most 64")
        );
        assert_eq!(name_problem(&"é".repeat(64), 64), None);
        assert!(name_problem("a\nb", 64).unwrap().contains("control"));
    }

    #[test]
    fn an_object_without_a_name_is_named_by_its_id() {
        assert_eq!(keystone_name(None, "demo"), "demo");
        assert_eq!(keystone_name(Some("Demo Team"), "0a1b"), "Demo Team");
    }
}
