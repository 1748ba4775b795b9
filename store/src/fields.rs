//! Field selectors, Kubernetes syntax: `spec.nodeName=node-a`, `metadata.name!=x`, joined
//! by `,` (and). A field path is dotted from the object root; a missing field compares as
//! the empty string, so `spec.nodeName=` selects objects without a node.

use serde_json::Value;

/// A parsed field selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<(Vec<String>, bool, String)>,
}

/// Why a field selector could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid field selector {selector:?}: {reason}")]
pub struct FieldSelectorError {
    /// The selector as given.
    pub selector: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldSelector {
    /// Parses `text`; an empty string is the match-everything selector.
    pub fn parse(text: &str) -> Result<Self, FieldSelectorError> {
        let fail = |reason: String| FieldSelectorError {
            selector: text.to_string(),
            reason,
        };
        let mut requirements = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, equal, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(fail(format!("{part:?} is not FIELD=VALUE or FIELD!=VALUE")));
            };
            let path: Vec<String> = path.trim().split('.').map(str::to_string).collect();
            if path.iter().any(|segment| {
                segment.is_empty()
                    || !segment
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
            }) {
                return Err(fail(format!(
                    "{part:?}: a field is a dotted path like spec.nodeName"
                )));
            }
            requirements.push((path, equal, value.trim().to_string()));
        }
        Ok(Self { requirements })
    }

    /// True when `object` satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|(path, equal, value)| {
            let found = path.iter().try_fold(object, |v, segment| v.get(segment));
            let text = match found {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            (text == *value) == *equal
        })
    }

    /// True for the selector that matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table() {
        let bound = json!({"metadata": {"name": "a"}, "spec": {"nodeName": "n1", "vcpus": 2}});
        let unbound = json!({"metadata": {"name": "b"}, "spec": {}});
        let cases = [
            ("", true, true),
            ("spec.nodeName=n1", true, false),
            ("spec.nodeName==n1", true, false),
            ("spec.nodeName!=n1", false, true),
            ("spec.nodeName=", false, true),
            ("spec.vcpus=2", true, false),
            ("metadata.name=a,spec.nodeName=n1", true, false),
            ("metadata.name=b,spec.nodeName=n1", false, false),
        ];
        for (text, want_bound, want_unbound) in cases {
            let s = FieldSelector::parse(text).unwrap();
            assert_eq!(s.matches(&bound), want_bound, "{text} on bound");
            assert_eq!(s.matches(&unbound), want_unbound, "{text} on unbound");
        }
    }

    #[test]
    fn rejects_bad_syntax() {
        for text in ["spec.nodeName", "spec..x=1", "spec.node name=1", "=x"] {
            assert!(FieldSelector::parse(text).is_err(), "{text:?}");
        }
    }
}
