//! What the host and the spawner send each other over their socket pair
//! (a request, an answer), and what the spawner starts from: plain
//! `#[repr(C)]` data, which the spawner reads and writes without allocating.
//! The host's side is `spawn/spawner/`, the spawner's `spawner.rs` here.

use libc::c_int;

use crate::sys::{self, MAX_FDS};

/// A request: where the plan is, and where each descriptor sent along goes.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Request {
    pub arena_addr: usize,
    pub arena_len: usize,
    pub plan: usize,
    pub flags: u64,
    /// Whether descriptor 1 is a cgroup to clone into / a network namespace
    /// to clone in (descriptor 0 is the arena's memfd).
    pub has_cgroup: bool,
    pub has_netns: bool,
    /// Whether the next is the write end of the cell's sync pipe: the
    /// spawner writes the id maps and releases the cell itself.
    pub has_release: bool,
    /// How many descriptors follow those, and the number each must have.
    pub keep: u32,
    pub targets: [c_int; MAX_FDS],
    /// The id maps (with `has_release`).
    pub maps: IdMaps,
    /// A fault a test injects (see [`Fault`]); 0 for none.
    pub fault: u32,
}

/// Faults tests inject into the spawner, carried by one request: it kills
/// itself (SIGKILL) at a step, or hangs on receipt.
pub(crate) struct Fault;

impl Fault {
    pub(crate) const DIE_ON_RECEIPT: u32 = 1;
    pub(crate) const DIE_BEFORE_CLONE: u32 = 2;
    pub(crate) const DIE_AFTER_CLONE: u32 = 3;
    pub(crate) const DIE_BEFORE_ANSWER: u32 = 4;
    pub(crate) const HANG: u32 = 5;

    /// Applies `fault` if it is the one for `step`. Raw syscalls only.
    pub(crate) fn at(fault: u32, step: u32) {
        if fault != step {
            return;
        }
        if step == Fault::HANG {
            loop {
                // Every signal is blocked in the spawner: only SIGKILL ends this.
                // SAFETY: pause has no arguments.
                unsafe { libc::syscall(libc::SYS_pause) };
            }
        }
        let _ = sys::kill(sys::getpid(), libc::SIGKILL);
    }
}

/// A cell's id maps as the spawner writes them.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct IdMaps {
    pub deny_setgroups: bool,
    pub uid_len: u16,
    pub gid_len: u16,
    pub uid: [u8; MAP_MAX],
    pub gid: [u8; MAP_MAX],
}

/// The longest map the spawner writes (longer ones are written by the host).
pub(crate) const MAP_MAX: usize = 256;

impl IdMaps {
    pub(crate) const EMPTY: IdMaps = IdMaps {
        deny_setgroups: false,
        uid_len: 0,
        gid_len: 0,
        uid: [0; MAP_MAX],
        gid: [0; MAP_MAX],
    };
}

/// The answer; a cloned cell's pidfd comes along.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Answer {
    pub outcome: u32,
    pub errno: c_int,
    pub pid: c_int,
    pub flags_used: u64,
    /// With `has_release`: what became of it.
    pub release: Release,
}

/// How far the spawner got releasing a cell: `step` is the first of
/// setgroups, uid_map, gid_map, the sync write that failed (with `errno`),
/// or [`Release::DONE`]; [`Release::NOT_TRIED`] leaves it all to the host.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Release {
    pub step: u32,
    pub errno: c_int,
}

impl Release {
    pub(crate) const NOT_TRIED: u32 = 0;
    pub(crate) const SETGROUPS: u32 = 1;
    pub(crate) const UID_MAP: u32 = 2;
    pub(crate) const GID_MAP: u32 = 3;
    pub(crate) const SYNC: u32 = 4;
    pub(crate) const DONE: u32 = 5;
    /// The spawner died after its clone: whatever it wrote, the host
    /// writes the maps still missing and releases the cell (again: init
    /// reads one byte, a second is harmless).
    pub(crate) const UNKNOWN: u32 = 6;
}

/// `Answer::outcome` values.
pub(crate) const CLONED: u32 = 0;
/// The clone itself failed (`errno`): the same failure the host would get.
pub(crate) const CLONE_FAILED: u32 = 1;
/// The spawner could not take the request (`errno`): the host clones itself.
pub(crate) const DECLINED: u32 = 2;

/// What the spawner needs from its creator, on the creator's stack (the
/// spawner runs on a copy of that stack).
pub(crate) struct Start {
    pub sock: c_int,
    /// Descriptors the spawner keeps: its socket end, network namespace and /proc.
    pub keep: [c_int; 3],
    pub own_netns: c_int,
    /// The host's /proc, opened before the spawner leaves the host's mounts.
    pub proc_dir: c_int,
    /// Move into a minimal root of its own (see the module's docs).
    pub minimal_root: bool,
    /// Anonymous ranges to unmap, in a private mapping of their own.
    pub unmap: *const (usize, usize),
    pub unmap_count: usize,
    pub unmap_mapping: (usize, usize),
    pub host_pid: c_int,
    /// The mount namespace to serve from (-1: the creator's).
    pub host_mnt: c_int,
}

/// `Answer::flags_used` of the ready message: the spawner serves from its minimal root.
pub(crate) const READY_MINIMAL_ROOT: u64 = 1;

/// The bytes of a plain-data value.
pub(crate) fn as_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a repr(C) plain-data type; reading its bytes is fine.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// The bytes of a plain-data value, to be overwritten.
///
/// # Safety
/// Every bit pattern must be a valid `T`.
pub(crate) unsafe fn as_bytes_mut<T: Copy>(v: &mut T) -> &mut [u8] {
    // SAFETY: see above; the slice covers exactly `v`.
    unsafe { std::slice::from_raw_parts_mut((v as *mut T).cast::<u8>(), std::mem::size_of::<T>()) }
}
