//! Many machines, one queue: jobs shared through Redis Streams (feature
//! `cluster`).
//!
//! A [`Node`] runs a local [`Worker`](crate::Worker) and takes jobs from a
//! stream with a consumer group, only while it has a free slot. A
//! [`Client`], on any machine, submits jobs, reads their state and records,
//! stops them wherever they run, follows their logs and subscribes to their
//! events. The data layout, the delivery semantics, the failure modes and
//! the memory each job costs in Redis are described in `docs/cluster.md`.
//!
//! **Delivery.** At least once, with a per-job attempt counter, and never
//! two live attempts of one job at once: a job's queue entry belongs to one
//! node at a time, every write of an attempt is fenced on (node, attempt),
//! and a node only takes over an entry whose owner has had no heartbeat for
//! a whole lease. A node that was cut off from Redis longer than a lease
//! while others were not learns that it was replaced at its next contact
//! and kills its attempt; `docs/cluster.md` tells when that can overlap.
//!
//! ```no_run
//! use jobcell::cluster::{Client, Node, NodeConfig};
//! use jobcell::JobSpec;
//!
//! let url = "redis://127.0.0.1:6379";
//! let node = Node::start(NodeConfig::new(url))?;
//! let client = Client::connect(url)?;
//! let mut spec = JobSpec::new("echo");
//! spec.args = vec!["hello".into()];
//! let id = client.submit(&spec)?;
//! let job = client.wait(&id, std::time::Duration::from_secs(30))?;
//! assert_eq!(job.state, jobcell::JobState::Completed);
//! let out: Vec<u8> = client.logs(&id)?.map(|e| e.map(|e| e.data)).collect::<Result<Vec<_>, _>>()?.concat();
//! assert_eq!(out, b"hello\n");
//! node.shutdown(std::time::Duration::from_secs(10));
//! # Ok::<(), jobcell::Error>(())
//! ```

mod client;
mod link;
mod node;
mod scripts;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

pub use client::{Client, ClientConfig, EventStream, LogFollower};
pub use node::{Node, NodeConfig, NodeStats};

use crate::job::{JobId, JobState, Stream};
use crate::spec::{Content, JobSpec};
use crate::worker::JobRecord;

/// The consumer group every node reads the queue through.
const GROUP: &str = "nodes";

/// Redis key names under a prefix (see `docs/cluster.md`, *Data layout*).
#[derive(Clone, Debug)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }
    fn queue(&self) -> String {
        format!("{}:queue", self.prefix)
    }
    fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }
    fn jobs(&self) -> String {
        format!("{}:jobs", self.prefix)
    }
    fn stats(&self) -> String {
        format!("{}:stats", self.prefix)
    }
    fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
    fn job(&self, id: &str) -> String {
        format!("{}:job:{id}", self.prefix)
    }
    fn log(&self, id: &str) -> String {
        format!("{}:log:{id}", self.prefix)
    }
    fn heartbeat(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }
    fn stops(&self, node: &str) -> String {
        format!("{}:stops:{node}", self.prefix)
    }
}

/// How often a job may be attempted when the nodes running it are lost.
///
/// A job whose node dies (no heartbeat for a lease) is run again by another
/// node while it has attempts left, and otherwise ends
/// `Failed { reason: "node lost" }`. A job that ends by itself, however it
/// ends, is never re-run.
///
/// ```
/// let once = jobcell::cluster::Retry::never();
/// assert_eq!(once.max_attempts, 1);
/// assert_eq!(jobcell::cluster::Retry::default().max_attempts, 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
}

impl Retry {
    /// One attempt: a job whose node is lost fails.
    pub fn never() -> Retry {
        Retry { max_attempts: 1 }
    }
}

impl Default for Retry {
    fn default() -> Retry {
        Retry { max_attempts: 3 }
    }
}

/// A job as the cluster knows it: [`Client::get`] and [`Client::list`].
///
/// ```no_run
/// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
/// # let id: jobcell::JobId = "0190a0b0c0d01234abcd0001".parse()?;
/// let job = client.get(&id)?;
/// if let Some(record) = &job.record {
///     println!("{} ended {:?} after {} attempt(s)", job.id, record.state, job.attempt);
/// }
/// # Ok::<(), jobcell::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterJob {
    /// The job's id (the cluster's, not a node's local one).
    pub id: JobId,
    /// What was submitted.
    pub spec: JobSpec,
    /// Its state; a final state is the verdict (then `record` is set).
    pub state: JobState,
    /// Attempts started so far (0 while it waits in the queue).
    pub attempt: u32,
    /// Its retry policy.
    pub max_attempts: u32,
    /// The node running (or that last ran) it.
    pub node: Option<String>,
    /// When it was submitted.
    pub created: SystemTime,
    /// True once a stop was requested.
    pub stop_requested: bool,
    /// The final record, written by the node that ran the last attempt.
    pub record: Option<JobRecord>,
    /// The `collect` paths read back after the job ended: each its content,
    /// or why it could not be read.
    pub files: BTreeMap<String, Result<Content, String>>,
}

/// A state change of a cluster job, as [`Client::events`] delivers it.
///
/// ```no_run
/// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
/// for event in client.events()? {
///     let event = event?;
///     println!("{} is {:?} (attempt {} on {:?})", event.id, event.state, event.attempt, event.node);
/// }
/// # Ok::<(), jobcell::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterEvent {
    /// The job.
    pub id: JobId,
    /// Its new state.
    pub state: JobState,
    /// The attempt it concerns (0: queued).
    pub attempt: u32,
    /// The node that made the change, if any.
    pub node: Option<String>,
    /// The event's entry id in the events stream (resume after it with
    /// [`Client::events_after`]).
    pub entry: String,
}

/// A chunk of a job's output, as [`Client::logs`] reads it from Redis.
///
/// ```no_run
/// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
/// # let id: jobcell::JobId = "0190a0b0c0d01234abcd0001".parse()?;
/// for entry in client.logs(&id)? {
///     let entry = entry?;
///     print!("{}", String::from_utf8_lossy(&entry.data));
/// }
/// # Ok::<(), jobcell::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogEntry {
    /// The attempt that wrote it: a re-run starts its output again at offset 0.
    pub attempt: u32,
    /// stdout or stderr.
    pub stream: Stream,
    /// Its first byte's offset in the attempt's combined output.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Figures of the whole cluster, read from Redis: [`Client::stats`].
///
/// ```no_run
/// # let client = jobcell::cluster::Client::connect("redis://127.0.0.1")?;
/// let s = client.stats()?;
/// println!("{} waiting, {} running on {} nodes", s.waiting, s.pending, s.nodes.len());
/// # Ok::<(), jobcell::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Jobs in the queue that no node has taken yet.
    pub waiting: u64,
    /// Jobs a node has taken and not finished (the consumer group's pending entries).
    pub pending: u64,
    /// Pending entries per node (consumer), dead nodes included until their
    /// entries are claimed.
    pub pending_by_node: BTreeMap<String, u64>,
    /// Nodes with a live heartbeat.
    pub nodes: Vec<String>,
    /// Jobs submitted, ever.
    pub submitted: u64,
    /// Jobs finished (a final record written), ever.
    pub finished: u64,
    /// Entries taken over from lost nodes.
    pub claims: u64,
    /// Attempts after the first (re-runs after a lost node).
    pub reruns: u64,
    /// Jobs failed as "node lost" (no attempts left).
    pub lost: u64,
}

/// Keeps at most `Duration::MAX`-safe milliseconds.
fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

fn unix_ms(t: SystemTime) -> u64 {
    millis(t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default())
}

/// A job state as the records write it (`{"state":"failed","reason":…}`).
fn state_json(state: &JobState) -> String {
    serde_json::to_string(state).unwrap_or_else(|_| r#"{"state":"failed"}"#.into())
}

fn parse_state(s: &str) -> JobState {
    serde_json::from_str(s).unwrap_or(JobState::Failed {
        reason: format!("unreadable state in redis: {s}"),
    })
}
