//! Bad input is refused before anything runs; nothing leaks; spawning is
//! safe from many threads at once.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_no_leaks, cell, exclusive, sh, snapshot};
use jobcell::{Command, Error, IdMap, JobState, Limits, Sandbox, Stage};

/// Runs `f` (which must fail), then checks the host is exactly as before.
fn refused(what: &str, f: impl FnOnce() -> Result<jobcell::JobHandle, Error>) -> Error {
    let before = snapshot();
    let e = match f() {
        Ok(job) => panic!("{what}: spawned {job:?}"),
        Err(e) => e,
    };
    assert_no_leaks(&before, what);
    e
}

#[test]
fn bad_input_is_refused_before_anything_runs_and_leaves_nothing() {
    let _g = exclusive();
    // Warm up the runtime so its own threads and descriptors, and the
    // caches a program that spawns again fills (ready cgroup directories:
    // the refused spawns below are such spawns), are in the snapshot.
    jobcell::__private::want_work_ahead();
    assert!(sh(&cell(), "true").outcome.success());

    let e = refused("missing program", || {
        cell().spawn(&Command::new("no-such-program-x"))
    });
    assert!(
        matches!(e, Error::ProgramNotFound { ref program, .. } if program == "no-such-program-x"),
        "{e}"
    );
    assert!(e.to_string().contains("PATH="), "{e}");

    let e = refused("missing absolute program", || {
        cell().spawn(&Command::new("/usr/bin/nope"))
    });
    assert!(matches!(e, Error::ProgramNotFound { .. }), "{e}");

    let e = refused("not executable", || {
        cell().spawn(&Command::new("/etc/passwd"))
    });
    assert!(matches!(e, Error::ProgramNotFound { .. }), "{e}");

    let e = refused("empty program", || cell().spawn(&Command::new("")));
    assert!(matches!(e, Error::EmptyProgram), "{e}");

    let e = refused("NUL in argument", || {
        cell().spawn(Command::new("echo").arg("a\0b"))
    });
    assert!(
        matches!(e, Error::NulByte { ref what, .. } if what == "argument 1"),
        "{e}"
    );

    let e = refused("NUL in env", || {
        cell().spawn(Command::new("true").env("K", "v\0"))
    });
    assert!(matches!(e, Error::NulByte { .. }), "{e}");

    let e = refused("bad env name", || {
        cell().spawn(Command::new("true").env("A=B", "v"))
    });
    assert!(matches!(e, Error::InvalidSetting { .. }), "{e}");

    let e = refused("missing bind source", || {
        let mut sb = cell();
        sb.bind_ro("/no/such/source", "/x");
        sb.spawn(&Command::new("true"))
    });
    assert!(
        matches!(e, Error::HostPath { what: "bind source", errno, .. } if errno.0 == libc::ENOENT),
        "{e}"
    );

    for (target, why) in [
        ("relative/x", "relative"),
        ("/a/../b", ".."),
        ("/a/./b", "."),
    ] {
        let e = refused(why, || {
            let mut sb = cell();
            sb.bind_ro("/usr", target);
            sb.spawn(&Command::new("true"))
        });
        assert!(matches!(e, Error::InvalidPath { .. }), "{why}: {e}");
    }
    let e = refused("tmpfs with ..", || {
        let mut sb = cell();
        sb.tmpfs("/../tmp", 1 << 20);
        sb.spawn(&Command::new("true"))
    });
    assert!(matches!(e, Error::InvalidPath { .. }), "{e}");

    let e = refused("relative cwd", || {
        let mut sb = cell();
        sb.current_dir("tmp");
        sb.spawn(&Command::new("true"))
    });
    assert!(matches!(e, Error::InvalidPath { .. }), "{e}");

    let e = refused("missing cwd", || {
        let mut sb = cell();
        sb.current_dir("/no/such/dir");
        sb.spawn(&Command::new("true"))
    });
    assert!(matches!(e, Error::CurrentDirNotFound { .. }), "{e}");

    let e = refused("uid outside the range", || {
        let mut sb = cell();
        sb.id_map(IdMap::Range {
            uid_start: 100_000,
            gid_start: 100_000,
            count: 1000,
        })
        .user(5000, 1);
        sb.spawn(&Command::new("true"))
    });
    assert!(
        matches!(
            e,
            Error::IdOutOfRange {
                kind: "uid",
                id: 5000,
                count: 1000
            }
        ),
        "{e}"
    );

    let e = refused("gid outside the range", || {
        let mut sb = cell();
        sb.user(1, 70_000);
        sb.spawn(&Command::new("true"))
    });
    assert!(matches!(e, Error::IdOutOfRange { kind: "gid", .. }), "{e}");

    let e = refused("range at host root", || {
        let mut sb = cell();
        sb.id_map(IdMap::Range {
            uid_start: 0,
            gid_start: 0,
            count: 65536,
        });
        sb.spawn(&Command::new("true"))
    });
    assert!(matches!(e, Error::IdMapping { .. }), "{e}");

    let e = refused("zero limit", || {
        let mut sb = cell();
        sb.limits(Limits {
            pids: Some(0),
            ..Default::default()
        });
        sb.spawn(&Command::new("true"))
    });
    assert!(matches!(e, Error::InvalidLimit { name: "pids", .. }), "{e}");

    let e = refused("absurd limit", || {
        let mut sb = cell();
        sb.limits(Limits {
            memory: Some(u64::MAX),
            ..Default::default()
        });
        sb.spawn(&Command::new("true"))
    });
    assert!(
        matches!(e, Error::InvalidLimit { name: "memory", .. }),
        "{e}"
    );

    // A failure inside the cell names its stage and errno: a mount point that
    // would have to be created inside the read-only /usr.
    let e = refused("mount refused in the cell", || {
        let mut sb = cell();
        sb.bind_ro("/etc/passwd", "/usr/jobcell-no-such-dir/x");
        sb.spawn(&Command::new("true"))
    });
    match &e {
        Error::Setup {
            stage: Stage::BuildRoot,
            detail,
            errno,
        } => {
            assert_eq!(errno.0, libc::EROFS, "{e}");
            assert!(detail.contains("/usr/jobcell-no-such-dir"), "{e}");
        }
        other => panic!("expected a setup error, got {other}"),
    }

    // The working directory exists but the job's user may not enter it:
    // a host directory of host root with mode 0700.
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        private.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let e = refused("cwd not accessible", || {
        let mut sb = cell();
        sb.bind_ro(private.path(), "/private")
            .current_dir("/private");
        sb.spawn(&Command::new("true"))
    });
    match &e {
        Error::Setup {
            stage: Stage::Chdir,
            detail,
            errno,
        } => {
            assert_eq!(errno.0, libc::EACCES, "{e}");
            assert_eq!(detail, "/private");
        }
        other => panic!("expected a chdir error, got {other}"),
    }
}

/// A sandbox whose jobs have cgroup limits: their cells are cloned with a
/// cgroup to join (a directory on v2, `tasks` files on v1), which the host
/// hands to the spawner along with the plan.
fn limited() -> Sandbox {
    let mut sb = cell();
    sb.limits(Limits {
        memory: Some(64 << 20),
        pids: Some(32),
        cpu_percent: Some(100),
        ..Default::default()
    });
    sb
}

/// Every way a job ends, with and without cgroup limits: the host process,
/// the spawner (its descriptors and mappings: it serves every spawn), the
/// cgroup tree and the mount table are back where they were.
#[test]
fn finished_jobs_leave_nothing_behind() {
    let _g = exclusive();
    // Warm-up: the caches that fill once a program spawns again (skeletons,
    // ready cgroup directories of the hierarchies limits use) are in the
    // snapshot.
    jobcell::__private::want_work_ahead();
    assert!(sh(&cell(), "true").outcome.success());
    assert!(sh(&limited(), "true").outcome.success());
    let before = snapshot();
    assert!(
        before.spawner.is_some(),
        "a root host serves cells from a spawner"
    );
    // Normal exit, orphan holding the pipe, killed, dropped, timed out by wall time.
    assert!(sh(&cell(), "echo hi").outcome.success());
    assert!(sh(&cell(), "sleep 100 & echo started").outcome.success());
    let job = cell().spawn(Command::new("sleep").arg("100")).unwrap();
    job.kill().unwrap();
    assert_eq!(job.wait().unwrap().state, JobState::Stopped);
    drop(cell().spawn(Command::new("sleep").arg("100")).unwrap());
    let mut sb = cell();
    sb.limits(Limits {
        wall_time: Some(Duration::from_millis(200)),
        ..Default::default()
    });
    let r = sh(&sb, "sleep 100");
    assert!(
        matches!(r.outcome.state, JobState::TimedOut(_)),
        "{:?}",
        r.outcome
    );
    let scratch = tempfile::tempdir().unwrap();
    let mut sb = cell();
    sb.bind_rw(scratch.path(), "/w").tmpfs("/t", 1 << 20);
    assert!(sh(&sb, "true").outcome.success());
    assert_no_leaks(&before, "after finished jobs");

    // The same endings with limits, several times each: whatever is kept
    // per spawn piles up.
    for _ in 0..3 {
        assert!(sh(&limited(), "echo hi").outcome.success());
        let job = limited().spawn(Command::new("sleep").arg("100")).unwrap();
        job.kill().unwrap();
        assert_eq!(job.wait().unwrap().state, JobState::Stopped);
        drop(limited().spawn(Command::new("sleep").arg("100")).unwrap());
        let mut sb = limited();
        sb.limits(Limits {
            memory: Some(64 << 20),
            pids: Some(32),
            cpu_percent: Some(100),
            wall_time: Some(Duration::from_millis(100)),
            ..Default::default()
        });
        let r = sh(&sb, "sleep 100");
        assert!(
            matches!(r.outcome.state, JobState::TimedOut(_)),
            "{:?}",
            r.outcome
        );
    }
    assert_no_leaks(&before, "after finished jobs with limits");
}

#[test]
fn spawning_from_many_threads_while_another_allocates() {
    let _g = exclusive();
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Keeps the allocator's locks busy while other threads clone.
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let v: Vec<Vec<u8>> = (0..64)
                    .map(|i| vec![i as u8; 1 + (i * 37) % 4096])
                    .collect();
                n += v.iter().map(|x| x.len() as u64).sum::<u64>();
                drop(v);
            }
            n
        })
    };
    let t = Instant::now();
    let workers: Vec<_> = (0..16)
        .map(|w| {
            std::thread::spawn(move || {
                let sb = Sandbox::new();
                for i in 0..50 {
                    let job = sb
                        .spawn(Command::new("echo").arg(format!("{w}-{i}")))
                        .unwrap_or_else(|e| panic!("worker {w} job {i}: {e}"));
                    let out: Vec<u8> = job.logs().flat_map(|c| c.data.to_vec()).collect();
                    assert_eq!(out, format!("{w}-{i}\n").as_bytes());
                    assert!(job.wait().unwrap().success());
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a spawning thread panicked");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(churn.join().unwrap() > 0);
    eprintln!("800 jobs from 16 threads in {:?}", t.elapsed());
}

#[test]
fn non_utf8_arguments_pass_through() {
    let _g = common::shared();
    let arg = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let job = cell()
        .spawn(Command::new("printf").args([std::ffi::OsStr::new("%s"), arg]))
        .unwrap();
    let out: Vec<u8> = job.logs().flat_map(|c| c.data.to_vec()).collect();
    assert_eq!(out, b"caf\xe9");
}

/// Cells are cloned from the spawner, not from this process: the cell's init
/// holds no copy of the host's memory (which would make every spawn copy the
/// host's page tables, and put the host's data in reach of the cell's init).
#[test]
fn cells_hold_no_copy_of_the_host_memory() {
    let _g = common::shared();
    let host = vec![7u8; 256 << 20];
    let spawner = jobcell::__private::spawner_pid().expect("a spawner runs on this host");
    let job = cell().spawn(Command::new("sleep").arg("30")).unwrap();
    let init = job.pid().expect("a running job has a pid");
    let field = |pid: u32, name: &str| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    // The host's child all the same: waited for through its pidfd.
    assert_eq!(field(init, "PPid:"), u64::from(std::process::id()));
    for (who, pid) in [("the cell's init", init), ("the spawner", spawner as u32)] {
        let rss_kib = field(pid, "VmRSS:");
        assert!(rss_kib < 32 << 10, "{who} holds {rss_kib} KiB");
    }
    job.kill().unwrap();
    job.wait().unwrap();
    assert_eq!(std::hint::black_box(&host)[1 << 20], 7);
}

/// The spawner serves from a mount namespace of its own holding almost
/// nothing (a tmpfs root and a bind of /proc): a cell's mount namespace
/// starts as a copy of it, and copying the host's whole table cost every
/// spawn ~45 µs. The cells themselves see their usual root; one that needs
/// the host's table (a sysfs) is cloned from the host and works too.
#[test]
fn the_spawner_serves_from_a_minimal_mount_table() {
    let _g = common::shared();
    let spawner = jobcell::__private::spawner_pid().expect("a spawner runs on this host");
    let table = std::fs::read_to_string(format!("/proc/{spawner}/mountinfo")).unwrap();
    let points: Vec<&str> = table
        .lines()
        .map(|l| l.split_whitespace().nth(4).unwrap())
        .collect();
    assert_eq!(points, ["/", "/proc"], "{table}");
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(host.lines().count() > 2, "the host's table is untouched");

    let r = sh(
        &cell(),
        "ls /usr/bin/env /etc/passwd && cat /proc/self/mountinfo",
    );
    assert!(r.outcome.success(), "{}", r.stderr);
    assert!(
        r.stdout.contains(" / / ") && r.stdout.contains(" /proc "),
        "{}",
        r.stdout
    );
    let mut sysfs = cell();
    sysfs.sysfs(true);
    let r = sh(&sysfs, "ls /sys/class/net");
    assert!(r.outcome.success(), "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "lo");
}

/// Every cell gets an IPC namespace of its own, never the host's nor
/// another cell's, with `kernel.shm_rmid_forced` set (the spawner makes
/// them ahead, one per cell). The cells stay alive until all have answered:
/// a namespace's inode number may be reused once it is gone.
#[test]
fn every_cell_gets_a_fresh_ipc_namespace() {
    let _g = common::shared();
    let host = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut jobs = Vec::new();
    for _ in 0..6 {
        let job = cell()
            .spawn(Command::new("sh").args([
                "-c",
                "readlink /proc/self/ns/ipc; cat /proc/sys/kernel/shm_rmid_forced; sleep 30",
            ]))
            .unwrap();
        let mut out = String::new();
        for c in job.logs() {
            out.push_str(&String::from_utf8_lossy(&c.data));
            if out.lines().count() >= 2 {
                break;
            }
        }
        let mut lines = out.lines();
        let ns = lines.next().unwrap().to_owned();
        assert_ne!(std::path::Path::new(&ns), host, "the host's IPC namespace");
        assert_eq!(lines.next(), Some("1"), "{out}");
        assert!(seen.insert(ns.clone()), "{ns} served two cells");
        jobs.push(job);
    }
    for job in jobs {
        job.kill().unwrap();
        job.wait().unwrap();
    }
}

fn shmem_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("Shmem:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("Shmem in /proc/meminfo")
        * 1024
}

/// A finished cell's mount namespace (with the files its job left in its
/// tmpfs) is gone by the time the library's background work settles after
/// `wait`: init hands it to the host instead of tearing it down on its way
/// out, and the host must not keep it.
#[test]
fn a_finished_cell_leaves_no_tmpfs_behind() {
    let _g = exclusive();
    let sb = cell();
    sh(&sb, "true");
    jobcell::__private::cached_descriptors();
    let baseline = shmem_bytes();
    for _ in 0..5 {
        let r = sh(&sb, "head -c 33554432 /dev/zero >/tmp/left && echo ok");
        assert_eq!(r.stdout, "ok\n", "{}", r.stderr);
        jobcell::__private::cached_descriptors();
        let excess = shmem_bytes().saturating_sub(baseline);
        assert!(
            excess < 16 << 20,
            "{} MiB of a finished job's /tmp still held",
            excess >> 20
        );
    }
}
