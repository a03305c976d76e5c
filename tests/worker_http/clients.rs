//! Hostile and slow clients: one that does not read slows nobody, slow and
//! stalled ones time out, declared sizes are refused without allocating.

use super::*;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_client_that_does_not_read_slows_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    // 8 MiB: far more than the socket buffers of a client that never reads.
    let id = s.submit(r#"{"command":"head","args":["-c","8388608","/dev/zero"]}"#);
    let mut stalled = TcpStream::connect(s.addr).unwrap();
    write!(
        stalled,
        "GET /jobs/{id}/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // The job ends and another client gets everything while that one sleeps.
    s.wait_state(&id, "completed");
    let fast = s.call("GET", &format!("/jobs/{id}/stream"), "");
    assert_eq!(fast.body.len(), 8 << 20);
    assert!(fast.body.iter().all(|b| *b == 0));
    // The sleeper still gets every byte, from the first, when it reads at last.
    let slow = support::read_response(BufReader::new(stalled));
    assert_eq!(slow.body.len(), 8 << 20);
    s.stop();
}

#[test]
fn slow_and_stalled_clients_time_out_without_blocking_others() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[
            ("WORKER_HEADER_TIMEOUT", "1s"),
            ("WORKER_BODY_TIMEOUT", "2s"),
        ],
    );
    let mut stalled = Vec::new();
    for i in 0..100 {
        let mut c = TcpStream::connect(s.addr).unwrap();
        if i % 3 == 0 {
            // Half a head.
            c.write_all(b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Le")
                .unwrap();
        } else if i % 3 == 1 {
            // A head, and part of the body it announced.
            c.write_all(b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"comm")
                .unwrap();
        } // else: connected, silent.
        stalled.push(c);
    }
    // Everyone else is served meanwhile.
    let t = Instant::now();
    for _ in 0..20 {
        assert_eq!(s.call("GET", "/jobs", "").status, 200);
    }
    let id = s.submit(r#"{"command":"true"}"#);
    s.wait_state(&id, "completed");
    assert!(t.elapsed() < Duration::from_secs(60));
    // And the stalled ones are cut off: closed, or answered 408 and closed.
    let deadline = Instant::now() + Duration::from_secs(30);
    for mut c in stalled {
        let left = deadline.saturating_duration_since(Instant::now());
        c.set_read_timeout(Some(left.max(Duration::from_millis(100))))
            .unwrap();
        let mut buf = Vec::new();
        let r = c.read_to_end(&mut buf);
        assert!(
            r.is_ok(),
            "still open: {r:?} {:?}",
            String::from_utf8_lossy(&buf)
        );
        let text = String::from_utf8_lossy(&buf);
        assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    // A body that trickles a byte a second still has a deadline for the whole.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .unwrap();
    let t = Instant::now();
    let mut answer = Vec::new();
    c.set_read_timeout(Some(Duration::from_millis(900)))
        .unwrap();
    while t.elapsed() < Duration::from_secs(20) {
        if c.write_all(b" ").is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    s.stop();
}

#[test]
fn declared_sizes_are_refused_without_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[("WORKER_TOKEN", "s3cret")]);
    let pid = s.pid();
    // Warm up, then measure.
    for _ in 0..10 {
        s.call("GET", "/jobs", "");
    }
    let before = rss_kib(pid);
    for (auth, want) in [(None, 401), (Some("Bearer s3cret"), 413)] {
        for path in [
            "/jobs",
            "/jobs/0190a0b0c0d01234abcd0001/stop",
            "/metrics",
            "/nowhere",
        ] {
            for _ in 0..5 {
                let mut c = TcpStream::connect(s.addr).unwrap();
                let mut head =
                    format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n");
                if let Some(a) = auth {
                    head.push_str(&format!("Authorization: {a}\r\n"));
                }
                head.push_str("\r\n");
                c.write_all(head.as_bytes()).unwrap();
                let r = support::read_response(BufReader::new(c));
                assert!(
                    r.status == want || (want == 413 && r.status == 405),
                    "{path} {auth:?}: {} {}",
                    r.status,
                    r.text()
                );
            }
        }
    }
    let after = rss_kib(pid);
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    s.stop();
}
