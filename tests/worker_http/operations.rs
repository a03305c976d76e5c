//! The service as it is operated: spawn errors counted by stage, the token,
//! metrics and probes, SIGTERM under load, a restart, the checks at start.

use super::*;

/// A spawn that fails for real (its setup made to stall until the setup
/// timeout kills it, through the debug-only `WORKER_TEST_STALL_AT`) is
/// counted under its stage.
#[test]
fn spawn_errors_are_counted_by_stage() {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: release builds of the service have no fault hook");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[("WORKER_TEST_STALL_AT", "exec,build_root")]);
    assert!(
        s.proc.log().contains("WORKER_TEST_STALL_AT is set"),
        "{}",
        s.proc.log()
    );
    let a = s.submit(r#"{"command":"true"}"#);
    let b = s.submit(r#"{"command":"true"}"#);
    for (id, stage) in [(&a, "execve"), (&b, "building the root")] {
        let rec = s.wait_state(id, "failed");
        let reason = rec["reason"].as_str().unwrap();
        assert!(
            reason.contains("did not finish") && reason.contains(&format!("stuck while {stage}")),
            "{rec}"
        );
        assert!(rec.get("started_ms").is_none(), "{rec}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let exec = metric(&s, "jobcell_spawn_errors_total{stage=\"exec\"}");
        let root = metric(&s, "jobcell_spawn_errors_total{stage=\"build_root\"}");
        if (exec, root) == (Some(1.0), Some(1.0)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{exec:?} {root:?}\n{}\n{}\n{}",
            s.call("GET", "/metrics", "").text(),
            s.call("GET", "/jobs", "").text(),
            s.proc.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(metric(&s, "jobcell_spawn_seconds_count"), Some(0.0));
    s.stop();
    // Started without it, the same binary injects nothing.
    let s = Server::start(dir.path(), &[]);
    let c = s.submit(r#"{"command":"true"}"#);
    s.wait_state(&c, "completed");
    assert!(!s.proc.log().contains("WORKER_TEST_STALL_AT"));
    s.stop();
}

#[test]
fn a_token_guards_every_route_but_the_probes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[("WORKER_TOKEN", "s3cret")]);
    for (method, path) in [
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("GET", "/jobs/x/stream"),
        ("GET", "/metrics"),
        ("GET", "/nowhere"),
    ] {
        let none = request(s.addr, method, path, &[], DEMO.as_bytes());
        assert_eq!(none.status, 401, "{method} {path}: {}", none.text());
        assert!(none
            .header("WWW-Authenticate")
            .unwrap()
            .starts_with("Bearer"));
        let wrong = request(
            s.addr,
            method,
            path,
            &[("Authorization", "Bearer s3cret!")],
            DEMO.as_bytes(),
        );
        assert_eq!(wrong.status, 401);
    }
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            request(s.addr, "GET", probe, &[], b"").status,
            200,
            "{probe}"
        );
    }
    assert_eq!(s.call("GET", "/jobs", "").status, 200);
    let id = s.submit(DEMO);
    s.wait_state(&id, "completed");
    assert_eq!(
        s.call("GET", "/jobs", "").json().as_array().unwrap().len(),
        1,
        "the 401s submitted nothing"
    );
    s.stop();
}

#[test]
fn metrics_and_probes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let id = s.submit(r#"{"command":"echo","args":["hi"]}"#);
    s.wait_state(&id, "completed");
    s.call("GET", &format!("/jobs/{id}/stream"), "");
    // The slot is given back just after the record says how the job ended.
    let deadline = Instant::now() + Duration::from_secs(30);
    let m = loop {
        let m = s.call("GET", "/metrics", "");
        if m.text().contains("jobcell_running 0") || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(m.status, 200);
    assert!(m.header("Content-Type").unwrap().contains("openmetrics"));
    let text = m.text();
    for want in [
        "jobcell_jobs{state=\"completed\"} 1",
        "jobcell_queue_length 0",
        "jobcell_running 0",
        "jobcell_jobs_submitted_total 1",
        "jobcell_spawn_seconds_count 1",
        "jobcell_streamed_bytes_total{format=\"raw\"} 3",
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
    assert_eq!(s.call("GET", "/healthz", "").text(), "ok\n");
    assert_eq!(s.call("GET", "/readyz", "").status, 200);
    s.stop();
}

#[test]
fn sigterm_under_load_exits_within_the_grace() {
    let grace = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(
        dir.path(),
        &[("WORKER_STOP_GRACE", "2s"), ("MAX_JOBS", "4")],
    );
    // Jobs that ignore SIGTERM (they need the SIGKILL), a queue, open
    // streams, stalled clients and submissions in flight.
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(s.submit(r#"{"command":"sh","args":["-c","trap '' TERM; while :; do echo tick; sleep 0.1; done"]}"#));
    }
    s.wait_state(&ids[0], "running");
    let streams: Vec<_> = ids
        .iter()
        .map(|id| {
            let mut c = TcpStream::connect(s.addr).unwrap();
            write!(c, "GET /jobs/{id}/stream HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            c
        })
        .collect();
    let mut stalled = TcpStream::connect(s.addr).unwrap();
    stalled
        .write_all(b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
        .unwrap();
    let addr = s.addr;
    let load: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let Ok(mut c) = TcpStream::connect(addr) else { break };
                    let body = r#"{"command":"true"}"#;
                    let _ = write!(c, "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                    let mut out = String::new();
                    let _ = BufReader::new(c).read_line(&mut out);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    s.proc.signal(libc::SIGTERM);
    let status = s.proc.wait_exit(Duration::from_secs(60));
    let took = t.elapsed();
    assert!(status.success(), "{status}\n{}", s.proc.log());
    assert!(
        took < grace + Duration::from_secs(1),
        "took {took:?}\n{}",
        s.proc.log()
    );
    for l in load {
        l.join().unwrap();
    }
    drop((streams, stalled));
    let log = s.proc.log();
    // Every job has a final record.
    let s = Server::start(dir.path(), &[]);
    for id in &ids {
        let rec = s.state(id);
        assert!(rec["state"] == "stopped", "{id}: {rec}\n{log}");
    }
    s.stop();
}

#[test]
fn a_restart_keeps_every_job_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let done = s.submit(DEMO);
    s.wait_state(&done, "completed");
    let files = s.submit(r#"{"command":"sh","args":["-c","echo 42 > out"],"collect":["out"]}"#);
    s.wait_state(&files, "completed");
    let long = s.submit(r#"{"command":"sh","args":["-c","echo started; exec sleep 600"]}"#);
    s.wait_state(&long, "running");
    // Let the collection finish before the restart.
    while s.state(&files).get("collected").is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = s.stop();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains(" stopped jobs=3"), "{log}");

    let s = Server::start(dir.path(), &[]);
    assert!(s.proc.log().contains("jobs_restored=3"), "{}", s.proc.log());
    let list = s.call("GET", "/jobs", "").json();
    let states: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            (done.as_str(), "completed"),
            (files.as_str(), "completed"),
            (long.as_str(), "stopped")
        ]
    );
    assert_eq!(
        list[0]["limits"]["maxMemory"], 128,
        "units survive a restart"
    );
    let out = s.call("GET", &format!("/jobs/{done}/stream"), "");
    assert_eq!(out.text(), "Hello, isolated world!\n");
    let out = s.call("GET", &format!("/jobs/{long}/stream"), "");
    assert_eq!(out.text(), "started\n");
    assert_eq!(
        s.call("GET", &format!("/jobs/{files}/files/out"), "").body,
        b"42\n"
    );
    assert_eq!(
        s.call("POST", &format!("/jobs/{long}/stop"), "").status,
        409
    );
    s.stop();
}

#[test]
fn refuses_a_non_loopback_address_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(support::example("worker"));
    cmd.env_remove("WORKER_TOKEN")
        .env("WORKER_ADDR", "0.0.0.0:0")
        .env("WORKER_STATE_DIR", dir.path());
    let mut p = Proc::spawn(cmd);
    let status = p.wait_exit(START);
    assert_eq!(status.code(), Some(2));
    std::thread::sleep(Duration::from_millis(100)); // let the stderr reader catch up
    let log = p.log();
    assert!(
        log.contains("refusing to listen on 0.0.0.0:0 without WORKER_TOKEN"),
        "{log}"
    );
}

#[test]
fn check_prints_the_host_report() {
    let out = Command::new(support::example("worker"))
        .arg("--check")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("user namespaces"), "{text}");
}
