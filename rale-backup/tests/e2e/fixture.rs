//! Real PostgreSQL 15 servers in temp dirs for the end-to-end tests. Runs the binaries as
//! the `postgres` OS user when the tests run as root; stops every server it started with
//! `pg_ctl -m immediate` on drop.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use rale_backup::ServerParameter;
use rale_backup::exec::RunAs;
use tempfile::TempDir;

/// PostgreSQL 15 binaries.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The OS user servers and tools run as.
pub fn run_as() -> RunAs {
    RunAs::postgres_if_root().expect("postgres user exists when running as root")
}

/// A scratch directory usable by the `postgres` user, removed on drop.
pub fn scratch() -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("rale-backup-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    run_as().chown(dir.path()).expect("chown scratch");
    dir
}

/// A free TCP port on loopback (used for the socket name too).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn pg_command(run_as: &RunAs, program: &str) -> Command {
    let mut c = Command::new(Path::new(PG_BIN).join(program));
    if let (Some(uid), Some(gid)) = (run_as.uid, run_as.gid) {
        c.uid(uid).gid(gid);
    }
    c.current_dir("/").env("LC_ALL", "C");
    c
}

fn run(mut c: Command, what: &str) -> Result<String> {
    let out = c.output().with_context(|| format!("spawn {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One running PostgreSQL server.
pub struct Pg {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Unix socket directory.
    pub sock_dir: PathBuf,
    /// Port.
    pub port: u16,
    log_file: PathBuf,
    run_as: RunAs,
    running: bool,
}

impl Pg {
    /// `initdb` a new primary under `base/name` with `params` (e.g. a tool's archive
    /// settings) and starts it.
    pub fn init_primary(base: &Path, name: &str, params: &[ServerParameter]) -> Result<Pg> {
        Self::init_primary_on(base, name, free_port(), params)
    }

    /// Like [`Self::init_primary`] on a port chosen by the caller (tools are configured
    /// with the port before the server exists).
    pub fn init_primary_on(
        base: &Path,
        name: &str,
        port: u16,
        params: &[ServerParameter],
    ) -> Result<Pg> {
        let run_as = run_as();
        let data_dir = base.join(name);
        let sock_dir = base.join(format!("{name}-sock"));
        run_as.create_private_dir(&sock_dir)?;
        let mut c = pg_command(&run_as, "initdb");
        c.args(["-D"]).arg(&data_dir).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(c, "initdb")?;
        let mut conf = String::from(
            "\n# rale-backup test fixture\nlisten_addresses = ''\nwal_level = replica\nmax_wal_senders = 10\n\
             fsync = off\nsynchronous_commit = on\nshared_buffers = 32MB\nwal_keep_size = 256MB\n\
             checkpoint_timeout = 30min\nmax_wal_size = 1GB\n",
        );
        conf.push_str(&rale_backup::types::render_conf(params));
        let conf_path = data_dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text)?;
        let mut pg = Pg {
            data_dir,
            sock_dir,
            port,
            log_file: base.join(format!("{name}.log")),
            run_as,
            running: false,
        };
        pg.start()?;
        Ok(pg)
    }

    /// Starts an existing (e.g. restored) data directory on a fresh port and socket dir.
    pub fn start_existing(base: &Path, name: &str, data_dir: &Path) -> Result<Pg> {
        let run_as = run_as();
        let sock_dir = base.join(format!("{name}-sock"));
        run_as.create_private_dir(&sock_dir)?;
        let mut pg = Pg {
            data_dir: data_dir.to_owned(),
            sock_dir,
            port: free_port(),
            log_file: base.join(format!("{name}.log")),
            run_as,
            running: false,
        };
        pg.start()?;
        Ok(pg)
    }

    /// `pg_ctl start -w`.
    pub fn start(&mut self) -> Result<()> {
        let log = std::fs::File::create(&self.log_file)?;
        drop(log);
        self.run_as.chown(&self.log_file)?;
        let mut c = pg_command(&self.run_as, "pg_ctl");
        c.args(["start", "-w", "-t", "120", "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .arg("-o")
            .arg(format!("-p {} -k {}", self.port, self.sock_dir.display()));
        match run(c, "pg_ctl start") {
            Ok(_) => {
                self.running = true;
                Ok(())
            }
            Err(e) => bail!("{e}\nserver log:\n{}", self.log_tail()),
        }
    }

    /// `pg_ctl stop -m fast`.
    pub fn stop(&mut self) -> Result<()> {
        let mut c = pg_command(&self.run_as, "pg_ctl");
        c.args(["stop", "-w", "-m", "fast", "-D"])
            .arg(&self.data_dir);
        run(c, "pg_ctl stop")?;
        self.running = false;
        Ok(())
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// libpq connection string (socket).
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.sock_dir.display(),
            self.port
        )
    }

    /// A connected client.
    pub async fn client(&self) -> Result<tokio_postgres::Client> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(&self.sock_dir)
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(10));
        let (client, conn) = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .context("connect")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Runs SQL statements.
    pub async fn exec(&self, sql: &str) -> Result<()> {
        self.client()
            .await?
            .batch_execute(sql)
            .await
            .with_context(|| format!("exec {sql}"))?;
        Ok(())
    }

    /// One bigint.
    pub async fn query_i64(&self, sql: &str) -> Result<i64> {
        let row = self
            .client()
            .await?
            .query_one(sql, &[])
            .await
            .with_context(|| format!("query {sql}"))?;
        Ok(row.get(0))
    }

    /// One text.
    pub async fn query_text(&self, sql: &str) -> Result<String> {
        let row = self
            .client()
            .await?
            .query_one(sql, &[])
            .await
            .with_context(|| format!("query {sql}"))?;
        Ok(row.get(0))
    }

    /// The server's clock now, with microseconds.
    pub async fn clock(&self) -> Result<DateTime<Utc>> {
        let t = self
            .query_text(r#"select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#)
            .await?;
        Ok(DateTime::parse_from_rfc3339(&t)?.with_timezone(&Utc))
    }

    /// Switches WAL and waits (bounded) until the closed segment is archived.
    pub async fn switch_wal_and_wait_archived(&self) -> Result<()> {
        let seg = self
            .query_text("select pg_walfile_name(pg_switch_wal())")
            .await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let last = self
                .query_text("select coalesce(last_archived_wal, '') from pg_stat_archiver")
                .await?;
            if !last.is_empty() && last.get(8..) >= seg.get(8..) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "segment {seg} not archived in 120 s; log:\n{}",
            self.log_tail()
        )
    }

    /// Waits (bounded) until the server accepts connections and has left recovery.
    pub async fn wait_promoted(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(c) = self.client().await
                && let Ok(row) = c.query_one("select pg_is_in_recovery()", &[]).await
                && !row.get::<_, bool>(0)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "server still in recovery after 120 s; log:\n{}",
            self.log_tail()
        )
    }

    /// Waits (bounded) until `sql` returns `expected`.
    pub async fn wait_for_i64(&self, sql: &str, expected: i64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(v) = self.query_i64(sql).await {
                if v == expected {
                    return Ok(());
                }
                last = Some(v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "{sql} stayed at {last:?}, expected {expected}; log:\n{}",
            self.log_tail()
        )
    }

    /// Runs a PostgreSQL client program (pgbench, …) against this server.
    pub fn run_bin(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut c = pg_command(&self.run_as, program);
        c.args(["-h"])
            .arg(&self.sock_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres"])
            .args(args);
        run(c, program)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if self.running {
            let mut c = pg_command(&self.run_as, "pg_ctl");
            c.args(["stop", "-w", "-m", "immediate", "-D"])
                .arg(&self.data_dir);
            let _ = c.output();
        }
    }
}

/// A restore destination inside `base` (not created: tools create it).
pub fn dest(base: &Path, name: &str) -> PathBuf {
    base.join(name)
}
