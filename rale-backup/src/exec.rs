//! Running external programs: as the `postgres` OS user when we are root, with a time
//! limit, capturing exit status and the tail of their output.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::{Error, Result};

/// How many bytes of a program's output we keep for errors and job records.
pub const OUTPUT_TAIL_BYTES_MAX: usize = 4096;

/// The OS identity programs run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// User name (for tools that want to be told, e.g. Barman's `barman_user`).
    pub user_name: String,
    /// Numeric user id to switch to, `None` to stay as we are.
    pub uid: Option<u32>,
    /// Numeric group id to switch to.
    pub gid: Option<u32>,
    /// Home directory (exported as `HOME`).
    pub home_dir: PathBuf,
}

impl RunAs {
    /// The `postgres` OS user when this process is root (PostgreSQL and its tools refuse
    /// or misbehave as root), otherwise the current user.
    pub fn postgres_if_root() -> Result<Self> {
        if nix::unistd::geteuid().is_root() {
            Self::user("postgres")
        } else {
            Self::current()
        }
    }

    /// The named OS user.
    pub fn user(name: &str) -> Result<Self> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|_| Error::UserNotFound(name.to_owned()))?
            .ok_or_else(|| Error::UserNotFound(name.to_owned()))?;
        Ok(Self {
            user_name: user.name,
            uid: Some(user.uid.as_raw()),
            gid: Some(user.gid.as_raw()),
            home_dir: user.dir,
        })
    }

    /// The user this process runs as, without switching.
    pub fn current() -> Result<Self> {
        let uid = nix::unistd::geteuid();
        let user = nix::unistd::User::from_uid(uid)
            .map_err(|_| Error::UserNotFound(uid.to_string()))?
            .ok_or_else(|| Error::UserNotFound(uid.to_string()))?;
        Ok(Self {
            user_name: user.name,
            uid: None,
            gid: None,
            home_dir: user.dir,
        })
    }

    /// Gives `path` to this user (no-op when we do not switch users).
    pub fn chown(&self, path: &Path) -> Result<()> {
        if self.uid.is_none() {
            return Ok(());
        }
        std::os::unix::fs::chown(path, self.uid, self.gid).map_err(|e| Error::io("chown", path, e))
    }

    /// Creates `dir` (and parents) with mode `0700` owned by this user.
    pub fn create_private_dir(&self, dir: &Path) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("chmod", dir, e))?;
        self.chown(dir)
    }

    /// Writes `contents` to `path` (mode `0640`) owned by this user.
    pub fn write_file(&self, path: &Path, contents: &str) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, contents).map_err(|e| Error::io("write", path, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640))
            .map_err(|e| Error::io("chmod", path, e))?;
        self.chown(path)
    }
}

/// What a finished program left behind.
#[derive(Clone, Debug)]
pub struct Output {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Exit status as text.
    pub status: String,
    /// Complete standard output.
    pub stdout: String,
    /// Complete standard error.
    pub stderr: String,
}

impl Output {
    /// The end of stderr (or of stdout when stderr is empty), at most
    /// [`OUTPUT_TAIL_BYTES_MAX`] bytes.
    pub fn error_tail(&self) -> String {
        if self.stderr.trim().is_empty() {
            tail(&self.stdout)
        } else {
            tail(&self.stderr)
        }
    }

    /// The end of stdout and stderr together, for job records.
    pub fn combined_tail(&self) -> String {
        let mut both = self.stdout.clone();
        if !self.stderr.trim().is_empty() {
            if !both.is_empty() && !both.ends_with('\n') {
                both.push('\n');
            }
            both.push_str(&self.stderr);
        }
        tail(&both)
    }
}

/// The last [`OUTPUT_TAIL_BYTES_MAX`] bytes of `text` (cut at a character boundary),
/// trimmed.
pub fn tail(text: &str) -> String {
    let text = text.trim();
    if text.len() <= OUTPUT_TAIL_BYTES_MAX {
        return text.to_owned();
    }
    let mut start = text.len() - OUTPUT_TAIL_BYTES_MAX;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// A program invocation.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// Tool name used in errors (`pgbackrest`).
    pub tool: String,
    /// Sub-command used in errors (`backup`).
    pub command: String,
    /// Program to run.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Extra environment variables.
    pub env: Vec<(OsString, OsString)>,
    /// Kill it after this long.
    pub timeout: Duration,
}

impl Invocation {
    /// A new invocation of `program` reported as `tool command`, with a one-hour limit.
    pub fn new(tool: &str, command: &str, program: impl Into<OsString>) -> Self {
        Self {
            tool: tool.to_owned(),
            command: command.to_owned(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            timeout: Duration::from_secs(3600),
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the time limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the program as `run_as` and returns its output whatever the exit status.
    pub async fn output(&self, run_as: &RunAs) -> Result<Output> {
        let program = self.program.to_string_lossy().into_owned();
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("HOME", &run_as.home_dir)
            .env("LC_ALL", "C")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(gid) = run_as.gid {
            cmd.gid(gid);
        }
        if let Some(uid) = run_as.uid {
            cmd.uid(uid);
        }
        tracing::debug!(tool = %self.tool, command = %self.command, program = %program, args = ?self.args, "running");
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            program: program.clone(),
            source,
        })?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let read_out = async {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf).await;
            buf
        };
        let read_err = async {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf).await;
            buf
        };
        let run = async {
            let (out, err, status) = tokio::join!(read_out, read_err, child.wait());
            (out, err, status)
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok((out, err, status)) => {
                let status = status.map_err(|source| Error::Spawn {
                    program: program.clone(),
                    source,
                })?;
                Ok(Output {
                    success: status.success(),
                    status: status.to_string(),
                    stdout: String::from_utf8_lossy(&out).into_owned(),
                    stderr: String::from_utf8_lossy(&err).into_owned(),
                })
            }
            Err(_) => Err(Error::Timeout {
                program,
                timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                stderr_tail: String::new(),
            }),
        }
    }

    /// Runs the program and turns a non-zero exit into [`Error::ToolFailed`].
    pub async fn run(&self, run_as: &RunAs) -> Result<Output> {
        let out = self.output(run_as).await?;
        if out.success {
            Ok(out)
        } else {
            Err(Error::ToolFailed {
                tool: self.tool.clone(),
                command: self.command.clone(),
                status: out.status.clone(),
                stderr_tail: out.error_tail(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end_on_a_char_boundary() {
        let long = "é".repeat(OUTPUT_TAIL_BYTES_MAX);
        let t = tail(&long);
        assert!(t.len() <= OUTPUT_TAIL_BYTES_MAX);
        assert!(t.chars().all(|c| c == 'é'));
        assert_eq!(tail("  short \n"), "short");
    }

    #[tokio::test]
    async fn failure_carries_stderr_tail() {
        let run_as = RunAs::current().expect("current user");
        let err = Invocation::new("sh", "test", "sh")
            .args(["-c", "echo out; echo 'it broke' >&2; exit 3"])
            .run(&run_as)
            .await
            .expect_err("exit 3 is a failure");
        match err {
            Error::ToolFailed {
                stderr_tail,
                status,
                ..
            } => {
                assert_eq!(stderr_tail, "it broke");
                assert!(status.contains('3'), "{status}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn timeout_kills() {
        let run_as = RunAs::current().expect("current user");
        let err = Invocation::new("sh", "sleep", "sh")
            .args(["-c", "sleep 30"])
            .timeout(Duration::from_millis(200))
            .run(&run_as)
            .await
            .expect_err("must time out");
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    }
}
