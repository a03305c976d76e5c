//! v2 `memory`: `memory.max`, `memory.swap.max`; usage from `memory.current`,
//! `memory.peak` and `memory.events`.

use std::path::Path;

use crate::cgroup::common;
use crate::cgroup::{Resources, Stats};
use crate::error::{Error, Result};

/// The values to write: `(file, value)` in order.
pub(crate) fn settings(limits: &Resources) -> Vec<(&'static str, String)> {
    let Some(max) = limits.memory else {
        return Vec::new();
    };
    // memory.swap.max is swap on top of memory.max; no value means no swap.
    let swap = limits.memory_swap.unwrap_or(0);
    vec![
        ("memory.max", max.to_string()),
        ("memory.swap.max", swap.to_string()),
    ]
}

pub(crate) fn apply(dir: &Path, limits: &Resources) -> Result<()> {
    apply_on(dir, limits, common::host_has_swap())
}

fn apply_on(dir: &Path, limits: &Resources, host_swap: bool) -> Result<()> {
    for (file, value) in settings(limits) {
        let path = dir.join(file);
        if file == "memory.swap.max" && !path.exists() {
            // No swap accounting in this kernel. Only an explicit swap limit on
            // a host with swap is then a limit that cannot be applied.
            if limits.memory_swap.is_some() && host_swap {
                return Err(Error::ControllerUnavailable {
                    limit: "memory_swap",
                    controller: "memory",
                    reason: format!(
                        "{} is missing: the kernel does not account swap",
                        path.display()
                    ),
                });
            }
            continue;
        }
        common::write(&path, &value)?;
    }
    Ok(())
}

pub(crate) fn stats(dir: &Path, u: &mut Stats) {
    u.memory_current = common::read_u64_opt(&dir.join("memory.current")).unwrap_or(0);
    u.memory_peak = common::read_u64_opt(&dir.join("memory.peak"));
    if let Ok(events) = std::fs::read_to_string(dir.join("memory.events")) {
        u.oom_kills = common::flat_key(&events, "oom_kill").unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::common::fixture;
    use proptest::prelude::*;

    #[test]
    fn memory_and_no_swap_by_default() {
        let d = fixture::cgroup(&["memory.max", "memory.swap.max"]);
        apply(
            d.path(),
            &Resources {
                memory: Some(64 << 20),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(fixture::get(d.path(), "memory.max"), "67108864");
        assert_eq!(fixture::get(d.path(), "memory.swap.max"), "0");
        let swap = Resources {
            memory: Some(1 << 20),
            memory_swap: Some(4096),
            ..Default::default()
        };
        apply(d.path(), &swap).unwrap();
        assert_eq!(fixture::get(d.path(), "memory.swap.max"), "4096");
        assert!(settings(&Resources::default()).is_empty());
    }

    #[test]
    fn without_swap_accounting_only_an_explicit_swap_limit_fails() {
        let d = fixture::cgroup(&["memory.max"]);
        let mem = Resources {
            memory: Some(1 << 20),
            ..Default::default()
        };
        apply_on(d.path(), &mem, true).unwrap();
        let swap = Resources {
            memory_swap: Some(0),
            ..mem
        };
        apply_on(d.path(), &swap, false).unwrap();
        let e = apply_on(d.path(), &swap, true).unwrap_err().to_string();
        assert!(
            e.contains("memory_swap") && e.contains("memory.swap.max"),
            "{e}"
        );
    }

    #[test]
    fn missing_controller_is_an_error_naming_the_file() {
        let d = fixture::cgroup(&[]);
        let e = apply(
            d.path(),
            &Resources {
                memory: Some(1 << 20),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("memory.max"), "{e}");
    }

    #[test]
    fn usage_files() {
        let d = fixture::cgroup(&[]);
        fixture::set(d.path(), "memory.current", "1000\n");
        fixture::set(
            d.path(),
            "memory.events",
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
        );
        let mut u = Stats::default();
        stats(d.path(), &mut u);
        assert_eq!(
            (u.memory_current, u.memory_peak, u.oom_kills),
            (1000, None, 1)
        );
        fixture::set(d.path(), "memory.peak", "5000\n");
        stats(d.path(), &mut u);
        assert_eq!(u.memory_peak, Some(5000));
    }

    proptest! {
        #[test]
        fn bytes_are_written_verbatim(m in 1u64 << 20..1 << 52, s in proptest::option::of(0u64..1 << 40)) {
            let l = Resources { memory: Some(m), memory_swap: s, ..Default::default() };
            let v = settings(&l);
            prop_assert_eq!(v[0].1.parse::<u64>().unwrap(), m);
            prop_assert_eq!(v[1].1.parse::<u64>().unwrap(), s.unwrap_or(0));
        }
    }
}
