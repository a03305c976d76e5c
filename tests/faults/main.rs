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

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{collect, sh, HostSnapshot};
use jobcell::__private::{inject, Fault, SpawnerStep};
use jobcell::{Command, Errno, Error, Limits, Rlimit, Sandbox, Stage, Stdin};

/// The environment variable that names the scenario a child runs.
const SCENARIO: &str = "JOBCELL_FAULT_SCENARIO";
/// A value only the child's argv and environment hold (see the host memory tests).
const MARKER: &str = "JOBCELL_FAULT_MARKER";

/// Runs `scenario` in a fresh copy of this test binary and checks that it
/// ran to its end. `marker` goes into the child's argv and environment.
fn in_child(scenario: &str, marker: Option<&str>) -> String {
    // Its processes are ours: no leak check of this process may run meanwhile.
    let _g = common::shared();
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
        "spawner-steps" => spawner_killed_at_each_step(),
        "hung-spawner" => hung_spawner(),
        "transient-faults" => transient_faults_pass(),
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
    // A fault may restart the spawner, and job cgroups are compared by
    // `job_cgroups` (ready directories come and go with the pool).
    s.spawner = None;
    s.cgroups.clear();
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
            assert_eq!(now, *before, "{what}: left behind");
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
        let null: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let mut fds = Vec::new();
        loop {
            use std::os::fd::AsFd;
            match null.as_fd().try_clone_to_owned() {
                Ok(fd) => fds.push(fd),
                Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
                Err(e) => panic!("dup: {e}"),
            }
        }
        fds.push(null);
        fds.truncate(fds.len().saturating_sub(free));
        Fill { _fds: fds }
    }
}

/// Kills the spawner (our child) and waits until it is dead (a zombie).
fn kill_spawner() -> i32 {
    let pid = jobcell::__private::spawner_pid().expect("a spawner");
    // SAFETY: kills our own child process, the spawner.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    }) {
        assert!(Instant::now() < deadline, "the spawner does not die");
        std::thread::sleep(Duration::from_millis(2));
    }
    pid
}

/// Whether `e` is the fault injected: no descriptor left.
fn is_emfile(e: &Error) -> bool {
    e.errno() == Some(Errno(libc::EMFILE)) || e.to_string().contains("EMFILE")
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
                println!("{free:3} free: ran");
                successes += 1;
            }
            Err(e) => {
                let text = e.to_string();
                assert!(is_emfile(&e), "{free} free: not an EMFILE error: {text}");
                println!("{free:3} free: {text}");
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
    // The step the sweep is for: the spawner cloned the cell, and its answer
    // (with the cell's pidfd) could not be received.
    assert!(
        failures
            .keys()
            .any(|e| e.contains("receive the cell from the spawner")),
        "the sweep never hit the spawner's answer: {failures:?}"
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
        let pid = kill_spawner();
        let before = settled();
        let cgroups_before = job_cgroups();
        let ran = sh(&sb, "echo ran");
        assert_eq!(ran.stdout, "ran\n", "round {round}");
        nothing_left(&before, &cgroups_before, "after a killed spawner");
        recovers_within_a_second("a new spawner", || healthy(&sb));
        assert_ne!(jobcell::__private::spawner_pid(), Some(pid));
    }
}

/// The spawner killed (SIGKILL) at each step of serving a spawn. Before it
/// cloned, the spawn goes on without it (the host clones the cell); after,
/// the host finds the cell through the pid the clone stored in the status
/// page and takes it over (it may be running its job already), never
/// cloning a second one. Either way the job runs exactly once, nothing is
/// left (not even a zombie), and the next spawn works, from a new spawner.
#[test]
fn a_spawner_killed_at_each_step_leaves_nothing() {
    in_child("spawner-steps", None);
}

fn spawner_killed_at_each_step() {
    let sb = Sandbox::new();
    healthy(&sb).unwrap();
    let mut limited = Sandbox::new();
    limited.limits(Limits {
        pids: Some(32),
        ..Default::default()
    });
    for base in [&sb, &limited] {
        for step in [
            SpawnerStep::OnReceipt,
            SpawnerStep::BeforeClone,
            SpawnerStep::AfterClone,
            SpawnerStep::BeforeAnswer,
        ] {
            let before = settled();
            let cgroups_before = job_cgroups();
            let old = jobcell::__private::spawner_pid();
            let mut faulty = base.clone();
            inject(&mut faulty, Fault::KillSpawner(step));
            let what = format!("spawner killed {step:?}");
            // The job counts its runs in a file the host reads after.
            let dir = tempfile::tempdir().unwrap();
            std::fs::set_permissions(
                dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o777),
            )
            .unwrap();
            faulty.bind_rw(dir.path(), "/count");
            let job = faulty
                .spawn(Command::new("sh").args(["-c", "echo x >> /count/runs; echo ran"]))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            // Run once: no second cell, no lost output.
            assert_eq!(collect(&job).stdout, "ran\n", "{what}");
            let runs = std::fs::read_to_string(dir.path().join("runs")).unwrap();
            assert_eq!(runs, "x\n", "{what}");
            nothing_left(&before, &cgroups_before, &what);
            recovers_within_a_second(&what, || healthy(base));
            assert_ne!(
                jobcell::__private::spawner_pid(),
                old,
                "{what}: same spawner"
            );
        }
    }
}

/// A spawner that hangs: the spawn gives up at the setup timeout, naming
/// the clone, kills it (and a cell it may have made), and the next spawn
/// gets a new one.
#[test]
fn a_hung_spawner_times_out_at_the_clone() {
    in_child("hung-spawner", None);
}

fn hung_spawner() {
    let mut sb = Sandbox::new();
    healthy(&sb).unwrap();
    let before = settled();
    let cgroups_before = job_cgroups();
    sb.setup_timeout(Duration::from_millis(300));
    let mut hung = sb.clone();
    inject(&mut hung, Fault::HangSpawner);
    let t = Instant::now();
    let e = hung.spawn(&Command::new("true")).unwrap_err();
    assert!(
        matches!(
            e,
            Error::SetupTimeout {
                stage: Stage::Clone,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    nothing_left(&before, &cgroups_before, "a hung spawner");
    recovers_within_a_second("after a hung spawner", || healthy(&sb));
}

// ---------------------------------------------------------------------------
// Setup that stalls.

/// A cell whose setup stalls at a stage (a test hook holds it there, as a
/// hung bind source or file system would) is killed at the setup timeout;
/// the error names the stage (and, for the root, the step). Nothing is
/// left, and the next spawn works.
#[test]
fn a_stalled_setup_is_killed_at_the_timeout_naming_the_stage() {
    let _g = common::exclusive();
    let data = tempfile::tempdir().unwrap();
    let mut sb = Sandbox::new();
    sb.bind_ro(data.path(), "/data").limits(Limits {
        pids: Some(32),
        ..Default::default()
    });
    sb.setup_timeout(Duration::from_millis(300));
    assert!(sh(&sb, "true").outcome.success());
    let before = settled();
    let cgroups_before = job_cgroups();
    for stage in [
        Stage::CloseFds,
        Stage::WaitForHost,
        Stage::CgroupNamespace,
        Stage::BuildRoot,
        Stage::PivotRoot,
        Stage::DetachOldRoot,
        Stage::ForkJob,
        Stage::Rlimits,
        Stage::SetUser,
        Stage::Chdir,
        Stage::Exec,
    ] {
        let mut stalled = sb.clone();
        inject(&mut stalled, Fault::StallAt(stage));
        let t = Instant::now();
        let e = stalled.spawn(&Command::new("true")).unwrap_err();
        let took = t.elapsed();
        match &e {
            Error::SetupTimeout {
                stage: s,
                detail,
                timeout,
            } => {
                assert_eq!(*s, stage, "{e}");
                assert_eq!(*timeout, Duration::from_millis(300));
                if stage == Stage::BuildRoot {
                    assert!(!detail.is_empty(), "{e}");
                }
                if stage == Stage::Exec {
                    assert!(detail.ends_with("/true"), "{e}");
                }
            }
            _ => panic!("{stage:?}: {e}"),
        }
        assert!(e.to_string().contains(&stage.to_string()), "{e}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{stage:?}: {took:?}"
        );
        nothing_left(&before, &cgroups_before, &format!("stalled at {stage:?}"));
        assert_eq!(sh(&sb, "echo ok").stdout, "ok\n", "after {stage:?}");
    }
    let mut zero = Sandbox::new();
    zero.setup_timeout(Duration::ZERO);
    let e = zero.spawn(&Command::new("true")).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidSetting {
                name: "setup_timeout",
                ..
            }
        ),
        "{e}"
    );
}

// ---------------------------------------------------------------------------
// Transient faults.

/// A moment of descriptor exhaustion that every helper meets: the
/// preparation thread's workspace for skeletons, its refill of the network
/// namespace pool, the spawner's (re)start. Each reports the failure in
/// `host::check` while it lasts; once it ends, spawns succeed within a
/// second, from a spawner, every helper healthy again.
#[test]
fn a_transient_fault_does_not_outlive_itself() {
    eprintln!("{}", in_child("transient-faults", None));
}

fn transient_faults_pass() {
    set_nofile(512, 4096);
    let helpers = ["spawner", "network namespace pool", "root skeletons"];
    let warned = |report: &jobcell::host::HostReport, name: &str| {
        report
            .find(name)
            .is_some_and(|c| c.status == jobcell::host::Status::Warning)
    };
    let sb = Sandbox::new();
    // Nothing has run yet: every helper starts under the fault, which
    // lasts long enough for many failures in a row (the longest delay).
    let fill = Fill::leaving(0);
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        // Starts what is missing and waits for the work ahead, for real.
        assert_eq!(jobcell::__private::spawner_pid(), None);
        jobcell::__private::cached_descriptors();
        match sb.spawn(&Command::new("true")) {
            Ok(_) => panic!("spawned with no descriptor left"),
            Err(e) => assert!(is_emfile(&e), "{e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = jobcell::host::check_sections(&[jobcell::host::SectionKind::Kernel]);
    drop(fill);
    for name in helpers {
        println!("during the fault: {:?}", report.find(name));
        assert!(warned(&report, name), "{name}: {:?}", report.find(name));
    }
    assert!(
        report
            .find("spawner")
            .is_some_and(|c| c.detail.contains("times in a row")),
        "{:?}",
        report.find("spawner")
    );
    recovers_within_a_second("after the fault", || {
        healthy(&sb)?;
        let report = jobcell::host::check_sections(&[jobcell::host::SectionKind::Kernel]);
        match helpers.into_iter().find(|n| warned(&report, n)) {
            Some(n) => Err(format!("{n}: {:?}", report.find(n))),
            None => Ok(()),
        }
    });
    let report = jobcell::host::check_sections(&[jobcell::host::SectionKind::Kernel]);
    for name in helpers {
        println!("after: {:?}", report.find(name));
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
    let _g = common::exclusive();
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

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    /// Real spawns over argument and environment counts and sizes, binds,
    /// limits and rlimits: a spawn either runs its job, which sees exactly
    /// what it was given, or is refused before anything runs; never a
    /// failure in the cell.
    #[test]
    fn spawns_run_as_planned_or_are_refused(
        args in proptest::collection::vec("[a-z0-9]{0,40}", 0..3000),
        env in proptest::collection::vec("[a-z0-9 ]{0,64}", 0..1500),
        large in proptest::option::of(0usize..140_000),
        bind_rw in proptest::prelude::any::<bool>(),
        memory in proptest::option::of(16u64..512),
        pids in proptest::option::of(0u64..64),
        files in proptest::option::of((16u64..1024, 16u64..1024)),
    ) {
        let _g = common::shared();
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("f"), "bound\n").unwrap();
        let mut sb = Sandbox::new();
        match bind_rw {
            true => sb.bind_rw(data.path(), "/data"),
            false => sb.bind_ro(data.path(), "/data"),
        };
        sb.limits(Limits {
            memory: memory.map(|m| m << 20),
            pids,
            ..Default::default()
        });
        if let Some((a, b)) = files {
            sb.rlimit(Rlimit::OpenFiles, a.min(b), a.max(b));
        }
        let mut cmd = Command::new("sh");
        // Builtins only: under a pids limit of 2 (init and the shell) the job
        // cannot fork, and that is the limit working, not a failed plan.
        cmd.args(["-c", "echo $# ${#V0} ${#LARGE}; read l < /data/f; echo $l", "sh"])
            .args(&args);
        for (i, v) in env.iter().enumerate() {
            cmd.env(format!("V{i}"), v);
        }
        let large_len = large.unwrap_or(0);
        if large.is_some() {
            cmd.env("LARGE", "x".repeat(large_len));
        }
        match sb.spawn(&cmd) {
            Ok(job) => {
                let ran = collect(&job);
                let v0 = env.first().map_or(0, String::len);
                proptest::prop_assert_eq!(
                    ran.stdout,
                    format!("{} {v0} {large_len}\nbound\n", args.len()),
                    "{:?} {}", ran.outcome, ran.stderr
                );
            }
            Err(e) => {
                let expected = matches!(pids, Some(0 | 1))
                    || matches!(e, Error::ArgumentsTooLarge { .. });
                proptest::prop_assert!(expected, "refused: {}", e);
            }
        }
    }
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

    // A changed rlimit is not a fallback: a new spawner copies it.
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let hard = nofile.maximum.unwrap_or(1 << 20);
    set_nofile(hard.min(4096) - 1, hard);
    let job = sb.spawn(Command::new("sleep").arg("10")).unwrap();
    let init = job.pid().unwrap();
    assert!(
        !memory_holds(init, marker.as_bytes()),
        "after an rlimit change, init holds the host's memory"
    );
    drop(job);

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

    // Every fallback path, as the host clones: the same.
    let mut from_host = Sandbox::new();
    inject(&mut from_host, Fault::CloneFromHost);
    let seen = job_sees(&from_host);
    assert!(!seen.contains(&marker), "host clone: the job saw {seen:?}");
    from_host.limits(Limits {
        pids: Some(16),
        ..Default::default()
    });
    let seen = job_sees(&from_host);
    assert!(
        !seen.contains(&marker),
        "host clone, cgroup: the job saw {seen:?}"
    );
    assert!(!on_heap.is_empty());
}
