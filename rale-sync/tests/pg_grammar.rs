//! Differential test against real PostgreSQL 15: every input is offered to
//! `ALTER SYSTEM SET synchronous_standby_names`, and PostgreSQL must accept exactly what
//! our parser accepts; the canonical text we print for an accepted value must be
//! accepted too.
//!
//! Needs the PostgreSQL 15 server and psql (Debian: `postgresql-15`,
//! `postgresql-client-15`) in /usr/lib/postgresql/15/bin. Run:
//! `cargo test -p rale-sync --test pg_grammar`.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rale_sync::names::StandbyNames;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A throw-away PostgreSQL 15 server on a Unix socket in a temporary directory, stopped
/// (immediately) on drop.
struct Server {
    dir: tempfile::TempDir,
    port: u16,
    /// Uid/gid to run server binaries as (`postgres` when we are root).
    run_as: Option<(u32, u32)>,
}

impl Server {
    fn start() -> Server {
        assert!(
            Path::new(BIN).join("postgres").exists(),
            "PostgreSQL 15 is not installed in {BIN} (Debian package postgresql-15)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let run_as = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .expect("user lookup")
                .expect("a postgres OS user exists when running as root");
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).expect("chown temp dir");
            Some((user.uid.as_raw(), user.gid.as_raw()))
        } else {
            None
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let server = Server { dir, port, run_as };
        let data = server.data();
        let out = server.run(
            Command::new(Path::new(BIN).join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
                .arg(&data),
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let options = format!(
            "-p {} -k {} -c listen_addresses='' -c fsync=off",
            server.port,
            server.dir.path().display()
        );
        let out = server.run(
            Command::new(Path::new(BIN).join("pg_ctl"))
                .args(["-w", "-t", "120", "-D"])
                .arg(&data)
                .arg("-l")
                .arg(server.dir.path().join("log"))
                .args(["-o", &options, "start"]),
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, cmd: &mut Command) -> Output {
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(self.dir.path())
            .output()
            .expect("run a PostgreSQL binary")
    }

    /// Whether PostgreSQL accepts `value` for synchronous_standby_names.
    fn accepts(&self, value: &str) -> bool {
        let sql = format!(
            "ALTER SYSTEM SET synchronous_standby_names = '{}'",
            value.replace('\'', "''")
        );
        let out = Command::new(Path::new(BIN).join("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .arg("-h")
            .arg(self.dir.path())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(&sql)
            .output()
            .expect("run psql");
        match out.status.code() {
            Some(0) => true,
            Some(1) | Some(3) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    stderr.contains("synchronous_standby_names")
                        || stderr.contains("synchronous standbys"),
                    "unexpected psql error for {value:?}: {stderr}"
                );
                false
            }
            _ => panic!(
                "psql failed for {value:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run(
            Command::new(Path::new(BIN).join("pg_ctl"))
                .args(["-m", "immediate", "-w", "-t", "60", "-D"])
                .arg(&data)
                .arg("stop"),
        );
    }
}

/// Hand-picked inputs around every rule of the grammar.
const TRICKY: &[&str] = &[
    "",
    " ",
    "\t\n",
    "a",
    "a, b",
    "a,b,c",
    " a , b ",
    "2 (a, b)",
    "2(a,b)",
    "FIRST 2 (a, b)",
    "first 1 (a)",
    "FiRsT 1 (a)",
    "ANY 1 (a, b)",
    "any 3 (a)",
    "*",
    "a, *",
    "\"*\"",
    "ANY 1 (*)",
    "\"a\"\"b\"",
    "\"\"",
    "\"any\"",
    "any",
    "first",
    "a, any",
    "first, a",
    "anyone, firsts",
    "any$",
    "Node1",
    "1",
    "1, 2",
    "007 (a)",
    "0 (a)",
    "FIRST 0 (a)",
    "ANY 0 (a)",
    "FIRST 1 (1)",
    "FIRST (a)",
    "ANY 1 a",
    "ANY 1 (a",
    "ANY 1 (a) b",
    "FIRST 1 (a) (b)",
    "a b",
    "a,",
    ",a",
    "()",
    "1 ()",
    "a-b",
    "1a",
    "$a",
    "a$1_b",
    "_x",
    "é_ü",
    "\"with space\"",
    "\"unterminated",
    "a, \"b\"\"c",
    "'a'",
    "a;b",
    "\x0b a \x0c",
    "FIRST 2147483647 (a)",
    "FIRST 1 (rale_fence, s1, s2)",
];

/// Deterministic random inputs made of the grammar's pieces.
fn generated(count: usize) -> Vec<String> {
    const PIECES: &[&str] = &[
        "FIRST", "any", "ANY", "first", "(", ")", ",", " ", "\"", "\"\"", "*", "1", "2", "0", "12",
        "a", "b", "Ab", "x_1", "$", "-", "\t", "é", ";",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut out = Vec::with_capacity(count);
    // Start with shapes likely to parse, then anything.
    for i in 0..count {
        let text = if i % 3 == 0 {
            let names: Vec<&str> = (0..1 + next(3))
                .map(|_| ["a", "\"x y\"", "*", "7", "B"][next(5)])
                .collect();
            let head = ["FIRST ", "ANY ", "", "any "][next(4)];
            if head.is_empty() && next(2) == 0 {
                names.join(", ")
            } else {
                format!("{head}{} ({})", 1 + next(3), names.join(","))
            }
        } else {
            (0..1 + next(8))
                .map(|_| PIECES[next(PIECES.len())])
                .collect()
        };
        out.push(text);
    }
    out
}

#[test]
fn postgres_accepts_exactly_what_we_accept() {
    let server = Server::start();
    let mut inputs: Vec<String> = TRICKY.iter().map(|s| s.to_string()).collect();
    inputs.extend(generated(240));
    let mut mismatches = Vec::new();
    let (mut accepted, mut rejected) = (0, 0);
    for input in &inputs {
        let ours = StandbyNames::parse(input);
        let theirs = server.accepts(input);
        if ours.is_ok() != theirs {
            mismatches.push(format!(
                "{input:?}: ours {ours:?}, PostgreSQL accepts: {theirs}"
            ));
            continue;
        }
        if let Ok(value) = ours {
            accepted += 1;
            let canonical = value.to_string();
            assert!(
                server.accepts(&canonical),
                "canonical {canonical:?} of {input:?} rejected"
            );
        } else {
            rejected += 1;
        }
    }
    assert!(
        mismatches.is_empty(),
        "parser differs from PostgreSQL:\n{}",
        mismatches.join("\n")
    );
    eprintln!("{accepted} accepted, {rejected} rejected by both");
    assert!(
        accepted > 40 && rejected > 40,
        "the sample exercises both sides"
    );
}
