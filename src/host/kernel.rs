//! The kernel: its version and the system calls jobcell relies on.

use super::userns::own_seccomp_mode;
use super::Check;
use crate::error::Errno;

/// `uname -r`.
pub(crate) fn release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// `(major, minor)` of a release string such as `6.18.44-fc-v595`.
pub(crate) fn version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// A raw system call with integer arguments; `Ok(return value)` or the errno.
fn raw(nr: libc::c_long, a: usize, b: usize, c: usize) -> Result<libc::c_long, Errno> {
    // SAFETY: callers pass only integers and NULL pointers, or pointers to
    // live locals, as the call expects.
    let r = unsafe { libc::syscall(nr, a, b, c) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

pub(crate) fn checks() -> Vec<Check> {
    let rel = release();
    let machine = rustix::system::uname()
        .machine()
        .to_string_lossy()
        .into_owned();
    let seccomp_mode = own_seccomp_mode();
    let filtered = seccomp_mode == Some(2);
    let mut out = vec![version_check(&rel, &machine)];
    out.push(seccomp_check(seccomp_mode));
    out.push(landlock_check());
    out.push(pidfd_check());
    out.push(clone3_check(&rel, filtered));
    out.push(spawner_check());
    out.extend(ahead_checks());
    out
}

/// Whether cells come from the small spawner process (see spawn/spawner.rs)
/// or from this process, whose every page a clone then copies the tables of.
fn spawner_check() -> Check {
    use crate::spawn::spawner::Status as S;
    const NAME: &str = "spawner";
    const FROM_HOST: &str = "cells are cloned from this process meanwhile: every spawn copies its \
        page tables (tens of milliseconds per GiB of memory), and their init holds a copy of \
        its memory (out of the job's reach)";
    match crate::spawn::spawner_status() {
        S::Running(pid) => Check::ok(
            NAME,
            format!("cells are cloned from a small spawner process (pid {pid}): spawn cost does not grow with this program's memory"),
        ),
        S::NotYet => Check::ok(NAME, "not started yet: the first spawn starts it"),
        S::Failed(why) => Check::warning(
            NAME,
            format!("down: {why}; {FROM_HOST}"),
            "a moment's shortage (EMFILE, ENOMEM) heals by itself; if it lasts, find what kills \
             the spawner (`jobcell-spawner`, a child of this program: a seccomp filter, the OOM \
             killer) or what it lacks",
        ),
        S::Unusable(why) => Check::warning(
            NAME,
            format!("{why}; {FROM_HOST}"),
            "link with -C link-arg=-Wl,-z,now (the Rust default on Linux)",
        ),
    }
}

/// The other work done ahead of spawns (see spawn/prep.rs): whether it
/// works, or failed lately and when it is tried again.
fn ahead_checks() -> Vec<Check> {
    const FIX: &str = "a moment's shortage (EMFILE, ENOMEM) heals by itself, and is retried \
        within half a second; if it lasts, raise the process's descriptor limit or find what \
        the error names";
    let st = crate::spawn::prep::status();
    let thread = match st.thread {
        Some(Err(why)) => Some(Check::warning(
            "preparation thread",
            format!("{why}: spawns do its work themselves (slower)"),
            FIX,
        )),
        _ => None,
    };
    let netns = Check {
        name: "network namespace pool".into(),
        ..match st.netns {
            None if st.netns_given_back => Check::ok(
                "",
                "none ready: given back after 5 s without a spawn (refilled when the process \
                 spawns again)",
            ),
            None => Check::ok("", "not used yet (root hosts keep fresh ones ready)"),
            Some(Ok(n)) => Check::ok("", format!("{n} fresh network namespaces ready")),
            Some(Err(why)) => Check::warning(
                "",
                format!("refilling failed: {why}; cells make their own meanwhile (slower)"),
                FIX,
            ),
        }
    };
    let skeletons = Check {
        name: "root skeletons".into(),
        ..match st.skeletons {
            None => Check::ok(
                "",
                "not used yet (root hosts build each root's static part once)",
            ),
            Some(Ok(n)) => Check::ok("", format!("{n} built")),
            Some(Err(why)) => Check::warning(
                "",
                format!("{why}; cells build their roots themselves meanwhile (slower)"),
                FIX,
            ),
        }
    };
    thread.into_iter().chain([netns, skeletons]).collect()
}

fn version_check(rel: &str, machine: &str) -> Check {
    const NAME: &str = "kernel version";
    let arch_ok = matches!(machine, "x86_64" | "aarch64");
    match version(rel) {
        Some(v) if v >= (5, 12) && arch_ok => Check::ok(NAME, format!("{rel} ({machine})")),
        Some(v) if v < (5, 3) => Check::problem(
            NAME,
            format!("{rel} ({machine}) is older than 5.3: no pidfds, which jobcell supervises jobs with"),
            "upgrade to Linux 5.12 or newer",
        ),
        Some(_) if arch_ok => Check::warning(
            NAME,
            format!(
                "{rel} ({machine}) is older than 5.12: binds fall back to path-based mounts and \
                 jobs join cgroups after the clone"
            ),
            "upgrade to Linux 5.12 or newer for every feature",
        ),
        _ => Check::warning(
            NAME,
            format!("{rel} ({machine}): jobcell is built and tested on x86_64 and aarch64"),
            "use an x86_64 or aarch64 machine with Linux 5.12 or newer",
        ),
    }
}

fn seccomp_check(mode: Option<u32>) -> Check {
    const NAME: &str = "seccomp";
    const SECCOMP_GET_ACTION_AVAIL: usize = 2;
    let action: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    let under = match mode {
        Some(2) => "; this process itself runs under a seccomp filter (a container's?)",
        _ => "",
    };
    match raw(
        libc::SYS_seccomp,
        SECCOMP_GET_ACTION_AVAIL,
        0,
        &action as *const u32 as usize,
    ) {
        Ok(_) if cfg!(feature = "seccomp") => Check::ok(
            NAME,
            format!("filters can be installed; every job gets the default filter{under}"),
        ),
        Ok(_) => Check::warning(
            NAME,
            format!("filters can be installed, but jobcell was built without its `seccomp` feature{under}"),
            "build jobcell with the default features (`seccomp`)",
        ),
        Err(e) if cfg!(feature = "seccomp") => Check::problem(
            NAME,
            format!("seccomp filters are not available ({e}): spawning with the default filter fails"),
            "use a kernel built with CONFIG_SECCOMP_FILTER=y, or run jobs with \
             Sandbox::seccomp(Seccomp::Disabled)",
        ),
        Err(e) => Check::ok(NAME, format!("not available ({e}); not used (feature `seccomp` is off)")),
    }
}

fn landlock_check() -> Check {
    const NAME: &str = "landlock";
    const LANDLOCK_CREATE_RULESET_VERSION: usize = 1;
    match raw(
        libc::SYS_landlock_create_ruleset,
        0,
        0,
        LANDLOCK_CREATE_RULESET_VERSION,
    ) {
        Ok(abi) => Check::ok(
            NAME,
            format!("available, ABI version {abi}: Sandbox::landlock rulesets work"),
        ),
        Err(e) if e.0 == libc::EOPNOTSUPP => Check::warning(
            NAME,
            "built into the kernel but not enabled: a sandbox with a Landlock ruleset fails to \
             spawn (cells without one are unaffected)",
            "add `landlock` to the `lsm=` kernel command line, e.g. \
             lsm=landlock,lockdown,yama,integrity,apparmor,bpf",
        ),
        Err(e) => Check::warning(
            NAME,
            format!(
                "not available ({e}): a sandbox with a Landlock ruleset fails to spawn (cells \
                 without one are unaffected)"
            ),
            "use a kernel built with CONFIG_SECURITY_LANDLOCK=y (Linux 5.13 or newer)",
        ),
    }
}

fn pidfd_check() -> Check {
    const NAME: &str = "pidfd";
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() } as usize;
    match raw(libc::SYS_pidfd_open, me, 0, 0) {
        Ok(fd) => {
            crate::sys::close(fd as i32);
            Check::ok(NAME, "pidfd_open works: jobs are supervised through pidfds")
        }
        Err(e) => Check::problem(
            NAME,
            format!("pidfd_open fails ({e}): jobcell supervises every job through a pidfd"),
            if e.0 == libc::ENOSYS {
                "upgrade to Linux 5.3 or newer (or allow pidfd_open in the container's seccomp profile)"
            } else {
                "allow pidfd_open in the container's seccomp profile"
            },
        ),
    }
}

fn clone3_check(rel: &str, filtered: bool) -> Check {
    const NAME: &str = "clone3";
    // A NULL, zero-sized argument: a kernel that has clone3 answers EINVAL
    // without creating anything.
    match raw(libc::SYS_clone3, 0, 0, 0) {
        Err(e) if e.0 == libc::ENOSYS => {
            let cause = if filtered && version(rel).is_some_and(|v| v >= (5, 3)) {
                "this kernel has clone3, so a seccomp filter (a container's default profile) hides it"
            } else {
                "the kernel is older than 5.3"
            };
            Check::warning(
                NAME,
                format!(
                    "not available ({cause}): cells are created with clone(2), and jobs join their \
                     cgroup after the clone instead of CLONE_INTO_CGROUP"
                ),
                "upgrade to Linux 5.7 or newer, or allow clone3 in the container's seccomp profile",
            )
        }
        _ => Check::ok(
            NAME,
            "available (with CLONE_PIDFD and, on cgroup v2, CLONE_INTO_CGROUP)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Status;

    #[test]
    fn versions() {
        assert_eq!(version("6.18.44-fc-v595"), Some((6, 18)));
        assert_eq!(version("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(version("weird"), None);
        assert_eq!(version_check("4.19.0", "x86_64").status, Status::Problem);
        assert_eq!(version_check("5.10.0", "x86_64").status, Status::Warning);
        assert_eq!(version_check("6.1.0", "x86_64").status, Status::Ok);
        assert_eq!(version_check("6.1.0", "riscv64").status, Status::Warning);
    }

    #[test]
    fn this_kernel_has_what_jobcell_needs() {
        for c in checks() {
            if c.name != "landlock" {
                assert_eq!(c.status, Status::Ok, "{c:?}");
            }
        }
    }
}
