//! A node: a local Worker fed from the cluster's queue.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use redis::Value;

use super::link::{self, Link};
use super::scripts;
use super::{millis, state_json, Keys, GROUP};
use crate::error::{Error, Result};
use crate::job::{JobHandle, JobId, JobState, ReadTimeout};
use crate::sandbox::Sandbox;
use crate::spec::JobSpec;
use crate::worker::{JobRecord, Worker, WorkerConfig};

/// How long a job's thread gathers output into one log entry.
const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// At most this much output goes into one log entry.
const BATCH_BYTES: usize = 64 << 10;

/// How a [`Node`] runs: where Redis is, how many jobs at once, its lease.
///
/// ```
/// use std::time::Duration;
/// let mut config = jobcell::cluster::NodeConfig::new("redis://127.0.0.1:6379");
/// config.slots = 4;
/// config.lease = Duration::from_secs(10);
/// assert_eq!(config.prefix, "jobcell");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The Redis server (`redis://[:password@]host:port[/db]`).
    pub redis_url: String,
    /// The prefix of every key (several clusters can share one Redis).
    pub prefix: String,
    /// The node's name (default: the host name); a random suffix is added,
    /// so a restarted node is a new consumer and the old one's jobs are
    /// recovered.
    pub name: Option<String>,
    /// Jobs run at once; the node takes a job from the queue only with a free slot.
    pub slots: usize,
    /// How long a node may go without a heartbeat before its jobs are taken
    /// over. Heartbeats go every third of it.
    pub lease: Duration,
    /// How long one read of the queue blocks; also bounds how late a stop
    /// request is seen.
    pub poll: Duration,
    /// The longest pause between reconnection attempts while Redis is down.
    pub max_backoff: Duration,
    /// The operator's base sandbox; each job's spec adds to it (see [`JobSpec::build`]).
    pub sandbox: Sandbox,
    /// The local worker's settings (its cap is `slots`).
    pub worker: WorkerConfig,
    /// Where jobs' work directories are made (default: the temporary directory).
    pub work_dir: Option<PathBuf>,
    /// At most about this many chunks (each ≤ 64 KiB) of a job's log stay
    /// in Redis; older ones are trimmed.
    pub log_max_entries: usize,
    /// At most about this many entries stay in the events stream.
    pub events_max_len: usize,
    /// How long a finished job's hash and log stay in Redis (`ZERO`: until removed).
    pub keep_finished: Duration,
    /// At most this many bytes of each collected file go into the record.
    pub collect_max_bytes: u64,
}

impl NodeConfig {
    /// A node of the cluster on `redis_url`, with the defaults: slots for each
    /// CPU, a 30 s lease, 7 days of finished jobs.
    ///
    /// ```
    /// let config = jobcell::cluster::NodeConfig::new("redis://127.0.0.1:6379");
    /// assert!(config.slots >= 1);
    /// ```
    pub fn new(redis_url: impl Into<String>) -> NodeConfig {
        NodeConfig {
            redis_url: redis_url.into(),
            prefix: "jobcell".into(),
            name: None,
            slots: std::thread::available_parallelism().map_or(1, |n| n.get()),
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(500),
            max_backoff: Duration::from_secs(2),
            sandbox: Sandbox::new(),
            worker: WorkerConfig::default(),
            work_dir: None,
            log_max_entries: 1000,
            events_max_len: 100_000,
            keep_finished: Duration::from_secs(7 * 24 * 3600),
            collect_max_bytes: 1 << 20,
        }
    }
}

/// What a node has done, for its figures (`/metrics`).
///
/// ```no_run
/// # let node = jobcell::cluster::Node::start(jobcell::cluster::NodeConfig::new("redis://127.0.0.1"))?;
/// let s = node.stats();
/// println!("{} running of {}, {} finished", s.running, s.slots, s.finished);
/// # Ok::<(), jobcell::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Its slots.
    pub slots: usize,
    /// Jobs it runs now.
    pub running: usize,
    /// Attempts it started.
    pub started: u64,
    /// Final records it wrote.
    pub finished: u64,
    /// Entries it took over from lost nodes.
    pub claims: u64,
    /// Jobs it finished as "node lost".
    pub lost: u64,
    /// Attempts it killed because another node had taken the job over.
    pub fenced: u64,
    /// Reconnections to Redis after a failure.
    pub reconnects: u64,
    /// True while its main connection to Redis is up.
    pub connected: bool,
}

/// A machine's share of the cluster: a local [`Worker`] fed from the queue.
///
/// [`start`](Node::start) returns at once; a thread reads the queue (only
/// while a slot is free), keeps the heartbeat and the leases, takes over
/// the jobs of lost nodes and passes on stop requests. Each running job has
/// a thread that writes its state, log chunks and final record to Redis.
/// When Redis is down, jobs already running go on and their results are
/// written once it is back.
///
/// ```no_run
/// use jobcell::cluster::{Node, NodeConfig};
///
/// let mut config = NodeConfig::new("redis://127.0.0.1:6379");
/// config.slots = 8;
/// let node = Node::start(config)?;
/// println!("node {} is serving", node.name());
/// // … until the process is asked to stop:
/// node.shutdown(std::time::Duration::from_secs(30));
/// # Ok::<(), jobcell::Error>(())
/// ```
pub struct Node {
    shared: Arc<Shared>,
    main: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    config: NodeConfig,
    keys: Keys,
    name: String,
    worker: Worker,
    running: Mutex<HashMap<String, Running>>,
    /// No more jobs are taken.
    closing: AtomicBool,
    /// Attempts still running are abandoned (shutdown's grace is over).
    abandon: AtomicBool,
    wake: (Sender<()>, Receiver<()>),
    /// Spare connections for the job threads.
    links: Mutex<Vec<Link>>,
    started: AtomicU64,
    finished: AtomicU64,
    claims: AtomicU64,
    lost: AtomicU64,
    fenced: AtomicU64,
    reconnects: AtomicU64,
    connected: AtomicBool,
}

/// An attempt this node runs.
struct Running {
    attempt: u64,
    entry: String,
    local: Option<JobId>,
    fenced: Arc<AtomicBool>,
}

impl Node {
    /// Starts a node: its local worker and its thread. Redis need not be up
    /// yet (the node connects, and reconnects, with backoff); a malformed
    /// URL or a worker that cannot start is an error.
    ///
    /// ```no_run
    /// let node = jobcell::cluster::Node::start(jobcell::cluster::NodeConfig::new("redis://127.0.0.1"))?;
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn start(config: NodeConfig) -> Result<Node> {
        if config.slots == 0 {
            return Err(Error::InvalidSetting {
                name: "slots",
                value: "0".into(),
                reason: "a node needs at least one slot".into(),
            });
        }
        if config.lease < Duration::from_millis(30) {
            return Err(Error::InvalidSetting {
                name: "lease",
                value: format!("{:?}", config.lease),
                reason: "at least 30 ms".into(),
            });
        }
        let link = Link::new(&config.redis_url, config.max_backoff)?;
        let mut wc = config.worker.clone();
        wc.max_concurrent = Some(config.slots);
        let worker = Worker::new(wc)?;
        let base = config.name.clone().unwrap_or_else(host_name);
        let name = format!("{base}-{}", &JobId::generate().as_str()[12..]);
        let shared = Arc::new(Shared {
            keys: Keys::new(&config.prefix),
            config,
            name,
            worker,
            running: Mutex::new(HashMap::new()),
            closing: AtomicBool::new(false),
            abandon: AtomicBool::new(false),
            wake: crossbeam_channel::unbounded(),
            links: Mutex::new(Vec::new()),
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            claims: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            fenced: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            connected: AtomicBool::new(false),
        });
        let s = shared.clone();
        let main = std::thread::Builder::new()
            .name("jobcell-node".into())
            .spawn(move || Shared::main_loop(s, link))
            .map_err(|e| Error::Io {
                op: "start the node's thread",
                path: PathBuf::new(),
                source: e,
            })?;
        Ok(Node {
            shared,
            main: Mutex::new(Some(main)),
        })
    }

    /// The node's name: its consumer name in the group and its heartbeat key.
    ///
    /// ```no_run
    /// # let node = jobcell::cluster::Node::start(jobcell::cluster::NodeConfig::new("redis://127.0.0.1"))?;
    /// assert!(!node.name().is_empty());
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The local worker (its jobs have local ids; the cluster's ids are in
    /// Redis).
    ///
    /// ```no_run
    /// # let node = jobcell::cluster::Node::start(jobcell::cluster::NodeConfig::new("redis://127.0.0.1"))?;
    /// println!("{} jobs running here", node.worker().running());
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn worker(&self) -> &Worker {
        &self.shared.worker
    }

    /// What the node has done so far.
    ///
    /// ```no_run
    /// # let node = jobcell::cluster::Node::start(jobcell::cluster::NodeConfig::new("redis://127.0.0.1"))?;
    /// assert_eq!(node.stats().slots, node.stats().slots);
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn stats(&self) -> NodeStats {
        let s = &self.shared;
        NodeStats {
            slots: s.config.slots,
            running: s.running.lock().len(),
            started: s.started.load(Ordering::Relaxed),
            finished: s.finished.load(Ordering::Relaxed),
            claims: s.claims.load(Ordering::Relaxed),
            lost: s.lost.load(Ordering::Relaxed),
            fenced: s.fenced.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            connected: s.connected.load(Ordering::Relaxed),
        }
    }

    /// Stops taking jobs, waits up to `grace` for the running ones to end
    /// and be recorded, then kills the rest without recording them: their
    /// entries stay pending and other nodes run them again after the lease
    /// (each such attempt counts). The heartbeat goes when the node does.
    ///
    /// ```no_run
    /// # let node = jobcell::cluster::Node::start(jobcell::cluster::NodeConfig::new("redis://127.0.0.1"))?;
    /// node.shutdown(std::time::Duration::from_secs(30));
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn shutdown(&self, grace: Duration) {
        let s = &self.shared;
        s.closing.store(true, Ordering::SeqCst);
        let _ = s.wake.0.send(());
        let deadline = Instant::now() + grace;
        while !s.running.lock().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        s.abandon.store(true, Ordering::SeqCst);
        s.worker.shutdown(Duration::ZERO);
        while !s.running.lock().is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(main) = self.main.lock().take() {
            let _ = main.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.shared.name)
            .field("stats", &self.stats())
            .finish()
    }
}

fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// What the main loop asks of Redis each round.
enum Taken {
    Run(String, String),
    Lost(String, String, u64),
}

impl Shared {
    fn main_loop(self: Arc<Shared>, mut link: Link) {
        let lease = self.config.lease;
        let mut next_renew = Instant::now();
        let mut next_adopt = Instant::now();
        let mut group_ready = false;
        let mut pause = Duration::from_millis(20);
        while !self.closing.load(Ordering::SeqCst) {
            match self.round(
                &mut link,
                &mut group_ready,
                &mut next_renew,
                &mut next_adopt,
            ) {
                Ok(()) => pause = Duration::from_millis(20),
                Err(e) => {
                    let transient = !matches!(e, link::Fault::Refused(_));
                    if let link::Fault::Refused(e) = &e {
                        if e.code() == Some("NOGROUP") {
                            group_ready = false;
                        }
                    }
                    self.connected
                        .store(link.connected_since.is_some(), Ordering::Relaxed);
                    self.reconnects.store(link.reconnects, Ordering::Relaxed);
                    if transient {
                        next_renew = Instant::now();
                    }
                    let _ = self.wake.1.recv_timeout(pause);
                    pause = (pause * 2).min(self.config.max_backoff.min(lease / 3));
                }
            }
        }
        // Leaving: no heartbeat, so the lease of whatever is abandoned runs
        // from now; the entries of recorded jobs are already acknowledged.
        while !self.running.lock().is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let key = self.keys.heartbeat(&self.name);
        let _ = link.try_once(&mut |c| redis::cmd("DEL").arg(&key).query::<()>(c));
    }

    fn round(
        self: &Arc<Shared>,
        link: &mut Link,
        group_ready: &mut bool,
        next_renew: &mut Instant,
        next_adopt: &mut Instant,
    ) -> Result<(), link::Fault> {
        let lease = self.config.lease;
        let q = self.keys.queue();
        if !*group_ready {
            let r = link.try_once(&mut |c| {
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&q)
                    .arg(GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query::<()>(c)
            });
            match r {
                Ok(()) => {}
                Err(link::Fault::Refused(e)) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
            *group_ready = true;
        }
        let now = Instant::now();
        if now >= *next_renew {
            self.renew(link)?;
            *next_renew = now + lease / 3;
        }
        self.connected.store(true, Ordering::Relaxed);
        self.reconnects.store(link.reconnects, Ordering::Relaxed);
        self.pass_stops(link)?;
        let free = self.config.slots.saturating_sub(self.running.lock().len());
        // A node takes over only after a lease of its own connection: a
        // node that was cut off with everyone (Redis down) has that long to
        // renew its leases first.
        let settled = link.connected_since.is_some_and(|t| t.elapsed() >= lease);
        if free > 0 && settled && now >= *next_adopt {
            *next_adopt = now + lease / 3;
            for t in self.adopt(link, free)? {
                match t {
                    Taken::Run(id, entry) => self.begin(link, &id, &entry)?,
                    Taken::Lost(id, entry, attempt) => {
                        self.finish_lost(link, &id, &entry, attempt)?
                    }
                }
            }
        }
        let free = self.config.slots.saturating_sub(self.running.lock().len());
        if free == 0 {
            let _ = self.wake.1.recv_timeout(self.config.poll);
            return Ok(());
        }
        let block = millis(self.config.poll.min(lease / 3)).max(1);
        let reply: Value = link.try_once(&mut |c| {
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&self.name)
                .arg("COUNT")
                .arg(free)
                .arg("BLOCK")
                .arg(block)
                .arg("STREAMS")
                .arg(&q)
                .arg(">")
                .query(c)
        })?;
        for (entry, id) in queue_entries(&reply) {
            if self.closing.load(Ordering::SeqCst) {
                // Left pending: recovered by another node after the lease.
                break;
            }
            self.begin(link, &id, &entry)?;
        }
        Ok(())
    }

    /// Heartbeat and leases; kills the attempts another node has taken over.
    fn renew(&self, link: &mut Link) -> Result<(), link::Fault> {
        let info = format!(
            r#"{{"slots":{},"running":{}}}"#,
            self.config.slots,
            self.running.lock().len()
        );
        let mut args: Vec<Vec<u8>> = vec![
            self.config.prefix.clone().into(),
            self.name.clone().into(),
            millis(self.config.lease).to_string().into(),
            info.into(),
        ];
        for (id, r) in self.running.lock().iter() {
            args.push(id.clone().into());
            args.push(r.attempt.to_string().into());
            args.push(r.entry.clone().into());
        }
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let lost = link.try_once(&mut |c| scripts::RENEW.run(c, &refs))?;
        for id in link::items(&lost).iter().filter_map(link::text) {
            self.fence(&id);
        }
        Ok(())
    }

    /// Another node has this job now: kill the local attempt, record nothing.
    fn fence(&self, id: &str) {
        let g = self.running.lock();
        if let Some(r) = g.get(id) {
            if !r.fenced.swap(true, Ordering::SeqCst) {
                self.fenced.fetch_add(1, Ordering::Relaxed);
                if let Some(local) = &r.local {
                    if let Some(h) = self.worker.handle(local.as_str()) {
                        let _ = h.kill();
                    }
                }
            }
        }
    }

    fn pass_stops(&self, link: &mut Link) -> Result<(), link::Fault> {
        let key = self.keys.stops(&self.name);
        let ids: Value = link.try_once(&mut |c| redis::cmd("LPOP").arg(&key).arg(100).query(c))?;
        for id in link::items(&ids).iter().filter_map(link::text) {
            let local = self.running.lock().get(&id).and_then(|r| r.local.clone());
            if let Some(local) = local {
                let _ = self.worker.stop(local.as_str());
            }
        }
        Ok(())
    }

    fn adopt(&self, link: &mut Link, count: usize) -> Result<Vec<Taken>, link::Fault> {
        let mut args: Vec<Vec<u8>> = vec![
            self.config.prefix.clone().into(),
            self.name.clone().into(),
            millis(self.config.lease).to_string().into(),
            count.to_string().into(),
        ];
        args.extend(self.running.lock().keys().map(|id| id.clone().into_bytes()));
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let reply = link.try_once(&mut |c| scripts::ADOPT.run(c, &refs))?;
        let mut out = Vec::new();
        for t in link::items(&reply) {
            let f: Vec<String> = link::items(t).iter().filter_map(link::text).collect();
            match f.as_slice() {
                [k, id, entry] if k == "run" => {
                    self.claims.fetch_add(1, Ordering::Relaxed);
                    out.push(Taken::Run(id.clone(), entry.clone()));
                }
                [k, id, entry, a] if k == "lost" => {
                    self.claims.fetch_add(1, Ordering::Relaxed);
                    out.push(Taken::Lost(
                        id.clone(),
                        entry.clone(),
                        a.parse().unwrap_or(0),
                    ));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Starts an attempt of job `id` (its queue entry is this node's).
    fn begin(
        self: &Arc<Shared>,
        link: &mut Link,
        id: &str,
        entry: &str,
    ) -> Result<(), link::Fault> {
        let args: [Vec<u8>; 5] = [
            self.config.prefix.clone().into(),
            id.into(),
            self.name.clone().into(),
            entry.into(),
            self.config.events_max_len.to_string().into(),
        ];
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let reply = link.try_once(&mut |c| scripts::BEGIN.run(c, &refs))?;
        let f = link::items(&reply);
        let kind = f.first().and_then(link::text).unwrap_or_default();
        let attempt = f.get(1).and_then(link::int).unwrap_or(0) as u64;
        let spec_text = f.get(2).and_then(link::text).unwrap_or_default();
        match kind.as_str() {
            "run" => {}
            "stop" => {
                let spec: JobSpec = serde_json::from_str(&spec_text).unwrap_or_default();
                let rec = record_without_run(id, &spec, JobState::Stopped);
                return self.write_final(link, id, entry, attempt, &rec, "{}");
            }
            _ => return Ok(()),
        }
        self.started.fetch_add(1, Ordering::Relaxed);
        let fenced = Arc::new(AtomicBool::new(false));
        self.running.lock().insert(
            id.to_string(),
            Running {
                attempt,
                entry: entry.to_string(),
                local: None,
                fenced: fenced.clone(),
            },
        );
        let spec: std::result::Result<JobSpec, _> = serde_json::from_str(&spec_text);
        let started = spec
            .map_err(|e| format!("the job's spec in redis is unreadable: {e}"))
            .and_then(|spec| self.spawn_local(&spec).map(|(h, w)| (spec, h, w)));
        let s = self.clone();
        let (id, entry) = (id.to_string(), entry.to_string());
        match started {
            Ok((spec, handle, work)) => {
                if let Some(r) = self.running.lock().get_mut(&id) {
                    r.local = Some(handle.id().clone());
                }
                let local = handle.id().clone();
                let key = id.clone();
                let t = std::thread::Builder::new()
                    .name("jobcell-node-job".into())
                    .spawn(move || s.follow_job(id, entry, attempt, spec, handle, work, fenced));
                if t.is_err() {
                    // No thread to record it: the attempt is abandoned, and
                    // run again elsewhere after the lease.
                    if let Some(h) = self.worker.handle(local.as_str()) {
                        let _ = h.kill();
                    }
                    self.running.lock().remove(&key);
                }
            }
            Err(reason) => {
                let spec: JobSpec = serde_json::from_str(&spec_text).unwrap_or_default();
                let rec = record_without_run(&id, &spec, JobState::Failed { reason });
                let r = self.write_final(link, &id, &entry, attempt, &rec, "{}");
                self.running.lock().remove(&id);
                r?;
            }
        }
        Ok(())
    }

    /// The local job for `spec`, with its work directory if it needs one.
    fn spawn_local(
        &self,
        spec: &JobSpec,
    ) -> std::result::Result<(JobHandle, Option<tempfile::TempDir>), String> {
        let work = if spec.needs_workdir() {
            let mut b = tempfile::Builder::new();
            b.prefix("jobcell-work-");
            let dir = match &self.config.work_dir {
                Some(d) => b.tempdir_in(d),
                None => b.tempdir(),
            }
            .map_err(|e| format!("cannot make the job's work directory: {e}"))?;
            spec.write_files(dir.path()).map_err(|e| e.to_string())?;
            Some(dir)
        } else {
            None
        };
        let (sandbox, command) = spec
            .build(&self.config.sandbox, work.as_ref().map(|w| w.path()))
            .map_err(|e| e.to_string())?;
        let handle = self
            .worker
            .submit(&sandbox, &command)
            .map_err(|e| e.to_string())?;
        Ok((handle, work))
    }

    /// A running attempt's thread: its state changes, log chunks and final
    /// record go to Redis; it retries through outages until they are written.
    #[allow(clippy::too_many_arguments)]
    fn follow_job(
        self: Arc<Shared>,
        id: String,
        entry: String,
        attempt: u64,
        spec: JobSpec,
        handle: JobHandle,
        work: Option<tempfile::TempDir>,
        fenced: Arc<AtomicBool>,
    ) {
        let mut link = self.take_link();
        let give_up = || self.abandon.load(Ordering::SeqCst);
        let log_key = self.keys.log(&id);
        let mut reader = handle.logs();
        let mut said_running = false;
        let mut alive = true;
        loop {
            let r = reader.next_timeout(Duration::from_millis(50));
            let mut ended = matches!(r, Err(ReadTimeout::Ended));
            // What else is there within a moment joins it: a job writing
            // line by line costs an entry per burst, not one per line.
            let mut batch = Vec::new();
            if let Ok(first) = r {
                let until = Instant::now() + BATCH_WINDOW;
                batch.push((first.stream, first.offset, first.time, first.data.to_vec()));
                let mut bytes = batch[0].3.len();
                while bytes < BATCH_BYTES {
                    let left = until.saturating_duration_since(Instant::now());
                    match reader.next_timeout(left) {
                        Ok(c) => {
                            bytes += c.data.len();
                            match batch.last_mut() {
                                Some(last)
                                    if last.0 == c.stream
                                        && last.1 + last.3.len() as u64 == c.offset =>
                                {
                                    last.3.extend_from_slice(&c.data)
                                }
                                _ => batch.push((c.stream, c.offset, c.time, c.data.to_vec())),
                            }
                        }
                        Err(ReadTimeout::Ended) => {
                            ended = true;
                            break;
                        }
                        Err(ReadTimeout::TimedOut) => break,
                    }
                }
            }
            let mut failed = false;
            for (stream, offset, time, data) in batch {
                let stream = match stream {
                    crate::job::Stream::Stdout => "o",
                    crate::job::Stream::Stderr => "e",
                };
                let eid = format!("{attempt}-{}", offset + 1);
                let t = time
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_micros() as u64;
                let res = link.run("write a log chunk", None, &give_up, |c| {
                    let r = redis::cmd("XADD")
                        .arg(&log_key)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(self.config.log_max_entries)
                        .arg(&eid)
                        .arg("s")
                        .arg(stream)
                        .arg("o")
                        .arg(offset)
                        .arg("t")
                        .arg(t)
                        .arg("d")
                        .arg(&data[..])
                        .query::<Value>(c);
                    match r {
                        // Written before the connection broke, or a newer
                        // attempt's stream: nothing to add.
                        Err(e) if e.to_string().contains("equal or smaller") => Ok(Value::Nil),
                        r => r,
                    }
                });
                if res.is_err() {
                    failed = true;
                    break;
                }
            }
            if failed {
                alive = false;
                break;
            }
            if !said_running && !ended && handle.state() == JobState::Running {
                said_running = true;
                let state = state_json(&JobState::Running);
                let args: [Vec<u8>; 6] = [
                    self.config.prefix.clone().into(),
                    id.clone().into(),
                    self.name.clone().into(),
                    attempt.to_string().into(),
                    state.into(),
                    self.config.events_max_len.to_string().into(),
                ];
                let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
                match link.run("write a job's state", None, &give_up, |c| {
                    scripts::STATE.run(c, &refs)
                }) {
                    Ok(Value::Int(0)) => self.fence(&id),
                    Ok(_) => {}
                    Err(_) => {
                        alive = false;
                        break;
                    }
                }
            }
            if ended || fenced.load(Ordering::SeqCst) {
                break;
            }
        }
        let _ = handle.wait();
        let local = handle.id().clone();
        // Abandoned at shutdown: not recorded, so it runs again elsewhere.
        let abandoned = self.abandon.load(Ordering::SeqCst);
        if alive && !abandoned && !fenced.load(Ordering::SeqCst) {
            let record = self.worker.get(local.as_str()).map(|mut r| {
                r.id = id.parse().unwrap_or_else(|_| r.id.clone());
                r
            });
            let files = match &work {
                Some(w) if !spec.collect.is_empty() => {
                    let got: std::collections::BTreeMap<
                        String,
                        std::result::Result<crate::spec::Content, String>,
                    > = spec
                        .collect(w.path(), self.config.collect_max_bytes)
                        .into_iter()
                        .map(|(k, v)| (k, v.map_err(|e| e.to_string())))
                        .collect();
                    serde_json::to_string(&got).unwrap_or_else(|_| "{}".into())
                }
                _ => "{}".into(),
            };
            let record = record.unwrap_or_else(|| {
                record_without_run(
                    &id,
                    &spec,
                    JobState::Failed {
                        reason: "the local record is missing".into(),
                    },
                )
            });
            let _ = self.write_final_on(&mut link, &id, &entry, attempt, &record, &files, &give_up);
        }
        let _ = self.worker.remove(local.as_str());
        drop(work);
        self.running.lock().remove(&id);
        self.links.lock().push(link);
        let _ = self.wake.0.send(());
    }

    fn take_link(&self) -> Link {
        self.links.lock().pop().unwrap_or_else(|| {
            Link::new(&self.config.redis_url, self.config.max_backoff)
                .expect("the URL was parsed when the node started")
        })
    }

    fn finish_lost(
        &self,
        link: &mut Link,
        id: &str,
        entry: &str,
        attempt: u64,
    ) -> Result<(), link::Fault> {
        self.lost.fetch_add(1, Ordering::Relaxed);
        let spec_text: Option<String> = link.try_once(&mut |c| {
            redis::cmd("HGET")
                .arg(self.keys.job(id))
                .arg("spec")
                .query(c)
        })?;
        let spec: JobSpec = spec_text
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let rec = record_without_run(
            id,
            &spec,
            JobState::Failed {
                reason: "node lost".into(),
            },
        );
        self.write_final(link, id, entry, attempt, &rec, "{}")
    }

    fn write_final(
        &self,
        link: &mut Link,
        id: &str,
        entry: &str,
        attempt: u64,
        record: &JobRecord,
        files: &str,
    ) -> Result<(), link::Fault> {
        let args = self.finish_args(id, entry, attempt, record, files);
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let r = link.try_once(&mut |c| scripts::FINISH.run(c, &refs))?;
        if matches!(r, Value::Int(1)) {
            self.finished.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn write_final_on(
        &self,
        link: &mut Link,
        id: &str,
        entry: &str,
        attempt: u64,
        record: &JobRecord,
        files: &str,
        give_up: &dyn Fn() -> bool,
    ) -> Result<()> {
        let args = self.finish_args(id, entry, attempt, record, files);
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let r = link.run("write a final record", None, give_up, |c| {
            scripts::FINISH.run(c, &refs)
        })?;
        match r {
            Value::Int(1) => {
                self.finished.fetch_add(1, Ordering::Relaxed);
            }
            Value::Int(0) => {
                self.fenced.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        Ok(())
    }

    fn finish_args(
        &self,
        id: &str,
        entry: &str,
        attempt: u64,
        record: &JobRecord,
        files: &str,
    ) -> Vec<Vec<u8>> {
        vec![
            self.config.prefix.clone().into(),
            id.into(),
            self.name.clone().into(),
            attempt.to_string().into(),
            entry.into(),
            serde_json::to_string(record).unwrap_or_default().into(),
            state_json(&record.state).into(),
            files.into(),
            self.config.events_max_len.to_string().into(),
            millis(self.config.keep_finished).to_string().into(),
        ]
    }
}

/// The record of a job that ended without running here (stopped while
/// queued, its node lost, its spec refused).
fn record_without_run(id: &str, spec: &JobSpec, state: JobState) -> JobRecord {
    let now = SystemTime::now();
    JobRecord {
        id: id.parse().unwrap_or_else(|_| JobId::generate()),
        command: spec.command.clone(),
        args: spec.args.clone(),
        limits: spec.limits.clone(),
        state,
        created: now,
        started: None,
        ended: Some(now),
        exit: None,
        wall_time: None,
        usage: None,
        rusage: None,
        oom_killed: false,
        pids_limited: false,
        log_error: None,
    }
}

/// (entry id, job id) of each entry of an XREADGROUP reply.
fn queue_entries(reply: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // RESP2: [[stream, [[entry, [k, v, …]], …]]]; RESP3 may give a map.
    let streams: Vec<&Value> = match reply {
        Value::Map(m) => m.iter().map(|(_, v)| v).collect(),
        _ => link::items(reply)
            .iter()
            .filter_map(|s| link::items(s).get(1))
            .collect(),
    };
    for entries in streams {
        for e in link::items(entries) {
            let f = link::items(e);
            let (Some(eid), Some(fields)) = (f.first().and_then(link::text), f.get(1)) else {
                continue;
            };
            let id = link::pairs(fields)
                .into_iter()
                .find(|(k, _)| k == "id")
                .and_then(|(_, v)| link::text(v));
            if let Some(id) = id {
                out.push((eid, id));
            }
        }
    }
    out
}
