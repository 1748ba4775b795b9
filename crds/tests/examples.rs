//! Every manifest in `examples/*.yaml` parses and validates as its kind.

use std::path::PathBuf;

use serde_json::Value;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn examples_validate() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no examples found in {}",
        examples_dir().display()
    );
    let mut failures = Vec::new();
    let mut count = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(file).unwrap();
        let docs: Vec<Value> = match serde_saphyr::from_str_multiple(&text) {
            Ok(docs) => docs,
            Err(e) => {
                failures.push(format!("{name}: not valid YAML: {e}"));
                continue;
            }
        };
        for (i, doc) in docs.into_iter().enumerate() {
            if doc.is_null() {
                continue;
            }
            count += 1;
            let Some(kind_name) = doc.get("kind").and_then(Value::as_str).map(str::to_owned) else {
                failures.push(format!("{name} document {i}: no `kind`"));
                continue;
            };
            let Some(kind) = cirrus_crds::all_kinds()
                .into_iter()
                .find(|k| k.kind == kind_name)
            else {
                failures.push(format!("{name} document {i}: unknown kind {kind_name:?}"));
                continue;
            };
            if let Err(errors) = (kind.validate)(doc) {
                failures.push(format!("{name} document {i} ({kind_name}): {errors}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "invalid examples:\n  {}",
        failures.join("\n  ")
    );
    assert!(
        count >= 6,
        "expected at least 6 example objects, found {count}"
    );
}

#[test]
fn required_examples_exist() {
    for name in [
        "flavors.yaml",
        "project-demo.yaml",
        "network.yaml",
        "security-group.yaml",
        "keypair.yaml",
        "server.yaml",
    ] {
        assert!(
            examples_dir().join(name).exists(),
            "examples/{name} is missing"
        );
    }
}
