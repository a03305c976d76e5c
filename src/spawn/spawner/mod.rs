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
//!
//! This is the host's side: starting the spawner, sending it requests,
//! taking cells over when it dies. The spawner's own loop is
//! `spawn/cell/spawner.rs`, the messages they exchange
//! `spawn/cell/messages.rs`.

mod inherit;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libc::c_int;
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::error::{Errno, Error, Stage};
use crate::spawn::arena::Arena;
use crate::spawn::cell::messages::{
    as_bytes, as_bytes_mut, Answer, IdMaps, Request, Start, CLONED, CLONE_FAILED, MAP_MAX,
    READY_MINIMAL_ROOT,
};
pub(crate) use crate::spawn::cell::messages::{Fault, Release};
use crate::spawn::cell::spawner::serve;
use crate::spawn::cell::ChildPlan;
use crate::spawn::clone;
use crate::spawn::idmap::IdPlan;
use crate::spawn::retry::Failed;
use crate::spawn::Deadline;
use crate::sys::{self, MAX_FDS};
use inherit::{binds_now, netns_ino, rlimits, unneeded_ranges, Creds, RLIMITS};

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
    start_if_due(&mut g);
    let until = until.min(Instant::now() + Duration::from_secs(5));
    while matches!(*g, State::Starting(_)) {
        if m.changed.wait_until(&mut g, until).timed_out() {
            break;
        }
    }
    g
}

/// Asks for a spawner to be started if none runs and a start is due,
/// without waiting for it: a spawn calls this before it plans, so that
/// the start and the planning overlap.
pub(crate) fn start_early() {
    start_if_due(&mut manager().state.lock());
}

/// Asks for a start unless a spawner runs, is starting, or failed lately.
fn start_if_due(g: &mut MutexGuard<'static, State>) {
    match &**g {
        State::Unstarted => request_start(g, None),
        State::Failed(f) if f.due() => {
            let f = f.clone();
            request_start(g, Some(f));
        }
        _ => {}
    }
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
        let _ = sys::host::pidfd_send_signal(r.pidfd.as_raw_fd(), libc::SIGKILL);
        let _ = sys::host::waitid_pidfd(r.pidfd.as_raw_fd(), false);
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
    let _ = sys::host::reap(pid);
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
    let netns =
        crate::spawn::netns::thread_netns().map_err(|e| fail("open the network namespace", e))?;
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
    let ignored_before = sys::host::ignored_signals();
    // SAFETY: `serve` only makes raw syscalls on `start` (on its copy of this
    // stack) and never returns.
    let cloned = unsafe { clone::clone_into(0, None, None, || serve(&start)) };
    // SAFETY: our copy of the list is not needed any more (the spawner has its own).
    let _ = unsafe { sys::munmap(list as usize, list_len) };
    let ignored_signals = ignored_before | sys::host::ignored_signals();
    let child = cloned.map_err(|e| fail("clone the spawner", e))?;
    // The spawner says it is ready with an empty answer.
    let mut answer = Answer::default();
    let mut got = [-1; MAX_FDS];
    let ready = wait_readable(ours.as_raw_fd(), child.pidfd.as_raw_fd(), None) == Readable::Yes
        // SAFETY: Answer is plain data.
        && sys::recv_fds(ours.as_raw_fd(), unsafe { as_bytes_mut(&mut answer) }, &mut got)
            == Ok((std::mem::size_of::<Answer>(), 0));
    if !ready || answer.errno != 0 {
        let _ = sys::host::pidfd_send_signal(child.pidfd.as_raw_fd(), libc::SIGKILL);
        let _ = sys::host::waitid_pidfd(child.pidfd.as_raw_fd(), false);
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

impl IdMaps {
    /// The maps of `ids` as the spawner writes them; `None` when one is
    /// longer than a request holds (the host writes it then).
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
