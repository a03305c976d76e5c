//! The native ABI and the default list: which calls the default policy
//! denies, on which arguments, and why (`docs/security.md` has the table).

use super::bpf::{Abi, Cond};
use super::{
    family_set, invalid, Entry, Verdict, DEFAULT_SOCKET_FAMILIES, FAMILY_CALLS, FAMILY_DENIED,
};
use crate::error::Result;

/// `AUDIT_ARCH_X86_64`: `EM_X86_64` | 64-bit | little-endian.
#[cfg(target_arch = "x86_64")]
pub(super) const NATIVE_ABI: Option<Abi> = Some(Abi {
    audit_arch: 0xc000_003e,
    x32_bit: Some(0x4000_0000),
});
/// `AUDIT_ARCH_AARCH64`: `EM_AARCH64` | 64-bit | little-endian. No x32-like ABI.
#[cfg(target_arch = "aarch64")]
pub(super) const NATIVE_ABI: Option<Abi> = Some(Abi {
    audit_arch: 0xc000_00b7,
    x32_bit: None,
});
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(super) const NATIVE_ABI: Option<Abi> = None;

pub(super) fn native_abi() -> Result<Abi> {
    NATIVE_ABI.ok_or_else(|| {
        invalid(
            std::env::consts::ARCH.into(),
            "jobcell has seccomp filters only for x86_64 and aarch64; use Seccomp::Disabled here"
                .into(),
        )
    })
}

/// `open_tree_attr` (Linux 6.15), not in libc yet. New syscalls share one
/// number on every architecture.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(super) const SYS_OPEN_TREE_ATTR: i64 = 467;

/// Every namespace flag. `clone` cannot take `CLONE_NEWTIME` (0x80 is part of
/// its exit-signal byte), `unshare` can.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const NEW_NAMESPACES: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const CLONE_NEWTIME: u32 = 0x80;

/// `personality` values a job may pass: the query `0xffffffff` and `PER_LINUX`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const PERSONALITY_ALLOWED: &[u32] = &[0, 0xffff_ffff];

/// Denied ioctl requests. `TIOCSTI` pushes bytes into a terminal's input
/// (keystrokes into the shell that owns the tty), `TIOCLINUX` can paste the
/// console's selection the same way, `TIOCSETD` attaches line disciplines,
/// the home of many kernel bugs (n_gsm, n_hdlc) and of no job's needs.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(super) const IOCTL_DENIED: &[u32] = &[
    libc::TIOCSTI as u32,
    libc::TIOCLINUX as u32,
    libc::TIOCSETD as u32,
];

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(super) fn default_entries() -> Vec<Entry> {
    let always = |nr: i64| Entry {
        nr,
        cond: Cond::Always,
        verdict: Verdict::Deny,
    };
    let mut entries: Vec<Entry> = [
        // Loading code into the kernel, or replacing it.
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        // Kernel programmability and observability: large attack surfaces,
        // and perf can watch other processes and the kernel.
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        // Keyrings are not fully namespaced; a long record of bugs.
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_keyctl,
        // Lets an exploit stall the kernel at a chosen page fault (race widening).
        libc::SYS_userfaultfd,
        // io_uring runs file and network operations that seccomp never sees,
        // and has been the source of many privilege escalations.
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        // File handles open files by inode, past the mount namespace (the
        // "shocker" container escape).
        libc::SYS_name_to_handle_at,
        libc::SYS_open_by_handle_at,
        // The mount table is the cell's walls.
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        SYS_OPEN_TREE_ATTR,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        // Joining another namespace.
        libc::SYS_setns,
        // Host-wide system administration.
        libc::SYS_acct,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        // The kernel log is the host's (when dmesg_restrict is off).
        libc::SYS_syslog,
        // Clocks are host-wide. adjtimex and clock_adjtime with modes == 0
        // only read, but the modes are in memory the filter cannot see.
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
    ]
    .into_iter()
    .map(always)
    .collect();
    #[cfg(target_arch = "x86_64")]
    entries.extend(
        [
            // Port IO, the LDT (16-bit code, Wine) and the a.out loader: no
            // job needs them, and each has carried kernel bugs.
            libc::SYS_iopl,
            libc::SYS_ioperm,
            libc::SYS_modify_ldt,
            libc::SYS_uselib,
        ]
        .into_iter()
        .map(always),
    );
    entries.extend([
        // New namespaces would give the job capabilities over a world of its
        // own (a new user namespace) and the kernel code that trusts them.
        Entry {
            nr: libc::SYS_unshare,
            cond: Cond::AnyBits {
                arg: 0,
                mask: NEW_NAMESPACES | CLONE_NEWTIME,
            },
            verdict: Verdict::Deny,
        },
        Entry {
            nr: libc::SYS_clone,
            cond: Cond::AnyBits {
                arg: 0,
                mask: NEW_NAMESPACES,
            },
            verdict: Verdict::Deny,
        },
        // clone3's flags are in memory, out of the filter's sight. ENOSYS
        // makes glibc (2.34+) and Rust's std fall back to clone.
        Entry {
            nr: libc::SYS_clone3,
            cond: Cond::Always,
            verdict: Verdict::Errno(libc::ENOSYS),
        },
        // Execution domains: READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE,
        // MMAP_PAGE_ZERO and the 32-bit layouts weaken the job's own
        // protections and have served kernel exploits.
        Entry {
            nr: libc::SYS_personality,
            cond: Cond::NoneOf {
                arg: 0,
                values: PERSONALITY_ALLOWED,
            },
            verdict: Verdict::Deny,
        },
        Entry {
            nr: libc::SYS_ioctl,
            cond: Cond::OneOf {
                arg: 1,
                values: IOCTL_DENIED,
            },
            verdict: Verdict::Deny,
        },
    ]);
    // Socket families the network namespace does not isolate (AF_VSOCK),
    // or that no job needs and that carry kernel attack surface: only the
    // isolated, everyday ones (see DEFAULT_SOCKET_FAMILIES).
    entries.extend(FAMILY_CALLS.map(|nr| Entry {
        nr,
        cond: Cond::NotInSet {
            arg: 0,
            set: family_set(&DEFAULT_SOCKET_FAMILIES),
        },
        verdict: FAMILY_DENIED,
    }));
    entries
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(super) fn default_entries() -> Vec<Entry> {
    Vec::new()
}
