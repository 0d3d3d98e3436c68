//! The `ramd` processes of a launched cluster: started, watched until the cluster is
//! ready, signalled, restarted and stopped by PID.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{ClusterSpec, Member, ReadyProbe};

/// Interval between two looks at a cluster that is not ready yet.
const READY_POLL: Duration = Duration::from_millis(200);

/// One node's agent.
#[derive(Debug)]
struct Agent {
    name: String,
    config: PathBuf,
    log: PathBuf,
    wrapper: Vec<String>,
    /// The process while this launcher holds it.
    child: Option<Child>,
}

/// The agents of one cluster, one per node, in the order of [`ClusterSpec::nodes`].
/// Dropping it stops the agents it still holds (see [`Agents::stop_all`]).
#[derive(Debug)]
pub struct Agents {
    ramd: PathBuf,
    agents: Vec<Agent>,
}

impl Agents {
    /// No agents yet; [`Agents::launch`] starts them with the binary `ramd`.
    pub fn new(ramd: PathBuf) -> Self {
        Self {
            ramd,
            agents: Vec::new(),
        }
    }

    /// Writes every node's configuration ([`ClusterSpec::write`]) and starts one agent
    /// per node, its output in `<node dir>/ramd.log`. Does not wait for readiness. The
    /// agents started before a failure are held, and stopped on drop.
    pub fn launch(&mut self, spec: &ClusterSpec) -> Result<()> {
        spec.write()?;
        for node in &spec.nodes {
            self.agents.push(Agent {
                name: node.name.clone(),
                config: spec.config_path(node),
                log: spec.node_dir(node).join("ramd.log"),
                wrapper: node.wrapper.clone(),
                child: None,
            });
            let index = self.agents.len() - 1;
            let path = &self.agents[index].log;
            let log = File::create(path).with_context(|| format!("creating {}", path.display()))?;
            self.spawn(index, log)?;
        }
        Ok(())
    }

    /// Starts one agent per existing configuration file: `(name, config file, log
    /// file)`, in node order (e.g. files written by `ramctrl config generate`). Does not
    /// wait for readiness; the agents started are held, and stopped on drop.
    pub fn launch_files(&mut self, nodes: &[(String, PathBuf, PathBuf)]) -> Result<()> {
        for (name, config, log) in nodes {
            self.agents.push(Agent {
                name: name.clone(),
                config: config.clone(),
                log: log.clone(),
                wrapper: Vec::new(),
                child: None,
            });
            let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
            self.spawn(self.agents.len() - 1, file)?;
        }
        Ok(())
    }

    fn spawn(&mut self, i: usize, log: File) -> Result<u32> {
        let agent = self.agents.get_mut(i).context("no such node")?;
        let mut cmd = match agent.wrapper.split_first() {
            // The wrapper execs ramd: the PID is ramd's.
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&self.ramd);
                cmd
            }
            None => Command::new(&self.ramd),
        };
        let child = cmd
            .arg("--config")
            .arg(&agent.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} for {}", self.ramd.display(), agent.name))?;
        let pid = child.id();
        agent.child = Some(child);
        Ok(pid)
    }

    /// Node `i`'s agent process, while this launcher holds it.
    pub fn child(&mut self, i: usize) -> Option<&mut Child> {
        self.agents.get_mut(i).and_then(|a| a.child.as_mut())
    }

    /// The PID of node `i`'s agent, while this launcher holds it.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.agents
            .get(i)
            .and_then(|a| a.child.as_ref())
            .map(Child::id)
    }

    /// Whether this launcher holds any agent process (running or exited, not stopped).
    pub fn holds_any(&self) -> bool {
        self.agents.iter().any(|a| a.child.is_some())
    }

    /// Starts node `i`'s agent again with the same configuration, appending to its
    /// `ramd.log`; refuses while the previous one still runs. Returns the new PID.
    pub fn restart(&mut self, i: usize) -> Result<u32> {
        let agent = self.agents.get_mut(i).context("no such node")?;
        if let Some(child) = &mut agent.child
            && child.try_wait()?.is_none()
        {
            bail!(
                "the agent of {} (pid {}) still runs",
                agent.name,
                child.id()
            );
        }
        let log = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&agent.log)
            .with_context(|| format!("opening {}", agent.log.display()))?;
        self.spawn(i, log)
    }

    /// Node `i`'s name and agent process, which this launcher must hold.
    fn held(&mut self, i: usize) -> Result<(&str, &mut Child)> {
        let agent = self.agents.get_mut(i).context("no such node")?;
        let name = agent.name.as_str();
        let child = agent
            .child
            .as_mut()
            .with_context(|| format!("{name}'s agent is not running"))?;
        Ok((name, child))
    }

    /// Sends `signal` to node `i`'s agent; after `SIGKILL` waits (10 s bound) until it is
    /// gone. Returns its PID.
    pub fn signal(&mut self, i: usize, signal: Signal) -> Result<u32> {
        let (name, child) = self.held(i)?;
        let pid = child.id();
        kill(Pid::from_raw(i32::try_from(pid)?), signal)
            .with_context(|| format!("kill -{signal} {pid} (agent of {name})"))?;
        if signal == Signal::SIGKILL {
            self.wait_exit(i, Duration::from_secs(10))?;
        }
        Ok(pid)
    }

    /// Waits up to `timeout` until node `i`'s agent has exited.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> Result<()> {
        let (name, child) = self.held(i)?;
        let pid = child.id();
        let deadline = Instant::now() + timeout;
        while child.try_wait()?.is_none() {
            ensure!(
                Instant::now() < deadline,
                "agent {pid} of {name} still runs after {} s",
                timeout.as_secs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Lets go of node `i`'s agent process (after it was killed, say): it is neither
    /// signalled nor stopped any more, and [`Agents::pid`] is `None` until a restart.
    pub fn forget(&mut self, i: usize) {
        if let Some(a) = self.agents.get_mut(i) {
            a.child = None;
        }
    }

    /// Sends SIGTERM to the agents of the nodes `which` at once, waits at most `timeout`
    /// for all of them, SIGKILLs the rest and lets go of them all. Returns the nodes whose
    /// agent needed SIGKILL.
    pub fn stop(&mut self, which: &[usize], timeout: Duration) -> Vec<usize> {
        let mut running: Vec<(usize, Child)> = which
            .iter()
            .filter_map(|&i| Some((i, self.agents.get_mut(i)?.child.take()?)))
            .collect();
        for (_, c) in &running {
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + timeout;
        let mut killed = Vec::new();
        for (i, c) in &mut running {
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                let _ = c.wait();
                killed.push(*i);
            }
        }
        killed
    }

    /// [`Agents::stop`] of every agent.
    pub fn stop_all(&mut self, timeout: Duration) -> Vec<usize> {
        let all: Vec<usize> = (0..self.agents.len()).collect();
        self.stop(&all, timeout)
    }

    /// Fails when an agent this launcher holds has exited, naming its log.
    fn check_running(&mut self) -> Result<()> {
        for a in &mut self.agents {
            if let Some(c) = &mut a.child
                && let Ok(Some(status)) = c.try_wait()
            {
                bail!(
                    "ramd of {} exited early ({status}); see {}",
                    a.name,
                    a.log.display()
                );
            }
        }
        Ok(())
    }

    /// Waits until one node is primary and accepts `probe.write_sql` and every other node
    /// streams, as `GET /cluster` of the first node that lists every member shows it;
    /// fails at once when an agent exits. Returns the members as last seen.
    pub async fn wait_ready(
        &mut self,
        probe: &ReadyProbe,
        timeout: Duration,
    ) -> Result<Vec<Member>> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no agent answered yet");
        while Instant::now() < deadline {
            self.check_running()?;
            match probe.members().await {
                Ok(members) => {
                    let primaries: Vec<&Member> =
                        members.iter().filter(|m| m.role == "primary").collect();
                    let streaming = members
                        .iter()
                        .filter(|m| m.role == "replica" && m.state == "streaming")
                        .count();
                    let primary = match primaries[..] {
                        [p] => self.agents.iter().position(|a| a.name == p.name),
                        _ => None,
                    };
                    if let Some(i) = primary
                        && streaming + 1 == self.agents.len()
                        && probe.write(i, &self.agents[i].name).await.is_ok()
                    {
                        return Ok(members);
                    }
                    last = format!("{members:?}");
                }
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(READY_POLL).await;
        }
        bail!("cluster not ready after {timeout:?}; last view: {last}")
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        if self.holds_any() {
            self.stop_all(Duration::from_secs(20));
        }
    }
}
