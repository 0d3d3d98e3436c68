//! The redb file behind both the Raft log and the state machine snapshots.
//!
//! One file, `raft.redb`, in the configured data directory, with two tables:
//! - `log`: log index → JSON of the openraft entry;
//! - `meta`: `vote`, `committed`, `last_purged` (JSON of openraft's ids) and `snapshot`
//!   (JSON of the latest state machine snapshot with its metadata).
//!
//! redb commits are durable (fsync'ed) before they return. redb calls block, so they run
//! on tokio's blocking pool.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, DatabaseError, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Log entries by index.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Everything else by name.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Key of the saved vote.
pub(crate) const KEY_VOTE: &str = "vote";
/// Key of the saved committed log id.
pub(crate) const KEY_COMMITTED: &str = "committed";
/// Key of the last purged log id.
pub(crate) const KEY_LAST_PURGED: &str = "last_purged";
/// Key of the current snapshot.
pub(crate) const KEY_SNAPSHOT: &str = "snapshot";

/// File name of the store inside the data directory.
pub(crate) const FILE_NAME: &str = "raft.redb";

/// How long opening waits for another handle on the same file in this process to close
/// (a node restarted in place while its old tasks wind down).
const OPEN_WAIT_MAX: Duration = Duration::from_secs(5);

/// The shared database handle.
#[derive(Clone)]
pub(crate) struct Db {
    inner: Arc<Database>,
}

impl Db {
    /// Opens (or creates) `dir/raft.redb` and its tables.
    pub(crate) async fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating Raft data directory {}", dir.display()), e))?;
        let path: PathBuf = dir.join(FILE_NAME);
        let started = Instant::now();
        let database = loop {
            match Database::create(&path) {
                Ok(db) => break db,
                Err(DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < OPEN_WAIT_MAX => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    return Err(Error::Consensus(format!(
                        "opening Raft store {}: {e}",
                        path.display()
                    )));
                }
            }
        };
        let db = Self {
            inner: Arc::new(database),
        };
        db.run(|db| {
            let txn = db.begin_write()?;
            txn.open_table(LOG)?;
            txn.open_table(META)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| {
            Error::Consensus(format!("initialising Raft store {}: {e}", path.display()))
        })?;
        Ok(db)
    }

    /// Runs `f` on the blocking pool.
    pub(crate) async fn run<T, F>(&self, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
    {
        let db = self.inner.clone();
        match tokio::task::spawn_blocking(move || f(&db)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(io::Error::other(e.to_string())),
            Err(join) => Err(io::Error::other(format!("store task failed: {join}"))),
        }
    }

    /// Reads and decodes `meta[key]`.
    pub(crate) async fn get_meta<T: DeserializeOwned + Send + 'static>(
        &self,
        key: &'static str,
    ) -> io::Result<Option<T>> {
        let bytes = self
            .run(move |db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(META)?;
                Ok(table.get(key)?.map(|v| v.value().to_vec()))
            })
            .await?;
        bytes.map(|b| decode(&b)).transpose()
    }

    /// Encodes and durably writes `meta[key]`.
    pub(crate) async fn put_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
    ) -> io::Result<()> {
        self.put_meta_with(key, value, redb::Durability::Immediate)
            .await
    }

    async fn put_meta_with<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: redb::Durability,
    ) -> io::Result<()> {
        let bytes = encode(value)?;
        self.run(move |db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability);
            {
                let mut table = txn.open_table(META)?;
                table.insert(key, bytes.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    /// The decoded entry with the highest index, if any.
    pub(crate) async fn last_log<T: DeserializeOwned + Send + 'static>(
        &self,
    ) -> io::Result<Option<T>> {
        let bytes = self
            .run(|db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(LOG)?;
                Ok(table.last()?.map(|(_, v)| v.value().to_vec()))
            })
            .await?;
        bytes.map(|b| decode(&b)).transpose()
    }
}

/// JSON-encodes a stored value.
pub(crate) fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| io::Error::other(format!("encoding: {e}")))
}

/// Decodes a stored value.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    serde_json::from_slice(bytes).map_err(|e| io::Error::other(format!("decoding: {e}")))
}
