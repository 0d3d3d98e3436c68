//! Conformance suite for [`BackupTool`] implementations (feature `testing`).
//!
//! Run [`run_suite`] against your tool, prepared and pointed at a running server that
//! has the tool's [`BackupTool::server_parameters`] applied. It panics with a message on
//! the first broken promise, like a test assertion.

use std::path::Path;
use std::sync::Arc;

use crate::Error;
use crate::tool::BackupTool;
use crate::types::{BackupKind, RestoreRequest, Retention};

/// Checks the contract every tool must keep: `check` passes; a full backup appears in
/// `list` exactly once with sane metadata; `list` is oldest first; a restore of the
/// latest backup yields a data directory; `expire` with `full_count = 1` removes the
/// older full backup and keeps the newest; unsupported kinds are refused with
/// [`Error::Unsupported`]. Uses `scratch_dir` (which must be usable by the tool's OS
/// user) for restores.
pub async fn run_suite(tool: Arc<dyn BackupTool>, scratch_dir: &Path) {
    let name = tool.name().to_owned();
    let report = tool
        .check()
        .await
        .unwrap_or_else(|e| panic!("{name}: check failed: {e}"));
    assert!(report.ok, "{name}: check reported not ok");

    let before = tool
        .list()
        .await
        .unwrap_or_else(|e| panic!("{name}: list failed: {e}"));
    let first = tool
        .backup(BackupKind::Full)
        .await
        .unwrap_or_else(|e| panic!("{name}: full backup failed: {e}"));
    let after = tool
        .list()
        .await
        .unwrap_or_else(|e| panic!("{name}: list failed: {e}"));
    let new: Vec<_> = after
        .iter()
        .filter(|b| !before.iter().any(|o| o.id == b.id))
        .collect();
    assert_eq!(
        new.len(),
        1,
        "{name}: one full backup must add one list entry"
    );
    let b = new[0];
    assert_eq!(b.kind, BackupKind::Full, "{name}: kind");
    if let Some(reported) = &first.backup {
        assert_eq!(
            reported.id, b.id,
            "{name}: backup() and list() disagree on the id"
        );
    }
    assert!(b.stop_time >= b.start_time, "{name}: stop before start");
    if let (Some(s), Some(e)) = (b.lsn_start, b.lsn_stop) {
        assert!(e >= s, "{name}: lsn_stop {e} before lsn_start {s}");
    }

    tool.backup(BackupKind::Full)
        .await
        .unwrap_or_else(|e| panic!("{name}: second full backup failed: {e}"));
    let list = tool
        .list()
        .await
        .unwrap_or_else(|e| panic!("{name}: list failed: {e}"));
    assert!(
        list.windows(2).all(|w| w[0].start_time <= w[1].start_time),
        "{name}: list must be oldest first"
    );
    let newest = list
        .last()
        .map(|b| b.id.clone())
        .expect("two backups were just taken");

    let dest = scratch_dir.join(format!("{name}-conformance-restore"));
    tool.restore(&RestoreRequest::latest(&dest))
        .await
        .unwrap_or_else(|e| panic!("{name}: restore failed: {e}"));
    assert!(
        dest.join("PG_VERSION").exists(),
        "{name}: restored directory has no PG_VERSION"
    );

    let out = tool
        .expire(&Retention {
            full_count: Some(1),
            ..Retention::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: expire failed: {e}"));
    let left = tool
        .list()
        .await
        .unwrap_or_else(|e| panic!("{name}: list failed: {e}"));
    assert!(
        left.iter().any(|b| b.id == newest),
        "{name}: expire removed the newest backup"
    );
    assert_eq!(
        left.iter().filter(|b| b.kind == BackupKind::Full).count(),
        1,
        "{name}: expire kept more than one full backup (removed {:?})",
        out.removed_ids
    );
    assert!(
        !out.removed_ids.is_empty(),
        "{name}: expire reported nothing removed"
    );

    for kind in [BackupKind::Differential, BackupKind::Incremental] {
        if !tool.supported_kinds().contains(&kind) {
            let res = tool.backup(kind).await;
            assert!(
                matches!(res, Err(Error::Unsupported { .. })),
                "{name}: unsupported {kind} backup must be refused with Error::Unsupported"
            );
        }
    }
}
