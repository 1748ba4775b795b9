//! The checked-in JSON Schemas in `crds/schemas/` match the code.
//!
//! Regenerate after changing a kind: `CIRRUS_UPDATE_SCHEMAS=1 cargo test -p cirrus-crds --test schemas`.

use std::path::PathBuf;

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

#[test]
fn schemas_are_up_to_date() {
    let update = std::env::var("CIRRUS_UPDATE_SCHEMAS").is_ok_and(|v| v == "1");
    let dir = schema_dir();
    let mut drifted = Vec::new();
    let mut expected_files = Vec::new();
    for kind in cirrus_crds::all_kinds() {
        let text = serde_json::to_string_pretty(&(kind.schema)()).unwrap() + "\n";
        let file = format!("{}.json", kind.plural);
        let path = dir.join(&file);
        expected_files.push(file.clone());
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            let current = std::fs::read_to_string(&path).ok();
            if current.as_deref() != Some(text.as_str()) {
                std::fs::write(&path, &text).unwrap();
            }
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(current) if current == text => {}
            Ok(_) => drifted.push(format!("{file} differs from the {} type", kind.kind)),
            Err(e) => drifted.push(format!("{file} is missing ({e})")),
        }
    }
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") && !expected_files.contains(&name) {
                if update {
                    std::fs::remove_file(entry.path()).unwrap();
                } else {
                    drifted.push(format!("{name} belongs to no kind"));
                }
            }
        }
    }
    assert!(
        drifted.is_empty(),
        "JSON Schemas in crds/schemas/ are out of date:\n  {}\nRegenerate them with \
         `CIRRUS_UPDATE_SCHEMAS=1 cargo test -p cirrus-crds --test schemas` and commit the result.",
        drifted.join("\n  ")
    );
}

#[test]
fn every_schema_is_closed_and_documented() {
    for kind in cirrus_crds::all_kinds() {
        let schema = serde_json::to_value((kind.schema)()).unwrap();
        assert_eq!(schema["additionalProperties"], false, "{}", kind.kind);
        assert!(
            schema["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{} has no description",
            kind.kind
        );
    }
}
