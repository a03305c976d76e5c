//! The host process's own state: a SIGPIPE left at its default, low hard
//! limits, and its memory, which no cell may hold a copy of.

use super::*;

// SIGPIPE.

/// A job that closes its stdin while the host still feeds it: the host's
/// write fails with EPIPE, and a host with SIGPIPE at its default
/// disposition (C and FFI hosts) must not die of it.
#[test]
fn a_job_closing_its_stdin_does_not_kill_a_default_sigpipe_host() {
    in_child("sigpipe", None);
}

pub(super) fn closed_stdin_under_default_sigpipe() {
    // SAFETY: resets one disposition; no handler is installed.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    for _ in 0..3 {
        let job = Sandbox::new()
            .spawn(
                Command::new("sh")
                    .args(["-c", "exec 0<&-; sleep 0.3; echo alive"])
                    .stdin(Stdin::Bytes(vec![b'x'; 1 << 20].into())),
            )
            .unwrap();
        let ran = collect(&job);
        assert_eq!(ran.stdout, "alive\n", "{:?}", ran.outcome);
    }
}

// rlimits.

/// Under `ulimit -n 1024` (soft and hard), as many hosts run: the job's
/// defaults fit under the hard limit; asking for more is an error that
/// names the limit, before anything runs.
#[test]
fn default_rlimits_fit_under_a_low_hard_limit() {
    in_child("low-hard-limit", None);
}

pub(super) fn low_hard_limit() {
    set_nofile(1024, 1024);
    let ran = sh(&Sandbox::new(), "ulimit -Sn; ulimit -Hn");
    assert_eq!(
        ran.stdout, "1024\n1024\n",
        "{:?} {}",
        ran.outcome, ran.stderr
    );
    let mut sb = Sandbox::new();
    sb.rlimit(Rlimit::OpenFiles, 256, 512);
    assert_eq!(sh(&sb, "ulimit -Sn; ulimit -Hn").stdout, "256\n512\n");
    let before = settled();
    sb.rlimit(Rlimit::OpenFiles, 2048, 2048);
    let e = sb.spawn(&Command::new("true")).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidSetting {
                name: "RLIMIT_NOFILE",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("1024"), "{e}");
    nothing_left(&before, &job_cgroups(), "a refused rlimit");
}

// The host's memory.

/// A value only this run knows, so it is in no binary's data.
pub(super) fn fresh_marker() -> String {
    let mut b = [0u8; 12];
    // SAFETY: fills the buffer.
    assert_eq!(
        unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) },
        b.len() as isize
    );
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("marker{hex}")
}

/// Whether `pid`'s memory holds `needle` anywhere it can be read.
pub(super) fn memory_holds(pid: u32, needle: &[u8]) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    for line in maps.lines() {
        let Some((range, _)) = line.split_once(' ') else {
            continue;
        };
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        if line.contains("[vvar") || line.contains("[vsyscall]") {
            continue;
        }
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        if buf.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    false
}

/// The cell's init never holds a copy of the host's memory on the default
/// path (it is cloned from the spawner); on a fallback path, where the host
/// clones it, it does, and then the job still sees none of it: not in
/// `/proc/1/cmdline`, not in `/proc/1/environ`.
#[test]
fn init_holds_no_host_memory_and_the_job_sees_none() {
    in_child("host-memory", Some(&fresh_marker()));
}

pub(super) fn host_memory() {
    let marker = std::env::var(MARKER).unwrap();
    // On the heap too.
    let on_heap = marker.repeat(3);
    let job_sees = |sb: &Sandbox| {
        sh(
            sb,
            "cat /proc/1/cmdline /proc/1/environ /proc/self/environ 2>&1; true",
        )
        .stdout
    };

    let sb = Sandbox::new();
    let job = sb.spawn(Command::new("sleep").arg("10")).unwrap();
    let init = job.pid().unwrap();
    assert!(
        !memory_holds(init, marker.as_bytes()),
        "the default path's init holds the host's memory"
    );
    drop(job);
    let seen = job_sees(&sb);
    assert!(
        !seen.contains(&marker),
        "default path: the job saw {seen:?}"
    );

    // A changed rlimit is not a fallback: a new spawner copies it.
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let hard = nofile.maximum.unwrap_or(1 << 20);
    set_nofile(hard.min(4096) - 1, hard);
    let job = sb.spawn(Command::new("sleep").arg("10")).unwrap();
    let init = job.pid().unwrap();
    assert!(
        !memory_holds(init, marker.as_bytes()),
        "after an rlimit change, init holds the host's memory"
    );
    drop(job);

    // Fallback paths: a sysfs (the cell needs the host's mount table).
    let mut sysfs = Sandbox::new();
    sysfs.sysfs(true);
    let job = sysfs.spawn(Command::new("sleep").arg("10")).unwrap();
    let init = job.pid().unwrap();
    assert!(
        memory_holds(init, marker.as_bytes()),
        "a host clone's init holds the host's memory (docs/security.md): the scan is blind"
    );
    drop(job);
    let seen = job_sees(&sysfs);
    assert!(!seen.contains(&marker), "sysfs: the job saw {seen:?}");

    // Every fallback path, as the host clones: the same.
    let mut from_host = Sandbox::new();
    inject(&mut from_host, Fault::CloneFromHost);
    let seen = job_sees(&from_host);
    assert!(!seen.contains(&marker), "host clone: the job saw {seen:?}");
    from_host.limits(Limits {
        pids: Some(16),
        ..Default::default()
    });
    let seen = job_sees(&from_host);
    assert!(
        !seen.contains(&marker),
        "host clone, cgroup: the job saw {seen:?}"
    );
    assert!(!on_heap.is_empty());
}
