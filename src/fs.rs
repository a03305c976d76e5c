//! Reading what a job wrote, from the host, without following anything the
//! job planted.
//!
//! A directory bound read-write into a cell ([`Sandbox::bind_rw`]) is shared
//! with code you do not trust. Whatever the job leaves there is hostile: a
//! file you expect as `out.txt` may be a symlink to `/etc/shadow`, a
//! directory on the way may be a symlink to `/`, the "file" may be a FIFO
//! that blocks the reader forever or a sparse file of a terabyte. A host
//! process that opens `workdir/out.txt` with an ordinary `open(2)` follows
//! all of it, with the host's privileges (go-judge issue 176 was exactly
//! this: a copy-out that followed a symlink the job had planted).
//!
//! [`read_beneath`] and [`open_beneath`] resolve the path with `openat2(2)`
//! and `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV`: the kernel itself refuses any symlink (on any
//! component, not only the last), any `/proc` magic link, any step out of
//! the directory and any mount point crossed, atomically with the lookup,
//! so there is no window between a check and the open for the job to race.
//! Then only a regular file is accepted, and [`read_beneath`] reads at most
//! `max_bytes`.
//!
//! # What is trusted
//!
//! `dir` is trusted: it is opened with an ordinary path walk. Pass the
//! directory you bound (the bind's *source*), and put every component that
//! lies inside the job's reach into `relative_path`, where the rules apply.
//!
//! # Hard links
//!
//! A hard link cannot lead out of the directory the way a symlink can: it
//! *is* the file, one more name of it, and `openat2` cannot tell the names
//! apart. jobcell relies on the kernel's own rules here. A job can only
//! link a file it can name, and it can only name what its cell shows it;
//! `link(2)` across mount points fails with `EXDEV` even on the same file
//! system, so the job can only link files that already are inside the
//! same bind (it cannot pull a host file in from a read-only bind or from
//! `/usr`). Within the bind, `fs.protected_hardlinks = 1` (the default of every major
//! distribution) refuses a link to a file the job does not own unless it
//! may read and write it. So a link the job made leads to content it could
//! already read. What remains is on the host: a file inside a `bind_rw`
//! directory that the job must not read (root-owned, mode 0600) can be
//! linked on a host with `protected_hardlinks = 0`; keep such files out of
//! shared directories.
//!
//! # Kernels without `openat2`
//!
//! `openat2` appeared in Linux 5.6. On older kernels (or where a container's
//! seccomp profile hides it, which reports `ENOSYS`) these functions fail
//! with an error that says so. They never fall back to a path walk checked
//! in user space, which a job can race.
//!
//! [`Sandbox::bind_rw`]: crate::Sandbox::bind_rw

use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, Stat};

use crate::error::{Errno, Error, Result};

/// How every lookup is resolved: nothing the job can plant is followed.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// How often a lookup is retried when the kernel reports a concurrent rename
/// (`EAGAIN`) before giving up.
const RETRIES: u32 = 16;

/// Reads the regular file `relative_path` beneath `dir`, refusing symlinks,
/// magic links, mount crossings, paths that leave `dir`, anything but a
/// regular file, and files larger than `max_bytes`.
///
/// At most `max_bytes` are read: a file that grows past the limit while it
/// is read is refused too, so the result is never truncated silently.
///
/// ```
/// use std::path::Path;
///
/// let work = tempfile::tempdir()?;
/// std::fs::write(work.path().join("out.txt"), "42\n")?;
/// // Suppose a job had the directory as a read-write bind, and planted this:
/// std::os::unix::fs::symlink("/etc/passwd", work.path().join("evil"))?;
///
/// assert_eq!(jobcell::fs::read_beneath(work.path(), "out.txt", 1 << 20)?, b"42\n");
/// let err = jobcell::fs::read_beneath(work.path(), "evil", 1 << 20).unwrap_err();
/// assert!(err.to_string().contains("symlink"), "{err}");
/// // Paths that leave the directory are refused before any system call.
/// assert!(jobcell::fs::read_beneath(work.path(), "../etc/passwd", 1 << 20).is_err());
/// assert!(jobcell::fs::read_beneath(work.path(), "/etc/passwd", 1 << 20).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`Error::ReadBeneath`] naming `dir`, `relative_path`, the reason and the
/// errno: the path is absolute, empty, contains `..` or a NUL byte; a
/// symlink or mount point is on the way; it is not a regular file; it is
/// larger than `max_bytes` (the message gives its size); the kernel has no
/// `openat2`; or a system call failed.
pub fn read_beneath(
    dir: impl AsRef<Path>,
    relative_path: impl AsRef<Path>,
    max_bytes: u64,
) -> Result<Vec<u8>> {
    let at = At {
        dir: dir.as_ref(),
        path: relative_path.as_ref(),
    };
    let (file, stat) = at.open(Some(max_bytes))?;
    let size = stat.st_size.max(0) as u64;
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut file = &file;
    file.take(max_bytes)
        .read_to_end(&mut data)
        .map_err(|e| at.err("reading failed", Some(Errno::from(&e))))?;
    if data.len() as u64 == max_bytes {
        // Exactly at the limit: make sure nothing follows.
        let mut one = [0u8; 1];
        match file.read(&mut one) {
            Ok(0) => {}
            Ok(_) => {
                return Err(at.err(
                    format!("the file grew past the limit of {max_bytes} bytes while it was read"),
                    None,
                ))
            }
            Err(e) => return Err(at.err("reading failed", Some(Errno::from(&e)))),
        }
    }
    Ok(data)
}

/// Opens the regular file `relative_path` beneath `dir` for reading, with the
/// same rules as [`read_beneath`] but no size limit: for streaming large
/// outputs. Bound what you read yourself (`Read::take`); the job may still
/// be appending to the file.
///
/// ```
/// use std::io::Read;
///
/// let work = tempfile::tempdir()?;
/// std::fs::write(work.path().join("log"), "line 1\nline 2\n")?;
/// let mut first = String::new();
/// jobcell::fs::open_beneath(work.path(), "log")?
///     .take(7)
///     .read_to_string(&mut first)?;
/// assert_eq!(first, "line 1\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// As [`read_beneath`], without the size check.
pub fn open_beneath(dir: impl AsRef<Path>, relative_path: impl AsRef<Path>) -> Result<File> {
    let at = At {
        dir: dir.as_ref(),
        path: relative_path.as_ref(),
    };
    let (file, _) = at.open(None)?;
    // O_NONBLOCK was only there for the open; give the caller an ordinary file.
    rustix::fs::fcntl_setfl(&file, OFlags::empty())
        .map_err(|e| at.err("clearing O_NONBLOCK failed", Some(e.into())))?;
    Ok(file)
}

/// Why `relative_path` cannot be used, if it cannot. Checked before any
/// system call: `openat2` would refuse these too, but with a less helpful errno.
fn check_relative(path: &Path) -> std::result::Result<(), &'static str> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err("the path is empty");
    }
    if bytes.contains(&0) {
        return Err("the path contains a NUL byte");
    }
    let mut named = false;
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                return Err("the path is absolute; give it relative to the directory")
            }
            Component::ParentDir => {
                return Err("the path contains `..`, which could lead out of the directory")
            }
            Component::CurDir => {}
            Component::Normal(_) => named = true,
        }
    }
    if !named {
        return Err("the path names the directory itself, not a file in it");
    }
    Ok(())
}

/// What a file is, in words, when it is not a regular file.
fn kind(stat: &Stat) -> Option<&'static str> {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => None,
        FileType::Directory => Some("a directory"),
        FileType::Symlink => Some("a symlink"),
        FileType::Fifo => Some("a FIFO"),
        FileType::Socket => Some("a socket"),
        FileType::CharacterDevice => Some("a character device"),
        FileType::BlockDevice => Some("a block device"),
        FileType::Unknown => Some("of an unknown type"),
    }
}

/// A path beneath a directory, and the errors about it.
struct At<'a> {
    dir: &'a Path,
    path: &'a Path,
}

impl At<'_> {
    fn err(&self, reason: impl Into<String>, errno: Option<Errno>) -> Error {
        Error::ReadBeneath {
            dir: self.dir.to_owned(),
            path: self.path.to_owned(),
            reason: reason.into(),
            errno,
        }
    }

    /// Opens the file read-only and checks it is a regular file (of at most
    /// `max_bytes`, if given). Returns it with its `fstat`.
    fn open(&self, max_bytes: Option<u64>) -> Result<(File, Stat)> {
        check_relative(self.path).map_err(|r| self.err(r, None))?;
        let dir = rustix::fs::open(
            self.dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err("cannot open the directory", Some(e.into())))?;

        // First look without opening: an O_PATH descriptor runs no driver's
        // open (a device node) and never waits (a FIFO).
        let probe = self.openat2(&dir, OFlags::PATH | OFlags::CLOEXEC)?;
        let before = self.fstat(&probe)?;
        if let Some(k) = kind(&before) {
            return Err(self.err(format!("not a regular file: it is {k}"), None));
        }
        if let Some(max) = max_bytes {
            self.check_size(&before, max)?;
        }
        drop(probe);

        // Then open it for reading. O_NONBLOCK: should the job swap a FIFO in
        // between, the open returns at once instead of waiting for a writer.
        let fd = self.openat2(
            &dir,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        )?;
        let stat = self.fstat(&fd)?;
        if (stat.st_dev, stat.st_ino) != (before.st_dev, before.st_ino) {
            return Err(self.err("the file was replaced while it was being opened", None));
        }
        if let Some(k) = kind(&stat) {
            return Err(self.err(format!("not a regular file: it is {k}"), None));
        }
        if let Some(max) = max_bytes {
            self.check_size(&stat, max)?;
        }
        Ok((File::from(fd), stat))
    }

    fn check_size(&self, stat: &Stat, max: u64) -> Result<()> {
        let size = stat.st_size.max(0) as u64;
        if size > max {
            return Err(self.err(
                format!("the file is {size} bytes, more than the limit of {max} bytes"),
                None,
            ));
        }
        Ok(())
    }

    fn fstat(&self, fd: &rustix::fd::OwnedFd) -> Result<Stat> {
        rustix::fs::fstat(fd).map_err(|e| self.err("fstat failed", Some(e.into())))
    }

    fn openat2(&self, dir: &rustix::fd::OwnedFd, flags: OFlags) -> Result<rustix::fd::OwnedFd> {
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(dir, self.path, flags, Mode::empty(), RESOLVE) {
                Ok(fd) => return Ok(fd),
                // The kernel saw a rename or mount during the lookup and
                // refuses to guess; the lookup is safe to repeat.
                Err(e) if e == rustix::io::Errno::AGAIN && tries < RETRIES => tries += 1,
                Err(e) => {
                    let errno = Errno::from(e);
                    return Err(self.err(open_failure(errno), Some(errno)));
                }
            }
        }
    }
}

/// What an `openat2` failure means for a path beneath a directory.
fn open_failure(errno: Errno) -> &'static str {
    match errno.0 {
        libc::ENOSYS => {
            "the kernel has no openat2 (Linux 5.6 or later is needed); \
             refusing to fall back to a path walk that a job could race"
        }
        libc::ELOOP => "a symlink is on the way (symlinks are never followed)",
        libc::EXDEV => "the path leaves the directory or crosses a mount point",
        libc::ENOENT => "no such file",
        libc::ENOTDIR => "a component of the path is not a directory",
        libc::EACCES | libc::EPERM => "permission denied",
        libc::ENXIO => "not a regular file: it is a socket or a device",
        libc::EAGAIN => "the directory kept changing while the path was looked up",
        libc::EINVAL | libc::E2BIG => "the kernel refused openat2's arguments",
        _ => "cannot open the file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::symlink;

    fn reason(e: Error) -> (String, Option<Errno>) {
        match e {
            Error::ReadBeneath { reason, errno, .. } => (reason, errno),
            other => panic!("expected ReadBeneath, got {other:?}"),
        }
    }

    fn refused(dir: &Path, rel: &str) -> (String, Option<Errno>) {
        match read_beneath(dir, rel, 1 << 20) {
            Ok(data) => panic!(
                "{rel} was read: {:?}",
                String::from_utf8_lossy(&data[..data.len().min(64)])
            ),
            Err(e) => reason(e),
        }
    }

    /// A directory as a job would leave it, next to a host secret.
    struct Planted {
        _top: tempfile::TempDir,
        secret: std::path::PathBuf,
        work: std::path::PathBuf,
    }

    fn planted() -> Planted {
        let top = tempfile::tempdir().unwrap();
        let secret = top.path().join("secret");
        std::fs::write(&secret, "host secret\n").unwrap();
        let work = top.path().join("work");
        std::fs::create_dir_all(work.join("sub/deeper")).unwrap();
        std::fs::write(work.join("out.txt"), "job output\n").unwrap();
        std::fs::write(work.join("sub/deeper/result"), "nested\n").unwrap();
        Planted {
            _top: top,
            secret,
            work,
        }
    }

    #[test]
    fn reads_regular_files_at_any_depth() {
        let p = planted();
        assert_eq!(
            read_beneath(&p.work, "out.txt", 100).unwrap(),
            b"job output\n"
        );
        assert_eq!(
            read_beneath(&p.work, "sub/deeper/result", 100).unwrap(),
            b"nested\n"
        );
        assert_eq!(
            read_beneath(&p.work, "./sub//deeper/./result", 100).unwrap(),
            b"nested\n"
        );
        std::fs::write(p.work.join("empty"), "").unwrap();
        assert_eq!(read_beneath(&p.work, "empty", 0).unwrap(), b"");
    }

    #[test]
    fn absolute_symlink_to_a_host_secret_is_refused() {
        let p = planted();
        symlink(&p.secret, p.work.join("abs")).unwrap();
        let (r, e) = refused(&p.work, "abs");
        assert_eq!(e, Some(Errno(libc::ELOOP)), "{r}");
        assert!(r.contains("symlink"), "{r}");
    }

    #[test]
    fn relative_symlink_escaping_the_directory_is_refused() {
        let p = planted();
        symlink("../secret", p.work.join("rel")).unwrap();
        symlink("../../../secret", p.work.join("sub/deeper/rel")).unwrap();
        assert_eq!(refused(&p.work, "rel").1, Some(Errno(libc::ELOOP)));
        assert_eq!(
            refused(&p.work, "sub/deeper/rel").1,
            Some(Errno(libc::ELOOP))
        );
    }

    #[test]
    fn symlink_inside_the_directory_is_refused_too() {
        // Harmless in itself, but RESOLVE_NO_SYMLINKS makes no exceptions:
        // whether a symlink stays inside can change under the reader.
        let p = planted();
        symlink("out.txt", p.work.join("alias")).unwrap();
        assert_eq!(refused(&p.work, "alias").1, Some(Errno(libc::ELOOP)));
    }

    #[test]
    fn symlinked_intermediate_directory_is_refused() {
        let p = planted();
        // The job replaces a directory on the way with a link to "/" or to the host dir.
        symlink("/", p.work.join("root")).unwrap();
        symlink(p.secret.parent().unwrap(), p.work.join("up")).unwrap();
        symlink("..", p.work.join("dotdot")).unwrap();
        for rel in ["root/etc/passwd", "up/secret", "dotdot/secret"] {
            let (r, e) = refused(&p.work, rel);
            assert_eq!(e, Some(Errno(libc::ELOOP)), "{rel}: {r}");
        }
    }

    #[test]
    fn magic_links_are_refused() {
        // /proc/self/root and /proc/self/cwd are "magic": they jump anywhere.
        let (r, e) = refused(Path::new("/proc/self"), "root/etc/passwd");
        assert!(
            e == Some(Errno(libc::ELOOP)) || e == Some(Errno(libc::EXDEV)),
            "{r} {e:?}"
        );
        let (_, e) = refused(Path::new("/proc/self"), "cwd");
        assert!(e == Some(Errno(libc::ELOOP)) || e == Some(Errno(libc::EXDEV)));
    }

    #[test]
    fn crossing_a_mount_point_is_refused() {
        // /proc is a mount of its own below /.
        let (r, e) = refused(Path::new("/"), "proc/version");
        assert_eq!(e, Some(Errno(libc::EXDEV)), "{r}");
        assert!(r.contains("mount point"), "{r}");
    }

    #[test]
    fn dot_dot_and_absolute_paths_are_refused_before_any_call() {
        let p = planted();
        for rel in [
            "../secret",
            "sub/../../secret",
            "sub/..",
            "..",
            "/etc/passwd",
            "",
        ] {
            let (r, e) = refused(&p.work, rel);
            assert_eq!(e, None, "{rel:?}: {r}");
        }
        let (r, _) = refused(&p.work, "../secret");
        assert!(r.contains(".."), "{r}");
        let (r, _) = refused(&p.work, "/etc/passwd");
        assert!(r.contains("absolute"), "{r}");
        let (r, _) = refused(&p.work, ".");
        assert!(r.contains("directory itself"), "{r}");
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let p = planted();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p.work.join("fifo").as_path(),
            FileType::Fifo,
            Mode::from_raw_mode(0o666),
            0,
        )
        .unwrap();
        let t = std::time::Instant::now();
        let (r, _) = refused(&p.work, "fifo");
        assert!(r.contains("FIFO"), "{r}");
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        // open_beneath too.
        let e = open_beneath(&p.work, "fifo").unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
    }

    #[test]
    fn socket_directory_and_device_are_refused() {
        let p = planted();
        let _sock = std::os::unix::net::UnixListener::bind(p.work.join("sock")).unwrap();
        assert!(refused(&p.work, "sock").0.contains("a socket"));
        assert!(refused(&p.work, "sub").0.contains("a directory"));
        // A device node can only be made by host root; it must not even be
        // opened (an O_PATH look comes first), so its driver never runs.
        let null = p.work.join("null");
        match rustix::fs::mknodat(
            rustix::fs::CWD,
            null.as_path(),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        ) {
            Ok(()) => {
                let (r, _) = refused(&p.work, "null");
                assert!(r.contains("character device"), "{r}");
            }
            Err(e) => eprintln!("skipping the device case: mknod: {e}"),
        }
    }

    #[test]
    fn files_over_the_limit_are_refused_with_their_size() {
        let p = planted();
        std::fs::write(p.work.join("big"), vec![b'x'; 1000]).unwrap();
        assert_eq!(read_beneath(&p.work, "big", 1000).unwrap().len(), 1000);
        let e = read_beneath(&p.work, "big", 999).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("1000 bytes") && s.contains("999"), "{s}");
        // A sparse file is judged by its size, not by the blocks it uses.
        let f = std::fs::File::create(p.work.join("sparse")).unwrap();
        f.set_len(1 << 40).unwrap();
        let s = read_beneath(&p.work, "sparse", 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(s.contains(&(1u64 << 40).to_string()), "{s}");
    }

    #[test]
    fn hard_links_read_as_the_file_they_are() {
        // A hard link is the same file: it cannot point outside the directory.
        let p = planted();
        std::fs::hard_link(p.work.join("out.txt"), p.work.join("linked")).unwrap();
        assert_eq!(
            read_beneath(&p.work, "linked", 100).unwrap(),
            b"job output\n"
        );
    }

    #[test]
    fn error_names_directory_path_and_errno() {
        let p = planted();
        let e = read_beneath(&p.work, "missing/file", 10).unwrap_err();
        assert_eq!(e.errno(), Some(Errno(libc::ENOENT)));
        let s = e.to_string();
        assert!(s.contains("missing/file"), "{s}");
        assert!(s.contains(&p.work.display().to_string()), "{s}");
        assert!(s.contains("ENOENT"), "{s}");
        let e = read_beneath(p.work.join("nope"), "x", 10).unwrap_err();
        assert!(e.to_string().contains("cannot open the directory"), "{e}");
    }

    #[test]
    fn failures_are_named() {
        assert!(open_failure(Errno(libc::ENOSYS)).contains("openat2"));
        assert!(open_failure(Errno(libc::ENOSYS)).contains("refusing to fall back"));
        assert!(open_failure(Errno(libc::ELOOP)).contains("symlink"));
        assert!(open_failure(Errno(libc::EXDEV)).contains("leaves the directory"));
    }

    /// Without openat2 (here: a seccomp filter that makes it ENOSYS, as on a
    /// kernel before 5.6), reading fails closed. Runs in a child process of
    /// the test binary so the filter stays there.
    #[cfg(feature = "seccomp")]
    #[test]
    fn without_openat2_reading_fails_closed() {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("JOBCELL_FS_ENOSYS_CHILD").is_some() {
            return;
        }
        let prog = crate::SeccompPolicy::empty()
            .deny_errno(libc::SYS_openat2, libc::ENOSYS)
            .compile()
            .unwrap();
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "fs::tests::enosys_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("JOBCELL_FS_ENOSYS_CHILD", "1");
        // SAFETY: between fork and exec the closure makes two raw prctl calls
        // on memory prepared before the fork (`prog` moves into the closure).
        unsafe {
            cmd.pre_exec(move || {
                let fprog = libc::sock_fprog {
                    len: prog.len() as u16,
                    filter: prog.as_ptr() as *mut libc::sock_filter,
                };
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(
                        libc::PR_SET_SECCOMP,
                        libc::SECCOMP_MODE_FILTER,
                        &fprog as *const libc::sock_fprog,
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("FAILED CLOSED"), "{stdout}");
    }

    /// The child half of `without_openat2_reading_fails_closed`.
    #[cfg(feature = "seccomp")]
    #[test]
    #[ignore = "run by without_openat2_reading_fails_closed"]
    fn enosys_child() {
        if std::env::var_os("JOBCELL_FS_ENOSYS_CHILD").is_none() {
            return;
        }
        let p = planted();
        let e = read_beneath(&p.work, "out.txt", 100).unwrap_err();
        assert_eq!(e.errno(), Some(Errno(libc::ENOSYS)), "{e}");
        assert!(e.to_string().contains("Linux 5.6"), "{e}");
        assert!(open_beneath(&p.work, "out.txt").is_err());
        println!("FAILED CLOSED: {e}");
    }

    fn component() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_. -]{1,12}".prop_filter("not . or ..", |s| s != "." && s != "..")
    }

    proptest! {
        #[test]
        fn normal_relative_paths_are_accepted(parts in prop::collection::vec(component(), 1..6)) {
            let p = parts.join("/");
            prop_assert_eq!(check_relative(Path::new(&p)), Ok(()));
        }

        #[test]
        fn any_dot_dot_component_is_refused(
            before in prop::collection::vec(component(), 0..4),
            after in prop::collection::vec(component(), 0..4),
        ) {
            let mut parts = before;
            parts.push("..".into());
            parts.extend(after);
            let p = parts.join("/");
            let r = check_relative(Path::new(&p));
            prop_assert!(r.is_err_and(|r| r.contains("..")), "{}: {:?}", p, r);
        }

        #[test]
        fn absolute_paths_are_refused(parts in prop::collection::vec(component(), 0..4)) {
            let p = format!("/{}", parts.join("/"));
            let r = check_relative(Path::new(&p));
            prop_assert!(r.is_err_and(|r| r.contains("absolute")), "{}: {:?}", p, r);
        }

        #[test]
        fn arbitrary_bytes_never_pass_with_dot_dot_or_a_leading_slash(
            bytes in prop::collection::vec(any::<u8>(), 0..40)
        ) {
            let p = Path::new(std::ffi::OsStr::from_bytes(&bytes));
            if check_relative(p).is_ok() {
                prop_assert!(!bytes.is_empty() && bytes[0] != b'/');
                prop_assert!(!bytes.contains(&0));
                prop_assert!(p.components().all(|c| c != Component::ParentDir));
                prop_assert!(p.components().any(|c| matches!(c, Component::Normal(_))));
            }
        }
    }
}
