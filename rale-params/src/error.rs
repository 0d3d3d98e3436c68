//! The crate's error type.

/// Everything that can go wrong in `rale-params` other than a rejected value (a rejected
/// value is an ordinary answer, see [`crate::Verdict`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A PostgreSQL version outside 13..=17 or text that is not a version.
    #[error("unsupported PostgreSQL version {0:?} (supported: 13 to 17)")]
    UnsupportedVersion(String),
    /// An embedded data file is malformed (a build-time bug, caught by the unit tests).
    #[error("catalog data {file}:{line}: {message}")]
    CatalogData {
        /// Data file name.
        file: &'static str,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A request asked for something impossible (e.g. zero CPUs).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The live server could not be queried.
    #[cfg(feature = "live")]
    #[error("PostgreSQL {operation}: {source}")]
    Postgres {
        /// What we were doing.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
