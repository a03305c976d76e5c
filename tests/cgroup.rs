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

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jobcell::{Command, Error, JobHandle, JobState, Limits, Outcome, Sandbox, TimeLimit};

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
    std::thread::sleep(Duration::from_millis(1000));
    let live = job.usage().expect("live usage");
    eprintln!("fork bomb after 1 s: {live:?}");
    assert!(
        live.pids_current >= 8 && live.pids_current <= 32,
        "{live:?}"
    );
    let o = job.wait().unwrap();
    assert_eq!(o.state, JobState::TimedOut(TimeLimit::Wall), "{o:?}");
    let u = o.usage.unwrap();
    assert!(u.pids_peak.is_none_or(|p| p <= 32), "{u:?}");
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

#[test]
fn direct_writes_are_throttled() {
    let _g = common::shared();
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
        return;
    }
    let work = tempfile::tempdir_in(&dir).unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut sb = sandbox(Limits {
        io_write_bps: Some(2 * MIB),
        ..Default::default()
    });
    sb.bind_rw(work.path(), "/out");
    let (o, out) = run(&sb, &["/jc-helper", "dwrite", "/out/f", "8"]);
    assert!(o.success(), "{o:?} {out}");
    let secs: f64 = out
        .trim()
        .strip_prefix("seconds ")
        .unwrap()
        .parse()
        .unwrap();
    eprintln!("8 MiB O_DIRECT at 2 MiB/s: {secs}s, {:?}", o.usage);
    assert!((2.5..=8.0).contains(&secs), "8 MiB at 2 MiB/s took {secs}s");
    let u = o.usage.unwrap();
    assert!(u.io_write_bytes >= 8 * MIB, "{u:?}");
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
