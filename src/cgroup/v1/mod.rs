//! cgroup v1 (and hybrid hosts): one directory per job in each hierarchy it
//! needs, under this process's own cgroup of that hierarchy.
//!
//! jobcell only creates and removes its own directories; it never changes an
//! existing cgroup. The cell's init moves itself into every hierarchy's job
//! directory as its first step (see `Job::self_join`), so the job is limited
//! from its first instruction.

mod blkio;
mod cpu;
mod cpuacct;
mod cpuset;
mod freezer;
mod memory;
mod pids;
mod pool;

pub(crate) use pool::{delay_ready_dirs, remove_ready_at_exit};

use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{common, Ahead, Controller, JobCgroup, Kind, Resources, RunAhead, Stats, ACCOUNTING};
use crate::error::{Errno, Error, Result};

/// Where jobcell's directories go in one v1 hierarchy.
pub(crate) struct Base {
    pub controllers: Vec<String>,
    /// `Err(reason)` when this hierarchy cannot be used.
    pub dir: std::result::Result<PathBuf, String>,
    /// True for the default base, which is created on demand and removed when empty.
    pub owned: bool,
}

impl Base {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// jobcell's part of every v1 hierarchy.
pub(crate) struct Tree {
    bases: Vec<Base>,
    owner: String,
    /// Job directories made ahead (see `pool.rs`).
    pools: Arc<pool::Pools>,
}

impl Tree {
    pub(crate) fn new(bases: Vec<Base>, owner: String) -> Tree {
        let pooled = bases
            .iter()
            .map(|b| {
                // Only where jobs go (not cpuset: see pool.rs; not freezer or devices).
                let joined = [
                    Controller::Memory,
                    Controller::Cpu,
                    Controller::CpuAcct,
                    Controller::Pids,
                    Controller::Io,
                ]
                .iter()
                .any(|c| b.has(c.v1_name()));
                let base = b.dir.as_ref().ok().filter(|_| joined && !b.has("cpuset"))?;
                let proc_dir = common::child_dir(base, &owner).ok()?;
                Some((base.clone(), b.owned, proc_dir))
            })
            .collect();
        // The exit handler removes ready directories too.
        super::remove_at_exit(&[]);
        Tree {
            bases,
            owner,
            pools: pool::Pools::new(pooled),
        }
    }

    /// Descriptors the pools hold open.
    pub(crate) fn cached_descriptors(&self) -> Vec<std::os::fd::RawFd> {
        self.pools.descriptors()
    }

    pub(crate) fn bases(&self) -> impl Iterator<Item = (&Path, bool)> {
        self.bases
            .iter()
            .filter_map(|b| b.dir.as_deref().ok().map(|d| (d, b.owned)))
    }

    pub(crate) fn usable(&self) -> bool {
        self.bases.iter().any(|b| b.dir.is_ok())
    }

    fn index_of(&self, controller: &str) -> Option<usize> {
        self.bases.iter().position(|b| b.has(controller))
    }

    /// Creates job `id`'s directories and writes its limits.
    pub(crate) fn create_job(
        &self,
        id: &str,
        limits: &Resources,
        accounting: bool,
        run_ahead: RunAhead,
    ) -> Result<Option<JobCgroup>> {
        // (hierarchy, required?) in the order they are joined.
        let mut plan: Vec<(usize, bool)> = Vec::new();
        for (limit, c) in super::required(limits) {
            let name = c.v1_name();
            let i = self
                .index_of(name)
                .ok_or_else(|| Error::ControllerUnavailable {
                    limit,
                    controller: name,
                    reason: "no cgroup v1 hierarchy carries it (see /proc/self/mountinfo)".into(),
                })?;
            if let Err(reason) = &self.bases[i].dir {
                return Err(Error::ControllerUnavailable {
                    limit,
                    controller: name,
                    reason: reason.clone(),
                });
            }
            match plan.iter_mut().find(|(j, _)| *j == i) {
                Some(p) => p.1 = true,
                None => plan.push((i, true)),
            }
        }
        for c in ACCOUNTING.iter().filter(|_| accounting) {
            if let Some(i) = self.index_of(c.v1_name()) {
                if self.bases[i].dir.is_ok() && !plan.iter().any(|(j, _)| *j == i) {
                    plan.push((i, false));
                }
            }
        }

        let mut made: Vec<(usize, PathBuf)> = Vec::new();
        let mut tasks: Vec<Option<OwnedFd>> = Vec::new();
        let mut parents: Vec<PathBuf> = Vec::new();
        for (i, required) in plan {
            match self.make(i, id, limits) {
                Ok((dir, proc_dir, open_tasks)) => {
                    parents.push(proc_dir);
                    if self.bases[i].owned {
                        parents.push(self.bases[i].dir.clone().expect("usable base"));
                    }
                    made.push((i, dir));
                    tasks.push(open_tasks);
                }
                // Accounting only: the job runs without this hierarchy.
                Err(e) if !required && !matches!(e, Error::InvalidJobId { .. }) => {}
                Err(e) => {
                    discard(&made, &parents);
                    self.remove_empty_parents(i);
                    return Err(e);
                }
            }
        }
        if self.pools.wants_more() {
            let work: Arc<dyn Ahead> = self.pools.clone();
            run_ahead(&work);
        }
        if made.is_empty() {
            // Only possible without limits: every required hierarchy was joined or failed loudly.
            return Ok(None);
        }
        let dirs: Vec<(Vec<String>, PathBuf)> = made
            .iter()
            .map(|(i, d)| (self.bases[*i].controllers.clone(), d.clone()))
            .collect();
        let job = Job {
            dirs,
            tasks: Mutex::new(tasks),
        };
        if let Err(e) = job.configure(limits) {
            discard(&made, &parents);
            return Err(e);
        }
        Ok(Some(JobCgroup {
            kind: Kind::V1(job),
            parents,
        }))
    }

    /// Creates the chain base → per-process → job in hierarchy `i`, retrying
    /// when a parent vanishes under us. Returns the job and per-process
    /// directories, and the job's `tasks` file if a ready directory had it open.
    fn make(
        &self,
        i: usize,
        id: &str,
        limits: &Resources,
    ) -> Result<(PathBuf, PathBuf, Option<OwnedFd>)> {
        if let Some(r) = self.pools.take(i) {
            let proc_dir = r.dir.parent().map(Path::to_owned);
            let dir = proc_dir
                .as_deref()
                .map(|p| common::child_dir(p, id))
                .transpose()?;
            if let (Some(proc_dir), Some(dir)) = (proc_dir, dir) {
                match std::fs::rename(&r.dir, &dir) {
                    Ok(()) => return Ok((dir, proc_dir, Some(r.tasks))),
                    // A cgroup of that name exists (the kernel never replaces one).
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                        self.pools.put_back(i, r);
                        return Err(common::job_exists(dir));
                    }
                    // Gone under us, or a file system that cannot rename: make one.
                    Err(_) => {
                        let _ = common::rmdir(&r.dir);
                    }
                }
            }
        }
        self.make_new(i, id, limits).map(|(d, p)| (d, p, None))
    }

    fn make_new(&self, i: usize, id: &str, limits: &Resources) -> Result<(PathBuf, PathBuf)> {
        let mut last = None;
        for _ in 0..common::CREATE_ATTEMPTS {
            match self.try_make(i, id, limits) {
                Err(e) if common::vanished(&e) => last = Some(e),
                r => return r,
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn try_make(&self, i: usize, id: &str, limits: &Resources) -> Result<(PathBuf, PathBuf)> {
        let b = &self.bases[i];
        let base = b.dir.as_ref().expect("usable base");
        let cpuset = b.has("cpuset");
        if b.owned {
            common::mkdir(base)?;
            if cpuset {
                cpuset::inherit(base)?;
            }
        }
        let proc_dir = common::child_dir(base, &self.owner)?;
        common::mkdir(&proc_dir)?;
        if cpuset {
            // Also when it existed: its creator may not have filled it in yet.
            cpuset::inherit(&proc_dir)?;
        }
        let dir = common::mkdir_job(&proc_dir, id)?;
        if cpuset {
            if let Err(e) = cpuset::job(&dir, limits.cpus.as_deref()) {
                let _ = common::rmdir(&dir);
                // Not "vanished": a missing cpuset file here is no race.
                return Err(match e {
                    Error::Cgroup {
                        errno: Errno(libc::ENOENT),
                        ..
                    } => Error::Cgroup {
                        op: "configure cpuset",
                        path: dir,
                        value: limits.cpus.clone(),
                        errno: Errno(libc::EIO),
                        hint: Some("the cpuset files of the new cgroup are missing"),
                    },
                    e => e,
                });
            }
        }
        Ok((dir, proc_dir))
    }

    fn remove_empty_parents(&self, i: usize) {
        let b = &self.bases[i];
        if let Ok(base) = &b.dir {
            if let Ok(p) = common::child_dir(base, &self.owner) {
                let _ = common::rmdir(&p);
            }
            if b.owned {
                let _ = common::rmdir(base);
            }
        }
    }
}

/// Removes job directories made so far, then their parents if empty.
fn discard(made: &[(usize, PathBuf)], parents: &[PathBuf]) {
    for (_, d) in made {
        let _ = common::rmdir(d);
    }
    for p in parents {
        let _ = common::rmdir(p);
    }
}

/// A job's directories, one per hierarchy.
pub(crate) struct Job {
    dirs: Vec<(Vec<String>, PathBuf)>,
    /// Each directory's `tasks` file, where a ready directory came with it open.
    tasks: Mutex<Vec<Option<OwnedFd>>>,
}

impl Job {
    fn dir_of(&self, c: Controller) -> Option<&Path> {
        let name = c.v1_name();
        self.dirs
            .iter()
            .find(|(cs, _)| cs.iter().any(|x| x == name))
            .map(|(_, d)| d.as_path())
    }

    fn configure(&self, limits: &Resources) -> Result<()> {
        // Only the hierarchies a set limit required are consulted, and those exist.
        let dir = |c: Controller| self.dir_of(c).expect("a required hierarchy was joined");
        if limits.memory.is_some() {
            memory::apply(dir(Controller::Memory), limits)?;
        }
        if limits.cpu_percent.is_some() {
            cpu::apply(dir(Controller::Cpu), limits)?;
        }
        if limits.pids.is_some() {
            pids::apply(dir(Controller::Pids), limits)?;
        }
        if limits.has_io() {
            blkio::apply(dir(Controller::Io), limits)?;
        }
        Ok(())
    }

    pub(crate) fn populated(&self) -> bool {
        // Every hierarchy holds the same processes; one is enough to ask.
        self.dirs
            .first()
            .is_some_and(|(_, d)| !common::procs(d).is_empty())
    }

    pub(crate) fn kill(&self) {
        match self.dir_of(Controller::Freezer) {
            Some(f) => freezer::kill(f),
            None => {
                if let Some((_, d)) = self.dirs.first() {
                    common::kill_listed(d);
                }
            }
        }
    }

    pub(crate) fn usage(&self) -> Stats {
        let mut u = Stats::default();
        if let Some(d) = self.dir_of(Controller::CpuAcct) {
            cpuacct::stats(d, &mut u);
        }
        if let Some(d) = self.dir_of(Controller::Memory) {
            memory::stats(d, &mut u);
        }
        if let Some(d) = self.dir_of(Controller::Io) {
            blkio::stats(d, &mut u);
        }
        if let Some(d) = self.dir_of(Controller::Pids) {
            pids::stats(d, &mut u);
        }
        u
    }

    pub(crate) fn cpu_time(&self) -> Option<Duration> {
        cpuacct::usage(self.dir_of(Controller::CpuAcct)?)
    }

    /// Removes every directory, killing what is left; true once all are gone.
    pub(crate) fn remove(&self) -> bool {
        let mut all = true;
        for (_, d) in &self.dirs {
            all &= common::remove_dir_killing(d, |_| self.kill(), |d| common::procs(d).is_empty());
        }
        all
    }

    /// Each hierarchy's `tasks` file, opened for writing by this (root)
    /// process, for the cell's init to write "0" to: the kernel checks the
    /// opener's credentials, and a process that moves itself through
    /// `tasks` skips the global lock every other migration takes, whose
    /// RCU grace period cost 150-500 µs per spawn (five hierarchies: ~40 µs
    /// in all). Empty if a file cannot be opened: then `attach` is used.
    pub(crate) fn self_join(&self) -> Vec<(std::os::fd::OwnedFd, PathBuf)> {
        let mut out = Vec::with_capacity(self.dirs.len());
        let mut open = self.tasks.lock();
        for (i, (_, d)) in self.dirs.iter().enumerate() {
            if let Some(fd) = open.get_mut(i).and_then(Option::take) {
                out.push((fd, d.clone()));
                continue;
            }
            let path = d.join("tasks");
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
            {
                Ok(f) => out.push((f.into(), d.clone())),
                Err(_) => return Vec::new(),
            }
        }
        out
    }

    pub(crate) fn attach(&self, pid: i32) -> Result<()> {
        let pid = pid.to_string();
        for (_, d) in &self.dirs {
            common::write(&d.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }
}
