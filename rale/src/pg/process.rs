//! Running PostgreSQL's tools (`initdb`, `pg_ctl`, `pg_basebackup`, `pg_rewind`, …) as the
//! OS user that owns the data directory, with a timeout, capturing their output.
//!
//! PostgreSQL refuses to run as root. When the agent runs as root, every tool runs as the
//! configured PostgreSQL OS user (`postgres` by default) and every file the agent writes
//! into the data directory is handed to that user; as an ordinary user, tools run as
//! that user and nothing changes hands.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::{Error, Result};

/// How many bytes of a failed tool's output an error message keeps (its end).
const OUTPUT_TAIL_BYTES_MAX: usize = 2000;

/// The OS user PostgreSQL runs as, when the agent must switch to it (agent runs as root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsUser {
    /// Login name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory (set as `HOME` for the tools).
    pub home: PathBuf,
}

impl OsUser {
    /// Looks a user up by name in the system's user database.
    pub fn lookup(name: &str) -> Result<Self> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| Error::io(format!("looking up OS user {name:?}"), e.into()))?
            .ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "OS user {name:?} does not exist (PostgreSQL cannot run as root: create it \
                     or run the agent as the PostgreSQL user)"
                ))
            })?;
        Ok(Self {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        })
    }

    /// The user to switch to: `Some` only when this process runs as root; `name` defaults
    /// to `postgres`.
    pub fn for_current_process(name: Option<&str>) -> Result<Option<Self>> {
        if nix::unistd::geteuid().is_root() {
            Self::lookup(name.unwrap_or("postgres")).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// What a finished tool left behind.
#[derive(Debug)]
pub(crate) struct Output {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// Whether the tool exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The end of stderr (or stdout when stderr is empty), trimmed, for error messages.
    pub fn tail(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        tail(text.trim(), OUTPUT_TAIL_BYTES_MAX)
    }

    /// `Ok(self)` on exit code 0, else an error naming `operation`, the code and the tail.
    pub fn check(self, operation: &'static str) -> Result<Self> {
        if self.success() {
            Ok(self)
        } else {
            Err(Error::pg(
                operation,
                format!("exit code {}: {}", describe_code(self.code), self.tail()),
            ))
        }
    }
}

fn describe_code(code: Option<i32>) -> String {
    code.map_or_else(
        || "none (killed by a signal)".to_string(),
        |c| c.to_string(),
    )
}

/// The last `bytes_max` bytes of `text`, cut on a character boundary.
pub(crate) fn tail(text: &str, bytes_max: usize) -> String {
    if text.len() <= bytes_max {
        return text.to_string();
    }
    let mut start = text.len() - bytes_max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// Runs tools and writes files as the PostgreSQL OS user.
#[derive(Clone, Debug)]
pub(crate) struct Runner {
    user: Option<OsUser>,
}

impl Runner {
    /// A runner that switches to `user` (when `Some`) for every tool.
    pub fn new(user: Option<OsUser>) -> Self {
        Self { user }
    }

    /// The user tools run as, when the agent switches users.
    pub fn user(&self) -> Option<&OsUser> {
        self.user.as_ref()
    }

    fn base_env(&self) -> Vec<(String, OsString)> {
        let home = self
            .user
            .as_ref()
            .map(|u| u.home.clone().into_os_string())
            .or_else(|| std::env::var_os("HOME"))
            .unwrap_or_else(|| OsString::from("/"));
        let mut env = vec![
            ("PATH".to_string(), OsString::from("/usr/bin:/bin")),
            ("HOME".to_string(), home),
            // Messages we parse ("no server running") are in English.
            ("LC_ALL".to_string(), OsString::from("C")),
        ];
        if let Some(user) = &self.user {
            env.push(("USER".to_string(), OsString::from(&user.name)));
            env.push(("LOGNAME".to_string(), OsString::from(&user.name)));
        } else if let Some(user) = std::env::var_os("USER") {
            env.push(("USER".to_string(), user));
        }
        env
    }

    /// Runs `program args…` with a clean environment plus `env`, as the PostgreSQL user,
    /// killing it if it runs longer than `timeout`. A non-zero exit is *not* an error here
    /// (see [`Output::check`]).
    pub async fn run(
        &self,
        operation: &'static str,
        program: &Path,
        args: &[OsString],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Output> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(self.base_env())
            .envs(env.iter().copied())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(user) = &self.user {
            // std drops root's supplementary groups itself when only uid/gid are set.
            cmd.uid(user.uid).gid(user.gid);
        }
        tracing::debug!(operation, program = %program.display(), ?args, "running");
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", program.display()), e))?;
        // Dropping the future on timeout drops the child, which kills it (kill_on_drop).
        let output = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| Error::Timeout {
                operation,
                after_ms: duration_ms(timeout),
            })?
            .map_err(|e| Error::io(format!("waiting for {}", program.display()), e))?;
        Ok(Output {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Blocking variant of [`Runner::run`] without a timeout, for `Drop` handlers and
    /// other places without a runtime; use only for tools that end on their own.
    pub fn run_blocking(&self, program: &Path, args: &[OsString]) -> Result<Output> {
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(self.base_env())
            .current_dir("/")
            .stdin(Stdio::null());
        if let Some(user) = &self.user {
            use std::os::unix::process::CommandExt;
            cmd.uid(user.uid).gid(user.gid);
        }
        let output = cmd
            .output()
            .map_err(|e| Error::io(format!("running {}", program.display()), e))?;
        Ok(Output {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Hands `path` to the PostgreSQL user (no-op when not switching users).
    pub fn chown(&self, path: &Path) -> Result<()> {
        if let Some(user) = &self.user {
            nix::unistd::chown(
                path,
                Some(nix::unistd::Uid::from_raw(user.uid)),
                Some(nix::unistd::Gid::from_raw(user.gid)),
            )
            .map_err(|e| Error::io(format!("chown {}", path.display()), e.into()))?;
        }
        Ok(())
    }

    /// Creates `dir` (and missing parents) if needed, owned by the PostgreSQL user with
    /// mode `0700`. Parents created here keep the default owner and mode.
    pub fn ensure_private_dir(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("chmod 0700 {}", dir.display()), e))?;
        self.chown(dir)
    }

    /// Writes `contents` to `path` atomically (temporary file + rename), mode `0600`,
    /// owned by the PostgreSQL user.
    pub fn write_file(&self, path: &Path, contents: &str) -> Result<()> {
        self.write_bytes(path, contents.as_bytes())
    }

    /// [`Runner::write_file`] for binary contents.
    pub fn write_bytes(&self, path: &Path, contents: &[u8]) -> Result<()> {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{file_name}.rale-tmp"));
        let ctx = |what: &str| format!("{what} {}", tmp.display());
        {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode_0600()
                .open(&tmp)
                .map_err(|e| Error::io(ctx("creating"), e))?;
            file.write_all(contents)
                .map_err(|e| Error::io(ctx("writing"), e))?;
            file.sync_all().map_err(|e| Error::io(ctx("syncing"), e))?;
        }
        self.chown(&tmp)?;
        fs::rename(&tmp, path).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", tmp.display(), path.display()),
                e,
            )
        })
    }
}

/// `OpenOptions::mode(0o600)` under a name that reads well in a builder chain.
trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_cuts_on_char_boundary() {
        assert_eq!(tail("abc", 10), "abc");
        assert_eq!(tail("abcdef", 3), "…def");
        let t = tail("ééé", 3);
        assert!(t.ends_with('é'));
    }

    #[tokio::test]
    async fn run_captures_output_and_times_out() {
        let runner = Runner::new(OsUser::for_current_process(None).expect("user lookup"));
        let out = runner
            .run(
                "echo",
                Path::new("/bin/sh"),
                &["-c".into(), "echo out; echo err >&2; exit 3".into()],
                &[],
                Duration::from_secs(10),
            )
            .await
            .expect("sh runs");
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout.trim(), "out");
        assert_eq!(out.tail(), "err");
        assert!(out.check("sh").is_err());

        let slow = runner
            .run(
                "sleep",
                Path::new("/bin/sleep"),
                &["30".into()],
                &[],
                Duration::from_millis(200),
            )
            .await;
        assert!(matches!(slow, Err(Error::Timeout { .. })), "{slow:?}");
    }
}
