//! The cell's side of a spawn: init (PID 1 of the cell) and the job it forks.
//!
//! Everything here runs between `clone3` and `execve`, in a copy of a host
//! process that may have had many threads, one of them perhaps holding the
//! allocator's lock. So: raw syscalls only (see `sys`), on data the parent
//! prepared in a [`ChildPlan`]; no allocation, no locks, no formatting, no
//! panics (no unchecked indexing, no overflowing arithmetic). Failures are
//! written to the error pipe as `(stage, errno, step)` and end the process.

mod init;
mod job;
pub(crate) mod messages;
mod newroot;
pub(crate) mod spawner;

use std::ffi::{CStr, CString};
use std::sync::Arc;

use libc::c_int;

use crate::error::{Errno, Stage};
use crate::spawn::status::StatusPage;
use crate::sys;
pub(crate) use init::{close_inherited, init_main, loopback_up};

/// One step of building the cell's root, prepared by the planner.
///
/// The planner builds owned ops (`Op`, the default parameters); the cell reads
/// them placed in the plan's arena (`PlacedOp`), where every string and byte
/// slice is a reference into the same shared mapping.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op<S = CString, B = Arc<[u8]>> {
    /// `mkdir(path, 0755)`; an existing entry is fine.
    Mkdir { path: S },
    /// Creates an empty file to mount a file onto; an existing entry is fine.
    Touch { path: S },
    /// Mounts a file system without a source device (tmpfs, proc, devpts).
    Mount {
        fstype: &'static CStr,
        target: S,
        flags: u64,
        data: Option<S>,
    },
    /// Attaches a detached mount tree the host prepared with `open_tree`.
    Attach { fd: c_int, target: S },
    /// Path-based bind mount (kernels without `open_tree`).
    Bind { source: S, target: S },
    /// Sets mount attributes (`mount_setattr`); kernels before 5.12 get a
    /// `MS_REMOUNT | MS_BIND | fallback` instead.
    SetAttr {
        target: S,
        set: u64,
        recursive: bool,
        fallback: u64,
    },
    /// Writes `value` to an existing file (a sysctl of the cell's own
    /// namespaces); best effort: a failure is ignored. `ipc`: a sysctl of
    /// the IPC namespace, already set when the spawner made it.
    Sysctl {
        path: S,
        value: &'static [u8],
        ipc: bool,
    },
    /// `symlink(value, link)`.
    Symlink { value: S, link: S },
    /// Creates `path` with `data` and `mode`.
    WriteFile { path: S, data: B, mode: u32 },
}

/// An op as the cell reads it: placed in the plan's arena.
pub(crate) type PlacedOp<'a> = Op<&'a CStr, &'a [u8]>;

/// A Landlock ruleset as the job reads it.
#[cfg(feature = "landlock")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlacedLandlock<'a> {
    pub handled: u64,
    pub rules: &'a [(&'a CStr, u64)],
}

/// What the job (the grandchild) needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobPlan<'a> {
    pub uid: u32,
    pub gid: u32,
    /// Call `setgroups([gid])` (needs a range mapping; unprivileged maps deny it).
    pub set_groups: bool,
    /// Descriptors that become the job's 0, 1, 2.
    pub stdio: [c_int; 3],
    pub cwd: &'a CStr,
    pub program: &'a CStr,
    /// NULL-terminated arrays of pointers to strings in the arena.
    pub argv: &'a [*const libc::c_char],
    pub envp: &'a [*const libc::c_char],
    /// Highest capability number of the running kernel.
    pub cap_last: c_int,
    /// `(resource, limit)` pairs applied before the id switch.
    pub rlimits: &'a [(c_int, libc::rlimit64)],
    /// Upper bound of descriptor numbers, for the close-on-exec fallback loop.
    pub max_fd: c_int,
    /// The stack the job runs on until it execs (see `spawn_job`): its
    /// lowest address and size, in the arena.
    pub stack: *mut u8,
    pub stack_len: usize,
    /// Whether clones are known to reset handled signals
    /// (CLONE_CLEAR_SIGHAND); if not, the job resets every signal.
    pub handlers_cleared: bool,
    /// The seccomp program, compiled by the host; installed just before `execve`.
    pub seccomp: Option<&'a [libc::sock_filter]>,
    /// In kill mode, the variant that reports denied calls to init.
    pub seccomp_report: Option<&'a [libc::sock_filter]>,
    /// A Landlock ruleset, applied after chdir.
    #[cfg(feature = "landlock")]
    pub landlock: Option<PlacedLandlock<'a>>,
}

/// Everything the cell's init needs, placed by the parent in the plan's
/// arena before the clone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildPlan<'a> {
    /// Descriptors init keeps; everything else inherited is closed first. Sorted, unique.
    pub keep: &'a [c_int],
    /// `tasks` files (cgroup v1, opened by the host) init writes "0" to,
    /// moving itself into the job's cgroups before anything else.
    pub join_cgroups: &'a [c_int],
    pub sync_read: c_int,
    pub error_write: c_int,
    /// The socket pair through which the job hands init its seccomp listener (-1: none).
    pub report_job: c_int,
    pub report_init: c_int,
    pub lifeline_read: c_int,
    /// Where init leaves its mount namespace when the job has ended (see graveyard.rs).
    pub graveyard: c_int,
    pub become_root: bool,
    /// The host uid the cell's user namespace is created by (0: the cloning
    /// thread's own); see `idmap::ns_owner`. Read by whoever clones.
    pub ns_owner: u32,
    pub hostname: &'a [u8],
    pub ops: &'a [PlacedOp<'a>],
    /// Where the new root is built before `pivot_root`.
    pub staging: &'a CStr,
    pub loopback: bool,
    /// The default seccomp filter: init installs it just before starting the job.
    pub init_seccomp: Option<&'a [libc::sock_filter]>,
    /// A test's injected stall: the stage (`Stage as u32`) at which setup
    /// hangs until the host kills the cell; 0 for none.
    pub stall: u32,
    pub job: JobPlan<'a>,
    pub status: *mut StatusPage,
    /// A cell made ahead (see `spawn/ahead.rs`): where the host writes the
    /// job's command before it says "go". Null for a cell made for its
    /// command, whose `job` holds it already.
    pub ahead: *mut CommandSlot,
}

/// The command of a cell made ahead, written by the host into the plan's
/// arena (pointers to strings there, as the plan's own) before it sends
/// "go" with the job's three standard descriptors. Read once, after "go".
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub(crate) struct CommandSlot {
    pub program: *const libc::c_char,
    /// `argc + 1` pointers, the last NULL; `envp` likewise.
    pub argv: *const *const libc::c_char,
    pub argc: usize,
    pub envp: *const *const libc::c_char,
    pub envc: usize,
}

impl CommandSlot {
    pub(crate) const EMPTY: CommandSlot = CommandSlot {
        program: std::ptr::null(),
        argv: std::ptr::null(),
        argc: 0,
        envp: std::ptr::null(),
        envc: 0,
    };
}

/// The step of `Stage::WaitForHost` at which a cell made ahead waits for
/// its command; the record `(WaitForHost, 0, READY)` on the error pipe
/// tells the host the cell has got there (a failure never has errno 0).
pub(crate) const READY: u32 = 1;

/// The record the cell writes to the error pipe: stage, errno, index of the failed step.
pub(crate) const RECORD_LEN: usize = 12;

pub(crate) fn encode_record(stage: Stage, errno: Errno, step: u32) -> [u8; RECORD_LEN] {
    let mut rec = [0u8; RECORD_LEN];
    let (a, rest) = rec.split_at_mut(4);
    let (b, c) = rest.split_at_mut(4);
    a.copy_from_slice(&(stage as u32).to_ne_bytes());
    b.copy_from_slice(&errno.0.to_ne_bytes());
    c.copy_from_slice(&step.to_ne_bytes());
    rec
}

pub(crate) fn decode_record(rec: &[u8; RECORD_LEN]) -> (u32, i32, u32) {
    let word = |i: usize| [rec[i], rec[i + 1], rec[i + 2], rec[i + 3]];
    (
        u32::from_ne_bytes(word(0)),
        i32::from_ne_bytes(word(4)),
        u32::from_ne_bytes(word(8)),
    )
}

/// Records that setup has reached step `step` of `stage` (in the status
/// page, where the host reads it when setup takes too long), and stalls
/// there if a test asked for that stage.
fn progress(plan: &ChildPlan<'_>, stage: Stage, step: u32) {
    // SAFETY: plan.status is the shared status page mapped by the parent.
    unsafe { StatusPage::set_progress(plan.status, stage as u32, step) };
    if plan.stall == stage as u32 {
        loop {
            // Every signal is blocked here: only SIGKILL (the host's) ends this.
            // SAFETY: pause has no arguments.
            unsafe { libc::syscall(libc::SYS_pause) };
        }
    }
}

/// Reports a failure to the host and ends this process.
fn fail(fd: c_int, stage: Stage, errno: Errno, step: u32) -> ! {
    let _ = sys::write_all(fd, &encode_record(stage, errno, step));
    sys::exit(127)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_roundtrip() {
        let r = encode_record(Stage::Exec, Errno(2), 7);
        assert_eq!(decode_record(&r), (Stage::Exec as u32, 2, 7));
    }
}
