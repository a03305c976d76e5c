//! What a job's cgroup enforces, in this layer's own terms: its user fills
//! a [`Resources`] from the job's limits, and cgroup knows nothing of
//! sandboxes or jobs.

/// The limits a job's cgroup enforces. The fields are named after the
/// `Limits` fields they come from, because errors name them to the user
/// ("memory_swap needs the memory controller").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Resources {
    /// Memory in bytes.
    pub memory: Option<u64>,
    /// Bytes of swap on top of `memory`.
    pub memory_swap: Option<u64>,
    /// CPU bandwidth in percent of one CPU.
    pub cpu_percent: Option<u32>,
    /// The CPUs, as a list such as `"0-1,3"`.
    pub cpus: Option<String>,
    /// Processes and threads alive at once.
    pub pids: Option<u64>,
    /// Read and write bandwidth and operations per second, per device.
    pub io_read_bps: Option<u64>,
    pub io_write_bps: Option<u64>,
    pub io_read_iops: Option<u64>,
    pub io_write_iops: Option<u64>,
    /// The devices the IO limits apply to; `None`: every real block device.
    pub io_devices: Option<Vec<String>>,
    /// The job's CPU time is limited: its supervisor reads it from this
    /// cgroup, which then needs the CPU-accounting controller.
    pub cpu_time: bool,
}

impl Resources {
    /// True when a cgroup is needed to enforce these.
    pub(crate) fn needs_cgroup(&self) -> bool {
        self.memory.is_some()
            || self.memory_swap.is_some()
            || self.cpu_percent.is_some()
            || self.cpus.is_some()
            || self.pids.is_some()
            || self.has_io()
            || self.cpu_time
    }

    pub(crate) fn has_io(&self) -> bool {
        self.io_read_bps.is_some()
            || self.io_write_bps.is_some()
            || self.io_read_iops.is_some()
            || self.io_write_iops.is_some()
    }
}
