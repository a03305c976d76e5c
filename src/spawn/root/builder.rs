//! Building a root plan: the steps a sandbox's root takes, emitted with the
//! model of the tree they make (`Layout`) kept in step, so that every path
//! is checked before anything runs. Binds (opened and cloned by the host),
//! tmpfs, files, symlinks and the parents they need; the minimal root's
//! system part is `system.rs`.

use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use super::{RootPlan, Step};
use crate::error::{Errno, Error, Result};
use crate::path::{join_lexical, CellPath};
use crate::sandbox::{tmpfs_inodes, MountSpec, Root, Sandbox};
use crate::spawn::hostpath::{self, Untrusted};
use crate::spawn::idmap::IdPlan;
use crate::spawn::idmount;
use crate::spawn::layout::{Layout, Node};
use crate::sys;

/// What a bind is for: decides how it is made and its flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BindKind {
    /// `owned_by`: the job's host ids, which the source's owner is to show
    /// as (an idmapped bind, `Sandbox::bind_rw_owned`).
    User {
        writable: bool,
        owned_by: Option<(u32, u32)>,
    },
    Rootfs,
}

/// Builds the root plan of a sandbox: emits steps and keeps the layout in step.
pub(crate) struct Builder {
    /// Symlinks owned by these ids are never followed on the host.
    pub(super) untrusted: Untrusted,
    pub(super) steps: Vec<Step>,
    pub(super) trees: Vec<OwnedFd>,
    pub(super) layout: Layout,
    pub(super) mount_api: bool,
    pub(super) skeleton: bool,
    /// Host system paths are cloned by the host (`open_tree`) rather than
    /// bound by name in the cell (see [`Builder::system_trees`]).
    pub(super) system_trees: bool,
    pub(super) user_tmp: bool,
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
            system_trees: false,
            user_tmp: sandbox.mounts.iter().any(|m| {
                matches!(m, MountSpec::Tmpfs { target, .. }
                    if CellPath::new(target).is_ok_and(|t| t.as_bytes() == b"/tmp"))
            }),
        }
    }

    /// Has the host clone the system paths a root without skeleton binds
    /// (`/usr`, `/etc` entries, device nodes) with `open_tree`, so the cell
    /// only attaches them and needs nothing of the host's mount table: the
    /// spawner, whose mount namespace has none of the host's paths, can
    /// then clone it. For root hosts with the mount API; elsewhere, and for
    /// any path that cannot be cloned, the cell binds by name.
    pub(crate) fn system_trees(mut self, on: bool) -> Builder {
        self.system_trees = on && self.mount_api;
        self
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

    pub(super) fn mkdir(&mut self, p: &CellPath) {
        self.steps.push(Step::Mkdir { at: p.clone() });
        self.layout.add(p.clone(), Node::Dir);
    }

    pub(super) fn ensure_dir(&mut self, p: &CellPath) {
        if self.layout.lookup(p).is_none() {
            self.mkdir(p);
        }
    }

    pub(super) fn tmpfs(&mut self, p: &CellPath, flags: u64, data: String) {
        self.steps.push(Step::Tmpfs {
            at: p.clone(),
            flags,
            data,
        });
        self.layout.mount_empty(p.clone());
    }

    pub(super) fn symlink(&mut self, value: &[u8], link: &CellPath) -> Result<()> {
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

    pub(super) fn write_file(&mut self, p: &CellPath, data: Arc<[u8]>, mode: u32) {
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
    pub(super) fn open_source(&self, source: &Path, what: &'static str) -> Result<(OwnedFd, bool)> {
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
    pub(super) fn bind(
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
        let (writable, owned_by) = match kind {
            BindKind::User { writable, owned_by } => (writable, owned_by),
            BindKind::Rootfs => (false, None),
        };
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
        // The source's owner, to be shown as the job's host ids; `None` when
        // no idmap is needed (not an owned bind, or the job owns it already).
        let idmap = match owned_by {
            Some(to) => {
                let st = rustix::fs::fstat(&opened).map_err(|e| Error::HostPath {
                    what,
                    path: source.to_owned(),
                    errno: e.into(),
                })?;
                let from = (st.st_uid, st.st_gid);
                (from != to).then_some((from, to))
            }
            None => None,
        };
        if idmap.is_some() && !self.mount_api {
            return Err(Error::OwnedBind {
                path: source.to_owned(),
                reason: "an idmapped mount needs open_tree and mount_setattr (Linux 5.12+) and \
                         root, and binds here are made by path"
                    .into(),
                errno: Errno(libc::ENOSYS),
            });
        }
        if self.mount_api {
            let fd =
                sys::host::open_tree_clone_fd(&opened, set).map_err(|errno| Error::HostPath {
                    what,
                    path: source.to_owned(),
                    errno,
                })?;
            if let Some((from, to)) = idmap {
                idmount::idmap_tree(&fd, from, to).map_err(|(op, errno)| Error::OwnedBind {
                    path: source.to_owned(),
                    reason: idmount::reason(op, errno, &idmount::fs_name(&opened)),
                    errno,
                })?;
            }
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
    ///
    /// With system trees on, the host clones the path here. A clone refused
    /// for want of a resource (a descriptor, memory) fails the spawn, naming
    /// the path: binding it by name instead would need the host's mount
    /// table in the cell, so the spawner could no longer serve it, and the
    /// clone from the host would then fail for the same want a step later.
    /// Any other refusal falls back to the bind by name.
    pub(super) fn system_bind(
        &mut self,
        source: &Path,
        target: &CellPath,
        device: bool,
    ) -> Result<()> {
        if self.system_trees {
            // Device nodes keep their mount's flags (nodev would make them useless).
            let set = match device {
                true => 0,
                false => sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
            };
            let tree = std::ffi::CString::new(source.as_os_str().as_bytes())
                .map_err(|_| Errno(libc::EINVAL))
                .and_then(|c| sys::host::open_tree_clone(&c, set));
            match tree {
                Ok(fd) => {
                    self.trees.push(fd);
                    self.steps.push(Step::Tree {
                        at: target.clone(),
                        source: source.to_owned(),
                        tree: self.trees.len() - 1,
                    });
                    self.layout.mount_host(target.clone(), source);
                    return Ok(());
                }
                Err(errno @ Errno(libc::EMFILE | libc::ENFILE | libc::ENOMEM)) => {
                    return Err(Error::Spawn {
                        op: "clone a system path for the cell (open_tree)",
                        path: Some(source.to_owned()),
                        errno,
                        hint: None,
                    });
                }
                Err(_) => {}
            }
        }
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
        Ok(())
    }

    /// Creates the mount point for a host path: a directory, or an empty file.
    pub(super) fn mount_point(&mut self, is_dir: bool, target: &CellPath) -> Result<()> {
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

    fn user_mount(&mut self, m: &MountSpec, ids: &IdPlan) -> Result<()> {
        match m {
            MountSpec::Bind {
                source,
                target,
                writable,
                owned,
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
                        owned_by: owned.then_some((ids.host_uid, ids.host_gid)),
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
