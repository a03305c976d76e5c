//! The cell's init: PID 1 of the cell. It joins the job's cgroups, builds
//! the new root, forks the job and then reaps until the job has ended.

use std::ffi::CStr;

use libc::{c_int, c_long};

use super::job::job_main;
use super::newroot::{proc_fd_path, NewRoot, Place};
use super::{encode_record, fail, progress, ChildPlan, Op, PlacedOp, READY};
use crate::error::{Errno, Stage};
use crate::spawn::status::StatusPage;
use crate::sys;

const MS_REC: u64 = libc::MS_REC;
const MS_PRIVATE: u64 = libc::MS_PRIVATE;
const MS_BIND: u64 = libc::MS_BIND;
const MS_REMOUNT: u64 = libc::MS_REMOUNT;
const AT_RECURSIVE: u32 = 0x8000;

/// The cell's init: PID 1 of the new PID namespace. Never returns.
///
/// # Safety
/// Must be called only in the child of the clone, with `plan` prepared by the
/// parent (all pointers valid in this copy of the address space).
pub(crate) unsafe fn init_main(plan: &ChildPlan<'_>) -> ! {
    let efd = plan.error_write;
    hide_host_args(plan.status);

    progress(plan, Stage::CloseFds, 0);
    if let Err(e) = close_inherited(plan.keep) {
        fail(efd, Stage::CloseFds, e, 0);
    }
    for (i, &fd) in plan.join_cgroups.iter().enumerate() {
        progress(plan, Stage::JoinCgroup, i as u32);
        if let Err(e) = sys::write_all(fd, b"0") {
            fail(efd, Stage::JoinCgroup, e, i as u32);
        }
        sys::close(fd);
    }
    sys::set_name(c"jobcell-init");
    // A host umask like 077 would make the cell's /etc/passwd unreadable to the job.
    // SAFETY: umask has no memory arguments.
    unsafe { libc::syscall(libc::SYS_umask, 0o022) };

    // The job inherits init's capability bounding set (init never executes
    // anything, so it has no use for one). Emptied here, while the maps are
    // being written, rather than in the job between its fork and execve:
    // each drop makes new credentials, ~40 of them.
    let mut cap: c_int = 0;
    progress(plan, Stage::DropCapabilities, 0);
    while cap <= plan.job.cap_last {
        match sys::prctl(libc::PR_CAPBSET_DROP, cap as c_long, 0, 0, 0) {
            Ok(_) | Err(Errno(libc::EINVAL)) => {}
            Err(e) => fail(efd, Stage::DropCapabilities, e, cap as u32),
        }
        cap += 1;
    }

    // Wait until the host has written the id maps (and joined us to cgroups).
    progress(plan, Stage::WaitForHost, 0);
    let mut byte = [0u8; 1];
    loop {
        match sys::read(plan.sync_read, &mut byte) {
            Ok(1) => break,
            Ok(_) => sys::exit(1), // the host gave up on us
            Err(Errno(libc::EINTR)) => {}
            Err(e) => fail(efd, Stage::WaitForHost, e, 0),
        }
    }
    if plan.ahead.is_null() {
        sys::close(plan.sync_read);
    }

    progress(plan, Stage::BecomeRoot, 0);
    if plan.become_root {
        if let Err(e) = sys::setresgid(0)
            .and_then(|_| sys::setresuid(0))
            .and_then(|_| sys::setgroups(&[]))
        {
            fail(efd, Stage::BecomeRoot, e, 0);
        }
    }
    // Now that the host has placed us in the job's cgroup, make it the root of
    // the cell's cgroup namespace (a clone-time namespace would be rooted at the host's).
    progress(plan, Stage::CgroupNamespace, 0);
    if let Err(e) = sys::unshare(libc::CLONE_NEWCGROUP) {
        fail(efd, Stage::CgroupNamespace, e, 0);
    }
    progress(plan, Stage::SetHostname, 0);
    if let Err(e) = sys::sethostname(plan.hostname) {
        fail(efd, Stage::SetHostname, e, 0);
    }
    progress(plan, Stage::MakeMountsPrivate, 0);
    if let Err(e) = sys::mount(None, c"/", None, MS_REC | MS_PRIVATE, None) {
        fail(efd, Stage::MakeMountsPrivate, e, 0);
    }
    // SAFETY: plan.status is the shared status page mapped by the parent.
    let ipc_ready = unsafe { StatusPage::ipc_ready(plan.status) };
    let mut root = NewRoot::new(plan.staging);
    for (i, op) in plan.ops.iter().enumerate() {
        // An IPC namespace made ahead came set up (and is not ours to set):
        // the write would only fail, after a walk through the fresh /proc.
        if ipc_ready && matches!(op, Op::Sysctl { ipc: true, .. }) {
            continue;
        }
        progress(plan, Stage::BuildRoot, i as u32);
        if let Err(e) = run_op(op, &mut root) {
            fail(efd, Stage::BuildRoot, e, i as u32);
        }
    }
    drop(root);
    progress(plan, Stage::PivotRoot, 0);
    if let Err(e) = sys::chdir(plan.staging).and_then(|_| sys::pivot_root(c".", c".")) {
        fail(efd, Stage::PivotRoot, e, 0);
    }
    // The old root now sits under the new one at "."; detach it so the host tree is gone.
    progress(plan, Stage::DetachOldRoot, 0);
    if let Err(e) = sys::umount2(c".", libc::MNT_DETACH).and_then(|_| sys::chdir(c"/")) {
        fail(efd, Stage::DetachOldRoot, e, 0);
    }
    if plan.loopback {
        progress(plan, Stage::LoopbackUp, 0);
        if let Err(e) = loopback_up() {
            fail(efd, Stage::LoopbackUp, e, 0);
        }
    }

    if let Some(prog) = &plan.init_seccomp {
        // Every call init and the job's setup still make is allowed by the
        // default policy; the job inherits the filter through its clone.
        progress(plan, Stage::Seccomp, 0);
        if let Err(e) = sys::seccomp_filter(0, prog) {
            fail(efd, Stage::Seccomp, e, 0);
        }
    }
    let taken: ChildPlan<'_>;
    let plan = if plan.ahead.is_null() {
        plan
    } else {
        taken = wait_for_command(plan);
        &taken
    };
    progress(plan, Stage::ForkJob, 0);
    // SAFETY: plan.status is the shared status page mapped by the parent.
    unsafe { StatusPage::mark_forking(plan.status) };
    match spawn_job(plan) {
        Ok(pid) => {
            // The job has executed (or failed): its seccomp listener, if it
            // made one, is waiting in the socket.
            let listener = if plan.report_init >= 0 {
                sys::recv_fd(plan.report_init).ok().flatten().unwrap_or(-1)
            } else {
                -1
            };
            sys::close(plan.report_init);
            sys::close(plan.report_job);
            // A cell made ahead received its job's descriptors wherever
            // there was room, 0 to 2 included: none of them stays open here.
            for fd in plan.job.stdio {
                if fd > 2 || !plan.ahead.is_null() {
                    sys::close(fd);
                }
            }
            let watch = Watch {
                lifeline: plan.lifeline_read,
                status: plan.status,
                graveyard: plan.graveyard,
            };
            // The host takes end-of-file on the error pipe as the sign that
            // the arena is no longer read (it then frees all but the status
            // page): nothing of the plan is touched after this.
            sys::close(efd);
            supervise(watch, pid, listener)
        }
        Err(e) => fail(efd, Stage::ForkJob, e, 0),
    }
}

/// A cell made ahead, fully built: tells the host it is ready and waits
/// (blocked in `recvmsg`, for as long as it takes) for "go": one byte and
/// the job's three standard descriptors on the sync socket, its command
/// already in the plan's [`CommandSlot`](super::CommandSlot). Returns the
/// plan with the job's command and descriptors. End-of-file (the host
/// dropped the cell) ends init quietly.
fn wait_for_command<'a>(plan: &ChildPlan<'a>) -> ChildPlan<'a> {
    let efd = plan.error_write;
    progress(plan, Stage::WaitForHost, READY);
    if sys::write_all(efd, &encode_record(Stage::WaitForHost, Errno(0), READY)).is_err() {
        sys::exit(1);
    }
    let mut byte = [0u8; 1];
    let mut fds = [-1; sys::MAX_FDS];
    let stdio = match sys::recv_fds(plan.sync_read, &mut byte, &mut fds) {
        Ok((1, 3)) => [fds[0], fds[1], fds[2]],
        Ok((0, 0)) => sys::exit(1), // the host gave up on us
        Ok((_, n)) => {
            // Garbled, or no room for the descriptors (the rest were dropped).
            for &fd in fds.iter().take(n) {
                sys::close(fd);
            }
            fail(efd, Stage::WaitForHost, Errno(libc::EMFILE), READY)
        }
        Err(e) => fail(efd, Stage::WaitForHost, e, READY),
    };
    sys::close(plan.sync_read);
    // SAFETY: `ahead` points at the slot in the plan's shared arena; the
    // host wrote it before sending "go" (received above) and never again.
    let slot = unsafe { std::ptr::read_volatile(plan.ahead) };
    if slot.program.is_null() || slot.argv.is_null() || slot.envp.is_null() {
        fail(efd, Stage::WaitForHost, Errno(libc::EINVAL), READY);
    }
    let mut taken = *plan;
    // SAFETY: the host placed the program's path, and argc + 1 and envc + 1
    // pointers (the last NULL) to C strings, in the arena, which stays
    // mapped and unchanged until the job has executed.
    unsafe {
        taken.job.program = CStr::from_ptr(slot.program);
        taken.job.argv = std::slice::from_raw_parts(slot.argv, slot.argc.saturating_add(1));
        taken.job.envp = std::slice::from_raw_parts(slot.envp, slot.envc.saturating_add(1));
    }
    taken.job.stdio = stdio;
    taken
}

/// In a cell the host cloned itself (a fallback path), init is a copy of
/// the host: its `/proc/1/cmdline`, which anyone in the cell can read, would
/// show the host's arguments (its environment is out of the job's reach,
/// like the rest of init's memory: ptrace rules). Point both at a name in
/// the status page (`PR_SET_MM_MAP`: allowed without privilege, with
/// `CONFIG_CHECKPOINT_RESTORE`); where that fails, wipe the copies instead.
fn hide_host_args(status: *mut StatusPage) {
    // SAFETY: the status page is mapped for init's life.
    let Some((l, name, len)) = (unsafe { StatusPage::host_clone(status) }) else {
        return;
    };
    #[repr(C)]
    struct PrctlMmMap {
        start_code: u64,
        end_code: u64,
        start_data: u64,
        end_data: u64,
        start_brk: u64,
        brk: u64,
        start_stack: u64,
        arg_start: u64,
        arg_end: u64,
        env_start: u64,
        env_end: u64,
        auxv: u64,
        auxv_size: u32,
        exe_fd: u32,
    }
    const PR_SET_MM: c_int = 35;
    const PR_SET_MM_MAP: c_long = 14;
    // SAFETY: brk(0) changes nothing and returns the current break.
    let brk = unsafe { libc::syscall(libc::SYS_brk, 0usize) } as u64;
    let map = PrctlMmMap {
        start_code: l.start_code,
        end_code: l.end_code,
        start_data: l.start_data,
        end_data: l.end_data,
        start_brk: l.start_brk,
        brk: brk.max(l.start_brk),
        start_stack: l.start_stack,
        arg_start: name,
        arg_end: name + len,
        env_start: name + len,
        env_end: name + len,
        auxv: 0,
        auxv_size: 0,
        exe_fd: u32::MAX,
    };
    let set = sys::prctl(
        PR_SET_MM,
        PR_SET_MM_MAP,
        &map as *const PrctlMmMap as c_long,
        std::mem::size_of::<PrctlMmMap>() as c_long,
        0,
    );
    if set.is_err() {
        for (start, end) in [(l.arg_start, l.arg_end), (l.env_start, l.env_end)] {
            let mut a = start;
            while a < end {
                // SAFETY: the host's argument and environment strings, in
                // this process's private copy of its memory.
                unsafe { std::ptr::write_volatile(a as *mut u8, 0) };
                a += 1;
            }
        }
    }
}

/// Starts the job the way posix_spawn does: `CLONE_VM | CLONE_VFORK` on its own
/// stack. Init is suspended until the job has executed (or failed), so sharing
/// its memory is safe, and nothing of init's address space (a copy of the
/// host's) is copied for the job only to be thrown away by `execve`.
fn spawn_job(plan: &ChildPlan<'_>) -> sys::SysResult<c_int> {
    extern "C" fn entry(arg: *mut libc::c_void) -> c_int {
        // SAFETY: arg is the &ChildPlan passed below, alive while init is suspended.
        let plan = unsafe { &*(arg as *const ChildPlan<'_>) };
        // SAFETY: we are the job process, running on the plan's job stack.
        unsafe { job_main(plan) }
    }
    // The stack grows down from the end of its (16-byte aligned) area.
    let top = plan.job.stack.wrapping_add(plan.job.stack_len) as *mut libc::c_void;
    // SAFETY: glibc's clone() is a thin assembly wrapper (no locks, no
    // allocation); `top` is the end of a live, exclusively used buffer, and
    // CLONE_VFORK keeps init (and so the plan) untouched until the job execs.
    let pid = unsafe {
        libc::clone(
            entry,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            plan as *const ChildPlan<'_> as *mut libc::c_void,
        )
    };
    if pid < 0 {
        Err(Errno::last_raw())
    } else {
        Ok(pid)
    }
}

/// Runs one step of building the root. Paths inside the new root are
/// resolved without following symlinks (see `newroot.rs`); the step acts on
/// what was found, so nothing can move it in between.
fn run_op(op: &PlacedOp<'_>, root: &mut NewRoot<'_>) -> sys::SysResult {
    const CREATE: c_int =
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    match op {
        Op::Mkdir { path } => {
            let at = root.parent(path)?;
            match sys::mkdirat(at.dir(), at.name, 0o755) {
                // An existing entry must be a directory, not a symlink to one.
                Err(Errno(libc::EEXIST)) => match sys::file_type_at(at.dir(), at.name)? {
                    libc::S_IFDIR => Ok(()),
                    libc::S_IFLNK => Err(Errno(libc::ELOOP)),
                    _ => Err(Errno(libc::ENOTDIR)),
                },
                r => r,
            }
        }
        Op::Touch { path } => {
            let at = root.parent(path)?;
            match sys::openat(at.dir(), at.name, CREATE, 0o644) {
                Ok(fd) => {
                    sys::close(fd);
                    Ok(())
                }
                // Whatever it is, the mount onto it resolves it again.
                Err(Errno(libc::EEXIST)) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Op::Mount {
            fstype,
            target,
            flags,
            data,
        } => on_path(root, target, |t| {
            sys::mount(Some(fstype), t, Some(fstype), *flags, *data)
        }),
        Op::Attach { fd, target } => match root.place(target)? {
            Place::Inside(t) => sys::move_mount_onto(*fd, t.raw()),
            Place::Root(p) | Place::Host(p) => {
                let r = sys::move_mount_fd(*fd, p);
                root.remounted();
                r
            }
        },
        Op::Bind { source, target } => {
            let source = root.place(source)?;
            let mut buf = [0u8; 32];
            let source = match &source {
                Place::Inside(s) => proc_fd_path(s.raw(), &mut buf)?,
                Place::Root(p) | Place::Host(p) => p,
            };
            on_path(root, target, |t| {
                sys::mount(Some(source), t, None, MS_BIND | MS_REC, None)
            })
        }
        Op::SetAttr {
            target,
            set,
            recursive,
            fallback,
        } => {
            let attr = sys::MountAttr {
                attr_set: *set,
                ..Default::default()
            };
            let flags = if *recursive { AT_RECURSIVE } else { 0 };
            let target = root.place(target)?;
            let r = match &target {
                Place::Inside(t) => {
                    sys::mount_setattr(t.raw(), c"", flags | libc::AT_EMPTY_PATH as u32, &attr)
                }
                Place::Root(p) | Place::Host(p) => {
                    sys::mount_setattr(libc::AT_FDCWD, p, flags, &attr)
                }
            };
            match r {
                Err(Errno(libc::ENOSYS)) => {
                    let mut buf = [0u8; 32];
                    let t = match &target {
                        Place::Inside(t) => proc_fd_path(t.raw(), &mut buf)?,
                        Place::Root(p) | Place::Host(p) => p,
                    };
                    sys::mount(None, t, None, MS_REMOUNT | MS_BIND | *fallback, None)
                }
                r => r,
            }
        }
        Op::Symlink { value, link } => {
            let at = root.parent(link)?;
            sys::symlinkat(value, at.dir(), at.name)
        }
        Op::Sysctl { path, value, .. } => {
            if let Ok(at) = root.parent(path) {
                let flags = libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW;
                if let Ok(fd) = sys::openat(at.dir(), at.name, flags, 0) {
                    let _ = sys::write_all(fd, value);
                    sys::close(fd);
                }
            }
            Ok(())
        }
        Op::WriteFile { path, data, mode } => {
            let at = root.parent(path)?;
            let fd = sys::openat(at.dir(), at.name, CREATE, *mode)?;
            let r = sys::write_all(fd, data);
            sys::close(fd);
            r
        }
    }
}

/// Runs `f` on a path that leads to exactly what `target` names: the
/// descriptor's `/proc/self/fd` entry inside the new root, the name itself
/// for the root (which is then reopened) or a host path.
fn on_path(
    root: &mut NewRoot<'_>,
    target: &CStr,
    f: impl FnOnce(&CStr) -> sys::SysResult,
) -> sys::SysResult {
    match root.place(target)? {
        Place::Inside(t) => {
            let mut buf = [0u8; 32];
            f(proc_fd_path(t.raw(), &mut buf)?)
        }
        Place::Root(p) => {
            let r = f(p);
            root.remounted();
            r
        }
        Place::Host(p) => f(p),
    }
}

/// Closes every descriptor except `keep` (sorted, unique).
pub(crate) fn close_inherited(keep: &[c_int]) -> sys::SysResult {
    let mut next: u32 = 0;
    for &fd in keep {
        let fd = fd as u32;
        if fd > next {
            close_span(next, fd - 1)?;
        }
        next = fd.saturating_add(1);
    }
    close_span(next, u32::MAX)
}

fn close_span(first: u32, last: u32) -> sys::SysResult {
    match sys::close_range(first, last, 0) {
        Err(Errno(libc::ENOSYS)) => {
            // Before Linux 5.9: close one by one up to a sane bound.
            let end = last.min(65_535);
            let mut fd = first;
            while fd <= end {
                sys::close(fd as c_int);
                fd += 1;
            }
            Ok(())
        }
        r => r,
    }
}

pub(crate) fn loopback_up() -> sys::SysResult {
    let sock = sys::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name[0] = b'l' as libc::c_char;
    req.ifr_name[1] = b'o' as libc::c_char;
    let r = sys::ioctl(sock, libc::SIOCGIFFLAGS as c_long, &mut req).and_then(|_| {
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        }
        sys::ioctl(sock, libc::SIOCSIFFLAGS as c_long, &mut req)
    });
    sys::close(sock);
    r
}

/// What init watches once the job runs: copied out of the plan's arena.
struct Watch {
    lifeline: c_int,
    status: *mut StatusPage,
    graveyard: c_int,
}

/// Init's life after the fork: reap everything, report the job's end, exit.
/// Exiting as PID 1 makes the kernel kill whatever is left in the cell.
fn supervise(watch: Watch, job: c_int, mut listener: c_int) -> ! {
    // SIGCHLD: reap. SIGTERM (a graceful stop from the host): pass it on to
    // every process of the cell, with SIGCONT so stopped ones can act on it.
    // SIGUSR1 (the host ends the job): SIGKILL every process of the cell but
    // init, which then reaps the job and reports its rusage, so a killed
    // job's CPU time is its own (killed with init, the job would be reaped by
    // the kernel and its accounting lost).
    let mask: sys::KernelSigset =
        1 << (libc::SIGCHLD - 1) | 1 << (libc::SIGTERM - 1) | 1 << (libc::SIGUSR1 - 1);
    // Every signal is still blocked (the parent blocked them around the clone).
    let sfd = sys::signalfd(mask, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK).unwrap_or(-1);
    let mut status: c_int = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        loop {
            let opts = if sfd >= 0 { libc::WNOHANG } else { 0 } | libc::__WALL;
            match sys::wait4(-1, &mut status, opts, &mut usage) {
                Ok(0) => break,
                Ok(pid) if pid == job => {
                    // SAFETY: the shared status page, mapped by the parent.
                    unsafe { StatusPage::record_exit(watch.status, status, &usage) };
                    bury(watch.graveyard);
                    sys::exit(0);
                }
                Ok(_) => {}
                Err(Errno(libc::EINTR)) => {}
                Err(_) => sys::exit(1),
            }
        }
        let mut fds = [
            libc::pollfd {
                fd: sfd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: watch.lifeline,
                events: libc::POLLIN,
                revents: 0,
            },
            // poll ignores a negative descriptor.
            libc::pollfd {
                fd: listener,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let _ = sys::poll(&mut fds, -1);
        if fds[1].revents != 0 {
            // The host process is gone: take the whole cell with us.
            sys::exit(1);
        }
        if fds[2].revents & libc::POLLIN != 0 {
            // A call the filter denies in kill mode: name it, end the job.
            let mut notif = sys::SeccompNotif::default();
            if sys::seccomp_notif_recv(listener, &mut notif).is_ok() {
                // SAFETY: the shared status page, mapped by the parent.
                unsafe { StatusPage::record_bad_syscall(watch.status, notif.nr, notif.arch) };
                let _ = sys::kill(-1, libc::SIGKILL);
            }
        } else if fds[2].revents != 0 {
            // Every filtered process is gone.
            sys::close(listener);
            listener = -1;
        }
        // Drain the signalfd: records of 128 bytes, the signal number first.
        let mut buf = [0u8; 1024];
        while let Ok(n) = sys::read(sfd, &mut buf) {
            if n == 0 {
                break;
            }
            let mut off = 0;
            while off + SIGINFO_LEN <= n {
                let signo = buf
                    .get(off..off + 4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_ne_bytes);
                if signo == libc::SIGTERM as u32 {
                    // As PID 1, kill(-1) reaches every process of the cell but init.
                    let _ = sys::kill(-1, libc::SIGTERM);
                    let _ = sys::kill(-1, libc::SIGCONT);
                } else if signo == libc::SIGUSR1 as u32 {
                    let _ = sys::kill(-1, libc::SIGKILL);
                }
                off += SIGINFO_LEN;
            }
        }
    }
}

/// Init's last act once the job has exited: hand its mount namespace to the
/// host. Raw syscalls only (see `spawn/graveyard.rs`); failure is fine.
fn bury(cells_end: c_int) {
    if cells_end < 0 {
        return;
    }
    // The cell's own /proc: the new root is in place by now.
    if let Ok(ns) = sys::open(c"/proc/self/ns/mnt", libc::O_RDONLY | libc::O_CLOEXEC, 0) {
        let _ = sys::send_fd(cells_end, ns);
        sys::close(ns);
    }
}

/// Size of `struct signalfd_siginfo`.
const SIGINFO_LEN: usize = 128;
