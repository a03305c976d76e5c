//! Worker benchmarks: log fan-out throughput, and supervisor memory per
//! running job.
//!
//! Run with `cargo bench --bench worker` (as root: the second part starts
//! 1000 real cells).

use std::io::Write;
use std::time::{Duration, Instant};

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
    let gate = tempfile::tempdir().unwrap();
    let fifo = gate.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: c is a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
    std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let mut writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let mut sb = Sandbox::new();
    sb.bind_ro(gate.path(), "/gate");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec 3<>/gate/fifo; read x <&3"]);
    // Warm up: the runtime, the caches, the allocator's arenas.
    let warm = w.submit(&sb, &cmd).unwrap();
    writer.write_all(b"\n").unwrap();
    warm.wait().unwrap();
    let before = rss_kib();
    let jobs: Vec<_> = (0..n).map(|_| w.submit(&sb, &cmd).unwrap()).collect();
    assert!(jobs.iter().all(|j| j.state() == JobState::Running));
    let during = rss_kib();
    writer.write_all(&vec![b'\n'; n]).unwrap();
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
