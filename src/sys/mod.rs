//! Raw system calls for the code that runs between `clone3` and `execve`.
//!
//! Nothing here allocates, locks, formats or panics: every function is one
//! `syscall(2)` on memory the caller already owns, returning the kernel's errno.
//! glibc wrappers are avoided on purpose: some of them (`setuid`, `fork`) take
//! process-wide locks or signal other threads, which a cloned child of a
//! multi-threaded host must never do.

use std::ffi::CStr;
use std::ptr;

use libc::{c_int, c_long, c_void};

use crate::error::Errno;

/// Result of a raw call: the return value, or the errno.
pub(crate) type SysResult<T = ()> = Result<T, Errno>;

#[inline(always)]
fn check(ret: c_long) -> SysResult<c_long> {
    if ret < 0 {
        // SAFETY: __errno_location returns this thread's errno slot, which is
        // valid for the life of the thread (also in a cloned child: TLS is copied).
        Err(Errno(unsafe { *libc::__errno_location() }))
    } else {
        Ok(ret)
    }
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(ptr::null(), CStr::as_ptr)
}

pub(crate) fn close(fd: c_int) {
    // SAFETY: closing a descriptor number has no memory-safety preconditions.
    unsafe { libc::syscall(libc::SYS_close, fd as c_long) };
}

pub(crate) fn close_range(first: u32, last: u32, flags: u32) -> SysResult {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) }).map(drop)
}

pub(crate) fn read(fd: c_int, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: buf is a valid writable slice of buf.len() bytes.
    check(unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) })
        .map(|n| n as usize)
}

pub(crate) fn write(fd: c_int, buf: &[u8]) -> SysResult<usize> {
    // SAFETY: buf is a valid readable slice of buf.len() bytes.
    check(unsafe { libc::syscall(libc::SYS_write, fd, buf.as_ptr(), buf.len()) })
        .map(|n| n as usize)
}

/// `write(2)` that never raises SIGPIPE in this process, whatever its
/// disposition: for pipes whose reading end a job holds (a pipe has no
/// `MSG_NOSIGNAL`; a job that closes its end must not kill a C host).
/// SIGPIPE is blocked on this thread around the write (a broken pipe
/// signals the writing thread only), and one the write raised is taken
/// back before the mask is restored, as OpenSSL and libcurl do.
pub(crate) fn write_no_sigpipe(fd: c_int, buf: &[u8]) -> SysResult<usize> {
    let pipe: KernelSigset = 1 << (libc::SIGPIPE - 1);
    let mask = |how: c_int, set: &KernelSigset, old: *mut KernelSigset| {
        // SAFETY: set and old (or NULL) are valid 8-byte kernel sigsets.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                how,
                set as *const KernelSigset,
                old,
                std::mem::size_of::<KernelSigset>(),
            )
        }
    };
    let mut old: KernelSigset = 0;
    if mask(libc::SIG_BLOCK, &pipe, &mut old) != 0 {
        return Err(Errno::last());
    }
    let mut pending: KernelSigset = 0;
    // SAFETY: pending is a valid 8-byte kernel sigset to fill.
    let asked = unsafe {
        libc::syscall(
            libc::SYS_rt_sigpending,
            &mut pending as *mut KernelSigset,
            std::mem::size_of::<KernelSigset>(),
        )
    };
    let r = write(fd, buf);
    // Only one this write raised: a SIGPIPE pending before is someone else's.
    if r == Err(Errno(libc::EPIPE)) && asked == 0 && pending & pipe == 0 {
        let now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid sigset and timeout; no siginfo is asked for.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigtimedwait,
                &pipe as *const KernelSigset,
                ptr::null_mut::<libc::siginfo_t>(),
                &now as *const libc::timespec,
                std::mem::size_of::<KernelSigset>(),
            )
        };
    }
    mask(libc::SIG_SETMASK, &old, ptr::null_mut());
    r
}

/// Writes all of `buf`, retrying on EINTR and short writes.
pub(crate) fn write_all(fd: c_int, mut buf: &[u8]) -> SysResult {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) => return Err(Errno(libc::EIO)),
            Ok(n) => buf = &buf[n..],
            Err(Errno(libc::EINTR)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends one byte on a connected socket, never raising SIGPIPE (a peer
/// that is gone is EPIPE, whatever the process's SIGPIPE disposition).
pub(crate) fn send_byte(sock: c_int) -> SysResult {
    let b = [b'x'];
    loop {
        // SAFETY: a one-byte buffer that outlives the call; no address.
        match check(unsafe {
            libc::syscall(
                libc::SYS_sendto,
                sock,
                b.as_ptr(),
                1usize,
                libc::MSG_NOSIGNAL,
                std::ptr::null::<libc::sockaddr>(),
                0usize,
            )
        }) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(Errno(libc::EIO)),
            Err(Errno(libc::EINTR)) => {}
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn open(path: &CStr, flags: c_int, mode: u32) -> SysResult<c_int> {
    // SAFETY: path is a valid NUL-terminated string.
    check(unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), flags, mode) })
        .map(|fd| fd as c_int)
}

/// `openat(dirfd, path, ...)`.
pub(crate) fn openat(dirfd: c_int, path: &CStr, flags: c_int, mode: u32) -> SysResult<c_int> {
    // SAFETY: path is a valid NUL-terminated string.
    check(unsafe { libc::syscall(libc::SYS_openat, dirfd, path.as_ptr(), flags, mode) })
        .map(|fd| fd as c_int)
}

pub(crate) fn mkdir(path: &CStr, mode: u32) -> SysResult {
    // SAFETY: path is a valid NUL-terminated string.
    check(unsafe { libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, path.as_ptr(), mode) })
        .map(drop)
}

pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: u64,
    data: Option<&CStr>,
) -> SysResult {
    // SAFETY: every pointer is NULL or a valid NUL-terminated string.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount,
            opt_ptr(source),
            target.as_ptr(),
            opt_ptr(fstype),
            flags as c_long,
            opt_ptr(data) as *const c_void,
        )
    })
    .map(drop)
}

pub(crate) fn umount2(target: &CStr, flags: c_int) -> SysResult {
    // SAFETY: target is a valid NUL-terminated string.
    check(unsafe { libc::syscall(libc::SYS_umount2, target.as_ptr(), flags) }).map(drop)
}

/// `move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`: attach a detached tree.
pub(crate) fn move_mount_fd(fd: c_int, target: &CStr) -> SysResult {
    const MOVE_MOUNT_F_EMPTY_PATH: c_long = 0x4;
    // SAFETY: the empty string and target are valid NUL-terminated strings.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// The kernel's `struct mount_attr`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// `mount_setattr(dfd, path, flags, attr)`.
pub(crate) fn mount_setattr(dfd: c_int, path: &CStr, flags: u32, attr: &MountAttr) -> SysResult {
    // SAFETY: path is NUL-terminated; attr points to a properly sized struct.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dfd,
            path.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// `mkdirat(dirfd, name, mode)`.
pub(crate) fn mkdirat(dirfd: c_int, name: &CStr, mode: u32) -> SysResult {
    // SAFETY: name is a valid NUL-terminated string.
    check(unsafe { libc::syscall(libc::SYS_mkdirat, dirfd, name.as_ptr(), mode) }).map(drop)
}

/// `symlinkat(value, dirfd, name)`.
pub(crate) fn symlinkat(value: &CStr, dirfd: c_int, name: &CStr) -> SysResult {
    // SAFETY: both are valid NUL-terminated strings.
    check(unsafe { libc::syscall(libc::SYS_symlinkat, value.as_ptr(), dirfd, name.as_ptr()) })
        .map(drop)
}

/// The file type bits (`S_IFMT`) of `name` in `dirfd` (`""`: of `dirfd`
/// itself), without following a symlink.
pub(crate) fn file_type_at(dirfd: c_int, name: &CStr) -> SysResult<u32> {
    // SAFETY: stat is plain data; zeroed is valid, and the kernel fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let flags = libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH;
    // SAFETY: name is NUL-terminated; st is a valid, writable stat buffer.
    check(unsafe {
        libc::syscall(
            libc::SYS_newfstatat,
            dirfd,
            name.as_ptr(),
            &mut st as *mut libc::stat,
            flags,
        )
    })?;
    Ok(st.st_mode & libc::S_IFMT)
}

/// `openat2` resolve flags: no symlink on any component (magic links
/// included), no step out of the starting directory.
pub(crate) const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub(crate) const RESOLVE_BENEATH: u64 = 0x08;

/// `openat2(dirfd, path, {flags, 0, resolve})` (Linux 5.6+).
pub(crate) fn openat2(dirfd: c_int, path: &CStr, flags: c_int, resolve: u64) -> SysResult<c_int> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: flags as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: path is NUL-terminated; how is a valid open_how of the size passed.
    check(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })
    .map(|fd| fd as c_int)
}

/// `move_mount(from, "", to, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)`:
/// attaches the detached tree `from` onto what `to` (an `O_PATH` descriptor) is.
pub(crate) fn move_mount_onto(from: c_int, to: c_int) -> SysResult {
    const MOVE_MOUNT_F_EMPTY_PATH: c_long = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: c_long = 0x40;
    // SAFETY: the empty strings are valid NUL-terminated strings.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            c"".as_ptr(),
            to,
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
    .map(drop)
}

pub(crate) fn pivot_root(new_root: &CStr, put_old: &CStr) -> SysResult {
    // SAFETY: both are valid NUL-terminated strings.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
        .map(drop)
}

pub(crate) fn chdir(path: &CStr) -> SysResult {
    // SAFETY: path is a valid NUL-terminated string.
    check(unsafe { libc::syscall(libc::SYS_chdir, path.as_ptr()) }).map(drop)
}

pub(crate) fn sethostname(name: &[u8]) -> SysResult {
    // SAFETY: name is a valid slice; the kernel reads name.len() bytes.
    check(unsafe { libc::syscall(libc::SYS_sethostname, name.as_ptr(), name.len()) }).map(drop)
}

pub(crate) fn setresuid(uid: u32) -> SysResult {
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(drop)
}

/// Sets only this thread's effective uid (`setresuid(-1, uid, -1)`).
pub(crate) fn set_euid(uid: u32) -> SysResult {
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_setresuid, u32::MAX, uid, u32::MAX) }).map(drop)
}

/// This thread's effective uid.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: no arguments; cannot fail.
    unsafe { libc::syscall(libc::SYS_geteuid) as u32 }
}

pub(crate) fn setresgid(gid: u32) -> SysResult {
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(drop)
}

pub(crate) fn setgroups(groups: &[libc::gid_t]) -> SysResult {
    // SAFETY: groups is a valid slice of gid_t.
    check(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) }).map(drop)
}

pub(crate) fn unshare(flags: c_int) -> SysResult {
    // SAFETY: integer argument only.
    check(unsafe { libc::syscall(libc::SYS_unshare, flags) }).map(drop)
}

pub(crate) fn setsid() -> SysResult {
    // SAFETY: no arguments.
    check(unsafe { libc::syscall(libc::SYS_setsid) }).map(drop)
}

pub(crate) fn dup3(old: c_int, new: c_int, flags: c_int) -> SysResult {
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_dup3, old, new, flags) }).map(drop)
}

pub(crate) fn fcntl(fd: c_int, cmd: c_int, arg: c_long) -> SysResult<c_long> {
    // SAFETY: only integer-argument commands are used (F_DUPFD*, F_GETFD, F_SETFD).
    check(unsafe { libc::syscall(libc::SYS_fcntl, fd, cmd, arg) })
}

/// Names the calling thread (what `ps` shows), cut to 15 bytes by the kernel.
pub(crate) fn set_name(name: &CStr) {
    // SAFETY: name is a NUL-terminated string the kernel only reads.
    unsafe { libc::syscall(libc::SYS_prctl, libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
}

pub(crate) fn prctl(
    option: c_int,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
) -> SysResult<c_long> {
    // SAFETY: integer-argument options, and PR_SET_MM_MAP, whose caller
    // passes the address and size of a valid map.
    check(unsafe { libc::syscall(libc::SYS_prctl, option, a2, a3, a4, a5) })
}

/// Empties the effective, permitted and inheritable capability sets.
pub(crate) fn capset_empty() -> SysResult {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and data are valid for the v3 layout (two data elements).
    check(unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) })
        .map(drop)
}

pub(crate) fn prlimit(resource: c_int, limit: &libc::rlimit64) -> SysResult {
    // SAFETY: limit points to a valid rlimit64; the old-value pointer is NULL.
    check(unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            resource,
            limit as *const libc::rlimit64,
            ptr::null_mut::<libc::rlimit64>(),
        )
    })
    .map(drop)
}

/// The kernel's sigset for rt_sigprocmask / rt_sigaction: 64 bits on x86_64 and aarch64.
pub(crate) type KernelSigset = u64;

pub(crate) fn sigprocmask(how: c_int, set: KernelSigset) -> SysResult {
    // SAFETY: set points to a valid 8-byte sigset; the old-set pointer is NULL.
    check(unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how,
            &set as *const KernelSigset,
            ptr::null_mut::<KernelSigset>(),
            std::mem::size_of::<KernelSigset>(),
        )
    })
    .map(drop)
}

/// The kernel's struct sigaction on x86_64/aarch64: handler, flags, restorer, mask.
#[repr(C)]
struct KSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: KernelSigset,
}

/// Resets one signal to its default disposition.
pub(crate) fn signal_default(sig: c_int) -> SysResult {
    let act = KSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: act is a valid kernel sigaction; SIG_DFL needs no restorer.
    check(unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &act as *const KSigaction,
            ptr::null_mut::<KSigaction>(),
            std::mem::size_of::<KernelSigset>(),
        )
    })
    .map(drop)
}

/// The signals this process ignores (bit `n - 1` for signal `n`), asked of
/// the kernel one by one: 64 light calls cost less than formatting and
/// parsing `/proc/self/status`. A signal that cannot be asked about counts
/// as ignored, so the job resets it.
pub(crate) fn ignored_signals() -> KernelSigset {
    let mut ignored = 0;
    for sig in 1..=64 {
        let mut old = KSigaction {
            handler: 0,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: a query only (no new action); `old` is a valid kernel sigaction to fill.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                ptr::null::<KSigaction>(),
                &mut old as *mut KSigaction,
                std::mem::size_of::<KernelSigset>(),
            )
        };
        if r != 0 || old.handler == libc::SIG_IGN {
            ignored |= 1 << (sig - 1);
        }
    }
    ignored
}

pub(crate) fn signalfd(mask: KernelSigset, flags: c_int) -> SysResult<c_int> {
    // SAFETY: mask points to a valid 8-byte sigset.
    check(unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &mask as *const KernelSigset,
            std::mem::size_of::<KernelSigset>(),
            flags,
        )
    })
    .map(|fd| fd as c_int)
}

pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: c_int) -> SysResult<usize> {
    // SAFETY: fds is a valid writable slice of pollfd; ppoll with a NULL sigmask.
    let ts = libc::timespec {
        tv_sec: (timeout_ms / 1000) as libc::time_t,
        tv_nsec: ((timeout_ms % 1000) as libc::c_long) * 1_000_000,
    };
    let tsp = if timeout_ms < 0 {
        ptr::null()
    } else {
        &ts as *const libc::timespec
    };
    check(unsafe {
        libc::syscall(
            libc::SYS_ppoll,
            fds.as_mut_ptr(),
            fds.len(),
            tsp,
            ptr::null::<KernelSigset>(),
            0usize,
        )
    })
    .map(|n| n as usize)
}

pub(crate) fn wait4(
    pid: c_int,
    status: &mut c_int,
    options: c_int,
    usage: &mut libc::rusage,
) -> SysResult<c_int> {
    // SAFETY: status and usage are valid writable locations.
    check(unsafe {
        libc::syscall(
            libc::SYS_wait4,
            pid,
            status as *mut c_int,
            options,
            usage as *mut libc::rusage,
        )
    })
    .map(|p| p as c_int)
}

pub(crate) fn kill(pid: c_int, sig: c_int) -> SysResult {
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_kill, pid, sig) }).map(drop)
}

pub(crate) fn socket(domain: c_int, ty: c_int, proto: c_int) -> SysResult<c_int> {
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_socket, domain, ty, proto) }).map(|fd| fd as c_int)
}

/// `ioctl(fd, req, arg)` where arg points to caller-owned memory of the right type.
pub(crate) fn ioctl<T>(fd: c_int, req: c_long, arg: &mut T) -> SysResult {
    // SAFETY: arg is a valid, exclusive reference; the caller picks a request
    // whose argument type is T.
    check(unsafe { libc::syscall(libc::SYS_ioctl, fd, req, arg as *mut T) }).map(drop)
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, &{len, prog})`: installs the
/// classic BPF program `prog` on the calling thread. Needs `PR_SET_NO_NEW_PRIVS`
/// (or `CAP_SYS_ADMIN`). The kernel copies the program; it need not outlive the call.
pub(crate) fn seccomp_filter(flags: u32, prog: &[libc::sock_filter]) -> SysResult<c_int> {
    // A slice too long for the u16 length field is refused rather than truncated
    // (the kernel itself takes at most BPF_MAXINSNS, 4096).
    let len = u16::try_from(prog.len()).map_err(|_| Errno(libc::EINVAL))?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads through this pointer.
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: fprog points to `len` valid instructions borrowed for the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    })
    .map(|r| r as c_int)
}

/// `landlock_create_ruleset` handling `handled` file-system rights.
#[cfg(feature = "landlock")]
pub(crate) fn landlock_create_ruleset(handled: u64) -> SysResult<c_int> {
    // The first field of struct landlock_ruleset_attr; a size of 8 is accepted by every version.
    let attr: u64 = handled;
    // SAFETY: attr is a valid 8-byte ruleset attribute for the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const u64,
            8usize,
            0u32,
        )
    })
    .map(|fd| fd as c_int)
}

/// `landlock_add_rule(LANDLOCK_RULE_PATH_BENEATH)`.
#[cfg(feature = "landlock")]
pub(crate) fn landlock_add_path_rule(ruleset: c_int, allowed: u64, parent: c_int) -> SysResult {
    #[repr(C, packed)]
    struct PathBeneath {
        allowed_access: u64,
        parent_fd: i32,
    }
    let attr = PathBeneath {
        allowed_access: allowed,
        parent_fd: parent,
    };
    const PATH_BENEATH: c_int = 1;
    // SAFETY: attr is a valid (packed, as the uapi declares) path_beneath attribute.
    check(unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            PATH_BENEATH,
            &attr as *const PathBeneath,
            0u32,
        )
    })
    .map(drop)
}

/// `landlock_restrict_self`.
#[cfg(feature = "landlock")]
pub(crate) fn landlock_restrict_self(ruleset: c_int) -> SysResult {
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) }).map(drop)
}

/// Whether `fd` refers to a directory (`fstat`).
#[cfg(feature = "landlock")]
pub(crate) fn is_dir(fd: c_int) -> SysResult<bool> {
    // SAFETY: stat is plain data; zeroed is valid, and the kernel fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid, writable stat buffer.
    check(unsafe { libc::syscall(libc::SYS_fstat, fd, &mut st as *mut libc::stat) })?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`: return a user-notification descriptor.
pub(crate) const SECCOMP_FILTER_FLAG_NEW_LISTENER: u32 = 1 << 3;

/// The kernel's `struct seccomp_notif` (80 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct SeccompNotif {
    pub id: u64,
    pub pid: u32,
    pub flags: u32,
    pub nr: i32,
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

/// Receives one pending notification from a seccomp listener.
pub(crate) fn seccomp_notif_recv(listener: c_int, notif: &mut SeccompNotif) -> SysResult {
    // _IOWR('!', 0, struct seccomp_notif): the size is part of the request.
    const RECV: c_long = (3 << 30)
        | ((std::mem::size_of::<SeccompNotif>() as c_long) << 16)
        | ((b'!' as c_long) << 8);
    // The kernel insists the buffer be zeroed.
    *notif = SeccompNotif::default();
    ioctl(listener, RECV, notif)
}

/// Most descriptors [`send_fds`] and [`recv_fds`] carry in one message.
pub(crate) const MAX_FDS: usize = 64;

/// A control message with up to [`MAX_FDS`] descriptors.
#[repr(C, align(8))]
struct FdsCmsg {
    len: usize,
    level: c_int,
    ty: c_int,
    fds: [c_int; MAX_FDS],
}

/// `CMSG_LEN` and `CMSG_SPACE` for `n` descriptors.
const fn cmsg_len(n: usize) -> usize {
    std::mem::size_of::<usize>()
        + 2 * std::mem::size_of::<c_int>()
        + n * std::mem::size_of::<c_int>()
}

/// Sends descriptor `fd` over the unix socket `sock` (one byte of payload), without waiting.
pub(crate) fn send_fd(sock: c_int, fd: c_int) -> SysResult {
    send_fds_flags(sock, &[0], &[fd], libc::MSG_DONTWAIT)
}

/// Receives a descriptor sent with `send_fd`, without waiting; `Ok(None)` if none is queued.
pub(crate) fn recv_fd(sock: c_int) -> SysResult<Option<c_int>> {
    let mut fds = [-1; MAX_FDS];
    match recv_fds_flags(sock, &mut [0], &mut fds, libc::MSG_DONTWAIT) {
        Ok((_, n)) => {
            for &extra in fds.iter().take(n).skip(1) {
                close(extra);
            }
            Ok((n > 0).then_some(fds[0]))
        }
        Err(Errno(libc::EAGAIN)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sends `payload` and the descriptors `fds` (at most [`MAX_FDS`]) over the
/// unix socket `sock`, waiting for room.
pub(crate) fn send_fds(sock: c_int, payload: &[u8], fds: &[c_int]) -> SysResult {
    send_fds_flags(sock, payload, fds, 0)
}

fn send_fds_flags(sock: c_int, payload: &[u8], fds: &[c_int], flags: c_int) -> SysResult {
    if fds.len() > MAX_FDS {
        return Err(Errno(libc::E2BIG));
    }
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut c_void,
        iov_len: payload.len(),
    };
    let mut cmsg = FdsCmsg {
        len: cmsg_len(fds.len()),
        level: libc::SOL_SOCKET,
        ty: libc::SCM_RIGHTS,
        fds: [-1; MAX_FDS],
    };
    cmsg.fds[..fds.len()].copy_from_slice(fds);
    // SAFETY: msghdr is plain data; every pointer in it refers to a local or to
    // `payload`, all of which outlive the call (the kernel only reads the iovec).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = (&mut cmsg as *mut FdsCmsg).cast();
        msg.msg_controllen = cmsg_len(fds.len()).next_multiple_of(8);
    }
    loop {
        // SAFETY: msg is a valid msghdr as described above.
        match check(unsafe {
            libc::syscall(
                libc::SYS_sendmsg,
                sock,
                &msg as *const libc::msghdr,
                libc::MSG_NOSIGNAL | flags,
            )
        }) {
            Err(Errno(libc::EINTR)) => {}
            r => return r.map(drop),
        }
    }
}

/// Receives a message sent with [`send_fds`], waiting for one: the payload's
/// length and how many descriptors (close-on-exec) arrived in `fds`, which
/// may be fewer than were sent when this process has no room for them
/// (the rest are closed by the kernel). `Ok((0, 0))` is end-of-file. A
/// truncated payload is refused (EMSGSIZE) after closing what came.
pub(crate) fn recv_fds(
    sock: c_int,
    payload: &mut [u8],
    fds: &mut [c_int; MAX_FDS],
) -> SysResult<(usize, usize)> {
    recv_fds_flags(sock, payload, fds, 0)
}

fn recv_fds_flags(
    sock: c_int,
    payload: &mut [u8],
    fds: &mut [c_int; MAX_FDS],
    flags: c_int,
) -> SysResult<(usize, usize)> {
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    let mut cmsg = FdsCmsg {
        len: 0,
        level: 0,
        ty: 0,
        fds: [-1; MAX_FDS],
    };
    // SAFETY: as in send_fds.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut cmsg as *mut FdsCmsg).cast();
    msg.msg_controllen = std::mem::size_of::<FdsCmsg>();
    let n = loop {
        // SAFETY: msg is a valid msghdr; the kernel writes at most msg_controllen
        // bytes of control data and iov_len bytes of payload.
        match check(unsafe {
            libc::syscall(
                libc::SYS_recvmsg,
                sock,
                &mut msg as *mut libc::msghdr,
                libc::MSG_CMSG_CLOEXEC | flags,
            )
        }) {
            Err(Errno(libc::EINTR)) => {}
            r => break r? as usize,
        }
    };
    let count = if msg.msg_controllen >= cmsg_len(0)
        && cmsg.level == libc::SOL_SOCKET
        && cmsg.ty == libc::SCM_RIGHTS
    {
        ((cmsg.len - cmsg_len(0)) / std::mem::size_of::<c_int>()).min(MAX_FDS)
    } else {
        0
    };
    fds[..count].copy_from_slice(&cmsg.fds[..count]);
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        for &fd in &fds[..count] {
            close(fd);
        }
        return Err(Errno(libc::EMSGSIZE));
    }
    // MSG_CTRUNC (descriptors that could not be installed, EMFILE): the
    // payload is whole and says what it carries; the count tells the
    // caller what arrived.
    Ok((n, count))
}

/// `execve`; returns only on failure.
///
/// # Safety
/// `argv` and `envp` must be NULL-terminated arrays of valid C strings.
pub(crate) unsafe fn execve(
    path: &CStr,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) -> Errno {
    // SAFETY: guaranteed by the caller.
    match check(unsafe { libc::syscall(libc::SYS_execve, path.as_ptr(), argv, envp) }) {
        Ok(_) => Errno(0),
        Err(e) => e,
    }
}

/// Ends the calling process at once.
pub(crate) fn exit(code: c_int) -> ! {
    loop {
        // SAFETY: exit_group never returns; no memory is touched.
        unsafe { libc::syscall(libc::SYS_exit_group, code) };
    }
}

// ---------------------------------------------------------------------------
// Host-side calls (before the clone). These may allocate; they live here so
// that every raw syscall of the crate sits in one audited module.

use std::os::fd::{FromRawFd, OwnedFd};

const OPEN_TREE_CLONE: u32 = 1;
const OPEN_TREE_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
const AT_RECURSIVE: u32 = 0x8000;

/// `open_tree(path, OPEN_TREE_CLONE | AT_RECURSIVE)` then `mount_setattr(set)` on the
/// detached copy: a private, pre-configured bind of `path` that the cell attaches
/// with `move_mount`. Opening it here, with the host's permissions and before
/// anything is mounted over it, is what lets binds come from anywhere.
pub(crate) fn open_tree_clone(path: &CStr, set: u64) -> SysResult<OwnedFd> {
    open_tree_at(libc::AT_FDCWD, path, 0, set)
}

/// `open_tree(fd, "", OPEN_TREE_CLONE | AT_EMPTY_PATH | AT_RECURSIVE)` then
/// `mount_setattr(set)`: like `open_tree_clone`, on what `fd` (an `O_PATH`
/// descriptor) already refers to, so nothing is resolved twice.
pub(crate) fn open_tree_clone_fd(fd: &OwnedFd, set: u64) -> SysResult<OwnedFd> {
    use std::os::fd::AsRawFd;
    open_tree_at(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH as u32, set)
}

fn open_tree_at(dirfd: c_int, path: &CStr, flags: u32, set: u64) -> SysResult<OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: path is NUL-terminated; dirfd is AT_FDCWD or a live descriptor;
    // the flags request a new detached tree.
    let tree = check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dirfd,
            path.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | flags,
        )
    })? as c_int;
    // SAFETY: open_tree returned a new descriptor that we own.
    let tree = unsafe { OwnedFd::from_raw_fd(tree) };
    if set != 0 {
        let attr = MountAttr {
            attr_set: set,
            ..Default::default()
        };
        mount_setattr(
            tree.as_raw_fd(),
            c"",
            libc::AT_EMPTY_PATH as u32 | AT_RECURSIVE,
            &attr,
        )?;
    }
    Ok(tree)
}

/// `waitid(P_PIDFD, fd, WEXITED | __WALL)` with the child's rusage. Returns
/// `Ok(None)` with `nohang` when the child has not exited yet.
pub(crate) fn waitid_pidfd(
    fd: c_int,
    nohang: bool,
) -> SysResult<Option<(libc::siginfo_t, libc::rusage)>> {
    const P_PIDFD: c_int = 3;
    // SAFETY: siginfo_t and rusage are plain data; zeroed is valid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut opts = libc::WEXITED | libc::__WALL;
    if nohang {
        opts |= libc::WNOHANG;
    }
    loop {
        // SAFETY: info and usage are valid writable locations of the right types.
        let r = check(unsafe {
            libc::syscall(
                libc::SYS_waitid,
                P_PIDFD,
                fd,
                &mut info as *mut libc::siginfo_t,
                opts,
                &mut usage as *mut libc::rusage,
            )
        });
        match r {
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
            Ok(_) => {
                // SAFETY: reading the si_pid field of a siginfo filled by waitid.
                let pid = unsafe { info.si_pid() };
                return Ok((pid != 0).then_some((info, usage)));
            }
        }
    }
}

/// `pidfd_open(pid, 0)`: a close-on-exec pidfd of a process this one
/// knows by pid. Raw: the spawner calls it too.
pub(crate) fn pidfd_open(pid: c_int) -> SysResult<OwnedFd> {
    // SAFETY: integer arguments only.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })? as c_int;
    // SAFETY: pidfd_open returned a new descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits for the child `pid` to exit and reaps it (`__WALL`: children with
/// no exit signal too).
pub(crate) fn reap(pid: c_int) -> SysResult {
    // SAFETY: siginfo_t is plain data; zeroed is valid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: info is a valid writable siginfo_t; no rusage is asked for.
        match check(unsafe {
            libc::syscall(
                libc::SYS_waitid,
                libc::P_PID,
                pid,
                &mut info as *mut libc::siginfo_t,
                libc::WEXITED | libc::__WALL,
                ptr::null_mut::<libc::rusage>(),
            )
        }) {
            Err(Errno(libc::EINTR)) => {}
            r => return r.map(drop),
        }
    }
}

pub(crate) fn getpid() -> c_int {
    // SAFETY: no arguments.
    unsafe { libc::syscall(libc::SYS_getpid) as c_int }
}

/// `pidfd_send_signal(fd, sig)`.
pub(crate) fn pidfd_send_signal(fd: c_int, sig: c_int) -> SysResult {
    // SAFETY: integer arguments; NULL siginfo.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd,
            sig,
            ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// `setns(fd, nstype)` for the calling thread.
pub(crate) fn setns(fd: c_int, nstype: c_int) -> SysResult {
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_setns, fd, nstype) }).map(drop)
}

/// Maps `len` bytes of `fd` shared at exactly `addr`, failing (EEXIST)
/// rather than replacing anything already there.
pub(crate) fn mmap_shared_at(addr: usize, len: usize, fd: c_int) -> SysResult {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so no
    // memory this process uses can change under it.
    let r = check(unsafe {
        libc::syscall(
            libc::SYS_mmap,
            addr,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
            fd,
            0usize,
        )
    })?;
    if r as usize != addr {
        // Kernels before 4.17 take the address as a hint only.
        // SAFETY: the mapping was made just now and nothing refers to it.
        let _ = unsafe { munmap(r as usize, len) };
        return Err(Errno(libc::EEXIST));
    }
    Ok(())
}

/// Unmaps a range.
///
/// # Safety
/// Nothing that will still run may use the range (no live reference into it).
pub(crate) unsafe fn munmap(addr: usize, len: usize) -> SysResult {
    // SAFETY: the kernel checks the range; the caller gives up what it held.
    check(unsafe { libc::syscall(libc::SYS_munmap, addr, len) }).map(drop)
}

pub(crate) fn getppid() -> c_int {
    // SAFETY: no arguments.
    unsafe { libc::syscall(libc::SYS_getppid) as c_int }
}
