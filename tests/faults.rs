//! Faults injected for real into the spawn path: descriptor exhaustion at
//! each step of a spawn, a spawner killed at each step, a setup step that
//! stalls, a job that closes its stdin under a host that has not ignored
//! SIGPIPE, a host whose hard limits are low. After each: nothing of the
//! failed job remains (process, cgroup, mount, descriptor), the next spawn
//! works, and the error names the stage.
//!
//! Faults that change the whole process (its descriptor table, rlimits,
//! signal dispositions, spawner) run in a fresh copy of this test binary
//! (see [`in_child`]), so they cannot disturb the tests running beside them.

mod common;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{collect, sh, HostSnapshot};
use jobcell::{Command, Errno, Error, Limits, Rlimit, Sandbox, Stdin};

/// The environment variable that names the scenario a child runs.
const SCENARIO: &str = "JOBCELL_FAULT_SCENARIO";
/// A value only the child's argv and environment hold (see the host memory tests).
const MARKER: &str = "JOBCELL_FAULT_MARKER";

/// Runs `scenario` in a fresh copy of this test binary and checks that it
/// ran to its end. `marker` goes into the child's argv and environment.
fn in_child(scenario: &str, marker: Option<&str>) -> String {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "scenario", "--nocapture", "--test-threads=1"])
        .env(SCENARIO, scenario);
    if let Some(m) = marker {
        // Another filter for the test harness: it matches no test.
        cmd.arg(m).env(MARKER, m);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("scenario {scenario} done")),
        "scenario {scenario} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stdout
}

/// The entry point of the child processes [`in_child`] starts; does nothing
/// in a normal test run.
#[test]
fn scenario() {
    let Ok(name) = std::env::var(SCENARIO) else {
        return;
    };
    match name.as_str() {
        "emfile" => emfile_at_each_step(),
        "killed-spawner" => killed_spawner_between_spawns(),
        "sigpipe" => closed_stdin_under_default_sigpipe(),
        "low-hard-limit" => low_hard_limit(),
        "host-memory" => host_memory(),
        other => panic!("unknown scenario {other}"),
    }
    println!("scenario {name} done");
}

// ---------------------------------------------------------------------------
// What a failed job must not leave behind.

/// The host's state minus the spawner (it may be restarted by a fault).
fn settled() -> HostSnapshot {
    let mut s = common::snapshot();
    let spawner = jobcell::__private::spawner_pid();
    s.descendants.retain(|(pid, _)| Some(*pid) != spawner);
    s
}

/// Waits (briefly) until nothing of a failed job is left: no process,
/// descriptor, mount or job cgroup beyond `before`.
fn nothing_left(before: &HostSnapshot, cgroups_before: &[PathBuf], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (now, cgroups) = (settled(), job_cgroups());
        if now == *before && cgroups == cgroups_before {
            return;
        }
        if Instant::now() > deadline {
            assert_eq!(
                now.descendants, before.descendants,
                "{what}: processes left"
            );
            assert_eq!(now.fds, before.fds, "{what}: descriptors left");
            assert_eq!(now.mounts, before.mounts, "{what}: mounts left");
            assert_eq!(cgroups, cgroups_before, "{what}: cgroups left");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every job cgroup directory of this process, in every hierarchy (ready
/// directories made ahead are not jobs').
fn job_cgroups() -> Vec<PathBuf> {
    let own = format!("{}-", std::process::id());
    let mut out = Vec::new();
    for base in cgroup_bases() {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for proc_dir in entries.flatten() {
            if !proc_dir.file_name().to_string_lossy().starts_with(&own) {
                continue;
            }
            for e in std::fs::read_dir(proc_dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.file_type().is_ok_and(|t| t.is_dir()) && !name.starts_with(".ready-") {
                    out.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// jobcell's default base in each hierarchy this process is in.
fn cgroup_bases() -> Vec<PathBuf> {
    let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut out = Vec::new();
    for line in cg.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let root = match ctrl {
            "" => PathBuf::from("/sys/fs/cgroup"),
            c => PathBuf::from("/sys/fs/cgroup").join(c.trim_start_matches("name=")),
        };
        let mut own = root.join(path.trim_start_matches('/'));
        if own.ends_with("jobcell-supervisor") {
            own.pop();
        }
        out.push(own.join("jobcell"));
    }
    out
}

/// Runs `f` until it succeeds, for at most a second after a fault ends.
fn recovers_within_a_second(what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match f() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: still failing: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// A spawn works, from the spawner, with every helper back in shape.
fn healthy(sandbox: &Sandbox) -> Result<(), String> {
    let ran = sh(sandbox, "echo ok");
    if ran.stdout != "ok\n" {
        return Err(format!("the job printed {:?}", ran.stdout));
    }
    let report = jobcell::host::check_sections(&[jobcell::host::SectionKind::Kernel]);
    match report.find("spawner") {
        Some(c) if c.status == jobcell::host::Status::Ok => Ok(()),
        c => Err(format!("spawner check: {c:?}")),
    }
}

/// Takes every free descriptor but `free` until dropped.
struct Fill {
    _fds: Vec<OwnedFd>,
}

impl Fill {
    fn leaving(free: usize) -> Fill {
        let null = std::fs::File::open("/dev/null").unwrap();
        let mut fds = Vec::new();
        loop {
            use std::os::fd::AsFd;
            match null.as_fd().try_clone_to_owned() {
                Ok(fd) => fds.push(fd),
                Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
                Err(e) => panic!("dup: {e}"),
            }
        }
        drop(null);
        fds.truncate(fds.len().saturating_sub(free + 1));
        Fill { _fds: fds }
    }
}

fn set_nofile(soft: u64, hard: u64) {
    let l = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: a valid rlimit for this process.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) }, 0);
}

// ---------------------------------------------------------------------------
// Descriptor exhaustion.

/// Every free descriptor but `k` taken, for k = 0, 1, 2, ...: each spawn
/// fails at a later step, until it succeeds. A failure is EMFILE at a named
/// step and leaves nothing; a success is one job, run once; either way the
/// next spawn works within a second, every helper restored.
#[test]
fn descriptor_exhaustion_at_each_step_of_a_spawn() {
    let out = in_child("emfile", None);
    eprintln!("{out}");
}

fn emfile_at_each_step() {
    // A soft limit that is cheap to fill; set before jobcell starts anything.
    set_nofile(512, 4096);
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f"), "data\n").unwrap();
    let mut sb = Sandbox::new();
    sb.bind_ro(data.path(), "/data").limits(Limits {
        pids: Some(64),
        memory: Some(256 << 20),
        ..Default::default()
    });
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "cat /data/f; cat"])
        .stdin(Stdin::bytes("in\n"));
    let expect = "data\nin\n";
    assert_eq!(collect(&sb.spawn(&cmd).unwrap()).stdout, expect);
    healthy(&sb).unwrap();
    let before = settled();
    let cgroups_before = job_cgroups();

    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut successes = 0;
    for free in 0..96 {
        let fill = Fill::leaving(free);
        let spawned = sb.spawn(&cmd);
        drop(fill);
        match spawned {
            Ok(job) => {
                let ran = collect(&job);
                assert_eq!(ran.stdout, expect, "{free} free: {:?}", ran.outcome);
                successes += 1;
            }
            Err(e) => {
                let text = e.to_string();
                assert!(
                    e.errno() == Some(Errno(libc::EMFILE)) || text.contains("EMFILE"),
                    "{free} free: not an EMFILE error: {text}"
                );
                *failures.entry(text).or_default() += 1;
            }
        }
        nothing_left(
            &before,
            &cgroups_before,
            &format!("{free} descriptors free"),
        );
        recovers_within_a_second(&format!("after {free} free descriptors"), || healthy(&sb));
        nothing_left(&before, &cgroups_before, &format!("{free} free, after"));
        if successes >= 4 {
            break;
        }
    }
    println!("failures by step:");
    for (e, n) in &failures {
        println!("  {n:3}  {e}");
    }
    assert!(successes >= 4, "the spawn never succeeded again");
    assert!(
        failures.len() >= 5,
        "too few distinct steps hit: {failures:?}"
    );
}

// ---------------------------------------------------------------------------
// The spawner.

#[test]
fn a_spawner_killed_between_spawns_is_replaced() {
    in_child("killed-spawner", None);
}

fn killed_spawner_between_spawns() {
    let sb = Sandbox::new();
    healthy(&sb).unwrap();
    for round in 0..3 {
        let pid = jobcell::__private::spawner_pid().expect("a spawner");
        // SAFETY: kills our own child process, the spawner.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        let before = settled();
        let cgroups_before = job_cgroups();
        let ran = sh(&sb, "echo ran");
        assert_eq!(ran.stdout, "ran\n", "round {round}");
        nothing_left(&before, &cgroups_before, "after a killed spawner");
        recovers_within_a_second("a new spawner", || healthy(&sb));
        assert_ne!(jobcell::__private::spawner_pid(), Some(pid));
    }
}

// ---------------------------------------------------------------------------
// SIGPIPE.

/// A job that closes its stdin while the host still feeds it: the host's
/// write fails with EPIPE, and a host with SIGPIPE at its default
/// disposition (C and FFI hosts) must not die of it.
#[test]
fn a_job_closing_its_stdin_does_not_kill_a_default_sigpipe_host() {
    in_child("sigpipe", None);
}

fn closed_stdin_under_default_sigpipe() {
    // SAFETY: resets one disposition; no handler is installed.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    for _ in 0..3 {
        let job = Sandbox::new()
            .spawn(
                Command::new("sh")
                    .args(["-c", "exec 0<&-; sleep 0.3; echo alive"])
                    .stdin(Stdin::Bytes(vec![b'x'; 1 << 20].into())),
            )
            .unwrap();
        let ran = collect(&job);
        assert_eq!(ran.stdout, "alive\n", "{:?}", ran.outcome);
    }
}

// ---------------------------------------------------------------------------
// rlimits.

/// Under `ulimit -n 1024` (soft and hard), as many hosts run: the job's
/// defaults fit under the hard limit; asking for more is an error that
/// names the limit, before anything runs.
#[test]
fn default_rlimits_fit_under_a_low_hard_limit() {
    in_child("low-hard-limit", None);
}

fn low_hard_limit() {
    set_nofile(1024, 1024);
    let ran = sh(&Sandbox::new(), "ulimit -Sn; ulimit -Hn");
    assert_eq!(
        ran.stdout, "1024\n1024\n",
        "{:?} {}",
        ran.outcome, ran.stderr
    );
    let mut sb = Sandbox::new();
    sb.rlimit(Rlimit::OpenFiles, 256, 512);
    assert_eq!(sh(&sb, "ulimit -Sn; ulimit -Hn").stdout, "256\n512\n");
    let before = settled();
    sb.rlimit(Rlimit::OpenFiles, 2048, 2048);
    let e = sb.spawn(&Command::new("true")).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidSetting {
                name: "RLIMIT_NOFILE",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("1024"), "{e}");
    nothing_left(&before, &job_cgroups(), "a refused rlimit");
}

// ---------------------------------------------------------------------------
// Arguments and environment.

/// Up to the kernel's own limits (`MAX_ARG_STRLEN` per string, a quarter of
/// the stack limit in all), arguments and variables reach the job; beyond,
/// a typed error before anything runs.
#[test]
fn arguments_and_environment_up_to_the_kernels_limit() {
    let _g = common::shared();
    let sb = Sandbox::new();
    // Many small ones: the job counts them.
    for n in [194, 1000, 20_000] {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo $#", "sh"]);
        cmd.args((0..n).map(|i| format!("a{i}")));
        for i in 0..n {
            cmd.env(format!("V{i}"), "x");
        }
        let ran = collect(&sb.spawn(&cmd).unwrap_or_else(|e| panic!("{n}: {e}")));
        assert_eq!(ran.stdout, format!("{n}\n"), "{n}: {}", ran.stderr);
    }
    // The longest single string the kernel takes (with its NUL).
    let long = "y".repeat(128 * 1024 - 1);
    let ran = collect(
        &sb.spawn(Command::new("sh").args(["-c", "echo ${#1}", "sh", &long]))
            .unwrap(),
    );
    assert_eq!(ran.stdout, format!("{}\n", long.len()));
    let ran = collect(
        &sb.spawn(
            Command::new("sh")
                .args(["-c", "echo ${#BIG}"])
                .env("BIG", &long[4..]),
        )
        .unwrap(),
    );
    assert_eq!(ran.stdout, format!("{}\n", long.len() - 4));

    let before = settled();
    let cgroups_before = job_cgroups();
    let too_long = "y".repeat(128 * 1024);
    let e = sb.spawn(Command::new("true").arg(&too_long)).unwrap_err();
    assert!(matches!(e, Error::ArgumentsTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("argument 1"), "{e}");
    let e = sb
        .spawn(Command::new("true").env("BIG", &too_long))
        .unwrap_err();
    assert!(matches!(e, Error::ArgumentsTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("BIG"), "{e}");
    // In all: 100 strings of 100 KiB are beyond any stack limit's quarter here.
    let mut cmd = Command::new("true");
    cmd.args((0..100).map(|_| &long[..100 * 1024]));
    let e = sb.spawn(&cmd).unwrap_err();
    assert!(matches!(e, Error::ArgumentsTooLarge { .. }), "{e}");
    nothing_left(&before, &cgroups_before, "refused arguments");
}

// ---------------------------------------------------------------------------
// The host's memory.

/// A value only this run knows, so it is in no binary's data.
fn fresh_marker() -> String {
    let mut b = [0u8; 12];
    // SAFETY: fills the buffer.
    assert_eq!(
        unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) },
        b.len() as isize
    );
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("marker{hex}")
}

/// Whether `pid`'s memory holds `needle` anywhere it can be read.
fn memory_holds(pid: u32, needle: &[u8]) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    for line in maps.lines() {
        let Some((range, _)) = line.split_once(' ') else {
            continue;
        };
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        if line.contains("[vvar") || line.contains("[vsyscall]") {
            continue;
        }
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        if buf.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    false
}

/// The cell's init never holds a copy of the host's memory on the default
/// path (it is cloned from the spawner); on a fallback path, where the host
/// clones it, it does, and then the job still sees none of it: not in
/// `/proc/1/cmdline`, not in `/proc/1/environ`.
#[test]
fn init_holds_no_host_memory_and_the_job_sees_none() {
    in_child("host-memory", Some(&fresh_marker()));
}

fn host_memory() {
    let marker = std::env::var(MARKER).unwrap();
    // On the heap too.
    let on_heap = marker.repeat(3);
    let job_sees = |sb: &Sandbox| {
        sh(
            sb,
            "cat /proc/1/cmdline /proc/1/environ /proc/self/environ 2>&1; true",
        )
        .stdout
    };

    let sb = Sandbox::new();
    let job = sb.spawn(Command::new("sleep").arg("10")).unwrap();
    let init = job.pid().unwrap();
    assert!(
        !memory_holds(init, marker.as_bytes()),
        "the default path's init holds the host's memory"
    );
    drop(job);
    let seen = job_sees(&sb);
    assert!(
        !seen.contains(&marker),
        "default path: the job saw {seen:?}"
    );

    // Fallback paths: a sysfs (the cell needs the host's mount table).
    let mut sysfs = Sandbox::new();
    sysfs.sysfs(true);
    let job = sysfs.spawn(Command::new("sleep").arg("10")).unwrap();
    let init = job.pid().unwrap();
    assert!(
        memory_holds(init, marker.as_bytes()),
        "a host clone's init holds the host's memory (docs/security.md): the scan is blind"
    );
    drop(job);
    let seen = job_sees(&sysfs);
    assert!(!seen.contains(&marker), "sysfs: the job saw {seen:?}");
    assert!(!on_heap.is_empty());
}
