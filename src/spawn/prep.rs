//! The preparation thread: work that can be done ahead of a spawn, off its
//! critical path. It keeps a few fresh network namespaces ready (see
//! `netns.rs`) and builds, caches and clones root skeletons (see
//! `skeleton.rs`) in a private mount namespace of its own, so nothing it
//! mounts is ever visible on the host.
//!
//! It only runs on root hosts (both jobs need CAP_SYS_ADMIN in the host's user
//! namespace); elsewhere spawns do the same work inline. One thread for both,
//! so a process running jobs has few threads.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::cgroup::Ahead;
use crate::error::{Error, Result};
use crate::spawn::retry::Failed;
use crate::spawn::{netns, skeleton, spawner};
use crate::sys;

/// Fresh network namespaces kept ready: refills start when the pool is down
/// to `NETNS_LOW` and go on until it holds `WARM_NETNS`. Refilling in runs
/// leaves most spawns undisturbed by the refills (see [`setting_up`]), and
/// wakes the thread once per run instead of once per spawn.
const WARM_NETNS: usize = 8;
const NETNS_LOW: usize = 4;
/// Clones of a skeleton kept ready once it has been asked for.
const WARM_CLONES: usize = 2;
/// Added to every skeleton build (tests: `__private::delay_skeletons`).
static BUILD_DELAY_MS: AtomicU64 = AtomicU64::new(0);

/// Makes every skeleton build take `delay` longer (tests of a slow
/// preparation thread).
pub(crate) fn delay_skeletons(delay: Duration) {
    BUILD_DELAY_MS.store(delay.as_millis() as u64, Ordering::Relaxed);
}

/// Every skeleton build fails (tests: `__private::fail_skeletons`).
static FAIL_BUILDS: AtomicBool = AtomicBool::new(false);

/// Makes every skeleton build fail (tests of spawns that build their
/// root inline because the skeleton's build failed).
pub(crate) fn fail_skeletons(on: bool) {
    FAIL_BUILDS.store(on, Ordering::Relaxed);
}

/// A spawn waits for a skeleton at most its setup time divided by this
/// (see [`skeleton_clone`]).
const SKELETON_WAIT: u32 = 4;
/// Skeletons kept; the least recently used beyond this is dropped.
const MAX_SKELETONS: usize = 8;

struct Skeleton {
    spec: Option<Arc<skeleton::Spec>>,
    dir: Option<PathBuf>,
    ready: Vec<OwnedFd>,
    /// The last build or clone failed: spawns get its error until it is
    /// due for another try (see `retry.rs`).
    error: Option<Failed>,
    last_used: Instant,
}

#[derive(Default)]
struct State {
    netns: Vec<OwnedFd>,
    /// Network namespaces cannot be made ahead at all (no thread to make them).
    netns_broken: bool,
    /// Making one failed: none is tried again before it is due.
    netns_failed: Option<Failed>,
    /// A run of refills is under way (see `NETNS_LOW`).
    refilling: bool,
    /// A warm spawn took from the pool (or found it empty): only then is
    /// it filled (see [`Demand`]).
    netns_asked: bool,
    /// The pool was given back after an idle spell and not asked for since.
    netns_given_back: bool,
    skeletons: HashMap<u128, Skeleton>,
    /// Skeletons that need a build or clones.
    queue: VecDeque<u128>,
    /// Why skeletons cannot be built here, if they cannot (then spawns build roots inline).
    skeleton_broken: Option<String>,
    /// The private workspace skeletons are built in could not be set up
    /// (for a while: spawns build roots inline until it is due again).
    workspace_failed: Option<Failed>,
    /// The thread is working on an item taken off the queue.
    busy: bool,
    /// The host's mount namespace, kept for the spawner.
    host_mnt: Option<RawFd>,
    /// Other modules' work ahead (see [`ahead`]): how often each was asked
    /// for, and how many of those asks a step that found nothing to do has seen.
    ahead: Vec<(Arc<dyn Ahead>, u64, u64)>,
    /// Descriptors to close off a spawn's path (see [`close_later`]).
    to_close: Vec<OwnedFd>,
}

/// How long without a spawn before the thread gives back what it made
/// ahead (network namespaces, skeletons and their clones, other layers'
/// work such as cgroup v1's ready directories), and the next spawn takes
/// the direct path again.
pub(crate) const IDLE: Duration = Duration::from_secs(5);

/// When this process last began a spawn, in milliseconds since [`epoch`]
/// (plus one; 0: never, or not since the caches were given back).
static LAST_SPAWN: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// Whether a spawn's work ahead is worth it: what a spawn leaves to do for
/// the next one (a network namespace, a skeleton's clones, a cgroup's
/// ready directories) is for a program that spawns again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Demand {
    /// The first spawn of this process, or the first after an idle spell:
    /// the direct path. It uses what is ready, makes the rest itself, and
    /// asks for no refill: a one-shot program (a command-line run, a short
    /// test) pays for nothing it does not use, and leaves nothing to tear
    /// down.
    Cold,
    /// The process spawned within [`IDLE`]: the caches fill.
    Warm,
}

/// The caches were asked to fill since they were last given back.
static WARMED: AtomicBool = AtomicBool::new(false);

/// Notes that a spawn begins, and says whether work ahead is wanted for it.
/// The first warm spawn wakes the thread to fill its caches.
pub(crate) fn demand() -> Demand {
    let now = now_ms();
    let last = LAST_SPAWN.swap(now, Ordering::SeqCst);
    if last == 0 || now.saturating_sub(last) >= IDLE.as_millis() as u64 {
        return Demand::Cold;
    }
    if !WARMED.swap(true, Ordering::SeqCst) {
        let p = prep();
        let mut g = p.state.lock();
        g.netns_asked = true;
        g.netns_given_back = false;
        p.work.notify_one();
    }
    Demand::Warm
}

/// Whether no spawn began within [`IDLE`] (or none ever did).
fn idle() -> bool {
    let last = LAST_SPAWN.load(Ordering::SeqCst);
    last == 0 || now_ms().saturating_sub(last) >= IDLE.as_millis() as u64
}

/// When the process will have been idle for [`IDLE`], if no spawn comes.
fn idle_at() -> Instant {
    let last = LAST_SPAWN.load(Ordering::SeqCst).saturating_sub(1);
    epoch() + Duration::from_millis(last) + IDLE
}

/// The [`RunAhead`](crate::cgroup::RunAhead) of a cold spawn: nothing is
/// done ahead for it (see [`Demand::Cold`]); the next warm spawn asks again.
pub(crate) fn not_ahead(_: &Arc<dyn Ahead>) {}

/// Asks the thread to run `work` until it says it is done: at the lowest
/// priority, between cells' setups, after the next spawn's setup ends. The
/// [`RunAhead`](crate::cgroup::RunAhead) that job cgroups of warm spawns are
/// created with (see [`Demand`]).
pub(crate) fn ahead(work: &Arc<dyn Ahead>) {
    let p = prep();
    let mut g = p.state.lock();
    match g.ahead.iter_mut().find(|(w, ..)| Arc::ptr_eq(w, work)) {
        Some((_, asked, _)) => *asked += 1,
        None => g.ahead.push((work.clone(), 1, 0)),
    }
    KICK.store(true, Ordering::Relaxed);
}

impl State {
    /// Whether the network namespace pool wants a refill now.
    fn netns_wanted(&self) -> bool {
        self.netns_asked
            && !self.netns_broken
            && self.netns_failed.as_ref().is_none_or(Failed::due)
            && self.netns_low()
    }

    fn netns_low(&self) -> bool {
        self.netns.len() <= NETNS_LOW || self.refilling && self.netns.len() < WARM_NETNS
    }

    /// When a refill that failed may be tried again, if the pool wants one.
    fn netns_retry_at(&self) -> Option<Instant> {
        let failed = self.netns_failed.as_ref()?;
        (self.netns_asked && !self.netns_broken && self.netns_low()).then(|| failed.retry_at())
    }

    /// Work ahead someone asked for and not yet done.
    fn ahead_wanted(&self) -> Option<(Arc<dyn Ahead>, u64)> {
        self.ahead
            .iter()
            .find(|(_, asked, seen)| asked > seen)
            .map(|(w, asked, _)| (w.clone(), *asked))
    }
}

/// What the thread does next.
enum Task {
    Spawner,
    Close(Vec<OwnedFd>),
    Skeleton(u128),
    Ahead((Arc<dyn Ahead>, u64)),
    Netns,
}

struct Prep {
    state: Mutex<State>,
    work: Condvar,
    done: Condvar,
    /// The process the thread was started in (a forked copy has no thread).
    owner: u32,
    /// The thread runs.
    running: AtomicBool,
    /// Starting it failed (for a while).
    start_failed: Mutex<Option<Failed>>,
}

static PREP: OnceLock<&'static Prep> = OnceLock::new();

fn prep() -> &'static Prep {
    let p = *PREP.get_or_init(|| {
        Box::leak(Box::new(Prep {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            owner: std::process::id(),
            running: AtomicBool::new(false),
            start_failed: Mutex::new(None),
        }))
    });
    if !p.running.load(Ordering::Acquire) {
        start_thread(p);
    }
    p
}

/// Starts the thread unless it runs, this is a forked copy of the process
/// that started it, or a start failed too recently (threads can be short
/// for a moment: `EAGAIN`).
fn start_thread(p: &'static Prep) {
    let mut failed = p.start_failed.lock();
    if p.running.load(Ordering::Acquire)
        || p.owner != std::process::id()
        || failed.as_ref().is_some_and(|f| !f.due())
    {
        return;
    }
    // The host's mount namespace, opened here: a new thread starts in its
    // creator's, and a lookup under the preparation thread's own /proc
    // entry would make the process slow to reap (see
    // `sys::host::socket_netns`). Failing here, the thread tries itself.
    let host_mnt = std::fs::File::open("/proc/thread-self/ns/mnt")
        .ok()
        .map(OwnedFd::from);
    match std::thread::Builder::new()
        .name("jobcell-prep".into())
        .spawn(move || run(p, host_mnt))
    {
        Ok(_) => {
            p.running.store(true, Ordering::Release);
            *failed = None;
        }
        Err(e) => {
            let why = format!("cannot start the preparation thread: {e}");
            *failed = Some(Failed::after(failed.as_ref(), why));
        }
    }
}

/// Whether the preparation thread runs in this process: without it (a
/// forked copy of a process that used jobcell, or threads that cannot be
/// had) spawns do its work inline.
pub(crate) fn thread_here() -> bool {
    prep().running.load(Ordering::Acquire) && prep().owner == std::process::id()
}

/// Closes `fd` on the preparation thread (or here, where none runs).
///
/// For a detached mount tree that nothing attached: closing it unmounts
/// the tree, and the unmount waits for an RCU grace period (a millisecond
/// or more on a busy machine), which a spawn should not wait for.
pub(crate) fn close_later(fd: OwnedFd) {
    if !thread_here() {
        drop(fd);
        return;
    }
    let p = prep();
    let mut g = p.state.lock();
    g.to_close.push(fd);
    p.work.notify_all();
}

/// Wakes the thread to look for work (a spawner to start).
pub(crate) fn wake() {
    let p = prep();
    // Under the lock: the thread either sees the request before it sleeps or is woken.
    let _g = p.state.lock();
    p.work.notify_all();
}

/// A fresh network namespace with loopback up: a ready one, or made now.
/// For a warm spawn the pool is refilled after the next [`kick`].
pub(crate) fn take_netns(demand: Demand) -> Result<OwnedFd> {
    let p = prep();
    let ready = {
        let mut g = p.state.lock();
        let ready = g.netns.pop();
        g.netns_asked |= demand == Demand::Warm;
        if g.netns_wanted() {
            KICK.store(true, Ordering::Relaxed);
        }
        ready
    };
    match ready {
        Some(fd) => Ok(fd),
        None => netns::create(),
    }
}

/// Set when a spawn took from a cache the thread refills.
static KICK: AtomicBool = AtomicBool::new(false);

/// Spawns whose cell is building its root right now.
static SETTING_UP: AtomicUsize = AtomicUsize::new(0);

/// How long a refill waits for a moment when no cell is being set up.
const QUIET_WAIT: Duration = Duration::from_millis(5);

/// Marks a spawn's cell as being set up until dropped (see [`setting_up`]).
pub(crate) struct SettingUp(());

/// Marks the calling spawn's cell as being set up: the thread makes no
/// network namespace meanwhile (for up to [`QUIET_WAIT`]). Making one keeps
/// a CPU in the kernel for long stretches with preemption off (registering
/// its sysctls), and the cell's init waits for every CPU to pass through
/// the scheduler when it detaches the host's root (an expedited RCU grace
/// period): a refill running beside it stretched that wait from ~30 µs to
/// ~200 µs. Dropping the mark wakes the thread for the refills the spawn
/// asked for (see [`kick`]).
pub(crate) fn setting_up() -> SettingUp {
    SETTING_UP.fetch_add(1, Ordering::SeqCst);
    SettingUp(())
}

impl Drop for SettingUp {
    fn drop(&mut self) {
        if SETTING_UP.fetch_sub(1, Ordering::SeqCst) == 1 {
            kick();
        }
    }
}

/// Wakes the thread if a spawn took from its caches since the last kick.
///
/// Called when a spawn's cell is set up, not when it takes: waking a thread
/// costs the waker tens of microseconds here (an IPI in a virtual machine),
/// free once the spawn only waits for its job.
fn kick() {
    if KICK.swap(false, Ordering::Relaxed) {
        // The takers changed the state under the lock before setting KICK,
        // and the thread checks it under the lock before it sleeps.
        prep().work.notify_one();
    }
}

/// Whether skeletons can be used here (false until proven otherwise is not
/// needed: a failed start makes `skeleton_clone` fail and spawns fall back).
/// A cold spawn (see [`Demand::Cold`]) uses skeletons only where some are
/// built already: building one costs more than the root it saves a single
/// cell (it copies `/etc` entry by entry), so a one-shot program builds
/// its cell's root inline.
pub(crate) fn skeletons_usable(demand: Demand) -> bool {
    if !thread_here() {
        return false;
    }
    let g = prep().state.lock();
    g.skeleton_broken.is_none()
        && (demand == Demand::Warm || g.skeletons.values().any(|s| s.dir.is_some()))
}

impl State {
    /// Skeletons cannot be had now: spawns build their roots inline.
    fn no_skeletons(&self) -> bool {
        self.skeleton_broken.is_some() || self.workspace_failed.as_ref().is_some_and(|f| !f.due())
    }
}

/// A detached clone of the skeleton `key`, built from `spec()` the first time.
/// `Ok(None)` means no skeleton can be had now (none on this host, or
/// building this one failed lately): build the root inline.
///
/// Waits for the skeleton no longer than a quarter of the spawn's setup
/// time (see [`SKELETON_WAIT`]), then answers `Ok(None)`: a preparation
/// thread slowed down (a loaded machine, a queue of builds for other
/// roots) costs a spawn a root built inline, never its setup timeout. Only
/// a spawn whose whole `deadline` has passed fails, with
/// `Error::SetupTimeout`.
pub(crate) fn skeleton_clone(
    key: u128,
    spec: impl FnOnce() -> skeleton::Spec,
    deadline: &crate::spawn::Deadline,
) -> Result<Option<OwnedFd>> {
    let p = prep();
    if !thread_here() {
        return Ok(None);
    }
    let mut g = p.state.lock();
    if g.no_skeletons() {
        return Ok(None);
    }
    g.skeletons.entry(key).or_insert_with(|| Skeleton {
        spec: Some(Arc::new(spec())),
        dir: None,
        ready: Vec::new(),
        error: None,
        last_used: Instant::now(),
    });
    let waiting_since = Instant::now();
    loop {
        if g.no_skeletons() {
            return Ok(None);
        }
        let Some(s) = g.skeletons.get_mut(&key) else {
            return Ok(None); // evicted while we waited: build inline this once
        };
        s.last_used = Instant::now();
        if let Some(failed) = &s.error {
            if !failed.due() {
                // Failed lately (maybe a moment's EMFILE in this process):
                // the cell builds its root itself, and names the step that
                // fails if one does there too.
                return Ok(None);
            }
            // Due for another try.
        }
        if let Some(fd) = s.ready.pop() {
            if s.ready.len() < WARM_CLONES && !g.queue.contains(&key) {
                g.queue.push_back(key);
                KICK.store(true, Ordering::Relaxed);
            }
            return Ok(Some(fd));
        }
        if !g.queue.contains(&key) {
            g.queue.push_back(key);
        }
        p.work.notify_one();
        let give_up = deadline
            .at
            .min(waiting_since + deadline.timeout / SKELETON_WAIT);
        if p.done.wait_until(&mut g, give_up).timed_out() {
            if Instant::now() < deadline.at {
                return Ok(None);
            }
            let detail = "the root skeleton, built by the preparation thread".to_string();
            return Err(deadline.error(crate::Stage::BuildRoot, detail));
        }
    }
}

/// Waits (up to a few seconds) until the thread has nothing left to do, and
/// returns the descriptors its caches hold: tests compare a process's
/// descriptors before and after jobs, and the caches refill on their own.
pub(crate) fn settle() -> Vec<RawFd> {
    let p = prep();
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    let here = thread_here();
    let mut g = p.state.lock();
    loop {
        let idle = g.queue.is_empty()
            && !g.busy
            && g.to_close.is_empty()
            && !g.netns_wanted()
            && g.ahead_wanted().is_none();
        // Without the thread nothing will change.
        let idle = idle || !here;
        if idle || Instant::now() > deadline {
            let mut fds: Vec<_> = g.netns.iter().map(|f| f.as_raw_fd()).collect();
            fds.extend(g.host_mnt);
            for s in g.skeletons.values() {
                fds.extend(s.ready.iter().map(|f| f.as_raw_fd()));
            }
            return fds;
        }
        p.work.notify_one();
        p.done.wait_until(&mut g, deadline);
    }
}

fn run(p: &'static Prep, host_mnt: Option<OwnedFd>) {
    // Kept from before the thread leaves for its private mount namespace:
    // the spawner it starts must serve from the host's.
    let mut host_mnt = host_mnt;
    // Whether this thread has left the host's mount namespace.
    let mut left = false;
    let mut workspace = enter_workspace(p, &mut host_mnt, &mut left);
    let mut next_dir = 0u64;
    // Since when a refill has waited for cells to be set up.
    let mut deferred: Option<Instant> = None;
    loop {
        let mut g = p.state.lock();
        g.busy = false;
        p.done.notify_all();
        let key = loop {
            if spawner::start_requested() {
                break Task::Spawner;
            }
            if !g.to_close.is_empty() {
                break Task::Close(std::mem::take(&mut g.to_close));
            }
            if let Some(k) = g.queue.pop_front() {
                break Task::Skeleton(k);
            }
            // The rest waits for a moment no cell is being set up.
            let work = g.ahead_wanted();
            if work.is_some() || g.netns_wanted() {
                let since = *deferred.get_or_insert_with(Instant::now);
                if SETTING_UP.load(Ordering::SeqCst) == 0 || since.elapsed() >= QUIET_WAIT {
                    deferred = None;
                    if let Some(w) = work {
                        break Task::Ahead(w);
                    }
                    g.refilling = true;
                    break Task::Netns;
                }
                p.work.wait_until(&mut g, since + QUIET_WAIT);
                continue;
            }
            // Nothing to do: what was made ahead goes back once no spawn
            // came for a while (see `IDLE`).
            if g.holds_something() && idle() {
                give_back(&mut g);
                continue;
            }
            let wake_at = [g.netns_retry_at(), g.holds_something().then(idle_at)];
            match wake_at.into_iter().flatten().min() {
                Some(at) => {
                    p.work.wait_until(&mut g, at);
                }
                None => p.work.wait(&mut g),
            }
        };
        g.busy = true;
        match key {
            Task::Close(fds) => {
                drop(g);
                drop(fds);
            }
            Task::Spawner => {
                drop(g);
                // Only once this thread has left it (root hosts): setns needs privilege.
                let mnt = host_mnt.as_ref().filter(|_| left);
                spawner::serve_start_request(mnt.map(AsRawFd::as_raw_fd));
            }
            Task::Ahead((work, asked)) => {
                drop(g);
                let more = Background::enter().run(|| work.step());
                if !more {
                    // Asks made since this step began still count.
                    let mut g = p.state.lock();
                    if let Some((_, _, seen)) =
                        g.ahead.iter_mut().find(|(w, ..)| Arc::ptr_eq(w, &work))
                    {
                        *seen = asked;
                    }
                }
            }
            Task::Netns => {
                drop(g);
                let made = Background::enter().run(netns::create);
                let mut g = p.state.lock();
                match made {
                    Ok(fd) => {
                        g.netns.push(fd);
                        g.netns_failed = None;
                        g.refilling = g.netns.len() < WARM_NETNS;
                    }
                    Err(e) => {
                        g.netns_failed =
                            Some(Failed::after(g.netns_failed.as_ref(), e.to_string()));
                        g.refilling = false;
                    }
                }
            }
            Task::Skeleton(key) => {
                if workspace.is_none() && !g.no_skeletons() {
                    drop(g);
                    workspace = enter_workspace(p, &mut host_mnt, &mut left);
                    g = p.state.lock();
                }
                let Some(ws) = &workspace else { continue };
                let Some(s) = g.skeletons.get_mut(&key) else {
                    continue;
                };
                if s.error.as_ref().is_some_and(|f| !f.due()) {
                    continue;
                }
                let dir = match &s.dir {
                    Some(d) => d.clone(),
                    None => {
                        let spec = s.spec.clone().expect("unbuilt skeletons keep their spec");
                        next_dir += 1;
                        let dir = ws.join(next_dir.to_string());
                        drop(g);
                        let delay = BUILD_DELAY_MS.load(Ordering::Relaxed);
                        if delay > 0 {
                            std::thread::sleep(Duration::from_millis(delay));
                        }
                        let built = std::fs::create_dir(&dir)
                            .map_err(|e| skeleton::BuildError {
                                detail: format!("create {}", dir.display()),
                                errno: crate::Errno::from(&e),
                            })
                            .and_then(|_| match FAIL_BUILDS.load(Ordering::Relaxed) {
                                true => Err(skeleton::BuildError {
                                    detail: "a test's injected fault".into(),
                                    errno: crate::Errno(libc::EIO),
                                }),
                                false => skeleton::build(&spec, &dir),
                            });
                        g = p.state.lock();
                        let Some(s) = g.skeletons.get_mut(&key) else {
                            continue;
                        };
                        match built {
                            Ok(()) => {
                                s.dir = Some(dir.clone());
                                s.spec = None;
                                dir
                            }
                            Err(e) => {
                                discard(&dir);
                                let why = format!("build the skeleton: {}: {}", e.detail, e.errno);
                                s.error = Some(Failed::after(s.error.as_ref(), why));
                                evict(&mut g);
                                drop(g);
                                p.done.notify_all();
                                continue;
                            }
                        }
                    }
                };
                let missing = g
                    .skeletons
                    .get(&key)
                    .map_or(0, |s| WARM_CLONES.saturating_sub(s.ready.len()))
                    .max(1);
                drop(g);
                let mut clones = Vec::new();
                for _ in 0..missing {
                    match sys::host::open_tree_clone(&c_path(&dir), 0) {
                        Ok(fd) => clones.push(fd),
                        Err(errno) => {
                            let mut g = p.state.lock();
                            if let Some(s) = g.skeletons.get_mut(&key) {
                                let why =
                                    format!("clone the skeleton at {}: {errno}", dir.display());
                                s.error = Some(Failed::after(s.error.as_ref(), why));
                            }
                            break;
                        }
                    }
                }
                let mut g = p.state.lock();
                if let Some(s) = g.skeletons.get_mut(&key) {
                    if !clones.is_empty() {
                        s.error = None;
                    }
                    s.ready.extend(clones);
                }
                evict(&mut g);
                drop(g);
                p.done.notify_all();
            }
        }
    }
}

/// The preparation thread at the lowest priority, for work done ahead of
/// need. A refill is woken by the spawn that takes from the pool; at normal
/// priority the scheduler often ran it on the spawning thread's CPU,
/// preempting the spawn for the whole refill (~700 µs for a network
/// namespace) while the other CPU idled. At nice 19 it waits for a spare
/// moment instead; a spawn that finds the pool empty makes its own.
struct Background {
    /// The thread's priority to go back to; `None` if it could not be lowered.
    was: Option<i32>,
}

impl Background {
    fn enter() -> Background {
        let tid = Some(rustix::thread::gettid());
        let was = rustix::process::getpriority_process(tid).ok();
        let lowered = was.filter(|_| rustix::process::setpriority_process(tid, 19).is_ok());
        Background { was: lowered }
    }

    fn run<T>(self, f: impl FnOnce() -> T) -> T {
        f()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Back before anything else: the spawner this thread may start next
        // inherits its priority. Raising it again needs CAP_SYS_NICE, which
        // the root hosts that run this work have.
        if let Some(was) = self.was {
            let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), was);
        }
    }
}

impl State {
    /// Whether the thread holds something made ahead that an idle process
    /// can give back (skeletons are a cache of what every cell's root is
    /// made from, not a pool: they stay).
    fn holds_something(&self) -> bool {
        !self.netns.is_empty() || !self.ahead.is_empty()
    }
}

/// Gives back the pools filled ahead: the process has not spawned for
/// [`IDLE`]. Network namespaces go; other layers' work gives back its own
/// (cgroup v1's ready directories). Built skeletons stay: rebuilding one
/// would make the next spawn wait for it (with many threads spawning on a
/// slow machine, past the setup timeout), and they hold a few kilobytes
/// and two mount trees each. The next spawn takes the direct path and the
/// one after it fills the pools again (see [`Demand`]).
fn give_back(g: &mut State) {
    g.netns.clear();
    g.refilling = false;
    g.netns_given_back = g.netns_asked;
    g.netns_asked = false;
    WARMED.store(false, Ordering::SeqCst);
    for (work, ..) in g.ahead.drain(..) {
        // Under the state's lock: an ask that comes meanwhile waits, and
        // finds the work gone and asks anew.
        work.give_back();
    }
}

/// Drops skeletons that failed and were not asked for since (a failure
/// may be transient: the next ask builds anew), and the least recently
/// used ones beyond the cache's size.
fn evict(g: &mut State) {
    let failed: Vec<u128> = g
        .skeletons
        .iter()
        .filter(|(_, s)| matches!(&s.error, Some(f) if f.due() && s.last_used < f.at))
        .map(|(&k, _)| k)
        .collect();
    for key in failed {
        if let Some(s) = g.skeletons.remove(&key) {
            s.dir.as_deref().map(discard);
        }
    }
    while g.skeletons.len() > MAX_SKELETONS {
        let Some((&key, _)) = g
            .skeletons
            .iter()
            .filter(|(k, s)| s.dir.is_some() && !g.queue.contains(k))
            .min_by_key(|(_, s)| s.last_used)
        else {
            return;
        };
        if let Some(s) = g.skeletons.remove(&key) {
            // Clones handed out stay valid: they hold their own mounts.
            s.dir.as_deref().map(discard);
        }
    }
}

/// Unmounts and removes a skeleton's directory (built or half built).
fn discard(dir: &Path) {
    let _ = sys::umount2(&c_path(dir), libc::MNT_DETACH);
    let _ = std::fs::remove_dir(dir);
}

fn c_path(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str())).expect("no NUL")
}

/// How the work done ahead stands, for `host::check`. Starts nothing.
pub(crate) struct Status {
    /// `None` until a spawn needed the thread; `Err` if it cannot be started.
    pub thread: Option<Result<(), String>>,
    /// Fresh network namespaces ready, or why none can be made now;
    /// `None` while no spawn has asked for one.
    pub netns: Option<Result<usize, String>>,
    /// The pool was given back after an idle spell (see [`IDLE`]).
    pub netns_given_back: bool,
    /// Skeletons built, or why one cannot be now; `None` while no spawn
    /// has asked for one.
    pub skeletons: Option<Result<usize, String>>,
}

pub(crate) fn status() -> Status {
    let Some(p) = PREP.get() else {
        return Status {
            thread: None,
            netns: None,
            netns_given_back: false,
            skeletons: None,
        };
    };
    let thread = match &*p.start_failed.lock() {
        _ if p.owner != std::process::id() => Some(Err(
            "not in this process (a fork of the one that started it)".into(),
        )),
        Some(f) => Some(Err(f.describe())),
        None => Some(Ok(())),
    };
    let g = p.state.lock();
    let netns = match &g.netns_failed {
        Some(f) => Some(Err(f.describe())),
        None if g.netns.is_empty() && !g.refilling => None,
        None => Some(Ok(g.netns.len())),
    };
    let failed = g.skeletons.values().filter_map(|s| s.error.as_ref()).next();
    let skeletons = match (&g.skeleton_broken, &g.workspace_failed, failed) {
        (Some(why), ..) => Some(Err(why.clone())),
        (None, Some(f), _) => Some(Err(f.describe())),
        (None, None, Some(f)) => Some(Err(f.describe())),
        (None, None, None) if g.skeletons.is_empty() => None,
        (None, None, None) => Some(Ok(g.skeletons.values().filter(|s| s.dir.is_some()).count())),
    };
    Status {
        thread,
        netns,
        netns_given_back: g.netns_given_back,
        skeletons,
    }
}

/// Sets up the workspace skeletons are built in (see [`private_workspace`]),
/// keeping a descriptor of the host's mount namespace in `host_mnt` first,
/// and records how that went. `None` if it could not be: for good where
/// skeletons need privileges this process lacks, for a while otherwise.
fn enter_workspace(
    p: &'static Prep,
    host_mnt: &mut Option<OwnedFd>,
    left: &mut bool,
) -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let entered = match host_mnt {
        _ if !root => Err(None),
        Some(_) => private_workspace(left).map_err(Some),
        None => match std::fs::File::open("/proc/thread-self/ns/mnt") {
            Ok(f) => {
                *host_mnt = Some(f.into());
                private_workspace(left).map_err(Some)
            }
            Err(e) => Err(Some(Error::io("open", "/proc/thread-self/ns/mnt", e))),
        },
    };
    let mut g = p.state.lock();
    g.host_mnt = host_mnt.as_ref().map(AsRawFd::as_raw_fd);
    let ws = match entered {
        Ok(ws) => {
            g.workspace_failed = None;
            Some(ws)
        }
        Err(None) => {
            g.skeleton_broken = Some("skeletons need root".into());
            None
        }
        Err(Some(e)) => {
            g.workspace_failed = Some(Failed::after(g.workspace_failed.as_ref(), e.to_string()));
            None
        }
    };
    drop(g);
    p.done.notify_all();
    ws
}

/// Moves this thread into a private mount namespace and mounts a tmpfs to
/// build skeletons in. Nothing mounted here propagates to the host. `left`
/// is set once the thread has left the host's mount namespace.
fn private_workspace(left: &mut bool) -> Result<PathBuf> {
    let fail = |op, errno| Error::Spawn {
        op,
        path: None,
        errno,
        hint: None,
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(fail("skeletons need root", crate::Errno(libc::EPERM)));
    }
    // Only this thread changes namespace (its fs_struct is unshared along).
    sys::unshare(libc::CLONE_NEWNS).map_err(|e| fail("unshare(CLONE_NEWNS)", e))?;
    *left = true;
    sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(|e| fail("make the preparation namespace private", e))?;
    let ws = ["/tmp", "/mnt", "/run", "/var/tmp"]
        .iter()
        .map(PathBuf::from)
        .find(|d| d.is_dir())
        .ok_or_else(|| fail("find a workspace directory", crate::Errno(libc::ENOENT)))?;
    sys::mount(
        Some(c"tmpfs"),
        &c_path(&ws),
        Some(c"tmpfs"),
        libc::MS_NOSUID,
        Some(c"mode=0700"),
    )
    .map_err(|e| fail("mount the skeleton workspace", e))?;
    Ok(ws)
}
