//! The HTTP job service (`examples/worker.rs`), started for real on a free
//! loopback port with its own state directory and driven over HTTP.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{request, Http, Proc};

const START: Duration = Duration::from_secs(120);

struct Server {
    proc: Proc,
    addr: SocketAddr,
    token: Option<String>,
}

impl Server {
    fn start(state_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(support::example("worker"));
        for k in [
            "WORKER_TOKEN",
            "MAX_JOBS",
            "DEFAULT_CPU_LIMIT",
            "DEFAULT_MEMORY_LIMIT",
            "DEFAULT_IO_LIMIT",
        ] {
            cmd.env_remove(k);
        }
        cmd.env("WORKER_ADDR", "127.0.0.1:0")
            .env("WORKER_STATE_DIR", state_dir)
            .env("WORKER_LOG_LEVEL", "debug");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut proc = Proc::spawn(cmd);
        let line = proc.wait_for_line("msg=listening", START);
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
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        request(self.addr, method, path, &headers, body.as_bytes())
    }

    fn submit(&self, body: &str) -> String {
        let r = self.call("POST", "/jobs", body);
        assert_eq!(r.status, 201, "{}", r.text());
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
        self.proc.log()
    }
}

const DEMO: &str = r#"{"command":"echo","args":["Hello, isolated world!"],"limits":{"maxCPU":50,"maxMemory":128,"maxIOBPS":1048576}}"#;

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
    assert_eq!(rec["limits"]["memory"], 128 << 20);
    assert_eq!(rec["limits"]["cpu_percent"], 50);
    assert_eq!(rec["limits"]["io_read_bps"], 1_048_576);
    assert_eq!(rec["limits"]["io_write_bps"], 1_048_576);
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
        log.contains(&format!("msg=\"job state\" id={id} state=completed")),
        "{log}"
    );
}

#[test]
fn fifty_streams_of_one_job_receive_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let script = r#"i=0; while [ $i -lt 200 ]; do echo "line $i: the quick brown fox"; i=$((i+1)); sleep 0.01; done"#;
    let id = s.submit(&serde_json::json!({"command": "sh", "args": ["-c", script]}).to_string());
    let addr = s.addr;
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let path = format!("/jobs/{id}/stream");
            std::thread::spawn(move || request(addr, "GET", &path, &[], b""))
        })
        .collect();
    let expected: String = (0..200)
        .map(|i| format!("line {i}: the quick brown fox\n"))
        .collect();
    for c in clients {
        let r = c.join().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), expected);
    }
    s.wait_state(&id, "completed");
    s.stop();
}

#[test]
fn a_client_that_does_not_read_slows_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    // 8 MiB: far more than the socket buffers of a client that never reads.
    let id = s.submit(r#"{"command":"head","args":["-c","8388608","/dev/zero"]}"#);
    let mut stalled = std::net::TcpStream::connect(s.addr).unwrap();
    std::io::Write::write_all(
        &mut stalled,
        format!("GET /jobs/{id}/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    // The job ends and another client gets everything while that one sleeps.
    s.wait_state(&id, "completed");
    let fast = s.call("GET", &format!("/jobs/{id}/stream"), "");
    assert_eq!(fast.body.len(), 8 << 20);
    assert!(fast.body.iter().all(|b| *b == 0));
    // The sleeper still gets every byte, from the first, when it reads at last.
    let slow = support::read_response(std::io::BufReader::new(stalled));
    assert_eq!(slow.body.len(), 8 << 20);
    s.stop();
}

#[test]
fn a_token_guards_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[("WORKER_TOKEN", "s3cret")]);
    for (method, path) in [
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("GET", "/jobs/x/stream"),
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
    bad(
        r#"{"command":"echo","limits":{"maxCPU":-1}}"#,
        "limits.maxCPU",
    );
    bad(
        r#"{"command":"echo","limits":{"maxMemory":-128}}"#,
        "limits.maxMemory",
    );
    bad(
        r#"{"command":"echo","limits":{"maxIOBPS":-1}}"#,
        "limits.maxIOBPS",
    );
    bad(
        r#"{"command":"echo","limits":{"maxCPU":99999999}}"#,
        "limits.maxCPU",
    );
    bad(
        r#"{"command":"echo","limits":{"maxMemory":1e20}}"#,
        "limits.maxMemory",
    );
    bad(
        r#"{"command":"echo","limits":{"maxSwap":1}}"#,
        "limits.maxSwap",
    );
    bad(r#"{"command":"no-such-program-here"}"#, "command");
    assert_eq!(
        s.call("GET", "/jobs", "").json(),
        Value::Array(vec![]),
        "no job was created"
    );

    let big = format!(r#"{{"command":"echo","args":["{}"]}}"#, "x".repeat(2 << 20));
    assert_eq!(s.call("POST", "/jobs", &big).status, 413);

    let unknown = "0190a0b0c0d01234abcd0001";
    for (method, path) in [
        ("GET", format!("/jobs/{unknown}")),
        ("GET", format!("/jobs/{unknown}/stream")),
        ("GET", format!("/jobs/{unknown}/usage")),
        ("POST", format!("/jobs/{unknown}/stop")),
        ("GET", "/jobs/not-an-id".to_string()),
        ("GET", "/nowhere".to_string()),
    ] {
        let r = s.call(method, &path, "");
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        assert!(r.json()["error"].is_string());
    }
    let r = s.call("DELETE", "/jobs", "");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, POST"));
    assert_eq!(
        s.call("GET", &format!("/jobs/{unknown}/stop"), "").status,
        405
    );

    let id = s.submit(r#"{"command":"true"}"#);
    s.wait_state(&id, "completed");
    let r = s.call("POST", &format!("/jobs/{id}/stop"), "");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("finished"));
    s.stop();
}

#[test]
fn stop_a_running_job() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let id = s.submit(r#"{"command":"sleep","args":["600"]}"#);
    s.wait_state(&id, "running");
    let usage = s.call("GET", &format!("/jobs/{id}/usage"), "").json();
    assert_eq!(usage["state"], "running");
    assert!(
        usage["usage"]["pids_current"].as_u64().unwrap() >= 1,
        "{usage}"
    );
    let r = s.call("POST", &format!("/jobs/{id}/stop"), "");
    assert_eq!(r.status, 200, "{}", r.text());
    s.wait_state(&id, "stopped");
    // Ctrl-C stops the jobs still running, and says so.
    let other = s.submit(r#"{"command":"sleep","args":["600"]}"#);
    s.wait_state(&other, "running");
    let log = s.stop_with(libc::SIGINT);
    assert!(log.contains("signal=SIGINT running=1"), "{log}");
    assert!(log.contains(&format!("id={other} state=stopped")), "{log}");
}

#[test]
fn sigterm_stops_jobs_and_a_restart_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let done = s.submit(DEMO);
    s.wait_state(&done, "completed");
    let long = s.submit(r#"{"command":"sh","args":["-c","echo started; exec sleep 600"]}"#);
    s.wait_state(&long, "running");
    let log = s.stop();
    assert!(log.contains("msg=\"shutting down"), "{log}");
    assert!(log.contains("msg=stopped"), "{log}");

    let s = Server::start(dir.path(), &[]);
    assert!(s.proc.log().contains("jobs_restored=2"), "{}", s.proc.log());
    let list = s.call("GET", "/jobs", "").json();
    let states: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [(done.as_str(), "completed"), (long.as_str(), "stopped")]
    );
    let out = s.call("GET", &format!("/jobs/{done}/stream"), "");
    assert_eq!(out.text(), "Hello, isolated world!\n");
    let out = s.call("GET", &format!("/jobs/{long}/stream"), "");
    assert_eq!(out.text(), "started\n");
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
        200
    );
    let never = s.wait_state(&ids[2], "stopped");
    assert!(never.get("exit").is_none_or(Value::is_null), "{never}");
    // One slot frees: the first still waiting (not the last) takes it.
    assert_eq!(
        s.call("POST", &format!("/jobs/{}/stop", ids[0]), "").status,
        200
    );
    s.wait_state(&ids[0], "stopped");
    s.wait_state(&ids[3], "running");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.state(&ids[4])["state"], "queued");
    assert_eq!(
        s.call("POST", &format!("/jobs/{}/stop", ids[1]), "").status,
        200
    );
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
    // The request's own limits, 0 for none; what no one set is the
    // untrusted default (pids, wall time, output), not the environment's.
    assert_eq!(rec["limits"]["memory"], 64 << 20, "{rec}");
    for none in ["cpu_percent", "io_read_bps", "io_write_bps"] {
        assert!(rec["limits"][none].is_null(), "{none}: {rec}");
    }
    let conservative = jobcell::Limits::conservative();
    assert_eq!(rec["limits"]["pids"], conservative.pids.unwrap(), "{rec}");
    s.stop();
}
