//! Deleting finished jobs: `DELETE /jobs/{id}`, and the retention policy
//! (`WORKER_RETAIN_JOBS`, `WORKER_RETAIN_AGE`) applied once a minute.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jobcell::{Error, JobId};

use crate::app::App;

/// Removes a finished job: its record and log (the Worker's), and what the
/// HTTP layer kept about it.
pub fn remove(app: &App, id: &JobId) -> Result<(), Error> {
    worker_remove(app, id)?;
    app.forget(id);
    app.metrics.deleted.inc();
    Ok(())
}

/// `Worker::remove` comes with the Worker's retention (issue 11); until the
/// library has it, a job cannot leave the Worker's list.
fn worker_remove(app: &App, id: &JobId) -> Result<(), Error> {
    let _ = (app, id);
    Err(Error::Refused {
        reason: "deleting jobs needs Worker::remove, which this build of jobcell lacks".into(),
    })
}

/// The finished jobs the policy drops: beyond the newest `keep` finished
/// ones, or ended longer than `age` ago.
pub fn expired(
    finished: &[(JobId, SystemTime)],
    keep: Option<usize>,
    age: Option<Duration>,
    now: SystemTime,
) -> Vec<JobId> {
    // `finished` is oldest first.
    let over = keep.map_or(0, |k| finished.len().saturating_sub(k));
    finished
        .iter()
        .enumerate()
        .filter(|(i, (_, ended))| {
            *i < over || age.is_some_and(|a| now.duration_since(*ended).unwrap_or_default() > a)
        })
        .map(|(_, (id, _))| id.clone())
        .collect()
}

/// Applies the retention policy now; returns how many jobs went.
pub fn sweep(app: &App) -> usize {
    let c = &app.config;
    if c.retain_jobs.is_none() && c.retain_age.is_none() {
        return 0;
    }
    let finished: Vec<(JobId, SystemTime)> = app
        .worker
        .list()
        .into_iter()
        .filter(|r| r.state.is_final())
        .map(|r| (r.id, r.ended.unwrap_or(r.created)))
        .collect();
    let mut n = 0;
    for id in expired(&finished, c.retain_jobs, c.retain_age, SystemTime::now()) {
        match remove(app, &id) {
            Ok(()) => n += 1,
            Err(e) => {
                tracing::warn!(id = %id, error = %e, "retention could not delete a job");
                break;
            }
        }
    }
    if n > 0 {
        tracing::info!(deleted = n, "retention deleted finished jobs");
    }
    n
}

/// Runs the sweep at start and then every `every`.
pub async fn run(app: Arc<App>, every: Duration) {
    loop {
        let a = app.clone();
        let _ = tokio::task::spawn_blocking(move || sweep(&a)).await;
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ids: Vec<JobId> = (0..5).map(|_| JobId::generate()).collect();
        let finished: Vec<(JobId, SystemTime)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), t0 + Duration::from_secs(i as u64 * 60)))
            .collect();
        let now = t0 + Duration::from_secs(300);
        assert!(expired(&finished, None, None, now).is_empty());
        assert_eq!(expired(&finished, Some(3), None, now), ids[..2]);
        assert_eq!(expired(&finished, Some(10), None, now), Vec::<JobId>::new());
        // Ended 300, 240, 180, 120, 60 s ago.
        assert_eq!(
            expired(&finished, None, Some(Duration::from_secs(200)), now),
            ids[..2]
        );
        assert_eq!(
            expired(&finished, Some(4), Some(Duration::from_secs(100)), now),
            ids[..4]
        );
    }
}
