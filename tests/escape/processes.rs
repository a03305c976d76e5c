//! Host processes and the cell's own: the host's are out of sight and
//! reach, and nothing of the cell outlives its job or its host process.

use super::*;

// 3 and 17. Host processes

/// The host sentinel runs as the job's own host uid, so the kernel's
/// permission checks would let the job signal and trace it: only the PID
/// namespace stands in the way. It is not in the cell's /proc, its pid
/// means nothing in the cell (ESRCH for kill, ptrace, process_vm_readv,
/// pidfd_open).
#[test]
fn host_processes_are_invisible_and_out_of_reach() {
    let _g = shared();
    let mut sentinel = Sentinel::start();
    let pid = sentinel.pid().to_string();
    let r = sh(
        &attacker(),
        &format!("echo /proc/[0-9]*; /esc ptrace {pid}"),
    );
    let a = attempts(&r);
    // echo and the glob are shell builtins: init and sh are all there is.
    assert!(r.stdout.starts_with("/proc/1 /proc/2\n"), "{}", r.stdout);
    for name in [
        "kill0",
        "kill_term",
        "ptrace_attach",
        "ptrace_seize",
        "process_vm_readv",
        "pidfd_open",
    ] {
        a.denied(name, "ESRCH");
    }
    a.denied("proc_status", "ENOENT");
    sentinel.assert_alive_and_untraced();
}

/// `kill(-1, SIGKILL)` signals every process the caller may signal: inside a
/// PID namespace that is the cell's processes (not its init). The sentinel
/// (same host uid as the job) survives; the job's own sibling does not,
/// which shows the call really ran.
#[test]
fn kill_minus_one_kills_nothing_outside_the_cell() {
    let _g = shared();
    let mut sentinel = Sentinel::start();
    let r = sh(&attacker(), "sleep 1000 & exec /esc killall");
    let a = attempts(&r);
    assert_eq!(a.get("kill_all"), "ok");
    assert!(
        r.stdout.contains(" signal 9\n"),
        "the cell's own sleep should have died: {}",
        r.stdout
    );
    a.denied("init_alive", "EPERM"); // init exists; the job may not signal it
    sentinel.assert_alive_and_untraced();
}

// 11. Outliving the job

/// A double-forked daemon that ignores every signal, `setsid sleep`, and
/// `nohup sleep` try to outlive the job. The cell's init exits when the
/// job's main process does, and the kernel kills everything left in the
/// PID namespace with it.
#[test]
fn daemons_do_not_outlive_the_job() {
    let _g = shared();
    let m = marker(700_000);
    let sync = tempfile::tempdir().unwrap();
    let mut sb = attacker();
    sb.bind_ro(sync.path(), "/sync");
    let job = sb
        .spawn(Command::new("sh").args([
            "-c",
            &format!(
                "/esc daemon {m}; setsid sleep {m} & nohup sleep {m} >/dev/null 2>&1 & \
                 while [ ! -e /sync/go ]; do sleep 0.01; done; exit 0"
            ),
        ]))
        .unwrap();
    // Before the job ends: the daemon and both sleeps are running.
    let t = Instant::now();
    let count = |what: &str| {
        processes_with(&m)
            .iter()
            .filter(|(_, d)| d.contains(&format!("{what} {m}")))
            .count()
    };
    while count("/esc daemon") < 1 || count("sleep") < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the daemons never started: {:?}",
            processes_with(&m)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(sync.path().join("go"), "").unwrap();
    let r = collect(&job);
    assert!(r.outcome.success(), "{}", r.stderr);
    assert_eq!(r.stdout, "daemon started\n");
    let left = wait_until_gone(&m, Duration::from_secs(5));
    assert!(left.is_empty(), "processes outlived their job: {left:?}");
}

/// A job that stops itself (and its children) with SIGSTOP: killing it
/// still ends everything, and so does its wall-time limit.
#[test]
fn a_stopped_job_can_still_be_stopped() {
    let _g = shared();
    let m = marker(710_000);
    let script = format!("sleep {m} & kill -STOP $!; kill -STOP $$; echo resumed");
    let job = Sandbox::new()
        .spawn(Command::new("sh").args(["-c", &script]))
        .unwrap();
    let t = Instant::now();
    while !processes_with(&m).iter().any(|(_, d)| d.starts_with("T ")) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the job never stopped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    job.kill().unwrap();
    let o = job.wait().unwrap();
    assert_eq!(o.state, JobState::Stopped, "{o:?}");
    assert!(wait_until_gone(&m, Duration::from_secs(5)).is_empty());

    let mut sb = Sandbox::new();
    sb.limits(Limits {
        wall_time: Some(Duration::from_millis(300)),
        ..Default::default()
    });
    let o = sb
        .spawn(Command::new("sh").args(["-c", &script]))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(o.state, JobState::TimedOut(TimeLimit::Wall), "{o:?}");
    assert!(wait_until_gone(&m, Duration::from_secs(5)).is_empty());
}

// 12. The host process dies

/// The host process that owns a job is SIGKILLed (no destructor runs). The
/// job, a daemon it started, and a `setsid` process all die with it: the
/// cell's init watches a lifeline pipe only the host holds and exits on
/// hang-up, and the PID namespace dies with its init. The job's cgroup is
/// left empty and `sweep_stale_cgroups` removes it.
#[test]
fn killing_the_owner_kills_the_whole_cell() {
    let _g = exclusive();
    if std::env::var_os("JOBCELL_ESCAPE_OWNER").is_some() {
        return;
    }
    let m = marker(720_000);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "processes::owner_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("JOBCELL_ESCAPE_OWNER", &m)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (mut id, mut spawner) = (None, None);
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some((_, rest)) = line.split_once("SPAWNER ") {
            spawner = rest.trim().parse::<i32>().ok();
        }
        if let Some((_, rest)) = line.split_once("READY ") {
            id = Some(rest.trim().to_string());
            break;
        }
    }
    let id = id.expect("the owner never got its job running");
    let spawner = spawner.expect("the owner named its spawner");
    let before = processes_with(&m);
    assert!(before.len() >= 3, "job, daemon, setsid sleep: {before:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    let left = wait_until_gone(&m, Duration::from_secs(5));
    assert!(left.is_empty(), "the cell outlived its owner: {left:?}");
    // The spawner the cell came from died with its owner too.
    let t = Instant::now();
    let alive = || {
        std::fs::read_to_string(format!("/proc/{spawner}/stat")).is_ok_and(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    };
    while alive() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(), "the spawner {spawner} outlived its owner");
    jobcell::sweep_stale_cgroups(None).unwrap();
    let cgroups = common::cgroup_dirs_named(&id);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
}

/// The owner half of `killing_the_owner_kills_the_whole_cell`.
#[test]
#[ignore = "run by killing_the_owner_kills_the_whole_cell"]
fn owner_child() {
    let Ok(m) = std::env::var("JOBCELL_ESCAPE_OWNER") else {
        return;
    };
    let mut sb = attacker();
    sb.limits(Limits {
        pids: Some(64),
        ..Default::default()
    });
    let job = sb
        .spawn(Command::new("sh").args([
            "-c",
            &format!("/esc daemon {m}; setsid sleep {m} & exec sleep {m}"),
        ]))
        .unwrap();
    let mut logs = job.logs();
    let first = logs.next().expect("output");
    assert_eq!(&*first.data, b"daemon started\n");
    // The setsid sleep is started right after; give it a moment.
    std::thread::sleep(Duration::from_millis(100));
    let spawner = jobcell::__private::spawner_pid().expect("a spawner on a root host");
    println!("SPAWNER {spawner}");
    println!("READY {}", job.id());
    std::thread::sleep(Duration::from_secs(100));
}
