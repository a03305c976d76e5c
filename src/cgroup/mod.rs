//! cgroups: one interface, two hierarchies (v2 and v1).
//!
//! A [`CgroupTree`](tree::CgroupTree) probes the host once, owns the base
//! directory (a delegated cgroup, by default `<own cgroup>/jobcell`) and
//! creates one [`JobCgroup`] per job in a per-process subdirectory:
//!
//! ```text
//! <base>/<pid>-<start time>-<pid namespace>/<job id>
//! ```
//!
//! The per-process level lets [`sweep_stale_cgroups`] tell whose cgroups are
//! stale (their owner is gone). Directories this process created are removed
//! as soon as they are empty, so a quiet process leaves nothing behind.

mod common;
mod devices;
pub(crate) mod probe;
mod resources;
mod stats;
mod tree;
mod v1;
mod v2;

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::Result;
pub(crate) use resources::Resources;
pub(crate) use stats::Stats;
use tree::CgroupTree;
pub(crate) use tree::{default_base_v2, BASE_NAME};

/// What a cgroup controller does for jobcell, independent of the hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Controller {
    Memory,
    Cpu,
    /// CPU-time accounting: `cpuacct` on v1, the always-present `cpu.stat` on v2.
    CpuAcct,
    Cpuset,
    Pids,
    /// `io` on v2, `blkio` on v1.
    Io,
    /// Race-free kill: `freezer` on v1, `cgroup.kill` on v2.
    Freezer,
}

impl Controller {
    /// The v2 controller to enable, or `None` for what every v2 cgroup has.
    pub(crate) fn v2_name(self) -> Option<&'static str> {
        match self {
            Controller::Memory => Some("memory"),
            Controller::Cpu => Some("cpu"),
            Controller::Cpuset => Some("cpuset"),
            Controller::Pids => Some("pids"),
            Controller::Io => Some("io"),
            Controller::CpuAcct | Controller::Freezer => None,
        }
    }

    /// The v1 hierarchy's controller.
    pub(crate) fn v1_name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::CpuAcct => "cpuacct",
            Controller::Cpuset => "cpuset",
            Controller::Pids => "pids",
            Controller::Io => "blkio",
            Controller::Freezer => "freezer",
        }
    }
}

/// Controllers used for usage accounting whenever the host offers them. Not
/// the v1 freezer: a cell dies at once with its init (the kernel kills the
/// whole PID namespace), so killing through the cgroup is only a fallback,
/// and each v1 hierarchy costs every job a mkdir, a migration and an rmdir.
pub(crate) const ACCOUNTING: [Controller; 4] = [
    Controller::CpuAcct,
    Controller::Memory,
    Controller::Pids,
    Controller::Io,
];

/// What `limits` need: each set limit with the controller that enforces it, in field order.
pub(crate) fn required(limits: &Resources) -> Vec<(&'static str, Controller)> {
    let mut v = Vec::new();
    let mut need = |set: bool, name, c| {
        if set {
            v.push((name, c));
        }
    };
    need(limits.memory.is_some(), "memory", Controller::Memory);
    need(
        limits.memory_swap.is_some(),
        "memory_swap",
        Controller::Memory,
    );
    need(limits.cpu_percent.is_some(), "cpu_percent", Controller::Cpu);
    need(limits.cpus.is_some(), "cpus", Controller::Cpuset);
    need(limits.pids.is_some(), "pids", Controller::Pids);
    need(limits.io_read_bps.is_some(), "io_read_bps", Controller::Io);
    need(
        limits.io_write_bps.is_some(),
        "io_write_bps",
        Controller::Io,
    );
    need(
        limits.io_read_iops.is_some(),
        "io_read_iops",
        Controller::Io,
    );
    need(
        limits.io_write_iops.is_some(),
        "io_write_iops",
        Controller::Io,
    );
    need(limits.cpu_time, "cpu_time", Controller::CpuAcct);
    v
}

/// The CPU bandwidth period: 100 ms, the kernel's default.
pub(crate) const CPU_PERIOD_US: u64 = 100_000;

/// `cpu_percent` as a CFS quota per [`CPU_PERIOD_US`], in microseconds.
pub(crate) fn cpu_quota_us(percent: u32) -> u64 {
    u64::from(percent) * CPU_PERIOD_US / 100
}

/// How many CPUs a job with these limits can keep busy at once (at least 1).
pub(crate) fn max_cpus(limits: &Resources, online: u32) -> u32 {
    let mut n = online.max(1);
    if let Some(list) = &limits.cpus {
        if let Ok(cpus) = crate::units::parse_cpu_list(list) {
            n = n.min(cpus.len() as u32);
        }
    }
    if let Some(p) = limits.cpu_percent {
        n = n.min(p.div_ceil(100));
    }
    n.max(1)
}

/// The cgroup(s) of one job.
pub(crate) struct JobCgroup {
    kind: Kind,
    /// Directories above the job's that may have been created for it, deepest
    /// first: each is removed once empty.
    parents: Vec<PathBuf>,
}

enum Kind {
    V2(v2::Job),
    V1(v1::Job),
}

impl JobCgroup {
    /// True while any process is in the job's cgroup.
    pub(crate) fn populated(&self) -> bool {
        match &self.kind {
            Kind::V2(j) => j.populated(),
            Kind::V1(j) => j.populated(),
        }
    }

    /// Kills every process in the job's cgroup.
    pub(crate) fn kill(&self) {
        match &self.kind {
            Kind::V2(j) => j.kill(),
            Kind::V1(j) => j.kill(),
        }
    }

    /// Current usage.
    pub(crate) fn stats(&self) -> Option<Stats> {
        Some(match &self.kind {
            Kind::V2(j) => j.usage(),
            Kind::V1(j) => j.usage(),
        })
    }

    /// CPU time used so far (user + system).
    pub(crate) fn cpu_time(&self) -> Option<Duration> {
        match &self.kind {
            Kind::V2(j) => j.cpu_time(),
            Kind::V1(j) => j.cpu_time(),
        }
    }

    /// Removes the job's cgroup directories (best effort, idempotent; what
    /// stays is swept later). The parents this process created (its own
    /// directory, the `jobcell` base) stay for the next job and go when the
    /// process exits: creating and removing them around every job cost more
    /// than the job's own cgroup.
    pub(crate) fn remove(&self) {
        let gone = match &self.kind {
            Kind::V2(j) => j.remove(),
            Kind::V1(j) => j.remove(),
        };
        if gone {
            remove_at_exit(&self.parents);
        }
    }
}

/// Makes every cgroup v1 ready directory take `delay` longer to make, so
/// a test can catch the process exiting while they are being made.
pub(crate) fn delay_ready_dirs(delay: std::time::Duration) {
    v1::delay_ready_dirs(delay);
}

/// Parents to remove when the process exits, innermost first.
static AT_EXIT: parking_lot::Mutex<Vec<std::path::PathBuf>> = parking_lot::Mutex::new(Vec::new());

fn remove_at_exit(parents: &[std::path::PathBuf]) {
    register_cleanup();
    let mut list = AT_EXIT.lock();
    for p in parents {
        if !list.contains(p) {
            list.push(p.clone());
        }
    }
    // Deeper directories first, so a base is tried after what it holds.
    list.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
}

/// Runs `f` at the process's exit, before the cgroups' own cleanup: for
/// whoever holds processes in job cgroups that must go first (a pool's
/// cells made ahead). `f` must not block on locks (use `try_lock`); the
/// caller registers it once.
pub(crate) fn before_exit_cleanup(f: fn()) {
    register_cleanup();
    BEFORE_EXIT.lock().push(f);
}

static BEFORE_EXIT: parking_lot::Mutex<Vec<fn()>> = parking_lot::Mutex::new(Vec::new());

/// Registers the cleanup at exit, once.
fn register_cleanup() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        extern "C" fn cleanup() {
            if let Some(first) = BEFORE_EXIT.try_lock() {
                first.iter().for_each(|f| f());
            }
            // Ready directories first: they sit in the parents.
            v1::remove_ready_at_exit();
            // Runs at exit(): a job still running keeps its parents (swept later).
            if let Some(list) = AT_EXIT.try_lock() {
                for p in list.iter() {
                    let _ = common::rmdir(p);
                }
            }
        }
        // SAFETY: registers a function with no preconditions; atexit copies the pointer.
        unsafe { libc::atexit(cleanup) };
    });
}

/// How the host side joins a process to a job's cgroup(s): the interface
/// spawn uses, which knows no hierarchy.
pub(crate) trait CgroupJoin {
    /// A cgroup v2 directory to clone straight into, if any.
    fn clone_target(&self) -> Option<BorrowedFd<'_>>;
    /// Moves `pid` into the job's cgroup(s); called before the child is released
    /// when the clone could not place it there itself, nor the cell join itself.
    fn attach(&self, pid: i32) -> Result<()>;
    /// Files through which the cell's init moves itself into the job's
    /// cgroup(s) as its first step, each with the cgroup it joins; empty
    /// when the host must `attach` instead.
    fn self_join(&self) -> Vec<(OwnedFd, PathBuf)> {
        Vec::new()
    }
}

impl CgroupJoin for JobCgroup {
    fn clone_target(&self) -> Option<BorrowedFd<'_>> {
        match &self.kind {
            Kind::V2(j) => Some(j.fd()),
            Kind::V1(_) => None,
        }
    }

    fn attach(&self, pid: i32) -> Result<()> {
        match &self.kind {
            Kind::V2(j) => j.attach(pid),
            Kind::V1(j) => j.attach(pid),
        }
    }

    fn self_join(&self) -> Vec<(OwnedFd, PathBuf)> {
        match &self.kind {
            Kind::V2(_) => Vec::new(),
            Kind::V1(j) => j.self_join(),
        }
    }
}

/// Work this layer wants done ahead of need, off a spawn's critical path:
/// v1's ready directories (see `v1/pool.rs`). cgroup has no thread of its
/// own for it: whoever creates jobs' cgroups hands each creation a
/// [`RunAhead`], which takes the work to a background thread.
pub(crate) trait Ahead: Send + Sync {
    /// Does one unit of the work; false once there is nothing left to do.
    fn step(&self) -> bool;

    /// Undoes what the work made ahead: the process has not started a job
    /// for a while. A later job asks for the work again.
    fn give_back(&self);
}

/// Runs `work` in the background, at leisure, until it says it is done.
pub(crate) type RunAhead = fn(&Arc<dyn Ahead>);

/// The trees opened so far, by base (`None` is the default base).
static TREES: Mutex<Vec<(Option<PathBuf>, Arc<CgroupTree>)>> = Mutex::new(Vec::new());

/// Descriptors the trees keep open on purpose (ready directories' files).
pub(crate) fn cached_descriptors() -> Vec<std::os::fd::RawFd> {
    TREES
        .lock()
        .iter()
        .flat_map(|(_, t)| t.cached_descriptors())
        .collect()
}

fn tree(base: Option<&Path>) -> Arc<CgroupTree> {
    opened(base).0
}

/// The tree under `base`, opened (and swept) on first use, with how many
/// job cgroups that first sweep removed (0 for a tree opened before).
fn opened(base: Option<&Path>) -> (Arc<CgroupTree>, usize) {
    let mut trees = TREES.lock();
    if let Some((_, t)) = trees.iter().find(|(b, _)| b.as_deref() == base) {
        return (t.clone(), 0);
    }
    let t = Arc::new(CgroupTree::open(base));
    let mut swept = 0;
    // An unusable base is probed again next time: the admin may fix it while we run.
    if t.usable() {
        // Opening is the cheap moment to clean up after processes that crashed.
        swept = t.sweep_stale().unwrap_or(0);
        trees.push((base.map(Path::to_owned), t.clone()));
    }
    (t, swept)
}

/// Creates the cgroup of job `id` (a checked job id: one path component)
/// under `base` (the default tree when `None`). With `accounting`, the job
/// also joins the [`ACCOUNTING`] controllers its limits do not need, for
/// its usage figures. `run_ahead` takes the work this leaves to do ahead of
/// the next job (see [`Ahead`]).
///
/// `Ok(None)` when the job needs no cgroup and none can be had (no
/// delegation, read-only cgroupfs): it then runs without usage figures.
pub(crate) fn create_job(
    base: Option<&Path>,
    id: &str,
    limits: &Resources,
    accounting: bool,
    run_ahead: RunAhead,
) -> Result<Option<JobCgroup>> {
    tree(base).create_job(id, limits, accounting, run_ahead)
}

/// Removes the cgroups that jobcell processes which no longer exist left
/// behind (after a crash or `SIGKILL`), killing any process still in them.
/// Returns how many job cgroups it removed.
///
/// `base` is the cgroup base given to [`Sandbox::cgroup_base`](crate::Sandbox::cgroup_base),
/// or `None` for the default tree under this process's own cgroup. Only
/// directories of owners in this process's PID namespace are judged. jobcell
/// runs this by itself when it first uses a tree; call it yourself, e.g. at
/// start-up, to clean up without spawning a job. Without a usable cgroup
/// file system there is nothing to sweep and the answer is 0.
///
/// ```no_run
/// let removed = jobcell::sweep_stale_cgroups(None)?;
/// println!("removed {removed} stale job cgroups");
/// # Ok::<(), jobcell::Error>(())
/// ```
pub fn sweep_stale_cgroups(base: Option<&Path>) -> Result<usize> {
    // A tree's first use sweeps it: what that removed counts too.
    let (t, swept) = opened(base);
    Ok(swept + t.sweep_stale()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn limits_name_their_controllers() {
        let l = Resources {
            memory: Some(64 << 20),
            cpus: Some("0".into()),
            io_write_bps: Some(1),
            cpu_time: true,
            ..Default::default()
        };
        assert_eq!(
            required(&l),
            vec![
                ("memory", Controller::Memory),
                ("cpus", Controller::Cpuset),
                ("io_write_bps", Controller::Io),
                ("cpu_time", Controller::CpuAcct),
            ]
        );
        assert!(required(&Resources::default()).is_empty());
    }

    #[test]
    fn cpu_quota() {
        assert_eq!(cpu_quota_us(20), 20_000);
        assert_eq!(cpu_quota_us(100), 100_000);
        assert_eq!(cpu_quota_us(250), 250_000);
        assert_eq!(cpu_quota_us(1), 1_000, "the kernel's minimum quota");
    }

    #[test]
    fn cpus_a_job_can_use() {
        let l = |cpus: Option<&str>, pct: Option<u32>| Resources {
            cpus: cpus.map(str::to_owned),
            cpu_percent: pct,
            ..Default::default()
        };
        assert_eq!(max_cpus(&l(None, None), 8), 8);
        assert_eq!(max_cpus(&l(Some("0-2"), None), 8), 3);
        assert_eq!(max_cpus(&l(None, Some(20)), 8), 1);
        assert_eq!(max_cpus(&l(None, Some(250)), 8), 3);
        assert_eq!(max_cpus(&l(Some("0,4"), Some(350)), 8), 2);
        assert_eq!(max_cpus(&l(None, None), 0), 1);
    }

    #[test]
    fn controllers_have_the_kernels_names() {
        use Controller::*;
        let names =
            [Memory, Cpu, CpuAcct, Cpuset, Pids, Io, Freezer].map(|c| (c.v2_name(), c.v1_name()));
        assert_eq!(
            names,
            [
                (Some("memory"), "memory"),
                (Some("cpu"), "cpu"),
                (None, "cpuacct"),
                (Some("cpuset"), "cpuset"),
                (Some("pids"), "pids"),
                (Some("io"), "blkio"),
                (None, "freezer"),
            ]
        );
    }

    proptest! {
        #[test]
        fn quota_is_percent_of_the_period(p in 1u32..=102_400) {
            let q = cpu_quota_us(p);
            prop_assert!(q >= 1_000, "never below the kernel's 1 ms minimum");
            prop_assert_eq!(q * 100 / CPU_PERIOD_US, u64::from(p));
        }

        #[test]
        fn max_cpus_is_between_one_and_online(online in 0u32..512, p in proptest::option::of(1u32..100_000)) {
            let l = Resources { cpu_percent: p, ..Default::default() };
            let n = max_cpus(&l, online);
            prop_assert!(n >= 1 && n <= online.max(1));
            if let Some(p) = p {
                prop_assert!(u64::from(n) * 100 >= u64::from(p).min(u64::from(online.max(1)) * 100));
            }
        }
    }
}
