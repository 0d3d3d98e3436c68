//! `ramctrl edit-config`: edit the JSON configuration in `$EDITOR` (or with `--set`),
//! show the diff, confirm, apply with the version it was based on.

use serde_json::Value;
use similar::TextDiff;

use super::CliError;

/// A unified diff of two texts, empty when they are equal.
pub fn diff(old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header("current", "edited")
        .to_string()
}

/// Parses `key.sub=value` into a merge patch `{"key": {"sub": value}}`. The value is
/// read as JSON when it parses (`true`, `3`, `null`, `{"a":1}`), else as a string.
pub fn set_patch(assignments: &[String], pg_params: &[String]) -> Result<Value, CliError> {
    let mut patch = Value::Object(Default::default());
    let mut put = |path: Vec<&str>, value: Value| -> Result<(), CliError> {
        let mut cur = &mut patch;
        for (i, key) in path.iter().enumerate() {
            if key.is_empty() {
                return Err(CliError::Usage(format!(
                    "empty key in {:?}",
                    path.join(".")
                )));
            }
            let obj = cur
                .as_object_mut()
                .ok_or_else(|| CliError::Usage(format!("{} is set twice", path.join("."))))?;
            if i + 1 == path.len() {
                obj.insert((*key).to_owned(), value);
                return Ok(());
            }
            cur = obj
                .entry((*key).to_owned())
                .or_insert_with(|| Value::Object(Default::default()));
        }
        Ok(())
    };
    for a in assignments {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--set {a:?}: expected key=value")))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        put(k.trim().split('.').collect(), value)?;
    }
    for p in pg_params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--pg {p:?}: expected name=value")))?;
        let value = if v == "null" {
            Value::Null
        } else {
            Value::String(v.to_owned())
        };
        put(vec!["postgresql_parameters", k.trim()], value)?;
    }
    Ok(patch)
}

/// Writes `text` to a temporary file, runs `$VISUAL`/`$EDITOR` (default `vi`) on it and
/// reads the result back.
pub fn run_editor(text: &str) -> Result<String, CliError> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let file = tempfile::Builder::new()
        .prefix("ramctrl-config-")
        .suffix(".json")
        .tempfile()
        .map_err(|e| CliError::Local(format!("temporary file: {e}")))?;
    std::fs::write(file.path(), text)
        .map_err(|e| CliError::Local(format!("temporary file: {e}")))?;
    // The editor setting may carry arguments ("code --wait").
    let mut parts = editor.split_whitespace();
    let program = parts.next().unwrap_or("vi");
    let status = std::process::Command::new(program)
        .args(parts)
        .arg(file.path())
        .status()
        .map_err(|e| CliError::Local(format!("cannot run editor {editor:?}: {e}")))?;
    if !status.success() {
        return Err(CliError::Local(format!(
            "editor {editor:?} exited with {status}"
        )));
    }
    std::fs::read_to_string(file.path())
        .map_err(|e| CliError::Local(format!("reading the edited file: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_builds_a_merge_patch() {
        let p = set_patch(
            &[
                "lease_ttl=3s".into(),
                "synchronous.mode=on".into(),
                "synchronous.node_count=2".into(),
                "fence=false".into(),
                "maximum_lag_on_failover_bytes=null".into(),
            ],
            &["work_mem=8MB".into(), "max_connections=null".into()],
        )
        .expect("patch");
        assert_eq!(
            p,
            json!({
                "lease_ttl": "3s",
                "synchronous": {"mode": "on", "node_count": 2},
                "fence": false,
                "maximum_lag_on_failover_bytes": null,
                "postgresql_parameters": {"work_mem": "8MB", "max_connections": null}
            })
        );
        assert!(set_patch(&["novalue".into()], &[]).is_err());
        assert!(set_patch(&["a=1".into(), "a.b=2".into()], &[]).is_err());
    }

    #[test]
    fn diff_shows_changed_lines() {
        assert_eq!(diff("a\nb\n", "a\nb\n"), "");
        let d = diff("a\nb\n", "a\nc\n");
        assert!(d.contains("-b") && d.contains("+c"), "{d}");
    }
}
