//! Scanner and parser of `synchronous_standby_names` (the grammar is in the parent
//! module's documentation).

use super::{MAX_NUM_SYNC, StandbyNames, SyncList, SyncMethod};
use crate::{Error, Result};

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

pub(super) fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

pub(super) fn is_ident_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

pub(super) fn keyword(word: &str) -> Option<Tok> {
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
pub(super) enum Tok {
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

pub(super) fn parse(text: &str) -> Result<StandbyNames> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
