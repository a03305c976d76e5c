//! Calls only the host makes, before a clone or while it supervises. They
//! are not re-exported as `sys::…`: code in a cell would have to name
//! `sys::host`, which the layering check refuses in `spawn/cell/`. None of
//! them allocates either, but none has a reason to run in a cell.

use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::ptr;

use libc::c_int;

use super::process::{KSigaction, KernelSigset};
use super::{check, mount_setattr, write, MountAttr, SysResult};
use crate::error::Errno;

/// The calling thread's network namespace, from a socket made in it
/// (`SIOCGSKNS`) rather than from `/proc/thread-self/ns/net`.
///
/// Why not /proc: looking a thread's namespace files up there leaves
/// dentries under its `/proc/<pid>/task/<tid>` entry, and a process whose
/// helper threads hold such dentries is slow to reap: its parent's wait
/// walks them while the exiting thread is still flushing them (milliseconds
/// per exit on a busy machine; a one-shot program pays it on every run).
/// Needs CAP_NET_ADMIN over the namespace (`EPERM` otherwise).
pub(crate) fn socket_netns() -> SysResult<OwnedFd> {
    const SIOCGSKNS: libc::c_ulong = 0x894C;
    // SAFETY: integer arguments only.
    let sock = check(unsafe {
        libc::syscall(
            libc::SYS_socket,
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(sock as c_int) };
    // SAFETY: SIOCGSKNS takes no argument and returns a new O_CLOEXEC descriptor.
    let ns = check(unsafe {
        libc::syscall(
            libc::SYS_ioctl,
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            SIOCGSKNS,
            0,
        )
    })?;
    // SAFETY: as above, a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ns as c_int) })
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

/// `mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, {MOUNT_ATTR_IDMAP, userns})`:
/// the detached tree `tree` (and its submounts) show ids through the maps
/// of the user namespace `userns`. Only a tree not yet attached can take it.
pub(crate) fn idmap_tree(tree: &OwnedFd, userns: &OwnedFd) -> SysResult {
    use std::os::fd::AsRawFd;
    let attr = MountAttr {
        attr_set: super::MOUNT_ATTR_IDMAP,
        userns_fd: userns.as_raw_fd() as u64,
        ..Default::default()
    };
    mount_setattr(
        tree.as_raw_fd(),
        c"",
        libc::AT_EMPTY_PATH as u32 | AT_RECURSIVE,
        &attr,
    )
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
