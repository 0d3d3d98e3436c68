//! Scratch PostgreSQL 15 cluster for tests and the catalog generator.
//!
//! Starts the installed server binaries in a temporary directory (Unix socket only, a
//! free port chosen at run time) and stops it with `pg_ctl -m immediate` on drop. When the
//! process runs as root, every server command runs as the `postgres` OS user and the
//! directory is handed to that user, because PostgreSQL refuses to run as root.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, bail};

/// Where Debian installs the PostgreSQL 15 server binaries.
pub const PG15_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running scratch cluster; stopped and removed on drop.
pub struct ScratchPg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
    running: bool,
}

impl ScratchPg {
    /// initdb + start a PostgreSQL 15 cluster (binaries from `RALE_PG_BIN` or [`PG15_BIN`]).
    pub fn start() -> anyhow::Result<Self> {
        let bin = std::env::var_os("RALE_PG_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(PG15_BIN));
        if !bin.join("postgres").exists() {
            bail!("no PostgreSQL server binaries in {}", bin.display());
        }
        let run_as = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .context("looking up the postgres OS user")?
                .context("running as root needs a `postgres` OS user")?;
            Some((user.uid, user.gid))
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("rale-params-pg")
            .tempdir()?;
        if let Some((uid, gid)) = run_as {
            nix::unistd::chown(dir.path(), Some(uid), Some(gid)).context("chown scratch dir")?;
        }
        let port = free_port()?;
        let mut pg = ScratchPg {
            dir,
            bin,
            port,
            run_as,
            running: false,
        };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "--no-sync".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
            ],
        )?;
        let opts = format!(
            "-p {} -k {} -c listen_addresses='' -c fsync=off",
            pg.port,
            pg.dir.path().display()
        );
        let log = pg.dir.path().join("server.log");
        pg.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-o".as_ref(),
                opts.as_ref(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "120".as_ref(),
                "start".as_ref(),
            ],
        )?;
        pg.running = true;
        Ok(pg)
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Directory holding the Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The port the server listens on (socket file name).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection string for tokio-postgres.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres connect_timeout=30",
            self.socket_dir().display(),
            self.port
        )
    }

    /// Connects as the superuser; the connection task runs on the current tokio runtime.
    pub async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, conn) = tokio_postgres::connect(&self.conninfo(), tokio_postgres::NoTls)
            .await
            .context("connecting to the scratch cluster")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Runs one server binary, as `postgres` when root; fails with its output on error.
    pub fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<Output> {
        let mut cmd = Command::new(self.bin.join(tool));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("LC_ALL", "C");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let out = cmd.output().with_context(|| format!("running {tool}"))?;
        if !out.status.success() {
            bail!(
                "{tool} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    /// Stops the server (immediate mode); idempotent.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let data = self.data_dir();
        let _ = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "stop".as_ref(),
            ],
        );
        // Give the postmaster's children a moment to leave before the dir is removed.
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for ScratchPg {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
