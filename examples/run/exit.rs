//! The exit codes: the table `--help` shows, the code of a verdict, and how
//! a spawn error ends run (a named bad argument, or a code).

use std::path::Path;

use jobcell::{Error, JobState, Outcome, Stage};

use crate::args::{Args, BadArg};
use crate::cell::limit_flag;

/// The exit codes, as `--help` shows them (and the README and tests check).
pub const EXIT_CODES: &str = "\
Exit codes (the same with --json and --meta):
  0        completed: the job exited with code 0
  N        failed: the job exited with code N
  128+N    failed: signal N killed the job (a crash, or a kill of its own)
  128+S    stopped: run got signal S (SIGINT, SIGTERM or SIGHUP), stopped the job,
           reported it, and died of S, as a shell expects: 130 for Ctrl-C, 143 for
           SIGTERM, 129 for SIGHUP (a shell loop around run stops too)
  121      bad system call: the seccomp filter killed the job (--seccomp kill)
  122      output limit: the job wrote more than --output
  123      out of memory: the kernel's OOM killer killed a process of the job
  124      time limit: the job ran past --time (wall clock) or --cpu-time
  125      the cell could not be set up (the error says why; --check says what the host lacks)
  126      the program was found but cannot be executed
  127      the program was not found in the cell
  2        invalid command line; the message names the argument
A job's own exit code may be any of these numbers too: where that matters,
read the verdict (\"state\") from --meta or --json.";

pub const BAD_SYSCALL: u8 = 121;
pub const OUTPUT_LIMIT: u8 = 122;
pub const OUT_OF_MEMORY: u8 = 123;
pub const TIME_LIMIT: u8 = 124;
pub const SETUP_FAILED: u8 = 125;
pub const CANNOT_EXECUTE: u8 = 126;
pub const NOT_FOUND: u8 = 127;
pub const BAD_USAGE: u8 = 2;

/// How a spawn error ends `run`: a bad argument (named), a program that
/// is missing or cannot run, or a cell that could not be set up.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    BadArg(BadArg),
    Exit(u8),
}

pub fn classify(e: &Error, args: &Args) -> Failure {
    let bad = |arg: &str| Failure::BadArg(BadArg::new(arg, e.to_string()));
    // The option that holds a cell path, for errors that name only the path.
    let holder = |path: &str| -> String {
        let p = Path::new(path);
        let is = |q: &Path| q == p || p.starts_with(q) || q.starts_with(p);
        if args.bind.iter().any(|b| is(&b.dst)) {
            "--bind"
        } else if args.tmpfs.iter().any(|(d, _)| is(d)) {
            "--tmpfs"
        } else if args.dir.iter().any(|d| is(d)) {
            "--dir"
        } else if args.file.iter().any(|(d, _)| is(d)) {
            "--file"
        } else if args.symlink.iter().any(|(t, l)| is(l) || is(t)) {
            "--symlink"
        } else if args.landlock.iter().any(|(d, _)| is(d)) {
            "--landlock"
        } else if args.cwd.as_deref().is_some_and(is) {
            "--cwd"
        } else {
            "PROGRAM"
        }
        .to_string()
    };
    match e {
        Error::InvalidLimit { name, .. } => bad(limit_flag(name)),
        Error::InvalidSetting { name, .. } => bad(match *name {
            "hostname" => "--hostname",
            "environment variable name" => "--env",
            "bind sources" => "--bind",
            "tmpfs size" | "tmpfs inodes" => "--tmpfs",
            "seccomp" => "--seccomp",
            n if n.starts_with("RLIMIT_") => "--rlimit",
            _ => "the command line",
        }),
        Error::InvalidPath { path, .. } => bad(&holder(path)),
        Error::CurrentDirNotFound { .. } => bad("--cwd"),
        Error::IdOutOfRange { .. } | Error::IdMapping { .. } => bad("--user"),
        Error::HostPath { what, path, .. } | Error::UntrustedSymlink { what, path, .. } => {
            bad(match *what {
                "rootfs" => "--rootfs",
                w if w.contains("stdin") => "--stdin",
                _ if args.stdin.as_deref() == Some(path.as_path()) => "--stdin",
                _ => "--bind",
            })
        }
        Error::NulByte { what, .. } | Error::ArgumentsTooLarge { what, .. } => {
            bad(if what.contains("environment") {
                "--env"
            } else if what.contains("symlink") || what.contains("path") {
                "a path"
            } else {
                "PROGRAM"
            })
        }
        Error::EmptyProgram => bad("PROGRAM"),
        Error::ProgramNotFound { .. } => Failure::Exit(NOT_FOUND),
        Error::Setup {
            stage: Stage::Exec,
            errno,
            ..
        } => match errno.0 {
            // The host ran short, not the program.
            libc::ENOMEM | libc::EAGAIN | libc::EMFILE | libc::ENFILE => {
                Failure::Exit(SETUP_FAILED)
            }
            // Found, but execve refused it: not a program (ENOEXEC), a
            // missing interpreter (ENOENT), a noexec mount (EACCES), …
            _ => Failure::Exit(CANNOT_EXECUTE),
        },
        _ => Failure::Exit(SETUP_FAILED),
    }
}

/// The exit code of a verdict; `stop` is the signal that made run stop the job.
pub fn exit_code(o: &Outcome, stop: Option<i32>) -> u8 {
    match &o.state {
        JobState::TimedOut(_) => TIME_LIMIT,
        JobState::OutOfMemory => OUT_OF_MEMORY,
        JobState::OutputLimitExceeded => OUTPUT_LIMIT,
        JobState::BadSyscall { .. } => BAD_SYSCALL,
        JobState::Stopped => 128 + stop.unwrap_or(libc::SIGTERM) as u8,
        _ => match o.exit {
            Some(e) => e.shell_code().clamp(0, 255) as u8,
            None => SETUP_FAILED,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn spawn_errors_name_the_argument_or_pick_a_code() {
        let args = Args::try_parse_from([
            "run",
            "--bind",
            "/host:/work",
            "--cwd",
            "/work/x",
            "--stdin",
            "/in.txt",
            "true",
        ])
        .unwrap();
        let name = |e: Error| match classify(&e, &args) {
            Failure::BadArg(b) => b.arg,
            Failure::Exit(c) => c.to_string(),
        };
        assert_eq!(
            name(Error::InvalidPath {
                path: "/work".into(),
                reason: "x"
            }),
            "--bind"
        );
        assert_eq!(
            name(Error::HostPath {
                what: "bind source",
                path: "/host".into(),
                errno: jobcell::Errno(libc::ENOENT)
            }),
            "--bind"
        );
        assert_eq!(
            name(Error::HostPath {
                what: "stdin file",
                path: "/in.txt".into(),
                errno: jobcell::Errno(libc::ENOENT)
            }),
            "--stdin"
        );
        assert_eq!(
            name(Error::CurrentDirNotFound {
                path: "/work/x".into()
            }),
            "--cwd"
        );
        assert_eq!(
            name(Error::InvalidSetting {
                name: "RLIMIT_NOFILE",
                value: String::new(),
                reason: String::new()
            }),
            "--rlimit"
        );
        assert_eq!(
            name(Error::ProgramNotFound {
                program: "x".into(),
                searched: String::new()
            }),
            "127"
        );
        assert_eq!(name(Error::SetupDied { status: "x".into() }), "125");
    }
}
