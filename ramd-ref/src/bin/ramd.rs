//! `ramd` — the RALE agent. Run one next to each PostgreSQL server:
//! `ramd --config /etc/rale/ramd.toml` (see docs/ramd.example.toml).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use ramd_ref::config::{LogFormat, NodeConfig};
use ramd_ref::daemon::{ConsensusStopped, PermanentFailure};
use tracing_subscriber::EnvFilter;

/// The RALE high-availability agent for one PostgreSQL node.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Path of the node's configuration file (TOML).
    #[arg(long, short, env = "RALE_CONFIG", required_unless_present_any = ["completions", "manpages"])]
    config: Option<PathBuf>,
    /// Only check the configuration file and exit.
    #[arg(long)]
    check: bool,
    /// Print a shell completion script for ramd and exit.
    #[arg(long, hide = true, value_name = "SHELL")]
    completions: Option<clap_complete::Shell>,
    /// Write the manual page ramd.8 into a directory and exit.
    #[arg(long, hide = true, value_name = "DIR")]
    manpages: Option<PathBuf>,
}

/// `--completions SHELL` and `--manpages DIR` (section 8: ramd is a daemon).
fn generate_docs(args: &Args) -> Result<bool> {
    use clap::CommandFactory;
    if let Some(shell) = args.completions {
        clap_complete::generate(shell, &mut Args::command(), "ramd", &mut std::io::stdout());
        return Ok(true);
    }
    if let Some(dir) = &args.manpages {
        std::fs::create_dir_all(dir)?;
        let command = Args::command().name("ramd");
        let man = clap_mangen::Man::new(command).section("8");
        let mut page = Vec::new();
        man.render(&mut page)?;
        std::fs::write(dir.join("ramd.8"), page)?;
        return Ok(true);
    }
    Ok(false)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if generate_docs(&args)? {
        return Ok(());
    }
    let Some(config) = args.config.clone() else {
        permanent("--config is required");
    };
    let cfg = match NodeConfig::load(&config) {
        Ok(cfg) => cfg,
        Err(e) => permanent(&format!("{e:#}")),
    };
    if args.check {
        // Exactly what the start checks (ramd_ref::daemon::prepare).
        match ramd_ref::daemon::prepare(&cfg) {
            Ok(p) => {
                println!("{}: configuration is valid", config.display());
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
            Err(e) => permanent(&format!("{}: {e:#}", config.display())),
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
    match rt.block_on(ramd_ref::daemon::run(cfg, config)) {
        Err(e) if e.downcast_ref::<PermanentFailure>().is_some() => permanent(&format!("{e:#}")),
        Err(e) if e.downcast_ref::<ConsensusStopped>().is_some() => {
            eprintln!("ramd: {e:#}");
            std::process::exit(ConsensusStopped::EXIT_CODE)
        }
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
