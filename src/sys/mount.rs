//! Files and mounts: what init does to build the cell's new root (and the
//! spawner its minimal one), on paths and descriptors prepared before the clone.

use std::ffi::CStr;

use libc::{c_int, c_long, c_void};

use super::{check, opt_ptr, SysResult};

pub(crate) fn mkdir(path: &CStr, mode: u32) -> SysResult {
    // SAFETY: path is a valid NUL-terminated string.
    check(unsafe { libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, path.as_ptr(), mode) })
        .map(drop)
}

pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: u64,
    data: Option<&CStr>,
) -> SysResult {
    // SAFETY: every pointer is NULL or a valid NUL-terminated string.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount,
            opt_ptr(source),
            target.as_ptr(),
            opt_ptr(fstype),
            flags as c_long,
            opt_ptr(data) as *const c_void,
        )
    })
    .map(drop)
}

pub(crate) fn umount2(target: &CStr, flags: c_int) -> SysResult {
    // SAFETY: target is a valid NUL-terminated string.
    check(unsafe { libc::syscall(libc::SYS_umount2, target.as_ptr(), flags) }).map(drop)
}

/// `move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`: attach a detached tree.
pub(crate) fn move_mount_fd(fd: c_int, target: &CStr) -> SysResult {
    const MOVE_MOUNT_F_EMPTY_PATH: c_long = 0x4;
    // SAFETY: the empty string and target are valid NUL-terminated strings.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// The kernel's `struct mount_attr`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;

pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;

pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;

pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// Set with `userns_fd`: the mount shows ids through that namespace's maps (Linux 5.12+).
pub(crate) const MOUNT_ATTR_IDMAP: u64 = 0x10_0000;

/// `mount_setattr(dfd, path, flags, attr)`.
pub(crate) fn mount_setattr(dfd: c_int, path: &CStr, flags: u32, attr: &MountAttr) -> SysResult {
    // SAFETY: path is NUL-terminated; attr points to a properly sized struct.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dfd,
            path.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// `mkdirat(dirfd, name, mode)`.
pub(crate) fn mkdirat(dirfd: c_int, name: &CStr, mode: u32) -> SysResult {
    // SAFETY: name is a valid NUL-terminated string.
    check(unsafe { libc::syscall(libc::SYS_mkdirat, dirfd, name.as_ptr(), mode) }).map(drop)
}

/// `symlinkat(value, dirfd, name)`.
pub(crate) fn symlinkat(value: &CStr, dirfd: c_int, name: &CStr) -> SysResult {
    // SAFETY: both are valid NUL-terminated strings.
    check(unsafe { libc::syscall(libc::SYS_symlinkat, value.as_ptr(), dirfd, name.as_ptr()) })
        .map(drop)
}

/// The file type bits (`S_IFMT`) of `name` in `dirfd` (`""`: of `dirfd`
/// itself), without following a symlink.
pub(crate) fn file_type_at(dirfd: c_int, name: &CStr) -> SysResult<u32> {
    // SAFETY: stat is plain data; zeroed is valid, and the kernel fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let flags = libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH;
    // SAFETY: name is NUL-terminated; st is a valid, writable stat buffer.
    check(unsafe {
        libc::syscall(
            libc::SYS_newfstatat,
            dirfd,
            name.as_ptr(),
            &mut st as *mut libc::stat,
            flags,
        )
    })?;
    Ok(st.st_mode & libc::S_IFMT)
}

/// `openat2` resolve flags: no symlink on any component (magic links
/// included), no step out of the starting directory.
pub(crate) const RESOLVE_NO_SYMLINKS: u64 = 0x04;

pub(crate) const RESOLVE_BENEATH: u64 = 0x08;

/// `openat2(dirfd, path, {flags, 0, resolve})` (Linux 5.6+).
pub(crate) fn openat2(dirfd: c_int, path: &CStr, flags: c_int, resolve: u64) -> SysResult<c_int> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: flags as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: path is NUL-terminated; how is a valid open_how of the size passed.
    check(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })
    .map(|fd| fd as c_int)
}

/// `move_mount(from, "", to, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)`:
/// attaches the detached tree `from` onto what `to` (an `O_PATH` descriptor) is.
pub(crate) fn move_mount_onto(from: c_int, to: c_int) -> SysResult {
    const MOVE_MOUNT_F_EMPTY_PATH: c_long = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: c_long = 0x40;
    // SAFETY: the empty strings are valid NUL-terminated strings.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            c"".as_ptr(),
            to,
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
    .map(drop)
}

pub(crate) fn pivot_root(new_root: &CStr, put_old: &CStr) -> SysResult {
    // SAFETY: both are valid NUL-terminated strings.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
        .map(drop)
}

pub(crate) fn chdir(path: &CStr) -> SysResult {
    // SAFETY: path is a valid NUL-terminated string.
    check(unsafe { libc::syscall(libc::SYS_chdir, path.as_ptr()) }).map(drop)
}
