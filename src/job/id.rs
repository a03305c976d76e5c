//! Job ids: unique across restarts, sortable by creation time, safe as file and cgroup names.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::error::Error;

/// The id of a job: 24 lower-case hex digits (creation time in milliseconds,
/// 32 random bits, and a per-process counter), unique across restarts.
///
/// Ids parsed from text are checked: only ASCII letters, digits, `-` and `_`,
/// 1 to 64 of them, so an id can never name a path outside the job store or
/// the cgroup tree.
///
/// ```
/// use jobcell::JobId;
/// let a = JobId::generate();
/// let b = JobId::generate();
/// assert_ne!(a, b);
/// assert_eq!(a.as_str().parse::<JobId>().unwrap(), a);
/// assert!("../../etc".parse::<JobId>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(Arc<str>);

impl JobId {
    /// A new, unique id.
    pub fn generate() -> JobId {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let mut rnd = [0u8; 4];
        if rustix::rand::getrandom(&mut rnd, rustix::rand::GetRandomFlags::empty()).is_err() {
            // Never fatal: the pid still separates concurrent processes.
            rnd = std::process::id().to_le_bytes();
        }
        let count = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff;
        JobId(
            format!(
                "{:012x}{:08x}{:04x}",
                ms & 0xffff_ffff_ffff,
                u32::from_le_bytes(rnd),
                count
            )
            .into(),
        )
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for JobId {
    type Err = Error;

    fn from_str(s: &str) -> Result<JobId, Error> {
        let bad = |reason| Error::InvalidJobId {
            id: s.chars().take(80).collect(),
            reason,
        };
        if s.is_empty() || s.len() > 64 {
            return Err(bad("must be 1 to 64 characters"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad("only ASCII letters, digits, '-' and '_' are allowed"));
        }
        if s.starts_with('-') {
            return Err(bad("must not start with '-'"));
        }
        Ok(JobId(s.into()))
    }
}

impl TryFrom<String> for JobId {
    type Error = Error;

    fn try_from(s: String) -> Result<JobId, Error> {
        s.parse()
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0.to_string()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.0)
    }
}

impl AsRef<str> for JobId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unique_and_sortable() {
        let ids: Vec<JobId> = (0..1000).map(|_| JobId::generate()).collect();
        let set: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(set.len(), ids.len());
        assert!(ids.iter().all(|i| i.as_str().len() == 24));
    }

    proptest! {
        #[test]
        fn parsed_ids_never_contain_path_syntax(s in "\\PC{0,70}") {
            if let Ok(id) = s.parse::<JobId>() {
                prop_assert!(!id.as_str().contains('/'));
                prop_assert!(!id.as_str().contains(".."));
                prop_assert!(!id.as_str().is_empty() && id.as_str().len() <= 64);
            }
        }
    }
}
