//! The replicated state machine (openraft's v2 `RaftStateMachine`): [`ClusterState`]
//! changed only by [`ClusterState::apply`], plus durable snapshots in redb.
//!
//! The state itself lives in memory; what is durable is the latest snapshot (state, last
//! applied log id, membership) and the log. On restart openraft restores the snapshot and
//! re-applies the committed log entries after it (the committed log id is saved by the
//! log store), so the state is rebuilt exactly.

use std::io::{self, Cursor};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::db::{self, Db, KEY_SNAPSHOT, META};
use super::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::state::{ClusterState, Outcome};

/// A snapshot as stored in the `meta` table.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    /// JSON of the [`ClusterState`].
    data: Vec<u8>,
}

impl StoredSnapshot {
    fn into_snapshot(self) -> Snapshot<TypeConfig> {
        Snapshot {
            meta: self.meta,
            snapshot: Box::new(Cursor::new(self.data)),
        }
    }
}

/// Distinguishes snapshots built for the same log id.
static SNAPSHOT_SEQ: AtomicU64 = AtomicU64::new(0);

fn sm_read_err(e: io::Error) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

fn snapshot_write_err(e: io::Error) -> StorageError {
    StorageIOError::write_snapshot(None, &e).into()
}

/// The state machine.
pub(crate) struct StateMachineStore {
    db: Db,
    state: ClusterState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    tx: watch::Sender<Arc<ClusterState>>,
}

impl StateMachineStore {
    /// The state machine restored from the latest snapshot in `db`, publishing every applied
    /// state on `tx`.
    pub(crate) async fn open(db: Db, tx: watch::Sender<Arc<ClusterState>>) -> io::Result<Self> {
        let mut sm = Self {
            db,
            state: ClusterState::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            tx,
        };
        if let Some(stored) = sm.db.get_meta::<StoredSnapshot>(KEY_SNAPSHOT).await? {
            sm.state = db::decode(&stored.data)?;
            sm.last_applied = stored.meta.last_log_id;
            sm.membership = stored.meta.last_membership;
        }
        sm.tx.send_replace(Arc::new(sm.state.clone()));
        Ok(sm)
    }
}

/// Builds a snapshot of the state as it was when the builder was made.
pub(crate) struct SnapshotBuilder {
    db: Db,
    state: ClusterState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// Durably stores `stored` unless the stored snapshot is already as new or newer
/// (`force`: store anyway, as for a snapshot installed from the leader).
async fn save_snapshot(db: &Db, stored: &StoredSnapshot, force: bool) -> io::Result<()> {
    let bytes = db::encode(stored)?;
    let last = stored.meta.last_log_id;
    db.run(move |d| {
        let txn = d.begin_write()?;
        {
            let mut table = txn.open_table(META)?;
            let current_last: Option<Option<LogId>> = match table.get(KEY_SNAPSHOT)? {
                Some(v) => db::decode::<StoredSnapshot>(v.value())
                    .ok()
                    .map(|s| s.meta.last_log_id),
                None => None,
            };
            let newer = match current_last {
                Some(current) => last > current,
                None => true,
            };
            if force || newer {
                table.insert(KEY_SNAPSHOT, bytes.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    })
    .await
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data = db::encode(&self.state).map_err(snapshot_write_err)?;
        let seq = SNAPSHOT_SEQ.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match &self.last_applied {
            Some(id) => format!("{}-{}-{seq}", id.leader_id.term, id.index),
            None => format!("0-0-{seq}"),
        };
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
                snapshot_id,
            },
            data,
        };
        save_snapshot(&self.db, &stored, false)
            .await
            .map_err(snapshot_write_err)?;
        tracing::debug!(
            last_applied = ?self.last_applied,
            bytes = stored.data.len(),
            "built Raft snapshot"
        );
        Ok(stored.into_snapshot())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut outcomes = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let outcome = match entry.payload {
                EntryPayload::Blank => Outcome::Applied,
                EntryPayload::Normal(cmd) => self.state.apply(&cmd),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    Outcome::Applied
                }
            };
            outcomes.push(outcome);
        }
        if !outcomes.is_empty() {
            self.tx.send_replace(Arc::new(self.state.clone()));
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            state: self.state.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let state: ClusterState = db::decode(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        save_snapshot(&self.db, &stored, true)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.state = state;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.tx.send_replace(Arc::new(self.state.clone()));
        tracing::info!(last_log_id = ?meta.last_log_id, "installed Raft snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let stored: Option<StoredSnapshot> =
            self.db.get_meta(KEY_SNAPSHOT).await.map_err(sm_read_err)?;
        Ok(stored.map(StoredSnapshot::into_snapshot))
    }
}
