//! `pids` (v2, and v1, whose files are the same): `pids.max`; usage from
//! `pids.current`, `pids.peak` and `pids.events` (`max`: forks refused at
//! the limit; v1 has the same file since Linux 4.3).

use std::path::Path;

use crate::cgroup::common;
use crate::cgroup::{Resources, Stats};
use crate::error::Result;

pub(crate) fn apply(dir: &Path, limits: &Resources) -> Result<()> {
    match limits.pids {
        Some(n) => common::write(&dir.join("pids.max"), &n.to_string()),
        None => Ok(()),
    }
}

/// Also used on v1, whose pids files have the same names.
pub(crate) fn stats(dir: &Path, u: &mut Stats) {
    u.pids_current = common::read_u64_opt(&dir.join("pids.current")).unwrap_or(0);
    // pids.peak is recent (Linux 6.x); older kernels have no such file.
    u.pids_peak = common::read_u64_opt(&dir.join("pids.peak"));
    if let Ok(events) = std::fs::read_to_string(dir.join("pids.events")) {
        u.pids_limit_hits = common::flat_key(&events, "max").unwrap_or(0);
    }
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
            &Resources {
                pids: Some(32),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(fixture::get(d.path(), "pids.max"), "32");
        fixture::set(d.path(), "pids.current", "3\n");
        let mut u = Stats::default();
        stats(d.path(), &mut u);
        assert_eq!((u.pids_current, u.pids_peak), (3, None));
        fixture::set(d.path(), "pids.peak", "32\n");
        stats(d.path(), &mut u);
        assert_eq!(u.pids_peak, Some(32));
        assert_eq!(u.pids_limit_hits, 0, "no pids.events: no refusal known");
        // Linux 6.14 adds a line for refusals imposed by an ancestor's limit.
        fixture::set(d.path(), "pids.events", "max 4\nmax.imposed 9\n");
        stats(d.path(), &mut u);
        assert_eq!(u.pids_limit_hits, 4);
    }
}
