//! The spawner: a small process that clones cells for the host.
//!
//! A cell's init cloned straight from the host gets a copy of the host's
//! page tables, and while it runs every page the host writes is a
//! copy-on-write fault with a TLB shootdown: spawn cost grew with the host's
//! memory (43 ms per spawn with 1 GiB of heap, 135 ms with 4 GiB) and a
//! small host still paid ~0.3 ms of faults per job. It also left a copy of
//! the host's memory (whatever secrets it held) in every cell's init.
//!
//! So the spawner is cloned from the host once. It drops every anonymous
//! mapping it does not need (the heap, the other threads' stacks) and every
//! inherited descriptor, and from then on only clones cells: their init
//! copies the spawner's few pages, not the host's.
//!
//! A request travels over a socket pair: the plan's address (the spawner
//! maps the plan's arena, see `arena.rs`, at the host's address, so the
//! plan's pointers hold) and the descriptors the cell needs, which the
//! spawner puts under the numbers the plan names. The host keeps its own
//! copy of each descriptor the spawner holds, so those numbers are never a
//! cell's. The spawner clones with `CLONE_PARENT`, so each init is the
//! host's child, waited for through its pidfd (sent back) as before.
//!
//! Two namespaces cells would otherwise create at clone time the spawner
//! makes ahead instead, in the idle time after it answers a request:
//!
//! - a mount namespace of its own whose root is an almost empty tmpfs (the
//!   staging directories and a bind of /proc, which the kernel wants
//!   visible before a user namespace may mount its own), so a cell's
//!   `CLONE_NEWNS` copies two mounts instead of the host's whole table,
//!   and detaching the old root afterwards unmounts two (on root hosts with
//!   the new mount API; plans that bind host paths by name, or mount a
//!   sysfs, which needs the host's visible too, are cloned from the host);
//! - an IPC namespace per cell (creating one mounts an mqueue file system,
//!   ~45 µs), already set up (`kernel.shm_rmid_forced = 1`). Like the
//!   pooled network namespaces it belongs to the host's user namespace,
//!   which gives a cell's root no power over it: nothing a cell does needs
//!   any.
//!
//! The preparation thread (see `prep.rs`) starts it, so it dies with that
//! thread (`PR_SET_PDEATHSIG`), which lives as long as the process; it holds
//! none of the host's files, so nothing of the host (a lock, a listening
//! socket) outlives the host through it. Where it cannot serve a spawn the
//! way the calling thread would (other credentials or network namespace, a
//! forked host, a spawner that died), the host clones the cell itself.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libc::c_int;
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::error::{Errno, Error, Stage};
use crate::spawn::arena::Arena;
use crate::spawn::cell::{self, ChildPlan};
use crate::spawn::clone;
use crate::spawn::idmap::IdPlan;
use crate::spawn::retry::Failed;
use crate::spawn::Deadline;
use crate::sys::{self, MAX_FDS};

const CLONE_PARENT: u64 = libc::CLONE_PARENT as u64;

/// A request: where the plan is, and where each descriptor sent along goes.
#[repr(C)]
#[derive(Clone, Copy)]
struct Request {
    arena_addr: usize,
    arena_len: usize,
    plan: usize,
    flags: u64,
    /// Whether descriptor 1 is a cgroup to clone into / a network namespace
    /// to clone in (descriptor 0 is the arena's memfd).
    has_cgroup: bool,
    has_netns: bool,
    /// Whether the next is the write end of the cell's sync pipe: the
    /// spawner writes the id maps and releases the cell itself.
    has_release: bool,
    /// How many descriptors follow those, and the number each must have.
    keep: u32,
    targets: [c_int; MAX_FDS],
    /// The id maps (with `has_release`).
    maps: IdMaps,
    /// A fault a test injects (see [`Fault`]); 0 for none.
    fault: u32,
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
    fn at(fault: u32, step: u32) {
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
struct IdMaps {
    deny_setgroups: bool,
    uid_len: u16,
    gid_len: u16,
    uid: [u8; MAP_MAX],
    gid: [u8; MAP_MAX],
}

/// The longest map the spawner writes (longer ones are written by the host).
const MAP_MAX: usize = 256;

impl IdMaps {
    const EMPTY: IdMaps = IdMaps {
        deny_setgroups: false,
        uid_len: 0,
        gid_len: 0,
        uid: [0; MAP_MAX],
        gid: [0; MAP_MAX],
    };

    fn new(ids: &IdPlan) -> Option<IdMaps> {
        let (u, g) = (ids.uid_map.as_bytes(), ids.gid_map.as_bytes());
        if u.len() > MAP_MAX || g.len() > MAP_MAX {
            return None;
        }
        let mut m = IdMaps {
            deny_setgroups: ids.deny_setgroups,
            uid_len: u.len() as u16,
            gid_len: g.len() as u16,
            ..IdMaps::EMPTY
        };
        m.uid[..u.len()].copy_from_slice(u);
        m.gid[..g.len()].copy_from_slice(g);
        Some(m)
    }
}

/// The answer; a cloned cell's pidfd comes along.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Answer {
    outcome: u32,
    errno: c_int,
    pid: c_int,
    flags_used: u64,
    /// With `has_release`: what became of it.
    release: Release,
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
const CLONED: u32 = 0;
/// The clone itself failed (`errno`): the same failure the host would get.
const CLONE_FAILED: u32 = 1;
/// The spawner could not take the request (`errno`): the host clones itself.
const DECLINED: u32 = 2;

/// What the spawner needs from its creator, on the creator's stack (the
/// spawner runs on a copy of that stack).
struct Start {
    sock: c_int,
    /// Descriptors the spawner keeps: its socket end, network namespace and /proc.
    keep: [c_int; 3],
    own_netns: c_int,
    /// The host's /proc, opened before the spawner leaves the host's mounts.
    proc_dir: c_int,
    /// Move into a minimal root of its own (see the module's docs).
    minimal_root: bool,
    /// Anonymous ranges to unmap, in a private mapping of their own.
    unmap: *const (usize, usize),
    unmap_count: usize,
    unmap_mapping: (usize, usize),
    host_pid: c_int,
    /// The mount namespace to serve from (-1: the creator's).
    host_mnt: c_int,
}

/// A running spawner, as the host sees it.
struct Running {
    pid: i32,
    pidfd: OwnedFd,
    /// Our end of the socket pair.
    sock: OwnedFd,
    /// Copies of the descriptors the spawner holds, so their numbers stay taken.
    reserved: [OwnedFd; 3],
    /// The spawner serves from its minimal root: plans that bind host
    /// paths by name must be cloned from the host.
    minimal_root: bool,
    netns_ino: u64,
    /// The process the spawner serves (a forked host must not use it).
    host_pid: u32,
    creds: Creds,
    rlimits: [(u64, u64); RLIMITS],
    /// The signals the spawner ignores, for good: those the host ignored
    /// when it was cloned (its cells inherit them; their jobs reset them).
    ignored_signals: u64,
}

enum State {
    Unstarted,
    /// A start was asked of the preparation thread; the last failure, if
    /// the one before failed (for the next delay).
    Starting(Option<Failed>),
    Running(Box<Running>),
    /// The last start failed, or spawners kept dying: cells are cloned
    /// from the host until another start is due (see `retry.rs`).
    Failed(Failed),
    /// A spawner cannot work in this program, for good.
    Unusable(&'static str),
}

struct Manager {
    state: Mutex<State>,
    changed: Condvar,
    /// Spawners that died in a row, serving or not (none since one answered).
    deaths: AtomicU32,
}

fn manager() -> &'static Manager {
    static M: OnceLock<Manager> = OnceLock::new();
    M.get_or_init(|| Manager {
        state: Mutex::new(State::Unstarted),
        changed: Condvar::new(),
        deaths: AtomicU32::new(0),
    })
}

/// Starts a spawner if none runs and a start is due, waits until `until`
/// (at most a few seconds) for it to be up, and returns the state, locked.
fn running(m: &'static Manager, until: Instant) -> MutexGuard<'static, State> {
    let mut g = m.state.lock();
    if matches!(&*g, State::Running(r) if exited(&r.pidfd)) {
        // Killed since it last served (its pidfd reads as exited): replace
        // it now rather than fail the next request.
        restart(m, &mut g, true);
    }
    match &*g {
        State::Unstarted => request_start(&mut g, None),
        State::Failed(f) if f.due() => {
            let f = f.clone();
            request_start(&mut g, Some(f));
        }
        _ => {}
    }
    let until = until.min(Instant::now() + Duration::from_secs(5));
    while matches!(*g, State::Starting(_)) {
        if m.changed.wait_until(&mut g, until).timed_out() {
            break;
        }
    }
    g
}

/// Whether the process behind `pidfd` has exited (without waiting).
fn exited(pidfd: &OwnedFd) -> bool {
    let mut fds = [libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    matches!(sys::poll(&mut fds, 0), Ok(1))
}

/// Asks the preparation thread to start a spawner (it is the spawner's
/// parent: a thread that lives as long as the process).
fn request_start(g: &mut MutexGuard<'static, State>, failed: Option<Failed>) {
    if !binds_now() {
        **g = State::Unusable(LAZY_BINDING);
        return;
    }
    if !crate::spawn::prep::thread_here() {
        let why = "no preparation thread runs in this process to start it";
        **g = State::Failed(Failed::after(failed.as_ref(), why));
        return;
    }
    **g = State::Starting(failed);
    START.store(true, Ordering::SeqCst);
    crate::spawn::prep::wake();
}

/// A start was asked for and nobody has taken it up yet.
static START: AtomicBool = AtomicBool::new(false);

/// Whether the preparation thread has a spawner to start.
pub(crate) fn start_requested() -> bool {
    START.load(Ordering::SeqCst)
}

/// Starts the spawner asked for, from the preparation thread. `host_mnt`:
/// the process's own mount namespace, for the spawner to go back to when
/// the preparation thread works in a private one.
pub(crate) fn serve_start_request(host_mnt: Option<RawFd>) {
    if !START.swap(false, Ordering::SeqCst) {
        return;
    }
    let started = start(host_mnt.unwrap_or(-1));
    let m = manager();
    let mut g = m.state.lock();
    if let State::Starting(before) = &*g {
        *g = match started {
            Ok(r) => State::Running(Box::new(r)),
            Err(why) => State::Failed(Failed::after(before.as_ref(), why)),
        };
    }
    m.changed.notify_all();
}

/// Kills and reaps the spawner and asks for a new one: now, or, when
/// spawners keep dying, once a start is due.
fn restart(m: &'static Manager, g: &mut MutexGuard<'static, State>, died: bool) {
    if let State::Running(r) = std::mem::replace(&mut **g, State::Unstarted) {
        let _ = sys::pidfd_send_signal(r.pidfd.as_raw_fd(), libc::SIGKILL);
        let _ = sys::waitid_pidfd(r.pidfd.as_raw_fd(), false);
    }
    let deaths = if died {
        m.deaths.fetch_add(1, Ordering::Relaxed) + 1
    } else {
        0
    };
    if deaths >= 2 {
        **g = State::Failed(Failed {
            why: format!("the spawner died {deaths} times in a row"),
            times: deaths - 1,
            at: Instant::now(),
        });
        m.changed.notify_all();
    } else {
        request_start(g, None);
    }
}

/// Clones a cell's init through the spawner. `None`: no cell was made, and
/// the spawner cannot serve this spawn as the calling thread would (or
/// died before it cloned); clone it here instead. Once the request has
/// been sent, the plan is never cloned again: a cell the spawner made is
/// handed back, or found through the pid the clone stored in the status
/// page and taken over ([`Release::UNKNOWN`]), or, where no pidfd can be
/// had or the spawner hung, killed (the spawn then fails).
///
/// The descriptors init keeps (`plan.keep`) go along, and come out under
/// the same numbers in the spawner. `host_net`: the cell shares the
/// caller's network namespace, so the spawner must be in the same one.
///
/// `host_mounts`: the cell needs the host's mount table to start from (see
/// `Blueprint::needs_host_mounts`).
///
/// `release`: the write end of the cell's sync pipe and its id maps. The
/// spawner then writes the maps and releases the cell itself, unless a
/// cgroup must still be joined from outside (the clone could not place the
/// cell): the returned [`Release`] says how far it got.
///
/// `fault`: a test's injected fault (see [`Fault`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn clone_cell(
    flags: u64,
    cgroup_fd: Option<c_int>,
    netns_fd: Option<c_int>,
    host_net: bool,
    host_mounts: bool,
    release: Option<(c_int, &IdPlan)>,
    arena: &Arena,
    plan: &ChildPlan<'_>,
    deadline: &Deadline,
    fault: u32,
) -> Option<Result<(clone::Child, Release), Error>> {
    let maps = release.and_then(|(fd, ids)| Some((fd, IdMaps::new(ids)?)));
    let mut fds = vec![arena.fd().as_raw_fd()];
    fds.extend(cgroup_fd);
    fds.extend(netns_fd);
    fds.extend(maps.as_ref().map(|(fd, _)| *fd));
    fds.extend_from_slice(plan.keep);
    if fds.len() > MAX_FDS {
        return None;
    }
    let (addr, len) = arena.range();
    let mut req = Request {
        arena_addr: addr,
        arena_len: len,
        plan: plan as *const ChildPlan<'_> as usize,
        flags,
        has_cgroup: cgroup_fd.is_some(),
        has_netns: netns_fd.is_some(),
        has_release: maps.is_some(),
        keep: plan.keep.len() as u32,
        targets: [-1; MAX_FDS],
        maps: maps.map_or(IdMaps::EMPTY, |(_, m)| m),
        fault,
    };
    req.targets[..plan.keep.len()].copy_from_slice(plan.keep);

    let m = manager();
    let mut g = running(m, deadline.at);
    if matches!(&*g, State::Running(r) if r.rlimits != rlimits()) {
        // The process changed its limits: a new spawner inherits the new ones.
        restart(m, &mut g, false);
        drop(g);
        g = running(m, deadline.at);
    }
    let State::Running(r) = &*g else {
        return None;
    };
    if r.host_pid != std::process::id() || r.creds != Creds::current() {
        return None;
    }
    if host_net && netns_ino() != Some(r.netns_ino) {
        return None;
    }
    if host_mounts && r.minimal_root {
        return None;
    }
    // SAFETY: the arena's status page; no cell reads it yet.
    unsafe {
        crate::spawn::status::StatusPage::set_ignored_signals(arena.status(), r.ignored_signals)
    };
    let (sock, spawner) = (r.sock.as_raw_fd(), r.pidfd.as_raw_fd());
    if sys::send_fds(sock, as_bytes(&req), &fds).is_err() {
        // A datagram goes whole or not at all: the spawner has not seen
        // this request, and no cell exists.
        restart(m, &mut g, true);
        return None;
    }
    // From here on the spawner may clone the cell: this plan is never
    // cloned again.
    let mut answer = Answer::default();
    let mut got = [-1; MAX_FDS];
    let exchanged = match wait_readable(sock, spawner, Some(deadline.at)) {
        // SAFETY: Answer is plain data; any bytes the spawner wrote are a valid value.
        Readable::Yes => sys::recv_fds(sock, unsafe { as_bytes_mut(&mut answer) }, &mut got),
        Readable::Gone => Err(Errno(libc::ECHILD)),
        Readable::TimedOut => Err(Errno(libc::ETIMEDOUT)),
    };
    let received = match exchanged {
        Ok((n, k)) if n == std::mem::size_of::<Answer>() => k,
        other => {
            if let Ok((_, k)) = other {
                got[..k].iter().for_each(|&fd| sys::close(fd));
            }
            // Dead, hung or garbled: kill it (if it still runs), then see
            // whether it had cloned the cell.
            restart(m, &mut g, true);
            drop(g);
            if other == Err(Errno(libc::ETIMEDOUT)) {
                orphan(arena);
                return Some(Err(deadline.error(Stage::Clone, String::new())));
            }
            // SAFETY: the arena's status page, mapped while `arena` lives.
            let pid = unsafe { crate::spawn::status::StatusPage::cell_pid(arena.status()) };
            if pid <= 0 {
                return None; // it cloned nothing: the host may
            }
            // It cloned the cell (and maybe released it: its job may be
            // running). Take the cell over, as it would have handed it:
            // the host then finishes what the spawner may not have done.
            return Some(match sys::pidfd_open(pid) {
                Ok(pidfd) => Ok((
                    clone::Child {
                        pid,
                        pidfd,
                        // Not known: as if no cgroup took it at the clone
                        // (joining it again is harmless).
                        flags: 0,
                    },
                    Release {
                        step: Release::UNKNOWN,
                        errno: 0,
                    },
                )),
                Err(errno) => {
                    orphan(arena);
                    Err(Error::Spawn {
                        op: "take over the cell of a spawner that died (its pidfd could not be opened; the cell was killed)",
                        path: None,
                        errno,
                        hint: None,
                    })
                }
            });
        }
    };
    m.deaths.store(0, Ordering::Relaxed);
    drop(g);
    let extra = |from: usize| got[from..received].iter().for_each(|&fd| sys::close(fd));
    match answer.outcome {
        CLONED => {
            clone::note_accepted(answer.flags_used);
            // Its pidfd came along, unless this process had no room for it
            // (EMFILE: the kernel dropped it): then open one from the pid,
            // or, failing that too, kill the cell by its pid.
            let pidfd = match received {
                0 => sys::pidfd_open(answer.pid),
                _ => {
                    extra(1);
                    // SAFETY: the spawner sent us the cell's fresh pidfd; it is ours.
                    Ok(unsafe { OwnedFd::from_raw_fd(got[0]) })
                }
            };
            match pidfd {
                Ok(pidfd) => Some(Ok((
                    clone::Child {
                        pid: answer.pid,
                        pidfd,
                        flags: answer.flags_used,
                    },
                    answer.release,
                ))),
                Err(errno) => {
                    orphan(arena);
                    Some(Err(Error::Spawn {
                        op: "receive the cell from the spawner (its pidfd could not be opened; the cell was killed)",
                        path: None,
                        errno,
                        hint: None,
                    }))
                }
            }
        }
        CLONE_FAILED => {
            extra(0);
            // A legacy clone's pidfd_open may have failed after the clone.
            orphan(arena);
            Some(Err(crate::spawn::clone_error(Errno(answer.errno))))
        }
        _ => {
            extra(0);
            None
        }
    }
}

/// Kills and reaps the cell a clone recorded in `arena`'s status page, if
/// it made one that nobody holds: true if there was one.
fn orphan(arena: &Arena) -> bool {
    // SAFETY: the arena's status page, mapped while `arena` lives.
    let pid = unsafe { crate::spawn::status::StatusPage::cell_pid(arena.status()) };
    if pid <= 0 {
        return false;
    }
    // The cell is this process's child (CLONE_PARENT) and unreaped, so its
    // pid names it and nothing else.
    let _ = sys::kill(pid, libc::SIGKILL);
    let _ = sys::reap(pid);
    true
}

/// Descriptors kept for the spawner, starting it if it has not been: what
/// a leak check must not count.
pub(crate) fn settle() -> Vec<RawFd> {
    match &*running(manager(), Instant::now() + Duration::from_secs(5)) {
        State::Running(r) => {
            let mut v = vec![r.pidfd.as_raw_fd(), r.sock.as_raw_fd()];
            v.extend(r.reserved.iter().map(AsRawFd::as_raw_fd));
            v
        }
        _ => Vec::new(),
    }
}

/// The spawner's process id, if one runs.
pub(crate) fn pid() -> Option<i32> {
    match &*running(manager(), Instant::now() + Duration::from_secs(5)) {
        State::Running(r) => Some(r.pid),
        _ => None,
    }
}

/// How the spawner stands, for `host::check`. Starts nothing.
pub(crate) enum Status {
    /// Serving: cells are cloned from it.
    Running(i32),
    /// Not started yet (no spawn so far), or starting now.
    NotYet,
    /// Down for a while: cells are cloned from the host meanwhile.
    Failed(String),
    /// Never usable in this program: cells are cloned from the host.
    Unusable(&'static str),
}

pub(crate) fn status() -> Status {
    match &*manager().state.lock() {
        _ if !binds_now() => Status::Unusable(LAZY_BINDING),
        State::Running(r) => Status::Running(r.pid),
        State::Unstarted | State::Starting(_) => Status::NotYet,
        State::Failed(f) => Status::Failed(f.describe()),
        State::Unusable(why) => Status::Unusable(why),
    }
}

const LAZY_BINDING: &str = "the program resolves symbols lazily (it was not linked with -z now)";

/// Starts a spawner from the calling (preparation) thread.
fn start(host_mnt: RawFd) -> Result<Running, String> {
    if !binds_now() {
        return Err(LAZY_BINDING.into());
    }
    let fail = |what: &str, e: Errno| format!("{what}: {e}");
    let (ours, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| fail("create the spawner's socket pair", e.into()))?;
    let netns = std::fs::File::open("/proc/thread-self/ns/net")
        .map(OwnedFd::from)
        .map_err(|e| fail("open the network namespace", Errno::from(&e)))?;
    let proc_dir = std::fs::File::open("/proc")
        .map(OwnedFd::from)
        .map_err(|e| fail("open /proc", Errno::from(&e)))?;
    let here = 0u8;
    // glibc's pthread_t is the thread's descriptor, next to its TLS.
    // SAFETY: pthread_self has no preconditions.
    let tls = unsafe { libc::pthread_self() } as usize;
    let ranges = unneeded_ranges(&[&here as *const u8 as usize, tls])
        .map_err(|e| format!("read /proc/self/maps: {e}"))?;
    let list_len = (ranges.len() * std::mem::size_of::<(usize, usize)>()).max(1);
    // SAFETY: a new private anonymous mapping for the list.
    let list = unsafe {
        libc::mmap(
            ptr::null_mut(),
            list_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if list == libc::MAP_FAILED {
        return Err(fail("map the spawner's unmap list", Errno::last()));
    }
    let list = list.cast::<(usize, usize)>();
    // SAFETY: the mapping holds ranges.len() pairs and is disjoint from `ranges`.
    unsafe { ptr::copy_nonoverlapping(ranges.as_ptr(), list, ranges.len()) };
    let start = Start {
        sock: theirs.as_raw_fd(),
        keep: [theirs.as_raw_fd(), netns.as_raw_fd(), proc_dir.as_raw_fd()],
        own_netns: netns.as_raw_fd(),
        proc_dir: proc_dir.as_raw_fd(),
        // Only where the preparation thread left the host's mount namespace
        // (a root host) and cells attach trees rather than bind paths.
        minimal_root: host_mnt >= 0 && crate::spawn::plan::mount_api_available(),
        unmap: list,
        unmap_count: ranges.len(),
        unmap_mapping: (list as usize, list_len),
        host_pid: std::process::id() as c_int,
        host_mnt,
    };
    let creds = Creds::current();
    let limits = rlimits();
    let netns_ino = netns_ino().unwrap_or(0);
    // Another thread may change a disposition around the clone: take both sides.
    let ignored_before = sys::ignored_signals();
    // SAFETY: `serve` only makes raw syscalls on `start` (on its copy of this
    // stack) and never returns.
    let cloned = unsafe { clone::clone_into(0, None, None, || serve(&start)) };
    // SAFETY: our copy of the list is not needed any more (the spawner has its own).
    let _ = unsafe { sys::munmap(list as usize, list_len) };
    let ignored_signals = ignored_before | sys::ignored_signals();
    let child = cloned.map_err(|e| fail("clone the spawner", e))?;
    // The spawner says it is ready with an empty answer.
    let mut answer = Answer::default();
    let mut got = [-1; MAX_FDS];
    let ready = wait_readable(ours.as_raw_fd(), child.pidfd.as_raw_fd(), None) == Readable::Yes
        // SAFETY: Answer is plain data.
        && sys::recv_fds(ours.as_raw_fd(), unsafe { as_bytes_mut(&mut answer) }, &mut got)
            == Ok((std::mem::size_of::<Answer>(), 0));
    if !ready || answer.errno != 0 {
        let _ = sys::pidfd_send_signal(child.pidfd.as_raw_fd(), libc::SIGKILL);
        let _ = sys::waitid_pidfd(child.pidfd.as_raw_fd(), false);
        return Err(match answer.errno {
            0 => "the spawner died while starting".into(),
            e => fail("start the spawner", Errno(e)),
        });
    }
    Ok(Running {
        pid: child.pid,
        pidfd: child.pidfd,
        sock: ours,
        reserved: [theirs, netns, proc_dir],
        minimal_root: answer.flags_used & READY_MINIMAL_ROOT != 0,
        netns_ino,
        host_pid: std::process::id(),
        creds,
        rlimits: limits,
        ignored_signals,
    })
}

/// The spawner's life. Raw syscalls only: after the first few, the heap,
/// every other thread's stack and every inherited descriptor are gone.
///
/// # Safety
/// Only in the spawner, right after its clone, with `start` prepared by `start()`.
unsafe fn serve(start: &Start) -> ! {
    let reply = |a: &Answer, fds: &[c_int]| sys::send_fds(start.sock, as_bytes(a), fds);
    let refuse = |errno: Errno| -> ! {
        let _ = reply(
            &Answer {
                errno: errno.0,
                ..Answer::default()
            },
            &[],
        );
        sys::exit(1)
    };
    if let Err(e) = sys::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_long,
        0,
        0,
        0,
    ) {
        refuse(e);
    }
    if sys::getppid() != start.host_pid {
        sys::exit(1); // the host is already gone
    }
    sys::set_name(c"jobcell-spawner");
    // Cells copy the spawner's mount namespace: the host's, not the
    // preparation thread's private one.
    if start.host_mnt >= 0 {
        if let Err(e) = sys::setns(start.host_mnt, libc::CLONE_NEWNS) {
            refuse(e);
        }
    }
    let mut keep = start.keep;
    keep.sort_unstable();
    if let Err(e) = cell::close_inherited(&keep) {
        refuse(e);
    }
    // The cells' descriptors come under the host's numbers, which reach up
    // to the host's soft limit: make room for every number up to the hard
    // one (the jobs get limits of their own; see sandbox/rlimit.rs).
    raise_nofile();
    let mut i = 0;
    while i < start.unmap_count {
        // SAFETY: i < unmap_count pairs in the list mapping, which stays until
        // below; the ranges are the host's heap and stacks, never used here.
        unsafe {
            let (addr, len) = ptr::read(start.unmap.add(i));
            let _ = sys::munmap(addr, len);
        }
        i += 1;
    }
    // SAFETY: the list was read in full above.
    let _ = unsafe { sys::munmap(start.unmap_mapping.0, start.unmap_mapping.1) };
    let minimal = start.minimal_root && enter_minimal_root(start.host_mnt);
    let ready = Answer {
        flags_used: if minimal { READY_MINIMAL_ROOT } else { 0 },
        ..Answer::default()
    };
    if reply(&ready, &[]).is_err() {
        sys::exit(1);
    }
    let mut ipc = Ipc {
        fresh: false,
        in_own: true,
    };
    loop {
        if !ipc.fresh {
            ipc.renew(start.proc_dir);
        }
        let mut req = Request {
            arena_addr: 0,
            arena_len: 0,
            plan: 0,
            flags: 0,
            has_cgroup: false,
            has_netns: false,
            has_release: false,
            keep: 0,
            targets: [-1; MAX_FDS],
            maps: IdMaps::EMPTY,
            fault: 0,
        };
        let mut fds = [-1; MAX_FDS];
        // SAFETY: Request is plain data; a short message is refused below.
        let got = sys::recv_fds(start.sock, unsafe { as_bytes_mut(&mut req) }, &mut fds);
        let (answer, pidfd) = match got {
            Ok((0, _)) | Err(Errno(libc::ECONNRESET)) => sys::exit(0), // the host is gone
            Ok((n, k)) if n == std::mem::size_of::<Request>() => {
                Fault::at(req.fault, Fault::DIE_ON_RECEIPT);
                Fault::at(req.fault, Fault::HANG);
                // SAFETY: a complete request with its k descriptors.
                let answer =
                    unsafe { handle(&req, &fds[..k], start.own_netns, start.proc_dir, &mut ipc) };
                Fault::at(req.fault, Fault::DIE_BEFORE_ANSWER);
                answer
            }
            Ok((_, k)) => {
                for &fd in &fds[..k] {
                    sys::close(fd);
                }
                (decline(Errno(libc::EPROTO)), -1)
            }
            Err(e) => (decline(e), -1),
        };
        let sent = if pidfd >= 0 {
            let r = reply(&answer, &[pidfd]);
            sys::close(pidfd);
            r
        } else {
            reply(&answer, &[])
        };
        if sent.is_err() {
            sys::exit(1);
        }
    }
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit. Raw syscalls only.
fn raise_nofile() {
    let mut l = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads the limit into `l`; no new limit is set.
    let got = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            libc::RLIMIT_NOFILE,
            ptr::null::<libc::rlimit64>(),
            &mut l as *mut libc::rlimit64,
        )
    };
    if got == 0 && l.rlim_cur < l.rlim_max {
        l.rlim_cur = l.rlim_max;
        let _ = sys::prlimit(libc::RLIMIT_NOFILE as c_int, &l);
    }
}

/// Writes a cell's id maps and releases it, as the host would (see
/// `write_id_maps` in `mod.rs`), through the host's /proc.
fn release(pid: c_int, maps: &IdMaps, proc_dir: c_int, sync: c_int) -> Release {
    let write = |name: &[u8], value: &[u8]| -> Result<(), Errno> {
        let mut path = [0u8; 48];
        let n = pid_path(&mut path, pid, name);
        let path =
            std::ffi::CStr::from_bytes_with_nul(&path[..n]).map_err(|_| Errno(libc::EINVAL))?;
        let fd = sys::openat(proc_dir, path, libc::O_WRONLY | libc::O_CLOEXEC, 0)?;
        let w = sys::write_all(fd, value);
        sys::close(fd);
        w
    };
    let fail = |step, e: Errno| Release { step, errno: e.0 };
    if maps.deny_setgroups {
        if let Err(e) = write(b"setgroups", b"deny") {
            return fail(Release::SETGROUPS, e);
        }
    }
    if let Err(e) = write(b"uid_map", &maps.uid[..maps.uid_len as usize]) {
        return fail(Release::UID_MAP, e);
    }
    if let Err(e) = write(b"gid_map", &maps.gid[..maps.gid_len as usize]) {
        return fail(Release::GID_MAP, e);
    }
    if let Err(e) = sys::send_byte(sync) {
        return fail(Release::SYNC, e);
    }
    Release {
        step: Release::DONE,
        errno: 0,
    }
}

/// Writes `<pid>/<name>` and a NUL into `buf` (without allocating: the
/// spawner has no heap); returns the length with the NUL.
fn pid_path(buf: &mut [u8; 48], pid: c_int, name: &[u8]) -> usize {
    let mut digits = [0u8; 12];
    let (mut n, mut v) = (0, pid.unsigned_abs());
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let mut len = 0;
    for i in (0..n).rev() {
        buf[len] = digits[i];
        len += 1;
    }
    buf[len] = b'/';
    len += 1;
    let name = &name[..name.len().min(buf.len() - len - 1)];
    buf[len..len + name.len()].copy_from_slice(name);
    len += name.len();
    buf[len] = 0;
    len + 1
}

/// `Answer::flags_used` of the ready message: the spawner serves from its minimal root.
const READY_MINIMAL_ROOT: u64 = 1;

/// Moves the spawner into a mount namespace of its own whose root is a
/// small tmpfs holding the staging directories (see `plan::STAGING_DIRS`)
/// and a bind of /proc. False (back in the host's namespace) if it cannot.
fn enter_minimal_root(host_mnt: c_int) -> bool {
    // Relative to the new root; parents before children.
    const DIRS: [&std::ffi::CStr; 9] = [
        c"proc", c"tmp", c"mnt", c"run", c"var", c"var/tmp", c"media", c"srv", c"opt",
    ];
    let built = (|| {
        sys::unshare(libc::CLONE_NEWNS)?;
        sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
        // Any directory will do to build on; /dev exists wherever cells do.
        sys::mount(
            Some(c"tmpfs"),
            c"/dev",
            Some(c"tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some(c"mode=0755,size=64k,nr_inodes=32"),
        )?;
        sys::chdir(c"/dev")?;
        for d in DIRS {
            sys::mkdir(d, 0o755)?;
        }
        // The kernel lets a user namespace mount a proc file system only
        // where one is already fully visible.
        sys::mount(Some(c"/proc"), c"proc", None, libc::MS_BIND, None)?;
        sys::pivot_root(c".", c".")?;
        sys::umount2(c".", libc::MNT_DETACH)?;
        sys::chdir(c"/")
    })();
    if built.is_err() && sys::setns(host_mnt, libc::CLONE_NEWNS).is_err() {
        // Stuck halfway: the host will clone cells itself.
        sys::exit(1);
    }
    built.is_ok()
}

/// The IPC namespace the spawner sits in.
struct Ipc {
    /// A fresh one, made for the next cell and set up.
    fresh: bool,
    /// Still the host's (nothing was made yet).
    in_own: bool,
}

impl Ipc {
    /// Makes a fresh IPC namespace for the next cell: with
    /// `kernel.shm_rmid_forced` set, so SysV segments go with the last
    /// process that used them (the cell could not set it: the namespace
    /// is not its user namespace's).
    fn renew(&mut self, proc_dir: c_int) {
        if sys::unshare(libc::CLONE_NEWIPC).is_err() {
            return;
        }
        self.in_own = false;
        let set = sys::openat(
            proc_dir,
            c"sys/kernel/shm_rmid_forced",
            libc::O_WRONLY | libc::O_CLOEXEC,
            0,
        )
        .and_then(|fd| {
            let w = sys::write_all(fd, b"1");
            sys::close(fd);
            w
        });
        // Without the setting the namespace is no good: cells make their own.
        self.fresh = set.is_ok();
    }
}

fn decline(errno: Errno) -> Answer {
    Answer {
        outcome: DECLINED,
        errno: errno.0,
        ..Answer::default()
    }
}

/// Serves one request: the answer, and the cell's pidfd (-1 if none).
/// Closes every descriptor received.
///
/// # Safety
/// In the spawner only, with `fds` received along with `req`.
unsafe fn handle(
    req: &Request,
    fds: &[c_int],
    own_netns: c_int,
    proc_dir: c_int,
    ipc: &mut Ipc,
) -> (Answer, c_int) {
    let fixed = 1 + req.has_cgroup as usize + req.has_netns as usize + req.has_release as usize;
    let keep = req.keep as usize;
    let targets = match req.targets.get(..keep) {
        Some(t) if fds.len() == fixed + keep => t,
        _ => {
            fds.iter().for_each(|&fd| sys::close(fd));
            return (decline(Errno(libc::EPROTO)), -1);
        }
    };
    // The received descriptors sit wherever the kernel put them, maybe on a
    // number the plan wants for another: move each to a number no target
    // has first, then put each under its number. (The targets are the
    // host's numbers, anywhere below its limit: a busy host's are high.)
    let mut moved = [-1; MAX_FDS];
    let mut result = Ok(());
    for (i, &fd) in fds.iter().enumerate() {
        let mut from: c_int = 0;
        while result.is_ok() && moved[i] < 0 {
            match sys::fcntl(fd, libc::F_DUPFD_CLOEXEC, from as libc::c_long) {
                Ok(m) if targets.contains(&(m as c_int)) => {
                    sys::close(m as c_int);
                    from = m as c_int + 1;
                }
                Ok(m) => moved[i] = m as c_int,
                Err(e) => result = Err(e),
            }
        }
        sys::close(fd);
    }
    let mut placed = 0;
    if result.is_ok() {
        for (i, &t) in targets.iter().enumerate() {
            if let Err(e) = sys::dup3(moved[fixed + i], t, libc::O_CLOEXEC) {
                result = Err(e);
                break;
            }
            placed += 1;
        }
    }
    let answer = match result {
        Err(e) => (decline(e), -1),
        Ok(()) => {
            let cgroup = req.has_cgroup.then_some(moved[1]);
            let netns = req.has_netns.then_some(moved[1 + req.has_cgroup as usize]);
            let sync = req.has_release.then_some(moved[fixed - 1]);
            // SAFETY: as the caller promised; the descriptors are in place.
            let (mut answer, pidfd) =
                unsafe { clone_cell_here(req, moved[0], cgroup, netns, own_netns, ipc) };
            Fault::at(req.fault, Fault::DIE_AFTER_CLONE);
            if let Some(sync) = sync {
                // Only once the cell is in its cgroup: when the clone could
                // not place it, the host must move it first.
                let placed = cgroup.is_none() || answer.flags_used & clone::CLONE_INTO_CGROUP != 0;
                if answer.outcome == CLONED && placed {
                    answer.release = release(answer.pid, &req.maps, proc_dir, sync);
                }
            }
            (answer, pidfd)
        }
    };
    for &fd in moved.iter().filter(|&&fd| fd >= 0) {
        sys::close(fd);
    }
    for &t in targets.iter().take(placed) {
        sys::close(t);
    }
    answer
}

/// Maps the arena, joins the cell's network namespace, clones init.
///
/// # Safety
/// In the spawner only, with the request's descriptors in place.
unsafe fn clone_cell_here(
    req: &Request,
    arena: c_int,
    cgroup: Option<c_int>,
    netns: Option<c_int>,
    own_netns: c_int,
    ipc: &mut Ipc,
) -> (Answer, c_int) {
    let new_ipc = req.flags & libc::CLONE_NEWIPC as u64 != 0;
    if !new_ipc && !ipc.in_own {
        // A cell meant to share the host's IPC namespace: not from here.
        return (decline(Errno(libc::EINVAL)), -1);
    }
    // The fresh namespace made ahead replaces the clone's own.
    let ready_ipc = new_ipc && ipc.fresh;
    let mut flags = req.flags | CLONE_PARENT;
    if ready_ipc {
        flags &= !(libc::CLONE_NEWIPC as u64);
    }
    let (addr, len) = (req.arena_addr, req.arena_len);
    if let Err(e) = sys::mmap_shared_at(addr, len, arena) {
        return (decline(e), -1);
    }
    if ready_ipc {
        // SAFETY: page 0 of the arena, mapped just above, is the status
        // page; the cell that reads it does not exist yet.
        unsafe { crate::spawn::status::StatusPage::set_ipc_ready(addr as *mut _) };
    }
    if let Some(ns) = netns {
        if let Err(e) = sys::setns(ns, libc::CLONE_NEWNET) {
            // SAFETY: mapped just above, referenced by nothing here.
            let _ = unsafe { sys::munmap(addr, len) };
            return (decline(e), -1);
        }
    }
    let plan = req.plan;
    Fault::at(req.fault, Fault::DIE_BEFORE_CLONE);
    // The kernel stores the cell's pid in the status page (page 0 of the
    // arena, shared with the host) as part of the clone: if this process
    // dies before it answers, the host still finds the cell.
    let pid_slot = crate::spawn::status::StatusPage::cell_pid_slot(addr as *mut _);
    // SAFETY: the plan lives in the arena, mapped above at the host's address.
    let owner = unsafe { (*(plan as *const ChildPlan<'_>)).ns_owner };
    // SAFETY: as above; init only makes raw syscalls on it (see cell/mod.rs). The
    // pid slot is in that mapping.
    let cloned = unsafe {
        clone::clone_into_as(flags, cgroup, Some(pid_slot), owner, || {
            cell::init_main(&*(plan as *const ChildPlan<'_>))
        })
    };
    if netns.is_some() && sys::setns(own_netns, libc::CLONE_NEWNET).is_err() {
        // Stuck in a cell's namespace: the host will start another spawner.
        sys::exit(1);
    }
    // SAFETY: the cell has its own mapping of the arena now; ours is unused.
    let _ = unsafe { sys::munmap(addr, len) };
    match cloned {
        Ok(c) => {
            use std::os::fd::IntoRawFd;
            if ready_ipc {
                ipc.fresh = false;
            }
            let answer = Answer {
                outcome: CLONED,
                errno: 0,
                pid: c.pid,
                flags_used: c.flags
                    | if ready_ipc {
                        libc::CLONE_NEWIPC as u64
                    } else {
                        0
                    },
                release: Release::default(),
            };
            (answer, c.pidfd.into_raw_fd())
        }
        Err(e) => (
            Answer {
                outcome: CLONE_FAILED,
                errno: e.0,
                ..Answer::default()
            },
            -1,
        ),
    }
}

/// The bytes of a plain-data value.
fn as_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a repr(C) plain-data type; reading its bytes is fine.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// The bytes of a plain-data value, to be overwritten.
///
/// # Safety
/// Every bit pattern must be a valid `T`.
unsafe fn as_bytes_mut<T: Copy>(v: &mut T) -> &mut [u8] {
    // SAFETY: see above; the slice covers exactly `v`.
    unsafe { std::slice::from_raw_parts_mut((v as *mut T).cast::<u8>(), std::mem::size_of::<T>()) }
}

#[derive(Debug, PartialEq, Eq)]
enum Readable {
    Yes,
    /// The spawner died (or the socket broke) first.
    Gone,
    TimedOut,
}

/// Waits until `sock` has something to read, the spawner has died, or `until`.
fn wait_readable(sock: RawFd, spawner: RawFd, until: Option<Instant>) -> Readable {
    loop {
        let timeout = match until {
            None => -1,
            Some(t) => match t.checked_duration_since(Instant::now()) {
                None => return Readable::TimedOut,
                Some(left) => left.as_millis().min(i32::MAX as u128) as c_int + 1,
            },
        };
        let mut fds = [
            libc::pollfd {
                fd: sock,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: spawner,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        match sys::poll(&mut fds, timeout) {
            Ok(_) if fds[0].revents & libc::POLLIN != 0 => return Readable::Yes,
            Ok(_) if fds[1].revents != 0 || fds[0].revents != 0 => return Readable::Gone,
            Ok(_) | Err(Errno(libc::EINTR)) => {}
            Err(_) => return Readable::Gone,
        }
    }
}

/// What the spawner unmaps: every mapping of this process but the loaded
/// programs and libraries (their code and data, `.bss` included), the
/// kernel's own ([vdso] and the like) and those holding an address in
/// `keep` (the creating thread's stack and TLS). The heap, other threads'
/// stacks and whatever the host mapped (data files, other spawns' arenas,
/// which would otherwise sit where the host puts its next ones) all go.
fn unneeded_ranges(keep: &[usize]) -> std::io::Result<Vec<(usize, usize)>> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    Ok(parse_unneeded(&maps, keep, &loaded_segments()))
}

fn parse_unneeded(maps: &str, keep: &[usize], loaded: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(_perms), Some(_off), Some(_dev), Some(_inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let name = f.next().unwrap_or("");
        let kernels = name.starts_with('[')
            && !(name == "[heap]" || name.starts_with("[stack") || name.starts_with("[anon"));
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        let needed = kernels
            || keep.iter().any(|&k| a <= k && k < b)
            || loaded.iter().any(|&(s, e)| a < e && s < b);
        if a < b && !needed {
            out.push((a, b - a));
        }
    }
    out
}

/// The address ranges of every loaded object's segments (page-aligned).
fn loaded_segments() -> Vec<(usize, usize)> {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid info; data is the &mut Vec below.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<(usize, usize)>)) };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
        let headers =
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        for h in headers.iter().filter(|h| h.p_type == libc::PT_LOAD) {
            let start = info.dlpi_addr as usize + h.p_vaddr as usize;
            let end = start + h.p_memsz as usize;
            out.push((
                start & !(crate::spawn::status::PAGE - 1),
                end.next_multiple_of(crate::spawn::status::PAGE),
            ));
        }
        0
    }
    let mut out: Vec<(usize, usize)> = Vec::new();
    // SAFETY: visit only reads what the loader hands it and pushes to `out`.
    unsafe {
        libc::dl_iterate_phdr(
            Some(visit),
            &mut out as *mut Vec<(usize, usize)> as *mut libc::c_void,
        )
    };
    out
}

/// Whether the object holding this code resolves its symbols at load time:
/// with lazy binding, a first call into libc from the spawner would run the
/// dynamic linker on data the spawner has unmapped.
fn binds_now() -> bool {
    static NOW: OnceLock<bool> = OnceLock::new();
    *NOW.get_or_init(binds_now_here)
}

/// What [`binds_now`] remembers (a property of the program, not a failure).
fn binds_now_here() -> bool {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid info; data is the &mut Visit below.
        let (info, v) = unsafe { (&*info, &mut *(data as *mut Visit)) };
        // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
        let headers =
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let addr = v.code;
        let holds = headers.iter().any(|h| {
            h.p_type == libc::PT_LOAD && {
                let start = info.dlpi_addr as usize + h.p_vaddr as usize;
                start <= addr && addr < start + h.p_memsz as usize
            }
        });
        if !holds {
            return 0;
        }
        v.found = true;
        v.now = true; // no dynamic section: nothing is bound lazily
        for h in headers.iter().filter(|h| h.p_type == libc::PT_DYNAMIC) {
            v.now = false;
            let mut d = (info.dlpi_addr as usize + h.p_vaddr as usize) as *const Dyn;
            // SAFETY: the dynamic section is a DT_NULL-terminated array in a loaded segment.
            unsafe {
                while (*d).tag != 0 {
                    let (tag, val) = ((*d).tag, (*d).val);
                    if tag == DT_BIND_NOW
                        || (tag == DT_FLAGS && val & DF_BIND_NOW != 0)
                        || (tag == DT_FLAGS_1 && val & DF_1_NOW != 0)
                    {
                        v.now = true;
                    }
                    d = d.add(1);
                }
            }
        }
        1
    }
    /// An entry of the dynamic section (64-bit ELF).
    #[repr(C)]
    struct Dyn {
        tag: i64,
        val: u64,
    }
    const DT_BIND_NOW: i64 = 24;
    const DT_FLAGS: i64 = 30;
    const DT_FLAGS_1: i64 = 0x6fff_fffb;
    const DF_BIND_NOW: u64 = 0x8;
    const DF_1_NOW: u64 = 0x1;
    struct Visit {
        code: usize,
        found: bool,
        now: bool,
    }
    let mut v = Visit {
        code: binds_now_here as fn() -> bool as usize,
        found: false,
        now: false,
    };
    // SAFETY: visit only reads what the loader hands it and writes to `v`.
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut v as *mut Visit as *mut libc::c_void) };
    v.found && v.now
}

/// What a clone inherits from the calling thread and the spawner must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Creds {
    euid: u32,
    egid: u32,
    caps: [u32; 4],
}

impl Creds {
    fn current() -> Creds {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: c_int,
        }
        let mut header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let mut data = [0u32; 6]; // two of (effective, permitted, inheritable)
                                  // SAFETY: header and data have the layout capget(2) expects for version 3.
        unsafe {
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut Header,
                data.as_mut_ptr(),
            )
        };
        Creds {
            // SAFETY: no preconditions.
            euid: unsafe { libc::geteuid() },
            // SAFETY: no preconditions.
            egid: unsafe { libc::getegid() },
            caps: [data[0], data[1], data[3], data[4]],
        }
    }
}

const RLIMITS: usize = 16;

/// The process's resource limits (soft, hard), which every clone inherits.
fn rlimits() -> [(u64, u64); RLIMITS] {
    let mut out = [(0, 0); RLIMITS];
    for (i, l) in out.iter_mut().enumerate() {
        let mut r = libc::rlimit64 {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: r is a valid rlimit64 to fill; unknown resources leave it zeroed.
        unsafe { libc::getrlimit64(i as _, &mut r) };
        *l = (r.rlim_cur, r.rlim_max);
    }
    out
}

fn netns_ino() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn proc_paths_of_a_pid() {
        let mut buf = [0u8; 48];
        let n = pid_path(&mut buf, 4_194_304, b"uid_map");
        assert_eq!(&buf[..n], b"4194304/uid_map\0");
        let n = pid_path(&mut buf, 0, b"setgroups");
        assert_eq!(&buf[..n], b"0/setgroups\0");
    }

    #[test]
    fn maps_longer_than_the_request_holds_stay_with_the_host() {
        let mut ids = IdPlan {
            uid_map: "0 100000 65536\n".into(),
            gid_map: "0 100000 65536\n".into(),
            deny_setgroups: false,
            become_root: true,
            uid: 1000,
            gid: 1000,
            host_uid: 101_000,
            host_gid: 101_000,
            has_root: true,
        };
        let m = IdMaps::new(&ids).expect("short maps fit");
        assert_eq!(&m.uid[..m.uid_len as usize], b"0 100000 65536\n");
        ids.uid_map = "0 1 1\n".repeat(60);
        assert!(IdMaps::new(&ids).is_none());
    }

    proptest! {
        #[test]
        fn pid_paths_read_back(pid in 0i32..=i32::MAX, name in "[a-z_]{1,20}") {
            let mut buf = [0u8; 48];
            let n = pid_path(&mut buf, pid, name.as_bytes());
            let c = std::ffi::CStr::from_bytes_with_nul(&buf[..n]).unwrap();
            prop_assert_eq!(c.to_str().unwrap(), format!("{pid}/{name}"));
        }
    }

    #[test]
    fn only_loaded_objects_the_kernels_and_the_kept_stay() {
        let maps = "\
55d0a000-55d0b000 r--p 00000000 08:01 1234   /usr/bin/host
55d0c000-55d0d000 rw-p 00001000 08:01 1234   /usr/bin/host
55d0d000-55d0f000 rw-p 00000000 00:00 0
55d0f000-55d2f000 rw-p 00000000 00:00 0      [heap]
7f00000000-7f00200000 rw-p 00000000 00:00 0
7f00200000-7f00400000 rw-p 00000000 00:00 0
7f00400000-7f00401000 rw-s 00000000 00:01 77   /memfd:jobcell-plan (deleted)
7f00500000-7f00600000 r--s 00000000 08:01 99   /var/data/big.db
7ffc000000-7ffc100000 rw-p 00000000 00:00 0      [stack]
7ffc200000-7ffc202000 r--p 00000000 00:00 0      [vvar]
7ffc202000-7ffc204000 r-xp 00000000 00:00 0      [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]
";
        // The program's segments reach into the anonymous mapping after its
        // data (the rest of its .bss): that stays too.
        let loaded = [(0x55d0a000, 0x55d0b000), (0x55d0c000, 0x55d0e000)];
        let keep = [0x7f00200010];
        assert_eq!(
            parse_unneeded(maps, &keep, &loaded),
            vec![
                (0x55d0f000, 0x20000),
                (0x7f00000000, 0x200000),
                (0x7f00400000, 0x1000),
                (0x7f00500000, 0x100000),
                (0x7ffc000000, 0x100000)
            ]
        );
    }

    #[test]
    fn this_process_has_loaded_segments_holding_its_code() {
        let code = loaded_segments as fn() -> Vec<(usize, usize)> as usize;
        assert!(loaded_segments()
            .iter()
            .any(|&(s, e)| s <= code && code < e));
    }

    #[test]
    fn this_test_binary_binds_now() {
        assert!(binds_now());
    }
}
