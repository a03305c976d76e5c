//! The cell's root file system as a list of steps, with a model of the
//! resulting tree (`Layout`) kept in step so paths can be checked up front.
//!
//! Steps are either *static*, the same for every cell of a configuration (the
//! root tmpfs, its directories and files, the read-only system binds), or
//! *per cell* (fresh tmpfs, `/proc`, `/dev/pts`, user binds, and anything
//! placed inside those). On a root host the static steps of the minimal root
//! run once, into a cached skeleton (see `skeleton.rs`); every cell then
//! attaches a clone of it and runs only its per-cell steps.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Errno, Error, Result};
use crate::path::{join_lexical, CellPath};
use crate::sandbox::{tmpfs_inodes, MountSpec, Network, Root, Sandbox, DEFAULT_TMP_SIZE};
use crate::spawn::cell::Op;
use crate::spawn::hostpath::{self, Untrusted};
use crate::spawn::idmap::{self, IdPlan};
use crate::spawn::layout::{Layout, Node};
use crate::sys;

/// Host directories bound read-only into the minimal root (symlinks stay symlinks).
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// `/etc` entries programs need to run. Never secrets: no shadow, ssh keys, machine-id.
const ETC_ENTRIES: &[&str] = &[
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "nsswitch.conf",
    "localtime",
    "timezone",
    "alternatives",
    "os-release",
    "services",
    "protocols",
];
/// `/etc` entries that only matter with the host's network.
const ETC_NETWORK_ENTRIES: &[&str] = &[
    "resolv.conf",
    "host.conf",
    "gai.conf",
    "ssl",
    "ca-certificates",
];
const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
const DEV_SHM_SIZE: u64 = 64 << 20;
/// World-readable /proc files that say too much about the host (timers,
/// keys, kernel symbols): each is covered by the cell's /dev/null. Files only
/// host root may read (kcore, kpage*) need no mask: the cell has no host ids.
const PROC_MASKED: &[&str] = &[
    "keys",
    "key-users",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "latency_stats",
    "kallsyms",
];
/// /proc directories hidden behind an empty read-only tmpfs.
const PROC_MASKED_DIRS: &[&str] = &["acpi", "asound", "scsi"];
/// /proc entries made read-only. Others that only host root may write (irq,
/// bus, fs) are left: every mount costs each cell, and ownership protects them.
const PROC_READ_ONLY: &[&str] = &["sys", "sysrq-trigger"];
/// /sys entries hidden behind an empty read-only tmpfs.
const SYS_MASKED_DIRS: &[&str] = &["firmware", "devices/virtual/powercap"];
/// What the kernel's /proc and /sys have and what the host's device nodes
/// are: fixed while the process lives, so asked once instead of with two
/// dozen `stat` calls in every spawn.
struct HostFacts {
    proc_files: Vec<&'static str>,
    proc_dirs: Vec<&'static str>,
    proc_read_only: Vec<&'static str>,
    sys_dirs: Vec<&'static str>,
    /// Character devices among `DEV_NODES`: name, device number, mode.
    dev_nodes: Vec<(&'static str, u64, u32)>,
}

fn host_facts() -> &'static HostFacts {
    static FACTS: std::sync::OnceLock<HostFacts> = std::sync::OnceLock::new();
    FACTS.get_or_init(|| {
        let present = |dir: &str, names: &[&'static str], test: fn(&Path) -> bool| {
            names
                .iter()
                .copied()
                .filter(|n| test(&Path::new(dir).join(n)))
                .collect()
        };
        HostFacts {
            proc_files: present("/proc", PROC_MASKED, Path::is_file),
            proc_dirs: present("/proc", PROC_MASKED_DIRS, Path::is_dir),
            proc_read_only: present("/proc", PROC_READ_ONLY, Path::exists),
            sys_dirs: present("/sys", SYS_MASKED_DIRS, Path::is_dir),
            dev_nodes: DEV_NODES
                .iter()
                .filter_map(|&n| {
                    let md = std::fs::metadata(Path::new("/dev").join(n)).ok()?;
                    md.file_type()
                        .is_char_device()
                        .then(|| (n, md.rdev(), md.mode()))
                })
                .collect(),
        }
    })
}

/// Host files larger than this are bound, not copied into a skeleton.
const COPY_MAX: u64 = 4 << 20;

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
    fn of(md: &std::fs::Metadata) -> Fingerprint {
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

/// What a bind is for: decides how it is made and its flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BindKind {
    User { writable: bool },
    Rootfs,
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

/// Builds the root plan of a sandbox: emits steps and keeps the layout in step.
pub(crate) struct Builder {
    /// Symlinks owned by these ids are never followed on the host.
    untrusted: Untrusted,
    steps: Vec<Step>,
    trees: Vec<OwnedFd>,
    layout: Layout,
    mount_api: bool,
    skeleton: bool,
    user_tmp: bool,
}

impl Builder {
    /// `skeleton`: build the static part once (root hosts with the minimal root).
    pub(crate) fn new(
        sandbox: &Sandbox,
        mount_api: bool,
        skeleton: bool,
        untrusted: Untrusted,
    ) -> Builder {
        Builder {
            untrusted,
            steps: Vec::new(),
            trees: Vec::new(),
            layout: Layout::default(),
            mount_api,
            skeleton: skeleton && mount_api && matches!(sandbox.root, Root::Minimal),
            user_tmp: sandbox.mounts.iter().any(|m| {
                matches!(m, MountSpec::Tmpfs { target, .. }
                    if CellPath::new(target).is_ok_and(|t| t.as_bytes() == b"/tmp"))
            }),
        }
    }

    pub(crate) fn build(mut self, sandbox: &Sandbox, ids: &IdPlan) -> Result<RootPlan> {
        self.root(sandbox, ids)?;
        for m in &sandbox.mounts {
            self.user_mount(m, ids)?;
        }
        if matches!(sandbox.root, Root::Minimal) {
            // The root itself read-only; device nodes live in it with a skeleton.
            let set = if self.skeleton {
                sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID
            } else {
                sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV
            };
            self.steps.push(Step::SetAttr {
                at: CellPath::root(),
                set,
                recursive: false,
                fallback: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            });
        }
        Ok(RootPlan {
            steps: self.steps,
            layout: self.layout,
            trees: self.trees,
            skeleton: self.skeleton,
        })
    }

    fn mkdir(&mut self, p: &CellPath) {
        self.steps.push(Step::Mkdir { at: p.clone() });
        self.layout.add(p.clone(), Node::Dir);
    }

    fn ensure_dir(&mut self, p: &CellPath) {
        if self.layout.lookup(p).is_none() {
            self.mkdir(p);
        }
    }

    fn tmpfs(&mut self, p: &CellPath, flags: u64, data: String) {
        self.steps.push(Step::Tmpfs {
            at: p.clone(),
            flags,
            data,
        });
        self.layout.mount_empty(p.clone());
    }

    fn symlink(&mut self, value: &[u8], link: &CellPath) -> Result<()> {
        if value.contains(&0) {
            return Err(Error::NulByte {
                what: format!("symlink target for {}", link.display()),
                value: String::from_utf8_lossy(value).into_owned(),
            });
        }
        self.steps.push(Step::Symlink {
            at: link.clone(),
            value: value.to_vec(),
        });
        self.layout.add(link.clone(), Node::Symlink(value.to_vec()));
        Ok(())
    }

    fn write_file(&mut self, p: &CellPath, data: Arc<[u8]>, mode: u32) {
        self.steps.push(Step::Write {
            at: p.clone(),
            data,
            mode,
        });
        self.layout.add(
            p.clone(),
            Node::File {
                executable: mode & 0o111 != 0,
            },
        );
    }

    /// Opens a user bind source or the rootfs on the host, following only
    /// symlinks no job can have planted.
    fn open_source(&self, source: &Path, what: &'static str) -> Result<(OwnedFd, bool)> {
        let fd = hostpath::open_path(source, &self.untrusted)
            .map_err(|r| hostpath::refused(what, source, r))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| Error::HostPath {
            what,
            path: source.to_owned(),
            errno: e.into(),
        })?;
        let is_dir =
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
        Ok((fd, is_dir))
    }

    /// A user bind or the rootfs: opened by the host (its permissions, its view,
    /// before anything is mounted over the path) and cloned with `open_tree`
    /// from that very descriptor; the cell only attaches the clone.
    fn bind(
        &mut self,
        source: &Path,
        opened: OwnedFd,
        target: &CellPath,
        kind: BindKind,
    ) -> Result<()> {
        let what = match kind {
            BindKind::User { .. } => "bind source",
            BindKind::Rootfs => "rootfs",
        };
        let writable = kind == BindKind::User { writable: true };
        let mut set = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
        if !writable {
            set |= sys::MOUNT_ATTR_RDONLY;
        }
        if source.as_os_str().as_bytes().contains(&0) {
            return Err(Error::NulByte {
                what: format!("{what} path"),
                value: source.display().to_string(),
            });
        }
        if self.mount_api {
            let fd =
                sys::host::open_tree_clone_fd(&opened, set).map_err(|errno| Error::HostPath {
                    what,
                    path: source.to_owned(),
                    errno,
                })?;
            self.trees.push(fd);
            self.steps.push(Step::Tree {
                at: target.clone(),
                source: source.to_owned(),
                tree: self.trees.len() - 1,
            });
        } else {
            // Old kernels bind by path in the cell; the walk above refused
            // planted symlinks, but what lies at the path can still change.
            let mut fallback = locked_flags(source) | libc::MS_NOSUID | libc::MS_NODEV;
            if !writable {
                fallback |= libc::MS_RDONLY;
            }
            self.steps.push(Step::PathBind {
                at: target.clone(),
                source: source.to_owned(),
                set,
                fallback,
            });
        }
        // A user's rootfs is theirs; what binds show, other jobs may have written.
        match kind {
            BindKind::Rootfs => self.layout.mount_host(target.clone(), source),
            BindKind::User { .. } => self.layout.mount_host_untrusted(target.clone(), source),
        }
        Ok(())
    }

    /// A read-only bind of a host system path (world-readable, owned by root):
    /// bound by path inside the cell, or into the skeleton.
    fn system_bind(&mut self, source: &Path, target: &CellPath, device: bool) {
        let fallback = if self.mount_api {
            0
        } else {
            locked_flags(source) | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV
        };
        self.steps.push(Step::SystemBind {
            at: target.clone(),
            source: source.to_owned(),
            device,
            fallback,
        });
        self.layout.mount_host(target.clone(), source);
    }

    /// Creates the mount point for a host path: a directory, or an empty file.
    fn mount_point(&mut self, is_dir: bool, target: &CellPath) -> Result<()> {
        match self.layout.lookup(target) {
            Some(Node::Dir) if is_dir => {}
            Some(Node::File { .. }) | Some(Node::Other) if !is_dir => {}
            Some(_) => {
                return Err(Error::InvalidPath {
                    path: target.display(),
                    reason: "the mount point exists in the cell with another file type",
                })
            }
            None if is_dir => self.mkdir(target),
            None => {
                self.steps.push(Step::Touch { at: target.clone() });
                self.layout
                    .add(target.clone(), Node::File { executable: false });
            }
        }
        Ok(())
    }

    /// Resolves the directory that will hold `target`, creating missing
    /// directories along the way, and returns `target` with its parent resolved.
    fn prepare_parent(&mut self, target: &CellPath) -> Result<CellPath> {
        if target.is_root() {
            return Err(Error::InvalidPath {
                path: "/".into(),
                reason: "cannot replace the root; use Sandbox::rootfs",
            });
        }
        let last = target.components().last().unwrap_or_default().to_vec();
        let mut cur = CellPath::root();
        let mut pending: Vec<Vec<u8>> = target
            .parent()
            .components()
            .rev()
            .map(<[u8]>::to_vec)
            .collect();
        let mut links = 0;
        while let Some(c) = pending.pop() {
            let cand = cur.join(&c);
            match self.layout.lookup(&cand) {
                None => {
                    self.mkdir(&cand);
                    cur = cand;
                }
                Some(Node::Dir) => cur = cand,
                Some(Node::Symlink(_)) if self.layout.in_untrusted_mount(&cand) => {
                    return Err(Error::InvalidPath {
                        path: target.display(),
                        reason: "the path crosses a symlink inside a bind mount (a job may have planted it)",
                    });
                }
                Some(Node::Symlink(v)) => {
                    links += 1;
                    if links > 40 {
                        return Err(Error::InvalidPath {
                            path: target.display(),
                            reason: "too many symlinks inside the cell",
                        });
                    }
                    let t = join_lexical(&cur, &v);
                    pending.extend(t.components().rev().map(<[u8]>::to_vec));
                    cur = CellPath::root();
                }
                Some(_) => {
                    return Err(Error::InvalidPath {
                        path: target.display(),
                        reason: "a parent is not a directory inside the cell",
                    })
                }
            }
        }
        let full = cur.join(&last);
        // A symlink at the target itself would be followed by mount(2) on the host
        // side of pivot_root; follow it here, inside the cell, instead.
        match self.layout.lookup(&full) {
            Some(Node::Symlink(_)) if self.layout.in_untrusted_mount(&full) => {
                Err(Error::InvalidPath {
                    path: target.display(),
                    reason:
                        "the target is a symlink inside a bind mount (a job may have planted it)",
                })
            }
            Some(Node::Symlink(_)) => match self.layout.resolve(&full, true) {
                Ok((p, _)) => Ok(p),
                Err(_) => Err(Error::InvalidPath {
                    path: target.display(),
                    reason: "the target is a dangling symlink inside the cell",
                }),
            },
            _ => Ok(full),
        }
    }

    fn root(&mut self, sandbox: &Sandbox, ids: &IdPlan) -> Result<()> {
        match &sandbox.root {
            Root::Minimal => {
                self.steps.push(Step::RootTmpfs);
                self.layout.mount_empty(CellPath::root());
                for dir in SYSTEM_DIRS {
                    self.system_entry(Path::new(dir), &CellPath::new(dir)?)?;
                }
                self.etc(sandbox, ids)?;
            }
            Root::Dir(dir) => {
                let (fd, is_dir) = self.open_source(dir, "rootfs")?;
                if !is_dir {
                    return Err(Error::HostPath {
                        what: "rootfs",
                        path: dir.clone(),
                        errno: Errno(libc::ENOTDIR),
                    });
                }
                self.layout.add(CellPath::root(), Node::Dir);
                self.bind(dir, fd, &CellPath::root(), BindKind::Rootfs)?;
            }
        }
        self.dev()?;
        let proc_ = CellPath::new("/proc")?;
        self.ensure_dir(&proc_);
        self.steps.push(Step::Proc { at: proc_.clone() });
        self.layout.mount_empty(proc_.clone());
        // /proc/self resolves at run time; enough for the layout to know it exists.
        self.layout.add(proc_.join(b"self"), Node::Dir);
        // SysV shared memory would otherwise outlive the job until the kernel
        // gets round to freeing its IPC namespace (nsjail issue 231): with
        // this set, a segment goes with the last process that used it.
        self.steps.push(Step::Sysctl {
            at: CellPath::new("/proc/sys/kernel/shm_rmid_forced")?,
            value: b"1",
            ipc: true,
        });
        self.proc_masks(&proc_);
        if sandbox.sysfs {
            self.sysfs(sandbox)?;
        }
        if !self.user_tmp {
            let tmp = CellPath::new("/tmp")?;
            self.ensure_dir(&tmp);
            self.tmpfs(
                &tmp,
                libc::MS_NOSUID | libc::MS_NODEV,
                format!(
                    "mode=1777,size={DEFAULT_TMP_SIZE},nr_inodes={}",
                    tmpfs_inodes(DEFAULT_TMP_SIZE)
                ),
            );
        }
        Ok(())
    }

    /// Hides what /proc says about the host and makes its writable parts read-only.
    /// Only entries this kernel has are touched (the cell's /proc is of the same kernel).
    fn proc_masks(&mut self, proc_: &CellPath) {
        let facts = host_facts();
        for name in &facts.proc_files {
            self.steps.push(Step::MaskFile {
                at: proc_.join(name.as_bytes()),
            });
        }
        for name in &facts.proc_dirs {
            self.steps.push(Step::MaskDir {
                at: proc_.join(name.as_bytes()),
            });
        }
        for name in &facts.proc_read_only {
            self.steps.push(Step::ReadOnly {
                at: proc_.join(name.as_bytes()),
            });
        }
    }

    /// A read-only /sys: a fresh sysfs when the cell has its own network
    /// namespace (sysfs shows the network devices of the namespace that
    /// mounts it), else a read-only bind of the host's.
    fn sysfs(&mut self, sandbox: &Sandbox) -> Result<()> {
        let sys = CellPath::new("/sys")?;
        self.ensure_dir(&sys);
        if sandbox.network == Network::None {
            self.steps.push(Step::Sysfs { at: sys.clone() });
            self.layout.mount_empty(sys.clone());
        } else {
            let (fd, _) = self.open_source(Path::new("/sys"), "sysfs")?;
            self.bind(
                Path::new("/sys"),
                fd,
                &sys,
                BindKind::User { writable: false },
            )?;
        }
        for d in &host_facts().sys_dirs {
            self.steps.push(Step::MaskDir {
                at: CellPath::new(format!("/sys/{d}"))?,
            });
        }
        Ok(())
    }

    /// Mirrors one host system entry: a symlink as a symlink; a directory or
    /// file as a read-only bind, or (into a skeleton) a copy when it is small
    /// and world-readable.
    fn system_entry(&mut self, host: &Path, cell: &CellPath) -> Result<()> {
        // Asked on every spawn: cached while the host says nothing changed.
        let Some(facts) = super::hostwatch::lookup(host) else {
            return Ok(()); // absent on this host
        };
        let md = facts.md;
        let ft = md.file_type();
        if ft.is_symlink() {
            let Some(v) = facts.link else {
                return Ok(());
            };
            return self.symlink(v.as_os_str().as_bytes(), cell);
        }
        let world_readable = md.mode() & 0o004 != 0;
        let top_level = cell.parent().is_root();
        if self.skeleton && !top_level && world_readable {
            if ft.is_file() && md.size() <= COPY_MAX {
                self.steps.push(Step::Copy {
                    at: cell.clone(),
                    source: host.to_owned(),
                    print: Fingerprint::of(&md),
                });
                self.layout.mount_host(cell.clone(), host);
                return Ok(());
            }
            if ft.is_dir() && copyable_dir(host, Fingerprint::of(&md)) {
                self.steps.push(Step::CopyDir {
                    at: cell.clone(),
                    source: host.to_owned(),
                    print: Fingerprint::of(&md),
                });
                self.layout.mount_host(cell.clone(), host);
                return Ok(());
            }
        }
        if ft.is_dir() || ft.is_file() {
            // Not a symlink: lstat said what stat would.
            self.mount_point(ft.is_dir(), cell)?;
            self.system_bind(host, cell, false);
        }
        Ok(())
    }

    fn etc(&mut self, sandbox: &Sandbox, ids: &IdPlan) -> Result<()> {
        let etc = CellPath::new("/etc")?;
        self.mkdir(&etc);
        let (passwd, group) = idmap::passwd_and_group(ids);
        let host = String::from_utf8_lossy(sandbox.hostname.as_bytes()).into_owned();
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{host}\n"
        );
        for (name, data) in [
            ("passwd", passwd),
            ("group", group),
            ("hosts", hosts),
            ("hostname", format!("{host}\n")),
        ] {
            self.write_file(&etc.join(name.as_bytes()), data.into_bytes().into(), 0o644);
        }
        let extra: &[&str] = if sandbox.network == Network::Host {
            ETC_NETWORK_ENTRIES
        } else {
            &[]
        };
        for name in ETC_ENTRIES.iter().chain(extra) {
            self.system_entry(&Path::new("/etc").join(name), &etc.join(name.as_bytes()))?;
        }
        Ok(())
    }

    fn dev(&mut self) -> Result<()> {
        let dev = CellPath::new("/dev")?;
        self.ensure_dir(&dev);
        if !self.skeleton {
            // Device nodes cannot be made in a user namespace: bind the host's
            // into a tmpfs of their own, read-only once filled.
            self.tmpfs(
                &dev,
                libc::MS_NOSUID | libc::MS_NOEXEC,
                "mode=0755,size=64k,nr_inodes=64".into(),
            );
        }
        for &(node, rdev, mode) in &host_facts().dev_nodes {
            let host = Path::new("/dev").join(node);
            let cell = dev.join(node.as_bytes());
            if self.skeleton {
                // The skeleton is made by host root, which may mknod: no mounts.
                self.steps.push(Step::Mknod {
                    at: cell.clone(),
                    rdev,
                    mode: mode & 0o777,
                });
            } else {
                self.steps.push(Step::Touch { at: cell.clone() });
                self.system_bind(&host, &cell, true);
            }
            self.layout.add(cell, Node::Other);
        }
        let pts = dev.join(b"pts");
        self.mkdir(&pts);
        self.steps.push(Step::Devpts { at: pts.clone() });
        self.layout.mount_empty(pts);
        for (link, value) in [
            ("ptmx", "pts/ptmx"),
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            self.symlink(value.as_bytes(), &dev.join(link.as_bytes()))?;
        }
        let shm = dev.join(b"shm");
        self.mkdir(&shm);
        self.tmpfs(
            &shm,
            libc::MS_NOSUID | libc::MS_NODEV,
            format!(
                "mode=1777,size={DEV_SHM_SIZE},nr_inodes={}",
                tmpfs_inodes(DEV_SHM_SIZE)
            ),
        );
        if !self.skeleton {
            self.steps.push(Step::SetAttr {
                at: dev,
                set: sys::MOUNT_ATTR_RDONLY,
                recursive: false,
                fallback: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC,
            });
        }
        Ok(())
    }

    fn user_mount(&mut self, m: &MountSpec, ids: &IdPlan) -> Result<()> {
        match m {
            MountSpec::Bind {
                source,
                target,
                writable,
            } => {
                let t = CellPath::new(target)?;
                if source.as_os_str().is_empty() {
                    return Err(Error::HostPath {
                        what: "bind source",
                        path: source.clone(),
                        errno: Errno(libc::ENOENT),
                    });
                }
                let (fd, is_dir) = self.open_source(source, "bind source")?;
                let t = self.prepare_parent(&t)?;
                self.mount_point(is_dir, &t)?;
                self.bind(
                    source,
                    fd,
                    &t,
                    BindKind::User {
                        writable: *writable,
                    },
                )
            }
            MountSpec::Tmpfs {
                target,
                size,
                inodes,
            } => {
                let t = CellPath::new(target)?;
                if *size < 4096 || *size > 1 << 50 {
                    return Err(Error::InvalidSetting {
                        name: "tmpfs size",
                        value: size.to_string(),
                        reason: "must be between 4 KiB and 1 PiB".into(),
                    });
                }
                if inodes.is_some_and(|n| !(2..=1 << 32).contains(&n)) {
                    return Err(Error::InvalidSetting {
                        name: "tmpfs inodes",
                        value: inodes.unwrap_or_default().to_string(),
                        reason: "must be between 2 and 2^32 (the root directory is one)".into(),
                    });
                }
                let inodes = inodes.unwrap_or_else(|| tmpfs_inodes(*size));
                let t = self.prepare_parent(&t)?;
                self.ensure_dir(&t);
                let data = if t.as_bytes() == b"/tmp" {
                    format!("mode=1777,size={size},nr_inodes={inodes}")
                } else {
                    format!(
                        "mode=0755,uid={},gid={},size={size},nr_inodes={inodes}",
                        ids.uid, ids.gid
                    )
                };
                self.tmpfs(&t, libc::MS_NOSUID | libc::MS_NODEV, data);
                Ok(())
            }
            MountSpec::Dir { target } => {
                let t = CellPath::new(target)?;
                let t = self.prepare_parent(&t)?;
                self.mkdir(&t);
                Ok(())
            }
            MountSpec::Symlink { value, link } => {
                let l = CellPath::new(link)?;
                let l = self.prepare_parent(&l)?;
                if value.as_os_str().is_empty() {
                    return Err(Error::InvalidPath {
                        path: String::new(),
                        reason: "a symlink needs a non-empty target",
                    });
                }
                self.symlink(value.as_os_str().as_bytes(), &l)
            }
            MountSpec::File { target, contents } => {
                let t = CellPath::new(target)?;
                let t = self.prepare_parent(&t)?;
                self.write_file(&t, contents.clone(), 0o644);
                Ok(())
            }
        }
    }
}

/// A host directory a skeleton can copy: only symlinks and small,
/// world-readable files. Remembered per directory while its fingerprint holds
/// (listing /etc/alternatives costs a stat per entry, every spawn otherwise).
fn copyable_dir(dir: &Path, print: Fingerprint) -> bool {
    static SEEN: parking_lot::Mutex<Vec<(PathBuf, Fingerprint, bool)>> =
        parking_lot::Mutex::new(Vec::new());
    if let Some((_, _, ok)) = SEEN.lock().iter().find(|(d, p, _)| d == dir && *p == print) {
        return *ok;
    }
    let ok = scan_copyable(dir);
    let mut seen = SEEN.lock();
    seen.retain(|(d, ..)| d != dir);
    seen.push((dir.to_owned(), print, ok));
    ok
}

fn scan_copyable(dir: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut n = 0;
    for e in rd {
        let Ok(e) = e else { return false };
        let Ok(md) = e.path().symlink_metadata() else {
            return false;
        };
        let ft = md.file_type();
        let ok =
            ft.is_symlink() || (ft.is_file() && md.size() <= COPY_MAX && md.mode() & 0o004 != 0);
        n += 1;
        if !ok || n > 4096 {
            return false;
        }
    }
    true
}

/// Mount flags a bind in a user namespace must keep from its source, or the
/// read-only remount fails with EPERM (they are locked; hakoniwa learnt this).
pub(crate) fn locked_flags(source: &Path) -> u64 {
    let Ok(st) = rustix::fs::statvfs(source) else {
        return 0;
    };
    let f = st.f_flag;
    let mut out = 0;
    for (st_flag, ms_flag) in [
        (rustix::fs::StatVfsMountFlags::NOSUID, libc::MS_NOSUID),
        (rustix::fs::StatVfsMountFlags::NODEV, libc::MS_NODEV),
        (rustix::fs::StatVfsMountFlags::NOEXEC, libc::MS_NOEXEC),
        (rustix::fs::StatVfsMountFlags::NOATIME, libc::MS_NOATIME),
        (
            rustix::fs::StatVfsMountFlags::NODIRATIME,
            libc::MS_NODIRATIME,
        ),
        (rustix::fs::StatVfsMountFlags::RELATIME, libc::MS_RELATIME),
    ] {
        if f.contains(st_flag) {
            out |= ms_flag;
        }
    }
    out
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
