//! The generated `[backup]` section.

use std::fmt::Write as _;
use std::str::FromStr;

use super::{ClusterSpec, GenerateError, q};

/// Backup tool of the generated `[backup]` section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupChoice {
    /// No `[backup]` section.
    None,
    /// pgBackRest, one repository shared by every node, nightly full backup on the
    /// primary.
    PgBackRest,
    /// Barman, nightly backup on the primary.
    Barman,
}

impl FromStr for BackupChoice {
    type Err = GenerateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(BackupChoice::None),
            "pgbackrest" => Ok(BackupChoice::PgBackRest),
            "barman" => Ok(BackupChoice::Barman),
            other => Err(GenerateError::Choice(format!(
                "backup tool {other:?}: expected none, pgbackrest or barman"
            ))),
        }
    }
}

pub(super) fn backup_section(
    s: &mut String,
    spec: &ClusterSpec,
    state_dir: &str,
    data_dir: &str,
    pg_port: u16,
) {
    let socket = format!("{state_dir}/socket");
    match spec.backup {
        BackupChoice::None => {
            let _ = writeln!(
                s,
                "\n# Backups: regenerate with --backup pgbackrest|barman, or see docs/configuration.md."
            );
        }
        BackupChoice::PgBackRest => {
            let _ = writeln!(
                s,
                "\n# Backups with pgBackRest. ramd turns WAL archiving on (archive_command) unless\n\
                 # [postgresql.parameters] sets it, and creates the stanza once this node is primary.\n\
                 [backup]\n\
                 tool = \"pgbackrest\"\n\
                 job_dir = {job_dir}\n\n\
                 [backup.pgbackrest]\n\
                 stanza = \"rale\"                # the same on every node\n\
                 repo_path = {repo}   # shared by every node (NFS, or a repository host)\n\
                 base_dir = {base}\n\
                 pg_data_dir = {data}\n\
                 pg_port = {pg_port}\n\
                 pg_socket_dir = {socket}\n\n\
                 [[backup.schedules]]\n\
                 name = \"nightly\"\n\
                 kind = \"full\"\n\
                 cron = \"0 30 2 * * *\"          # UTC, seconds first\n\
                 placement = \"primary\"\n\n\
                 [backup.retention]\n\
                 full_count = 2",
                job_dir = q(&format!("{state_dir}/backup-jobs")),
                repo = q(&format!("{}/pgbackrest", spec.backup_dir)),
                base = q(&format!("{state_dir}/pgbackrest")),
                data = q(data_dir),
                socket = q(&socket),
            );
        }
        BackupChoice::Barman => {
            let _ = writeln!(
                s,
                "\n# Backups with Barman (driven locally by ramd).\n\
                 [backup]\n\
                 tool = \"barman\"\n\
                 job_dir = {job_dir}\n\n\
                 [backup.barman]\n\
                 server_name = \"rale\"\n\
                 base_dir = {base}\n\
                 conninfo = {conninfo}\n\n\
                 [[backup.schedules]]\n\
                 name = \"nightly\"\n\
                 kind = \"full\"\n\
                 cron = \"0 30 2 * * *\"          # UTC, seconds first\n\
                 placement = \"primary\"\n\n\
                 [backup.retention]\n\
                 full_count = 2",
                job_dir = q(&format!("{state_dir}/backup-jobs")),
                base = q(&format!("{}/barman", spec.backup_dir)),
                conninfo = q(&format!(
                    "host={socket} port={pg_port} user=postgres dbname=postgres"
                )),
            );
        }
    }
}
