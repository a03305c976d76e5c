//! v2 `cpu`: `cpu.max`; usage from `cpu.stat`, which every v2 cgroup has.

use std::path::Path;
use std::time::Duration;

use crate::cgroup::{common, cpu_quota_us, CPU_PERIOD_US};
use crate::cgroup::{Resources, Stats};
use crate::error::Result;

/// `cpu.max` for a percentage of one CPU: `"$QUOTA $PERIOD"` in microseconds.
pub(crate) fn cpu_max(percent: u32) -> String {
    format!("{} {}", cpu_quota_us(percent), CPU_PERIOD_US)
}

/// Parses `cpu.max` back into `(quota, period)`; `None` quota is `max` (unlimited).
#[cfg(test)]
pub(crate) fn parse_cpu_max(text: &str) -> Option<(Option<u64>, u64)> {
    let mut it = text.split_whitespace();
    let quota = match it.next()? {
        "max" => None,
        q => Some(q.parse().ok()?),
    };
    let period = it.next().map_or(Some(CPU_PERIOD_US), |p| p.parse().ok())?;
    Some((quota, period))
}

pub(crate) fn apply(dir: &Path, limits: &Resources) -> Result<()> {
    match limits.cpu_percent {
        Some(p) => common::write(&dir.join("cpu.max"), &cpu_max(p)),
        None => Ok(()),
    }
}

pub(crate) fn stats(dir: &Path, u: &mut Stats) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cpu.stat")) {
        u.cpu_user = Duration::from_micros(common::flat_key(&text, "user_usec").unwrap_or(0));
        u.cpu_system = Duration::from_micros(common::flat_key(&text, "system_usec").unwrap_or(0));
    }
}

/// User + system time, the one figure CPU-time limits poll.
pub(crate) fn usage(dir: &Path) -> Option<Duration> {
    let text = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
    common::flat_key(&text, "usage_usec").map(Duration::from_micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::common::fixture;
    use proptest::prelude::*;

    #[test]
    fn cpu_max_file() {
        let d = fixture::cgroup(&["cpu.max"]);
        apply(
            d.path(),
            &Resources {
                cpu_percent: Some(20),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(fixture::get(d.path(), "cpu.max"), "20000 100000");
        assert_eq!(parse_cpu_max("max 100000\n"), Some((None, 100_000)));
        assert_eq!(
            parse_cpu_max("250000 100000"),
            Some((Some(250_000), 100_000))
        );
        assert_eq!(parse_cpu_max("x"), None);
    }

    #[test]
    fn cpu_stat() {
        let d = fixture::cgroup(&[]);
        fixture::set(
            d.path(),
            "cpu.stat",
            "usage_usec 501234\nuser_usec 400000\nsystem_usec 101234\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
        );
        let mut u = Stats::default();
        stats(d.path(), &mut u);
        assert_eq!(u.cpu_user, Duration::from_millis(400));
        assert_eq!(u.cpu_system, Duration::from_micros(101_234));
        assert_eq!(usage(d.path()), Some(Duration::from_micros(501_234)));
        assert_eq!(usage(&d.path().join("gone")), None);
    }

    proptest! {
        #[test]
        fn cpu_max_roundtrip(p in 1u32..=102_400) {
            let (quota, period) = parse_cpu_max(&cpu_max(p)).unwrap();
            prop_assert_eq!(period, 100_000);
            prop_assert_eq!(quota.unwrap() * 100 / period, u64::from(p));
        }

        #[test]
        fn cpu_max_parse_never_panics(s in "\\PC{0,30}") {
            let _ = parse_cpu_max(&s);
        }
    }
}
