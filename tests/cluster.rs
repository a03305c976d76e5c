//! The cluster on a real `redis-server` (feature `cluster`): nodes in other
//! processes sharing one queue, a node killed mid-job, Redis killed under
//! load, logs followed from another process, stops. Each test starts its
//! own Redis on a free loopback port and stops it, also when it fails.
//! Run as root (nodes run real cells).

#[path = "support/redis.rs"]
mod redis_server;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use jobcell::cluster::{Client, ClientConfig, Node, NodeConfig, Retry};
use jobcell::{JobId, JobSpec, JobState};
use redis_server::RedisServer;

const PREFIX: &str = "t";

fn node_config(url: &str, slots: usize, lease: Duration) -> NodeConfig {
    let mut c = NodeConfig::new(url);
    c.prefix = PREFIX.into();
    c.slots = slots;
    c.lease = lease;
    c.poll = Duration::from_millis(50);
    c.max_backoff = Duration::from_millis(100);
    c
}

fn client(url: &str) -> Client {
    let mut c = ClientConfig::new(url);
    c.prefix = PREFIX.into();
    c.max_backoff = Duration::from_millis(100);
    c.block = Duration::from_millis(200);
    Client::with_config(c).unwrap()
}

fn spec(cmd: &str, args: &[&str]) -> JobSpec {
    let mut s = JobSpec::new(cmd);
    s.args = args.iter().map(|a| a.to_string()).collect();
    s
}

fn log_of(client: &Client, id: &JobId) -> Vec<u8> {
    let mut out = Vec::new();
    for e in client.logs(id).unwrap() {
        out.extend(e.unwrap().data);
    }
    out
}

/// Final events per job, read from the events stream.
fn final_events(client: &Client) -> BTreeMap<String, Vec<(JobState, u32)>> {
    let mut out: BTreeMap<String, Vec<(JobState, u32)>> = BTreeMap::new();
    let mut ev = client.events_after("0-0").unwrap();
    while let Some(e) = ev.next_timeout(Duration::from_millis(300)).unwrap() {
        if e.state.is_final() {
            out.entry(e.id.to_string())
                .or_default()
                .push((e.state, e.attempt));
        }
    }
    out
}

/// A node in a child process: this test binary run again with
/// `node_process` (below). It stops when its stdin closes, so it dies with
/// the test; `Drop` kills (SIGKILL) and reaps it too.
struct NodeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    name: String,
}

impl NodeProcess {
    fn start(url: &str, slots: usize, lease: Duration) -> NodeProcess {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args([
                "node_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("JOBCELL_TEST_NODE_URL", url)
            .env("JOBCELL_TEST_NODE_SLOTS", slots.to_string())
            .env("JOBCELL_TEST_NODE_LEASE_MS", lease.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // After libtest's "test node_process ... ".
                if let Some((_, name)) = line.split_once("node-name ") {
                    let _ = tx.send(name.trim().to_string());
                }
            }
        });
        let name = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the node process says its name");
        NodeProcess {
            stdin: child.stdin.take(),
            child,
            name,
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks it to stop (its stdin closes) and waits.
    fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("node process {} did not stop", self.name);
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Not a test: the body of a node process (see `NodeProcess`).
#[test]
#[ignore]
fn node_process() {
    let Ok(url) = std::env::var("JOBCELL_TEST_NODE_URL") else {
        return;
    };
    let slots = std::env::var("JOBCELL_TEST_NODE_SLOTS")
        .unwrap()
        .parse()
        .unwrap();
    let lease = Duration::from_millis(
        std::env::var("JOBCELL_TEST_NODE_LEASE_MS")
            .unwrap()
            .parse()
            .unwrap(),
    );
    let node = Node::start(node_config(&url, slots, lease)).unwrap();
    println!("\nnode-name {}", node.name());
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    while std::io::stdin()
        .read_line(&mut line)
        .map(|n| n > 0)
        .unwrap_or(false)
    {}
    node.shutdown(Duration::from_secs(20));
}

#[test]
fn three_node_processes_share_1000_jobs_each_completing_once() {
    let redis = RedisServer::start();
    let url = redis.url();
    let nodes: Vec<NodeProcess> = (0..3)
        .map(|_| NodeProcess::start(&url, 2, Duration::from_secs(5)))
        .collect();
    let c = client(&url);
    let ids: Vec<(JobId, String)> = (0..1000)
        .map(|i| {
            let word = format!("job{i}");
            (c.submit(&spec("echo", &[&word])).unwrap(), word)
        })
        .collect();
    let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
    for (id, word) in &ids {
        let job = c.wait(id, Duration::from_secs(120)).unwrap();
        assert_eq!(job.state, JobState::Completed, "{id}: {job:?}");
        assert_eq!(job.attempt, 1, "{id} ran more than once");
        *by_node.entry(job.node.clone().unwrap()).or_default() += 1;
        assert_eq!(job.record.as_ref().unwrap().id, *id);
        assert_eq!(log_of(&c, id), format!("{word}\n").into_bytes());
    }
    let names: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
    assert_eq!(
        by_node.keys().cloned().collect::<BTreeSet<_>>(),
        names,
        "every node took jobs: {by_node:?}"
    );
    let finals = final_events(&c);
    assert_eq!(finals.len(), 1000);
    assert!(
        finals.values().all(|v| v.len() == 1),
        "a job finished twice"
    );
    let s = c.stats().unwrap();
    assert_eq!(
        (s.submitted, s.finished, s.reruns, s.claims),
        (1000, 1000, 0, 0)
    );
    assert_eq!((s.waiting, s.pending), (0, 0));
    assert_eq!(s.nodes.len(), 3);
    for n in nodes {
        n.stop();
    }
}

#[test]
fn a_killed_nodes_jobs_are_taken_over_within_the_lease() {
    let redis = RedisServer::start();
    let url = redis.url();
    let lease = Duration::from_secs(1);
    let mut a = NodeProcess::start(&url, 2, lease);
    let c = client(&url);
    let script = "echo start; sleep 1.5; echo done";
    let again = c.submit(&spec("sh", &["-c", script])).unwrap();
    let once = c
        .submit_with(&spec("sh", &["-c", script]), Retry::never())
        .unwrap();
    // Both running on A (it says "start").
    for id in [&again, &once] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let j = c.get(id).unwrap();
            if j.state == JobState::Running && j.node.as_deref() == Some(a.name.as_str()) {
                break;
            }
            assert!(Instant::now() < deadline, "{id} never ran on A: {j:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // B has been connected for a lease when A dies.
    let b = NodeProcess::start(&url, 2, lease);
    std::thread::sleep(lease + Duration::from_millis(200));
    let killed = Instant::now();
    a.kill9();
    let rerun = c.wait(&again, Duration::from_secs(20)).unwrap();
    assert_eq!(rerun.state, JobState::Completed, "{rerun:?}");
    assert_eq!(rerun.attempt, 2);
    assert_eq!(rerun.node.as_deref(), Some(b.name.as_str()));
    let lost = c.wait(&once, Duration::from_secs(20)).unwrap();
    assert_eq!(
        lost.state,
        JobState::Failed {
            reason: "node lost".into()
        },
        "{lost:?}"
    );
    assert_eq!(lost.attempt, 1);
    // Claimed within the lease (plus one claim interval and a margin): the
    // second attempt's start event came that soon after the kill.
    let claimed_in = {
        let mut ev = c.events_after("0-0").unwrap();
        let mut t = None;
        while let Some(e) = ev.next_timeout(Duration::from_millis(300)).unwrap() {
            if e.id == again && e.attempt == 2 && e.state == JobState::Initializing {
                let ms: u64 = e.entry.split('-').next().unwrap().parse().unwrap();
                t = Some(ms);
            }
        }
        let start_ms = t.expect("an event of attempt 2");
        let killed_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            - killed.elapsed().as_millis() as u64;
        Duration::from_millis(start_ms.saturating_sub(killed_ms))
    };
    assert!(
        claimed_in <= lease + lease / 3 + Duration::from_millis(700),
        "claimed after {claimed_in:?}"
    );
    // The log holds both attempts; the second ran to its end.
    let entries: Vec<_> = c.logs(&again).unwrap().map(|e| e.unwrap()).collect();
    let second: Vec<u8> = entries
        .iter()
        .filter(|e| e.attempt == 2)
        .flat_map(|e| e.data.clone())
        .collect();
    assert_eq!(second, b"start\ndone\n");
    assert!(entries
        .iter()
        .filter(|e| e.attempt == 1)
        .all(|e| e.data == b"start\n"));
    let s = c.stats().unwrap();
    assert_eq!((s.claims, s.reruns, s.lost), (2, 1, 1));
    b.stop();
}

#[test]
fn redis_killed_under_load_loses_and_duplicates_nothing() {
    let mut redis = RedisServer::durable();
    let url = redis.url();
    let lease = Duration::from_secs(1);
    let nodes: Vec<Node> = (0..2)
        .map(|_| Node::start(node_config(&url, 2, lease)).unwrap())
        .collect();
    let c = client(&url);
    let submitter = {
        let url = url.clone();
        std::thread::spawn(move || {
            let c = client(&url);
            (0..120)
                .map(|i| {
                    std::thread::sleep(Duration::from_millis(15));
                    let word = format!("w{i}");
                    let id = c
                        .submit(&spec("sh", &["-c", &format!("sleep 0.1; echo {word}")]))
                        .unwrap();
                    (id, word)
                })
                .collect::<Vec<_>>()
        })
    };
    std::thread::sleep(Duration::from_millis(600));
    redis.kill();
    // Longer than the lease: every heartbeat has expired when it is back.
    std::thread::sleep(Duration::from_secs(3));
    redis.restart();
    let ids = submitter.join().unwrap();
    for (id, word) in &ids {
        let job = c.wait(id, Duration::from_secs(60)).unwrap();
        assert_eq!(job.state, JobState::Completed, "{id}: {job:?}");
        assert_eq!(job.attempt, 1, "{id} was run again: {job:?}");
        assert_eq!(log_of(&c, id), format!("{word}\n").into_bytes());
    }
    let finals = final_events(&c);
    assert_eq!(finals.len(), ids.len());
    assert!(finals.values().all(|v| v.len() == 1));
    let s = c.stats().unwrap();
    assert_eq!((s.submitted, s.finished, s.reruns), (120, 120, 0));
    assert!(
        nodes.iter().all(|n| n.stats().reconnects > 0),
        "the nodes saw the outage"
    );
    for n in &nodes {
        n.shutdown(Duration::from_secs(10));
    }
}

#[test]
fn a_client_here_streams_the_log_of_a_job_on_another_node_byte_identical() {
    let redis = RedisServer::start();
    let url = redis.url();
    let node = NodeProcess::start(&url, 1, Duration::from_secs(5));
    let c = client(&url);
    // Bursts of stdout with pauses, and bytes that are not text.
    let script = "i=0; while [ $i -lt 40 ]; do j=0; while [ $j -lt 100 ]; do \
                  printf 'line %d.%d \\001\\377\\n' $i $j; j=$((j+1)); done; sleep 0.02; i=$((i+1)); done";
    let id = c.submit(&spec("sh", &["-c", script])).unwrap();
    let mut expected = Vec::new();
    for i in 0..40 {
        for j in 0..100 {
            expected.extend(format!("line {i}.{j} ").into_bytes());
            expected.extend([1u8, 0xff, b'\n']);
        }
    }
    // Followed while it runs, from the start and from an offset.
    let got = log_of(&c, &id);
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "the log differs");
    let tail: Vec<u8> = c
        .logs(&id)
        .unwrap()
        .offset(1000)
        .flat_map(|e| e.unwrap().data)
        .collect();
    assert!(tail == expected[1000..]);
    let job = c.get(&id).unwrap();
    assert_eq!(job.node.as_deref(), Some(node.name.as_str()));
    assert_eq!(job.state, JobState::Completed);
    node.stop();
}

#[test]
fn stop_reaches_the_node_running_the_job_and_queued_jobs_never_run() {
    let redis = RedisServer::start();
    let url = redis.url();
    let node = Node::start(node_config(&url, 1, Duration::from_secs(5))).unwrap();
    let c = client(&url);
    let long = c.submit(&spec("sleep", &["60"])).unwrap();
    let queued = c.submit(&spec("echo", &["never"])).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.get(&long).unwrap().state != JobState::Running {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    c.stop(&queued).unwrap();
    let asked = Instant::now();
    c.stop(&long).unwrap();
    let j = c.wait(&long, Duration::from_secs(20)).unwrap();
    assert_eq!(j.state, JobState::Stopped);
    assert!(asked.elapsed() < Duration::from_secs(10));
    let q = c.wait(&queued, Duration::from_secs(20)).unwrap();
    assert_eq!(q.state, JobState::Stopped);
    assert_eq!(q.attempt, 0, "a stopped queued job never runs");
    assert!(log_of(&c, &queued).is_empty());
    assert!(matches!(
        c.stop(&long),
        Err(jobcell::Error::AlreadyFinished { .. })
    ));
    let unknown: JobId = "0190a0b0c0d01234abcd0001".parse().unwrap();
    assert!(matches!(
        c.get(&unknown),
        Err(jobcell::Error::NoSuchJob { .. })
    ));
    // Files in and out travel with the spec and the record.
    let mut s = spec("sh", &["-c", "tr a-z A-Z < in.txt > out.txt"]);
    s.files
        .insert("in.txt".into(), jobcell::Content::new("hello"));
    s.collect = vec!["out.txt".into()];
    let id = c.submit(&s).unwrap();
    let j = c.wait(&id, Duration::from_secs(20)).unwrap();
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert_eq!(j.files["out.txt"].as_ref().unwrap().as_bytes(), b"HELLO");
    c.remove(&id).unwrap();
    assert!(matches!(c.get(&id), Err(jobcell::Error::NoSuchJob { .. })));
    node.shutdown(Duration::from_secs(5));
}

#[test]
fn an_unreachable_redis_is_a_typed_error_after_the_timeout() {
    let redis = RedisServer::start();
    let url = redis.url();
    drop(redis);
    let mut cfg = ClientConfig::new(&url);
    cfg.timeout = Duration::from_millis(300);
    let c = Client::with_config(cfg).unwrap();
    let t = Instant::now();
    let e = c.submit(&JobSpec::new("true")).unwrap_err();
    assert!(
        matches!(e, jobcell::Error::RedisUnavailable { op: "submit", .. }),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(matches!(
        Client::connect("nonsense://x"),
        Err(jobcell::Error::InvalidSetting { .. })
    ));
}

/// An instance of the HTTP service in cluster mode.
fn service(url: &str, node: bool, dir: &std::path::Path) -> (support::Proc, std::net::SocketAddr) {
    let mut cmd = Command::new(support::example("worker"));
    for (k, _) in std::env::vars() {
        if k.starts_with("DEFAULT_") || k.starts_with("WORKER_") || k == "MAX_JOBS" {
            cmd.env_remove(k);
        }
    }
    cmd.env("WORKER_ADDR", "127.0.0.1:0")
        .env("WORKER_STATE_DIR", dir)
        .env("WORKER_REDIS_URL", url)
        .env("WORKER_REDIS_PREFIX", PREFIX)
        .env("WORKER_CLUSTER_NODE", if node { "1" } else { "0" })
        .env("WORKER_CLUSTER_LEASE", "2s")
        .env("MAX_JOBS", "2");
    let mut proc = support::Proc::spawn(cmd);
    let line = proc.wait_for_line(" listening ", Duration::from_secs(60));
    let addr = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("addr="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (proc, addr)
}

#[test]
fn the_service_in_cluster_mode_answers_for_jobs_run_by_another_instance() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_node, node_addr) = service(&url, true, da.path());
    let (_front, front) = service(&url, false, db.path());
    let json = [("Content-Type", "application/json")];
    let body =
        br#"{"command":"sh","args":["-c","for i in 1 2 3; do echo line $i; sleep 0.1; done"]}"#;
    let r = support::request(front, "POST", "/jobs?max_attempts=2", &json, body);
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["max_attempts"], 2);
    // Streamed by the front-end, which runs nothing, as it runs on the node.
    let raw = support::request(front, "GET", &format!("/jobs/{id}/stream"), &[], b"");
    assert_eq!(raw.status, 200);
    assert_eq!(raw.text(), "line 1\nline 2\nline 3\n");
    let sse = support::request(
        node_addr,
        "GET",
        &format!("/jobs/{id}/stream?offset=7"),
        &[("Accept", "text/event-stream")],
        b"",
    );
    let text = sse.text();
    // From byte 7 on: lines 2 and 3 (in one event or two, as the node's
    // batching met them), the last event's id the offset after them.
    assert!(text.contains("event: stdout\n"), "{text}");
    assert!(
        !text.contains("line 1") && text.contains("data: line 2\n"),
        "{text}"
    );
    assert!(text.contains("id: 21\n"), "{text}");
    assert!(text.contains("event: end\n"), "{text}");
    let j = support::request(front, "GET", &format!("/jobs/{id}"), &[], b"").json();
    assert_eq!(j["state"], "completed", "{j}");
    assert_eq!(j["attempt"], 1);
    assert!(j["node"].as_str().is_some());
    let listed = support::request(node_addr, "GET", "/jobs", &[], b"").json();
    assert_eq!(listed["jobs"][0]["id"], id.as_str());
    let m = support::request(front, "GET", "/metrics", &[], b"").text();
    assert!(m.contains("jobcell_cluster_finished_total 1"), "{m}");
    assert!(m.contains("jobcell_cluster_nodes 1"), "{m}");
    assert!(m.trim_end().ends_with("# EOF"));
    let m = support::request(node_addr, "GET", "/metrics", &[], b"").text();
    assert!(m.contains("jobcell_node_started_total 1"), "{m}");
    let r = support::request(front, "DELETE", &format!("/jobs/{id}"), &[], b"");
    assert_eq!(r.status, 204);
    let r = support::request(node_addr, "GET", &format!("/jobs/{id}"), &[], b"");
    assert_eq!(r.status, 404);
}

#[test]
fn a_job_abandoned_at_shutdown_is_not_recorded_and_runs_again_elsewhere() {
    let redis = RedisServer::start();
    let url = redis.url();
    let lease = Duration::from_secs(1);
    let a = Node::start(node_config(&url, 1, lease)).unwrap();
    let c = client(&url);
    let id = c.submit(&spec("sh", &["-c", "echo go; sleep 1"])).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.get(&id).unwrap().state != JobState::Running {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let b = Node::start(node_config(&url, 1, lease)).unwrap();
    a.shutdown(Duration::ZERO);
    let j = c.get(&id).unwrap();
    assert!(
        j.record.is_none(),
        "an abandoned attempt is not recorded: {j:?}"
    );
    let j = c.wait(&id, Duration::from_secs(20)).unwrap();
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert_eq!((j.attempt, j.node.as_deref()), (2, Some(b.name())));
    assert_eq!(a.stats().finished, 0);
    assert_eq!(b.stats().claims, 1);
    b.shutdown(Duration::from_secs(5));
}

#[test]
fn an_attempt_taken_over_elsewhere_is_killed_and_writes_nothing() {
    let redis = RedisServer::start();
    let url = redis.url();
    let lease = Duration::from_millis(600);
    let a = Node::start(node_config(&url, 1, lease)).unwrap();
    let c = client(&url);
    let id = c
        .submit(&spec("sh", &["-c", "echo one; sleep 5; echo two"]))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.get(&id).unwrap().state != JobState::Running {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    // What a node on the other side of a partition would have done: take
    // the entry and start attempt 2.
    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let job = format!("{PREFIX}:job:{id}");
    let entry: String = redis::cmd("HGET")
        .arg(&job)
        .arg("entry")
        .query(&mut con)
        .unwrap();
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(format!("{PREFIX}:queue"))
        .arg("nodes")
        .arg("elsewhere")
        .arg(0)
        .arg(&entry)
        .arg("JUSTID")
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&job)
        .arg("attempt")
        .arg(2)
        .arg("node")
        .arg("elsewhere")
        .query(&mut con)
        .unwrap();
    // Within a lease A learns it, kills its attempt, and records nothing.
    let t = Instant::now();
    while a.stats().running > 0 {
        assert!(t.elapsed() < lease * 3, "the replaced attempt still runs");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(a.stats().fenced, 1);
    let j = c.get(&id).unwrap();
    assert!(j.record.is_none(), "{j:?}");
    assert_eq!((j.attempt, j.node.as_deref()), (2, Some("elsewhere")));
    let key = format!("{PREFIX}:log:{id}");
    let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query(&mut con)
        .unwrap();
    let fields: Vec<&Vec<u8>> = entries.iter().flat_map(|(_, f)| f).collect();
    assert!(
        fields.iter().any(|f| f.as_slice() == b"one\n"),
        "{entries:?}"
    );
    assert!(
        !fields.iter().any(|f| f.windows(3).any(|w| w == b"two")),
        "the old attempt ran on"
    );
    a.shutdown(Duration::from_secs(5));
}

#[test]
fn a_follower_is_told_when_the_start_of_a_log_was_trimmed() {
    // Stream nodes of 2 entries, so that `MAXLEN ~` trims at this scale.
    let redis = RedisServer::with_args(&["--stream-node-max-entries", "2"]);
    let url = redis.url();
    let mut config = node_config(&url, 1, Duration::from_secs(5));
    config.log_max_entries = 2;
    let node = Node::start(config).unwrap();
    let c = client(&url);
    let script = "for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i; sleep 0.06; done";
    let id = c.submit(&spec("sh", &["-c", script])).unwrap();
    c.wait(&id, Duration::from_secs(30)).unwrap();
    let mut log = c.logs(&id).unwrap();
    let first = log.next().unwrap();
    let Err(jobcell::Error::LogTrimmed {
        from: 0, available, ..
    }) = first
    else {
        panic!("expected LogTrimmed, got {first:?}");
    };
    assert!(available > 0);
    let rest: Vec<u8> = log.flat_map(|e| e.unwrap().data).collect();
    let all: String = (1..=10).map(|i| format!("line{i}\n")).collect();
    assert_eq!(
        all.as_bytes()[available as usize..],
        rest[..],
        "the rest is intact"
    );
    node.shutdown(Duration::from_secs(5));
}
