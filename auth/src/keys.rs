//! The token key ring: which keys encrypt new tokens and which still open old ones.
//!
//! Keys are 32 random bytes (XChaCha20-Poly1305 keys) identified by a `u32` index. The
//! highest index is the *primary* key: new tokens are sealed with it. Every other key in the
//! ring still validates the tokens it sealed. [`KeyRing::rotate`] adds a new primary (index
//! max + 1) and drops the oldest keys beyond `keep`; a token whose key was dropped no
//! longer validates. With `keep >= 2` and rotations no more often than the token lifetime
//! (1 h by default), no live token is ever lost to a rotation (Keystone's Fernet rule).
//!
//! On disk (`cirrus up` keeps the ring in `<data dir>/token-keys/`): one file per key named by
//! its decimal index, holding the key as 43 base64url characters and a newline, mode 0600,
//! in a directory of mode 0700. [`KeyRing::load`] refuses key files readable by group or
//! others (like ssh does with private keys). [`KeyRing::save`] writes each file to a
//! temporary name and renames it into place, then removes the index files of keys that
//! left the ring, so a crash leaves either the old or the new key, never half of one.
//! Several API replicas share the directory (or a copy of it distributed by the operator).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
#[derive(Clone)]
pub struct KeyRing {
    keys: BTreeMap<u32, TokenKey>,
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
    /// A ring with one fresh random key, index 0.
    pub fn generate() -> Result<Self, KeyError> {
        Ok(Self {
            keys: BTreeMap::from([(0, TokenKey::generate()?)]),
        })
    }

    /// A ring from known key bytes (tests, or keys handed over by an operator). `None` when
    /// `keys` is empty.
    pub fn from_keys(keys: impl IntoIterator<Item = (u32, [u8; 32])>) -> Option<Self> {
        let keys: BTreeMap<_, _> = keys
            .into_iter()
            .map(|(id, bytes)| (id, TokenKey::new(bytes)))
            .collect();
        (!keys.is_empty()).then_some(Self { keys })
    }

    /// Index of the primary key (the one new tokens are sealed with).
    pub fn primary_id(&self) -> u32 {
        *self
            .keys
            .keys()
            .next_back()
            .expect("a key ring is never empty")
    }

    /// Indexes of all keys, oldest first.
    pub fn key_ids(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    pub(crate) fn primary(&self) -> (u32, &TokenKey) {
        let (id, key) = self
            .keys
            .iter()
            .next_back()
            .expect("a key ring is never empty");
        (*id, key)
    }

    pub(crate) fn get(&self, id: u32) -> Option<&TokenKey> {
        self.keys.get(&id)
    }

    /// Adds a fresh primary key and drops the oldest keys so that at most `keep` remain.
    /// Returns the new primary's index.
    pub fn rotate(&mut self, keep: usize) -> Result<u32, KeyError> {
        if keep == 0 {
            return Err(KeyError::KeepZero);
        }
        let id = self.primary_id().checked_add(1).expect("2^32 rotations");
        self.keys.insert(id, TokenKey::generate()?);
        while self.keys.len() > keep {
            self.keys.pop_first();
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
        Ok(Self { keys })
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
        for (id, key) in &self.keys {
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
                .is_some_and(|id| !self.keys.contains_key(&id));
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
