//! User callbacks: scripts `ramd` runs when PostgreSQL starts, stops, restarts, reloads or
//! changes role — to move a virtual IP, tell a load balancer, page someone.
//!
//! Each script is called as `script <event> <role> <cluster>` (Patroni's convention), for
//! example `on_role_change primary main`, with the environment variables `RALE_EVENT`,
//! `RALE_ROLE`, `RALE_CLUSTER` and `RALE_NODE` set as well. Scripts run in the background:
//! the HA loop never waits for them. A script still running when the same event fires
//! again is killed (only the latest role matters), and every script is killed after
//! `timeout`. Exit status and the first line of output are logged.
//!
//! Events come from what the agent observes, so they also fire for changes it did not
//! cause itself: PostgreSQL found running after being down is `on_start`, found down after
//! running is `on_stop`, running with another role than last time is `on_role_change`.
//! `on_restart` and `on_reload` fire on operator requests (`POST /restart`, `/reload`).
//!
//! ```toml
//! [callbacks]
//! on_role_change = "/usr/local/bin/rale-vip"
//! on_stop = "/usr/local/bin/rale-vip"
//! timeout = "30s"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rale::Role;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// The `[callbacks]` section of the node configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksConfig {
    /// Run when PostgreSQL is seen starting.
    #[serde(default)]
    pub on_start: Option<PathBuf>,
    /// Run when PostgreSQL is seen stopped after running.
    #[serde(default)]
    pub on_stop: Option<PathBuf>,
    /// Run after an operator-requested restart.
    #[serde(default)]
    pub on_restart: Option<PathBuf>,
    /// Run after an operator-requested reload.
    #[serde(default)]
    pub on_reload: Option<PathBuf>,
    /// Run when PostgreSQL runs with another role than before (promotion, demotion).
    #[serde(default)]
    pub on_role_change: Option<PathBuf>,
    /// Longest a script may run before it is killed (default 30 s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        Self {
            on_start: None,
            on_stop: None,
            on_restart: None,
            on_reload: None,
            on_role_change: None,
            timeout: default_timeout(),
        }
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallbackEvent {
    /// PostgreSQL started.
    Start,
    /// PostgreSQL stopped.
    Stop,
    /// PostgreSQL was restarted on request.
    Restart,
    /// The configuration was reloaded on request.
    Reload,
    /// PostgreSQL runs with a new role.
    RoleChange,
}

impl CallbackEvent {
    /// The first argument passed to the script.
    pub fn name(self) -> &'static str {
        match self {
            CallbackEvent::Start => "on_start",
            CallbackEvent::Stop => "on_stop",
            CallbackEvent::Restart => "on_restart",
            CallbackEvent::Reload => "on_reload",
            CallbackEvent::RoleChange => "on_role_change",
        }
    }
}

/// The role argument: `primary`, `replica` or `unknown`.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Primary => "primary",
        Role::Replica => "replica",
        Role::Unknown => "unknown",
    }
}

/// Turns successive observations of the local PostgreSQL into events (pure; no I/O).
#[derive(Clone, Debug, Default)]
pub struct Transitions {
    /// Running or not at the last observation (`None` before the first).
    running: Option<bool>,
    /// The role PostgreSQL last ran with.
    last_role: Option<Role>,
}

impl Transitions {
    /// The events between the previous observation and this one. The first observation
    /// only sets the baseline (an agent restart is not a PostgreSQL start).
    pub fn observe(&mut self, running: bool, role: Role) -> Vec<(CallbackEvent, Role)> {
        let mut events = Vec::new();
        let known = running && role != Role::Unknown;
        match self.running {
            None => {}
            Some(false) if running => events.push((CallbackEvent::Start, role)),
            Some(true) if !running => {
                events.push((CallbackEvent::Stop, self.last_role.unwrap_or(Role::Unknown)))
            }
            _ => {}
        }
        if self.running.is_some() && known && self.last_role.is_some_and(|r| r != role) {
            events.push((CallbackEvent::RoleChange, role));
        }
        self.running = Some(running);
        if known {
            self.last_role = Some(role);
        }
        events
    }
}

/// Runs the configured scripts.
#[derive(Clone, Debug)]
pub struct Callbacks {
    cfg: CallbacksConfig,
    cluster: String,
    node: String,
    running: Arc<Mutex<BTreeMap<CallbackEvent, tokio::task::AbortHandle>>>,
}

impl Callbacks {
    /// Callbacks of `node` in `cluster`.
    pub fn new(cfg: CallbacksConfig, cluster: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            cfg,
            cluster: cluster.into(),
            node: node.into(),
            running: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    fn script(&self, event: CallbackEvent) -> Option<&PathBuf> {
        match event {
            CallbackEvent::Start => self.cfg.on_start.as_ref(),
            CallbackEvent::Stop => self.cfg.on_stop.as_ref(),
            CallbackEvent::Restart => self.cfg.on_restart.as_ref(),
            CallbackEvent::Reload => self.cfg.on_reload.as_ref(),
            CallbackEvent::RoleChange => self.cfg.on_role_change.as_ref(),
        }
    }

    /// Starts the script for `event` in the background (no-op when none is configured),
    /// killing the previous run of the same event if it is still going. Returns the task,
    /// which resolves to the script's exit code (`None`: killed, timed out or not started).
    pub fn fire(
        &self,
        event: CallbackEvent,
        role: Role,
    ) -> Option<tokio::task::JoinHandle<Option<i32>>> {
        let script = self.script(event)?.clone();
        let role = role_name(role);
        let mut cmd = tokio::process::Command::new(&script);
        cmd.arg(event.name())
            .arg(role)
            .arg(&self.cluster)
            .env("RALE_EVENT", event.name())
            .env("RALE_ROLE", role)
            .env("RALE_CLUSTER", &self.cluster)
            .env("RALE_NODE", &self.node)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let timeout = self.cfg.timeout;
        let node = self.node.clone();
        info!(node = %node, event = event.name(), role, script = %script.display(), "running callback");
        let task = tokio::spawn(async move {
            let child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    warn!(node = %node, event = event.name(), script = %script.display(),
                        error = %e, "callback could not be started");
                    return None;
                }
            };
            match tokio::time::timeout(timeout, child.wait_with_output()).await {
                Ok(Ok(out)) => {
                    let first = |b: &[u8]| {
                        String::from_utf8_lossy(b)
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_string()
                    };
                    let code = out.status.code();
                    if out.status.success() {
                        info!(node = %node, event = event.name(), output = %first(&out.stdout),
                            "callback finished");
                    } else {
                        warn!(node = %node, event = event.name(), ?code,
                            stderr = %first(&out.stderr), "callback failed");
                    }
                    code
                }
                Ok(Err(e)) => {
                    warn!(node = %node, event = event.name(), error = %e, "callback failed");
                    None
                }
                Err(_) => {
                    // Dropping the child (kill_on_drop) kills it.
                    warn!(node = %node, event = event.name(), timeout_s = timeout.as_secs(),
                        "callback killed after its timeout");
                    None
                }
            }
        });
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(previous) = running.insert(event, task.abort_handle()) {
            // Aborting drops the previous child, which kills it.
            previous.abort();
        }
        Some(task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_observation_is_a_baseline() {
        let mut t = Transitions::default();
        assert!(t.observe(true, Role::Primary).is_empty());
        assert!(t.observe(true, Role::Primary).is_empty());
    }

    #[test]
    fn start_stop_and_role_changes() {
        let mut t = Transitions::default();
        assert!(t.observe(false, Role::Unknown).is_empty());
        assert_eq!(
            t.observe(true, Role::Replica),
            vec![(CallbackEvent::Start, Role::Replica)]
        );
        assert_eq!(
            t.observe(true, Role::Primary),
            vec![(CallbackEvent::RoleChange, Role::Primary)]
        );
        assert_eq!(
            t.observe(false, Role::Unknown),
            vec![(CallbackEvent::Stop, Role::Primary)]
        );
        // Demoted: it comes back as a replica.
        assert_eq!(
            t.observe(true, Role::Replica),
            vec![
                (CallbackEvent::Start, Role::Replica),
                (CallbackEvent::RoleChange, Role::Replica)
            ]
        );
        // Restarted in place with the same role: start only.
        assert_eq!(
            t.observe(false, Role::Unknown),
            vec![(CallbackEvent::Stop, Role::Replica)]
        );
        assert_eq!(
            t.observe(true, Role::Replica),
            vec![(CallbackEvent::Start, Role::Replica)]
        );
    }

    #[test]
    fn config_parses_with_defaults() {
        let c: CallbacksConfig =
            toml::from_str("on_role_change = \"/bin/true\"\ntimeout = \"5s\"\n").expect("parses");
        assert_eq!(c.on_role_change, Some(PathBuf::from("/bin/true")));
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert!(toml::from_str::<CallbacksConfig>("on_promote = \"/bin/true\"").is_err());
    }

    #[tokio::test]
    async fn scripts_get_event_role_cluster_and_are_killed_after_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("calls");
        let script = dir.path().join("cb.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$1 $2 $3 $RALE_NODE\" >> {}\n[ \"$1\" = on_stop ] && exec sleep 30\nexit 0\n",
                out.display()
            ),
        )
        .expect("write script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let cfg = CallbacksConfig {
            on_role_change: Some(script.clone()),
            on_stop: Some(script.clone()),
            timeout: Duration::from_millis(500),
            ..CallbacksConfig::default()
        };
        let cb = Callbacks::new(cfg, "main", "node1");
        assert!(cb.fire(CallbackEvent::Start, Role::Primary).is_none());
        let code = cb
            .fire(CallbackEvent::RoleChange, Role::Primary)
            .expect("configured")
            .await
            .expect("task");
        assert_eq!(code, Some(0));
        let started = std::time::Instant::now();
        let code = cb
            .fire(CallbackEvent::Stop, Role::Primary)
            .expect("configured")
            .await
            .expect("task");
        assert_eq!(code, None, "killed after its timeout");
        assert!(started.elapsed() < Duration::from_secs(20));
        let calls = std::fs::read_to_string(&out).expect("calls");
        assert_eq!(
            calls.lines().collect::<Vec<_>>(),
            vec![
                "on_role_change primary main node1",
                "on_stop primary main node1"
            ]
        );
    }
}
