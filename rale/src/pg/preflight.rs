//! Checks that nothing *permanent* stands between the agent and its PostgreSQL server:
//! a supported server version, a data directory the PostgreSQL OS user can reach and
//! own, and no foreign contents in it. A failure here does not go away by retrying; the
//! agent says so and exits instead of looping (see `ramd --check`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Who a permission check is about: a user id and every group it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Login name, for messages.
    pub name: String,
    /// User id (0: root, who may do anything).
    pub uid: u32,
    /// Primary and supplementary group ids.
    pub gids: Vec<u32>,
}

impl Identity {
    /// The identity of this process.
    pub fn current() -> Self {
        let uid = nix::unistd::geteuid().as_raw();
        let mut gids: Vec<u32> = nix::unistd::getgroups()
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_default();
        gids.push(nix::unistd::getegid().as_raw());
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| format!("uid {uid}"));
        Self { name, uid, gids }
    }

    /// The identity of OS user `name` with primary group `gid` (supplementary groups from
    /// the group database).
    pub fn of_user(name: &str, uid: u32, gid: u32) -> Self {
        let mut gids = vec![gid];
        if let Ok(cname) = std::ffi::CString::new(name)
            && let Ok(groups) = nix::unistd::getgrouplist(&cname, nix::unistd::Gid::from_raw(gid))
        {
            gids.extend(groups.into_iter().map(|g| g.as_raw()));
        }
        Self {
            name: name.to_string(),
            uid,
            gids,
        }
    }

    /// Whether this identity has every `bits` (`0o4` read, `0o2` write, `0o1` search)
    /// on a file with `mode`, owner `uid` and group `gid`.
    pub fn may(&self, bits: u32, mode: u32, uid: u32, gid: u32) -> bool {
        if self.uid == 0 {
            return true;
        }
        let granted = if self.uid == uid {
            (mode >> 6) & 0o7
        } else if self.gids.contains(&gid) {
            (mode >> 3) & 0o7
        } else {
            mode & 0o7
        };
        granted & bits == bits
    }
}

fn may_path(who: &Identity, bits: u32, path: &Path) -> Result<bool> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(who.may(bits, meta.permissions().mode(), meta.uid(), meta.gid()))
}

/// The existing ancestors of `path` (root first), and the nearest one.
fn existing_ancestors(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = path
        .ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty() && p.exists())
        .map(Path::to_path_buf)
        .collect();
    out.reverse();
    out
}

/// What the data directory holds, as far as the preflight could tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataDirFinding {
    /// Missing or empty: it will be initialised or cloned.
    Empty,
    /// A PostgreSQL data directory of this major version.
    Cluster {
        /// Its major version (`PG_VERSION`).
        major: u32,
    },
}

/// Checks the data directory `dir` for a server of major version `major`, run by `pg`
/// (the PostgreSQL OS user) and prepared by `agent` (who creates missing directories and
/// hands them to `pg`).
pub fn check_data_dir(
    dir: &Path,
    major: u32,
    pg: &Identity,
    agent: &Identity,
) -> Result<DataDirFinding> {
    let bad = |m: String| Err(Error::InvalidConfig(m));
    for a in existing_ancestors(dir) {
        if !may_path(pg, 0o1, &a)? {
            return bad(format!(
                "data_dir {}: the PostgreSQL OS user {} cannot enter {} (needs search permission, x, on every parent directory)",
                dir.display(),
                pg.name,
                a.display()
            ));
        }
    }
    if !dir.exists() {
        let parent = existing_ancestors(dir)
            .pop()
            .unwrap_or_else(|| PathBuf::from("/"));
        if !may_path(agent, 0o3, &parent)? {
            return bad(format!(
                "data_dir {} does not exist and {} may not create it in {} (needs write and search permission)",
                dir.display(),
                agent.name,
                parent.display()
            ));
        }
        return Ok(DataDirFinding::Empty);
    }
    let meta =
        std::fs::metadata(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    if !meta.is_dir() {
        return bad(format!("data_dir {} is not a directory", dir.display()));
    }
    let empty = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
        .next()
        .is_none();
    if empty {
        // The agent makes it private and hands it to the PostgreSQL user (as root), or
        // must already be that user.
        if agent.uid != 0 && meta.uid() != agent.uid {
            return bad(format!(
                "data_dir {} belongs to uid {}, not to {} who runs the agent and PostgreSQL",
                dir.display(),
                meta.uid(),
                agent.name
            ));
        }
        return Ok(DataDirFinding::Empty);
    }
    let version_file = dir.join("PG_VERSION");
    let Ok(text) = std::fs::read_to_string(&version_file) else {
        return bad(format!(
            "data_dir {} is not empty and holds no PostgreSQL data directory (no PG_VERSION): \
             refusing to use or wipe it; point data_dir at an empty or PostgreSQL directory",
            dir.display()
        ));
    };
    let found: u32 = text.trim().parse().map_err(|_| {
        Error::InvalidConfig(format!(
            "{}: unreadable version {:?}",
            version_file.display(),
            text.trim()
        ))
    })?;
    if found != major {
        return bad(format!(
            "data_dir {} holds a PostgreSQL {found} cluster but the binaries are PostgreSQL {major}: \
             upgrade it (pg_upgrade) or set bin_dir to PostgreSQL {found}",
            dir.display()
        ));
    }
    if meta.uid() != pg.uid {
        return bad(format!(
            "data_dir {} belongs to uid {}, not to the PostgreSQL OS user {} (uid {}): PostgreSQL refuses to start",
            dir.display(),
            meta.uid(),
            pg.name,
            pg.uid
        ));
    }
    Ok(DataDirFinding::Cluster { major })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn someone(uid: u32, gids: &[u32]) -> Identity {
        Identity {
            name: format!("u{uid}"),
            uid,
            gids: gids.to_vec(),
        }
    }

    #[test]
    fn permission_bits_follow_owner_group_other() {
        let u = someone(1000, &[1000, 50]);
        assert!(u.may(0o7, 0o700, 1000, 0));
        assert!(!u.may(0o1, 0o700, 0, 0));
        assert!(u.may(0o1, 0o710, 0, 50));
        assert!(u.may(0o5, 0o755, 0, 0));
        assert!(!u.may(0o2, 0o755, 0, 0));
        assert!(someone(0, &[]).may(0o7, 0o000, 5, 5));
    }

    #[test]
    fn data_dirs_are_classified() {
        let me = Identity::current();
        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = tmp.path().join("a/b");
        assert_eq!(
            check_data_dir(&missing, 15, &me, &me).ok(),
            Some(DataDirFinding::Empty)
        );
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).expect("mkdir");
        assert_eq!(
            check_data_dir(&dir, 15, &me, &me).ok(),
            Some(DataDirFinding::Empty)
        );
        std::fs::write(dir.join("notes.txt"), "x").expect("write");
        let e = check_data_dir(&dir, 15, &me, &me)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("no PG_VERSION"), "{e}");
        std::fs::write(dir.join("PG_VERSION"), "14\n").expect("write");
        let e = check_data_dir(&dir, 15, &me, &me)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("PostgreSQL 14 cluster"), "{e}");
        std::fs::write(dir.join("PG_VERSION"), "15\n").expect("write");
        assert_eq!(
            check_data_dir(&dir, 15, &me, &me).ok(),
            Some(DataDirFinding::Cluster { major: 15 })
        );
        if me.uid != 0 {
            let stranger = someone(me.uid + 4242, &[]);
            let e = check_data_dir(&dir, 15, &stranger, &me)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("belongs to uid"), "{e}");
        }
        // A parent the PostgreSQL user cannot enter.
        let locked = tmp.path().join("locked");
        std::fs::create_dir(&locked).expect("mkdir");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let other = someone(me.uid.wrapping_add(4242).max(1), &[]);
        let e = check_data_dir(&locked.join("data"), 15, &other, &me)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("cannot enter"), "{e}");
    }
}
