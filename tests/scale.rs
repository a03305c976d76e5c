//! A thousand jobs at once: few threads, few descriptors per job.
//! Its own test binary, so that no other test's thread is counted.

use std::time::Instant;

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
    let base_fds = fds();
    let t = Instant::now();
    // (running jobs, threads, descriptors) at the busiest moment seen.
    let mut peak = (0, 0, 0);
    let mut jobs = Vec::new();
    for i in 0..1000 {
        jobs.push(
            w.submit(&Sandbox::new(), Command::new("sleep").arg("2"))
                .unwrap_or_else(|e| panic!("job {i}: {e}")),
        );
        let running = w.running();
        if running > peak.0 {
            peak = (running, threads(), fds() - base_fds);
        }
    }
    let submitted = t.elapsed();
    for j in &jobs {
        let o = j.wait().unwrap();
        assert_eq!(o.state, JobState::Completed, "{o:?}");
    }
    let (running, threads_then, fds_then) = peak;
    eprintln!(
        "1000 jobs: submitted in {submitted:?}, all done in {:?}; at the peak {running} ran at once \
         with {threads_then} threads and {fds_then} descriptors beyond the baseline",
        t.elapsed()
    );
    // Spawning slows as cells pile up (pivot_root walks every thread of the
    // system), so not all thousand overlap on two cores; most do.
    assert!(running >= 400, "too little overlap: {running}");
    // The harness's main thread, this test's thread, the reactor, the preparation thread.
    assert!(threads_then <= 4, "{threads_then} threads");
    let per_job = fds_then as f64 / running as f64;
    assert!(per_job <= 3.2, "{per_job:.2} descriptors per running job");
    drop(w);
    assert_eq!(threads(), 3, "the worker's reactor is gone with it");
}
