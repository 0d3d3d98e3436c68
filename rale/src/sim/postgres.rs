//! The simulated PostgreSQL of one node: data directory, process, role, configuration
//! and a WAL modelled record by record.
//!
//! Every WAL record has an id unique in the whole run, so two WALs agree up to index
//! `i` exactly when they hold the same record at `i - 1`: a record is created once, on
//! one primary, and travels only inside copied prefixes. This makes "does this node's
//! history contain acknowledged write W" and "is this standby's WAL a prefix of its
//! upstream's" exact, constant-time questions.

use rale_sync::names::StandbyNames;

use crate::status::DataDirState;
use crate::types::{Lsn, Timeline};

/// What a WAL record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// The first record of a freshly initialised cluster (timeline 1).
    Init,
    /// The first record of a new timeline, written by a promotion.
    TimelineSwitch(Timeline),
    /// A client write (its id is the record id).
    Write,
}

/// One WAL record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalRecord {
    /// Unique in the run.
    pub id: u64,
    /// What it is.
    pub kind: RecordKind,
}

/// A node's WAL: records in order and the indexes where timelines begin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wal {
    records: Vec<WalRecord>,
    switches: Vec<(usize, Timeline)>,
}

impl Wal {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records.
    pub fn records(&self) -> &[WalRecord] {
        &self.records
    }

    /// Timeline switch points: (index of the first record, timeline).
    pub fn switches(&self) -> &[(usize, Timeline)] {
        &self.switches
    }

    /// The timeline of the last record (0 when empty).
    pub fn timeline(&self) -> Timeline {
        self.switches.last().map(|(_, t)| *t).unwrap_or_default()
    }

    /// The LSN after the first `len` records.
    pub fn lsn_of(len: usize, record_bytes: u64) -> Lsn {
        Lsn(u64::try_from(len)
            .unwrap_or(u64::MAX)
            .saturating_mul(record_bytes))
    }

    /// Whether record `id` sits at index `idx`.
    pub fn contains(&self, idx: usize, id: u64) -> bool {
        self.records.get(idx).is_some_and(|r| r.id == id)
    }

    /// Whether `self` is a prefix of `other` (equal WALs included).
    pub fn is_prefix_of(&self, other: &Wal) -> bool {
        match self.records.last() {
            None => true,
            Some(last) => other.contains(self.records.len() - 1, last.id),
        }
    }

    /// Length of the longest common prefix.
    pub fn common_prefix(&self, other: &Wal) -> usize {
        // Agreement at index i implies agreement at every index below (ids are unique),
        // so the agreeing indexes form a prefix: binary search for its end.
        let (mut lo, mut hi) = (0usize, self.len().min(other.len()));
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.records[mid - 1] == other.records[mid - 1] {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// Appends a record.
    pub fn push(&mut self, record: WalRecord) {
        match record.kind {
            RecordKind::Init => self.switches.push((self.records.len(), Timeline(1))),
            RecordKind::TimelineSwitch(t) => self.switches.push((self.records.len(), t)),
            RecordKind::Write => {}
        }
        self.records.push(record);
    }

    /// Copies records `self.len()..upto` from `source` (which must extend `self`).
    pub fn extend_from(&mut self, source: &Wal, upto: usize) {
        let upto = upto.min(source.len());
        for i in self.len()..upto {
            self.push(source.records[i]);
        }
    }

    /// Keeps the first `len` records.
    pub fn truncate(&mut self, len: usize) {
        self.records.truncate(len);
        while self.switches.last().is_some_and(|(i, _)| *i >= len) {
            self.switches.pop();
        }
    }
}

/// The simulated PostgreSQL of one node.
#[derive(Clone, Debug)]
pub struct SimPostgres {
    /// Data directory state.
    pub data: DataDirState,
    /// The WAL (durable: survives every crash).
    pub wal: Wal,
    /// Whether the postmaster runs.
    pub running: bool,
    /// `standby.signal` present: starts (and stays) in recovery.
    pub standby: bool,
    /// `primary_conninfo`: the member index it streams from.
    pub upstream: Option<usize>,
    /// Whether the WAL receiver streamed during the last tick.
    pub streaming: bool,
    /// `synchronous_standby_names` as set.
    pub sync_names_text: String,
    /// The same, parsed.
    pub sync_names: StandbyNames,
    /// How far the commit fence pseudo-standby has acknowledged (records).
    pub fence_flush: usize,
}

impl SimPostgres {
    /// An empty data directory, nothing running.
    pub fn empty() -> Self {
        SimPostgres {
            data: DataDirState::Empty,
            wal: Wal::default(),
            running: false,
            standby: false,
            upstream: None,
            streaming: false,
            sync_names_text: String::new(),
            sync_names: StandbyNames::Empty,
            fence_flush: 0,
        }
    }

    /// Running and not in recovery: accepts writes.
    pub fn is_primary(&self) -> bool {
        self.running && !self.standby && self.data != DataDirState::Empty
    }

    /// Running in recovery.
    pub fn is_standby(&self) -> bool {
        self.running && self.standby && self.data != DataDirState::Empty
    }

    /// One line for traces.
    pub fn summary(&self, names: &[String], record_bytes: u64) -> String {
        let role = if !self.running {
            if self.data == DataDirState::Empty {
                "empty"
            } else {
                "stopped"
            }
        } else if self.standby {
            "standby"
        } else {
            "PRIMARY"
        };
        let mut s = format!(
            "{role} tl{} {}",
            self.wal.timeline(),
            Wal::lsn_of(self.wal.len(), record_bytes)
        );
        if self.standby
            && let Some(u) = self.upstream
        {
            s.push_str(&format!(
                " <-{}{}",
                names.get(u).map(String::as_str).unwrap_or("?"),
                if self.streaming {
                    ""
                } else {
                    " (not streaming)"
                }
            ));
        }
        if !self.sync_names_text.is_empty() {
            s.push_str(&format!(" ssn='{}'", self.sync_names_text));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64) -> WalRecord {
        WalRecord {
            id,
            kind: RecordKind::Write,
        }
    }

    #[test]
    fn prefixes_and_divergence() {
        let mut a = Wal::default();
        a.push(WalRecord {
            id: 1,
            kind: RecordKind::Init,
        });
        for id in 2..10 {
            a.push(rec(id));
        }
        let mut b = Wal::default();
        b.extend_from(&a, 5);
        assert!(b.is_prefix_of(&a));
        assert_eq!(b.common_prefix(&a), 5);
        b.push(WalRecord {
            id: 100,
            kind: RecordKind::TimelineSwitch(Timeline(2)),
        });
        b.push(rec(101));
        assert!(!b.is_prefix_of(&a));
        assert_eq!(b.common_prefix(&a), 5);
        assert_eq!(a.common_prefix(&b), 5);
        assert_eq!(b.timeline(), Timeline(2));
        b.truncate(5);
        assert_eq!(b.timeline(), Timeline(1));
        assert!(b.is_prefix_of(&a));
        assert!(Wal::default().is_prefix_of(&a));
        assert_eq!(Wal::lsn_of(3, 8192), Lsn(3 * 8192));
    }
}
