//! The minimal root's system part: the host's system directories and `/etc`
//! entries (bound, or copied into a skeleton), `/dev`, and what `/proc` and
//! `/sys` must not show of the host.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::builder::{BindKind, Builder};
use super::{Fingerprint, Step};
use crate::error::{Errno, Error, Result};
use crate::path::CellPath;
use crate::sandbox::{tmpfs_inodes, Network, Root, Sandbox, DEFAULT_TMP_SIZE};
use crate::spawn::idmap::{self, IdPlan};
use crate::spawn::layout::Node;
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

impl Builder {
    pub(super) fn root(&mut self, sandbox: &Sandbox, ids: &IdPlan) -> Result<()> {
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
                BindKind::User {
                    writable: false,
                    owned_by: None,
                },
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
        let Some(facts) = crate::spawn::hostwatch::lookup(host) else {
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
            self.system_bind(host, cell, false)?;
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
                self.system_bind(&host, &cell, true)?;
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
