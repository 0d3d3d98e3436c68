//! Which timeline a standby's WAL position is on, read from its `pg_wal` directory.
//!
//! A standby reports a WAL position; the decision core compares positions only on the
//! same timeline, so the timeline reported with it must be the one the WAL at that
//! position belongs to. PostgreSQL 15 has no function for the timeline of the last
//! replayed record: the received timeline is known only while the WAL receiver streams,
//! and pg_control's checkpoint timeline lags until the next restartpoint.
//!
//! The newest timeline history file alone is not enough either. A former primary that
//! kept writing on timeline 1 after another node was promoted to timeline 2 fetches
//! `00000002.history` when it tries to follow the new primary, yet its WAL beyond the
//! fork point is timeline 1's: reporting "timeline 2" with that position would make a
//! diverged node look like the most advanced candidate. So:
//!
//! 1. the node's own timeline at position `P` is the highest of the observed timeline and
//!    the timelines of the WAL segment files that hold `P` (a standby that replayed a
//!    timeline switch holds the new timeline's segments; a diverged one never receives
//!    them);
//! 2. if a newer timeline's history file says that the node's own timeline ended at or
//!    after `P`, the node's WAL is a prefix of that newer history, and it is reported on
//!    the newer timeline (a lagging standby that has not reached the switch yet).

use std::path::Path;

use crate::types::{Lsn, Timeline};

/// Parses a timeline history file (`00000003.history`): the ancestors of that timeline,
/// each with the position where it ended (`<tli>\t<lsn>\t<reason>` per line).
pub(crate) fn parse_history(text: &str) -> Vec<(Timeline, Lsn)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let tli = fields.next()?.parse::<u32>().ok()?;
            let lsn = fields.next()?.parse::<Lsn>().ok()?;
            Some((Timeline(tli), lsn))
        })
        .collect()
}

/// A WAL segment file name (`TTTTTTTTXXXXXXXXYYYYYYYY`): its timeline and segment number,
/// given `segments_per_id` (`0x1_0000_0000 / wal_segment_size`).
fn parse_segment_name(name: &str, segments_per_id: u64) -> Option<(Timeline, u64)> {
    if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let tli = u32::from_str_radix(&name[0..8], 16).ok()?;
    let log = u64::from_str_radix(&name[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
    Some((Timeline(tli), log * segments_per_id + seg))
}

/// The timeline of the WAL a standby holds at `position` (see the module docs), from the
/// timeline PostgreSQL reports (`observed`) and the files of `pg_wal` (`names` of its
/// entries, `segment_bytes` the size of a segment file, `newest_history` the newest
/// timeline history file with its contents).
pub(crate) fn position_timeline(
    observed: Timeline,
    position: Lsn,
    names: &[String],
    segment_bytes: Option<u64>,
    newest_history: Option<(Timeline, &str)>,
) -> Timeline {
    let mut own = observed;
    if let Some(size) = segment_bytes.filter(|s| *s > 0 && 0x1_0000_0000 % *s == 0) {
        let per_id = 0x1_0000_0000 / size;
        let segno = position.0.saturating_sub(1) / size;
        for name in names {
            if let Some((tli, seg)) = parse_segment_name(name, per_id)
                && seg == segno
            {
                own = own.max(tli);
            }
        }
    }
    let Some((newest, text)) = newest_history else {
        return own;
    };
    if newest <= own {
        return own;
    }
    match parse_history(text).iter().find(|(t, _)| *t == own) {
        Some((_, end)) if position <= *end => newest,
        _ => own,
    }
}

/// [`position_timeline`] for the data directory `data_dir` (best effort: unreadable
/// entries are skipped).
pub(crate) fn standby_timeline(data_dir: &Path, observed: Timeline, position: Lsn) -> Timeline {
    let wal = data_dir.join("pg_wal");
    let Ok(entries) = std::fs::read_dir(&wal) else {
        return observed;
    };
    let mut names = Vec::new();
    let mut segment_bytes = None;
    let mut newest: Option<Timeline> = None;
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if let Some(hex) = name.strip_suffix(".history") {
            if let Ok(t) = u32::from_str_radix(hex, 16)
                && hex.len() == 8
            {
                newest = newest.max(Some(Timeline(t)));
            }
            continue;
        }
        if name.len() == 24 && segment_bytes.is_none() {
            segment_bytes = entry
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
        }
        names.push(name);
    }
    let history = newest.and_then(|t| {
        std::fs::read_to_string(wal.join(format!("{:08X}.history", t.0)))
            .ok()
            .map(|text| (t, text))
    });
    position_timeline(
        observed,
        position,
        &names,
        segment_bytes,
        history.as_ref().map(|(t, text)| (*t, text.as_str())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 * 1024 * 1024;
    const HISTORY_2: &str = "1\t0/403EC28\tno recovery target specified\n";

    fn lsn(s: &str) -> Lsn {
        s.parse().expect("lsn")
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn history_lines_parse() {
        let h = parse_history("# comment\n1\t0/3000060\tno recovery target\n2\t0/5000000\tx\n");
        assert_eq!(
            h,
            vec![
                (Timeline(1), lsn("0/3000060")),
                (Timeline(2), lsn("0/5000000"))
            ]
        );
        assert!(parse_history("garbage\n").is_empty());
    }

    #[test]
    fn a_diverged_former_primary_stays_on_its_own_timeline() {
        // WAL of timeline 1 up to 0/4A7AD98, beyond timeline 2's fork at 0/403EC28.
        let files = names(&["000000010000000000000004"]);
        let t = position_timeline(
            Timeline(1),
            lsn("0/4A7AD98"),
            &files,
            Some(SEG),
            Some((Timeline(2), HISTORY_2)),
        );
        assert_eq!(t, Timeline(1));
    }

    #[test]
    fn a_lagging_standby_before_the_fork_follows_the_new_timeline() {
        let files = names(&["000000010000000000000004"]);
        let t = position_timeline(
            Timeline(1),
            lsn("0/4000100"),
            &files,
            Some(SEG),
            Some((Timeline(2), HISTORY_2)),
        );
        assert_eq!(t, Timeline(2));
    }

    #[test]
    fn a_standby_that_replayed_the_switch_holds_the_new_segments() {
        let files = names(&["000000010000000000000004", "000000020000000000000004"]);
        let t = position_timeline(
            Timeline(1),
            lsn("0/4A00000"),
            &files,
            Some(SEG),
            Some((Timeline(2), HISTORY_2)),
        );
        assert_eq!(t, Timeline(2));
        // Without segment information, the observed timeline stands.
        assert_eq!(
            position_timeline(Timeline(1), lsn("0/4A00000"), &[], None, None),
            Timeline(1)
        );
    }

    #[test]
    fn segment_names_map_to_segment_numbers() {
        let per_id = 0x1_0000_0000 / SEG;
        assert_eq!(
            parse_segment_name("000000020000000100000003", per_id),
            Some((Timeline(2), per_id + 3))
        );
        assert_eq!(parse_segment_name("00000002.history", per_id), None);
        assert_eq!(
            parse_segment_name("000000020000000100000003.partial", per_id),
            None
        );
    }
}
