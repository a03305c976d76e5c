//! A worker's state directory: one record and one log per job.
//!
//! ```text
//! state_dir/
//!   lock              flock'ed by the worker that owns the directory
//!   jobs/<id>.json    the job's record, replaced atomically on every state change
//!   logs/<id>.log     the job's output: records of (tag, time, length, bytes)
//! ```
//!
//! A record is written to a temporary file, synced, renamed over the old one,
//! and the directory is synced: after a crash a record is either the old one
//! or the new one, never a mix.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::job::JobId;
use crate::worker::record::{JobRecord, RecoveryIssue};

pub(crate) struct Store {
    jobs: PathBuf,
    logs: PathBuf,
    /// Held for the worker's life: one worker per directory.
    _lock: File,
}

impl Store {
    pub(crate) fn open(dir: &Path) -> Result<Store> {
        let jobs = dir.join("jobs");
        let logs = dir.join("logs");
        for d in [dir, &jobs, &logs] {
            if !d.is_dir() {
                std::fs::create_dir_all(d)
                    .map_err(|e| Error::io("create state directory", d, e))?;
                // A new directory is durable once its parent says so.
                if let Some(parent) = d.parent() {
                    let parent = match parent.as_os_str().is_empty() {
                        true => Path::new("."),
                        false => parent,
                    };
                    File::open(parent)
                        .and_then(|f| f.sync_all())
                        .map_err(|e| Error::io("sync", parent, e))?;
                }
            }
        }
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| Error::io("open", &lock_path, e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                Error::io(
                    "lock (another worker uses this state directory)",
                    &lock_path,
                    std::io::Error::from_raw_os_error(e.raw_os_error()),
                )
            },
        )?;
        Ok(Store {
            jobs,
            logs,
            _lock: lock,
        })
    }

    fn record_path(&self, id: &JobId) -> PathBuf {
        self.jobs.join(format!("{id}.json"))
    }

    pub(crate) fn log_path(&self, id: &JobId) -> PathBuf {
        self.logs.join(format!("{id}.log"))
    }

    /// Writes a record atomically: temporary file, fsync, rename, fsync of the directory.
    pub(crate) fn write(&self, rec: &JobRecord) -> Result<()> {
        let path = self.record_path(&rec.id);
        let tmp = self.jobs.join(format!(".{}.json.tmp", rec.id));
        let json = serde_json::to_vec_pretty(rec).expect("records always serialize");
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&json)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            File::open(&self.jobs)?.sync_all()
        };
        write().map_err(|e| Error::io("write job record", &path, e))
    }

    /// A job's record, if there is a readable one.
    pub(crate) fn read(&self, id: &JobId) -> Option<JobRecord> {
        let bytes = std::fs::read(self.record_path(id)).ok()?;
        serde_json::from_slice::<JobRecord>(&bytes)
            .ok()
            .filter(|r| r.id == *id)
    }

    /// Deletes a job's record and log; the directories are synced, so that a
    /// removed job does not come back after a crash.
    pub(crate) fn remove(&self, id: &JobId) -> Result<()> {
        let rec = self.record_path(id);
        let log = self.log_path(id);
        let gone = |p: &Path| match std::fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", p, e)),
            _ => Ok(()),
        };
        gone(&rec)?;
        gone(&log)?;
        for d in [&self.jobs, &self.logs] {
            File::open(d)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io("sync", d, e))?;
        }
        Ok(())
    }

    /// Reads every record. Unreadable, corrupt or truncated ones are skipped
    /// and reported; leftover temporary files of an interrupted write are removed.
    pub(crate) fn load(&self) -> (Vec<JobRecord>, Vec<RecoveryIssue>) {
        let mut records = Vec::new();
        let mut issues = Vec::new();
        let entries = match std::fs::read_dir(&self.jobs) {
            Ok(e) => e,
            Err(e) => {
                issues.push(RecoveryIssue {
                    path: self.jobs.clone(),
                    problem: e.to_string(),
                });
                return (records, issues);
            }
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<JobRecord>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(rec) if format!("{}.json", rec.id) == name => records.push(rec),
                Ok(rec) => issues.push(RecoveryIssue {
                    path,
                    problem: format!("holds the record of job {} under another name", rec.id),
                }),
                Err(problem) => issues.push(RecoveryIssue {
                    path,
                    problem: format!("corrupt or truncated record: {problem}"),
                }),
            }
        }
        records.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        (records, issues)
    }
}

#[cfg(test)]
mod tests {
    //! The store's own contract, without a worker or a cell: what is on
    //! disk after each call (tests/worker.rs checks it through a Worker).
    use super::*;
    use crate::job::JobState;
    use std::time::{Duration, SystemTime};

    fn record(id: &str, created_ms: u64, state: JobState) -> JobRecord {
        JobRecord {
            id: id.parse().unwrap(),
            command: "sh".into(),
            args: vec!["-c".into(), "exit 3".into()],
            limits: Default::default(),
            state,
            created: SystemTime::UNIX_EPOCH + Duration::from_millis(created_ms),
            started: None,
            ended: None,
            exit: None,
            wall_time: None,
            usage: None,
            rusage: None,
            oom_killed: false,
            pids_limited: false,
            log_error: None,
        }
    }

    const A: &str = "0190a0b0c0d01234abcd0001";
    const B: &str = "0190a0b0c0d01234abcd0002";
    const C: &str = "0190a0b0c0d01234abcd0003";

    #[test]
    fn open_makes_the_tree_and_holds_the_directory() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("a/b/state");
        let s = Store::open(&dir).unwrap();
        assert!(dir.join("jobs").is_dir() && dir.join("logs").is_dir());
        assert!(dir.join("lock").is_file());
        let e = Store::open(&dir)
            .err()
            .expect("a second store on one directory");
        assert!(e.to_string().contains("another worker"), "{e}");
        drop(s);
        Store::open(&dir).expect("free again once the first is dropped");
    }

    #[test]
    fn records_are_written_where_read_and_removed_with_their_log() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let a = record(A, 1_700_000_000_000, JobState::Completed);
        let id = a.id.clone();
        assert_eq!(s.read(&id), None);
        s.write(&a).unwrap();
        let on_disk = d.path().join(format!("jobs/{A}.json"));
        assert_eq!(
            serde_json::from_slice::<JobRecord>(&std::fs::read(&on_disk).unwrap()).unwrap(),
            a
        );
        assert_eq!(s.read(&id), Some(a.clone()));
        let newer = JobRecord {
            state: JobState::Stopped,
            ..a.clone()
        };
        s.write(&newer).unwrap();
        assert_eq!(s.read(&id), Some(newer));
        let names: Vec<_> = std::fs::read_dir(d.path().join("jobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [format!("{A}.json")], "no temporary file is left");

        // A record under the wrong name is not that job's record.
        std::fs::copy(&on_disk, d.path().join(format!("jobs/{B}.json"))).unwrap();
        assert_eq!(s.read(&B.parse().unwrap()), None);

        let log = d.path().join(format!("logs/{A}.log"));
        assert_eq!(s.log_path(&id), log);
        std::fs::write(&log, b"output").unwrap();
        s.remove(&id).unwrap();
        assert!(!on_disk.exists() && !log.exists());
        assert_eq!(s.read(&id), None);
        s.remove(&id).expect("removing what is gone is no error");
    }

    #[test]
    fn a_failed_removal_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        // Something that is not a file where the record would be.
        std::fs::create_dir(d.path().join(format!("jobs/{A}.json"))).unwrap();
        let e = s.remove(&A.parse().unwrap()).expect_err("EISDIR");
        assert!(e.to_string().contains(&format!("{A}.json")), "{e}");
    }

    #[test]
    fn load_reads_every_record_in_order_and_reports_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let jobs = d.path().join("jobs");
        // Written out of order: loaded by creation time, then id.
        let c = record(C, 1_000, JobState::Completed);
        let b = record(B, 2_000, JobState::Stopped);
        let a = record(A, 2_000, JobState::Queued);
        for r in [&c, &b, &a] {
            s.write(r).unwrap();
        }
        std::fs::write(jobs.join(format!(".{A}.json.tmp")), b"{\"half").unwrap();
        std::fs::write(jobs.join("notes.tmp"), b"kept").unwrap();
        std::fs::write(jobs.join("README"), b"not a record").unwrap();
        std::fs::write(jobs.join("0190a0b0c0d01234abcd0009.json"), b"{\"id\":").unwrap();
        std::fs::copy(
            jobs.join(format!("{A}.json")),
            jobs.join("0190a0b0c0d01234abcd0008.json"),
        )
        .unwrap();

        let (records, mut issues) = s.load();
        assert_eq!(records, [c, a, b]);
        issues.sort_by(|x, y| x.path.cmp(&y.path));
        let issues: Vec<_> = issues
            .iter()
            .map(|i| (i.path.file_name().unwrap().to_owned(), i.problem.clone()))
            .collect();
        assert_eq!(issues.len(), 2, "{issues:?}");
        assert_eq!(issues[0].0, "0190a0b0c0d01234abcd0008.json");
        assert!(
            issues[0]
                .1
                .contains(&format!("record of job {A} under another name")),
            "{issues:?}"
        );
        assert_eq!(issues[1].0, "0190a0b0c0d01234abcd0009.json");
        assert!(
            issues[1].1.starts_with("corrupt or truncated record"),
            "{issues:?}"
        );
        assert!(
            !jobs.join(format!(".{A}.json.tmp")).exists(),
            "an interrupted write's temporary file is removed"
        );
        assert!(jobs.join("notes.tmp").exists() && jobs.join("README").exists());
    }
}
