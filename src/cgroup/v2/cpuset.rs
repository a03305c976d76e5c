//! v2 `cpuset`: `cpuset.cpus` (memory nodes stay the parent's).

use std::path::Path;

use crate::cgroup::common::{self, cpus_value};
use crate::cgroup::Resources;
use crate::error::{Error, Result};
use crate::units::parse_cpu_list;

pub(crate) fn apply(dir: &Path, limits: &Resources) -> Result<()> {
    let Some(list) = &limits.cpus else {
        return Ok(());
    };
    let wanted = cpus_value(list)?;
    common::write(&dir.join("cpuset.cpus"), &wanted)?;
    // v2 accepts CPUs the parent lacks and quietly runs the job on the rest
    // (or on all of the parent's when none is left): refuse instead.
    let effective = common::read(&dir.join("cpuset.cpus.effective"))?;
    let effective = effective.trim();
    if parse_cpu_list(effective).ok() != parse_cpu_list(&wanted).ok() {
        return Err(Error::InvalidLimit {
            name: "cpus",
            value: list.clone(),
            reason: format!(
                "of these, only CPUs {effective:?} are available to the job's cgroup (see {})",
                dir.join("cpuset.cpus.effective").display()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::common::fixture;

    fn cpus(list: &str) -> Resources {
        Resources {
            cpus: Some(list.into()),
            ..Default::default()
        }
    }

    #[test]
    fn cpus_are_normalised() {
        let d = fixture::cgroup(&["cpuset.cpus"]);
        fixture::set(d.path(), "cpuset.cpus.effective", "0-2,5\n");
        apply(d.path(), &cpus("1, 0,2 ,5")).unwrap();
        assert_eq!(fixture::get(d.path(), "cpuset.cpus"), "0-2,5");
        assert!(cpus_value("3-1").is_err());
    }

    #[test]
    fn cpus_the_parent_lacks_are_refused() {
        let d = fixture::cgroup(&["cpuset.cpus"]);
        fixture::set(d.path(), "cpuset.cpus.effective", "0-1\n");
        let e = apply(d.path(), &cpus("1-2")).unwrap_err().to_string();
        assert!(e.contains("cpus") && e.contains("\"0-1\""), "{e}");
    }
}
