//! Job directories made ahead (cgroup v1).
//!
//! Creating a cgroup is kernel work: ~70 µs for a memory cgroup here, ~180 µs
//! for the five hierarchies a job with limits joins. Work done ahead (see
//! [`Ahead`]; spawn's preparation thread runs it) makes a few empty
//! directories in each hierarchy, named `.ready-<n>` (a job id never starts
//! with a dot), with their `tasks` file already open for the cell's init to
//! join through. A job renames one to its id (v1 allows renaming a cgroup
//! within its parent), so its directory looks as if made for it: a fresh
//! cgroup, nothing inherited from another job. The cpuset hierarchy is left out:
//! a new cpuset needs its CPUs written before anything can join it.
//!
//! Ready directories live in this process's own directory of each
//! hierarchy, so a crashed process's are swept with the rest; a process
//! that exits normally removes them (see `remove_ready_at_exit`).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::super::{common, Ahead};

/// Ready directories kept per hierarchy.
const WARM: usize = 4;

/// A ready directory: its path and its open `tasks` file.
pub(crate) struct Ready {
    pub dir: PathBuf,
    pub tasks: OwnedFd,
}

/// One hierarchy's ready directories.
struct Hierarchy {
    /// jobcell's base in the hierarchy, created on demand when `owned`.
    base: PathBuf,
    owned: bool,
    /// This process's directory under the base: where jobs live.
    proc_dir: PathBuf,
    ready: Mutex<Vec<Ready>>,
    /// A job has used this hierarchy: only then is it worth filling.
    used: AtomicBool,
    /// When making a directory last failed, if it did: no more tries for
    /// a while (a failure may be a moment's, such as EMFILE, or lasting,
    /// such as a base without write access; jobs make their own meanwhile).
    failed: Mutex<Option<Instant>>,
}

/// How long a hierarchy whose directory could not be made waits for another try.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl Hierarchy {
    fn wants_more(&self) -> bool {
        self.used.load(Ordering::Relaxed)
            && self
                .failed
                .lock()
                .is_none_or(|at| at.elapsed() >= RETRY_AFTER)
            && self.ready.lock().len() < WARM
    }
}

/// The ready directories of every hierarchy of a tree (`None`: not pooled).
pub(crate) struct Pools {
    hierarchies: Vec<Option<Hierarchy>>,
    next: AtomicU64,
}

/// Every pool of the process, for the exit handler.
static ALL: Mutex<Vec<Weak<Pools>>> = Mutex::new(Vec::new());

/// Set by the exit handler: no ready directory is made after it.
static EXITING: AtomicBool = AtomicBool::new(false);
/// Ready directories being made now. The exit handler waits for these: a
/// thread still making one when the process exits would leave it behind.
static MAKING: AtomicUsize = AtomicUsize::new(0);
/// A pause after each `mkdir` of a ready directory, in microseconds: a
/// test's way to catch the process exiting mid-refill.
static TEST_DELAY_US: AtomicU64 = AtomicU64::new(0);

/// Makes every ready directory take `delay` longer to make (tests only).
pub(crate) fn delay_ready_dirs(delay: Duration) {
    TEST_DELAY_US.store(delay.as_micros() as u64, Ordering::Relaxed);
}

/// Counts a make in [`MAKING`] while it lives.
struct Making(&'static AtomicUsize);

impl Making {
    /// `None` once the process is exiting.
    fn start() -> Option<Making> {
        Making::on(&MAKING, &EXITING)
    }

    /// Counts in `count` unless `exiting` is set: `start` passes the
    /// process's statics, tests their own.
    fn on(count: &'static AtomicUsize, exiting: &AtomicBool) -> Option<Making> {
        count.fetch_add(1, Ordering::SeqCst);
        let m = Making(count);
        (!exiting.load(Ordering::SeqCst)).then_some(m)
    }
}

impl Drop for Making {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Pools {
    /// Pools for the hierarchies `dirs` lists: `(base, owned, proc_dir)`,
    /// `None` for one not pooled.
    pub(crate) fn new(dirs: Vec<Option<(PathBuf, bool, PathBuf)>>) -> Arc<Pools> {
        let p = Arc::new(Pools {
            hierarchies: dirs
                .into_iter()
                .map(|d| {
                    d.map(|(base, owned, proc_dir)| Hierarchy {
                        base,
                        owned,
                        proc_dir,
                        ready: Mutex::new(Vec::new()),
                        used: AtomicBool::new(false),
                        failed: Mutex::new(None),
                    })
                })
                .collect(),
            next: AtomicU64::new(0),
        });
        let mut all = ALL.lock();
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&p));
        p
    }

    /// Takes a ready directory of hierarchy `i`, if there is one (and
    /// marks the hierarchy as one jobs use).
    pub(crate) fn take(&self, i: usize) -> Option<Ready> {
        let h = self.hierarchies.get(i)?.as_ref()?;
        h.used.store(true, Ordering::Relaxed);
        h.ready.lock().pop()
    }

    /// Gives back a directory taken but not used.
    pub(crate) fn put_back(&self, i: usize, r: Ready) {
        match self.hierarchies.get(i).and_then(Option::as_ref) {
            Some(h) => h.ready.lock().push(r),
            None => {
                let _ = common::rmdir(&r.dir);
            }
        }
    }

    /// Whether some pool is below its size (and can still be filled).
    pub(crate) fn wants_more(&self) -> bool {
        self.hierarchies.iter().flatten().any(Hierarchy::wants_more)
    }

    /// The open `tasks` files: descriptors a leak check must not count.
    pub(crate) fn descriptors(&self) -> Vec<RawFd> {
        self.hierarchies
            .iter()
            .flatten()
            .flat_map(|h| {
                h.ready
                    .lock()
                    .iter()
                    .map(|r| r.tasks.as_raw_fd())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn make(&self, h: &Hierarchy) -> Result<Ready, ()> {
        let _making = Making::start().ok_or(())?;
        if h.owned {
            common::mkdir(&h.base).map_err(drop)?;
        }
        common::mkdir(&h.proc_dir).map_err(drop)?;
        // Gone at exit with the rest, even if no job of this process used
        // them last.
        let mut parents = vec![h.proc_dir.clone()];
        if h.owned {
            parents.push(h.base.clone());
        }
        super::super::remove_at_exit(&parents);
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = h.proc_dir.join(format!(".ready-{n}"));
        if !common::mkdir(&dir).map_err(drop)? {
            return Err(()); // someone else's: leave it
        }
        let delay = TEST_DELAY_US.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(dir.join("tasks"))
        {
            Ok(f) => Ok(Ready {
                dir,
                tasks: f.into(),
            }),
            Err(_) => {
                let _ = common::rmdir(&dir);
                Err(())
            }
        }
    }
}

impl Ahead for Pools {
    /// Makes one ready directory where one is missing.
    fn step(&self) -> bool {
        let Some(h) = self.hierarchies.iter().flatten().find(|h| h.wants_more()) else {
            return false;
        };
        match self.make(h) {
            Ok(r) => {
                h.ready.lock().push(r);
                *h.failed.lock() = None;
            }
            Err(()) => *h.failed.lock() = Some(Instant::now()),
        }
        true
    }

    /// Removes every ready directory, and marks no hierarchy as used: the
    /// next job that takes from one asks for a refill again.
    fn give_back(&self) {
        for h in self.hierarchies.iter().flatten() {
            h.used.store(false, Ordering::Relaxed);
            let ready = std::mem::take(&mut *h.ready.lock());
            for r in ready {
                drop(r.tasks);
                let _ = common::rmdir(&r.dir);
            }
        }
    }
}

/// Removes every ready directory (at exit, before the parents go).
///
/// The preparation thread may be making one right now, and would go on
/// refilling what this empties: first no more are made, then the ones under
/// way are waited for (briefly: a thread stuck in the kernel must not hold
/// up the exit), then every `.ready-*` in this process's own directories
/// goes, whether a pool still lists it or not.
pub(crate) fn remove_ready_at_exit() {
    EXITING.store(true, Ordering::SeqCst);
    wait_for_makes(&MAKING, EXIT_WAIT);
    let Some(all) = ALL.try_lock_for(EXIT_WAIT) else {
        return; // swept by a later process
    };
    for pools in all.iter().filter_map(Weak::upgrade) {
        for h in pools.hierarchies.iter().flatten() {
            let Ok(entries) = std::fs::read_dir(&h.proc_dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_name().as_encoded_bytes().starts_with(b".ready-") {
                    let _ = common::rmdir(&e.path());
                }
            }
        }
    }
}

/// How long the exit handler waits for a ready directory under way.
const EXIT_WAIT: Duration = Duration::from_millis(500);

/// Waits until no make counted in `making` is under way, or `limit` has passed.
fn wait_for_makes(making: &AtomicUsize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while making.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::cgroup::v1::tests::{ready_in, Scratch};

    /// Ready directories are made only for a hierarchy jobs take from, up
    /// to `WARM`, each a cgroup a process joins through its open `tasks`
    /// file; one taken and not used goes back (or away, for a hierarchy
    /// not pooled); all go when the process idles, and no more are made
    /// until a job takes from the hierarchy again.
    #[test]
    fn ready_directories_are_kept_warm_where_jobs_go() {
        let Some(pids) = Scratch::new("pids") else {
            eprintln!("skipped: no v1 pids hierarchy here");
            return;
        };
        let base = pids.0.join("jobcell");
        let proc_dir = base.join("owner");
        let p = Pools::new(vec![Some((base.clone(), true, proc_dir.clone())), None]);
        assert!(!p.wants_more());
        assert!(!p.step(), "made ahead for a hierarchy no job used");
        assert!(!base.exists());
        assert!(p.take(0).is_none());
        assert!(p.take(1).is_none() && p.take(2).is_none());
        assert!(p.wants_more());
        let mut made = 0;
        while p.step() {
            made += 1;
            assert!(made <= WARM, "more than {WARM} made");
        }
        assert_eq!(made, WARM);
        assert!(!p.wants_more());
        assert_eq!(ready_in(&proc_dir).len(), WARM);
        assert_eq!(p.descriptors().len(), WARM);

        let r = p.take(0).expect("a ready directory");
        assert_eq!(r.dir.parent(), Some(proc_dir.as_path()));
        assert!(p.wants_more());
        assert_eq!(p.descriptors().len(), WARM - 1);
        let mut c = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let tasks = r.tasks.try_clone().unwrap();
        std::fs::File::from(tasks)
            .write_all(c.id().to_string().as_bytes())
            .unwrap();
        let joined = common::procs(&r.dir);
        let _ = c.kill();
        let _ = c.wait();
        assert_eq!(joined, [c.id() as i32]);
        assert!(common::wait_until(Duration::from_secs(2), || {
            common::procs(&r.dir).is_empty()
        }));
        p.put_back(0, r);
        assert!(!p.wants_more());
        assert_eq!(p.descriptors().len(), WARM);
        let r = p.take(0).expect("a ready directory");
        let dir = r.dir.clone();
        p.put_back(1, r);
        assert!(!dir.exists(), "a ready directory given to no pool stayed");
        assert_eq!(ready_in(&proc_dir).len(), WARM - 1);

        p.give_back();
        assert_eq!(ready_in(&proc_dir), Vec::<PathBuf>::new());
        assert!(p.descriptors().is_empty());
        assert!(!p.wants_more());
        assert!(!p.step());
        common::rmdir(&proc_dir).unwrap();
        common::rmdir(&base).unwrap();
    }

    /// Where a ready directory cannot be made (here: not a cgroup, so it
    /// has no `tasks` file), nothing is left, and the hierarchy is not
    /// tried again for a while: jobs make their own meanwhile.
    #[test]
    fn a_failed_make_leaves_nothing_and_waits_before_trying_again() {
        let plain = tempfile::tempdir().unwrap();
        let proc_dir = plain.path().join("owner");
        let p = Pools::new(vec![Some((
            plain.path().to_owned(),
            false,
            proc_dir.clone(),
        ))]);
        assert!(p.take(0).is_none());
        assert!(p.step(), "the make was not tried");
        assert_eq!(ready_in(&proc_dir), Vec::<PathBuf>::new());
        assert!(p.descriptors().is_empty());
        assert!(!p.wants_more(), "tried again at once");
        assert!(!p.step());
        std::thread::sleep(RETRY_AFTER);
        assert!(p.wants_more(), "never tried again");
    }

    /// A make counts while it lasts (the exit handler waits for those
    /// under way); once the process is exiting, none starts.
    #[test]
    fn a_make_counts_while_it_lasts_and_none_starts_at_exit() {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let exiting = AtomicBool::new(false);
        let m = Making::on(&COUNT, &exiting);
        assert!(m.is_some());
        assert_eq!(COUNT.load(Ordering::SeqCst), 1);
        drop(m);
        assert_eq!(COUNT.load(Ordering::SeqCst), 0);
        exiting.store(true, Ordering::SeqCst);
        assert!(Making::on(&COUNT, &exiting).is_none());
        assert_eq!(
            COUNT.load(Ordering::SeqCst),
            0,
            "a refused make still counted"
        );
    }

    /// The exit handler waits for the makes under way (a make that went on
    /// after it would leave its directory behind), but not forever for one
    /// stuck in the kernel.
    #[test]
    fn the_exit_waits_for_makes_under_way_but_not_forever() {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let exiting = AtomicBool::new(false);
        let m = Making::on(&COUNT, &exiting).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(m);
        });
        // A limit far past the make's end: waiting for it instead of the
        // make would show as a hang.
        wait_for_makes(&COUNT, Duration::from_secs(120));
        assert_eq!(COUNT.load(Ordering::SeqCst), 0, "did not wait for the make");
        t.join().unwrap();
        let stuck = Making::on(&COUNT, &exiting).unwrap();
        wait_for_makes(&COUNT, Duration::from_millis(20));
        assert_eq!(COUNT.load(Ordering::SeqCst), 1);
        drop(stuck);
    }
}
