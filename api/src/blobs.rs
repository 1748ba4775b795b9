//! The blob directory that holds image data, content-addressed by SHA-256.
//!
//! Layout under the root (in `cirrus up`, `<data-dir>/images`):
//! - `sha256/<64 hex digits>`: one read-only file per distinct content. Two images with the same
//!   bytes share one blob; an image's `status.osHashValue` names its blob.
//! - `tmp/<image uid>.partial`: the data of an upload in progress, named from the image's uid
//!   so a retried upload reuses (truncates) the same name and a crash leaks nothing nameless.
//! - `tmp/<image uid>.lock`: held with an exclusive `flock` for the whole upload. It is what
//!   makes a second concurrent upload of one image fail (also across processes sharing the
//!   directory), and what tells a `saving` left behind by a crashed upload (lock free) from a
//!   live one (lock held).
//!
//! - `sha256.lock`: held (exclusive `flock`, briefly) by a commit deciding whether to share an
//!   existing blob and by the collector deciding whether to remove one, so the two never
//!   interleave.
//!
//! Deleting an `Image` leaves its blob; [`BlobStore::collect`] (run periodically by
//! [`crate::blob_gc`]) removes the blobs under `sha256/` that no image references and that
//! are older than a grace period. A commit refreshes a shared blob's modification time, so an
//! upload that has just committed (or shared) its blob but not yet recorded it in the image's
//! status is never collected.
//!
//! Uploads keep [`BlobStore::reserved_bytes`] of the file system free (`507` otherwise): the
//! blob directory shares its disk with the object store, and a full disk must not stop the
//! control plane.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::image_format::Inspector;

/// Default largest upload: 64 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 64 << 30;

/// Default space uploads leave free on the blob directory's file system: 1 GiB.
pub const DEFAULT_RESERVED_BYTES: u64 = 1 << 30;

/// What one [`BlobStore::collect`] pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Blobs removed (unreferenced and older than the grace period).
    pub removed: usize,
    /// Bytes those blobs held.
    pub freed_bytes: u64,
    /// Blobs kept: referenced, or too young to judge.
    pub kept: usize,
}

/// The blob directory and the limits of uploads into it.
#[derive(Debug)]
pub struct BlobStore {
    root: PathBuf,
    /// Largest accepted image upload, in bytes (`413` above it).
    pub max_upload_bytes: u64,
    /// How uploaded data is checked against its declared format.
    pub inspector: Inspector,
    /// Space an upload leaves free on the file system (`507` when it would take it).
    pub reserved_bytes: u64,
}

impl BlobStore {
    /// Opens (creating if needed) the blob directory at `root`, and removes partial uploads
    /// left behind by a crashed process (those whose lock nobody holds).
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join("sha256"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        let store = Self {
            root,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            inspector: Inspector::default(),
            reserved_bytes: DEFAULT_RESERVED_BYTES,
        };
        store.sweep()?;
        Ok(store)
    }

    /// The directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with SHA-256 `hex` lives, or `None` when `hex` is not 64 lowercase hex
    /// digits (so a value read from an object's status can never name another path).
    pub fn blob_path(&self, hex: &str) -> Option<PathBuf> {
        is_sha256_hex(hex).then(|| self.root.join("sha256").join(hex))
    }

    /// Starts an upload for the image with `uid`: takes its lock. `Ok(None)` when another
    /// upload of that image holds it.
    pub fn begin_upload(&self, uid: &str) -> io::Result<Option<UploadLock>> {
        if uid.is_empty()
            || uid.len() > 64
            || !uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("image uid {uid:?} cannot name a file"),
            ));
        }
        let lock_path = self.root.join("tmp").join(format!("{uid}.lock"));
        let partial = self.root.join("tmp").join(format!("{uid}.partial"));
        Ok(try_lock(&lock_path)?.map(|file| UploadLock {
            _file: file,
            lock_path,
            partial,
        }))
    }

    /// Moves a finished, synced upload at `partial` to its content address and returns the
    /// blob's path. When a blob with that content already exists (same size), the upload is
    /// dropped and the blob shared. Blocking: run it off the async threads.
    pub fn commit(&self, partial: &Path, hex: &str, size: u64) -> io::Result<PathBuf> {
        let dest = self.blob_path(hex).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "not a sha256 hex digest")
        })?;
        let _collector_out = self.lock_blobs()?;
        if std::fs::metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == size) {
            // Shared: young again, so the collector keeps it until the status names it.
            File::open(&dest)?.set_modified(std::time::SystemTime::now())?;
            std::fs::remove_file(partial)?;
            return Ok(dest);
        }
        std::fs::set_permissions(partial, std::fs::Permissions::from_mode(0o444))?;
        std::fs::rename(partial, &dest)?;
        File::open(self.root.join("sha256"))?.sync_all()?;
        Ok(dest)
    }

    /// Space left on the blob directory's file system for unprivileged writers, in bytes.
    pub fn available_bytes(&self) -> io::Result<u64> {
        let stat = rustix::fs::statvfs(&self.root).map_err(io::Error::from)?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Refuses writing `more` bytes when that would leave less than
    /// [`Self::reserved_bytes`] free: `Err` with the free and reserved amounts.
    pub fn check_room(&self, more: u64) -> io::Result<Result<(), (u64, u64)>> {
        let free = self.available_bytes()?;
        Ok(if free.saturating_sub(more) < self.reserved_bytes {
            Err((free, self.reserved_bytes))
        } else {
            Ok(())
        })
    }

    /// Removes the blobs whose digest is not in `referenced` and that were last modified
    /// more than `grace` ago. Blocking: run it off the async threads. The caller lists the
    /// references *after* this store was opened and before calling; a blob committed since
    /// is younger than `grace` and kept.
    pub fn collect(
        &self,
        referenced: &std::collections::HashSet<String>,
        grace: std::time::Duration,
    ) -> io::Result<Collected> {
        let mut done = Collected::default();
        for entry in std::fs::read_dir(self.root.join("sha256"))? {
            let entry = entry?;
            let Some(hex) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !is_sha256_hex(&hex) || referenced.contains(&hex) {
                done.kept += 1;
                continue;
            }
            let _committer_out = self.lock_blobs()?;
            let meta = match std::fs::metadata(entry.path()) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let age = meta
                .modified()?
                .elapsed()
                .unwrap_or(std::time::Duration::ZERO);
            if age < grace {
                done.kept += 1;
                continue;
            }
            std::fs::remove_file(entry.path())?;
            tracing::info!(blob = %hex, bytes = meta.len(), "removed an image blob no image references");
            done.removed += 1;
            done.freed_bytes += meta.len();
        }
        Ok(done)
    }

    /// The lock that keeps a commit's share-or-rename and the collector's check-and-remove
    /// apart (held until the guard drops).
    fn lock_blobs(&self) -> io::Result<File> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("sha256.lock"))?;
        file.lock()?;
        Ok(file)
    }

    /// Removes `tmp/` leftovers of uploads whose process is gone.
    fn sweep(&self) -> io::Result<()> {
        let tmp = self.root.join("tmp");
        for entry in std::fs::read_dir(&tmp)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(uid) = name
                .strip_suffix(".partial")
                .or_else(|| name.strip_suffix(".lock"))
            else {
                continue;
            };
            // Holding the lock proves no live upload owns these files; dropping it removes them.
            if let Ok(Some(lock)) = self.begin_upload(uid) {
                tracing::info!(path = %path.display(), "removing a partial upload left by a crash");
                drop(lock);
            }
        }
        Ok(())
    }
}

/// An upload's exclusive hold on one image's partial file. Dropping it removes the partial
/// file (if still there) and the lock file, then releases the lock.
#[derive(Debug)]
pub struct UploadLock {
    _file: File,
    lock_path: PathBuf,
    partial: PathBuf,
}

impl UploadLock {
    /// Where this upload writes its data.
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    /// Removes the partial file now (it is also removed on drop).
    pub fn remove_partial(&self) {
        match std::fs::remove_file(&self.partial) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.partial.display(), error = %e, "cannot remove partial upload")
            }
        }
    }
}

impl Drop for UploadLock {
    fn drop(&mut self) {
        self.remove_partial();
        // Unlinked while still locked: whoever opens the path next gets a new inode, and
        // `try_lock` checks it locked the file the path names.
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Takes an exclusive lock on the file at `path` (created if missing); `None` when held.
fn try_lock(path: &Path) -> io::Result<Option<File>> {
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let locked = file.metadata()?;
        match std::fs::metadata(path) {
            Ok(now) if now.ino() == locked.ino() && now.dev() == locked.dev() => {
                return Ok(Some(file));
            }
            // The holder finished and unlinked it between our open and lock: try again.
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Whether `s` is a SHA-256 digest in lowercase hex.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_of_one_image_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let first = store.begin_upload("abc-1").unwrap().expect("first lock");
        std::fs::write(first.partial_path(), b"data").unwrap();
        assert!(store.begin_upload("abc-1").unwrap().is_none());
        assert!(store.begin_upload("abc-2").unwrap().is_some());
        drop(first);
        assert!(!dir.path().join("tmp/abc-1.partial").exists());
        assert!(!dir.path().join("tmp/abc-1.lock").exists());
        assert!(store.begin_upload("abc-1").unwrap().is_some());
    }

    #[test]
    fn uids_that_are_not_file_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        assert!(store.begin_upload("../x").is_err());
        assert!(store.begin_upload("").is_err());
    }

    #[test]
    fn open_sweeps_crash_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        std::fs::write(dir.path().join("tmp/u1.partial"), b"half").unwrap();
        std::fs::write(dir.path().join("tmp/u1.lock"), b"").unwrap();
        BlobStore::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn blob_paths_only_from_digests() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        assert!(store.blob_path(&"a".repeat(64)).is_some());
        assert!(store.blob_path(&"A".repeat(64)).is_none());
        assert!(store.blob_path("../../etc/passwd").is_none());
    }

    #[test]
    fn collect_removes_only_old_unreferenced_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let commit = |hex: &str, data: &[u8]| {
            let partial = dir.path().join(format!("tmp/{hex}.partial"));
            std::fs::write(&partial, data).unwrap();
            store.commit(&partial, hex, data.len() as u64).unwrap()
        };
        let (kept, gone, young) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for hex in [&kept, &gone] {
            let blob = commit(hex, hex.as_bytes());
            File::open(blob).unwrap().set_modified(old).unwrap();
        }
        commit(&young, b"young");
        let referenced = [kept.clone()].into_iter().collect();
        let grace = std::time::Duration::from_secs(600);
        let done = store.collect(&referenced, grace).unwrap();
        assert_eq!(
            done,
            Collected {
                removed: 1,
                freed_bytes: 64,
                kept: 2
            }
        );
        assert!(store.blob_path(&kept).unwrap().exists());
        assert!(!store.blob_path(&gone).unwrap().exists());
        assert!(store.blob_path(&young).unwrap().exists());
        // Sharing an old blob makes it young again: a new image is about to name it.
        let blob = store.blob_path(&kept).unwrap();
        File::open(&blob).unwrap().set_modified(old).unwrap();
        commit(&kept, kept.as_bytes());
        let none = std::collections::HashSet::new();
        assert_eq!(store.collect(&none, grace).unwrap().removed, 0, "all young");
        assert!(blob.exists(), "the shared blob is kept");
    }

    #[test]
    fn room_keeps_the_reserve_free() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = BlobStore::open(dir.path()).unwrap();
        let free = store.available_bytes().unwrap();
        assert!(free > 0);
        store.reserved_bytes = 0;
        assert!(store.check_room(0).unwrap().is_ok());
        store.reserved_bytes = free + (1 << 30);
        assert_eq!(
            store.check_room(0).unwrap().unwrap_err().1,
            store.reserved_bytes
        );
    }

    #[test]
    fn commit_shares_identical_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let hex = "b".repeat(64);
        let p1 = dir.path().join("tmp/one.partial");
        std::fs::write(&p1, b"same").unwrap();
        let blob = store.commit(&p1, &hex, 4).unwrap();
        let p2 = dir.path().join("tmp/two.partial");
        std::fs::write(&p2, b"same").unwrap();
        assert_eq!(store.commit(&p2, &hex, 4).unwrap(), blob);
        assert!(!p1.exists() && !p2.exists());
        assert_eq!(std::fs::read(blob).unwrap(), b"same");
    }
}
