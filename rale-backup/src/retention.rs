//! Which backups a retention policy removes: a pure function of the backup list, the
//! rules and the current time.
//!
//! Backups form chains: a full backup and the differential/incremental backups taken
//! after it up to the next full one. Removing a backup removes what depends on it, so:
//! - `full_count = n` keeps the newest `n` chains;
//! - `differential_count = m` keeps the newest `m` differential backups, each with the
//!   incrementals taken after it up to the next differential or full backup;
//! - `max_age` removes whole chains whose newest backup stopped before `now - max_age`,
//!   never the newest chain.

use chrono::{DateTime, Utc};

use crate::types::{BackupInfo, BackupKind, Retention};

/// Ids of the backups `retention` removes from `backups`, oldest first.
pub fn plan(backups: &[BackupInfo], retention: &Retention, now: DateTime<Utc>) -> Vec<String> {
    let mut sorted: Vec<&BackupInfo> = backups.iter().collect();
    sorted.sort_by(|a, b| {
        a.start_time
            .cmp(&b.start_time)
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut remove = vec![false; sorted.len()];

    // Chains start at each full backup; anything before the first full is an orphan
    // chain of its own (kept unless a rule removes it).
    let chain_starts = segment_starts(&sorted, |k| k == BackupKind::Full);
    let chains = segments(&chain_starts, sorted.len());

    if let Some(n) = retention.full_count {
        let n = usize::try_from(n.max(1)).unwrap_or(usize::MAX);
        let full_chains: Vec<_> = chains
            .iter()
            .filter(|(s, _)| sorted[*s].kind == BackupKind::Full)
            .collect();
        if full_chains.len() > n {
            let first_kept = full_chains[full_chains.len() - n].0;
            for r in remove.iter_mut().take(first_kept) {
                *r = true;
            }
        }
    }

    if let Some(m) = retention.differential_count {
        let m = usize::try_from(m.max(1)).unwrap_or(usize::MAX);
        let diff_starts = segment_starts(&sorted, |k| k != BackupKind::Incremental);
        let diff_segments: Vec<_> = segments(&diff_starts, sorted.len())
            .into_iter()
            .filter(|(s, _)| sorted[*s].kind == BackupKind::Differential)
            .collect();
        if diff_segments.len() > m {
            for (s, e) in &diff_segments[..diff_segments.len() - m] {
                for r in &mut remove[*s..*e] {
                    *r = true;
                }
            }
        }
    }

    if let Some(age) = retention.max_age
        && let Ok(age) = chrono::Duration::from_std(age)
    {
        let cutoff = now - age;
        let last = chains.len().saturating_sub(1);
        for (i, (s, e)) in chains.iter().enumerate() {
            if i == last {
                break;
            }
            let newest_stop = sorted[*s..*e].iter().map(|b| b.stop_time).max();
            if newest_stop.is_some_and(|t| t < cutoff) {
                for r in &mut remove[*s..*e] {
                    *r = true;
                }
            }
        }
    }

    sorted
        .iter()
        .zip(remove)
        .filter(|(_, r)| *r)
        .map(|(b, _)| b.id.clone())
        .collect()
}

fn segment_starts(sorted: &[&BackupInfo], starts: impl Fn(BackupKind) -> bool) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, b) in sorted.iter().enumerate() {
        if i == 0 || starts(b.kind) {
            out.push(i);
        }
    }
    out
}

fn segments(starts: &[usize], len: usize) -> Vec<(usize, usize)> {
    starts
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, starts.get(i + 1).copied().unwrap_or(len)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn b(id: &str, kind: BackupKind, minute: i64) -> BackupInfo {
        let t = DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).expect("valid");
        BackupInfo {
            id: id.into(),
            kind,
            parent_id: None,
            start_time: t,
            stop_time: t + chrono::Duration::seconds(30),
            lsn_start: None,
            lsn_stop: None,
            timeline: None,
            size_bytes: None,
            repo_size_bytes: None,
        }
    }

    fn list() -> Vec<BackupInfo> {
        use BackupKind::*;
        vec![
            b("f1", Full, 0),
            b("i1", Incremental, 1),
            b("d1", Differential, 2),
            b("i2", Incremental, 3),
            b("f2", Full, 10),
            b("d2", Differential, 11),
            b("i3", Incremental, 12),
            b("d3", Differential, 13),
        ]
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + 20 * 60, 0).expect("valid")
    }

    #[test]
    fn full_count_drops_old_chains() {
        let r = Retention {
            full_count: Some(1),
            ..Retention::default()
        };
        assert_eq!(plan(&list(), &r, now()), ["f1", "i1", "d1", "i2"]);
        let r = Retention {
            full_count: Some(2),
            ..Retention::default()
        };
        assert!(plan(&list(), &r, now()).is_empty());
    }

    #[test]
    fn diff_count_drops_old_diffs_and_their_incrementals() {
        let r = Retention {
            differential_count: Some(1),
            ..Retention::default()
        };
        assert_eq!(plan(&list(), &r, now()), ["d1", "i2", "d2", "i3"]);
    }

    #[test]
    fn age_keeps_newest_chain() {
        let r = Retention {
            max_age: Some(Duration::from_secs(60)),
            ..Retention::default()
        };
        assert_eq!(plan(&list(), &r, now()), ["f1", "i1", "d1", "i2"]);
        let r = Retention {
            max_age: Some(Duration::from_secs(3600)),
            ..Retention::default()
        };
        assert!(plan(&list(), &r, now()).is_empty());
    }

    #[test]
    fn input_order_does_not_matter() {
        let mut l = list();
        l.reverse();
        let r = Retention {
            full_count: Some(1),
            ..Retention::default()
        };
        assert_eq!(plan(&l, &r, now()), ["f1", "i1", "d1", "i2"]);
        assert!(plan(&[], &r, now()).is_empty());
    }
}
