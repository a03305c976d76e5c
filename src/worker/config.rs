//! How a worker is configured: its concurrency cap and queue, its state
//! directory, its log budget, how it stops jobs and how long it keeps them.

use std::path::PathBuf;
use std::time::Duration;

/// What a worker does when all its slots are busy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenFull {
    /// Queue the job; it starts when a slot frees up, in submission order (the default).
    #[default]
    Queue,
    /// Refuse it: `submit` returns [`Error::Refused`](crate::Error::Refused).
    Refuse,
}

/// How long a worker keeps finished jobs (their records and logs).
///
/// The default keeps every record, but a finished job holds no descriptor
/// and no log memory either way: with a state directory its record and log
/// are only on disk; without one, its record stays in memory (about 1 KiB)
/// and its log in a private temporary directory, until retention removes it.
/// Retention is applied when the worker starts, on `submit` and `list`, and
/// by the worker's starter thread right after a job ends.
///
/// ```
/// use std::time::Duration;
/// let keep = jobcell::Retention {
///     max_finished: Some(10_000),
///     max_age: Some(Duration::from_secs(7 * 24 * 3600)),
/// };
/// let config = jobcell::WorkerConfig { retention: keep, ..Default::default() };
/// # let _ = config;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many finished jobs; the ones that ended first go first.
    pub max_finished: Option<usize>,
    /// Keep a finished job at most this long after it ended.
    pub max_age: Option<Duration>,
}

impl Retention {
    pub(super) fn bounded(&self) -> bool {
        self.max_finished.is_some() || self.max_age.is_some()
    }
}

/// How a [`Worker`](crate::Worker) runs its jobs.
///
/// ```
/// let config = jobcell::WorkerConfig {
///     max_concurrent: Some(8),
///     state_dir: Some("/var/lib/jobcell".into()),
///     ..Default::default()
/// };
/// assert_eq!(config.stop_grace, std::time::Duration::from_secs(5));
/// ```
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// How many jobs may run at once; `None` for no cap.
    pub max_concurrent: Option<usize>,
    /// What happens to jobs beyond the cap.
    pub when_full: WhenFull,
    /// At most this many queued jobs (`None`: no bound); more are refused.
    pub max_queued: Option<usize>,
    /// Where records and logs are persisted; `None` keeps records in memory
    /// and logs in a private temporary directory, both gone with the worker.
    pub state_dir: Option<PathBuf>,
    /// Bytes of a running job's log kept in memory, bookkeeping included;
    /// older output is read from the job's log file. A finished job's log is
    /// only in its file.
    pub log_memory_budget: usize,
    /// How long [`Worker::stop`](crate::Worker::stop) waits after SIGTERM before it SIGKILLs the cell.
    pub stop_grace: Duration,
    /// How long finished jobs are kept.
    pub retention: Retention,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            max_concurrent: None,
            when_full: WhenFull::Queue,
            max_queued: None,
            state_dir: None,
            log_memory_budget: crate::job::DEFAULT_MEMORY_BUDGET,
            stop_grace: Duration::from_secs(5),
            retention: Retention::default(),
        }
    }
}
