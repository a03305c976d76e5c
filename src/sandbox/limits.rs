//! Resource limits of a job.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Resource limits of a job. Every field is optional; `None` means unlimited.
///
/// Memory, CPU, pids and IO limits are enforced by the job's cgroup; wall time,
/// CPU time and output by the supervisor, which kills the job and sets its verdict.
///
/// ```
/// use jobcell::Limits;
/// use std::time::Duration;
///
/// let limits = Limits {
///     memory: Some(256 << 20),
///     pids: Some(64),
///     cpu_percent: Some(50),
///     wall_time: Some(Duration::from_secs(10)),
///     ..Default::default()
/// };
/// assert!(limits.validate().is_ok());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Memory in bytes (page cache and tmpfs files included); the kernel OOM-kills beyond it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Bytes of swap allowed on top of `memory`. With a memory limit and no value, no swap is allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<u64>,
    /// CPU bandwidth in percent of one core: 100 is one full core, 250 two and a half.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<u32>,
    /// The CPUs the job may run on, as a list such as `"0-1,3"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    /// Maximum number of the job's processes and threads alive at once: its
    /// main process and everything it starts. The cell's init (jobcell's own
    /// process, the cell's PID 1) is not counted: its slot is added to the
    /// cgroup's `pids.max`. A fork beyond the limit fails with `EAGAIN`, and
    /// the job's [`Outcome::pids_limited`](crate::Outcome::pids_limited) says
    /// so. At least 1 (the job alone, forking nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// Read bandwidth in bytes per second, per device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_read_bps: Option<u64>,
    /// Write bandwidth in bytes per second, per device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_write_bps: Option<u64>,
    /// Read operations per second, per device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_read_iops: Option<u64>,
    /// Write operations per second, per device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_write_iops: Option<u64>,
    /// The block devices the IO limits apply to, as `/dev/…` paths or `MAJOR:MINOR`.
    /// `None` applies them to every real block device (not loop, ram or zram).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_devices: Option<Vec<String>>,
    /// Wall-clock time from start to end.
    #[serde(
        rename = "wall_time_ms",
        with = "crate::json::opt_limit_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub wall_time: Option<Duration>,
    /// CPU time (user + system) of every process of the job together.
    #[serde(
        rename = "cpu_time_ms",
        with = "crate::json::opt_limit_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_time: Option<Duration>,
    /// Bytes of stdout and stderr together; the job is killed when it writes more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u64>,
}

/// The smallest memory limit accepted: below it not even `execve` of a small static program succeeds.
pub const MIN_MEMORY: u64 = 1 << 20;
/// Larger values are refused as absurd (4 PiB).
const MAX_BYTES: u64 = 1 << 52;
/// The kernel's PID_MAX_LIMIT.
const MAX_PIDS: u64 = 4 * 1024 * 1024;
/// 1024 CPUs at 100 % each.
const MAX_CPU_PERCENT: u32 = 1024 * 100;
/// A year.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

impl Limits {
    /// Limits for code you did not write: every job ends, and none can take
    /// the host's memory, process table or disk with it.
    ///
    /// | Field | Value | Why |
    /// |---|---|---|
    /// | `memory` | 512 MiB | the job, its page cache, its `/tmp` and `/dev/shm`, socket buffers |
    /// | `pids` | 256 | processes and threads: a fork bomb stops there (a JVM on a large machine runs ~100 threads) |
    /// | `wall_time` | 60 s | an endless loop or a blocked read frees its slot |
    /// | `output_bytes` | 16 MiB | stdout and stderr together: a flood cannot fill the host's disk or memory |
    ///
    /// Swap stays off (no `memory_swap`), CPU bandwidth and IO are not
    /// capped (they slow others but take nothing away for good). Each value
    /// can be overridden with struct update syntax; [`Sandbox::untrusted`](crate::Sandbox::untrusted)
    /// also caps the size of each file the job writes.
    ///
    /// ```
    /// use jobcell::Limits;
    /// use std::time::Duration;
    ///
    /// let judge = Limits {
    ///     memory: Some(256 << 20),
    ///     wall_time: Some(Duration::from_secs(5)),
    ///     ..Limits::conservative()
    /// };
    /// assert_eq!(judge.pids, Some(256));
    /// assert!(judge.validate().is_ok());
    /// ```
    pub fn conservative() -> Limits {
        Limits {
            memory: Some(512 << 20),
            pids: Some(256),
            wall_time: Some(Duration::from_secs(60)),
            output_bytes: Some(16 << 20),
            ..Limits::default()
        }
    }

    /// True when no field is set.
    ///
    /// ```
    /// assert!(jobcell::Limits::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// True when a cgroup is needed to enforce these limits (memory, CPU, pids, IO, or CPU time).
    pub fn needs_cgroup(&self) -> bool {
        self.memory.is_some()
            || self.memory_swap.is_some()
            || self.cpu_percent.is_some()
            || self.cpus.is_some()
            || self.pids.is_some()
            || self.has_io()
            || self.cpu_time.is_some()
    }

    pub(crate) fn has_io(&self) -> bool {
        self.io_read_bps.is_some()
            || self.io_write_bps.is_some()
            || self.io_read_iops.is_some()
            || self.io_write_iops.is_some()
    }

    /// Checks every field: zero, absurd or malformed values are errors.
    ///
    /// ```
    /// use jobcell::Limits;
    /// let bad = Limits { pids: Some(0), ..Default::default() };
    /// assert!(bad.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        fn bytes(name: &'static str, v: Option<u64>, min: u64) -> Result<()> {
            match v {
                Some(v) if v < min => Err(Error::InvalidLimit {
                    name,
                    value: v.to_string(),
                    reason: if min <= 1 {
                        "must be at least 1".into()
                    } else {
                        format!("must be at least {min}")
                    },
                }),
                Some(v) if v > MAX_BYTES => Err(Error::InvalidLimit {
                    name,
                    value: v.to_string(),
                    reason: format!("larger than {MAX_BYTES} is absurd"),
                }),
                _ => Ok(()),
            }
        }
        fn duration(name: &'static str, v: Option<Duration>) -> Result<()> {
            match v {
                Some(d) if d.is_zero() => Err(Error::InvalidLimit {
                    name,
                    value: format!("{d:?}"),
                    reason: "must be greater than zero".into(),
                }),
                Some(d) if d > MAX_DURATION => Err(Error::InvalidLimit {
                    name,
                    value: format!("{d:?}"),
                    reason: "longer than a year is absurd".into(),
                }),
                _ => Ok(()),
            }
        }
        bytes("memory", self.memory, MIN_MEMORY)?;
        bytes("memory_swap", self.memory_swap, 0)?;
        if self.memory_swap.is_some() && self.memory.is_none() {
            return Err(Error::InvalidLimit {
                name: "memory_swap",
                value: format!("{:?}", self.memory_swap),
                reason: "needs a memory limit too".into(),
            });
        }
        if let Some(p) = self.cpu_percent {
            if p == 0 || p > MAX_CPU_PERCENT {
                return Err(Error::InvalidLimit {
                    name: "cpu_percent",
                    value: p.to_string(),
                    reason: format!("must be between 1 and {MAX_CPU_PERCENT}"),
                });
            }
        }
        if let Some(c) = &self.cpus {
            crate::units::parse_cpu_list(c).map_err(|reason| Error::InvalidLimit {
                name: "cpus",
                value: c.clone(),
                reason,
            })?;
        }
        if let Some(p) = self.pids {
            if !(1..=MAX_PIDS).contains(&p) {
                return Err(Error::InvalidLimit {
                    name: "pids",
                    value: p.to_string(),
                    reason: format!("must be between 1 and {MAX_PIDS}"),
                });
            }
        }
        bytes("io_read_bps", self.io_read_bps, 1)?;
        bytes("io_write_bps", self.io_write_bps, 1)?;
        bytes("io_read_iops", self.io_read_iops, 1)?;
        bytes("io_write_iops", self.io_write_iops, 1)?;
        if let Some(devs) = &self.io_devices {
            if devs.is_empty() {
                return Err(Error::InvalidLimit {
                    name: "io_devices",
                    value: "[]".into(),
                    reason: "name at least one device, or leave it unset for all".into(),
                });
            }
        }
        duration("wall_time", self.wall_time)?;
        duration("cpu_time", self.cpu_time)?;
        bytes("output_bytes", self.output_bytes, 1)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(Limits::default().validate().is_ok());
        assert!(Limits::conservative().validate().is_ok());
        assert!(Limits::conservative().needs_cgroup());
        let l = |f: fn(&mut Limits)| {
            let mut x = Limits::default();
            f(&mut x);
            x.validate()
        };
        assert!(l(|x| x.memory = Some(0)).is_err());
        assert!(l(|x| x.memory = Some(1 << 60)).is_err());
        assert!(l(|x| x.memory = Some(64 << 20)).is_ok());
        assert!(l(|x| x.memory_swap = Some(0)).is_err(), "swap needs memory");
        assert!(l(|x| x.cpu_percent = Some(0)).is_err());
        assert!(l(|x| x.cpu_percent = Some(250)).is_ok());
        assert!(l(|x| x.cpus = Some("1-0".into())).is_err());
        assert!(l(|x| x.cpus = Some("0,x".into())).is_err());
        assert!(l(|x| x.pids = Some(0)).is_err());
        assert!(l(|x| x.pids = Some(1)).is_ok(), "init is not counted");
        assert!(l(|x| x.pids = Some(MAX_PIDS)).is_ok());
        assert!(l(|x| x.pids = Some(MAX_PIDS + 1)).is_err());
        assert!(l(|x| x.wall_time = Some(Duration::ZERO)).is_err());
        assert!(l(|x| x.output_bytes = Some(0)).is_err());
        assert!(l(|x| x.io_devices = Some(vec![])).is_err());
        let e = l(|x| x.pids = Some(0)).unwrap_err().to_string();
        assert!(e.contains("pids") && e.contains('0'), "{e}");
    }
}
