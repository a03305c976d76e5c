//! The cell's root file system as a list of steps, with a model of the
//! resulting tree (`Layout`) kept in step so paths can be checked up front.
//!
//! Steps are either *static*, the same for every cell of a configuration (the
//! root tmpfs, its directories and files, the read-only system binds), or
//! *per cell* (fresh tmpfs, `/proc`, `/dev/pts`, user binds, and anything
//! placed inside those). On a root host the static steps of the minimal root
//! run once, into a cached skeleton (see `skeleton.rs`); every cell then
//! attaches a clone of it and runs only its per-cell steps.
//!
//! Here: the steps, the plan, and how steps are lowered to the cell's
//! operations. `builder.rs` emits the steps of a sandbox; `system.rs` the
//! minimal root's system part (`/usr`, `/etc`, `/dev`, `/proc` masks).

mod builder;
mod system;

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::path::CellPath;
use crate::spawn::cell::Op;
use crate::spawn::layout::Layout;
use crate::sys;
pub(crate) use builder::Builder;

/// What identifies a host file's content cheaply: a copy made from it is
/// stale when any of these change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Fingerprint {
    pub(super) fn of(md: &std::fs::Metadata) -> Fingerprint {
        Fingerprint {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
        }
    }
}

/// One step of building the root, with paths inside the cell.
#[derive(Clone, Debug, Hash)]
pub(crate) enum Step {
    /// The minimal root's own tmpfs.
    RootTmpfs,
    /// A fresh tmpfs for this cell.
    Tmpfs {
        at: CellPath,
        flags: u64,
        data: String,
    },
    Proc {
        at: CellPath,
    },
    /// A fresh read-only sysfs.
    Sysfs {
        at: CellPath,
    },
    Devpts {
        at: CellPath,
    },
    /// Covers a file with the cell's /dev/null.
    MaskFile {
        at: CellPath,
    },
    /// Covers a directory with an empty read-only tmpfs.
    MaskDir {
        at: CellPath,
    },
    /// Makes a path of the cell read-only (binds it onto itself).
    ReadOnly {
        at: CellPath,
    },
    /// Sets a sysctl of the cell's own namespaces (best effort).
    Sysctl {
        at: CellPath,
        value: &'static [u8],
        /// Of the IPC namespace: skipped when it was made and set up ahead.
        ipc: bool,
    },
    /// A user bind (or the rootfs) the host opened with `open_tree`: index into the trees.
    Tree {
        at: CellPath,
        source: PathBuf,
        tree: usize,
    },
    /// A user bind by path, for kernels without the mount API.
    PathBind {
        at: CellPath,
        source: PathBuf,
        set: u64,
        fallback: u64,
    },
    /// A host system path, bound read-only (a device node: read-write).
    SystemBind {
        at: CellPath,
        source: PathBuf,
        device: bool,
        fallback: u64,
    },
    Mkdir {
        at: CellPath,
    },
    Touch {
        at: CellPath,
    },
    Write {
        at: CellPath,
        data: Arc<[u8]>,
        mode: u32,
    },
    Symlink {
        at: CellPath,
        value: Vec<u8>,
    },
    /// Skeleton only: a copy of a small host file.
    Copy {
        at: CellPath,
        source: PathBuf,
        print: Fingerprint,
    },
    /// Skeleton only: a copy of a host directory of symlinks and small files.
    CopyDir {
        at: CellPath,
        source: PathBuf,
        print: Fingerprint,
    },
    /// Skeleton only: a device node with the host node's numbers.
    Mknod {
        at: CellPath,
        rdev: u64,
        mode: u32,
    },
    /// Mount attributes of the mount at `at` (`fallback`: remount flags before Linux 5.12).
    SetAttr {
        at: CellPath,
        set: u64,
        recursive: bool,
        fallback: u64,
    },
}

impl Step {
    /// The path a step acts on.
    pub(crate) fn at(&self) -> CellPath {
        match self {
            Step::RootTmpfs => CellPath::root(),
            Step::Tmpfs { at, .. }
            | Step::Proc { at }
            | Step::Sysfs { at }
            | Step::Devpts { at }
            | Step::MaskFile { at }
            | Step::MaskDir { at }
            | Step::ReadOnly { at }
            | Step::Sysctl { at, .. }
            | Step::Tree { at, .. }
            | Step::PathBind { at, .. }
            | Step::SystemBind { at, .. }
            | Step::Mkdir { at }
            | Step::Touch { at }
            | Step::Write { at, .. }
            | Step::Symlink { at, .. }
            | Step::Copy { at, .. }
            | Step::CopyDir { at, .. }
            | Step::Mknod { at, .. }
            | Step::SetAttr { at, .. } => at.clone(),
        }
    }

    /// True for a mount that each cell needs fresh.
    fn is_cell_mount(&self) -> bool {
        matches!(
            self,
            Step::Tmpfs { .. }
                | Step::Proc { .. }
                | Step::Sysfs { .. }
                | Step::Devpts { .. }
                | Step::MaskFile { .. }
                | Step::MaskDir { .. }
                | Step::ReadOnly { .. }
                | Step::Sysctl { .. }
                | Step::Tree { .. }
                | Step::PathBind { .. }
        )
    }

    /// A description for error messages.
    pub(crate) fn describe(&self) -> String {
        let at = self.at().display();
        match self {
            Step::RootTmpfs => "mount tmpfs on /".into(),
            Step::Tmpfs { data, .. } => format!("mount tmpfs on {at} ({data})"),
            Step::Proc { .. } => format!("mount proc on {at}"),
            Step::Sysfs { .. } => format!("mount sysfs on {at}"),
            Step::MaskFile { .. } => format!("mask {at}"),
            Step::MaskDir { .. } => format!("mask directory {at}"),
            Step::ReadOnly { .. } => format!("make {at} read-only"),
            Step::Sysctl { .. } => format!("set {at}"),
            Step::Devpts { .. } => format!("mount devpts on {at}"),
            Step::Tree { source, .. } => format!("attach bind of {} on {at}", source.display()),
            Step::PathBind { source, .. } => format!("bind {} on {at}", source.display()),
            Step::SystemBind { source, .. } => format!("bind {} on {at}", source.display()),
            Step::Mkdir { .. } => format!("mkdir {at}"),
            Step::Touch { .. } => format!("create mount point {at}"),
            Step::Write { .. } => format!("write {at}"),
            Step::Symlink { value, .. } => {
                format!("symlink {at} -> {}", String::from_utf8_lossy(value))
            }
            Step::Copy { source, .. } | Step::CopyDir { source, .. } => {
                format!("copy {} to {at}", source.display())
            }
            Step::Mknod { .. } => format!("mknod {at}"),
            Step::SetAttr { set, .. } if set & sys::MOUNT_ATTR_RDONLY != 0 => {
                format!("make {at} read-only")
            }
            Step::SetAttr { .. } => format!("set mount attributes of {at}"),
        }
    }
}

/// The planned root: steps, the tree they make, and the host descriptors they use.
pub(crate) struct RootPlan {
    pub steps: Vec<Step>,
    pub layout: Layout,
    pub trees: Vec<OwnedFd>,
    /// Whether the static steps are to be built once, into a skeleton.
    pub skeleton: bool,
}

impl RootPlan {
    /// Splits the steps into the static ones (for the skeleton) and the
    /// per-cell ones, keeping each list in order. A step inside a per-cell
    /// mount made earlier is per-cell too.
    pub(crate) fn split(&self) -> (Vec<usize>, Vec<usize>) {
        let mut cell_mounts: Vec<CellPath> = Vec::new();
        let (mut stat, mut cell) = (Vec::new(), Vec::new());
        for (i, s) in self.steps.iter().enumerate() {
            let at = s.at();
            if s.is_cell_mount() {
                cell_mounts.push(at);
                cell.push(i);
            } else if cell_mounts.iter().any(|m| at.starts_with(m)) {
                cell.push(i);
            } else {
                stat.push(i);
            }
        }
        (stat, cell)
    }
}

/// Lowers the steps `which` (indices into `steps`) to the cell's operations,
/// with paths under `staging`. Returns the ops and, for each, the index of the
/// step it comes from: descriptions are only made when a step fails.
pub(crate) fn lower(
    steps: &[Step],
    which: &[usize],
    trees: &[OwnedFd],
    staging: &[u8],
) -> Result<(Vec<Op>, Vec<usize>)> {
    let path = |p: &CellPath| -> CString {
        let mut v = staging.to_vec();
        if !p.is_root() {
            v.extend_from_slice(p.as_bytes());
        }
        CString::new(v).expect("cell paths have no NUL")
    };
    let c = |b: &[u8]| {
        CString::new(b).map_err(|_| Error::InvalidPath {
            path: String::from_utf8_lossy(b).into_owned(),
            reason: "the path contains a NUL byte",
        })
    };
    let (mut ops, mut names) = (Vec::new(), Vec::new());
    for &i in which {
        let s = &steps[i];
        let name = i;
        let at = s.at();
        match s {
            Step::RootTmpfs => ops.push(Op::Mount {
                fstype: c"tmpfs",
                target: path(&at),
                flags: libc::MS_NOSUID | libc::MS_NODEV,
                data: Some(c"mode=0755,size=16m,nr_inodes=16384".into()),
            }),
            Step::Tmpfs { flags, data, .. } => ops.push(Op::Mount {
                fstype: c"tmpfs",
                target: path(&at),
                flags: *flags,
                data: Some(c(data.as_bytes())?),
            }),
            Step::Proc { .. } => ops.push(Op::Mount {
                fstype: c"proc",
                target: path(&at),
                flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data: None,
            }),
            Step::Sysctl { value, ipc, .. } => ops.push(Op::Sysctl {
                path: path(&at),
                value,
                ipc: *ipc,
            }),
            Step::Sysfs { .. } => ops.push(Op::Mount {
                fstype: c"sysfs",
                target: path(&at),
                flags: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data: None,
            }),
            Step::MaskFile { .. } => ops.push(Op::Bind {
                source: path(&CellPath::new("/dev/null").expect("static path")),
                target: path(&at),
            }),
            Step::MaskDir { .. } => ops.push(Op::Mount {
                fstype: c"tmpfs",
                target: path(&at),
                flags: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data: Some(c"size=4k,nr_inodes=1,mode=0555".into()),
            }),
            Step::ReadOnly { .. } => {
                ops.push(Op::Bind {
                    source: path(&at),
                    target: path(&at),
                });
                names.push(name);
                ops.push(Op::SetAttr {
                    target: path(&at),
                    set: sys::MOUNT_ATTR_RDONLY
                        | sys::MOUNT_ATTR_NOSUID
                        | sys::MOUNT_ATTR_NODEV
                        | sys::MOUNT_ATTR_NOEXEC,
                    recursive: true,
                    fallback: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                });
            }
            Step::Devpts { .. } => ops.push(Op::Mount {
                fstype: c"devpts",
                target: path(&at),
                flags: libc::MS_NOSUID | libc::MS_NOEXEC,
                data: Some(c"newinstance,ptmxmode=0666,mode=0620".into()),
            }),
            Step::Tree { tree, .. } => ops.push(Op::Attach {
                fd: trees[*tree].as_raw_fd(),
                target: path(&at),
            }),
            Step::PathBind {
                source,
                set,
                fallback,
                ..
            } => {
                ops.push(Op::Bind {
                    source: c(source.as_os_str().as_bytes())?,
                    target: path(&at),
                });
                names.push(name);
                ops.push(Op::SetAttr {
                    target: path(&at),
                    set: *set,
                    recursive: true,
                    fallback: *fallback,
                });
            }
            Step::SystemBind {
                source,
                device,
                fallback,
                ..
            } => {
                ops.push(Op::Bind {
                    source: c(source.as_os_str().as_bytes())?,
                    target: path(&at),
                });
                if !device {
                    names.push(name);
                    ops.push(Op::SetAttr {
                        target: path(&at),
                        set: sys::MOUNT_ATTR_RDONLY
                            | sys::MOUNT_ATTR_NOSUID
                            | sys::MOUNT_ATTR_NODEV,
                        recursive: true,
                        fallback: *fallback,
                    });
                }
            }
            Step::Mkdir { .. } => ops.push(Op::Mkdir { path: path(&at) }),
            Step::Touch { .. } => ops.push(Op::Touch { path: path(&at) }),
            Step::Write { data, mode, .. } => ops.push(Op::WriteFile {
                path: path(&at),
                data: data.clone(),
                mode: *mode,
            }),
            Step::Symlink { value, .. } => ops.push(Op::Symlink {
                value: c(value)?,
                link: path(&at),
            }),
            Step::SetAttr {
                set,
                recursive,
                fallback,
                ..
            } => ops.push(Op::SetAttr {
                target: path(&at),
                set: *set,
                recursive: *recursive,
                fallback: *fallback,
            }),
            Step::Copy { .. } | Step::CopyDir { .. } | Step::Mknod { .. } => {
                unreachable!("skeleton-only step given to a cell: {}", s.describe())
            }
        }
        names.push(name);
    }
    Ok((ops, names))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> CellPath {
        CellPath::new(s).unwrap()
    }

    #[test]
    fn split_keeps_steps_inside_cell_mounts_per_cell() {
        let plan = RootPlan {
            steps: vec![
                Step::RootTmpfs,
                Step::Mkdir { at: p("/data") },
                Step::Tmpfs {
                    at: p("/data"),
                    flags: 0,
                    data: String::new(),
                },
                Step::Mkdir { at: p("/data/sub") },
                Step::Mkdir { at: p("/other") },
                Step::Write {
                    at: p("/data2"),
                    data: b"x"[..].into(),
                    mode: 0o644,
                },
            ],
            layout: Layout::default(),
            trees: Vec::new(),
            skeleton: true,
        };
        let (stat, cell) = plan.split();
        let names = |v: Vec<usize>| {
            v.iter()
                .map(|&i| plan.steps[i].at().display())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(stat), ["/", "/data", "/other", "/data2"]);
        assert_eq!(names(cell), ["/data", "/data/sub"]);
    }
}
