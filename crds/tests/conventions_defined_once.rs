//! Workspace-wide rules checked on the sources themselves.
//!
//! Every shared name and rule is defined once, in `cirrus_crds::conventions` (or, for the
//! quota list and the image visibility rule, in its kind's module, and for the image format
//! detector in `cirrus_crds::image_magic`): this walks the workspace's Rust sources and
//! fails on a second definition — a `const` holding one of the shared literals, the DHCP
//! port name format, another quota default list or another magic-number table.

use std::path::{Path, PathBuf};

/// The shared literals: no `const` outside the conventions module may hold them.
const SHARED_LITERALS: &[&str] = &[
    "compute:nova",
    "network:dhcp",
    "cirrus.dev/network",
    "x-auth-token",
    "x-cirrus-network",
    "x-cirrus-source-ip",
    "cirrus.dev/created-for-server",
];

/// Where the one definition lives, relative to the workspace root.
const HOMES: &[&str] = &[
    "crds/src/conventions.rs",
    "crds/src/kinds/volume.rs",
    "crds/src/kinds/project.rs",
    "crds/src/image_magic.rs",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crds lives in the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// `(file, line number, line)` of every second definition found.
fn second_definitions() -> Vec<(String, usize, String)> {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 50, "the workspace's sources were found");
    let mut found = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if HOMES.contains(&relative.as_str()) || relative.ends_with("conventions_defined_once.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            let defines = trimmed.contains("const ") && trimmed.contains(": &str =");
            let shared_const = defines
                && SHARED_LITERALS
                    .iter()
                    .any(|lit| line.contains(&format!("\"{lit}\"")));
            let dhcp_name = line.contains("-dhcp-{") && line.contains("format!");
            let quota_list = trimmed.contains("(\"instances\", 10)");
            // The image magic table (the format detector the API and node agent share).
            let magic_table = trimmed.contains("(b\"QED\\0\", \"qed\")");
            if shared_const || dhcp_name || quota_list || magic_table {
                found.push((relative.clone(), number + 1, line.trim().to_string()));
            }
        }
    }
    found
}

#[test]
fn shared_names_are_defined_only_in_their_home() {
    let found = second_definitions();
    assert!(
        found.is_empty(),
        "defined again outside {HOMES:?} (use cirrus_crds::conventions):\n{}",
        found
            .iter()
            .map(|(f, n, l)| format!("  {f}:{n}: {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Lines a source file may have before it must say at its top why it is one file.
const MAX_LINES: usize = 800;

/// What a long file writes in its module doc (a line or a heading) to say why.
const LONG_FILE_REASON: &str = "Why this file is long";

/// Small modules with one job: a Rust file over [`MAX_LINES`] lines either gets split or
/// says in its module doc (the `//!` lines it starts with), after [`LONG_FILE_REASON`], why
/// it stays whole.
#[test]
fn long_files_say_why_they_are_long() {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut unexplained = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines = text.lines().count();
        let explained = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .any(|l| l.contains(LONG_FILE_REASON));
        if lines > MAX_LINES && !explained {
            let relative = file.strip_prefix(&root).unwrap().display().to_string();
            unexplained.push(format!("  {relative}: {lines} lines"));
        }
    }
    unexplained.sort();
    assert!(
        unexplained.is_empty(),
        "split these files, or say in their module doc (`//! {LONG_FILE_REASON}: …`) why \
         each is one file:\n{}",
        unexplained.join("\n")
    );
}
