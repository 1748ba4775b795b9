//! The token key ring: which keys encrypt new tokens and which still open old ones.
//!
//! Keys are 32 random bytes (XChaCha20-Poly1305 keys) identified by a `u32` index. The
//! highest index is the *primary* key: new tokens are sealed with it. Every other key in the
//! ring still validates the tokens it sealed. [`KeyRing::rotate`] adds a new primary (index
//! max + 1) and drops the oldest keys beyond `keep`; a token whose key was dropped no
//! longer validates. With `keep >= 2` and rotations no more often than the token lifetime
//! (1 h by default), no live token is ever lost to a rotation (Keystone's Fernet rule).
//!
//! On disk (`cirrus up` keeps the ring in `<data dir>/keys/`): one file per key named by
//! its decimal index, holding the key as 43 base64url characters and a newline, mode 0600,
//! in a directory of mode 0700. [`KeyRing::load`] refuses key files readable by group or
//! others (like ssh does with private keys). [`KeyRing::save`] writes each file to a
//! temporary name and renames it into place, then removes the index files of keys that
//! left the ring, so a crash leaves either the old or the new key, never half of one.
//! Several API replicas share the directory (or a copy of it distributed by the operator).
//!
//! # Rotation on a running cloud
//! `cirrus admin rotate-keys` loads the ring from disk, [`KeyRing::rotate`]s it and
//! [`KeyRing::save`]s it ([`KeyRing::rotate_in`]). A running API server holds its ring behind
//! a lock and re-reads the directory periodically ([`KeyRing::reload`], which swaps the keys
//! in place for every holder of the ring), so it seals new tokens with the new primary within
//! one reload period and keeps opening the tokens sealed with the keys still in the ring.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};

/// How many keys [`KeyRing::rotate`] keeps by default: the new primary and two older ones.
pub const DEFAULT_KEEP: usize = 3;

/// Why the key ring could not be loaded, saved or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key directory failed.
    #[error("token key directory {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A key file does not hold 32 base64url-encoded bytes.
    #[error("token key file {0} is not a 32-byte base64url key")]
    BadKey(PathBuf),
    /// A key file can be read by group or others.
    #[error("token key file {path} has mode {mode:o}; it must be 0600 (chmod 600)")]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The directory holds no key files.
    #[error("token key directory {0} holds no keys")]
    Empty(PathBuf),
    /// The operating system's random source failed.
    #[error("random source: {0}")]
    Random(getrandom::Error),
    /// `rotate` was asked to keep no key at all.
    #[error("a key ring keeps at least one key")]
    KeepZero,
}

/// One key: its bytes and the cipher built from them. `Debug` never shows the bytes.
#[derive(Clone)]
pub(crate) struct TokenKey {
    bytes: [u8; 32],
    pub(crate) cipher: XChaCha20Poly1305,
}

impl TokenKey {
    fn new(bytes: [u8; 32]) -> Self {
        let cipher = XChaCha20Poly1305::new(&bytes.into());
        Self { bytes, cipher }
    }

    fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(KeyError::Random)?;
        Ok(Self::new(bytes))
    }
}

/// The keys that seal and open tokens; the highest index is the primary.
///
/// The keys sit behind a lock so that a ring shared by many tasks can be replaced in place
/// ([`KeyRing::reload`], [`KeyRing::replace`]): every holder sees the new keys at once. A
/// clone is a snapshot: replacing the keys of one does not change the other.
pub struct KeyRing {
    keys: RwLock<Arc<Keys>>,
}

type Keys = BTreeMap<u32, Arc<TokenKey>>;

impl Clone for KeyRing {
    fn clone(&self) -> Self {
        Self::with(self.snapshot())
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("key_ids", &self.key_ids())
            .field("primary", &self.primary_id())
            .finish()
    }
}

impl KeyRing {
    fn with(keys: Arc<Keys>) -> Self {
        Self {
            keys: RwLock::new(keys),
        }
    }

    fn from_map(keys: BTreeMap<u32, TokenKey>) -> Self {
        Self::with(Arc::new(
            keys.into_iter().map(|(id, k)| (id, Arc::new(k))).collect(),
        ))
    }

    /// The current keys (a cheap reference-counted snapshot).
    fn snapshot(&self) -> Arc<Keys> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A ring with one fresh random key, index 0.
    pub fn generate() -> Result<Self, KeyError> {
        Ok(Self::from_map(BTreeMap::from([(0, TokenKey::generate()?)])))
    }

    /// A ring from known key bytes (tests, or keys handed over by an operator). `None` when
    /// `keys` is empty.
    pub fn from_keys(keys: impl IntoIterator<Item = (u32, [u8; 32])>) -> Option<Self> {
        let keys: BTreeMap<_, _> = keys
            .into_iter()
            .map(|(id, bytes)| (id, TokenKey::new(bytes)))
            .collect();
        (!keys.is_empty()).then(|| Self::from_map(keys))
    }

    /// Index of the primary key (the one new tokens are sealed with).
    pub fn primary_id(&self) -> u32 {
        self.primary().0
    }

    /// Indexes of all keys, oldest first.
    pub fn key_ids(&self) -> Vec<u32> {
        self.snapshot().keys().copied().collect()
    }

    pub(crate) fn primary(&self) -> (u32, Arc<TokenKey>) {
        let keys = self.snapshot();
        let (id, key) = keys.iter().next_back().expect("a key ring is never empty");
        (*id, key.clone())
    }

    pub(crate) fn get(&self, id: u32) -> Option<Arc<TokenKey>> {
        self.snapshot().get(&id).cloned()
    }

    /// Whether `self` and `other` hold the same keys under the same indexes.
    pub fn same_keys(&self, other: &KeyRing) -> bool {
        let (a, b) = (self.snapshot(), other.snapshot());
        a.len() == b.len()
            && a.iter()
                .zip(b.iter())
                .all(|((ia, ka), (ib, kb))| ia == ib && ka.bytes == kb.bytes)
    }

    /// Replaces the keys of this ring, for every holder of it, with those of `other`.
    pub fn replace(&self, other: &KeyRing) {
        let keys = other.snapshot();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
    }

    /// Re-reads the ring from `dir` ([`KeyRing::load`]) and, when the keys there differ from
    /// these, swaps them in place ([`KeyRing::replace`]). Returns whether anything changed;
    /// on an error the ring is left as it was.
    pub fn reload(&self, dir: &Path) -> Result<bool, KeyError> {
        let loaded = Self::load(dir)?;
        if self.same_keys(&loaded) {
            return Ok(false);
        }
        self.replace(&loaded);
        tracing::info!(
            dir = %dir.display(),
            primary = loaded.primary_id(),
            keys = ?loaded.key_ids(),
            "reloaded token keys"
        );
        Ok(true)
    }

    /// Rotates the ring kept in `dir` on disk: loads it, adds a new primary keeping at most
    /// `keep` keys ([`KeyRing::rotate`]) and saves it. Returns the ring as saved. The
    /// directory must already hold a ring (a missing one is an error, not a fresh ring:
    /// rotating a ring that nobody uses would be a mistake worth hearing about).
    pub fn rotate_in(dir: &Path, keep: usize) -> Result<Self, KeyError> {
        let mut ring = Self::load(dir)?;
        ring.rotate(keep)?;
        ring.save(dir)?;
        Ok(ring)
    }

    /// Adds a fresh primary key and drops the oldest keys so that at most `keep` remain.
    /// Returns the new primary's index.
    pub fn rotate(&mut self, keep: usize) -> Result<u32, KeyError> {
        if keep == 0 {
            return Err(KeyError::KeepZero);
        }
        let id = self.primary_id().checked_add(1).expect("2^32 rotations");
        let fresh = Arc::new(TokenKey::generate()?);
        let keys = Arc::make_mut(self.keys.get_mut().unwrap_or_else(PoisonError::into_inner));
        keys.insert(id, fresh);
        while keys.len() > keep {
            keys.pop_first();
        }
        tracing::info!(primary = id, keys = ?self.key_ids(), "rotated token keys");
        Ok(id)
    }

    /// Reads every key file (decimal name) from `dir`; other files are ignored.
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { path, source }
        };
        let mut keys = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let mode = entry.metadata().map_err(io(&path))?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::InsecurePermissions { path, mode });
            }
            let text = fs::read_to_string(&path).map_err(io(&path))?;
            let bytes: [u8; 32] = URL_SAFE_NO_PAD
                .decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| KeyError::BadKey(path.clone()))?;
            keys.insert(id, TokenKey::new(bytes));
        }
        if keys.is_empty() {
            return Err(KeyError::Empty(dir.to_path_buf()));
        }
        Ok(Self::from_map(keys))
    }

    /// Loads the ring from `dir`, or creates `dir` (mode 0700) with one fresh key when it
    /// does not exist or holds no key yet.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyError> {
        match Self::load(dir) {
            Ok(ring) => Ok(ring),
            Err(KeyError::Empty(_)) => Self::create_in(dir),
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Self::create_in(dir)
            }
            Err(e) => Err(e),
        }
    }

    fn create_in(dir: &Path) -> Result<Self, KeyError> {
        let ring = Self::generate()?;
        ring.save(dir)?;
        tracing::info!(dir = %dir.display(), "created token key ring");
        Ok(ring)
    }

    /// Writes the ring to `dir` (created with mode 0700 if missing): one 0600 file per key,
    /// replaced atomically; index files of keys no longer in the ring are removed.
    pub fn save(&self, dir: &Path) -> Result<(), KeyError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { path, source }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let keys = self.snapshot();
        for (id, key) in keys.iter() {
            let path = dir.join(id.to_string());
            let tmp = dir.join(format!(".{id}.tmp"));
            let _ = fs::remove_file(&tmp);
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(&tmp))?;
            // The umask can only clear bits, but make the mode exact regardless.
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(io(&tmp))?;
            writeln!(file, "{}", URL_SAFE_NO_PAD.encode(key.bytes)).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
            fs::rename(&tmp, &path).map_err(io(&path))?;
        }
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let stale = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|id| !keys.contains_key(&id));
            if stale {
                fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_adds_a_primary_and_keeps_at_most_keep() {
        let mut ring = KeyRing::generate().unwrap();
        assert_eq!(ring.key_ids(), [0]);
        assert_eq!(ring.rotate(3).unwrap(), 1);
        assert_eq!(ring.rotate(3).unwrap(), 2);
        assert_eq!(ring.rotate(3).unwrap(), 3);
        assert_eq!(ring.key_ids(), [1, 2, 3]);
        assert_eq!(ring.primary_id(), 3);
        assert!(matches!(ring.rotate(0), Err(KeyError::KeepZero)));
        assert_eq!(ring.rotate(1).unwrap(), 4);
        assert_eq!(ring.key_ids(), [4]);
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let ring = KeyRing::from_keys([(7, [0xAB; 32])]).unwrap();
        let shown = format!("{ring:?}");
        assert!(shown.contains("primary: 7"), "{shown}");
        assert!(
            !shown.contains("171") && !shown.to_lowercase().contains("ab"),
            "{shown}"
        );
        assert!(KeyRing::from_keys([]).is_none());
    }

    #[test]
    fn save_and_load_round_trip_with_0600_files_in_a_0700_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("token-keys");
        let mut ring = KeyRing::load_or_create(&dir).unwrap();
        ring.rotate(2).unwrap();
        ring.save(&dir).unwrap();
        let dir_mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["0", "1"]);
        for name in &names {
            let meta = fs::metadata(dir.join(name)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
            assert_eq!(fs::read_to_string(dir.join(name)).unwrap().len(), 44);
        }
        let loaded = KeyRing::load(&dir).unwrap();
        assert_eq!(loaded.key_ids(), [0, 1]);
        for id in [0, 1] {
            assert_eq!(loaded.get(id).unwrap().bytes, ring.get(id).unwrap().bytes);
        }
        // load_or_create on an existing ring loads it rather than making a new one.
        let again = KeyRing::load_or_create(&dir).unwrap();
        assert_eq!(again.get(1).unwrap().bytes, ring.get(1).unwrap().bytes);
    }

    #[test]
    fn save_removes_keys_that_left_the_ring_and_ignores_other_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut ring = KeyRing::generate().unwrap();
        ring.save(dir).unwrap();
        fs::write(dir.join("README"), "not a key").unwrap();
        ring.rotate(1).unwrap();
        ring.save(dir).unwrap();
        assert!(!dir.join("0").exists());
        assert!(dir.join("1").exists());
        assert!(dir.join("README").exists());
        assert_eq!(KeyRing::load(dir).unwrap().key_ids(), [1]);
    }

    #[test]
    fn rotate_in_keeps_the_old_keys_and_reload_swaps_them_in_for_every_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let shared = std::sync::Arc::new(KeyRing::load_or_create(&dir).unwrap());
        let holder = shared.clone();
        let snapshot = (*shared).clone();
        assert!(!shared.reload(&dir).unwrap(), "nothing changed on disk yet");

        let rotated = KeyRing::rotate_in(&dir, DEFAULT_KEEP).unwrap();
        assert_eq!(rotated.key_ids(), [0, 1]);
        assert_eq!(KeyRing::load(&dir).unwrap().key_ids(), [0, 1]);
        assert!(shared.reload(&dir).unwrap(), "the rotation is picked up");
        assert_eq!(holder.primary_id(), 1, "every holder of the ring sees it");
        assert!(holder.same_keys(&rotated));
        assert!(
            holder.get(0).unwrap().bytes == snapshot.get(0).unwrap().bytes,
            "the previous key is kept"
        );
        assert_eq!(snapshot.key_ids(), [0], "a clone is a snapshot");
        assert!(!shared.reload(&dir).unwrap());

        // A directory that cannot be read leaves the ring as it was.
        assert!(shared.reload(&tmp.path().join("missing")).is_err());
        assert_eq!(holder.key_ids(), [0, 1]);
        assert!(matches!(
            KeyRing::rotate_in(&tmp.path().join("missing"), 3),
            Err(KeyError::Io { .. })
        ));
    }

    #[test]
    fn load_refuses_readable_keys_garbage_and_empty_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert!(matches!(KeyRing::load(dir), Err(KeyError::Empty(_))));
        KeyRing::generate().unwrap().save(dir).unwrap();
        fs::set_permissions(dir.join("0"), fs::Permissions::from_mode(0o644)).unwrap();
        match KeyRing::load(dir) {
            Err(KeyError::InsecurePermissions { mode, .. }) => assert_eq!(mode, 0o644),
            other => panic!("{other:?}"),
        }
        fs::set_permissions(dir.join("0"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(dir.join("0"), "too-short\n").unwrap();
        assert!(matches!(KeyRing::load(dir), Err(KeyError::BadKey(_))));
        assert!(matches!(
            KeyRing::load(&dir.join("missing")),
            Err(KeyError::Io { .. })
        ));
    }
}
