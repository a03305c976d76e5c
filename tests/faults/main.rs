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

mod args;
mod descriptors;
mod host;
mod setup;
mod spawner;

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
        "emfile" => descriptors::emfile_at_each_step(),
        "emfile-inline" => descriptors::emfile_inline_at_each_step(),
        "emfile-pool" => descriptors::emfile_pool_at_each_step(),
        "killed-spawner" => spawner::killed_spawner_between_spawns(),
        "spawner-steps" => spawner::spawner_killed_at_each_step(),
        "hung-spawner" => spawner::hung_spawner(),
        "transient-faults" => setup::transient_faults_pass(),
        "slow-skeletons" => setup::slow_skeletons(),
        "sigpipe" => host::closed_stdin_under_default_sigpipe(),
        "low-hard-limit" => host::low_hard_limit(),
        "host-memory" => host::host_memory(),
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
