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
//! // For code you did not write; Sandbox::new() has no limits, for work you trust.
//! let mut sandbox = Sandbox::untrusted();
//! sandbox.hostname("cell")
//!        .bind_rw(workdir.path(), "/work")
//!        .tmpfs("/tmp", 64 << 20)
//!        .limits(Limits { memory: Some(256 << 20), pids: Some(64), ..Limits::conservative() });
//! let job = sandbox.spawn(Command::new("sh").args(["-c", "echo hi; echo oops >&2"]))?;
//! for chunk in job.logs() {
//!     print!("{:?}: {}", chunk.stream, String::from_utf8_lossy(&chunk.data));
//! }
//! let outcome = job.wait()?;
//! assert_eq!(outcome.code(), Some(0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod cgroup;
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub mod cluster;
mod error;
pub mod fs;
pub mod host;
mod job;
mod json;
#[cfg(feature = "landlock")]
mod landlock;
mod path;
mod sandbox;
#[cfg(feature = "seccomp")]
mod seccomp;
mod spawn;
mod spec;
mod sys;
pub mod units;
mod worker;

/// The guides' Rust examples, compiled and run by `cargo test` as doc tests
/// so that they cannot drift from the code. Every Markdown page of the
/// crate is listed (`tests/docs.rs` checks); blocks that must not run say
/// `no_run`, and blocks that are not Rust name their language. They use
/// the default features, and `docs/cluster.md` the feature `cluster`.
#[cfg(all(doctest, feature = "seccomp", feature = "landlock"))]
mod guides {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../CHANGELOG.md")]
    struct Changelog;
    #[doc = include_str!("../docs/architecture.md")]
    struct Architecture;
    #[doc = include_str!("../docs/cgroups.md")]
    struct Cgroups;
    #[cfg(feature = "cluster")]
    #[doc = include_str!("../docs/cluster.md")]
    struct Cluster;
    #[doc = include_str!("../docs/jobs.md")]
    struct Jobs;
    #[doc = include_str!("../docs/recipes.md")]
    struct Recipes;
    #[doc = include_str!("../docs/security.md")]
    struct Security;
    #[doc = include_str!("../docs/service.md")]
    struct Service;
    #[doc = include_str!("../docs/testing.md")]
    struct Testing;
    #[doc = include_str!("../docs/troubleshooting.md")]
    struct Troubleshooting;
}

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

    /// A fault to inject into a sandbox's spawns, for the fault tests.
    #[derive(Clone, Copy, Debug)]
    pub enum Fault {
        /// The cell's setup hangs when it reaches this stage (until the
        /// setup timeout kills it).
        StallAt(crate::Stage),
        /// The spawner kills itself (SIGKILL) at this step of serving the spawn.
        KillSpawner(SpawnerStep),
        /// The spawner hangs when it receives the spawn.
        HangSpawner,
        /// The host clones the cell itself, as on its fallback paths.
        CloneFromHost,
    }

    /// Steps of the spawner's serving a spawn.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum SpawnerStep {
        /// On receiving the request.
        OnReceipt,
        /// Once the request's descriptors are in place, before the clone.
        BeforeClone,
        /// Right after the clone, before it releases the cell.
        AfterClone,
        /// After the release, before it answers.
        BeforeAnswer,
    }

    /// Makes every spawn of `sandbox` meet `fault` (faults add up).
    pub fn inject(sandbox: &mut crate::Sandbox, fault: Fault) {
        use crate::spawn::spawner::Fault as F;
        let f = &mut sandbox.faults;
        match fault {
            Fault::StallAt(stage) => f.stall = stage as u32,
            Fault::KillSpawner(step) => {
                f.spawner = match step {
                    SpawnerStep::OnReceipt => F::DIE_ON_RECEIPT,
                    SpawnerStep::BeforeClone => F::DIE_BEFORE_CLONE,
                    SpawnerStep::AfterClone => F::DIE_AFTER_CLONE,
                    SpawnerStep::BeforeAnswer => F::DIE_BEFORE_ANSWER,
                }
            }
            Fault::HangSpawner => f.spawner = F::HANG,
            Fault::CloneFromHost => f.clone_from_host = true,
        }
    }

    /// Makes the work done ahead start as it does for a program that spawns
    /// again (a process's first spawn asks for none; see
    /// `docs/architecture.md`, *Work done ahead*).
    pub fn want_work_ahead() {
        crate::spawn::want_work_ahead();
    }

    /// How many jobs `pool` ran in cells made ahead, and in fresh cells.
    pub fn pool_counts(pool: &crate::Pool) -> (u64, u64) {
        pool.counts()
    }

    /// Makes every cgroup v1 ready directory (made ahead of the jobs that
    /// take them) take `delay` longer to make.
    pub fn delay_ready_cgroups(delay: std::time::Duration) {
        crate::cgroup::delay_ready_dirs(delay);
    }

    /// Makes every root skeleton (built ahead by the preparation thread)
    /// take `delay` longer to build.
    pub fn delay_skeletons(delay: std::time::Duration) {
        crate::spawn::prep::delay_skeletons(delay);
    }

    /// Makes every root skeleton build fail (spawns then build their root
    /// inline, as after a build that failed for real), or succeed again.
    pub fn fail_skeletons(on: bool) {
        crate::spawn::prep::fail_skeletons(on);
    }

    /// Makes the thread that refills pools hold every cell it made `delay`
    /// longer before the pool gets it.
    pub fn delay_pool_cells(delay: std::time::Duration) {
        crate::worker::delay_made_cells(delay);
    }

    /// Makes the setup of the job `id` stall for `time` before its cell is
    /// made (tests of what goes on meanwhile).
    pub fn stall_setup(id: &crate::JobId, time: std::time::Duration) {
        crate::worker::stall::set(id, time);
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
            self.0.append(crate::Stream::Stdout, data);
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
    Command, IdMap, Limits, Network, Output, Rlimit, Sandbox, Stdin, DEFAULT_SETUP_TIMEOUT,
    DEFAULT_TMP_SIZE, MIN_MEMORY, TMPFS_BYTES_PER_INODE, UNLIMITED, UNTRUSTED_FILE_SIZE,
};
#[cfg(feature = "seccomp")]
pub use seccomp::{Seccomp, SeccompAction, SeccompPolicy, DEFAULT_SOCKET_FAMILIES};
pub use spec::{Content, JobSpec};
pub use worker::{
    JobRecord, Pool, RecoveryIssue, Retention, StatusEvent, WhenFull, Worker, WorkerConfig,
    MAX_POOL_CELLS,
};
