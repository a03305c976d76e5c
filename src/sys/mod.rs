//! Raw system calls: every one the crate makes, for the code that runs
//! between `clone3` and `execve` and (in `host.rs`) for the host.
//!
//! Nothing here allocates, locks, formats or panics: every function is one
//! `syscall(2)` on memory the caller already owns, returning the kernel's errno.
//! glibc wrappers are avoided on purpose: some of them (`setuid`, `fork`) take
//! process-wide locks or signal other threads, which a cloned child of a
//! multi-threaded host must never do.
//!
//! By what the calls act on: descriptors and programs here, `mount.rs`
//! (files and mounts), `process.rs` (credentials, namespaces, signals,
//! children, memory), `fds.rs` (descriptors over sockets), `restrict.rs`
//! (seccomp, Landlock); each is re-exported, as `sys::close` or
//! `sys::mount`. `host.rs` holds what only the host calls, reached as
//! `sys::host::…`.

mod fds;
pub(crate) mod host;
mod mount;
mod process;
mod restrict;

pub(crate) use fds::*;
pub(crate) use mount::*;
pub(crate) use process::*;
pub(crate) use restrict::*;

use std::ffi::CStr;
use std::ptr;

use libc::{c_int, c_long};

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

pub(crate) fn dup3(old: c_int, new: c_int, flags: c_int) -> SysResult {
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_dup3, old, new, flags) }).map(drop)
}

pub(crate) fn fcntl(fd: c_int, cmd: c_int, arg: c_long) -> SysResult<c_long> {
    // SAFETY: only integer-argument commands are used (F_DUPFD*, F_GETFD, F_SETFD).
    check(unsafe { libc::syscall(libc::SYS_fcntl, fd, cmd, arg) })
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
