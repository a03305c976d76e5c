//! v1 `cpuacct`: CPU time from `cpuacct.usage`, `cpuacct.usage_user` and `cpuacct.usage_sys`.

use std::path::Path;
use std::time::Duration;

use crate::cgroup::common;
use crate::cgroup::Stats;

pub(crate) fn stats(dir: &Path, u: &mut Stats) {
    // usage_user/usage_sys (and cpuacct.stat before Linux 4.7) are sampled at
    // each tick; cpuacct.usage is exact. Split the exact total in the sampled
    // proportion, as the kernel's cputime_adjust() does for v2's cpu.stat.
    let (user, sys) = match (
        common::read_u64_opt(&dir.join("cpuacct.usage_user")),
        common::read_u64_opt(&dir.join("cpuacct.usage_sys")),
    ) {
        (Some(user), Some(sys)) => (user, sys),
        _ => match std::fs::read_to_string(dir.join("cpuacct.stat")) {
            Ok(t) => (
                common::flat_key(&t, "user").unwrap_or(0),
                common::flat_key(&t, "system").unwrap_or(0),
            ),
            Err(_) => (0, 0),
        },
    };
    let total = usage(dir).map_or(0, |d| d.as_nanos() as u64);
    (u.cpu_user, u.cpu_system) = split(total, user, sys);
}

/// Splits `total` nanoseconds in the proportion `user : sys` (all user when both are 0).
pub(crate) fn split(total: u64, user: u64, sys: u64) -> (Duration, Duration) {
    let sampled = u128::from(user) + u128::from(sys);
    let u = if sys == 0 {
        total
    } else {
        (u128::from(total) * u128::from(user) / sampled) as u64
    };
    (Duration::from_nanos(u), Duration::from_nanos(total - u))
}

/// User + system time in nanoseconds: the one figure CPU-time limits poll.
pub(crate) fn usage(dir: &Path) -> Option<Duration> {
    common::read_u64_opt(&dir.join("cpuacct.usage")).map(Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::common::fixture;
    use proptest::prelude::*;

    #[test]
    fn exact_total_split_by_the_sampled_proportion() {
        let d = fixture::cgroup(&[]);
        fixture::set(d.path(), "cpuacct.usage", "500000000\n");
        fixture::set(d.path(), "cpuacct.stat", "user 30\nsystem 10\n");
        let mut u = Stats::default();
        stats(d.path(), &mut u);
        assert_eq!(
            (u.cpu_user, u.cpu_system),
            (Duration::from_millis(375), Duration::from_millis(125))
        );
        fixture::set(d.path(), "cpuacct.usage_user", "0\n");
        fixture::set(d.path(), "cpuacct.usage_sys", "0\n");
        stats(d.path(), &mut u);
        assert_eq!(
            (u.cpu_user, u.cpu_system),
            (Duration::from_millis(500), Duration::ZERO)
        );
        fixture::set(d.path(), "cpuacct.usage_user", "400000000\n");
        fixture::set(d.path(), "cpuacct.usage_sys", "100000000\n");
        stats(d.path(), &mut u);
        assert_eq!(
            (u.cpu_user, u.cpu_system),
            (Duration::from_millis(400), Duration::from_millis(100))
        );
        assert_eq!(usage(d.path()), Some(Duration::from_millis(500)));
        assert_eq!(usage(&d.path().join("gone")), None);
    }

    proptest! {
        #[test]
        fn split_adds_up(total in 0u64..1 << 60, user in any::<u64>(), sys in any::<u64>()) {
            let (u, s) = split(total, user, sys);
            prop_assert_eq!((u + s).as_nanos(), u128::from(total));
        }
    }
}
