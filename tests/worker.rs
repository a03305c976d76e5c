//! The Worker: many jobs, the queue, verdicts, log fan-out, persistence, events.

mod common;

use std::collections::HashMap;
use std::io::BufRead;
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
        assert!(j.wait().unwrap().success());
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

    let t = Instant::now();
    let j = w
        .submit(
            &limited(Limits {
                wall_time: Some(Duration::from_millis(300)),
                ..Default::default()
            }),
            Command::new("sleep").arg("10"),
        )
        .unwrap();
    let o = j.wait().unwrap();
    assert_eq!(o.state, JobState::TimedOut(TimeLimit::Wall));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert!(o.wall_time >= Duration::from_millis(300));

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
