//! v1 `pids`: `pids.max`; usage from `pids.current` (and `pids.peak` on recent kernels).

use std::path::Path;

use crate::cgroup::common;
use crate::error::Result;
use crate::job::Usage;
use crate::sandbox::Limits;

pub(crate) fn apply(dir: &Path, limits: &Limits) -> Result<()> {
    match limits.pids {
        Some(n) => common::write(&dir.join("pids.max"), &n.to_string()),
        None => Ok(()),
    }
}

pub(crate) fn stats(dir: &Path, u: &mut Usage) {
    u.pids_current = common::read_u64_opt(&dir.join("pids.current")).unwrap_or(0);
    u.pids_peak = common::read_u64_opt(&dir.join("pids.peak"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::common::fixture;

    #[test]
    fn pids_files() {
        let d = fixture::cgroup(&["pids.max"]);
        apply(
            d.path(),
            &Limits {
                pids: Some(7),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(fixture::get(d.path(), "pids.max"), "7");
        fixture::set(d.path(), "pids.current", "2");
        let mut u = Usage::default();
        stats(d.path(), &mut u);
        assert_eq!((u.pids_current, u.pids_peak), (2, None));
    }
}
