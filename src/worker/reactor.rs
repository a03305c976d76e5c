//! The reactor: one thread that supervises every job of a runtime with epoll.
//!
//! Per running job it watches the cell's pidfd and the stdout/stderr pipes
//! (and stdin while it is being fed); time limits live in one timer heap, not
//! in descriptors. No thread per job: a thousand jobs cost a thousand small
//! entries here, about three descriptors each.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustix::event::epoll;
use rustix::event::{eventfd, EventfdFlags};

use crate::cgroup::JobCgroup;
use crate::job::{
    Exit, JobShared, JobState, KillReason, Outcome, ResourceUsage, Stream, Supervisor, TimeLimit,
    Usage,
};
use crate::spawn::{graveyard, Spawned};
use crate::sys;

/// A job handed to the reactor once its program runs.
pub(crate) struct Registration {
    pub job: Arc<JobShared>,
    pub pidfd: Arc<OwnedFd>,
    pub spawned: Spawned,
    pub cgroup: Option<Arc<JobCgroup>>,
    pub wall_time: Option<Duration>,
    pub cpu_time: Option<Duration>,
    pub output_limit: Option<u64>,
    /// CPUs the job can use at most at once (bounds how fast CPU time can grow).
    pub cpus: u32,
}

/// What other threads ask of the reactor.
enum Msg {
    Register(Box<Registration>),
    /// End the job at this time if it is still running (the end of a stop's
    /// grace period); `hard`: SIGKILL its init (a kill's backstop).
    KillAt(Instant, Weak<JobShared>, bool),
    /// Exit the thread once no job is left.
    Shutdown,
    /// Panic, as a bug would (tests of what follows).
    #[cfg(test)]
    Panic,
}

pub(crate) struct Reactor {
    epoll: OwnedFd,
    waker: OwnedFd,
    /// The thread panicked: jobs handed over now end at once (see `abandon`).
    dead: std::sync::atomic::AtomicBool,
    inbox: Mutex<Vec<Msg>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

const KIND_PID: u64 = 0;
const KIND_STDOUT: u64 = 1;
const KIND_STDERR: u64 = 2;
const KIND_STDIN: u64 = 3;
const WAKER: u64 = u64::MAX;
const READ_CHUNK: usize = 64 * 1024;

fn token(slot: usize, gen: u32, kind: u64) -> u64 {
    ((slot as u64) << 32) | (((gen & 0x1fff_ffff) as u64) << 3) | kind
}

fn untoken(t: u64) -> (usize, u32, u64) {
    ((t >> 32) as usize, ((t >> 3) & 0x1fff_ffff) as u32, t & 7)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Wall,
    Cpu,
    CgroupRetry,
}

struct Entry {
    gen: u32,
    job: Arc<JobShared>,
    pidfd: Arc<OwnedFd>,
    spawned: Spawned,
    cgroup: Option<Arc<JobCgroup>>,
    output_limit: Option<u64>,
    written: u64,
    cpu_limit: Option<Duration>,
    cpus: u32,
    stdin_pos: usize,
    /// Set once the cell's init has been reaped: what waitid returned.
    exited: Option<(libc::siginfo_t, libc::rusage)>,
    ended_at: Option<Instant>,
    cgroup_retries: u32,
}

impl Reactor {
    /// Starts a reactor thread.
    pub(crate) fn start(name: &str) -> std::io::Result<Arc<Reactor>> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let waker = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &ep,
            &waker,
            epoll::EventData::new_u64(WAKER),
            epoll::EventFlags::IN,
        )?;
        let r = Arc::new(Reactor {
            epoll: ep,
            waker,
            dead: std::sync::atomic::AtomicBool::new(false),
            inbox: Mutex::new(Vec::new()),
            thread: Mutex::new(None),
        });
        // The thread holds only a weak reference: it must not keep its owner alive.
        let weak = Arc::downgrade(&r);
        let t = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut l = Loop::new(weak);
                // A bug here must not leave every waiter blocked forever.
                if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l.run())) {
                    l.abandon(&panic_message(&*p));
                }
            })?;
        *r.thread.lock() = Some(t);
        Ok(r)
    }

    fn send(&self, msg: Msg) {
        self.inbox.lock().push(msg);
        let _ = rustix::io::write(&self.waker, &1u64.to_ne_bytes());
    }

    /// Hands a running job to the reactor.
    pub(crate) fn register(&self, reg: Registration) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.dead.load(SeqCst) {
            abandon_registration(reg, "the supervisor thread is gone (it panicked)");
            return;
        }
        self.send(Msg::Register(Box::new(reg)));
        // The thread may have died between the check and the send, after it
        // took in its last messages: then nobody else will.
        if self.dead.load(SeqCst) {
            self.abandon_inbox("the supervisor thread is gone (it panicked)");
        }
    }

    /// Ends every job still waiting in the inbox (the thread is dead).
    fn abandon_inbox(&self, why: &str) {
        let msgs = std::mem::take(&mut *self.inbox.lock());
        for m in msgs {
            if let Msg::Register(reg) = m {
                abandon_registration(*reg, why);
            }
        }
    }

    /// Kills `job` after `grace` unless it has ended by then.
    pub(crate) fn kill_after(&self, job: &Arc<JobShared>, grace: Duration) {
        self.send(Msg::KillAt(
            Instant::now() + grace,
            Arc::downgrade(job),
            false,
        ));
    }

    /// Stops the thread once every job it supervises has ended, and waits for it.
    pub(crate) fn shutdown(&self) {
        self.send(Msg::Shutdown);
        if let Some(t) = self.thread.lock().take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Supervisor for Reactor {
    fn kill_hard_at(&self, job: &Arc<JobShared>, at: Instant) {
        self.send(Msg::KillAt(at, Arc::downgrade(job), true));
    }
}

struct Loop {
    r: Arc<Reactor>,
    kills: Vec<(Instant, Weak<JobShared>, bool)>,
    shutting_down: bool,
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    next_gen: u32,
    timers: BinaryHeap<Reverse<(Instant, usize, u32, TimerKind)>>,
    buf: Vec<u8>,
    /// The messages taken from the inbox and not handled yet, last first:
    /// kept here so that a panic while handling one leaves the rest to
    /// `abandon` rather than to the unwinding.
    batch: Vec<Msg>,
}

impl Loop {
    fn new(r: Weak<Reactor>) -> Loop {
        Loop {
            r: r.upgrade()
                .expect("the reactor outlives its thread's start"),
            kills: Vec::new(),
            shutting_down: false,
            slots: Vec::new(),
            free: Vec::new(),
            next_gen: 1,
            timers: BinaryHeap::new(),
            buf: vec![0u8; READ_CHUNK],
            batch: Vec::new(),
        }
    }

    /// After a panic in `run`: kill every cell, end every job (waiters get a
    /// `Failed` outcome saying why), and mark the reactor dead so that jobs
    /// handed over later end the same way at once.
    fn abandon(&mut self, what: &str) {
        self.r.dead.store(true, std::sync::atomic::Ordering::SeqCst);
        let why = format!("the supervisor thread panicked: {what}");
        for e in std::mem::take(&mut self.slots).into_iter().flatten() {
            end_abandoned(
                &e.job,
                &e.pidfd,
                e.cgroup.as_deref(),
                e.spawned.started,
                &why,
            );
        }
        for m in std::mem::take(&mut self.batch) {
            if let Msg::Register(reg) = m {
                abandon_registration(*reg, &why);
            }
        }
        self.r.abandon_inbox(&why);
    }

    fn run(&mut self) {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(512);
        loop {
            let next_kill = self.kills.iter().map(|(at, ..)| *at).min();
            let next_timer = self.timers.peek().map(|Reverse((at, ..))| *at);
            let next = match (next_kill, next_timer) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timeout = next.map(|at| {
                let d = at.saturating_duration_since(Instant::now());
                rustix::time::Timespec {
                    tv_sec: d.as_secs() as i64,
                    tv_nsec: d.subsec_nanos() as i64,
                }
            });
            events.clear();
            match epoll::wait(
                &self.r.epoll,
                rustix::buffer::spare_capacity(&mut events),
                timeout.as_ref(),
            ) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => panic!("epoll_wait failed: {e}"),
            }
            for ev in events.iter() {
                let t = ev.data.u64();
                if t == WAKER {
                    let mut b = [0u8; 8];
                    let _ = rustix::io::read(&self.r.waker, &mut b);
                    continue;
                }
                let (slot, gen, kind) = untoken(t);
                let live = matches!(self.slots.get(slot), Some(Some(e)) if e.gen == gen);
                if !live {
                    continue;
                }
                match kind {
                    KIND_PID => self.on_exit(slot),
                    KIND_STDOUT => self.on_output(slot, Stream::Stdout, false),
                    KIND_STDERR => self.on_output(slot, Stream::Stderr, false),
                    KIND_STDIN => self.on_stdin(slot),
                    _ => {}
                }
            }
            self.fire_timers();
            let now = Instant::now();
            let due: Vec<_> = {
                let (due, later) = std::mem::take(&mut self.kills)
                    .into_iter()
                    .partition(|(at, ..)| *at <= now);
                self.kills = later;
                due
            };
            for (_, job, hard) in due {
                if let Some(job) = job.upgrade() {
                    if hard {
                        job.kill_hard();
                    } else {
                        let _ = job.kill(KillReason::Stopped);
                    }
                }
            }
            self.batch = std::mem::take(&mut *self.r.inbox.lock());
            self.batch.reverse();
            while let Some(m) = self.batch.pop() {
                match m {
                    Msg::Register(reg) => self.add(*reg),
                    Msg::KillAt(at, job, hard) => self.kills.push((at, job, hard)),
                    Msg::Shutdown => self.shutting_down = true,
                    #[cfg(test)]
                    Msg::Panic => panic!("asked to"),
                }
            }
            if self.shutting_down && self.slots.iter().all(Option::is_none) {
                graveyard::drain();
                return;
            }
        }
    }

    fn add(&mut self, mut reg: Registration) {
        drop(reg.spawned.plan_pages.take());
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let gen = self.next_gen;
        // Generations live in 29 bits of the epoll token.
        self.next_gen = (self.next_gen + 1) & 0x1fff_ffff;
        if self.next_gen == 0 {
            self.next_gen = 1;
        }
        let ep = &self.r.epoll;
        let ev = |kind| epoll::EventData::new_u64(token(slot, gen, kind));
        let _ = epoll::add(ep, &*reg.pidfd, ev(KIND_PID), epoll::EventFlags::IN);
        if let Some(fd) = &reg.spawned.stdout {
            set_nonblocking(fd);
            let _ = epoll::add(ep, fd, ev(KIND_STDOUT), epoll::EventFlags::IN);
        }
        if let Some(fd) = &reg.spawned.stderr {
            set_nonblocking(fd);
            let _ = epoll::add(ep, fd, ev(KIND_STDERR), epoll::EventFlags::IN);
        }
        if let Some((fd, _)) = &reg.spawned.stdin {
            set_nonblocking(fd);
            let _ = epoll::add(ep, fd, ev(KIND_STDIN), epoll::EventFlags::OUT);
        }
        let started = reg.spawned.started;
        if let Some(w) = reg.wall_time {
            self.timers
                .push(Reverse((started + w, slot, gen, TimerKind::Wall)));
        }
        if let Some(c) = reg.cpu_time {
            let first = started + c / reg.cpus.max(1);
            self.timers
                .push(Reverse((first, slot, gen, TimerKind::Cpu)));
        }
        self.slots[slot] = Some(Entry {
            gen,
            job: reg.job,
            pidfd: reg.pidfd,
            spawned: reg.spawned,
            cgroup: reg.cgroup,
            output_limit: reg.output_limit,
            written: 0,
            cpu_limit: reg.cpu_time,
            cpus: reg.cpus.max(1),
            stdin_pos: 0,
            exited: None,
            ended_at: None,
            cgroup_retries: 0,
        });
    }

    fn entry(&mut self, slot: usize) -> &mut Entry {
        self.slots[slot].as_mut().expect("live slot")
    }

    /// Reads what is available on one output pipe into the log (all of it when `drain`).
    fn on_output(&mut self, slot: usize, stream: Stream, drain: bool) {
        loop {
            let e = self.slots[slot].as_mut().expect("live slot");
            let fd = match stream {
                Stream::Stdout => e.spawned.stdout.as_ref(),
                Stream::Stderr => e.spawned.stderr.as_ref(),
            };
            let Some(fd) = fd else { return };
            match rustix::io::read(fd, &mut self.buf[..]) {
                Ok(0) => {
                    self.close_output(slot, stream);
                    return;
                }
                Ok(n) => {
                    let mut keep = n;
                    let mut over = false;
                    if let Some(limit) = e.output_limit {
                        let room = limit.saturating_sub(e.written);
                        if n as u64 > room {
                            keep = room as usize;
                            over = true;
                        }
                    }
                    if keep > 0 {
                        e.job.log.append(stream, &self.buf[..keep]);
                        e.written += keep as u64;
                    }
                    if over {
                        let _ = e.job.kill(KillReason::OutputLimit);
                        self.close_output(slot, Stream::Stdout);
                        self.close_output(slot, Stream::Stderr);
                        return;
                    }
                    if !drain && n < self.buf.len() {
                        return;
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return, // EAGAIN: nothing more for now
            }
        }
    }

    fn close_output(&mut self, slot: usize, stream: Stream) {
        let ep = &self.r.epoll;
        let e = self.slots[slot].as_mut().expect("live slot");
        let fd = match stream {
            Stream::Stdout => e.spawned.stdout.take(),
            Stream::Stderr => e.spawned.stderr.take(),
        };
        if let Some(fd) = fd {
            let _ = epoll::delete(ep, &fd);
        }
    }

    fn on_stdin(&mut self, slot: usize) {
        let ep = &self.r.epoll;
        let e = self.slots[slot].as_mut().expect("live slot");
        let Some((fd, data)) = &e.spawned.stdin else {
            return;
        };
        let mut done = false;
        loop {
            if e.stdin_pos >= data.len() {
                done = true;
                break;
            }
            // The job holds the other end: its closing it must not raise
            // SIGPIPE in a host that has not ignored it.
            match sys::host::write_no_sigpipe(fd.as_raw_fd(), &data[e.stdin_pos..]) {
                Ok(n) => e.stdin_pos += n,
                Err(crate::Errno(libc::EINTR)) => {}
                Err(crate::Errno(libc::EAGAIN)) => break,
                Err(_) => {
                    done = true; // EPIPE: the job closed its stdin
                    break;
                }
            }
        }
        if done {
            if let Some((fd, _)) = e.spawned.stdin.take() {
                let _ = epoll::delete(ep, &fd);
            }
        }
    }

    /// The cell's init has exited: reap it, collect the rest of the output, finish.
    fn on_exit(&mut self, slot: usize) {
        let ep = &self.r.epoll;
        let e = self.slots[slot].as_mut().expect("live slot");
        if e.exited.is_some() {
            return;
        }
        match sys::host::waitid_pidfd(e.pidfd.as_raw_fd(), true) {
            Ok(Some(r)) => e.exited = Some(r),
            Ok(None) => return, // not yet (spurious wake-up)
            Err(_) => {
                // ECHILD cannot happen for our own child; treat as gone.
                // SAFETY: zeroed siginfo/rusage are valid plain data.
                e.exited = Some(unsafe { (std::mem::zeroed(), std::mem::zeroed()) });
            }
        }
        e.ended_at = Some(Instant::now());
        let _ = epoll::delete(ep, e.pidfd.as_fd());
        if let Some((fd, _)) = e.spawned.stdin.take() {
            let _ = epoll::delete(ep, &fd);
        }
        // Every writer is dead: what is in the pipes is all there will be.
        self.on_output(slot, Stream::Stdout, true);
        self.on_output(slot, Stream::Stderr, true);
        self.close_output(slot, Stream::Stdout);
        self.close_output(slot, Stream::Stderr);
        self.try_finish(slot);
    }

    /// Finishes once the cgroup is empty; retries with a short back-off otherwise.
    fn try_finish(&mut self, slot: usize) {
        let e = self.entry(slot);
        if let Some(cg) = &e.cgroup {
            if cg.populated() && e.cgroup_retries < 200 {
                cg.kill();
                e.cgroup_retries += 1;
                let delay = Duration::from_millis((1u64 << e.cgroup_retries.min(6)).min(50));
                let (gen, at) = (e.gen, Instant::now() + delay);
                self.timers
                    .push(Reverse((at, slot, gen, TimerKind::CgroupRetry)));
                return;
            }
        }
        let e = self.slots[slot].take().expect("live slot");
        self.free.push(slot);
        finish(e);
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, slot, gen, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let live = matches!(self.slots.get(slot), Some(Some(e)) if e.gen == gen);
            if !live {
                continue;
            }
            let e = self.entry(slot);
            match kind {
                TimerKind::Wall if e.exited.is_none() => {
                    let _ = e.job.kill(KillReason::TimedOut(TimeLimit::Wall));
                }
                TimerKind::Cpu if e.exited.is_none() => {
                    let (Some(limit), Some(cg)) = (e.cpu_limit, e.cgroup.as_ref()) else {
                        continue;
                    };
                    let used = cg.cpu_time().unwrap_or_default();
                    if used >= limit {
                        let _ = e.job.kill(KillReason::TimedOut(TimeLimit::Cpu));
                    } else {
                        // The job cannot burn CPU faster than `cpus` per wall second, so
                        // it cannot cross the limit before this; ~1 ms granularity at the end.
                        let wait = ((limit - used) / e.cpus).max(Duration::from_millis(1));
                        let gen = e.gen;
                        self.timers
                            .push(Reverse((now + wait, slot, gen, TimerKind::Cpu)));
                    }
                }
                TimerKind::CgroupRetry => self.try_finish(slot),
                _ => {}
            }
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) {
    if let Ok(fl) = rustix::fs::fcntl_getfl(fd) {
        let _ = rustix::fs::fcntl_setfl(fd, fl | rustix::fs::OFlags::NONBLOCK);
    }
}

/// What a panic carried, for the abandoned jobs' verdict.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

fn abandon_registration(reg: Registration, why: &str) {
    end_abandoned(
        &reg.job,
        &reg.pidfd,
        reg.cgroup.as_deref(),
        reg.spawned.started,
        why,
    );
}

/// Ends a job nobody supervises any more: its cell killed and reaped, its
/// cgroup removed, its outcome `Failed` with `why`.
fn end_abandoned(
    job: &Arc<JobShared>,
    pidfd: &OwnedFd,
    cgroup: Option<&JobCgroup>,
    started: Instant,
    why: &str,
) {
    let _ = sys::host::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL);
    let _ = sys::host::waitid_pidfd(pidfd.as_raw_fd(), false);
    if let Some(cg) = cgroup {
        cg.remove();
    }
    job.finish(Outcome {
        state: JobState::Failed {
            reason: why.to_owned(),
        },
        exit: None,
        wall_time: started.elapsed(),
        rusage: ResourceUsage::default(),
        usage: None,
        oom_killed: false,
        pids_limited: false,
    });
}

/// Works out the verdict from kernel evidence and records the outcome.
fn finish(e: Entry) {
    let (info, total) = e.exited.unwrap_or_else(|| {
        // SAFETY: zeroed siginfo/rusage are valid plain data.
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) }
    });
    let report = e.spawned.status.read();
    let exit = match report.exit {
        Some((status, _)) => Exit::from_wait_status(status),
        // Init itself was killed (a stop, a limit, the host): the job died with it.
        // SAFETY: reading si_status of a siginfo filled by waitid (or zeroed).
        None => match info.si_code {
            libc::CLD_KILLED | libc::CLD_DUMPED => Exit::Signal(unsafe { info.si_status() }),
            _ => Exit::Signal(libc::SIGKILL),
        },
    };
    let usage = e.cgroup.as_ref().and_then(|cg| cg.stats()).map(Usage::from);
    if let Some(cg) = &e.cgroup {
        cg.remove();
    }
    let oom_killed = usage.is_some_and(|u| u.oom_kills > 0);
    let pids_limited = usage.is_some_and(|u| u.pids_limit_hits > 0);
    let kill_reason = e.job.inner.lock().kill_reason;
    let state = match kill_reason {
        Some(KillReason::Stopped) => JobState::Stopped,
        Some(KillReason::TimedOut(k)) => JobState::TimedOut(k),
        Some(KillReason::OutputLimit) => JobState::OutputLimitExceeded,
        None if report.bad_syscall.is_some() => JobState::BadSyscall {
            syscall: report.bad_syscall.map(|(nr, _)| i64::from(nr)),
        },
        None if exit == Exit::Signal(libc::SIGSYS) => JobState::BadSyscall { syscall: None },
        None if oom_killed => JobState::OutOfMemory,
        None => match exit {
            Exit::Code(0) => JobState::Completed,
            other => JobState::Failed {
                reason: other.to_string(),
            },
        },
    };
    let mut rusage = ResourceUsage::from_rusage(&total);
    if let (None, Some(u)) = (report.exit, usage) {
        // Init died before it could reap the job (the host SIGKILLed it):
        // the kernel reaped the job and its accounting went with it, but the
        // cgroup counted every process of the cell.
        rusage.user_time = rusage.user_time.max(u.cpu_user);
        rusage.system_time = rusage.system_time.max(u.cpu_system);
    }
    let wall_time = e
        .ended_at
        .unwrap_or_else(Instant::now)
        .saturating_duration_since(e.spawned.started);
    let outcome = Outcome {
        state,
        exit: Some(exit),
        wall_time,
        rusage,
        usage,
        oom_killed,
        pids_limited,
    };
    // Release every descriptor and the cgroup before anyone learns the job
    // has ended: a waiter that checks for leaks must find none.
    let job = e.job.clone();
    drop(e);
    // The cell's mount namespace waits in the graveyard: taken down once
    // the waiters are on their way (or, when a worker publishes the end on
    // its own thread, while it does).
    let pending = graveyard::drain_pending();
    job.finish_supervised(outcome);
    graveyard::drain();
    drop(pending);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> crate::Command {
        let mut c = crate::Command::new("sh");
        c.args(["-c", script]);
        c
    }

    /// A runtime of its own (its own reactor, epoll set and slots), ended
    /// when the test is done with it.
    struct TestRuntime(crate::worker::Runtime);

    impl TestRuntime {
        fn new(name: &str) -> TestRuntime {
            TestRuntime(crate::worker::Runtime::new(name).unwrap())
        }

        fn spawn(&self, sb: &crate::Sandbox, cmd: &crate::Command) -> crate::JobHandle {
            self.0.spawn_standalone(sb, cmd).unwrap()
        }
    }

    impl Drop for TestRuntime {
        fn drop(&mut self) {
            // After a failure its jobs may never end: do not wait for them.
            if std::thread::panicking() {
                return;
            }
            // Bounded: a reactor that never lets go fails the test.
            let (tx, rx) = std::sync::mpsc::channel();
            let reactor = self.0.reactor.clone();
            std::thread::spawn(move || {
                reactor.shutdown();
                let _ = tx.send(());
            });
            rx.recv_timeout(Duration::from_secs(10))
                .expect("the reactor shut down");
        }
    }

    fn limited(limits: crate::Limits) -> crate::Sandbox {
        let mut sb = crate::Sandbox::new();
        sb.limits(limits);
        sb
    }

    /// Waits for the job's outcome, at most `within` (a hang is a failure,
    /// not a stuck test).
    fn outcome(job: &crate::JobHandle, within: Duration) -> Outcome {
        job.wait_timeout(within)
            .unwrap()
            .unwrap_or_else(|| panic!("no outcome within {within:?}: {:?}", job.state()))
    }

    /// Every chunk of a finished job's log, checked contiguous from 0.
    fn chunks(job: &crate::JobHandle) -> Vec<crate::Chunk> {
        let chunks: Vec<crate::Chunk> = job.logs().collect();
        let mut at = 0;
        for c in &chunks {
            assert_eq!(c.offset, at, "contiguous");
            at += c.data.len() as u64;
        }
        chunks
    }

    fn bytes_of(chunks: &[crate::Chunk], stream: Stream) -> Vec<u8> {
        chunks
            .iter()
            .filter(|c| c.stream == stream)
            .flat_map(|c| c.data.to_vec())
            .collect()
    }

    /// The output limit counts stdout and stderr together, lets a job that
    /// writes exactly the limit complete, and keeps exactly the limit of one
    /// that writes more: the log ends at the limit's byte, wherever in a read
    /// that falls.
    #[test]
    fn output_is_cut_at_exactly_the_limit_of_both_streams_together() {
        let rt = TestRuntime::new("jc-t-outlimit");
        let within = Duration::from_secs(10);
        let limits = |bytes| crate::Limits {
            output_bytes: Some(bytes),
            wall_time: Some(Duration::from_secs(10)),
            ..Default::default()
        };
        // Exactly the limit, over both streams: not exceeded.
        let job = rt.spawn(
            &limited(limits(100_000)),
            &sh("head -c 60000 /dev/zero; head -c 40000 /dev/zero >&2"),
        );
        let o = outcome(&job, within);
        assert_eq!(o.state, JobState::Completed, "{o:?}");
        let all = chunks(&job);
        assert_eq!(bytes_of(&all, Stream::Stdout).len(), 60_000);
        assert_eq!(bytes_of(&all, Stream::Stderr).len(), 40_000);

        // Over the limit only together.
        let job = rt.spawn(
            &limited(limits(100_000)),
            &sh("head -c 60000 /dev/zero; head -c 60000 /dev/zero >&2; sleep 10"),
        );
        let o = outcome(&job, within);
        assert_eq!(o.state, JobState::OutputLimitExceeded, "{o:?}");
        let all = chunks(&job);
        assert_eq!(bytes_of(&all, Stream::Stdout).len(), 60_000);
        assert_eq!(bytes_of(&all, Stream::Stderr).len(), 40_000);

        // A flood, cut inside a read (an odd limit falls inside "y\n"):
        // the kept bytes are exactly the job's first 100001.
        let job = rt.spawn(&limited(limits(100_001)), &crate::Command::new("yes"));
        let o = outcome(&job, within);
        assert_eq!(o.state, JobState::OutputLimitExceeded, "{o:?}");
        let all = chunks(&job);
        let out = bytes_of(&all, Stream::Stdout);
        let want: Vec<u8> = b"y\n".iter().copied().cycle().take(100_001).collect();
        assert!(
            out == want,
            "{} bytes, not the first 100001 of yes",
            out.len()
        );
    }

    /// Stdin is fed whole, however much larger than the pipe, and a job that
    /// stops reading it early is not waited for.
    #[test]
    fn stdin_is_fed_whole_and_a_job_that_stops_reading_is_not_waited_for() {
        let rt = TestRuntime::new("jc-t-stdin");
        let within = Duration::from_secs(10);
        let sb = limited(crate::Limits {
            wall_time: Some(Duration::from_secs(10)),
            ..Default::default()
        });
        let input: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let job = rt.spawn(
            &sb,
            crate::Command::new("cat").stdin(crate::Stdin::bytes(&input)),
        );
        let o = outcome(&job, within);
        assert_eq!(o.state, JobState::Completed, "{o:?}");
        assert!(
            bytes_of(&chunks(&job), Stream::Stdout) == input,
            "cat gave back its input"
        );

        let job = rt.spawn(
            &sb,
            sh("head -c 10 >/dev/null; echo read").stdin(crate::Stdin::bytes(&input)),
        );
        let o = outcome(&job, within);
        assert_eq!(o.state, JobState::Completed, "{o:?}");
        assert_eq!(bytes_of(&chunks(&job), Stream::Stdout), b"read\n");
    }

    /// The reactor never blocks on one job's pipe: a job that has filled a
    /// whole read buffer and then writes nothing more, or that never reads
    /// its stdin, holds up no other job of the same reactor.
    #[test]
    fn a_silent_job_holds_up_no_other() {
        let rt = TestRuntime::new("jc-t-noblock");
        let sb = crate::Sandbox::new();
        let within = Duration::from_secs(10);
        let quick = || {
            let job = rt.spawn(&sb, crate::Command::new("echo").arg("hi"));
            let o = outcome(&job, within);
            assert_eq!(o.state, JobState::Completed, "{o:?}");
            assert_eq!(bytes_of(&chunks(&job), Stream::Stdout), b"hi\n");
        };
        // One write of exactly the reactor's read buffer, then silence.
        let full = rt.spawn(
            &sb,
            &sh("dd if=/dev/zero bs=64k count=1 2>/dev/null; echo >&2; sleep 60"),
        );
        let mut logs = full.logs();
        let mut seen = 0;
        while seen < READ_CHUNK + 1 {
            seen += logs
                .next_timeout(within)
                .expect("the job writes")
                .data
                .len();
        }
        quick();
        // A megabyte of stdin for a job that never reads it.
        let deaf = rt.spawn(
            &sb,
            crate::Command::new("sleep")
                .arg("60")
                .stdin(crate::Stdin::bytes(vec![b'x'; 1 << 20])),
        );
        std::thread::sleep(Duration::from_millis(100));
        quick();
        for job in [full, deaf] {
            job.kill().unwrap();
            assert_eq!(outcome(&job, within).state, JobState::Stopped);
        }
    }

    /// A stop's grace: the job, which ignores SIGTERM, is killed once the
    /// grace is over, not before.
    #[test]
    fn a_stopped_job_is_killed_when_its_grace_is_over() {
        let rt = TestRuntime::new("jc-t-grace");
        let job = rt.spawn(
            &crate::Sandbox::new(),
            &sh("trap '' TERM; echo ready; sleep 60"),
        );
        let ready = job.logs().next_timeout(Duration::from_secs(10));
        assert_eq!(&ready.expect("ready").data[..], b"ready\n");
        // As `Worker::stop` does.
        let grace = Duration::from_millis(500);
        assert!(job.shared.kill_reason_set(KillReason::Stopped));
        assert!(job.shared.terminate());
        let t = Instant::now();
        rt.0.reactor.kill_after(&job.shared, grace);
        let o = outcome(&job, Duration::from_secs(10));
        assert_eq!(o.state, JobState::Stopped);
        assert!(t.elapsed() >= grace, "killed after {:?}", t.elapsed());
    }

    /// `kill` asks the cell's init to end the job; should init not act on
    /// it (here: stopped), the reactor SIGKILLs it after `KILL_GRACE`.
    #[test]
    fn a_kill_init_does_not_act_on_is_enforced() {
        let rt = TestRuntime::new("jc-t-killhard");
        let job = rt.spawn(
            &crate::Sandbox::new(),
            crate::Command::new("sleep").arg("60"),
        );
        let init = job.pid().expect("running") as i32;
        // SAFETY: a signal to our own cell's init, by its host pid.
        assert_eq!(unsafe { libc::kill(init, libc::SIGSTOP) }, 0);
        job.kill().unwrap();
        let o = job.wait_timeout(Duration::from_secs(10)).unwrap();
        if o.is_none() {
            // SAFETY: as above; do not leave a stopped cell behind.
            unsafe { libc::kill(init, libc::SIGKILL) };
        }
        assert_eq!(o.expect("killed by the backstop").state, JobState::Stopped);
    }

    /// `shutdown` returns once every job has ended and the thread is gone.
    #[test]
    fn shutdown_waits_for_the_jobs_and_the_thread() {
        let rt = crate::worker::Runtime::new("jc-t-shutdown").unwrap();
        let job = rt
            .spawn_standalone(
                &crate::Sandbox::new(),
                crate::Command::new("sleep").arg("1"),
            )
            .unwrap();
        // Bounded: a reactor that never lets go must fail this, not hang it.
        let (tx, rx) = std::sync::mpsc::channel();
        let reactor = rt.reactor.clone();
        std::thread::spawn(move || {
            reactor.shutdown();
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("shutdown returned");
        let o = job
            .try_wait()
            .unwrap()
            .expect("ended before shutdown returned");
        assert_eq!(o.state, JobState::Completed);
        let threads = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|c| c.trim() == "jc-t-shutdown")
                .collect()
        };
        // A joined thread may linger in /proc for an instant.
        let t = Instant::now();
        while !threads().is_empty() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(threads(), Vec::<String>::new());
    }

    /// A finished job's timers stay in the heap until due; when they fire,
    /// the job that took its slot since is not theirs (generations).
    #[test]
    fn a_finished_jobs_timer_leaves_the_next_job_in_its_slot_alone() {
        let rt = TestRuntime::new("jc-t-slots");
        let within = Duration::from_secs(10);
        let timed = limited(crate::Limits {
            wall_time: Some(Duration::from_secs(2)),
            ..Default::default()
        });
        let t = Instant::now();
        let first = rt.spawn(&timed, &crate::Command::new("true"));
        assert_eq!(outcome(&first, within).state, JobState::Completed);
        // Two more in the same slot, one after the other: the third runs
        // when the first's wall-time timer fires.
        let second = rt.spawn(&crate::Sandbox::new(), &crate::Command::new("true"));
        assert_eq!(outcome(&second, within).state, JobState::Completed);
        let third = rt.spawn(
            &crate::Sandbox::new(),
            crate::Command::new("sleep").arg("4"),
        );
        let o = outcome(&third, within);
        assert_eq!(o.state, JobState::Completed, "{o:?}");
        assert!(
            t.elapsed() > Duration::from_secs(2),
            "the timer fired meanwhile"
        );
    }

    /// The reactor's own descriptors do not leak into programs the host
    /// executes.
    #[test]
    fn the_reactors_descriptors_are_close_on_exec() {
        let rt = TestRuntime::new("jc-t-cloexec");
        let r = &rt.0.reactor;
        for fd in [&r.epoll, &r.waker] {
            let flags = rustix::io::fcntl_getfd(fd).unwrap();
            assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        }
        let fl = rustix::fs::fcntl_getfl(&r.waker).unwrap();
        assert!(fl.contains(rustix::fs::OFlags::NONBLOCK));
    }

    /// What the reactor's epoll set watches, by kind (from its fdinfo).
    fn watched(r: &Reactor) -> Vec<u64> {
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", r.epoll.as_raw_fd())).unwrap();
        info.lines()
            .filter(|l| l.starts_with("tfd:"))
            .map(|l| {
                let data = l.split_whitespace().skip_while(|w| *w != "data:").nth(1);
                u64::from_str_radix(data.expect("data"), 16).unwrap()
            })
            .filter(|&t| t != WAKER)
            .map(|t| untoken(t).2)
            .collect()
    }

    /// A stream the job closes is let go at once (no descriptor held, no
    /// wake-up for it while the job runs on), not when the job ends.
    #[test]
    fn a_closed_stream_is_let_go_at_once() {
        let rt = TestRuntime::new("jc-t-eof");
        let job = rt.spawn(
            &crate::Sandbox::new(),
            &sh("exec >&-; echo closed >&2; sleep 60"),
        );
        let c = job
            .logs()
            .next_timeout(Duration::from_secs(10))
            .expect("a line");
        assert_eq!((c.stream, &c.data[..]), (Stream::Stderr, &b"closed\n"[..]));
        let t = Instant::now();
        let mut kinds = watched(&rt.0.reactor);
        while kinds.contains(&KIND_STDOUT) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
            kinds = watched(&rt.0.reactor);
        }
        kinds.sort_unstable();
        assert_eq!(kinds, [KIND_PID, KIND_STDERR]);
        job.kill().unwrap();
        assert_eq!(
            outcome(&job, Duration::from_secs(10)).state,
            JobState::Stopped
        );
    }

    #[test]
    fn tokens_roundtrip() {
        for (slot, gen, kind) in [
            (0usize, 1u32, 0u64),
            (12345, 0x1fff_ffff, 3),
            (u32::MAX as usize, 7, 2),
        ] {
            assert_eq!(untoken(token(slot, gen, kind)), (slot, gen, kind));
        }
        assert_ne!(token(0, 0, 0), WAKER);
    }

    /// Waits (10 s at most) for `job` to end, and checks that it ended
    /// `Failed` by the test's panic, its cell killed and reaped. A cell
    /// that does not end is killed, not left behind.
    fn ended_by_the_panic(job: crate::JobHandle) {
        let pid = job.pid().expect("running");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(job.wait().map(|o| o.state));
        });
        let state = rx.recv_timeout(Duration::from_secs(10));
        if state.is_err() {
            let _ = crate::sys::kill(pid as i32, libc::SIGKILL);
        }
        match state.expect("wait() returned").unwrap() {
            // What the thread panicked with, said where it panicked.
            JobState::Failed { reason } => assert!(
                reason.contains("supervisor thread panicked: asked to"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the cell was killed and reaped"
        );
    }

    /// A panic in the reactor thread (a bug) must not leave waiters blocked:
    /// the running job's cell is killed and its waiter gets a `Failed`
    /// outcome saying why; a job handed over afterwards ends at once.
    #[test]
    fn a_panicking_reactor_ends_its_jobs_instead_of_hanging_them() {
        let rt = crate::worker::Runtime::new("jobcell-test-reactor").unwrap();
        let sb = crate::Sandbox::new();
        let job = rt
            .spawn_standalone(&sb, crate::Command::new("sleep").arg("60"))
            .unwrap();
        rt.reactor.send(Msg::Panic);
        ended_by_the_panic(job);
        let late = rt
            .spawn_standalone(&sb, crate::Command::new("sleep").arg("60"))
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(late.wait().map(|o| o.state));
        });
        let state = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("wait() returned");
        assert!(matches!(state, Ok(JobState::Failed { .. })), "{state:?}");
    }

    /// The thread takes its inbox in batches: a job registered in the same
    /// batch as the message the thread panics on, after it, ends as the
    /// others do, not hang its waiters with its cell running.
    #[test]
    fn jobs_handed_over_with_the_message_it_panicked_on_are_ended_too() {
        let rt = crate::worker::Runtime::new("jobcell-test-reactor").unwrap();
        let sb = crate::Sandbox::new();
        // Not woken: the panic waits in the inbox for the registration.
        rt.reactor.inbox.lock().push(Msg::Panic);
        let job = rt
            .spawn_standalone(&sb, crate::Command::new("sleep").arg("60"))
            .unwrap();
        ended_by_the_panic(job);
    }
}
