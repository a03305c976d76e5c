//! Resource limits and usage through real cgroups (run as root).
//!
//! The same tests run on this host's cgroup v1 (hybrid) hierarchy and, via
//! `.ci/v2vm-tests`, on a pure cgroup v2 kernel. Every assertion comes from the
//! public API: the job's `Outcome`, its `usage()`, and its output.
//!
//! Environment:
//! - `JOBCELL_TEST_HELPER`: a prebuilt static `tests/helper/jc-helper.c`
//!   (else it is compiled here with `cc -static`);
//! - `JOBCELL_TEST_IO_DIR`: a directory on a real block device for the IO
//!   test (else `/var/tmp`, if that is not a tmpfs).

#[path = "../common/mod.rs"]
mod common;

use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jobcell::{Command, Error, Exit, JobHandle, JobState, Limits, Outcome, Sandbox, TimeLimit};

const MIB: u64 = 1 << 20;

/// The static helper program, bound into every cell at `/jc-helper`.
fn helper() -> &'static Path {
    static HELPER: OnceLock<PathBuf> = OnceLock::new();
    HELPER.get_or_init(|| {
        common::static_helper("jc-helper.c", "jc-helper", "JOBCELL_TEST_HELPER", &[])
    })
}

fn sandbox(limits: Limits) -> Sandbox {
    let mut s = Sandbox::new();
    s.bind_ro(helper(), "/jc-helper").limits(limits);
    s
}

fn run(sandbox: &Sandbox, args: &[&str]) -> (Outcome, String) {
    let job = sandbox
        .spawn(Command::new(args[0]).args(&args[1..]))
        .expect("spawn");
    let out = output(&job);
    (job.wait().expect("wait"), out)
}

fn output(job: &JobHandle) -> String {
    job.logs()
        .map(|c| String::from_utf8_lossy(&c.data).into_owned())
        .collect()
}

fn wait_gone(name: &str) -> Vec<PathBuf> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let left = common::cgroup_dirs_named(name);
        if left.is_empty() || Instant::now() > end {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_v2() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .all(|l| !l.contains(" - cgroup cgroup "))
}

#[test]
fn memory_hog_is_oom_killed_with_peak_near_the_limit() {
    let _g = common::shared();
    let limit = 64 * MIB;
    let sb = sandbox(Limits {
        memory: Some(limit),
        ..Default::default()
    });
    let (o, out) = run(&sb, &["/jc-helper", "mem", "512"]);
    assert!(o.oom_killed, "{o:?} {out}");
    assert_eq!(o.state, JobState::OutOfMemory, "{o:?}");
    let u = o.usage.expect("usage");
    assert!(u.oom_kills >= 1, "{u:?}");
    let peak = u.memory_peak.expect("the kernel tracks peak memory");
    eprintln!("oom: peak {peak} of limit {limit}, {u:?}");
    assert!(
        peak >= limit * 3 / 4 && peak <= limit + 2 * MIB,
        "peak {peak} vs limit {limit}"
    );
}

/// The OOM verdict is the kernel's count of OOM kills in the job's cgroup,
/// whoever was killed: here a child of the job's main process, which
/// outlives it and exits 0. And the converse: a main process killed by
/// SIGKILL from elsewhere did not run out of memory.
#[test]
fn an_oom_killed_child_makes_the_verdict() {
    let _g = common::shared();
    let sb = sandbox(Limits {
        memory: Some(64 * MIB),
        ..Default::default()
    });
    let (o, out) = run(&sb, &["sh", "-c", "/jc-helper mem 512; echo child $?"]);
    // (The shell may say "Killed" first.)
    assert!(out.ends_with("child 137\n"), "{out:?} {o:?}");
    assert_eq!(o.exit, Some(Exit::Code(0)), "{o:?}");
    assert_eq!(o.state, JobState::OutOfMemory, "{o:?}");
    assert!(o.oom_killed, "{o:?}");
    assert!(o.usage.is_some_and(|u| u.oom_kills >= 1), "{o:?}");

    let (o, _) = run(&sb, &["sh", "-c", "kill -KILL $$"]);
    assert_eq!(o.exit, Some(Exit::Signal(libc::SIGKILL)), "{o:?}");
    assert!(!o.oom_killed, "{o:?}");
    assert_eq!(
        o.state,
        JobState::Failed {
            reason: Exit::Signal(libc::SIGKILL).to_string()
        }
    );
}

/// The swap the kernel allows the job on top of its memory, as its cgroup
/// holds it (v1: `memory.memsw.limit_in_bytes` less `memory.limit_in_bytes`;
/// v2: `memory.swap.max`); `None` where the kernel does not account swap.
fn swap_allowed(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let read = |p: PathBuf| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    if is_v2() {
        let own = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        let dir = Path::new("/sys/fs/cgroup").join(own.trim_start_matches('/'));
        return read(dir.join("memory.swap.max"));
    }
    let own = text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, c, p) = (f.next()?, f.next()?, f.next()?);
        c.split(',').any(|c| c == "memory").then(|| p.to_owned())
    })?;
    let dir = Path::new("/sys/fs/cgroup/memory").join(own.trim_start_matches('/'));
    Some(read(dir.join("memory.memsw.limit_in_bytes"))? - read(dir.join("memory.limit_in_bytes"))?)
}

/// "No swap unless asked": a memory limit alone allows no swap, and
/// `memory_swap` allows exactly that much, as the job's cgroup holds it.
/// Where the host has swap (the cgroup v2 VM gets a swap file), the kernel
/// is seen enforcing it: a job touching twice its memory limit is
/// OOM-killed without swap and completes with it.
#[test]
fn swap_only_when_asked() {
    let _g = common::shared();
    let limits = |swap| Limits {
        memory: Some(32 * MIB),
        memory_swap: swap,
        ..Default::default()
    };
    for (swap, want) in [(None, 0), (Some(48 * MIB), 48 * MIB)] {
        let job = sandbox(limits(swap))
            .spawn(Command::new("sleep").arg("30"))
            .unwrap();
        let held = swap_allowed(job.pid().unwrap());
        job.kill().unwrap();
        job.wait().unwrap();
        match held {
            Some(held) => assert_eq!(held, want, "swap allowed for memory_swap {swap:?}"),
            None => eprintln!("this kernel does not account swap: {swap:?} not checked"),
        }
    }
    let host_swap = std::fs::read_to_string("/proc/swaps")
        .unwrap()
        .lines()
        .skip(1)
        .any(|l| !l.trim().is_empty());
    if !host_swap {
        eprintln!("no swap on this host: enforcement not checked (the v2 VM has a swap file)");
        return;
    }
    let (o, out) = run(&sandbox(limits(None)), &["/jc-helper", "mem", "64"]);
    assert_eq!(o.state, JobState::OutOfMemory, "without swap: {o:?} {out}");
    let (o, out) = run(
        &sandbox(limits(Some(128 * MIB))),
        &["/jc-helper", "mem", "64"],
    );
    assert!(o.success(), "with swap: {o:?} {out}");
    assert_eq!(out, "touched 64 MiB\n");
    let peak = o.usage.and_then(|u| u.memory_peak);
    assert!(peak.is_none_or(|p| p <= 34 * MIB), "peak {peak:?}");
}

#[test]
fn fork_bomb_is_contained() {
    let _g = common::shared();
    let sb = sandbox(Limits {
        pids: Some(32),
        wall_time: Some(Duration::from_secs(2)),
        ..Default::default()
    });
    let job = sb
        .spawn(Command::new("/jc-helper").arg("forkbomb"))
        .unwrap();
    // Sampled for a second: never above the limit, and near it (the bomb
    // did fork; an upper bound alone passes a cell that cannot).
    let t = Instant::now();
    let mut most = 0;
    while t.elapsed() < Duration::from_millis(1000) {
        let live = job.usage().expect("live usage");
        assert!(live.pids_current <= 32, "{live:?}");
        most = most.max(live.pids_current);
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("fork bomb: at most {most} tasks of 32");
    assert!(most >= 28, "the bomb never came near its limit: {most}");
    let o = job.wait().unwrap();
    assert_eq!(o.state, JobState::TimedOut(TimeLimit::Wall), "{o:?}");
    let u = o.usage.unwrap();
    assert!(u.pids_peak.is_none_or(|p| p == 32), "{u:?}");
    // The host still forks.
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
}

#[test]
fn cpu_percent_throttles_a_busy_loop() {
    let _g = common::shared();
    let sb = sandbox(Limits {
        cpu_percent: Some(20),
        ..Default::default()
    });
    let (o, _) = run(&sb, &["/jc-helper", "spin", "2000"]);
    assert!(o.success(), "{o:?}");
    let cpu = o.usage.unwrap().cpu_total().as_secs_f64();
    let ratio = cpu / o.wall_time.as_secs_f64();
    eprintln!(
        "cpu_percent 20: {cpu:.3}s CPU in {:?} = {ratio:.3}",
        o.wall_time
    );
    assert!(
        (0.10..=0.35).contains(&ratio),
        "cpu {cpu:.3}s over {:?}: {ratio:.3}",
        o.wall_time
    );
}

#[test]
fn cpus_pin_the_job() {
    let _g = common::shared();
    let sb = sandbox(Limits {
        cpus: Some("0".into()),
        ..Default::default()
    });
    let (o, out) = run(
        &sb,
        &["sh", "-c", "grep Cpus_allowed_list /proc/self/status"],
    );
    assert!(o.success(), "{o:?} {out}");
    assert_eq!(out.split_whitespace().last(), Some("0"), "{out}");
}

/// A directory on a real block device for the IO tests (they need
/// `O_DIRECT` IO that reaches a disk), or `None` on a tmpfs.
fn io_work_dir() -> Option<tempfile::TempDir> {
    let dir = std::env::var_os("JOBCELL_TEST_IO_DIR")
        .map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    #[allow(clippy::unnecessary_cast)] // f_type's type differs between architectures
    let fs_type = rustix::fs::statfs(&dir).unwrap().f_type as i64;
    if fs_type == TMPFS_MAGIC {
        eprintln!(
            "skipped: {} is a tmpfs; set JOBCELL_TEST_IO_DIR to a directory on a disk",
            dir.display()
        );
        return None;
    }
    let work = tempfile::tempdir_in(&dir).unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    Some(work)
}

/// A file of `len` bytes on disk (written and synced), writable by the job.
fn file_on_disk(path: &Path, len: usize) {
    std::fs::write(path, vec![b'x'; len]).unwrap();
    std::fs::File::open(path).unwrap().sync_all().unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
}

/// The helper's "seconds N" line.
fn seconds(out: &str) -> f64 {
    out.trim()
        .strip_prefix("seconds ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no time in {out:?}"))
}

#[test]
fn direct_writes_are_throttled() {
    let _g = common::shared();
    let Some(work) = io_work_dir() else { return };
    let mut sb = sandbox(Limits {
        io_write_bps: Some(2 * MIB),
        ..Default::default()
    });
    sb.bind_rw(work.path(), "/out");
    let (o, out) = run(&sb, &["/jc-helper", "dwrite", "/out/f", "8"]);
    assert!(o.success(), "{o:?} {out}");
    let secs = seconds(&out);
    eprintln!("8 MiB O_DIRECT at 2 MiB/s: {secs}s, {:?}", o.usage);
    assert!((2.5..=8.0).contains(&secs), "8 MiB at 2 MiB/s took {secs}s");
    let u = o.usage.unwrap();
    assert!(u.io_write_bytes >= 8 * MIB, "{u:?}");
}

#[test]
fn direct_reads_are_throttled() {
    let _g = common::shared();
    let Some(work) = io_work_dir() else { return };
    file_on_disk(&work.path().join("f"), 8 << 20);
    let mut sb = sandbox(Limits {
        io_read_bps: Some(2 * MIB),
        ..Default::default()
    });
    sb.bind_ro(work.path(), "/in");
    let (o, out) = run(&sb, &["/jc-helper", "dread", "/in/f", "8"]);
    assert!(o.success(), "{o:?} {out}");
    let secs = seconds(&out);
    eprintln!("8 MiB O_DIRECT reads at 2 MiB/s: {secs}s, {:?}", o.usage);
    assert!((2.5..=8.0).contains(&secs), "8 MiB at 2 MiB/s took {secs}s");
    let u = o.usage.unwrap();
    assert!(u.io_read_bytes >= 8 * MIB, "{u:?}");
}

/// 150 reads and 150 writes of 4 KiB at 50 operations per second: about
/// three seconds each, however fast the disk (bandwidth is no limit here:
/// 600 KiB in all).
#[test]
fn operations_per_second_are_throttled() {
    let _g = common::shared();
    let Some(work) = io_work_dir() else { return };
    const OPS: usize = 150;
    for name in ["r", "w"] {
        file_on_disk(&work.path().join(name), OPS * 8192);
    }
    let mut sb = sandbox(Limits {
        io_read_iops: Some(50),
        io_write_iops: Some(50),
        ..Default::default()
    });
    sb.bind_rw(work.path(), "/io");
    for op in ["r", "w"] {
        let (o, out) = run(
            &sb,
            &[
                "/jc-helper",
                "dops",
                op,
                &format!("/io/{op}"),
                &OPS.to_string(),
            ],
        );
        assert!(o.success(), "{op}: {o:?} {out}");
        let secs = seconds(&out);
        eprintln!("{OPS} O_DIRECT {op} of 4 KiB at 50/s: {secs}s");
        assert!(
            (2.0..=9.0).contains(&secs),
            "{OPS} {op} at 50/s took {secs}s"
        );
    }
}

#[test]
fn usage_of_half_a_second_of_cpu() {
    let _g = common::shared();
    let sb = sandbox(Limits::default());
    let job = sb
        .spawn(Command::new("/jc-helper").args(["burn", "500"]))
        .unwrap();
    assert!(job.usage().is_some(), "live usage of a job without limits");
    let o = job.wait().unwrap();
    assert!(o.success(), "{o:?}");
    let u = o
        .usage
        .expect("a job without limits still gets a cgroup here");
    let cpu = u.cpu_total().as_secs_f64();
    eprintln!("burn 500 ms: {u:?}");
    assert!((0.45..=2.0).contains(&cpu), "{u:?}");
    assert!(u.cpu_user > u.cpu_system, "{u:?}");
    assert!(u.memory_peak.is_none_or(|p| p > 0), "{u:?}");
    assert_eq!(job.usage(), Some(u), "the final usage stays readable");
}

#[test]
fn cpu_time_limit_kills() {
    let _g = common::shared();
    let sb = sandbox(Limits {
        cpu_time: Some(Duration::from_millis(300)),
        ..Default::default()
    });
    let (o, _) = run(&sb, &["/jc-helper", "burn", "5000"]);
    assert_eq!(o.state, JobState::TimedOut(TimeLimit::Cpu), "{o:?}");
    let cpu = o.usage.unwrap().cpu_total();
    assert!(
        cpu >= Duration::from_millis(300) && cpu < Duration::from_secs(2),
        "{cpu:?}"
    );
}

#[test]
fn no_cgroup_survives_a_killed_or_dropped_job() {
    let _g = common::shared();
    let sb = sandbox(Limits {
        pids: Some(16),
        ..Default::default()
    });
    let cmd = Command::new("/jc-helper").args(["spin", "30000"]).clone();

    let job = sb.spawn(&cmd).unwrap();
    let id = job.id().to_string();
    assert!(
        !common::cgroup_dirs_named(&id).is_empty(),
        "the job has a cgroup"
    );
    job.kill().unwrap();
    assert_eq!(job.wait().unwrap().state, JobState::Stopped);
    assert_eq!(common::cgroup_dirs_named(&id), Vec::<PathBuf>::new());

    let job = sb.spawn(&cmd).unwrap();
    let id = job.id().to_string();
    assert!(!common::cgroup_dirs_named(&id).is_empty());
    drop(job);
    assert_eq!(wait_gone(&id), Vec::<PathBuf>::new());
}

#[test]
fn parallel_jobs_create_and_remove_their_cgroups_safely() {
    let _g = common::shared();
    let sb = sandbox(Limits {
        pids: Some(8),
        memory: Some(32 * MIB),
        ..Default::default()
    });
    let ids: Vec<String> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..4)
                        .map(|_| {
                            let job = sb.spawn(&Command::new("true")).unwrap();
                            assert!(job.wait().unwrap().success());
                            job.id().to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    for id in ids {
        assert_eq!(common::cgroup_dirs_named(&id), Vec::<PathBuf>::new());
    }
}

/// Every job gets a fresh cgroup, whether made for it or ahead of it (v1
/// keeps a few empty directories ready and renames one to the job's id):
/// no job sees another's usage. A job that OOMs at its limit and leaves
/// 200 processes' worth of pids history is followed by tiny jobs whose
/// peaks and kill counts start from nothing.
#[test]
fn each_job_starts_from_a_fresh_cgroup() {
    let _g = common::shared();
    let limit = 64 * MIB;
    let sb = sandbox(Limits {
        memory: Some(limit),
        pids: Some(256),
        ..Default::default()
    });
    let (o, out) = run(&sb, &["/jc-helper", "mem", "512"]);
    assert!(o.oom_killed, "{o:?} {out}");
    let (o, _) = run(
        &sb,
        &["sh", "-c", "for i in $(seq 200); do sleep 1 & done; wait"],
    );
    let busy = o.usage.expect("usage");
    assert!(busy.pids_peak.is_none_or(|p| p >= 100), "{busy:?}");
    for _ in 0..6 {
        let (o, out) = run(&sb, &["true"]);
        assert!(o.success(), "{o:?} {out}");
        let u = o.usage.expect("usage");
        assert_eq!(u.oom_kills, 0, "{u:?}");
        assert!(!o.oom_killed);
        assert!(
            u.memory_peak.is_none_or(|p| p < 16 * MIB),
            "a tiny job's peak {u:?}"
        );
        assert!(u.pids_peak.is_none_or(|p| p <= 4), "{u:?}");
        assert!(
            u.cpu_user + u.cpu_system < Duration::from_millis(200),
            "{u:?}"
        );
    }
    if !is_v2() {
        // The mechanism on v1: ready directories wait in this process's own
        // (once the background work that makes them has settled).
        jobcell::__private::cached_descriptors();
        let own = default_base()
            .join(format!("{}-", std::process::id()))
            .to_string_lossy()
            .into_owned();
        let ready = std::fs::read_dir(default_base())
            .unwrap()
            .flatten()
            .filter(|e| e.path().to_string_lossy().starts_with(&own))
            .flat_map(|e| std::fs::read_dir(e.path()).unwrap().flatten())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".ready-"))
            .count();
        assert!(ready > 0, "no ready directory in the pids hierarchy");
    }
}

/// Without accounting, a job with limits joins only the controllers its
/// limits need: on v1 its directories are in the memory and pids
/// hierarchies only, and its figures are those controllers' (CPU time and
/// IO read 0; CPU time still comes from `cpu.stat` on v2).
#[test]
fn without_accounting_only_the_limits_controllers_are_joined() {
    let _g = common::shared();
    let mut sb = sandbox(Limits {
        memory: Some(64 * MIB),
        pids: Some(16),
        ..Default::default()
    });
    sb.accounting(false);
    let job = sb
        .spawn(Command::new("/jc-helper").args(["spin", "300"]))
        .unwrap();
    let id = job.id().to_string();
    let dirs = common::cgroup_dirs_named(&id);
    if !is_v2() {
        let mut hierarchies: Vec<String> = dirs
            .iter()
            .map(|d| {
                d.strip_prefix("/sys/fs/cgroup")
                    .unwrap()
                    .iter()
                    .next()
                    .unwrap()
            })
            .map(|h| h.to_string_lossy().into_owned())
            .collect();
        hierarchies.sort();
        assert_eq!(hierarchies, ["memory", "pids"], "{dirs:?}");
    } else {
        assert_eq!(dirs.len(), 1, "{dirs:?}");
    }
    let o = job.wait().unwrap();
    assert!(o.success(), "{o:?}");
    let u = o.usage.expect("a job with limits has usage figures");
    assert!(u.memory_peak.is_some_and(|p| p > 0), "{u:?}");
    assert!(u.pids_peak.is_none_or(|p| p >= 1), "{u:?}");
    if !is_v2() {
        assert_eq!(
            u.cpu_user + u.cpu_system,
            Duration::ZERO,
            "no cpuacct: {u:?}"
        );
    }
    assert_eq!(common::cgroup_dirs_named(&id), Vec::<PathBuf>::new());
}

/// A spawn that fails after its cgroup was made (here: no such program)
/// leaves no directory behind, ready directories taken for it included.
#[test]
fn a_failed_spawn_leaves_no_cgroup_directory() {
    // Counts and kills below must not see another test's jobs mid-way.
    let _g = common::exclusive();
    let sb = sandbox(Limits {
        memory: Some(64 * MIB),
        pids: Some(16),
        ..Default::default()
    });
    let (o, _) = run(&sb, &["true"]);
    assert!(o.success());
    jobcell::__private::cached_descriptors();
    let count = || {
        let own = format!("{}-", std::process::id());
        std::fs::read_dir(default_base())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&own))
            .flat_map(|e| std::fs::read_dir(e.path()).unwrap().flatten())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .count()
    };
    let before = count();
    for _ in 0..6 {
        let Err(e) = sb.spawn(&Command::new("/no/such/program")) else {
            panic!("no such program, yet it spawned");
        };
        assert!(e.to_string().contains("/no/such/program"), "{e}");
    }
    jobcell::__private::cached_descriptors();
    assert_eq!(count(), before, "directories in the pids hierarchy");
}

/// The default base in one hierarchy, as jobcell computes it.
fn default_base() -> PathBuf {
    let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let (root, own) = if is_v2() {
        let own = cg
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap()
            .to_owned();
        ("/sys/fs/cgroup".to_owned(), own)
    } else {
        let own = cg
            .lines()
            .find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_owned()))
            .unwrap();
        ("/sys/fs/cgroup/pids".to_owned(), own)
    };
    let mut own = PathBuf::from(root).join(own.trim_start_matches('/'));
    if own.ends_with("jobcell-supervisor") {
        own.pop();
    }
    own.join("jobcell")
}

#[test]
fn stale_cgroups_of_a_dead_owner_are_swept() {
    let _g = common::shared();
    let dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    let mut dead = dead;
    dead.wait().unwrap();
    let pidns = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
    let owner = default_base().join(format!("{dead_pid}-1-{pidns}"));
    let job = owner.join("stalejob");
    let mut leftover = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    // A job ending elsewhere may remove the empty base, and another jobcell
    // process may sweep this directory first: retry until the process is in.
    let placed = (0..50).any(|_| {
        std::fs::create_dir_all(&job).is_ok()
            && std::fs::write(job.join("cgroup.procs"), leftover.id().to_string()).is_ok()
    });
    assert!(placed, "could not place a process in {}", job.display());

    let removed = jobcell::sweep_stale_cgroups(None).unwrap();
    // Usually 1; 0 if another jobcell process swept it first.
    eprintln!("swept {removed} stale job cgroup(s)");
    assert!(!owner.exists(), "{} survived", owner.display());
    let st = leftover.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL)
    );
}

#[test]
fn an_unusable_base_fails_loudly_only_for_jobs_with_limits() {
    let _g = common::shared();
    let not_cgroup = tempfile::tempdir().unwrap();
    let mut sb = sandbox(Limits {
        memory: Some(64 * MIB),
        ..Default::default()
    });
    sb.cgroup_base(not_cgroup.path());
    let e = sb.spawn(&Command::new("true")).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ControllerUnavailable {
                limit: "memory",
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&not_cgroup.path().display().to_string()),
        "{msg}"
    );

    sb.limits(Limits::default());
    let (o, _) = run(&sb, &["true"]);
    assert!(o.success(), "{o:?}");
    assert_eq!(o.usage, None, "no cgroup, no usage");
    assert_eq!(
        std::fs::read_dir(not_cgroup.path()).unwrap().count(),
        0,
        "nothing written there"
    );
}

/// Run by `.ci/v2vm-tests` in a mount namespace whose cgroupfs is mounted
/// read-only, as in a container without a writable cgroupfs; skipped elsewhere.
#[test]
fn a_read_only_cgroupfs_fails_loudly_only_for_jobs_with_limits() {
    let _g = common::shared();
    if std::env::var_os("JOBCELL_TEST_RO_CGROUPFS").is_none() {
        eprintln!("skipped: set JOBCELL_TEST_RO_CGROUPFS=1 where /sys/fs/cgroup is read-only");
        return;
    }
    let sb = sandbox(Limits {
        pids: Some(16),
        ..Default::default()
    });
    let e = sb.spawn(&Command::new("true")).unwrap_err();
    eprintln!("read-only cgroupfs: {e}");
    assert!(
        matches!(&e, Error::Cgroup { errno, .. } if errno.0 == libc::EROFS),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("/sys/fs/cgroup") && msg.contains("read-only"),
        "{msg}"
    );

    let (o, _) = run(&sandbox(Limits::default()), &["true"]);
    assert!(o.success(), "{o:?}");
    assert_eq!(o.usage, None);
}

#[test]
fn cpus_the_machine_lacks_are_refused() {
    let _g = common::shared();
    let sb = sandbox(Limits {
        cpus: Some("1000".into()),
        ..Default::default()
    });
    let e = sb.spawn(&Command::new("true")).unwrap_err();
    eprintln!("cpus 1000: {e}");
    assert!(
        e.to_string().contains("cpus") || e.to_string().contains("cpuset.cpus"),
        "{e}"
    );
}

fn cpu_set(list: &str) -> Vec<u32> {
    list.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .flat_map(|p| match p.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<u32>>(),
            None => vec![p.parse().unwrap()],
        })
        .collect()
}

/// Run by `.ci/v2vm-tests` from a cgroup whose cpuset lacks an online CPU;
/// skipped where this process may use every CPU.
#[test]
fn cpus_outside_the_own_cpuset_are_refused() {
    let _g = common::shared();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(cpu_set)
        .unwrap();
    let online = cpu_set(&std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap());
    let Some(cpu) = online.iter().find(|c| !allowed.contains(c)) else {
        eprintln!("skipped: this process may use every online CPU");
        return;
    };
    let sb = sandbox(Limits {
        cpus: Some(cpu.to_string()),
        ..Default::default()
    });
    let e = sb.spawn(&Command::new("true")).unwrap_err();
    eprintln!("cpus {cpu} outside {allowed:?}: {e}");
    assert!(e.to_string().contains("cpus"), "{e}");
}

const DELEGATED_CHILD: &str = "JOBCELL_TEST_DELEGATED_CHILD";
/// The uid systemd's `user@1000.service` runs as.
const USER: u32 = 1000;

/// What systemd's `Delegate=yes` gives a user: a cgroup it owns (the
/// directory and its `cgroup.procs`, `cgroup.subtree_control` and
/// `cgroup.threads`), with the process in it. Here a non-root process in
/// such a cgroup (`user@1000.service` in a slice of its own) runs jobs
/// with limits, rootless: with the delegated cgroup as `cgroup_base`,
/// and with the default base. The process must first leave the cgroup it
/// was put in for a leaf (no internal processes), then enable controllers
/// it owns; the job cgroups it makes are its own. Run by `.ci/v2vm-tests`
/// (`JOBCELL_TEST_DELEGATION=1`, as root on a pure cgroup v2 host: it
/// makes the slice at the top of the tree); skipped elsewhere.
#[test]
fn a_delegated_cgroup_serves_a_rootless_user() {
    use std::os::unix::process::CommandExt;
    if let Some(svc) = std::env::var_os(DELEGATED_CHILD) {
        return delegated_child(Path::new(&svc));
    }
    let _g = common::shared();
    if std::env::var_os("JOBCELL_TEST_DELEGATION").is_none() || !is_v2() {
        eprintln!(
            "skipped: set JOBCELL_TEST_DELEGATION=1 where this root process may make a \
             delegated cgroup at the top of a cgroup v2 tree"
        );
        return;
    }
    let root = Path::new("/sys/fs/cgroup");
    let slice = root.join(format!("jobcell-test-{}.slice", std::process::id()));
    let svc = slice.join(format!("user@{USER}.service"));
    std::fs::create_dir(&slice).unwrap();
    let available = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap();
    for c in ["cpu", "memory", "pids", "io"] {
        if available.split_whitespace().any(|a| a == c) {
            std::fs::write(slice.join("cgroup.subtree_control"), format!("+{c}")).unwrap();
        }
    }
    std::fs::create_dir(&svc).unwrap();
    for f in [
        "",
        "cgroup.procs",
        "cgroup.subtree_control",
        "cgroup.threads",
    ] {
        std::os::unix::fs::chown(svc.join(f), Some(USER), Some(USER)).unwrap();
    }
    let procs =
        std::ffi::CString::new(svc.join("cgroup.procs").into_os_string().into_vec()).unwrap();
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "a_delegated_cgroup_serves_a_rootless_user",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(DELEGATED_CHILD, &svc)
    .current_dir("/");
    // SAFETY: only raw system calls between fork and exec: into the
    // delegated cgroup as root (as systemd puts a service's process), then
    // the user's ids.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(USER, USER, USER) != 0
                || libc::setresuid(USER, USER, USER) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    // The child's directories go with it or with a sweep; then the slice.
    jobcell::sweep_stale_cgroups(Some(&svc)).unwrap();
    let mut left = Vec::new();
    remove_tree(&slice, &mut left);
    assert!(
        out.status.success(),
        "the rootless user's jobs failed:\n{text}"
    );
    assert!(text.contains("DELEGATED-OK"), "{text}");
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

/// Removes a cgroup directory and everything below it, deepest first;
/// what cannot go is listed in `left`.
fn remove_tree(dir: &Path, left: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path(), left);
        }
    }
    if std::fs::remove_dir(dir).is_err() {
        left.push(dir.to_owned());
    }
}

/// The child half of `a_delegated_cgroup_serves_a_rootless_user`: uid
/// 1000, in the delegated cgroup `svc`.
fn delegated_child(svc: &Path) {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, USER);
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    assert!(
        own.trim_end().ends_with(&format!("user@{USER}.service")),
        "{own}"
    );
    let limits = Limits {
        memory: Some(64 * MIB),
        pids: Some(32),
        cpu_percent: Some(50),
        ..Default::default()
    };
    let mut delegated = sandbox(limits.clone());
    delegated.cgroup_base(svc);
    for (what, sb) in [
        ("cgroup_base", delegated),
        ("default base", sandbox(limits)),
    ] {
        let (o, out) = run(&sb, &["/jc-helper", "mem", "512"]);
        assert_eq!(o.state, JobState::OutOfMemory, "{what}: {o:?} {out}");
        assert!(o.usage.is_some_and(|u| u.oom_kills >= 1), "{what}: {o:?}");
        let job = sb
            .spawn(Command::new("/jc-helper").arg("forkbomb"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let live = job.usage().expect("live usage");
        assert!((28..=32).contains(&live.pids_current), "{what}: {live:?}");
        let id = job.id().to_string();
        let dirs = common::cgroup_dirs_named(&id);
        assert_eq!(dirs.len(), 1, "{what}: {dirs:?}");
        assert!(dirs[0].starts_with(svc), "{what}: {dirs:?}");
        job.kill().unwrap();
        job.wait().unwrap();
        assert_eq!(common::cgroup_dirs_named(&id), Vec::<PathBuf>::new());
        eprintln!("{what}: ok");
    }
    println!("DELEGATED-OK");
}
