//! Atomic JSON files ([`rale::files`]) with this crate's errors.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

fn map(path: &Path, e: rale::Error) -> Error {
    match e {
        rale::Error::Io { source, .. } => Error::io("write", path, source),
        other => Error::parse(path.display().to_string(), other),
    }
}

/// Writes `value` as pretty JSON to `path` so that readers see the old or the new file,
/// never a torn one.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    rale::files::write_json(path, value).map_err(|e| map(path, e))
}

/// Reads JSON from `path`; `Ok(None)` when the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    rale::files::read_json(path).map_err(|e| map(path, e))
}
