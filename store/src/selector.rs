//! Label selectors, Kubernetes syntax: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
//! `a notin (x,y)`, requirements joined by `,` (and).

use std::collections::BTreeMap;

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// One condition on one label key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// Why a selector string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {reason}")]
pub struct SelectorError {
    /// The selector as given.
    pub selector: String,
    /// What is wrong with it.
    pub reason: String,
}

impl LabelSelector {
    /// Parses `text`; an empty or all-blank string is the match-everything selector.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let fail = |reason: String| SelectorError {
            selector: text.to_string(),
            reason,
        };
        let mut requirements = Vec::new();
        for part in split_top_level(text).map_err(fail)? {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part).map_err(fail)?);
        }
        Ok(Self { requirements })
    }

    /// True when `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }

    /// True when `labels` (the `metadata.labels` of a JSON object, possibly absent) match.
    pub fn matches_json(&self, labels: Option<&serde_json::Value>) -> bool {
        if self.requirements.is_empty() {
            return true;
        }
        self.matches(&labels_map(labels))
    }

    /// True when the `metadata.labels` of the JSON object `object` match.
    pub fn matches_object(&self, object: &serde_json::Value) -> bool {
        self.matches_json(object.pointer("/metadata/labels"))
    }

    /// True for the selector that matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// The `metadata.labels` of a JSON object (string values only; empty when absent).
pub fn labels_of(object: &serde_json::Value) -> BTreeMap<String, String> {
    labels_map(object.pointer("/metadata/labels"))
}

fn labels_map(labels: Option<&serde_json::Value>) -> BTreeMap<String, String> {
    labels
        .and_then(|v| v.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth.checked_sub(1).ok_or("unbalanced ')'")?;
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(key_checked(key)?));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(key_checked(k)?, value_checked(v)?));
    }
    if let Some((k, v)) = part.split_once("==") {
        return Ok(Requirement::Equals(key_checked(k)?, value_checked(v)?));
    }
    if let Some((k, v)) = part.split_once('=') {
        return Ok(Requirement::Equals(key_checked(k)?, value_checked(v)?));
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let rest = words[1].trim_start();
        let (op, list) = if let Some(list) = rest.strip_prefix("notin") {
            ("notin", list)
        } else if let Some(list) = rest.strip_prefix("in") {
            ("in", list)
        } else {
            return Err(format!("unexpected {rest:?} after key {:?}", words[0]));
        };
        let list = list.trim();
        let inner = list
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(|| format!("{op} needs a parenthesized list, got {list:?}"))?;
        let values = inner
            .split(',')
            .map(value_checked)
            .collect::<Result<Vec<_>, _>>()?;
        let key = key_checked(words[0])?;
        return Ok(if op == "in" {
            Requirement::In(key, values)
        } else {
            Requirement::NotIn(key, values)
        });
    }
    Ok(Requirement::Exists(key_checked(part)?))
}

fn key_checked(key: &str) -> Result<String, String> {
    let key = key.trim();
    match cirrus_crds::validation::label_key_problem(key) {
        None => Ok(key.to_string()),
        Some(problem) => Err(format!("key {key:?}: {problem}")),
    }
}

fn value_checked(value: &str) -> Result<String, String> {
    let value = value.trim();
    match cirrus_crds::validation::label_value_problem(value) {
        None => Ok(value.to_string()),
        Some(problem) => Err(format!("value {value:?}: {problem}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn table() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app in (web, db)", true),
            ("app in (db)", false),
            ("app notin (db)", true),
            ("missing notin (db)", true),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("tier in (front,back),app", true),
        ];
        for (sel, want) in cases {
            let parsed = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(parsed.matches(&l), want, "selector {sel:?}");
        }
    }

    #[test]
    fn rejects_bad_syntax() {
        for sel in [
            "app in web",
            "app in (web",
            "bad key=1",
            "a=b c",
            "a=(",
            "x notin",
        ] {
            assert!(LabelSelector::parse(sel).is_err(), "{sel:?} should fail");
        }
    }
}
