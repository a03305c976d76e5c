//! The runtime: a reactor and what it needs to start jobs, and the default
//! one behind standalone [`Sandbox::spawn`], which is wired here, on top of
//! the description (`sandbox`), the mechanism (`spawn`, `cgroup`) and the
//! job, so that none of those knows the runtime.

use std::sync::{Arc, OnceLock};

use super::reactor::{Reactor, Registration};
use crate::cgroup;
use crate::error::Result;
use crate::job::log::Log;
use crate::job::{
    JobHandle, JobId, JobMeta, JobShared, JobState, Supervisor, UsageSource, CELL_INIT_PIDS,
    DEFAULT_MEMORY_BUDGET,
};
use crate::sandbox::{Command, Limits, Sandbox};
use crate::spawn;

impl Sandbox {
    /// Starts `command` in a new cell and returns at once, once the program has
    /// been executed. Every input is validated first; a failure inside the
    /// cell during setup becomes an [`Error::Setup`](crate::Error::Setup)
    /// naming the stage.
    ///
    /// Dropping the returned handle without waiting kills the job.
    ///
    /// ```no_run
    /// let job = jobcell::Sandbox::new().spawn(&jobcell::Command::new("true"))?;
    /// assert!(job.wait()?.success());
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn spawn(&self, command: &Command) -> Result<JobHandle> {
        default_runtime()?.spawn_standalone(self, command)
    }
}

/// A reactor plus what it needs to start jobs.
pub(crate) struct Runtime {
    pub(crate) reactor: Arc<Reactor>,
}

/// The runtime behind standalone `Sandbox::spawn`, started on first use.
/// Failing to start it (EMFILE, no thread to be had) is an error for that
/// spawn; the next one tries again.
pub(crate) fn default_runtime() -> Result<&'static Runtime> {
    static RT: OnceLock<Runtime> = OnceLock::new();
    static STARTING: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let _one = STARTING.lock();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = Runtime::new("jobcell-reactor").map_err(|e| crate::Error::Spawn {
        op: "start the jobcell reactor thread",
        path: None,
        errno: crate::Errno::from(&e),
        hint: None,
    })?;
    Ok(RT.get_or_init(|| rt))
}

impl Runtime {
    pub(crate) fn new(name: &str) -> std::io::Result<Runtime> {
        Ok(Runtime {
            reactor: Reactor::start(name)?,
        })
    }

    /// Spawns a job owned by its handle.
    pub(crate) fn spawn_standalone(
        &self,
        sandbox: &Sandbox,
        command: &Command,
    ) -> Result<JobHandle> {
        let job = JobShared::new(
            JobId::generate(),
            JobMeta::new(command, &sandbox.limits),
            Log::new(DEFAULT_MEMORY_BUDGET),
            None,
            JobState::Initializing,
        );
        self.start(&job, sandbox, command)?;
        Ok(JobHandle {
            shared: job,
            kill_on_drop: true,
        })
    }

    /// Spawns `command` for an existing job record and hands it to the reactor.
    pub(crate) fn start(
        &self,
        job: &Arc<JobShared>,
        sandbox: &Sandbox,
        command: &Command,
    ) -> Result<()> {
        let limits = &sandbox.limits;
        // Validated here already: a malformed limit must not leave a cgroup behind.
        limits.validate()?;
        stall::wait_for(&job.id);
        let resources = resources(limits);
        // A process's first spawn (or its first after an idle spell) takes
        // the direct path: nothing is made ahead for a next one that may
        // never come.
        let demand = spawn::prep::demand();
        let run_ahead = match demand {
            spawn::prep::Demand::Warm => spawn::prep::ahead,
            spawn::prep::Demand::Cold => spawn::prep::not_ahead,
        };
        let cg = if sandbox.accounting || limits.needs_cgroup() {
            cgroup::create_job(
                sandbox.cgroup_base.as_deref(),
                job.id.as_str(),
                &resources,
                sandbox.accounting,
                run_ahead,
            )?
            .map(Arc::new)
        } else {
            None
        };
        let spawned = match spawn::spawn(
            sandbox,
            command,
            cg.as_deref().map(|c| c as &dyn cgroup::CgroupJoin),
            demand,
        ) {
            Ok(s) => s,
            Err(e) => {
                if let Some(cg) = &cg {
                    cg.remove();
                }
                return Err(e);
            }
        };
        self.supervise(job, spawned, cg, limits);
        Ok(())
    }

    /// Hands a job whose program runs to the reactor.
    pub(crate) fn supervise(
        &self,
        job: &Arc<JobShared>,
        spawned: spawn::Spawned,
        cg: Option<Arc<cgroup::JobCgroup>>,
        limits: &Limits,
    ) {
        let pidfd = spawned.pidfd.clone();
        {
            let mut g = job.inner.lock();
            g.pid = Some(spawned.pid);
            g.pidfd = Some(pidfd.clone());
            g.started = Some(std::time::SystemTime::now());
            g.usage = cg.clone().map(|c| c as Arc<dyn UsageSource>);
            let supervisor: Arc<dyn Supervisor> = self.reactor.clone();
            g.supervisor = Some(Arc::downgrade(&supervisor));
        }
        job.set_state(JobState::Running);
        // A kill requested while the cell was being set up must not be lost.
        let pending = job.inner.lock().kill_reason;
        if let Some(reason) = pending {
            let _ = job.kill(reason);
        }
        let cpus = match limits.cpu_time {
            Some(_) => cgroup::max_cpus(&resources(limits), online_cpus()),
            None => 1,
        };
        self.reactor.register(Registration {
            job: job.clone(),
            pidfd,
            spawned,
            cgroup: cg,
            wall_time: limits.wall_time,
            cpu_time: limits.cpu_time,
            output_limit: limits.output_bytes,
            // Only the CPU-time timer needs it, and asking costs ~50 µs (it
            // reads the cgroup quota files): not for every job.
            cpus,
        });
    }
}

/// What of `limits` the job's cgroup enforces.
pub(crate) fn resources(limits: &Limits) -> cgroup::Resources {
    cgroup::Resources {
        memory: limits.memory,
        memory_swap: limits.memory_swap,
        cpu_percent: limits.cpu_percent,
        cpus: limits.cpus.clone(),
        // The cell's init shares the cgroup; the limit is the job's own.
        pids: limits.pids.map(|n| n + CELL_INIT_PIDS),
        io_read_bps: limits.io_read_bps,
        io_write_bps: limits.io_write_bps,
        io_read_iops: limits.io_read_iops,
        io_write_iops: limits.io_write_iops,
        io_devices: limits.io_devices.clone(),
        cpu_time: limits.cpu_time.is_some(),
    }
}

fn online_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// A test hook: a job's setup that stalls, as a slow bind source or a hung
/// network file system would make it (`__private::stall_setup`).
pub(crate) mod stall {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use parking_lot::Mutex;

    use crate::job::JobId;

    static ANY: AtomicBool = AtomicBool::new(false);
    static STALLS: Mutex<Option<HashMap<JobId, Duration>>> = Mutex::new(None);

    /// Makes the setup of `id` take `time` longer.
    pub(crate) fn set(id: &JobId, time: Duration) {
        STALLS
            .lock()
            .get_or_insert_with(HashMap::new)
            .insert(id.clone(), time);
        ANY.store(true, Ordering::SeqCst);
    }

    /// Called at the start of each setup; costs one atomic load unless a test set a stall.
    pub(crate) fn wait_for(id: &JobId) {
        if !ANY.load(Ordering::Relaxed) {
            return;
        }
        let stall = STALLS.lock().as_mut().and_then(|m| m.remove(id));
        if let Some(t) = stall {
            std::thread::sleep(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::Controller;
    use std::time::Duration;

    #[test]
    fn limits_reach_the_cgroup_with_their_names() {
        let l = Limits {
            memory: Some(64 << 20),
            cpus: Some("0".into()),
            io_write_bps: Some(1),
            cpu_time: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        assert_eq!(
            cgroup::required(&resources(&l)),
            vec![
                ("memory", Controller::Memory),
                ("cpus", Controller::Cpuset),
                ("io_write_bps", Controller::Io),
                ("cpu_time", Controller::CpuAcct),
            ]
        );
        assert!(cgroup::required(&resources(&Limits::default())).is_empty());
        let wall_only = Limits {
            wall_time: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        assert!(cgroup::required(&resources(&wall_only)).is_empty());
        for l in [Limits::conservative(), wall_only, l] {
            assert_eq!(resources(&l).needs_cgroup(), l.needs_cgroup());
        }
    }
}
