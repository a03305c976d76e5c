//! The Worker: many jobs, the queue, verdicts, log fan-out, persistence, events.

mod common;

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use jobcell::{Command, Exit, JobState, Limits, Sandbox, Stream, TimeLimit, Worker, WorkerConfig};

fn worker(max: Option<usize>) -> Worker {
    Worker::new(WorkerConfig {
        max_concurrent: max,
        ..Default::default()
    })
    .unwrap()
}

fn limited(l: Limits) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.limits(l);
    sb
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

/// 64-bit FNV-1a, to compare large streams cheaply.
fn fnv(acc: u64, data: &[u8]) -> u64 {
    data.iter()
        .fold(acc, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}
const FNV0: u64 = 0xcbf2_9ce4_8422_2325;

#[test]
fn a_hundred_readers_get_identical_streams() {
    let _g = common::shared();
    let w = worker(None);
    // 50 MB of deterministic output in 64 KiB-ish writes.
    let job = w
        .submit(
            &Sandbox::new(),
            &sh("yes 'jobcell fan-out line 0123456789 abcdefghijklmnopqrstuvwxyz' | head -c 50000000"),
        )
        .unwrap();
    let _never_read = w.logs(job.id()).unwrap(); // a reader that never reads
    let readers: Vec<_> = (0..100)
        .map(|_| {
            let r = job.logs();
            std::thread::spawn(move || {
                let mut n = 0u64;
                let h = r.fold(FNV0, |h, c| {
                    n += c.data.len() as u64;
                    fnv(h, &c.data)
                });
                (n, h)
            })
        })
        .collect();
    let t = Instant::now();
    let o = job.wait().unwrap();
    let job_time = t.elapsed();
    assert!(o.success(), "{o:?}");
    let results: Vec<(u64, u64)> = readers.into_iter().map(|t| t.join().unwrap()).collect();
    let late = job.logs().fold((0u64, FNV0), |(n, h), c| {
        (n + c.data.len() as u64, fnv(h, &c.data))
    });
    assert_eq!(late.0, 50_000_000);
    assert!(
        results.iter().all(|r| *r == late),
        "a reader saw different bytes"
    );
    eprintln!("job with 100 readers finished in {job_time:?}");
}

#[test]
fn concurrency_cap_queues_in_fifo_order() {
    let _g = common::shared();
    let w = worker(Some(2));
    let events = w.subscribe();
    let jobs: Vec<_> = (0..10)
        .map(|i| {
            w.submit(&Sandbox::new(), &sh(&format!("sleep 0.2; echo {i}")))
                .unwrap()
        })
        .collect();
    assert!(w.running() <= 2);
    for j in &jobs {
        let o = j.wait().unwrap();
        assert!(o.success(), "{o:?}");
    }
    let ids: Vec<_> = jobs.iter().map(|j| j.id().clone()).collect();
    let (mut running, mut max_running, mut started) = (0i32, 0, Vec::new());
    for e in events.try_iter() {
        match e.state {
            JobState::Initializing => {
                running += 1;
                started.push(e.id.clone());
            }
            s if s.is_final() => running -= 1,
            _ => {}
        }
        max_running = max_running.max(running);
    }
    assert_eq!(max_running, 2, "never more than two at once");
    assert_eq!(started, ids, "started in submission order");
}

#[test]
fn verdicts() {
    let _g = common::shared();
    let w = worker(None);

    // The wall-time limit holds to within a fifth of itself, measured by
    // the job's outcome and by the caller: a timer that fires at 1.25 or
    // 1.5 times the limit fails here, however loaded the machine. (A
    // second is long enough that the fixed costs, a spawn and a kill, are
    // small beside it, even in the emulated cgroup v2 VM.)
    let limit = Duration::from_secs(1);
    let t = Instant::now();
    let j = w
        .submit(
            &limited(Limits {
                wall_time: Some(limit),
                ..Default::default()
            }),
            Command::new("sleep").arg("10"),
        )
        .unwrap();
    let spawned = t.elapsed();
    let o = j.wait().unwrap();
    let waited = t.elapsed() - spawned;
    assert_eq!(o.state, JobState::TimedOut(TimeLimit::Wall));
    eprintln!(
        "wall-time limit {limit:?}: outcome {:?}, caller {waited:?} after a {spawned:?} spawn",
        o.wall_time
    );
    assert!(o.wall_time >= limit, "{:?}", o.wall_time);
    for (what, took) in [("outcome", o.wall_time), ("caller", waited)] {
        let ratio = took.as_secs_f64() / limit.as_secs_f64();
        assert!(ratio < 1.2, "{what}: {took:?} for {limit:?} ({ratio:.2}x)");
    }

    let j = w
        .submit(
            &limited(Limits {
                output_bytes: Some(1 << 20),
                ..Default::default()
            }),
            &Command::new("yes"),
        )
        .unwrap();
    let o = j.wait().unwrap();
    assert_eq!(o.state, JobState::OutputLimitExceeded);
    let kept: usize = j.logs().map(|c| c.data.len()).sum();
    assert_eq!(kept, 1 << 20, "exactly the limit is kept");

    let o = w
        .submit(&Sandbox::new(), &sh("exit 3"))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        o.state,
        JobState::Failed {
            reason: "exit code 3".into()
        }
    );
    assert_eq!(o.exit, Some(Exit::Code(3)));

    let j = w
        .submit(&Sandbox::new(), Command::new("sleep").arg("10"))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    w.stop(j.id()).unwrap();
    let o = j.wait().unwrap();
    assert_eq!(o.state, JobState::Stopped);
    // sleep dies of the SIGTERM that init passed on; no need for the SIGKILL.
    assert_eq!(o.exit, Some(Exit::Signal(libc::SIGTERM)));
    assert!(matches!(
        w.stop(j.id()),
        Err(jobcell::Error::AlreadyFinished { .. })
    ));
    assert!(matches!(
        w.stop("nonexistent"),
        Err(jobcell::Error::NoSuchJob { .. })
    ));
}

/// Limits that are not reached never fire: a job that writes (every write
/// wakes the supervisor, which then looks at its timers) and ends well
/// within its wall-time, CPU-time and output limits completes, its output
/// whole. A timer checked against the wrong time fires at the first
/// wake-up (ending the job at its first line), or fires again and again.
#[test]
fn limits_not_reached_never_fire() {
    let _g = common::shared();
    let w = worker(None);
    let j = w
        .submit(
            &limited(Limits {
                wall_time: Some(Duration::from_secs(60)),
                cpu_time: Some(Duration::from_secs(60)),
                output_bytes: Some(1 << 20),
                ..Default::default()
            }),
            &sh("for i in 1 2 3 4 5; do echo $i; sleep 0.05; done"),
        )
        .unwrap();
    // Bounded: a timer heap that re-arms a due timer forever spins the
    // supervisor, and no job ever ends.
    let o = j
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("the job ended within 30 s");
    assert_eq!(o.state, JobState::Completed, "{o:?}");
    let out: Vec<u8> = j.logs().flat_map(|c| c.data.to_vec()).collect();
    assert_eq!(String::from_utf8_lossy(&out), "1\n2\n3\n4\n5\n");
}

#[test]
fn cpu_time_and_memory_verdicts() {
    // Alone: the overshoot bound is about the check schedule, not a loaded machine.
    let _g = common::exclusive();
    let w = worker(None);
    let j = w
        .submit(
            &limited(Limits {
                cpu_time: Some(Duration::from_millis(300)),
                ..Default::default()
            }),
            &sh("while :; do :; done"),
        )
        .unwrap();
    let o = j.wait().unwrap();
    assert_eq!(o.state, JobState::TimedOut(TimeLimit::Cpu), "{o:?}");
    let cpu = o
        .usage
        .expect("a CPU limit gives the job a cgroup")
        .cpu_total();
    eprintln!("CPU-time limit 300 ms: the job used {cpu:?}");
    assert!(cpu >= Duration::from_millis(300), "{cpu:?}");
    assert!(cpu < Duration::from_millis(350), "overshoot: {cpu:?}");

    let j = w
        .submit(
            &limited(Limits {
                memory: Some(32 << 20),
                ..Default::default()
            }),
            // A shell variable that keeps doubling: a memory bomb.
            &sh("x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while :; do x=$x$x; done"),
        )
        .unwrap();
    let o = j.wait().unwrap();
    assert_eq!(o.state, JobState::OutOfMemory, "{o:?}");
    assert!(o.oom_killed);
}

#[test]
fn a_stopped_job_that_is_sigstopped_still_stops() {
    let _g = common::shared();
    let w = Worker::new(WorkerConfig {
        stop_grace: Duration::from_millis(200),
        ..Default::default()
    })
    .unwrap();
    // The job ignores SIGTERM and stops itself: only the SIGKILL after the grace ends it.
    let j = w
        .submit(
            &Sandbox::new(),
            &sh("trap '' TERM; kill -STOP $$; sleep 100"),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    w.stop(j.id()).unwrap();
    let o = j.wait().unwrap();
    assert_eq!(o.state, JobState::Stopped);
    assert_eq!(o.exit, Some(Exit::Signal(libc::SIGKILL)));
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn every_transition_is_published_in_order() {
    let _g = common::shared();
    let w = worker(Some(3));
    let events = w.subscribe();
    let jobs: Vec<_> = (0..12)
        .map(|i| {
            w.submit(&Sandbox::new(), &sh(&format!("exit {}", i % 2)))
                .unwrap()
        })
        .collect();
    for j in &jobs {
        j.wait().unwrap();
    }
    let mut seen: HashMap<String, Vec<&'static str>> = HashMap::new();
    for e in events.try_iter() {
        seen.entry(e.id.to_string())
            .or_default()
            .push(e.state.name());
    }
    for (i, j) in jobs.iter().enumerate() {
        let last = if i % 2 == 0 { "completed" } else { "failed" };
        assert_eq!(
            seen[j.id().as_str()],
            ["queued", "initializing", "running", last],
            "job {i}"
        );
    }
}

#[test]
fn records_survive_a_killed_worker() {
    let _g = common::exclusive();
    if std::env::var_os("JOBCELL_WORKER_CHILD").is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("{}", 800_000 + std::process::id() % 99_999);
    // A child process runs a worker with a job that prints, then sleeps.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "worker_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("JOBCELL_WORKER_CHILD", dir.path())
        .env("JOBCELL_MARKER", &marker)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut id = None;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // The harness prints "test worker_child ... " on the same line.
        if let Some((_, rest)) = line.split_once("READY ") {
            id = Some(rest.trim().to_string());
            break;
        }
    }
    let id = id.expect("the child worker never got its job running");
    // SIGKILL: no cleanup runs in the worker.
    child.kill().unwrap();
    child.wait().unwrap();

    // A truncated record is skipped with a warning.
    std::fs::write(
        dir.path().join("jobs/0000000000000000000bad0.json"),
        "{\"id\": \"0000000000",
    )
    .unwrap();

    let t = Instant::now();
    let w = Worker::new(WorkerConfig {
        state_dir: Some(dir.path().into()),
        ..Default::default()
    })
    .unwrap();
    let rec = w.get(&id).expect("the old job is listed");
    assert_eq!(
        rec.state,
        JobState::Failed {
            reason: "worker restarted".into()
        }
    );
    assert!(rec.ended.is_some());
    // The verdict is on disk, not only derived anew by each worker that
    // starts: the record says so, with the time recovery set.
    let text = std::fs::read_to_string(dir.path().join(format!("jobs/{id}.json"))).unwrap();
    let on_disk: jobcell::JobRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(on_disk.state, rec.state, "{text}");
    assert!(on_disk.ended.is_some(), "{text}");
    let ms = |t: Option<std::time::SystemTime>| {
        t.map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis())
    };
    assert_eq!(ms(on_disk.ended), ms(rec.ended), "{text}");
    assert_eq!(ms(on_disk.started), ms(rec.started), "{text}");
    let out: Vec<u8> = w
        .logs(&id)
        .unwrap()
        .filter(|c| c.stream == Stream::Stdout)
        .flat_map(|c| c.data.to_vec())
        .collect();
    assert_eq!(String::from_utf8_lossy(&out), "before the kill\n");
    assert_eq!(w.recovery_issues().len(), 1, "{:?}", w.recovery_issues());
    assert!(w.recovery_issues()[0]
        .path
        .ends_with("0000000000000000000bad0.json"));
    assert_eq!(w.list().len(), 1);
    // The job's processes died with the worker (their init watches it).
    while t.elapsed() < Duration::from_secs(5)
        && common::descendants(1)
            .iter()
            .any(|(_, c)| c.contains(&marker))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<_> = common::descendants(1)
        .into_iter()
        .filter(|(_, c)| c.contains(&marker))
        .collect();
    assert!(
        left.is_empty(),
        "the killed worker's job survived: {left:?}"
    );
    // New jobs get new ids and go into the same store.
    let j = w.submit(&Sandbox::new(), &Command::new("true")).unwrap();
    assert_ne!(j.id().as_str(), id);
    j.wait().unwrap();
    drop(w);
    let again = Worker::new(WorkerConfig {
        state_dir: Some(dir.path().into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(again.list().len(), 2);
    assert_eq!(again.get(j.id()).unwrap().state, JobState::Completed);
}

/// The child half of `records_survive_a_killed_worker`.
#[test]
#[ignore]
fn worker_child() {
    let Some(dir) = std::env::var_os("JOBCELL_WORKER_CHILD") else {
        return;
    };
    let marker = std::env::var("JOBCELL_MARKER").unwrap();
    let w = Worker::new(WorkerConfig {
        state_dir: Some(dir.into()),
        ..Default::default()
    })
    .unwrap();
    let j = w
        .submit(
            &Sandbox::new(),
            &sh(&format!("echo before the kill; exec sleep {marker}")),
        )
        .unwrap();
    let mut logs = j.logs();
    let first = logs.next().expect("output");
    assert_eq!(&*first.data, b"before the kill\n");
    println!("READY {}", j.id());
    std::thread::sleep(Duration::from_secs(100));
}

#[test]
fn input_errors_leave_no_record_and_queued_jobs_can_be_stopped() {
    let _g = common::shared();
    let w = worker(Some(1));
    assert!(w
        .submit(&Sandbox::new(), &Command::new("no-such-program"))
        .is_err());
    assert!(w.list().is_empty());
    let a = w
        .submit(&Sandbox::new(), Command::new("sleep").arg("1"))
        .unwrap();
    let b = w
        .submit(&Sandbox::new(), Command::new("sleep").arg("1"))
        .unwrap();
    assert_eq!(b.state(), JobState::Queued);
    w.stop(b.id()).unwrap();
    let o = b.wait().unwrap();
    assert_eq!(o.state, JobState::Stopped);
    assert_eq!(o.exit, None, "it never ran");
    assert!(a.wait().unwrap().success());
    let refusing = Worker::new(WorkerConfig {
        max_concurrent: Some(1),
        when_full: jobcell::WhenFull::Refuse,
        ..Default::default()
    })
    .unwrap();
    let _busy = refusing
        .submit(&Sandbox::new(), Command::new("sleep").arg("1"))
        .unwrap();
    assert!(matches!(
        refusing.submit(&Sandbox::new(), &Command::new("true")),
        Err(jobcell::Error::Refused { .. })
    ));
}

/// Shutdown signals the running jobs before it ends the queued ones. Each
/// job it ends has its record written and synced: a long queue must not
/// hold back the running jobs' SIGTERM, and with it the end of their grace
/// (a service that exits within its grace plus a second would cut them off
/// unrecorded).
#[test]
fn shutdown_signals_the_running_jobs_before_it_ends_the_queue() {
    let _g = common::shared();
    let dir = state_dir();
    let w = Worker::new(WorkerConfig {
        max_concurrent: Some(1),
        state_dir: Some(dir.path().into()),
        ..Default::default()
    })
    .unwrap();
    let running = w
        .submit(&Sandbox::new(), Command::new("sleep").arg("600"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while running.state() != JobState::Running {
        assert!(Instant::now() < deadline, "{:?}", running.state());
        std::thread::sleep(Duration::from_millis(10));
    }
    let queued = 300;
    for _ in 0..queued {
        w.submit(&Sandbox::new(), &Command::new("true")).unwrap();
    }
    let events = w.subscribe();
    w.shutdown(Duration::from_secs(60));
    let ended: Vec<_> = events
        .try_iter()
        .filter(|e| e.state.is_final())
        .map(|e| e.id)
        .collect();
    assert_eq!(ended.len(), queued + 1);
    let at = ended.iter().position(|id| id == running.id()).unwrap();
    eprintln!("the running job ended after {at} of {queued} queued ones");
    assert!(
        at < queued,
        "the running job ended after all {queued} queued ones: its SIGTERM waited for them"
    );
    assert_eq!(running.wait().unwrap().state, JobState::Stopped);
}

/// A chunk as a log file can keep it: time to the microsecond.
fn as_stored(c: &jobcell::Chunk) -> (Stream, u64, u128, Vec<u8>) {
    let t = c.time.duration_since(std::time::UNIX_EPOCH).unwrap();
    (c.stream, c.offset, t.as_micros(), c.data.to_vec())
}

/// A state directory on a disk (the target directory), not a tmpfs: page
/// cache and inode numbers there behave as on a real deployment. (Where
/// the binary runs without its build tree, as in the cgroup v2 VM: the
/// temporary directory.)
fn state_dir() -> tempfile::TempDir {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    match target.is_dir() {
        true => tempfile::tempdir_in(target).unwrap(),
        false => tempfile::tempdir().unwrap(),
    }
}

/// A log many times the memory budget, both streams interleaved, read
/// back after a restart: every chunk's stream, offset, time and bytes as
/// the first worker served them (most of them from its file already).
/// The job's record reads back the same too.
#[test]
fn a_restored_log_is_the_same_log() {
    let _g = common::shared();
    let dir = state_dir();
    let config = || WorkerConfig {
        state_dir: Some(dir.path().into()),
        log_memory_budget: 64 << 10,
        ..Default::default()
    };
    let w = Worker::new(config()).unwrap();
    // 2 MB in all, 32 times the budget, from two writers at once.
    let j = w
        .submit(
            &Sandbox::new(),
            &sh("yes out | head -c 1000000 & yes err | head -c 1000000 >&2; wait"),
        )
        .unwrap();
    assert!(j.wait().unwrap().success());
    let before: Vec<_> = w.logs(j.id()).unwrap().map(|c| as_stored(&c)).collect();
    let record = serde_json::to_value(w.get(j.id()).unwrap()).unwrap();
    drop(w);

    let total: usize = before.iter().map(|c| c.3.len()).sum();
    assert_eq!(total, 2_000_000);
    for stream in [Stream::Stdout, Stream::Stderr] {
        let (text, want) = match stream {
            Stream::Stdout => ("out\n", "stdout"),
            Stream::Stderr => ("err\n", "stderr"),
        };
        let bytes: Vec<u8> = before
            .iter()
            .filter(|c| c.0 == stream)
            .flat_map(|c| c.3.clone())
            .collect();
        assert_eq!(bytes.len(), 1_000_000, "{want}");
        assert!(
            bytes.chunks(4).all(|w| text.as_bytes().starts_with(w)),
            "{want} holds only its own writer's bytes"
        );
    }
    let w = Worker::new(config()).unwrap();
    let after: Vec<_> = w.logs(j.id()).unwrap().map(|c| as_stored(&c)).collect();
    assert_eq!(after.len(), before.len(), "chunks");
    for (i, (a, b)) in after.iter().zip(&before).enumerate() {
        assert_eq!(
            (a.0, a.1, a.2),
            (b.0, b.1, b.2),
            "chunk {i}: stream, offset, time"
        );
        assert!(a.3 == b.3, "chunk {i}: bytes differ");
    }
    // A reader starting mid-log, after the restart, gets the same tail.
    let mid = before[before.len() / 2].1;
    let tail: Vec<_> = w
        .logs(j.id())
        .unwrap()
        .offset(mid)
        .map(|c| as_stored(&c))
        .collect();
    assert_eq!(tail[..], after[after.len() / 2..]);
    assert_eq!(
        serde_json::to_value(w.get(j.id()).unwrap()).unwrap(),
        record
    );
}

/// What a kernel with `cachestat` (Linux 6.5) says of a file's cached
/// pages: (dirty, under writeback); `None` on older kernels.
fn unwritten_pages(f: &std::fs::File) -> Option<(u64, u64)> {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        cache: u64,
        dirty: u64,
        writeback: u64,
        evicted: u64,
        recently_evicted: u64,
    }
    const SYS_CACHESTAT: libc::c_long = 451;
    let range = Range { off: 0, len: 0 };
    let mut st = Stat::default();
    // SAFETY: cachestat reads `range` and writes `st`, both live and laid
    // out as the kernel's struct cachestat_range and struct cachestat.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            std::os::fd::AsRawFd::as_raw_fd(f),
            &range as *const Range,
            &mut st as *mut Stat,
            0,
        )
    };
    (r == 0).then_some((st.dirty, st.writeback))
}

/// A job's record is replaced whole (a new file renamed over the old
/// one, never rewritten in place) and is on disk (synced) by the time the
/// change is announced: a reader holding the old record still reads it
/// complete, and the page cache holds nothing the disk does not.
#[test]
fn records_are_replaced_whole_and_synced() {
    use std::io::{Read, Seek};
    use std::os::unix::fs::MetadataExt;
    let _g = common::shared();
    let dir = state_dir();
    let w = Worker::new(WorkerConfig {
        state_dir: Some(dir.path().into()),
        stop_grace: Duration::ZERO,
        ..Default::default()
    })
    .unwrap();
    let events = w.subscribe();
    let j = w
        .submit(&Sandbox::new(), Command::new("sleep").arg("60"))
        .unwrap();
    loop {
        let e = events
            .recv_timeout(Duration::from_secs(30))
            .expect("the job never ran");
        if e.id == *j.id() && e.state == JobState::Running {
            break;
        }
    }
    let path = dir.path().join("jobs").join(format!("{}.json", j.id()));
    let on_disk = |f: &std::fs::File, what: &str| match unwritten_pages(f) {
        Some(pages) => assert_eq!(pages, (0, 0), "{what}: dirty pages, writeback"),
        None => eprintln!("no cachestat in this kernel: {what} not checked for sync"),
    };
    let mut old = std::fs::File::open(&path).unwrap();
    on_disk(&old, "the running record");
    let old_ino = old.metadata().unwrap().ino();
    let read = |f: &mut std::fs::File| -> serde_json::Value {
        let mut text = String::new();
        f.rewind().unwrap();
        f.read_to_string(&mut text).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    assert_eq!(read(&mut old)["state"], "running");

    w.stop(j.id()).unwrap();
    assert_eq!(j.wait().unwrap().state, JobState::Stopped);
    assert_eq!(
        read(&mut old)["state"],
        "running",
        "the old record was rewritten in place"
    );
    let mut new = std::fs::File::open(&path).unwrap();
    assert_ne!(new.metadata().unwrap().ino(), old_ino, "not a new file");
    assert_eq!(read(&mut new)["state"], "stopped");
    on_disk(&new, "the final record");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("jobs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| *n != *path.file_name().unwrap())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// One worker per state directory: a second one (here in the same
/// process) is refused, names the lock, and changes nothing (the first
/// one's running job is not taken for a dead worker's). Once the first is
/// gone, the directory is free.
#[test]
fn a_state_directory_serves_one_worker_at_a_time() {
    let _g = common::shared();
    let dir = state_dir();
    let config = || WorkerConfig {
        state_dir: Some(dir.path().into()),
        ..Default::default()
    };
    let first = Worker::new(config()).unwrap();
    let j = first
        .submit(&Sandbox::new(), &sh("echo hi; exec sleep 60"))
        .unwrap();
    assert_eq!(&*j.logs().next().expect("output").data, b"hi\n");
    let record = dir.path().join("jobs").join(format!("{}.json", j.id()));
    let before = std::fs::read(&record).unwrap();
    match Worker::new(config()) {
        Err(jobcell::Error::Io { op, path, source }) => {
            assert!(op.contains("another worker"), "{op}");
            assert_eq!(path, dir.path().join("lock"));
            assert_eq!(source.raw_os_error(), Some(libc::EWOULDBLOCK));
        }
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(_) => panic!("two workers share one state directory"),
    }
    assert_eq!(std::fs::read(&record).unwrap(), before);
    assert_eq!(j.state(), JobState::Running);
    first.stop(j.id()).unwrap();
    assert_eq!(j.wait().unwrap().state, JobState::Stopped);
    drop(first);
    let second = Worker::new(config()).unwrap();
    assert_eq!(second.get(j.id()).unwrap().state, JobState::Stopped);
}

/// State directories outlive upgrades: a record of a development build
/// before 0.1.0 (wall time and limits in fractional milliseconds) is
/// listed after an upgrade, and records written now hold whole numbers.
#[test]
fn records_with_fractional_milliseconds_are_read_and_new_ones_are_whole() {
    let _g = common::shared();
    let dir = state_dir();
    std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
    let old_id = "0190a0b0c0d01234abcd0001";
    std::fs::write(
        dir.path().join("jobs").join(format!("{old_id}.json")),
        r#"{"id":"0190a0b0c0d01234abcd0001","command":"sh","args":["-c","exit 3"],
           "limits":{"memory":67108864,"wall_time_ms":2500.0},"state":"failed",
           "reason":"exit code 3","created_ms":1700000000000,"started_ms":1700000000010,
           "ended_ms":1700000000031,"exit":{"code":3},"wall_time_ms":21.456279000000002,
           "rusage":{"user_time_us":1610,"system_time_us":0,"max_rss":2232320},
           "oom_killed":false}"#,
    )
    .unwrap();
    let w = Worker::new(WorkerConfig {
        state_dir: Some(dir.path().into()),
        ..Default::default()
    })
    .unwrap();
    assert!(w.recovery_issues().is_empty(), "{:?}", w.recovery_issues());
    let old = w.get(old_id).expect("the older record is listed");
    assert_eq!(old.exit, Some(Exit::Code(3)));
    assert_eq!(old.wall_time.unwrap().as_micros(), 21_456);
    assert_eq!(old.limits.wall_time, Some(Duration::from_millis(2500)));

    let mut sb = Sandbox::new();
    sb.limits(Limits {
        wall_time: Some(Duration::from_micros(30_000_500)),
        ..Limits::default()
    });
    let job = w.submit(&sb, &sh("exit 0")).unwrap();
    let outcome = job.wait().unwrap();
    let text = serde_json::to_string(&outcome).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["wall_time_ms"].is_u64(), "{text}");
    drop(w);
    let stored =
        std::fs::read_to_string(dir.path().join("jobs").join(format!("{}.json", job.id())))
            .unwrap();
    let rec: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert!(rec["wall_time_ms"].is_u64(), "{stored}");
    assert_eq!(rec["limits"]["wall_time_ms"], 30_001, "{stored}");
    for key in ["user_time_us", "system_time_us"] {
        assert!(rec["rusage"][key].is_u64(), "{stored}");
    }
}
