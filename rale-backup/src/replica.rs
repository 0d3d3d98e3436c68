//! Building (or rebuilding) a streaming replica from the latest backup plus archived WAL,
//! with `pg_basebackup` as the fallback when the restore fails.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::exec::{Invocation, RunAs};
use crate::recovery::{append_auto_conf, empty_dir, remove_signal, touch_signal};
use crate::tool::BackupTool;
use crate::types::{RestoreRequest, StandbySetup};

/// Where `pg_basebackup` copies from when the backup route fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseBackupSource {
    /// Directory with `pg_basebackup`.
    pub pg_bin_dir: PathBuf,
    /// Primary host or socket directory.
    pub host: String,
    /// Primary port.
    pub port: u16,
    /// Replication user.
    pub user: String,
    /// Time limit, in seconds.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
}

fn default_timeout_s() -> u64 {
    6 * 3600
}

/// A replica to build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRequest {
    /// The replica's data directory; emptied first if it has content (a rebuild).
    pub data_dir: PathBuf,
    /// How it streams from the primary.
    pub standby: StandbySetup,
    /// `pg_basebackup` source, used when the restore fails (or no tool is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<BaseBackupSource>,
}

/// How the replica was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaMethod {
    /// Restored by the named backup tool.
    Backup {
        /// Tool name.
        tool: String,
    },
    /// Copied with `pg_basebackup`.
    PgBasebackup,
}

/// The result of [`build_replica`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaOutcome {
    /// How it was made.
    pub method: ReplicaMethod,
    /// Why the restore route failed, when the fallback was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_error: Option<String>,
    /// The end of the tool's output.
    pub output_tail: String,
}

/// Creates a standby data directory: restore of the latest backup as a standby through
/// `tool`, then `pg_basebackup` from `request.fallback` if that fails. The result has
/// `standby.signal` and `primary_conninfo` (and the slot) set; the server is not started.
pub async fn build_replica(
    tool: Option<&dyn BackupTool>,
    request: &ReplicaRequest,
    run_as: &RunAs,
) -> Result<ReplicaOutcome> {
    empty_dir(&request.data_dir)?;
    let mut restore_error = None;
    if let Some(tool) = tool {
        let mut restore = RestoreRequest::latest(&request.data_dir);
        restore.standby = Some(request.standby.clone());
        match tool.restore(&restore).await {
            Ok(out) => {
                finish_standby(request, run_as)?;
                tracing::info!(tool = tool.name(), data_dir = %request.data_dir.display(), "replica restored from backup");
                return Ok(ReplicaOutcome {
                    method: ReplicaMethod::Backup {
                        tool: tool.name().to_owned(),
                    },
                    restore_error: None,
                    output_tail: out.output_tail,
                });
            }
            Err(e) => {
                tracing::warn!(tool = tool.name(), error = %e, reason = "restore failed", "falling back to pg_basebackup");
                restore_error = Some(e.to_string());
                if request.fallback.is_none() {
                    return Err(e);
                }
                empty_dir(&request.data_dir)?;
            }
        }
    }
    let Some(src) = &request.fallback else {
        return Err(crate::Error::Config(
            "no backup tool and no pg_basebackup source".into(),
        ));
    };
    run_as.create_private_dir(&request.data_dir)?;
    let mut cmd = Invocation::new(
        "pg_basebackup",
        "replica",
        src.pg_bin_dir.join("pg_basebackup"),
    )
    .arg("--pgdata")
    .arg(&request.data_dir)
    .args([
        "--host",
        &src.host,
        "--port",
        &src.port.to_string(),
        "--username",
        &src.user,
    ])
    .args(["--wal-method=stream", "--checkpoint=fast", "--no-password"])
    .timeout(Duration::from_secs(src.timeout_s));
    if let Some(slot) = &request.standby.primary_slot_name {
        cmd = cmd.args(["--slot", slot]);
    }
    let out = cmd.run(run_as).await?;
    finish_standby(request, run_as)?;
    Ok(ReplicaOutcome {
        method: ReplicaMethod::PgBasebackup,
        restore_error,
        output_tail: out.combined_tail(),
    })
}

fn finish_standby(request: &ReplicaRequest, run_as: &RunAs) -> Result<()> {
    let mut settings = vec![(
        "primary_conninfo".to_owned(),
        request.standby.primary_conninfo.clone(),
    )];
    if let Some(slot) = &request.standby.primary_slot_name {
        settings.push(("primary_slot_name".to_owned(), slot.clone()));
    }
    append_auto_conf(&request.data_dir, &settings, run_as)?;
    remove_signal(&request.data_dir, "recovery.signal")?;
    touch_signal(&request.data_dir, "standby.signal", run_as)
}
