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
