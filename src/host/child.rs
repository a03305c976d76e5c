//! Trying things in a throw-away child process.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::error::Errno;
use crate::sys;

/// How a probe child ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Every step worked.
    Done,
    /// Step `step` (numbered by the probe) failed with `errno`.
    Failed { step: u32, errno: Errno },
    /// The child died from a signal (e.g. `SIGSYS` from a seccomp filter).
    Killed(i32),
    /// The child could not be created, or ended without a word.
    Broken(String),
}

/// A step's failure inside the child: its number and the raw errno.
pub(crate) type StepResult = Result<(), (u32, i32)>;

/// Runs `f` in a forked child and reports how it went.
///
/// The child keeps only the report pipe open, so it holds nothing of the
/// host's (other jobs' pipes) while it runs. A grandchild the probe forks
/// inherits the pipe and may report through [`report`] itself.
///
/// # Safety
/// `f` runs after `fork` in a copy of a possibly multi-threaded process: it
/// must only make raw system calls on data prepared beforehand (no
/// allocation, no locks, no panics).
pub(crate) unsafe fn run(f: impl FnOnce(i32) -> StepResult) -> Probe {
    let (r, w): (OwnedFd, OwnedFd) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
    {
        Ok(p) => p,
        Err(e) => return Probe::Broken(format!("pipe: {}", Errno::from(e))),
    };
    let wfd = w.as_raw_fd();
    // SAFETY: the child only runs `f` (raw syscalls, by this function's
    // contract), `report` and `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Probe::Broken(format!("fork: {}", Errno::last()));
    }
    if pid == 0 {
        if wfd > 3 {
            let _ = sys::close_range(3, wfd as u32 - 1, 0);
        }
        let _ = sys::close_range(wfd as u32 + 1, u32::MAX, 0);
        let code = match f(wfd) {
            Ok(()) => 0,
            Err((step, errno)) => {
                report(wfd, step, errno);
                1
            }
        };
        sys::exit(code);
    }
    drop(w);
    let mut rec = [0u8; 8];
    let mut n = 0;
    while n < rec.len() {
        match rustix::io::read(&r, &mut rec[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; status is a valid out-pointer.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            break;
        }
        if Errno::last().0 != libc::EINTR {
            return Probe::Broken(format!("waitpid: {}", Errno::last()));
        }
    }
    if n == rec.len() {
        let step = u32::from_ne_bytes(rec[..4].try_into().expect("4 bytes"));
        let errno = i32::from_ne_bytes(rec[4..].try_into().expect("4 bytes"));
        return Probe::Failed {
            step,
            errno: Errno(errno),
        };
    }
    if libc::WIFSIGNALED(status) {
        return Probe::Killed(libc::WTERMSIG(status));
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        return Probe::Done;
    }
    Probe::Broken(format!(
        "the probe ended with status {status:#x} and no report"
    ))
}

/// Writes a step's failure to the report pipe (from the child or a grandchild).
pub(crate) fn report(fd: i32, step: u32, errno: i32) {
    let mut rec = [0u8; 8];
    rec[..4].copy_from_slice(&step.to_ne_bytes());
    rec[4..].copy_from_slice(&errno.to_ne_bytes());
    let _ = sys::write_all(fd, &rec);
}

/// Runs a raw call returning -1/errno as a step.
pub(crate) fn step(n: u32, ret: Result<(), Errno>) -> StepResult {
    ret.map_err(|e| (n, e.0))
}

/// Writes `data` to the file `path` (a prepared C string) with raw calls.
pub(crate) fn write_file(path: &std::ffi::CStr, data: &[u8]) -> Result<(), Errno> {
    let fd = sys::open(path, libc::O_WRONLY | libc::O_CLOEXEC, 0)?;
    let r = sys::write_all(fd, data);
    sys::close(fd);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_success_failure_and_signals() {
        // SAFETY: the closures make raw syscalls only.
        unsafe {
            assert_eq!(run(|_| Ok(())), Probe::Done);
            assert_eq!(
                run(|_| Err((3, libc::EPERM))),
                Probe::Failed {
                    step: 3,
                    errno: Errno(libc::EPERM)
                }
            );
            assert_eq!(
                run(|_| {
                    libc::raise(libc::SIGUSR1);
                    Ok(())
                }),
                Probe::Killed(libc::SIGUSR1)
            );
        }
    }
}
