//! Cluster benchmarks (feature `cluster`): end-to-end jobs per second through
//! 1, 2 and 3 nodes against a local `Worker` alone, the latency and the
//! Redis commands each job costs, and Redis memory per finished job.
//!
//! Run with `cargo bench --bench cluster --features cluster` (as root: it
//! starts real cells; it starts its own `redis-server`). The nodes run in
//! this process and share its cores with the jobs, the client and Redis:
//! on a small machine more nodes do not mean more throughput, which is why
//! the overhead per job is measured on its own.

#[path = "../tests/support/redis.rs"]
mod redis_server;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use jobcell::cluster::{Client, ClientConfig, Node, NodeConfig};
use jobcell::{Command, JobId, JobSpec, Sandbox, Worker, WorkerConfig};
use redis_server::RedisServer;

const SLOTS: usize = 2;

fn node(url: &str, prefix: &str, slots: usize) -> Node {
    let mut c = NodeConfig::new(url);
    c.prefix = prefix.into();
    c.slots = slots;
    c.poll = Duration::from_millis(100);
    Node::start(c).unwrap()
}

fn client(url: &str, prefix: &str) -> Client {
    let mut c = ClientConfig::new(url);
    c.prefix = prefix.into();
    Client::with_config(c).unwrap()
}

/// Jobs per second of `n` jobs of `true` on a local worker with `SLOTS` slots.
fn local(n: usize) -> f64 {
    let worker = Worker::new(WorkerConfig {
        max_concurrent: Some(SLOTS),
        ..Default::default()
    })
    .unwrap();
    let sandbox = Sandbox::new();
    let t = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| worker.submit(&sandbox, &Command::new("true")).unwrap())
        .collect();
    for h in handles {
        assert!(h.wait().unwrap().state.is_final());
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Waits for the final events of `ids`.
fn wait_all(events: &mut jobcell::cluster::EventStream, ids: &[JobId]) {
    let mut left: HashSet<&JobId> = ids.iter().collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !left.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} jobs never finished",
            left.len()
        );
        if let Some(e) = events.next_timeout(Duration::from_millis(500)).unwrap() {
            if e.state.is_final() {
                left.remove(&e.id);
            }
        }
    }
}

/// Calls per command since the server started (`INFO commandstats`).
fn commandstats(url: &str) -> BTreeMap<String, u64> {
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut con)
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// Jobs per second of `n` jobs of `true` through `nodes` nodes; and the
/// commands Redis ran per job.
fn cluster(url: &str, nodes: usize, n: usize) -> (f64, BTreeMap<String, f64>) {
    let prefix = format!("bench{nodes}");
    let ns: Vec<Node> = (0..nodes).map(|_| node(url, &prefix, SLOTS)).collect();
    let c = client(url, &prefix);
    // Let the nodes make the group and settle.
    std::thread::sleep(Duration::from_millis(300));
    let mut events = c.events().unwrap();
    let before = commandstats(url);
    let t = Instant::now();
    let ids: Vec<JobId> = (0..n)
        .map(|_| c.submit(&JobSpec::new("true")).unwrap())
        .collect();
    wait_all(&mut events, &ids);
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let after = commandstats(url);
    for node in &ns {
        node.shutdown(Duration::from_secs(10));
    }
    let per_job = after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (v - before.get(k).copied().unwrap_or(0)) as f64 / n as f64,
            )
        })
        .filter(|(k, v)| *v > 0.0 && k != "info")
        .collect();
    (rate, per_job)
}

/// Mean latency of one job of `true` at a time: local worker vs cluster.
fn latency(url: &str, n: usize) -> (Duration, Duration) {
    let worker = Worker::new(WorkerConfig {
        max_concurrent: Some(1),
        ..Default::default()
    })
    .unwrap();
    let sandbox = Sandbox::new();
    let t = Instant::now();
    for _ in 0..n {
        worker
            .submit(&sandbox, &Command::new("true"))
            .unwrap()
            .wait()
            .unwrap();
    }
    let local = t.elapsed() / n as u32;
    let node = node(url, "latency", 1);
    let c = client(url, "latency");
    std::thread::sleep(Duration::from_millis(300));
    let mut events = c.events().unwrap();
    let t = Instant::now();
    for _ in 0..n {
        let id = c.submit(&JobSpec::new("true")).unwrap();
        wait_all(&mut events, &[id]);
    }
    let remote = t.elapsed() / n as u32;
    node.shutdown(Duration::from_secs(10));
    (local, remote)
}

/// Redis memory per finished job of `echo` (one short output chunk).
fn memory_per_job(url: &str, n: usize) -> (f64, f64) {
    let node = node(url, "memory", SLOTS);
    let c = client(url, "memory");
    std::thread::sleep(Duration::from_millis(300));
    let mut events = c.events().unwrap();
    let before = c.redis_memory().unwrap();
    let mut spec = JobSpec::new("echo");
    spec.args = vec!["hello, cluster".into()];
    let ids: Vec<JobId> = (0..n).map(|_| c.submit(&spec).unwrap()).collect();
    let queued = c.redis_memory().unwrap();
    wait_all(&mut events, &ids);
    node.shutdown(Duration::from_secs(10));
    let after = c.redis_memory().unwrap();
    (
        (queued as f64 - before as f64) / n as f64,
        (after as f64 - before as f64) / n as f64,
    )
}

fn main() {
    let redis = RedisServer::start();
    let url = redis.url();
    let n = 300;
    println!("end to end, {n} jobs of `true`, {SLOTS} slots per node:");
    let base = local(n);
    println!("  local Worker alone   {base:8.1} jobs/s");
    let mut per_job = BTreeMap::new();
    for nodes in 1..=3 {
        let (rate, cmds) = cluster(&url, nodes, n);
        println!(
            "  {nodes} node(s)            {rate:8.1} jobs/s ({:+.0} %)",
            (rate / base - 1.0) * 100.0
        );
        if nodes == 1 {
            per_job = cmds;
        }
    }
    let (l, r) = latency(&url, 100);
    println!("one job at a time (submit to final event), mean of 100:");
    println!("  local Worker         {:8.0} µs", l.as_secs_f64() * 1e6);
    println!("  1 node               {:8.0} µs", r.as_secs_f64() * 1e6);
    println!(
        "  Redis adds           {:8.0} µs per job",
        (r.as_secs_f64() - l.as_secs_f64()) * 1e6
    );
    let total: f64 = per_job.values().sum();
    let sent: f64 = ["evalsha", "xreadgroup", "xread", "lpop", "script|load"]
        .iter()
        .filter_map(|k| per_job.get(*k))
        .sum();
    println!("Redis commands per job (1 node, {n} jobs of `true`; includes the nodes' polling):");
    println!("  {sent:.1} sent by nodes and client, {total:.1} run by Redis in all (the rest inside scripts)");
    let list: Vec<String> = per_job.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
    println!("  {}", list.join(", "));
    let (queued, finished) = memory_per_job(&url, 1000);
    println!("Redis memory (used_memory), 1000 jobs of `echo` (one output chunk):");
    println!("  {queued:.0} bytes per queued job, {finished:.0} bytes per finished job");
}
