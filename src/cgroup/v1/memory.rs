//! v1 `memory`: `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes` where
//! swap is accounted, `memory.kmem.tcp.limit_in_bytes` for socket buffers;
//! usage from `memory.usage_in_bytes`, `memory.max_usage_in_bytes` and
//! `memory.oom_control`.

use std::path::Path;

use crate::cgroup::common;
use crate::cgroup::{Resources, Stats};
use crate::error::{Error, Result};

/// The values to write, in order: memsw must never be below the memory limit.
pub(crate) fn settings(limits: &Resources, memsw: bool, tcp: bool) -> Vec<(&'static str, String)> {
    let Some(max) = limits.memory else {
        return Vec::new();
    };
    let mut v = vec![("memory.limit_in_bytes", max.to_string())];
    if memsw {
        // memsw counts memory and swap together; no value means no swap.
        let total = max.saturating_add(limits.memory_swap.unwrap_or(0));
        v.push(("memory.memsw.limit_in_bytes", total.to_string()));
    }
    if tcp {
        // v1 charges socket buffers (TCP and UDP alike) to a cgroup only once
        // this is set, and then to this counter, outside limit_in_bytes:
        // unset, a job holds as much as the host's tcp_mem allows. Set before
        // the job runs: a socket is tied to its cgroup's counter when created.
        v.push(("memory.kmem.tcp.limit_in_bytes", max.to_string()));
    }
    v
}

pub(crate) fn apply(dir: &Path, limits: &Resources) -> Result<()> {
    apply_on(dir, limits, common::host_has_swap())
}

fn apply_on(dir: &Path, limits: &Resources, host_swap: bool) -> Result<()> {
    if limits.memory.is_none() {
        return Ok(());
    }
    let memsw = dir.join("memory.memsw.limit_in_bytes").exists();
    // Without swap accounting (swapaccount=0) only an explicit swap limit on a
    // host with swap is a limit that cannot be applied.
    if !memsw && limits.memory_swap.is_some() && host_swap {
        return Err(Error::ControllerUnavailable {
            limit: "memory_swap",
            controller: "memory",
            reason: format!(
                "{} is missing: the kernel does not account swap (boot with swapaccount=1)",
                dir.join("memory.memsw.limit_in_bytes").display()
            ),
        });
    }
    // Kernels without kmem accounting lack the file (and charge nothing).
    let tcp = dir.join("memory.kmem.tcp.limit_in_bytes").exists();
    for (file, value) in settings(limits, memsw, tcp) {
        common::write(&dir.join(file), &value)?;
    }
    Ok(())
}

pub(crate) fn stats(dir: &Path, u: &mut Stats) {
    u.memory_current = common::read_u64_opt(&dir.join("memory.usage_in_bytes")).unwrap_or(0);
    u.memory_peak = common::read_u64_opt(&dir.join("memory.max_usage_in_bytes"));
    if let Ok(t) = std::fs::read_to_string(dir.join("memory.oom_control")) {
        // The oom_kill line exists since Linux 4.13.
        u.oom_kills = common::flat_key(&t, "oom_kill").unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::common::fixture;
    use proptest::prelude::*;

    #[test]
    fn memsw_is_memory_plus_swap() {
        let d = fixture::cgroup(&[
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.kmem.tcp.limit_in_bytes",
        ]);
        apply(
            d.path(),
            &Resources {
                memory: Some(64 << 20),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(fixture::get(d.path(), "memory.limit_in_bytes"), "67108864");
        assert_eq!(
            fixture::get(d.path(), "memory.memsw.limit_in_bytes"),
            "67108864"
        );
        // Socket buffers: the same limit, on their own counter.
        assert_eq!(
            fixture::get(d.path(), "memory.kmem.tcp.limit_in_bytes"),
            "67108864"
        );
        let l = Resources {
            memory: Some(1 << 20),
            memory_swap: Some(1 << 20),
            ..Default::default()
        };
        apply(d.path(), &l).unwrap();
        assert_eq!(
            fixture::get(d.path(), "memory.memsw.limit_in_bytes"),
            "2097152"
        );
        assert_eq!(settings(&l, false, false).len(), 1);
    }

    #[test]
    fn without_memsw_only_an_explicit_swap_limit_fails() {
        let d = fixture::cgroup(&["memory.limit_in_bytes"]);
        let mem = Resources {
            memory: Some(1 << 20),
            ..Default::default()
        };
        apply_on(d.path(), &mem, true).unwrap();
        assert_eq!(fixture::get(d.path(), "memory.limit_in_bytes"), "1048576");
        let swap = Resources {
            memory_swap: Some(0),
            ..mem
        };
        apply_on(d.path(), &swap, false).unwrap();
        let e = apply_on(d.path(), &swap, true).unwrap_err().to_string();
        assert!(
            e.contains("memory_swap") && e.contains("swapaccount"),
            "{e}"
        );
    }

    #[test]
    fn usage_files() {
        let d = fixture::cgroup(&[]);
        fixture::set(d.path(), "memory.usage_in_bytes", "8192\n");
        fixture::set(d.path(), "memory.max_usage_in_bytes", "67108864\n");
        fixture::set(
            d.path(),
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        let mut u = Stats::default();
        stats(d.path(), &mut u);
        assert_eq!(
            (u.memory_current, u.memory_peak, u.oom_kills),
            (8192, Some(64 << 20), 2)
        );
    }

    proptest! {
        #[test]
        fn memsw_never_below_memory(m in 1u64 << 20..1 << 52, s in proptest::option::of(0u64..u64::MAX)) {
            let l = Resources { memory: Some(m), memory_swap: s, ..Default::default() };
            let v = settings(&l, true, true);
            let mem: u64 = v[0].1.parse().unwrap();
            let memsw: u64 = v[1].1.parse().unwrap();
            prop_assert_eq!(mem, m);
            prop_assert!(memsw >= mem);
        }
    }
}
