//! Configuration of [`super::local::LocalPostgres`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// How the agent runs and reaches its local PostgreSQL server.
///
/// Passwords are kept as given and redacted from `Debug`. The agent connects as
/// `superuser` through the Unix socket in `socket_dir` (local connections use `trust`:
/// the socket directory must be private, mode `0700`, see
/// [`LocalPostgres::new`](super::local::LocalPostgres::new)); standbys connect to their
/// upstream over TCP as `replication_user` with SCRAM.
#[derive(Clone, Serialize, Deserialize)]
pub struct LocalPostgresConfig {
    /// This member (its `application_name` on the upstream, its slot name there).
    pub node: NodeId,
    /// Data directory (absolute path).
    pub data_dir: PathBuf,
    /// PostgreSQL binaries; found automatically when `None` (see
    /// [`PgBinaries::discover`](crate::pg::PgBinaries::discover)).
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    /// `listen_addresses`, and the host other members reach this server at.
    #[serde(default = "default_host")]
    pub host: String,
    /// `port`.
    #[serde(default = "default_port")]
    pub port: u16,
    /// `unix_socket_directories` (one private directory, created `0700` if missing).
    pub socket_dir: PathBuf,
    /// OS user PostgreSQL runs as when the agent runs as root (default `postgres`);
    /// ignored when the agent is not root (tools then run as the agent's own user).
    #[serde(default)]
    pub os_user: Option<String>,
    /// Database superuser the agent connects as (created by `initdb -U`).
    #[serde(default = "default_superuser")]
    pub superuser: String,
    /// Its password (SCRAM, for TCP connections such as `pg_rewind`'s source).
    pub superuser_password: String,
    /// Role standbys stream as (`REPLICATION LOGIN`).
    #[serde(default = "default_replication_user")]
    pub replication_user: String,
    /// Its password.
    pub replication_password: String,
    /// Extra `postgresql.conf` settings, written with RALE's own (and overriding them).
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Extra `pg_hba.conf` lines, placed before RALE's loopback rules (e.g. a
    /// `host replication replicator 10.0.0.0/24 scram-sha-256` line for other hosts).
    #[serde(default)]
    pub pg_hba_extra: Vec<String>,
    /// Hosts (addresses or names) of the other members: their replication user and the
    /// superuser may connect from there (SCRAM), for streaming, `pg_basebackup` and
    /// `pg_rewind`. Loopback entries are skipped (already admitted).
    #[serde(default)]
    pub peer_hosts: Vec<String>,
    /// Extra `initdb` arguments (after RALE's `--encoding=UTF8 --locale=C`, so they win).
    #[serde(default)]
    pub initdb_args: Vec<String>,
    /// Longest time `status()` may take.
    #[serde(default = "default_status_timeout", with = "humantime_serde")]
    pub status_timeout: Duration,
    /// Bound of `pg_ctl start/stop`, promotion, detaching and SQL operations.
    #[serde(default = "default_operation_timeout", with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// Bound of `initdb`, `pg_basebackup` and `pg_rewind`.
    #[serde(default = "default_long_operation_timeout", with = "humantime_serde")]
    pub long_operation_timeout: Duration,
}

fn default_host() -> String {
    "127.0.0.1".to_string()
}
fn default_port() -> u16 {
    5432
}
fn default_superuser() -> String {
    "postgres".to_string()
}
fn default_replication_user() -> String {
    "replicator".to_string()
}
fn default_status_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_operation_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_long_operation_timeout() -> Duration {
    Duration::from_secs(3600)
}

impl LocalPostgresConfig {
    /// A configuration with the defaults: `127.0.0.1`, superuser `postgres`, replication
    /// user `replicator`, 1 s status timeout, 60 s operations, 1 h long operations.
    pub fn new(
        node: NodeId,
        data_dir: impl Into<PathBuf>,
        socket_dir: impl Into<PathBuf>,
        port: u16,
        superuser_password: impl Into<String>,
        replication_password: impl Into<String>,
    ) -> Self {
        Self {
            node,
            data_dir: data_dir.into(),
            bin_dir: None,
            host: default_host(),
            port,
            socket_dir: socket_dir.into(),
            os_user: None,
            superuser: default_superuser(),
            superuser_password: superuser_password.into(),
            replication_user: default_replication_user(),
            replication_password: replication_password.into(),
            parameters: BTreeMap::new(),
            pg_hba_extra: Vec::new(),
            peer_hosts: Vec::new(),
            initdb_args: Vec::new(),
            status_timeout: default_status_timeout(),
            operation_timeout: default_operation_timeout(),
            long_operation_timeout: default_long_operation_timeout(),
        }
    }
}

impl fmt::Debug for LocalPostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalPostgresConfig")
            .field("node", &self.node)
            .field("data_dir", &self.data_dir)
            .field("bin_dir", &self.bin_dir)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("socket_dir", &self.socket_dir)
            .field("os_user", &self.os_user)
            .field("superuser", &self.superuser)
            .field("superuser_password", &"<redacted>")
            .field("replication_user", &self.replication_user)
            .field("replication_password", &"<redacted>")
            .field("parameters", &self.parameters)
            .field("pg_hba_extra", &self.pg_hba_extra)
            .field("peer_hosts", &self.peer_hosts)
            .field("initdb_args", &self.initdb_args)
            .field("status_timeout", &self.status_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("long_operation_timeout", &self.long_operation_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_passwords() {
        let node = NodeId::new("n1").expect("valid name");
        let cfg = LocalPostgresConfig::new(node, "/d", "/s", 5432, "s3cret", "r3pl");
        let text = format!("{cfg:?}");
        assert!(!text.contains("s3cret") && !text.contains("r3pl"), "{text}");
        assert_eq!(cfg.status_timeout, Duration::from_secs(1));
    }

    #[test]
    fn deserializes_with_defaults() {
        let cfg: LocalPostgresConfig = serde_json::from_str(
            r#"{"node":"n1","data_dir":"/d","socket_dir":"/s","superuser_password":"a",
                "replication_password":"b","status_timeout":"250ms"}"#,
        )
        .expect("valid config");
        assert_eq!(cfg.port, 5432);
        assert_eq!(cfg.status_timeout, Duration::from_millis(250));
        assert_eq!(cfg.replication_user, "replicator");
    }
}
