//! The [`BackupTool`] seam.

use async_trait::async_trait;

use crate::Result;
use crate::types::{
    BackupInfo, BackupKind, BackupOutcome, CheckReport, ExpireOutcome, RestoreOutcome,
    RestoreRequest, Retention, ServerParameter,
};

/// A backup tool driven by RALE: pgBackRest, Barman, or commands of the integrator's own.
///
/// Object-safe and `Send + Sync`: hold it as `Arc<dyn BackupTool>`. Every method that runs
/// the tool reports a failure as [`crate::Error::ToolFailed`] carrying the tail of the
/// tool's own error output.
#[async_trait]
pub trait BackupTool: Send + Sync {
    /// Short name used in job records and logs (`pgbackrest`, `barman`, `custom`).
    fn name(&self) -> &str;

    /// The backup kinds this tool can take.
    fn supported_kinds(&self) -> &[BackupKind];

    /// PostgreSQL settings the server must have for this tool to work (WAL archiving).
    /// The daemon applies them; those with `restart_required` need a restart.
    fn server_parameters(&self) -> Vec<ServerParameter>;

    /// One-time, idempotent preparation of the repository (pgBackRest `stanza-create`,
    /// Barman directories). Needs a running server with [`Self::server_parameters`].
    async fn prepare(&self) -> Result<()>;

    /// Checks the configuration end to end (archiving works, repository reachable).
    async fn check(&self) -> Result<CheckReport>;

    /// Takes a backup of the configured server.
    async fn backup(&self, kind: BackupKind) -> Result<BackupOutcome>;

    /// Lists the backups in the repository, oldest first.
    async fn list(&self) -> Result<Vec<BackupInfo>>;

    /// Restores into a data directory. The server is not started.
    async fn restore(&self, request: &RestoreRequest) -> Result<RestoreOutcome>;

    /// Removes backups beyond the retention rules.
    async fn expire(&self, retention: &Retention) -> Result<ExpireOutcome>;
}
