//! v2 `io`: `io.max` per device; usage from `io.stat`.

use std::path::Path;

use crate::cgroup::common;
use crate::cgroup::devices::{self, Dev};
use crate::cgroup::{Resources, Stats};
use crate::error::Result;

/// The `io.max` line for one device, or `None` if no IO limit is set.
pub(crate) fn io_max_line(dev: Dev, limits: &Resources) -> Option<String> {
    let mut line = dev.to_string();
    let mut any = false;
    for (key, v) in [
        ("rbps", limits.io_read_bps),
        ("wbps", limits.io_write_bps),
        ("riops", limits.io_read_iops),
        ("wiops", limits.io_write_iops),
    ] {
        if let Some(v) = v {
            line.push_str(&format!(" {key}={v}"));
            any = true;
        }
    }
    any.then_some(line)
}

pub(crate) fn apply(dir: &Path, limits: &Resources) -> Result<()> {
    if !limits.has_io() {
        return Ok(());
    }
    let file = dir.join("io.max");
    // The kernel takes one device per write.
    for dev in devices::targets(limits)? {
        if let Some(line) = io_max_line(dev, limits) {
            common::write(&file, &line)?;
        }
    }
    Ok(())
}

/// Sums `rbytes` and `wbytes` over every device of an `io.stat` text.
pub(crate) fn parse_io_stat(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0u64, 0u64);
    for line in text.lines() {
        for kv in line.split_whitespace().skip(1) {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(v) = v.parse::<u64>() else { continue };
            match k {
                "rbytes" => r = r.saturating_add(v),
                "wbytes" => w = w.saturating_add(v),
                _ => {}
            }
        }
    }
    (r, w)
}

pub(crate) fn stats(dir: &Path, u: &mut Stats) {
    if let Ok(text) = std::fs::read_to_string(dir.join("io.stat")) {
        (u.io_read_bytes, u.io_write_bytes) = parse_io_stat(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::common::fixture;
    use proptest::prelude::*;

    #[test]
    fn io_max_lines() {
        let dev = Dev {
            major: 254,
            minor: 0,
        };
        let l = Resources {
            io_write_bps: Some(2 << 20),
            io_read_iops: Some(100),
            ..Default::default()
        };
        assert_eq!(
            io_max_line(dev, &l).unwrap(),
            "254:0 wbps=2097152 riops=100"
        );
        assert_eq!(io_max_line(dev, &Resources::default()), None);
    }

    #[test]
    fn io_max_is_written_per_device() {
        let d = fixture::cgroup(&["io.max"]);
        let l = Resources {
            io_read_bps: Some(1000),
            io_devices: Some(vec!["8:0".into(), "8:16".into()]),
            ..Default::default()
        };
        apply(d.path(), &l).unwrap();
        // A regular file keeps only the last write; the kernel keeps both lines.
        assert_eq!(fixture::get(d.path(), "io.max"), "8:16 rbps=1000");
    }

    #[test]
    fn io_stat_sums_devices() {
        let t = "254:0 rbytes=4096 wbytes=8388608 rios=1 wios=8 dbytes=0 dios=0\n\
                 8:0 rbytes=100 wbytes=1 rios=1 wios=1 dbytes=0 dios=0\n";
        assert_eq!(parse_io_stat(t), (4196, 8_388_609));
        assert_eq!(parse_io_stat(""), (0, 0));
        let d = fixture::cgroup(&[]);
        fixture::set(d.path(), "io.stat", t);
        let mut u = Stats::default();
        stats(d.path(), &mut u);
        assert_eq!((u.io_read_bytes, u.io_write_bytes), (4196, 8_388_609));
    }

    proptest! {
        #[test]
        fn io_stat_parse_never_panics(s in "\\PC{0,300}") {
            let _ = parse_io_stat(&s);
        }

        #[test]
        fn io_stat_sums(lines in proptest::collection::vec((0u32..300, 0u32..64, 0u64..1 << 40, 0u64..1 << 40), 0..8)) {
            let text: String = lines
                .iter()
                .map(|(ma, mi, r, w)| format!("{ma}:{mi} rbytes={r} wbytes={w} rios=0 wios=0\n"))
                .collect();
            let (r, w) = parse_io_stat(&text);
            prop_assert_eq!(r, lines.iter().map(|l| l.2).sum::<u64>());
            prop_assert_eq!(w, lines.iter().map(|l| l.3).sum::<u64>());
        }
    }
}
