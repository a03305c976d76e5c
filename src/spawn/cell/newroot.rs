//! Where init's root-building operations act: every path of the new root is
//! resolved from a descriptor of the root, never through a symlink, and the
//! operation then acts on the descriptor it found.
//!
//! The plan resolves the cell's own symlinks in its model of the tree and
//! checks the host paths below user binds, but a bind shared with a running
//! job can change between that check and the mount: the job swaps a
//! directory on the way for a symlink, and a path-based `mount(2)` follows
//! it, landing a read-only bind in a decoy of the job's choosing (runc
//! CVE-2021-30465, with two cells). So init resolves each target with
//! `openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)` from a descriptor of the
//! new root (component by component with `O_NOFOLLOW` where the kernel lacks
//! `openat2`), and mounts onto what it found: `move_mount` onto the
//! descriptor, `mount(2)` onto its `/proc/self/fd` entry, `mkdirat`,
//! `symlinkat`, `openat` in the parent it found. A symlink anywhere on the
//! way is `ELOOP`, which the host reports as the step that met it.
//!
//! Runs in the cell between clone and execve: raw syscalls on the plan's
//! data and the stack, nothing else.

use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};

use libc::c_int;

use crate::error::Errno;
use crate::sys::{self, SysResult};

/// The longest path below the new root (the kernel's `PATH_MAX`).
const PATH_MAX: usize = 4096;
/// Set once `openat2` has said `ENOSYS` (Linux before 5.6).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// An `O_PATH` descriptor init found, closed when dropped.
pub(crate) struct Found(c_int);

impl Found {
    pub(crate) fn raw(&self) -> c_int {
        self.0
    }
}

impl Drop for Found {
    fn drop(&mut self) {
        sys::close(self.0);
    }
}

/// What a path of an op names.
pub(crate) enum Place<'a> {
    /// The new root itself: its staging directory, a path of the host's
    /// tree that no job can reach, used by name.
    Root(&'a CStr),
    /// A host path outside the new root (a source bound by name), used by name.
    Host(&'a CStr),
    /// Something inside the new root, resolved.
    Inside(Found),
}

/// A directory an entry is made in, and the entry's name.
pub(crate) struct Parent<'a> {
    dir: c_int,
    owned: bool,
    pub name: &'a CStr,
}

impl Parent<'_> {
    pub(crate) fn dir(&self) -> c_int {
        self.dir
    }
}

impl Drop for Parent<'_> {
    fn drop(&mut self) {
        if self.owned {
            sys::close(self.dir);
        }
    }
}

/// The new root being built at `staging`, and a descriptor of it (opened
/// when first needed, again after something is mounted on the root itself).
pub(crate) struct NewRoot<'a> {
    staging: &'a CStr,
    fd: c_int,
}

impl Drop for NewRoot<'_> {
    fn drop(&mut self) {
        if self.fd >= 0 {
            sys::close(self.fd);
        }
    }
}

impl<'a> NewRoot<'a> {
    pub(crate) fn new(staging: &'a CStr) -> NewRoot<'a> {
        NewRoot { staging, fd: -1 }
    }

    /// `path` below the staging directory (without the leading `/`), `None`
    /// for the staging directory itself, `Err(())` for a path outside.
    fn below<'p>(&self, path: &'p CStr) -> Result<Option<&'p CStr>, ()> {
        let (p, s) = (path.to_bytes_with_nul(), self.staging.to_bytes());
        match (p.get(..s.len()), p.get(s.len()), p.get(s.len() + 1..)) {
            (Some(head), Some(0), _) if head == s => Ok(None),
            (Some(head), Some(b'/'), Some(rest)) if head == s => {
                CStr::from_bytes_with_nul(rest).map(Some).map_err(drop)
            }
            _ => Err(()),
        }
    }

    fn root_fd(&mut self) -> SysResult<c_int> {
        if self.fd < 0 {
            let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
            self.fd = sys::open(self.staging, flags, 0)?;
        }
        Ok(self.fd)
    }

    /// Something was mounted on the root itself: later paths start from the new mount.
    pub(crate) fn remounted(&mut self) {
        if self.fd >= 0 {
            sys::close(self.fd);
            self.fd = -1;
        }
    }

    /// What `path` names. A path inside the new root must be reachable
    /// without any symlink, all the way to its last component.
    pub(crate) fn place<'p>(&mut self, path: &'p CStr) -> SysResult<Place<'p>> {
        match self.below(path) {
            Err(()) => Ok(Place::Host(path)),
            Ok(None) => Ok(Place::Root(path)),
            Ok(Some(rel)) => {
                let root = self.root_fd()?;
                resolve(root, rel).map(|fd| Place::Inside(Found(fd)))
            }
        }
    }

    /// The directory that holds `path` (inside the new root), resolved as
    /// [`place`](NewRoot::place) does, and the last component's name. The
    /// entry itself is not looked at.
    pub(crate) fn parent<'p>(&mut self, path: &'p CStr) -> SysResult<Parent<'p>> {
        let Ok(Some(rel)) = self.below(path) else {
            return Err(Errno(libc::EINVAL));
        };
        let bytes = rel.to_bytes_with_nul();
        let root = self.root_fd()?;
        let Some(slash) = bytes.iter().rposition(|&b| b == b'/') else {
            return Ok(Parent {
                dir: root,
                owned: false,
                name: rel,
            });
        };
        let Some((dir, name)) = bytes.split_at_checked(slash) else {
            return Err(Errno(libc::EINVAL));
        };
        let name = name.get(1..).unwrap_or(b"\0");
        let name = CStr::from_bytes_with_nul(name).map_err(|_| Errno(libc::EINVAL))?;
        let mut buf = [0u8; PATH_MAX];
        let Some(copy) = buf.get_mut(..dir.len()) else {
            return Err(Errno(libc::ENAMETOOLONG));
        };
        copy.copy_from_slice(dir);
        let dir = CStr::from_bytes_until_nul(&buf).map_err(|_| Errno(libc::ENAMETOOLONG))?;
        Ok(Parent {
            dir: resolve(root, dir)?,
            owned: true,
            name,
        })
    }
}

/// Opens `rel` below `root` with `O_PATH`, refusing any symlink on the way
/// and at the end (`ELOOP`) and any step out of `root`.
fn resolve(root: c_int, rel: &CStr) -> SysResult<c_int> {
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let flags = libc::O_PATH | libc::O_CLOEXEC;
        let resolve = sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_BENEATH;
        let mut tries = 0;
        loop {
            match sys::openat2(root, rel, flags, resolve) {
                // A concurrent rename the kernel could not rule out: try again.
                Err(Errno(libc::EAGAIN)) if tries < 8 => tries += 1,
                Err(Errno(libc::ENOSYS)) => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                    break;
                }
                r => return r,
            }
        }
    }
    resolve_by_component(root, rel.to_bytes())
}

/// The same, for kernels without `openat2`: one `openat(O_PATH | O_NOFOLLOW)`
/// per component, each checked not to be a symlink. Plans hold no `.`,
/// `..` or empty components, so the walk cannot leave `root`.
fn resolve_by_component(root: c_int, rel: &[u8]) -> SysResult<c_int> {
    let mut cur: c_int = -1;
    for comp in rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        let mut name = [0u8; 256];
        let Some(copy) = name.get_mut(..comp.len()) else {
            if cur >= 0 {
                sys::close(cur);
            }
            return Err(Errno(libc::ENAMETOOLONG));
        };
        copy.copy_from_slice(comp);
        let next = match CStr::from_bytes_until_nul(&name) {
            Ok(n) => sys::openat(
                if cur >= 0 { cur } else { root },
                n,
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0,
            ),
            Err(_) => Err(Errno(libc::ENAMETOOLONG)),
        };
        if cur >= 0 {
            sys::close(cur);
        }
        cur = next?;
        if sys::file_type_at(cur, c"")? == libc::S_IFLNK {
            sys::close(cur);
            return Err(Errno(libc::ELOOP));
        }
    }
    if cur < 0 {
        return Err(Errno(libc::EINVAL));
    }
    Ok(cur)
}

/// `/proc/self/fd/<fd>`, for calls that take only a path (`mount(2)`): the
/// kernel follows that magic link to exactly what the descriptor is.
pub(crate) fn proc_fd_path(fd: c_int, buf: &mut [u8; 32]) -> SysResult<&CStr> {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    let Some((head, digits)) = buf.split_at_mut_checked(PREFIX.len()) else {
        return Err(Errno(libc::EINVAL));
    };
    head.copy_from_slice(PREFIX);
    // The digits, last first, then turned around; a NUL after them.
    let (mut n, mut len) = (fd.unsigned_abs(), 0);
    loop {
        let Some(d) = digits.get_mut(len) else {
            return Err(Errno(libc::EINVAL));
        };
        *d = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let Some(written) = digits.get_mut(..len) else {
        return Err(Errno(libc::EINVAL));
    };
    written.reverse();
    match digits.get_mut(len) {
        Some(b) => *b = 0,
        None => return Err(Errno(libc::EINVAL)),
    }
    CStr::from_bytes_until_nul(buf).map_err(|_| Errno(libc::EINVAL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    fn c(p: &std::path::Path) -> CString {
        CString::new(p.as_os_str().as_bytes()).unwrap()
    }

    #[test]
    fn proc_fd_paths() {
        let mut buf = [0u8; 32];
        assert_eq!(proc_fd_path(7, &mut buf).unwrap(), c"/proc/self/fd/7");
        assert_eq!(
            proc_fd_path(1_234_567, &mut buf).unwrap(),
            c"/proc/self/fd/1234567"
        );
        assert_eq!(
            proc_fd_path(i32::MAX, &mut buf).unwrap(),
            c"/proc/self/fd/2147483647"
        );
    }

    #[test]
    fn paths_below_the_staging_directory_and_outside() {
        let root = NewRoot::new(c"/tmp");
        assert_eq!(root.below(c"/tmp"), Ok(None));
        assert_eq!(root.below(c"/tmp/a/b"), Ok(Some(c"a/b")));
        assert_eq!(root.below(c"/tmpx/a"), Err(()));
        assert_eq!(root.below(c"/usr"), Err(()));
        assert_eq!(root.below(c"/tm"), Err(()));
    }

    #[test]
    fn symlinks_anywhere_on_the_way_are_refused() {
        let top = tempfile::tempdir().unwrap();
        let t = top.path();
        std::fs::create_dir_all(t.join("a/b")).unwrap();
        std::os::unix::fs::symlink("a", t.join("link")).unwrap();
        std::os::unix::fs::symlink("b", t.join("a/last")).unwrap();
        let staging = c(t);
        let mut root = NewRoot::new(&staging);
        let inside = |r: SysResult<Place<'_>>| match r {
            Ok(Place::Inside(_)) => Ok(()),
            Ok(_) => Err(Errno(0)),
            Err(e) => Err(e),
        };
        let p = c(&t.join("a/b"));
        assert_eq!(inside(root.place(&p)), Ok(()));
        let p = c(&t.join("link/b"));
        assert_eq!(inside(root.place(&p)), Err(Errno(libc::ELOOP)));
        let p = c(&t.join("a/last"));
        assert_eq!(inside(root.place(&p)), Err(Errno(libc::ELOOP)));
        let p = c(&t.join("link/b/new"));
        assert_eq!(root.parent(&p).err(), Some(Errno(libc::ELOOP)));
        let p = c(&t.join("a/b/new"));
        assert_eq!(root.parent(&p).unwrap().name, c"new");
        let p = c(&t.join("top"));
        assert_eq!(root.parent(&p).unwrap().name, c"top");
        assert!(matches!(root.place(&staging), Ok(Place::Root(_))));
        assert!(matches!(root.place(c"/usr/bin"), Ok(Place::Host(_))));

        // The walk for kernels without openat2 says the same.
        let fd = root.root_fd().unwrap();
        let ok = resolve_by_component(fd, b"a/b").unwrap();
        sys::close(ok);
        for bad in [&b"link/b"[..], b"a/last", b"link"] {
            assert_eq!(resolve_by_component(fd, bad), Err(Errno(libc::ELOOP)));
        }
        assert_eq!(
            resolve_by_component(fd, b"a/nothing"),
            Err(Errno(libc::ENOENT))
        );
    }
}
