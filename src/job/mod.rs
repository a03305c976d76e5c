//! A job: its handle, state, verdict, usage and log.

mod id;
pub(crate) mod log;
mod outcome;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

pub use id::JobId;
pub use log::{Chunk, LogReader, ReadTimeout, Stream, DEFAULT_MEMORY_BUDGET};
pub use outcome::{Exit, JobState, Outcome, ResourceUsage, TimeLimit, Usage};

use crate::cgroup;
use crate::error::{Error, Result};
use crate::sandbox::{Command, Limits};
use crate::sys;
use log::Log;

/// What was asked for: kept for the job's record.
pub(crate) struct JobMeta {
    pub command: String,
    pub args: Vec<String>,
    pub limits: Limits,
}

impl JobMeta {
    pub(crate) fn new(command: &Command, limits: &Limits) -> JobMeta {
        JobMeta {
            command: command.get_program().to_string_lossy().into_owned(),
            args: command
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            limits: limits.clone(),
        }
    }
}

/// Why the supervisor ended a job early; decides the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KillReason {
    Stopped,
    TimedOut(TimeLimit),
    OutputLimit,
}

/// A job's state and, once it has ended, how: what its record holds besides
/// what was asked for ([`JobMeta`]) and when (the Worker makes the record).
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub state: JobState,
    pub outcome: Option<Outcome>,
    pub started: Option<SystemTime>,
    pub ended: Option<SystemTime>,
    /// Why the log is incomplete on disk, if it is.
    pub log_error: Option<String>,
}

/// Receives every state change of a job (the Worker uses it to publish,
/// persist and start queued jobs).
pub(crate) trait Observer: Send + Sync {
    /// The job is moving to `now.state`. For a final state this comes
    /// before anyone can see the job as ended (its waiters, `try_wait`, its
    /// log's end), so that they find the change recorded and published.
    fn changed(&self, job: &Arc<JobShared>, now: &Snapshot);
    /// The job's waiters have been woken after its final state.
    fn released(&self, _job: &Arc<JobShared>) {}
    /// Takes over finishing the job (recording and publishing its end take
    /// disk writes, which the supervisor must not wait for); gives the
    /// outcome back when it cannot.
    fn finish_later(&self, _job: &Arc<JobShared>, outcome: Outcome) -> Option<Outcome> {
        Some(outcome)
    }
}

/// Processes of a cell that are not the job's: its init (PID 1). The job's
/// cgroup holds it, so its `pids.max` is `Limits::pids` plus this, and its
/// pids figures are reported less this.
pub(crate) const CELL_INIT_PIDS: u64 = 1;

/// How long init gets to end a killed job itself (so that the job's rusage
/// is reported) before the host SIGKILLs init and the whole cell with it.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(1);

/// The supervisor of a running job (its reactor), for kills that must not
/// depend on the cell's init.
pub(crate) trait Supervisor: Send + Sync {
    /// SIGKILLs the job's init at `at` unless the job has ended by then.
    fn kill_hard_at(&self, job: &Arc<JobShared>, at: Instant);
}

/// Live usage source of a running job (its cgroup).
pub(crate) trait UsageSource: Send + Sync {
    fn usage(&self) -> Option<Usage>;
}

impl UsageSource for cgroup::JobCgroup {
    fn usage(&self) -> Option<Usage> {
        self.stats().map(Usage::from)
    }
}

impl From<cgroup::Stats> for Usage {
    fn from(s: cgroup::Stats) -> Usage {
        Usage {
            cpu_user: s.cpu_user,
            cpu_system: s.cpu_system,
            memory_current: s.memory_current,
            memory_peak: s.memory_peak,
            io_read_bytes: s.io_read_bytes,
            io_write_bytes: s.io_write_bytes,
            // The cell's init is in the cgroup for as long as any process of
            // the job is (the kernel ends the cell with it); `Limits::pids`
            // counts without it, and so do the figures.
            pids_current: s.pids_current.saturating_sub(CELL_INIT_PIDS),
            pids_peak: s.pids_peak.map(|p| p.saturating_sub(CELL_INIT_PIDS)),
            pids_limit_hits: s.pids_limit_hits,
            oom_kills: s.oom_kills,
        }
    }
}

pub(crate) struct Inner {
    pub state: JobState,
    pub pid: Option<i32>,
    pub pidfd: Option<Arc<OwnedFd>>,
    pub kill_reason: Option<KillReason>,
    pub outcome: Option<Outcome>,
    pub started: Option<SystemTime>,
    pub ended: Option<SystemTime>,
    pub usage: Option<Arc<dyn UsageSource>>,
    pub supervisor: Option<Weak<dyn Supervisor>>,
    /// Why the log is incomplete on disk (kept once the job has ended).
    pub log_error: Option<String>,
}

/// Everything shared between a job's handles, its supervisor and its worker.
pub(crate) struct JobShared {
    pub id: JobId,
    pub meta: JobMeta,
    pub created: SystemTime,
    pub log: Arc<Log>,
    pub inner: Mutex<Inner>,
    cond: Condvar,
    observer: Option<Arc<dyn Observer>>,
    /// Held across a state change and its publication, so that changes are
    /// published (and recorded) in the order they happen.
    publish: Mutex<()>,
}

impl JobShared {
    pub(crate) fn new(
        id: JobId,
        meta: JobMeta,
        log: Log,
        observer: Option<Arc<dyn Observer>>,
        state: JobState,
    ) -> Arc<JobShared> {
        Arc::new(JobShared {
            id,
            meta,
            created: SystemTime::now(),
            log: Arc::new(log),
            inner: Mutex::new(Inner {
                state,
                pid: None,
                pidfd: None,
                kill_reason: None,
                outcome: None,
                started: None,
                ended: None,
                usage: None,
                supervisor: None,
                log_error: None,
            }),
            cond: Condvar::new(),
            observer,
            publish: Mutex::new(()),
        })
    }

    /// A finished job read back from a worker's state directory: `past`
    /// says how it ended.
    pub(crate) fn restored(
        id: JobId,
        meta: JobMeta,
        created: SystemTime,
        past: Snapshot,
        log: Log,
    ) -> Arc<JobShared> {
        Arc::new(JobShared {
            id,
            meta,
            created,
            log: Arc::new(log),
            inner: Mutex::new(Inner {
                state: past.state,
                pid: None,
                pidfd: None,
                kill_reason: None,
                outcome: past.outcome,
                started: past.started,
                ended: past.ended,
                usage: None,
                supervisor: None,
                log_error: past.log_error,
            }),
            cond: Condvar::new(),
            observer: None,
            publish: Mutex::new(()),
        })
    }

    /// The job as it stands, for its record.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let g = self.inner.lock();
        let log_error = g.log_error.clone().or_else(|| self.log.store_error());
        Snapshot {
            state: g.state.clone(),
            outcome: g.outcome.clone(),
            started: g.started,
            ended: g.ended,
            log_error,
        }
    }

    /// Records why the job is being ended, unless it has ended already.
    pub(crate) fn kill_reason_set(&self, reason: KillReason) -> bool {
        let mut g = self.inner.lock();
        if g.state.is_final() {
            return false;
        }
        g.kill_reason.get_or_insert(reason);
        true
    }

    /// Asks the job to end: SIGTERM to the cell's init, which passes it on
    /// (with SIGCONT) to every process of the cell. Returns false when the job
    /// has no process (queued or finished).
    pub(crate) fn terminate(&self) -> bool {
        let g = self.inner.lock();
        if g.state.is_final() {
            return false;
        }
        match &g.pidfd {
            Some(fd) => sys::host::pidfd_send_signal(fd.as_raw_fd(), libc::SIGTERM).is_ok(),
            None => false,
        }
    }

    /// Moves to `state` and tells the observer. Final states are never left.
    pub(crate) fn set_state(self: &Arc<Self>, state: JobState) {
        let _publishing = self.publish.lock();
        {
            let mut g = self.inner.lock();
            if g.state.is_final() {
                return;
            }
            g.state = state;
        }
        if let Some(o) = &self.observer {
            o.changed(self, &self.snapshot());
        }
    }

    /// Ends the job with `outcome`: the observer records and publishes it
    /// first, and only then does anyone see the job as ended (`try_wait`,
    /// the record in memory, the log's end), and its waiters wake.
    pub(crate) fn finish(self: &Arc<Self>, outcome: Outcome) {
        let publishing = self.publish.lock();
        let started = {
            let g = self.inner.lock();
            if g.state.is_final() {
                return;
            }
            g.started
        };
        // The log's file is complete and synced before the record says so.
        self.log.finish_writing();
        let ended = SystemTime::now();
        let log_error = self.log.store_error();
        if let Some(o) = &self.observer {
            let now = Snapshot {
                state: outcome.state.clone(),
                outcome: Some(outcome.clone()),
                started,
                ended: Some(ended),
                log_error: log_error.clone(),
            };
            o.changed(self, &now);
        }
        {
            let mut g = self.inner.lock();
            g.state = outcome.state.clone();
            g.ended = Some(ended);
            g.outcome = Some(outcome);
            g.pidfd = None;
            g.usage = None;
            g.supervisor = None;
            g.log_error = log_error;
        }
        self.log.close();
        self.cond.notify_all();
        drop(publishing);
        if let Some(o) = &self.observer {
            o.released(self);
        }
    }

    /// Ends the job from its supervisor: the observer may finish it on a
    /// thread of its own, so that the supervisor never waits for a disk.
    pub(crate) fn finish_supervised(self: &Arc<Self>, outcome: Outcome) {
        let outcome = match &self.observer {
            Some(o) => match o.finish_later(self, outcome) {
                None => return,
                Some(outcome) => outcome,
            },
            None => outcome,
        };
        self.finish(outcome);
    }

    /// Ends the job, remembering why: init SIGKILLs every other process of
    /// the cell and reaps the job (so its rusage is the job's), and the
    /// supervisor SIGKILLs init itself if the cell is still there after
    /// [`KILL_GRACE`]. A job that has not started yet is finished as `reason`
    /// says when its start comes.
    pub(crate) fn kill(self: &Arc<Self>, reason: KillReason) -> Result<bool> {
        let mut g = self.inner.lock();
        if g.state.is_final() {
            return Ok(false);
        }
        if g.kill_reason.is_none() {
            g.kill_reason = Some(reason);
        }
        if let Some(fd) = &g.pidfd {
            signal(fd, libc::SIGUSR1)?;
            if let Some(s) = g.supervisor.as_ref().and_then(Weak::upgrade) {
                s.kill_hard_at(self, Instant::now() + KILL_GRACE);
            } else {
                signal(fd, libc::SIGKILL)?;
            }
        }
        Ok(true)
    }

    /// SIGKILLs the cell's init, which takes the whole cell with it.
    pub(crate) fn kill_hard(&self) {
        let g = self.inner.lock();
        if g.state.is_final() {
            return;
        }
        if let Some(fd) = &g.pidfd {
            let _ = signal(fd, libc::SIGKILL);
        }
    }

    pub(crate) fn wait_final(&self, timeout: Option<Duration>) -> Option<Outcome> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut g = self.inner.lock();
        loop {
            if let Some(o) = &g.outcome {
                return Some(o.clone());
            }
            match deadline {
                None => self.cond.wait(&mut g),
                Some(d) => {
                    if self.cond.wait_until(&mut g, d).timed_out() {
                        return g.outcome.clone();
                    }
                }
            }
        }
    }

    pub(crate) fn state(&self) -> JobState {
        self.inner.lock().state.clone()
    }

    pub(crate) fn usage(&self) -> Option<Usage> {
        let src = {
            let g = self.inner.lock();
            if let Some(o) = &g.outcome {
                return o.usage;
            }
            g.usage.clone()
        };
        src.and_then(|s| s.usage())
    }
}

fn signal(pidfd: &OwnedFd, sig: i32) -> Result<()> {
    match sys::host::pidfd_send_signal(pidfd.as_raw_fd(), sig) {
        Ok(()) | Err(crate::Errno(libc::ESRCH)) => Ok(()),
        Err(errno) => Err(Error::Spawn {
            op: "pidfd_send_signal",
            path: None,
            errno,
            hint: None,
        }),
    }
}

/// A running (or finished) job.
///
/// Handles from [`Sandbox::spawn`](crate::Sandbox::spawn) own their job:
/// dropping one that was not waited for kills the job and cleans everything
/// up. Handles from a worker do not: the worker owns its jobs.
///
/// ```no_run
/// use jobcell::{Sandbox, Command};
///
/// let job = Sandbox::new().spawn(Command::new("sh").args(["-c", "echo hi; echo oops >&2"]))?;
/// for chunk in job.logs() {
///     print!("{:?}: {}", chunk.stream, String::from_utf8_lossy(&chunk.data));
/// }
/// let outcome = job.wait()?;
/// println!("{:?} after {:?}", outcome.exit, outcome.wall_time);
/// # Ok::<(), jobcell::Error>(())
/// ```
pub struct JobHandle {
    pub(crate) shared: Arc<JobShared>,
    pub(crate) kill_on_drop: bool,
}

impl JobHandle {
    /// The job's id, unique across restarts of the process.
    pub fn id(&self) -> &JobId {
        &self.shared.id
    }

    /// The host pid of the cell's init (PID 1 inside the cell; the job is its child).
    /// `None` while the job is queued, and after it has ended.
    pub fn pid(&self) -> Option<u32> {
        let g = self.shared.inner.lock();
        if g.state.is_final() {
            return None;
        }
        g.pid.map(|p| p as u32)
    }

    /// A new reader of the job's output that replays from the first byte and
    /// follows until the output ends. Any number of readers may run at once.
    pub fn logs(&self) -> LogReader {
        LogReader::new(self.shared.log.clone())
    }

    /// Waits for the job to end and returns how it ended.
    pub fn wait(&self) -> Result<Outcome> {
        Ok(self
            .shared
            .wait_final(None)
            .expect("waiting without a timeout returns an outcome"))
    }

    /// Waits at most `timeout`; `None` if the job is still running.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<Outcome>> {
        Ok(self.shared.wait_final(Some(timeout)))
    }

    /// The outcome if the job has ended, without waiting.
    pub fn try_wait(&self) -> Result<Option<Outcome>> {
        Ok(self.shared.inner.lock().outcome.clone())
    }

    /// Kills the job and everything it started: the cell's init SIGKILLs
    /// every other process of the cell and reaps the job (so its rusage is
    /// kept), and the whole cell is SIGKILLed a second later should it still
    /// be there. Its verdict is [`JobState::Stopped`]. Killing a finished job
    /// does nothing.
    pub fn kill(&self) -> Result<()> {
        self.shared.kill(KillReason::Stopped).map(drop)
    }

    /// The job's current state.
    pub fn state(&self) -> JobState {
        self.shared.state()
    }

    /// Live resource usage from the job's cgroup (final usage once it has ended).
    /// `None` when the job runs without a cgroup.
    pub fn usage(&self) -> Option<Usage> {
        self.shared.usage()
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        if self.kill_on_drop {
            let _ = self.shared.kill(KillReason::Stopped);
        }
    }
}

impl std::fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle")
            .field("id", &self.shared.id)
            .field("state", &self.shared.state())
            .finish()
    }
}
