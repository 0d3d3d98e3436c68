//! Best-effort phase timing from an agent's text log (`ramd.log`).

use std::path::Path;

use chrono::{DateTime, Utc};

/// Removes ANSI colour escapes (`ESC [ … m`).
pub(crate) fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Timestamp of the first line at or after `since` that contains `needle`.
pub(crate) fn first_after(text: &str, since: DateTime<Utc>, needle: &str) -> Option<DateTime<Utc>> {
    text.lines().find_map(|raw| {
        let line = strip_ansi(raw);
        if !line.contains(needle) {
            return None;
        }
        let ts = line.split_whitespace().next()?;
        let at = DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc);
        (at >= since).then_some(at)
    })
}

/// Seconds from `since` to the first `needle` line of the log at `path`, if any.
pub(crate) fn phase_s(path: &Path, since: DateTime<Utc>, needle: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let at = first_after(&text, since, needle)?;
    Some((at - since).num_microseconds()? as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_phase_in_coloured_line() {
        let text = "2026-11-22T03:56:20.000000Z  INFO decision kind=Steady\n\
                    \u{1b}[2m2026-11-22T03:56:21.500000Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m decision \u{1b}[3mkind\u{1b}[0m\u{1b}[2m=\u{1b}[0mFailover\n";
        let since = DateTime::parse_from_rfc3339("2026-11-22T03:56:20.250000Z")
            .expect("valid")
            .with_timezone(&Utc);
        let at = first_after(text, since, "kind=Failover").expect("found");
        assert_eq!((at - since).num_milliseconds(), 1250);
        assert!(first_after(text, since, "kind=Steady").is_none());
    }
}
