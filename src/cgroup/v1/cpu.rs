//! v1 `cpu`: CFS bandwidth, `cpu.cfs_period_us` and `cpu.cfs_quota_us`.

use std::path::Path;

use crate::cgroup::Resources;
use crate::cgroup::{common, cpu_quota_us, CPU_PERIOD_US};
use crate::error::Result;

/// The values to write, in order (the period first, so the quota is read against it).
pub(crate) fn settings(limits: &Resources) -> Vec<(&'static str, String)> {
    match limits.cpu_percent {
        Some(p) => vec![
            ("cpu.cfs_period_us", CPU_PERIOD_US.to_string()),
            ("cpu.cfs_quota_us", cpu_quota_us(p).to_string()),
        ],
        None => Vec::new(),
    }
}

pub(crate) fn apply(dir: &Path, limits: &Resources) -> Result<()> {
    for (file, value) in settings(limits) {
        common::write(&dir.join(file), &value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::common::fixture;

    #[test]
    fn cfs_files() {
        let d = fixture::cgroup(&["cpu.cfs_period_us", "cpu.cfs_quota_us"]);
        apply(
            d.path(),
            &Resources {
                cpu_percent: Some(250),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(fixture::get(d.path(), "cpu.cfs_period_us"), "100000");
        assert_eq!(fixture::get(d.path(), "cpu.cfs_quota_us"), "250000");
    }
}
