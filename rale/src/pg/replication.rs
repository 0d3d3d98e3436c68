//! Replication operations of [`LocalPostgres`]: clone (`pg_basebackup`), rewind
//! (`pg_rewind`), follow/detach (`primary_conninfo` + reload), validated promotion and
//! physical replication slots.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use super::conf::{build_conninfo, quote_literal, validate_slot_name};
use super::datadir::{SERVER_LOG, primary_conninfo};
use super::local::{LocalPostgres, elapsed_ms};
use super::process::duration_ms;
use super::sql::{self, ConnectTarget};
use super::{PostgresControl, SlotPlan, StopMode, Upstream};
use crate::config::{SlotKind, SlotSpec};
use crate::{Error, Result};

/// How long a detach (`follow(None)`) waits for the WAL receiver to stop after
/// `primary_conninfo` was cleared before it restarts the server detached.
const DETACH_WAIT: Duration = Duration::from_secs(5);
/// Poll interval while waiting for promotion, detachment or a reload to land.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

impl LocalPostgres {
    /// See [`super::PostgresControl::clone_from`].
    pub(super) async fn clone_from_source(&self, source: &Upstream) -> Result<()> {
        self.bin.ensure_supported("clone_from")?;
        if self.is_running() {
            return Err(Error::pg(
                "clone_from",
                "the server is running: stop it before replacing its data directory",
            ));
        }
        let started = Instant::now();
        // The data directory is emptied before the copy: never do that when the source
        // cannot serve it (a primary that just died, a wrong address). The data of a
        // former primary may be the only copy of its last writes.
        let source_target = ConnectTarget {
            host: source.host.clone(),
            port: source.port,
            user: self.cfg.superuser.clone(),
            password: self.cfg.superuser_password.clone(),
        };
        let probe = async {
            let client = sql::connect(&source_target, self.cfg.operation_timeout, None).await?;
            sql::scalar(&client, "clone_from", "SELECT pg_is_in_recovery()::text").await
        };
        if let Err(e) = probe.await {
            return Err(Error::pg(
                "clone_from",
                format!(
                    "source {} ({}:{}) does not answer, the data directory is left as it is: {e}",
                    source.node, source.host, source.port
                ),
            ));
        }
        self.data.clear()?;
        self.runner.ensure_private_dir(&self.cfg.data_dir)?;
        let port = source.port.to_string();
        let args: Vec<OsString> = vec![
            "-D".into(),
            self.cfg.data_dir.clone().into_os_string(),
            "-h".into(),
            source.host.clone().into(),
            "-p".into(),
            port.into(),
            "-U".into(),
            self.cfg.replication_user.clone().into(),
            "--no-password".into(),
            "-X".into(),
            "stream".into(),
            "-c".into(),
            "fast".into(),
            // One syncfs after the copy instead of an fsync of every file.
            "--no-sync".into(),
        ];
        let app = format!("{}_clone", self.cfg.node.slot_name());
        let out = self
            .runner
            .run(
                "pg_basebackup",
                &self.bin.tool("pg_basebackup"),
                &args,
                &[
                    ("PGPASSWORD", &self.cfg.replication_password),
                    ("PGAPPNAME", &app),
                    ("PGCONNECT_TIMEOUT", "10"),
                ],
                self.cfg.long_operation_timeout,
            )
            .await;
        let out = match out.and_then(|o| o.check("pg_basebackup")) {
            Ok(o) => o,
            Err(e) => {
                // Leave an empty directory, not a half copy.
                if let Err(clear) = self.data.clear() {
                    tracing::warn!(node = %self.cfg.node, error = %clear, "could not empty the data directory after a failed clone");
                }
                return Err(e);
            }
        };
        drop(out);
        // The copy carries the source's server log and settings: replace them with ours.
        self.data.remove(SERVER_LOG)?;
        self.data.write_pg_hba(&self.runner, &self.cfg)?;
        self.data
            .write_managed_conf(&self.runner, &self.cfg, self.bin.major())?;
        self.data
            .write_standby_config(&self.runner, &self.cfg, Some(source))?;
        self.data.sync_to_disk().await?;
        self.set_upstream(Some(source));
        tracing::info!(node = %self.cfg.node, source = %source.node, elapsed_ms = elapsed_ms(started),
            "cloned from source");
        Ok(())
    }

    /// See [`super::PostgresControl::rewind`].
    ///
    /// Whatever the outcome, the data directory is left configured as a standby of
    /// `source` (`standby.signal` present), so it is never started as a second primary by
    /// mistake after a failed rewind.
    pub(super) async fn rewind_from(&self, source: &Upstream) -> Result<()> {
        self.bin.ensure_supported("rewind")?;
        if self.is_running() {
            return Err(Error::pg(
                "rewind",
                "the server is running: stop it before pg_rewind",
            ));
        }
        if self.data.system_id().is_none() {
            return Err(Error::pg("rewind", "the data directory is not initialised"));
        }
        let started = Instant::now();
        // pg_rewind needs the source's control file to show its current timeline: a
        // checkpoint right after promotion guarantees it.
        let source_target = ConnectTarget {
            host: source.host.clone(),
            port: source.port,
            user: self.cfg.superuser.clone(),
            password: self.cfg.superuser_password.clone(),
        };
        let checkpoint = async {
            let client = sql::connect(&source_target, self.cfg.operation_timeout, None).await?;
            sql::execute(&client, "rewind", "CHECKPOINT").await
        };
        if let Err(e) = checkpoint.await {
            tracing::warn!(node = %self.cfg.node, source = %source.node, error = %e,
                "could not checkpoint the rewind source; pg_rewind may see a stale timeline");
        }
        // pg_rewind itself runs crash recovery in single-user mode when the target was not
        // shut down cleanly (PostgreSQL 13+), which a standby.signal would prevent.
        self.data.remove("standby.signal")?;
        self.data.remove("recovery.signal")?;
        let port = source.port.to_string();
        let source_server = build_conninfo(&[
            ("host", &source.host),
            ("port", &port),
            ("user", &self.cfg.superuser),
            ("dbname", "postgres"),
            ("connect_timeout", "10"),
        ]);
        let args: Vec<OsString> = vec![
            OsString::from(format!(
                "--target-pgdata={}",
                self.cfg.data_dir.to_string_lossy()
            )),
            OsString::from(format!("--source-server={source_server}")),
            "--progress".into(),
            // One syncfs after it instead of an fsync of every file.
            "--no-sync".into(),
        ];
        let result = self
            .runner
            .run(
                "pg_rewind",
                &self.bin.tool("pg_rewind"),
                &args,
                &[("PGPASSWORD", &self.cfg.superuser_password)],
                self.cfg.long_operation_timeout,
            )
            .await
            .and_then(|o| o.check("pg_rewind"));
        // pg_rewind copied the source's configuration files: put ours back, as a standby.
        let configured = self
            .data
            .write_pg_hba(&self.runner, &self.cfg)
            .and_then(|()| {
                self.data
                    .write_managed_conf(&self.runner, &self.cfg, self.bin.major())
            })
            .and_then(|()| {
                self.data
                    .write_standby_config(&self.runner, &self.cfg, Some(source))
            });
        self.set_upstream(Some(source));
        let out = result?;
        configured?;
        // Logical slots of the abandoned history must not survive into the new one
        // (docs/slots.md); PostgreSQL 15's pg_rewind removes them already.
        let removed = self.remove_logical_slot_files()?;
        if !removed.is_empty() {
            tracing::info!(node = %self.cfg.node, slots = ?removed,
                "removed the logical slots of the rewound history; copies are made afresh from the primary");
        }
        self.data.sync_to_disk().await?;
        tracing::info!(node = %self.cfg.node, source = %source.node, elapsed_ms = elapsed_ms(started),
            output = %super::process::tail(out.stderr.trim(), 300), "rewound");
        Ok(())
    }

    /// See [`super::PostgresControl::follow`].
    pub(super) async fn follow_upstream(&self, upstream: Option<&Upstream>) -> Result<()> {
        if !self.is_running() {
            // Stopped: configure the files so the next start follows `upstream`.
            if self.data.system_id().is_none() {
                return Err(Error::pg("follow", "the data directory is not initialised"));
            }
            self.data
                .write_standby_config(&self.runner, &self.cfg, upstream)?;
            self.set_upstream(upstream);
            return Ok(());
        }
        let client = self.admin_client().await?;
        let in_recovery = sql::scalar(&client, "follow", "SELECT pg_is_in_recovery()").await?;
        if in_recovery.as_deref() != Some("t") {
            return match upstream {
                None => Ok(()),
                Some(u) => Err(Error::pg(
                    "follow",
                    format!(
                        "the server is a primary: it cannot follow {} without a stop and a \
                         rewind (or a clone)",
                        u.node
                    ),
                )),
            };
        }
        let conninfo = primary_conninfo(&self.cfg, upstream);
        Self::alter_system(&client, "primary_conninfo", Some(&conninfo)).await?;
        let slot = self.cfg.node.slot_name();
        Self::alter_system(&client, "primary_slot_name", Some(&slot)).await?;
        sql::execute(&client, "follow", "SELECT pg_reload_conf()").await?;
        self.data.write_upstream_note(&self.runner, upstream)?;
        self.set_upstream(upstream);
        if self.bin.major() < 13 {
            // PostgreSQL 12 reads primary_conninfo only at start.
            self.stop(StopMode::Fast).await?;
            return self.start(None).await;
        }
        if upstream.is_none() {
            let wait = self.cfg.operation_timeout.min(DETACH_WAIT);
            if let Err(e) = self.wait_receiver_stopped(&client, wait).await {
                // Seen in the fault campaign: a WAL receiver still streaming 60 s after
                // primary_conninfo was cleared, the agent blocked all that time. A
                // restart detaches for certain, and a replica can afford one.
                tracing::warn!(node = %self.cfg.node, error = %e,
                    "the WAL receiver did not stop after primary_conninfo was cleared: restarting the server detached");
                drop(client);
                self.stop(StopMode::Fast).await?;
                self.start(None).await?;
            }
        }
        tracing::info!(node = %self.cfg.node, upstream = ?upstream.map(|u| &u.node), "following");
        Ok(())
    }

    /// Waits (at most `wait`) until no WAL receiver streams.
    async fn wait_receiver_stopped(
        &self,
        client: &tokio_postgres::Client,
        wait: Duration,
    ) -> Result<()> {
        let started = Instant::now();
        let deadline = started + wait;
        loop {
            let active = sql::scalar(
                client,
                "follow",
                "SELECT count(*) FROM pg_stat_wal_receiver \
                 WHERE status IN ('streaming', 'starting', 'waiting', 'restarting')",
            )
            .await?;
            if active.as_deref() == Some("0") {
                tracing::info!(node = %self.cfg.node, elapsed_ms = elapsed_ms(started), "detached from upstream");
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    operation: "follow(None): waiting for the WAL receiver to stop",
                    after_ms: duration_ms(wait),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// See [`super::PostgresControl::promote`].
    pub(super) async fn promote_validated(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let deadline = started + timeout;
        let timed_out = || Error::Timeout {
            operation: "promote",
            after_ms: duration_ms(timeout),
        };
        if !self.is_running() {
            return Err(Error::pg("promote", "the server is not running"));
        }
        let client = tokio::time::timeout(timeout, self.admin_client())
            .await
            .map_err(|_| timed_out())??;
        let in_recovery = sql::scalar(&client, "promote", "SELECT pg_is_in_recovery()").await?;
        if in_recovery.as_deref() == Some("t") {
            // Ask without waiting inside the server; we poll ourselves, bounded by `timeout`.
            sql::execute(&client, "promote", "SELECT pg_promote(wait => false)").await?;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let step = tokio::time::timeout(left, async {
                sql::scalar(&client, "promote", "SELECT pg_is_in_recovery()").await
            })
            .await
            .map_err(|_| timed_out())??;
            if step.as_deref() == Some("f") {
                break;
            }
            if Instant::now() >= deadline {
                return Err(timed_out());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        let left_recovery_ms = elapsed_ms(started);
        // A real write: assigning a transaction id and committing writes WAL. Local commit
        // only: a synchronous_standby_names without standbys must not block validation.
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(
            left.max(Duration::from_millis(1)),
            sql::execute(
                &client,
                "promote",
                "BEGIN; SET LOCAL synchronous_commit = local; SELECT txid_current(); COMMIT;",
            ),
        )
        .await
        .map_err(|_| timed_out())??;
        // PostgreSQL removes standby.signal itself; make sure no leftover remains.
        self.data.remove("standby.signal")?;
        self.data.remove("recovery.signal")?;
        self.data.write_upstream_note(&self.runner, None)?;
        self.set_upstream(None);
        tracing::info!(node = %self.cfg.node, left_recovery_ms, elapsed_ms = elapsed_ms(started),
            "promoted; write validated");
        Ok(())
    }

    /// See [`super::PostgresControl::ensure_slots`]. Creates the members' physical slots
    /// and the permanent slots that are missing; drops only inactive physical slots of
    /// removed members. Any other slot — made by a DBA, a backup tool, a CDC consumer —
    /// is left alone, and so is every slot `plan.ignore` matches. A permanent slot that
    /// exists with another kind, plugin or database is reported, not recreated: its
    /// consumer's position would be lost.
    pub(super) async fn ensure_slot_plan(&self, plan: &SlotPlan) -> Result<()> {
        for s in plan
            .members
            .iter()
            .chain(plan.permanent.iter().map(|(n, _)| n))
            .chain(&plan.removed)
        {
            validate_slot_name(s)?;
        }
        let client = self.admin_client().await?;
        let rows = sql::simple(
            &client,
            "ensure_slots",
            "SELECT slot_name, slot_type, active::text, coalesce(plugin, ''), \
             coalesce(database, '') FROM pg_replication_slots WHERE NOT temporary",
        )
        .await?;
        let existing: Vec<ExistingSlot> = rows
            .first()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|r| ExistingSlot {
                name: r.get(0).unwrap_or_default().to_string(),
                kind: if r.get(1) == Some("logical") {
                    SlotKind::Logical
                } else {
                    SlotKind::Physical
                },
                active: r.get(2) == Some("true"),
                plugin: r.get(3).filter(|p| !p.is_empty()).map(str::to_string),
                database: r.get(4).filter(|d| !d.is_empty()).map(str::to_string),
            })
            .collect();
        let find = |name: &str| existing.iter().find(|e| e.name == name);
        let physical = SlotSpec {
            kind: SlotKind::Physical,
            plugin: None,
            database: None,
        };
        let wanted = plan
            .members
            .iter()
            .map(|n| (n, &physical))
            .chain(plan.permanent.iter().map(|(n, s)| (n, s)));
        let mut first_error = None;
        for (name, spec) in wanted {
            let (plugin, database) = (spec.plugin.as_deref(), spec.database.as_deref());
            if plan.ignored(name, spec.kind, plugin, database) {
                continue;
            }
            if let Some(e) = find(name) {
                if e.kind != spec.kind
                    || (spec.kind == SlotKind::Logical
                        && (e.plugin.as_deref() != plugin || e.database.as_deref() != database))
                {
                    tracing::warn!(node = %self.cfg.node, slot = %name, existing = ?e, wanted = ?spec,
                        "replication slot exists with other properties; left as it is");
                }
                continue;
            }
            let created = match (spec.kind, plugin, database) {
                (SlotKind::Logical, Some(plugin), Some(database)) => {
                    match self.admin_client_db(database).await {
                        Ok(db) => {
                            sql::execute(
                                &db,
                                "ensure_slots",
                                &format!(
                                    "SELECT pg_create_logical_replication_slot({}, {})",
                                    quote_literal(name),
                                    quote_literal(plugin)
                                ),
                            )
                            .await
                        }
                        Err(e) => Err(e),
                    }
                }
                _ => {
                    sql::execute(
                        &client,
                        "ensure_slots",
                        &format!(
                            "SELECT pg_create_physical_replication_slot({}, true)",
                            quote_literal(name)
                        ),
                    )
                    .await
                }
            };
            match created {
                Ok(()) => {
                    tracing::info!(node = %self.cfg.node, slot = %name, kind = ?spec.kind, "created replication slot")
                }
                // One slot that cannot be made (a plugin that is not installed, a database
                // that does not exist) must not hold back the others.
                Err(e) => {
                    tracing::warn!(node = %self.cfg.node, slot = %name, error = %e, "could not create replication slot");
                    first_error.get_or_insert(e);
                }
            }
        }
        for e in &existing {
            let droppable = e.kind == SlotKind::Physical
                && !e.active
                && plan.removed.contains(&e.name)
                && !plan.ignored(&e.name, e.kind, None, None);
            if !droppable {
                continue;
            }
            let dropped = sql::execute(
                &client,
                "ensure_slots",
                &format!(
                    "SELECT pg_drop_replication_slot({})",
                    quote_literal(&e.name)
                ),
            )
            .await;
            match dropped {
                Ok(()) => {
                    tracing::info!(node = %self.cfg.node, slot = %e.name, "dropped the replication slot of a removed member")
                }
                // It became active in between: keep it, the next call retries.
                Err(err) => {
                    tracing::warn!(node = %self.cfg.node, slot = %e.name, error = %err, "could not drop slot")
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// A row of `pg_replication_slots`.
#[derive(Debug)]
struct ExistingSlot {
    name: String,
    kind: SlotKind,
    active: bool,
    plugin: Option<String>,
    database: Option<String>,
}
