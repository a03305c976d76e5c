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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each limit set alone, by the name of its field.
    fn each_limit_alone() -> Vec<(&'static str, Resources)> {
        let none = Resources::default;
        vec![
            (
                "memory",
                Resources {
                    memory: Some(1),
                    ..none()
                },
            ),
            (
                "memory_swap",
                Resources {
                    memory_swap: Some(1),
                    ..none()
                },
            ),
            (
                "cpu_percent",
                Resources {
                    cpu_percent: Some(1),
                    ..none()
                },
            ),
            (
                "cpus",
                Resources {
                    cpus: Some("0".into()),
                    ..none()
                },
            ),
            (
                "pids",
                Resources {
                    pids: Some(1),
                    ..none()
                },
            ),
            (
                "io_read_bps",
                Resources {
                    io_read_bps: Some(1),
                    ..none()
                },
            ),
            (
                "io_write_bps",
                Resources {
                    io_write_bps: Some(1),
                    ..none()
                },
            ),
            (
                "io_read_iops",
                Resources {
                    io_read_iops: Some(1),
                    ..none()
                },
            ),
            (
                "io_write_iops",
                Resources {
                    io_write_iops: Some(1),
                    ..none()
                },
            ),
            (
                "cpu_time",
                Resources {
                    cpu_time: true,
                    ..none()
                },
            ),
        ]
    }

    #[test]
    fn any_limit_alone_needs_a_cgroup() {
        assert!(!Resources::default().needs_cgroup());
        let devices_only = Resources {
            io_devices: Some(vec!["8:0".into()]),
            ..Default::default()
        };
        assert!(!devices_only.needs_cgroup(), "devices alone limit nothing");
        for (name, r) in each_limit_alone() {
            assert!(r.needs_cgroup(), "{name}");
            assert_eq!(r.has_io(), name.starts_with("io_"), "{name}");
        }
    }
}
