//! JSON patches (RFC 6902 `add`, `remove`, `replace`) as Glance takes them on
//! `PATCH /v2/images/{id}`: each operation is first parsed into an [`Operation`] (both the
//! RFC form `{"op": "replace", "path": "/name", …}` and the draft-4 form of the v2.0 media
//! type, `{"replace": "/name", …}`), then applied to a document. No I/O and nothing about
//! images: the caller decides what the patched document means and how a [`PatchError`]
//! reads in its dialect.

use serde_json::Value;

/// What an operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    /// Insert (into an array, `-` appends) or set a member.
    Add,
    /// Remove what is there.
    Remove,
    /// Replace what is there.
    Replace,
}

impl OperationKind {
    /// The kind an operation name names.
    fn parse(name: &str) -> Option<Self> {
        match name {
            "add" => Some(Self::Add),
            "remove" => Some(Self::Remove),
            "replace" => Some(Self::Replace),
            _ => None,
        }
    }

    /// The operation's name as patches write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Remove => "remove",
            Self::Replace => "replace",
        }
    }
}

/// Why a patch operation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The operation names no `op`.
    #[error("Each patch operation needs an 'op' (add, remove or replace).")]
    MissingOp,
    /// The operation has no `path`.
    #[error("Each patch operation needs a 'path'.")]
    MissingPath,
    /// The operation is not one of `add`, `remove`, `replace`.
    #[error("Unsupported patch operation {0:?}: use add, remove or replace")]
    Unsupported(String),
    /// An `add` or `replace` without a `value`.
    #[error("Operation {operation} on {path} needs a 'value'.")]
    MissingValue {
        /// The operation's name.
        operation: &'static str,
        /// Its path as given.
        path: String,
    },
    /// The path is not a JSON pointer.
    #[error("Invalid JSON pointer {0:?}: must start with /")]
    BadPointer(String),
    /// The path leads to nothing the operation can act on (the path without its leading
    /// `/`, as Glance names a property).
    #[error("Property {0} does not exist.")]
    Missing(String),
}

/// One parsed patch operation.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    /// What it does.
    pub kind: OperationKind,
    /// Its path as given (with a leading `/`).
    pub path: String,
    /// Its value (`null` for `remove`).
    pub value: Value,
}

impl Operation {
    /// Parses one operation in either form (see the module documentation).
    pub fn parse(op: &Value) -> Result<Self, PatchError> {
        let draft4 = ["add", "remove", "replace"]
            .into_iter()
            .find_map(|name| {
                op.get(name)
                    .and_then(Value::as_str)
                    .map(|path| (name, path))
            })
            .filter(|_| op.get("op").is_none());
        let (name, path) = match draft4 {
            Some((name, path)) if path.starts_with('/') => (name, path.to_string()),
            Some((name, path)) => (name, format!("/{path}")),
            None => {
                let name = op["op"].as_str().ok_or(PatchError::MissingOp)?;
                let path = op["path"].as_str().ok_or(PatchError::MissingPath)?;
                (name, path.to_string())
            }
        };
        let kind =
            OperationKind::parse(name).ok_or_else(|| PatchError::Unsupported(name.into()))?;
        let value = match (kind, op.get("value")) {
            (OperationKind::Remove, _) => Value::Null,
            (_, Some(v)) => v.clone(),
            (_, None) => {
                return Err(PatchError::MissingValue {
                    operation: kind.name(),
                    path,
                });
            }
        };
        Ok(Self { kind, path, value })
    }

    /// Applies the operation to `doc`; on `Err`, `doc` is unchanged.
    pub fn apply(&self, doc: &mut Value) -> Result<(), PatchError> {
        let mut segments = pointer_segments(&self.path)?;
        let last = segments.pop().unwrap_or_default();
        let missing = || PatchError::Missing(self.path.trim_start_matches('/').to_string());
        let mut parent = &mut *doc;
        for segment in &segments {
            parent = match parent {
                Value::Object(map) => map.get_mut(segment.as_str()).ok_or_else(missing)?,
                Value::Array(items) => segment
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get_mut(i))
                    .ok_or_else(missing)?,
                _ => return Err(missing()),
            };
        }
        let value = self.value.clone();
        match parent {
            Value::Object(map) => match self.kind {
                OperationKind::Add => {
                    map.insert(last, value);
                }
                OperationKind::Replace => {
                    *map.get_mut(last.as_str()).ok_or_else(missing)? = value;
                }
                OperationKind::Remove => {
                    map.remove(last.as_str()).ok_or_else(missing)?;
                }
            },
            Value::Array(items) => {
                let index = if last == "-" && self.kind == OperationKind::Add {
                    items.len()
                } else {
                    last.parse::<usize>().map_err(|_| missing())?
                };
                match self.kind {
                    OperationKind::Add if index <= items.len() => items.insert(index, value),
                    OperationKind::Replace if index < items.len() => items[index] = value,
                    OperationKind::Remove if index < items.len() => {
                        items.remove(index);
                    }
                    _ => return Err(missing()),
                }
            }
            _ => return Err(missing()),
        }
        Ok(())
    }
}

/// A JSON pointer's segments (`/a~1b/c` → `["a/b", "c"]`).
fn pointer_segments(path: &str) -> Result<Vec<String>, PatchError> {
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| PatchError::BadPointer(path.to_string()))?;
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc() -> Value {
        json!({"name": "a", "tags": ["x", "y"], "nested": {"k": 1}})
    }

    #[test]
    fn operations_change_the_document_they_name() {
        let table: &[(Value, Value)] = &[
            (
                json!({"op": "replace", "path": "/name", "value": "b"}),
                json!({"name": "b", "tags": ["x", "y"], "nested": {"k": 1}}),
            ),
            (
                json!({"op": "add", "path": "/tags/-", "value": "z"}),
                json!({"name": "a", "tags": ["x", "y", "z"], "nested": {"k": 1}}),
            ),
            (
                json!({"op": "add", "path": "/tags/0", "value": "w"}),
                json!({"name": "a", "tags": ["w", "x", "y"], "nested": {"k": 1}}),
            ),
            (
                json!({"op": "remove", "path": "/tags/1"}),
                json!({"name": "a", "tags": ["x"], "nested": {"k": 1}}),
            ),
            (
                json!({"op": "add", "path": "/os~1distro", "value": "debian"}),
                json!({"name": "a", "tags": ["x", "y"], "nested": {"k": 1}, "os/distro": "debian"}),
            ),
            (
                json!({"op": "replace", "path": "/nested/k", "value": 2}),
                json!({"name": "a", "tags": ["x", "y"], "nested": {"k": 2}}),
            ),
            (
                json!({"remove": "/nested"}),
                json!({"name": "a", "tags": ["x", "y"]}),
            ),
            (
                json!({"replace": "name", "value": "c"}),
                json!({"name": "c", "tags": ["x", "y"], "nested": {"k": 1}}),
            ),
        ];
        for (op, want) in table {
            let mut d = doc();
            Operation::parse(op).unwrap().apply(&mut d).unwrap();
            assert_eq!(&d, want, "{op}");
        }
    }

    #[test]
    fn refusals_say_why() {
        let table: &[(Value, PatchError)] = &[
            (json!({"path": "/name"}), PatchError::MissingOp),
            (json!({"op": "add"}), PatchError::MissingPath),
            (
                json!({"op": "move", "path": "/name", "from": "/x"}),
                PatchError::Unsupported("move".into()),
            ),
            (
                json!({"op": "add", "path": "/name"}),
                PatchError::MissingValue {
                    operation: "add",
                    path: "/name".into(),
                },
            ),
            (
                json!({"op": "add", "path": "name", "value": 1}),
                PatchError::BadPointer("name".into()),
            ),
            (
                json!({"op": "remove", "path": "/nope"}),
                PatchError::Missing("nope".into()),
            ),
            (
                json!({"op": "replace", "path": "/tags/5", "value": 1}),
                PatchError::Missing("tags/5".into()),
            ),
            (
                json!({"op": "add", "path": "/name/x", "value": 1}),
                PatchError::Missing("name/x".into()),
            ),
        ];
        for (op, want) in table {
            let mut d = doc();
            let got = Operation::parse(op).and_then(|o| o.apply(&mut d));
            assert_eq!(got.as_ref(), Err(want), "{op}");
            assert_eq!(d, doc(), "a refused operation leaves the document: {op}");
        }
        assert_eq!(
            PatchError::Missing("hw_disk_bus".into()).to_string(),
            "Property hw_disk_bus does not exist."
        );
    }
}
