//! Deleting jobs: `DELETE /jobs/{id}` (streams open on a deleted job read
//! on) and the retention policy.

use super::*;

/// Whether any file under `dir` has `id` in its name.
fn files_of(dir: &Path, id: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else if e.file_name().to_string_lossy().contains(id) {
                found.push(e.path().display().to_string());
            }
        }
    }
    found
}

#[test]
fn delete_removes_a_finished_job_and_streams_open_on_it_read_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    // 39 MB of output: far more than a stalled client's socket buffers, so
    // most of it is read from the log file after the job is deleted.
    let lines = 5_000_000;
    let want: String = (1..=lines).map(|i| format!("{i}\n")).collect();
    let id = s.submit(
        &json!({
            "command": "sh",
            "args": ["-c", format!("seq 1 {lines}; echo 42 > out")],
            "collect": ["out"],
            "limits": {"maxMemory": 128, "output_bytes": 64 << 20}
        })
        .to_string(),
    );
    // A running job cannot be deleted; an unknown one is not found.
    assert_eq!(s.call("DELETE", &format!("/jobs/{id}"), "").status, 409);
    s.wait_state(&id, "completed");
    while s.state(&id).get("collected").is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let on_disk = files_of(dir.path(), &id);
    assert_eq!(
        on_disk.len(),
        4,
        "record, log, job data, collected files: {on_disk:?}"
    );
    // Two clients open streams and stop reading.
    let open = |accept: &str| {
        let mut c = TcpStream::connect(s.addr).unwrap();
        write!(
            c,
            "GET /jobs/{id}/stream HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        c
    };
    let raw = open("*/*");
    let sse = open("text/event-stream");
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&s, "jobcell_streams_open") != Some(2.0) {
        assert!(Instant::now() < deadline, "{}", s.proc.log());
        std::thread::sleep(Duration::from_millis(20));
    }

    let r = s.call("DELETE", &format!("/jobs/{id}"), "");
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(
        files_of(dir.path(), &id),
        Vec::<String>::new(),
        "nothing is left"
    );
    for (method, path) in [
        ("GET", format!("/jobs/{id}")),
        ("DELETE", format!("/jobs/{id}")),
        ("GET", format!("/jobs/{id}/stream")),
        ("GET", format!("/jobs/{id}/files")),
    ] {
        assert_eq!(s.call(method, &path, "").status, 404, "{method} {path}");
    }
    assert_eq!(s.call("GET", "/jobs", "").json(), json!([]));
    assert_eq!(metric(&s, "jobcell_jobs_deleted_total"), Some(1.0));

    // The streams read on to the end, from the deleted log.
    let got = support::read_response(BufReader::new(raw));
    assert_eq!(got.status, 200);
    assert!(
        got.body == want.as_bytes(),
        "{} bytes of {}",
        got.body.len(),
        want.len()
    );
    let events = support::read_response(BufReader::new(sse)).text();
    assert_eq!(sse_text(&events), want);
    let end = events.rsplit("event: end\n").next().unwrap();
    assert!(end.contains(r#""state":"completed""#), "{end}");
    s.stop();
}

/// The ids `GET /jobs` lists.
fn listed(s: &Server) -> Vec<String> {
    let list = s.call("GET", "/jobs", "").json();
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn retention_deletes_the_oldest_finished_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[("WORKER_RETAIN_JOBS", "2")]);
    let running = s.submit(r#"{"command":"sleep","args":["600"]}"#);
    s.wait_state(&running, "running");
    let mut ids = Vec::new();
    for i in 0..4 {
        let id = s.submit(
            &json!({"command": "echo", "args": [i.to_string()], "collect": ["x"]}).to_string(),
        );
        s.wait_state(&id, "completed");
        ids.push(id);
    }
    // As each job ends, the oldest finished ones beyond two go; a running
    // job is not counted.
    let deadline = Instant::now() + Duration::from_secs(60);
    while listed(&s).len() != 3 {
        assert!(Instant::now() < deadline, "{:?}", listed(&s));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(listed(&s), [running.as_str(), &ids[2], &ids[3]]);
    for gone in &ids[..2] {
        assert_eq!(s.call("GET", &format!("/jobs/{gone}"), "").status, 404);
        assert_eq!(files_of(dir.path(), gone), Vec::<String>::new());
    }
    assert_eq!(
        s.call("GET", &format!("/jobs/{}/stream", ids[3]), "")
            .text(),
        "3\n"
    );
    assert_eq!(metric(&s, "jobcell_jobs_deleted_total"), Some(2.0));
    s.stop();

    // At start, for the jobs of earlier runs: by count, then by age.
    let s = Server::start(dir.path(), &[("WORKER_RETAIN_JOBS", "1")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while listed(&s).len() != 1 {
        assert!(Instant::now() < deadline, "{:?}", listed(&s));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(listed(&s), [running.as_str()], "the stopped job ended last");
    s.stop();
    let s = Server::start(dir.path(), &[("WORKER_RETAIN_AGE", "1ms")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !listed(&s).is_empty() {
        assert!(Instant::now() < deadline, "{:?}", listed(&s));
        std::thread::sleep(Duration::from_millis(20));
    }
    s.stop();
    assert_eq!(files_of(dir.path(), &running), Vec::<String>::new());
}
