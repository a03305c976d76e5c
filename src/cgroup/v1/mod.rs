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

#[cfg(test)]
mod tests {
    //! Against real v1 cgroups: fresh children of this process's own cgroup
    //! in hierarchies whose own cgroup is this host's root (pids, freezer,
    //! cpu, cpuacct), removed at the end. Skipped where there are none (a
    //! pure v2 host; the integration suite covers the rest).

    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::cgroup::probe::{self, Host};

    /// A child of this process's own cgroup in the hierarchy of `controller`.
    pub(super) struct Scratch(pub(super) PathBuf);

    impl Scratch {
        pub(super) fn new(controller: &str) -> Option<Scratch> {
            static N: AtomicUsize = AtomicUsize::new(0);
            let Host::V1 { hierarchies } = probe::probe() else {
                return None;
            };
            let own = hierarchies
                .into_iter()
                .find(|h| h.controllers == [controller])?
                .own?;
            let n = N.fetch_add(1, Ordering::Relaxed);
            let dir = own.join(format!("jobcell-unit-{}-{n}", std::process::id()));
            common::mkdir(&dir).ok()?;
            Some(Scratch(dir))
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let thaw = self.0.join("freezer.state");
            if thaw.exists() {
                let _ = common::write(&thaw, "THAWED");
            }
            // The test killed what it put here; the last task may still be leaving.
            common::wait_until(Duration::from_secs(2), || common::rmdir(&self.0).is_ok());
        }
    }

    fn sleeper() -> Child {
        Command::new("sleep").arg("60").spawn().unwrap()
    }

    /// True if `c` died of SIGKILL within a few seconds; kills it otherwise.
    fn killed(c: &mut Child) -> bool {
        let mut status = None;
        common::wait_until(Duration::from_secs(5), || {
            status = c.try_wait().unwrap();
            status.is_some()
        });
        if status.is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
        status.is_some_and(|s| s.signal() == Some(libc::SIGKILL))
    }

    fn job(dirs: &[(&str, &Scratch)]) -> Job {
        Job {
            dirs: dirs
                .iter()
                .map(|(c, d)| (vec![(*c).to_owned()], d.0.clone()))
                .collect(),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// `kill` reaches every process of the job: through the freezer (frozen
    /// first, so that nothing forks meanwhile, thawed after) where the job
    /// has that hierarchy, else by listing them; `remove` then leaves no
    /// directory.
    #[test]
    fn kill_reaches_every_process_and_remove_leaves_nothing() {
        let (Some(pids), Some(freezer)) = (Scratch::new("pids"), Scratch::new("freezer")) else {
            eprintln!("skipped: no v1 pids and freezer hierarchies here");
            return;
        };
        for with_freezer in [false, true] {
            let mut dirs = vec![("pids", &pids)];
            if with_freezer {
                dirs.push(("freezer", &freezer));
            }
            let j = job(&dirs);
            assert!(!j.populated());
            let mut children: Vec<Child> = (0..3).map(|_| sleeper()).collect();
            for c in &children {
                j.attach(c.id() as i32).unwrap();
            }
            for (_, d) in &dirs {
                assert_eq!(common::procs(&d.0).len(), 3, "{}", d.0.display());
            }
            assert!(j.populated());
            j.kill();
            let dead = children.iter_mut().map(killed).filter(|k| *k).count();
            assert_eq!(dead, 3, "with the freezer: {with_freezer}");
            assert!(common::wait_until(Duration::from_secs(2), || !j.populated()));
            if with_freezer {
                assert_eq!(
                    common::read(&freezer.0.join("freezer.state"))
                        .unwrap()
                        .trim(),
                    "THAWED"
                );
            }
        }
        // A job's remove kills what is still there, and every directory goes.
        let j = job(&[("pids", &pids), ("freezer", &freezer)]);
        let mut c = sleeper();
        // As the cell's init joins: through each directory's tasks file,
        // opened by the host beforehand.
        let join = j.self_join();
        assert_eq!(join.len(), 2);
        for (fd, dir) in join {
            std::fs::File::from(fd)
                .write_all(c.id().to_string().as_bytes())
                .unwrap();
            assert_eq!(common::procs(&dir), [c.id() as i32]);
        }
        assert!(j.remove());
        assert!(killed(&mut c));
        assert!(!pids.0.exists() && !freezer.0.exists());
        // One directory that stays (not a cgroup, not empty): not all gone.
        let plain = tempfile::tempdir().unwrap();
        std::fs::write(plain.path().join("f"), "").unwrap();
        let stays = Job {
            dirs: vec![
                (vec!["pids".into()], plain.path().to_owned()),
                (vec!["cpu".into()], plain.path().join("absent")),
            ],
            tasks: Mutex::new(Vec::new()),
        };
        assert!(!stays.remove());
    }

    /// Each limit goes to the hierarchy of its controller, and the usage
    /// figures come from theirs.
    #[test]
    fn limits_and_usage_go_through_each_controllers_hierarchy() {
        let (Some(pids), Some(cpu), Some(acct)) = (
            Scratch::new("pids"),
            Scratch::new("cpu"),
            Scratch::new("cpuacct"),
        ) else {
            eprintln!("skipped: no v1 pids, cpu and cpuacct hierarchies here");
            return;
        };
        let j = job(&[("pids", &pids), ("cpu", &cpu), ("cpuacct", &acct)]);
        j.configure(&Resources {
            pids: Some(7),
            cpu_percent: Some(50),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(common::read(&pids.0.join("pids.max")).unwrap().trim(), "7");
        assert_eq!(
            common::read(&cpu.0.join("cpu.cfs_quota_us"))
                .unwrap()
                .trim(),
            "50000"
        );
        let mut busy = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        j.attach(busy.id() as i32).unwrap();
        assert_eq!(j.usage().pids_current, 1);
        common::wait_until(Duration::from_secs(5), || {
            j.cpu_time().is_some_and(|t| t >= Duration::from_millis(20))
        });
        let _ = busy.kill();
        let _ = busy.wait();
        common::wait_until(Duration::from_secs(2), || !j.populated());
        let used = common::read_u64_opt(&acct.0.join("cpuacct.usage")).unwrap();
        assert!(used > 0);
        assert_eq!(j.cpu_time(), Some(Duration::from_nanos(used)));
        let u = j.usage();
        assert_eq!(
            u.cpu_user + u.cpu_system,
            Duration::from_nanos(used),
            "{u:?}"
        );
        assert_eq!(u.pids_current, 0, "{u:?}");
    }

    /// A job joins the hierarchies its limits need or fails, and joins the
    /// accounting ones where it can: one that fails (here: a directory of
    /// that id exists already) or cannot be used (the base is not visible)
    /// only costs figures. A failure leaves nothing made for the job.
    #[test]
    fn only_the_limits_hierarchies_must_be_joined() {
        let (Some(pids), Some(acct), Some(cpu)) = (
            Scratch::new("pids"),
            Scratch::new("cpuacct"),
            Scratch::new("cpu"),
        ) else {
            eprintln!("skipped: no v1 pids, cpuacct and cpu hierarchies here");
            return;
        };
        let base = |c: &str, dir: std::result::Result<PathBuf, String>| Base {
            controllers: vec![c.to_owned()],
            dir,
            owned: false,
        };
        let tree = Tree::new(
            vec![
                base("pids", Ok(pids.0.clone())),
                base("cpuacct", Ok(acct.0.clone())),
                base("cpu", Ok(cpu.0.clone())),
                base("memory", Err("not visible here".into())),
            ],
            "owner".into(),
        );
        let never: RunAhead = |_| {};
        let limits = Resources {
            pids: Some(8),
            ..Default::default()
        };
        std::fs::create_dir_all(acct.0.join("owner/job1")).unwrap();
        let cg = tree
            .create_job("job1", &limits, true, never)
            .unwrap()
            .expect("a cgroup");
        let Kind::V1(j) = &cg.kind else {
            panic!("a v1 job")
        };
        let dirs: Vec<&Path> = j.dirs.iter().map(|(_, d)| d.as_path()).collect();
        assert_eq!(dirs, [pids.0.join("owner/job1")]);
        assert_eq!(
            common::read(&pids.0.join("owner/job1/pids.max"))
                .unwrap()
                .trim(),
            "8"
        );
        cg.remove();
        // Where nothing is in the way, the accounting hierarchies are joined too.
        let cg = tree
            .create_job("job4", &limits, true, never)
            .unwrap()
            .expect("a cgroup");
        let Kind::V1(j) = &cg.kind else {
            panic!("a v1 job")
        };
        let dirs: Vec<&Path> = j.dirs.iter().map(|(_, d)| d.as_path()).collect();
        assert_eq!(dirs, [pids.0.join("owner/job4"), acct.0.join("owner/job4")]);
        cg.remove();

        std::fs::create_dir_all(pids.0.join("owner/job2")).unwrap();
        let e = tree
            .create_job("job2", &limits, true, never)
            .err()
            .expect("the limit's hierarchy failed");
        assert!(
            matches!(
                &e,
                Error::Cgroup {
                    errno: Errno(libc::EEXIST),
                    ..
                }
            ),
            "{e}"
        );
        // A later limit's hierarchy fails (the limits are joined in field
        // order: cpu_percent, then pids): what was made for the job goes.
        std::fs::create_dir_all(pids.0.join("owner/job3")).unwrap();
        let both = Resources {
            pids: Some(8),
            cpu_percent: Some(50),
            ..Default::default()
        };
        assert!(tree.create_job("job3", &both, false, never).is_err());
        assert!(!cpu.0.join("owner/job3").exists(), "left behind");
        for d in ["owner/job3", "owner"].map(|d| cpu.0.join(d)) {
            let _ = common::rmdir(&d);
        }
        for d in ["owner/job1", "owner"].map(|d| acct.0.join(d)) {
            let _ = common::rmdir(&d);
        }
        for d in ["owner/job2", "owner/job3", "owner"].map(|d| pids.0.join(d)) {
            let _ = common::rmdir(&d);
        }
    }

    /// Which hierarchies a tree has: bases that cannot be used are not
    /// swept (`bases`), a tree with none is not usable (probed again next
    /// time), and each controller is found in its own hierarchy.
    #[test]
    fn a_tree_knows_its_usable_bases_and_each_controllers_hierarchy() {
        let b = |cs: &[&str], dir: std::result::Result<&str, &str>, owned| Base {
            controllers: cs.iter().map(|c| (*c).to_owned()).collect(),
            dir: dir.map(PathBuf::from).map_err(str::to_owned),
            owned,
        };
        let none = Tree::new(
            vec![b(&["memory"], Err("not visible here"), true)],
            "owner".into(),
        );
        assert!(!none.usable());
        assert_eq!(none.bases().count(), 0);
        let t = Tree::new(
            vec![
                b(&["cpu", "cpuacct"], Err("read-only"), false),
                b(&["memory"], Ok("/cg/memory/jobcell"), true),
                b(&["pids"], Ok("/cg/pids/mine"), false),
            ],
            "owner".into(),
        );
        assert!(t.usable());
        assert_eq!(
            t.bases().collect::<Vec<_>>(),
            [
                (Path::new("/cg/memory/jobcell"), true),
                (Path::new("/cg/pids/mine"), false)
            ]
        );
        assert_eq!(t.index_of("cpu"), Some(0));
        assert_eq!(t.index_of("cpuacct"), Some(0));
        assert_eq!(t.index_of("memory"), Some(1));
        assert_eq!(t.index_of("pids"), Some(2));
        assert_eq!(t.index_of("blkio"), None);
        assert_eq!(t.index_of("cpu,cpuacct"), None);
    }

    /// The `.ready-*` directories in `dir`.
    pub(super) fn ready_in(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.retain(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".ready-"))
        });
        v.sort();
        v
    }

    /// A job takes a ready directory where there is one (renamed to its
    /// id); one it cannot use because its id is taken goes back to the
    /// pool; one removed under the pool makes the job make its own.
    #[test]
    fn jobs_take_ready_directories_and_give_back_what_they_cannot_use() {
        let Some(pids) = Scratch::new("pids") else {
            eprintln!("skipped: no v1 pids hierarchy here");
            return;
        };
        let tree = Tree::new(
            vec![Base {
                controllers: vec!["pids".into()],
                dir: Ok(pids.0.clone()),
                owned: false,
            }],
            "owner".into(),
        );
        let fill: RunAhead = |w| while w.step() {};
        let never: RunAhead = |_| {};
        let limits = Resources {
            pids: Some(8),
            ..Default::default()
        };
        let own = pids.0.join("owner");
        // The first job makes its own directory and asks for ready ones.
        let a = tree.create_job("a", &limits, false, fill).unwrap().unwrap();
        let ready = ready_in(&own);
        assert_eq!(ready.len(), 4, "{ready:?}");
        assert_eq!(tree.cached_descriptors().len(), 4);
        // The next takes one: it is gone from the pool, and the job's
        // directory is that cgroup under the job's name.
        let b = tree
            .create_job("b", &limits, false, never)
            .unwrap()
            .unwrap();
        let left = ready_in(&own);
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left.iter().all(|r| ready.contains(r)));
        assert_eq!(tree.cached_descriptors().len(), 3);
        assert_eq!(common::read(&own.join("b/pids.max")).unwrap().trim(), "8");
        // A taken id: the job fails, the ready directory it took stays ready.
        common::mkdir(&own.join("c")).unwrap();
        let e = tree
            .create_job("c", &limits, false, never)
            .err()
            .expect("c exists");
        assert!(
            matches!(
                &e,
                Error::Cgroup {
                    errno: Errno(libc::EEXIST),
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(ready_in(&own), left);
        assert_eq!(tree.cached_descriptors().len(), 3);
        // Ready directories removed behind the pool's back: the job makes
        // its own directory.
        for r in &left {
            common::rmdir(r).unwrap();
        }
        let d = tree
            .create_job("d", &limits, false, never)
            .unwrap()
            .unwrap();
        assert_eq!(common::read(&own.join("d/pids.max")).unwrap().trim(), "8");
        for j in [a, b, d] {
            j.remove();
        }
        tree.pools.give_back();
        assert_eq!(tree.cached_descriptors().len(), 0);
        common::rmdir(&own.join("c")).unwrap();
        common::rmdir(&own).unwrap();
    }

    /// A job that fails in a hierarchy leaves none of the parents it made
    /// there: this process's directory and an owned base go again while
    /// empty. (The failure here: an id that is no plain name, refused after
    /// the parents were made.)
    #[test]
    fn a_failed_job_leaves_no_parent_it_made() {
        let Some(pids) = Scratch::new("pids") else {
            eprintln!("skipped: no v1 pids hierarchy here");
            return;
        };
        let base = pids.0.join("jobcell");
        let tree = Tree::new(
            vec![Base {
                controllers: vec!["pids".into()],
                dir: Ok(base.clone()),
                owned: true,
            }],
            "owner".into(),
        );
        let never: RunAhead = |_| {};
        let limits = Resources {
            pids: Some(8),
            ..Default::default()
        };
        let e = tree.create_job(".hidden", &limits, false, never).err();
        assert!(matches!(e, Some(Error::InvalidJobId { .. })), "{e:?}");
        let left = base.exists();
        let _ = common::rmdir(&base.join("owner"));
        let _ = common::rmdir(&base);
        assert!(!left, "{} stayed", base.display());
    }

    /// Spawn joins a v1 job through `CgroupJoin`: no directory to clone
    /// into (that is v2's), the cell's init moving itself through each
    /// hierarchy's `tasks` file, and the host's `attach` as the fallback,
    /// each reaching every hierarchy of the job.
    #[test]
    fn a_v1_job_is_joined_through_each_hierarchys_tasks_or_attached() {
        use crate::cgroup::CgroupJoin;
        let (Some(pids), Some(acct)) = (Scratch::new("pids"), Scratch::new("cpuacct")) else {
            eprintln!("skipped: no v1 pids and cpuacct hierarchies here");
            return;
        };
        let base = |c: &str, s: &Scratch| Base {
            controllers: vec![c.to_owned()],
            dir: Ok(s.0.clone()),
            owned: false,
        };
        let tree = Tree::new(
            vec![base("pids", &pids), base("cpuacct", &acct)],
            "owner".into(),
        );
        let never: RunAhead = |_| {};
        let limits = Resources {
            pids: Some(8),
            ..Default::default()
        };
        let dirs = |id: &str| [pids.0.join("owner").join(id), acct.0.join("owner").join(id)];
        let mut c = sleeper();
        let pid = c.id() as i32;
        let joined = tree
            .create_job("joined", &limits, true, never)
            .unwrap()
            .unwrap();
        assert!(joined.clone_target().is_none());
        let join = CgroupJoin::self_join(&joined);
        assert_eq!(
            join.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>(),
            dirs("joined")
        );
        for (fd, dir) in join {
            std::fs::File::from(fd)
                .write_all(pid.to_string().as_bytes())
                .unwrap();
            assert_eq!(common::procs(&dir), [pid], "{}", dir.display());
        }
        let attached = tree
            .create_job("attached", &limits, true, never)
            .unwrap()
            .unwrap();
        CgroupJoin::attach(&attached, pid).unwrap();
        for dir in dirs("attached") {
            assert_eq!(common::procs(&dir), [pid], "{}", dir.display());
        }
        for d in dirs("joined") {
            assert!(common::procs(&d).is_empty(), "{}", d.display());
        }
        // Removing the job kills what is in it.
        attached.remove();
        assert!(killed(&mut c));
        joined.remove();
        let left: Vec<PathBuf> = [dirs("joined"), dirs("attached")]
            .concat()
            .into_iter()
            .filter(|d| d.exists())
            .collect();
        for d in [pids.0.join("owner"), acct.0.join("owner")] {
            let _ = common::rmdir(&d);
        }
        assert!(left.is_empty(), "{left:?}");
    }
}
