//! cgroups: one interface, two hierarchies (v2 and v1).

use std::os::fd::BorrowedFd;
use std::time::Duration;

use crate::error::Result;
use crate::job::Usage;
use crate::spawn::CgroupJoin;

/// The cgroup(s) of one job.
pub(crate) struct JobCgroup {
    _private: (),
}

impl JobCgroup {
    /// True while any process is in the job's cgroup.
    pub(crate) fn populated(&self) -> bool {
        false
    }

    /// Kills every process in the job's cgroup.
    pub(crate) fn kill(&self) {}

    /// Current usage.
    pub(crate) fn usage(&self) -> Option<Usage> {
        None
    }

    /// CPU time used so far (user + system).
    pub(crate) fn cpu_time(&self) -> Option<Duration> {
        None
    }

    /// Removes the cgroup directories (best effort; stale ones are swept later).
    pub(crate) fn remove(&self) {}
}

impl CgroupJoin for JobCgroup {
    fn clone_target(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn attach(&self, _pid: i32) -> Result<()> {
        Ok(())
    }
}

/// Removes cgroups left by processes that died without cleaning up.
pub(crate) fn sweep_stale() -> Result<usize> {
    Ok(0)
}
