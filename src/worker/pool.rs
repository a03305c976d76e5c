//! Cells made ahead: [`Sandbox::prepare`] and its [`Pool`].
//!
//! A pool holds up to `n` cells of one sandbox whose namespaces, root,
//! cgroup and init exist already (see `spawn/ahead.rs`); [`Pool::spawn`]
//! takes one, and only sends it the command. One thread of the process
//! (`jobcell-pools`, started with the first pool) refills every pool, at
//! the lowest priority; a pool no spawn has taken from for
//! [`IDLE`](crate::spawn::prep::IDLE) gives its cells back but one, and
//! fills again from its next spawn.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::runtime::{default_runtime, resources};
use crate::cgroup::{self, CgroupJoin, JobCgroup};
use crate::error::{Error, Result};
use crate::job::log::Log;
use crate::job::{JobHandle, JobId, JobMeta, JobShared, JobState, DEFAULT_MEMORY_BUDGET};
use crate::sandbox::{Command, Sandbox};
use crate::spawn::ahead::{Made, NotRun};
use crate::spawn::prep::IDLE;

/// The most cells one pool may hold ready. Each ready cell holds 4
/// descriptors of this process (5 on cgroup v2) and one process: a full
/// pool of this size fits under the common soft `RLIMIT_NOFILE` of 1024
/// with room to spare.
///
/// ```
/// let e = jobcell::Sandbox::new().prepare(jobcell::MAX_POOL_CELLS + 1).unwrap_err();
/// assert!(matches!(e, jobcell::Error::InvalidSetting { .. }));
/// ```
pub const MAX_POOL_CELLS: usize = 128;

/// Cells made ahead for one [`Sandbox`]: spawning from a pool only sends the
/// command to a cell that is already built, and waits for its `execve`.
///
/// Made by [`Sandbox::prepare`]. Every cell serves exactly one job and is
/// never used again; the pool refills in the background (one thread for
/// every pool of the process, at the lowest priority), keeps only one
/// ready cell once no spawn took from it for 5 seconds (and fills again
/// from the next spawn), and kills every cell it still holds when dropped
/// or when the process exits. A job
/// from a pool is the job a fresh spawn would have started: the same
/// [`JobHandle`], limits, timers (counted from the spawn, not from the
/// cell's making), logs and verdicts.
///
/// `Pool` is `Send` and `Sync`: threads may share one (in an `Arc`).
///
/// ```
/// use jobcell::{Command, Sandbox};
///
/// let pool = Sandbox::new().prepare(2)?;
/// for word in ["one", "two", "three"] {
///     let job = pool.spawn(Command::new("echo").arg(word))?;
///     assert!(job.wait()?.success());
/// }
/// # Ok::<(), jobcell::Error>(())
/// ```
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    sandbox: Sandbox,
    size: usize,
    state: Mutex<State>,
    /// Jobs run in a cell made ahead, and in a fresh cell.
    taken: AtomicU64,
    fresh: AtomicU64,
}

struct State {
    ready: VecDeque<Entry>,
    /// Cells being made for this pool now.
    making: usize,
    /// When the pool was made or last spawned from.
    last_use: Instant,
    /// Idle: it keeps one cell ready rather than its size, until the next spawn.
    resting: bool,
    /// Cells taken by spawns that may still hand them back (see `Pool::spawn`).
    taking: usize,
    /// The pool was dropped: nothing more is made for it.
    closed: bool,
    /// Making a cell failed this many times in a row, the last at this time.
    failed: Option<(u32, Instant)>,
}

impl State {
    /// Whether the filler should make a cell for this pool now.
    fn wants(&self, size: usize) -> bool {
        let target = if self.resting { 1 } else { size };
        !self.closed
            && self.ready.len() + self.making + self.taking < target
            && self
                .failed
                .is_none_or(|(times, at)| Instant::now() >= at + backoff(times))
    }
}

/// How long to wait before making a cell again after `times` failures in a row.
fn backoff(times: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << times.min(7))).min(Duration::from_secs(30))
}

/// A cell made ahead with the job id and cgroup it was made for. Dropped
/// unused: its init is killed and reaped, then its cgroup removed.
struct Entry {
    made: Option<Made>,
    id: JobId,
    cgroup: Option<Arc<JobCgroup>>,
}

impl Entry {
    fn new(sandbox: &Sandbox) -> Result<Entry> {
        let id = JobId::generate();
        let limits = &sandbox.limits;
        let cgroup = if sandbox.accounting || limits.needs_cgroup() {
            cgroup::create_job(
                sandbox.cgroup_base.as_deref(),
                id.as_str(),
                &resources(limits),
                sandbox.accounting,
                // The cgroups cells are made in are made ahead too (cgroup
                // v1's ready directories), by the preparation thread.
                crate::spawn::prep::ahead,
            )?
            .map(Arc::new)
        } else {
            None
        };
        match Made::new(sandbox, cgroup.as_deref().map(|c| c as &dyn CgroupJoin)) {
            Ok(made) => Ok(Entry {
                made: Some(made),
                id,
                cgroup,
            }),
            Err(e) => {
                if let Some(cg) = &cgroup {
                    cg.remove();
                }
                Err(e)
            }
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        // The cell first (its processes leave the cgroup), then the cgroup.
        drop(self.made.take());
        if let Some(cg) = self.cgroup.take() {
            cg.remove();
        }
    }
}

impl Sandbox {
    /// Makes a [`Pool`] of up to `n` cells of this sandbox, made ahead of the
    /// jobs that will take them: spawning from it only sends the command to
    /// a cell that is built already.
    ///
    /// Returns once the first cell is ready (its error, if it cannot be
    /// made: the error a spawn would have had); the others are made in the
    /// background. The pool keeps a copy of the sandbox: changing `self`
    /// afterwards does not change the pool's cells. `n` must be between 1
    /// and [`MAX_POOL_CELLS`].
    ///
    /// ```
    /// use jobcell::{Command, Limits, Sandbox};
    ///
    /// let mut sandbox = Sandbox::untrusted();
    /// sandbox.limits(Limits { memory: Some(128 << 20), ..Limits::conservative() });
    /// let pool = sandbox.prepare(4)?;
    /// let job = pool.spawn(Command::new("sh").args(["-c", "echo ready"]))?;
    /// let outcome = job.wait()?;
    /// assert!(outcome.success());
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn prepare(&self, n: usize) -> Result<Pool> {
        if n == 0 || n > MAX_POOL_CELLS {
            return Err(Error::InvalidSetting {
                name: "pool size",
                value: n.to_string(),
                reason: format!("must be between 1 and {MAX_POOL_CELLS}"),
            });
        }
        // The runtime that will supervise the pool's jobs, up before any cell.
        default_runtime()?;
        let first = Entry::new(self)?;
        let shared = Arc::new(Shared {
            sandbox: self.clone(),
            size: n,
            state: Mutex::new(State {
                ready: VecDeque::from([first]),
                making: 0,
                last_use: Instant::now(),
                resting: false,
                taking: 0,
                closed: false,
                failed: None,
            }),
            taken: AtomicU64::new(0),
            fresh: AtomicU64::new(0),
        });
        filler().add(&shared);
        Ok(Pool { shared })
    }
}

impl Pool {
    /// Starts `command` in a cell of the pool and returns once its program
    /// has been executed, as [`Sandbox::spawn`] does, with the same checks
    /// and errors.
    ///
    /// Takes a ready cell when there is one, and runs `command` in a fresh
    /// cell of the pool's sandbox otherwise (every cell is taken and none is
    /// made yet, or the command does not fit a cell made ahead:
    /// see `docs/architecture.md`, *Cells made ahead*). A cell whose init
    /// died (someone killed it) is never handed out: it is removed and the
    /// next one taken. The job's wall time counts from this call.
    ///
    /// ```
    /// use jobcell::{Command, Output, Sandbox, Stdin};
    ///
    /// let pool = Sandbox::new().prepare(1)?;
    /// let mut command = Command::new("tr");
    /// command.args(["a-z", "A-Z"]).stdin(Stdin::bytes("shout\n")).stderr(Output::Discard);
    /// let job = pool.spawn(&command)?;
    /// let out: Vec<u8> = job.logs().flat_map(|chunk| chunk.data.to_vec()).collect();
    /// assert_eq!(out, b"SHOUT\n");
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn spawn(&self, command: &Command) -> Result<JobHandle> {
        let shared = &self.shared;
        let sandbox = &shared.sandbox;
        let runtime = default_runtime()?;
        // A spawn like any other: the process is busy, and what is made
        // ahead for every cell (network namespaces, cgroup v1's ready
        // directories) stays, and serves the pool's refills too.
        let _ = crate::spawn::prep::demand();
        loop {
            let entry = {
                let mut g = shared.state.lock();
                g.last_use = Instant::now();
                g.resting = false;
                let entry = g.ready.pop_front();
                g.taking += entry.is_some() as usize;
                entry
            };
            let Some(mut entry) = entry else {
                filler().wake();
                shared.fresh.fetch_add(1, Ordering::Relaxed);
                return sandbox.spawn(command);
            };
            // Whatever becomes of the cell, it is no longer being taken;
            // one handed back goes to the front, and the filler makes up
            // for the others.
            let settle = |entry: Option<Entry>| {
                let mut g = shared.state.lock();
                g.taking -= 1;
                if let Some(entry) = entry {
                    g.ready.push_front(entry);
                }
                drop(g);
                filler().wake();
            };
            let made = entry.made.take().expect("a ready entry holds its cell");
            if !made.alive() {
                // Killed while it waited: never handed out.
                entry.made = Some(made);
                drop(entry);
                settle(None);
                continue;
            }
            let job = match made.plan(sandbox, command) {
                Ok(job) => job,
                Err(e) => {
                    // The command is refused as a fresh spawn would refuse
                    // it; the cell saw nothing of it and stays ready.
                    entry.made = Some(made);
                    settle(Some(entry));
                    return Err(e);
                }
            };
            match made.go(sandbox, command, &job) {
                Ok(spawned) => {
                    let shared_job = JobShared::new(
                        entry.id.clone(),
                        JobMeta::new(command, &sandbox.limits),
                        Log::new(DEFAULT_MEMORY_BUDGET),
                        None,
                        JobState::Initializing,
                    );
                    let cg = entry.cgroup.take();
                    drop(entry);
                    settle(None);
                    shared.taken.fetch_add(1, Ordering::Relaxed);
                    runtime.supervise(&shared_job, spawned, cg, &sandbox.limits);
                    return Ok(JobHandle {
                        shared: shared_job,
                        kill_on_drop: true,
                    });
                }
                Err(NotRun::Refused(made, e)) => {
                    entry.made = Some(*made);
                    settle(Some(entry));
                    return Err(e);
                }
                Err(NotRun::Unfit(made)) => {
                    entry.made = Some(*made);
                    settle(Some(entry));
                    shared.fresh.fetch_add(1, Ordering::Relaxed);
                    return sandbox.spawn(command);
                }
                // Died before its job forked: the next cell, or a fresh one.
                Err(NotRun::Dead) => {
                    drop(entry);
                    settle(None);
                    continue;
                }
                Err(NotRun::Failed(e)) => {
                    drop(entry);
                    settle(None);
                    return Err(e);
                }
            }
        }
    }

    /// How many cells are ready now (made, alive or not yet checked).
    ///
    /// ```
    /// let pool = jobcell::Sandbox::new().prepare(1)?;
    /// assert!(pool.ready() <= 1);
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn ready(&self) -> usize {
        self.shared.state.lock().ready.len()
    }

    /// Jobs this pool ran in cells made ahead, and in fresh cells (tests).
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.shared.taken.load(Ordering::Relaxed),
            self.shared.fresh.load(Ordering::Relaxed),
        )
    }

    /// How many cells the pool keeps ready (the `n` of [`Sandbox::prepare`]).
    ///
    /// ```
    /// let pool = jobcell::Sandbox::new().prepare(3)?;
    /// assert_eq!(pool.capacity(), 3);
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.shared.size
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("capacity", &self.shared.size)
            .field("ready", &self.ready())
            .finish()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let cells = {
            let mut g = self.shared.state.lock();
            g.closed = true;
            std::mem::take(&mut g.ready)
        };
        // Each is killed, reaped and its cgroup removed before this returns.
        drop(cells);
        filler().wake();
        // A cell being made for the pool now is dropped by the filler when
        // made (its setup is bounded by the setup timeout): wait for it, so
        // that nothing of the pool outlives this call.
        let until = Instant::now() + self.shared.sandbox.setup_timeout + Duration::from_secs(5);
        while self.shared.state.lock().making > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Added after every cell the filler makes, before the pool gets it
/// (tests: `__private::delay_pool_cells`).
static MADE_DELAY_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Makes the filler hold every cell it made `delay` longer before the pool
/// gets it (tests of what a cell being made meets).
pub(crate) fn delay_made_cells(delay: Duration) {
    MADE_DELAY_MS.store(
        delay.as_millis() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// The thread that refills every pool of the process.
struct Filler {
    pools: Mutex<Vec<Weak<Shared>>>,
    wake: Condvar,
    /// The thread runs (a failed start is tried again by the next pool).
    running: Mutex<bool>,
}

fn filler() -> &'static Filler {
    static F: OnceLock<Filler> = OnceLock::new();
    F.get_or_init(|| Filler {
        pools: Mutex::new(Vec::new()),
        wake: Condvar::new(),
        running: Mutex::new(false),
    })
}

impl Filler {
    fn add(&'static self, pool: &Arc<Shared>) {
        static AT_EXIT: std::sync::Once = std::sync::Once::new();
        AT_EXIT.call_once(|| cgroup::before_exit_cleanup(at_exit));
        self.pools.lock().push(Arc::downgrade(pool));
        let mut running = self.running.lock();
        if !*running {
            // Without it, pools do not refill: their spawns take fresh cells.
            *running = std::thread::Builder::new()
                .name("jobcell-pools".into())
                .spawn(move || self.run())
                .is_ok();
        }
        drop(running);
        self.wake();
    }

    fn wake(&self) {
        let _g = self.pools.lock();
        self.wake.notify_all();
    }

    fn run(&'static self) {
        // The lowest priority: refills use what spawns leave of the CPUs.
        // Cells made here start at it too (see `Made::new`); each job gets
        // its spawner's priority back at "go".
        let tid = Some(rustix::thread::gettid());
        let _ = rustix::process::setpriority_process(tid, 19);
        loop {
            let mut pools = self.pools.lock();
            pools.retain(|w| w.upgrade().is_some_and(|p| !p.state.lock().closed));
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            let mut work: Option<Arc<Shared>> = None;
            let mut rest: Vec<Entry> = Vec::new();
            for pool in pools.iter().filter_map(Weak::upgrade) {
                let mut g = pool.state.lock();
                if !g.resting && now >= g.last_use + IDLE {
                    // Idle: give the cells back but one, for the next
                    // spawn; that spawn fills the pool again.
                    g.resting = true;
                    while g.ready.len() > 1 {
                        rest.extend(g.ready.pop_back());
                    }
                }
                if !g.resting {
                    let idle_at = g.last_use + IDLE;
                    next = Some(next.map_or(idle_at, |n| n.min(idle_at)));
                }
                if let Some((times, at)) = g.failed {
                    let retry = at + backoff(times);
                    if retry > now {
                        next = Some(next.map_or(retry, |n| n.min(retry)));
                    }
                }
                if work.is_none() && g.wants(pool.size) {
                    g.making += 1;
                    drop(g);
                    work = Some(pool);
                }
            }
            if rest.is_empty() && work.is_none() {
                match next {
                    Some(at) => {
                        self.wake.wait_until(&mut pools, at);
                    }
                    None => self.wake.wait(&mut pools),
                }
                continue;
            }
            drop(pools);
            drop(rest);
            let Some(pool) = work else { continue };
            let made = Entry::new(&pool.sandbox);
            let delay = MADE_DELAY_MS.load(std::sync::atomic::Ordering::Relaxed);
            if delay > 0 {
                std::thread::sleep(Duration::from_millis(delay));
            }
            let mut g = pool.state.lock();
            match made {
                Ok(entry) if !g.closed => {
                    g.failed = None;
                    g.ready.push_back(entry);
                }
                Ok(entry) => {
                    // The pool was dropped meanwhile: the cell goes, and
                    // only then does the pool's drop stop waiting for it.
                    drop(g);
                    drop(entry);
                    g = pool.state.lock();
                }
                Err(_) => {
                    // The next spawn meets the same error in a fresh cell.
                    let times = g.failed.map_or(1, |(t, _)| t.saturating_add(1));
                    g.failed = Some((times, Instant::now()));
                }
            }
            g.making -= 1;
        }
    }
}

/// At the process's exit: the cells every pool still holds are killed and
/// their cgroups removed, and a cell being made is waited for and goes the
/// same way (a program that exits without dropping its pool leaves nothing
/// behind). Skips what another thread holds locked then.
fn at_exit() {
    let pools: Vec<Arc<Shared>> = match filler().pools.try_lock() {
        Some(pools) => pools.iter().filter_map(Weak::upgrade).collect(),
        None => return,
    };
    for pool in &pools {
        let cells = match pool.state.try_lock() {
            Some(mut g) => {
                g.closed = true;
                std::mem::take(&mut g.ready)
            }
            None => continue,
        };
        drop(cells);
    }
    // The filler drops a cell it finishes for a closed pool (see `Drop`).
    filler().wake();
    for pool in &pools {
        let until = Instant::now() + pool.sandbox.setup_timeout + Duration::from_secs(1);
        // Locked by the filler for a moment: look again.
        while pool
            .state
            .try_lock()
            .is_none_or(|g| g.closed && g.making > 0)
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            ready: VecDeque::new(),
            making: 0,
            last_use: Instant::now(),
            resting: false,
            taking: 0,
            closed: false,
            failed: None,
        }
    }

    #[test]
    fn a_pool_wants_cells_until_it_holds_its_size() {
        let mut s = state();
        assert!(s.wants(2));
        s.making = 2;
        assert!(!s.wants(2), "cells being made count");
        s.making = 1;
        assert!(s.wants(2));
        for change in [
            |s: &mut State| s.closed = true,
            |s: &mut State| s.taking = 2,
            |s: &mut State| s.failed = Some((1, Instant::now())),
        ] {
            let mut t = state();
            change(&mut t);
            assert!(!t.wants(2));
        }
        let mut s = state();
        s.resting = true;
        assert!(s.wants(4), "a resting pool keeps one cell");
        s.making = 1;
        assert!(!s.wants(4));
        let mut s = state();
        s.failed = Some((1, Instant::now() - Duration::from_secs(1)));
        assert!(s.wants(1), "a failure long enough ago is due again");
    }

    #[test]
    fn pools_are_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Pool>();
    }

    #[test]
    fn failures_back_off_up_to_a_bound() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert!(backoff(2) > backoff(1));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(30));
        assert!((0..100).all(|t| backoff(t) <= Duration::from_secs(30)));
    }
}
