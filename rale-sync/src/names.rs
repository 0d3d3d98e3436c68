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

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

fn keyword(word: &str) -> Option<Tok> {
    if word.eq_ignore_ascii_case("any") {
        Some(Tok::Any)
    } else if word.eq_ignore_ascii_case("first") {
        Some(Tok::First)
    } else {
        None
    }
}

/// A token of the scanner.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Name(String),
    Num(String),
    Any,
    First,
    Comma,
    Open,
    Close,
    End,
}

/// A token with the byte offset where it starts and its source text.
#[derive(Clone, Debug)]
struct Spanned<'a> {
    tok: Tok,
    position: usize,
    text: &'a str,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn next(&mut self) -> Result<Spanned<'a>> {
        let bytes = self.src.as_bytes();
        while self.pos < bytes.len() && is_space(bytes[self.pos]) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(&b) = bytes.get(start) else {
            return Ok(Spanned {
                tok: Tok::End,
                position: start,
                text: "",
            });
        };
        let tok = if is_ident_start(b) {
            let mut end = start + 1;
            while end < bytes.len() && is_ident_cont(bytes[end]) {
                end += 1;
            }
            self.pos = end;
            let word = &self.src[start..end];
            keyword(word).unwrap_or_else(|| Tok::Name(word.to_owned()))
        } else if b.is_ascii_digit() {
            let mut end = start + 1;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            self.pos = end;
            Tok::Num(self.src[start..end].to_owned())
        } else if b == b'"' {
            let mut name = String::new();
            let mut i = start + 1;
            loop {
                // Bounded: `i` grows by at least one each turn and stops at the end.
                match self.src[i..].find('"') {
                    None => {
                        return Err(Error::Parse {
                            position: start,
                            message: "unterminated quoted identifier".into(),
                        });
                    }
                    Some(offset) => {
                        name.push_str(&self.src[i..i + offset]);
                        let quote = i + offset;
                        if bytes.get(quote + 1) == Some(&b'"') {
                            name.push('"');
                            i = quote + 2;
                        } else {
                            i = quote + 1;
                            break;
                        }
                    }
                }
            }
            self.pos = i;
            Tok::Name(name)
        } else {
            self.pos = start + 1;
            match b {
                b'*' => Tok::Name("*".into()),
                b',' => Tok::Comma,
                b'(' => Tok::Open,
                b')' => Tok::Close,
                _ => {
                    // Non-ASCII bytes start identifiers, so `b` is ASCII: one char.
                    return Err(Error::Parse {
                        position: start,
                        message: format!(
                            "syntax error at or near {:?}: unexpected character",
                            char::from(b)
                        ),
                    });
                }
            }
        };
        Ok(Spanned {
            tok,
            position: start,
            text: &self.src[start..self.pos],
        })
    }
}

fn unexpected(found: &Spanned<'_>, expected: &str) -> Error {
    let near = if found.tok == Tok::End {
        "at end of input".to_owned()
    } else {
        format!("at or near {:?}", found.text)
    };
    Error::Parse {
        position: found.position,
        message: format!("syntax error {near}: expected {expected}"),
    }
}

/// Converts a `NUM` token to the count PostgreSQL checks (`> 0`).
fn number(tok: &Spanned<'_>, digits: &str) -> Result<u32> {
    let trimmed = digits.trim_start_matches('0');
    let value = if trimmed.is_empty() {
        Some(0)
    } else if trimmed.len() > 10 {
        None
    } else {
        trimmed.parse::<u64>().ok()
    };
    match value {
        Some(0) => Err(Error::Parse {
            position: tok.position,
            message: "number of synchronous standbys (0) must be greater than zero".into(),
        }),
        Some(n) if n <= u64::from(MAX_NUM_SYNC) => {
            Ok(u32::try_from(n).expect("checked against MAX_NUM_SYNC"))
        }
        _ => Err(Error::Parse {
            position: tok.position,
            message: format!(
                "number of synchronous standbys {digits} is out of range (at most {MAX_NUM_SYNC})"
            ),
        }),
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Spanned<'a>,
}

impl<'a> Parser<'a> {
    fn bump(&mut self) -> Result<Spanned<'a>> {
        let next = self.lexer.next()?;
        Ok(std::mem::replace(&mut self.peeked, next))
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<()> {
        if self.peeked.tok == want {
            self.bump()?;
            Ok(())
        } else {
            Err(unexpected(&self.peeked, what))
        }
    }

    fn num(&mut self) -> Result<u32> {
        let tok = self.bump()?;
        match &tok.tok {
            Tok::Num(digits) => number(&tok, digits),
            _ => Err(unexpected(&tok, "the number of synchronous standbys")),
        }
    }

    fn name(&mut self) -> Result<String> {
        let tok = self.bump()?;
        match tok.tok {
            Tok::Name(name) | Tok::Num(name) => Ok(name),
            Tok::Any | Tok::First => Err(Error::Parse {
                position: tok.position,
                message: format!(
                    "syntax error at or near {:?}: {} is a keyword, quote it to use it as a standby name",
                    tok.text, tok.text
                ),
            }),
            _ => Err(unexpected(&tok, "a standby name")),
        }
    }

    /// `name (',' name)*`, first name already read when `first` is `Some`.
    fn list(&mut self, first: Option<String>) -> Result<Vec<String>> {
        let mut members = vec![match first {
            Some(name) => name,
            None => self.name()?,
        }];
        while self.peeked.tok == Tok::Comma {
            self.bump()?;
            members.push(self.name()?);
        }
        Ok(members)
    }

    /// `NUM '(' list ')'` after the keyword.
    fn group(&mut self, method: SyncMethod) -> Result<SyncList> {
        let num = self.num()?;
        self.expect(Tok::Open, "\"(\"")?;
        let members = self.list(None)?;
        self.expect(Tok::Close, "\",\" or \")\"")?;
        Ok(SyncList {
            method,
            num,
            members,
        })
    }
}

fn parse(text: &str) -> Result<StandbyNames> {
    if text.is_empty() {
        return Ok(StandbyNames::Empty);
    }
    if let Some(position) = text.find('\0') {
        return Err(Error::Parse {
            position,
            message: "NUL byte in synchronous_standby_names".into(),
        });
    }
    let mut lexer = Lexer { src: text, pos: 0 };
    let peeked = lexer.next()?;
    let mut p = Parser { lexer, peeked };
    let list = match p.peeked.tok.clone() {
        Tok::Any => {
            p.bump()?;
            p.group(SyncMethod::Any)?
        }
        Tok::First => {
            p.bump()?;
            p.group(SyncMethod::First)?
        }
        Tok::Num(digits) => {
            let num_tok = p.bump()?;
            if p.peeked.tok == Tok::Open {
                // `n (…)`: the pre-9.6-compatible spelling of FIRST n.
                let num = number(&num_tok, &digits)?;
                p.bump()?;
                let members = p.list(None)?;
                p.expect(Tok::Close, "\",\" or \")\"")?;
                SyncList {
                    method: SyncMethod::First,
                    num,
                    members,
                }
            } else {
                // A plain list whose first name is all digits.
                SyncList {
                    method: SyncMethod::First,
                    num: 1,
                    members: p.list(Some(digits))?,
                }
            }
        }
        Tok::Name(_) => SyncList {
            method: SyncMethod::First,
            num: 1,
            members: p.list(None)?,
        },
        _ => {
            return Err(unexpected(
                &p.peeked,
                "a standby name, a number, FIRST or ANY",
            ));
        }
    };
    if p.peeked.tok != Tok::End {
        return Err(unexpected(&p.peeked, "\",\" or the end of the value"));
    }
    Ok(StandbyNames::List(list))
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

    fn err_at(text: &str) -> usize {
        match parse(text) {
            Err(Error::Parse { position, .. }) => position,
            other => panic!("{text:?} should not parse, got {other:?}"),
        }
    }

    fn first(num: u32, members: &[&str]) -> StandbyNames {
        StandbyNames::first(num, members.iter().copied()).expect("valid")
    }

    fn quorum(num: u32, members: &[&str]) -> StandbyNames {
        StandbyNames::any(num, members.iter().copied()).expect("valid")
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(ok(""), StandbyNames::Empty);
        assert_eq!(ok("a"), first(1, &["a"]));
        assert_eq!(ok("a, b"), first(1, &["a", "b"]));
        assert_eq!(ok("2 (a, b)"), first(2, &["a", "b"]));
        assert_eq!(ok("FIRST 2 (a,b)"), first(2, &["a", "b"]));
        assert_eq!(ok("first 1(a)"), first(1, &["a"]));
        assert_eq!(ok("FiRsT 1 (a)"), first(1, &["a"]));
        assert_eq!(ok("ANY 2 (a, b, c)"), quorum(2, &["a", "b", "c"]));
        assert_eq!(ok("any 1 (*)"), quorum(1, &["*"]));
        assert_eq!(ok("*"), first(1, &["*"]));
        assert_eq!(ok("\"*\""), first(1, &["*"]));
        assert_eq!(ok(" \t\n\r\x0b\x0ca\x0c "), first(1, &["a"]));
        assert_eq!(ok("Node1"), first(1, &["Node1"]), "no case folding");
        assert_eq!(ok("\"a\"\"b\""), first(1, &["a\"b"]));
        assert_eq!(ok("\"\""), first(1, &[""]));
        assert_eq!(ok("\"any\", \"FIRST\""), first(1, &["any", "FIRST"]));
        assert_eq!(ok("anyone, firsts"), first(1, &["anyone", "firsts"]));
        assert_eq!(ok("any$"), first(1, &["any$"]));
        assert_eq!(ok("1, 2"), first(1, &["1", "2"]));
        assert_eq!(ok("007 (a)"), first(7, &["a"]));
        assert_eq!(ok("FIRST 3 (1)"), first(3, &["1"]));
        assert_eq!(ok("é_ü"), first(1, &["é_ü"]));
        assert_eq!(ok("a, a"), first(1, &["a", "a"]));
        assert_eq!(ok("a$1_b"), first(1, &["a$1_b"]));
        assert_eq!(ok("\"with space\""), first(1, &["with space"]));
        assert_eq!(ok("FIRST 2147483647 (a)"), first(MAX_NUM_SYNC, &["a"]));
    }

    #[test]
    fn rejected_forms_with_positions() {
        assert_eq!(err_at(" "), 1);
        assert_eq!(err_at("a,"), 2);
        assert_eq!(err_at(",a"), 0);
        assert_eq!(err_at("a b"), 2);
        assert_eq!(err_at("any"), 3);
        assert_eq!(err_at("first, a"), 5);
        assert_eq!(err_at("a, any"), 3);
        assert_eq!(err_at("FIRST (a)"), 6);
        assert_eq!(err_at("ANY 1 a"), 6);
        assert_eq!(err_at("ANY 1 (a"), 8);
        assert_eq!(err_at("ANY 1 (a) b"), 10);
        assert_eq!(err_at("FIRST 0 (a)"), 6);
        assert_eq!(err_at("0 (a)"), 0);
        assert_eq!(err_at("FIRST 2147483648 (a)"), 6);
        assert_eq!(err_at("FIRST 99999999999999999999999 (a)"), 6);
        assert_eq!(err_at("\"abc"), 0);
        assert_eq!(err_at("a, \"b\"\"c"), 3);
        assert_eq!(err_at("a-b"), 1);
        assert_eq!(err_at("1a"), 1);
        assert_eq!(err_at("$a"), 0);
        assert_eq!(err_at("()"), 0);
        assert_eq!(err_at("1 ()"), 3);
        assert_eq!(err_at("a\0"), 1);
        assert_eq!(err_at("FIRST 1 (a) (b)"), 12);
        assert_eq!(err_at("'a'"), 0);
    }

    #[test]
    fn error_messages_are_precise() {
        let message = |text: &str| match parse(text) {
            Err(Error::Parse { message, .. }) => message,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            message("a b"),
            "syntax error at or near \"b\": expected \",\" or the end of the value"
        );
        assert_eq!(
            message("a,"),
            "syntax error at end of input: expected a standby name"
        );
        assert_eq!(message("\"x"), "unterminated quoted identifier");
        assert!(message("FIRST 0 (a)").contains("must be greater than zero"));
        assert!(message("a, any").contains("keyword"));
        assert!(message("a-b").contains("'-'"));
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
