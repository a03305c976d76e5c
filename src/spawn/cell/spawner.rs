//! The spawner's own life, once cloned from the host: it drops what it
//! inherited of the host (heap, other threads' stacks, descriptors), then
//! serves requests (see `messages.rs`), cloning a cell's init for each.
//! Like init, it runs on raw system calls only: its heap is gone. The
//! host's side (starting it, sending requests) is `spawn/spawner/`.

use std::ptr;

use libc::c_int;

use super::messages::{
    as_bytes, as_bytes_mut, Answer, Fault, IdMaps, Release, Request, Start, CLONED, CLONE_FAILED,
    DECLINED, READY_MINIMAL_ROOT,
};
use super::ChildPlan;
use crate::error::Errno;
use crate::spawn::clone;
use crate::sys::{self, MAX_FDS};

const CLONE_PARENT: u64 = libc::CLONE_PARENT as u64;

/// The spawner's life. Raw syscalls only: after the first few, the heap,
/// every other thread's stack and every inherited descriptor are gone.
///
/// # Safety
/// Only in the spawner, right after its clone, with `start` prepared by `start()`.
pub(crate) unsafe fn serve(start: &Start) -> ! {
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
    if let Err(e) = super::close_inherited(&keep) {
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
    // SAFETY: as above; init only makes raw syscalls on it (see init.rs). The
    // pid slot is in that mapping.
    let cloned = unsafe {
        clone::clone_into_as(flags, cgroup, Some(pid_slot), owner, || {
            super::init_main(&*(plan as *const ChildPlan<'_>))
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

    proptest! {
        #[test]
        fn pid_paths_read_back(pid in 0i32..=i32::MAX, name in "[a-z_]{1,20}") {
            let mut buf = [0u8; 48];
            let n = pid_path(&mut buf, pid, name.as_bytes());
            let c = std::ffi::CStr::from_bytes_with_nul(&buf[..n]).unwrap();
            prop_assert_eq!(c.to_str().unwrap(), format!("{pid}/{name}"));
        }
    }
}
