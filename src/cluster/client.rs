//! The cluster from any machine: submit, read, stop, follow.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use redis::Value;

use super::link::{self, Link};
use super::scripts;
use super::{
    millis, parse_state, unix_ms, ClusterEvent, ClusterJob, ClusterStats, Keys, LogEntry, Retry,
    GROUP,
};
use crate::error::{Error, Result};
use crate::job::{JobId, JobState, Stream};
use crate::spec::{Content, JobSpec};
use crate::worker::JobRecord;

/// How a [`Client`] talks to the cluster.
///
/// ```
/// use std::time::Duration;
/// let mut config = jobcell::cluster::ClientConfig::new("redis://127.0.0.1:6379");
/// config.timeout = Duration::from_secs(5);
/// assert_eq!(config.prefix, "jobcell");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The Redis server (`redis://[:password@]host:port[/db]`).
    pub redis_url: String,
    /// The prefix of every key; the nodes' must match.
    pub prefix: String,
    /// How long an operation retries while Redis is unreachable before it
    /// returns [`Error::RedisUnavailable`].
    pub timeout: Duration,
    /// The longest pause between reconnection attempts.
    pub max_backoff: Duration,
    /// The retry policy of jobs submitted with [`Client::submit`].
    pub retry: Retry,
    /// At most about this many entries stay in the events stream.
    pub events_max_len: usize,
    /// How long one blocking read of a log or of the events waits before it
    /// checks on the job (and lets a dropped follower go).
    pub block: Duration,
}

impl ClientConfig {
    /// A client of the cluster on `redis_url`, retrying for 30 s through outages.
    ///
    /// ```
    /// let config = jobcell::cluster::ClientConfig::new("redis://127.0.0.1:6379");
    /// assert_eq!(config.timeout, std::time::Duration::from_secs(30));
    /// ```
    pub fn new(redis_url: impl Into<String>) -> ClientConfig {
        ClientConfig {
            redis_url: redis_url.into(),
            prefix: "jobcell".into(),
            timeout: Duration::from_secs(30),
            max_backoff: Duration::from_secs(2),
            retry: Retry::default(),
            events_max_len: 100_000,
            block: Duration::from_secs(1),
        }
    }
}

/// Submits jobs to the cluster and reads them back, from any machine.
///
/// Every method retries through a Redis outage (reconnecting with backoff)
/// for [`ClientConfig::timeout`]; one client can be shared by threads.
///
/// ```no_run
/// use jobcell::cluster::Client;
/// use jobcell::JobSpec;
///
/// let client = Client::connect("redis://127.0.0.1:6379")?;
/// let id = client.submit(&JobSpec::new("true"))?;
/// println!("{:?}", client.get(&id)?.state);
/// # Ok::<(), jobcell::Error>(())
/// ```
pub struct Client {
    config: ClientConfig,
    keys: Keys,
    link: Mutex<Link>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("redis", &link::redacted(&self.config.redis_url))
            .field("prefix", &self.config.prefix)
            .finish()
    }
}

impl Client {
    /// A client with the default settings. Nothing is connected yet: a
    /// malformed URL is the only error here.
    ///
    /// ```
    /// let client = jobcell::cluster::Client::connect("redis://127.0.0.1:6379")?;
    /// assert!(jobcell::cluster::Client::connect("not a url").is_err());
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn connect(redis_url: &str) -> Result<Client> {
        Client::with_config(ClientConfig::new(redis_url))
    }

    /// A client with `config`.
    ///
    /// ```
    /// let config = jobcell::cluster::ClientConfig::new("redis://127.0.0.1:6379");
    /// let client = jobcell::cluster::Client::with_config(config)?;
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn with_config(config: ClientConfig) -> Result<Client> {
        let link = Link::new(&config.redis_url, config.max_backoff)?;
        Ok(Client {
            keys: Keys::new(&config.prefix),
            config,
            link: Mutex::new(link),
        })
    }

    fn run<T>(
        &self,
        op: &'static str,
        f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + self.config.timeout;
        self.link.lock().run(op, Some(deadline), &|| false, f)
    }

    /// Queues a job with the client's retry policy and returns its id. The
    /// spec's own fields are checked first ([`JobSpec::validate`]); the rest
    /// is checked by the node that runs it, whose verdict is then `Failed`
    /// with the reason.
    ///
    /// ```no_run
    /// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
    /// let id = client.submit(&jobcell::JobSpec::new("true"))?;
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn submit(&self, spec: &JobSpec) -> Result<JobId> {
        self.submit_with(spec, self.config.retry)
    }

    /// Queues a job with its own retry policy.
    ///
    /// ```no_run
    /// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
    /// use jobcell::cluster::Retry;
    /// let id = client.submit_with(&jobcell::JobSpec::new("true"), Retry::never())?;
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn submit_with(&self, spec: &JobSpec, retry: Retry) -> Result<JobId> {
        spec.validate()?;
        if retry.max_attempts == 0 {
            return Err(Error::InvalidSetting {
                name: "max_attempts",
                value: "0".into(),
                reason: "a job needs at least one attempt".into(),
            });
        }
        let id = JobId::generate();
        let spec_json = serde_json::to_string(spec).map_err(|e| Error::InvalidSetting {
            name: "spec",
            value: spec.command.clone(),
            reason: e.to_string(),
        })?;
        let args: [Vec<u8>; 6] = [
            self.config.prefix.clone().into(),
            id.as_str().into(),
            spec_json.into(),
            retry.max_attempts.to_string().into(),
            unix_ms(SystemTime::now()).to_string().into(),
            self.config.events_max_len.to_string().into(),
        ];
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        // Idempotent by id: a retry after a lost reply submits nothing twice.
        self.run("submit", |c| scripts::SUBMIT.run(c, &refs))?;
        Ok(id)
    }

    /// The job as the cluster knows it.
    ///
    /// ```no_run
    /// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
    /// # let id = client.submit(&jobcell::JobSpec::new("true"))?;
    /// let job = client.get(&id)?;
    /// println!("attempt {} on {:?}: {:?}", job.attempt, job.node, job.state);
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn get(&self, id: &JobId) -> Result<ClusterJob> {
        let key = self.keys.job(id.as_str());
        let v: Value = self.run("get a job", |c| redis::cmd("HGETALL").arg(&key).query(c))?;
        job_from_hash(id, &v).ok_or_else(|| Error::NoSuchJob { id: id.to_string() })
    }

    /// The newest `limit` jobs, newest first (jobs expired from Redis are left out).
    ///
    /// ```no_run
    /// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
    /// for job in client.list(100)? {
    ///     println!("{} {:?}", job.id, job.state);
    /// }
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn list(&self, limit: usize) -> Result<Vec<ClusterJob>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let jobs = self.keys.jobs();
        let ids: Vec<String> = self.run("list jobs", |c| {
            redis::cmd("ZRANGE")
                .arg(&jobs)
                .arg(0)
                .arg(limit - 1)
                .arg("REV")
                .query(c)
        })?;
        let replies: Vec<Value> = self.run("list jobs", |c| {
            let mut p = redis::pipe();
            for id in &ids {
                p.cmd("HGETALL").arg(self.keys.job(id));
            }
            p.query(c)
        })?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (id, v) in ids.iter().zip(&replies) {
            match id.parse().ok().and_then(|j| job_from_hash(&j, v)) {
                Some(job) => out.push(job),
                None => gone.push(id.clone()),
            }
        }
        if !gone.is_empty() {
            // Their hashes expired (kept for `keep_finished`): forget them.
            let _ = self.run("list jobs", |c| {
                redis::cmd("ZREM").arg(&jobs).arg(&gone).query::<()>(c)
            });
        }
        Ok(out)
    }

    /// Stops the job wherever it runs: the node running it gets the request
    /// within its poll interval and stops it as [`Worker::stop`](crate::Worker::stop)
    /// does; a job still queued ends `Stopped` without running.
    ///
    /// ```no_run
    /// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
    /// # let id = client.submit(&jobcell::JobSpec::new("sleep"))?;
    /// client.stop(&id)?;
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn stop(&self, id: &JobId) -> Result<()> {
        let args: [&[u8]; 2] = [self.config.prefix.as_bytes(), id.as_str().as_bytes()];
        let r: Value = self.run("stop a job", |c| scripts::STOP.run(c, &args))?;
        match link::int(&r) {
            Some(0) => Err(Error::NoSuchJob { id: id.to_string() }),
            Some(-1) => Err(Error::AlreadyFinished { id: id.to_string() }),
            _ => Ok(()),
        }
    }

    /// Removes a finished job (its hash and log) from Redis.
    ///
    /// ```no_run
    /// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
    /// # let id = client.submit(&jobcell::JobSpec::new("true"))?;
    /// client.wait(&id, std::time::Duration::from_secs(10))?;
    /// client.remove(&id)?;
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn remove(&self, id: &JobId) -> Result<()> {
        let args: [&[u8]; 2] = [self.config.prefix.as_bytes(), id.as_str().as_bytes()];
        let r: Value = self.run("remove a job", |c| scripts::REMOVE.run(c, &args))?;
        match link::int(&r) {
            Some(0) => Err(Error::NoSuchJob { id: id.to_string() }),
            Some(-1) => Err(Error::NotFinished { id: id.to_string() }),
            _ => Ok(()),
        }
    }

    /// Waits until the job has a final record, at most `timeout` (then the
    /// job as it stands is returned). Polls the job's hash, from every 2 ms
    /// up to every 100 ms.
    ///
    /// ```no_run
    /// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
    /// # let id = client.submit(&jobcell::JobSpec::new("true"))?;
    /// let job = client.wait(&id, std::time::Duration::from_secs(10))?;
    /// assert!(job.state.is_final());
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn wait(&self, id: &JobId, timeout: Duration) -> Result<ClusterJob> {
        let deadline = Instant::now() + timeout;
        let key = self.keys.job(id.as_str());
        let mut pause = Duration::from_millis(2);
        loop {
            let done: bool = self.run("wait for a job", |c| {
                redis::cmd("HEXISTS").arg(&key).arg("record").query(c)
            })?;
            if done || Instant::now() >= deadline {
                return self.get(id);
            }
            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Follows the job's log from Redis (`XREAD BLOCK`), from its first
    /// stored byte until the job has ended: a blocking iterator, like
    /// [`LogReader`](crate::LogReader). A job run again after its node was
    /// lost starts over at offset 0 with the next attempt number.
    ///
    /// ```no_run
    /// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
    /// # let id = client.submit(&jobcell::JobSpec::new("true"))?;
    /// for entry in client.logs(&id)?.offset(0) {
    ///     std::io::Write::write_all(&mut std::io::stdout(), &entry?.data)?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn logs(&self, id: &JobId) -> Result<LogFollower> {
        let job = self.keys.job(id.as_str());
        let exists: bool = self.run("follow logs", |c| redis::cmd("EXISTS").arg(&job).query(c))?;
        if !exists {
            return Err(Error::NoSuchJob { id: id.to_string() });
        }
        Ok(LogFollower {
            link: Link::new(&self.config.redis_url, self.config.max_backoff)?,
            config: self.config.clone(),
            id: id.clone(),
            key: self.keys.log(id.as_str()),
            job,
            last: "0-0".into(),
            from: 0,
            first: true,
            buffered: VecDeque::new(),
            done: false,
        })
    }

    /// Subscribes to every job's state changes from now on (`XREAD BLOCK` on
    /// the events stream): a blocking iterator that never ends by itself.
    ///
    /// ```no_run
    /// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
    /// let events = client.events()?;
    /// for event in events.take(10) {
    ///     println!("{:?}", event?);
    /// }
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn events(&self) -> Result<EventStream> {
        let key = self.keys.events();
        let last: Value = self.run("subscribe to events", |c| {
            redis::cmd("XREVRANGE")
                .arg(&key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query(c)
        })?;
        let last = link::items(&last)
            .first()
            .and_then(|e| link::items(e).first().and_then(link::text))
            .unwrap_or_else(|| "0-0".into());
        self.events_after(&last)
    }

    /// Subscribes to the events after the one with entry id `entry`
    /// (`"0-0"`: every event still stored), to resume where a subscriber left.
    ///
    /// ```no_run
    /// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
    /// let mut events = client.events_after("0-0")?;
    /// let first = events.next();
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn events_after(&self, entry: &str) -> Result<EventStream> {
        Ok(EventStream {
            link: Link::new(&self.config.redis_url, self.config.max_backoff)?,
            config: self.config.clone(),
            key: self.keys.events(),
            last: entry.to_string(),
            buffered: VecDeque::new(),
        })
    }

    /// The cluster's figures: queue length, pending entries per node, live
    /// nodes, and the counters of claims, re-runs and lost jobs.
    ///
    /// ```no_run
    /// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
    /// let stats = client.stats()?;
    /// assert!(stats.finished <= stats.submitted);
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn stats(&self) -> Result<ClusterStats> {
        let q = self.keys.queue();
        let (len, pending, counters, nodes): (u64, Value, Value, Vec<String>) = self
            .run("read the cluster's figures", |c| {
                let mut p = redis::pipe();
                p.cmd("XLEN").arg(&q);
                p.cmd("XPENDING").arg(&q).arg(GROUP);
                p.cmd("HGETALL").arg(self.keys.stats());
                p.cmd("ZRANGE").arg(self.keys.nodes()).arg(0).arg(-1);
                p.query(c)
            })
            .or_else(|e| match e {
                // No queue (nothing ever started): no figures yet.
                Error::Redis { reason, .. } if reason.contains("NOGROUP") => {
                    Ok((0, Value::Nil, Value::Nil, Vec::new()))
                }
                e => Err(e),
            })?;
        let mut s = ClusterStats::default();
        let p = link::items(&pending);
        s.pending = p.first().and_then(link::int).unwrap_or(0) as u64;
        s.waiting = len.saturating_sub(s.pending);
        if let Some(by) = p.get(3) {
            for c in link::items(by) {
                let f = link::items(c);
                if let (Some(name), Some(n)) =
                    (f.first().and_then(link::text), f.get(1).and_then(link::int))
                {
                    s.pending_by_node.insert(name, n as u64);
                }
            }
        }
        for (k, v) in link::pairs(&counters) {
            let n = link::int(v).unwrap_or(0) as u64;
            match k.as_str() {
                "submitted" => s.submitted = n,
                "finished" => s.finished = n,
                "claims" => s.claims = n,
                "reruns" => s.reruns = n,
                "lost" => s.lost = n,
                _ => {}
            }
        }
        if !nodes.is_empty() {
            let alive: Vec<bool> = self.run("read the cluster's figures", |c| {
                let mut p = redis::pipe();
                for n in &nodes {
                    p.cmd("EXISTS").arg(self.keys.heartbeat(n));
                }
                p.query(c)
            })?;
            let mut dead = Vec::new();
            for (n, a) in nodes.into_iter().zip(alive) {
                if a {
                    s.nodes.push(n);
                } else if !s.pending_by_node.contains_key(&n) {
                    dead.push(n);
                }
            }
            if !dead.is_empty() {
                let key = self.keys.nodes();
                let _ = self.run("read the cluster's figures", |c| {
                    redis::cmd("ZREM").arg(&key).arg(&dead).query::<()>(c)
                });
            }
        }
        Ok(s)
    }

    /// Redis's memory in use, in bytes (`INFO memory`, `used_memory`), for
    /// capacity planning.
    ///
    /// ```no_run
    /// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
    /// println!("{} bytes", client.redis_memory()?);
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn redis_memory(&self) -> Result<u64> {
        let info: String = self.run("read redis memory", |c| {
            redis::cmd("INFO").arg("memory").query(c)
        })?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }
}

fn job_from_hash(id: &JobId, v: &Value) -> Option<ClusterJob> {
    let h: BTreeMap<String, &Value> = link::pairs(v).into_iter().collect();
    let spec: JobSpec = serde_json::from_str(&link::text(h.get("spec")?)?).ok()?;
    let get = |k: &str| h.get(k).and_then(|v| link::text(v));
    let record: Option<JobRecord> = get("record").and_then(|r| serde_json::from_str(&r).ok());
    let state = record
        .as_ref()
        .map(|r| r.state.clone())
        .or_else(|| get("state").map(|s| parse_state(&s)))
        .unwrap_or(JobState::Queued);
    let files: BTreeMap<String, Result<Content, String>> = get("files")
        .and_then(|f| serde_json::from_str(&f).ok())
        .unwrap_or_default();
    let num = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some(ClusterJob {
        id: id.clone(),
        spec,
        state,
        attempt: num("attempt") as u32,
        max_attempts: num("max_attempts") as u32,
        node: get("node").filter(|n| !n.is_empty()),
        created: SystemTime::UNIX_EPOCH + Duration::from_millis(num("created_ms")),
        stop_requested: get("stop").is_some_and(|s| s == "1"),
        record,
        files,
    })
}

/// A job's log read from Redis: [`Client::logs`]. Each item is a chunk, or
/// an error (Redis unreachable for the client's timeout, the start of the
/// log trimmed, the job removed); after an error of Redis the iterator can
/// be polled again.
///
/// ```no_run
/// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
/// # let id = client.submit(&jobcell::JobSpec::new("true"))?;
/// let bytes: usize = client.logs(&id)?.map(|e| e.map(|e| e.data.len())).sum::<Result<usize, _>>()?;
/// # Ok::<(), jobcell::Error>(())
/// ```
pub struct LogFollower {
    link: Link,
    config: ClientConfig,
    id: JobId,
    key: String,
    job: String,
    last: String,
    from: u64,
    first: bool,
    buffered: VecDeque<Result<LogEntry>>,
    done: bool,
}

impl std::fmt::Debug for LogFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFollower")
            .field("id", &self.id)
            .field("last", &self.last)
            .finish()
    }
}

impl LogFollower {
    /// Starts at byte `offset` of the output (a chunk spanning it is cut).
    /// When Redis no longer holds that byte, the first item is
    /// [`Error::LogTrimmed`].
    ///
    /// ```no_run
    /// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
    /// # let id = client.submit(&jobcell::JobSpec::new("true"))?;
    /// let rest = client.logs(&id)?.offset(1024);
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn offset(mut self, offset: u64) -> LogFollower {
        self.from = offset;
        self
    }

    /// The next chunk, waiting at most about `timeout`: `Ok(None)` when
    /// none came, or when the log has ended ([`is_done`](LogFollower::is_done)).
    ///
    /// ```no_run
    /// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
    /// # let id = client.submit(&jobcell::JobSpec::new("true"))?;
    /// let mut log = client.logs(&id)?;
    /// while !log.is_done() {
    ///     if let Some(e) = log.next_timeout(std::time::Duration::from_millis(200))? {
    ///         print!("{}", String::from_utf8_lossy(&e.data));
    ///     }
    /// }
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<LogEntry>> {
        if self.buffered.is_empty() && !self.done {
            self.fill(timeout)?;
        }
        self.buffered.pop_front().transpose()
    }

    /// True once the job's log has ended and every chunk was returned.
    ///
    /// ```no_run
    /// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
    /// # let id = client.submit(&jobcell::JobSpec::new("true"))?;
    /// let mut log = client.logs(&id)?;
    /// for e in log.by_ref() {}
    /// assert!(log.is_done());
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn is_done(&self) -> bool {
        self.done && self.buffered.is_empty()
    }

    fn fill(&mut self, block: Duration) -> Result<()> {
        let block = millis(block).max(1);
        let deadline = Instant::now() + self.config.timeout;
        let reply = xread(
            &mut self.link,
            "follow logs",
            deadline,
            (&self.key, &self.last),
            block,
        )?;
        let entries = stream_entries(&reply);
        if entries.is_empty() {
            // Nothing new: is the job still there?
            let job = self.job.clone();
            let exists: bool = self
                .link
                .run("follow logs", Some(deadline), &|| false, |c| {
                    redis::cmd("EXISTS").arg(&job).query(c)
                })?;
            if !exists {
                self.done = true;
                return Err(Error::NoSuchJob {
                    id: self.id.to_string(),
                });
            }
            return Ok(());
        }
        for (eid, fields) in entries {
            self.last = eid.clone();
            let f: BTreeMap<String, &Value> = fields.into_iter().collect();
            if f.contains_key("end") {
                self.done = true;
                break;
            }
            let attempt = eid
                .split('-')
                .next()
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            let offset = f.get("o").and_then(|v| link::int(v)).unwrap_or(0) as u64;
            let stream = match f.get("s").and_then(|v| link::text(v)).as_deref() {
                Some("e") => Stream::Stderr,
                _ => Stream::Stdout,
            };
            let mut data = f
                .get("d")
                .and_then(|v| link::bytes(v))
                .unwrap_or_default()
                .to_vec();
            if self.first {
                self.first = false;
                if offset > self.from {
                    self.buffered.push_back(Err(Error::LogTrimmed {
                        id: self.id.to_string(),
                        from: self.from,
                        available: offset,
                    }));
                    self.from = 0;
                }
            }
            let mut offset = offset;
            if self.from > offset {
                let skip = (self.from - offset).min(data.len() as u64) as usize;
                data.drain(..skip);
                offset += skip as u64;
                if data.is_empty() {
                    continue;
                }
            }
            self.from = 0;
            self.buffered.push_back(Ok(LogEntry {
                attempt,
                stream,
                offset,
                data,
            }));
        }
        Ok(())
    }
}

impl Iterator for LogFollower {
    type Item = Result<LogEntry>;

    fn next(&mut self) -> Option<Result<LogEntry>> {
        loop {
            if let Some(e) = self.buffered.pop_front() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.fill(self.config.block) {
                return Some(Err(e));
            }
        }
    }
}

/// Every job's state changes: [`Client::events`]. Never ends by itself; an
/// item is an error when Redis stayed unreachable for the client's
/// timeout, and the stream can be polled again after it.
///
/// ```no_run
/// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
/// let finished = client.events()?
///     .filter_map(|e| e.ok())
///     .find(|e| e.state.is_final());
/// # Ok::<(), jobcell::Error>(())
/// ```
pub struct EventStream {
    link: Link,
    config: ClientConfig,
    key: String,
    last: String,
    buffered: VecDeque<ClusterEvent>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("last", &self.last)
            .finish()
    }
}

impl EventStream {
    /// The next event, waiting at most `timeout`; `Ok(None)` when none came.
    ///
    /// ```no_run
    /// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
    /// let mut events = client.events()?;
    /// if let Some(e) = events.next_timeout(std::time::Duration::from_secs(1))? {
    ///     println!("{:?}", e);
    /// }
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<ClusterEvent>> {
        if let Some(e) = self.buffered.pop_front() {
            return Ok(Some(e));
        }
        let deadline = Instant::now() + self.config.timeout.max(timeout);
        let block = millis(timeout).max(1);
        let reply = xread(
            &mut self.link,
            "read events",
            deadline,
            (&self.key, &self.last),
            block,
        )?;
        for (eid, fields) in stream_entries(&reply) {
            self.last = eid.clone();
            let f: BTreeMap<String, &Value> = fields.into_iter().collect();
            let text = |k: &str| f.get(k).and_then(|v| link::text(v));
            let Some(id) = text("id").and_then(|i| i.parse().ok()) else {
                continue;
            };
            self.buffered.push_back(ClusterEvent {
                id,
                state: parse_state(&text("state").unwrap_or_default()),
                attempt: text("attempt").and_then(|a| a.parse().ok()).unwrap_or(0),
                node: text("node").filter(|n| !n.is_empty()),
                entry: eid,
            });
        }
        Ok(self.buffered.pop_front())
    }
}

impl Iterator for EventStream {
    type Item = Result<ClusterEvent>;

    fn next(&mut self) -> Option<Result<ClusterEvent>> {
        loop {
            match self.next_timeout(self.config.block) {
                Ok(Some(e)) => return Some(Ok(e)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The next entries of stream `key` after entry `last`, waiting up to
/// `block_ms` for some (`XREAD COUNT 256 BLOCK … STREAMS key last`).
fn xread(
    link: &mut Link,
    op: &'static str,
    deadline: Instant,
    (key, last): (&str, &str),
    block_ms: u64,
) -> Result<Value> {
    link.run(op, Some(deadline), &|| false, |c| {
        redis::cmd("XREAD")
            .arg("COUNT")
            .arg(256)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(key)
            .arg(last)
            .query(c)
    })
}

/// (entry id, fields) of each entry of an XREAD reply on one stream.
fn stream_entries(reply: &Value) -> Vec<(String, Vec<(String, &Value)>)> {
    let streams: Vec<&Value> = match reply {
        Value::Map(m) => m.iter().map(|(_, v)| v).collect(),
        _ => link::items(reply)
            .iter()
            .filter_map(|s| link::items(s).get(1))
            .collect(),
    };
    let mut out = Vec::new();
    for entries in streams {
        for e in link::items(entries) {
            let f = link::items(e);
            if let (Some(eid), Some(fields)) = (f.first().and_then(link::text), f.get(1)) {
                out.push((eid, link::pairs(fields)));
            }
        }
    }
    out
}
