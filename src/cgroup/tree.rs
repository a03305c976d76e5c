//! The manager of jobcell's part of the cgroup tree: probes the host once,
//! finds the base, names this process's directory, and sweeps stale ones.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::probe::{self, Host};
use super::{common, v1, v2, Controller, JobCgroup, Resources, RunAhead};
use crate::error::{Errno, Error, Result};

/// The default base's name, under this process's own cgroup.
pub(crate) const BASE_NAME: &str = "jobcell";

pub(crate) struct CgroupTree {
    backend: Backend,
    owner: Owner,
}

enum Backend {
    V2(v2::Tree),
    V1(v1::Tree),
    /// Why no cgroup can be had.
    Unavailable(String),
}

impl CgroupTree {
    /// Opens the tree under `base` (a delegated directory), or the default
    /// `<own cgroup>/jobcell`. Never fails: an unusable tree says why when a
    /// job needs it.
    pub(crate) fn open(base: Option<&Path>) -> CgroupTree {
        let owner = Owner::current();
        let host = probe::probe();
        let backend = match base {
            None => default_backend(host, &owner),
            Some(b) => configured_backend(b, host, &owner),
        };
        CgroupTree { backend, owner }
    }

    /// Descriptors the tree keeps open on purpose.
    pub(crate) fn cached_descriptors(&self) -> Vec<std::os::fd::RawFd> {
        match &self.backend {
            Backend::V1(t) => t.cached_descriptors(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn usable(&self) -> bool {
        match &self.backend {
            Backend::V2(_) => true,
            Backend::V1(t) => t.usable(),
            Backend::Unavailable(_) => false,
        }
    }

    /// Creates the cgroup of job `id` with `limits` written into it.
    /// `Ok(None)`: no cgroup, and the limits need none.
    pub(crate) fn create_job(
        &self,
        id: &str,
        limits: &Resources,
        accounting: bool,
        run_ahead: RunAhead,
    ) -> Result<Option<JobCgroup>> {
        match &self.backend {
            Backend::V2(t) => t.create_job(id, limits, accounting),
            Backend::V1(t) => t.create_job(id, limits, accounting, run_ahead),
            Backend::Unavailable(reason) => match super::required(limits).first() {
                Some((limit, c)) => Err(Error::ControllerUnavailable {
                    limit,
                    controller: display_name(*c),
                    reason: reason.clone(),
                }),
                None => Ok(None),
            },
        }
    }

    /// Removes per-process directories whose owner is gone (killing what is
    /// left in them), and the default base if that leaves it empty.
    /// Returns how many job cgroups it removed.
    pub(crate) fn sweep_stale(&self) -> Result<usize> {
        let bases: Vec<(PathBuf, bool)> = match &self.backend {
            Backend::V2(t) => {
                let (b, owned) = t.base();
                vec![(b.to_owned(), owned)]
            }
            Backend::V1(t) => t.bases().map(|(b, o)| (b.to_owned(), o)).collect(),
            Backend::Unavailable(_) => return Ok(0),
        };
        let mut removed = BTreeSet::new();
        for (base, owned) in bases {
            sweep_base(&base, &self.owner, &mut removed)?;
            if owned {
                let _ = common::rmdir(&base);
            }
        }
        if let Backend::V2(t) = &self.backend {
            // Empty once the processes moved into it have exited.
            if let Some(leaf) = t.leaf() {
                let _ = common::rmdir(&leaf);
            }
        }
        Ok(removed.len())
    }
}

/// A controller's name for messages when the hierarchy is not known.
fn display_name(c: Controller) -> &'static str {
    match c {
        Controller::CpuAcct => "cpu",
        c => c.v2_name().unwrap_or(c.v1_name()),
    }
}

fn default_backend(host: Host, owner: &Owner) -> Backend {
    match host {
        Host::V2 { own: Some(own), .. } => {
            let (top, base) = default_base_v2(&own);
            Backend::V2(v2::Tree::new(top, base, true, owner.name()))
        }
        Host::V2 { mount, own: None } => Backend::Unavailable(format!(
            "this process's cgroup (/proc/self/cgroup) is not visible under {}; point \
             Sandbox::cgroup_base at a delegated cgroup",
            mount.display()
        )),
        Host::V1 { hierarchies } => {
            let bases = hierarchies
                .into_iter()
                .map(|h| v1::Base {
                    dir: h.own.map(|o| o.join(BASE_NAME)).ok_or_else(|| {
                        format!(
                            "this process's {} cgroup is not visible under {}",
                            h.controllers.join(","),
                            h.mount.display()
                        )
                    }),
                    controllers: h.controllers,
                    owned: true,
                })
                .collect();
            Backend::V1(v1::Tree::new(bases, owner.name()))
        }
        Host::Unavailable { reason } => Backend::Unavailable(reason),
    }
}

/// The top of the default v2 tree and its base, for a process whose own
/// cgroup is `own`: `(<own>, <own>/jobcell)`.
pub(crate) fn default_base_v2(own: &Path) -> (PathBuf, PathBuf) {
    let mut top = own.to_owned();
    // A process jobcell moved into the leaf shares the tree beside it.
    if top.file_name().is_some_and(|n| n == v2::LEAF) {
        top.pop();
    }
    let base = top.join(BASE_NAME);
    (top, base)
}

fn configured_backend(base: &Path, host: Host, owner: &Owner) -> Backend {
    let shown = base.display();
    match common::fs_type(base) {
        Err(errno) => Backend::Unavailable(format!("the cgroup base {shown}: {errno}")),
        Ok(common::CGROUP2_MAGIC) => Backend::V2(v2::Tree::new(
            base.to_owned(),
            base.to_owned(),
            false,
            owner.name(),
        )),
        Ok(common::CGROUP1_MAGIC) => {
            let Host::V1 { hierarchies } = host else {
                return Backend::Unavailable(format!(
                    "the cgroup base {shown} is in a cgroup v1 hierarchy jobcell does not use"
                ));
            };
            let Some(rel) = hierarchies
                .iter()
                .find_map(|h| base.strip_prefix(&h.mount).ok())
            else {
                return Backend::Unavailable(format!(
                    "the cgroup base {shown} is in no mounted v1 hierarchy"
                ));
            };
            // The same place in every hierarchy; jobcell never creates the base itself.
            let bases = hierarchies
                .iter()
                .map(|h| {
                    let d = h.mount.join(rel);
                    v1::Base {
                        dir: if d.is_dir() {
                            Ok(d)
                        } else {
                            Err(format!("the cgroup base {} does not exist", d.display()))
                        },
                        controllers: h.controllers.clone(),
                        owned: false,
                    }
                })
                .collect();
            Backend::V1(v1::Tree::new(bases, owner.name()))
        }
        Ok(t) => Backend::Unavailable(format!(
            "the cgroup base {shown} is not on a cgroup file system (statfs type {t:#x})"
        )),
    }
}

fn sweep_base(base: &Path, me: &Owner, removed: &mut BTreeSet<(String, String)>) -> Result<()> {
    let entries = match std::fs::read_dir(base) {
        Ok(e) => e,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(common::cgroup_error("list", base, None, Errno::from(&e))),
    };
    let mut others = None;
    for e in entries.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let Some(owner) = Owner::parse(&name) else {
            continue;
        };
        let alive = if owner.pidns == me.pidns {
            owner == *me || owner.alive()
        } else {
            // Another PID namespace's pids mean nothing here.
            others
                .get_or_insert_with(OtherNamespaces::scan)
                .alive(&owner)
        };
        if alive {
            continue;
        }
        let dir = e.path();
        for j in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let job = j.path();
            if !job.is_dir() {
                continue;
            }
            thaw(&job);
            if common::remove_dir_killing(&job, v2::kill_dir, |d| common::procs(d).is_empty()) {
                removed.insert((name.clone(), j.file_name().to_string_lossy().into_owned()));
            }
        }
        let _ = common::rmdir(&dir);
    }
    Ok(())
}

/// A cgroup its crashed owner left frozen would never let its processes die.
fn thaw(dir: &Path) {
    let v1 = dir.join("freezer.state");
    if v1.exists() {
        let _ = common::write(&v1, "THAWED");
    }
    let v2 = dir.join("cgroup.freeze");
    if v2.exists() {
        let _ = common::write(&v2, "0");
    }
}

/// The process that owns a per-process directory: pid, start time (clock
/// ticks after boot, which defeats pid reuse) and pid namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pid: u32,
    start: u64,
    pidns: u64,
}

impl Owner {
    pub(crate) fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            pid,
            start: start_time(pid).unwrap_or(0),
            pidns: rustix::fs::stat("/proc/self/ns/pid").map_or(0, |s| s.st_ino),
        }
    }

    /// `<pid>-<start>-<pidns>`.
    pub(crate) fn name(&self) -> String {
        format!("{}-{}-{}", self.pid, self.start, self.pidns)
    }

    pub(crate) fn parse(name: &str) -> Option<Owner> {
        let mut it = name.split('-');
        let o = Owner {
            pid: it.next()?.parse().ok()?,
            start: it.next()?.parse().ok()?,
            pidns: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(o)
    }

    fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }
}

/// The processes of other PID namespaces, to tell whether the owner of a
/// directory named from one of them is alive.
///
/// From the initial PID namespace every process is visible (to a process
/// /proc lets see them all): an owner found nowhere is gone, and its
/// namespace may be too. From any other namespace, or when /proc hides
/// processes, an owner may live where this process cannot see: nothing of
/// another namespace is swept then.
struct OtherNamespaces {
    /// `(pidns, start time)` of every visible process; `None` when this
    /// process does not see them all.
    seen: Option<BTreeSet<(u64, u64)>>,
}

/// The inode of the initial PID namespace (`PROC_PID_INIT_INO`).
const INIT_PIDNS: u64 = 0xEFFF_FFFC;

impl OtherNamespaces {
    fn scan() -> OtherNamespaces {
        let unknown = OtherNamespaces { seen: None };
        let mine = rustix::fs::stat("/proc/self/ns/pid").map_or(0, |s| s.st_ino);
        if mine != INIT_PIDNS || proc_hides_processes() {
            return unknown;
        }
        let mut seen = BTreeSet::new();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return unknown;
        };
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let ns = match rustix::fs::stat(format!("/proc/{pid}/ns/pid").as_str()) {
                Ok(ns) => ns.st_ino,
                // Exited meanwhile: not an owner anyway.
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::SRCH) => continue,
                // Not ours to inspect (no ptrace access), but in this
                // namespace: not the owner of another's directory.
                Err(_) if pid_levels(pid) == Some(1) => continue,
                Err(_) => return unknown,
            };
            if let Some(start) = start_time(pid) {
                seen.insert((ns, start));
            }
        }
        OtherNamespaces { seen: Some(seen) }
    }

    /// Whether `owner` may still be alive: `true` unless known to be gone.
    fn alive(&self, owner: &Owner) -> bool {
        self.seen
            .as_ref()
            .is_none_or(|s| s.contains(&(owner.pidns, owner.start)))
    }
}

/// In how many PID namespaces `pid` has a pid (1: only in the initial
/// one), from its `NSpid` line, which needs no ptrace access.
fn pid_levels(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    Some(line.split_whitespace().count())
}

/// Whether /proc is mounted to hide other users' processes
/// (`hidepid=invisible`), which would make them look gone.
fn proc_hides_processes() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").map_or(true, |info| hides_processes(&info))
}

/// Whether a mountinfo text mounts `/proc` with `hidepid=2` (`invisible`).
fn hides_processes(mountinfo: &str) -> bool {
    mountinfo
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some("/proc"))
        .any(|l| l.contains("hidepid=2") || l.contains("hidepid=invisible"))
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks after boot.
fn start_time(pid: u32) -> Option<u64> {
    parse_start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses; fields 3.. follow the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::common::fixture;
    use proptest::prelude::*;

    #[test]
    fn owner_names_roundtrip_and_identify_this_process() {
        let me = Owner::current();
        assert!(me.start > 0 && me.pidns > 0);
        assert_eq!(Owner::parse(&me.name()), Some(me));
        assert!(me.alive());
        let dead = Owner {
            start: me.start + 1,
            ..me
        };
        assert!(!dead.alive(), "same pid, other start time: a reused pid");
        for bad in ["", "1-2", "1-2-3-4", "a-b-c", "jobcell-supervisor", "1--3"] {
            assert_eq!(Owner::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn owners_of_other_namespaces_are_gone_only_when_known_to_be() {
        let me = Owner::current();
        let other = Owner {
            pidns: me.pidns + 1,
            ..me
        };
        let blind = OtherNamespaces { seen: None };
        assert!(blind.alive(&other), "unknown: never judged gone");
        let seen = OtherNamespaces {
            seen: Some(BTreeSet::from([(other.pidns, other.start)])),
        };
        assert!(seen.alive(&other));
        let restarted = Owner {
            start: other.start + 1,
            ..other
        };
        assert!(!seen.alive(&restarted), "same namespace, other process");
        let elsewhere = Owner {
            pidns: other.pidns + 1,
            ..other
        };
        assert!(!seen.alive(&elsewhere));
    }

    #[test]
    fn start_time_field() {
        let stat =
            "1234 (a) b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 12345 67";
        assert_eq!(parse_start_time(stat), Some(987_654));
        assert_eq!(parse_start_time("1 (x"), None);
    }

    #[test]
    fn sweep_removes_only_dead_owners_here() {
        let base = tempfile::tempdir().unwrap();
        let me = Owner::current();
        let dead = Owner {
            pid: u32::MAX - 1,
            ..me
        };
        let foreign = Owner {
            pidns: me.pidns + 1,
            ..dead
        };
        for o in [me, dead, foreign] {
            std::fs::create_dir_all(base.path().join(o.name()).join("job1")).unwrap();
        }
        std::fs::create_dir(base.path().join("not-an-owner")).unwrap();
        let mut removed = BTreeSet::new();
        sweep_base(base.path(), &me, &mut removed).unwrap();
        assert!(!base.path().join(dead.name()).exists());
        assert!(base.path().join(me.name()).join("job1").exists());
        // Another PID namespace's owner, found in no process here, is gone
        // only if this process sees every process.
        let judged = OtherNamespaces::scan().seen.is_some();
        assert_eq!(removed.len(), 1 + usize::from(judged));
        assert_eq!(
            !base.path().join(foreign.name()).exists(),
            judged,
            "another pid namespace's dead owner swept iff every process is visible"
        );
        assert!(base.path().join("not-an-owner").exists());
        sweep_base(&base.path().join("absent"), &me, &mut removed).unwrap();
    }

    #[test]
    fn a_plain_directory_is_no_cgroup_base() {
        let d = tempfile::tempdir().unwrap();
        let t = CgroupTree::open(Some(d.path()));
        assert!(!t.usable());
        let id = "0190a0b0c0d01234abcd0001";
        let never: RunAhead = |_| {};
        assert!(t
            .create_job(id, &Resources::default(), true, never)
            .unwrap()
            .is_none());
        let e = t
            .create_job(
                id,
                &Resources {
                    pids: Some(4),
                    ..Default::default()
                },
                true,
                never,
            )
            .err()
            .expect("limits need a cgroup")
            .to_string();
        assert!(
            e.contains("pids") && e.contains("not on a cgroup file system"),
            "{e}"
        );
        assert_eq!(t.sweep_stale().unwrap(), 0);
    }

    #[test]
    fn the_default_v2_base_is_beside_the_supervisor_leaf() {
        let own = Path::new("/sys/fs/cgroup/system.slice/app.service");
        let want = (own.to_owned(), own.join(BASE_NAME));
        assert_eq!(default_base_v2(own), want);
        assert_eq!(
            default_base_v2(&own.join(v2::LEAF)),
            want,
            "a process moved into the leaf shares the tree beside it"
        );
    }

    #[test]
    fn sweep_keeps_live_owners_and_reports_what_it_cannot_list() {
        let base = tempfile::tempdir().unwrap();
        let me = Owner::current();
        // Another live process of this PID namespace: its init.
        let live = Owner {
            pid: 1,
            start: start_time(1).expect("pid 1's start time"),
            ..me
        };
        std::fs::create_dir_all(base.path().join(live.name()).join("job1")).unwrap();
        let mut removed = BTreeSet::new();
        sweep_base(base.path(), &me, &mut removed).unwrap();
        assert!(removed.is_empty(), "{removed:?}");
        assert!(base.path().join(live.name()).join("job1").exists());

        // Not a directory (ENOTDIR): an error naming the base, not "nothing to sweep".
        let file = base.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let e = sweep_base(&file, &me, &mut removed).unwrap_err();
        assert!(
            matches!(&e, Error::Cgroup { op: "list", path, errno: Errno(libc::ENOTDIR), .. } if *path == file),
            "{e}"
        );
    }

    #[test]
    fn a_frozen_leftover_is_thawed_before_its_processes_are_killed() {
        let d = fixture::cgroup(&["freezer.state", "cgroup.freeze"]);
        fixture::set(d.path(), "freezer.state", "FROZEN\n");
        fixture::set(d.path(), "cgroup.freeze", "1\n");
        thaw(d.path());
        assert_eq!(fixture::get(d.path(), "freezer.state"), "THAWED");
        assert_eq!(fixture::get(d.path(), "cgroup.freeze"), "0");
        let other = fixture::cgroup(&[]);
        thaw(other.path());
        assert_eq!(
            std::fs::read_dir(other.path()).unwrap().count(),
            0,
            "no file made where the hierarchy has none"
        );
    }

    #[test]
    fn hidden_processes_are_recognised_in_mountinfo() {
        let proc_line =
            |opts: &str| format!("22 1 0:21 / /proc rw,nosuid,nodev,noexec - proc proc {opts}\n");
        let other = "30 1 0:40 / /mnt/p rw - proc proc rw,hidepid=2\n";
        assert!(!hides_processes(&proc_line("rw")));
        assert!(hides_processes(&proc_line("rw,hidepid=2")));
        assert!(hides_processes(&proc_line("rw,hidepid=invisible,gid=10")));
        assert!(
            !hides_processes(&proc_line("rw,hidepid=1")),
            "hidepid=1 hides no process, only their files"
        );
        assert!(
            !hides_processes(&format!("{}{other}", proc_line("rw"))),
            "only /proc counts"
        );
        assert!(hides_processes(&format!(
            "{other}{}",
            proc_line("rw,hidepid=2")
        )));
    }

    /// What the child halves below run in (`pidns`: a new PID namespace;
    /// `hidepid`: a private /proc mounted with `hidepid=invisible`).
    const NS_CHILD: &str = "JOBCELL_TEST_TREE_NS_CHILD";

    /// Runs `child` (a test of this module) again in this binary, under
    /// `wrap`; returns its standard output.
    fn run_child(child: &str, mode: &str, wrap: &[&str]) -> String {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(wrap[0])
            .args(&wrap[1..])
            .arg(&exe)
            .args([
                "--exact",
                &format!("cgroup::tree::tests::{child}"),
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(NS_CHILD, mode)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Another PID namespace's owners are judged (gone when no visible
    /// process is theirs) only from the initial namespace with a /proc that
    /// hides nothing: from anywhere else an owner may live out of sight.
    #[test]
    fn other_namespaces_are_judged_only_where_every_process_is_visible() {
        let mine = rustix::fs::stat("/proc/self/ns/pid").unwrap().st_ino;
        let hidden = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains("hidepid=");
        if mine == INIT_PIDNS && !hidden {
            let seen = OtherNamespaces::scan().seen.expect("every process seen");
            let me = Owner::current();
            assert!(seen.contains(&(me.pidns, me.start)));
            let parent = Owner {
                pid: 1,
                start: start_time(1).unwrap(),
                pidns: me.pidns,
            };
            assert!(seen.contains(&(parent.pidns, parent.start)));
            assert_eq!(pid_levels(std::process::id()), Some(1));
        }
        let levels = pid_levels(std::process::id()).expect("NSpid of this process");
        let out = run_child("ns_child", "pidns", &["unshare", "--pid", "--fork"]);
        assert!(out.contains("NOT JUDGED"), "{out}");
        assert!(
            out.contains(&format!("LEVELS {}", levels + 1)),
            "a process in a new PID namespace has a pid in one more: {out}"
        );
        let out = run_child(
            "ns_child",
            "hidepid",
            &[
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                "mount -t proc -o hidepid=invisible proc /proc && exec \"$0\" \"$@\"",
            ],
        );
        assert!(out.contains("NOT JUDGED"), "{out}");
    }

    /// The child half of `other_namespaces_are_judged_only_where_every_process_is_visible`.
    #[test]
    #[ignore = "run by other_namespaces_are_judged_only_where_every_process_is_visible"]
    fn ns_child() {
        let Some(mode) = std::env::var_os(NS_CHILD) else {
            return;
        };
        if mode == "hidepid" {
            assert!(proc_hides_processes());
        } else {
            // Its pid in the host's /proc (the one mounted here).
            let pid: u32 = std::fs::read_link("/proc/self")
                .unwrap()
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            println!("LEVELS {}", pid_levels(pid).unwrap());
        }
        assert!(OtherNamespaces::scan().seen.is_none());
        println!("NOT JUDGED");
    }

    #[test]
    fn the_default_tree_is_usable_where_this_process_sees_its_cgroup() {
        let visible = match probe::probe() {
            Host::V2 { own, .. } => own.is_some(),
            Host::V1 { hierarchies } => hierarchies.iter().any(|h| h.own.is_some()),
            Host::Unavailable { .. } => false,
        };
        assert_eq!(CgroupTree::open(None).usable(), visible);
    }

    proptest! {
        #[test]
        fn owner_parse_never_panics(s in "\\PC{0,40}") {
            let _ = Owner::parse(&s);
        }

        #[test]
        fn start_time_parse_never_panics(s in "\\PC{0,200}") {
            let _ = parse_start_time(&s);
        }
    }
}
