//! v1 `pids`: the same files as on v2 (`pids.max`; usage from `pids.current`,
//! `pids.events` and, on recent kernels, `pids.peak`), so the same code.

pub(crate) use crate::cgroup::v2::pids::{apply, stats};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::common::fixture;
    use crate::cgroup::{Resources, Stats};

    #[test]
    fn pids_files() {
        let d = fixture::cgroup(&["pids.max"]);
        apply(
            d.path(),
            &Resources {
                pids: Some(7),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(fixture::get(d.path(), "pids.max"), "7");
        fixture::set(d.path(), "pids.current", "2");
        let mut u = Stats::default();
        stats(d.path(), &mut u);
        assert_eq!((u.pids_current, u.pids_peak), (2, None));
        fixture::set(d.path(), "pids.events", "max 3\n");
        stats(d.path(), &mut u);
        assert_eq!(u.pids_limit_hits, 3);
    }
}
