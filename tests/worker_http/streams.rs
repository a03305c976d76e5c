//! Output streams: a thousand raw streams of one job byte for byte, SSE
//! resuming and snapshots.

use super::*;

/// Raises this process's open-files limit to its hard limit (a thousand
/// client sockets), returning the soft limit now in force.
fn raise_nofile() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
    }
    l.rlim_cur
}

#[test]
fn a_thousand_streams_of_one_job_are_byte_identical() {
    let streams = 1000usize;
    assert!(raise_nofile() > streams as u64 + 64, "too few descriptors");
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    // Output that begins once the streams are open (they follow it live),
    // on both streams.
    let script = r#"sleep 2; i=0; while [ $i -lt 300 ]; do echo "line $i: the quick brown fox"; [ $((i % 50)) = 0 ] && echo "err $i" >&2; i=$((i+1)); done"#;
    let id = s.submit(&json!({"command": "sh", "args": ["-c", script]}).to_string());
    let mut socks = Vec::new();
    for i in 0..streams {
        let mut c = TcpStream::connect(s.addr).unwrap();
        let accept = if i % 10 == 0 {
            "text/event-stream"
        } else {
            "*/*"
        };
        write!(
            c,
            "GET /jobs/{id}/stream HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        socks.push((accept == "text/event-stream", c));
    }
    let pid = s.pid();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    assert!(threads < 100, "{threads} threads for {streams} streams");
    // Read them all from a few threads.
    let mut expected = String::new();
    for i in 0..300 {
        expected.push_str(&format!("line {i}: the quick brown fox\n"));
        if i % 50 == 0 {
            expected.push_str(&format!("err {i}\n"));
        }
    }
    let chunks: Vec<Vec<(bool, TcpStream)>> = {
        let mut v: Vec<Vec<_>> = (0..8).map(|_| Vec::new()).collect();
        for (i, x) in socks.into_iter().enumerate() {
            v[i % 8].push(x);
        }
        v
    };
    let readers: Vec<_> = chunks
        .into_iter()
        .map(|group| {
            std::thread::spawn(move || {
                group
                    .into_iter()
                    .map(|(sse, c)| {
                        c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
                        let r = support::read_response(BufReader::new(c));
                        assert_eq!(r.status, 200);
                        if sse {
                            sse_text(&r.text())
                        } else {
                            r.text()
                        }
                    })
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let texts: Vec<String> = readers
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect();
    assert_eq!(texts.len(), streams);
    // stdout and stderr interleave as the job wrote them, and every client
    // sees exactly the same bytes.
    let all = s.call("GET", &format!("/jobs/{id}/stream"), "").text();
    let mut lines: Vec<&str> = all.lines().collect();
    let mut want: Vec<&str> = expected.lines().collect();
    lines.sort_unstable();
    want.sort_unstable();
    assert_eq!(lines, want);
    for t in &texts {
        assert!(*t == all, "a stream differs");
    }
    let sse = s.call_with(
        "GET",
        &format!("/jobs/{id}/stream"),
        &[("Accept", "text/event-stream")],
        "",
    );
    assert_eq!(sse_text(&sse.text()), all, "SSE carries the same bytes");
    s.stop();
}

#[test]
fn sse_resumes_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let id = s.submit(r#"{"command":"sh","args":["-c","printf 'one\\n'; sleep 0.2; printf 'two\\r\\n' >&2; sleep 0.2; printf '\\377'; sleep 600"]}"#);
    s.wait_state(&id, "running");
    // A snapshot of a running job ends at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let snap = loop {
        let snap = s.call("GET", &format!("/jobs/{id}/stream?follow=false"), "");
        if snap.body.len() == 10 || Instant::now() > deadline {
            break snap;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(snap.body, b"one\ntwo\r\n\xff");
    let sse = s.call_with(
        "GET",
        &format!("/jobs/{id}/stream?follow=false"),
        &[("Accept", "text/event-stream")],
        "",
    );
    assert_eq!(sse.header("Content-Type"), Some("text/event-stream"));
    let text = sse.text();
    assert!(text.contains("event: stdout\nid: 4\ndata: one\n"), "{text}");
    assert!(text.contains("event: stderr.base64\n"), "{text}");
    assert!(!text.contains("event: end"), "the job still runs: {text}");
    // Resuming from an event id (or ?offset=) skips what was seen.
    let r = s.call_with(
        "GET",
        &format!("/jobs/{id}/stream?follow=false"),
        &[("Accept", "text/event-stream"), ("Last-Event-ID", "4")],
        "",
    );
    assert!(!r.text().contains("data: one"), "{}", r.text());
    let r = s.call(
        "GET",
        &format!("/jobs/{id}/stream?follow=false&offset=4"),
        "",
    );
    assert_eq!(r.body, b"two\r\n\xff");
    s.call("POST", &format!("/jobs/{id}/stop?wait=30s"), "");
    let r = s.call_with(
        "GET",
        &format!("/jobs/{id}/stream?offset=10"),
        &[("Accept", "text/event-stream")],
        "",
    );
    let text = r.text();
    assert!(text.starts_with("event: end\nid: 10\ndata: {"), "{text}");
    assert!(text.contains(r#""state":"stopped""#), "{text}");
    s.stop();
}
