//! How a job ended, and what it used.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    /// Processes and threads alive now.
    pub pids_current: u64,
    /// Most processes and threads alive at once (`None` where the kernel does not track it).
    pub pids_peak: Option<u64>,
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
/// In JSON the state is flattened and times are in milliseconds:
/// `{"state": "completed", "exit": {"code": 0}, "wall_time_ms": 6.1, "rusage": {…},
/// "usage": {…}, "oom_killed": false}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Outcome {
    /// The final state: the verdict.
    #[serde(flatten)]
    pub state: JobState,
    /// How the job's main process ended; `None` if it never ran.
    pub exit: Option<Exit>,
    /// From spawn to the end of the cell.
    #[serde(rename = "wall_time_ms", serialize_with = "millis")]
    pub wall_time: Duration,
    /// The kernel's accounting of the cell's processes that were reaped by
    /// its init: the job's own, however it ended (a job killed by a limit or
    /// a stop is killed and reaped by init, so its figures are kept). Only
    /// when init itself had to be SIGKILLed (it did not end the cell within
    /// a second) are the job's figures lost; its CPU times then come from
    /// the job's cgroup, when it has one.
    pub rusage: ResourceUsage,
    /// The cgroup's accounting, when the job had a cgroup.
    pub usage: Option<Usage>,
    /// True when the kernel's OOM killer killed a process of the job.
    pub oom_killed: bool,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
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
        };
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["state"], "timed_out");
        assert_eq!(v["limit"], "wall");
        assert_eq!(v["exit"]["signal"], 9);
        assert_eq!(v["wall_time_ms"], 1.5);
        assert_eq!(v["usage"], serde_json::Value::Null);
    }
}
