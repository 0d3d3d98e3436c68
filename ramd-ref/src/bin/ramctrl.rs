//! `ramctrl` — the command line of a RALE cluster, over the agents' REST API.
//!
//! Run: `ramctrl --url http://127.0.0.1:8008,http://127.0.0.1:8009 list`
//!
//! Exit codes: 0 done, 1 refused by the cluster (or declined), 2 bad usage,
//! 3 no agent reachable.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ramd_ref::client::{Client, ClientConfig};
use ramd_ref::config::Password;

#[path = "../cli/mod.rs"]
mod cli;

use cli::{CliError, Cmd, Ctx, exit};

/// Drive a RALE cluster through its agents' REST API.
#[derive(Parser, Debug)]
#[command(name = "ramctrl", version, about)]
struct Opts {
    /// Agent URLs, comma-separated; tried in order until one answers.
    #[arg(
        long,
        env = "RALE_URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8008",
        global = true
    )]
    url: Vec<String>,
    /// User for HTTP Basic authentication.
    #[arg(long, env = "RALE_USER", default_value = "rale", global = true)]
    user: String,
    /// Password for HTTP Basic authentication (prefer RALE_PASSWORD or --password-file).
    #[arg(long, env = "RALE_PASSWORD", hide_env_values = true, global = true)]
    password: Option<String>,
    /// File holding the password (first line).
    #[arg(
        long,
        env = "RALE_PASSWORD_FILE",
        global = true,
        conflicts_with = "password"
    )]
    password_file: Option<PathBuf>,
    /// PEM file of a CA to trust for https:// agents.
    #[arg(long, env = "RALE_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
    /// Bound on each request, e.g. 60s.
    #[arg(long, default_value = "60s", value_parser = humantime_duration, global = true)]
    timeout: Duration,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (use e.g. 30s, 2m, 250ms)"))
}

fn client(o: &Opts) -> Result<Client, CliError> {
    let password = match (&o.password, &o.password_file) {
        (Some(p), _) => Some(Password::new(p.clone())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("password file {}: {e}", path.display())))?;
            Some(Password::new(text.lines().next().unwrap_or("").to_owned()))
        }
        (None, None) => None,
    };
    let ca_cert_pem = o
        .ca_cert
        .as_ref()
        .map(|p| {
            std::fs::read(p).map_err(|e| CliError::Usage(format!("CA file {}: {e}", p.display())))
        })
        .transpose()?;
    Ok(Client::new(ClientConfig {
        urls: o.url.clone(),
        username: o.user.clone(),
        password,
        ca_cert_pem,
        request_timeout: o.timeout,
        ..ClientConfig::default()
    })?)
}

/// `ramctrl completions SHELL` and `ramctrl manpages DIR`: generated from the command
/// definition, offline.
fn generate_docs(cmd: &Cmd) -> Option<i32> {
    use clap::CommandFactory;
    match cmd {
        Cmd::Completions { shell } => {
            let mut command = Opts::command();
            clap_complete::generate(*shell, &mut command, "ramctrl", &mut std::io::stdout());
            Some(exit::OK)
        }
        Cmd::Manpages { dir } => {
            let written = std::fs::create_dir_all(dir)
                .and_then(|()| clap_mangen::generate_to(Opts::command(), dir));
            match written {
                Ok(()) => Some(exit::OK),
                Err(e) => {
                    eprintln!("ramctrl: writing manual pages to {}: {e}", dir.display());
                    Some(exit::REFUSED)
                }
            }
        }
        _ => None,
    }
}

#[tokio::main]
async fn main() {
    let opts = Opts::parse();
    if let Some(code) = generate_docs(&opts.cmd) {
        std::process::exit(code);
    }
    let code = match client(&opts) {
        Ok(client) => {
            let ctx = Ctx {
                client,
                json: opts.json,
            };
            match cli::run(opts.cmd, &ctx).await {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("ramctrl: {e}");
                    e.exit_code()
                }
            }
        }
        Err(e) => {
            eprintln!("ramctrl: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Opts::command().debug_assert();
    }

    #[test]
    fn parses_urls_and_commands() {
        let o = Opts::try_parse_from([
            "ramctrl",
            "--url",
            "http://a:1,http://b:2",
            "switchover",
            "--to",
            "n2",
            "--force",
        ])
        .expect("parse");
        assert_eq!(o.url, vec!["http://a:1", "http://b:2"]);
        assert!(
            matches!(o.cmd, Cmd::Switchover(ref a) if a.to.as_deref() == Some("n2") && a.force)
        );
        assert!(
            Opts::try_parse_from(["ramctrl", "failover"]).is_err(),
            "--to is required"
        );
        assert_eq!(humantime_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(humantime_duration("x").is_err());
    }
}
