//! The block devices IO limits apply to.

use std::fmt;
use std::path::Path;

use crate::cgroup::Resources;
use crate::error::{Error, Result};

/// A block device number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Dev {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for Dev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl Dev {
    /// Parses `MAJOR:MINOR`.
    pub(crate) fn parse(s: &str) -> Option<Dev> {
        let (a, b) = s.trim().split_once(':')?;
        Some(Dev {
            major: a.parse().ok()?,
            minor: b.parse().ok()?,
        })
    }
}

/// The devices `limits`' IO limits apply to: the ones it names, or every real
/// block device of the host. An empty answer is an error: a requested limit
/// must never apply to nothing.
pub(crate) fn targets(limits: &Resources) -> Result<Vec<Dev>> {
    let mut devs = match &limits.io_devices {
        Some(names) => names.iter().map(|n| named(n)).collect::<Result<Vec<_>>>()?,
        None => real_block_devices(Path::new("/sys/block")),
    };
    devs.sort();
    devs.dedup();
    if devs.is_empty() {
        return Err(Error::InvalidLimit {
            name: "io_devices",
            value: "(all real block devices)".into(),
            reason: "no real block device found under /sys/block; name the devices in Limits::io_devices".into(),
        });
    }
    Ok(devs)
}

/// A device the caller named: a `/dev/…` path or `MAJOR:MINOR`.
fn named(name: &str) -> Result<Dev> {
    let bad = |reason: String| Error::InvalidLimit {
        name: "io_devices",
        value: name.to_owned(),
        reason,
    };
    if name.starts_with('/') {
        let st = rustix::fs::stat(name).map_err(|e| bad(format!("cannot stat it: {e}")))?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::BlockDevice {
            return Err(bad("not a block device".into()));
        }
        Ok(Dev {
            major: rustix::fs::major(st.st_rdev),
            minor: rustix::fs::minor(st.st_rdev),
        })
    } else {
        Dev::parse(name).ok_or_else(|| bad("expected a /dev path or MAJOR:MINOR".into()))
    }
}

/// Whole disks under `sys_block` (a `/sys/block`), without loop, ram and zram
/// devices, partitions, or empty devices (an unloaded drive, an unbound nbd).
pub(crate) fn real_block_devices(sys_block: &Path) -> Vec<Dev> {
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if ["loop", "ram", "zram"].iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let dir = e.path();
        if dir.join("partition").exists() {
            continue;
        }
        let size: u64 = std::fs::read_to_string(dir.join("size"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if size == 0 {
            continue;
        }
        if let Some(dev) = std::fs::read_to_string(dir.join("dev"))
            .ok()
            .and_then(|s| Dev::parse(&s))
        {
            out.push(dev);
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn disk(root: &Path, name: &str, dev: &str, size: &str, partition: bool) {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("dev"), format!("{dev}\n")).unwrap();
        std::fs::write(d.join("size"), format!("{size}\n")).unwrap();
        if partition {
            std::fs::write(d.join("partition"), "1\n").unwrap();
        }
    }

    #[test]
    fn only_real_whole_disks() {
        let t = tempfile::tempdir().unwrap();
        disk(t.path(), "vda", "254:0", "536870912", false);
        disk(t.path(), "nvme0n1", "259:0", "1000", false);
        disk(t.path(), "loop0", "7:0", "100", false);
        disk(t.path(), "zram0", "253:0", "100", false);
        disk(t.path(), "ram0", "1:0", "100", false);
        disk(t.path(), "sr0", "11:0", "0", false);
        disk(t.path(), "vda1", "254:1", "100", true);
        let devs = real_block_devices(t.path());
        assert_eq!(
            devs,
            vec![
                Dev {
                    major: 254,
                    minor: 0
                },
                Dev {
                    major: 259,
                    minor: 0
                }
            ]
        );
        assert!(real_block_devices(&t.path().join("none")).is_empty());
    }

    #[test]
    fn named_devices() {
        assert_eq!(
            named("8:16").unwrap(),
            Dev {
                major: 8,
                minor: 16
            }
        );
        assert!(named("8-16").is_err());
        let e = named("/dev/null").unwrap_err().to_string();
        assert!(
            e.contains("not a block device") && e.contains("/dev/null"),
            "{e}"
        );
        assert!(named("/dev/no-such-disk").is_err());
        let limits = Resources {
            io_write_bps: Some(1),
            io_devices: Some(vec!["8:0".into(), "8:0".into(), "7:1".into()]),
            ..Default::default()
        };
        assert_eq!(
            targets(&limits).unwrap().len(),
            2,
            "sorted and deduplicated"
        );
    }

    proptest! {
        #[test]
        fn dev_roundtrip(major in 0u32..4096, minor in 0u32..1_048_576) {
            let d = Dev { major, minor };
            prop_assert_eq!(Dev::parse(&d.to_string()), Some(d));
        }

        #[test]
        fn dev_parse_never_panics(s in "\\PC{0,20}") {
            let _ = Dev::parse(&s);
        }
    }
}
