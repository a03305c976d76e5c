//! What a worker remembers of a job, and what it announces.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::job::{Exit, JobId, JobState, ResourceUsage, Usage};
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
    #[serde(rename = "created_ms", with = "time_ms")]
    pub created: SystemTime,
    /// When its program started.
    #[serde(
        rename = "started_ms",
        with = "opt_time_ms",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub started: Option<SystemTime>,
    /// When it ended.
    #[serde(
        rename = "ended_ms",
        with = "opt_time_ms",
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
        with = "opt_dur_ms",
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
    /// Set when the job's log file is incomplete: from which byte on its
    /// output was not stored, and why (a full disk, say). The stored part is
    /// an exact prefix of the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_error: Option<String>,
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

pub(crate) mod time_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, SystemTime};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        s.serialize_u64(ms)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(SystemTime::UNIX_EPOCH + Duration::from_millis(u64::deserialize(d)?))
    }
}

pub(crate) mod opt_time_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, SystemTime};

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::time_ms::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
    }
}

pub(crate) mod opt_dur_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64() * 1000.0),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<f64>::deserialize(d)? {
            Some(ms) if ms.is_finite() && ms >= 0.0 => {
                Ok(Some(Duration::from_secs_f64(ms / 1000.0)))
            }
            Some(_) => Err(serde::de::Error::custom(
                "a duration must be a non-negative number of milliseconds",
            )),
            None => Ok(None),
        }
    }
}

pub(crate) mod dur_us {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_micros() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}
