//! A Worker that runs for months: what it holds is bounded by what runs, not
//! by what ran; its promises about order hold under races; its figures are
//! the job's.
//!
//! `ten_thousand_jobs_in_bounded_resources` is long: `cargo test` skips it,
//! `.ci/run` runs it explicitly.

mod common;
#[path = "common/gate.rs"]
mod gate;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobcell::{
    Command, JobRecord, JobState, Limits, Retention, Sandbox, StatusEvent, Stream, TimeLimit,
    Worker, WorkerConfig,
};

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Descriptors, leaving out the library's warm caches (pooled namespaces,
/// skeletons), which refill on their own.
fn fds_uncached() -> usize {
    let cached = jobcell::__private::cached_descriptors();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| {
            let n: i32 = e.file_name().to_string_lossy().parse().unwrap_or(-1);
            !cached.contains(&n)
        })
        .count()
}

/// This process's threads by name.
fn thread_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    names.sort();
    names
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

fn on_disk(dir: &Path, id: &str) -> JobRecord {
    let text = std::fs::read(dir.join("jobs").join(format!("{id}.json"))).unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn with_state(dir: &Path) -> WorkerConfig {
    WorkerConfig {
        state_dir: Some(dir.into()),
        ..Default::default()
    }
}

/// docs/jobs.md: when `wait()` returns, the record on disk and every
/// subscriber's channel already say how the job ended. A reader that drains
/// the logs first and then waits must find that too.
#[test]
fn wait_returns_after_the_record_and_the_final_event() {
    let _g = common::shared();
    let dir = tempfile::tempdir().unwrap();
    let w = Worker::new(with_state(dir.path())).unwrap();
    let events = w.subscribe();
    for i in 0..20 {
        let job = w.submit(&Sandbox::new(), &sh("echo hi")).unwrap();
        let out: Vec<u8> = job.logs().flat_map(|c| c.data.to_vec()).collect();
        assert_eq!(out, b"hi\n");
        let o = job.wait().unwrap();
        assert_eq!(o.state, JobState::Completed);
        let rec = on_disk(dir.path(), job.id().as_str());
        assert_eq!(
            rec.state,
            JobState::Completed,
            "try {i}: the record on disk"
        );
        let last: Option<StatusEvent> = events.try_iter().last();
        assert_eq!(
            last.map(|e| e.state),
            Some(JobState::Completed),
            "try {i}: the final event"
        );
        assert_eq!(w.get(job.id()).unwrap().state, JobState::Completed);
    }
}

/// After `shutdown` returns, every job it accepted is final: none stays
/// queued with its waiters blocked.
#[test]
fn submit_racing_shutdown_leaves_no_job_behind() {
    let _g = common::shared();
    for round in 0..5 {
        // With a state directory, accepting a job takes a record write.
        let dir = tempfile::tempdir().unwrap();
        let w = Arc::new(
            Worker::new(WorkerConfig {
                max_concurrent: Some(1),
                ..with_state(dir.path())
            })
            .unwrap(),
        );
        let submitters: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    let mut accepted = Vec::new();
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_secs(2) {
                        match w.submit(&Sandbox::new(), Command::new("sleep").arg("5")) {
                            Ok(h) => accepted.push(h),
                            Err(jobcell::Error::Refused { .. }) => break,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    accepted
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + 10 * round));
        w.shutdown(Duration::ZERO);
        let accepted: Vec<_> = submitters
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert!(!accepted.is_empty());
        for h in &accepted {
            assert!(
                h.state().is_final(),
                "round {round}: {} is {} after shutdown returned",
                h.id(),
                h.state()
            );
        }
    }
}

/// `LogReader::offset(n)` made before the job has written anything returns
/// exactly the bytes from `n`.
#[test]
fn an_offset_reader_made_before_the_output_reads_from_its_offset() {
    let _g = common::shared();
    let job = Sandbox::new()
        .spawn(&sh("sleep 0.3; printf 01234; sleep 0.1; printf 56789"))
        .unwrap();
    // Each reader waits for output in its own thread.
    let readers: Vec<_> = [0u64, 3, 5, 7, 10, 20]
        .into_iter()
        .map(|n| {
            let r = job.logs().offset(n);
            (n, std::thread::spawn(move || r.collect::<Vec<_>>()))
        })
        .collect();
    for (n, r) in readers {
        let chunks = r.join().unwrap();
        let text: Vec<u8> = chunks.iter().flat_map(|c| c.data.to_vec()).collect();
        let want = &b"0123456789"[(n as usize).min(10)..];
        assert_eq!(text, want, "offset {n}");
        if let Some(first) = chunks.first() {
            assert_eq!(first.offset, n, "the first chunk starts at {n}");
        }
    }
    job.wait().unwrap();
}

/// A refused submission leaves no log file and no record.
#[test]
fn a_refused_submission_leaves_nothing() {
    let _g = common::shared();
    let dir = tempfile::tempdir().unwrap();
    let w = Worker::new(WorkerConfig {
        max_concurrent: Some(1),
        when_full: jobcell::WhenFull::Refuse,
        ..with_state(dir.path())
    })
    .unwrap();
    let busy = w
        .submit(&Sandbox::new(), Command::new("sleep").arg("0.5"))
        .unwrap();
    for _ in 0..5 {
        assert!(matches!(
            w.submit(&Sandbox::new(), &Command::new("true")),
            Err(jobcell::Error::Refused { .. })
        ));
    }
    busy.wait().unwrap();
    let names = |sub: &str| -> Vec<String> {
        std::fs::read_dir(dir.path().join(sub))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let busy_id = busy.id().as_str();
    assert_eq!(names("jobs"), [format!("{busy_id}.json")]);
    assert!(
        names("logs").iter().all(|n| n.starts_with(busy_id)),
        "{:?}",
        names("logs")
    );
    assert_eq!(w.list().len(), 1);
}

/// Finished jobs hold no descriptor (their log files are closed), and a
/// worker that restores many records opens none for them.
#[test]
fn finished_jobs_hold_no_descriptors() {
    let _g = common::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let w = Worker::new(with_state(dir.path())).unwrap();
    let run = |n: usize| {
        for _ in 0..n {
            let j = w
                .submit(&Sandbox::new(), &sh("echo out; echo err >&2"))
                .unwrap();
            assert_eq!(j.wait().unwrap().state, JobState::Completed);
        }
    };
    run(5);
    let before = fds_uncached();
    run(60);
    let after = fds_uncached();
    assert!(
        after <= before + 2,
        "descriptors grew from {before} to {after} over 60 finished jobs"
    );
    drop(w);
    let before = fds();
    let again = Worker::new(with_state(dir.path())).unwrap();
    assert_eq!(again.list().len(), 65);
    let restored = fds();
    assert!(
        restored <= before + 4,
        "restoring 65 jobs opened {} descriptors",
        restored - before
    );
    // Readers open what they read, and close it when dropped.
    let id = again.list()[10].id.clone();
    let text: Vec<u8> = again
        .logs(&id)
        .unwrap()
        .filter(|c| c.stream == Stream::Stderr)
        .flat_map(|c| c.data.to_vec())
        .collect();
    assert_eq!(text, b"err\n");
    assert!(fds() <= restored);
}

/// The job's CPU time is reported however the job ended: a 1 s busy loop
/// killed by its wall-time limit, or stopped, used about 1 s, also without
/// any cgroup.
#[test]
fn rusage_of_a_killed_job_is_the_jobs() {
    let _g = common::shared();
    let w = Worker::new(WorkerConfig {
        stop_grace: Duration::from_millis(100),
        ..Default::default()
    })
    .unwrap();
    for accounting in [false, true] {
        let mut sb = Sandbox::new();
        sb.accounting(accounting);
        sb.limits(Limits {
            wall_time: Some(Duration::from_millis(1200)),
            ..Default::default()
        });
        let o = w
            .submit(&sb, &sh("trap '' TERM; while :; do :; done"))
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(o.state, JobState::TimedOut(TimeLimit::Wall));
        assert_eq!(o.usage.is_some(), accounting);
        assert!(
            o.rusage.cpu_time() >= Duration::from_millis(400),
            "accounting {accounting}: the wall-time-killed job's CPU: {:?}",
            o.rusage
        );
        let mut sb = Sandbox::new();
        sb.accounting(accounting);
        let j = w
            .submit(&sb, &sh("trap '' TERM; while :; do :; done"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        w.stop(j.id()).unwrap();
        let o = j.wait().unwrap();
        assert_eq!(o.state, JobState::Stopped);
        assert!(
            o.rusage.cpu_time() >= Duration::from_millis(400),
            "accounting {accounting}: the stopped job's CPU: {:?}",
            o.rusage
        );
        let rec = w.get(j.id()).unwrap();
        assert_eq!(rec.rusage, Some(o.rusage));
    }
}

/// Log bookkeeping is part of the memory budget: a job that prints one byte
/// per write a million times grows the host's RSS by less than the budget
/// plus a small constant.
#[test]
fn a_million_one_byte_writes_stay_within_the_budget() {
    let _g = common::exclusive();
    const BUDGET: usize = 1 << 20;
    const SLACK_KIB: u64 = 3 << 10;
    let w = Worker::new(WorkerConfig {
        log_memory_budget: BUDGET,
        ..Default::default()
    })
    .unwrap();
    // Warm up the runtime and the allocator.
    w.submit(&Sandbox::new(), &sh("echo warm"))
        .unwrap()
        .wait()
        .unwrap();
    let before = rss_kib();
    // dash's printf is a builtin: one write(2) of one byte per call.
    let j = w
        .submit(
            &Sandbox::new(),
            &sh("i=0; while [ $i -lt 1000000 ]; do printf x; i=$((i+1)); done; exec sleep 30"),
        )
        .unwrap();
    let mut tail = j.logs().offset(999_999);
    let last = tail.next().expect("the millionth byte");
    assert_eq!(last.offset, 999_999);
    let during = rss_kib();
    let mut sum = 0usize;
    for c in j.logs().snapshot() {
        assert!(c.data.iter().all(|&b| b == b'x'));
        sum += c.data.len();
    }
    assert_eq!(sum, 1_000_000);
    w.stop(j.id()).unwrap();
    j.wait().unwrap();
    let grew = during.saturating_sub(before);
    eprintln!(
        "a million one-byte writes: host RSS +{grew} KiB (budget {} KiB)",
        BUDGET >> 10
    );
    assert!(
        grew < (BUDGET as u64 >> 10) + SLACK_KIB,
        "host RSS grew by {grew} KiB"
    );
}

/// Retention: at most N finished jobs are kept, and `remove` deletes a
/// finished job's record and log; a reader of a removed job reads on.
#[test]
fn retention_and_removal() {
    let _g = common::shared();
    let dir = tempfile::tempdir().unwrap();
    let w = Worker::new(WorkerConfig {
        retention: Retention {
            max_finished: Some(3),
            ..Default::default()
        },
        ..with_state(dir.path())
    })
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..6 {
        let j = w
            .submit(&Sandbox::new(), &sh(&format!("seq 1 20000; echo job {i}")))
            .unwrap();
        j.wait().unwrap();
        ids.push(j.id().clone());
    }
    let listed: Vec<_> = w.list().into_iter().map(|r| r.id).collect();
    assert_eq!(listed, ids[3..], "the newest three are kept");
    for old in &ids[..3] {
        assert!(w.get(old).is_none());
        assert!(!dir.path().join(format!("jobs/{old}.json")).exists());
        assert!(!dir.path().join(format!("logs/{old}.log")).exists());
    }
    // A running job cannot be removed; a finished one can, under its reader.
    let running = w
        .submit(&Sandbox::new(), Command::new("sleep").arg("5"))
        .unwrap();
    assert!(w.remove(running.id()).is_err());
    w.stop(running.id()).unwrap();
    running.wait().unwrap();
    // The stopped job counts as finished: it pushes out ids[3].
    let listed: Vec<_> = w.list().into_iter().map(|r| r.id).collect();
    assert_eq!(
        listed,
        [ids[4].clone(), ids[5].clone(), running.id().clone()]
    );
    let mut reader = w.logs(&ids[5]).unwrap();
    let first = reader.next().unwrap();
    w.remove(&ids[5]).unwrap();
    assert!(w.get(&ids[5]).is_none());
    assert!(!dir.path().join(format!("logs/{}.log", ids[5])).exists());
    let rest: Vec<u8> = reader.flat_map(|c| c.data.to_vec()).collect();
    let mut all = first.data.to_vec();
    all.extend(rest);
    assert!(all.ends_with(b"20000\njob 5\n"), "the reader read on");
    assert!(matches!(
        w.remove(&ids[5]),
        Err(jobcell::Error::NoSuchJob { .. })
    ));
    drop(w);
    let again = Worker::new(with_state(dir.path())).unwrap();
    let listed: Vec<_> = again.list().into_iter().map(|r| r.id).collect();
    assert_eq!(listed, [ids[4].clone(), running.id().clone()]);
}

/// The reactor never waits for a cell's setup: while a queued job's setup
/// stalls, the running jobs' limits still fire and their output is drained.
#[test]
fn a_stalled_setup_does_not_stall_supervision() {
    let _g = common::shared();
    let w = Worker::new(WorkerConfig {
        max_concurrent: Some(2),
        ..Default::default()
    })
    .unwrap();
    let mut limited = Sandbox::new();
    limited.limits(Limits {
        wall_time: Some(Duration::from_millis(800)),
        ..Default::default()
    });
    let t = Instant::now();
    let a = w
        .submit(&limited, &sh("while :; do echo tick; sleep 0.05; done"))
        .unwrap();
    let b = w
        .submit(&Sandbox::new(), Command::new("sleep").arg("0.2"))
        .unwrap();
    let c = w.submit(&Sandbox::new(), &Command::new("true")).unwrap();
    assert_eq!(c.state(), JobState::Queued);
    // C starts when B ends (on the reactor thread until this was fixed); its
    // setup then stalls for 3 s.
    jobcell::__private::stall_setup(c.id(), Duration::from_secs(3));
    assert!(b.wait().unwrap().success());
    let o = a.wait().unwrap();
    let took = t.elapsed();
    assert_eq!(o.state, JobState::TimedOut(TimeLimit::Wall));
    assert!(
        took < Duration::from_millis(2000),
        "the wall-time limit fired after {took:?}"
    );
    let ticks = a
        .logs()
        .flat_map(|c| c.data.to_vec())
        .filter(|&b| b == b'\n')
        .count();
    assert!(ticks >= 8, "only {ticks} lines were drained");
    assert!(c.wait().unwrap().success());
}

/// Mounts a tmpfs of `size` bytes on `dir`, seen only by this thread and the
/// threads it starts from now on (a mount namespace of their own).
fn private_tmpfs(dir: &Path, size: usize) {
    use std::ffi::CString;
    // SAFETY: plain system calls on valid, NUL-terminated strings.
    unsafe {
        assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare");
        let root = CString::new("/").unwrap();
        assert_eq!(
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null()
            ),
            0
        );
        let target = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let fstype = CString::new("tmpfs").unwrap();
        let opts = CString::new(format!("size={size},mode=0700")).unwrap();
        assert_eq!(
            libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                opts.as_ptr().cast()
            ),
            0,
            "mount tmpfs: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A log write that fails (a full disk) is reported on the job (its record,
/// `store_errors`), and a restart replays an exact prefix of the output: no
/// chunk out of order or at a wrong offset, even though the disk had room
/// again before the job ended.
#[test]
fn a_full_disk_leaves_an_exact_prefix_of_the_log() {
    let _g = common::shared();
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("state");
    std::fs::create_dir(&dir).unwrap();
    // The test's thread gets its own mount namespace; it ends with the
    // thread and the worker's threads.
    let dir2 = dir.clone();
    std::thread::spawn(move || full_disk(&dir2)).join().unwrap();
}

fn full_disk(dir: &Path) {
    private_tmpfs(dir, 1 << 20);
    let seq = |a: u32, b: u32| -> Vec<u8> {
        (a..=b)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect()
    };
    let mut want = seq(1, 20000);
    let part_a = want.len();
    want.extend(seq(20001, 40000));
    let part_b = want.len();
    want.extend(seq(40001, 60000));
    let mut gate = gate::Gate::new();
    let mut sb = Sandbox::new();
    gate.bind(&mut sb);
    let w = Worker::new(with_state(dir)).unwrap();
    let script = format!(
        "seq 1 20000; {w}; seq 20001 40000 >&2; {w}; seq 40001 60000",
        w = gate::WAIT
    );
    let job = w.submit(&sb, &sh(&script)).unwrap();
    let mut live = job.logs();
    let mut got = Vec::new();
    let mut read_to = |n: usize, got: &mut Vec<u8>| {
        while got.len() < n {
            let c = live.next().expect("more output");
            assert_eq!(c.offset, got.len() as u64);
            got.extend_from_slice(&c.data);
        }
    };
    read_to(part_a, &mut got);
    // Fill the file system.
    let filler = dir.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
    }
    gate.release(1);
    read_to(part_b, &mut got);
    // Room again: later writes would succeed, but must not leave a gap.
    std::fs::remove_file(&filler).unwrap();
    gate.release(1);
    read_to(want.len(), &mut got);
    assert!(got == want, "live readers see every byte");
    let o = job.wait().unwrap();
    assert_eq!(o.state, JobState::Completed);
    let rec = w.get(job.id()).unwrap();
    let err = rec
        .log_error
        .expect("the record says the log is incomplete");
    assert!(err.contains("No space left"), "{err}");
    assert!(
        w.store_errors()
            .iter()
            .any(|e| e.contains(job.id().as_str())),
        "{:?}",
        w.store_errors()
    );
    let id = job.id().clone();
    drop(live);
    drop(job);
    drop(w);
    let again = Worker::new(with_state(dir)).unwrap();
    let mut at = 0u64;
    let mut back = Vec::new();
    for c in again.logs(&id).unwrap() {
        assert_eq!(c.offset, at, "chunks in order, at their offsets");
        back.extend_from_slice(&c.data);
        at += c.data.len() as u64;
    }
    assert!(back.len() >= part_a / 2, "{} bytes were stored", back.len());
    assert!(back.len() < want.len());
    let differs = back.iter().zip(&want).position(|(a, b)| a != b);
    assert_eq!(
        differs, None,
        "the restored log is an exact prefix of the output"
    );
    assert!(
        err.contains(&format!("from byte {} on", back.len())),
        "{err}"
    );
}

/// A Worker with a state directory, under the common soft limit of 1024
/// descriptors, runs 10 000 short jobs that each print a line. After the
/// first 500, descriptors and threads do not grow at all and RSS grows by
/// less than 4 MiB over the next 9 500 jobs (about 440 bytes a job: a
/// finished job's record and log stay on disk). Every job is `Completed`, and
/// a new Worker on that directory opens under the same limit and lists them
/// all.
#[test]
#[ignore = "long: run by .ci/run (cargo test --test endurance -- --ignored)"]
fn ten_thousand_jobs_in_bounded_resources() {
    let _g = common::exclusive();
    const JOBS: usize = 10_000;
    const WARM: usize = 500;
    const RSS_BOUND_KIB: u64 = 4 << 10;
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(1024),
            maximum: lim.maximum,
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = Arc::new(
        Worker::new(WorkerConfig {
            max_concurrent: Some(8),
            ..with_state(dir.path())
        })
        .unwrap(),
    );
    let t = Instant::now();
    let mut at_warm = None;
    let mut ids = HashSet::new();
    let mut window = std::collections::VecDeque::new();
    // The first 20 take a moment: a queue forms while they run, so the
    // worker's starter thread is part of the baseline.
    let script = |i: usize| match i {
        0..20 => format!("sleep 0.2; echo job {i}"),
        _ => format!("echo job {i}"),
    };
    for i in 0..JOBS {
        let j = w
            .submit(&Sandbox::new(), &sh(&script(i)))
            .unwrap_or_else(|e| panic!("job {i}: {e}"));
        ids.insert(j.id().clone());
        window.push_back(j);
        // Eight in flight, like a busy service; a burst of 50 at first.
        while window.len() > if i < 50 { 50 } else { 8 } {
            let j = window.pop_front().unwrap();
            let o = j.wait().unwrap();
            assert_eq!(o.state, JobState::Completed, "{}: {o:?}", j.id());
        }
        if i + 1 == WARM {
            for j in window.drain(..) {
                assert_eq!(j.wait().unwrap().state, JobState::Completed);
            }
            at_warm = Some((fds_uncached(), thread_names(), rss_kib()));
        }
    }
    for j in window.drain(..) {
        assert_eq!(j.wait().unwrap().state, JobState::Completed);
    }
    let (fds0, threads0, rss0) = at_warm.unwrap();
    let (fds1, threads1, rss1) = (fds_uncached(), thread_names(), rss_kib());
    eprintln!(
        "{JOBS} jobs in {:?}: descriptors {fds0} -> {fds1}, threads {threads0:?} -> {threads1:?}, \
         RSS {rss0} -> {rss1} KiB",
        t.elapsed()
    );
    assert!(fds1 <= fds0, "descriptors grew: {fds0} -> {fds1}");
    assert!(
        threads1.len() <= threads0.len(),
        "threads grew: {threads0:?} -> {threads1:?}"
    );
    assert!(
        rss1 < rss0 + RSS_BOUND_KIB,
        "RSS grew by {} KiB over {} jobs",
        rss1 - rss0,
        JOBS - WARM
    );
    let listed = w.list();
    assert_eq!(listed.len(), JOBS);
    assert!(listed.iter().all(|r| r.state == JobState::Completed));
    drop(listed);
    drop(Arc::try_unwrap(w).expect("the last reference"));
    let again = Worker::new(with_state(dir.path())).unwrap();
    let listed = again.list();
    assert_eq!(listed.len(), JOBS);
    assert!(listed.iter().all(|r| ids.contains(&r.id)));
    assert!(listed.iter().all(|r| r.state == JobState::Completed));
    let last = listed.last().unwrap();
    let out: Vec<u8> = again
        .logs(&last.id)
        .unwrap()
        .flat_map(|c| c.data.to_vec())
        .collect();
    assert_eq!(out, format!("job {}\n", JOBS - 1).into_bytes());
    assert!(again.recovery_issues().is_empty());
}
