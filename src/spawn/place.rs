//! Placing a blueprint in an arena: the plan as the cell's init reads it.

use std::ffi::CString;

use libc::c_int;

use crate::spawn::arena::Arena;
use crate::spawn::child::{ChildPlan, JobPlan};
use crate::spawn::plan::Blueprint;

/// Stack for the job between its clone and execve: it only runs `job_main`.
pub(crate) const JOB_STACK_BYTES: usize = 64 * 1024;

/// The descriptors and host facts a plan needs besides the blueprint.
pub(crate) struct Wiring<'k> {
    /// Descriptors init keeps (sorted, unique).
    pub keep: &'k [c_int],
    /// Of those, the cgroup `tasks` files init joins through.
    pub join_cgroups: &'k [c_int],
    pub stdio: [c_int; 3],
    pub sync_read: c_int,
    pub error_write: c_int,
    pub report_job: c_int,
    pub report_init: c_int,
    pub lifeline_read: c_int,
    /// Where init sends its mount namespace when the job has ended (-1: nowhere).
    pub graveyard: c_int,
    /// The cell brings loopback up itself (no ready-made network namespace).
    pub loopback: bool,
    pub cap_last: c_int,
    pub max_fd: c_int,
    pub handlers_cleared: bool,
}

/// An upper bound of the arena bytes [`place`] takes for `bp` and `keep`.
pub(crate) fn footprint(bp: &Blueprint, keep: usize) -> usize {
    let strings = |v: &[CString]| -> usize {
        v.iter()
            .map(|s| Arena::footprint_of::<u8>(s.as_bytes_with_nul().len()))
            .sum::<usize>()
            + Arena::footprint_of::<*const libc::c_char>(v.len() + 1)
    };
    let filter = |f: &Option<Vec<libc::sock_filter>>| {
        f.as_ref()
            .map_or(0, |p| Arena::footprint_of::<libc::sock_filter>(p.len()))
    };
    let c = |s: &CString| Arena::footprint_of::<u8>(s.as_bytes_with_nul().len());
    #[cfg(feature = "landlock")]
    let landlock = bp.landlock.as_ref().map_or(0, |l| {
        Arena::footprint_of::<(&std::ffi::CStr, u64)>(l.rules.len())
            + l.rules.iter().map(|(p, _)| c(p)).sum::<usize>()
    });
    #[cfg(not(feature = "landlock"))]
    let landlock = 0;
    Arena::footprint_of::<ChildPlan<'_>>(1)
        + 2 * Arena::footprint_of::<c_int>(keep)
        + Arena::footprint_of::<u8>(bp.hostname.len())
        + Arena::footprint_of::<crate::spawn::child::PlacedOp<'_>>(bp.ops.len())
        + bp.ops.iter().map(|op| op.footprint()).sum::<usize>()
        + c(&bp.staging)
        + c(&bp.cwd)
        + c(&bp.program)
        + strings(&bp.argv)
        + strings(&bp.envp)
        + Arena::footprint_of::<(c_int, libc::rlimit64)>(bp.rlimits.len())
        + filter(&bp.seccomp)
        + filter(&bp.seccomp_report)
        + filter(&bp.init_seccomp)
        + landlock
        + Arena::footprint_of::<u128>(JOB_STACK_BYTES / 16)
}

/// The plan in `arena`, or `None` if it does not fit (a footprint bug).
pub(crate) fn place<'a>(
    arena: &'a Arena,
    bp: &Blueprint,
    w: &Wiring<'_>,
) -> Option<&'a ChildPlan<'a>> {
    let strings = |v: &[CString]| -> Option<&'a [*const libc::c_char]> {
        let placed = arena.collect(v.iter().map(|s| arena.cstr(s)))?;
        arena.collect(
            placed
                .iter()
                .map(|s| Some(s.as_ptr()))
                .chain(std::iter::once(Some(std::ptr::null())))
                .collect::<Vec<_>>()
                .into_iter(),
        )
    };
    let filter = |f: &Option<Vec<libc::sock_filter>>| match f {
        Some(p) => arena.slice(p).map(Some),
        None => Some(None),
    };
    #[cfg(feature = "landlock")]
    let landlock = match &bp.landlock {
        Some(l) => Some(crate::spawn::child::PlacedLandlock {
            handled: l.handled,
            rules: arena.collect(
                l.rules
                    .iter()
                    .map(|(p, rights)| arena.cstr(p).map(|p| (p, *rights))),
            )?,
        }),
        None => None,
    };
    let stack = arena.reserve(JOB_STACK_BYTES)?;
    let plan = ChildPlan {
        keep: arena.slice(w.keep)?,
        join_cgroups: arena.slice(w.join_cgroups)?,
        sync_read: w.sync_read,
        error_write: w.error_write,
        report_job: w.report_job,
        report_init: w.report_init,
        lifeline_read: w.lifeline_read,
        graveyard: w.graveyard,
        become_root: bp.ids.become_root,
        ns_owner: crate::spawn::idmap::ns_owner(&bp.ids),
        hostname: arena.slice(&bp.hostname)?,
        ops: arena.collect(bp.ops.iter().map(|op| op.place(arena)))?,
        staging: arena.cstr(&bp.staging)?,
        loopback: w.loopback,
        init_seccomp: filter(&bp.init_seccomp)?,
        job: JobPlan {
            uid: bp.ids.uid,
            gid: bp.ids.gid,
            set_groups: !bp.ids.deny_setgroups,
            stdio: w.stdio,
            cwd: arena.cstr(&bp.cwd)?,
            program: arena.cstr(&bp.program)?,
            argv: strings(&bp.argv)?,
            envp: strings(&bp.envp)?,
            cap_last: w.cap_last,
            rlimits: arena.slice(&bp.rlimits)?,
            max_fd: w.max_fd,
            stack,
            stack_len: JOB_STACK_BYTES,
            handlers_cleared: w.handlers_cleared,
            seccomp: filter(&bp.seccomp)?,
            seccomp_report: filter(&bp.seccomp_report)?,
            #[cfg(feature = "landlock")]
            landlock,
        },
        status: arena.status(),
    };
    arena.value(plan)
}
