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
        let sync_names = names
            .iter()
            .find(|(n, _)| n == "synchronous_standby_names")
            .map(|(_, v)| v.to_string());
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
        if let Some(value) = sync_names {
            Self::nudge_synchronous_standbys(&client, &value, self.cfg.operation_timeout).await?;
        }
        tracing::info!(node = %self.cfg.node, reloaded = ?report.reloaded,
            pending_restart = ?report.pending_restart, "applied parameters");
        Ok(report)
    }

    /// See [`super::PostgresControl::reset_parameters`]: `ALTER SYSTEM RESET` for each,
    /// reload; a `postmaster`-context name is reported as waiting for a restart.
    pub(super) async fn remove_parameters(&self, names: &[String]) -> Result<ApplyReport> {
        let mut valid = Vec::with_capacity(names.len());
        for name in names {
            valid.push(validate_parameter_name(name)?);
        }
        if valid.is_empty() {
            return Ok(ApplyReport::default());
        }
        let client = self.admin_client().await?;
        for name in &valid {
            Self::alter_system(&client, name, None).await?;
        }
        sql::execute(&client, "reset_parameters", "SELECT pg_reload_conf()").await?;
        let list = valid
            .iter()
            .map(|n| quote_literal(n))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sql::simple(
            &client,
            "reset_parameters",
            &format!(
                "SELECT name FROM pg_settings WHERE context = 'postmaster' \
                 AND lower(name) IN ({})",
                list.to_lowercase()
            ),
        )
        .await?;
        let restart: Vec<String> = rows
            .first()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r.get(0).map(str::to_lowercase))
            .collect();
        let mut report = ApplyReport::default();
        for name in valid {
            if restart.contains(&name.to_lowercase()) {
                report.pending_restart.push(name);
            } else {
                report.reloaded.push(name);
            }
        }
        tracing::info!(node = %self.cfg.node, reset = ?report.reloaded,
            pending_restart = ?report.pending_restart, "removed parameters");
        Ok(report)
    }

    /// After `synchronous_standby_names` changed on a primary, make every standby report
    /// its position again so that commits already waiting are released at once.
    ///
    /// A walsender re-reads its synchronous priority on reload, but waiting commits are
    /// only released when a standby next replies, and a caught-up standby replies only
    /// when new WAL arrives or `wal_receiver_status_interval` passes (10 s by default):
    /// measured here, a commit waited 10 s after its standby became synchronous. Once the
    /// reload has reached the backends, one tiny locally-committed transaction writes a
    /// commit record; standbys flush it and reply, and the waiters are released.
    async fn nudge_synchronous_standbys(
        client: &tokio_postgres::Client,
        value: &str,
        timeout: Duration,
    ) -> Result<()> {
        let in_recovery =
            sql::scalar(client, "set_parameters", "SELECT pg_is_in_recovery()::text").await?;
        if in_recovery.as_deref() != Some("false") {
            return Ok(());
        }
        let deadline = Instant::now() + timeout.min(Duration::from_secs(1));
        while Instant::now() < deadline {
            let seen = sql::scalar(
                client,
                "set_parameters",
                "SELECT current_setting('synchronous_standby_names')",
            )
            .await?;
            if seen.as_deref() == Some(value) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Separate statements: one multi-statement query is one implicit transaction,
        // whose commit would see the RESET and wait like any other.
        sql::execute(client, "set_parameters", "SET synchronous_commit = local").await?;
        sql::execute(client, "set_parameters", "SELECT pg_catalog.txid_current()").await?;
        sql::execute(client, "set_parameters", "RESET synchronous_commit").await
    }
}
