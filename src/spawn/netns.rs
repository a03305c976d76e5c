//! A warm pool of fresh network namespaces.
//!
//! Creating a network namespace is the most expensive part of a cell by far
//! (about half a millisecond of kernel work, most of it pernet setup), so a
//! background thread keeps a few ready, each with loopback up. A spawning
//! thread joins one just for the clone and returns to its own; the cell
//! inherits it. Every namespace serves exactly one job and dies with it:
//! nothing, not even a TIME_WAIT socket, carries over from one job to the next.
//!
//! The namespaces belong to the host's user namespace, so the job holds no
//! capability over them: it cannot add interfaces, routes or firewall rules.
//! This needs root (CAP_SYS_ADMIN); unprivileged hosts let clone3 create the
//! namespace (CLONE_NEWNET) instead.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;

use parking_lot::{Condvar, Mutex};

use crate::error::{Errno, Error, Result};
use crate::sys;

/// How many namespaces the pool keeps ready.
const WARM: usize = 4;

struct Pool {
    idle: Mutex<Vec<OwnedFd>>,
    wanted: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let p: &'static Pool = Box::leak(Box::new(Pool {
            idle: Mutex::new(Vec::new()),
            wanted: Condvar::new(),
        }));
        let _ = std::thread::Builder::new()
            .name("jobcell-netns".into())
            .spawn(move || loop {
                let mut g = p.idle.lock();
                while g.len() >= WARM {
                    p.wanted.wait(&mut g);
                }
                drop(g);
                match create() {
                    Ok(fd) => p.idle.lock().push(fd),
                    // Cannot make them here (no privilege): stop; spawns create their own.
                    Err(_) => return,
                }
            });
        p
    })
}

/// A fresh network namespace with loopback up, from the pool when one is ready.
pub(crate) fn take() -> Result<OwnedFd> {
    let p = pool();
    let ready = p.idle.lock().pop();
    p.wanted.notify_one();
    match ready {
        Some(fd) => Ok(fd),
        None => create(),
    }
}

/// Creates a network namespace on the calling thread and returns to the thread's own.
fn create() -> Result<OwnedFd> {
    let err = |op, errno| Error::Spawn {
        op,
        path: None,
        errno,
        hint: None,
    };
    let own =
        open_ns("/proc/thread-self/ns/net").map_err(|e| err("open own network namespace", e))?;
    sys::unshare(libc::CLONE_NEWNET).map_err(|e| err("unshare(CLONE_NEWNET)", e))?;
    let made = open_ns("/proc/thread-self/ns/net").and_then(|fd| loopback_up().map(|_| fd));
    // Whatever happened, this thread goes home.
    sys::setns(own.as_raw_fd(), libc::CLONE_NEWNET)
        .map_err(|e| err("setns back to own network namespace", e))?;
    made.map_err(|e| err("prepare network namespace", e))
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
    crate::spawn::child::loopback_up()
}

/// Runs `f` with the calling thread inside `netns`, then puts it back.
pub(crate) fn with_netns<T>(netns: &OwnedFd, f: impl FnOnce() -> T) -> Result<T> {
    let err = |op, errno| Error::Spawn {
        op,
        path: None,
        errno,
        hint: None,
    };
    let own =
        open_ns("/proc/thread-self/ns/net").map_err(|e| err("open own network namespace", e))?;
    sys::setns(netns.as_raw_fd(), libc::CLONE_NEWNET)
        .map_err(|e| err("setns into the cell's network namespace", e))?;
    let r = f();
    if let Err(e) = sys::setns(own.as_raw_fd(), libc::CLONE_NEWNET) {
        // A thread stuck in a job's namespace would silently break the host program.
        panic!("jobcell: cannot return to the thread's own network namespace: {e}");
    }
    Ok(r)
}
