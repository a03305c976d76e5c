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

/// Durations in JSON as whole milliseconds, rounded down (measurements:
/// `wall_time_ms`). Reading also takes the fractional milliseconds that
/// development builds before 0.1.0 wrote (`21.456279000000002`), since
/// state directories outlive upgrades.
pub(crate) mod dur_ms {
    use serde::{de, Deserializer, Serializer};
    use std::fmt;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_u64(Millis)
    }

    /// Whole or fractional milliseconds, never negative.
    struct Millis;

    impl de::Visitor<'_> for Millis {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a non-negative number of milliseconds")
        }

        fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Duration, E> {
            Ok(Duration::from_millis(ms))
        }

        fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Duration, E> {
            u64::try_from(ms)
                .map(Duration::from_millis)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(ms), &self))
        }

        fn visit_f64<E: de::Error>(self, ms: f64) -> Result<Duration, E> {
            if ms < 0.0 {
                return Err(E::invalid_value(de::Unexpected::Float(ms), &self));
            }
            Duration::try_from_secs_f64(ms / 1000.0)
                .map_err(|_| E::invalid_value(de::Unexpected::Float(ms), &self))
        }
    }
}

/// `Option<Duration>` as [`dur_ms`] does it; `null` is `None`.
pub(crate) mod opt_dur_ms {
    use serde::{de, Deserializer, Serializer};
    use std::fmt;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::dur_ms::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        d.deserialize_option(OptMillis)
    }

    struct OptMillis;

    impl<'de> de::Visitor<'de> for OptMillis {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a non-negative number of milliseconds, or null")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            super::dur_ms::deserialize(d).map(Some)
        }
    }
}

/// Limits' durations (`wall_time_ms`, `cpu_time_ms`) as [`opt_dur_ms`]
/// does it, but rounded up: a limit written out and read back is never
/// tighter than the one set, nor zero.
pub(crate) mod opt_limit_ms {
    use serde::{Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => {
                let ms = d.as_nanos().div_ceil(1_000_000);
                s.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::opt_dur_ms::deserialize(d)
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
}
