//! [`EtcdServers`]: a local etcd cluster of real `etcd` processes on loopback, for the
//! etcd conformance test, the end-to-end tests and `ramctrl demo --consensus etcd`.
//!
//! Each member gets two free ports (client and peer, picked at run time) and a data
//! directory under the directory the caller gives; its output goes to
//! `<dir>/<name>.log`. Members are stopped by their own PID (SIGKILL through
//! [`std::process::Child::kill`]) — by [`EtcdServers::stop_member`], or for all of them
//! when the value is dropped, even on a panic — and can be started again on their data.
//!
//! ```no_run
//! use rale::testing::etcd_server::EtcdServers;
//! # fn run() -> rale::Result<()> {
//! let Some(binary) = EtcdServers::find_binary() else {
//!     eprintln!("etcd is not installed: skipped");
//!     return Ok(());
//! };
//! let dir = std::env::temp_dir().join("rale-etcd-example");
//! let etcd = EtcdServers::start(&binary, &dir, 3)?;
//! etcd.wait_healthy(std::time::Duration::from_secs(30))?;
//! println!("{}", etcd.endpoints().join(","));
//! # Ok(())
//! # }
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// One etcd member.
#[derive(Debug)]
pub struct EtcdMember {
    /// Member name (`etcd0`, `etcd1`, …).
    pub name: String,
    /// Its client URL, `http://127.0.0.1:<port>`.
    pub client_url: String,
    /// Its peer URL.
    pub peer_url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    child: Option<Child>,
}

impl EtcdMember {
    /// The PID of the running process, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A local etcd cluster (see the module documentation).
#[derive(Debug)]
pub struct EtcdServers {
    binary: PathBuf,
    dir: PathBuf,
    initial_cluster: String,
    /// The members, in order.
    pub members: Vec<EtcdMember>,
}

/// Bounds a test cluster's election: fast enough for tests, slow enough for a loaded
/// two-core machine.
const HEARTBEAT_MS: u32 = 100;
const ELECTION_MS: u32 = 1000;

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("picking a free port", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("picking a free port", e))
}

impl EtcdServers {
    /// The `etcd` binary: `$RALE_ETCD` if set, else `etcd` on `PATH`, else
    /// `/usr/bin/etcd`; `None` when there is none (callers skip with a reason).
    pub fn find_binary() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("RALE_ETCD") {
            let p = PathBuf::from(p);
            return p.is_file().then_some(p);
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join("etcd"))
            .chain([PathBuf::from("/usr/bin/etcd")])
            .find(|p| p.is_file())
    }

    /// Starts `n` members (at least 1) under `dir` (created if needed).
    pub fn start(binary: &Path, dir: &Path, n: usize) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut members = Vec::new();
        for i in 0..n.max(1) {
            members.push(EtcdMember {
                name: format!("etcd{i}"),
                client_url: format!("http://127.0.0.1:{}", free_port()?),
                peer_url: format!("http://127.0.0.1:{}", free_port()?),
                data_dir: dir.join(format!("etcd{i}.data")),
                child: None,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers = Self {
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            initial_cluster,
            members,
        };
        for i in 0..servers.members.len() {
            servers.start_member(i)?;
        }
        Ok(servers)
    }

    /// The members' client URLs.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Starts member `i` (again, on its data directory); a no-op when it runs.
    pub fn start_member(&mut self, i: usize) -> Result<()> {
        let m = self
            .members
            .get_mut(i)
            .ok_or_else(|| Error::InvalidConfig(format!("no etcd member {i}")))?;
        if m.child.is_some() {
            return Ok(());
        }
        let log_path = self.dir.join(format!("{}.log", m.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(format!("opening {}", log_path.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io(format!("opening {}", log_path.display()), e))?;
        let state = if m.data_dir.exists() {
            "existing"
        } else {
            "new"
        };
        let child = Command::new(&self.binary)
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .arg("--listen-client-urls")
            .arg(&m.client_url)
            .arg("--advertise-client-urls")
            .arg(&m.client_url)
            .arg("--listen-peer-urls")
            .arg(&m.peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&m.peer_url)
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-state")
            .arg(state)
            .arg("--initial-cluster-token")
            .arg("rale-test")
            .arg(format!("--heartbeat-interval={HEARTBEAT_MS}"))
            .arg(format!("--election-timeout={ELECTION_MS}"))
            // The agents rewrite the whole state on every change: keep etcd's history
            // short, as a production etcd should be configured to (docs/consensus-etcd.md).
            .arg("--auto-compaction-mode=revision")
            .arg("--auto-compaction-retention=1000")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", self.binary.display()), e))?;
        m.child = Some(child);
        Ok(())
    }

    /// Kills member `i` (SIGKILL to its PID) and waits for it; a no-op when stopped.
    pub fn stop_member(&mut self, i: usize) {
        if let Some(m) = self.members.get_mut(i)
            && let Some(mut child) = m.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until every running member answers `/health` with `true`.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            while !healthy(&m.client_url) {
                if Instant::now() > deadline {
                    return Err(Error::Timeout {
                        operation: "etcd health",
                        after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }
}

/// `GET /health` on a client URL answers `"health":"true"`.
fn healthy(client_url: &str) -> bool {
    let Some(addr) = client_url.strip_prefix("http://") else {
        return false;
    };
    let Ok(sock) = addr.parse() else { return false };
    let Ok(mut s) = TcpStream::connect_timeout(&sock, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

impl Drop for EtcdServers {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}
