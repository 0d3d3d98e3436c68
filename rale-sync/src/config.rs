//! Synchronous replication settings, shared by the decision core, the daemon and the API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// How the primary waits for standbys before acknowledging a commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Asynchronous replication (the lease fence may still be a synchronous standby).
    #[default]
    Off,
    /// `FIRST n (…)`: the first `n` eligible standbys by priority are synchronous.
    On,
    /// `ANY n (…)`: any `n` of the listed standbys acknowledge (quorum commit).
    Quorum,
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncMode::Off => "off",
            SyncMode::On => "on",
            SyncMode::Quorum => "quorum",
        })
    }
}

impl FromStr for SyncMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "false" | "async" => Ok(SyncMode::Off),
            "on" | "true" | "first" => Ok(SyncMode::On),
            "quorum" | "any" => Ok(SyncMode::Quorum),
            other => Err(Error::InvalidSetting(format!(
                "synchronous mode {other:?}: expected off, on or quorum"
            ))),
        }
    }
}

/// PostgreSQL's `synchronous_commit` levels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitLevel {
    /// Do not wait for the local flush.
    Off,
    /// Wait for the local flush only.
    Local,
    /// Wait until synchronous standbys wrote the WAL (not flushed).
    RemoteWrite,
    /// Wait until synchronous standbys flushed the WAL (PostgreSQL's default).
    #[default]
    On,
    /// Wait until synchronous standbys replayed the WAL.
    RemoteApply,
}

impl CommitLevel {
    /// The value as PostgreSQL spells it.
    pub fn as_pg(&self) -> &'static str {
        match self {
            CommitLevel::Off => "off",
            CommitLevel::Local => "local",
            CommitLevel::RemoteWrite => "remote_write",
            CommitLevel::On => "on",
            CommitLevel::RemoteApply => "remote_apply",
        }
    }

    /// Whether a commit at this level waits for synchronous standbys at all.
    pub fn waits_for_standbys(&self) -> bool {
        matches!(
            self,
            CommitLevel::RemoteWrite | CommitLevel::On | CommitLevel::RemoteApply
        )
    }
}

impl fmt::Display for CommitLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_pg())
    }
}

impl FromStr for CommitLevel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "false" | "no" | "0" => Ok(CommitLevel::Off),
            "local" => Ok(CommitLevel::Local),
            "remote_write" => Ok(CommitLevel::RemoteWrite),
            "on" | "true" | "yes" | "1" => Ok(CommitLevel::On),
            "remote_apply" => Ok(CommitLevel::RemoteApply),
            other => Err(Error::InvalidSetting(format!(
                "synchronous_commit {other:?}: expected off, local, remote_write, on or remote_apply"
            ))),
        }
    }
}

/// Cluster-wide synchronous replication settings (part of the dynamic configuration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// off / on (FIRST n) / quorum (ANY n).
    pub mode: SyncMode,
    /// Number of synchronous standbys wanted (`n`), at least 1 when mode is not off.
    pub node_count: u32,
    /// Never fall back to asynchronous: with too few eligible standbys, writes block.
    pub strict: bool,
    /// `synchronous_commit` for the cluster.
    pub commit_level: CommitLevel,
    /// A standby lagging more than this many bytes (flush position) leaves the set.
    pub maximum_lag_on_syncnode_bytes: Option<u64>,
    /// Members that operators pinned into the set (still subject to health).
    pub pinned: Vec<String>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            mode: SyncMode::Off,
            node_count: 1,
            strict: false,
            commit_level: CommitLevel::On,
            maximum_lag_on_syncnode_bytes: None,
            pinned: Vec::new(),
        }
    }
}

impl SyncConfig {
    /// Checks the settings are coherent.
    pub fn validate(&self) -> Result<(), Error> {
        if self.mode != SyncMode::Off && self.node_count == 0 {
            return Err(Error::InvalidSetting(
                "synchronous node_count must be at least 1 when synchronous mode is on".into(),
            ));
        }
        if self.node_count > crate::choose::MAX_WANTED {
            return Err(Error::InvalidSetting(format!(
                "synchronous node_count {} exceeds {}",
                self.node_count,
                crate::choose::MAX_WANTED
            )));
        }
        if let Some(name) = self
            .pinned
            .iter()
            .find(|p| crate::enforce::is_reserved_name(p))
        {
            return Err(Error::InvalidSetting(format!(
                "{name:?} is reserved for RALE's pseudo-standbys and cannot be pinned"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(SyncConfig::default().validate().is_ok());
        let zero = SyncConfig {
            mode: SyncMode::On,
            node_count: 0,
            ..SyncConfig::default()
        };
        assert!(zero.validate().is_err());
        let huge = SyncConfig {
            node_count: u32::MAX,
            ..SyncConfig::default()
        };
        assert!(huge.validate().is_err());
        let reserved = SyncConfig {
            pinned: vec!["RALE_FENCE".into()],
            ..SyncConfig::default()
        };
        assert!(reserved.validate().is_err());
        assert_eq!("ANY".parse::<SyncMode>().ok(), Some(SyncMode::Quorum));
        assert_eq!(
            "remote_apply".parse::<CommitLevel>().ok(),
            Some(CommitLevel::RemoteApply)
        );
    }
}
