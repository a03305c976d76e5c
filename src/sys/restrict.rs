//! The job's own restrictions: installing its seccomp filter (and reading
//! the notifications of a kill-mode filter) and its Landlock ruleset.

use libc::{c_int, c_long};

use super::{check, ioctl, SysResult};
use crate::error::Errno;

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, &{len, prog})`: installs the
/// classic BPF program `prog` on the calling thread. Needs `PR_SET_NO_NEW_PRIVS`
/// (or `CAP_SYS_ADMIN`). The kernel copies the program; it need not outlive the call.
pub(crate) fn seccomp_filter(flags: u32, prog: &[libc::sock_filter]) -> SysResult<c_int> {
    // A slice too long for the u16 length field is refused rather than truncated
    // (the kernel itself takes at most BPF_MAXINSNS, 4096).
    let len = u16::try_from(prog.len()).map_err(|_| Errno(libc::EINVAL))?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads through this pointer.
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: fprog points to `len` valid instructions borrowed for the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    })
    .map(|r| r as c_int)
}

/// `landlock_create_ruleset` handling `handled` file-system rights.
#[cfg(feature = "landlock")]
pub(crate) fn landlock_create_ruleset(handled: u64) -> SysResult<c_int> {
    // The first field of struct landlock_ruleset_attr; a size of 8 is accepted by every version.
    let attr: u64 = handled;
    // SAFETY: attr is a valid 8-byte ruleset attribute for the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const u64,
            8usize,
            0u32,
        )
    })
    .map(|fd| fd as c_int)
}

/// `landlock_add_rule(LANDLOCK_RULE_PATH_BENEATH)`.
#[cfg(feature = "landlock")]
pub(crate) fn landlock_add_path_rule(ruleset: c_int, allowed: u64, parent: c_int) -> SysResult {
    #[repr(C, packed)]
    struct PathBeneath {
        allowed_access: u64,
        parent_fd: i32,
    }
    let attr = PathBeneath {
        allowed_access: allowed,
        parent_fd: parent,
    };
    const PATH_BENEATH: c_int = 1;
    // SAFETY: attr is a valid (packed, as the uapi declares) path_beneath attribute.
    check(unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            PATH_BENEATH,
            &attr as *const PathBeneath,
            0u32,
        )
    })
    .map(drop)
}

/// `landlock_restrict_self`.
#[cfg(feature = "landlock")]
pub(crate) fn landlock_restrict_self(ruleset: c_int) -> SysResult {
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) }).map(drop)
}

/// Whether `fd` refers to a directory (`fstat`).
#[cfg(feature = "landlock")]
pub(crate) fn is_dir(fd: c_int) -> SysResult<bool> {
    // SAFETY: stat is plain data; zeroed is valid, and the kernel fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid, writable stat buffer.
    check(unsafe { libc::syscall(libc::SYS_fstat, fd, &mut st as *mut libc::stat) })?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`: return a user-notification descriptor.
pub(crate) const SECCOMP_FILTER_FLAG_NEW_LISTENER: u32 = 1 << 3;

/// The kernel's `struct seccomp_notif` (80 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct SeccompNotif {
    pub id: u64,
    pub pid: u32,
    pub flags: u32,
    pub nr: i32,
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

/// Receives one pending notification from a seccomp listener.
pub(crate) fn seccomp_notif_recv(listener: c_int, notif: &mut SeccompNotif) -> SysResult {
    // _IOWR('!', 0, struct seccomp_notif): the size is part of the request.
    const RECV: c_long = (3 << 30)
        | ((std::mem::size_of::<SeccompNotif>() as c_long) << 16)
        | ((b'!' as c_long) << 8);
    // The kernel insists the buffer be zeroed.
    *notif = SeccompNotif::default();
    ioctl(listener, RECV, notif)
}
