//! What a worker remembers of a job, and what it announces.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::job::log::Log;
use crate::job::{
    Exit, JobId, JobMeta, JobShared, JobState, Outcome, ResourceUsage, Snapshot, Usage,
};
use crate::sandbox::Limits;

/// Everything a worker records about a job: written to the state directory on
/// every state change, returned by [`Worker::get`](crate::Worker::get) and
/// [`Worker::list`](crate::Worker::list).
///
/// In JSON the state is flattened: `{"id": …, "state": "failed", "reason": "exit code 3", …}`.
///
/// ```
/// # use jobcell::{JobRecord, JobState};
/// let json = r#"{"id":"0190a0b0c0d01234abcd0001","command":"echo","args":["hi"],
///   "state":"completed","created_ms":1700000000000}"#;
/// let rec: JobRecord = serde_json::from_str(json).unwrap();
/// assert_eq!(rec.state, JobState::Completed);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JobRecord {
    /// The job's id.
    pub id: JobId,
    /// The program as given.
    pub command: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// The limits it ran under.
    #[serde(default)]
    pub limits: Limits,
    /// Its state; final states are the verdict.
    #[serde(flatten)]
    pub state: JobState,
    /// When it was submitted.
    #[serde(rename = "created_ms", with = "crate::json::time_ms")]
    pub created: SystemTime,
    /// When its program started.
    #[serde(
        rename = "started_ms",
        with = "crate::json::opt_time_ms",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub started: Option<SystemTime>,
    /// When it ended.
    #[serde(
        rename = "ended_ms",
        with = "crate::json::opt_time_ms",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ended: Option<SystemTime>,
    /// How its main process ended, if it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<Exit>,
    /// From start to end.
    #[serde(
        rename = "wall_time_ms",
        with = "crate::json::opt_dur_ms",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wall_time: Option<Duration>,
    /// Final usage measured by its cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Final usage according to the kernel's rusage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rusage: Option<ResourceUsage>,
    /// True when the kernel's OOM killer killed a process of the job.
    #[serde(default)]
    pub oom_killed: bool,
    /// True when the kernel refused the job a fork at its pids limit
    /// (false in records written before the field existed).
    #[serde(default)]
    pub pids_limited: bool,
    /// Set when the job's log file is incomplete: from which byte on its
    /// output was not stored, and why (a full disk, say). The stored part is
    /// an exact prefix of the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_error: Option<String>,
}

impl JobRecord {
    /// The record of `job` as `now` describes it.
    pub(crate) fn of(job: &JobShared, now: &Snapshot) -> JobRecord {
        let o = now.outcome.as_ref();
        JobRecord {
            id: job.id.clone(),
            command: job.meta.command.clone(),
            args: job.meta.args.clone(),
            limits: job.meta.limits.clone(),
            state: now.state.clone(),
            created: job.created,
            started: now.started,
            ended: now.ended,
            exit: o.and_then(|o| o.exit),
            wall_time: o.map(|o| o.wall_time),
            usage: o.and_then(|o| o.usage),
            rusage: o.filter(|o| o.exit.is_some()).map(|o| o.rusage),
            oom_killed: o.is_some_and(|o| o.oom_killed),
            pids_limited: o.is_some_and(|o| o.pids_limited),
            log_error: now.log_error.clone(),
        }
    }

    /// The record of `job` as it stands.
    pub(crate) fn now(job: &JobShared) -> JobRecord {
        JobRecord::of(job, &job.snapshot())
    }

    /// The finished job this record describes, with its output in `log`.
    pub(crate) fn restore(&self, log: Log) -> Arc<JobShared> {
        let outcome = Outcome {
            state: self.state.clone(),
            exit: self.exit,
            wall_time: self.wall_time.unwrap_or_default(),
            rusage: self.rusage.unwrap_or_default(),
            usage: self.usage,
            oom_killed: self.oom_killed,
            pids_limited: self.pids_limited,
        };
        let meta = JobMeta {
            command: self.command.clone(),
            args: self.args.clone(),
            limits: self.limits.clone(),
        };
        let past = Snapshot {
            state: self.state.clone(),
            outcome: Some(outcome),
            started: self.started,
            ended: self.ended,
            log_error: self.log_error.clone(),
        };
        JobShared::restored(self.id.clone(), meta, self.created, past, log)
    }
}

/// A state change of a job, as delivered by [`Worker::subscribe`](crate::Worker::subscribe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusEvent {
    /// The job.
    pub id: JobId,
    /// Its new state.
    pub state: JobState,
    /// When it changed.
    pub time: SystemTime,
}

/// A problem found while loading a worker's state directory: the file was
/// skipped, the worker started anyway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryIssue {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

impl std::fmt::Display for RecoveryIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_whole_numbers() {
        let rec = JobRecord {
            id: "0190a0b0c0d01234abcd0001".parse().unwrap(),
            command: "sh".into(),
            args: vec![],
            limits: Limits {
                wall_time: Some(Duration::from_micros(1500)),
                cpu_time: Some(Duration::from_nanos(1)),
                ..Limits::default()
            },
            state: JobState::Completed,
            created: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            started: None,
            ended: None,
            exit: Some(Exit::Code(0)),
            wall_time: Some(Duration::from_micros(21_456_279)),
            usage: None,
            rusage: None,
            oom_killed: false,
            pids_limited: false,
            log_error: None,
        };
        let v = serde_json::to_value(&rec).unwrap();
        assert_eq!(v["wall_time_ms"], 21_456, "{v}");
        // Limits round up: never tighter than asked, never zero.
        assert_eq!(v["limits"]["wall_time_ms"], 2, "{v}");
        assert_eq!(v["limits"]["cpu_time_ms"], 1, "{v}");
        let text = v.to_string();
        assert!(!text.contains('.'), "no fractions: {text}");
        let back: JobRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back.wall_time, Some(Duration::from_millis(21_456)));
        assert_eq!(back.limits.wall_time, Some(Duration::from_millis(2)));
    }

    #[test]
    fn records_with_fractional_milliseconds_are_read() {
        // Development builds before 0.1.0 wrote fractional milliseconds.
        let old = r#"{"id":"0190a0b0c0d01234abcd0001","command":"sh","args":[],
            "limits":{"wall_time_ms":2500.0,"cpu_time_ms":0.5},"state":"completed",
            "created_ms":1700000000000,"exit":{"code":0},"wall_time_ms":21.456279000000002}"#;
        let rec: JobRecord = serde_json::from_str(old).unwrap();
        assert_eq!(rec.wall_time.unwrap().as_micros(), 21_456);
        assert_eq!(rec.limits.wall_time, Some(Duration::from_millis(2500)));
        assert_eq!(rec.limits.cpu_time, Some(Duration::from_micros(500)));
        let null = old.replace("21.456279000000002", "null");
        assert_eq!(
            serde_json::from_str::<JobRecord>(&null).unwrap().wall_time,
            None
        );
        for bad in ["-1", "-2.5", "1e300", "\"5\""] {
            let json = old.replace("21.456279000000002", bad);
            assert!(serde_json::from_str::<JobRecord>(&json).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_recovery_issue_names_the_file_and_the_problem() {
        let i = RecoveryIssue {
            path: "/var/lib/w/jobs/x.json".into(),
            problem: "corrupt or truncated record: EOF".into(),
        };
        assert_eq!(
            i.to_string(),
            "/var/lib/w/jobs/x.json: corrupt or truncated record: EOF"
        );
    }
}
