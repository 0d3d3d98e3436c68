//! `ramctrl backup …`: backups (start, list, jobs, status, restore, schedules) over
//! `/api/v1/backup/*`.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{CliError, Ctx, member_api_url, print_json, refused};

/// `ramctrl backup …`.
#[derive(Args, Debug, Clone)]
pub struct BackupArgs {
    /// Member whose agent runs the request (default: the first agent that answers).
    #[arg(long)]
    pub node: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub cmd: BackupCmd,
}

/// Backup subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum BackupCmd {
    /// Take a backup (a job).
    Start {
        /// full, differential or incremental.
        #[arg(long, default_value = "full")]
        kind: String,
        /// Wait until the job finished (polls its status).
        #[arg(long)]
        wait: bool,
    },
    /// Backups held by the tool.
    List,
    /// Jobs of the node.
    Jobs,
    /// One job.
    Status {
        /// Job id.
        id: String,
    },
    /// Restore a backup into a data directory (never the node's live one).
    Restore {
        /// Destination data directory (absolute).
        #[arg(long)]
        data_dir: String,
        /// Backup to restore (default: the newest that fits the target).
        #[arg(long)]
        backup_id: Option<String>,
        /// latest, immediate, time=2030-01-01T00:00:00Z, lsn=0/3000000 or name=POINT.
        #[arg(long, default_value = "latest")]
        target: String,
        /// promote, pause or shutdown.
        #[arg(long, default_value = "promote")]
        action: String,
        /// Turn WAL archiving off in the restored copy, so that it never pushes a new
        /// timeline into the repository it came from (for side copies and tests).
        #[arg(long)]
        no_archiving: bool,
        /// Wait until the job finished (polls its status).
        #[arg(long)]
        wait: bool,
    },
    /// The node's schedules (with their next run) and retention.
    Schedules,
    /// Replace the node's schedules and retention (kept across agent restarts; no
    /// `--entry` clears them).
    Schedule {
        /// `NAME|KIND|CRON|PLACEMENT`, e.g. `nightly|full|0 30 2 * * *|prefer_replica`.
        #[arg(long = "entry", value_name = "NAME|KIND|CRON|PLACEMENT")]
        entries: Vec<String>,
        /// Full backups to keep.
        #[arg(long)]
        keep_full: Option<u32>,
        /// Differential backups to keep.
        #[arg(long)]
        keep_diff: Option<u32>,
        /// Drop backups older than this, e.g. 7d, 36h.
        #[arg(long)]
        max_age: Option<String>,
    },
}

/// `time=…`, `lsn=…`, `name=…`, `latest`, `immediate` as the API's restore target.
pub fn parse_target(text: &str) -> Result<Value, CliError> {
    Ok(match text.split_once('=') {
        None if matches!(text, "latest" | "immediate") => json!({"type": text}),
        Some((kind @ ("time" | "lsn" | "name"), value)) => json!({"type": kind, "value": value}),
        _ => {
            return Err(CliError::Usage(format!(
                "invalid target {text:?}: latest, immediate, time=…, lsn=… or name=…"
            )));
        }
    })
}

fn humantime_secs(text: &str) -> Result<String, CliError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| CliError::Usage(format!("invalid age {text:?}: use e.g. 7d, 36h")))?;
    let secs = match unit {
        "" | "s" => n,
        "m" | "min" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        "w" => n * 604_800,
        other => return Err(CliError::Usage(format!("invalid age unit {other:?}"))),
    };
    Ok(format!("{secs}s"))
}

/// Prints the queued job, or with `wait` polls it (bounded: 24 h of 1 s polls) and
/// prints its final status; a job that did not succeed is a refusal (exit 1).
async fn queued_or_wait(
    ctx: &Ctx,
    at: Option<&str>,
    accepted: &rale_backup::api::JobAccepted,
    what: &str,
    wait: bool,
) -> Result<(), CliError> {
    let id = &accepted.job_id;
    if !wait {
        return if ctx.json {
            print_json(accepted)
        } else {
            println!("{what} job {id} queued");
            Ok(())
        };
    }
    for _ in 0..86_400 {
        let s = ctx.client.backup_status(at, &id.0).await?;
        if s.job.state.is_finished() {
            print_json(&s)?;
            return match s.job.state {
                rale_backup::JobState::Succeeded => Ok(()),
                _ => Err(refused(format!("{what} job {id} failed"))),
            };
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(refused(format!("{what} job {id} still running")))
}

/// Runs `ramctrl backup …`.
pub async fn run(args: BackupArgs, ctx: &Ctx) -> Result<(), CliError> {
    let at = match &args.node {
        Some(node) => Some(member_api_url(ctx, node).await?),
        None => None,
    };
    let at = at.as_deref();
    let c = &ctx.client;
    match args.cmd {
        BackupCmd::Start { kind, wait } => {
            let req = serde_json::from_value(json!({ "kind": kind }))
                .map_err(|e| CliError::Usage(format!("--kind: {e}")))?;
            let accepted = c.backup_start(at, &req).await?;
            queued_or_wait(ctx, at, &accepted, "backup", wait).await
        }
        BackupCmd::List => {
            let l = c.backup_list(at).await?;
            if ctx.json {
                return print_json(&l);
            }
            println!("{} backups ({})", l.backups.len(), l.tool);
            for b in &l.backups {
                println!(
                    "{:<36} {:<12?} {} .. {} {}",
                    b.id,
                    b.kind,
                    b.start_time.to_rfc3339(),
                    b.stop_time.to_rfc3339(),
                    b.size_bytes
                        .map(|s| format!("{s} bytes"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        BackupCmd::Jobs => print_json(&c.backup_jobs(at).await?),
        BackupCmd::Schedules => print_json(&c.backup_schedules(at).await?),
        BackupCmd::Status { id } => print_json(&c.backup_status(at, &id).await?),
        BackupCmd::Restore {
            data_dir,
            backup_id,
            target,
            action,
            no_archiving,
            wait,
        } => {
            let req = serde_json::from_value(json!({
                "data_dir": data_dir,
                "backup_id": backup_id,
                "target": parse_target(&target)?,
                "target_action": action,
                "disable_archiving": no_archiving,
            }))
            .map_err(|e| CliError::Usage(format!("restore: {e}")))?;
            let accepted = c.backup_restore(at, &req).await?;
            queued_or_wait(ctx, at, &accepted, "restore", wait).await
        }
        BackupCmd::Schedule {
            entries,
            keep_full,
            keep_diff,
            max_age,
        } => {
            let mut schedules = Vec::new();
            for e in &entries {
                let parts: Vec<&str> = e.split('|').map(str::trim).collect();
                let [name, kind, cron, placement] = parts[..] else {
                    return Err(CliError::Usage(format!(
                        "--entry {e:?}: expected NAME|KIND|CRON|PLACEMENT"
                    )));
                };
                schedules.push(
                    json!({"name": name, "kind": kind, "cron": cron, "placement": placement}),
                );
            }
            let max_age = max_age.as_deref().map(humantime_secs).transpose()?;
            let retention = (keep_full.is_some() || keep_diff.is_some() || max_age.is_some())
                .then(|| json!({"full_count": keep_full, "differential_count": keep_diff, "max_age": max_age}));
            let req =
                serde_json::from_value(json!({"schedules": schedules, "retention": retention}))
                    .map_err(|e| CliError::Usage(format!("schedule: {e}")))?;
            print_json(&c.backup_schedule(at, &req).await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_ages() {
        assert_eq!(parse_target("latest").ok(), Some(json!({"type": "latest"})));
        assert_eq!(
            parse_target("lsn=0/3000000").ok(),
            Some(json!({"type": "lsn", "value": "0/3000000"}))
        );
        assert!(parse_target("yesterday").is_err());
        assert_eq!(humantime_secs("7d").ok().as_deref(), Some("604800s"));
    }
}
