//! The job: the grandchild init forks, which drops everything init held
//! and executes the program.

use libc::{c_int, c_long};

#[cfg(feature = "landlock")]
use super::PlacedLandlock;
use super::{fail, progress, ChildPlan};
use crate::error::{Errno, Stage};
use crate::spawn::status::StatusPage;
use crate::sys;

const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
const PR_CAP_AMBIENT: c_int = 47;
const PR_CAP_AMBIENT_CLEAR_ALL: c_long = 4;

/// The job: drop everything the cell's init held, then `execve`.
///
/// # Safety
/// Only in the forked job process, with the parent's prepared plan.
pub(super) unsafe fn job_main(plan: &ChildPlan<'_>) -> ! {
    let efd = plan.error_write;
    let job = &plan.job;
    progress(plan, Stage::Setsid, 0);
    if let Err(e) = sys::setsid() {
        fail(efd, Stage::Setsid, e, 0);
    }
    progress(plan, Stage::Stdio, 0);
    if let Err(e) = connect_stdio(job.stdio) {
        fail(efd, Stage::Stdio, e, 0);
    }
    for (i, (res, lim)) in job.rlimits.iter().enumerate() {
        progress(plan, Stage::Rlimits, i as u32);
        if let Err(e) = sys::prlimit(*res, lim) {
            fail(efd, Stage::Rlimits, e, i as u32);
        }
    }
    progress(plan, Stage::NoNewPrivs, 0);
    if let Err(e) = sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) {
        fail(efd, Stage::NoNewPrivs, e, 0);
    }
    // The bounding set came empty from init.
    progress(plan, Stage::DropCapabilities, 1);
    match sys::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) {
        Ok(_) | Err(Errno(libc::EINVAL)) => {}
        Err(e) => fail(efd, Stage::DropCapabilities, e, 0),
    }
    progress(plan, Stage::SetGroups, 0);
    let groups = [job.gid];
    let set_groups = if job.set_groups {
        sys::setgroups(&groups)
    } else {
        Ok(())
    };
    if let Err(e) = set_groups.and_then(|_| sys::setresgid(job.gid)) {
        fail(efd, Stage::SetGroups, e, 0);
    }
    progress(plan, Stage::SetUser, 0);
    if let Err(e) = sys::setresuid(job.uid) {
        fail(efd, Stage::SetUser, e, 0);
    }
    if let Err(e) = sys::capset_empty() {
        fail(efd, Stage::DropCapabilities, e, 0);
    }
    progress(plan, Stage::Chdir, 0);
    if let Err(e) = sys::chdir(job.cwd) {
        fail(efd, Stage::Chdir, e, 0);
    }
    #[cfg(feature = "landlock")]
    if let Some(ruleset) = &job.landlock {
        progress(plan, Stage::Landlock, 0);
        if let Err((step, e)) = apply_landlock(ruleset) {
            fail(efd, Stage::Landlock, e, step);
        }
    }
    // Ignored signals stay ignored across execve (Rust hosts ignore SIGPIPE):
    // reset them. Handled ones were reset by the clone (CLONE_CLEAR_SIGHAND),
    // or are reset here too where the kernel lacks it.
    // SAFETY: the status page is mapped for init's life, which this shares.
    let ignored = unsafe { StatusPage::ignored_signals(plan.status) };
    let mut sig: c_int = 1;
    while sig <= 64 {
        let bit = 1u64 << (sig - 1);
        if (ignored & bit != 0 || !job.handlers_cleared)
            && sig != libc::SIGKILL
            && sig != libc::SIGSTOP
        {
            let _ = sys::signal_default(sig);
        }
        sig += 1;
    }
    let _ = sys::sigprocmask(libc::SIG_SETMASK, 0);
    progress(plan, Stage::CloseOnExec, 0);
    if let Err(e) = mark_cloexec(job.max_fd) {
        fail(efd, Stage::CloseOnExec, e, 0);
    }
    // Last, so that nothing above runs under the filter (it may deny what setup
    // needs); only execve and, on failure, the error report follow. No flags:
    // the job is single-threaded here (no TSYNC), and the kernel's own default
    // for speculation mitigations is kept (no SPEC_ALLOW).
    let mut installed = false;
    progress(plan, Stage::Seccomp, 1);
    if let Some(report) = &job.seccomp_report {
        // Kill mode: denied calls go to init, which names the syscall in the
        // job's verdict. Kernels without user notifications (before 5.0)
        // refuse the flag; the plain kill filter follows then.
        match sys::seccomp_filter(sys::SECCOMP_FILTER_FLAG_NEW_LISTENER, report) {
            Ok(listener) => {
                if let Err(e) = sys::send_fd(plan.report_job, listener) {
                    fail(efd, Stage::Seccomp, e, 1);
                }
                sys::close(listener);
                installed = true;
            }
            Err(Errno(libc::EINVAL)) | Err(Errno(libc::EBUSY)) => {}
            Err(e) => fail(efd, Stage::Seccomp, e, 1),
        }
    }
    if let (false, Some(prog)) = (installed, &job.seccomp) {
        if let Err(e) = sys::seccomp_filter(0, prog) {
            fail(efd, Stage::Seccomp, e, 0);
        }
    }
    progress(plan, Stage::Exec, 0);
    // SAFETY: argv and envp are NULL-terminated arrays of pointers to C
    // strings in the plan's arena, which is mapped here until the execve.
    let e = unsafe { sys::execve(job.program, job.argv.as_ptr(), job.envp.as_ptr()) };
    fail(efd, Stage::Exec, e, 0)
}

/// Restricts the job with its Landlock ruleset; on failure, the index of the
/// rule that failed (or the rule count, for the ruleset itself).
#[cfg(feature = "landlock")]
fn apply_landlock(ruleset: &PlacedLandlock<'_>) -> Result<(), (u32, Errno)> {
    let n = ruleset.rules.len() as u32;
    let fd = sys::landlock_create_ruleset(ruleset.handled).map_err(|e| (n, e))?;
    for (i, (path, rights)) in ruleset.rules.iter().enumerate() {
        let step = i as u32;
        let target = sys::open(path, libc::O_PATH | libc::O_CLOEXEC, 0).map_err(|e| (step, e))?;
        let is_dir = sys::is_dir(target).unwrap_or(true);
        let rights = if is_dir {
            *rights
        } else {
            *rights & crate::landlock::FILE_RIGHTS
        };
        let r = sys::landlock_add_path_rule(fd, rights & ruleset.handled, target);
        sys::close(target);
        r.map_err(|e| (step, e))?;
    }
    let r = sys::landlock_restrict_self(fd);
    sys::close(fd);
    r.map_err(|e| (n, e))
}

/// Puts `src` on descriptors 0, 1, 2, without close-on-exec.
fn connect_stdio(mut src: [c_int; 3]) -> sys::SysResult {
    // A source that sits on another slot's number would be clobbered by the dup: move it up first.
    for (i, fd) in src.iter_mut().enumerate() {
        if *fd < 3 && *fd != i as c_int {
            *fd = sys::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3)? as c_int;
        }
    }
    for (i, fd) in src.iter().enumerate() {
        let target = i as c_int;
        if *fd == target {
            sys::fcntl(target, libc::F_SETFD, 0)?;
        } else {
            sys::dup3(*fd, target, 0)?;
        }
    }
    Ok(())
}

/// Marks every descriptor above 2 close-on-exec.
fn mark_cloexec(max_fd: c_int) -> sys::SysResult {
    match sys::close_range(3, u32::MAX, CLOSE_RANGE_CLOEXEC) {
        Ok(()) => Ok(()),
        Err(Errno(libc::ENOSYS)) | Err(Errno(libc::EINVAL)) => {
            let mut fd = 3;
            while fd < max_fd {
                let _ = sys::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC as c_long);
                fd += 1;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}
