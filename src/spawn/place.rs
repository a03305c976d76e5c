//! Placing a blueprint in an arena: the plan as the cell's init reads it.

use std::ffi::CString;

use libc::c_int;

use crate::spawn::arena::Arena;
use crate::spawn::cell::{ChildPlan, JobPlan, Op, PlacedOp};
use crate::spawn::plan::Blueprint;

impl Op {
    /// Copies the op's strings and bytes into `arena`.
    pub(crate) fn place<'a>(&self, arena: &'a Arena) -> Option<PlacedOp<'a>> {
        let c = |s: &CString| arena.cstr(s);
        Some(match self {
            Op::Mkdir { path } => Op::Mkdir { path: c(path)? },
            Op::Touch { path } => Op::Touch { path: c(path)? },
            Op::Mount {
                fstype,
                target,
                flags,
                data,
            } => Op::Mount {
                fstype,
                target: c(target)?,
                flags: *flags,
                data: match data {
                    Some(d) => Some(c(d)?),
                    None => None,
                },
            },
            Op::Attach { fd, target } => Op::Attach {
                fd: *fd,
                target: c(target)?,
            },
            Op::Bind { source, target } => Op::Bind {
                source: c(source)?,
                target: c(target)?,
            },
            Op::SetAttr {
                target,
                set,
                recursive,
                fallback,
            } => Op::SetAttr {
                target: c(target)?,
                set: *set,
                recursive: *recursive,
                fallback: *fallback,
            },
            Op::Sysctl { path, value, ipc } => Op::Sysctl {
                path: c(path)?,
                value,
                ipc: *ipc,
            },
            Op::Symlink { value, link } => Op::Symlink {
                value: c(value)?,
                link: c(link)?,
            },
            Op::WriteFile { path, data, mode } => Op::WriteFile {
                path: c(path)?,
                data: arena.slice(data)?,
                mode: *mode,
            },
        })
    }

    /// An upper bound of the arena bytes `place` takes.
    pub(crate) fn footprint(&self) -> usize {
        let c = |s: &CString| Arena::footprint_of::<u8>(s.as_bytes_with_nul().len());
        match self {
            Op::Mkdir { path } | Op::Touch { path } | Op::Sysctl { path, .. } => c(path),
            Op::Mount { target, data, .. } => c(target) + data.as_ref().map_or(0, c),
            Op::Attach { target, .. } | Op::SetAttr { target, .. } => c(target),
            Op::Bind { source, target } => c(source) + c(target),
            Op::Symlink { value, link } => c(value) + c(link),
            Op::WriteFile { path, data, .. } => c(path) + Arena::footprint_of::<u8>(data.len()),
        }
    }
}

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
    /// The stage at which a test stalls the cell (0: none).
    pub stall: u32,
    /// A cell made ahead: it waits for its command in a slot of the arena.
    pub ahead: bool,
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
        + Arena::footprint_of::<crate::spawn::cell::PlacedOp<'_>>(bp.ops.len())
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
        + Arena::footprint_of::<crate::spawn::cell::CommandSlot>(1)
}

/// An upper bound of the arena bytes [`place_command`] takes for `job`.
pub(crate) fn command_footprint(job: &crate::spawn::plan::JobCommand) -> usize {
    let strings = |v: &[CString]| -> usize {
        v.iter()
            .map(|s| Arena::footprint_of::<u8>(s.as_bytes_with_nul().len()))
            .sum::<usize>()
            + Arena::footprint_of::<*const libc::c_char>(v.len() + 1)
    };
    Arena::footprint_of::<u8>(job.program.as_bytes_with_nul().len())
        + strings(&job.argv)
        + strings(&job.envp)
}

/// Places `job` in the room left in `arena` (a cell made ahead's) and
/// returns the slot that points at it; `None` if it does not fit.
pub(crate) fn place_command(
    arena: &Arena,
    job: &crate::spawn::plan::JobCommand,
) -> Option<crate::spawn::cell::CommandSlot> {
    let strings = |v: &[CString]| -> Option<*const *const libc::c_char> {
        let mut pointers = Vec::with_capacity(v.len() + 1);
        for s in v {
            pointers.push(arena.cstr(s)?.as_ptr());
        }
        pointers.push(std::ptr::null());
        arena.slice(&pointers).map(|p| p.as_ptr())
    };
    Some(crate::spawn::cell::CommandSlot {
        program: arena.cstr(&job.program)?.as_ptr(),
        argv: strings(&job.argv)?,
        argc: job.argv.len(),
        envp: strings(&job.envp)?,
        envc: job.envp.len(),
    })
}

/// The plan in `arena`, or `None` if it does not fit (a footprint bug).
pub(crate) fn place<'a>(
    arena: &'a Arena,
    bp: &Blueprint,
    w: &Wiring<'_>,
) -> Option<&'a ChildPlan<'a>> {
    // The strings, then their NULL-terminated pointer array: nothing else
    // (`footprint` counts exactly these).
    let strings = |v: &[CString]| -> Option<&'a [*const libc::c_char]> {
        let mut pointers = Vec::with_capacity(v.len() + 1);
        for s in v {
            pointers.push(arena.cstr(s)?.as_ptr());
        }
        pointers.push(std::ptr::null());
        arena.slice(&pointers)
    };
    let filter = |f: &Option<Vec<libc::sock_filter>>| match f {
        Some(p) => arena.slice(p).map(Some),
        None => Some(None),
    };
    #[cfg(feature = "landlock")]
    let landlock = match &bp.landlock {
        Some(l) => Some(crate::spawn::cell::PlacedLandlock {
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
        stall: w.stall,
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
        ahead: match w.ahead {
            true => arena.value_mut(crate::spawn::cell::CommandSlot::EMPTY)?,
            false => std::ptr::null_mut(),
        },
    };
    arena.value(plan)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::sandbox::{Command, Limits, Rlimit, Sandbox};
    use crate::spawn::{plan, Deadline};
    use crate::Error;

    /// One thing wrong with an otherwise good spawn (or nothing).
    #[derive(Clone, Debug)]
    enum Defect {
        None,
        LargeArgument(usize),
        NulArgument,
        LargeVariable(usize),
        BadName(String),
        BadTarget(String),
        MissingSource,
        BadLimits(Limits),
        BadRlimit(Rlimit, u64, u64),
        MissingCwd(String),
    }

    fn defect() -> impl Strategy<Value = Defect> {
        let bad_path = prop_oneof![
            Just("relative/x".to_string()),
            Just("/a/../b".to_string()),
            Just("/a/./b".to_string()),
            Just("/".to_string()),
            Just(String::new()),
            Just("/x\0y".to_string()),
        ];
        let bad_limits = prop_oneof![
            Just(Limits {
                memory: Some(0),
                ..Default::default()
            }),
            Just(Limits {
                memory: Some(u64::MAX),
                ..Default::default()
            }),
            Just(Limits {
                pids: Some(0),
                ..Default::default()
            }),
            Just(Limits {
                cpu_percent: Some(0),
                ..Default::default()
            }),
            Just(Limits {
                wall_time: Some(Duration::ZERO),
                ..Default::default()
            }),
            Just(Limits {
                memory_swap: Some(1),
                ..Default::default()
            }),
        ];
        prop_oneof![
            12 => Just(Defect::None),
            1 => (100_000usize..140_000).prop_map(Defect::LargeArgument),
            1 => Just(Defect::NulArgument),
            1 => (100_000usize..140_000).prop_map(Defect::LargeVariable),
            1 => "[A-Z=]{0,3}".prop_filter("a bad name", |k| k.is_empty() || k.contains('='))
                .prop_map(Defect::BadName),
            1 => bad_path.clone().prop_map(Defect::BadTarget),
            1 => Just(Defect::MissingSource),
            1 => bad_limits.prop_map(Defect::BadLimits),
            1 => (0u64..100, 100u64..1000).prop_map(|(h, s)| Defect::BadRlimit(Rlimit::FileSize, s, h)),
            1 => Just(Defect::BadRlimit(Rlimit::OpenFiles, 1 << 40, 1 << 40)),
            1 => "(/[a-z]{1,6}){1,3}".prop_map(Defect::MissingCwd),
        ]
    }

    /// Limits that are fine.
    fn limits() -> impl Strategy<Value = Limits> {
        (
            prop::option::of((1u64 << 20)..(4 << 30)),
            prop::option::of(1u64..100_000),
            prop::option::of(1u32..2000),
            prop::option::of(1u64..3000),
        )
            .prop_map(|(memory, pids, cpu_percent, wall_ms)| Limits {
                memory,
                pids,
                cpu_percent,
                wall_time: wall_ms.map(Duration::from_millis),
                ..Default::default()
            })
    }

    #[test]
    fn a_command_placed_for_a_cell_made_ahead_reads_back_through_its_slot() {
        let c = |s: &str| CString::new(s).unwrap();
        let job = crate::spawn::plan::JobCommand {
            program: c("/usr/bin/env"),
            argv: vec![c("env"), c("-0"), c("")],
            envp: vec![c("A=1"), c("B=two")],
        };
        let arena = Arena::new(command_footprint(&job)).unwrap();
        let before = arena.room();
        let slot = place_command(&arena, &job).expect("the footprint is enough");
        assert!(before - arena.room() <= command_footprint(&job));
        let read = |p: *const *const libc::c_char, n: usize| -> Vec<String> {
            // SAFETY: n + 1 pointers placed above, the last NULL, to C strings.
            let ptrs = unsafe { std::slice::from_raw_parts(p, n + 1) };
            assert!(ptrs[n].is_null());
            ptrs[..n]
                .iter()
                // SAFETY: each points at a C string placed above.
                .map(|&s| {
                    unsafe { std::ffi::CStr::from_ptr(s) }
                        .to_string_lossy()
                        .into()
                })
                .collect()
        };
        // SAFETY: a C string placed above.
        let program = unsafe { std::ffi::CStr::from_ptr(slot.program) };
        assert_eq!(program, c"/usr/bin/env");
        assert_eq!(read(slot.argv, slot.argc), ["env", "-0", ""]);
        assert_eq!(read(slot.envp, slot.envc), ["A=1", "B=two"]);
        // No room: refused, not overflowed.
        let small = Arena::new(0).unwrap();
        let mut big = job;
        big.argv.push(CString::new(vec![b'x'; 8192]).unwrap());
        assert!(place_command(&small, &big).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// A plan either builds, and then fits the arena its footprint asks
        /// for, or is refused with a typed input error: it never panics,
        /// and leaves nothing the plan could have checked (the arena,
        /// execve's size limits, bad paths or limits) to fail in the cell.
        #[test]
        fn plans_build_and_place_or_are_refused(
            args in prop::collection::vec("[ -~]{0,24}", 0..400),
            env in prop::collection::vec(("[A-Z_]{1,6}", "[ -~]{0,24}"), 0..300),
            binds in prop::collection::vec(("[a-z]{1,6}", any::<bool>()), 0..3),
            dirs in prop::collection::vec("(/[a-z]{1,6}){1,3}", 0..2),
            limits in limits(),
            files in prop::option::of((1u64..1024, 1u64..1024)),
            defect in defect(),
        ) {
            let host = tempfile::tempdir().unwrap();
            let mut sb = Sandbox::new();
            for (i, (name, rw)) in binds.iter().enumerate() {
                let target = format!("/b{i}/{name}");
                match rw {
                    true => sb.bind_rw(host.path(), target),
                    false => sb.bind_ro(host.path(), target),
                };
            }
            for d in &dirs {
                sb.dir(d);
            }
            if let Some((a, b)) = files {
                sb.rlimit(Rlimit::OpenFiles, a.min(b), a.max(b));
            }
            sb.limits(limits);
            let mut cmd = Command::new("true");
            cmd.args(&args);
            for (k, v) in &env {
                cmd.env(k, v);
            }
            let bad = !matches!(defect, Defect::None);
            match defect.clone() {
                Defect::None => {}
                Defect::LargeArgument(n) => drop(cmd.arg("x".repeat(n))),
                Defect::NulArgument => drop(cmd.arg("a\0b")),
                Defect::LargeVariable(n) => drop(cmd.env("LARGE", "x".repeat(n))),
                Defect::BadName(k) => drop(cmd.env(k, "v")),
                Defect::BadTarget(t) => drop(sb.bind_ro(host.path(), t)),
                Defect::MissingSource => drop(sb.bind_ro(host.path().join("missing"), "/m")),
                Defect::BadLimits(l) => drop(sb.limits(l)),
                Defect::BadRlimit(r, soft, hard) => drop(sb.rlimit(r, soft, hard)),
                Defect::MissingCwd(d) => drop(sb.current_dir(d)),
            }
            let deadline = Deadline::after(Duration::from_secs(5));
            match plan::build(&sb, &cmd, &deadline, crate::spawn::prep::Demand::Warm) {
                Ok(bp) => {
                    // Large strings may fit (under the job's stack limit): fine.
                    prop_assert!(
                        !bad || matches!(defect, Defect::LargeArgument(_) | Defect::LargeVariable(_)),
                        "{defect:?} was not refused"
                    );
                    let keep = [3, 4, 5];
                    let w = Wiring {
                        keep: &keep,
                        join_cgroups: &[],
                        stdio: [0, 1, 2],
                        sync_read: 3,
                        error_write: 4,
                        report_job: -1,
                        report_init: -1,
                        lifeline_read: 5,
                        graveyard: -1,
                        loopback: true,
                        cap_last: 40,
                        max_fd: 1024,
                        handlers_cleared: true,
                        stall: 0,
                        ahead: false,
                    };
                    let arena = Arena::new(footprint(&bp, keep.len())).unwrap();
                    let placed = place(&arena, &bp, &w);
                    prop_assert!(placed.is_some(), "the footprint is short");
                    let p = placed.unwrap();
                    prop_assert_eq!(p.job.argv.len(), bp.argv.len() + 1);
                    prop_assert!(p.job.argv.last().unwrap().is_null());
                    prop_assert_eq!(p.job.envp.len(), bp.envp.len() + 1);
                }
                Err(e) => {
                    prop_assert!(bad, "a good spawn refused: {e}");
                    prop_assert!(
                        !matches!(e, Error::Setup { .. } | Error::SetupDied { .. } | Error::SetupTimeout { .. }),
                        "{e}"
                    );
                }
            }
        }
    }
}
