//! Worker benchmarks: log fan-out throughput, supervisor memory and
//! descriptors per running job, and what 10 000 finished jobs leave behind.
//!
//! Run with `cargo bench --bench worker` (as root: it starts real cells).
//! Memory and descriptor counts are not timings: a busy machine does not
//! change them much.

#[path = "../tests/common/gate.rs"]
mod gate;

use std::time::{Duration, Instant};

use gate::Gate;

use jobcell::__private::BenchLog;
use jobcell::{Command, JobState, Sandbox, Worker, WorkerConfig};

/// One writer appends `total` bytes in 64 KiB chunks while `readers` threads
/// each read everything; MB/s of the writer and of all readers together.
fn fan_out(readers: usize, total: usize) {
    let log = BenchLog::new();
    let chunk = vec![b'x'; 64 * 1024];
    let threads: Vec<_> = (0..readers)
        .map(|_| {
            let r = log.reader();
            std::thread::spawn(move || r.map(|c| c.data.len()).sum::<usize>())
        })
        .collect();
    let t = Instant::now();
    let mut written = 0;
    while written < total {
        log.append(&chunk);
        written += chunk.len();
    }
    log.close();
    let write_time = t.elapsed();
    let read: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let all_time = t.elapsed();
    assert_eq!(read, written * readers);
    let mb = |bytes: usize, d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    println!(
        "log fan-out, {readers:>4} reader(s): writer {:>8.0} MB/s, readers together {:>8.0} MB/s ({} MB each)",
        mb(written, write_time),
        mb(read, all_time),
        written / 1_000_000
    );
}

/// Open descriptors, leaving out the library's warm caches (pooled
/// namespaces, skeletons), which refill on their own.
fn fds() -> usize {
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

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

/// Starts `n` jobs held at a FIFO gate (so all run at once) and reports the
/// growth of this process's resident memory per job.
fn memory_per_job(n: usize) {
    let w = Worker::new(WorkerConfig::default()).unwrap();
    let mut gate = Gate::new();
    let mut sb = Sandbox::new();
    gate.bind(&mut sb);
    let mut cmd = Command::new("sh");
    cmd.args(["-c", gate::WAIT]);
    // Warm up: the runtime, the caches, the allocator's arenas.
    let warm = w.submit(&sb, &cmd).unwrap();
    gate.release(1);
    warm.wait().unwrap();
    let (before, fds_before) = (rss_kib(), fds());
    let jobs: Vec<_> = (0..n).map(|_| w.submit(&sb, &cmd).unwrap()).collect();
    assert!(jobs.iter().all(|j| j.state() == JobState::Running));
    let (during, fds_during) = (rss_kib(), fds());
    gate.release(n);
    for j in &jobs {
        j.wait().unwrap();
    }
    println!(
        "supervisor with {n} running jobs: +{} KiB RSS, {:.1} KiB per job; \
         +{} descriptors, {:.2} per job",
        during - before,
        (during - before) as f64 / n as f64,
        fds_during - fds_before,
        (fds_during - fds_before) as f64 / n as f64
    );
}

/// Runs `n` short jobs that each print a line, eight at a time, through a
/// worker with a state directory, and reports what the supervisor holds
/// after the first 500 and after all of them.
fn after_finished_jobs(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let w = Worker::new(WorkerConfig {
        max_concurrent: Some(8),
        state_dir: Some(dir.path().into()),
        ..Default::default()
    })
    .unwrap();
    let sb = Sandbox::new();
    let mut window = std::collections::VecDeque::new();
    let mut at_500 = (0, 0);
    let t = Instant::now();
    for i in 0..n {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("echo job {i}")]);
        window.push_back(w.submit(&sb, &cmd).unwrap());
        while window.len() > 8 {
            let j = window.pop_front().unwrap();
            assert_eq!(j.wait().unwrap().state, JobState::Completed);
        }
        if i + 1 == 500 {
            for j in window.drain(..) {
                j.wait().unwrap();
            }
            at_500 = (rss_kib(), fds());
        }
    }
    for j in window.drain(..) {
        j.wait().unwrap();
    }
    let (rss, fds) = (rss_kib(), fds());
    println!(
        "supervisor after {n} finished jobs ({:?}): RSS {} KiB ({:+} KiB since job 500, \
         {:.0} bytes per job), {fds} descriptors ({:+} since job 500)",
        t.elapsed(),
        rss,
        rss as i64 - at_500.0 as i64,
        (rss as f64 - at_500.0 as f64) * 1024.0 / (n - 500) as f64,
        fds as i64 - at_500.1 as i64
    );
}

fn main() {
    for readers in [1, 10, 1000] {
        fan_out(readers, if readers == 1000 { 64 << 20 } else { 256 << 20 });
    }
    memory_per_job(1000);
    after_finished_jobs(10_000);
}
