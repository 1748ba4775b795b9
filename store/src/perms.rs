//! Restrictive file modes that do not depend on the umask.
//!
//! The store's directory, database file and socket hold every object (password hashes
//! included), so they are created private to the user running Cirrus: directories 0700,
//! files and sockets 0600. A mode given to `mkdir(2)`/`open(2)` is only ever narrowed by
//! the umask, never widened, and an existing path keeps whatever mode it had, so every
//! helper here also sets the mode explicitly afterwards — which fixes a directory or file
//! created loosely by an older version on the next start.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of private directories.
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode of private files and sockets.
pub const PRIVATE_FILE: u32 = 0o600;

/// The permission bits (`0o777` part) of `path`, following symlinks.
///
/// # Errors
/// `stat(2)` failures.
pub fn mode_of(path: &Path) -> io::Result<u32> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o777)
}

/// Set `path`'s permission bits to exactly `mode` (no write when they already are).
///
/// # Errors
/// `stat(2)` / `chmod(2)` failures.
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    if mode_of(path)? != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Create `dir` (and missing parents, with the same mode) if needed, then make its mode
/// exactly `mode`. Existing parents are left alone.
///
/// # Errors
/// Creation or `chmod(2)` failures, or `dir` existing as something other than a directory.
pub fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    set_mode(dir, mode)
}

/// Create `file` empty with mode 0600 if it does not exist (never truncating it), then make
/// its mode exactly 0600.
///
/// # Errors
/// `open(2)` or `chmod(2)` failures.
pub fn ensure_private_file(file: &Path) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_FILE)
        .open(file)?;
    set_mode(file, PRIVATE_FILE)
}

/// Replace `file` atomically with `contents`, mode 0600: written to a temporary file in the
/// same directory (created 0600, so the data is never readable by others), synced, renamed.
///
/// # Errors
/// I/O failures; the temporary file is removed on error.
pub fn write_private_file(file: &Path, contents: &[u8]) -> io::Result<()> {
    let name = file
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = file.with_file_name(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE))?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_exact_and_fixed_on_existing_paths() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        ensure_dir(&dir, PRIVATE_DIR).unwrap();
        assert_eq!(mode_of(&dir).unwrap(), 0o700);
        assert_eq!(mode_of(&root.path().join("a")).unwrap(), 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&dir, PRIVATE_DIR).unwrap();
        assert_eq!(mode_of(&dir).unwrap(), 0o700, "an existing dir is fixed");

        let file = dir.join("f");
        fs::write(&file, b"keep").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        ensure_private_file(&file).unwrap();
        assert_eq!(mode_of(&file).unwrap(), 0o600);
        assert_eq!(fs::read(&file).unwrap(), b"keep", "never truncated");

        let out = dir.join("endpoint");
        write_private_file(&out, b"one\n").unwrap();
        fs::set_permissions(&out, fs::Permissions::from_mode(0o644)).unwrap();
        write_private_file(&out, b"two\n").unwrap();
        assert_eq!(mode_of(&out).unwrap(), 0o600);
        assert_eq!(fs::read(&out).unwrap(), b"two\n");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2, "no temporary left");
    }
}
