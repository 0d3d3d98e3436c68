//! `ramctrl sync …`: synchronous standbys (status, add, remove, any-n, count,
//! commit-level) over `/api/v1/sync-standbys/*`.

use clap::Subcommand;

use ramd_ref::api::types::{
    SyncAnyNRequest, SyncCommitLevelRequest, SyncCountRequest, SyncNodeRequest,
};

use super::{CliError, Ctx, print_json};

/// `ramctrl sync …`.
#[derive(Subcommand, Debug, Clone)]
pub enum SyncCmd {
    /// Configured, recorded and enforced synchronous standbys.
    Status,
    /// Pin a member into the synchronous set.
    Add {
        /// Member.
        node: String,
    },
    /// Un-pin a member.
    Remove {
        /// Member.
        node: String,
    },
    /// Quorum commit: ANY n.
    AnyN {
        /// Acknowledgements per commit.
        n: u32,
    },
    /// Number of synchronous standbys (FIRST n, or ANY n in quorum mode).
    Count {
        /// Standbys.
        n: u32,
    },
    /// synchronous_commit: off, local, remote_write, on, remote_apply.
    CommitLevel {
        /// Level.
        level: String,
    },
}

/// Runs `ramctrl sync …`.
pub async fn run(cmd: SyncCmd, ctx: &Ctx) -> Result<(), CliError> {
    let c = &ctx.client;
    let resp = match cmd {
        SyncCmd::Status => {
            let s = c.sync_status().await?;
            if ctx.json {
                return print_json(&s);
            }
            println!(
                "mode {} ({} standby(s), strict {}), synchronous_commit {}",
                s.mode, s.node_count, s.strict, s.commit_level
            );
            println!(
                "recorded: {:?} quorum {} (epoch {}{})",
                s.recorded.standbys,
                s.recorded.quorum,
                s.recorded.epoch,
                if s.recorded.current { "" } else { ", stale" }
            );
            println!(
                "enforced: {}",
                s.enforced_names
                    .as_deref()
                    .map(|n| format!("'{n}'"))
                    .unwrap_or_else(|| "unknown (no primary's agent answered)".into())
            );
            println!("pinned: {:?}", s.pinned);
            for m in &s.standbys {
                println!(
                    "  {:<16} {:<7} lag {:>12} {}{}",
                    m.name,
                    m.sync_state,
                    m.lag_bytes
                        .map(|l| l.to_string())
                        .unwrap_or_else(|| "unknown".into()),
                    if m.pinned { "pinned " } else { "" },
                    if m.nosync { "nosync" } else { "" }
                );
            }
            return Ok(());
        }
        SyncCmd::Add { node } => c.sync_change("add", &SyncNodeRequest { node }).await?,
        SyncCmd::Remove { node } => c.sync_change("remove", &SyncNodeRequest { node }).await?,
        SyncCmd::AnyN { n } => {
            c.sync_change(
                "any-n",
                &SyncAnyNRequest {
                    n,
                    min: None,
                    max: None,
                },
            )
            .await?
        }
        SyncCmd::Count { n } => c.sync_change("count", &SyncCountRequest { n }).await?,
        SyncCmd::CommitLevel { level } => {
            c.sync_change("commit-level", &SyncCommitLevelRequest { level })
                .await?
        }
    };
    if ctx.json {
        print_json(&resp)
    } else {
        println!(
            "{} (configuration version {})",
            resp.message, resp.config_version
        );
        Ok(())
    }
}
