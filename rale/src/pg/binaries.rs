//! Finding PostgreSQL's server binaries and their version.
//!
//! Order: the configured `bin_dir`; else `pg_config --bindir` (when that directory holds
//! `pg_ctl`: Debian's `/usr/bin/pg_config` from libpq-dev alone points at `/usr/bin`);
//! else the newest `/usr/lib/postgresql/<major>/bin` (Debian/Ubuntu layout).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// Oldest major version this implementation drives (`standby.signal` and
/// `primary_conninfo` as a server parameter appeared in PostgreSQL 12).
pub const MAJOR_VERSION_MIN: u32 = 12;

/// The PostgreSQL server binaries of one installation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgBinaries {
    /// Directory holding `initdb`, `pg_ctl`, `postgres`, `pg_basebackup`, `pg_rewind`, …
    pub bin_dir: PathBuf,
    /// Version in `server_version_num` form, e.g. `150008`.
    pub version_num: u32,
}

impl PgBinaries {
    /// Finds the binaries (see the module doc for the order) and reads their version.
    pub fn discover(bin_dir: Option<&Path>) -> Result<Self> {
        let bin_dir = match bin_dir {
            Some(dir) => dir.to_path_buf(),
            None => pg_config_bindir()
                .filter(|d| d.join("pg_ctl").is_file())
                .or_else(newest_debian_bindir)
                .ok_or_else(|| {
                    Error::InvalidConfig(
                        "PostgreSQL binaries not found: set bin_dir, put pg_config on PATH, or \
                         install a server under /usr/lib/postgresql/<major>/bin"
                            .to_string(),
                    )
                })?,
        };
        let pg_ctl = bin_dir.join("pg_ctl");
        let out = Command::new(&pg_ctl)
            .arg("--version")
            .output()
            .map_err(|e| Error::io(format!("running {} --version", pg_ctl.display()), e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version_num = parse_version(&text).ok_or_else(|| {
            Error::Parse(format!(
                "cannot read a version from `{} --version`: {:?}",
                pg_ctl.display(),
                text.trim()
            ))
        })?;
        Ok(Self {
            bin_dir,
            version_num,
        })
    }

    /// Path of the tool `name` in this installation.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Major version, e.g. `15`.
    pub fn major(&self) -> u32 {
        self.version_num / 10000
    }

    /// An error when the major version is older than [`MAJOR_VERSION_MIN`].
    pub fn ensure_supported(&self, operation: &'static str) -> Result<()> {
        if self.major() < MAJOR_VERSION_MIN {
            return Err(Error::pg(
                operation,
                format!(
                    "PostgreSQL {} is not supported: RALE needs {} or newer (standby.signal and \
                     primary_conninfo as a server parameter; recovery.conf is not supported)",
                    self.major(),
                    MAJOR_VERSION_MIN
                ),
            ));
        }
        Ok(())
    }
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

fn newest_debian_bindir() -> Option<PathBuf> {
    let entries = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
}

/// Reads `server_version_num` from a tool's `--version` line, e.g.
/// `pg_ctl (PostgreSQL) 15.8 (Debian 15.8-1.pgdg120+1)` → `150008`, `16beta1` → `160000`.
pub(crate) fn parse_version(text: &str) -> Option<u32> {
    let rest = text.split("(PostgreSQL)").nth(1)?.trim_start();
    let digits = |s: &str| -> Option<u32> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse().ok()
    };
    let major = digits(rest)?;
    let after_major = &rest[rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len())..];
    let minor = after_major.strip_prefix('.').and_then(digits).unwrap_or(0);
    if major >= 10 {
        Some(major * 10000 + minor)
    } else {
        // 9.6.24 → 90624
        let patch = after_major
            .strip_prefix('.')
            .and_then(|s| s.split_once('.'))
            .and_then(|(_, p)| digits(p))
            .unwrap_or(0);
        Some(major * 10000 + minor * 100 + patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_version("pg_ctl (PostgreSQL) 15.8 (Debian 15.8-1.pgdg120+1)\n"),
            Some(150008)
        );
        assert_eq!(parse_version("pg_ctl (PostgreSQL) 16beta1"), Some(160000));
        assert_eq!(parse_version("pg_ctl (PostgreSQL) 12.0"), Some(120000));
        assert_eq!(parse_version("pg_ctl (PostgreSQL) 9.6.24"), Some(90624));
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn old_versions_are_refused() {
        let old = PgBinaries {
            bin_dir: PathBuf::from("/x"),
            version_num: 110005,
        };
        assert!(old.ensure_supported("clone").is_err());
        let new = PgBinaries {
            bin_dir: PathBuf::from("/x"),
            version_num: 150008,
        };
        assert!(new.ensure_supported("clone").is_ok());
        assert_eq!(new.major(), 15);
    }
}
