//! Turning a `Sandbox` + `Command` into a running process.
//!
//! 1. `plan` validates everything and prepares plain data (no input error can
//!    surface after this point);
//! 2. `clone` creates the cell's init in new namespaces;
//! 3. the parent writes the id maps (and joins cgroups the clone could not),
//!    releases the child, and waits on the error pipe: end-of-file means the
//!    job has executed; a record means a stage failed;
//! 4. `child` is init's side: build the root, `pivot_root`, fork the job, reap.

pub(crate) mod ahead;
mod arena;
pub(crate) mod cell;
mod clone;
pub(crate) mod graveyard;
pub(crate) mod hostpath;
mod hostwatch;
pub(crate) mod idmap;
pub(crate) mod idmount;
pub(crate) mod layout;
mod netns;
mod place;
pub(crate) mod plan;
pub(crate) mod prep;
mod report;
mod retry;
mod root;
mod skeleton;
pub(crate) mod spawner;
pub(crate) mod status;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libc::c_int;

use crate::cgroup::CgroupJoin;
use crate::error::{Errno, Error, Result, Stage};
use crate::sandbox::{Command, Output, Sandbox, Stdin};
use crate::sys;
use arena::Arena;
use report::{early_record, record_error, stage_detail, wait_record};
use status::StatusMap;

/// Checks a sandbox and command as `spawn` would, without spawning.
pub(crate) fn validate(sandbox: &Sandbox, command: &Command) -> Result<()> {
    plan::validate(sandbox, command)
}

/// Descriptors the library keeps on purpose (warm caches, the spawner's),
/// after letting them settle.
pub(crate) fn cached_descriptors() -> Vec<RawFd> {
    let mut fds = prep::settle();
    fds.extend(spawner::settle());
    fds.extend(graveyard::settle());
    fds.extend(crate::cgroup::cached_descriptors());
    fds.extend(hostwatch::descriptor());
    fds
}

/// Notes two spawns' demand, as a program that spawns again makes: the
/// caches start to fill (see `prep::Demand`).
pub(crate) fn want_work_ahead() {
    prep::demand();
    prep::demand();
}

/// The spawner's process id, if one runs (see `spawner.rs`).
pub(crate) fn spawner_pid() -> Option<i32> {
    spawner::pid()
}

/// How the spawner stands (see `spawner::Status`).
pub(crate) fn spawner_status() -> spawner::Status {
    spawner::status()
}

/// When a spawn's setup must be over (see `Sandbox::setup_timeout`).
pub(crate) struct Deadline {
    pub at: Instant,
    pub timeout: Duration,
}

impl Deadline {
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + timeout,
            timeout,
        }
    }

    /// The error of a setup that was still at `stage` when the time was up.
    pub(crate) fn error(&self, stage: Stage, detail: String) -> Error {
        Error::SetupTimeout {
            stage,
            detail,
            timeout: self.timeout,
        }
    }
}

/// The error of a failed `clone3` (or `clone`), with a pointer to the
/// host check when the host is the likely cause.
pub(crate) fn clone_error(errno: Errno) -> Error {
    Error::Spawn {
        op: "clone3",
        path: None,
        errno,
        hint: matches!(
            errno.0,
            libc::EPERM | libc::ENOSPC | libc::EUSERS | libc::EINVAL
        )
        .then_some(crate::error::HINT_NAMESPACES),
    }
}

/// A job whose program has been executed.
pub(crate) struct Spawned {
    /// Host pid of the cell's init.
    pub pid: i32,
    pub pidfd: Arc<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// The write end of stdin and the bytes to feed it.
    pub stdin: Option<(OwnedFd, Arc<[u8]>)>,
    pub status: StatusMap,
    /// The plan's memory, to be freed off the spawn's path (see `PlanPages`).
    pub plan_pages: Option<arena::PlanPages>,
    pub started: Instant,
}

/// Spawns `command` in a cell described by `sandbox`. `demand`: whether
/// this spawn asks for work done ahead (see [`prep::Demand`]).
pub(crate) fn spawn(
    sandbox: &Sandbox,
    command: &Command,
    cgroup: Option<&dyn CgroupJoin>,
    demand: prep::Demand,
) -> Result<Spawned> {
    // The spawner starts while this thread plans (a first spawn waits for
    // it otherwise).
    if !sandbox.faults.clone_from_host {
        spawner::start_early();
    }
    // Planning is this thread's own work, however long (thousands of
    // variables): only its waits for work done ahead are bounded.
    let planning = Deadline::after(sandbox.setup_timeout);
    let bp = plan::build(sandbox, command, &planning, demand)?;
    let stdio = JobStdio::open(command, &bp.ids)?;
    let cell = start_cell(sandbox, bp, Some(stdio.cell()), cgroup, demand)?;
    let (stdin, stdout, stderr) = stdio.into_parent_ends();
    let started = cell.started;
    let (child, status, plan_pages) = cell.wait_for_exec()?;
    Ok(Spawned {
        pid: child.pid,
        pidfd: Arc::new(child.pidfd),
        stdout,
        stderr,
        stdin,
        status,
        plan_pages: Some(plan_pages),
        started,
    })
}

/// The job's standard descriptors: the ends the cell gets, and ours.
pub(crate) struct JobStdio {
    cell: [Src; 3],
    stdin: Option<(OwnedFd, Arc<[u8]>)>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

impl JobStdio {
    /// Opens what `command` asks for (pipes, a stdin file) for a cell of `ids`.
    pub(crate) fn open(command: &Command, ids: &idmap::IdPlan) -> Result<JobStdio> {
        // The parent's ends are close-on-exec so no other program the host
        // starts inherits them; the cell's init closes whatever it does not need.
        let devnull = devnull()?;
        let (stdin_src, stdin) = match &command.stdin {
            Stdin::Null => (Src::Borrowed(devnull), None),
            Stdin::Bytes(bytes) => {
                let (r, w) = pipe("stdin")?;
                (Src::Owned(r), Some((w, bytes.clone())))
            }
            Stdin::File(path) => {
                let untrusted = hostpath::Untrusted::for_range(ids.cell_range());
                let f = hostpath::open_stdin_file(path, &untrusted)
                    .map_err(|r| hostpath::refused("stdin file", path, r))?;
                (Src::Owned(f), None)
            }
        };
        let (stdout_src, stdout) = output(command.stdout, 1, devnull)?;
        let (stderr_src, stderr) = output(command.stderr, 2, devnull)?;
        Ok(JobStdio {
            cell: [stdin_src, stdout_src, stderr_src],
            stdin,
            stdout,
            stderr,
        })
    }

    /// The descriptors the cell gets as the job's 0, 1 and 2.
    pub(crate) fn cell(&self) -> [RawFd; 3] {
        [self.cell[0].raw(), self.cell[1].raw(), self.cell[2].raw()]
    }

    /// Closes the cell's ends (it holds its own copies now: ours would keep
    /// pipes open forever) and returns ours.
    #[allow(clippy::type_complexity)]
    pub(crate) fn into_parent_ends(
        self,
    ) -> (
        Option<(OwnedFd, Arc<[u8]>)>,
        Option<OwnedFd>,
        Option<OwnedFd>,
    ) {
        (self.stdin, self.stdout, self.stderr)
    }
}

/// A cell cloned and released, its setup under way.
pub(crate) struct Started {
    child: Option<clone::Child>,
    /// The plan, for the errors a failure record names (its trees are closed).
    bp: plan::Blueprint,
    joins: Vec<PathBuf>,
    arena: Option<Arena>,
    error_read: OwnedFd,
    /// A cell made ahead: the socket "go" goes through, and its command's slot.
    sync_write: Option<OwnedFd>,
    slot: *mut cell::CommandSlot,
    deadline: Deadline,
    setting_up: Option<prep::SettingUp>,
    /// When the cell was cloned (for a cell made ahead: when it got "go").
    pub started: Instant,
}

// SAFETY: the arena (a mapping) and `slot` (a pointer into it) are this
// value's alone: nothing else refers to them in this process, so the value
// may move to another thread; only the thread that holds it writes them.
unsafe impl Send for Started {}

impl Started {
    /// The cell's next record on the error pipe (`None`: end-of-file) by
    /// the setup deadline; past it, the cell is killed and the error names
    /// the stage it was at.
    fn next_record(&mut self) -> Result<Option<[u8; cell::RECORD_LEN]>> {
        let rec = match wait_record(&self.error_read, self.deadline.at) {
            Ok(rec) => rec,
            Err(()) => {
                let err = self.timed_out();
                return Err(self.abort(err));
            }
        };
        drop(self.setting_up.take());
        Ok(rec)
    }

    /// Kills and reaps the cell, and returns `err`.
    fn abort(&mut self, err: Error) -> Error {
        self.kill();
        err
    }

    /// Kills and reaps the cell, if this still holds it.
    fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = sys::host::pidfd_send_signal(child.pidfd.as_raw_fd(), libc::SIGKILL);
            let _ = sys::host::waitid_pidfd(child.pidfd.as_raw_fd(), false);
        }
    }

    /// The error of a setup still under way at the deadline: the stage it is at.
    fn timed_out(&self) -> Error {
        let arena = self.arena.as_ref().expect("the arena lives until the exec");
        // SAFETY: the arena's status page, mapped while `arena` lives.
        let (stage, step) = unsafe { status::StatusPage::progress(arena.status()) };
        let stage = Stage::from_u32(stage).unwrap_or(Stage::Clone);
        let detail = stage_detail(&self.bp, &self.joins, stage, step);
        self.deadline.error(stage, detail)
    }

    /// Writes the command of a cell made ahead into its slot (see
    /// `ahead.rs`). False if it does not fit the room left in its arena.
    fn write_command(&mut self, job: &plan::JobCommand) -> bool {
        let Some(arena) = self.arena.as_ref() else {
            return false;
        };
        if self.slot.is_null() || place::command_footprint(job) > arena.room() {
            return false;
        }
        let Some(slot) = place::place_command(arena, job) else {
            return false;
        };
        // SAFETY: `self.slot` is the command slot in this cell's arena,
        // which lives as long as `arena`; the cell's init reads it only
        // after "go", which is sent after this write.
        unsafe { std::ptr::write_volatile(self.slot, slot) };
        true
    }

    /// Waits until the job has executed (end-of-file on the error pipe)
    /// or a stage failed (its record), within the setup deadline.
    fn wait_for_exec(mut self) -> Result<(clone::Child, status::StatusMap, arena::PlanPages)> {
        // End-of-file: the job has executed (the pipe is close-on-exec). A
        // record: a stage failed. Neither by the deadline: the cell is stuck.
        if let Some(rec) = self.next_record()? {
            let err = record_error(&self.bp, &self.joins, &rec);
            return Err(self.abort(err));
        }
        // The cell no longer reads its plan: keep only the status page. The
        // plan's pages go with whoever drops `plan_pages` (the reactor).
        let arena = self.arena.take().expect("the arena lives until the exec");
        let (status, plan_pages) = arena.into_status();
        let child = self.child.take().expect("the cell lives until the exec");
        if !status.read().forked {
            // Init died before forking without a word (killed, or out of memory).
            let how = match sys::host::waitid_pidfd(child.pidfd.as_raw_fd(), false) {
                // SAFETY: si_status of a filled siginfo.
                Ok(Some((info, _))) => format!("code {} status {}", info.si_code, unsafe {
                    info.si_status()
                }),
                _ => "unknown".into(),
            };
            return Err(Error::SetupDied { status: how });
        }
        Ok((child, status, plan_pages))
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        // A cell that never got as far as its job (an error, or a cell made
        // ahead that was never taken) dies with this.
        self.kill();
    }
}

/// Clones a cell for `bp` and releases it. `stdio`: the job's descriptors,
/// or `None` for a cell made ahead, which gets them with "go" (see
/// `ahead.rs`).
pub(crate) fn start_cell(
    sandbox: &Sandbox,
    bp: plan::Blueprint,
    stdio: Option<[RawFd; 3]>,
    cgroup: Option<&dyn CgroupJoin>,
    demand: prep::Demand,
) -> Result<Started> {
    let ahead = stdio.is_none();
    let stdio = stdio.unwrap_or([-1; 3]);
    // A socket pair, not a pipe: releasing a cell that died first must be
    // EPIPE, not SIGPIPE for a host that has not ignored it.
    let (sync_read, sync_write) =
        socket_pair(rustix::net::SocketType::STREAM, "create sync socket pair")?;
    // Kill-mode seccomp: the job hands its listener to init through this pair.
    let report = match bp.seccomp_report {
        Some(_) => Some(socket_pair(
            rustix::net::SocketType::DGRAM,
            "create the seccomp report socket pair",
        )?),
        None => None,
    };
    let (report_job, report_init) = report
        .as_ref()
        .map_or((-1, -1), |(a, b)| (a.as_raw_fd(), b.as_raw_fd()));
    let (error_read, error_write) = pipe("error")?;
    let lifeline = lifeline()?;
    let graveyard = graveyard::cell_end();

    let mut keep: Vec<c_int> = stdio.iter().copied().filter(|&fd| fd >= 0).collect();
    keep.extend([sync_read.as_raw_fd(), error_write.as_raw_fd(), lifeline]);
    keep.extend((graveyard >= 0).then_some(graveyard));
    keep.extend([report_job, report_init].into_iter().filter(|&fd| fd >= 0));
    keep.extend(bp.trees.iter().map(AsRawFd::as_raw_fd));
    // cgroup v1: the cell moves itself into the job's cgroups (see CgroupJoin).
    let joins = cgroup.map(|c| c.self_join()).unwrap_or_default();
    let join_fds: Vec<c_int> = joins.iter().map(|(fd, _)| fd.as_raw_fd()).collect();
    keep.extend(&join_fds);
    keep.sort_unstable();
    keep.dedup();

    // Root hosts join a ready-made network namespace for the clone instead of
    // paying for a new one (see netns.rs); its loopback is already up.
    let new_net = bp.ns_flags & libc::CLONE_NEWNET as u64 != 0;
    let pooled_net = if new_net && bp.ids.become_root && !bp.own_netns {
        Some(prep::take_netns(demand)?)
    } else {
        None
    };
    let wiring = place::Wiring {
        keep: &keep,
        join_cgroups: &join_fds,
        stdio,
        sync_read: sync_read.as_raw_fd(),
        error_write: error_write.as_raw_fd(),
        report_job,
        report_init,
        lifeline_read: lifeline,
        graveyard,
        loopback: bp.loopback && pooled_net.is_none(),
        cap_last: plan::cap_last_cap(),
        max_fd: max_fd(),
        handlers_cleared: clone::clears_handlers(),
        stall: sandbox.faults.stall,
        ahead,
    };
    let arena_err = |errno| Error::Spawn {
        op: "map the plan's memory",
        path: None,
        errno,
        hint: None,
    };
    // A cell made ahead keeps room for its command (file pages are only
    // used as they are written: the room costs address space only).
    let room = if ahead { ahead::COMMAND_ROOM } else { 0 };
    let arena = Arena::new(place::footprint(&bp, keep.len()) + room).map_err(arena_err)?;
    let plan = place::place(&arena, &bp, &wiring).ok_or_else(|| arena_err(Errno(libc::ENOMEM)))?;
    let slot = plan.ahead;

    // Until the cell has built its root (end-of-file below), and no longer
    // than the setup timeout.
    let deadline = Deadline::after(sandbox.setup_timeout);
    let setting_up = prep::setting_up();
    let started = Instant::now();
    let clone_target = cgroup
        .and_then(|c| c.clone_target())
        .map(|fd| fd.as_raw_fd());
    let ns_flags = match pooled_net {
        Some(_) => bp.ns_flags & !(libc::CLONE_NEWNET as u64),
        None => bp.ns_flags,
    };
    let host_net = bp.ns_flags & libc::CLONE_NEWNET as u64 == 0;
    let pooled_fd = pooled_net.as_ref().map(|ns| ns.as_raw_fd());
    let host_mounts = bp.needs_host_mounts();
    // The spawner can release the cell itself (one hop less) unless we must
    // move it into its cgroup(s) first.
    let host_attaches = cgroup.is_some() && clone_target.is_none() && joins.is_empty();
    let release = (!host_attaches).then_some((sync_write.as_raw_fd(), &bp.ids));
    let by_spawner = match sandbox.faults.clone_from_host {
        true => None,
        false => spawner::clone_cell(
            ns_flags,
            clone_target,
            pooled_fd,
            host_net,
            host_mounts,
            release,
            &arena,
            plan,
            &deadline,
            sandbox.faults.spawner,
        ),
    };
    let cloned = match by_spawner {
        Some(cloned) => cloned,
        None => {
            // Cloned from here: the signals this process ignores now, and
            // where its arguments lie, for init to hide them.
            let layout = status::HostLayout::current()
                .map_err(|e| Error::io("read", "/proc/self/stat", e))?;
            // SAFETY: the arena's status page; no cell reads it yet.
            unsafe {
                status::StatusPage::set_ignored_signals(
                    arena.status(),
                    sys::host::ignored_signals(),
                );
                status::StatusPage::set_host_clone(arena.status(), layout, b"jobcell-init");
            };
            // SAFETY: init_main only makes raw syscalls on `plan`, which stays
            // mapped (unchanged) until the job has executed.
            let do_clone = || unsafe {
                clone::clone_into_as(ns_flags, clone_target, None, plan.ns_owner, || {
                    cell::init_main(plan)
                })
            };
            let not_released = spawner::Release::default();
            match &pooled_net {
                Some(ns) => netns::with_netns(ns, do_clone)?,
                None => do_clone(),
            }
            .map(|child| (child, not_released))
            .map_err(clone_error)
        }
    };
    drop(pooled_net);
    let (child, released) = cloned?;

    // The cell holds its own copies now; ours would keep pipes open forever.
    drop(sync_read);
    drop(report);
    drop(error_write);
    let joins: Vec<PathBuf> = joins.into_iter().map(|(_, dir)| dir).collect();
    let mut bp = bp;
    drop(std::mem::take(&mut bp.trees));
    let child_flags = child.flags;
    let child_pid = child.pid;
    let mut cell = Started {
        child: Some(child),
        bp,
        joins,
        arena: Some(arena),
        error_read,
        sync_write: None,
        slot,
        deadline,
        setting_up: Some(setting_up),
        started,
    };

    // A failure to place or release the cell: its own record, if it died first.
    let release_failed = |cell: &mut Started, err: Error| -> Error {
        match early_record(&cell.error_read) {
            Some(rec) => {
                let e = record_error(&cell.bp, &cell.joins, &rec);
                cell.abort(e)
            }
            None => cell.abort(err),
        }
    };

    let taken_over = released.step == spawner::Release::UNKNOWN;
    if released.step == spawner::Release::NOT_TRIED || taken_over {
        if let Some(cg) = cgroup {
            let placed = child_flags & clone::CLONE_INTO_CGROUP != 0 && clone_target.is_some();
            if !placed && cell.joins.is_empty() {
                if let Err(e) = cg.attach(child_pid) {
                    return Err(release_failed(&mut cell, e));
                }
            }
        }
        // A dead spawner may have written some maps (each can be written once).
        if let Err(e) = write_id_maps(child_pid, &cell.bp.ids, taken_over) {
            return Err(release_failed(&mut cell, e));
        }
        // Release the cell. Taken over, it may have been released already
        // and have read its byte: then the write fails, and whether the
        // cell lives is for the error pipe to say.
        if let Err(e) = sys::send_byte(sync_write.as_raw_fd()) {
            if !taken_over {
                return Err(release_failed(&mut cell, release_error(None, e)));
            }
        }
    } else if released.step != spawner::Release::DONE {
        // The spawner failed where we would have: the same error.
        let errno = Errno(released.errno);
        let map = |name: &str| Some(PathBuf::from(format!("/proc/{child_pid}/{name}")));
        let err = match released.step {
            spawner::Release::SETGROUPS => map_error("write setgroups", map("setgroups"), errno),
            spawner::Release::UID_MAP => map_error("write uid_map", map("uid_map"), errno),
            spawner::Release::GID_MAP => map_error("write gid_map", map("gid_map"), errno),
            _ => release_error(None, errno),
        };
        return Err(release_failed(&mut cell, err));
    }
    if ahead {
        cell.sync_write = Some(sync_write);
    }
    Ok(cell)
}

/// A descriptor handed to the child: ours to close, or a shared one.
enum Src {
    Owned(OwnedFd),
    Borrowed(RawFd),
}

impl Src {
    fn raw(&self) -> RawFd {
        match self {
            Src::Owned(fd) => fd.as_raw_fd(),
            Src::Borrowed(fd) => *fd,
        }
    }
}

fn output(mode: Output, own_fd: RawFd, devnull: RawFd) -> Result<(Src, Option<OwnedFd>)> {
    Ok(match mode {
        Output::Capture => {
            let (r, w) = pipe(if own_fd == 1 { "stdout" } else { "stderr" })?;
            (Src::Owned(w), Some(r))
        }
        // A closed host descriptor cannot be inherited: fall back to /dev/null.
        Output::Inherit
            if rustix::io::fcntl_getfd(
                // SAFETY: only queried, never closed, while borrowed.
                unsafe { BorrowedFd::borrow_raw(own_fd) },
            )
            .is_ok() =>
        {
            (Src::Borrowed(own_fd), None)
        }
        Output::Inherit | Output::Discard => (Src::Borrowed(devnull), None),
    })
}

/// A close-on-exec unix socket pair of type `ty`.
fn socket_pair(ty: rustix::net::SocketType, op: &'static str) -> Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        ty,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::Spawn {
        op,
        path: None,
        errno: e.into(),
        hint: None,
    })
}

fn pipe(what: &'static str) -> Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| Error::Spawn {
        op: match what {
            "stdin" => "create stdin pipe",
            "stdout" => "create stdout pipe",
            "stderr" => "create stderr pipe",
            "lifeline" => "create lifeline pipe",
            _ => "create error pipe",
        },
        path: None,
        errno: e.into(),
        hint: None,
    })
}

fn map_error(op: &'static str, path: Option<PathBuf>, errno: Errno) -> Error {
    Error::Spawn {
        op,
        path,
        errno,
        hint: None,
    }
}

fn release_error(path: Option<PathBuf>, errno: Errno) -> Error {
    map_error("release the cell", path, errno)
}

/// Writes the cell's id maps; with `missing_only`, only those not written
/// yet (a spawner that died may have written some; each can be written
/// once, and setgroups only before gid_map).
fn write_id_maps(pid: i32, ids: &idmap::IdPlan, missing_only: bool) -> Result<()> {
    let path = |name: &str| PathBuf::from(format!("/proc/{pid}/{name}"));
    let written =
        |name: &str| missing_only && std::fs::read(path(name)).is_ok_and(|v| !v.is_empty());
    let write = |name: &'static str, op: &'static str, value: &str| -> Result<()> {
        let path = path(name);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(value.as_bytes()))
            .map_err(|e| map_error(op, Some(path), Errno::from(&e)))
    };
    let gid_written = written("gid_map");
    if ids.deny_setgroups && !gid_written {
        write("setgroups", "write setgroups", "deny")?;
    }
    if !written("uid_map") {
        write("uid_map", "write uid_map", &ids.uid_map)?;
    }
    if !gid_written {
        write("gid_map", "write gid_map", &ids.gid_map)?;
    }
    Ok(())
}

/// One `/dev/null` for every job's null stdin and discarded output.
fn devnull() -> Result<RawFd> {
    static NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd.as_raw_fd());
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| Error::io("open", "/dev/null", e))?;
    Ok(NULL.get_or_init(|| f.into()).as_raw_fd())
}

/// The read end of a pipe whose write end only this process holds. Every
/// cell's init watches it: when the host process dies, however it dies, the
/// pipe reports hang-up and init exits, which kills the whole cell.
fn lifeline() -> Result<RawFd> {
    static LIFELINE: OnceLock<(OwnedFd, OwnedFd)> = OnceLock::new();
    if let Some((r, _)) = LIFELINE.get() {
        return Ok(r.as_raw_fd());
    }
    let p = pipe("lifeline")?;
    Ok(LIFELINE.get_or_init(|| p).0.as_raw_fd())
}

fn max_fd() -> c_int {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(65_536, |n| n.min(1 << 20) as c_int)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releasing_a_dead_cell_is_epipe_not_sigpipe() {
        let (a, b) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        drop(b);
        // In a child with SIGPIPE at its default, as a C host would have it.
        // SAFETY: the child only makes async-signal-safe calls, then _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: resets one disposition in this single-threaded child.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let ok = sys::send_byte(a.as_raw_fd()) == Err(Errno(libc::EPIPE));
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "status {status:#x}"
        );
    }
}
