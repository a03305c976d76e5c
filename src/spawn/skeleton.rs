//! The static part of the minimal root, built once per configuration.
//!
//! Most of the minimal root is the same for every cell of a sandbox: its
//! directories, the generated and copied `/etc` files, the device nodes, the
//! read-only `/usr`. Building that in every cell costs ~70 mount and file
//! operations; instead the preparation thread builds it once into a tmpfs in
//! its private mount namespace (a *skeleton*), makes it read-only, and hands
//! every cell a clone (`open_tree`), which the cell attaches with one
//! `move_mount` before mounting its own `/proc`, `/tmp`, `/dev/shm`,
//! `/dev/pts` and binds on top.
//!
//! Being made by host root brings two more gains: device nodes are real
//! (`mknod`), not bind mounts, and small `/etc` files are copies. A cell's
//! mount table shrinks from ~30 entries to ~6, which also makes its teardown
//! cheaper. The skeleton's files belong to the cell's root (the first id of
//! the mapped range); it is read-only and shared, so no cell can change what
//! another sees.

use std::collections::hash_map::DefaultHasher;
use std::ffi::CString;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::Errno;
use crate::path::CellPath;
use crate::spawn::root::Step;
use crate::sys;

/// What a skeleton is made of: its static steps and the owner of its files.
pub(crate) struct Spec {
    pub steps: Vec<Step>,
    /// Host uid and gid of the cell's root.
    pub owner: (u32, u32),
}

/// A 128-bit digest of a skeleton's content: the steps (with the fingerprints
/// of the host files they copy) and the owner.
pub(crate) fn key(steps: &[&Step], owner: (u32, u32)) -> u128 {
    let half = |salt: u8| {
        let mut h = DefaultHasher::new();
        salt.hash(&mut h);
        owner.hash(&mut h);
        for s in steps {
            s.hash(&mut h);
        }
        h.finish() as u128
    };
    half(0) << 64 | half(1)
}

/// A failed step of a skeleton build: the step's description and the errno
/// (`host::check` shows it; the cells build their roots themselves then).
#[derive(Clone, Debug)]
pub(crate) struct BuildError {
    pub detail: String,
    pub errno: Errno,
}

fn io_err(e: std::io::Error) -> Errno {
    Errno::from(&e)
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("skeleton paths have no NUL")
}

/// Builds a skeleton under `dir` (an empty directory of the preparation
/// thread's private mount namespace). Runs on that thread only.
pub(crate) fn build(spec: &Spec, dir: &Path) -> std::result::Result<(), BuildError> {
    for step in &spec.steps {
        build_step(step, spec.owner, dir).map_err(|errno| BuildError {
            detail: step.describe(),
            errno,
        })?;
    }
    Ok(())
}

fn build_step(step: &Step, owner: (u32, u32), dir: &Path) -> std::result::Result<(), Errno> {
    let (uid, gid) = owner;
    let at = |p: &CellPath| -> PathBuf {
        if p.is_root() {
            dir.to_owned()
        } else {
            dir.join(std::ffi::OsStr::from_bytes(&p.as_bytes()[1..]))
        }
    };
    let own = |p: &Path| -> std::result::Result<(), Errno> {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(io_err)
    };
    {
        match step {
            Step::RootTmpfs => {
                // Not nodev: the skeleton holds the cell's device nodes.
                let data = CString::new(format!(
                    "mode=0755,size=16m,nr_inodes=16384,uid={uid},gid={gid}"
                ))
                .expect("no NUL");
                sys::mount(
                    Some(c"tmpfs"),
                    &cpath(dir),
                    Some(c"tmpfs"),
                    libc::MS_NOSUID,
                    Some(&data),
                )?;
            }
            Step::Mkdir { at: p } => {
                let path = at(p);
                match std::fs::DirBuilder::new().mode(0o755).create(&path) {
                    Ok(()) => own(&path)?,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
            Step::Touch { at: p } => {
                let path = at(p);
                create(&path, 0o644, &[])?;
                own(&path)?;
            }
            Step::Write { at: p, data, mode } => {
                let path = at(p);
                create(&path, *mode, data)?;
                own(&path)?;
            }
            Step::Symlink { at: p, value } => {
                let path = at(p);
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(value), &path)
                    .map_err(io_err)?;
                own(&path)?;
            }
            Step::Copy { at: p, source, .. } => {
                let path = at(p);
                copy_file(source, &path)?;
                own(&path)?;
            }
            Step::CopyDir { at: p, source, .. } => {
                let path = at(p);
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&path)
                    .map_err(io_err)?;
                own(&path)?;
                let entries = std::fs::read_dir(source).map_err(io_err)?;
                for e in entries {
                    let e = e.map_err(io_err)?;
                    let (from, to) = (e.path(), path.join(e.file_name()));
                    let ft = e.file_type().map_err(io_err)?;
                    if ft.is_symlink() {
                        let v = std::fs::read_link(&from).map_err(io_err)?;
                        std::os::unix::fs::symlink(v, &to).map_err(io_err)?;
                    } else if ft.is_file() {
                        copy_file(&from, &to)?;
                    } else {
                        continue;
                    }
                    own(&to)?;
                }
            }
            Step::Mknod { at: p, rdev, mode } => {
                let path = at(p);
                let c = cpath(&path);
                // SAFETY: c is a valid NUL-terminated path; mknod takes no other memory.
                let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | *mode, *rdev) };
                if r != 0 {
                    return Err(Errno::last());
                }
                // mknod honours the umask; the host's mode is what we want.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
                    .map_err(io_err)?;
                own(&path)?;
            }
            Step::SystemBind { at: p, source, .. } => {
                let path = at(p);
                sys::mount(
                    Some(&cpath(source)),
                    &cpath(&path),
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )?;
                let attr = sys::MountAttr {
                    attr_set: sys::MOUNT_ATTR_RDONLY
                        | sys::MOUNT_ATTR_NOSUID
                        | sys::MOUNT_ATTR_NODEV,
                    ..Default::default()
                };
                sys::mount_setattr(libc::AT_FDCWD, &cpath(&path), AT_RECURSIVE, &attr)?;
            }
            Step::SetAttr {
                at: p,
                set,
                recursive,
                ..
            } => {
                let path = at(p);
                let attr = sys::MountAttr {
                    attr_set: *set,
                    ..Default::default()
                };
                let flags = if *recursive { AT_RECURSIVE } else { 0 };
                // Making it read-only fails with EBUSY while any descriptor
                // open for writing on it exists, and a clone on another
                // thread can copy ours into a new cell for the few
                // microseconds before that cell closes what it inherited.
                let mut tries = 0;
                loop {
                    match sys::mount_setattr(libc::AT_FDCWD, &cpath(&path), flags, &attr) {
                        Err(Errno(libc::EBUSY)) if tries < 200 => {
                            tries += 1;
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                        r => break r?,
                    }
                }
            }
            Step::Tmpfs { .. }
            | Step::Proc { .. }
            | Step::Sysfs { .. }
            | Step::MaskFile { .. }
            | Step::MaskDir { .. }
            | Step::ReadOnly { .. }
            | Step::Sysctl { .. }
            | Step::Devpts { .. }
            | Step::Tree { .. }
            | Step::PathBind { .. } => {
                unreachable!("per-cell step in a skeleton: {}", step.describe())
            }
        }
    }
    Ok(())
}

const AT_RECURSIVE: u32 = 0x8000;

fn create(path: &Path, mode: u32, data: &[u8]) -> std::result::Result<(), Errno> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err)?;
    f.write_all(data).map_err(io_err)?;
    // The mode given to open is filtered by the umask.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_err)
}

/// Copies a small host file, keeping its permission bits (never set-id bits).
fn copy_file(from: &Path, to: &Path) -> std::result::Result<(), Errno> {
    let md = std::fs::metadata(from).map_err(io_err)?;
    let data = std::fs::read(from).map_err(io_err)?;
    create(to, md.permissions().mode() & 0o777, &data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spawn::root::Step;

    #[test]
    fn keys_depend_on_content_and_owner() {
        let a = Step::Write {
            at: CellPath::new("/etc/passwd").unwrap(),
            data: b"a"[..].into(),
            mode: 0o644,
        };
        let b = Step::Write {
            at: CellPath::new("/etc/passwd").unwrap(),
            data: b"b"[..].into(),
            mode: 0o644,
        };
        assert_eq!(key(&[&a], (1, 1)), key(&[&a], (1, 1)));
        assert_ne!(key(&[&a], (1, 1)), key(&[&b], (1, 1)));
        assert_ne!(key(&[&a], (1, 1)), key(&[&a], (2, 1)));
    }
}
