//! # jobcell
//!
//! Run untrusted commands in isolated, resource-limited cells on Linux.
//!
//! A cell is a process tree in fresh user, PID, mount, UTS, IPC, network and
//! cgroup namespaces, with a minimal read-only root built from bind mounts
//! and tmpfs, entered with `pivot_root`. Its user never maps to host root.
//! Limits are enforced by cgroups (v2 or v1) and by the supervisor.
//!
//! ```no_run
//! use jobcell::{Sandbox, Command, Limits, Stream};
//!
//! let workdir = tempfile::tempdir()?;
//! let mut sandbox = Sandbox::new();
//! sandbox.hostname("cell")
//!        .bind_rw(workdir.path(), "/work")
//!        .tmpfs("/tmp", 64 << 20)
//!        .limits(Limits { memory: Some(256 << 20), pids: Some(64), ..Default::default() });
//! let job = sandbox.spawn(Command::new("sh").args(["-c", "echo hi; echo oops >&2"]))?;
//! for chunk in job.logs() {
//!     print!("{:?}: {}", chunk.stream, String::from_utf8_lossy(&chunk.data));
//! }
//! let outcome = job.wait()?;
//! assert_eq!(outcome.code(), Some(0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod cgroup;
mod error;
pub mod fs;
pub mod host;
mod job;
#[cfg(feature = "landlock")]
mod landlock;
mod sandbox;
#[cfg(feature = "seccomp")]
mod seccomp;
mod spawn;
mod spec;
mod sys;
pub mod units;
mod worker;

pub use cgroup::sweep_stale_cgroups;
pub use error::{Errno, Error, Result, Stage};

/// Support for jobcell's own tests; not part of the API.
#[doc(hidden)]
pub mod __private {
    /// Waits for the background caches to settle and returns the descriptors
    /// they hold (pooled network namespaces, skeleton clones), so leak checks
    /// can tell them from leaks.
    pub fn cached_descriptors() -> Vec<std::os::fd::RawFd> {
        crate::spawn::cached_descriptors()
    }

    /// The process id of the spawner cells are cloned from (see
    /// `spawn/spawner.rs`), starting it if needed; `None` where there is none.
    pub fn spawner_pid() -> Option<i32> {
        crate::spawn::spawner_pid()
    }

    /// A job log without a job, for the log fan-out benchmark.
    pub struct BenchLog(std::sync::Arc<crate::job::log::Log>);

    impl BenchLog {
        /// An in-memory log with the default budget.
        pub fn new() -> BenchLog {
            BenchLog(std::sync::Arc::new(crate::job::log::Log::new(
                crate::job::DEFAULT_MEMORY_BUDGET,
            )))
        }

        /// Appends one chunk, as the reactor does.
        pub fn append(&self, data: &[u8]) {
            let _ = self.0.append(crate::Stream::Stdout, data);
        }

        /// Ends the log.
        pub fn close(&self) {
            self.0.close();
        }

        /// A new reader from the start.
        pub fn reader(&self) -> crate::LogReader {
            crate::LogReader::new(self.0.clone())
        }
    }

    impl Default for BenchLog {
        fn default() -> Self {
            BenchLog::new()
        }
    }
}
pub use job::{
    Chunk, Exit, JobHandle, JobId, JobState, LogReader, Outcome, ReadTimeout, ResourceUsage,
    Stream, TimeLimit, Usage, DEFAULT_MEMORY_BUDGET,
};
#[cfg(feature = "landlock")]
pub use landlock::{FsAccess, Landlock};
pub use sandbox::{
    Command, IdMap, Limits, Network, Output, Rlimit, Sandbox, Stdin, DEFAULT_TMP_SIZE, MIN_MEMORY,
    UNLIMITED,
};
#[cfg(feature = "seccomp")]
pub use seccomp::{Seccomp, SeccompAction, SeccompPolicy};
pub use spec::{Content, JobSpec};
pub use worker::{JobRecord, RecoveryIssue, StatusEvent, WhenFull, Worker, WorkerConfig};
