//! The error type of the `rale` crate.

/// Errors of the `rale` crate.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A node name that is empty, too long or has characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid node name {0:?}: use 1-63 characters of letters, digits, '_', '-' and '.'")]
    InvalidNodeName(String),
    /// Text that is not a PostgreSQL LSN (`X/Y` in hexadecimal).
    #[error("invalid LSN {0:?}: expected two hexadecimal numbers as X/Y, e.g. 16/B374D848")]
    InvalidLsn(String),
    /// Other text that does not parse.
    #[error("parse error: {0}")]
    Parse(String),
    /// A configuration that breaks a rule; the message names it.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// This node cannot reach a majority of the consensus members.
    #[error("no consensus majority reachable: {0}")]
    NoMajority(String),
    /// A consensus operation failed.
    #[error("consensus: {0}")]
    Consensus(String),
    /// The consensus store refused this node's credentials or certificates.
    #[error("consensus store at {endpoints} refused access: {cause}")]
    AccessDenied {
        /// The store's endpoints.
        endpoints: String,
        /// The store's own reason.
        cause: String,
    },
    /// The consensus store holds another cluster (another name, another database
    /// system identifier) where this node expects its own.
    #[error("cluster identity mismatch at {location}: this node expects {expected}, found {found}")]
    IdentityMismatch {
        /// Where the other identity was found.
        location: String,
        /// What this node is configured for.
        expected: String,
        /// What the store holds.
        found: String,
    },
    /// A membership change was refused.
    #[error("membership change refused: {0}")]
    Membership(String),
    /// A PostgreSQL operation failed.
    #[error("PostgreSQL {operation} failed: {message}")]
    Postgres {
        /// The operation (`start`, `promote`, `pg_rewind`, …).
        operation: &'static str,
        /// What went wrong, with the tool's own message where there is one.
        message: String,
    },
    /// An operation did not finish in time.
    #[error("{operation} timed out after {after_ms} ms")]
    Timeout {
        /// The operation.
        operation: &'static str,
        /// How long we waited.
        after_ms: u64,
    },
    /// A file-system or process error.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Shorthand for a PostgreSQL failure.
    pub fn pg(operation: &'static str, message: impl Into<String>) -> Self {
        Error::Postgres {
            operation,
            message: message.into(),
        }
    }

    /// Shorthand for an I/O failure with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias of the `rale` crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
