//! `Worker`: many jobs, a concurrency cap with a FIFO queue, status
//! subscriptions, persistence and retention.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::job::log::{Log, LogReader};
use crate::job::{
    JobHandle, JobId, JobMeta, JobShared, JobState, Observer, Outcome, Snapshot, Usage,
};
use crate::sandbox::{Command, Sandbox};
use crate::spawn;
use crate::worker::record::{JobRecord, RecoveryIssue, StatusEvent};
use crate::worker::store::Store;
use crate::worker::Runtime;
use crate::worker::{WhenFull, WorkerConfig};

/// A job waiting for a slot.
struct Pending {
    job: Arc<JobShared>,
    sandbox: Sandbox,
    command: Command,
}

#[derive(Default)]
struct Jobs {
    /// Jobs that have not finished, and (without a state directory) finished
    /// ones. With a state directory a finished job is only on disk.
    by_id: HashMap<JobId, Arc<JobShared>>,
    /// Every known job's id, in submission order (restored jobs first).
    order: VecDeque<JobId>,
    /// Finished jobs in the order they ended, for retention (kept only when
    /// retention has a bound).
    finished: VecDeque<(JobId, SystemTime)>,
    queue: VecDeque<Pending>,
    /// Jobs holding a slot (initializing or running).
    active: HashSet<JobId>,
    closed: bool,
    /// Submissions accepted but not queued yet: `shutdown` waits for them.
    accepting: usize,
}

/// The thread that starts queued jobs when slots free up (the reactor must
/// never wait for a cell's setup) and removes what retention lets go.
/// Started on first need.
struct Starter {
    wake: Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// The thread that records and publishes the end of jobs the reactor has
/// finished (writes and syncs that may be slow: a busy disk, a hung network
/// file system), so that supervision never waits for them. Started on first
/// need.
struct Finisher {
    jobs: Sender<(Arc<JobShared>, Outcome)>,
    thread: std::thread::JoinHandle<()>,
}

/// Errors kept for `Worker::store_errors`: the most recent ones.
const STORE_ERRORS_KEPT: usize = 100;

struct Shared {
    config: WorkerConfig,
    runtime: Runtime,
    store: Option<Store>,
    /// Where logs go: the state directory's `logs/`, or a private temporary directory.
    logs_dir: PathBuf,
    _private_logs: Option<tempfile::TempDir>,
    jobs: Mutex<Jobs>,
    /// Signalled when `Jobs::accepting` drops.
    accepted: Condvar,
    subscribers: Mutex<Vec<Sender<StatusEvent>>>,
    recovery: Vec<RecoveryIssue>,
    /// Errors writing records and logs, kept for `Worker::store_errors`.
    store_errors: Mutex<VecDeque<String>>,
    /// Set while some thread is starting queued jobs (see `pump`).
    pumping: AtomicBool,
    pump_again: AtomicBool,
    starter: Mutex<Option<Starter>>,
    finisher: Mutex<Option<Finisher>>,
    /// Held while retention removes jobs (see `retire`).
    retiring: Mutex<()>,
}

/// Runs many jobs at once: a concurrency cap with a FIFO queue, a state
/// machine per job, status events, logs that any number of readers replay,
/// and (with a state directory) records and logs that survive restarts.
///
/// One reactor thread supervises every job of a worker; there is no thread
/// per job. Queued jobs are started by the thread that submits them or, when
/// a slot frees up, by one starter thread, never by the reactor. What a
/// worker holds is bounded by what runs: a finished job holds no descriptor
/// and no log memory (see [`Retention`](crate::Retention) for its record).
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
    fn changed(&self, job: &Arc<JobShared>, now: &Snapshot) {
        if let Some(s) = self.0.upgrade() {
            s.changed(job, now);
        }
    }

    fn released(&self, job: &Arc<JobShared>) {
        if let Some(s) = self.0.upgrade() {
            s.released(job);
        }
    }

    fn finish_later(&self, job: &Arc<JobShared>, outcome: Outcome) -> Option<Outcome> {
        match self.0.upgrade() {
            Some(s) => s.finish_later(job, outcome),
            None => Some(outcome),
        }
    }
}

impl Worker {
    /// Starts a worker. With a state directory, the jobs recorded there are
    /// listed again (with their logs); those that were running when the
    /// previous worker died are marked failed ("worker restarted"), and
    /// leftover cgroups of dead workers are removed. Unreadable records are
    /// skipped and reported by [`Worker::recovery_issues`]. Restored jobs
    /// hold no descriptor and stay on disk: starting costs a read of each
    /// record, nothing more.
    pub fn new(config: WorkerConfig) -> Result<Worker> {
        let store = match &config.state_dir {
            Some(d) => Some(Store::open(d)?),
            None => None,
        };
        let (logs_dir, private_logs) = match (&store, &config.state_dir) {
            (Some(_), Some(d)) => (d.join("logs"), None),
            _ => {
                let tmp = tempfile::Builder::new()
                    .prefix("jobcell-logs-")
                    .tempdir()
                    .map_err(|e| Error::io("create a log directory", std::env::temp_dir(), e))?;
                (tmp.path().to_path_buf(), Some(tmp))
            }
        };
        let mut jobs = Jobs::default();
        let mut recovery = Vec::new();
        if let Some(store) = &store {
            let (records, issues) = store.load();
            recovery = issues;
            let mut finished = Vec::new();
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
                if config.retention.bounded() {
                    finished.push((rec.id.clone(), rec.ended.unwrap_or(rec.created)));
                }
                jobs.order.push_back(rec.id);
            }
            finished.sort_by_key(|(_, ended)| *ended);
            jobs.finished = finished.into();
            // Cells of a dead worker died with it (their init watches the
            // worker); their cgroups could not, so sweep the default tree.
            let _ = crate::cgroup::sweep_stale_cgroups(None);
        }
        let runtime =
            Runtime::new("jobcell-worker").map_err(|e| Error::io("start reactor thread", "", e))?;
        let worker = Worker {
            shared: Arc::new(Shared {
                config,
                runtime,
                store,
                logs_dir,
                _private_logs: private_logs,
                jobs: Mutex::new(jobs),
                accepted: Condvar::new(),
                subscribers: Mutex::new(Vec::new()),
                recovery,
                store_errors: Mutex::new(VecDeque::new()),
                pumping: AtomicBool::new(false),
                pump_again: AtomicBool::new(false),
                starter: Mutex::new(None),
                finisher: Mutex::new(None),
                retiring: Mutex::new(()),
            }),
        };
        worker.shared.retire();
        Ok(worker)
    }

    /// Submits a job. Input errors (a missing program, a bad path, a bad
    /// limit) are returned here and leave no record; anything that fails later
    /// (in the cell's setup) ends the job `Failed` with the reason. A refused
    /// job leaves nothing either: no record, no log file.
    ///
    /// When the worker is at its cap, the job is queued ([`JobState::Queued`])
    /// or refused, as configured. The handle does not own the job: dropping it
    /// leaves the job running.
    pub fn submit(&self, sandbox: &Sandbox, command: &Command) -> Result<JobHandle> {
        spawn::validate(sandbox, command)?;
        let s = &self.shared;
        let id = JobId::generate();
        // The file is created by the job's first output, not here.
        let log = Log::persistent(s.config.log_memory_budget, s.log_path(&id));
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
        g.order.push_back(id.clone());
        g.by_id.insert(id, job.clone());
        // Accepted: from here on, shutdown waits until the job is queued.
        g.accepting += 1;
        drop(g);
        // Announce (and persist) the job before anything can start it.
        s.changed(&job, &job.snapshot());
        let mut g = s.jobs.lock();
        g.queue.push_back(Pending {
            job: job.clone(),
            sandbox: sandbox.clone(),
            command: command.clone(),
        });
        g.accepting -= 1;
        drop(g);
        s.accepted.notify_all();
        s.pump();
        s.retire();
        Ok(JobHandle {
            shared: job,
            kill_on_drop: false,
        })
    }

    /// The record of a job, if the worker knows it.
    pub fn get(&self, id: impl AsRef<str>) -> Option<JobRecord> {
        let id: JobId = id.as_ref().parse().ok()?;
        let live = self.shared.jobs.lock().by_id.get(&id).cloned();
        match live {
            Some(j) => Some(JobRecord::now(&j)),
            None => self.shared.store.as_ref()?.read(&id),
        }
    }

    /// Every job's record, in submission order. With a state directory,
    /// finished jobs' records are read from it.
    pub fn list(&self) -> Vec<JobRecord> {
        let s = &self.shared;
        s.retire();
        let (ids, live): (Vec<JobId>, HashMap<JobId, Arc<JobShared>>) = {
            let g = s.jobs.lock();
            (g.order.iter().cloned().collect(), g.by_id.clone())
        };
        ids.iter()
            .filter_map(|id| match live.get(id) {
                Some(j) => Some(JobRecord::now(j)),
                None => s.store.as_ref()?.read(id),
            })
            .collect()
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
    /// job can act on it), then is killed after the grace period. Its
    /// verdict is [`JobState::Stopped`].
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

    /// Removes a finished job: its record and its log, from memory and from
    /// the state directory. A reader of its log that exists already reads
    /// on; new ones cannot be made.
    ///
    /// ```no_run
    /// # let worker = jobcell::Worker::new(Default::default())?;
    /// let job = worker.submit(&jobcell::Sandbox::new(), &jobcell::Command::new("true"))?;
    /// job.wait()?;
    /// worker.remove(job.id())?;
    /// assert!(worker.get(job.id()).is_none());
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    ///
    /// Errors: [`Error::NoSuchJob`], or [`Error::NotFinished`] for a job
    /// that is queued or running (stop it first).
    pub fn remove(&self, id: impl AsRef<str>) -> Result<()> {
        let raw = id.as_ref();
        let no_such = || Error::NoSuchJob {
            id: raw.to_string(),
        };
        let id: JobId = raw.parse().map_err(|_| no_such())?;
        let s = &self.shared;
        {
            let mut g = s.jobs.lock();
            if let Some(j) = g.by_id.get(&id) {
                if !j.state().is_final() {
                    return Err(Error::NotFinished {
                        id: raw.to_string(),
                    });
                }
            }
            let pos = g.order.iter().position(|o| *o == id).ok_or_else(no_such)?;
            g.order.remove(pos);
            g.by_id.remove(&id);
            if let Some(i) = g.finished.iter().position(|(o, _)| *o == id) {
                g.finished.remove(i);
            }
        }
        s.delete(&id)
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

    /// The most recent (up to 100) records and logs that could not be
    /// written since start-up (the jobs went on; a job whose log is
    /// incomplete on disk says so in its record's `log_error`).
    pub fn store_errors(&self) -> Vec<String> {
        self.shared.store_errors.lock().iter().cloned().collect()
    }

    /// How many jobs hold a slot now.
    pub fn running(&self) -> usize {
        self.shared.jobs.lock().active.len()
    }

    /// Refuses new jobs, stops running ones (SIGTERM at once, a kill after
    /// `grace`), ends queued ones, and waits until every job has ended and
    /// its record is written. Every job accepted before it returns is final.
    pub fn shutdown(&self, grace: Duration) {
        let s = &self.shared;
        let (queued, running): (Vec<Pending>, Vec<Arc<JobShared>>) = {
            let mut g = s.jobs.lock();
            g.closed = true;
            // A submission that was accepted before `closed` is queued first.
            while g.accepting > 0 {
                s.accepted.wait(&mut g);
            }
            let queued = g.queue.drain(..).collect();
            let running = g
                .active
                .iter()
                .filter_map(|id| g.by_id.get(id).cloned())
                .collect();
            (queued, running)
        };
        // The running jobs' grace starts now, not after the queue's records
        // are written and synced (a long queue takes a while).
        for job in &running {
            if job.kill_reason_set(crate::job::KillReason::Stopped) {
                if grace.is_zero() || !job.terminate() {
                    let _ = job.kill(crate::job::KillReason::Stopped);
                } else {
                    s.runtime.reactor.kill_after(job, grace);
                }
            }
        }
        for p in queued {
            p.job.finish(never_ran(JobState::Stopped));
        }
        for job in &running {
            let _ = job.wait_final(None);
        }
    }

    /// A job's shared state: live, or a finished one read back from disk.
    fn job(&self, id: &str) -> Option<Arc<JobShared>> {
        let id: JobId = id.parse().ok()?;
        let s = &self.shared;
        if let Some(j) = s.jobs.lock().by_id.get(&id).cloned() {
            return Some(j);
        }
        let rec = s.store.as_ref()?.read(&id)?;
        Some(rec.restore(Log::restored(s.log_path(&id))))
    }
}

impl Drop for Worker {
    /// A worker's jobs do not outlive it: dropping it stops them at once.
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
        self.shared.runtime.reactor.shutdown();
        let starter = self.shared.starter.lock().take();
        if let Some(st) = starter {
            drop(st.wake);
            if st.thread.thread().id() != std::thread::current().id() {
                let _ = st.thread.join();
            }
        }
        let finisher = self.shared.finisher.lock().take();
        if let Some(f) = finisher {
            drop(f.jobs);
            if f.thread.thread().id() != std::thread::current().id() {
                let _ = f.thread.join();
            }
        }
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
        pids_limited: false,
    }
}

impl Shared {
    fn log_path(&self, id: &JobId) -> PathBuf {
        self.logs_dir.join(format!("{id}.log"))
    }

    fn store_error(&self, e: String) {
        let mut errors = self.store_errors.lock();
        if errors.len() == STORE_ERRORS_KEPT {
            errors.pop_front();
        }
        errors.push_back(e);
    }

    /// Every state change of every job passes here: persist and publish
    /// (a final one before anyone can see the job as ended).
    fn changed(self: &Arc<Self>, job: &Arc<JobShared>, now: &Snapshot) {
        let rec = &JobRecord::of(job, now);
        if let Some(store) = &self.store {
            if let Err(e) = store.write(rec) {
                self.store_error(e.to_string());
            }
        }
        if rec.state.is_final() {
            if let Some(e) = &rec.log_error {
                self.store_error(format!("job {}: {e}", rec.id));
            }
            // Counted for retention before its waiters wake (a `list` made
            // after `wait()` returns reflects it); the removal itself, a few
            // syncs, is the starter thread's: this may be the reactor.
            if self.config.retention.bounded() {
                let ended = rec.ended.unwrap_or_else(SystemTime::now);
                let due = {
                    let mut g = self.jobs.lock();
                    g.finished.push_back((rec.id.clone(), ended));
                    self.retire_due(&g, SystemTime::now())
                };
                if due {
                    self.wake_starter();
                }
            }
        }
        let event = StatusEvent {
            id: rec.id.clone(),
            state: rec.state.clone(),
            time: SystemTime::now(),
        };
        self.subscribers
            .lock()
            .retain(|tx| tx.send(event.clone()).is_ok());
    }

    /// A finished job's waiters are awake: it lets go of its slot and (with
    /// a state directory) of memory, and the starter thread starts the next
    /// queued job (this may be the reactor thread, which must not wait for a
    /// setup).
    fn released(self: &Arc<Self>, job: &Arc<JobShared>) {
        let queued = {
            let mut g = self.jobs.lock();
            let freed = g.active.remove(&job.id);
            if self.store.is_some() {
                g.by_id.remove(&job.id);
            }
            freed && !g.queue.is_empty() && !g.closed
        };
        if queued {
            self.wake_starter();
        }
    }

    /// Whether the oldest finished job is beyond the retention bounds.
    fn retire_due(&self, g: &Jobs, now: SystemTime) -> bool {
        let r = self.config.retention;
        let Some((_, ended)) = g.finished.front() else {
            return false;
        };
        r.max_finished.is_some_and(|m| g.finished.len() > m)
            || r.max_age
                .is_some_and(|a| now.duration_since(*ended).unwrap_or_default() > a)
    }

    /// Removes finished jobs beyond the retention bounds.
    fn retire(&self) {
        if !self.config.retention.bounded() {
            return;
        }
        // Held until the files are gone: whoever returns from here finds
        // them gone, whichever thread removed them.
        let _retiring = self.retiring.lock();
        let now = SystemTime::now();
        let mut gone = Vec::new();
        {
            let mut g = self.jobs.lock();
            while self.retire_due(&g, now) {
                let (id, _) = g.finished.pop_front().expect("a front");
                g.by_id.remove(&id);
                if let Some(pos) = g.order.iter().position(|o| *o == id) {
                    g.order.remove(pos);
                }
                gone.push(id);
            }
        }
        for id in gone {
            if let Err(e) = self.delete(&id) {
                self.store_error(e.to_string());
            }
        }
    }

    /// Deletes a removed job's files.
    fn delete(&self, id: &JobId) -> Result<()> {
        match &self.store {
            Some(store) => store.remove(id),
            None => match std::fs::remove_file(self.log_path(id)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io("remove", self.log_path(id), e))
                }
                _ => Ok(()),
            },
        }
    }

    /// Hands a finished job to the finisher thread, starting it if need be.
    fn finish_later(&self, job: &Arc<JobShared>, outcome: Outcome) -> Option<Outcome> {
        let mut f = self.finisher.lock();
        if f.is_none() {
            let (tx, rx) = crossbeam_channel::unbounded::<(Arc<JobShared>, Outcome)>();
            let spawned = std::thread::Builder::new()
                .name("jobcell-finisher".into())
                .spawn(move || {
                    for (job, outcome) in rx {
                        job.finish(outcome);
                    }
                });
            match spawned {
                Ok(thread) => *f = Some(Finisher { jobs: tx, thread }),
                Err(_) => return Some(outcome), // finished in place
            }
        }
        let tx = &f.as_ref().expect("started").jobs;
        tx.send((job.clone(), outcome))
            .err()
            .map(|e| e.into_inner().1)
    }

    /// Asks the starter thread to start queued jobs, starting it if need be.
    fn wake_starter(self: &Arc<Self>) {
        let mut st = self.starter.lock();
        if st.is_none() {
            let (tx, rx) = crossbeam_channel::unbounded::<()>();
            let weak = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("jobcell-starter".into())
                .spawn(move || {
                    while rx.recv().is_ok() {
                        while rx.try_recv().is_ok() {}
                        match weak.upgrade() {
                            Some(s) => {
                                s.retire();
                                s.pump();
                            }
                            None => return,
                        }
                    }
                });
            match spawned {
                Ok(thread) => *st = Some(Starter { wake: tx, thread }),
                Err(e) => {
                    // No thread to be had: the queue and retention wait for
                    // the next submission, which pumps and retires too.
                    drop(st);
                    self.store_error(format!("start the starter thread: {e}"));
                    return;
                }
            }
        }
        if let Some(st) = st.as_ref() {
            let _ = st.wake.send(());
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
