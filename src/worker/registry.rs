//! `Worker`: many jobs, a concurrency cap with a FIFO queue, status
//! subscriptions, and persistence.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::job::log::{Log, LogReader};
use crate::job::{JobHandle, JobId, JobMeta, JobShared, JobState, Observer, Outcome, Usage};
use crate::sandbox::{Command, Sandbox};
use crate::spawn;
use crate::worker::record::{JobRecord, RecoveryIssue, StatusEvent};
use crate::worker::store::Store;
use crate::worker::Runtime;

/// What a worker does when all its slots are busy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenFull {
    /// Queue the job; it starts when a slot frees up, in submission order (the default).
    #[default]
    Queue,
    /// Refuse it: `submit` returns [`Error::Refused`].
    Refuse,
}

/// How a [`Worker`] runs its jobs.
///
/// ```
/// let config = jobcell::WorkerConfig {
///     max_concurrent: Some(8),
///     state_dir: Some("/var/lib/jobcell".into()),
///     ..Default::default()
/// };
/// assert_eq!(config.stop_grace, std::time::Duration::from_secs(5));
/// ```
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// How many jobs may run at once (the original design's `MAX_JOBS`); `None` for no cap.
    pub max_concurrent: Option<usize>,
    /// What happens to jobs beyond the cap.
    pub when_full: WhenFull,
    /// At most this many queued jobs (`None`: no bound); more are refused.
    pub max_queued: Option<usize>,
    /// Where records and logs are persisted; `None` keeps everything in memory.
    pub state_dir: Option<PathBuf>,
    /// Bytes of each job's log kept in memory; older output is read from disk.
    pub log_memory_budget: usize,
    /// How long [`Worker::stop`] waits after SIGTERM before it SIGKILLs the cell.
    pub stop_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            max_concurrent: None,
            when_full: WhenFull::Queue,
            max_queued: None,
            state_dir: None,
            log_memory_budget: crate::job::DEFAULT_MEMORY_BUDGET,
            stop_grace: Duration::from_secs(5),
        }
    }
}

/// A job waiting for a slot.
struct Pending {
    job: Arc<JobShared>,
    sandbox: Sandbox,
    command: Command,
}

#[derive(Default)]
struct Jobs {
    by_id: HashMap<JobId, Arc<JobShared>>,
    /// Ids in submission order (restored jobs first).
    order: Vec<JobId>,
    queue: VecDeque<Pending>,
    /// Jobs holding a slot (initializing or running).
    active: HashSet<JobId>,
    closed: bool,
}

struct Shared {
    config: WorkerConfig,
    runtime: Runtime,
    store: Option<Store>,
    jobs: Mutex<Jobs>,
    subscribers: Mutex<Vec<Sender<StatusEvent>>>,
    recovery: Vec<RecoveryIssue>,
    /// Errors writing records, kept for `Worker::store_errors`.
    store_errors: Mutex<Vec<String>>,
    /// Set while some thread is starting queued jobs (see `pump`).
    pumping: AtomicBool,
    pump_again: AtomicBool,
}

/// Runs many jobs at once: a concurrency cap with a FIFO queue, a state
/// machine per job, status events, logs that any number of readers replay,
/// and (with a state directory) records and logs that survive restarts.
///
/// One reactor thread supervises every job of a worker; there is no thread
/// per job.
///
/// ```no_run
/// use jobcell::{Worker, WorkerConfig, Sandbox, Command, JobState};
///
/// let worker = Worker::new(WorkerConfig { max_concurrent: Some(2), ..Default::default() })?;
/// let events = worker.subscribe();
/// let job = worker.submit(&Sandbox::new(), Command::new("echo").arg("hi"))?;
/// assert_eq!(job.wait()?.state, JobState::Completed);
/// for e in events.try_iter() {
///     println!("{} is {}", e.id, e.state);
/// }
/// let record = worker.get(job.id()).unwrap();
/// assert_eq!(record.exit, Some(jobcell::Exit::Code(0)));
/// # Ok::<(), jobcell::Error>(())
/// ```
pub struct Worker {
    shared: Arc<Shared>,
}

/// Passes job state changes to the worker without keeping it alive.
struct WorkerObserver(Weak<Shared>);

impl Observer for WorkerObserver {
    fn changed(&self, job: &Arc<JobShared>, state: &JobState) {
        if let Some(s) = self.0.upgrade() {
            s.changed(job, state);
        }
    }

    fn released(&self, job: &Arc<JobShared>) {
        if let Some(s) = self.0.upgrade() {
            s.released(job);
        }
    }
}

impl Worker {
    /// Starts a worker. With a state directory, the jobs recorded there are
    /// listed again (with their logs); those that were running when the
    /// previous worker died are marked failed ("worker restarted"), and
    /// leftover cgroups of dead workers are removed. Unreadable records are
    /// skipped and reported by [`Worker::recovery_issues`].
    pub fn new(config: WorkerConfig) -> Result<Worker> {
        let store = match &config.state_dir {
            Some(d) => Some(Store::open(d)?),
            None => None,
        };
        let mut jobs = Jobs::default();
        let mut recovery = Vec::new();
        if let Some(store) = &store {
            let (records, issues) = store.load();
            recovery = issues;
            for mut rec in records {
                if !rec.state.is_final() {
                    rec.state = JobState::Failed {
                        reason: "worker restarted".into(),
                    };
                    rec.ended = Some(SystemTime::now());
                    if let Err(e) = store.write(&rec) {
                        recovery.push(RecoveryIssue {
                            path: store.log_path(&rec.id),
                            problem: e.to_string(),
                        });
                    }
                }
                let log = match store
                    .open_log(&rec.id)
                    .map(|f| Log::from_file(config.log_memory_budget, f))
                {
                    Ok(Ok(log)) => log,
                    Ok(Err(e)) => {
                        recovery.push(RecoveryIssue {
                            path: store.log_path(&rec.id),
                            problem: format!("unreadable log: {e}"),
                        });
                        Log::new(config.log_memory_budget)
                    }
                    Err(e) => {
                        recovery.push(RecoveryIssue {
                            path: store.log_path(&rec.id),
                            problem: e.to_string(),
                        });
                        Log::new(config.log_memory_budget)
                    }
                };
                let job = JobShared::restored(&rec, log);
                jobs.order.push(rec.id.clone());
                jobs.by_id.insert(rec.id.clone(), job);
            }
            // Cells of a dead worker died with it (their init watches the
            // worker); their cgroups could not, so sweep the default tree.
            let _ = crate::cgroup::sweep_stale_cgroups(None);
        }
        let runtime =
            Runtime::new("jobcell-worker").map_err(|e| Error::io("start reactor thread", "", e))?;
        Ok(Worker {
            shared: Arc::new(Shared {
                config,
                runtime,
                store,
                jobs: Mutex::new(jobs),
                subscribers: Mutex::new(Vec::new()),
                recovery,
                store_errors: Mutex::new(Vec::new()),
                pumping: AtomicBool::new(false),
                pump_again: AtomicBool::new(false),
            }),
        })
    }

    /// Submits a job. Input errors (a missing program, a bad path, a bad
    /// limit) are returned here and leave no record; anything that fails later
    /// (in the cell's setup) ends the job `Failed` with the reason.
    ///
    /// When the worker is at its cap, the job is queued ([`JobState::Queued`])
    /// or refused, as configured. The handle does not own the job: dropping it
    /// leaves the job running.
    pub fn submit(&self, sandbox: &Sandbox, command: &Command) -> Result<JobHandle> {
        spawn::validate(sandbox, command)?;
        let s = &self.shared;
        let id = JobId::generate();
        let log = match &s.store {
            Some(store) => Log::with_file(s.config.log_memory_budget, store.open_log(&id)?),
            None => Log::new(s.config.log_memory_budget),
        };
        let observer: Arc<dyn Observer> = Arc::new(WorkerObserver(Arc::downgrade(s)));
        let meta = JobMeta::new(command, &sandbox.limits);
        let mut g = s.jobs.lock();
        if g.closed {
            return Err(Error::Refused {
                reason: "the worker is shutting down".into(),
            });
        }
        let full = s.config.max_concurrent.is_some_and(|m| g.active.len() >= m);
        if full {
            if s.config.when_full == WhenFull::Refuse {
                return Err(Error::Refused {
                    reason: format!("all {} slots are busy", g.active.len()),
                });
            }
            if s.config.max_queued.is_some_and(|m| g.queue.len() >= m) {
                return Err(Error::Refused {
                    reason: format!("the queue is full ({} jobs)", g.queue.len()),
                });
            }
        }
        let job = JobShared::new(id.clone(), meta, log, Some(observer), JobState::Queued);
        g.order.push(id.clone());
        g.by_id.insert(id, job.clone());
        drop(g);
        // Announce (and persist) the job before anything can start it.
        s.changed(&job, &JobState::Queued);
        s.jobs.lock().queue.push_back(Pending {
            job: job.clone(),
            sandbox: sandbox.clone(),
            command: command.clone(),
        });
        s.pump();
        Ok(JobHandle {
            shared: job,
            kill_on_drop: false,
        })
    }

    /// The record of a job, if the worker knows it.
    pub fn get(&self, id: impl AsRef<str>) -> Option<JobRecord> {
        self.job(id.as_ref()).map(|j| j.record())
    }

    /// Every job's record, in submission order.
    pub fn list(&self) -> Vec<JobRecord> {
        let jobs: Vec<Arc<JobShared>> = {
            let g = self.shared.jobs.lock();
            g.order
                .iter()
                .filter_map(|id| g.by_id.get(id).cloned())
                .collect()
        };
        jobs.iter().map(|j| j.record()).collect()
    }

    /// A handle to a job (it does not own the job).
    pub fn handle(&self, id: impl AsRef<str>) -> Option<JobHandle> {
        self.job(id.as_ref()).map(|shared| JobHandle {
            shared,
            kill_on_drop: false,
        })
    }

    /// Stops a job: a queued job ends at once; a running one gets SIGTERM
    /// (passed to every process of its cell, with SIGCONT so that a stopped
    /// job can act on it), then SIGKILL of the whole cell after the grace
    /// period. Its verdict is [`JobState::Stopped`].
    ///
    /// Errors: [`Error::NoSuchJob`], or [`Error::AlreadyFinished`].
    pub fn stop(&self, id: impl AsRef<str>) -> Result<()> {
        let id = id.as_ref();
        let job = self
            .job(id)
            .ok_or_else(|| Error::NoSuchJob { id: id.to_string() })?;
        let s = &self.shared;
        let queued = {
            let mut g = s.jobs.lock();
            let pos = g.queue.iter().position(|p| Arc::ptr_eq(&p.job, &job));
            pos.and_then(|i| g.queue.remove(i))
        };
        if let Some(p) = queued {
            p.job.finish(never_ran(JobState::Stopped));
            return Ok(());
        }
        if job.state().is_final() {
            return Err(Error::AlreadyFinished { id: id.to_string() });
        }
        if !job.kill_reason_set(crate::job::KillReason::Stopped) {
            return Err(Error::AlreadyFinished { id: id.to_string() });
        }
        if s.config.stop_grace.is_zero() || !job.terminate() {
            job.kill(crate::job::KillReason::Stopped)?;
        } else {
            s.runtime.reactor.kill_after(&job, s.config.stop_grace);
        }
        Ok(())
    }

    /// A reader of a job's output, replaying from the start (see [`LogReader`]
    /// for offsets and snapshots).
    pub fn logs(&self, id: impl AsRef<str>) -> Result<LogReader> {
        let id = id.as_ref();
        let job = self
            .job(id)
            .ok_or_else(|| Error::NoSuchJob { id: id.to_string() })?;
        Ok(LogReader::new(job.log.clone()))
    }

    /// Live usage of a running job (final usage once it has ended); `None`
    /// when the job has no cgroup.
    pub fn usage(&self, id: impl AsRef<str>) -> Result<Option<Usage>> {
        let id = id.as_ref();
        let job = self
            .job(id)
            .ok_or_else(|| Error::NoSuchJob { id: id.to_string() })?;
        Ok(job.usage())
    }

    /// A receiver of every state change of every job from now on, in order
    /// for each job.
    pub fn subscribe(&self) -> Receiver<StatusEvent> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.shared.subscribers.lock().push(tx);
        rx
    }

    /// Problems found in the state directory at start-up (skipped files).
    pub fn recovery_issues(&self) -> &[RecoveryIssue] {
        &self.shared.recovery
    }

    /// Records that could not be written since start-up (the jobs went on).
    pub fn store_errors(&self) -> Vec<String> {
        self.shared.store_errors.lock().clone()
    }

    /// How many jobs hold a slot now.
    pub fn running(&self) -> usize {
        self.shared.jobs.lock().active.len()
    }

    /// Refuses new jobs, ends queued ones, stops running ones (SIGTERM, then
    /// SIGKILL after `grace`), and waits until every job has ended and its
    /// record is written.
    pub fn shutdown(&self, grace: Duration) {
        let s = &self.shared;
        let (queued, running): (Vec<Pending>, Vec<Arc<JobShared>>) = {
            let mut g = s.jobs.lock();
            g.closed = true;
            let queued = g.queue.drain(..).collect();
            let running = g
                .active
                .iter()
                .filter_map(|id| g.by_id.get(id).cloned())
                .collect();
            (queued, running)
        };
        for p in queued {
            p.job.finish(never_ran(JobState::Stopped));
        }
        for job in &running {
            if job.kill_reason_set(crate::job::KillReason::Stopped) {
                if grace.is_zero() || !job.terminate() {
                    let _ = job.kill(crate::job::KillReason::Stopped);
                } else {
                    s.runtime.reactor.kill_after(job, grace);
                }
            }
        }
        for job in &running {
            let _ = job.wait_final(None);
        }
    }

    fn job(&self, id: &str) -> Option<Arc<JobShared>> {
        let id: JobId = id.parse().ok()?;
        self.shared.jobs.lock().by_id.get(&id).cloned()
    }
}

impl Drop for Worker {
    /// A worker's jobs do not outlive it: dropping it stops them at once.
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
        self.shared.runtime.reactor.shutdown();
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.shared.config)
            .field("running", &self.running())
            .finish()
    }
}

/// The outcome of a job that never ran.
fn never_ran(state: JobState) -> Outcome {
    Outcome {
        state,
        exit: None,
        wall_time: Duration::ZERO,
        rusage: Default::default(),
        usage: None,
        oom_killed: false,
    }
}

impl Shared {
    /// Every state change of every job passes here: persist and publish
    /// (a final one before the job's waiters wake).
    fn changed(self: &Arc<Self>, job: &Arc<JobShared>, state: &JobState) {
        if let Some(store) = &self.store {
            if let Err(e) = store.write(&job.record()) {
                self.store_errors.lock().push(e.to_string());
            }
        }
        let event = StatusEvent {
            id: job.id.clone(),
            state: state.clone(),
            time: SystemTime::now(),
        };
        self.subscribers
            .lock()
            .retain(|tx| tx.send(event.clone()).is_ok());
    }

    /// A finished job's waiters are awake: its slot goes to the next in the
    /// queue (starting one takes a spawn, which no waiter should wait for).
    fn released(self: &Arc<Self>, job: &Arc<JobShared>) {
        let freed = self.jobs.lock().active.remove(&job.id);
        if freed {
            self.pump();
        }
    }

    /// Starts queued jobs while slots are free. Re-entrant calls (a start
    /// that fails finishes its job, which calls back here) only ask the
    /// running pump to look again, so the stack never grows with the queue.
    fn pump(self: &Arc<Self>) {
        self.pump_again.store(true, Ordering::SeqCst);
        loop {
            if self.pumping.swap(true, Ordering::SeqCst) {
                return; // someone else is pumping and will see pump_again
            }
            while self.pump_again.swap(false, Ordering::SeqCst) {
                loop {
                    let next = {
                        let mut g = self.jobs.lock();
                        let free = self
                            .config
                            .max_concurrent
                            .is_none_or(|m| g.active.len() < m);
                        if !free || g.closed {
                            None
                        } else {
                            let p = g.queue.pop_front();
                            if let Some(p) = &p {
                                g.active.insert(p.job.id.clone());
                            }
                            p
                        }
                    };
                    let Some(p) = next else { break };
                    p.job.set_state(JobState::Initializing);
                    if let Err(e) = self.runtime.start(&p.job, &p.sandbox, &p.command) {
                        p.job.finish(never_ran(JobState::Failed {
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            self.pumping.store(false, Ordering::SeqCst);
            // A request that came in after our last look but before we let go.
            if !self.pump_again.load(Ordering::SeqCst) {
                return;
            }
        }
    }
}
