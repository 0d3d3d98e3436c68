//! `ramctrl config generate`: writes one commented `ramd` file per node
//! ([`ramd_ref::config::generate`]), with generated secrets.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use ramd_ref::config::generate::{BackupChoice, ClusterSpec, Profile, Secrets, generate};

use super::CliError;

/// `ramctrl config …`.
#[derive(Subcommand, Debug, Clone)]
pub enum ConfigCmd {
    /// Write a complete, commented configuration file for every node of a new cluster
    /// (`<name>.toml` in --out, mode 0600, with generated secrets).
    Generate(GenerateArgs),
}

/// Options of `config generate`.
#[derive(Args, Debug, Clone)]
pub struct GenerateArgs {
    /// Number of nodes (names node1…nodeN unless --names is given).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Node names, comma-separated (their count sets the number of nodes).
    #[arg(long, value_delimiter = ',')]
    pub names: Vec<String>,
    /// Hosts, comma-separated: one per node, or one for all (then ports count up).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    pub hosts: Vec<String>,
    /// API port (of the first node when all share one host).
    #[arg(long, default_value_t = 8008)]
    pub api_port: u16,
    /// PostgreSQL port (of the first node when all share one host).
    #[arg(long, default_value_t = 5432)]
    pub pg_port: u16,
    /// Data directory; `{name}` becomes the node's name.
    #[arg(long, default_value = "/var/lib/postgresql/15/{name}")]
    pub data_dir: String,
    /// Agent state directory; `{name}` becomes the node's name.
    #[arg(long, default_value = "/var/lib/rale/{name}")]
    pub state_dir: String,
    /// PostgreSQL binaries (default: found when ramd starts).
    #[arg(long)]
    pub bin_dir: Option<String>,
    /// Environment profile: dev, staging or prod (timings, logs, synchronous mode).
    #[arg(long, default_value = "prod")]
    pub profile: String,
    /// Serve the API over HTTPS (certificates `<tls-dir>/<name>.crt|.key`, `ca.crt`).
    #[arg(long)]
    pub tls: bool,
    /// Where the TLS files are.
    #[arg(long, default_value = "/etc/rale/tls")]
    pub tls_dir: String,
    /// Backup tool: none, pgbackrest or barman.
    #[arg(long, default_value = "none")]
    pub backup: String,
    /// Directory every node reaches for backups (pgBackRest repository, Barman home).
    #[arg(long, default_value = "/var/lib/rale-backup")]
    pub backup_dir: String,
    /// `shared_buffers` of every node (default: the profile's: dev 128MB, staging 1GB,
    /// prod 4GB).
    #[arg(long, value_name = "SIZE")]
    pub shared_buffers: Option<String>,
    /// Directory to write the files to (created); without it the files are printed.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace files that exist.
    #[arg(long)]
    pub force: bool,
}

impl GenerateArgs {
    /// The generator's inputs.
    pub fn spec(&self) -> Result<ClusterSpec, CliError> {
        let usage = |e: ramd_ref::config::generate::GenerateError| CliError::Usage(e.to_string());
        let names = if self.names.is_empty() {
            (1..=self.nodes).map(|i| format!("node{i}")).collect()
        } else {
            self.names.clone()
        };
        Ok(ClusterSpec {
            names,
            hosts: self.hosts.clone(),
            api_port: self.api_port,
            pg_port: self.pg_port,
            data_dir: self.data_dir.clone(),
            state_dir: self.state_dir.clone(),
            bin_dir: self.bin_dir.clone(),
            profile: self.profile.parse::<Profile>().map_err(usage)?,
            tls: self.tls,
            tls_dir: self.tls_dir.clone(),
            backup: self.backup.parse::<BackupChoice>().map_err(usage)?,
            backup_dir: self.backup_dir.clone(),
            shared_buffers: self.shared_buffers.clone(),
        })
    }
}

/// Runs `config …`.
pub fn run(cmd: ConfigCmd) -> Result<(), CliError> {
    match cmd {
        ConfigCmd::Generate(args) => {
            let spec = args.spec()?;
            let files =
                generate(&spec, &Secrets::random()).map_err(|e| CliError::Usage(e.to_string()))?;
            let Some(dir) = &args.out else {
                for f in &files {
                    println!("# ===== {}.toml =====\n{}", f.name, f.text);
                }
                return Ok(());
            };
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::Local(format!("creating {}: {e}", dir.display())))?;
            for f in &files {
                let path = dir.join(format!("{}.toml", f.name));
                let mut open = std::fs::OpenOptions::new();
                open.write(true).mode(0o600);
                if args.force {
                    open.create(true).truncate(true);
                } else {
                    open.create_new(true);
                }
                let mut file = open.open(&path).map_err(|e| {
                    CliError::Local(format!(
                        "writing {}: {e}{}",
                        path.display(),
                        if e.kind() == std::io::ErrorKind::AlreadyExists {
                            " (use --force to replace it)"
                        } else {
                            ""
                        }
                    ))
                })?;
                file.write_all(f.text.as_bytes())
                    .map_err(|e| CliError::Local(format!("writing {}: {e}", path.display())))?;
                println!("{}", path.display());
            }
            eprintln!(
                "{} files, profile {}; check each with `ramd --config FILE --check` on its host",
                files.len(),
                spec.profile.name()
            );
            Ok(())
        }
    }
}
