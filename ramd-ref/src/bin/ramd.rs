//! `ramd` — the RALE agent. Run one next to each PostgreSQL server:
//! `ramd --config /etc/rale/ramd.toml` (see docs/ramd.example.toml).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use ramd_ref::config::{LogFormat, NodeConfig};
use ramd_ref::daemon::PermanentFailure;
use tracing_subscriber::EnvFilter;

/// The RALE high-availability agent for one PostgreSQL node.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Path of the node's configuration file (TOML).
    #[arg(long, short, env = "RALE_CONFIG")]
    config: PathBuf,
    /// Only check the configuration file and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let cfg = match NodeConfig::load(&args.config) {
        Ok(cfg) => cfg,
        Err(e) => permanent(&format!("{e:#}")),
    };
    if args.check {
        // Exactly what the start checks (ramd_ref::daemon::prepare).
        match ramd_ref::daemon::prepare(&cfg) {
            Ok(p) => {
                println!("{}: configuration is valid", args.config.display());
                println!("  {}", p.pg_summary);
                match &p.etcd {
                    Some(e) => println!(
                        "  consensus: etcd at {} under {} (cluster {:?}); not contacted by --check",
                        e.endpoints_text(),
                        e.prefix,
                        e.cluster
                    ),
                    None => println!("  consensus: embedded Raft, {} peers", p.raft.peers.len()),
                }
                return Ok(());
            }
            Err(e) => permanent(&format!("{}: {e:#}", args.config.display())),
        }
    }
    let filter =
        EnvFilter::try_from_env("RALE_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    match cfg.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match rt.block_on(ramd_ref::daemon::run(cfg, args.config)) {
        Err(e) if e.downcast_ref::<PermanentFailure>().is_some() => permanent(&format!("{e:#}")),
        other => other,
    }
}

/// The log filter unless `RALE_LOG` says otherwise. openraft reports every failed
/// heartbeat to an unreachable peer from its replication modules, and every read whose
/// leadership check could not reach that peer from its core (an ERROR per read, though
/// the majority answered): dozens of lines a second for one member down. RALE's
/// consensus network logs one line when a peer becomes unreachable, a reminder every 30 s
/// and one line when it is back, and a read without a majority fails to its caller,
/// which logs it; so those openraft modules are off.
const DEFAULT_LOG: &str = "info,openraft=warn,openraft::replication=off,\
     openraft::engine::handler::replication_handler=off,openraft::core::raft_core=off";

/// Reports a failure that restarting cannot cure and exits with
/// [`PermanentFailure::EXIT_CODE`] (the systemd unit does not restart on it).
fn permanent(message: &str) -> ! {
    eprintln!("ramd: {message}");
    tracing::error!("{message}");
    std::process::exit(PermanentFailure::EXIT_CODE)
}
