//! The seccomp filter seen through the public API: real cells, as root (or
//! with unprivileged user namespaces).
#![cfg(feature = "seccomp")]

use jobcell::{Command, Error, Sandbox, Seccomp, SeccompAction, SeccompPolicy, Stream};

/// Runs `sh -c script` in a cell of `sandbox`; returns (stdout, stderr, outcome).
fn sh(sandbox: &Sandbox, script: &str) -> (String, String, jobcell::Outcome) {
    let job = sandbox
        .spawn(Command::new("sh").args(["-c", script]))
        .expect("spawn");
    let (mut out, mut err) = (String::new(), String::new());
    for chunk in job.logs() {
        let text = String::from_utf8_lossy(&chunk.data);
        match chunk.stream {
            Stream::Stdout => out.push_str(&text),
            Stream::Stderr => err.push_str(&text),
        }
    }
    let outcome = job.wait().expect("wait");
    (out, err, outcome)
}

#[test]
fn default_filter_denies_a_nested_user_namespace() {
    let (out, err, outcome) = sh(
        &Sandbox::new(),
        "grep '^Seccomp:' /proc/self/status; unshare -U true; echo unshare=$?; true; echo true=$?",
    );
    assert!(outcome.success(), "{outcome:?} {err}");
    assert!(
        out.contains("Seccomp:\t2"),
        "the job is not filtered: {out}"
    );
    assert!(out.contains("unshare=1"), "{out}");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(out.contains("true=0"), "{out}");
}

#[test]
fn disabled_filter_leaves_the_job_unfiltered() {
    let mut sandbox = Sandbox::new();
    sandbox.seccomp(Seccomp::Disabled);
    let (out, err, outcome) = sh(&sandbox, "grep '^Seccomp:' /proc/self/status");
    assert!(outcome.success(), "{outcome:?} {err}");
    assert!(out.contains("Seccomp:\t0"), "{out}");
}

#[test]
fn kill_action_ends_the_job_with_a_bad_syscall_verdict() {
    let mut sandbox = Sandbox::new();
    sandbox.seccomp(Seccomp::Custom(
        SeccompPolicy::new().action(SeccompAction::KillProcess),
    ));
    let job = sandbox
        .spawn(Command::new("unshare").args(["-U", "true"]))
        .expect("spawn");
    let outcome = job.wait().expect("wait");
    // init names the call (unshare) and kills the cell.
    assert_eq!(
        outcome.state,
        jobcell::JobState::BadSyscall {
            syscall: Some(libc::SYS_unshare)
        },
        "{outcome:?}"
    );
    assert_eq!(outcome.signal(), Some(libc::SIGKILL), "{outcome:?}");
    // A child of the job makes the call: the whole job ends with the verdict.
    let (out, _, outcome) = sh(&sandbox, "unshare -U true; echo survived; sleep 5");
    assert!(!out.contains("survived"), "{out}");
    assert_eq!(
        outcome.state,
        jobcell::JobState::BadSyscall {
            syscall: Some(libc::SYS_unshare)
        },
        "{outcome:?}"
    );
    // Allowed programs are unaffected.
    let (_, err, outcome) = sh(&sandbox, "echo hi | cat >/dev/null");
    assert!(outcome.success(), "{outcome:?} {err}");
}

#[test]
fn custom_policy_denies_more() {
    let mut sandbox = Sandbox::new();
    sandbox.seccomp(Seccomp::Custom(SeccompPolicy::new().deny(libc::SYS_uname)));
    let (out, _, outcome) = sh(&sandbox, "uname -s; echo uname=$?");
    assert!(outcome.success(), "{outcome:?}");
    assert!(out.contains("uname=1"), "{out}");
}

#[test]
fn invalid_policy_is_refused_before_spawning() {
    let mut sandbox = Sandbox::new();
    sandbox.seccomp(Seccomp::Custom(
        SeccompPolicy::new().deny_errno(libc::SYS_getpid, 0),
    ));
    match sandbox.spawn(&Command::new("true")) {
        Err(Error::InvalidSetting {
            name: "seccomp", ..
        }) => {}
        other => panic!("expected InvalidSetting, got {:?}", other.map(|_| ())),
    }
}

/// A job that dies of SIGSYS which no filter of jobcell's named (here it
/// sends the signal itself, as a filter it installed on its own would):
/// still a bad system call, with no number to give.
#[test]
fn a_sigsys_nobody_named_is_a_bad_syscall_without_a_number() {
    for sandbox in [Sandbox::new(), {
        let mut kill_mode = Sandbox::new();
        kill_mode.seccomp(Seccomp::Custom(
            SeccompPolicy::new().action(SeccompAction::KillProcess),
        ));
        kill_mode
    }] {
        let (_, err, outcome) = sh(&sandbox, "kill -SYS $$");
        assert_eq!(
            outcome.state,
            jobcell::JobState::BadSyscall { syscall: None },
            "{outcome:?} {err}"
        );
        assert_eq!(outcome.signal(), Some(libc::SIGSYS), "{outcome:?}");
    }
}
