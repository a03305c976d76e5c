//! What a job could share with the host or later jobs: SysV IPC, `/tmp`
//! and `/dev/shm`, the host's loopback.

use super::*;

// 15. SysV shared memory (nsjail issue 231)

/// 50 jobs each create four 8 MiB SysV segments, touch them and leave them
/// behind (they survive their creator by design), and leave 8 MiB files in
/// /dev/shm (POSIX shared memory) and /tmp. Each job has its own IPC
/// namespace, so the segments never appear in the host's, and they are
/// destroyed with the namespace when the cell ends; the tmpfs mounts go
/// with the mount namespace. Host shared memory does not pile up across
/// jobs and returns to its baseline.
#[test]
fn sysv_shm_does_not_pin_host_memory() {
    let _g = exclusive();
    const JOBS: usize = 50;
    const PER_JOB: u64 = 48 * MIB;
    let host_segments = host_shm_segments();
    let baseline = meminfo("Shmem");
    let sb = attacker();
    let mut worst = 0u64;
    for i in 0..JOBS {
        let r = sh(
            &sb,
            "/esc shm 4 8 && head -c 8388608 /dev/zero >/dev/shm/left && \
             head -c 8388608 /dev/zero >/tmp/left && echo written",
        );
        assert!(r.stdout.ends_with("written\n"), "{}", r.stderr);
        assert_eq!(
            r.stdout.matches("segment ").count(),
            4,
            "job {i}: {}{}",
            r.stdout,
            r.stderr
        );
        worst = worst.max(meminfo("Shmem").saturating_sub(baseline));
        assert_eq!(
            host_shm_segments(),
            host_segments,
            "segments reached the host"
        );
    }
    eprintln!(
        "shm: worst excess after a job {} MiB ({} MiB per job, {JOBS} jobs)",
        worst >> 20,
        PER_JOB >> 20
    );
    // Freed lazily by the kernel (a workqueue after an RCU grace period), so
    // one job's worth may still be there just after it ends; never a pile.
    assert!(
        worst <= 3 * PER_JOB,
        "shared memory piles up across jobs: {} MiB over baseline",
        worst >> 20
    );
    let end = Instant::now() + Duration::from_secs(10);
    let mut excess = meminfo("Shmem").saturating_sub(baseline);
    while excess > 8 * MIB && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        excess = meminfo("Shmem").saturating_sub(baseline);
    }
    assert!(
        excess <= 8 * MIB,
        "host shared memory did not return to baseline: {} MiB over",
        excess >> 20
    );
    assert_eq!(host_shm_segments(), host_segments);
}

/// Stricter than the test above: the segments are gone when `wait` returns,
/// not some time later. Init sets `kernel.shm_rmid_forced = 1` in the cell's
/// IPC namespace, so a segment goes with the last process that used it
/// instead of waiting for the kernel's deferred namespace teardown.
#[test]
fn sysv_shm_is_gone_when_wait_returns() {
    let _g = exclusive();
    let baseline = meminfo("Shmem");
    let sb = attacker();
    for _ in 0..5 {
        let r = run(&sb, &["/esc", "shm", "4", "16"]);
        assert!(r.outcome.success(), "{}", r.stderr);
        let excess = meminfo("Shmem").saturating_sub(baseline);
        assert!(
            excess <= 8 * MIB,
            "{} MiB of the job's segments outlive wait()",
            excess >> 20
        );
    }
}

// Fresh /tmp and /dev/shm per job

/// One job leaves files in /tmp and /dev/shm; the next job (same sandbox)
/// sees empty ones. Each cell mounts its own tmpfs on both.
#[test]
fn tmp_and_dev_shm_are_fresh_for_every_job() {
    let _g = shared();
    let sb = Sandbox::new();
    let r = sh(
        &sb,
        "echo a > /tmp/left; echo b > /dev/shm/left; ls /tmp /dev/shm",
    );
    assert!(r.stdout.matches("left").count() == 2, "{}", r.stderr);
    let r = sh(&sb, "ls -A /tmp /dev/shm | grep -c left");
    assert_eq!(r.stdout, "0\n");
}

// 16. Network

/// A TCP server on the host's 127.0.0.1 and an abstract unix socket (scoped
/// by network namespace, no file to hide) are out of reach: the cell's
/// loopback is its own. The control run with the host's network shows the
/// helper can connect when the path exists.
#[test]
fn host_loopback_services_are_unreachable() {
    use std::os::linux::net::SocketAddrExt;
    let _g = shared();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let port = tcp.local_addr().unwrap().port().to_string();
    let name = format!("jobcell-escape-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    let unix = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    unix.set_nonblocking(true).unwrap();
    let script = format!("/esc connect 127.0.0.1 {port}; /esc unix {name}");

    let r = sh(&attacker(), &script);
    let a = Attempts(&r);
    a.denied("connect", "ECONNREFUSED");
    a.denied("connect_abstract", "ECONNREFUSED");
    assert!(tcp.accept().is_err(), "a connection reached the host");
    assert!(unix.accept().is_err(), "a connection reached the host");

    let mut host = attacker();
    host.network(Network::Host);
    let r = sh(&host, &script);
    let a = Attempts(&r);
    a.denied("connect", "ok");
    a.denied("connect_abstract", "ok");
}
