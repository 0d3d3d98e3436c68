//! The `synchronous_standby_names` value, parsed and printed as PostgreSQL 15 does.
//!
//! # Grammar (PostgreSQL 15, `syncrep_gram.y` / `syncrep_scanner.l`)
//!
//! ```text
//! value        := ''                                    -- no synchronous standbys
//!               | list                                  -- legacy form, = FIRST 1 (list)
//!               | NUM '(' list ')'                      -- = FIRST NUM (list)
//!               | FIRST NUM '(' list ')'
//!               | ANY NUM '(' list ')'
//! list         := name (',' name)*
//! name         := NAME | NUM                            -- an all-digit name is a name too
//! ```
//!
//! Tokens, longest match first, whitespace (`space`, `\t`, `\n`, `\r`, `\f`, `\v`)
//! between tokens ignored:
//!
//! - an identifier `[A-Za-z_\x80-\xff][A-Za-z_0-9$\x80-\xff]*` is the keyword `ANY` or
//!   `FIRST` when it is exactly that word in any case, a `NAME` otherwise. PostgreSQL does
//!   **not** fold unquoted names to lower case: `Node1` stays `Node1`. Case does not
//!   matter in the end anyway, because PostgreSQL compares a member with a standby's
//!   `application_name` case-insensitively (ASCII only; see [`SyncList::priority_of`]);
//! - `"…"` is a `NAME` holding the text between the quotes, with `""` standing for one
//!   `"`; it may be empty and may hold anything else, keywords and `*` included
//!   (`"*"` is the same wildcard as `*`);
//! - `[0-9]+` is a `NUM`; `*` is the `NAME` `*` (every standby matches it);
//! - `,`, `(`, `)` are themselves; any other byte is a syntax error.
//!
//! Only the exact empty string means "no synchronous standbys": a value of blanks is a
//! syntax error, as in PostgreSQL. After parsing, PostgreSQL requires the number to be
//! greater than zero. It converts the number with C's `atoi`, whose result is undefined
//! past `i32::MAX`; we reject such numbers instead (the only place we knowingly differ).
//!
//! [`StandbyNames`] prints canonical text — `FIRST n (a, b)` or `ANY n (a, b)`, names
//! quoted only when they must be — that parses back to the same value.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

mod parse;

use parse::{is_ident_cont, is_ident_start, keyword, parse};

/// The largest `n` PostgreSQL can hold (`num_sync` is a C `int`).
pub const MAX_NUM_SYNC: u32 = i32::MAX as u32;

/// How PostgreSQL picks the standbys that must acknowledge a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyncMethod {
    /// `FIRST n`: priority-based, the first `n` connected standbys in list order.
    First,
    /// `ANY n`: quorum-based, any `n` of the listed standbys.
    Any,
}

impl fmt::Display for SyncMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncMethod::First => "FIRST",
            SyncMethod::Any => "ANY",
        })
    }
}

/// A non-empty `synchronous_standby_names` rule: method, number and member names.
///
/// Fields are private so that every value prints as text PostgreSQL accepts: `num` is in
/// `1..=MAX_NUM_SYNC`, there is at least one member and no member contains a NUL byte.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SyncList {
    method: SyncMethod,
    num: u32,
    members: Vec<String>,
}

impl SyncList {
    /// Builds a rule, checking PostgreSQL's constraints.
    pub fn new(method: SyncMethod, num: u32, members: Vec<String>) -> Result<Self> {
        if num == 0 {
            return Err(Error::InvalidSetting(
                "number of synchronous standbys (0) must be greater than zero".into(),
            ));
        }
        if num > MAX_NUM_SYNC {
            return Err(Error::InvalidSetting(format!(
                "number of synchronous standbys ({num}) exceeds {MAX_NUM_SYNC}"
            )));
        }
        if members.is_empty() {
            return Err(Error::InvalidSetting(
                "synchronous_standby_names needs at least one standby name".into(),
            ));
        }
        if let Some(bad) = members.iter().find(|m| m.contains('\0')) {
            return Err(Error::InvalidSetting(format!(
                "standby name {bad:?} contains a NUL byte"
            )));
        }
        Ok(Self {
            method,
            num,
            members,
        })
    }

    /// `FIRST` or `ANY`.
    pub fn method(&self) -> SyncMethod {
        self.method
    }

    /// How many standbys must acknowledge a commit.
    pub fn num(&self) -> u32 {
        self.num
    }

    /// The member names in list order (`*` is the wildcard).
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// Whether a member is the wildcard `*`, which every standby matches.
    pub fn has_wildcard(&self) -> bool {
        self.members.iter().any(|m| m == "*")
    }

    /// The sync priority PostgreSQL gives a standby with this `application_name`, as in
    /// `pg_stat_replication.sync_priority`: the 1-based position of the first member that
    /// matches it (ASCII case-insensitively, or `*`), always 1 under `ANY`; `None` when
    /// no member matches (the standby is asynchronous).
    pub fn priority_of(&self, application_name: &str) -> Option<u32> {
        let position = self
            .members
            .iter()
            .position(|m| m == "*" || m.eq_ignore_ascii_case(application_name))?;
        Some(match self.method {
            SyncMethod::First => u32::try_from(position + 1).unwrap_or(u32::MAX),
            SyncMethod::Any => 1,
        })
    }
}

/// A whole `synchronous_standby_names` value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum StandbyNames {
    /// The empty string: commits wait for no standby.
    #[default]
    Empty,
    /// `FIRST n (…)` or `ANY n (…)` (the legacy forms parse to `FIRST`).
    List(SyncList),
}

impl StandbyNames {
    /// `FIRST num (members…)`.
    pub fn first<S: Into<String>>(num: u32, members: impl IntoIterator<Item = S>) -> Result<Self> {
        let members = members.into_iter().map(Into::into).collect();
        Ok(StandbyNames::List(SyncList::new(
            SyncMethod::First,
            num,
            members,
        )?))
    }

    /// `ANY num (members…)`.
    pub fn any<S: Into<String>>(num: u32, members: impl IntoIterator<Item = S>) -> Result<Self> {
        let members = members.into_iter().map(Into::into).collect();
        Ok(StandbyNames::List(SyncList::new(
            SyncMethod::Any,
            num,
            members,
        )?))
    }

    /// Parses text exactly as PostgreSQL 15 accepts it (see the module documentation).
    pub fn parse(text: &str) -> Result<Self> {
        parse(text)
    }

    /// The rule, or `None` for the empty value.
    pub fn list(&self) -> Option<&SyncList> {
        match self {
            StandbyNames::Empty => None,
            StandbyNames::List(list) => Some(list),
        }
    }

    /// How many standbys must acknowledge a commit (0 for the empty value).
    pub fn num(&self) -> u32 {
        self.list().map_or(0, SyncList::num)
    }

    /// The member names (empty for the empty value).
    pub fn members(&self) -> &[String] {
        self.list().map_or(&[], SyncList::members)
    }

    /// `FIRST`/`ANY`, or `None` for the empty value.
    pub fn method(&self) -> Option<SyncMethod> {
        self.list().map(SyncList::method)
    }
}

impl FromStr for StandbyNames {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse(s)
    }
}

impl fmt::Display for StandbyNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StandbyNames::Empty => Ok(()),
            StandbyNames::List(list) => fmt::Display::fmt(list, f),
        }
    }
}

impl fmt::Display for SyncList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (", self.method, self.num)?;
        for (i, member) in self.members.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write_name(f, member)?;
        }
        f.write_str(")")
    }
}

/// Writes one member name, quoted only when PostgreSQL would read it otherwise bare.
fn write_name(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    if needs_quotes(name) {
        f.write_str("\"")?;
        f.write_str(&name.replace('"', "\"\""))?;
        f.write_str("\"")
    } else {
        f.write_str(name)
    }
}

/// Whether `name` must be quoted to be read back as the same `NAME`.
pub fn needs_quotes(name: &str) -> bool {
    if name == "*" {
        return false;
    }
    let bytes = name.as_bytes();
    let Some(&first) = bytes.first() else {
        return true;
    };
    if bytes.iter().all(u8::is_ascii_digit) {
        // A NUM is accepted wherever a name is.
        return false;
    }
    if !is_ident_start(first) || !bytes[1..].iter().all(|&b| is_ident_cont(b)) {
        return true;
    }
    keyword(name).is_some()
}

/// The parser's contract on one arbitrary input, shared by the fuzz target
/// `sync_names` and the test that replays its corpus: parsing never panics, and a value
/// that parses prints as text that parses back to the same value and prints the same.
///
/// # Panics
///
/// When the contract is broken (that is the point).
pub fn check_round_trip(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Ok(value) => {
            let printed = value.to_string();
            let again = parse(&printed).expect("printed synchronous_standby_names parses");
            assert_eq!(again, value, "round trip of {text:?} via {printed:?}");
            assert_eq!(again.to_string(), printed, "printing is canonical");
        }
        Err(Error::Parse { position, message }) => {
            assert!(position <= text.len(), "error position within the input");
            assert!(!message.is_empty());
        }
        Err(other) => panic!("parse returned a non-parse error: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(text: &str) -> StandbyNames {
        parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    #[test]
    fn canonical_printing() {
        assert_eq!(ok("a,b").to_string(), "FIRST 1 (a, b)");
        assert_eq!(ok("2(a,b)").to_string(), "FIRST 2 (a, b)");
        assert_eq!(
            ok("any 1 (\"x y\", \"a\"\"b\")").to_string(),
            "ANY 1 (\"x y\", \"a\"\"b\")"
        );
        assert_eq!(ok("\"any\"").to_string(), "FIRST 1 (\"any\")");
        assert_eq!(ok("\"\"").to_string(), "FIRST 1 (\"\")");
        assert_eq!(ok("\"*\"").to_string(), "FIRST 1 (*)");
        assert_eq!(ok("\"12\"").to_string(), "FIRST 1 (12)");
        assert_eq!(ok("\"1a\"").to_string(), "FIRST 1 (\"1a\")");
        assert_eq!(ok("\"Node1\"").to_string(), "FIRST 1 (Node1)");
        assert_eq!(StandbyNames::Empty.to_string(), "");
    }

    #[test]
    fn priorities_follow_postgresql() {
        let names = ok("FIRST 1 (a, B, *)");
        let list = names.list().expect("not empty");
        assert_eq!(list.priority_of("A"), Some(1));
        assert_eq!(list.priority_of("b"), Some(2));
        assert_eq!(list.priority_of("zzz"), Some(3));
        let quorum = ok("ANY 1 (a, b)");
        assert_eq!(quorum.list().expect("list").priority_of("b"), Some(1));
        assert_eq!(quorum.list().expect("list").priority_of("c"), None);
    }

    #[test]
    fn constructor_checks() {
        assert!(StandbyNames::first(0, ["a"]).is_err());
        assert!(StandbyNames::first(1, Vec::<String>::new()).is_err());
        assert!(StandbyNames::any(MAX_NUM_SYNC + 1, ["a"]).is_err());
        assert!(StandbyNames::any(1, ["a\0"]).is_err());
    }

    #[test]
    fn replays_fuzz_corpus() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/sync_names");
        let entries = std::fs::read_dir(&dir).expect("fuzz/corpus/sync_names exists");
        let mut count = 0;
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus file reads");
            check_round_trip(&data);
            count += 1;
        }
        assert!(count >= 12, "seed corpus has {count} files");
    }

    /// Member names, biased towards the interesting ones.
    fn member() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_owned()),
            Just(String::new()),
            Just("any".to_owned()),
            Just("First".to_owned()),
            "[a-zA-Z_][a-zA-Z0-9_$]{0,8}",
            "[0-9]{1,4}",
            "[ -~]{0,8}",
            "\\PC{0,6}",
            any::<String>().prop_map(|s| s.replace('\0', "")),
        ]
    }

    fn value() -> impl Strategy<Value = StandbyNames> {
        prop_oneof![
            1 => Just(StandbyNames::Empty),
            8 => (
                prop_oneof![Just(SyncMethod::First), Just(SyncMethod::Any)],
                prop_oneof![1u32..5, Just(MAX_NUM_SYNC), 1u32..=MAX_NUM_SYNC],
                prop::collection::vec(member(), 1..6),
            )
                .prop_map(|(method, num, members)| {
                    StandbyNames::List(SyncList::new(method, num, members).expect("valid"))
                }),
        ]
    }

    /// Text made of the grammar's own pieces, so that many samples parse.
    fn grammar_soup() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just("FIRST".to_owned()),
                Just("any".to_owned()),
                Just("(".to_owned()),
                Just(")".to_owned()),
                Just(",".to_owned()),
                Just(" ".to_owned()),
                Just("\"".to_owned()),
                Just("*".to_owned()),
                "[0-9]{1,3}",
                "[a-z]{1,3}",
                "[\\t\\n\\x0b -~]",
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn print_then_parse_round_trips(value in value()) {
            let printed = value.to_string();
            let parsed = parse(&printed);
            prop_assert_eq!(parsed.ok(), Some(value), "printed {:?}", printed);
        }

        #[test]
        fn never_panics_on_arbitrary_strings(text in any::<String>()) {
            check_round_trip(text.as_bytes());
        }

        #[test]
        fn never_panics_on_grammar_soup(text in grammar_soup()) {
            check_round_trip(text.as_bytes());
        }

        #[test]
        fn never_panics_on_bytes(data in prop::collection::vec(any::<u8>(), 0..64)) {
            check_round_trip(&data);
        }
    }
}
