//! The HTTP job service (`examples/worker/`), started for real on a free
//! loopback port with its own state directory and driven over real TCP.
//!
//! A module per concern: `jobs` (jobs and limits), `streams` (raw and SSE
//! output), `clients` (slow and hostile clients), `retention` (DELETE and
//! the retention policy), `operations` (token, metrics, probes, signals,
//! restart), `docs` (the documented examples); the helpers they share are
//! here.

mod clients;
mod docs;
mod jobs;
mod operations;
mod retention;
mod streams;
#[path = "../support/mod.rs"]
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

/// The value of an unlabelled metric (or one with its labels written out).
fn metric(s: &Server, name: &str) -> Option<f64> {
    let text = s.call("GET", "/metrics", "").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
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
