//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while driving a backup tool, a job or a schedule.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tool ran and exited unsuccessfully; `stderr_tail` is the end of what it said.
    #[error("{tool} {command} failed ({status}): {stderr_tail}")]
    ToolFailed {
        /// Tool name (`pgbackrest`, `barman`, `custom`, `pg_basebackup`).
        tool: String,
        /// The sub-command or hook that failed (`backup`, `restore`, …).
        command: String,
        /// Exit status as printed by the OS (`exit status: 1`, `signal: 9`).
        status: String,
        /// The last lines of the tool's standard error (or output when stderr was empty).
        stderr_tail: String,
    },
    /// The program could not be started at all.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// Program that failed to start.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The program ran longer than allowed and was killed.
    #[error("{program} timed out after {timeout_ms} ms: {stderr_tail}")]
    Timeout {
        /// Program that was killed.
        program: String,
        /// The limit that was exceeded.
        timeout_ms: u64,
        /// The last lines of its standard error.
        stderr_tail: String,
    },
    /// A tool's output could not be understood.
    #[error("cannot parse {what}: {reason}")]
    Parse {
        /// What was being parsed (`pgbackrest info`, …).
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we tried (`write`, `create directory`, …).
        action: &'static str,
        /// Path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Our own configuration (or a request) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The tool cannot do what was asked (e.g. incremental backups with Barman's
    /// `postgres` method).
    #[error("{tool} does not support {what}")]
    Unsupported {
        /// Tool name.
        tool: String,
        /// What was asked.
        what: String,
    },
    /// No backup exists to restore from, or the named one does not exist.
    #[error("backup not found: {0}")]
    BackupNotFound(String),
    /// The job queue of this node is full.
    #[error("too many queued jobs on this node ({queued}); try again later")]
    Busy {
        /// Jobs queued or running.
        queued: usize,
    },
    /// No job with this id.
    #[error("job not found: {0}")]
    JobNotFound(String),
    /// A cron expression was rejected.
    #[error("invalid cron expression {expr:?}: {reason}")]
    Cron {
        /// The expression.
        expr: String,
        /// The parser's reason.
        reason: String,
    },
    /// The named OS user does not exist or could not be looked up.
    #[error("OS user {0:?} not found")]
    UserNotFound(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(what: impl Into<String>, reason: impl ToString) -> Self {
        Error::Parse {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
