//! `ramctrl`'s commands. Add a command by adding a variant to [`Cmd`] and an arm to
//! [`run`]; shared output helpers are in `render`, configuration editing in `edit`.

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, Subcommand};
use serde::Serialize;

use ramd_ref::api::types::{ReinitializeRequest, RestartRequest, SwitchoverRequest};
use ramd_ref::client::{Client, Error as ClientError};

pub mod backup;
pub mod config_gen;
pub mod edit;
pub mod members;
pub mod pg_parameters;
pub mod render;
mod restart;
pub mod sync;

/// Exit codes of `ramctrl`.
pub mod exit {
    /// Done.
    pub const OK: i32 = 0;
    /// The cluster refused (or the user declined).
    pub const REFUSED: i32 = 1;
    /// Bad usage.
    pub const USAGE: i32 = 2;
    /// No agent reachable.
    pub const UNREACHABLE: i32 = 3;
}

/// Why a command failed, and so its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The agent API failed or refused.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Bad usage.
    #[error("{0}")]
    Usage(String),
    /// The user said no.
    #[error("aborted")]
    Aborted,
    /// A local failure (editor, file).
    #[error("{0}")]
    Local(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Client(ClientError::Unreachable(_)) => exit::UNREACHABLE,
            CliError::Client(ClientError::Setup(_)) | CliError::Usage(_) => exit::USAGE,
            CliError::Client(ClientError::Protocol { .. }) => exit::UNREACHABLE,
            CliError::Client(_) | CliError::Aborted | CliError::Local(_) => exit::REFUSED,
        }
    }
}

/// Options of `switchover`.
#[derive(Args, Debug, Clone)]
pub struct SwitchoverArgs {
    /// Member to promote (default: the best candidate).
    #[arg(long)]
    pub to: Option<String>,
    /// The current primary (default: read from the cluster).
    #[arg(long)]
    pub from: Option<String>,
    /// Not before this time, ISO 8601 with a time zone (e.g. 2030-01-01T10:00:00+00:00).
    #[arg(long)]
    pub at: Option<String>,
    /// Do not ask for confirmation; accept a candidate that is not streaming right now.
    #[arg(long)]
    pub force: bool,
}

/// The commands. Other components add theirs here (`demo`, `member add|remove`,
/// `params …`, `backup …`, `sync …`).
#[derive(Subcommand, Debug, Clone)]
pub enum Cmd {
    /// Members, roles, states, timelines and lag (like `patronictl list`).
    List,
    /// Cluster status: leader, epoch, synchronous set, consensus, members.
    Status,
    /// Planned switchover to another member.
    Switchover(SwitchoverArgs),
    /// Cancel a pending (scheduled) switchover.
    CancelSwitchover,
    /// Manual failover to a member.
    Failover {
        /// Member to promote.
        #[arg(long)]
        to: String,
        /// Do not ask for confirmation; accept a candidate that is not streaming.
        #[arg(long)]
        force: bool,
    },
    /// Cluster history: failovers, switchovers, configuration changes, pauses.
    History,
    /// Maintenance mode on: no automatic failover.
    Pause,
    /// Maintenance mode off.
    Resume,
    /// Print the dynamic configuration (JSON).
    ShowConfig,
    /// Edit the dynamic configuration in $EDITOR (or with --set / --pg), show the diff,
    /// apply it.
    EditConfig {
        /// Set a key without an editor: `lease_ttl=3s`, `synchronous.mode=on`, `key=null`.
        #[arg(long = "set", short = 's', value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Set a PostgreSQL parameter: `work_mem=8MB` (`name=null` removes it).
        #[arg(long = "pg", short = 'p', value_name = "NAME=VALUE")]
        pg: Vec<String>,
        /// Apply without asking.
        #[arg(long)]
        force: bool,
    },
    /// Who follows whom.
    Topology,
    /// The primary's replication slots: type, plugin and database, active, WAL
    /// retained, who keeps them, and those above `slots_max_retained_wal_bytes`.
    Slots,
    /// Start a local playground: an N-node cluster with real PostgreSQL on loopback.
    /// Stays in the foreground; Ctrl-C stops everything and removes the directory.
    Demo {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Directory for the playground (default: a new temporary directory).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Keep the directory when stopping.
        #[arg(long)]
        keep: bool,
        /// Serve the agents over HTTPS with a CA generated for the playground.
        #[arg(long)]
        tls: bool,
        /// Consensus backend: `raft` (embedded, default) or `etcd` (a local
        /// three-member etcd started beside the nodes and stopped with them).
        #[arg(long, default_value = "raft")]
        consensus: ramd_ref::demo::DemoConsensus,
    },
    /// Restart a member's PostgreSQL, or with --all every member (replicas first).
    Restart {
        /// Member.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        node: Option<String>,
        /// Every member, one at a time, replicas first and the primary last, each back
        /// in service before the next.
        #[arg(long, conflicts_with_all = ["at", "cancel"])]
        all: bool,
        /// Only if a setting waits for a restart.
        #[arg(long)]
        pending: bool,
        /// Not now but at this time, ISO 8601 with a time zone (e.g.
        /// 2030-01-01T03:00:00Z); one scheduled restart per member.
        #[arg(long, conflicts_with = "cancel")]
        at: Option<String>,
        /// Cancel the member's scheduled restart.
        #[arg(long)]
        cancel: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Rebuild a replica from scratch.
    Reinit {
        /// Member.
        node: String,
        /// Do not ask for confirmation; go ahead even if PostgreSQL runs.
        #[arg(long)]
        force: bool,
    },
    /// Reload a member's configuration.
    Reload {
        /// Member.
        node: String,
    },
    /// PostgreSQL parameters: validate, info, list, optimize.
    #[command(subcommand)]
    Params(pg_parameters::ParamsCmd),
    /// Backups: start, list, jobs, status, restore, schedule.
    Backup(backup::BackupArgs),
    /// Synchronous standbys: status, add, remove, any-n, count, commit-level.
    #[command(subcommand)]
    Sync(sync::SyncCmd),
    /// Consensus members: list, add, remove (also spelt `member`).
    #[command(subcommand, visible_alias = "member")]
    Members(members::MembersCmd),
    /// Node configuration files: generate them for a new cluster.
    #[command(subcommand)]
    Config(config_gen::ConfigCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(hide = true)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write manual pages (ramctrl.1 and one per subcommand) into a directory.
    #[command(hide = true)]
    Manpages {
        /// Directory (created).
        dir: std::path::PathBuf,
    },
}

/// What every command gets.
pub struct Ctx {
    /// The API client.
    pub client: Client,
    /// Print JSON instead of tables.
    pub json: bool,
}

/// A refusal (exit 1) with `msg`.
fn refused(msg: impl Into<String>) -> CliError {
    CliError::Local(msg.into())
}

fn print_json<T: Serialize>(v: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| CliError::Local(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// Asks a yes/no question on the terminal; without a terminal, `--force` is required.
fn confirm(question: &str, force: bool) -> Result<(), CliError> {
    if force {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!(
            "{question} — not a terminal: use --force to confirm"
        )));
    }
    print!("{question} [y/N] ");
    std::io::stdout()
        .flush()
        .map_err(|e| CliError::Local(e.to_string()))?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Local(e.to_string()))?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(CliError::Aborted)
    }
}

async fn member_api_url(ctx: &Ctx, node: &str) -> Result<String, CliError> {
    let cluster = ctx.client.cluster().await?;
    let m = cluster
        .members
        .iter()
        .find(|m| m.name == node)
        .ok_or_else(|| {
            // The cluster's answer, as for a switchover to an unknown member (exit 1).
            refused(format!(
                "{node} is not a member of cluster {}",
                cluster.scope
            ))
        })?;
    Ok(m.api_url.trim_end_matches("/patroni").to_owned())
}

fn report(ctx: &Ctx, resp: &ramd_ref::api::types::ActionResponse) -> Result<(), CliError> {
    if ctx.json {
        print_json(resp)
    } else {
        println!("{}", resp.message);
        Ok(())
    }
}

/// Runs one command.
pub async fn run(cmd: Cmd, ctx: &Ctx) -> Result<(), CliError> {
    match cmd {
        Cmd::Config(c) => config_gen::run(c),
        Cmd::Completions { .. } | Cmd::Manpages { .. } => Err(CliError::Usage(
            "completions and manual pages are written by the ramctrl binary".into(),
        )),
        Cmd::Demo {
            nodes,
            dir,
            keep,
            tls,
            consensus,
        } => {
            let opts = ramd_ref::demo::DemoOptions {
                nodes,
                dir,
                keep,
                tls,
                consensus,
                json: ctx.json,
                ..Default::default()
            };
            ramd_ref::demo::run(opts)
                .await
                .map_err(|e| CliError::Local(format!("{e:#}")))
        }
        Cmd::List => {
            let cluster = ctx.client.cluster().await?;
            if ctx.json {
                return print_json(&cluster.members);
            }
            let status = ctx.client.cluster_status().await.ok();
            println!("{}", render::list(&cluster, status.as_ref()));
            Ok(())
        }
        Cmd::Slots => {
            let mut s = ctx.client.cluster_status().await?;
            // Only the primary's agent shows the slots (docs/slots.md): ask it.
            if s.slots.is_none()
                && let Some(leader) = s.leader.clone()
                && leader != s.this_node
            {
                let url = member_api_url(ctx, &leader).await?;
                s = ctx.client.cluster_status_at(&url).await?;
            }
            let Some(view) = s.slots else {
                return Err(refused(
                    "no slots to show: the cluster has no primary, or the primary's workload \
                     collection ([metrics] workload) is off or has not run yet",
                ));
            };
            if ctx.json {
                return print_json(&view);
            }
            println!("{}", render::slots(&view));
            Ok(())
        }
        Cmd::Status => {
            let s = ctx.client.cluster_status().await?;
            if ctx.json {
                return print_json(&s);
            }
            println!("{}", render::status(&s));
            Ok(())
        }
        Cmd::Switchover(a) => {
            let from = match a.from {
                Some(f) => f,
                None => ctx
                    .client
                    .cluster_status()
                    .await?
                    .leader
                    .ok_or_else(|| refused("the cluster has no primary: use failover --to"))?,
            };
            let target = a.to.clone().unwrap_or_else(|| "the best candidate".into());
            let when =
                a.at.as_deref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_else(|| " now".into());
            confirm(
                &format!("Switch over from {from} to {target}{when}?"),
                a.force,
            )?;
            let req = SwitchoverRequest {
                leader: Some(from),
                candidate: a.to,
                scheduled_at: a.at,
                force: a.force,
            };
            let (_, resp) = ctx.client.switchover(&req).await?;
            report(ctx, &resp)
        }
        Cmd::CancelSwitchover => report(ctx, &ctx.client.cancel_switchover().await?),
        Cmd::Failover { to, force } => {
            confirm(&format!("Fail over to {to}?"), force)?;
            let req = SwitchoverRequest {
                candidate: Some(to),
                force,
                ..SwitchoverRequest::default()
            };
            let (_, resp) = ctx.client.failover(&req).await?;
            report(ctx, &resp)
        }
        Cmd::History => {
            let h = ctx.client.history().await?;
            if ctx.json {
                return print_json(&h);
            }
            println!("{}", render::history(&h));
            Ok(())
        }
        Cmd::Pause => report(ctx, &ctx.client.pause().await?),
        Cmd::Resume => report(ctx, &ctx.client.resume().await?),
        Cmd::ShowConfig => {
            let (config, _) = ctx.client.config().await?;
            print_json(&config)
        }
        Cmd::EditConfig { set, pg, force } => edit_config(ctx, set, pg, force).await,
        Cmd::Topology => {
            let cluster = ctx.client.cluster().await?;
            let status = ctx.client.cluster_status().await?;
            if ctx.json {
                return print_json(&status.members);
            }
            println!("{}", render::topology(&cluster, &status));
            Ok(())
        }
        Cmd::Restart {
            node,
            all,
            pending,
            at,
            cancel,
            force,
        } => {
            let Some(node) = node.filter(|_| !all) else {
                return restart::all(ctx, pending, force).await;
            };
            let url = member_api_url(ctx, &node).await?;
            if cancel {
                let (_, resp) = ctx.client.cancel_restart(&url).await?;
                return report(ctx, &resp);
            }
            let when = at
                .as_deref()
                .map(|t| format!(" at {t}"))
                .unwrap_or_default();
            confirm(&format!("Restart PostgreSQL on {node}{when}?"), force)?;
            let req = RestartRequest {
                restart_pending: pending.then_some(true),
                schedule: at,
                ..RestartRequest::default()
            };
            let (_, resp) = ctx.client.restart(&url, &req).await?;
            report(ctx, &resp)
        }
        Cmd::Reinit { node, force } => {
            confirm(
                &format!("Throw away the data of {node} and clone it again?"),
                force,
            )?;
            let url = member_api_url(ctx, &node).await?;
            let req = ReinitializeRequest {
                force,
                from_leader: false,
            };
            let (_, resp) = ctx.client.reinitialize(&url, &req).await?;
            report(ctx, &resp)
        }
        Cmd::Reload { node } => {
            let url = member_api_url(ctx, &node).await?;
            let (_, resp) = ctx.client.reload(&url).await?;
            report(ctx, &resp)
        }
        Cmd::Params(c) => pg_parameters::run(c, ctx).await,
        Cmd::Backup(a) => backup::run(a, ctx).await,
        Cmd::Sync(c) => sync::run(c, ctx).await,
        Cmd::Members(c) => members::run(c, ctx).await,
    }
}

async fn edit_config(
    ctx: &Ctx,
    set: Vec<String>,
    pg: Vec<String>,
    force: bool,
) -> Result<(), CliError> {
    let (current, version) = ctx.client.config().await?;
    let old_text =
        serde_json::to_string_pretty(&current).map_err(|e| CliError::Local(e.to_string()))? + "\n";
    let (new_value, patch) = if set.is_empty() && pg.is_empty() {
        let edited = edit::run_editor(&old_text)?;
        let value: serde_json::Value = serde_json::from_str(&edited).map_err(|e| {
            CliError::Usage(format!("the edited configuration is not valid JSON: {e}"))
        })?;
        (value, None)
    } else {
        let patch = edit::set_patch(&set, &pg)?;
        let mut merged = current.clone();
        ramd_ref::api::merge_patch(&mut merged, &patch);
        (merged, Some(patch))
    };
    let new_text = serde_json::to_string_pretty(&new_value)
        .map_err(|e| CliError::Local(e.to_string()))?
        + "\n";
    let d = edit::diff(&old_text, &new_text);
    if d.is_empty() {
        println!("No changes.");
        return Ok(());
    }
    print!("{d}");
    confirm("Apply these changes?", force)?;
    let (applied, new_version) = match patch {
        Some(p) => ctx.client.patch_config(&p, version).await?,
        None => ctx.client.put_config(&new_value, version).await?,
    };
    if ctx.json {
        return print_json(&applied);
    }
    match new_version {
        Some(v) => println!("Configuration changed (version {v})."),
        None => println!("Configuration changed."),
    }
    Ok(())
}
