//! What a job's cgroup measures, in this layer's own terms (the job layer
//! turns it into the public `Usage`).

use std::time::Duration;

/// Usage read from a job's cgroup files: every process of the job together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// CPU time in user mode and in the kernel.
    pub cpu_user: Duration,
    pub cpu_system: Duration,
    /// Memory charged now, in bytes.
    pub memory_current: u64,
    /// Highest memory charged, in bytes (`None` where the kernel does not track it).
    pub memory_peak: Option<u64>,
    /// Bytes read from and written to block devices.
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    /// Processes and threads alive now.
    pub pids_current: u64,
    /// Most processes and threads alive at once (`None` where the kernel does not track it).
    pub pids_peak: Option<u64>,
    /// How many times a fork was refused because the pids limit was reached
    /// (`pids.events`' `max`).
    pub pids_limit_hits: u64,
    /// How many times the kernel's OOM killer killed a process of the job.
    pub oom_kills: u64,
}
