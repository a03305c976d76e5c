//! User and group id mapping of the cell's user namespace.
//!
//! Root hosts map a range (`/etc/subuid`, `/etc/subgid`, or 100000:65536) so the
//! cell has its own root and its own users, none of them host root.
//! Unprivileged hosts map the caller's single id onto the job's id.

use std::path::Path;

use crate::error::{Error, Result};
use crate::sandbox::IdMap;

/// The default range when `/etc/subuid` has no entry for root.
pub(crate) const DEFAULT_RANGE: (u32, u32) = (100_000, 65_536);

/// The host uids that own cells' user namespaces on root hosts: the first,
/// and how many. See [`ns_owner`].
pub(crate) const NS_OWNERS: (u32, u32) = (0x7000_0000, 65_536);

/// The host uid the cell's user namespace is to be created by (0: the
/// cloning thread's own): on a root host with a range, one of the
/// [`NS_OWNERS`] block, a different one for each cell (in turn, from a
/// random start: two live cells share one only when 65 536 others were
/// started in between, or with another process's).
///
/// The kernel charges inotify instances and watches, fanotify groups and
/// marks, POSIX message queue bytes, pending signals, processes and locked
/// shared memory of everyone in a user namespace to that namespace's
/// creator as well, up to the creator's limits. Created by root, one cell
/// could take all of host root's (and every other cell's): an `EMFILE` from
/// `inotify_init1` for every root process of the host. Created by a uid no
/// process runs as and no file belongs to, a cell's use is charged to its
/// own budget, which is that uid's per-user limits: the host's
/// `fs.inotify.max_user_*` and `user.max_fanotify_*`, and the rlimits of
/// the process that clones (`RLIMIT_MSGQUEUE`, `RLIMIT_SIGPENDING`,
/// `RLIMIT_MEMLOCK`; `RLIMIT_NPROC` does not apply to root's clones).
/// That uid holds every capability over the cell's namespaces, as their
/// owner; no process of the host runs as it, and none can become it
/// without root.
pub(crate) fn ns_owner(ids: &IdPlan) -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    if !ids.become_root {
        return 0; // a single-id map: the caller's own namespace, its own budgets
    }
    let (base, count) = NS_OWNERS;
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let mut start = [0u8; 4];
        let _ = rustix::rand::getrandom(&mut start, rustix::rand::GetRandomFlags::NONBLOCK);
        let _ = NEXT.compare_exchange(
            u32::MAX,
            u32::from_ne_bytes(start) % count,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    base + NEXT.fetch_add(1, Ordering::Relaxed) % count
}

/// Whether host ids `start..start+count` overlap the namespace owners.
fn overlaps_owners(start: u32, count: u32) -> bool {
    let (base, n) = NS_OWNERS;
    start < base + n && base < start.saturating_add(count)
}

/// The resolved mapping for one cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IdPlan {
    /// Contents for `/proc/<pid>/uid_map`.
    pub uid_map: String,
    /// Contents for `/proc/<pid>/gid_map`.
    pub gid_map: String,
    /// Write "deny" to `/proc/<pid>/setgroups` first (unprivileged mapping).
    pub deny_setgroups: bool,
    /// The cell's init must `setresuid(0)` / `setresgid(0)` once the maps are written.
    pub become_root: bool,
    /// The job's ids inside the cell.
    pub uid: u32,
    pub gid: u32,
    /// Host ids the job's ids map to (for documentation and tests).
    pub host_uid: u32,
    pub host_gid: u32,
    /// Whether uid/gid 0 exist inside the cell.
    pub has_root: bool,
}

impl IdPlan {
    /// The host uids of the cell, when they are a range of their own
    /// (`None` for a single-id map: those are the caller's own ids).
    pub(crate) fn cell_range(&self) -> Option<(u32, u32)> {
        self.become_root.then(|| {
            let (start, _) = self.root_host_ids();
            let count = self
                .uid_map
                .split_whitespace()
                .nth(2)
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            (start, count)
        })
    }

    /// The host uid and gid of the cell's root (first ids of the range).
    pub(crate) fn root_host_ids(&self) -> (u32, u32) {
        (self.host_uid - self.uid, self.host_gid - self.gid)
    }
}

/// Works out the mapping for a sandbox's `IdMap` and job user.
pub(crate) fn plan(map: IdMap, uid: u32, gid: u32) -> Result<IdPlan> {
    // SAFETY: geteuid/getegid cannot fail and touch no memory.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let map = match map {
        IdMap::Auto if euid == 0 => {
            let range = |file: &str| {
                subid_range_read(Path::new(file), "root", 0)
                    .map(|r| r.unwrap_or(DEFAULT_RANGE))
                    .map_err(|errno| Error::IdMapping {
                        reason: format!("reading {file}: {errno}"),
                    })
            };
            let (us, uc) = range("/etc/subuid")?;
            let (gs, gc) = range("/etc/subgid")?;
            IdMap::Range {
                uid_start: us,
                gid_start: gs,
                count: uc.min(gc),
            }
        }
        IdMap::Auto => IdMap::Single,
        other => other,
    };
    match map {
        IdMap::Range {
            uid_start,
            gid_start,
            count,
        } => {
            if uid_start == 0 || gid_start == 0 {
                return Err(Error::IdMapping {
                    reason: "a range starting at host id 0 would give the cell host root's ids"
                        .into(),
                });
            }
            if count == 0 {
                return Err(Error::IdMapping {
                    reason: "the range is empty".into(),
                });
            }
            if uid_start.checked_add(count).is_none() || gid_start.checked_add(count).is_none() {
                return Err(Error::IdMapping {
                    reason: format!("the range {uid_start}+{count} overflows 32 bits"),
                });
            }
            if euid != 0 {
                return Err(Error::IdMapping {
                    reason: "mapping a range needs root; use IdMap::Single or IdMap::Auto".into(),
                });
            }
            if overlaps_owners(uid_start, count) {
                let (base, n) = NS_OWNERS;
                return Err(Error::IdMapping {
                    reason: format!(
                        "the uid range {uid_start}+{count} overlaps host uids {base}..{}, which own cells' user namespaces",
                        base + n
                    ),
                });
            }
            if uid >= count {
                return Err(Error::IdOutOfRange {
                    kind: "uid",
                    id: uid,
                    count,
                });
            }
            if gid >= count {
                return Err(Error::IdOutOfRange {
                    kind: "gid",
                    id: gid,
                    count,
                });
            }
            Ok(IdPlan {
                uid_map: format!("0 {uid_start} {count}\n"),
                gid_map: format!("0 {gid_start} {count}\n"),
                deny_setgroups: false,
                become_root: true,
                uid,
                gid,
                host_uid: uid_start + uid,
                host_gid: gid_start + gid,
                has_root: true,
            })
        }
        IdMap::Single | IdMap::Auto => {
            if euid == 0 || egid == 0 {
                return Err(Error::IdMapping {
                    reason: "a single-id mapping of a root caller would run the job as host root; use a range".into(),
                });
            }
            Ok(IdPlan {
                uid_map: format!("{uid} {euid} 1\n"),
                gid_map: format!("{gid} {egid} 1\n"),
                deny_setgroups: true,
                become_root: false,
                uid,
                gid,
                host_uid: euid,
                host_gid: egid,
                has_root: uid == 0,
            })
        }
    }
}

impl crate::sandbox::Sandbox {
    /// The host uid and gid the job runs as: what its processes are on the
    /// host, and who owns, on the host, the files it creates in a
    /// [`bind_rw`](crate::Sandbox::bind_rw) directory. Known before the
    /// spawn, to prepare such a directory: a host directory owned by
    /// someone else shows up in the cell owned by `nobody`, and the job
    /// cannot write it.
    ///
    /// A root host maps the cell's ids `0..count` onto a range of host ids
    /// (root's `/etc/subuid` and `/etc/subgid` entries, or 100000..165536),
    /// so the default job user 1000 is host uid 101000; an unprivileged
    /// caller's job runs as the caller itself. Never host root. Errors as
    /// [`spawn`](crate::Sandbox::spawn) would for the same id settings
    /// (an id outside the mapped range, an unreadable `/etc/subuid`).
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.user(1000, 1000);
    /// let (uid, gid) = sandbox.host_ids()?;
    /// assert!(uid != 0 && gid != 0, "a job never runs as host root");
    /// // A directory the job may write, e.g. a fresh workspace:
    /// let work = tempfile::tempdir()?;
    /// std::os::unix::fs::chown(work.path(), Some(uid), Some(gid))?;
    /// sandbox.bind_rw(work.path(), "/work");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn host_ids(&self) -> Result<(u32, u32)> {
        let ids = plan(self.id_map, self.uid, self.gid)?;
        Ok((ids.host_uid, ids.host_gid))
    }
}

/// Looks up `user` (or its numeric `uid`) in a subuid/subgid file:
/// `name:start:count` lines. The answer is remembered while the file's
/// modification time stays the same (every spawn asks; the time comes from
/// `hostwatch`, which asks the kernel only after a change).
pub(crate) fn subid_range(file: &Path, user: &str, uid: u32) -> Option<(u32, u32)> {
    subid_range_read(file, user, uid).ok().flatten()
}

/// [`subid_range`], or the error that kept the file from being read (a
/// missing file has no entries).
fn subid_range_read(
    file: &Path,
    user: &str,
    uid: u32,
) -> std::result::Result<Option<(u32, u32)>, crate::Errno> {
    type Entry = (
        std::path::PathBuf,
        String,
        u32,
        Option<std::time::SystemTime>,
        Option<(u32, u32)>,
    );
    static CACHE: parking_lot::Mutex<Vec<Entry>> = parking_lot::Mutex::new(Vec::new());
    let mtime = super::hostwatch::lookup(file).and_then(|f| {
        // A symlinked file: its target's time (rare: ask each time).
        match f.md.file_type().is_symlink() {
            true => std::fs::metadata(file).and_then(|m| m.modified()).ok(),
            false => f.md.modified().ok(),
        }
    });
    let mut cache = CACHE.lock();
    if let Some(e) = cache
        .iter()
        .find(|e| e.0 == file && e.1 == user && e.2 == uid && e.3 == mtime)
    {
        return Ok(e.4);
    }
    let found = match std::fs::read_to_string(file) {
        Ok(t) => parse_subid(&t, user, uid),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        // Not read just now (EMFILE, ENOMEM): not an answer to remember.
        Err(e) => return Err(crate::Errno::from(&e)),
    };
    cache.retain(|e| !(e.0 == file && e.1 == user && e.2 == uid));
    cache.push((file.to_owned(), user.to_owned(), uid, mtime, found));
    Ok(found)
}

pub(crate) fn parse_subid(text: &str, user: &str, uid: u32) -> Option<(u32, u32)> {
    let uid_s = uid.to_string();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split(':');
            let (name, start, count) = (it.next()?, it.next()?, it.next()?);
            if it.next().is_some() || (name != user && name != uid_s) {
                return None;
            }
            let start: u32 = start.trim().parse().ok()?;
            let count: u32 = count.trim().parse().ok()?;
            (start > 0 && count > 0 && start.checked_add(count).is_some()).then_some((start, count))
        })
        .next()
}

/// The `/etc/passwd` and `/etc/group` of the cell.
pub(crate) fn passwd_and_group(ids: &IdPlan) -> (String, String) {
    let mut passwd = String::new();
    let mut group = String::new();
    if ids.has_root {
        passwd.push_str("root:x:0:0:root:/root:/bin/sh\n");
        group.push_str("root:x:0:\n");
    }
    if ids.uid != 0 {
        passwd.push_str(&format!(
            "user:x:{}:{}:jobcell user:/tmp:/bin/sh\n",
            ids.uid, ids.gid
        ));
    }
    if ids.gid != 0 {
        group.push_str(&format!("user:x:{}:\n", ids.gid));
    }
    if ids.uid != 65534 {
        passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    }
    if ids.gid != 65534 {
        group.push_str("nogroup:x:65534:\n");
    }
    (passwd, group)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan of a root host's default range, for job uid/gid 1000.
    fn range_plan() -> IdPlan {
        IdPlan {
            uid_map: "0 100000 65536\n".into(),
            gid_map: "0 100000 65536\n".into(),
            deny_setgroups: false,
            become_root: true,
            uid: 1000,
            gid: 1000,
            host_uid: 101000,
            host_gid: 101000,
            has_root: true,
        }
    }

    #[test]
    fn cells_get_namespace_owners_of_their_own() {
        let range = range_plan();
        let (base, count) = NS_OWNERS;
        let owners: Vec<u32> = (0..100).map(|_| ns_owner(&range)).collect();
        for (a, b) in owners.iter().zip(&owners[1..]) {
            assert!((base..base + count).contains(a));
            assert_ne!(a, b);
        }
        let single = IdPlan {
            become_root: false,
            ..range
        };
        assert_eq!(ns_owner(&single), 0);
        assert!(overlaps_owners(base - 10, 11) && overlaps_owners(base + count - 1, 5));
        assert!(!overlaps_owners(base - 10, 10) && !overlaps_owners(base + count, 5));
        assert!(!overlaps_owners(100_000, 65_536));
    }
    use proptest::prelude::*;

    #[test]
    fn parses_subid_files() {
        let t = "# comment\nalice:200000:65536\nroot:300000:1000\n0:400000:5\n";
        assert_eq!(parse_subid(t, "root", 0), Some((300000, 1000)));
        assert_eq!(parse_subid(t, "alice", 1000), Some((200000, 65536)));
        assert_eq!(parse_subid("0:400000:5\n", "root", 0), Some((400000, 5)));
        assert_eq!(
            parse_subid("root:0:10\n", "root", 0),
            None,
            "start 0 is refused"
        );
        assert_eq!(parse_subid("root:x:10\n", "root", 0), None);
        assert_eq!(parse_subid("root:4294967295:10\n", "root", 0), None);
    }

    #[test]
    fn range_checks() {
        let r = IdMap::Range {
            uid_start: 100000,
            gid_start: 100000,
            count: 100,
        };
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let p = plan(r, 99, 99).unwrap();
            assert_eq!(p.uid_map, "0 100000 100\n");
            assert_eq!(p.host_uid, 100099);
            assert!(matches!(
                plan(r, 100, 1),
                Err(Error::IdOutOfRange { kind: "uid", .. })
            ));
            assert!(matches!(
                plan(r, 1, 100),
                Err(Error::IdOutOfRange { kind: "gid", .. })
            ));
            let zero = IdMap::Range {
                uid_start: 0,
                gid_start: 1,
                count: 10,
            };
            assert!(plan(zero, 1, 1).is_err());
            assert!(
                plan(IdMap::Single, 1000, 1000).is_err(),
                "root + single = host root"
            );
        }
    }

    #[test]
    fn passwd_has_the_job_user() {
        let (passwd, group) = passwd_and_group(&range_plan());
        assert!(passwd.contains("user:x:1000:1000:"));
        assert!(passwd.starts_with("root:x:0:0:"));
        assert!(group.contains("user:x:1000:"));
    }

    proptest! {
        #[test]
        fn subid_parser_never_panics(s in "[a-z0-9:#\n ]{0,64}") {
            let _ = parse_subid(&s, "root", 0);
        }

        #[test]
        fn subid_parser_finds_valid_lines(start in 1u32..1_000_000, count in 1u32..1_000_000) {
            let t = format!("other:1:1\nroot:{start}:{count}\n");
            prop_assert_eq!(parse_subid(&t, "root", 0), Some((start, count)));
        }
    }
}
