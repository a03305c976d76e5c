//! v2 `cpuset`: `cpuset.cpus` (memory nodes stay the parent's).

use std::path::Path;

use crate::cgroup::common::{self, cpus_value};
use crate::error::Result;
use crate::sandbox::Limits;

pub(crate) fn apply(dir: &Path, limits: &Limits) -> Result<()> {
    match &limits.cpus {
        Some(list) => common::write(&dir.join("cpuset.cpus"), &cpus_value(list)?),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::common::fixture;

    #[test]
    fn cpus_are_normalised() {
        let d = fixture::cgroup(&["cpuset.cpus"]);
        apply(
            d.path(),
            &Limits {
                cpus: Some("1, 0,2 ,5".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(fixture::get(d.path(), "cpuset.cpus"), "0-2,5");
        assert!(cpus_value("3-1").is_err());
    }
}
