//! The v2 manager against real cgroups: on this hybrid host, the unified
//! mount `/sys/fs/cgroup/unified` has no controllers but all the plumbing
//! the manager needs (mkdir and rmdir, `cgroup.procs`, `cgroup.events`,
//! `cgroup.kill`, `cpu.stat`, thread roots). Each test works in a scratch
//! cgroup of its own, `jobcell-unit-<pid>-<n>`, used as the tree's top; it
//! moves only processes it started, never writes to a cgroup it did not
//! make, and removes all it made, also when it fails. Enabling controllers
//! and the files a controller adds, which this mount cannot show, are read
//! from fixture directories (`common::fixture`); the v2 VM suites
//! (`.ci/v2vm-tests`) run the whole manager with every controller. Skipped
//! where `/sys/fs/cgroup/unified` is not a cgroup2 mount (a pure v2 host).

use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::fs::inotify;

use super::*;
use crate::cgroup::common::fixture;

const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// A fresh child of the unified root, removed with all it holds.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Option<Scratch> {
        let root = Path::new(UNIFIED);
        if common::fs_type(root) != Ok(common::CGROUP2_MAGIC) {
            eprintln!("skipped: {UNIFIED} is not a cgroup2 mount here");
            return None;
        }
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(|| sweep_dead(root));
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = root.join(format!("jobcell-unit-{}-{n}", std::process::id()));
        assert!(common::mkdir(&dir).unwrap(), "{} existed", dir.display());
        Some(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Whatever a failed test left here is its own children: cgroup.kill
        // reaches the whole subtree.
        if !common::procs(&self.0).is_empty() || has_children(&self.0) {
            let _ = common::write(&self.0.join("cgroup.kill"), "1");
        }
        remove_all(&self.0);
    }
}

/// Removes the empty scratch cgroups of test processes that are gone
/// (killed by a timeout, as cargo-mutants does, before their guards ran).
/// Only empty ones: rmdir refuses a cgroup that holds a process.
fn sweep_dead(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("jobcell-unit-")) else {
            continue;
        };
        let Some(Ok(pid)) = rest.split('-').next().map(str::parse::<u32>) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            rmdir_all(&e.path());
        }
    }
}

fn rmdir_all(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_all(&e.path());
            }
        }
    }
    let _ = common::rmdir(dir);
}

fn has_children(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().is_dir())))
}

/// Removes a cgroup and its descendants, deepest first.
fn remove_all(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_all(&e.path());
            }
        }
    }
    // A killed task may still be leaving.
    common::wait_until(Duration::from_secs(5), || common::rmdir(dir).is_ok());
}

/// Processes this test started, killed and reaped whatever happens.
struct Kids(Vec<Child>);

impl Kids {
    fn sleeping(n: usize) -> Kids {
        Kids(
            (0..n)
                .map(|_| Command::new("sleep").arg("60").spawn().unwrap())
                .collect(),
        )
    }

    fn busy() -> Child {
        Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap()
    }

    fn pids(&self) -> Vec<i32> {
        sorted(self.0.iter().map(|c| c.id() as i32).collect())
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// True if `c` died of SIGKILL within a few seconds.
fn killed(c: &mut Child) -> bool {
    let mut status = None;
    common::wait_until(Duration::from_secs(5), || {
        status = c.try_wait().unwrap();
        status.is_some()
    });
    status.is_some_and(|s| s.signal() == Some(libc::SIGKILL))
}

fn sorted(mut v: Vec<i32>) -> Vec<i32> {
    v.sort_unstable();
    v
}

/// Moves a process this test started into a cgroup it made.
fn place(dir: &Path, pid: i32) {
    common::write(&dir.join("cgroup.procs"), &pid.to_string()).unwrap();
}

fn v2(cg: &JobCgroup) -> &Job {
    match &cg.kind {
        Kind::V2(j) => j,
        Kind::V1(_) => panic!("a v1 job from the v2 manager"),
    }
}

fn open_dir(dir: &Path) -> OwnedFd {
    rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .unwrap()
}

fn errno(e: &Error) -> Option<i32> {
    match e {
        Error::Cgroup { errno, .. } => Some(errno.0),
        _ => None,
    }
}

/// A job's cgroup is made at `<base>/<owner>/<id>` and opened for clone3
/// (close-on-exec); its parents are the ones made for it (the base only
/// where the tree owns it). An id of another job's directory, or one that
/// would leave the tree, is refused, and the other job's directory stays.
#[test]
fn a_job_cgroup_is_made_under_this_process_directory() {
    let Some(s) = Scratch::new() else { return };
    let top = s.0.clone();
    let base = top.join("jobcell");
    let tree = Tree::new(top.clone(), base.clone(), true, "owner".into());
    assert_eq!(tree.base(), (base.as_path(), true));
    assert_eq!(tree.leaf(), Some(top.join(LEAF)));
    let cg = tree
        .create_job("job1", &Resources::default(), true)
        .unwrap()
        .expect("a cgroup");
    let dir = base.join("owner/job1");
    assert!(
        dir.join("cgroup.procs").is_file(),
        "no cgroup at {}",
        dir.display()
    );
    assert_eq!(cg.parents, [base.join("owner"), base.clone()]);
    let j = v2(&cg);
    assert_eq!(j.dir, dir);
    let fd = j.fd();
    let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    assert_eq!(target, dir);
    assert!(rustix::io::fcntl_getfd(fd)
        .unwrap()
        .contains(rustix::io::FdFlags::CLOEXEC));

    // The same id again: an error where the limits need the cgroup (a
    // CPU-time limit: cpu.stat, which every v2 cgroup has), none otherwise.
    let cpu_time = Resources {
        cpu_time: true,
        ..Default::default()
    };
    let e = tree
        .create_job("job1", &cpu_time, false)
        .err()
        .expect("job1 exists");
    assert_eq!(errno(&e), Some(libc::EEXIST), "{e}");
    assert!(tree
        .create_job("job1", &Resources::default(), true)
        .unwrap()
        .is_none());
    assert!(dir.is_dir(), "the other job's cgroup was removed");
    for bad in ["..", "../x", "a/b", ".hidden"] {
        let e = tree
            .create_job(bad, &Resources::default(), true)
            .err()
            .unwrap_or_else(|| panic!("{bad:?} accepted"));
        assert!(matches!(e, Error::InvalidJobId { .. }), "{bad:?}: {e}");
    }
    assert!(!base.join("x").exists() && !base.join("a").exists());
    assert!(v2(&cg).remove());
    assert!(!dir.exists());

    // The configured base is the top itself, which the tree does not own.
    let tree = Tree::new(top.clone(), top.clone(), false, "owner".into());
    assert_eq!(tree.base(), (top.as_path(), false));
    assert_eq!(tree.leaf(), None);
    let cg = tree.create_job("job2", &cpu_time, false).unwrap().unwrap();
    assert_eq!(v2(&cg).dir, top.join("owner/job2"));
    assert_eq!(cg.parents, [top.join("owner")]);
    assert!(v2(&cg).remove());
}

/// A limit whose controller the top does not offer (none here) fails the
/// job with an error naming both, before anything is made; a top that
/// cannot be read fails only a job that needs its cgroup.
#[test]
fn a_limit_needs_its_controller_offered() {
    let Some(s) = Scratch::new() else { return };
    let base = s.0.join("jobcell");
    let tree = Tree::new(s.0.clone(), base.clone(), true, "owner".into());
    for (limits, name) in [
        (
            Resources {
                pids: Some(8),
                ..Default::default()
            },
            "pids",
        ),
        (
            Resources {
                memory: Some(1 << 20),
                ..Default::default()
            },
            "memory",
        ),
    ] {
        let e = tree
            .create_job("job", &limits, true)
            .err()
            .expect("refused");
        match &e {
            Error::ControllerUnavailable {
                limit, controller, ..
            } => assert_eq!((*limit, *controller), (name, name)),
            _ => panic!("{e}"),
        }
        assert!(e.to_string().contains("cgroup.controllers"), "{e}");
    }
    assert!(!base.exists(), "made for a refused job");
    // The accounting controllers are optional: a job without limits runs.
    let cg = tree
        .create_job("job", &Resources::default(), true)
        .unwrap()
        .unwrap();
    assert!(v2(&cg).remove());

    let gone = Tree::new(s.0.join("absent"), s.0.join("absent"), false, "o".into());
    let e = gone
        .create_job(
            "job",
            &Resources {
                cpu_time: true,
                ..Default::default()
            },
            true,
        )
        .err()
        .expect("an unreadable top");
    assert_eq!(errno(&e), Some(libc::ENOENT), "{e}");
    assert!(gone
        .create_job("job", &Resources::default(), true)
        .unwrap()
        .is_none());
}

/// Processes attached to a job are seen (`populated`, its CPU time and
/// usage from `cpu.stat`), all killed by `kill`, and `remove` kills what is
/// left and takes the directory.
#[test]
fn a_jobs_processes_are_counted_killed_and_removed_with_it() {
    let Some(s) = Scratch::new() else { return };
    let tree = Tree::new(s.0.clone(), s.0.clone(), false, "owner".into());
    let cg = tree
        .create_job("job", &Resources::default(), true)
        .unwrap()
        .unwrap();
    let j = v2(&cg);
    assert!(!j.populated());
    let mut kids = Kids::sleeping(2);
    kids.0.push(Kids::busy());
    for c in &kids.0 {
        j.attach(c.id() as i32).unwrap();
    }
    assert_eq!(sorted(common::procs(&j.dir)), kids.pids());
    assert!(j.populated());
    assert!(common::wait_until(Duration::from_secs(10), || {
        j.cpu_time().is_some_and(|t| t >= Duration::from_millis(20))
    }));
    j.kill();
    for c in &mut kids.0 {
        assert!(killed(c), "{} survived the kill", c.id());
    }
    assert!(common::wait_until(Duration::from_secs(2), || !j.populated()));
    // Nothing runs now: the figures are cpu.stat's.
    let stat = common::read(&j.dir.join("cpu.stat")).unwrap();
    let usec = |k| Duration::from_micros(common::flat_key(&stat, k).unwrap());
    assert_eq!(j.cpu_time(), Some(usec("usage_usec")));
    let u = j.usage();
    assert_eq!(
        (u.cpu_user, u.cpu_system),
        (usec("user_usec"), usec("system_usec"))
    );
    assert!(
        u.cpu_user + u.cpu_system >= Duration::from_millis(20),
        "{u:?}"
    );
    // No memory, pids or io controller here.
    assert_eq!(
        (u.memory_current, u.pids_current, u.io_read_bytes),
        (0, 0, 0)
    );

    // remove: what is still running goes with the directory.
    let mut kids = Kids::sleeping(2);
    for c in &kids.0 {
        j.attach(c.id() as i32).unwrap();
    }
    assert!(j.remove());
    assert!(!j.dir.exists());
    for c in &mut kids.0 {
        assert!(killed(c));
    }
    assert!(!j.populated(), "a removed cgroup is empty");
    let e = j.attach(kids.0[0].id() as i32).unwrap_err();
    assert!(e.to_string().contains("cgroup.procs"), "{e}");

    // A directory that stays (not a cgroup, not empty): not removed.
    let plain = fixture::cgroup(&["cgroup.procs"]);
    let stays = Job {
        dir: plain.path().to_owned(),
        fd: open_dir(plain.path()),
    };
    assert!(!stays.remove());
    assert!(plain.path().is_dir());
}

/// Without `populated` in `cgroup.events`, a job is populated while
/// `cgroup.procs` lists a process.
#[test]
fn populated_falls_back_to_the_process_list() {
    let d = fixture::cgroup(&[]);
    fixture::set(d.path(), "cgroup.events", "frozen 0\n");
    fixture::set(d.path(), "cgroup.procs", "4242\n");
    let j = Job {
        dir: d.path().to_owned(),
        fd: open_dir(d.path()),
    };
    assert!(j.populated());
    fixture::set(d.path(), "cgroup.procs", "");
    assert!(!j.populated());
    fixture::set(d.path(), "cgroup.events", "populated 1\nfrozen 0\n");
    assert!(j.populated());
}

/// Where the kernel has no `cgroup.kill` (before 5.14), the cgroup is
/// frozen, each listed process killed, and the cgroup thawed.
#[test]
fn without_cgroup_kill_each_listed_process_is_killed_frozen() {
    let d = fixture::cgroup(&["cgroup.freeze"]);
    let mut kids = Kids::sleeping(2);
    let list: Vec<String> = kids.pids().iter().map(|p| p.to_string()).collect();
    fixture::set(d.path(), "cgroup.procs", &list.join("\n"));
    kill_dir(d.path());
    for c in &mut kids.0 {
        assert!(killed(c));
    }
    assert_eq!(fixture::get(d.path(), "cgroup.freeze"), "0");
}

/// The top's processes (children of this test, never the test itself) move
/// into the leaf; a leaf that cannot take them is an error, not retried
/// away.
#[test]
fn the_tops_processes_move_into_the_leaf() {
    let Some(s) = Scratch::new() else { return };
    let tree = Tree::new(s.0.clone(), s.0.join("jobcell"), true, "owner".into());
    let kids = Kids::sleeping(3);
    for p in kids.pids() {
        place(&s.0, p);
    }
    tree.move_into_leaf().unwrap();
    assert!(common::procs(&s.0).is_empty());
    assert_eq!(sorted(common::procs(&s.0.join(LEAF))), kids.pids());
    // Nothing left to move: nothing to do.
    tree.move_into_leaf().unwrap();
    assert_eq!(sorted(common::procs(&s.0.join(LEAF))), kids.pids());

    // A threaded child makes the top a thread root, under which a new
    // domain cgroup (the leaf) is invalid: it takes no process (EOPNOTSUPP).
    let s = Scratch::new().unwrap();
    common::mkdir(&s.0.join("threads")).unwrap();
    common::write(&s.0.join("threads/cgroup.type"), "threaded").unwrap();
    let kids = Kids::sleeping(1);
    place(&s.0, kids.pids()[0]);
    let tree = Tree::new(s.0.clone(), s.0.join("jobcell"), true, "owner".into());
    let e = tree.move_into_leaf().expect_err("an invalid leaf");
    assert_eq!(errno(&e), Some(libc::EOPNOTSUPP), "{e}");
    assert_eq!(common::procs(&s.0), kids.pids());
}

/// How many times `file` was opened since the last call (`OPEN` and
/// `CLOSE_NOWRITE` alternate, so inotify coalesces no two opens).
fn opens(ino: &OwnedFd) -> usize {
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    let mut r = inotify::Reader::new(ino, &mut buf);
    let mut n = 0;
    while let Ok(ev) = r.next() {
        if ev.events().contains(inotify::ReadFlags::OPEN) {
            n += 1;
        }
    }
    n
}

/// A directory on the way that keeps failing as if it had vanished
/// (ENOENT: here the base's parent does not offer the controller that the
/// fixture top claims) is retried `CREATE_ATTEMPTS` times; then what was
/// made for the job goes, and the job fails if its limits need the cgroup.
#[test]
fn a_chain_that_keeps_vanishing_is_retried_then_undone() {
    let Some(s) = Scratch::new() else { return };
    let top = fixture::cgroup(&[]);
    fixture::set(top.path(), "cgroup.controllers", "pids\n");
    fixture::set(top.path(), "cgroup.subtree_control", "pids\n");
    let base = s.0.join("jobcell");
    let tree = Tree::new(top.path().to_owned(), base.clone(), true, "owner".into());
    let ino =
        inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).unwrap();
    inotify::add_watch(
        &ino,
        top.path().join("cgroup.subtree_control"),
        inotify::WatchFlags::OPEN | inotify::WatchFlags::CLOSE_NOWRITE,
    )
    .unwrap();
    let pids = Resources {
        pids: Some(8),
        ..Default::default()
    };
    let e = tree.create_job("job", &pids, true).err().expect("an error");
    assert!(common::vanished(&e), "{e}");
    assert!(e.to_string().contains("+pids"), "{e}");
    assert_eq!(opens(&ino), common::CREATE_ATTEMPTS);
    assert!(!base.exists(), "the base made for the job is left");
    // Only accounting: no cgroup, and again nothing left.
    assert!(tree
        .create_job("job", &Resources::default(), true)
        .unwrap()
        .is_none());
    assert_eq!(opens(&ino), common::CREATE_ATTEMPTS);
    assert!(!base.exists(), "the base made for the job is left");
}

/// The controllers are enabled on the way down, in every directory from
/// the top to the job's parent: the required ones, and the accounting ones
/// the top offers. (Fixture directories: this host's unified mount has no
/// controller to enable.)
#[test]
fn controllers_are_enabled_on_the_way_down() {
    for (accounting, want) in [(true, "+pids +memory"), (false, "+pids")] {
        let top = fixture::cgroup(&["cgroup.subtree_control"]);
        // io is not offered.
        fixture::set(top.path(), "cgroup.controllers", "cpu memory pids\n");
        let base = top.path().join("jobcell");
        let proc_dir = base.join("owner");
        for d in [&base, &proc_dir] {
            std::fs::create_dir(d).unwrap();
            fixture::set(d, "cgroup.subtree_control", "");
        }
        let tree = Tree::new(top.path().to_owned(), base.clone(), true, "owner".into());
        let limits = Resources {
            pids: Some(8),
            ..Default::default()
        };
        // The job's directory is no cgroup: its pids.max is missing.
        let e = tree
            .create_job("job", &limits, accounting)
            .err()
            .expect("no pids.max");
        assert!(e.to_string().contains("pids.max"), "{e}");
        for d in [top.path(), &base, &proc_dir] {
            assert_eq!(
                fixture::get(d, "cgroup.subtree_control"),
                want,
                "{}",
                d.display()
            );
        }
        assert!(
            !proc_dir.join("job").exists(),
            "the failed job's directory stays"
        );
        assert!(!top.path().join(LEAF).exists());
    }
    // Two limits of one controller enable it once.
    let top = fixture::cgroup(&["cgroup.subtree_control"]);
    fixture::set(top.path(), "cgroup.controllers", "memory pids\n");
    for d in ["jobcell", "jobcell/owner"].map(|d| top.path().join(d)) {
        std::fs::create_dir(&d).unwrap();
        fixture::set(&d, "cgroup.subtree_control", "");
    }
    let tree = Tree::new(
        top.path().to_owned(),
        top.path().join("jobcell"),
        true,
        "owner".into(),
    );
    let limits = Resources {
        memory: Some(1 << 20),
        memory_swap: Some(0),
        ..Default::default()
    };
    assert!(tree.create_job("job", &limits, true).is_err());
    assert_eq!(
        fixture::get(top.path(), "cgroup.subtree_control"),
        "+memory +pids"
    );
}

/// `enable` writes only what is missing; what is already on is kept.
#[test]
fn only_missing_controllers_are_written() {
    let d = fixture::cgroup(&[]);
    fixture::set(d.path(), "cgroup.subtree_control", "memory\n");
    let tree = Tree::new(d.path().to_owned(), d.path().to_owned(), false, "o".into());
    let got = tree
        .enable(d.path(), vec!["memory", "pids", "io"], &["pids"], true)
        .unwrap();
    assert_eq!(got, ["memory", "pids", "io"]);
    assert_eq!(
        fixture::get(d.path(), "cgroup.subtree_control"),
        "+pids +io"
    );
    // A successful write moves no process.
    assert!(!d.path().join(LEAF).exists());
    fixture::set(d.path(), "cgroup.subtree_control", "memory pids\n");
    let got = tree
        .enable(d.path(), vec!["pids", "memory"], &[], false)
        .unwrap();
    assert_eq!(got, ["pids", "memory"]);
    assert_eq!(
        fixture::get(d.path(), "cgroup.subtree_control"),
        "memory pids\n"
    );
}

/// A file made immutable (`chattr +i`), so every write fails with EPERM;
/// mutable again on drop.
struct Immutable(std::fs::File);

impl Immutable {
    /// `None` where the file system has no such flag.
    fn new(path: &Path) -> Option<Immutable> {
        let f = std::fs::File::open(path).unwrap();
        match rustix::fs::ioctl_setflags(&f, rustix::fs::IFlags::IMMUTABLE) {
            Ok(()) => Some(Immutable(f)),
            Err(e @ (rustix::io::Errno::NOTTY | rustix::io::Errno::OPNOTSUPP)) => {
                eprintln!("skipped: {} cannot be made immutable: {e}", path.display());
                None
            }
            Err(e) => panic!("chattr +i {}: {e}", path.display()),
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = rustix::fs::ioctl_setflags(&self.0, rustix::fs::IFlags::empty());
    }
}

/// Controllers the kernel refuses to enable: the optional ones stay off
/// (the job only loses those figures), the ones already on stay; a
/// required one fails the job with the error of enabling the required
/// ones alone.
#[test]
fn refused_controllers_fail_only_when_required() {
    let d = fixture::cgroup(&[]);
    fixture::set(d.path(), "cgroup.subtree_control", "memory\n");
    let Some(_ro) = Immutable::new(&d.path().join("cgroup.subtree_control")) else {
        return;
    };
    let tree = Tree::new(d.path().to_owned(), d.path().to_owned(), false, "o".into());
    let got = tree
        .enable(d.path(), vec!["memory", "pids", "io"], &[], false)
        .unwrap();
    assert_eq!(got, ["memory"]);
    for req in [&["pids"][..], &["pids", "io"]] {
        let e = tree
            .enable(d.path(), vec!["memory", "pids", "io"], req, false)
            .expect_err("a required controller refused");
        let Error::Cgroup { value, errno, .. } = &e else {
            panic!("{e}")
        };
        let want = req
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            (value.as_deref(), errno.0),
            (Some(want.as_str()), libc::EPERM),
            "{e}"
        );
    }
}
