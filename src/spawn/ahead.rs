//! Cells made ahead: a cell cloned, released and fully built (namespaces,
//! root, cgroup, init) before its job is known. Its init waits in
//! `recvmsg` on the sync socket (see `cell/init.rs`, `wait_for_command`);
//! taking it writes the command into the cell's arena and sends "go" with
//! the job's three standard descriptors, and the rest is a spawn's: the
//! error pipe's end-of-file says the job has executed, a record which
//! stage failed.
//!
//! A cell made ahead serves one job and is never used again; one never
//! taken is killed when dropped, like any cell whose spawn failed.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use crate::cgroup::CgroupJoin;
use crate::error::{Errno, Error, Result, Stage};
use crate::sandbox::{Command, Sandbox};
use crate::spawn::cell::{self, READY};
use crate::spawn::report::record_error;
use crate::spawn::{plan, prep, spawner, Deadline, JobStdio, Spawned, Started};
use crate::sys;

/// Room a cell made ahead keeps for its command's program path, arguments
/// and environment (with their pointers). A larger command gets a fresh
/// cell. Pages of the arena are used only as they are written: the room
/// costs address space, not memory.
pub(crate) const COMMAND_ROOM: usize = 1 << 20;

/// A cell made ahead, waiting for its command.
pub(crate) struct Made {
    cell: Started,
    planner: plan::Planner,
    /// Its init was set to the lowest priority while it waits (see
    /// [`Made::new`]): "go" gives it the spawning thread's.
    reniced: bool,
}

/// Why a cell made ahead did not run its job.
pub(crate) enum NotRun {
    /// The cell cannot take this command as a fresh one would (too large
    /// for its room): it is handed back unused.
    Unfit(Box<Made>),
    /// The command's standard streams could not be opened (its stdin
    /// file, a pipe under EMFILE): the spawn fails with this error, and the
    /// cell, which saw nothing of it, is handed back.
    Refused(Box<Made>, Error),
    /// The cell died before it was taken (someone killed its init): a
    /// fresh cell must run the job.
    Dead,
    /// The job failed as a fresh cell's would (a stage's error).
    Failed(Error),
}

impl Made {
    /// Makes a cell for `sandbox` in `cgroup` and waits (within the
    /// sandbox's setup timeout) until it is ready.
    pub(crate) fn new(sandbox: &Sandbox, cgroup: Option<&dyn CgroupJoin>) -> Result<Made> {
        if !sandbox.faults.clone_from_host {
            spawner::start_early();
        }
        let planning = Deadline::after(sandbox.setup_timeout);
        let (bp, planner) = plan::build_ahead(sandbox, &planning)?;
        // Made in the background: it takes from the network namespaces
        // ready, and asks for no refill of them.
        let mut cell = super::start_cell(sandbox, bp, None, cgroup, prep::Demand::Cold)?;
        // The cell builds its root at the lowest priority: it is work done
        // ahead. Only where the priority can be raised again at "go"
        // (CAP_SYS_NICE: root hosts), or the job would keep it.
        let root = rustix::process::geteuid().is_root();
        let reniced = root && set_priority(cell.child.as_ref().map_or(0, |c| c.pid), 19);
        match cell.next_record()? {
            Some(rec) if is_ready(&rec) => Ok(Made {
                cell,
                planner,
                reniced,
            }),
            Some(rec) => {
                let err = record_error(&cell.bp, &cell.joins, &rec);
                Err(cell.abort(err))
            }
            None => {
                cell.kill();
                Err(Error::SetupDied {
                    status: "init ended before its cell was ready".into(),
                })
            }
        }
    }

    /// Whether the cell's init still lives (nobody killed it meanwhile).
    pub(crate) fn alive(&self) -> bool {
        let Some(child) = &self.cell.child else {
            return false;
        };
        let mut fds = [libc::pollfd {
            fd: child.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // A pidfd reads as ready once its process has exited.
        matches!(sys::poll(&mut fds, 0), Ok(0))
    }

    /// Plans `command` for this cell: the checks and errors of a fresh spawn.
    pub(crate) fn plan(&self, sandbox: &Sandbox, command: &Command) -> Result<plan::JobCommand> {
        self.planner.command(sandbox, command)
    }

    /// Runs `job` (planned by [`Made::plan`] from `command`) in this cell:
    /// writes it into the cell's arena, sends "go" with the job's
    /// descriptors, and waits (within the setup timeout, counted from now)
    /// until it has executed. Wall time counts from "go".
    pub(crate) fn go(
        self,
        sandbox: &Sandbox,
        command: &Command,
        job: &plan::JobCommand,
    ) -> std::result::Result<Spawned, NotRun> {
        let mut cell = self.cell;
        // Before anything reaches the cell: a stdin file that cannot be
        // opened is refused as a fresh spawn would refuse it.
        let stdio = match JobStdio::open(command, &cell.bp.ids) {
            Ok(stdio) => stdio,
            Err(e) => return Err(NotRun::Refused(Box::new(Made { cell, ..self }), e)),
        };
        if !cell.write_command(job) {
            return Err(NotRun::Unfit(Box::new(Made { cell, ..self })));
        }
        if self.reniced {
            // The job runs at the priority of the thread that spawns it,
            // as in a cell that thread cloned itself.
            let tid = Some(rustix::thread::gettid());
            let nice = rustix::process::getpriority_process(tid).unwrap_or(0);
            if !set_priority(cell.child.as_ref().map_or(0, |c| c.pid), nice) {
                cell.kill();
                return Err(NotRun::Dead);
            }
        }
        let sync = cell
            .sync_write
            .take()
            .expect("a cell made ahead keeps its sync socket");
        cell.deadline = Deadline::after(sandbox.setup_timeout);
        cell.started = Instant::now();
        let fds: [RawFd; 3] = stdio.cell();
        if sys::send_fds(sync.as_raw_fd(), &[1], &fds).is_err() {
            // EPIPE: init is gone.
            cell.kill();
            return Err(NotRun::Dead);
        }
        drop(sync);
        let (stdin, stdout, stderr) = stdio.into_parent_ends();
        let started = cell.started;
        match cell.wait_for_exec() {
            Ok((child, status, plan_pages)) => Ok(Spawned {
                pid: child.pid,
                pidfd: Arc::new(child.pidfd),
                stdout,
                stderr,
                stdin,
                status,
                plan_pages: Some(plan_pages),
                started,
            }),
            // Init died before it forked the job: nothing of the job ran.
            Err(Error::SetupDied { .. }) => Err(NotRun::Dead),
            Err(e) => Err(NotRun::Failed(e)),
        }
    }
}

/// Sets the nice value of process `pid` (only the cell's init, by then the
/// only process in its cell); true if it was set.
fn set_priority(pid: i32, nice: i32) -> bool {
    rustix::process::Pid::from_raw(pid)
        .is_some_and(|p| rustix::process::setpriority_process(Some(p), nice).is_ok())
}

/// Whether `rec` is a cell's "ready" record rather than a failure's.
fn is_ready(rec: &[u8; cell::RECORD_LEN]) -> bool {
    cell::decode_record(rec) == (Stage::WaitForHost as u32, Errno(0).0, READY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_ready_record_reads_as_ready() {
        let ready = cell::encode_record(Stage::WaitForHost, Errno(0), READY);
        assert!(is_ready(&ready));
        for (stage, errno, step) in [
            (Stage::WaitForHost, libc::EPIPE, READY),
            (Stage::WaitForHost, 0, 0),
            (Stage::Exec, 0, READY),
        ] {
            assert!(!is_ready(&cell::encode_record(stage, Errno(errno), step)));
        }
    }
}
