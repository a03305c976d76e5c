//! File helpers shared by both hierarchies: every cgroup file is read, parsed
//! and written here, so every failure names the file, the value and the errno.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Errno, Error, Result};

/// `CGROUP2_SUPER_MAGIC`.
pub(crate) const CGROUP2_MAGIC: i64 = 0x6367_7270;
/// `CGROUP_SUPER_MAGIC` (v1).
pub(crate) const CGROUP1_MAGIC: i64 = 0x0027_e0eb;

/// How many times a chain of `mkdir`s is retried when a parent vanished
/// under us (another thread or process removed it because it was empty).
pub(crate) const CREATE_ATTEMPTS: usize = 16;

/// What probably causes `errno` on `file`, for an error message.
pub(crate) fn hint(file: &Path, errno: Errno) -> Option<&'static str> {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    Some(match errno.0 {
        libc::EACCES | libc::EPERM => {
            "jobcell needs write access to its cgroup tree: run as root, or delegate a subtree \
             (systemd Delegate=yes) and point Sandbox::cgroup_base at it; see docs/cgroups.md, \
             and jobcell::host::check() for what this host lacks"
        }
        libc::EROFS => {
            "the cgroup file system is read-only here (a container without a writable cgroupfs?); \
             see docs/cgroups.md, and jobcell::host::check() for what this host lacks"
        }
        libc::EBUSY if name == "cgroup.subtree_control" => {
            "the cgroup holds processes, and cgroup v2 forbids enabling controllers then \
             (no-internal-processes rule); give jobcell an empty delegated cgroup"
        }
        libc::EBUSY => "the cgroup is still in use",
        libc::ENOENT => {
            "the file is missing: the controller is not enabled for this cgroup, or the kernel \
             lacks this feature"
        }
        libc::EINVAL | libc::ERANGE if name.starts_with("cpuset.") => {
            "the CPU list names CPUs outside the parent cgroup's cpuset"
        }
        libc::ENOSPC if name == "cgroup.procs" || name == "tasks" => {
            "the cgroup cannot take processes (an empty cpuset, or a pids limit already reached)"
        }
        libc::ENOSPC => "cgroup.max.descendants or cgroup.max.depth of an ancestor is reached",
        libc::ENODEV => {
            "the device does not take IO limits (a partition or a virtual device?); name whole \
             disks in Limits::io_devices"
        }
        libc::EINVAL => "the kernel refused the value",
        _ => return None,
    })
}

pub(crate) fn cgroup_error(
    op: &'static str,
    path: &Path,
    value: Option<&str>,
    errno: Errno,
) -> Error {
    Error::Cgroup {
        op,
        path: path.to_owned(),
        value: value.map(str::to_owned),
        errno,
        hint: hint(path, errno),
    }
}

/// Writes `value` to an existing cgroup file in one `write(2)`, as the kernel
/// wants. Never creates the file: a missing file means a missing controller.
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        // Ignored by cgroupfs (as for a shell's `>`); keeps test fixtures exact.
        .truncate(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .and_then(|mut f| f.write(value.as_bytes()).map(drop))
        .map_err(|e| cgroup_error("write", path, Some(value), Errno::from(&e)))
}

/// Reads a cgroup file as text.
pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| cgroup_error("read", path, None, Errno::from(&e)))
}

/// Reads a file holding one number; `None` if it is absent or unreadable
/// (usage figures are best effort; older kernels lack some files).
pub(crate) fn read_u64_opt(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// One value of a flat-keyed file (`cpu.stat`, `memory.events`, `memory.oom_control`).
pub(crate) fn flat_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut it = line.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok())?
    })
}

/// Creates a cgroup directory. `Ok(true)` if it was created, `Ok(false)` if it already existed.
pub(crate) fn mkdir(path: &Path) -> Result<bool> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(cgroup_error("mkdir", path, None, Errno::from(&e))),
    }
}

/// Creates job `id`'s directory under `proc_dir`; one that exists already is
/// an error (job ids are unique: it belongs to another job).
pub(crate) fn mkdir_job(proc_dir: &Path, id: &str) -> Result<PathBuf> {
    let dir = child_dir(proc_dir, id)?;
    if !mkdir(&dir)? {
        return Err(job_exists(dir));
    }
    Ok(dir)
}

/// The error for a job directory that exists already.
pub(crate) fn job_exists(dir: PathBuf) -> Error {
    Error::Cgroup {
        op: "mkdir",
        path: dir,
        value: None,
        errno: Errno(libc::EEXIST),
        hint: Some("a cgroup for this job id already exists"),
    }
}

/// Removes a cgroup directory; `Ok` if it is gone (also if it was never there).
pub(crate) fn rmdir(path: &Path) -> std::result::Result<(), Errno> {
    match std::fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(Errno::from(&e)),
    }
}

/// True when the error means a directory on the way vanished (retry the chain).
pub(crate) fn vanished(e: &Error) -> bool {
    matches!(
        e,
        Error::Cgroup {
            errno: Errno(libc::ENOENT),
            ..
        }
    )
}

/// The pids listed in a `cgroup.procs` file.
pub(crate) fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| parse_pids(&t))
        .unwrap_or_default()
}

pub(crate) fn parse_pids(text: &str) -> Vec<i32> {
    text.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// SIGKILLs every process listed in `dir`'s `cgroup.procs`, a few rounds
/// (a process may fork between the read and the kill).
pub(crate) fn kill_listed(dir: &Path) {
    for _ in 0..8 {
        let pids = procs(dir);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// Polls `done` until it holds or `limit` passes; true if it held.
pub(crate) fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    let mut pause = Duration::from_micros(200);
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Removes `dir` once the processes in it are gone, killing them with `kill`
/// if it is still busy. Best effort: returns false if it stays.
pub(crate) fn remove_dir_killing(
    dir: &Path,
    kill: impl Fn(&Path),
    empty: impl Fn(&Path) -> bool,
) -> bool {
    match rmdir(dir) {
        Ok(()) => return true,
        Err(Errno(libc::EBUSY)) => {}
        Err(_) => return false,
    }
    kill(dir);
    wait_until(Duration::from_secs(2), || empty(dir));
    // The last exiting task may still be unlinking from the cgroup for a moment.
    let mut gone = false;
    wait_until(Duration::from_millis(500), || {
        gone = rmdir(dir).is_ok();
        gone
    });
    gone
}

/// A sorted CPU list as the kernel writes it: `[0, 1, 2, 5]` is `"0-2,5"`.
pub(crate) fn render_cpu_list(cpus: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// A `Limits::cpus` list as the kernel writes it, validated.
pub(crate) fn cpus_value(list: &str) -> Result<String> {
    let cpus = crate::units::parse_cpu_list(list).map_err(|reason| Error::InvalidLimit {
        name: "cpus",
        value: list.to_owned(),
        reason,
    })?;
    Ok(render_cpu_list(&cpus))
}

/// True when the host has swap space in use or available (`/proc/swaps` lists a device).
pub(crate) fn host_has_swap() -> bool {
    std::fs::read_to_string("/proc/swaps").is_ok_and(|t| lists_swap(&t))
}

/// Whether a `/proc/swaps` text lists a device under its header.
fn lists_swap(proc_swaps: &str) -> bool {
    proc_swaps.lines().skip(1).any(|l| !l.trim().is_empty())
}

/// The type of the file system holding `path` (statfs `f_type`).
#[allow(clippy::unnecessary_cast)] // f_type is i64 here, but not on every architecture
pub(crate) fn fs_type(path: &Path) -> std::result::Result<i64, Errno> {
    rustix::fs::statfs(path)
        .map(|s| s.f_type as i64)
        .map_err(Errno::from)
}

/// `dir.join(name)`, refusing any name that is not one plain path component,
/// so a job id can never lead outside the tree.
pub(crate) fn child_dir(dir: &Path, name: &str) -> Result<PathBuf> {
    let mut comps = Path::new(name).components();
    let plain = matches!(
        (comps.next(), comps.next()),
        (Some(std::path::Component::Normal(c)), None) if c == name
    );
    if !plain || name.starts_with('.') {
        return Err(Error::InvalidJobId {
            id: name.chars().take(80).collect(),
            reason: "would leave the cgroup tree",
        });
    }
    let joined = dir.join(name);
    debug_assert!(joined.starts_with(dir) && joined.parent() == Some(dir));
    Ok(joined)
}

#[cfg(test)]
pub(crate) mod fixture {
    //! A temporary directory standing in for cgroupfs, like youki's test helpers.

    use std::path::Path;

    pub(crate) fn set(dir: &Path, file: &str, contents: &str) {
        std::fs::write(dir.join(file), contents).expect("write fixture");
    }

    pub(crate) fn get(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).expect("read fixture")
    }

    /// A directory with empty files of these names (the kernel creates them in a real cgroup).
    pub(crate) fn cgroup(files: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        for f in files {
            set(d.path(), f, "");
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn write_never_creates_files() {
        let d = fixture::cgroup(&["memory.max"]);
        write(&d.path().join("memory.max"), "1048576").unwrap();
        assert_eq!(fixture::get(d.path(), "memory.max"), "1048576");
        let e = write(&d.path().join("pids.max"), "32").unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("pids.max") && s.contains("\"32\"") && s.contains("ENOENT"),
            "{s}"
        );
        assert!(s.contains("hint"), "{s}");
        assert!(!d.path().join("pids.max").exists());
    }

    #[test]
    fn flat_keys() {
        let t = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n";
        assert_eq!(flat_key(t, "usage_usec"), Some(1500));
        assert_eq!(flat_key(t, "system_usec"), Some(500));
        assert_eq!(flat_key(t, "usage"), None);
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(flat_key(oom, "oom_kill"), Some(3));
    }

    #[test]
    fn read_numbers() {
        let d = fixture::cgroup(&[]);
        fixture::set(d.path(), "memory.current", "4096\n");
        fixture::set(d.path(), "bad", "max\n");
        assert_eq!(read_u64_opt(&d.path().join("memory.current")), Some(4096));
        assert_eq!(read_u64_opt(&d.path().join("bad")), None);
        assert_eq!(read_u64_opt(&d.path().join("absent")), None);
    }

    #[test]
    fn child_dirs_stay_inside() {
        let base = Path::new("/sys/fs/cgroup/jobcell/1-2-3");
        assert_eq!(child_dir(base, "abc_1-2").unwrap(), base.join("abc_1-2"));
        for bad in ["..", ".", "a/b", "/etc", "", ".hidden"] {
            assert!(child_dir(base, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mkdir_and_rmdir() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        assert!(mkdir(&p).unwrap());
        assert!(!mkdir(&p).unwrap());
        assert!(rmdir(&p).is_ok());
        assert!(rmdir(&p).is_ok(), "idempotent");
        assert!(mkdir(&d.path().join("no/such")).is_err());
    }

    #[test]
    fn hints_name_the_cause() {
        let p = Path::new("/sys/fs/cgroup/x/cgroup.subtree_control");
        assert!(hint(p, Errno(libc::EBUSY))
            .unwrap()
            .contains("no-internal-processes"));
        assert!(hint(p, Errno(libc::EROFS)).unwrap().contains("read-only"));
        assert!(hint(p, Errno(libc::EACCES))
            .unwrap()
            .contains("Delegate=yes"));
    }

    #[test]
    fn cpu_lists_render_as_ranges() {
        assert_eq!(render_cpu_list(&[0, 1, 2, 5]), "0-2,5");
        assert_eq!(render_cpu_list(&[3]), "3");
        assert_eq!(render_cpu_list(&[0, 2, 4, 5]), "0,2,4-5");
    }

    #[test]
    fn a_job_directory_is_made_once_and_only_inside() {
        let d = tempfile::tempdir().unwrap();
        let dir = mkdir_job(d.path(), "job1").unwrap();
        assert_eq!(dir, d.path().join("job1"));
        assert!(dir.is_dir());
        let e = mkdir_job(d.path(), "job1").unwrap_err();
        assert!(
            matches!(&e, Error::Cgroup { errno: Errno(libc::EEXIST), path, .. } if *path == dir),
            "another job's directory: {e}"
        );
        assert!(matches!(
            mkdir_job(d.path(), ".."),
            Err(Error::InvalidJobId { .. })
        ));
    }

    #[test]
    fn rmdir_reports_a_directory_that_stays() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), "").unwrap();
        assert_eq!(rmdir(d.path()), Err(Errno(libc::ENOTEMPTY)));
        assert!(d.path().exists());
    }

    #[test]
    fn only_a_missing_directory_counts_as_vanished() {
        let p = Path::new("/sys/fs/cgroup/jobcell/1-2-3");
        assert!(vanished(&cgroup_error(
            "mkdir",
            p,
            None,
            Errno(libc::ENOENT)
        )));
        assert!(!vanished(&cgroup_error(
            "mkdir",
            p,
            None,
            Errno(libc::EACCES)
        )));
        assert!(!vanished(&job_exists(p.to_owned())));
    }

    #[test]
    fn listed_pids_are_read_and_killed() {
        assert_eq!(parse_pids("12\n345\n"), [12, 345]);
        assert_eq!(parse_pids(""), Vec::<i32>::new());
        let d = fixture::cgroup(&[]);
        assert!(
            procs(d.path()).is_empty(),
            "no cgroup.procs: nothing listed"
        );
        // A fixture lists two real processes; kill_listed kills both.
        let mut children: Vec<std::process::Child> = (0..2)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("60")
                    .spawn()
                    .unwrap()
            })
            .collect();
        let listed: String = children.iter().map(|c| format!("{}\n", c.id())).collect();
        fixture::set(d.path(), "cgroup.procs", &listed);
        assert_eq!(
            procs(d.path()),
            children.iter().map(|c| c.id() as i32).collect::<Vec<_>>()
        );
        kill_listed(d.path());
        for c in &mut children {
            let killed = wait_until(Duration::from_secs(5), || c.try_wait().unwrap().is_some());
            if !killed {
                let _ = c.kill();
            }
            let st = c.wait().unwrap();
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&st),
                Some(libc::SIGKILL)
            );
        }
    }

    #[test]
    fn wait_until_polls_until_the_condition_or_the_limit() {
        assert!(wait_until(Duration::from_secs(5), || true));
        let start = Instant::now();
        assert!(!wait_until(Duration::from_millis(30), || false));
        assert!(
            start.elapsed() >= Duration::from_millis(30),
            "gave up early"
        );
        let mut calls = 0;
        assert!(wait_until(Duration::from_secs(5), || {
            calls += 1;
            calls == 5
        }));
    }

    #[test]
    fn swap_is_a_device_listed_under_the_header() {
        let header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        assert!(!lists_swap(header));
        assert!(!lists_swap(""));
        assert!(lists_swap(&format!(
            "{header}/swapfile                               file\t\t131068\t\t0\t\t-2\n"
        )));
    }

    #[test]
    fn file_system_types_come_from_statfs() {
        // PROC_SUPER_MAGIC, TMPFS_MAGIC (a tempdir may be on disk: not checked).
        assert_eq!(fs_type(Path::new("/proc")), Ok(0x9fa0));
        assert_eq!(fs_type(Path::new("/no/such/dir")), Err(Errno(libc::ENOENT)));
    }

    proptest! {
        #[test]
        fn rendered_cpu_lists_parse_back(set in proptest::collection::btree_set(0u32..256, 1..40)) {
            let cpus: Vec<u32> = set.into_iter().collect();
            let text = render_cpu_list(&cpus);
            prop_assert_eq!(crate::units::parse_cpu_list(&text).unwrap(), cpus);
        }

        #[test]
        fn flat_key_never_panics(s in "\\PC{0,200}", k in "[a-z_]{0,10}") {
            let _ = flat_key(&s, &k);
        }

        #[test]
        fn pids_parse_never_panics(s in "[0-9 \\n-]{0,100}") {
            let _ = parse_pids(&s);
        }

        #[test]
        fn child_dir_never_escapes(name in "\\PC{0,20}") {
            let base = Path::new("/cg/base");
            if let Ok(p) = child_dir(base, &name) {
                prop_assert_eq!(p.parent(), Some(base));
            }
        }
    }
}
