//! Atomic JSON files: write to a temporary sibling, fsync, rename, fsync the directory.
//! Used for the small records agents keep in their state directory.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Writes `value` as pretty JSON to `path` so that readers see the old or the new file,
/// never a torn one.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Parse(format!("JSON encoding for {}: {e}", path.display())))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::InvalidConfig(format!("{} has no file name", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        f.write_all(&text)
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        f.sync_all()
            .map_err(|e| Error::io(format!("fsync of {}", tmp.display()), e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        Error::io(
            format!("renaming {} to {}", tmp.display(), path.display()),
            e,
        )
    })?;
    // Best effort: some file systems refuse fsync on directories.
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads JSON from `path`; `Ok(None)` when the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Parse(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.json");
        assert_eq!(read_json::<Vec<u32>>(&p).expect("reads"), None);
        write_json(&p, &vec![1u32, 2]).expect("writes");
        write_json(&p, &vec![3u32]).expect("overwrites");
        assert_eq!(read_json::<Vec<u32>>(&p).expect("reads"), Some(vec![3]));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(leftovers.len(), 1);
    }
}
