#![cfg(feature = "seccomp")]
//! The escape suite: real attacks from inside a cell. Each test runs one
//! attack, asserts that it failed (from what the job itself observed) and
//! that the host is as it was (from the host's side). Each says which layer
//! stops the attack: user namespace, PID / mount / network / IPC / UTS
//! namespace, seccomp, the empty capability sets, `no_new_privs`, cgroups,
//! the supervisor. Where one layer is enough to hold, a second run with the
//! seccomp filter disabled shows the layer below holding on its own.
//!
//! The attacks are in `tests/helper/escape.c`, built static on the host
//! (`cc -static`, or `JOBCELL_TEST_ESCAPE_HELPER`) and bound into each cell
//! at `/esc`. It prints one line per attempt, `NAME ok` or `NAME ERRNO`.
//!
//! Tests that compare host-wide state (memory, processes, mounts) take the
//! exclusive lock of `common`; the others take it shared.
//!
//! `docs/security.md` maps past CVEs of peer tools to the tests here. A
//! module per family of attacks: `terminal`, `host_files`, `processes`,
//! `mounts`, `privileges`, `kernel`, `resources`, `shared`, `planted`,
//! `budgets`; the helpers they share are here.

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{collect, exclusive, shared, subid_start, Ran};
use jobcell::{
    Command, Error, JobState, Limits, Network, Sandbox, Seccomp, SeccompAction, SeccompPolicy,
    Stdin, TimeLimit,
};

const MIB: u64 = 1 << 20;

mod budgets;
mod host_files;
mod kernel;
mod mounts;
mod planted;
mod privileges;
mod processes;
mod resources;
mod shared;
mod terminal;

// ---------------------------------------------------------------------------
// Helpers

/// The static attacker program, bound into every attacking cell at `/esc`.
fn helper() -> &'static Path {
    static HELPER: OnceLock<PathBuf> = OnceLock::new();
    // Not position-independent: the i386 attack passes pointers to its
    // static data in 32-bit registers.
    HELPER.get_or_init(|| {
        common::static_helper(
            "escape.c",
            "jc-escape",
            "JOBCELL_TEST_ESCAPE_HELPER",
            &["-no-pie"],
        )
    })
}

/// A default cell with the attacker bound in.
fn attacker() -> Sandbox {
    let mut s = Sandbox::new();
    s.bind_ro(helper(), "/esc");
    s
}

fn without_seccomp(mut s: Sandbox) -> Sandbox {
    s.seccomp(Seccomp::Disabled);
    s
}

fn run(sandbox: &Sandbox, args: &[&str]) -> Ran {
    let job = sandbox
        .spawn(Command::new(args[0]).args(&args[1..]))
        .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
    collect(&job)
}

fn sh(sandbox: &Sandbox, script: &str) -> Ran {
    run(sandbox, &["sh", "-c", script])
}

/// What the helper reported: one result per attempt.
struct Attempts<'a>(&'a Ran);

impl Attempts<'_> {
    /// The result of attempt `name` (`"ok"`, `"ok: ..."` or an errno name).
    fn get(&self, name: &str) -> &str {
        let prefix = format!("{name} ");
        self.0
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| {
                panic!(
                    "no result for {name}:\n{}\nstderr: {}",
                    self.0.stdout, self.0.stderr
                )
            })
    }

    /// Attempt `name` failed with exactly `errno`.
    fn denied(&self, name: &str, errno: &str) {
        assert_eq!(
            self.get(name),
            errno,
            "{name}: expected {errno}\n{}",
            self.0.stdout
        );
    }
}

/// The result an attempt on `path` gives in a cell: `result` where this
/// kernel has the file (the host sees it too), ENOENT where it does not.
fn present_or_enoent(path: &str, result: &'static str) -> &'static str {
    if std::fs::symlink_metadata(path).is_ok() {
        result
    } else {
        "ENOENT"
    }
}

fn attempts(r: &Ran) -> Attempts<'_> {
    assert!(
        r.outcome.success(),
        "the helper did not finish: {:?}\n{}\n{}",
        r.outcome,
        r.stdout,
        r.stderr
    );
    Attempts(r)
}

/// A host secret, outside anything bound into a cell.
struct Secret {
    dir: tempfile::TempDir,
    path: PathBuf,
}

const SECRET: &str = "host secret 7c1f";

fn secret() -> Secret {
    let dir = tempfile::Builder::new()
        .prefix("jobcell-escape")
        .tempdir()
        .unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, SECRET).unwrap();
    // World-readable: only isolation keeps it from the job, not permissions.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    Secret { dir, path }
}

impl Secret {
    fn assert_unchanged(&self) {
        assert_eq!(std::fs::read_to_string(&self.path).unwrap(), SECRET);
    }
}

/// Every process on the host whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<(i32, String)> {
    common::descendants(1)
        .into_iter()
        .filter(|(_, c)| c.contains(marker))
        .collect()
}

fn wait_until_gone(marker: &str, within: Duration) -> Vec<(i32, String)> {
    let end = Instant::now() + within;
    loop {
        let left = processes_with(marker);
        if left.is_empty() || Instant::now() > end {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A number no other test (or process) has on its command line.
fn marker(base: u32) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}", base + (std::process::id() * 7 + n) % 99_991)
}

/// A host process that runs as the job's own host uid, so that only the PID
/// namespace keeps the job from signalling or tracing it.
struct Sentinel(std::process::Child);

impl Sentinel {
    fn start() -> Sentinel {
        let uid = subid_start("/etc/subuid") + 1000;
        let gid = subid_start("/etc/subgid") + 1000;
        let child = std::process::Command::new("sleep")
            .arg("1000")
            .uid(uid)
            .gid(gid)
            .spawn()
            .unwrap();
        Sentinel(child)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    fn assert_alive_and_untraced(&mut self) {
        assert!(
            self.0.try_wait().unwrap().is_none(),
            "the host sentinel died"
        );
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        assert!(status.contains("TracerPid:\t0\n"), "{status}");
        assert!(!status.contains("State:\tt"), "{status}");
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn meminfo(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/meminfo"))
}

/// The SysV shared memory segments of the host's IPC namespace (shmid, size).
fn host_shm_segments() -> BTreeSet<(String, String)> {
    std::fs::read_to_string("/proc/sysvipc/shm")
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].to_string(), f[3].to_string())
        })
        .collect()
}

/// Reads the job's stdout until a line starts with `prefix`; returns that
/// line (`None` if the job ended first). The job goes on running.
fn wait_for_line(job: &jobcell::JobHandle, prefix: &str) -> Option<String> {
    let mut out = Vec::new();
    for c in job.logs() {
        if c.stream == jobcell::Stream::Stdout {
            out.extend_from_slice(&c.data);
            let text = String::from_utf8_lossy(&out);
            if let Some(l) = text.lines().find(|l| l.starts_with(prefix)) {
                if text.contains(&format!("{l}\n")) {
                    return Some(l.to_string());
                }
            }
        }
    }
    None
}
