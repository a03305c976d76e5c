//! Worker benchmarks: log fan-out throughput, and supervisor memory per
//! running job.
//!
//! Run with `cargo bench --bench worker` (as root: the second part starts
//! 1000 real cells).

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
    let before = rss_kib();
    let jobs: Vec<_> = (0..n).map(|_| w.submit(&sb, &cmd).unwrap()).collect();
    assert!(jobs.iter().all(|j| j.state() == JobState::Running));
    let during = rss_kib();
    gate.release(n);
    for j in &jobs {
        j.wait().unwrap();
    }
    println!(
        "supervisor memory with {n} running jobs: +{} KiB RSS, {:.1} KiB per job",
        during - before,
        (during - before) as f64 / n as f64
    );
}

fn main() {
    for readers in [1, 10, 1000] {
        fan_out(readers, if readers == 1000 { 64 << 20 } else { 256 << 20 });
    }
    memory_per_job(1000);
}
