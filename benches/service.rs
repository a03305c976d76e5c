//! The HTTP job service end to end: `POST /jobs` of `true` per second, and
//! the server's memory with 1000 open streams.
//!
//! Run with `cargo bench --bench service` (as root: it starts real cells).
//! It builds and starts `examples/worker` in release mode on a free
//! loopback port with a fresh state directory.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{request, Proc};

fn start(state: &std::path::Path) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(support::example("worker"));
    cmd.env("WORKER_ADDR", "127.0.0.1:0")
        .env("WORKER_STATE_DIR", state)
        .env("WORKER_LOG_LEVEL", "warn,worker=info")
        .env("MAX_JOBS", "64");
    let mut p = Proc::spawn(cmd);
    let line = p.wait_for_line(" listening ", Duration::from_secs(300));
    let addr = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("addr="))
        .and_then(|a| a.parse().ok())
        .expect("an address");
    (p, addr)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

fn metric(addr: SocketAddr, name: &str) -> f64 {
    let text = request(addr, "GET", "/metrics", &[], b"").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// `clients` threads submit `total` jobs of `true` together; reports the
/// rate of answered submissions and of finished jobs.
fn submissions(addr: SocketAddr, clients: usize, total: usize) {
    let each = total / clients;
    let t = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..each {
                    let r = request(addr, "POST", "/jobs", &[], br#"{"command":"true"}"#);
                    assert_eq!(r.status, 201, "{}", r.text());
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let answered = t.elapsed();
    while metric(addr, "jobcell_jobs{state=\"completed\"}") < (each * clients) as f64 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = t.elapsed();
    let n = (each * clients) as f64;
    println!(
        "POST /jobs of true, {clients} clients: {:.0} requests/s answered, {:.0} jobs/s finished ({} jobs)",
        n / answered.as_secs_f64(),
        n / done.as_secs_f64(),
        each * clients
    );
}

/// Opens `n` streams of one running job and reports the server's RSS.
fn streams(p: &Proc, addr: SocketAddr, n: usize) {
    let r = request(
        addr,
        "POST",
        "/jobs",
        &[],
        br#"{"command":"sh","args":["-c","sleep 5; echo done"]}"#,
    );
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let pid = p.child.id();
    let before = rss_kib(pid);
    let threads_before = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    let socks: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            write!(c, "GET /jobs/{id}/stream HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            c
        })
        .collect();
    while metric(addr, "jobcell_streams_open") < n as f64 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let during = rss_kib(pid);
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    println!(
        "{n} open streams: server RSS {before} KiB -> {during} KiB (+{:.1} KiB per stream), threads {threads_before} -> {threads}",
        (during.saturating_sub(before)) as f64 / n as f64
    );
    for s in socks {
        let mut line = String::new();
        let _ = BufReader::new(s).read_line(&mut line);
    }
}

fn main() {
    // cargo bench passes --bench; nothing else to parse.
    let mut nofile = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut nofile);
        nofile.rlim_cur = nofile.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &nofile);
    }
    let dir = tempfile::tempdir().unwrap();
    let (p, addr) = start(dir.path());
    submissions(addr, 1, 300);
    submissions(addr, 8, 1600);
    streams(&p, addr, 1000);
    p.signal(libc::SIGTERM);
}
