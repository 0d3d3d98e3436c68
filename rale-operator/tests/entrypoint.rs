//! The agent container's entrypoint (`packaging/docker/rale-entrypoint.sh`) on the
//! operator's rendered files: passwords appended from the Secrets as valid TOML, the
//! WAL wrappers, and (when a `ramd` binary is at hand: `RALE_RAMD_BIN`, or `ramd` next
//! to the test binaries) `ramd --check` accepting the result.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rale_operator::crd::RaleCluster;
use rale_operator::resources::{Credentials, desired_objects};

const PASSWORD: &str = "p\"a\\ss w$(rd)'`";

struct Pod {
    dir: tempfile::TempDir,
}

impl Pod {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Lays out what the pod's volumes hold: the ConfigMap's files (with the pod's
    /// absolute paths moved under the temp dir) and the Secrets.
    fn new(spec: &str) -> Pod {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_str().expect("utf-8").to_string();
        let spec: serde_yaml::Value = serde_yaml::from_str(spec).expect("spec");
        let cluster: RaleCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "rale.dev/v1alpha1", "kind": "RaleCluster",
            "metadata": {"name": "pg", "namespace": "db", "uid": "u-1"},
            "spec": spec,
        }))
        .expect("cluster");
        let objects = desired_objects(&cluster, &Credentials::default()).expect("objects");
        std::fs::create_dir_all(dir.path().join("config")).expect("mkdir");
        for (name, text) in objects.config_map.data.expect("data") {
            let text = text
                .replace("/var/lib/rale/data", &format!("{root}/data"))
                .replace("/etc/rale/secrets", &format!("{root}/secrets"))
                .replace("/run/rale", &format!("{root}/run"));
            std::fs::write(dir.path().join("config").join(name), text).expect("write");
        }
        for (role, pw) in [("superuser", PASSWORD), ("replication", "r"), ("api", "a")] {
            let d = dir.path().join("secrets").join(role);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("password"), format!("{pw}\n")).expect("write");
        }
        std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
        Pod { dir }
    }

    fn entrypoint(&self, ramd: &Path, pg_bin: &Path, wal: bool, args: &[&str]) -> (bool, String) {
        let mut cmd = Command::new("sh");
        cmd.arg(common::workspace().join("packaging/docker/rale-entrypoint.sh"))
            .args(args)
            .env("RALE_MEMBER", "pg-0")
            .env("RALE_CONFIG_DIR", self.path("config"))
            .env("RALE_SECRETS_DIR", self.path("secrets"))
            .env("RALE_RUN_DIR", self.path("run"))
            .env("RALE_RAMD", ramd)
            .env("RALE_PG_BIN", pg_bin);
        if wal {
            cmd.env("RALE_WAL_DIR", self.path("wal/pg_wal"));
        }
        common::run(&mut cmd)
    }
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

const SPEC: &str = "instances: 3\nimages: {agent: a}\nstorage: {size: 1Gi, wal: {size: 1Gi}}\n";

#[test]
fn passwords_are_appended_as_toml_and_wal_wrappers_are_made() {
    let pod = Pod::new(SPEC);
    // A fake ramd that records its arguments; a fake PostgreSQL bin directory.
    let fake = pod.path("fake");
    std::fs::create_dir_all(fake.join("pgbin")).expect("mkdir");
    script(
        &fake.join("ramd"),
        &format!("echo \"$@\" > {}/ramd.args", fake.display()),
    );
    script(
        &fake.join("pgbin/initdb"),
        &format!("echo \"$@\" > {}/initdb.args", fake.display()),
    );
    script(&fake.join("pgbin/postgres"), "exit 0");
    std::fs::create_dir_all(pod.path("wal/pg_wal/old")).expect("stale WAL");

    let (ok, out) = pod.entrypoint(&fake.join("ramd"), &fake.join("pgbin"), true, &["--check"]);
    assert!(ok, "{out}");
    let final_path = pod.path("run/ramd.toml");
    let args = std::fs::read_to_string(fake.join("ramd.args")).expect("ramd ran");
    assert_eq!(
        args.trim(),
        format!("--config {} --check", final_path.display())
    );

    let text = std::fs::read_to_string(&final_path).expect("final file");
    let t: toml::Table = toml::from_str(&text).expect("valid TOML");
    assert_eq!(
        t["postgresql"]["superuser_password"].as_str(),
        Some(PASSWORD)
    );
    assert_eq!(t["postgresql"]["replication_password"].as_str(), Some("r"));
    assert_eq!(t["name"].as_str(), Some("pg-0"));
    let mode = std::fs::metadata(&final_path)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the file holds passwords");

    // initdb is wrapped to put pg_wal on the WAL volume (emptied first); other
    // binaries are links.
    let bin = pod.path("run/bin");
    assert!(
        std::fs::symlink_metadata(bin.join("postgres"))
            .expect("link")
            .file_type()
            .is_symlink()
    );
    let (ok, out) = common::run(Command::new(bin.join("initdb")).args(["-D", "/x"]));
    assert!(ok, "{out}");
    let initdb = std::fs::read_to_string(fake.join("initdb.args")).expect("initdb ran");
    assert_eq!(
        initdb.trim(),
        format!("--waldir={} -D /x", pod.path("wal/pg_wal").display())
    );
    assert!(!pod.path("wal/pg_wal/old").exists(), "stale WAL removed");
    assert_eq!(
        t["postgresql"]["bin_dir"].as_str(),
        Some(bin.to_str().expect("utf-8"))
    );
}

#[test]
fn a_missing_member_file_or_secret_stops_with_ex_config() {
    let pod = Pod::new(SPEC);
    std::fs::remove_file(pod.path("config/pg-0.toml")).expect("rm");
    let (ok, out) = pod.entrypoint(
        Path::new("/bin/true"),
        Path::new("/nonexistent"),
        false,
        &[],
    );
    assert!(
        !ok && out.contains("no configuration for member pg-0"),
        "{out}"
    );

    let pod = Pod::new(SPEC);
    std::fs::remove_file(pod.path("secrets/replication/password")).expect("rm");
    let (ok, out) = pod.entrypoint(
        Path::new("/bin/true"),
        Path::new("/nonexistent"),
        false,
        &[],
    );
    assert!(!ok && out.contains("cannot read"), "{out}");
}

/// `ramd` from `RALE_RAMD_BIN` or next to the test binaries; never built here.
fn ramd() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RALE_RAMD_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("ramd");
    candidate.exists().then_some(candidate)
}

#[test]
fn ramd_check_accepts_the_rendered_file() {
    let Some(ramd) = ramd() else {
        println!(
            "SKIPPED: no ramd binary (set RALE_RAMD_BIN, or cargo build -p ramd-ref --bin ramd)"
        );
        return;
    };
    let pg_bin = Path::new("/usr/lib/postgresql/15/bin");
    if !pg_bin.join("postgres").exists() {
        println!("SKIPPED: no PostgreSQL 15 in {}", pg_bin.display());
        return;
    }
    for spec in [
        "instances: 3\nimages: {agent: a}\nstorage: {size: 1Gi}\n\
         synchronous: {mode: on, nodeCount: 1, strict: true}\n\
         postgresql: {parameters: {shared_buffers: 64MB, work_mem: 8MB}}\n",
        "instances: 1\nimages: {agent: a}\nstorage: {size: 1Gi}\n",
        "instances: 7\nimages: {agent: a}\nstorage: {size: 1Gi}\n",
    ] {
        let pod = Pod::new(spec);
        let (ok, out) = pod.entrypoint(&ramd, pg_bin, false, &["--check"]);
        println!("{out}");
        assert!(
            ok && out.contains("configuration is valid"),
            "ramd --check refused:\n{out}"
        );
    }
}
