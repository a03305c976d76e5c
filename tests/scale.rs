//! A thousand jobs at once: few threads, few descriptors per job.
//! Its own test binary, so that no other test's thread is counted.

#[path = "common/gate.rs"]
mod gate;

use std::time::Instant;

use gate::Gate;

use jobcell::{Command, JobState, Sandbox, Worker};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn worker(max: Option<usize>) -> Worker {
    Worker::new(jobcell::WorkerConfig {
        max_concurrent: max,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn a_thousand_concurrent_jobs_with_few_threads_and_descriptors() {
    let w = worker(None);
    // A gate: every job waits for one line from this FIFO before it sleeps,
    // so all thousand are provably running at once, however slow spawning is.
    let mut gate = Gate::new();
    let mut sb = Sandbox::new();
    gate.bind(&mut sb);
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("{}; exec sleep 2", gate::WAIT)]);

    let base_fds = fds();
    let t = Instant::now();
    let jobs: Vec<_> = (0..1000)
        .map(|i| {
            w.submit(&sb, &cmd)
                .unwrap_or_else(|e| panic!("job {i}: {e}"))
        })
        .collect();
    let submitted = t.elapsed();
    assert!(jobs.iter().all(|j| j.state() == JobState::Running));
    let (running, threads_then, fds_then) = (w.running(), threads(), fds() - base_fds);
    gate.release(1000);
    for j in &jobs {
        let o = j.wait().unwrap();
        assert_eq!(o.state, JobState::Completed, "{o:?}");
        assert!(o.wall_time >= std::time::Duration::from_secs(2));
    }
    eprintln!(
        "1000 jobs: submitted in {submitted:?}, all done in {:?}; {running} ran at once \
         with {threads_then} threads and {fds_then} descriptors beyond the baseline",
        t.elapsed()
    );
    assert_eq!(running, 1000);
    // The harness's main thread, this test's thread, the reactor, the preparation thread.
    assert!(threads_then <= 4, "{threads_then} threads");
    let per_job = fds_then as f64 / running as f64;
    assert!(per_job <= 3.2, "{per_job:.2} descriptors per running job");
    drop(w);
    assert_eq!(threads(), 3, "the worker's reactor is gone with it");
}
