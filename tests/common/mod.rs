//! Helpers shared by the integration tests: running a job to completion,
//! and snapshots of the host process for leak checks.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
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
    /// The spawner cells are cloned from: its pid, descriptors and memory
    /// maps (it serves every spawn, so whatever it keeps per request piles up).
    pub spawner: Option<SpawnerSnapshot>,
    /// This process's cgroup directories, in every hierarchy (see [`own_cgroups`]).
    pub cgroups: BTreeMap<String, usize>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct SpawnerSnapshot {
    pub pid: i32,
    pub fds: BTreeSet<String>,
    pub maps: Vec<String>,
}

/// Mounts of this process's namespace, open descriptors (by target, leaving
/// out the library's warm caches, which refill on their own), every process
/// below this one (zombies included), the spawner's descriptors and
/// mappings, and this process's cgroup directories.
pub fn snapshot() -> HostSnapshot {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let cached: BTreeSet<String> = jobcell::__private::cached_descriptors()
        .iter()
        .map(|fd| fd.to_string())
        .collect();
    let mut fds = descriptors("/proc/self/fd");
    fds.retain(|d| !cached.contains(d.split_once("->").map_or(d.as_str(), |(n, _)| n)));
    let spawner = jobcell::__private::spawner_pid().map(|pid| SpawnerSnapshot {
        pid,
        fds: descriptors(&format!("/proc/{pid}/fd")),
        maps: std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect(),
    });
    HostSnapshot {
        mounts,
        fds,
        descendants: descendants(std::process::id() as i32),
        spawner,
        cgroups: own_cgroups(),
    }
}

/// The descriptors listed in `dir` (a `/proc/PID/fd`), as `N->target`.
/// The descriptor this reads the listing through is left out by its
/// number, nothing else: a descriptor of any other `/proc` file counts.
pub fn descriptors(dir: &str) -> BTreeSet<String> {
    use rustix::fs::{Mode, OFlags};
    let mut out = BTreeSet::new();
    let Ok(fd) = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return out; // the process is gone
    };
    let own = std::os::fd::AsRawFd::as_raw_fd(&fd).to_string();
    let own_listing = dir == "/proc/self/fd";
    let mut entries = rustix::fs::Dir::new(fd).unwrap();
    while let Some(Ok(e)) = entries.next() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || (own_listing && name == own) {
            continue;
        }
        if let Ok(t) = std::fs::read_link(format!("{dir}/{name}")) {
            out.insert(format!("{name}->{}", t.to_string_lossy()));
        }
    }
    out
}

/// Every cgroup directory below this process's own jobcell directories
/// (`.../jobcell/<pid>-<start>-<pidns>/...`, in each hierarchy), by path
/// under `/sys/fs/cgroup`. The directories cgroup v1 makes ahead for jobs
/// (`.ready-<n>`) are a cache with a fixed size: they count by number, not
/// by name, so a refill under a new name is no leak but a missing or extra
/// one is.
pub fn own_cgroups() -> BTreeMap<String, usize> {
    fn walk(dir: &Path, depth: u32, prefix: &str, out: &mut BTreeMap<String, usize>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let mine = dir.file_name().is_some_and(|n| n == "jobcell") && name.starts_with(prefix);
            if mine {
                below(&path, out);
            } else if depth < 12 {
                walk(&path, depth + 1, prefix, out);
            }
        }
    }
    fn below(dir: &Path, out: &mut BTreeMap<String, usize>) {
        let key = dir
            .strip_prefix("/sys/fs/cgroup")
            .unwrap_or(dir)
            .to_string_lossy()
            .into_owned();
        let key = match key.rsplit_once("/.ready-") {
            Some((parent, n)) if n.bytes().all(|b| b.is_ascii_digit()) => {
                format!("{parent}/.ready-*")
            }
            _ => key,
        };
        *out.entry(key).or_default() += 1;
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    below(&e.path(), out);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        Path::new("/sys/fs/cgroup"),
        0,
        &format!("{}-", std::process::id()),
        &mut out,
    );
    out
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
            assert_spawner_at_rest(&now, what);
            return;
        }
        if Instant::now() > deadline {
            assert_eq!(now.mounts, before.mounts, "{what}: mounts leaked");
            assert_eq!(now.fds, before.fds, "{what}: descriptors leaked");
            assert_eq!(
                now.descendants, before.descendants,
                "{what}: processes leaked"
            );
            assert_eq!(now.cgroups, before.cgroups, "{what}: cgroups leaked");
            match (&now.spawner, &before.spawner) {
                (Some(n), Some(b)) if n.pid == b.pid => {
                    assert_eq!(n.fds, b.fds, "{what}: the spawner kept descriptors");
                    assert_eq!(n.maps, b.maps, "{what}: the spawner kept mappings");
                }
                (n, b) => panic!(
                    "{what}: the spawner changed: {:?} -> {:?}",
                    b.as_ref().map(|s| s.pid),
                    n.as_ref().map(|s| s.pid)
                ),
            }
            unreachable!("{what}: snapshots differ");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Between spawns the spawner maps no shared memory: the plan of a past
/// job (its arena) is unmapped once its cell is cloned. Every later cell's
/// init is a copy of the spawner, so whatever it keeps mapped, every cell
/// gets; comparing with an earlier snapshot is not enough, as arenas are
/// reused at the same addresses.
pub fn assert_spawner_at_rest(now: &HostSnapshot, what: &str) {
    let Some(s) = &now.spawner else { return };
    let shared: Vec<&String> = s
        .maps
        .iter()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|perms| perms.ends_with('s'))
        })
        .collect();
    assert!(
        shared.is_empty(),
        "{what}: the spawner keeps shared mappings: {shared:#?}"
    );
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
    cgroup_dirs_where(|n| n == name)
}

/// Every directory under /sys/fs/cgroup whose name `pick` accepts.
pub fn cgroup_dirs_where(pick: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    fn walk(dir: &Path, pick: &dyn Fn(&str) -> bool, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            if e.file_name().to_str().is_some_and(pick) {
                out.push(e.path());
            }
            if depth < 12 {
                walk(&e.path(), pick, depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), &pick, 0, &mut out);
    out
}
