//! Runs the real `ramctrl` binary against a [`RamdCluster`]:
//! every call passes the agents' URLs and credentials, prints the command and its output
//! (visible with `--nocapture`), and is bounded in time.
//!
//! ```no_run
//! # async fn demo(c: &rale_e2e::ramd_cluster::RamdCluster) -> anyhow::Result<()> {
//! let ctl = rale_e2e::ctl::Ctl::for_cluster(c)?;
//! let table = ctl.ok(&["list"]).await?;
//! let refused = ctl.run(&["switchover", "--to", "nobody", "--force"]).await?;
//! assert_eq!(refused.code, 1);
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};

use crate::ramd_cluster::{RamdCluster, ramd_binary};

/// The `ramctrl` next to `ramd`, built with it when the tests run under cargo.
pub fn ramctrl_binary() -> anyhow::Result<PathBuf> {
    let ramd = ramd_binary()?;
    let path = ramd.with_file_name("ramctrl");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "-p", "ramd-ref", "--bin", "ramctrl"]);
        if let Some(target) = ramd.parent().and_then(|p| p.parent()) {
            cmd.env("CARGO_TARGET_DIR", target);
            if ramd.parent().is_some_and(|p| p.ends_with("release")) {
                cmd.arg("--release");
            }
        }
        let status = cmd.status().context("building ramctrl")?;
        ensure!(status.success(), "building ramctrl failed ({status})");
    }
    ensure!(path.exists(), "{} does not exist", path.display());
    Ok(path)
}

/// `ramctrl` with a cluster's URLs and credentials.
pub struct Ctl {
    /// The binary.
    pub bin: PathBuf,
    /// Comma-separated agent URLs (`--url`).
    pub urls: String,
    /// API user.
    pub user: String,
    /// API password (passed as `RALE_PASSWORD`).
    pub password: String,
}

/// What one `ramctrl` run did.
#[derive(Debug)]
pub struct Out {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Standard output and error together, lower-cased (for "says why" checks).
    pub fn said(&self) -> String {
        format!("{}{}", self.stdout, self.stderr).to_lowercase()
    }
}

impl Ctl {
    /// `ramctrl` for every agent of `c`, with `c`'s credentials.
    pub fn for_cluster(c: &RamdCluster) -> anyhow::Result<Self> {
        let (user, password) = c.credentials()?;
        let urls = c
            .names()
            .iter()
            .map(|n| c.node(n).map(|d| d.api_url.clone()))
            .collect::<anyhow::Result<Vec<_>>>()?
            .join(",");
        Ok(Self {
            bin: ramctrl_binary()?,
            urls,
            user,
            password,
        })
    }

    /// Runs with explicit URLs, password and extra environment.
    pub async fn run_with(
        &self,
        urls: &str,
        password: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> anyhow::Result<Out> {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("--url")
            .arg(urls)
            .arg("--user")
            .arg(&self.user)
            .arg("--timeout")
            .arg("90s")
            .args(args)
            .env("RALE_PASSWORD", password)
            .env_remove("RALE_URL")
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
            .await
            .with_context(|| format!("ramctrl {args:?} timed out"))?
            .with_context(|| format!("running ramctrl {args:?}"))?;
        let o = Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!(
            "$ ramctrl {}\n{}{}(exit {})",
            args.join(" "),
            o.stdout,
            o.stderr,
            o.code
        );
        Ok(o)
    }

    /// Runs with the cluster's URLs and password.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<Out> {
        self.run_with(&self.urls, &self.password, &[], args).await
    }

    /// Runs and requires exit 0; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let o = self.run(args).await?;
        ensure!(
            o.code == 0,
            "ramctrl {args:?} exited {}: {}{}",
            o.code,
            o.stdout,
            o.stderr
        );
        Ok(o.stdout)
    }

    /// Runs and requires exit `code` (a refusal); returns the output.
    pub async fn refused(&self, code: i32, args: &[&str]) -> anyhow::Result<Out> {
        let o = self.run(args).await?;
        ensure!(
            o.code == code,
            "ramctrl {args:?} exited {} instead of {code}: {}{}",
            o.code,
            o.stdout,
            o.stderr
        );
        Ok(o)
    }
}
