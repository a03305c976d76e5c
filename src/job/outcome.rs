//! How a job ended, and what it used.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::format_size;

/// How the job's main process ended. In JSON: `{"code": 3}` or `{"signal": 9}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl Exit {
    pub(crate) fn from_wait_status(status: i32) -> Exit {
        if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        }
    }

    /// The shell's view: the code, or 128 + the signal.
    ///
    /// ```
    /// assert_eq!(jobcell::Exit::Signal(9).shell_code(), 137);
    /// ```
    pub fn shell_code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s} ({})", signal_name(*s)),
        }
    }
}

pub(crate) fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => "?",
    }
}

/// Which time limit a job exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeLimit {
    /// `Limits::wall_time`.
    Wall,
    /// `Limits::cpu_time`.
    Cpu,
}

/// Where a job is in its life. All but the first three are final (the verdict).
///
/// In JSON it is an object tagged by `state`, with the lower-case names of
/// [`JobState::name`]: `{"state": "failed", "reason": "exit code 3"}`,
/// `{"state": "timed_out", "limit": "wall"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "StateRepr", into = "StateRepr")]
#[non_exhaustive]
pub enum JobState {
    /// Waiting for a free slot in a worker.
    Queued,
    /// Its cell is being set up.
    Initializing,
    /// Its program runs.
    Running,
    /// It exited with code 0.
    Completed,
    /// It exited non-zero, died by a signal, or could not be set up.
    Failed {
        /// What happened, e.g. `"exit code 3"`.
        reason: String,
    },
    /// Someone stopped it.
    Stopped,
    /// It ran out of time.
    TimedOut(TimeLimit),
    /// The kernel killed it for exceeding its memory limit.
    OutOfMemory,
    /// It wrote more than its output limit.
    OutputLimitExceeded,
    /// It made a system call its seccomp filter denies, in kill mode
    /// ([`SeccompAction::KillProcess`](crate::SeccompAction::KillProcess)).
    BadSyscall {
        /// The syscall number (of the job's ABI; a 32-bit `int 0x80` call on
        /// x86_64 carries the i386 number), or `None` when the kernel could not
        /// tell (no seccomp user notifications, or a `SIGSYS` from elsewhere).
        syscall: Option<i64>,
    },
}

/// The JSON shape of a `JobState`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum StateRepr {
    Queued,
    Initializing,
    Running,
    Completed,
    Failed {
        reason: String,
    },
    Stopped,
    TimedOut {
        limit: TimeLimit,
    },
    OutOfMemory,
    OutputLimitExceeded,
    BadSyscall {
        #[serde(default)]
        syscall: Option<i64>,
    },
}

impl From<StateRepr> for JobState {
    fn from(r: StateRepr) -> JobState {
        match r {
            StateRepr::Queued => JobState::Queued,
            StateRepr::Initializing => JobState::Initializing,
            StateRepr::Running => JobState::Running,
            StateRepr::Completed => JobState::Completed,
            StateRepr::Failed { reason } => JobState::Failed { reason },
            StateRepr::Stopped => JobState::Stopped,
            StateRepr::TimedOut { limit } => JobState::TimedOut(limit),
            StateRepr::OutOfMemory => JobState::OutOfMemory,
            StateRepr::OutputLimitExceeded => JobState::OutputLimitExceeded,
            StateRepr::BadSyscall { syscall } => JobState::BadSyscall { syscall },
        }
    }
}

impl From<JobState> for StateRepr {
    fn from(s: JobState) -> StateRepr {
        match s {
            JobState::Queued => StateRepr::Queued,
            JobState::Initializing => StateRepr::Initializing,
            JobState::Running => StateRepr::Running,
            JobState::Completed => StateRepr::Completed,
            JobState::Failed { reason } => StateRepr::Failed { reason },
            JobState::Stopped => StateRepr::Stopped,
            JobState::TimedOut(limit) => StateRepr::TimedOut { limit },
            JobState::OutOfMemory => StateRepr::OutOfMemory,
            JobState::OutputLimitExceeded => StateRepr::OutputLimitExceeded,
            JobState::BadSyscall { syscall } => StateRepr::BadSyscall { syscall },
        }
    }
}

impl JobState {
    /// True for the final states.
    ///
    /// ```
    /// assert!(jobcell::JobState::Completed.is_final());
    /// assert!(!jobcell::JobState::Running.is_final());
    /// ```
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            JobState::Queued | JobState::Initializing | JobState::Running
        )
    }

    /// The lower-case name used in text and JSON (`"timed_out"`, `"running"`, …).
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Initializing => "initializing",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed { .. } => "failed",
            JobState::Stopped => "stopped",
            JobState::TimedOut(_) => "timed_out",
            JobState::OutOfMemory => "out_of_memory",
            JobState::OutputLimitExceeded => "output_limit_exceeded",
            JobState::BadSyscall { .. } => "bad_syscall",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobState::Failed { reason } => write!(f, "failed ({reason})"),
            JobState::TimedOut(TimeLimit::Wall) => f.write_str("timed out (wall time)"),
            JobState::TimedOut(TimeLimit::Cpu) => f.write_str("timed out (CPU time)"),
            JobState::BadSyscall { syscall: Some(n) } => write!(f, "bad system call {n}"),
            JobState::BadSyscall { syscall: None } => f.write_str("bad system call"),
            JobState::OutOfMemory => f.write_str("out of memory"),
            JobState::OutputLimitExceeded => f.write_str("output limit exceeded"),
            other => f.write_str(other.name()),
        }
    }
}

/// What the kernel's `rusage` says the job's processes used (init included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceUsage {
    /// CPU time in user mode.
    #[serde(rename = "user_time_us", with = "crate::json::dur_us")]
    pub user_time: Duration,
    /// CPU time in the kernel.
    #[serde(rename = "system_time_us", with = "crate::json::dur_us")]
    pub system_time: Duration,
    /// Largest resident set of any single process, in bytes.
    pub max_rss: u64,
    /// Page faults served without IO.
    pub minor_faults: u64,
    /// Page faults that needed IO.
    pub major_faults: u64,
    /// Voluntary context switches.
    pub voluntary_switches: u64,
    /// Involuntary context switches.
    pub involuntary_switches: u64,
}

impl ResourceUsage {
    pub(crate) fn from_rusage(r: &libc::rusage) -> ResourceUsage {
        let tv = |t: libc::timeval| {
            Duration::new(
                t.tv_sec.max(0) as u64,
                (t.tv_usec.clamp(0, 999_999) as u32) * 1000,
            )
        };
        ResourceUsage {
            user_time: tv(r.ru_utime),
            system_time: tv(r.ru_stime),
            max_rss: (r.ru_maxrss.max(0) as u64) * 1024,
            minor_faults: r.ru_minflt.max(0) as u64,
            major_faults: r.ru_majflt.max(0) as u64,
            voluntary_switches: r.ru_nvcsw.max(0) as u64,
            involuntary_switches: r.ru_nivcsw.max(0) as u64,
        }
    }

    /// User plus system time.
    pub fn cpu_time(&self) -> Duration {
        self.user_time + self.system_time
    }
}

/// Resource usage measured by the job's cgroup: every process of the job together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Usage {
    /// CPU time in user mode.
    #[serde(rename = "cpu_user_us", with = "crate::json::dur_us")]
    pub cpu_user: Duration,
    /// CPU time in the kernel.
    #[serde(rename = "cpu_system_us", with = "crate::json::dur_us")]
    pub cpu_system: Duration,
    /// Memory charged now, in bytes.
    pub memory_current: u64,
    /// Highest memory charged, in bytes (`None` where the kernel does not track it).
    pub memory_peak: Option<u64>,
    /// Bytes read from block devices.
    pub io_read_bytes: u64,
    /// Bytes written to block devices.
    pub io_write_bytes: u64,
    /// The job's processes and threads alive now (the cell's init not
    /// counted, as in [`Limits::pids`](crate::Limits::pids)).
    pub pids_current: u64,
    /// Most of the job's processes and threads alive at once (`None` where
    /// the kernel does not track it).
    pub pids_peak: Option<u64>,
    /// How many times the kernel refused the job a new process or thread
    /// because its pids limit was reached (0 for figures written before
    /// this field existed).
    pub pids_limit_hits: u64,
    /// How many times the kernel's OOM killer killed a process of the job.
    pub oom_kills: u64,
}

impl Usage {
    /// User plus system CPU time.
    pub fn cpu_total(&self) -> Duration {
        self.cpu_user + self.cpu_system
    }
}

/// How a job ended.
///
/// In JSON the state is flattened and every duration is a whole number:
/// the wall time in milliseconds, CPU times in microseconds:
/// `{"state": "completed", "exit": {"code": 0}, "wall_time_ms": 6, "rusage":
/// {"user_time_us": 1610, …}, "usage": {"cpu_user_us": 1541, …}, "oom_killed": false}`.
/// Reading also accepts the fractional milliseconds (`"wall_time_ms": 6.1`)
/// that development builds wrote before 0.1.0.
///
/// Its `Display` is a one-line summary: the verdict, then wall and CPU
/// time, peak memory and IO, and whether the pids limit refused a fork.
///
/// ```
/// # use jobcell::{Exit, JobState, Outcome};
/// let o: Outcome = serde_json::from_str(r#"{"state": "failed", "reason": "exit code 3",
///     "exit": {"code": 3}, "wall_time_ms": 20, "rusage": {"user_time_us": 1500}}"#)?;
/// assert_eq!(o.state, JobState::Failed { reason: "exit code 3".into() });
/// assert_eq!(o.exit, Some(Exit::Code(3)));
/// assert_eq!(
///     o.to_string(),
///     "failed (exit code 3); wall 0.020s, cpu 0.002s (user 0.002s, sys 0.000s), \
///      peak memory 0 B (largest process)"
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Outcome {
    /// The final state: the verdict.
    #[serde(flatten)]
    pub state: JobState,
    /// How the job's main process ended; `None` if it never ran.
    #[serde(default)]
    pub exit: Option<Exit>,
    /// From spawn to the end of the cell.
    #[serde(rename = "wall_time_ms", with = "crate::json::dur_ms")]
    pub wall_time: Duration,
    /// The kernel's accounting of the cell's processes that were reaped by
    /// its init: the job's own, however it ended (a job killed by a limit or
    /// a stop is killed and reaped by init, so its figures are kept). Only
    /// when init itself had to be SIGKILLed (it did not end the cell within
    /// a second) are the job's figures lost; its CPU times then come from
    /// the job's cgroup, when it has one.
    #[serde(default)]
    pub rusage: ResourceUsage,
    /// The cgroup's accounting, when the job had a cgroup.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// True when the kernel's OOM killer killed a process of the job.
    #[serde(default)]
    pub oom_killed: bool,
    /// True when the job met its pids limit: the kernel refused it a fork
    /// or a thread at least once ([`Usage::pids_limit_hits`]). Not a verdict
    /// of its own: a job may handle the `EAGAIN` and still complete; one
    /// that failed for it is `Failed` with this flag set. False in outcomes
    /// written before the field existed.
    #[serde(default)]
    pub pids_limited: bool,
}

/// The summary: `completed (exit code 0); wall 0.031s, cpu 0.006s (user
/// 0.006s, sys 0.000s), peak memory 1.0 MiB, io read 0 B written 0 B`. CPU
/// time, peak memory and IO come from the job's cgroup when it had one
/// (every process of the job together); otherwise from its rusage, whose
/// memory figure is the largest single process. A job that met its pids
/// limit ends with `; pids limit reached (2 forks refused)`.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.to_string();
        // "failed (exit code 3)" says it already; "timed out (wall time)" does not.
        match self.exit {
            Some(exit) => {
                let exit = exit.to_string();
                if state.contains(&exit) {
                    f.write_str(&state)?;
                } else if state.ends_with(')') {
                    write!(f, "{state}, {exit}")?;
                } else {
                    write!(f, "{state} ({exit})")?;
                }
            }
            None if state.ends_with(')') => write!(f, "{state}, never ran")?,
            None => write!(f, "{state} (never ran)")?,
        }
        let (cpu, user, sys) = match self.usage {
            Some(u) => (u.cpu_total(), u.cpu_user, u.cpu_system),
            None => (
                self.rusage.cpu_time(),
                self.rusage.user_time,
                self.rusage.system_time,
            ),
        };
        write!(
            f,
            "; wall {:.3}s, cpu {:.3}s (user {:.3}s, sys {:.3}s), peak memory ",
            self.wall_time.as_secs_f64(),
            cpu.as_secs_f64(),
            user.as_secs_f64(),
            sys.as_secs_f64(),
        )?;
        match self.usage.and_then(|u| u.memory_peak) {
            Some(peak) => f.write_str(&format_size(peak))?,
            None => write!(f, "{} (largest process)", format_size(self.rusage.max_rss))?,
        }
        if let Some(u) = self.usage {
            write!(
                f,
                ", io read {} written {}",
                format_size(u.io_read_bytes),
                format_size(u.io_write_bytes)
            )?;
        }
        if self.pids_limited {
            match self.usage.map_or(0, |u| u.pids_limit_hits) {
                1 => f.write_str("; pids limit reached (1 fork refused)")?,
                n if n > 1 => write!(f, "; pids limit reached ({n} forks refused)")?,
                _ => f.write_str("; pids limit reached")?,
            }
        }
        Ok(())
    }
}

impl Outcome {
    /// True when the job exited with code 0 and no limit was hit.
    pub fn success(&self) -> bool {
        self.state == JobState::Completed
    }

    /// The exit code, if the job exited normally.
    pub fn code(&self) -> Option<i32> {
        match self.exit {
            Some(Exit::Code(c)) => Some(c),
            _ => None,
        }
    }

    /// The signal that killed the job, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.exit {
            Some(Exit::Signal(s)) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_decoding() {
        assert_eq!(Exit::from_wait_status(3 << 8), Exit::Code(3));
        assert_eq!(Exit::from_wait_status(9), Exit::Signal(9));
        assert_eq!(Exit::Signal(9).to_string(), "killed by signal 9 (SIGKILL)");
    }

    #[test]
    fn outcome_json_is_flat() {
        let o = Outcome {
            state: JobState::TimedOut(TimeLimit::Wall),
            exit: Some(Exit::Signal(9)),
            wall_time: Duration::from_micros(1500),
            rusage: ResourceUsage::default(),
            usage: None,
            oom_killed: false,
            pids_limited: false,
        };
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["state"], "timed_out");
        assert_eq!(v["limit"], "wall");
        assert_eq!(v["exit"]["signal"], 9);
        assert_eq!(v["wall_time_ms"], 1, "whole milliseconds, rounded down");
        assert!(v["wall_time_ms"].is_u64());
        assert_eq!(v["usage"], serde_json::Value::Null);
        let back: Outcome = serde_json::from_value(v).unwrap();
        assert_eq!(back.wall_time, Duration::from_millis(1));
        assert_eq!(back.state, o.state);
    }

    #[test]
    fn fractional_milliseconds_are_still_read() {
        let old = r#"{"state":"failed","reason":"exit code 3","exit":{"code":3},
            "wall_time_ms":21.456279000000002,"rusage":{"user_time_us":1610,"system_time_us":0,
            "max_rss":2232320,"minor_faults":95,"major_faults":0,"voluntary_switches":7,
            "involuntary_switches":5},"usage":null,"oom_killed":false}"#;
        let o: Outcome = serde_json::from_str(old).unwrap();
        assert_eq!(o.wall_time.as_micros(), 21_456);
        assert_eq!(o.rusage.user_time, Duration::from_micros(1610));
        for bad in ["-1", "-0.5", "1e300", "\"1\""] {
            let json = format!(r#"{{"state":"completed","wall_time_ms":{bad}}}"#);
            assert!(serde_json::from_str::<Outcome>(&json).is_err(), "{bad}");
        }
    }

    fn outcome(state: JobState, exit: Option<Exit>, usage: Option<Usage>) -> Outcome {
        Outcome {
            state,
            exit,
            wall_time: Duration::from_millis(2004),
            rusage: ResourceUsage {
                user_time: Duration::from_millis(4),
                max_rss: 3 << 20,
                ..Default::default()
            },
            usage,
            oom_killed: false,
            pids_limited: false,
        }
    }

    #[test]
    fn display_is_one_line() {
        let usage = Usage {
            cpu_user: Duration::from_millis(6),
            cpu_system: Duration::from_millis(1),
            memory_peak: Some(1 << 20),
            io_write_bytes: 1536,
            ..Default::default()
        };
        let cases = [
            (
                outcome(JobState::Completed, Some(Exit::Code(0)), Some(usage)),
                "completed (exit code 0); wall 2.004s, cpu 0.007s (user 0.006s, sys 0.001s), \
                 peak memory 1.0 MiB, io read 0 B written 1.5 KiB",
            ),
            (
                outcome(
                    JobState::Failed {
                        reason: "exit code 3".into(),
                    },
                    Some(Exit::Code(3)),
                    None,
                ),
                "failed (exit code 3); wall 2.004s, cpu 0.004s (user 0.004s, sys 0.000s), \
                 peak memory 3.0 MiB (largest process)",
            ),
            (
                outcome(
                    JobState::TimedOut(TimeLimit::Wall),
                    Some(Exit::Signal(9)),
                    None,
                ),
                "timed out (wall time), killed by signal 9 (SIGKILL); wall 2.004s, cpu 0.004s \
                 (user 0.004s, sys 0.000s), peak memory 3.0 MiB (largest process)",
            ),
            (
                outcome(JobState::OutOfMemory, Some(Exit::Signal(9)), None),
                "out of memory (killed by signal 9 (SIGKILL)); wall 2.004s, cpu 0.004s \
                 (user 0.004s, sys 0.000s), peak memory 3.0 MiB (largest process)",
            ),
            (
                outcome(
                    JobState::Failed {
                        reason: "setup".into(),
                    },
                    None,
                    None,
                ),
                "failed (setup), never ran; wall 2.004s, cpu 0.004s (user 0.004s, sys 0.000s), \
                 peak memory 3.0 MiB (largest process)",
            ),
            (
                Outcome {
                    pids_limited: true,
                    ..outcome(
                        JobState::Failed {
                            reason: "exit code 2".into(),
                        },
                        Some(Exit::Code(2)),
                        Some(Usage {
                            pids_limit_hits: 2,
                            ..usage
                        }),
                    )
                },
                "failed (exit code 2); wall 2.004s, cpu 0.007s (user 0.006s, sys 0.001s), \
                 peak memory 1.0 MiB, io read 0 B written 1.5 KiB; pids limit reached \
                 (2 forks refused)",
            ),
        ];
        for (o, want) in cases {
            assert_eq!(o.to_string(), want);
        }
    }

    #[test]
    fn exits_read_as_the_shell_and_a_person_would() {
        assert_eq!(Exit::from_wait_status(0), Exit::Code(0));
        assert_eq!(
            Exit::from_wait_status(libc::SIGSYS),
            Exit::Signal(libc::SIGSYS)
        );
        assert_eq!(Exit::Code(3).shell_code(), 3);
        assert_eq!(Exit::Signal(libc::SIGTERM).shell_code(), 143);
        assert_eq!(Exit::Signal(libc::SIGKILL).shell_code(), 137);
        assert_eq!(Exit::Code(3).to_string(), "exit code 3");
        let names = [
            (libc::SIGHUP, "SIGHUP"),
            (libc::SIGINT, "SIGINT"),
            (libc::SIGQUIT, "SIGQUIT"),
            (libc::SIGILL, "SIGILL"),
            (libc::SIGTRAP, "SIGTRAP"),
            (libc::SIGABRT, "SIGABRT"),
            (libc::SIGBUS, "SIGBUS"),
            (libc::SIGFPE, "SIGFPE"),
            (libc::SIGKILL, "SIGKILL"),
            (libc::SIGUSR1, "SIGUSR1"),
            (libc::SIGSEGV, "SIGSEGV"),
            (libc::SIGUSR2, "SIGUSR2"),
            (libc::SIGPIPE, "SIGPIPE"),
            (libc::SIGALRM, "SIGALRM"),
            (libc::SIGTERM, "SIGTERM"),
            (libc::SIGXCPU, "SIGXCPU"),
            (libc::SIGXFSZ, "SIGXFSZ"),
            (libc::SIGSYS, "SIGSYS"),
            (libc::SIGWINCH, "?"),
        ];
        for (sig, name) in names {
            assert_eq!(signal_name(sig), name, "{sig}");
            assert_eq!(
                Exit::Signal(sig).to_string(),
                format!("killed by signal {sig} ({name})")
            );
        }
    }

    /// Every state: final or not, its name, its text, its JSON both ways.
    #[test]
    fn every_state_names_itself_and_survives_json() {
        let failed = JobState::Failed {
            reason: "exit code 3".into(),
        };
        let cases = [
            (JobState::Queued, false, "queued", "queued"),
            (
                JobState::Initializing,
                false,
                "initializing",
                "initializing",
            ),
            (JobState::Running, false, "running", "running"),
            (JobState::Completed, true, "completed", "completed"),
            (failed, true, "failed", "failed (exit code 3)"),
            (JobState::Stopped, true, "stopped", "stopped"),
            (
                JobState::TimedOut(TimeLimit::Wall),
                true,
                "timed_out",
                "timed out (wall time)",
            ),
            (
                JobState::TimedOut(TimeLimit::Cpu),
                true,
                "timed_out",
                "timed out (CPU time)",
            ),
            (
                JobState::OutOfMemory,
                true,
                "out_of_memory",
                "out of memory",
            ),
            (
                JobState::OutputLimitExceeded,
                true,
                "output_limit_exceeded",
                "output limit exceeded",
            ),
            (
                JobState::BadSyscall { syscall: Some(101) },
                true,
                "bad_syscall",
                "bad system call 101",
            ),
            (
                JobState::BadSyscall { syscall: None },
                true,
                "bad_syscall",
                "bad system call",
            ),
        ];
        for (state, is_final, name, text) in cases {
            assert_eq!(state.is_final(), is_final, "{state:?}");
            assert_eq!(state.name(), name);
            assert_eq!(state.to_string(), text);
            let v = serde_json::to_value(&state).unwrap();
            assert_eq!(v["state"], name, "{v}");
            assert_eq!(serde_json::from_value::<JobState>(v).unwrap(), state);
        }
    }

    #[test]
    fn rusage_is_read_in_bytes_and_microseconds() {
        // SAFETY: rusage is plain data; all zeroes is a valid value.
        let mut r: libc::rusage = unsafe { std::mem::zeroed() };
        r.ru_utime = libc::timeval {
            tv_sec: 2,
            tv_usec: 500_000,
        };
        r.ru_stime = libc::timeval {
            tv_sec: 0,
            tv_usec: 1_250,
        };
        r.ru_maxrss = 3;
        r.ru_minflt = 4;
        r.ru_majflt = 5;
        r.ru_nvcsw = 6;
        r.ru_nivcsw = 7;
        let u = ResourceUsage::from_rusage(&r);
        assert_eq!(
            u,
            ResourceUsage {
                user_time: Duration::from_micros(2_500_000),
                system_time: Duration::from_micros(1_250),
                max_rss: 3 * 1024,
                minor_faults: 4,
                major_faults: 5,
                voluntary_switches: 6,
                involuntary_switches: 7,
            }
        );
        assert_eq!(u.cpu_time(), Duration::from_micros(2_501_250));
        let cg = Usage {
            cpu_user: Duration::from_millis(7),
            cpu_system: Duration::from_millis(2),
            ..Default::default()
        };
        assert_eq!(cg.cpu_total(), Duration::from_millis(9));
    }

    #[test]
    fn success_code_and_signal() {
        let done = outcome(JobState::Completed, Some(Exit::Code(0)), None);
        assert!(done.success());
        assert_eq!((done.code(), done.signal()), (Some(0), None));
        let three = outcome(
            JobState::Failed {
                reason: "exit code 3".into(),
            },
            Some(Exit::Code(3)),
            None,
        );
        assert!(!three.success());
        assert_eq!((three.code(), three.signal()), (Some(3), None));
        let killed = outcome(JobState::Stopped, Some(Exit::Signal(15)), None);
        assert!(!killed.success());
        assert_eq!((killed.code(), killed.signal()), (None, Some(15)));
        let never = outcome(JobState::Stopped, None, None);
        assert_eq!((never.code(), never.signal()), (None, None));
        assert!(
            never.to_string().starts_with("stopped (never ran); "),
            "{never}"
        );
    }

    #[test]
    fn outcomes_without_the_pids_figures_still_read() {
        let old = r#"{"state":"completed","exit":{"code":0},"wall_time_ms":3,
            "usage":{"pids_current":0,"pids_peak":2,"oom_kills":0},"oom_killed":false}"#;
        let o: Outcome = serde_json::from_str(old).unwrap();
        assert!(!o.pids_limited);
        assert_eq!(o.usage.unwrap().pids_limit_hits, 0);
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["pids_limited"], false, "{v}");
        assert_eq!(v["usage"]["pids_limit_hits"], 0, "{v}");
    }
}
