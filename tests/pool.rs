//! Cells made ahead (`Sandbox::prepare`, `Pool`): each serves one job and
//! is never used again, honours every option of its sandbox as a fresh
//! cell does, counts wall time from the spawn, and leaves nothing behind,
//! even when its program exits without dropping its pool.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use common::{collect, Ran};
use jobcell::__private::pool_counts;
use jobcell::{Command, Error, JobState, Limits, Pool, Rlimit, Sandbox, Stdin, TimeLimit};

fn sh(pool: &Pool, script: &str) -> Ran {
    let job = pool
        .spawn(Command::new("sh").args(["-c", script]))
        .unwrap_or_else(|e| panic!("spawn sh -c {script:?} from the pool: {e}"));
    collect(&job)
}

/// Waits until the pool holds `n` ready cells.
fn wait_ready(pool: &Pool, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pool.ready() < n {
        assert!(
            Instant::now() < deadline,
            "the pool never got {n} cells ready: {pool:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The cells' inits among this process's descendants (other programs on
/// the machine may run cells of their own).
fn inits() -> Vec<i32> {
    common::descendants(std::process::id() as i32)
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|&pid| is_init(pid))
        .collect()
}

fn is_init(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.contains("(jobcell-init) ") && !s.contains(") Z "))
}

/// Host processes whose command line is exactly `cmd`.
fn processes(cmd: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim() == cmd)
        })
        .collect()
}

#[test]
fn a_pooled_cell_runs_its_job_with_its_stdio() {
    let _g = common::shared();
    let pool = Sandbox::new().prepare(2).unwrap();
    wait_ready(&pool, 2);
    let ran = sh(&pool, "echo hello; echo oops >&2; exit 3");
    assert_eq!(ran.stdout, "hello\n");
    assert_eq!(ran.stderr, "oops\n");
    assert_eq!(ran.outcome.code(), Some(3), "{}", ran.outcome);
    let mut cat = Command::new("cat");
    cat.stdin(Stdin::bytes("fed through a pipe\n"));
    let ran = collect(&pool.spawn(&cat).unwrap());
    assert_eq!(ran.stdout, "fed through a pipe\n");
    assert_eq!(
        pool_counts(&pool),
        (2, 0),
        "both jobs took cells made ahead"
    );
    // A command's errors are a fresh spawn's, and cost the pool no cell.
    let before = pool.ready();
    let e = pool.spawn(&Command::new("no-such-program")).unwrap_err();
    assert!(matches!(e, Error::ProgramNotFound { .. }), "{e}");
    assert!(pool.ready() >= before, "a refused command used up a cell");
    // A stdin file that cannot be opened is refused the same way, the cell
    // kept (the pool is full: a cell used up shows until the refill).
    wait_ready(&pool, 2);
    let mut cat = Command::new("cat");
    cat.stdin(Stdin::File("/nonexistent/input".into()));
    let e = pool.spawn(&cat).unwrap_err();
    assert_eq!(pool.ready(), 2, "a refused stdin file used up a cell");
    let fresh = Sandbox::new().spawn(&cat).unwrap_err();
    assert_eq!(e.to_string(), fresh.to_string());
}

/// A job's files (in the cell's /tmp), its processes (a sleeper that
/// outlives the job's main process) and its SysV IPC objects are never
/// seen by the next job of the same pool.
#[test]
fn the_pool_never_reuses_a_cell() {
    let _g = common::shared();
    let pool = Sandbox::new().prepare(2).unwrap();
    wait_ready(&pool, 2);
    let observe = "ls /tmp; ipcs -q -s | grep -c '^0x' ; ls /proc | grep -c '^[0-9]'; \
                   for ns in ipc mnt pid; do readlink /proc/self/ns/$ns; done";
    let first = sh(
        &pool,
        &format!(
            "echo secret > /tmp/left-behind; ipcmk -Q >/dev/null; ipcmk -S 1 >/dev/null; \
             setsid sleep 1000 </dev/null >/dev/null 2>&1 & {observe}"
        ),
    );
    assert!(
        first.outcome.success(),
        "{}: {}",
        first.outcome,
        first.stderr
    );
    let lines: Vec<&str> = first.stdout.lines().collect();
    assert_eq!(lines[0], "left-behind", "{}", first.stdout);
    assert_eq!(
        lines[1], "2",
        "the first job's queue and semaphore: {}",
        first.stdout
    );
    // The job ended: its cell, the sleeper with it, is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes("sleep 1000").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the first job's sleeper outlived its cell"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = sh(&pool, observe);
    assert!(
        second.outcome.success(),
        "{}: {}",
        second.outcome,
        second.stderr
    );
    let next: Vec<&str> = second.stdout.lines().collect();
    assert_eq!(next[0], "0", "the second job saw files: {}", second.stdout);
    // init, sh, ls (and grep): no sleeper of the first job.
    let procs: usize = next[1].parse().unwrap();
    assert!(
        procs <= 4,
        "the second job saw {procs} processes: {}",
        second.stdout
    );
    for (a, b) in lines[3..].iter().zip(&next[2..]) {
        assert_ne!(a, b, "two jobs shared a namespace");
    }
    assert_eq!(
        pool_counts(&pool),
        (2, 0),
        "both jobs took cells made ahead"
    );
}

/// The same observations of the cell through a fresh spawn and a spawn
/// from the pool of one sandbox that sets every option.
#[test]
fn a_pooled_cell_honours_every_option_as_a_fresh_one() {
    let _g = common::shared();
    let input = tempfile::tempdir().unwrap();
    std::fs::write(input.path().join("data"), "input\n").unwrap();
    let mut sb = Sandbox::untrusted();
    sb.hostname("poolcell")
        .bind_ro(input.path(), "/input")
        .tmpfs("/scratch", 8 << 20)
        .dir("/work")
        .file("/etc/motd", "made ahead\n")
        .symlink("/input/data", "/data")
        .env("GREETING", "hi")
        .current_dir("/work")
        .user(1234, 1234)
        .rlimit(Rlimit::OpenFiles, 77, 77)
        .limits(Limits {
            memory: Some(64 << 20),
            pids: Some(32),
            ..Limits::conservative()
        });
    let observe = "id; hostname; cat /proc/self/uid_map /proc/self/gid_map; \
        sed -E 's/^[0-9]+ [0-9]+ [0-9]+:[0-9]+ //; s/ (shared|master|propagate_from):[0-9]+//g' \
            /proc/self/mountinfo | sort; \
        env | sort; pwd; ulimit -n; cat /data /etc/motd; \
        grep -E '^(Seccomp|NoNewPrivs|Cap(Inh|Prm|Eff|Bnd|Amb)):' /proc/self/status; \
        cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null; \
        cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null; \
        ip -o link | cut -d' ' -f2-3; cat /proc/net/route | wc -l; \
        unshare -U true 2>&1 | sed 's/^unshare: //'; echo end";
    let fresh = common::sh(&sb, observe);
    let pool = sb.prepare(1).unwrap();
    wait_ready(&pool, 1);
    let pooled = sh(&pool, observe);
    assert!(
        fresh.outcome.success(),
        "{}: {}",
        fresh.outcome,
        fresh.stderr
    );
    assert!(fresh.stdout.contains("uid=1234") && fresh.stdout.contains("poolcell"));
    assert!(fresh.stdout.contains("GREETING=hi") && fresh.stdout.contains("made ahead"));
    assert_eq!(pooled.stdout, fresh.stdout, "stdout differs");
    assert_eq!(pooled.stderr, fresh.stderr, "stderr differs");
    assert_eq!(pooled.outcome.state, fresh.outcome.state);
    assert_eq!(pool_counts(&pool), (1, 0), "the job took a cell made ahead");

    // The memory limit is in effect: the same verdict.
    let hog = "x=$(head -c 134217728 /dev/zero | tr '\\0' x); echo survived";
    let fresh = common::sh(&sb, hog);
    wait_ready(&pool, 1);
    let pooled = sh(&pool, hog);
    assert_eq!(
        fresh.outcome.state,
        JobState::OutOfMemory,
        "{}",
        fresh.outcome
    );
    assert_eq!(
        pooled.outcome.state,
        JobState::OutOfMemory,
        "{}",
        pooled.outcome
    );
    assert_eq!(pool_counts(&pool), (2, 0), "the job took a cell made ahead");
}

/// Wall time counts from the spawn, not from the cell's making: a cell
/// that waited in the pool longer than the job's wall-time limit still
/// gives its job the whole limit.
#[test]
fn wall_time_counts_from_the_spawn() {
    let _g = common::shared();
    let mut sb = Sandbox::new();
    sb.limits(Limits {
        wall_time: Some(Duration::from_millis(1500)),
        ..Limits::default()
    });
    let pool = sb.prepare(1).unwrap();
    wait_ready(&pool, 1);
    // Longer than the limit, shorter than the pool's idle give-back.
    std::thread::sleep(Duration::from_millis(2500));
    let ran = sh(&pool, "sleep 0.2; echo done");
    assert_eq!(ran.outcome.state, JobState::Completed, "{}", ran.outcome);
    assert_eq!(ran.stdout, "done\n");
    assert!(
        ran.outcome.wall_time < Duration::from_millis(1500),
        "wall time {:?} counts the wait in the pool",
        ran.outcome.wall_time
    );
    assert_eq!(pool_counts(&pool), (1, 0), "the job took a cell made ahead");
    // And the limit holds from the spawn on.
    wait_ready(&pool, 1);
    let ran = sh(&pool, "sleep 10");
    assert_eq!(
        ran.outcome.state,
        JobState::TimedOut(TimeLimit::Wall),
        "{}",
        ran.outcome
    );
}

/// A cell made ahead whose init someone killed is never handed out: the
/// spawn takes a fresh cell, and the dead one leaves nothing behind.
#[test]
fn a_killed_cell_is_not_handed_out() {
    let _g = common::exclusive();
    // The machinery (spawner, caches) up before the snapshot.
    assert!(common::sh(&Sandbox::untrusted(), "true").outcome.success());
    let before = common::snapshot();
    let pool = Sandbox::untrusted().prepare(1).unwrap();
    wait_ready(&pool, 1);
    let inits = inits();
    assert_eq!(inits.len(), 1, "one ready cell's init: {inits:?}");
    // SAFETY: kill has no memory arguments; the pid is the ready cell's init.
    assert_eq!(unsafe { libc::kill(inits[0], libc::SIGKILL) }, 0);
    std::thread::sleep(Duration::from_millis(100));
    let ran = sh(&pool, "echo fine");
    assert_eq!(ran.stdout, "fine\n", "{}: {}", ran.outcome, ran.stderr);
    assert_eq!(pool_counts(&pool), (0, 1), "the dead cell was handed out");
    drop(pool);
    common::assert_no_leaks(&before, "a pool with a killed cell");
}

/// Dropping a pool tears down every cell it holds: no namespace, mount,
/// cgroup, process or descriptor is left.
#[test]
fn dropping_a_pool_leaves_nothing_behind() {
    let _g = common::exclusive();
    assert!(common::sh(&Sandbox::untrusted(), "true").outcome.success());
    let before = common::snapshot();
    let pool = Sandbox::untrusted().prepare(3).unwrap();
    wait_ready(&pool, 3);
    for _ in 0..2 {
        assert!(sh(&pool, "echo x > /tmp/x; sleep 0.05").outcome.success());
    }
    wait_ready(&pool, 3);
    assert!(
        common::own_cgroups().len() > before.cgroups.len(),
        "no cgroups made ahead?"
    );
    drop(pool);
    common::assert_no_leaks(&before, "a dropped pool");
    // Dropped while its cells are being made.
    let pool = Sandbox::untrusted().prepare(8).unwrap();
    drop(pool);
    common::assert_no_leaks(&before, "a pool dropped while it filled");
}

/// A failure to make the first cell is the error a spawn would have had.
#[test]
fn a_sandbox_that_cannot_be_made_is_refused_at_prepare() {
    let _g = common::shared();
    let mut sb = Sandbox::new();
    sb.bind_ro("/nonexistent/source", "/x");
    let e = sb.prepare(2).unwrap_err();
    let fresh = sb.spawn(&Command::new("true")).unwrap_err();
    assert_eq!(e.to_string(), fresh.to_string());
    assert!(matches!(
        Sandbox::new().prepare(0),
        Err(Error::InvalidSetting { .. })
    ));
}

/// A command too large for a cell's room takes a fresh cell, correctly.
#[test]
fn a_command_larger_than_a_cells_room_takes_a_fresh_cell() {
    let _g = common::shared();
    let pool = Sandbox::new().prepare(1).unwrap();
    wait_ready(&pool, 1);
    let big = "y".repeat(100_000);
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo $#; echo ${#1}", "sh"]);
    for _ in 0..12 {
        cmd.arg(&big);
    }
    let ran = collect(&pool.spawn(&cmd).unwrap());
    assert_eq!(ran.stdout, "12\n100000\n", "{}", ran.stderr);
    assert_eq!(pool_counts(&pool), (0, 1));
    assert_eq!(pool.ready(), 1, "the cell stays for a command that fits");
}

/// What the one-shot child does: prepares a pool, runs a job from it, and
/// exits with cells still ready (without dropping the pool).
#[test]
#[ignore = "run by a_one_shot_process_with_a_pool_leaves_nothing_behind"]
fn pool_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let refilling = std::env::var(CHILD).unwrap() == "refilling";
    let pool = Sandbox::untrusted().prepare(3).unwrap();
    wait_ready(&pool, 3);
    if refilling {
        // The cell made for the one taken below is held by the filler
        // while this process exits.
        jobcell::__private::delay_pool_cells(Duration::from_millis(300));
    }
    assert!(sh(&pool, "echo one").outcome.success());
    let pidns = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
    let inits: Vec<String> = if refilling {
        // Until the filler holds the new cell: two ready, three inits.
        let deadline = Instant::now() + Duration::from_secs(10);
        while inits().len() < 3 {
            assert!(Instant::now() < deadline, "the refill never made its cell");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(pool.ready(), 2, "the new cell is still the filler's");
        inits().iter().map(i32::to_string).collect()
    } else {
        wait_ready(&pool, 3);
        let inits: Vec<String> = inits().iter().map(i32::to_string).collect();
        assert_eq!(inits.len(), 3, "three ready cells");
        inits
    };
    println!(
        "CHILD-RAN pid {} pidns {pidns} inits {}",
        std::process::id(),
        inits.join(",")
    );
    std::process::exit(0);
}

const CHILD: &str = "JOBCELL_TEST_POOL_CHILD";

#[test]
fn a_one_shot_process_with_a_pool_leaves_nothing_behind() {
    one_shot_child_leaves_nothing("ready");
}

/// The same, when the process exits while a cell is being made for its
/// pool: the exit waits for it, and it goes too.
#[test]
fn a_process_that_exits_while_its_pool_refills_leaves_nothing_behind() {
    one_shot_child_leaves_nothing("refilling");
}

fn one_shot_child_leaves_nothing(how: &str) {
    let _g = common::exclusive();
    let mounts = || std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts_before = mounts();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pool_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, how)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("CHILD-RAN"), "{text}");
    let field = |name: &str| {
        text.split_whitespace()
            .skip_while(|w| *w != name)
            .nth(1)
            .unwrap()
            .to_owned()
    };
    let (pid, pidns) = (field("pid"), field("pidns"));
    let left = common::cgroup_dirs_where(|n| {
        n.starts_with(&format!("{pid}-")) && n.ends_with(&format!("-{pidns}"))
    });
    assert!(left.is_empty(), "the one-shot child left {left:#?}\n{text}");
    assert_eq!(mounts(), mounts_before, "the host's mount table changed");
    // Its cells went with it (nothing else runs cells now: the lock).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !inits().is_empty() {
        assert!(
            Instant::now() < deadline,
            "cells outlived the one-shot child: {:?}",
            inits()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A ready cell costs the host process a few descriptors (see
/// docs/architecture.md, *Cells made ahead*): a pool's are bounded by its size.
#[test]
fn a_ready_cell_holds_few_descriptors() {
    let _g = common::exclusive();
    assert!(common::sh(&Sandbox::untrusted(), "true").outcome.success());
    let before = common::descriptors("/proc/self/fd");
    let pool = Sandbox::untrusted().prepare(8).unwrap();
    wait_ready(&pool, 8);
    let after = common::descriptors("/proc/self/fd");
    // Less the library's caches (cgroup v1's ready directories): a fixed size.
    let cached: Vec<String> = jobcell::__private::cached_descriptors()
        .iter()
        .map(|fd| format!("{fd}->"))
        .collect();
    let new: Vec<&String> = after
        .difference(&before)
        .filter(|d| !cached.iter().any(|c| d.starts_with(c.as_str())))
        .collect();
    let per_cell = new.len() as f64 / 8.0;
    println!("{per_cell} descriptors per ready cell");
    // What each ready cell's init holds (docs/architecture.md quotes it).
    for pid in inits() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss: Vec<&str> = status.lines().filter(|l| l.starts_with("Rss")).collect();
        println!("init {pid}: {rss:?}");
    }
    // The init's pidfd, the error pipe, the sync socket, the arena's memfd
    // (and on cgroup v2 the job cgroup's directory).
    assert!(
        per_cell <= 5.0,
        "{per_cell} descriptors per ready cell: {new:#?}"
    );
    drop(pool);
}

/// Kill-mode seccomp (the job hands init its listener through a socket
/// pair made with the cell) from a pool: the same verdict as a fresh cell.
#[cfg(feature = "seccomp")]
#[test]
fn kill_mode_seccomp_works_from_a_pool() {
    use jobcell::{Seccomp, SeccompAction, SeccompPolicy};
    let _g = common::shared();
    let mut sb = Sandbox::new();
    sb.seccomp(Seccomp::Custom(
        SeccompPolicy::new().action(SeccompAction::KillProcess),
    ));
    let pool = sb.prepare(1).unwrap();
    wait_ready(&pool, 1);
    let outcome = pool
        .spawn(Command::new("unshare").args(["-U", "true"]))
        .unwrap()
        .wait()
        .unwrap();
    let bad = JobState::BadSyscall {
        syscall: Some(libc::SYS_unshare),
    };
    assert_eq!(outcome.state, bad, "{outcome:?}");
    wait_ready(&pool, 1);
    assert!(sh(&pool, "echo fine | cat").outcome.success());
    assert_eq!(pool_counts(&pool), (2, 0));
}

/// The host's network from a pool, as from a fresh cell.
#[test]
fn the_host_network_works_from_a_pool() {
    let _g = common::shared();
    let mut host_net = Sandbox::new();
    host_net.network(jobcell::Network::Host);
    let observe = "readlink /proc/self/ns/net; cat /proc/net/dev | wc -l";
    let fresh = common::sh(&host_net, observe);
    let pool = host_net.prepare(1).unwrap();
    wait_ready(&pool, 1);
    let pooled = sh(&pool, observe);
    assert!(fresh.outcome.success(), "{}", fresh.stderr);
    assert_eq!(pooled.stdout, fresh.stdout);
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(
        pooled.stdout.lines().next(),
        host.to_str(),
        "the host's network"
    );
    assert_eq!(pool_counts(&pool), (1, 0));
}
