//! Writing recovery and standby settings into a restored data directory
//! (PostgreSQL 12+: `postgresql.auto.conf` plus `recovery.signal` / `standby.signal`;
//! `recovery.conf` of PostgreSQL 11 and older is not supported).

use std::io::Write;
use std::path::Path;

use crate::exec::RunAs;
use crate::types::{RestoreRequest, RestoreTarget, conf_quote};
use crate::{Error, Result};

/// Appends `settings` to `postgresql.auto.conf` of `data_dir` (later lines win).
pub fn append_auto_conf(
    data_dir: &Path,
    settings: &[(String, String)],
    run_as: &RunAs,
) -> Result<()> {
    let path = data_dir.join("postgresql.auto.conf");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    let mut text = String::from("\n# added by rale-backup\n");
    for (name, value) in settings {
        text.push_str(&format!("{name} = {}\n", conf_quote(value)));
    }
    file.write_all(text.as_bytes())
        .map_err(|e| Error::io("write", &path, e))?;
    drop(file);
    run_as.chown(&path)
}

/// Creates an empty signal file (`standby.signal`, `recovery.signal`) in `data_dir`.
pub fn touch_signal(data_dir: &Path, name: &str, run_as: &RunAs) -> Result<()> {
    let path = data_dir.join(name);
    std::fs::write(&path, b"").map_err(|e| Error::io("write", &path, e))?;
    run_as.chown(&path)
}

/// Removes a signal file if present.
pub fn remove_signal(data_dir: &Path, name: &str) -> Result<()> {
    let path = data_dir.join(name);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", &path, e)),
    }
}

/// The recovery settings for a request, given the `restore_command` that fetches WAL.
pub fn recovery_settings(
    request: &RestoreRequest,
    restore_command: Option<&str>,
) -> Vec<(String, String)> {
    let mut settings = Vec::new();
    if let Some(cmd) = restore_command {
        settings.push(("restore_command".to_owned(), cmd.to_owned()));
    }
    if let Some(standby) = &request.standby {
        settings.push((
            "primary_conninfo".to_owned(),
            standby.primary_conninfo.clone(),
        ));
        if let Some(slot) = &standby.primary_slot_name {
            settings.push(("primary_slot_name".to_owned(), slot.clone()));
        }
        return settings;
    }
    settings.extend(request.target.recovery_settings());
    if request.target != RestoreTarget::Latest {
        settings.push((
            "recovery_target_action".to_owned(),
            request.target_action.as_str().to_owned(),
        ));
    }
    settings
}

/// Writes recovery settings and the right signal file for `request` into its data
/// directory: `standby.signal` for standbys, `recovery.signal` otherwise.
pub fn configure_recovery(
    request: &RestoreRequest,
    restore_command: Option<&str>,
    run_as: &RunAs,
) -> Result<()> {
    let settings = recovery_settings(request, restore_command);
    append_auto_conf(&request.data_dir, &settings, run_as)?;
    if request.standby.is_some() {
        remove_signal(&request.data_dir, "recovery.signal")?;
        touch_signal(&request.data_dir, "standby.signal", run_as)
    } else {
        remove_signal(&request.data_dir, "standby.signal")?;
        touch_signal(&request.data_dir, "recovery.signal", run_as)
    }
}

/// Makes sure `data_dir` exists, is empty, has mode `0700` and belongs to `run_as`.
pub fn prepare_empty_data_dir(data_dir: &Path, run_as: &RunAs) -> Result<()> {
    if data_dir.exists() {
        let mut entries =
            std::fs::read_dir(data_dir).map_err(|e| Error::io("read directory", data_dir, e))?;
        if entries.next().is_some() {
            return Err(Error::Config(format!(
                "restore destination {} is not empty",
                data_dir.display()
            )));
        }
    }
    run_as.create_private_dir(data_dir)
}

/// Removes everything inside `data_dir` (keeping the directory itself).
pub fn empty_dir(data_dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(data_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read directory", data_dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", data_dir, e))?;
        let path = entry.path();
        let is_dir = entry
            .file_type()
            .map_err(|e| Error::io("stat", &path, e))?
            .is_dir();
        let res = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        res.map_err(|e| Error::io("remove", &path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{StandbySetup, TargetAction};
    use rale::Lsn;

    #[test]
    fn pitr_settings() {
        let req = RestoreRequest::latest("/x")
            .with_target(RestoreTarget::Lsn(Lsn(0x30)), TargetAction::Pause);
        let s = recovery_settings(&req, Some("cp /a/%f %p"));
        assert_eq!(
            s,
            vec![
                ("restore_command".to_owned(), "cp /a/%f %p".to_owned()),
                ("recovery_target_lsn".to_owned(), "0/30".to_owned()),
                ("recovery_target_action".to_owned(), "pause".to_owned()),
            ]
        );
    }

    #[test]
    fn standby_settings_ignore_targets() {
        let mut req = RestoreRequest::latest("/x");
        req.standby = Some(StandbySetup {
            primary_conninfo: "host=/tmp port=5432".into(),
            primary_slot_name: Some("node2".into()),
        });
        let s = recovery_settings(&req, None);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1], ("primary_slot_name".to_owned(), "node2".to_owned()));
    }

    #[test]
    fn writes_signal_and_conf() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run_as = RunAs::current().expect("user");
        let req = RestoreRequest::latest(dir.path());
        configure_recovery(&req, Some("false"), &run_as).expect("configure");
        assert!(dir.path().join("recovery.signal").exists());
        let conf = std::fs::read_to_string(dir.path().join("postgresql.auto.conf")).expect("read");
        assert!(conf.contains("restore_command = 'false'"), "{conf}");
    }
}
