//! The data directory as files: its state (empty, initialised, running), the files RALE
//! manages in it (`rale.conf`, `pg_hba.conf`, `standby.signal`, the recovery settings in
//! `postgresql.auto.conf`, the `rale.upstream` note) and emptying it before a clone.
//!
//! RALE's server settings live in `rale.conf`, included at the end of `postgresql.conf`
//! and rewritten before every start, after a clone and after a rewind (both copy the
//! source's configuration files). `ALTER SYSTEM` settings (`postgresql.auto.conf`) still
//! override them.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::PathBuf;

use super::Upstream;
use super::conf::{build_conninfo, conf_value, edit_auto_conf, parse_conninfo, quote_conf_value};
use super::local_config::LocalPostgresConfig;
use super::process::Runner;
use crate::status::DataDirState;
use crate::types::NodeId;
use crate::{Error, Result};

/// Name of RALE's include file in the data directory.
pub(crate) const MANAGED_CONF: &str = "rale.conf";
/// Name of the note recording which member `primary_conninfo` points at.
pub(crate) const UPSTREAM_NOTE: &str = "rale.upstream";
/// Server log written by `pg_ctl -l` (stderr of the postmaster).
pub(crate) const SERVER_LOG: &str = "postmaster.log";

/// Paths inside one data directory.
#[derive(Clone, Debug)]
pub(crate) struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Empty when missing or empty, else initialised with the system identifier read from
    /// `global/pg_control`. A non-empty directory without a readable `pg_control` (e.g. a
    /// half-copied clone) is reported as `Empty`, i.e. "needs a clone".
    pub fn state(&self) -> DataDirState {
        match self.system_id() {
            Some(system_id) => DataDirState::Initialized { system_id },
            None => DataDirState::Empty,
        }
    }

    /// The database system identifier: the first 8 bytes of `global/pg_control`
    /// (`ControlFileData.system_identifier`, native byte order), `None` when unreadable.
    pub fn system_id(&self) -> Option<u64> {
        let mut file = fs::File::open(self.file("global/pg_control")).ok()?;
        let mut buf = [0u8; 8];
        file.read_exact(&mut buf).ok()?;
        let id = u64::from_ne_bytes(buf);
        (id != 0).then_some(id)
    }

    /// Flushes the filesystem holding the data directory to disk (`syncfs(2)`): one call
    /// instead of one `fsync` per file. `initdb` and `pg_basebackup` run with
    /// `--no-sync` and this follows them, before the server starts: the same durability
    /// (nothing is started on files not yet on disk) for a fraction of the time (measured
    /// here: `initdb` 4.0 s with its own per-file syncs, 0.7 s plus 0.05 s this way).
    pub async fn sync_to_disk(&self) -> Result<()> {
        let root = self.root.clone();
        let what = format!("syncing the filesystem of {}", root.display());
        let joined = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let dir = fs::File::open(&root)?;
            nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)).map_err(std::io::Error::from)
        })
        .await;
        match joined {
            Ok(r) => r.map_err(|e| Error::io(what, e)),
            Err(e) => Err(Error::io(what, std::io::Error::other(e.to_string()))),
        }
    }

    /// Whether the directory is missing or has no entries.
    pub fn is_empty(&self) -> Result<bool> {
        match fs::read_dir(&self.root) {
            Ok(mut entries) => Ok(entries.next().is_none()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(Error::io(format!("reading {}", self.root.display()), e)),
        }
    }

    /// The PID on the first line of `postmaster.pid` (possibly stale).
    pub fn recorded_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.file("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// The postmaster's PID from `postmaster.pid` when that process is alive.
    pub fn running_pid(&self) -> Option<i32> {
        // A negative PID marks a single-user backend.
        let pid = self.recorded_pid()?.checked_abs()?;
        if pid <= 1 {
            return None;
        }
        let pid_t = nix::unistd::Pid::from_raw(pid);
        match nix::sys::signal::kill(pid_t, None) {
            Ok(()) | Err(nix::errno::Errno::EPERM) => {
                if is_zombie(pid) {
                    // Dead, and perhaps ours to reap (see `adopt_orphans`): PostgreSQL
                    // itself refuses to start while the recorded PID still exists.
                    reap_orphans();
                    None
                } else {
                    Some(pid)
                }
            }
            Err(_) => None,
        }
    }

    /// Removes everything inside the directory (keeping the directory, its owner and
    /// mode). Refuses a non-empty directory that does not look like a PostgreSQL data
    /// directory, so a mistyped path is never wiped.
    pub fn clear(&self) -> Result<()> {
        if self.is_empty()? {
            return Ok(());
        }
        if !self.file("PG_VERSION").exists() && !self.file("global").is_dir() {
            return Err(Error::InvalidConfig(format!(
                "refusing to empty {}: it is not empty and does not look like a PostgreSQL \
                 data directory (no PG_VERSION, no global/)",
                self.root.display()
            )));
        }
        let entries = fs::read_dir(&self.root)
            .map_err(|e| Error::io(format!("reading {}", self.root.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(format!("reading {}", self.root.display()), e))?;
            let path = entry.path();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let removed = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        }
        Ok(())
    }

    /// Removes a file if present.
    pub fn remove(&self, name: &str) -> Result<()> {
        let path = self.file(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
        }
    }

    fn read_optional(&self, name: &str) -> Result<String> {
        let path = self.file(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Writes `rale.conf` and makes sure `postgresql.conf` includes it (at its end).
    pub fn write_managed_conf(
        &self,
        runner: &Runner,
        cfg: &LocalPostgresConfig,
        major: u32,
    ) -> Result<()> {
        runner.write_file(&self.file(MANAGED_CONF), &render_managed_conf(cfg, major))?;
        let main = self.read_optional("postgresql.conf")?;
        let include = format!("include = '{MANAGED_CONF}'");
        if !main.lines().any(|l| l.trim() == include) {
            let mut text = main;
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str("\n# RALE's settings (rewritten by the agent)\n");
            text.push_str(&include);
            text.push('\n');
            runner.write_file(&self.file("postgresql.conf"), &text)?;
        }
        Ok(())
    }

    /// Replaces `pg_hba.conf` with RALE's rules (see [`render_pg_hba`]).
    pub fn write_pg_hba(&self, runner: &Runner, cfg: &LocalPostgresConfig) -> Result<()> {
        runner.write_file(&self.file("pg_hba.conf"), &render_pg_hba(cfg))
    }

    /// Configures the (stopped) server as a standby of `upstream` (or detached with
    /// `None`): `standby.signal`, `primary_conninfo` and `primary_slot_name` in
    /// `postgresql.auto.conf`, and the `rale.upstream` note.
    pub fn write_standby_config(
        &self,
        runner: &Runner,
        cfg: &LocalPostgresConfig,
        upstream: Option<&Upstream>,
    ) -> Result<()> {
        runner.write_file(&self.file("standby.signal"), "")?;
        let mut changes = BTreeMap::new();
        changes.insert("primary_conninfo", Some(primary_conninfo(cfg, upstream)));
        changes.insert("primary_slot_name", Some(cfg.node.slot_name()));
        let auto = self.read_optional("postgresql.auto.conf")?;
        runner.write_file(
            &self.file("postgresql.auto.conf"),
            &edit_auto_conf(&auto, &changes),
        )?;
        self.write_upstream_note(runner, upstream)
    }

    /// Writes `parameters` into `postgresql.auto.conf` of the stopped server, as
    /// `ALTER SYSTEM` would (used before the first start of a new cluster).
    pub fn write_auto_conf(
        &self,
        runner: &Runner,
        parameters: &BTreeMap<String, String>,
    ) -> Result<()> {
        if parameters.is_empty() {
            return Ok(());
        }
        let changes: BTreeMap<&str, Option<String>> = parameters
            .iter()
            .map(|(n, v)| (n.as_str(), Some(v.clone())))
            .collect();
        let auto = self.read_optional("postgresql.auto.conf")?;
        runner.write_file(
            &self.file("postgresql.auto.conf"),
            &edit_auto_conf(&auto, &changes),
        )
    }

    /// Records which member `primary_conninfo` points at (`None` removes the note).
    pub fn write_upstream_note(&self, runner: &Runner, upstream: Option<&Upstream>) -> Result<()> {
        match upstream {
            Some(u) => runner.write_file(
                &self.file(UPSTREAM_NOTE),
                &format!("{} {} {}\n", u.node, u.host, u.port),
            ),
            None => self.remove(UPSTREAM_NOTE),
        }
    }

    /// The member the stored `primary_conninfo` points at: the `rale.upstream` note,
    /// trusted only when its host and port match the conninfo in `postgresql.auto.conf`.
    pub fn read_upstream(&self) -> Option<NodeId> {
        let note = self.read_optional(UPSTREAM_NOTE).ok()?;
        let mut parts = note.split_whitespace();
        let (node, host, port) = (parts.next()?, parts.next()?, parts.next()?);
        let auto = self.read_optional("postgresql.auto.conf").ok()?;
        let conninfo = parse_conninfo(&conf_value(&auto, "primary_conninfo")?).ok()?;
        let matches = conninfo.get("host").map(String::as_str) == Some(host)
            && conninfo.get("port").map(String::as_str) == Some(port);
        matches.then(|| NodeId::new(node).ok()).flatten()
    }
}

/// `primary_conninfo` for streaming from `upstream` (empty for `None`): TCP as the
/// replication user, our node name as `application_name`. The password is included: the
/// file holding it (`postgresql.auto.conf`) is private to the PostgreSQL user.
pub(crate) fn primary_conninfo(cfg: &LocalPostgresConfig, upstream: Option<&Upstream>) -> String {
    match upstream {
        None => String::new(),
        Some(u) => {
            let port = u.port.to_string();
            build_conninfo(&[
                ("host", &u.host),
                ("port", &port),
                ("user", &cfg.replication_user),
                ("password", &cfg.replication_password),
                ("application_name", cfg.node.as_str()),
                ("connect_timeout", "5"),
            ])
        }
    }
}

/// The settings RALE needs, then `cfg.parameters` (which win).
/// Whether process `pid` has exited and waits to be reaped (state `Z` in
/// `/proc/PID/stat`). A killed postmaster is re-parented to PID 1, which may reap it late
/// (1.8 s measured in this project's sandbox; a container whose PID 1 does not reap, for
/// ever): `kill(pid, 0)` still succeeds on it, yet it runs no more. Anywhere `/proc` cannot
/// tell, the process counts as alive.
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s == "Z"))
        })
        .unwrap_or(false)
}

/// Makes this process the reaper of its orphaned descendants (Linux,
/// `PR_SET_CHILD_SUBREAPER`): a postmaster started through `pg_ctl`, and the backends of
/// a postmaster that died, are then re-parented to the agent rather than to PID 1, and
/// [`reap_orphans`] collects them. Without it a killed postmaster stays a zombie until
/// PID 1 reaps it — late on some hosts, never in a container whose PID 1 does not — and
/// PostgreSQL refuses to start again while the PID in `postmaster.pid` exists
/// ("another server might be running"). Returns whether it took effect.
pub fn adopt_orphans() -> bool {
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_child_subreaper(true).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Reaps the exited `postgres` processes whose parent is this process (orphans adopted
/// by [`adopt_orphans`], or this process's own when it runs as PID 1). Only processes
/// named `postgres`: the tools the agent runs itself (`pg_ctl`, `pg_basebackup`, …) are
/// waited for by their own handles, and reaping them here would take their exit status.
pub(crate) fn reap_orphans() {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "PID (comm) STATE PPID …"; comm may hold spaces and parentheses.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map(|(_, c)| c).unwrap_or_default();
        let mut fields = rest.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next());
        if comm == "postgres" && state == Some("Z") && ppid == Some(me.as_str()) {
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
    }
}

pub(crate) fn managed_settings(cfg: &LocalPostgresConfig, major: u32) -> BTreeMap<String, String> {
    let mut s = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        s.insert(k.to_string(), v);
    };
    set("listen_addresses", cfg.host.clone());
    set("port", cfg.port.to_string());
    set(
        "unix_socket_directories",
        cfg.socket_dir.to_string_lossy().into_owned(),
    );
    set("cluster_name", cfg.node.to_string());
    set("wal_level", "replica".into());
    set("hot_standby", "on".into());
    set("hot_standby_feedback", "on".into());
    set("max_wal_senders", "10".into());
    set("max_replication_slots", "10".into());
    if major >= 13 {
        set("wal_keep_size", "256MB".into());
    } else {
        set("wal_keep_segments", "16".into());
    }
    // pg_rewind needs hint-bit changes WAL-logged (initdb also enables checksums).
    set("wal_log_hints", "on".into());
    // A standby whose upstream vanished retries (and notices promote) every 250 ms,
    // not after the default 5 s.
    set("wal_retrieve_retry_interval", "250ms".into());
    // Standbys report their position at least every second (default 10 s), which bounds
    // how long a commit waits after its standby became synchronous.
    set("wal_receiver_status_interval", "1s".into());
    set("recovery_target_timeline", "latest".into());
    // Crash recovery (a primary restarted in place after its postmaster died) first
    // fsyncs every file of the data directory one by one: 1.6 s of the 2.7 s it took here
    // on a nearly empty database, and more with more files. `syncfs` flushes each file
    // system once instead (Linux; before kernel 5.8 it may not report write errors).
    if major >= 14 && cfg!(target_os = "linux") {
        set("recovery_init_sync_method", "syncfs".into());
    }
    set("logging_collector", "off".into());
    set("log_line_prefix", "%m [%p] %q%u@%d ".into());
    for (k, v) in &cfg.parameters {
        s.insert(k.to_ascii_lowercase(), v.clone());
    }
    s
}

fn render_managed_conf(cfg: &LocalPostgresConfig, major: u32) -> String {
    let mut out = String::from(
        "# Written by RALE before every start; edits here are lost.\n\
         # Set parameters through RALE (ALTER SYSTEM) or LocalPostgresConfig::parameters.\n",
    );
    for (k, v) in managed_settings(cfg, major) {
        out.push_str(&format!("{k} = {}\n", quote_conf_value(&v)));
    }
    out
}

/// `pg_hba.conf`: Unix-socket connections are trusted (the socket directory is private to
/// the PostgreSQL user), then the configured extra lines, then SCRAM over loopback for the
/// replication user (replication) and for every role (databases).
pub(crate) fn render_pg_hba(cfg: &LocalPostgresConfig) -> String {
    let mut out = String::from(
        "# Written by RALE. Local socket: trust (its directory is mode 0700, owned by the\n\
         # PostgreSQL user). TCP: SCRAM only.\n\
         local all all trust\n\
         local replication all trust\n",
    );
    for line in &cfg.pg_hba_extra {
        out.push_str(line.trim());
        out.push('\n');
    }
    let repl = super::conf::quote_ident(&cfg.replication_user);
    for net in ["127.0.0.1/32", "::1/128"] {
        out.push_str(&format!("host replication {repl} {net} scram-sha-256\n"));
    }
    for net in ["127.0.0.1/32", "::1/128"] {
        out.push_str(&format!("host all all {net} scram-sha-256\n"));
    }
    let su = super::conf::quote_ident(&cfg.superuser);
    let mut seen = std::collections::BTreeSet::new();
    for host in &cfg.peer_hosts {
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let addr = match host.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_loopback() => continue,
            Ok(std::net::IpAddr::V4(ip)) => format!("{ip}/32"),
            Ok(std::net::IpAddr::V6(ip)) => format!("{ip}/128"),
            // A host name: PostgreSQL resolves it (and checks the reverse lookup).
            Err(_) if host.is_empty() || host == "localhost" => continue,
            Err(_) if host.chars().any(|c| c.is_whitespace() || c == '"') => continue,
            Err(_) => host.to_string(),
        };
        if seen.insert(addr.clone()) {
            out.push_str(&format!("# member at {host}\n"));
            out.push_str(&format!("host replication {repl} {addr} scram-sha-256\n"));
            out.push_str(&format!("host all {su} {addr} scram-sha-256\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    /// An exited process not yet reaped is a zombie: `kill(pid, 0)` succeeds on it, and
    /// `running_pid` must not count it (a killed postmaster re-parented to a slow PID 1).
    #[test]
    fn an_unreaped_process_is_not_running() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = i32::try_from(child.id()).expect("pid");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !is_zombie(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(is_zombie(pid), "an exited, unreaped child is a zombie");
        child.wait().expect("reap");
        assert!(!is_zombie(pid));
        assert!(
            !is_zombie(i32::try_from(std::process::id()).expect("pid")),
            "this process runs"
        );
    }

    use super::*;

    fn cfg() -> LocalPostgresConfig {
        let node = NodeId::new("Node-1").expect("valid name");
        let mut c = LocalPostgresConfig::new(node, "/d", "/tmp/s", 5433, "su", "re'pl");
        c.parameters.insert("Work_Mem".into(), "8MB".into());
        c.parameters
            .insert("hot_standby_feedback".into(), "off".into());
        c.pg_hba_extra
            .push("host all all 10.0.0.0/8 scram-sha-256".into());
        c
    }

    #[test]
    fn managed_conf_has_our_settings_and_overrides() {
        let s = managed_settings(&cfg(), 15);
        assert_eq!(s.get("port").map(String::as_str), Some("5433"));
        assert_eq!(s.get("wal_level").map(String::as_str), Some("replica"));
        assert_eq!(s.get("work_mem").map(String::as_str), Some("8MB"));
        assert_eq!(
            s.get("hot_standby_feedback").map(String::as_str),
            Some("off")
        );
        assert!(s.contains_key("wal_keep_size"));
        assert!(managed_settings(&cfg(), 12).contains_key("wal_keep_segments"));
        let text = render_managed_conf(&cfg(), 15);
        assert!(
            text.contains("wal_retrieve_retry_interval = '250ms'\n"),
            "{text}"
        );
    }

    #[test]
    fn hba_admits_the_other_members() {
        let mut c = cfg();
        c.peer_hosts = vec![
            "10.1.2.3".into(),
            "127.0.0.1".into(),
            "[fd00::7]".into(),
            "db2.example".into(),
            "10.1.2.3".into(),
            "bad host".into(),
        ];
        let hba = render_pg_hba(&c);
        assert!(hba.contains("host replication \"replicator\" 10.1.2.3/32 scram-sha-256\n"));
        assert!(hba.contains("host all \"postgres\" 10.1.2.3/32 scram-sha-256\n"));
        assert!(hba.contains("host replication \"replicator\" fd00::7/128 scram-sha-256\n"));
        assert!(hba.contains("host replication \"replicator\" db2.example scram-sha-256\n"));
        assert_eq!(hba.matches("10.1.2.3/32").count(), 2, "deduplicated: {hba}");
        assert!(!hba.contains("bad host"), "{hba}");
        assert_eq!(
            hba.matches("127.0.0.1/32").count(),
            2,
            "loopback not repeated"
        );
    }

    #[test]
    fn hba_puts_extra_lines_before_loopback() {
        let hba = render_pg_hba(&cfg());
        let extra = hba.find("10.0.0.0/8").expect("extra line present");
        let repl = hba
            .find("host replication \"replicator\" 127.0.0.1/32 scram-sha-256")
            .expect("replication rule present");
        assert!(extra < repl);
    }

    #[test]
    fn conninfo_names_us_and_the_upstream() {
        let up = Upstream {
            node: NodeId::new("n2").expect("valid name"),
            host: "10.0.0.2".into(),
            port: 5432,
        };
        let text = primary_conninfo(&cfg(), Some(&up));
        let parsed = parse_conninfo(&text).expect("valid conninfo");
        assert_eq!(
            parsed.get("application_name").map(String::as_str),
            Some("Node-1")
        );
        assert_eq!(parsed.get("password").map(String::as_str), Some("re'pl"));
        assert_eq!(parsed.get("host").map(String::as_str), Some("10.0.0.2"));
        assert_eq!(primary_conninfo(&cfg(), None), "");
    }

    #[test]
    fn standby_config_round_trips_through_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let runner = Runner::new(None);
        let dd = DataDir::new(dir.path().to_path_buf());
        assert!(dd.is_empty().expect("readable"));
        assert_eq!(dd.state(), DataDirState::Empty);
        let up = Upstream {
            node: NodeId::new("n2").expect("valid name"),
            host: "127.0.0.1".into(),
            port: 6000,
        };
        dd.write_standby_config(&runner, &cfg(), Some(&up))
            .expect("written");
        assert!(dd.file("standby.signal").exists());
        assert_eq!(dd.read_upstream(), Some(up.node.clone()));
        dd.write_standby_config(&runner, &cfg(), None)
            .expect("written");
        assert_eq!(dd.read_upstream(), None);
        // Not a data directory: refuse to wipe it.
        assert!(dd.clear().is_err());
        fs::write(dd.file("PG_VERSION"), "15\n").expect("write");
        dd.clear().expect("cleared");
        assert!(dd.is_empty().expect("readable"));
    }
}
