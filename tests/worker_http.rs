//! The HTTP job service (`examples/worker/`), started for real on a free
//! loopback port with its own state directory and driven over real TCP.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{request, Http, Proc};

const START: Duration = Duration::from_secs(120);

pub struct Server {
    proc: Proc,
    addr: SocketAddr,
    token: Option<String>,
}

impl Server {
    fn start(state_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(support::example("worker"));
        for (k, _) in std::env::vars() {
            if k.starts_with("DEFAULT_") || k.starts_with("WORKER_") || k == "MAX_JOBS" {
                cmd.env_remove(k);
            }
        }
        cmd.env("WORKER_ADDR", "127.0.0.1:0")
            .env("WORKER_STATE_DIR", state_dir)
            .env("WORKER_LOG_LEVEL", "debug");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut proc = Proc::spawn(cmd);
        let line = proc.wait_for_line(" listening ", START);
        let addr = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("addr="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        let token = env
            .iter()
            .find(|(k, _)| *k == "WORKER_TOKEN")
            .map(|(_, v)| v.to_string());
        Server { proc, addr, token }
    }

    fn call(&self, method: &str, path: &str, body: &str) -> Http {
        self.call_with(method, path, &[], body)
    }

    fn call_with(&self, method: &str, path: &str, extra: &[(&str, &str)], body: &str) -> Http {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        headers.extend_from_slice(extra);
        request(self.addr, method, path, &headers, body.as_bytes())
    }

    fn submit(&self, body: &str) -> String {
        let r = self.call("POST", "/jobs", body);
        assert_eq!(r.status, 201, "{body}: {}", r.text());
        let id = r.json()["id"].as_str().expect("an id").to_string();
        assert_eq!(r.header("Location"), Some(format!("/jobs/{id}").as_str()));
        id
    }

    fn state(&self, id: &str) -> Value {
        let r = self.call("GET", &format!("/jobs/{id}"), "");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// Polls the job until its state is `want` (generous: the machine is shared).
    fn wait_state(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let rec = self.state(id);
            if rec["state"] == want {
                return rec;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} never became {want}: {rec}\n{}",
                self.proc.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// SIGTERM, and a clean exit.
    fn stop(self) -> String {
        self.stop_with(libc::SIGTERM)
    }

    /// `sig` (SIGINT is Ctrl-C), and a clean exit.
    fn stop_with(mut self, sig: i32) -> String {
        self.proc.signal(sig);
        let status = self.proc.wait_exit(Duration::from_secs(120));
        assert!(
            status.success(),
            "worker exited with {status}:\n{}",
            self.proc.log()
        );
        std::thread::sleep(Duration::from_millis(100)); // the stderr reader catches up
        self.proc.log()
    }
}

const DEMO: &str = r#"{"command":"echo","args":["Hello, isolated world!"],"limits":{"maxCPU":50,"maxMemory":128,"maxIOBPS":1048576}}"#;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

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

/// The value of an unlabelled metric (or one with its labels written out).
fn metric(s: &Server, name: &str) -> Option<f64> {
    let text = s.call("GET", "/metrics", "").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

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

/// The output carried by an SSE body (stdout and stderr events, text or
/// base64), checking the ids are the byte offsets after each event.
fn sse_text(body: &str) -> String {
    use base64::Engine as _;
    let mut out = Vec::new();
    for event in body.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let mut name = "message";
        let mut id = None;
        let mut data: Vec<&str> = Vec::new();
        for line in event.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                name = v;
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.parse::<usize>().unwrap());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push(v);
            } else if line == "data:" {
                data.push("");
            }
        }
        let data = data.join("\n");
        match name {
            "stdout" | "stderr" => out.extend_from_slice(data.as_bytes()),
            "stdout.base64" | "stderr.base64" => out.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap(),
            ),
            "end" => {
                let rec: Value = serde_json::from_str(&data).unwrap();
                assert!(rec["state"].is_string());
            }
            _ => continue,
        }
        assert_eq!(id, Some(out.len()), "{event}");
    }
    String::from_utf8(out).unwrap()
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

/// Every `console` example of docs/service.md and of the README's service
/// section, run with curl against a real server, in order: the ids in the
/// text stand for the jobs the examples create.
#[test]
fn docs_examples_run_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for doc in ["docs/service.md", "README.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        let examples = console_examples(&text);
        assert!(examples.len() >= 3, "{doc} has {} examples", examples.len());
        let dir = tempfile::tempdir().unwrap();
        let s = Server::start(dir.path(), &[]);
        let mut ids: Vec<(String, String)> = Vec::new();
        for (cmd, expected) in &examples {
            let post = cmd.contains("-X POST") && !cmd.contains("/stop");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let mut run = cmd.replace("localhost:8080", &s.addr.to_string());
                let mut want = expected.clone();
                for (doc_id, real) in &ids {
                    run = run.replace(doc_id, real);
                    want = want.replace(doc_id, real);
                }
                let out = Command::new("sh")
                    .args(["-c", &run])
                    .output()
                    .expect("run sh (and curl)");
                let got = String::from_utf8_lossy(&out.stdout).into_owned();
                let result = if out.status.success() {
                    same_output(&want, &got, post, &mut ids)
                } else {
                    Err(format!(
                        "exit {}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    ))
                };
                match result {
                    Ok(()) => break,
                    Err(_) if !post && Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    Err(why) => panic!("{doc}: $ {cmd}\n{why}\nwanted:\n{want}\ngot:\n{got}"),
                }
            }
        }
        s.stop();
    }
}

/// The `$ command` lines of every ```console block, with the lines that
/// follow each as its expected output.
fn console_examples(doc: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            inside = line.trim() == "```console";
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            out.push((cmd.to_string(), String::new()));
        } else if let Some((_, want)) = out.last_mut() {
            want.push_str(line);
            want.push('\n');
        }
    }
    out
}

/// Compares a command's output with the text shown: line by line, JSON as
/// JSON (ids learned, times and usage figures taken as they come; `"…"`
/// stands for any value). `subset`: the answer may hold more than shown (a
/// job that has already ended by the time `POST /jobs` answers).
fn same_output(
    want: &str,
    got: &str,
    subset: bool,
    ids: &mut Vec<(String, String)>,
) -> Result<(), String> {
    let want: Vec<&str> = want.trim_end().lines().collect();
    let got: Vec<&str> = got.trim_end().lines().collect();
    if want.len() != got.len() {
        return Err(format!("{} lines, not {}", got.len(), want.len()));
    }
    for (w, g) in want.iter().zip(&got) {
        let (wp, w) = w.split_at(if w.starts_with("data: {") { 6 } else { 0 });
        let (gp, g) = g.split_at(if g.starts_with("data: {") { 6 } else { 0 });
        if wp != gp {
            return Err(format!("{gp:?} is not {wp:?}"));
        }
        if w.starts_with('{') || w.starts_with('[') {
            let wj: Value = serde_json::from_str(w).map_err(|e| format!("doc JSON {w}: {e}"))?;
            let gj: Value = serde_json::from_str(g).map_err(|e| format!("not JSON {g}: {e}"))?;
            json_match(&wj, &gj, subset, false, ids)?;
        } else if w != g {
            return Err(format!("{g:?} is not {w:?}"));
        }
    }
    Ok(())
}

fn json_match(
    want: &Value,
    got: &Value,
    subset: bool,
    in_limits: bool,
    ids: &mut Vec<(String, String)>,
) -> Result<(), String> {
    const VARYING: &[&str] = &[
        "created_ms",
        "started_ms",
        "ended_ms",
        "wall_time_ms",
        "usage",
        "rusage",
    ];
    match (want, got) {
        (Value::String(w), _) if w == "…" => Ok(()),
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let gv = g.get(k).ok_or_else(|| format!("no {k:?} in {got}"))?;
                if (VARYING.contains(&k.as_str()) && !in_limits) || (subset && k == "state") {
                    continue;
                }
                if k == "id" {
                    if let (Some(wid), Some(gid)) = (wv.as_str(), gv.as_str()) {
                        if !ids.iter().any(|(d, _)| d == wid) && wid != gid {
                            ids.push((wid.to_string(), gid.to_string()));
                        }
                        let mapped = ids.iter().find(|(d, _)| d == wid).map_or(wid, |(_, r)| r);
                        if mapped != gid {
                            return Err(format!("id {gid}, not {mapped}"));
                        }
                        continue;
                    }
                }
                json_match(wv, gv, subset, in_limits || k == "limits", ids)?;
            }
            if !subset {
                if let Some(k) = g.keys().find(|k| !w.contains_key(*k)) {
                    return Err(format!("{k:?} is not shown: {got}"));
                }
            }
            Ok(())
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => w
            .iter()
            .zip(g)
            .try_for_each(|(w, g)| json_match(w, g, subset, in_limits, ids)),
        (Value::Number(w), Value::Number(g)) if w.as_f64() == g.as_f64() => Ok(()),
        (w, g) if w == g => Ok(()),
        (w, g) => Err(format!("{g} is not {w}")),
    }
}
