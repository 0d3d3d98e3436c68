//! Copies of the primary's logical replication slots on a replica of [`LocalPostgres`]
//! (PostgreSQL ≤ 16): the slot's on-disk state is copied from the primary and loaded by a
//! restart, then the copy is advanced with `pg_replication_slot_advance` as the primary's
//! consumer confirms. What to copy and how far to advance is decided in the decision core
//! (`crate::decide`); see `docs/slots.md`.

use std::path::Path;
use std::time::Instant;

use super::conf::{quote_literal, validate_slot_name};
use super::local::{LocalPostgres, elapsed_ms};
use super::sql::{self, ConnectTarget};
use super::{PostgresControl, SlotAdvance, StopMode, Upstream};
use crate::{Error, Result};

/// `SLOT_MAGIC` of PostgreSQL's `ReplicationSlotOnDisk` (first 4 bytes, little-endian on
/// the platforms we run on): a file that does not start with it is not a slot state.
const SLOT_MAGIC: u32 = 0x0105_1CA1;
/// The on-disk state of a slot is a few hundred bytes; anything far larger is not one.
const STATE_BYTES_MAX: usize = 64 * 1024;
/// Offset of the slot's database OID in the state file (after the 16-byte header and the
/// 64-byte name): 0 for a physical slot.
const DATABASE_OID_OFFSET: usize = 80;
/// PostgreSQL's message when the WAL a slot starts from was removed.
const WAL_REMOVED: &str = "has already been removed";

/// One slot state read from the primary.
#[derive(Debug)]
struct SlotState {
    name: String,
    state: Vec<u8>,
}

/// Decodes PostgreSQL's `encode(…, 'hex')` text.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16);
    bytes
        .chunks_exact(2)
        .map(|pair| u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok())
        .collect()
}

/// Whether `state` is a logical slot's (it names a database).
fn is_logical_state(state: &[u8]) -> bool {
    is_slot_state(state)
        && state
            .get(DATABASE_OID_OFFSET..DATABASE_OID_OFFSET + 4)
            .is_some_and(|oid| oid.iter().any(|b| *b != 0))
}

/// Whether `state` looks like a replication slot's on-disk state.
fn is_slot_state(state: &[u8]) -> bool {
    state.len() <= STATE_BYTES_MAX
        && state
            .get(..4)
            .and_then(|m| <[u8; 4]>::try_from(m).ok())
            .is_some_and(|m| u32::from_le_bytes(m) == SLOT_MAGIC)
}

impl LocalPostgres {
    /// See [`PostgresControl::copy_logical_slots`].
    pub(super) async fn copy_logical_slots_from(
        &self,
        source: &Upstream,
        names: &[String],
    ) -> Result<Vec<String>> {
        const OP: &str = "copy_logical_slots";
        for n in names {
            validate_slot_name(n)?;
        }
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let target = ConnectTarget {
            host: source.host.clone(),
            port: source.port,
            user: self.cfg.superuser.clone(),
            password: self.cfg.superuser_password.clone(),
        };
        let list = names
            .iter()
            .map(|n| quote_literal(n))
            .collect::<Vec<_>>()
            .join(", ");
        // `NOT pg_is_in_recovery()`: only a primary's slots are a source.
        let query = format!(
            "SELECT slot_name, encode(pg_read_binary_file('pg_replslot/' || slot_name || '/state'), 'hex') \
             FROM pg_replication_slots WHERE slot_type = 'logical' AND NOT temporary \
             AND NOT pg_is_in_recovery() AND slot_name IN ({list}) ORDER BY slot_name"
        );
        let client = sql::connect(&target, self.cfg.operation_timeout, None).await?;
        let rows = sql::simple(&client, OP, &query).await?;
        drop(client);
        let mut states = Vec::new();
        for r in rows.first().map(Vec::as_slice).unwrap_or_default() {
            let name = r.get(0).unwrap_or_default().to_string();
            let state = r.get(1).and_then(decode_hex).filter(|s| is_slot_state(s));
            match state {
                Some(state) if names.contains(&name) => states.push(SlotState { name, state }),
                _ => {
                    tracing::warn!(node = %self.cfg.node, source = %source.node, slot = %name,
                        "the primary's state file of this logical slot is not one: not copied");
                }
            }
        }
        if states.is_empty() {
            return Ok(Vec::new());
        }
        // PostgreSQL reads slot states only at start: stop, write, start.
        PostgresControl::stop(self, StopMode::Fast).await?;
        let written = self.write_slot_states(&states);
        // Started again whatever the outcome: a replica must not stay down for a copy.
        let start = PostgresControl::start(self, Some(source)).await;
        written?;
        start?;
        let copied: Vec<String> = states.into_iter().map(|s| s.name).collect();
        tracing::info!(node = %self.cfg.node, source = %source.node, slots = ?copied,
            elapsed_ms = elapsed_ms(started), "copied logical slots from the primary; restarted to load them");
        Ok(copied)
    }

    /// Writes each state as `pg_replslot/<name>/state`: into `<name>.tmp` first (which
    /// PostgreSQL removes at start should we stop half-way), then renamed into place.
    fn write_slot_states(&self, states: &[SlotState]) -> Result<()> {
        let dir = self.cfg.data_dir.join("pg_replslot");
        for s in states {
            let tmp = dir.join(format!("{}.tmp", s.name));
            let fin = dir.join(&s.name);
            remove_dir(&tmp)?;
            self.runner.ensure_private_dir(&tmp)?;
            self.runner.write_bytes(&tmp.join("state"), &s.state)?;
            sync_dir(&tmp)?;
            remove_dir(&fin)?;
            std::fs::rename(&tmp, &fin).map_err(|e| {
                Error::io(
                    format!("renaming {} to {}", tmp.display(), fin.display()),
                    e,
                )
            })?;
        }
        sync_dir(&dir)
    }

    /// After `pg_rewind` (the server stopped): removes the logical slots of the data
    /// directory. Their positions belong to the history the rewind threw away (a former
    /// primary's slots, or copies advanced past the fork): used after a later promotion
    /// they would skip changes of the new history. PostgreSQL 15's `pg_rewind` already
    /// empties `pg_replslot` (measured by `tests/tests/local_logical_slots.rs`); this
    /// makes sure of it whatever the version does. A replica's copies are made afresh
    /// from the primary. Returns the names removed.
    pub(super) fn remove_logical_slot_files(&self) -> Result<Vec<String>> {
        let dir = self.cfg.data_dir.join("pg_replslot");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        };
        let mut removed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
            let path = entry.path();
            let Ok(state) = std::fs::read(path.join("state")) else {
                continue;
            };
            if is_logical_state(&state) {
                remove_dir(&path)?;
                removed.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        if !removed.is_empty() {
            sync_dir(&dir)?;
        }
        removed.sort();
        Ok(removed)
    }

    /// See [`PostgresControl::advance_logical_slots`].
    pub(super) async fn advance_logical_slots_to(&self, slots: &[SlotAdvance]) -> Result<()> {
        const OP: &str = "advance_logical_slots";
        let mut first_error = None;
        for s in slots {
            let result = async {
                validate_slot_name(&s.name)?;
                let client = self.admin_client_db(&s.database).await?;
                let advanced = sql::scalar(
                    &client,
                    OP,
                    &format!(
                        "SELECT end_lsn::text FROM pg_replication_slot_advance({}, {}::pg_lsn)",
                        quote_literal(&s.name),
                        quote_literal(&s.lsn.to_string())
                    ),
                )
                .await;
                if let Err(e) = &advanced
                    && e.to_string().contains(WAL_REMOVED)
                {
                    // The copy starts from WAL this server no longer has: it can never be
                    // advanced nor used. Dropped, it is copied afresh.
                    tracing::warn!(node = %self.cfg.node, slot = %s.name, error = %e,
                        "the copy of this logical slot cannot be advanced: dropping it to copy it again");
                    sql::execute(
                        &client,
                        OP,
                        &format!("SELECT pg_drop_replication_slot({})", quote_literal(&s.name)),
                    )
                    .await?;
                }
                advanced
            }
            .await;
            match result {
                Ok(end) => {
                    tracing::debug!(node = %self.cfg.node, slot = %s.name, lsn = %s.lsn,
                        end = ?end, "advanced the copy of a logical slot");
                }
                Err(e) => {
                    tracing::warn!(node = %self.cfg.node, slot = %s.name, lsn = %s.lsn, error = %e,
                        "could not advance the copy of a logical slot");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", dir.display()), e)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes_and_refuses_garbage() {
        assert_eq!(
            decode_hex("a11c0501ff"),
            Some(vec![0xa1, 0x1c, 0x05, 0x01, 0xff])
        );
        assert_eq!(decode_hex(""), Some(vec![]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex("é1"), None);
    }

    #[test]
    fn only_slot_states_are_accepted() {
        let mut state = SLOT_MAGIC.to_le_bytes().to_vec();
        state.extend([0u8; 180]);
        assert!(is_slot_state(&state));
        assert!(!is_slot_state(&[0xa1, 0x1c]));
        assert!(!is_slot_state(&[0u8; 200]));
        assert!(!is_logical_state(&state), "database OID 0: physical");
        state[DATABASE_OID_OFFSET] = 5;
        assert!(is_logical_state(&state));
        let mut huge = SLOT_MAGIC.to_le_bytes().to_vec();
        huge.resize(STATE_BYTES_MAX + 1, 0);
        assert!(!is_slot_state(&huge));
    }

    proptest::proptest! {
        #[test]
        fn hex_round_trips(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            proptest::prop_assert_eq!(decode_hex(&text), Some(bytes));
        }
    }
}
