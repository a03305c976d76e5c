//! Jobs over HTTP: the README demo, a whole job, client errors and their
//! statuses, stop and paging, the MAX_JOBS queue, the default limits.

use super::*;

#[test]
fn readme_demo() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let id = s.submit(DEMO);
    let stream = s.call("GET", &format!("/jobs/{id}/stream"), "");
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(stream.text(), "Hello, isolated world!\n");
    let rec = s.wait_state(&id, "completed");
    assert_eq!(rec["exit"]["code"], 0);
    assert_eq!(rec["command"], "echo");
    // Answered in the units the request used.
    assert_eq!(rec["limits"]["maxMemory"], 128, "{rec}");
    assert_eq!(rec["limits"]["maxCPU"], 50);
    assert_eq!(rec["limits"]["maxIOBPS"], 1_048_576);
    assert!(rec["limits"].get("memory").is_none(), "{rec}");
    // The default wall time applies: a forgotten sleep cannot hold a slot.
    assert_eq!(rec["limits"]["wall_time_ms"], 600_000.0);
    let usage = s.call("GET", &format!("/jobs/{id}/usage"), "");
    assert_eq!(usage.status, 200);
    let u = usage.json();
    assert_eq!(u["state"], "completed");
    assert!(u["usage"]["cpu_user_us"].is_u64(), "{u}");
    let list = s.call("GET", "/jobs", "").json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    let log = s.stop();
    assert!(
        log.contains(&format!("job state id={id} state=completed")),
        "{log}"
    );
}

#[test]
fn the_whole_job_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    // Environment, working directory, stdin as text, files in, files out.
    let id = s.submit(
        &json!({
            "command": "sh",
            "args": ["-c", "echo \"$GREETING from $(pwd)\"; cat; sort in/data.txt > out.txt; \
                           printf '\\377\\376' > bin; ln -s /etc/passwd leak"],
            "env": {"GREETING": "hello"},
            "stdin": "typed in\n",
            "files": {"in/data.txt": "b\na\n"},
            "collect": ["out.txt", "bin", "leak", "absent"],
            "limits": {"pids": 16, "memory": 268435456, "wall_time_ms": 30000}
        })
        .to_string(),
    );
    let rec = s.wait_state(&id, "completed");
    let out = s.call("GET", &format!("/jobs/{id}/stream"), "").text();
    assert_eq!(out, "hello from /work\ntyped in\n");
    assert_eq!(rec["limits"]["pids"], 16);
    assert_eq!(rec["limits"]["memory"], 268_435_456);
    // Collected once the job has ended (right after it).
    let deadline = Instant::now() + Duration::from_secs(30);
    let rec = loop {
        let rec = s.state(&id);
        if rec.get("collected").is_some() || Instant::now() > deadline {
            break rec;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let c = &rec["collected"];
    assert_eq!(c["out.txt"]["size"], 4, "{rec}");
    assert_eq!(c["bin"]["size"], 2);
    assert!(
        c["leak"]["error"].as_str().unwrap().contains("symlink"),
        "{rec}"
    );
    assert!(c["absent"]["error"].as_str().unwrap().contains("ENOENT"));
    let files = s.call("GET", &format!("/jobs/{id}/files"), "").json();
    assert_eq!(files["out.txt"], "a\nb\n");
    assert_eq!(files["bin"]["base64"], "//4=");
    let raw = s.call("GET", &format!("/jobs/{id}/files/out.txt"), "");
    assert_eq!(raw.body, b"a\nb\n");
    assert_eq!(
        s.call("GET", &format!("/jobs/{id}/files/absent"), "")
            .status,
        404
    );
    // The work directory is gone once collected.
    let work = dir.path().join("work");
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);

    // Binary stdin, a CPU-time limit, an output limit and a wall-time limit.
    let id = s.submit(r#"{"command":"od","args":["-An","-tx1"],"stdin":{"base64":"AP8="}}"#);
    s.wait_state(&id, "completed");
    let out = s.call("GET", &format!("/jobs/{id}/stream"), "").text();
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["00", "ff"]);
    let id = s.submit(r#"{"command":"sleep","args":["60"],"limits":{"wall_time_ms":300}}"#);
    let rec = s.wait_state(&id, "timed_out");
    assert_eq!(rec["limit"], "wall", "{rec}");
    let id = s.submit(r#"{"command":"yes","limits":{"output_bytes":10000}}"#);
    s.wait_state(&id, "output_limit_exceeded");
    let id = s.submit(
        r#"{"command":"sh","args":["-c","while :; do :; done"],"limits":{"cpu_time_ms":200}}"#,
    );
    let rec = s.wait_state(&id, "timed_out");
    assert_eq!(rec["limit"], "cpu", "{rec}");
    s.stop();
}

#[test]
fn every_client_error_has_its_status_and_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let bad = |body: &str, field: &str| {
        let r = s.call("POST", "/jobs", body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let v = r.json();
        assert_eq!(v["field"], field, "{body}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
    };
    bad("{not json", "body");
    bad(r#"["echo"]"#, "body");
    bad(r#"{"args":["x"]}"#, "command");
    bad(r#"{"command":42}"#, "command");
    bad(r#"{"command":"echo","colour":"red"}"#, "colour");
    bad(r#"{"command":"echo","args":[1]}"#, "args[0]");
    bad(r#"{"command":"echo","env":{"A":[]}}"#, "env.A");
    bad(r#"{"command":"echo","env":{"A=B":"c"}}"#, "env");
    bad(r#"{"command":"echo","cwd":"/no/such/dir"}"#, "cwd");
    bad(r#"{"command":"echo","stdin":{"base64":"!!"}}"#, "stdin");
    bad(r#"{"command":"echo","files":{"/etc/x":"y"}}"#, "files");
    bad(r#"{"command":"echo","collect":["../x"]}"#, "collect");
    for (limit, field) in [
        (r#"{"maxCPU":-1}"#, "limits.maxCPU"),
        (r#"{"maxMemory":-128}"#, "limits.maxMemory"),
        (r#"{"maxIOBPS":-1}"#, "limits.maxIOBPS"),
        (r#"{"maxCPU":99999999}"#, "limits.maxCPU"),
        (r#"{"maxMemory":1e20}"#, "limits.maxMemory"),
        (r#"{"maxSwap":1}"#, "limits.maxSwap"),
        (r#"{"pids":-1}"#, "limits.pids"),
        (r#"{"memory":5}"#, "limits.memory"),
        (r#"{"cpus":"9-1"}"#, "limits.cpus"),
        (r#"{"wall_time_ms":"soon"}"#, "limits.wall_time_ms"),
    ] {
        bad(&format!(r#"{{"command":"echo","limits":{limit}}}"#), field);
    }
    bad(r#"{"command":"no-such-program-here"}"#, "command");
    assert_eq!(
        s.call("GET", "/jobs", "").json(),
        Value::Array(vec![]),
        "no job was created"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("work")).unwrap().count(),
        0,
        "no work directory is left by a refused job"
    );

    // A body over the limit that is sent (chunked, no size declared): the
    // server may answer before it has read it all, and close.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let piece = vec![b' '; 1 << 20];
    for _ in 0..9 {
        if write!(c, "{:x}\r\n", piece.len()).is_err()
            || c.write_all(&piece).is_err()
            || c.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = c.write_all(b"0\r\n\r\n");
    let mut answer = String::new();
    let _ = BufReader::new(c).read_line(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 413"),
        "{answer}"
    );

    let unknown = "0190a0b0c0d01234abcd0001";
    for (method, path) in [
        ("GET", format!("/jobs/{unknown}")),
        ("GET", format!("/jobs/{unknown}/stream")),
        ("GET", format!("/jobs/{unknown}/usage")),
        ("GET", format!("/jobs/{unknown}/files")),
        ("POST", format!("/jobs/{unknown}/stop")),
        ("DELETE", format!("/jobs/{unknown}")),
        ("GET", "/jobs/not-an-id".to_string()),
        ("GET", "/jobs/..%2f..%2fetc".to_string()),
        ("GET", "/nowhere".to_string()),
    ] {
        let r = s.call(method, &path, "");
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        assert!(r.json()["error"].is_string());
    }
    let r = s.call("PUT", "/jobs", "");
    assert_eq!(r.status, 405);
    let allow = r.header("Allow").unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert!(r.json()["error"].is_string());
    assert_eq!(
        s.call("GET", &format!("/jobs/{unknown}/stop"), "").status,
        405
    );
    for q in [
        "/jobs?limit=0",
        "/jobs?state=sleeping",
        "/jobs?after=nope",
        "/jobs?x=1",
    ] {
        assert_eq!(s.call("GET", q, "").status, 400, "{q}");
    }

    let id = s.submit(r#"{"command":"true"}"#);
    s.wait_state(&id, "completed");
    let r = s.call("POST", &format!("/jobs/{id}/stop"), "");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("finished"));
    assert_eq!(
        s.call("POST", &format!("/jobs/{id}/stop?wait=forever"), "")
            .status,
        400
    );
    s.stop();
}

#[test]
fn stop_lifecycle_and_paging() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[("WORKER_STOP_GRACE", "1s")]);
    // A job that ignores SIGTERM: stop answers 202 and the state it will reach.
    let id = s.submit(r#"{"command":"sh","args":["-c","trap '' TERM; echo ready; sleep 600"]}"#);
    s.wait_state(&id, "running");
    let usage = s.call("GET", &format!("/jobs/{id}/usage"), "").json();
    assert!(
        usage["usage"]["pids_current"].as_u64().unwrap() >= 1,
        "{usage}"
    );
    let r = s.call("POST", &format!("/jobs/{id}/stop"), "");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["will_be"], "stopped");
    // ?wait= answers once it has ended (SIGKILL after the 1 s grace).
    let r = s.call("POST", &format!("/jobs/{id}/stop?wait=30s"), "");
    assert!(r.status == 200 || r.status == 409, "{}", r.text());
    assert_eq!(s.state(&id)["state"], "stopped");
    let id = s.submit(r#"{"command":"sleep","args":["600"]}"#);
    s.wait_state(&id, "running");
    let r = s.call("POST", &format!("/jobs/{id}/stop?wait=30s"), "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "stopped");
    // A running job cannot be deleted.
    let run = s.submit(r#"{"command":"sleep","args":["600"]}"#);
    s.wait_state(&run, "running");
    let r = s.call("DELETE", &format!("/jobs/{run}"), "");
    assert_eq!(r.status, 409, "{}", r.text());

    // Paging: oldest first, ?limit, a Link to the next page, ?state.
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = s.submit(r#"{"command":"true"}"#);
        s.wait_state(&id, "completed");
        ids.push(id);
    }
    let page = s.call("GET", "/jobs?state=completed&limit=2", "");
    let got: Vec<String> = page
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, ids[..2]);
    let link = page.header("Link").unwrap().to_string();
    let next = link.trim_start_matches('<').split('>').next().unwrap();
    let page = s.call("GET", next, "").json();
    assert_eq!(page[0]["id"], ids[2].as_str());
    let stopped = s.call("GET", "/jobs?state=stopped,running", "").json();
    assert_eq!(stopped.as_array().unwrap().len(), 3);
    let last = s.call("GET", &format!("/jobs?after={}", ids[4]), "");
    assert_eq!(last.json(), json!([]));
    assert!(last.header("Link").is_none());
    // Ctrl-C stops what still runs, and says so.
    let log = s.stop_with(libc::SIGINT);
    assert!(log.contains("signal=SIGINT running="), "{log}");
    assert!(log.contains(&format!("id={run} state=stopped")), "{log}");
}

/// MAX_JOBS jobs run at once; the others wait in a queue, in the order
/// they came, and start as slots free up. A queued job can be stopped
/// before it ever runs.
#[test]
fn max_jobs_run_at_once_and_the_rest_queue_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[("MAX_JOBS", "2")]);
    let long = r#"{"command":"sleep","args":["600"]}"#;
    let ids: Vec<String> = (0..5).map(|_| s.submit(long)).collect();
    s.wait_state(&ids[0], "running");
    s.wait_state(&ids[1], "running");
    // Give the queue a moment to (wrongly) start more.
    std::thread::sleep(Duration::from_millis(300));
    for id in &ids[2..] {
        assert_eq!(s.state(id)["state"], "queued", "{id}");
    }
    // A queued job stopped never runs; the queue goes on without it.
    assert_eq!(
        s.call("POST", &format!("/jobs/{}/stop", ids[2]), "").status,
        200,
        "a queued job ends at once"
    );
    let never = s.wait_state(&ids[2], "stopped");
    assert!(never.get("exit").is_none_or(Value::is_null), "{never}");
    // One slot frees: the first still waiting (not the last) takes it.
    let status = s.call("POST", &format!("/jobs/{}/stop", ids[0]), "").status;
    assert!(status == 202 || status == 200, "{status}");
    s.wait_state(&ids[0], "stopped");
    s.wait_state(&ids[3], "running");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.state(&ids[4])["state"], "queued");
    let status = s.call("POST", &format!("/jobs/{}/stop", ids[1]), "").status;
    assert!(status == 202 || status == 200, "{status}");
    s.wait_state(&ids[4], "running");
    let log = s.stop();
    assert!(log.contains("max_jobs=2"), "{log}");
}

/// DEFAULT_MEMORY_LIMIT, DEFAULT_CPU_LIMIT and DEFAULT_IO_LIMIT apply to a
/// job that names no limits: its record says so, and the kernel holds the
/// job to them (a memory bomb is out of memory; a busy loop gets a quarter
/// of a core). A request's own limits replace them, 0 meaning none.
#[test]
fn default_limits_apply_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[
            ("DEFAULT_MEMORY_LIMIT", "32M"),
            ("DEFAULT_CPU_LIMIT", "25"),
            ("DEFAULT_IO_LIMIT", "1M"),
        ],
    );
    let bomb = s.submit(
        &serde_json::json!({
            "command": "sh",
            "args": ["-c", "x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while :; do x=$x$x; done"],
        })
        .to_string(),
    );
    let rec = s.wait_state(&bomb, "out_of_memory");
    assert_eq!(rec["limits"]["memory"], 32 << 20, "{rec}");
    assert_eq!(rec["limits"]["cpu_percent"], 25, "{rec}");
    assert_eq!(rec["limits"]["io_read_bps"], 1 << 20, "{rec}");
    assert_eq!(rec["limits"]["io_write_bps"], 1 << 20, "{rec}");
    assert_eq!(rec["oom_killed"], true, "{rec}");

    let busy = s.submit(r#"{"command":"sh","args":["-c","yes >/dev/null & sleep 2; kill $!"]}"#);
    let rec = s.wait_state(&busy, "completed");
    let cpu_us = rec["usage"]["cpu_user_us"].as_u64().unwrap()
        + rec["usage"]["cpu_system_us"].as_u64().unwrap();
    let wall_ms = rec["wall_time_ms"].as_f64().unwrap();
    let share = cpu_us as f64 / 1000.0 / wall_ms;
    eprintln!("DEFAULT_CPU_LIMIT=25: {cpu_us} µs of CPU in {wall_ms} ms = {share:.2}");
    assert!(
        (0.1..=0.4).contains(&share),
        "a quarter of a core: {share:.2} {rec}"
    );

    let own = s.submit(r#"{"command":"true","limits":{"maxMemory":64,"maxCPU":0,"maxIOBPS":0}}"#);
    let rec = s.wait_state(&own, "completed");
    // The request's own limits, 0 for none, answered in its units; what no
    // one set is the untrusted default (pids, output), not the environment's.
    let l = rec["limits"].as_object().unwrap();
    assert_eq!(l["maxMemory"], 64, "{rec}");
    assert_eq!(l["maxCPU"], 0, "{rec}");
    assert_eq!(l["maxIOBPS"], 0, "{rec}");
    for k in ["memory", "cpu_percent", "io_read_bps", "io_write_bps"] {
        assert!(!l.contains_key(k), "{k}: {rec}");
    }
    let conservative = jobcell::Limits::conservative();
    assert_eq!(l["pids"], conservative.pids.unwrap(), "{rec}");
    s.stop();
}
