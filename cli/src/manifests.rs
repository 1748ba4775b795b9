//! Loading manifests from files and directories (`-f FILE|DIR`, `-R`), multi-document YAML
//! and JSON, and validating every document locally with its kind's rules before anything is
//! sent to the server.
//!
//! Errors name the file, the document (1-based, counting the non-empty documents of the file)
//! and, when known, `Kind/name`, then the field and the reason:
//! `flavors.yaml: document 2 (Flavor/m1.small): spec.vcpus: must be at least 1`.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use cirrus_crds::{API_VERSION, FieldErrors, KindInfo, Scope};
use serde_json::Value;

/// One object read from a manifest file, already validated against its kind.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The file it came from (`-` for standard input).
    pub source: String,
    /// 1-based index of the document in that file.
    pub document: usize,
    /// Its kind.
    pub kind: &'static KindInfo,
    /// The object as written (with `apiVersion` filled in when missing); not normalized, so
    /// apply only sets what the author wrote.
    pub object: Value,
}

impl Manifest {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `metadata.project`, if written.
    pub fn project(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/project")
            .and_then(Value::as_str)
    }

    /// The project the object lives in: its own, or `default_project` for project-scoped
    /// kinds that don't name one; `None` for cluster-scoped kinds.
    pub fn effective_project(&self, default_project: &str) -> Option<String> {
        match self.kind.scope {
            Scope::Cluster => None,
            Scope::Project => Some(self.project().unwrap_or(default_project).to_string()),
        }
    }
}

/// One problem found while loading manifests.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A path could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not valid YAML/JSON.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A document is not a valid object of its kind.
    #[error("{}", render_document_errors(.path, *.document, .ident.as_deref(), .errors))]
    Invalid {
        /// The file.
        path: String,
        /// 1-based document index.
        document: usize,
        /// `Kind/name` when the document says so.
        ident: Option<String>,
        /// Every problem with its field.
        errors: FieldErrors,
    },
    /// A directory held no manifest files.
    #[error("{path}: no .yaml, .yml or .json files found")]
    Empty {
        /// The directory.
        path: String,
    },
}

fn render_document_errors(
    path: &str,
    document: usize,
    ident: Option<&str>,
    errors: &FieldErrors,
) -> String {
    let prefix = match ident {
        Some(ident) => format!("{path}: document {document} ({ident})"),
        None => format!("{path}: document {document}"),
    };
    errors
        .0
        .iter()
        .map(|e| format!("{prefix}: {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every problem found while loading, in file order.
#[derive(Debug, Default)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

impl std::error::Error for ManifestErrors {}

/// True for file names apply reads from directories.
fn is_manifest_file(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("yaml" | "yml" | "json")
    )
}

/// The files named by `paths`: files as given, directories expanded (sorted by name; into
/// subdirectories only when `recursive`). `-` stands for standard input.
///
/// # Errors
/// Unreadable paths and directories without manifests.
pub fn collect_files(paths: &[PathBuf], recursive: bool) -> Result<Vec<PathBuf>, ManifestErrors> {
    let mut files = Vec::new();
    let mut errors = ManifestErrors::default();
    for path in paths {
        if path.as_os_str() == "-" {
            files.push(path.clone());
            continue;
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let before = files.len();
                if let Err(e) = walk_dir(path, recursive, &mut files) {
                    errors.0.push(e);
                } else if files.len() == before {
                    errors.0.push(ManifestError::Empty {
                        path: path.display().to_string(),
                    });
                }
            }
            Ok(_) => files.push(path.clone()),
            Err(source) => errors.0.push(ManifestError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }
    if errors.0.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

fn walk_dir(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let io_err = |source| ManifestError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io_err)?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                walk_dir(&entry, recursive, out)?;
            }
        } else if is_manifest_file(&entry) {
            out.push(entry);
        }
    }
    Ok(())
}

/// Parses the documents of one file's text: JSON for `.json` files, multi-document YAML
/// otherwise. Empty documents are skipped; a `List` (`kind: List`, `items: [...]`) expands
/// to its items, which share the list's document number.
///
/// # Errors
/// The parser's message.
pub fn parse_documents(text: &str, json: bool) -> Result<Vec<(usize, Value)>, String> {
    let docs: Vec<Value> = if json {
        vec![serde_json::from_str(text).map_err(|e| e.to_string())?]
    } else {
        serde_saphyr::from_multiple::<Value>(text).map_err(|e| e.to_string())?
    };
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().filter(|d| !d.is_null()).enumerate() {
        let number = i + 1;
        let is_list = doc
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k == "List" || k.ends_with("List"))
            && doc.get("items").is_some_and(Value::is_array);
        if is_list {
            if let Some(Value::Array(items)) = doc.get("items") {
                out.extend(items.iter().cloned().map(|item| (number, item)));
            }
        } else {
            out.push((number, doc));
        }
    }
    Ok(out)
}

/// Checks one parsed document: it must name a known kind and pass that kind's validation.
/// Returns the manifest (with `apiVersion` filled in) or the problems found.
///
/// # Errors
/// [`ManifestError::Invalid`] with every field problem.
pub fn check_document(
    source: &str,
    document: usize,
    mut object: Value,
) -> Result<Manifest, ManifestError> {
    let invalid = |ident: Option<String>, errors: FieldErrors| ManifestError::Invalid {
        path: source.to_string(),
        document,
        ident,
        errors,
    };
    let mut errors = FieldErrors::default();
    let Some(map) = object.as_object_mut() else {
        errors.add(
            "",
            "a manifest must be a mapping with apiVersion, kind, metadata and spec",
        );
        return Err(invalid(None, errors));
    };
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let kind_name = match map.get("kind") {
        Some(Value::String(k)) => k.clone(),
        Some(other) => {
            errors.add("kind", format!("must be a string, got {other}"));
            return Err(invalid(None, errors));
        }
        None => {
            errors.add("kind", "missing: every manifest must say its kind");
            return Err(invalid(name.map(|n| format!("?/{n}")), errors));
        }
    };
    let ident = Some(format!("{kind_name}/{}", name.as_deref().unwrap_or("")));
    // Manifests name kinds exactly; the CLI's loose names (plurals, short names) are for
    // commands typed by hand.
    let Some(kind) = cirrus_crds::all_kinds()
        .into_iter()
        .find(|k| k.kind == kind_name)
    else {
        let known: Vec<&str> = cirrus_crds::all_kinds().iter().map(|k| k.kind).collect();
        errors.add(
            "kind",
            format!(
                "unknown kind {kind_name:?}, expected one of {}",
                known.join(", ")
            ),
        );
        return Err(invalid(ident, errors));
    };
    map.entry("apiVersion")
        .or_insert_with(|| Value::from(API_VERSION));
    if let Err(errors) = (kind.validate)(object.clone()) {
        return Err(invalid(ident, errors));
    }
    Ok(Manifest {
        source: source.to_string(),
        document,
        kind,
        object,
    })
}

/// Loads and validates every manifest under `paths`. Nothing is returned unless every
/// document of every file is valid, so a caller can refuse to write anything on error.
///
/// # Errors
/// Every problem of every file, each naming file, document and field.
pub fn load(paths: &[PathBuf], recursive: bool) -> Result<Vec<Manifest>, ManifestErrors> {
    let files = collect_files(paths, recursive)?;
    let mut manifests = Vec::new();
    let mut errors = ManifestErrors::default();
    for file in files {
        let (source, text) = if file.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => ("-".to_string(), text),
                Err(source) => {
                    errors.0.push(ManifestError::Io {
                        path: "-".into(),
                        source,
                    });
                    continue;
                }
            }
        } else {
            let source = file.display().to_string();
            match std::fs::read_to_string(&file) {
                Ok(text) => (source, text),
                Err(e) => {
                    errors.0.push(ManifestError::Io {
                        path: source,
                        source: e,
                    });
                    continue;
                }
            }
        };
        let json = file
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        match parse_documents(&text, json) {
            Ok(docs) => {
                for (number, doc) in docs {
                    match check_document(&source, number, doc) {
                        Ok(m) => manifests.push(m),
                        Err(e) => errors.0.push(e),
                    }
                }
            }
            Err(message) => errors.0.push(ManifestError::Parse {
                path: source,
                message,
            }),
        }
    }
    if errors.0.is_empty() {
        Ok(manifests)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAVOR: &str = "apiVersion: cirrus.dev/v1\nkind: Flavor\nmetadata:\n  name: m1\nspec:\n  vcpus: 1\n  ram: 512\n";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn multi_document_yaml() {
        let text = format!("{FLAVOR}---\n---\n{}", FLAVOR.replace("m1", "m2"));
        let docs = parse_documents(&text, false).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].0, 2);
        assert_eq!(docs[1].1["metadata"]["name"], "m2");
    }

    #[test]
    fn list_expands() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[{"kind":"Flavor","metadata":{"name":"a"},"spec":{"vcpus":1,"ram":1}},{"kind":"Flavor","metadata":{"name":"b"},"spec":{"vcpus":1,"ram":1}}]}"#;
        let docs = parse_documents(text, true).unwrap();
        assert_eq!(docs.len(), 2);
        assert!(docs.iter().all(|(n, _)| *n == 1));
    }

    #[test]
    fn dirs_and_recursion() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.yaml", FLAVOR);
        write(
            dir.path(),
            "a.json",
            r#"{"kind":"Flavor","metadata":{"name":"j"},"spec":{"vcpus":2,"ram":64}}"#,
        );
        write(dir.path(), "notes.txt", "not a manifest");
        write(dir.path(), "sub/c.yml", &FLAVOR.replace("m1", "deep"));
        let flat = load(&[dir.path().to_path_buf()], false).unwrap();
        let names: Vec<&str> = flat.iter().map(Manifest::name).collect();
        assert_eq!(names, ["j", "m1"]);
        assert_eq!(flat[0].object["apiVersion"], API_VERSION);
        let deep = load(&[dir.path().to_path_buf()], true).unwrap();
        assert_eq!(deep.len(), 3);
        assert_eq!(deep[2].name(), "deep");
    }

    #[test]
    fn errors_name_file_document_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{FLAVOR}---\n{}",
            FLAVOR
                .replace("m1", "bad")
                .replace("ram: 512", "ram: 512\n  colour: red")
        );
        let path = write(dir.path(), "f.yaml", &text);
        let err = load(std::slice::from_ref(&path), false)
            .unwrap_err()
            .to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
        let expected = format!("{}: document 2 (Flavor/bad): spec.colour:", path.display());
        assert!(err.starts_with(&expected), "{err}");
    }

    #[test]
    fn unknown_kind_and_missing_kind() {
        let e = check_document(
            "x.yaml",
            1,
            serde_json::json!({"kind": "Gizmo", "metadata": {"name": "g"}}),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("x.yaml: document 1 (Gizmo/g): kind: unknown kind"),
            "{e}"
        );
        let e = check_document("x.yaml", 3, serde_json::json!({"metadata": {"name": "g"}}))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("x.yaml: document 3 (?/g): kind: missing"),
            "{e}"
        );
        let e = check_document("x.yaml", 1, serde_json::json!("text")).unwrap_err();
        assert!(
            e.to_string().starts_with("x.yaml: document 1: a manifest"),
            "{e}"
        );
    }

    #[test]
    fn semantic_errors_all_reported() {
        let e = check_document(
            "x.yaml",
            1,
            serde_json::json!({"kind": "Flavor", "metadata": {"name": "Bad_Name"}, "spec": {"vcpus": 0, "ram": 1}}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("metadata.name:"), "{e}");
        assert!(e.contains("spec.vcpus: must be at least 1"), "{e}");
    }

    #[test]
    fn yaml_syntax_error_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "broken.yaml", "kind: [unclosed\n");
        let err = load(std::slice::from_ref(&path), false)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("{}: ", path.display())), "{err}");
    }

    #[test]
    fn missing_path_and_empty_dir() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(&[dir.path().join("nope.yaml")], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.yaml"), "{err}");
        let err = load(&[dir.path().to_path_buf()], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no .yaml"), "{err}");
    }
}
