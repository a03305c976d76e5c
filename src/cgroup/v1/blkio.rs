//! v1 `blkio`: `blkio.throttle.{read,write}_{bps,iops}_device` per device;
//! usage from `blkio.throttle.io_service_bytes`.

use std::path::Path;

use crate::cgroup::common;
use crate::cgroup::devices::{self, Dev};
use crate::cgroup::{Resources, Stats};
use crate::error::Result;

/// The `(file, value)` writes that limit one device.
pub(crate) fn settings(dev: Dev, limits: &Resources) -> Vec<(&'static str, String)> {
    [
        ("blkio.throttle.read_bps_device", limits.io_read_bps),
        ("blkio.throttle.write_bps_device", limits.io_write_bps),
        ("blkio.throttle.read_iops_device", limits.io_read_iops),
        ("blkio.throttle.write_iops_device", limits.io_write_iops),
    ]
    .into_iter()
    .filter_map(|(file, v)| v.map(|v| (file, format!("{dev} {v}"))))
    .collect()
}

pub(crate) fn apply(dir: &Path, limits: &Resources) -> Result<()> {
    if !limits.has_io() {
        return Ok(());
    }
    for dev in devices::targets(limits)? {
        for (file, value) in settings(dev, limits) {
            common::write(&dir.join(file), &value)?;
        }
    }
    Ok(())
}

/// Sums the `Read` and `Write` lines of every device (`"8:0 Read 4096"`).
pub(crate) fn parse_service_bytes(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0u64, 0u64);
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(dev), Some(op), Some(v)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if Dev::parse(dev).is_none() {
            continue;
        }
        let Ok(v) = v.parse::<u64>() else { continue };
        match op {
            "Read" => r = r.saturating_add(v),
            "Write" => w = w.saturating_add(v),
            _ => {}
        }
    }
    (r, w)
}

pub(crate) fn stats(dir: &Path, u: &mut Stats) {
    if let Ok(t) = std::fs::read_to_string(dir.join("blkio.throttle.io_service_bytes")) {
        (u.io_read_bytes, u.io_write_bytes) = parse_service_bytes(&t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::common::fixture;
    use proptest::prelude::*;

    #[test]
    fn throttle_files() {
        let d = fixture::cgroup(&[
            "blkio.throttle.write_bps_device",
            "blkio.throttle.read_iops_device",
        ]);
        let l = Resources {
            io_write_bps: Some(2 << 20),
            io_read_iops: Some(50),
            io_devices: Some(vec!["254:0".into()]),
            ..Default::default()
        };
        apply(d.path(), &l).unwrap();
        assert_eq!(
            fixture::get(d.path(), "blkio.throttle.write_bps_device"),
            "254:0 2097152"
        );
        assert_eq!(
            fixture::get(d.path(), "blkio.throttle.read_iops_device"),
            "254:0 50"
        );
        let e = apply(
            d.path(),
            &Resources {
                io_read_bps: Some(1),
                io_devices: Some(vec!["254:0".into()]),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("blkio.throttle.read_bps_device") && e.contains("254:0 1"),
            "{e}"
        );
    }

    #[test]
    fn service_bytes() {
        let t =
            "254:0 Read 4096\n254:0 Write 8388608\n254:0 Sync 0\n254:0 Async 0\n254:0 Discard 0\n\
                 254:0 Total 8392704\n8:0 Read 1\n8:0 Write 2\nTotal 8392707\n";
        assert_eq!(parse_service_bytes(t), (4097, 8_388_610));
        assert_eq!(parse_service_bytes("Total 0\n"), (0, 0));
    }

    #[test]
    fn usage_is_read_from_the_service_bytes() {
        let d = fixture::cgroup(&[]);
        let mut u = Stats::default();
        stats(d.path(), &mut u);
        assert_eq!(
            (u.io_read_bytes, u.io_write_bytes),
            (0, 0),
            "no file: no IO"
        );
        fixture::set(
            d.path(),
            "blkio.throttle.io_service_bytes",
            "8:0 Read 4096\n8:0 Write 512\nTotal 4608\n",
        );
        stats(d.path(), &mut u);
        assert_eq!((u.io_read_bytes, u.io_write_bytes), (4096, 512));
    }

    proptest! {
        #[test]
        fn service_bytes_never_panics(s in "\\PC{0,300}") {
            let _ = parse_service_bytes(&s);
        }
    }
}
