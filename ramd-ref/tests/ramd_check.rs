//! `ramd --check` checks every rule the start applies (`ramd_ref::daemon::prepare`), and a
//! permanent failure — at start or later — makes `ramd` exit with code 78 and say why,
//! instead of retrying for ever.
//! Run: `cargo test -p ramd-ref --test ramd_check`

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXIT_PERMANENT: i32 = 78;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A single-node configuration in `dir`; `peers` replaces the `[[peers]]` tables and
/// `extra` is appended.
fn config(dir: &Path, data_dir: &Path, peers: Option<&str>, extra: &str) -> PathBuf {
    let api = free_port();
    let pg = free_port();
    let peers = peers.map(str::to_string).unwrap_or_else(|| {
        format!("[[peers]]\nname = \"n1\"\nraft_id = 1\napi_url = \"http://127.0.0.1:{api}\"\n")
    });
    let text = format!(
        r#"name = "n1"
state_dir = "{state}"

[api]
listen = "127.0.0.1:{api}"
username = "admin"
password = "secret"

[postgresql]
data_dir = "{data}"
port = {pg}
superuser_password = "su-secret"
replication_password = "repl-secret"

{peers}
{extra}
"#,
        state = dir.join("state").display(),
        data = data_dir.display(),
    );
    let path = dir.join(format!("ramd-{api}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn ramd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ramd"))
}

/// `ramd --check FILE`: exit code and stderr.
fn check(path: &Path) -> (i32, String) {
    let out = ramd()
        .arg("--config")
        .arg(path)
        .arg("--check")
        .output()
        .expect("run ramd --check");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn refused(path: &Path, needle: &str) {
    let (code, text) = check(path);
    assert_eq!(
        code, EXIT_PERMANENT,
        "expected a refusal with {needle:?}: {text}"
    );
    assert!(text.contains(needle), "expected {needle:?} in: {text}");
}

#[test]
fn check_accepts_a_good_file_and_refuses_what_the_start_refuses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data = tmp.path().join("data");

    let good = config(tmp.path(), &data, None, "");
    let (code, text) = check(&good);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("configuration is valid") && text.contains("PostgreSQL"),
        "{text}"
    );

    // Two peers reaching one agent: it would hold two votes.
    let port = free_port();
    let twice = format!(
        "[[peers]]\nname = \"n1\"\nraft_id = 1\napi_url = \"http://127.0.0.1:{port}\"\n\
         [[peers]]\nname = \"n2\"\nraft_id = 2\napi_url = \"http://127.0.0.1:{port}/\"\n\
         [[peers]]\nname = \"n3\"\nraft_id = 3\napi_url = \"http://localhost:1\"\n"
    );
    refused(&config(tmp.path(), &data, Some(&twice), ""), "two votes");

    // A name listed twice.
    let dup = format!(
        "[[peers]]\nname = \"n1\"\nraft_id = 1\napi_url = \"http://127.0.0.1:{port}\"\n\
         [[peers]]\nname = \"n1\"\nraft_id = 2\napi_url = \"http://127.0.0.1:1\"\n"
    );
    refused(&config(tmp.path(), &data, Some(&dup), ""), "same name");

    // A heartbeat of zero (refused by the consensus settings, formerly only at start).
    refused(
        &config(
            tmp.path(),
            &data,
            None,
            "[consensus]\nheartbeat_interval = \"0ms\"\nelection_timeout_min = \"200ms\"\nelection_timeout_max = \"400ms\"\n",
        ),
        "heartbeat_interval",
    );

    // A data directory holding something else.
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).expect("mkdir");
    std::fs::write(foreign.join("important.txt"), "not a database").expect("write");
    refused(&config(tmp.path(), &foreign, None, ""), "no PG_VERSION");

    // A data directory the PostgreSQL OS user cannot reach.
    let locked = tmp.path().join("locked");
    std::fs::create_dir(&locked).expect("mkdir");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let (code, text) = check(&config(tmp.path(), &locked.join("data"), None, ""));
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    assert_eq!(code, EXIT_PERMANENT, "{text}");
    assert!(
        text.contains("cannot enter") || text.contains("may not create"),
        "{text}"
    );
}

/// Permissions taken away after the start: the bootstrap fails, the agent finds the
/// cause permanent and exits 78 with the reason, instead of retrying every few seconds.
#[test]
fn a_permanent_failure_after_the_start_stops_the_agent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let parent = tmp.path().join("pgroot");
    std::fs::create_dir(&parent).expect("mkdir");
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let cfg = config(tmp.path(), &parent.join("data"), None, "");
    let log = std::fs::File::create(tmp.path().join("ramd.log")).expect("log");
    let mut child = ramd()
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start ramd");
    // Once the start's own checks passed ("ramd started"), and while the bootstrap waits
    // one publish interval (500 ms) before it claims, lock the directory.
    let started = Instant::now();
    while !std::fs::read_to_string(tmp.path().join("ramd.log"))
        .unwrap_or_default()
        .contains("ramd started")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ramd did not start"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "ramd exited at start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let text = std::fs::read_to_string(tmp.path().join("ramd.log")).unwrap_or_default();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("ramd still runs 60 s after its data directory became unusable:\n{text}");
    };
    assert_eq!(status.code(), Some(EXIT_PERMANENT), "{text}");
    assert!(
        text.contains("permanent failure") && text.contains("cannot enter"),
        "{text}"
    );
}
