//! Fresh network namespaces, made ahead of time.
//!
//! Creating a network namespace is the most expensive part of a cell by far
//! (about half a millisecond of kernel work, most of it pernet setup), so the
//! preparation thread (`prep.rs`) keeps a few ready, each with loopback up. A spawning
//! thread joins one just for the clone and returns to its own; the cell
//! inherits it. Every namespace serves exactly one job and dies with it:
//! nothing, not even a TIME_WAIT socket, carries over from one job to the next.
//!
//! The namespaces belong to the host's user namespace, so the job holds no
//! capability over them: it cannot add interfaces, routes or firewall rules.
//! This needs root (CAP_SYS_ADMIN); unprivileged hosts let clone3 create the
//! namespace (CLONE_NEWNET) instead.

use crate::error::{Errno, Error, Result};
use crate::sys;
use std::os::fd::{AsRawFd, OwnedFd};

/// Creates a network namespace on the calling thread and returns to the thread's own.
pub(crate) fn create() -> Result<OwnedFd> {
    let own = own_netns()?;
    sys::unshare(libc::CLONE_NEWNET).map_err(|e| err("unshare(CLONE_NEWNET)", e))?;
    let made = thread_netns().and_then(|fd| loopback_up().map(|_| fd));
    // Whatever happened, this thread goes home.
    sys::setns(own.as_raw_fd(), libc::CLONE_NEWNET)
        .map_err(|e| err("setns back to own network namespace", e))?;
    made.map_err(|e| err("prepare network namespace", e))
}

fn err(op: &'static str, errno: Errno) -> Error {
    Error::Spawn {
        op,
        path: None,
        errno,
        hint: None,
    }
}

/// The calling thread's network namespace, to return to.
fn own_netns() -> Result<OwnedFd> {
    thread_netns().map_err(|e| err("open own network namespace", e))
}

/// The calling thread's network namespace: from a socket, or, where that
/// is refused, from /proc (see `sys::host::socket_netns` for why not
/// /proc first).
pub(crate) fn thread_netns() -> std::result::Result<OwnedFd, Errno> {
    match sys::host::socket_netns() {
        Err(Errno(libc::EPERM | libc::ENOTTY | libc::EINVAL | libc::EAFNOSUPPORT)) => {
            open_ns("/proc/thread-self/ns/net")
        }
        other => other,
    }
}

fn open_ns(path: &str) -> std::result::Result<OwnedFd, Errno> {
    rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(Errno::from)
}

fn loopback_up() -> std::result::Result<(), Errno> {
    crate::spawn::cell::loopback_up()
}

/// Runs `f` with the calling thread inside `netns`, then puts it back.
pub(crate) fn with_netns<T>(netns: &OwnedFd, f: impl FnOnce() -> T) -> Result<T> {
    let own = own_netns()?;
    sys::setns(netns.as_raw_fd(), libc::CLONE_NEWNET)
        .map_err(|e| err("setns into the cell's network namespace", e))?;
    let r = f();
    if let Err(e) = sys::setns(own.as_raw_fd(), libc::CLONE_NEWNET) {
        // A thread stuck in a job's namespace would silently break the host program.
        panic!("jobcell: cannot return to the thread's own network namespace: {e}");
    }
    Ok(r)
}
