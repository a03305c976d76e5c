//! Opening host paths that jobs may have written to: bind sources and stdin
//! files. The host opens them with its own (root) privileges, so a symlink a
//! job planted in a writable bind must never decide what they open: a job
//! that leaves `work/input -> /etc/shadow` would otherwise have the host feed
//! the password hashes to the next job.
//!
//! Paths are walked one component at a time. Symlinks are followed like the
//! kernel would, except those owned by ids cells run as (the sandbox's mapped
//! range, and every range in `/etc/subuid`): only a job can have made those.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, CWD};

use crate::error::Errno;

/// Host uid ranges whose symlinks are never followed: `[start, start + count)`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Untrusted(Vec<(u32, u32)>);

impl Untrusted {
    /// The sandbox's own mapped range plus every subordinate id range of the host.
    pub(crate) fn for_range(range: Option<(u32, u32)>) -> Untrusted {
        let mut v: Vec<(u32, u32)> = match subid_ranges() {
            Some(ranges) => ranges.to_vec(),
            // /etc/subuid could not be read just now (EMFILE, ENOMEM):
            // every id but root's is a cell's for this spawn.
            None => vec![(1, u32::MAX - 1)],
        };
        v.extend(range);
        Untrusted(v)
    }

    fn contains(&self, uid: u32) -> bool {
        self.0.iter().any(|&(s, n)| uid >= s && uid - s < n)
    }
}

/// Every range of `/etc/subuid`, read once (none if it does not exist);
/// `None` if it could not be read now (read again next time).
fn subid_ranges() -> Option<&'static [(u32, u32)]> {
    static RANGES: OnceLock<Vec<(u32, u32)>> = OnceLock::new();
    if let Some(r) = RANGES.get() {
        return Some(r);
    }
    let ranges = match std::fs::read_to_string("/etc/subuid") {
        Ok(t) => parse_ranges(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(_) => return None,
    };
    Some(RANGES.get_or_init(|| ranges))
}

fn parse_ranges(text: &str) -> Vec<(u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.trim().split(':');
            let (_, s, n) = (it.next()?, it.next()?, it.next()?);
            Some((s.trim().parse().ok()?, n.trim().parse().ok()?))
        })
        .collect()
}

/// Why a path was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A system call failed.
    Errno(Errno),
    /// The path crosses a symlink a cell's id owns.
    PlantedSymlink(std::path::PathBuf),
}

/// The crate error for a refused path.
pub(crate) fn refused(what: &'static str, path: &Path, r: Refusal) -> crate::Error {
    match r {
        Refusal::Errno(errno) => crate::Error::HostPath {
            what,
            path: path.to_owned(),
            errno,
        },
        Refusal::PlantedSymlink(link) => crate::Error::UntrustedSymlink {
            what,
            path: path.to_owned(),
            link,
        },
    }
}

/// Opens `path` as an `O_PATH` descriptor, following only trusted symlinks.
pub(crate) fn open_path(path: &Path, untrusted: &Untrusted) -> Result<OwnedFd, Refusal> {
    let err = |e: rustix::io::Errno| Refusal::Errno(e.into());
    // Most paths hold no symlink at all: one openat2 settles them.
    let quick = rustix::fs::openat2(
        CWD,
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    );
    match quick {
        Ok(fd) => return Ok(fd),
        Err(rustix::io::Errno::LOOP) | Err(rustix::io::Errno::NOSYS) => {}
        Err(e) => return Err(err(e)),
    }
    let bytes = path.as_os_str().as_bytes();
    let mut pending: Vec<Vec<u8>> = Vec::new();
    push_components(&mut pending, bytes);
    let mut cur: OwnedFd = rustix::fs::openat(
        CWD,
        if bytes.starts_with(b"/") { "/" } else { "." },
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)?;
    let mut walked = std::path::PathBuf::from(if bytes.starts_with(b"/") { "/" } else { "." });
    let mut links = 0;
    while let Some(comp) = pending.pop() {
        if comp == b"." {
            continue;
        }
        let name = OsStr::from_bytes(&comp);
        let next = rustix::fs::openat(
            &cur,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        let st = rustix::fs::statat(&next, "", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)
            .map_err(err)?;
        walked.push(name);
        if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
            cur = next;
            continue;
        }
        if untrusted.contains(st.st_uid) {
            return Err(Refusal::PlantedSymlink(walked));
        }
        links += 1;
        if links > 40 {
            return Err(Refusal::Errno(Errno(libc::ELOOP)));
        }
        let target = rustix::fs::readlinkat(&next, "", Vec::new()).map_err(err)?;
        let target = target.as_bytes().to_vec();
        if target.starts_with(b"/") {
            cur = rustix::fs::openat(
                CWD,
                "/",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(err)?;
        }
        push_components(&mut pending, &target);
    }
    Ok(cur)
}

/// Pushes the components of `path` so that the first is popped first.
fn push_components(pending: &mut Vec<Vec<u8>>, path: &[u8]) {
    let comps: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    pending.extend(comps.into_iter().rev().map(<[u8]>::to_vec));
}

/// Opens a host file for a job's stdin: trusted symlinks only, never
/// blocking the host (a FIFO without a writer), never becoming the host's
/// controlling terminal. Regular files, character devices (a terminal,
/// /dev/null) and FIFOs; not directories, sockets or block devices.
pub(crate) fn open_stdin_file(path: &Path, untrusted: &Untrusted) -> Result<OwnedFd, Refusal> {
    let p = open_path(path, untrusted)?;
    let st = rustix::fs::fstat(&p).map_err(|e| Refusal::Errno(e.into()))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile | FileType::CharacterDevice | FileType::Fifo => {}
        FileType::Directory => return Err(Refusal::Errno(Errno(libc::EISDIR))),
        _ => return Err(Refusal::Errno(Errno(libc::EINVAL))),
    }
    // Reopen the very inode the walk found, readable now.
    let proc_path = CString::new(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&p)
    ))
    .expect("no NUL");
    let f = rustix::fs::open(
        proc_path.as_c_str(),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| Refusal::Errno(e.into()))?;
    let again = rustix::fs::fstat(&f).map_err(|e| Refusal::Errno(e.into()))?;
    if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
        return Err(Refusal::Errno(Errno(libc::ESTALE)));
    }
    // Opened without blocking; the job itself reads normally.
    let fl = rustix::fs::fcntl_getfl(&f).map_err(|e| Refusal::Errno(e.into()))?;
    rustix::fs::fcntl_setfl(&f, fl - OFlags::NONBLOCK).map_err(|e| Refusal::Errno(e.into()))?;
    let _ = f.as_fd();
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn follows_trusted_links_and_refuses_planted_ones() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::fs::write(d.path().join("real/f"), "x").unwrap();
        symlink("real", d.path().join("link")).unwrap();
        let none = Untrusted::default();
        assert!(open_path(&d.path().join("link/f"), &none).is_ok());
        // The symlink belongs to us (root in tests): refuse when our uid is untrusted.
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        let mine = Untrusted(vec![(me, 1)]);
        match open_path(&d.path().join("link/f"), &mine) {
            Err(Refusal::PlantedSymlink(p)) => assert!(p.ends_with("link")),
            other => panic!("{other:?}"),
        }
        // No symlink on the way: fine even when untrusted.
        assert!(open_path(&d.path().join("real/f"), &mine).is_ok());
        assert!(matches!(
            open_path(&d.path().join("nope"), &none),
            Err(Refusal::Errno(Errno(libc::ENOENT)))
        ));
    }

    #[test]
    fn stdin_files_are_regular_files() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "data").unwrap();
        assert!(open_stdin_file(&f, &Untrusted::default()).is_ok());
        assert!(open_stdin_file(d.path(), &Untrusted::default()).is_err());
    }

    #[test]
    fn parses_subid_ranges() {
        assert_eq!(
            parse_ranges("root:100000:65536\nx:1:2\nbad\n"),
            vec![(100000, 65536), (1, 2)]
        );
    }
}
