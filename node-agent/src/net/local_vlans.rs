//! Local VLANs: which 802.1Q tag each network uses on this host's integration bridge.
//!
//! A network's cluster-wide segmentation id (a VXLAN VNI, up to 16 million) does not fit a
//! VLAN tag, so every host maps the networks it carries to tags of its own, as Neutron's OVS
//! agent does. The map must survive agent restarts — a running guest's tap keeps the tag it
//! was plugged with — so it is written to a file (atomically, before a tag is handed out) and
//! read back at start. A tag is released only when the network has nothing left on this host.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Lowest usable tag (0 means untagged).
const FIRST_TAG: u16 = 1;
/// Highest usable tag (4095 is reserved by 802.1Q).
const LAST_TAG: u16 = 4094;

/// Why a tag could not be handed out or the map not loaded/saved.
#[derive(Debug, thiserror::Error)]
pub enum LocalVlanError {
    /// All 4094 tags are in use on this host.
    #[error("all {} local VLAN tags on this host are in use", LAST_TAG - FIRST_TAG + 1)]
    Exhausted,
    /// The map file could not be read or written.
    #[error("local VLAN map {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The map file is not valid JSON of the expected shape.
    #[error("local VLAN map {path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// The persisted network → tag map of one host.
#[derive(Debug)]
pub struct LocalVlans {
    path: PathBuf,
    tags: Mutex<BTreeMap<String, u16>>,
}

impl LocalVlans {
    /// Loads the map from `path` (a missing file is an empty map).
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, LocalVlanError> {
        let path = path.into();
        let tags = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| LocalVlanError::Corrupt {
                    path: path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(LocalVlanError::Io { path, source }),
        };
        Ok(Self {
            path,
            tags: Mutex::new(tags),
        })
    }

    /// The tag of `network_uid`, allocating (and persisting) the lowest free one if it has
    /// none yet.
    ///
    /// # Errors
    /// No tag is free, or the map could not be saved (then nothing is handed out).
    pub fn get_or_allocate(&self, network_uid: &str) -> Result<u16, LocalVlanError> {
        let mut tags = self.lock();
        if let Some(tag) = tags.get(network_uid) {
            return Ok(*tag);
        }
        let used: std::collections::BTreeSet<u16> = tags.values().copied().collect();
        let tag = (FIRST_TAG..=LAST_TAG)
            .find(|t| !used.contains(t))
            .ok_or(LocalVlanError::Exhausted)?;
        let mut next = tags.clone();
        next.insert(network_uid.to_string(), tag);
        save(&self.path, &next)?;
        *tags = next;
        Ok(tag)
    }

    /// The tag of `network_uid`, if it has one.
    pub fn get(&self, network_uid: &str) -> Option<u16> {
        self.lock().get(network_uid).copied()
    }

    /// Every network with a tag on this host.
    pub fn all(&self) -> BTreeMap<String, u16> {
        self.lock().clone()
    }

    /// Frees the tag of `network_uid` (nothing of the network is left on this host).
    ///
    /// # Errors
    /// The map could not be saved (then the tag stays taken).
    pub fn release(&self, network_uid: &str) -> Result<(), LocalVlanError> {
        let mut tags = self.lock();
        if !tags.contains_key(network_uid) {
            return Ok(());
        }
        let mut next = tags.clone();
        next.remove(network_uid);
        save(&self.path, &next)?;
        *tags = next;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u16>> {
        self.tags.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes the map to a temporary file next to `path`, fsyncs it and renames it into place.
fn save(path: &Path, tags: &BTreeMap<String, u16>) -> Result<(), LocalVlanError> {
    let io = |source| LocalVlanError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    let json = serde_json::to_vec_pretty(tags).expect("a string→u16 map serializes");
    tmp.write_all(&json).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_lowest_free_and_survives_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net/local-vlans.json");
        let vlans = LocalVlans::load(&path).unwrap();
        assert_eq!(vlans.get_or_allocate("a").unwrap(), 1);
        assert_eq!(vlans.get_or_allocate("b").unwrap(), 2);
        assert_eq!(vlans.get_or_allocate("a").unwrap(), 1, "stable per network");
        vlans.release("a").unwrap();
        assert_eq!(vlans.get("a"), None);
        assert_eq!(
            vlans.get_or_allocate("c").unwrap(),
            1,
            "freed tags are reused"
        );

        let reloaded = LocalVlans::load(&path).unwrap();
        assert_eq!(reloaded.get("b"), Some(2));
        assert_eq!(reloaded.get("c"), Some(1));
        assert_eq!(reloaded.all().len(), 2);
    }

    #[test]
    fn exhaustion_is_an_error_not_a_reused_tag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.json");
        let full: BTreeMap<String, u16> = (FIRST_TAG..=LAST_TAG)
            .map(|t| (format!("n{t}"), t))
            .collect();
        save(&path, &full).unwrap();
        let vlans = LocalVlans::load(&path).unwrap();
        assert_eq!(vlans.get_or_allocate("n7").unwrap(), 7);
        assert!(matches!(
            vlans.get_or_allocate("one-too-many"),
            Err(LocalVlanError::Exhausted)
        ));
    }

    #[test]
    fn corrupt_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.json");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            LocalVlans::load(&path),
            Err(LocalVlanError::Corrupt { .. })
        ));
    }
}
