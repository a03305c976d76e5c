//! Deleting finished jobs: `DELETE /jobs/{id}`, and the retention policy
//! (`WORKER_RETAIN_JOBS`, `WORKER_RETAIN_AGE`), applied as each job ends and
//! once a minute (ages pass without any job ending).
//!
//! The service applies the policy itself rather than through the Worker's
//! own `WorkerConfig::retention`: a job it deletes takes the service's own
//! files with it (legacy units, collected files, its work directory).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use jobcell::{Error, JobId, JobRecord};

use crate::app::App;

/// The policy, and the finished jobs it applies to, in the order they ended.
pub struct Retention {
    keep: Option<usize>,
    age: Option<Duration>,
    /// Kept only with a policy: without one, nothing is deleted and nothing
    /// need be remembered.
    finished: Mutex<VecDeque<(JobId, SystemTime)>>,
}

impl Retention {
    pub fn new(keep: Option<usize>, age: Option<Duration>) -> Retention {
        Retention {
            keep,
            age,
            finished: Mutex::new(VecDeque::new()),
        }
    }

    fn bounded(&self) -> bool {
        self.keep.is_some() || self.age.is_some()
    }

    /// Learns the finished jobs of the state directory, at start.
    pub fn load(&self, records: &[JobRecord]) {
        if !self.bounded() {
            return;
        }
        let mut done: Vec<(JobId, SystemTime)> = records
            .iter()
            .filter(|r| r.state.is_final())
            .map(|r| (r.id.clone(), r.ended.unwrap_or(r.created)))
            .collect();
        done.sort_by_key(|(_, ended)| *ended);
        *self.finished.lock() = done.into();
    }

    /// A job has ended.
    pub fn ended(&self, id: JobId, at: SystemTime) {
        if self.bounded() {
            self.finished.lock().push_back((id, at));
        }
    }

    /// A job was deleted by a client.
    pub fn forget(&self, id: &JobId) {
        if self.bounded() {
            self.finished.lock().retain(|(j, _)| j != id);
        }
    }

    /// Returns jobs taken by [`take_due`](Retention::take_due), oldest first,
    /// to the front of the list.
    fn put_back(&self, jobs: impl DoubleEndedIterator<Item = (JobId, SystemTime)>) {
        let mut g = self.finished.lock();
        for job in jobs.rev() {
            g.push_front(job);
        }
    }

    /// Takes the jobs the policy drops now out of the list.
    fn take_due(&self, now: SystemTime) -> Vec<(JobId, SystemTime)> {
        let mut g = self.finished.lock();
        let mut out = Vec::new();
        while due(
            g.len(),
            g.front().map(|(_, t)| *t),
            self.keep,
            self.age,
            now,
        ) {
            out.push(g.pop_front().expect("a front"));
        }
        out
    }
}

/// Whether the oldest of `finished` jobs (ended at `oldest`) goes: there
/// are more than `keep`, or it ended longer than `age` ago.
pub fn due(
    finished: usize,
    oldest: Option<SystemTime>,
    keep: Option<usize>,
    age: Option<Duration>,
    now: SystemTime,
) -> bool {
    let Some(oldest) = oldest else { return false };
    keep.is_some_and(|k| finished > k)
        || age.is_some_and(|a| now.duration_since(oldest).unwrap_or_default() > a)
}

/// Removes a finished job: its record and log (the Worker's), and what the
/// HTTP layer kept about it. A stream open on it reads on: its reader holds
/// the log file.
///
/// Errors: [`Error::NoSuchJob`], [`Error::NotFinished`] (stop it first), or
/// a file that could not be deleted.
pub fn remove(app: &App, id: &JobId) -> Result<(), Error> {
    app.worker.remove(id)?;
    app.forget(id);
    app.metrics.deleted.inc();
    Ok(())
}

/// Applies the policy now; returns how many jobs went.
pub fn apply(app: &App) -> usize {
    let mut n = 0;
    let mut due = app.retention.take_due(SystemTime::now()).into_iter();
    while let Some((id, ended)) = due.next() {
        match remove(app, &id) {
            Ok(()) => n += 1,
            // A client deleted it meanwhile.
            Err(Error::NoSuchJob { .. }) => {}
            // Just ended: its end is published a moment before the Worker
            // sees it as ended. The next job's end, or the next minute, will do.
            Err(Error::NotFinished { .. }) => {
                app.retention
                    .put_back(std::iter::once((id, ended)).chain(due));
                break;
            }
            Err(e) => tracing::warn!(id = %id, error = %e, "retention could not delete a job"),
        }
    }
    if n > 0 {
        tracing::info!(deleted = n, "retention deleted finished jobs");
    }
    n
}

/// Applies the policy at start and then every `every`.
pub async fn run(app: Arc<App>, every: Duration) {
    loop {
        let a = app.clone();
        let _ = tokio::task::spawn_blocking(move || apply(&a)).await;
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let now = t0 + Duration::from_secs(300);
        let min = Duration::from_secs(60);
        assert!(!due(5, Some(t0), None, None, now), "no policy");
        assert!(!due(0, None, Some(0), Some(min), now), "nothing to drop");
        assert!(due(4, Some(t0), Some(3), None, now));
        assert!(!due(3, Some(t0), Some(3), None, now));
        assert!(due(1, Some(t0), None, Some(min), now), "ended 300 s ago");
        assert!(!due(1, Some(now - min / 2), None, Some(min), now));
        assert!(due(2, Some(now), Some(1), Some(min), now), "either bound");
    }

    #[test]
    fn the_oldest_go_first_until_the_policy_holds() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ids: Vec<JobId> = (0..5).map(|_| JobId::generate()).collect();
        let r = Retention::new(Some(3), Some(Duration::from_secs(200)));
        for (i, id) in ids.iter().enumerate() {
            r.ended(id.clone(), t0 + Duration::from_secs(i as u64 * 60));
        }
        let taken = |at: u64| -> Vec<JobId> {
            let due = r.take_due(t0 + Duration::from_secs(at));
            due.into_iter().map(|(id, _)| id).collect()
        };
        // Ended 300, 240, 180, 120, 60 s ago: the count drops two, the age none more.
        assert_eq!(taken(300), ids[..2]);
        r.forget(&ids[3]);
        // Ended 340, 220 s ago: both too old; put back, they are due again.
        let due = r.take_due(t0 + Duration::from_secs(460));
        assert_eq!(due.len(), 2);
        r.put_back(due.into_iter());
        assert_eq!(taken(460), [ids[2].clone(), ids[4].clone()]);
        assert!(r.finished.lock().is_empty());
        let none = Retention::new(None, None);
        none.ended(ids[0].clone(), t0);
        assert!(none.finished.lock().is_empty(), "no policy, no list");
    }
}
