//! The job's seccomp filter: a denylist of the system calls a sandboxed job
//! has no business making, compiled to classic BPF on the host before the
//! clone, installed by the job as its last step before `execve`.
//!
//! Why a denylist and not an allowlist: jobs are arbitrary programs (compilers,
//! interpreters, test suites); an allowlist that fits all of them is either too
//! loose to matter or breaks them with every new libc. The namespaces, the
//! dropped capabilities and the id mapping already confine what a job *can*
//! touch; the filter removes the kernel interfaces that are reachable without
//! capabilities (or through a nested user namespace) and that have a record of
//! privilege escalations, plus the few that would undo the cell's isolation.
//! `docs/security.md` lists every entry and why.
//!
//! The BPF is written by hand (see [`bpf`]) rather than with `seccompiler`:
//! the program is a denylist with four argument checks, the assembler is a
//! page of code with a test interpreter, and it needs per-rule actions
//! (`ENOSYS` for `clone3`, the policy's action for the rest) and an x32 check
//! that `seccompiler`'s one-action-per-filter model does not express.

mod bpf;
mod default;
#[cfg(test)]
mod interp;
#[cfg(test)]
mod live_tests;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use libc::sock_filter;

use crate::error::{Error, Result};
use bpf::{Cond, Rule};
use default::{default_entries, native_abi};

/// Which seccomp filter a job runs under.
///
/// Set it with [`Sandbox::seccomp`](crate::Sandbox::seccomp); the default is
/// [`Seccomp::Default`].
///
/// ```
/// use jobcell::{Sandbox, Seccomp, SeccompAction, SeccompPolicy};
///
/// let mut sandbox = Sandbox::new();
/// // The default denylist, but a denied call kills the job instead of failing with EPERM.
/// sandbox.seccomp(Seccomp::Custom(SeccompPolicy::new().action(SeccompAction::KillProcess)));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Seccomp {
    /// The default denylist ([`SeccompPolicy::new`]); denied calls fail with `EPERM`.
    #[default]
    Default,
    /// No filter at all. The namespaces, capabilities and limits still apply.
    Disabled,
    /// A policy of your own, usually the default one with changes.
    Custom(SeccompPolicy),
}

/// What a denied system call does.
///
/// ```
/// use jobcell::{SeccompAction, SeccompPolicy};
///
/// assert_eq!(SeccompAction::default(), SeccompAction::Errno(libc::EPERM));
/// let strict = SeccompPolicy::new().action(SeccompAction::KillProcess);
/// assert_eq!(strict.get_action(), SeccompAction::KillProcess);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SeccompAction {
    /// The call fails with this errno (1 to 4095) and the program goes on.
    /// `EPERM` is the default: programs treat it as "not allowed here" and
    /// usually degrade gracefully, which matters for CI jobs.
    Errno(i32),
    /// The whole job process is killed with `SIGSYS` (`SECCOMP_RET_KILL_PROCESS`).
    /// Suits judges, where a forbidden call should end the run with a clear verdict.
    KillProcess,
}

impl Default for SeccompAction {
    fn default() -> Self {
        SeccompAction::Errno(libc::EPERM)
    }
}

impl SeccompAction {
    /// The `SECCOMP_RET_*` value, or why there is none.
    fn ret(self) -> Result<u32> {
        match self {
            SeccompAction::KillProcess => Ok(bpf::RET_KILL_PROCESS),
            SeccompAction::Errno(e) => errno_ret(e),
        }
    }
}

fn errno_ret(errno: i32) -> Result<u32> {
    // 0 would make a denied call "succeed" without running; the kernel clamps
    // anything above MAX_ERRNO (4095).
    match u32::try_from(errno) {
        Ok(e @ 1..=4095) => Ok(bpf::RET_ERRNO | e),
        _ => Err(invalid(
            format!("errno {errno}"),
            "a denied call's errno must be 1 to 4095".into(),
        )),
    }
}

fn invalid(value: String, reason: String) -> Error {
    Error::InvalidSetting {
        name: "seccomp",
        value,
        reason,
    }
}

/// What a rule does when it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The policy's [`SeccompAction`].
    Deny,
    /// Fail with this errno whatever the policy's action (`clone3` → `ENOSYS`).
    Errno(i32),
}

/// One rule of a policy, as given (validated when compiled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    nr: i64,
    cond: Cond,
    verdict: Verdict,
}

/// A seccomp denylist: which system calls a job may not make, and what
/// happens when it tries.
///
/// Start from [`SeccompPolicy::new`] (the default list) or
/// [`SeccompPolicy::empty`], then adjust. Syscall numbers are the native
/// ABI's, as in `libc::SYS_*`. Whatever the policy, every system call of a
/// foreign ABI (32-bit `int 0x80` and x32 on x86_64, arm32 on aarch64) is
/// denied: a denylist written in native numbers means nothing to them.
///
/// The policy is checked when a job is spawned: a bad syscall number or errno,
/// or denying `execve`, `exit` or `exit_group`, becomes [`Error::InvalidSetting`].
///
/// ```
/// use jobcell::{Sandbox, Seccomp, SeccompAction, SeccompPolicy};
///
/// let policy = SeccompPolicy::new()
///     .deny(libc::SYS_ptrace)                  // no debuggers in this judge
///     .allow(libc::SYS_perf_event_open)        // but allow `perf stat`
///     .action(SeccompAction::KillProcess);     // and kill on anything denied
/// let mut sandbox = Sandbox::new();
/// sandbox.seccomp(Seccomp::Custom(policy));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct SeccompPolicy {
    action: SeccompAction,
    entries: Vec<Entry>,
    /// A socket family outside `0..64` given to a family method: refused when compiled.
    bad_family: Option<i32>,
}

/// The socket families a job may open under the default policy: the ones its
/// network namespace isolates and jobs use. `AF_UNIX` (abstract names are
/// per network namespace, paths per mount namespace), `AF_INET`, `AF_INET6`
/// and `AF_NETLINK` (routing and address queries, which `getaddrinfo` and
/// `ip` make).
///
/// Every other family fails with `EAFNOSUPPORT`, as if the kernel had been
/// built without it. Among them: `AF_VSOCK`, which no network namespace
/// isolates (a job could take the host's vsock ports or reach a hypervisor's
/// services), `AF_BLUETOOTH`, and families that are rarely used and have
/// a record of kernel vulnerabilities, some loaded as modules on the first
/// `socket()` call (`AF_ALG`, `AF_TIPC`, `AF_RDS`, `AF_CAN`, `AF_KCM`,
/// `AF_SMC`, `AF_XDP`, `AF_PACKET`, `AF_KEY`, the legacy protocols such as
/// `AF_APPLETALK`, `AF_X25`, `AF_AX25`, `AF_LLC`, and families newer
/// kernels add). Allow one with [`SeccompPolicy::allow_socket_family`].
///
/// ```
/// assert!(jobcell::DEFAULT_SOCKET_FAMILIES.contains(&libc::AF_INET6));
/// assert!(!jobcell::DEFAULT_SOCKET_FAMILIES.contains(&libc::AF_VSOCK));
/// ```
pub const DEFAULT_SOCKET_FAMILIES: [i32; 4] = [
    libc::AF_UNIX,
    libc::AF_INET,
    libc::AF_INET6,
    libc::AF_NETLINK,
];

/// What `socket` and `socketpair` return for a family the policy does not allow.
const FAMILY_DENIED: Verdict = Verdict::Errno(libc::EAFNOSUPPORT);

/// The calls that take a socket family as their first argument.
const FAMILY_CALLS: [i64; 2] = [libc::SYS_socket, libc::SYS_socketpair];

fn family_set(families: &[i32]) -> u64 {
    families
        .iter()
        .filter(|f| (0..64).contains(*f))
        .fold(0, |set, &f| set | 1 << f)
}

impl Default for SeccompPolicy {
    fn default() -> Self {
        SeccompPolicy::new()
    }
}

impl SeccompPolicy {
    /// The default policy, the one [`Seccomp::Default`] installs. It denies
    /// with `EPERM`: kernel modules and kexec; `bpf`, `perf_event_open`;
    /// the keyring calls; `userfaultfd`; `io_uring`; file handles
    /// (`open_by_handle_at`, `name_to_handle_at`); every mount call; `setns`,
    /// and `unshare` or `clone` asking for a new namespace; `personality`
    /// other than a query or `PER_LINUX`; `acct`, `swapon`, `swapoff`,
    /// `reboot`, `syslog`; setting or adjusting clocks; the `TIOCSTI`,
    /// `TIOCLINUX` and `TIOCSETD` ioctls; on x86_64 also `iopl`, `ioperm`,
    /// `modify_ldt` and `uselib`. `clone3` fails with `ENOSYS` so that
    /// libc falls back to `clone`, whose flags the filter can see.
    /// `socket` and `socketpair` fail with `EAFNOSUPPORT` for every family
    /// but [`DEFAULT_SOCKET_FAMILIES`].
    ///
    /// On architectures other than x86_64 and aarch64 there is no default
    /// list, and spawning with it fails.
    ///
    /// ```
    /// let policy = jobcell::SeccompPolicy::new();
    /// assert_eq!(policy, jobcell::SeccompPolicy::default());
    /// ```
    pub fn new() -> SeccompPolicy {
        SeccompPolicy {
            action: SeccompAction::default(),
            entries: default_entries(),
            bad_family: None,
        }
    }

    /// A policy that denies nothing but the foreign ABIs (every socket family included).
    ///
    /// ```
    /// // Only deny what this judge cares about.
    /// let policy = jobcell::SeccompPolicy::empty().deny(libc::SYS_socket);
    /// ```
    pub fn empty() -> SeccompPolicy {
        SeccompPolicy {
            action: SeccompAction::default(),
            entries: Vec::new(),
            bad_family: None,
        }
    }

    /// Sets what denied calls do (default: fail with `EPERM`). `clone3`'s
    /// `ENOSYS` in the default list is kept: it is a fallback, not a denial.
    ///
    /// ```
    /// use jobcell::{SeccompAction, SeccompPolicy};
    /// let policy = SeccompPolicy::new().action(SeccompAction::KillProcess);
    /// ```
    pub fn action(mut self, action: SeccompAction) -> SeccompPolicy {
        self.action = action;
        self
    }

    /// What denied calls do.
    ///
    /// ```
    /// use jobcell::{SeccompAction, SeccompPolicy};
    /// assert_eq!(SeccompPolicy::new().get_action(), SeccompAction::Errno(libc::EPERM));
    /// ```
    pub fn get_action(&self) -> SeccompAction {
        self.action
    }

    /// Denies system call `nr` whatever its arguments, with the policy's
    /// action. Replaces any rule the policy had for `nr`.
    ///
    /// ```
    /// let policy = jobcell::SeccompPolicy::new().deny(libc::SYS_ptrace);
    /// ```
    pub fn deny(self, nr: i64) -> SeccompPolicy {
        self.set(nr, Cond::Always, Verdict::Deny)
    }

    /// Makes system call `nr` fail with `errno` whatever its arguments and
    /// whatever the policy's action, for instance `ENOSYS` to make a feature
    /// look absent so that programs fall back. Replaces any rule for `nr`.
    ///
    /// ```
    /// let policy = jobcell::SeccompPolicy::new().deny_errno(libc::SYS_memfd_create, libc::ENOSYS);
    /// ```
    pub fn deny_errno(self, nr: i64, errno: i32) -> SeccompPolicy {
        self.set(nr, Cond::Always, Verdict::Errno(errno))
    }

    /// Removes every rule for system call `nr`, so it is allowed. Allowing
    /// `clone3` also lets a job create namespaces through it: its flags are
    /// in memory, out of the filter's sight.
    ///
    /// ```
    /// let policy = jobcell::SeccompPolicy::new().allow(libc::SYS_perf_event_open);
    /// ```
    pub fn allow(mut self, nr: i64) -> SeccompPolicy {
        self.entries.retain(|e| e.nr != nr);
        self
    }

    /// Lets the job open sockets of `family` (an `AF_*` constant) with
    /// `socket` and `socketpair`, on top of the families the policy allows
    /// (see [`DEFAULT_SOCKET_FAMILIES`]). Nothing changes where the policy
    /// allows every family already, or denies `socket` whole.
    ///
    /// ```
    /// // A job that uses the kernel's crypto API.
    /// let policy = jobcell::SeccompPolicy::new().allow_socket_family(libc::AF_ALG);
    /// assert!(policy.allows_socket_family(libc::AF_ALG));
    /// assert!(!policy.allows_socket_family(libc::AF_VSOCK));
    /// ```
    pub fn allow_socket_family(mut self, family: i32) -> SeccompPolicy {
        if !(0..64).contains(&family) {
            self.bad_family = Some(family);
            return self;
        }
        for e in &mut self.entries {
            if let (true, Cond::NotInSet { set, .. }) = (FAMILY_CALLS.contains(&e.nr), &mut e.cond)
            {
                *set |= 1 << family;
            }
        }
        self
    }

    /// Makes `socket` and `socketpair` fail with `EAFNOSUPPORT` for
    /// `family`. On a policy that allowed every family (such as
    /// [`SeccompPolicy::empty`]), every other family stays allowed.
    ///
    /// ```
    /// // The default list, without IPv6.
    /// let policy = jobcell::SeccompPolicy::new().deny_socket_family(libc::AF_INET6);
    /// assert!(!policy.allows_socket_family(libc::AF_INET6));
    /// assert!(policy.allows_socket_family(libc::AF_INET));
    /// ```
    pub fn deny_socket_family(mut self, family: i32) -> SeccompPolicy {
        if !(0..64).contains(&family) {
            self.bad_family = Some(family);
            return self;
        }
        for nr in FAMILY_CALLS {
            let mut ruled = false;
            for e in self.entries.iter_mut().filter(|e| e.nr == nr) {
                ruled = true;
                if let Cond::NotInSet { set, .. } = &mut e.cond {
                    *set &= !(1 << family);
                }
            }
            if !ruled {
                self.entries.push(Entry {
                    nr,
                    cond: Cond::NotInSet {
                        arg: 0,
                        set: !(1 << family),
                    },
                    verdict: FAMILY_DENIED,
                });
            }
        }
        self
    }

    /// Whether the policy lets a job open a socket of `family` with `socket`.
    ///
    /// ```
    /// let policy = jobcell::SeccompPolicy::new();
    /// assert!(policy.allows_socket_family(libc::AF_UNIX));
    /// assert!(!policy.allows_socket_family(libc::AF_VSOCK));
    /// assert!(jobcell::SeccompPolicy::empty().allows_socket_family(libc::AF_VSOCK));
    /// ```
    pub fn allows_socket_family(&self, family: i32) -> bool {
        let member = u32::try_from(family).ok();
        self.entries
            .iter()
            .filter(|e| e.nr == libc::SYS_socket)
            .all(|e| match e.cond {
                Cond::Always => false,
                Cond::NotInSet { set, .. } => {
                    member.is_some_and(|f| bpf::members(set).any(|m| m == f))
                }
                Cond::OneOf { values, .. } => member.is_none_or(|f| !values.contains(&f)),
                Cond::NoneOf { values, .. } => member.is_some_and(|f| values.contains(&f)),
                Cond::AnyBits { mask, .. } => member.is_none_or(|f| f & mask == 0),
            })
    }

    fn set(mut self, nr: i64, cond: Cond, verdict: Verdict) -> SeccompPolicy {
        self.entries.retain(|e| e.nr != nr);
        self.entries.push(Entry { nr, cond, verdict });
        self
    }

    /// Compiles the policy to a BPF program for the native ABI.
    pub(crate) fn compile(&self) -> Result<Vec<sock_filter>> {
        self.compile_with(self.action.ret()?)
    }

    /// The filter to install: in kill mode, a second program that hands every
    /// denied call to the cell's init (user notification), which records the
    /// syscall number and kills the job; kernels without notifications get
    /// the plain kill program.
    pub(crate) fn filter(&self) -> Result<Filter> {
        let prog = self.compile()?;
        let report = match self.action {
            SeccompAction::KillProcess => Some(self.compile_with(bpf::RET_USER_NOTIF)?),
            SeccompAction::Errno(_) => None,
        };
        Ok(Filter { prog, report })
    }

    fn compile_with(&self, deny: u32) -> Result<Vec<sock_filter>> {
        let abi = native_abi()?;
        if let Some(f) = self.bad_family {
            return Err(invalid(
                format!("socket family {f}"),
                "socket families are 0 to 63 (AF_* constants)".into(),
            ));
        }
        let mut rules = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            // Native syscall numbers are small; the x32 bit and above are not
            // native calls and would never be seen by a rule anyway.
            let nr = u32::try_from(e.nr)
                .ok()
                .filter(|&n| n < 0x4000_0000)
                .ok_or_else(|| {
                    invalid(
                        format!("syscall {}", e.nr),
                        "not a native syscall number".into(),
                    )
                })?;
            // The job must be able to start and to end: with execve denied
            // nothing runs, and with exit/exit_group denied a job (and jobcell's
            // own exit path in the child) could never terminate.
            if [libc::SYS_execve, libc::SYS_exit, libc::SYS_exit_group].contains(&e.nr) {
                return Err(invalid(
                    format!("syscall {}", e.nr),
                    "execve, exit and exit_group cannot be denied".into(),
                ));
            }
            let ret = match e.verdict {
                Verdict::Deny => deny,
                Verdict::Errno(errno) => errno_ret(errno)?,
            };
            rules.push(Rule {
                nr,
                cond: e.cond,
                ret,
            });
        }
        // Stable: the rules of one syscall keep their order (first match wins).
        rules.sort_by_key(|r| r.nr);
        let prog = bpf::assemble(abi, deny, &rules).map_err(|e| {
            invalid(
                format!("{} rules", rules.len()),
                format!("the filter does not fit in a BPF program ({e:?})"),
            )
        })?;
        // The kernel would refuse a malformed program with a bare EINVAL in
        // the child; catch an assembler bug here, with a message.
        bpf::validate(&prog).map_err(|e| {
            invalid(
                String::new(),
                format!("internal error in the BPF assembler: {e}"),
            )
        })?;
        Ok(prog)
    }
}

/// A compiled filter: the program, and in kill mode the reporting variant.
#[derive(Clone, Debug)]
pub(crate) struct Filter {
    pub prog: Vec<sock_filter>,
    pub report: Option<Vec<sock_filter>>,
}

impl Seccomp {
    /// The filter to install in the job, or `None` for no filter.
    pub(crate) fn compile(&self) -> Result<Option<Filter>> {
        match self {
            Seccomp::Disabled => Ok(None),
            Seccomp::Custom(policy) => policy.filter().map(Some),
            Seccomp::Default => {
                // Every job of every sandbox uses this one: build it once.
                static DEFAULT: OnceLock<Filter> = OnceLock::new();
                if let Some(f) = DEFAULT.get() {
                    return Ok(Some(f.clone()));
                }
                let f = SeccompPolicy::new().filter()?;
                Ok(Some(DEFAULT.get_or_init(|| f).clone()))
            }
        }
    }
}
