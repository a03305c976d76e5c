//! Descriptors passed over unix sockets (`SCM_RIGHTS`), without allocating:
//! between the host and the spawner, and from init to the host.

use libc::{c_int, c_void};

use super::{check, close, SysResult};
use crate::error::Errno;

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
