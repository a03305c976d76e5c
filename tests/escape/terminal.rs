//! Terminal injection: a host terminal handed to a job as its stdin.

use super::*;

// 1. Terminal injection (bubblewrap CVE-2017-5226)

/// A pseudo-terminal pair made on the host; the slave's path goes to the job.
struct Pty {
    master: std::fs::File,
    slave: PathBuf,
}

fn pty() -> Pty {
    // SAFETY: plain libc calls on a descriptor we own; ptsname_r writes into
    // a buffer of the length given.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let mut buf = [0 as libc::c_char; 64];
        assert_eq!(libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()), 0);
        let slave = std::ffi::CStr::from_ptr(buf.as_ptr())
            .to_string_lossy()
            .into_owned();
        Pty {
            master: std::os::fd::FromRawFd::from_raw_fd(m),
            slave: slave.into(),
        }
    }
}

/// What is waiting in the terminal's input queue (what a shell on it would read).
fn pending_input(slave: &Path) -> Vec<u8> {
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(slave)
    {
        Ok(f) => f,
        Err(_) => return Vec::new(),
    };
    let mut buf = [0u8; 256];
    match f.read(&mut buf) {
        Ok(n) => buf[..n].to_vec(),
        Err(_) => Vec::new(),
    }
}

/// The job gets a host terminal as stdin, makes it its controlling terminal
/// (it is a session leader) and pushes "id\n" into its input queue with
/// TIOCSTI, plainly and with high bits set in the request (CVE-2019-10063:
/// the kernel truncates the request to 32 bits, a filter comparing 64 does
/// not). Stopped by seccomp (TIOCSTI and TIOCLINUX denied on the low 32 bits).
/// The control run without the filter shows the test would see an injection.
#[test]
fn tiocsti_cannot_push_keystrokes_into_a_host_terminal() {
    let _g = shared();
    let pty = pty();
    let spawn = |sb: &Sandbox| {
        let job = sb
            .spawn(
                Command::new("/esc")
                    .arg("tiocsti")
                    .stdin(Stdin::File(pty.slave.clone())),
            )
            .unwrap();
        collect(&job)
    };
    let r = spawn(&attacker());
    let a = attempts(&r);
    a.denied("tiocsti", "EPERM");
    a.denied("tiocsti_high_bits", "EPERM");
    a.denied("tioclinux", "EPERM");
    assert_eq!(
        pending_input(&pty.slave),
        b"",
        "keystrokes reached the terminal"
    );

    // Control: without the filter, and with the terminal as the job's
    // controlling terminal, the kernel lets TIOCSTI through (where it still
    // allows it at all: dev.tty.legacy_tiocsti).
    let r = spawn(&without_seccomp(attacker()));
    let a = attempts(&r);
    let legacy = std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
        .map(|v| v.trim() == "1")
        .unwrap_or(true);
    eprintln!(
        "tiocsti control without seccomp: TIOCSCTTY {}, TIOCSTI {}, legacy_tiocsti {legacy}",
        a.get("tiocsctty"),
        a.get("tiocsti")
    );
    if a.get("tiocsctty") == "ok" && legacy {
        assert_eq!(a.get("tiocsti"), "ok", "{}", r.stdout);
        let got = pending_input(&pty.slave);
        assert!(
            got.starts_with(b"id"),
            "the control injection was not seen: {got:?}"
        );
    }
    drop(pty.master);
}

/// A host process that is a session leader without a terminal (a daemon, a
/// worker service) acquires any terminal it opens without O_NOCTTY as its
/// controlling terminal. Giving the job a terminal as stdin must not do
/// that to the host: its input (and TIOCSTI, were it allowed) could then
/// send SIGINT or SIGHUP to the host's process group.
#[test]
fn a_terminal_as_stdin_never_becomes_the_hosts_controlling_terminal() {
    let _g = shared();
    if std::env::var_os("JOBCELL_ESCAPE_SESSION").is_some() {
        return;
    }
    let pty = pty();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "terminal::session_leader_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("JOBCELL_ESCAPE_SESSION", &pty.slave)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("TTY_NR 0\n"),
        "the host took the job's terminal as its controlling terminal: {stdout}"
    );
    drop(pty.master);
}

/// The child half of `a_terminal_as_stdin_never_becomes_the_hosts_controlling_terminal`.
#[test]
#[ignore = "run by a_terminal_as_stdin_never_becomes_the_hosts_controlling_terminal"]
fn session_leader_child() {
    let Some(slave) = std::env::var_os("JOBCELL_ESCAPE_SESSION") else {
        return;
    };
    rustix::process::setsid().expect("setsid");
    let job = Sandbox::new()
        .spawn(Command::new("true").stdin(Stdin::File(slave.into())))
        .unwrap();
    job.wait().unwrap();
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let tty_nr = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(4)
        .unwrap()
        .to_owned();
    println!("TTY_NR {tty_nr}");
}
