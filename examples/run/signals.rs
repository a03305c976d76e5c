//! SIGINT, SIGTERM and SIGHUP: stopping the job and reporting it, then
//! dying of the signal as an interrupted program should.

use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use jobcell::JobHandle;

/// SIGINT, SIGTERM and SIGHUP: taken by a thread of run's own (blocked
/// everywhere else), to stop the job and report it before run dies of them.
pub const STOP_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

pub fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset only write to it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in STOP_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Who stops the job: the job, once there is one, and the signal that came.
#[derive(Default)]
pub struct Stopper {
    pub job: Option<Arc<JobHandle>>,
    pub signal: Option<i32>,
}

/// Blocks the stop signals in this thread (and every thread it starts
/// after, jobcell's included; cells reset their mask) and starts the
/// thread that waits for them.
pub fn catch_stop_signals() -> Arc<Mutex<Stopper>> {
    let set = stop_signals();
    // SAFETY: set is a valid sigset; no old mask is asked for.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    let stopper = Arc::new(Mutex::new(Stopper::default()));
    let s = stopper.clone();
    std::thread::spawn(move || loop {
        let mut sig = 0;
        // SAFETY: set is valid and sig is a writable int.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        let mut g = s.lock().unwrap();
        g.signal.get_or_insert(sig);
        if let Some(job) = &g.job {
            let _ = job.kill();
        }
    });
    stopper
}

/// Dies of `sig`, as a program interrupted by it should (a shell loop
/// around run stops then too).
pub fn die_of(sig: i32) -> ExitCode {
    let _ = std::io::stderr().flush();
    // SAFETY: plain signal-disposition and mask calls on this thread.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    ExitCode::from(128 + sig as u8)
}
