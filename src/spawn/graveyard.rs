//! Where a finished cell leaves its mount namespace, so the host can tear
//! it down after telling the job's waiters, not before.
//!
//! The last process to leave a mount namespace unmounts everything in it
//! and waits for an expedited RCU grace period, and the kernel does that in
//! `exit` before it tells the parent: for a cell, its init, between the
//! job's end and the host learning of it (~50 µs, several hundred when the
//! other CPUs are busy in the kernel). So init, once the job has exited,
//! sends a descriptor of its mount namespace over a socket whose other end
//! only the host holds, and exits. The descriptor in flight keeps the
//! namespace alive; the reactor receives and closes it (see [`drain`])
//! right after it has published the job's outcome.
//!
//! Nothing piles up: the socket queue is small and a cell that cannot send
//! (queue full) just tears its namespace down itself; every finished job
//! drains the queue.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libc::c_int;

use crate::sys;

/// (the host's end, the cells' end), once made (a failure to make them,
/// say under EMFILE, is tried again by the next spawn).
static PAIR: OnceLock<(OwnedFd, OwnedFd)> = OnceLock::new();

/// Drains announced but not finished (see [`drain_pending`]).
static PENDING: AtomicUsize = AtomicUsize::new(0);

fn pair() -> Option<&'static (OwnedFd, OwnedFd)> {
    if let Some(p) = PAIR.get() {
        return Some(p);
    }
    let (host, cells) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
        None,
    )
    .ok()?;
    // The cells only send; nothing they could read ever arrives.
    let _ = rustix::net::shutdown(&cells, rustix::net::Shutdown::Read);
    // Made by two threads at once: one pair stays, the other is closed.
    Some(PAIR.get_or_init(|| (host, cells)))
}

/// The end a cell's init sends its mount namespace to; -1 if there is none
/// (the cell then tears its namespace down itself).
pub(crate) fn cell_end() -> c_int {
    pair().map_or(-1, |(_, cells)| cells.as_raw_fd())
}

/// Announces a drain: until the returned guard is dropped (after
/// [`drain`]), [`settle`] waits. Taken before a job's waiters are woken, so
/// none of them can look at the process's descriptors while a namespace
/// is on its way out.
pub(crate) fn drain_pending() -> DrainPending {
    PENDING.fetch_add(1, Ordering::SeqCst);
    DrainPending(())
}

pub(crate) struct DrainPending(());

impl Drop for DrainPending {
    fn drop(&mut self) {
        PENDING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Closes every namespace descriptor waiting in the socket: each close of
/// the last one unmounts that cell's tree.
pub(crate) fn drain() {
    let Some((host, _)) = pair() else { return };
    while let Ok(Some(fd)) = sys::recv_fd(host.as_raw_fd()) {
        sys::close(fd);
    }
}

/// Waits (up to a second) for announced drains to finish, and returns the
/// socket's descriptors: what a leak check must not count.
pub(crate) fn settle() -> Vec<RawFd> {
    let deadline = Instant::now() + Duration::from_secs(1);
    while PENDING.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    pair().map_or_else(Vec::new, |(a, b)| vec![a.as_raw_fd(), b.as_raw_fd()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buried_descriptor_is_drained_and_closed() {
        let end = cell_end();
        assert!(end >= 0);
        let (r, w) = rustix::pipe::pipe().unwrap();
        sys::send_fd(end, w.as_raw_fd()).unwrap();
        drop(w);
        // The write end is still open in flight: no end-of-file yet.
        let mut b = [0u8; 1];
        rustix::io::ioctl_fionbio(&r, true).unwrap();
        assert_eq!(rustix::io::read(&r, &mut b), Err(rustix::io::Errno::AGAIN));
        drain();
        assert_eq!(rustix::io::read(&r, &mut b), Ok(0), "closed by the drain");
    }
}
