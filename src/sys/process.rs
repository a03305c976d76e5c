//! The calling process: its credentials, name, namespaces, limits, signals
//! and children, and the plan's shared memory.

use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::ptr;

use libc::{c_int, c_long};

use super::{check, SysResult};
use crate::error::Errno;

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
pub(super) struct KSigaction {
    pub handler: usize,
    pub flags: u64,
    pub restorer: usize,
    pub mask: KernelSigset,
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

pub(crate) fn getpid() -> c_int {
    // SAFETY: no arguments.
    unsafe { libc::syscall(libc::SYS_getpid) as c_int }
}

pub(crate) fn getppid() -> c_int {
    // SAFETY: no arguments.
    unsafe { libc::syscall(libc::SYS_getppid) as c_int }
}

/// `setns(fd, nstype)` for the calling thread.
pub(crate) fn setns(fd: c_int, nstype: c_int) -> SysResult {
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_setns, fd, nstype) }).map(drop)
}

/// `pidfd_open(pid, 0)`: a close-on-exec pidfd of a process this one
/// knows by pid. Raw: the spawner calls it too.
pub(crate) fn pidfd_open(pid: c_int) -> SysResult<OwnedFd> {
    // SAFETY: integer arguments only.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })? as c_int;
    // SAFETY: pidfd_open returned a new descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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
