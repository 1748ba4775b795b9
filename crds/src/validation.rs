//! Field errors and the checks shared by every kind (names, labels, metadata).

use crate::meta::ObjectMeta;
use crate::resource::Scope;

/// One problem with one field of a submitted object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path from the object root, e.g. `spec.ram` or `spec.networks[0].network`.
    pub field: String,
    /// Why the value is refused.
    pub reason: String,
}

impl FieldError {
    /// A problem with `field` for `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Turns a serde error at `path` into a field error; an unknown or missing field is
    /// reported at the path of that field itself (`spec.bogus`, `spec.flavor`).
    pub fn from_serde(path: String, err: &serde_json::Error) -> Self {
        let message = err.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        if let Some(rest) = message.strip_prefix("unknown field `")
            && let Some(name) = rest.split('`').next()
        {
            let field = if path == "." || path.is_empty() {
                name.to_string()
            } else if path.ends_with(name) {
                path.clone()
            } else {
                format!("{path}.{name}")
            };
            return Self::new(field, message);
        }
        if let Some(rest) = message.strip_prefix("missing field `")
            && let Some(name) = rest.split('`').next()
        {
            let field = if path == "." || path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            };
            return Self::new(field, message);
        }
        let field = if path == "." { String::new() } else { path };
        Self::new(field, message)
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

/// Every problem found in one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    /// Records a problem.
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }
    /// Records a problem with `field` for `reason`.
    pub fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError::new(field, reason));
    }
    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", parts.join("; "))
    }
}

impl std::error::Error for FieldErrors {}

/// Why `name` is not a valid object name, if it is not: 1–253 characters of lowercase
/// letters, digits, `-` and `.`, starting and ending with a letter or digit.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 253 {
        return Some(format!(
            "must be at most 253 characters, got {}",
            name.len()
        ));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if let Some(bad) = name.chars().find(|c| !ok_char(*c)) {
        return Some(format!(
            "invalid character {bad:?}: use lowercase letters, digits, '-' and '.'"
        ));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(name.chars().next()) || !edge_ok(name.chars().last()) {
        return Some("must start and end with a letter or digit".into());
    }
    None
}

/// Why `key` is not a valid label or annotation key, if it is not: an optional DNS prefix
/// and `/`, then 1–63 characters of letters, digits, `-`, `_` and `.`.
pub fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && let Some(p) = name_problem(prefix)
    {
        return Some(format!("prefix {prefix:?} {p}"));
    }
    label_value_problem(name)
        .map(|p| format!("name part {p}"))
        .or_else(|| {
            name.is_empty()
                .then(|| "name part must not be empty".to_string())
        })
}

/// Why `value` is not a valid label value, if it is not: at most 63 characters of letters,
/// digits, `-`, `_` and `.`, starting and ending with a letter or digit (or empty).
pub fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value.len() > 63 {
        return Some(format!(
            "must be at most 63 characters, got {}",
            value.len()
        ));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if let Some(bad) = value.chars().find(|c| !ok(*c)) {
        return Some(format!("invalid character {bad:?}"));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(value.chars().next()) || !edge_ok(value.chars().last()) {
        return Some("must start and end with a letter or digit".into());
    }
    None
}

/// Checks the user-settable parts of `meta` for an object of the given scope.
pub fn validate_meta(meta: &ObjectMeta, scope: Scope, errors: &mut FieldErrors) {
    if let Some(problem) = name_problem(&meta.name) {
        errors.add("metadata.name", problem);
    }
    match (scope, &meta.project) {
        (Scope::Cluster, Some(_)) => errors.add(
            "metadata.project",
            "must be absent: this kind is cluster-scoped",
        ),
        (Scope::Project, Some(project)) => {
            if let Some(problem) = name_problem(project) {
                errors.add("metadata.project", problem);
            }
        }
        (Scope::Project, None) => {}
        (Scope::Cluster, None) => {}
    }
    for (key, value) in &meta.labels {
        if let Some(problem) = label_key_problem(key) {
            errors.add(
                format!("metadata.labels[{key:?}]"),
                format!("key {problem}"),
            );
        }
        if let Some(problem) = label_value_problem(value) {
            errors.add(
                format!("metadata.labels[{key:?}]"),
                format!("value {problem}"),
            );
        }
    }
    for key in meta.annotations.keys() {
        if let Some(problem) = label_key_problem(key) {
            errors.add(
                format!("metadata.annotations[{key:?}]"),
                format!("key {problem}"),
            );
        }
    }
    for (i, finalizer) in meta.finalizers.iter().enumerate() {
        if let Some(problem) = label_key_problem(finalizer) {
            errors.add(format!("metadata.finalizers[{i}]"), problem);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name_problem("m1.small").is_none());
        assert!(name_problem("web-0").is_none());
        assert!(name_problem("").is_some());
        assert!(name_problem("Web").is_some());
        assert!(name_problem("-a").is_some());
        assert!(name_problem(&"a".repeat(254)).is_some());
    }

    #[test]
    fn label_keys() {
        assert!(label_key_problem("app").is_none());
        assert!(label_key_problem("cirrus.dev/applyset").is_none());
        assert!(label_key_problem("bad key").is_some());
        assert!(label_key_problem("x/").is_some());
    }
}
