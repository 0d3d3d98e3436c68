//! `set_parameters` of [`LocalPostgres`]: `ALTER SYSTEM`, reload, and which settings wait
//! for a restart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::ApplyReport;
use super::conf::{quote_literal, reject_nul, validate_parameter_name};
use super::local::LocalPostgres;
use super::sql;
use crate::{Error, Result};

impl LocalPostgres {
    /// See [`super::PostgresControl::set_parameters`]: `ALTER SYSTEM` for each, then
    /// `pg_file_settings` tells which only a restart applies, then `pg_reload_conf()`.
    pub(super) async fn apply_parameters(
        &self,
        parameters: &BTreeMap<String, String>,
    ) -> Result<ApplyReport> {
        let mut names = Vec::with_capacity(parameters.len());
        for (name, value) in parameters {
            let name = validate_parameter_name(name)?;
            reject_nul(&name, value)?;
            names.push((name, value.as_str()));
        }
        if names.is_empty() {
            return Ok(ApplyReport::default());
        }
        let client = self.admin_client().await?;
        for (name, value) in &names {
            Self::alter_system(&client, name, Some(value)).await?;
        }
        // pg_file_settings re-reads the files now: `applied` is false (with an error) for
        // a value that only a restart can apply.
        let list = names
            .iter()
            .map(|(n, _)| quote_literal(n))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sql::simple(
            &client,
            "set_parameters",
            &format!(
                "SELECT name, applied::text, coalesce(error, '') FROM pg_file_settings \
                 WHERE name IN ({list}) AND sourcefile LIKE '%postgresql.auto.conf' \
                 ORDER BY seqno"
            ),
        )
        .await?;
        let mut pending: BTreeMap<String, bool> = BTreeMap::new();
        for row in rows.first().map(Vec::as_slice).unwrap_or_default() {
            let name = row.get(0).unwrap_or_default().to_string();
            let applied = row.get(1) == Some("true");
            let error = row.get(2).unwrap_or_default();
            if !applied && !error.is_empty() && !error.contains("could not be applied") {
                return Err(Error::pg("set_parameters", format!("{name}: {error}")));
            }
            pending.insert(name, !applied);
        }
        sql::execute(&client, "set_parameters", "SELECT pg_reload_conf()").await?;
        let mut report = ApplyReport::default();
        for (name, _) in names {
            if pending.get(&name).copied().unwrap_or(false) {
                report.pending_restart.push(name);
            } else {
                report.reloaded.push(name);
            }
        }
        // Let the reload land so that a following status() shows `pending_restart`.
        if !report.pending_restart.is_empty() {
            let deadline = Instant::now() + self.cfg.operation_timeout.min(Duration::from_secs(5));
            while Instant::now() < deadline {
                let any = sql::scalar(
                    &client,
                    "set_parameters",
                    "SELECT EXISTS (SELECT 1 FROM pg_settings WHERE pending_restart)::text",
                )
                .await?;
                if any.as_deref() == Some("true") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tracing::info!(node = %self.cfg.node, reloaded = ?report.reloaded,
            pending_restart = ?report.pending_restart, "applied parameters");
        Ok(report)
    }
}
