//! Helpers shared by the integration tests: running a job to completion,
//! and snapshots of the host process for leak checks.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jobcell::{Command, JobHandle, Outcome, Sandbox, Stream};
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Tests that compare host state before and after take this exclusively;
/// every other test takes it shared, so nothing runs beside a leak check.
static HOST: RwLock<()> = RwLock::new(());

pub fn shared() -> RwLockReadGuard<'static, ()> {
    HOST.read()
}

pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    HOST.write()
}

/// Everything a job printed, split by stream, and how it ended.
pub struct Ran {
    pub stdout: String,
    pub stderr: String,
    pub outcome: Outcome,
}

pub fn collect(job: &JobHandle) -> Ran {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for c in job.logs() {
        match c.stream {
            Stream::Stdout => out.extend_from_slice(&c.data),
            Stream::Stderr => err.extend_from_slice(&c.data),
        }
    }
    let outcome = job.wait().expect("wait");
    Ran {
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        outcome,
    }
}

/// Runs `sh -c script` in `sandbox` and collects everything.
pub fn sh(sandbox: &Sandbox, script: &str) -> Ran {
    let job = sandbox
        .spawn(Command::new("sh").args(["-c", script]))
        .unwrap_or_else(|e| panic!("spawn sh -c {script:?}: {e}"));
    collect(&job)
}

/// A sandbox with the defaults.
pub fn cell() -> Sandbox {
    Sandbox::new()
}

/// What the host process holds that a cell could leak.
#[derive(Debug, PartialEq, Eq)]
pub struct HostSnapshot {
    pub mounts: Vec<String>,
    pub fds: BTreeSet<String>,
    pub descendants: BTreeSet<(i32, String)>,
}

/// Mounts of this process's namespace, open descriptors (by target, leaving
/// out the library's warm caches, which refill on their own), and every
/// process below this one (zombies included).
pub fn snapshot() -> HostSnapshot {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut fds = BTreeSet::new();
    let cached: BTreeSet<String> = jobcell::__private::cached_descriptors()
        .iter()
        .map(|fd| fd.to_string())
        .collect();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if cached.contains(&*e.file_name().to_string_lossy()) {
            continue;
        }
        if let Ok(t) = std::fs::read_link(e.path()) {
            let t = t.to_string_lossy().into_owned();
            if t.starts_with("/proc/") {
                continue; // read_dir's own descriptor
            }
            fds.insert(format!("{}->{t}", e.file_name().to_string_lossy()));
        }
    }
    HostSnapshot {
        mounts,
        fds,
        descendants: descendants(std::process::id() as i32),
    }
}

/// Every process whose ancestry includes `root`, with its state and command line.
pub fn descendants(root: i32) -> BTreeSet<(i32, String)> {
    let mut parent = std::collections::HashMap::new();
    let mut desc = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // comm may contain spaces: fields after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.to_owned()) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (state, ppid) = (f[0].to_string(), f[1].parse::<i32>().unwrap_or(0));
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        parent.insert(pid, ppid);
        desc.insert(pid, format!("{state} {cmd}"));
    }
    let mut out = BTreeSet::new();
    for (&pid, d) in &desc {
        let mut p = pid;
        let mut hops = 0;
        while let Some(&pp) = parent.get(&p) {
            if pp == root {
                out.insert((pid, d.clone()));
                break;
            }
            p = pp;
            hops += 1;
            if pp <= 1 || hops > 64 {
                break;
            }
        }
    }
    out
}

/// Waits (briefly) until the host is back to `before`, then asserts it.
pub fn assert_no_leaks(before: &HostSnapshot, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = snapshot();
        if now == *before {
            return;
        }
        if Instant::now() > deadline {
            assert_eq!(now.mounts, before.mounts, "{what}: mounts leaked");
            assert_eq!(now.fds, before.fds, "{what}: descriptors leaked");
            assert_eq!(
                now.descendants, before.descendants,
                "{what}: processes leaked"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The host range that cell ids map to (what the default mapping of a root host uses).
pub fn subid_start(file: &str) -> u32 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut it = l.split(':');
                let (n, s) = (it.next()?, it.next()?);
                (n == "root" || n == "0").then(|| s.parse().ok()).flatten()
            })
        })
        .unwrap_or(100_000)
}

/// A static C program from `tests/helper/<source>`, compiled with `cc -static
/// -O2 <extra>` into the target's test directory as `out_name` (or the
/// prebuilt binary named by the environment variable `prebuilt`, as in the
/// cgroup v2 VM). Rebuilt only when the source is newer, and swapped in
/// atomically: other test processes may be binding it.
pub fn static_helper(source: &str, out_name: &str, prebuilt: &str, extra: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(prebuilt) {
        return PathBuf::from(p);
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/helper")
        .join(source);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = dir.join(out_name);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&out) >= modified(&src) {
        return out;
    }
    let tmp = dir.join(format!("{out_name}.{}", std::process::id()));
    let st = std::process::Command::new("cc")
        .args(["-static", "-O2"])
        .args(extra)
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("run cc ({e}); or set {prebuilt} to a prebuilt helper"));
    assert!(st.success(), "cc -static failed for {}", src.display());
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// Every directory under /sys/fs/cgroup named `name` (one per hierarchy on v1).
pub fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, name: &str, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            if e.file_name() == name {
                out.push(e.path());
            }
            if depth < 12 {
                walk(&e.path(), name, depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), name, 0, &mut out);
    out
}
