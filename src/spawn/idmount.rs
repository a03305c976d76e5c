//! Idmapped binds ([`Sandbox::bind_rw_owned`](crate::Sandbox::bind_rw_owned)):
//! a host directory shown to the job as its own, without touching the host's
//! files.
//!
//! The host clones the bind's tree (`open_tree`, as for every bind), then
//! sets `MOUNT_ATTR_IDMAP` on the detached clone with a user namespace whose
//! only ids map the source's owner onto the job's host ids. Through that
//! mount a file owned by the source's owner shows as the job's (so inside
//! the cell, as the job's own uid), and what the job creates is written to
//! disk as the source's owner. Files of other owners show as `nobody`.
//! Linux 5.12+, on file systems that allow it (ext4, xfs, btrfs, … ;
//! tmpfs from 6.3); the error names which part is missing.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::error::Errno;
use crate::sys;

use super::clone;

/// A user namespace that maps `from` (a uid and a gid) onto the host ids
/// `to`, and nothing else: what `MOUNT_ATTR_IDMAP` takes. Made by a child
/// cloned into a new user namespace for the moment its maps are written
/// and its namespace opened; the child is killed and reaped before this
/// returns, whatever happened. The namespace lives on in the descriptor
/// (and, once set, in the mount).
pub(crate) fn mapping_ns(
    from: (u32, u32),
    to: (u32, u32),
) -> Result<OwnedFd, (&'static str, Errno)> {
    let uid_map = format!("{} {} 1\n", from.0, to.0);
    let gid_map = format!("{} {} 1\n", from.1, to.1);
    // SAFETY: the child makes raw system calls only: it drops every
    // descriptor (it holds nothing of the host's while it lives) and
    // sleeps until the SIGKILL below.
    let child = unsafe {
        clone::clone_into(libc::CLONE_NEWUSER as u64, None, None, || {
            let _ = sys::close_range(0, u32::MAX, 0);
            loop {
                let _ = sys::poll(&mut [], -1);
            }
        })
    }
    .map_err(|e| ("clone a user namespace", e))?;
    let _reaped = Reaper(&child);
    let proc = format!("/proc/{}", child.pid);
    let write = |op: &'static str, file: &str, text: &str| {
        std::fs::write(format!("{proc}/{file}"), text).map_err(|e| (op, Errno::from(&e)))
    };
    write("write uid_map", "uid_map", &uid_map)?;
    write("write gid_map", "gid_map", &gid_map)?;
    let ns = std::fs::File::open(format!("{proc}/ns/user"))
        .map_err(|e| ("open the user namespace", Errno::from(&e)))?;
    Ok(ns.into())
}

/// Kills and reaps the mapping child when dropped.
struct Reaper<'a>(&'a clone::Child);

impl Drop for Reaper<'_> {
    fn drop(&mut self) {
        let fd = self.0.pidfd.as_fd().as_raw_fd();
        let _ = sys::host::pidfd_send_signal(fd, libc::SIGKILL);
        let _ = sys::host::waitid_pidfd(fd, false);
    }
}

/// Makes the detached tree `tree` show `from`'s files as `to`'s (see
/// [`mapping_ns`]), recursively.
pub(crate) fn idmap_tree(
    tree: &OwnedFd,
    from: (u32, u32),
    to: (u32, u32),
) -> Result<(), (&'static str, Errno)> {
    let ns = mapping_ns(from, to)?;
    sys::host::idmap_tree(tree, &ns).map_err(|e| ("mount_setattr(MOUNT_ATTR_IDMAP)", e))
}

/// Why an idmapped mount failed with `errno`, in words for the error.
pub(crate) fn reason(op: &str, errno: Errno, fs: &str) -> String {
    match errno.0 {
        libc::ENOSYS => format!("{op}: {errno}: the kernel has no idmapped mounts (Linux 5.12+)"),
        libc::EINVAL if op.starts_with("mount_setattr") => format!(
            "{op}: {errno}: its file system ({fs}) does not support idmapped mounts on this kernel \
             (ext4, xfs and btrfs do since Linux 5.12-5.15, tmpfs since 6.3)"
        ),
        libc::EPERM if op.starts_with("mount_setattr") => format!(
            "{op}: {errno}: not permitted (idmapped mounts of the host's file systems need root; \
             a container's seccomp profile may forbid mount_setattr)"
        ),
        _ => format!("{op}: {errno}"),
    }
}

/// The name of the file system `fd` is on, for messages.
pub(crate) fn fs_name(fd: &OwnedFd) -> String {
    let Ok(st) = rustix::fs::fstatfs(fd) else {
        return "unknown".into();
    };
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as i64;
    match magic {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x8584_58F6 => "ramfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x6969 => "nfs".into(),
        0x6573_5546 => "fuse".into(),
        0xF15F => "ecryptfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x0102_1997 => "9p".into(),
        0xFF53_4D42 | 0xFE53_4D42 => "cifs/smb".into(),
        0xF2F5_2010 => "f2fs".into(),
        0x4d44 => "vfat".into(),
        m => format!("magic {m:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_what_is_missing() {
        let op = "mount_setattr(MOUNT_ATTR_IDMAP)";
        let r = reason(op, Errno(libc::EINVAL), "nfs");
        assert!(r.contains("(nfs) does not support idmapped mounts"), "{r}");
        let r = reason(op, Errno(libc::ENOSYS), "ext4");
        assert!(r.contains("Linux 5.12"), "{r}");
        let r = reason(op, Errno(libc::EPERM), "ext4");
        assert!(r.contains("need root"), "{r}");
        let r = reason("write uid_map", Errno(libc::EPERM), "ext4");
        assert_eq!(r, "write uid_map: EPERM (Operation not permitted)");
    }

    /// As root: a new user namespace, held by the descriptor alone. (What its maps do is tested through real binds:
    /// tests/cell.rs, `an_owned_bind_*`.)
    #[test]
    fn the_mapping_namespace_is_a_user_namespace() {
        if sys::geteuid() != 0 {
            return;
        }
        let ns = mapping_ns((0, 0), (101_000, 101_001)).unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", ns.as_raw_fd())).unwrap();
        assert!(link.to_string_lossy().starts_with("user:["), "{link:?}");
        let own = std::fs::read_link("/proc/self/ns/user").unwrap();
        assert_ne!(link, own, "a namespace of its own");
    }
}
