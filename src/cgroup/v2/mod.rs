//! cgroup v2: the manager of one delegated tree, and a job's cgroup in it.
//!
//! Controllers are enabled in `cgroup.subtree_control` on the way down from
//! the top of the tree (the cgroup jobcell was given, or its own) to each
//! job, and only those the job's limits and usage figures need. The
//! no-internal-processes rule forbids that while the top holds processes; the
//! processes are then moved into a leaf, `<top>/jobcell-supervisor`.

mod cpu;
mod cpuset;
mod io;
mod memory;
pub(crate) mod pids;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;

use super::{common, JobCgroup, Kind, Resources, Stats, ACCOUNTING};
use crate::error::{Errno, Error, Result};

/// The leaf that the processes of the top cgroup move into when controllers
/// must be enabled there.
pub(crate) const LEAF: &str = "jobcell-supervisor";

/// One delegated v2 tree.
pub(crate) struct Tree {
    /// The cgroup whose `cgroup.subtree_control` is written first; it may hold processes.
    top: PathBuf,
    /// Where per-process directories go: `top/jobcell`, or `top` itself when configured.
    base: PathBuf,
    /// True for the default base, which is removed when empty.
    base_owned: bool,
    /// This process's directory name under `base`.
    owner: String,
    /// Serialises moving processes into the leaf.
    leaf_lock: Mutex<()>,
}

impl Tree {
    pub(crate) fn new(top: PathBuf, base: PathBuf, base_owned: bool, owner: String) -> Tree {
        Tree {
            top,
            base,
            base_owned,
            owner,
            leaf_lock: Mutex::new(()),
        }
    }

    pub(crate) fn base(&self) -> (&Path, bool) {
        (&self.base, self.base_owned)
    }

    /// The leaf jobcell may have created under the top (removed by the sweeper when empty).
    pub(crate) fn leaf(&self) -> Option<PathBuf> {
        self.base_owned.then(|| self.top.join(LEAF))
    }

    /// Creates job `id`'s cgroup and writes its limits.
    pub(crate) fn create_job(
        &self,
        id: &str,
        limits: &Resources,
        accounting: bool,
    ) -> Result<Option<JobCgroup>> {
        let must = limits.needs_cgroup();
        let required: Vec<(&'static str, &'static str)> = super::required(limits)
            .into_iter()
            .filter_map(|(limit, c)| c.v2_name().map(|n| (limit, n)))
            .collect();
        let offered = match common::read(&self.top.join("cgroup.controllers")) {
            Ok(t) => t,
            Err(e) if must => return Err(e),
            Err(_) => return Ok(None),
        };
        let offered: Vec<&str> = offered.split_whitespace().collect();
        for (limit, c) in &required {
            if !offered.contains(c) {
                return Err(Error::ControllerUnavailable {
                    limit,
                    controller: c,
                    reason: format!(
                        "{} offers only [{}]; enable it in the parent's cgroup.subtree_control, \
                         or delegate it (systemd: Delegate=yes)",
                        self.top.join("cgroup.controllers").display(),
                        offered.join(" ")
                    ),
                });
            }
        }
        let mut req: Vec<&'static str> = Vec::new();
        for (_, c) in &required {
            if !req.contains(c) {
                req.push(c);
            }
        }
        let optional: Vec<&'static str> = ACCOUNTING
            .iter()
            .filter(|_| accounting)
            .filter_map(|c| c.v2_name())
            .filter(|c| offered.contains(c) && !req.contains(c))
            .collect();

        // Directories first, retried when a parent vanishes; then the limits, once.
        let mut attempt = 0;
        let (dir, proc_dir) = loop {
            match self.make_dirs(id, &req, &optional) {
                Ok(dirs) => break dirs,
                Err(e) if common::vanished(&e) && attempt + 1 < common::CREATE_ATTEMPTS => {
                    attempt += 1
                }
                Err(e @ Error::InvalidJobId { .. }) => return Err(e),
                Err(e) => {
                    self.remove_empty_parents();
                    return if must { Err(e) } else { Ok(None) };
                }
            }
        };
        match configure(&dir, limits) {
            Ok(fd) => Ok(Some(JobCgroup {
                kind: Kind::V2(Job { dir, fd }),
                parents: self.parents(&proc_dir),
            })),
            Err(e) => {
                let _ = common::rmdir(&dir);
                self.remove_empty_parents();
                if must {
                    Err(e)
                } else {
                    Ok(None)
                }
            }
        }
    }

    fn parents(&self, proc_dir: &Path) -> Vec<PathBuf> {
        let mut v = vec![proc_dir.to_owned()];
        if self.base_owned {
            v.push(self.base.clone());
        }
        v
    }

    fn remove_empty_parents(&self) {
        if let Ok(p) = common::child_dir(&self.base, &self.owner) {
            for d in self.parents(&p) {
                let _ = common::rmdir(&d);
            }
        }
    }

    /// Enables the controllers on the way down and creates the job's
    /// directory. Returns it and the per-process directory above it.
    fn make_dirs(&self, id: &str, req: &[&str], optional: &[&str]) -> Result<(PathBuf, PathBuf)> {
        let mut wanted: Vec<&str> = req.iter().chain(optional).copied().collect();
        wanted = self.enable(&self.top, wanted, req, true)?;
        if self.base != self.top {
            common::mkdir(&self.base)?;
            wanted = self.enable(&self.base, wanted, req, false)?;
        }
        let proc_dir = common::child_dir(&self.base, &self.owner)?;
        common::mkdir(&proc_dir)?;
        self.enable(&proc_dir, wanted, req, false)?;
        let dir = common::mkdir_job(&proc_dir, id)?;
        Ok((dir, proc_dir))
    }

    /// Makes sure `wanted` controllers are enabled for `dir`'s children.
    /// Returns the controllers that are: the optional ones may stay off.
    fn enable<'a>(
        &self,
        dir: &Path,
        wanted: Vec<&'a str>,
        req: &[&str],
        top: bool,
    ) -> Result<Vec<&'a str>> {
        let file = dir.join("cgroup.subtree_control");
        let current = common::read(&file)?;
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|c| !current.split_whitespace().any(|x| x == **c))
            .copied()
            .collect();
        if missing.is_empty() {
            return Ok(wanted);
        }
        let plus = |cs: &[&str]| {
            cs.iter()
                .map(|c| format!("+{c}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut r = common::write(&file, &plus(&missing));
        if top
            && matches!(
                &r,
                Err(Error::Cgroup {
                    errno: Errno(libc::EBUSY),
                    ..
                })
            )
        {
            self.move_into_leaf()?;
            r = common::write(&file, &plus(&missing));
        }
        let Err(e) = r else { return Ok(wanted) };
        if common::vanished(&e) {
            return Err(e);
        }
        let req_missing: Vec<&str> = missing
            .iter()
            .filter(|c| req.contains(c))
            .copied()
            .collect();
        if req_missing.len() == missing.len() {
            return Err(e);
        }
        if !req_missing.is_empty() {
            common::write(&file, &plus(&req_missing))?;
        }
        Ok(wanted
            .into_iter()
            .filter(|c| !missing.contains(c) || req.contains(c))
            .collect())
    }

    /// Moves every process of the top cgroup (this one first) into the leaf.
    fn move_into_leaf(&self) -> Result<()> {
        let _g = self.leaf_lock.lock();
        let leaf = self.top.join(LEAF);
        let procs = leaf.join("cgroup.procs");
        let me = std::process::id() as i32;
        for _ in 0..common::CREATE_ATTEMPTS {
            common::mkdir(&leaf)?;
            let mut pids = common::procs(&self.top);
            if pids.is_empty() {
                return Ok(());
            }
            pids.sort_by_key(|p| *p != me);
            let mut vanished = false;
            for pid in pids {
                match common::write(&procs, &pid.to_string()) {
                    Ok(())
                    | Err(Error::Cgroup {
                        errno: Errno(libc::ESRCH),
                        ..
                    }) => {}
                    Err(e) if common::vanished(&e) => {
                        vanished = true; // a sweeper removed the empty leaf; make it again
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !vanished && common::procs(&self.top).is_empty() {
                return Ok(());
            }
        }
        Ok(()) // the caller's second write reports whatever is still wrong
    }
}

/// Writes the limits into a fresh job directory and opens it for `CLONE_INTO_CGROUP`.
fn configure(dir: &Path, limits: &Resources) -> Result<OwnedFd> {
    memory::apply(dir, limits)?;
    cpu::apply(dir, limits)?;
    cpuset::apply(dir, limits)?;
    pids::apply(dir, limits)?;
    io::apply(dir, limits)?;
    rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| common::cgroup_error("open", dir, None, e.into()))
}

/// A job's v2 cgroup.
pub(crate) struct Job {
    dir: PathBuf,
    /// The open directory, for `CLONE_INTO_CGROUP`.
    fd: OwnedFd,
}

impl Job {
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn populated(&self) -> bool {
        match std::fs::read_to_string(self.dir.join("cgroup.events")) {
            Ok(t) => common::flat_key(&t, "populated")
                .map_or_else(|| !common::procs(&self.dir).is_empty(), |v| v != 0),
            Err(_) => false, // gone
        }
    }

    pub(crate) fn kill(&self) {
        kill_dir(&self.dir);
    }

    pub(crate) fn usage(&self) -> Stats {
        let mut u = Stats::default();
        cpu::stats(&self.dir, &mut u);
        memory::stats(&self.dir, &mut u);
        io::stats(&self.dir, &mut u);
        pids::stats(&self.dir, &mut u);
        u
    }

    pub(crate) fn cpu_time(&self) -> Option<Duration> {
        cpu::usage(&self.dir)
    }

    /// Removes the directory, killing what is left in it; true once it is gone.
    pub(crate) fn remove(&self) -> bool {
        common::remove_dir_killing(&self.dir, kill_dir, |d| common::procs(d).is_empty())
    }

    pub(crate) fn attach(&self, pid: i32) -> Result<()> {
        common::write(&self.dir.join("cgroup.procs"), &pid.to_string())
    }
}

/// Kills everything in a v2 cgroup: `cgroup.kill` (Linux 5.14), else freeze
/// (so nothing forks meanwhile) and kill each listed process.
pub(crate) fn kill_dir(dir: &Path) {
    if common::write(&dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let frozen = common::write(&dir.join("cgroup.freeze"), "1").is_ok();
    common::kill_listed(dir);
    if frozen {
        let _ = common::write(&dir.join("cgroup.freeze"), "0");
    }
}

#[cfg(test)]
mod tests;
