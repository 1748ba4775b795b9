//! The MVCC engine: opens the redb database (on disk or in memory) and hands out consistent
//! read snapshots. Writes never happen here; they go through the single writer
//! ([`super::writer`]), which applies them with [`super::apply::Tx`].

use std::path::{Path, PathBuf};

use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable};

use super::error::{EmbeddedError, EtcdError};
use super::schema::{EVENTS, HISTORY, KV, LEASE_KEYS, LEASES, META, META_COMPACT, META_REV};
use crate::perms;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "cirrus-etcd.redb";

/// The opened database plus where it lives.
#[derive(Debug)]
pub(crate) struct Engine {
    pub db: Database,
    /// The database file, `None` in memory.
    pub path: Option<PathBuf>,
}

/// A consistent read view: every table of one redb read transaction, plus its revisions.
pub(crate) struct Snapshot {
    pub kv: ReadOnlyTable<&'static [u8], &'static [u8]>,
    pub hist: ReadOnlyTable<(&'static [u8], u64), &'static [u8]>,
    pub events: ReadOnlyTable<(u64, u32), &'static [u8]>,
    pub leases: ReadOnlyTable<i64, i64>,
    pub lease_keys: ReadOnlyTable<(i64, &'static [u8]), ()>,
    /// Current revision of the snapshot.
    pub current: i64,
    /// Compact revision of the snapshot (0 = never compacted).
    pub compact: i64,
}

/// How long an open waits for a predecessor's lock on the database to go (a killed `cirrus
/// up` being restarted at once: the kernel may release the dead process's file lock a moment
/// after its parent saw it exit).
const LOCK_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens (or creates) the database at `path`; while another open holds it, tries again for up
/// to [`LOCK_RELEASE_WAIT`] before answering `DatabaseAlreadyOpen`.
fn open_when_released(path: &Path) -> Result<Database, redb::DatabaseError> {
    let deadline = std::time::Instant::now() + LOCK_RELEASE_WAIT;
    loop {
        match Database::builder().create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

impl Engine {
    /// Open (or create) the store in `data_dir`, or in memory when `None`, and make sure every
    /// table exists so read transactions never see a missing table. `data_dir` is made mode
    /// 0700 and the database file 0600 whatever the umask (existing ones are fixed).
    ///
    /// # Errors
    /// Directory creation or database open failures.
    pub fn open(data_dir: Option<&Path>) -> Result<Engine, EmbeddedError> {
        let (db, path) = match data_dir {
            Some(dir) => {
                perms::ensure_dir(dir, perms::PRIVATE_DIR).map_err(|source| {
                    EmbeddedError::DataDir {
                        path: dir.to_path_buf(),
                        source,
                    }
                })?;
                let path = dir.join(DB_FILE);
                // redb would create the file with the umask's mode: create it 0600 first (an
                // empty file is initialised as a new database).
                perms::ensure_private_file(&path).map_err(|source| EmbeddedError::Private {
                    path: path.clone(),
                    source,
                })?;
                let db = open_when_released(&path).map_err(|source| EmbeddedError::Open {
                    path: path.clone(),
                    source,
                })?;
                (db, Some(path))
            }
            None => {
                let db = Database::builder()
                    .create_with_backend(redb::backends::InMemoryBackend::new())
                    .map_err(|source| EmbeddedError::Open {
                        path: PathBuf::from(":memory:"),
                        source,
                    })?;
                (db, None)
            }
        };
        let w = db.begin_write()?;
        {
            let mut meta = w.open_table(META)?;
            if meta.get(META_REV)?.is_none() {
                // etcd starts at revision 1 on an empty store.
                meta.insert(META_REV, 1)?;
                meta.insert(META_COMPACT, 0)?;
            }
            w.open_table(KV)?;
            w.open_table(HISTORY)?;
            w.open_table(EVENTS)?;
            w.open_table(LEASES)?;
            w.open_table(LEASE_KEYS)?;
        }
        w.commit()?;
        Ok(Engine { db, path })
    }

    /// A consistent snapshot of the whole store.
    ///
    /// # Errors
    /// Storage failures.
    pub fn snapshot(&self) -> Result<Snapshot, EtcdError> {
        let r = self.db.begin_read()?;
        let meta = r.open_table(META)?;
        let current = meta.get(META_REV)?.map(|v| v.value()).unwrap_or(1) as i64;
        let compact = meta.get(META_COMPACT)?.map(|v| v.value()).unwrap_or(0) as i64;
        Ok(Snapshot {
            kv: r.open_table(KV)?,
            hist: r.open_table(HISTORY)?,
            events: r.open_table(EVENTS)?,
            leases: r.open_table(LEASES)?,
            lease_keys: r.open_table(LEASE_KEYS)?,
            current,
            compact,
        })
    }

    /// Size of the database file in bytes (0 in memory).
    pub fn db_size(&self) -> i64 {
        self.path
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.len() as i64)
            .unwrap_or(0)
    }
}
