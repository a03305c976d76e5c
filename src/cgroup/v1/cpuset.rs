//! v1 `cpuset`: `cpuset.cpus` and `cpuset.mems`. A v1 cpuset starts empty and
//! takes no process until both are set, at every level jobcell creates.

use std::path::Path;

use crate::cgroup::common::{self, cpus_value};
use crate::error::Result;

/// Fills an empty `cpuset.cpus` and `cpuset.mems` of `dir` from its parent's.
pub(crate) fn inherit(dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        fill_from_parent(dir, file)?;
    }
    Ok(())
}

fn fill_from_parent(dir: &Path, file: &str) -> Result<()> {
    let path = dir.join(file);
    if !common::read(&path)?.trim().is_empty() {
        return Ok(());
    }
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    let value = common::read(&parent.join(file))?;
    common::write(&path, value.trim())
}

/// Sets a job's CPUs (the parent's when `cpus` is `None`) and the parent's memory nodes.
pub(crate) fn job(dir: &Path, cpus: Option<&str>) -> Result<()> {
    match cpus {
        Some(list) => common::write(&dir.join("cpuset.cpus"), &cpus_value(list)?)?,
        None => fill_from_parent(dir, "cpuset.cpus")?,
    }
    fill_from_parent(dir, "cpuset.mems")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::common::fixture;

    #[test]
    fn empty_sets_are_copied_from_the_parent() {
        let parent = fixture::cgroup(&[]);
        fixture::set(parent.path(), "cpuset.cpus", "0-1\n");
        fixture::set(parent.path(), "cpuset.mems", "0\n");
        let child = parent.path().join("c");
        std::fs::create_dir(&child).unwrap();
        fixture::set(&child, "cpuset.cpus", "\n");
        fixture::set(&child, "cpuset.mems", "");
        inherit(&child).unwrap();
        assert_eq!(fixture::get(&child, "cpuset.cpus"), "0-1");
        assert_eq!(fixture::get(&child, "cpuset.mems"), "0");

        let job_dir = child.join("j");
        std::fs::create_dir(&job_dir).unwrap();
        fixture::set(&job_dir, "cpuset.cpus", "");
        fixture::set(&job_dir, "cpuset.mems", "");
        job(&job_dir, Some("1,0")).unwrap();
        assert_eq!(fixture::get(&job_dir, "cpuset.cpus"), "0-1");
        assert_eq!(fixture::get(&job_dir, "cpuset.mems"), "0");
    }
}
