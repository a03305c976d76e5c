//! `clone3` into new namespaces, with fallbacks for older kernels.

use std::os::fd::{FromRawFd, OwnedFd};

use libc::c_int;

use crate::error::Errno;

pub(crate) const CLONE_PIDFD: u64 = 0x1000;
pub(crate) const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
pub(crate) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
const CLONE_PARENT_SETTID: u64 = libc::CLONE_PARENT_SETTID as u64;

/// Whether clones reset the handled signals (`CLONE_CLEAR_SIGHAND`, Linux
/// 5.5+): 0 unknown, 1 yes, 2 no. Learned from the first clone; until then a
/// job assumes not and resets every signal itself.
static CLEARS_HANDLERS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

pub(crate) fn clears_handlers() -> bool {
    CLEARS_HANDLERS.load(std::sync::atomic::Ordering::Relaxed) == 1
}

/// Learns from the flags a clone made elsewhere (by the spawner) was accepted with.
pub(crate) fn note_accepted(flags: u64) {
    let cleared = if flags & CLONE_CLEAR_SIGHAND != 0 {
        1
    } else {
        2
    };
    CLEARS_HANDLERS.store(cleared, std::sync::atomic::Ordering::Relaxed);
}

/// The kernel's `struct clone_args` (version 2, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// A cloned child, seen from the parent.
pub(crate) struct Child {
    pub pid: c_int,
    pub pidfd: OwnedFd,
    /// The flags the kernel accepted (some may have been dropped by a fallback).
    pub flags: u64,
}

/// Blocks every signal on this thread until dropped.
struct SignalsBlocked(libc::sigset_t);

impl SignalsBlocked {
    fn new() -> SignalsBlocked {
        // SAFETY: sigset_t is plain data; sigfillset/pthread_sigmask only write to it.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            SignalsBlocked(old)
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in new().
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// Clones a child into `ns_flags` namespaces and runs `child` in it.
///
/// The child starts with every signal blocked (and, where the kernel can,
/// every handler reset), on a private copy of this thread's stack, like fork.
/// The child gets exit signal 0: no SIGCHLD disturbs the host, and host code
/// that reaps with `waitpid(-1)` cannot steal it. It is waited for through its pidfd.
///
/// With `cgroup_fd`, the child is created inside that cgroup (v2) when the
/// kernel supports it; check `Child::flags` for `CLONE_INTO_CGROUP`.
///
/// With `pid_slot`, the kernel stores the child's pid there as part of the
/// clone (`CLONE_PARENT_SETTID`), before this returns: in shared memory,
/// whoever waits for the clone learns of the child even if this process
/// dies right after it.
///
/// # Safety
/// `child` runs in the cloned process and must not allocate, lock or panic:
/// raw syscalls only, then exec or exit (returning exits with 127).
/// `pid_slot`, if any, must be valid for writes.
pub(crate) unsafe fn clone_into(
    ns_flags: u64,
    cgroup_fd: Option<c_int>,
    pid_slot: Option<*mut c_int>,
    child: impl FnOnce(),
) -> Result<Child, Errno> {
    // SAFETY: as the caller promised.
    unsafe { clone_into_as(ns_flags, cgroup_fd, pid_slot, 0, child) }
}

/// [`clone_into`], with a new user namespace created by host uid `owner`
/// (not 0) rather than by this thread's uid (see `idmap::ns_owner`).
///
/// # Safety
/// As for [`clone_into`].
pub(crate) unsafe fn clone_into_as(
    ns_flags: u64,
    cgroup_fd: Option<c_int>,
    pid_slot: Option<*mut c_int>,
    owner: u32,
    child: impl FnOnce(),
) -> Result<Child, Errno> {
    let mut flags = ns_flags | CLONE_PIDFD | CLONE_CLEAR_SIGHAND;
    if cgroup_fd.is_some() {
        flags |= CLONE_INTO_CGROUP;
    }
    if pid_slot.is_some() {
        flags |= CLONE_PARENT_SETTID;
    }
    let _blocked = SignalsBlocked::new();
    // After the signals are blocked: nothing runs on this thread as `owner`
    // but the clone. Without the privilege to switch, the thread's own uid
    // creates the namespace, as before.
    let _owner = match (owner, ns_flags & libc::CLONE_NEWUSER as u64) {
        (0, _) | (_, 0) => None,
        _ => AsOwner::new(owner).ok(),
    };
    let mut pidfd: c_int = -1;
    loop {
        let mut args = CloneArgs {
            flags,
            pidfd: &mut pidfd as *mut c_int as u64,
            parent_tid: pid_slot.map_or(0, |p| p as u64),
            exit_signal: 0,
            cgroup: cgroup_fd.unwrap_or(0) as u64,
            ..Default::default()
        };
        // SAFETY: args is a valid clone_args of the size passed; without
        // CLONE_VM the child runs on a copy of this stack, like fork.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &mut args as *mut CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if ret == 0 {
            child();
            crate::sys::exit(127);
        }
        if ret > 0 {
            note_accepted(flags);
            // SAFETY: CLONE_PIDFD stored a fresh descriptor we now own.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            return Ok(Child {
                pid: ret as c_int,
                pidfd,
                flags,
            });
        }
        match Errno::last() {
            // Older kernels: drop what they do not know, one feature at a time.
            Errno(libc::E2BIG) | Errno(libc::EINVAL) if flags & CLONE_INTO_CGROUP != 0 => {
                flags &= !CLONE_INTO_CGROUP
            }
            Errno(libc::EINVAL) if flags & CLONE_CLEAR_SIGHAND != 0 => {
                flags &= !CLONE_CLEAR_SIGHAND
            }
            Errno(libc::ENOSYS) => return unsafe { clone_legacy(flags, pid_slot, child) },
            e => return Err(e),
        }
    }
}

/// While alive, this thread's effective uid is a cell's namespace owner:
/// the user namespace a clone creates belongs to it (its `owner`, and the
/// user its use of per-user budgets is charged to). Only the thread's
/// credentials change (a raw `setresuid`, not glibc's, which would switch
/// every thread), and it keeps its capabilities (`SECBIT_NO_SETUID_FIXUP`):
/// joining a cgroup at clone time still needs them. Changing the effective
/// uid makes the kernel reset the process's dumpable flag and the thread's
/// parent-death signal; both are put back, with the uid and the securebits.
struct AsOwner {
    euid: u32,
    securebits: libc::c_long,
    dumpable: libc::c_long,
    pdeath: c_int,
}

const PR_GET_SECUREBITS: c_int = 27;
const PR_SET_SECUREBITS: c_int = 28;
const SECBIT_NO_SETUID_FIXUP: libc::c_long = 1 << 2;

impl AsOwner {
    fn new(owner: u32) -> Result<AsOwner, Errno> {
        use crate::sys::prctl;
        let securebits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0)?;
        let dumpable = prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0)?;
        let mut pdeath: c_int = 0;
        prctl(
            libc::PR_GET_PDEATHSIG,
            &mut pdeath as *mut c_int as libc::c_long,
            0,
            0,
            0,
        )?;
        let euid = crate::sys::geteuid();
        prctl(
            PR_SET_SECUREBITS,
            securebits | SECBIT_NO_SETUID_FIXUP,
            0,
            0,
            0,
        )?;
        let me = AsOwner {
            euid,
            securebits,
            dumpable,
            pdeath,
        };
        crate::sys::set_euid(owner)?;
        Ok(me)
    }
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        use crate::sys::prctl;
        let _ = crate::sys::set_euid(self.euid);
        let _ = prctl(PR_SET_SECUREBITS, self.securebits, 0, 0, 0);
        let _ = prctl(libc::PR_SET_DUMPABLE, self.dumpable, 0, 0, 0);
        if self.pdeath != 0 {
            let _ = prctl(libc::PR_SET_PDEATHSIG, self.pdeath as libc::c_long, 0, 0, 0);
        }
    }
}

/// `clone(2)` where `clone3` is missing or hidden (a container's seccomp
/// profile answers ENOSYS). `clone` takes one pointer for both the pidfd
/// and the pid: with `pid_slot` it stores the pid, and the pidfd is opened
/// after (`pidfd_open`, as old as `clone3`).
unsafe fn clone_legacy(
    flags: u64,
    pid_slot: Option<*mut c_int>,
    child: impl FnOnce(),
) -> Result<Child, Errno> {
    let mut flags = flags & !(CLONE_CLEAR_SIGHAND | CLONE_INTO_CGROUP);
    let mut pidfd: c_int = -1;
    let slot = match pid_slot {
        Some(p) => {
            flags &= !CLONE_PIDFD;
            p
        }
        None => {
            flags &= !CLONE_PARENT_SETTID;
            &mut pidfd as *mut c_int
        }
    };
    // SAFETY: fork-like clone (no CLONE_VM, no new stack); the kernel
    // stores the pidfd (CLONE_PIDFD) or the pid (CLONE_PARENT_SETTID)
    // through the parent_tid argument (x86_64/aarch64 order).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags as libc::c_ulong,
            0usize,
            slot,
            0usize,
            0usize,
        )
    };
    if ret == 0 {
        child();
        crate::sys::exit(127);
    }
    if ret < 0 {
        return Err(Errno::last());
    }
    CLEARS_HANDLERS.store(2, std::sync::atomic::Ordering::Relaxed);
    let pidfd = match pid_slot {
        // The child cannot be reaped (nor its pid reused) before whoever
        // reads the slot sees it: the pid names it.
        Some(_) => match crate::sys::pidfd_open(ret as c_int) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = crate::sys::kill(ret as c_int, libc::SIGKILL);
                return Err(e);
            }
        },
        // SAFETY: CLONE_PIDFD stored a fresh descriptor we now own.
        None => unsafe { OwnedFd::from_raw_fd(pidfd) },
    };
    Ok(Child {
        pid: ret as c_int,
        pidfd,
        flags: flags | CLONE_PIDFD,
    })
}
