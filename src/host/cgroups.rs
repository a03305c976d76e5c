//! cgroups: the hierarchy, jobcell's base, write access, delegation and the
//! controllers a job's limits need. The layout comes from the same probe the
//! cgroup manager uses (`cgroup::probe`), so the report and the jobs agree.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::Access;

use super::Check;
use crate::cgroup::probe::{self, Hierarchy, Host};
use crate::cgroup::{self, Controller, BASE_NAME};
use crate::error::Errno;

const HIERARCHY: &str = "cgroup hierarchy";
const BASE: &str = "cgroup base";
const WRITABLE: &str = "cgroup write access";
const DELEGATION: &str = "cgroup delegation";
const CONTROLLERS: &str = "cgroup controllers";
const SWAP: &str = "swap accounting";

pub(crate) fn checks() -> Vec<Check> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let unified = probe::parse_mountinfo(&mountinfo)
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| m.point);
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    match probe::probe() {
        Host::Unavailable { reason } => vec![Check::problem(
            HIERARCHY,
            format!("{reason}: jobs run, but every memory, CPU, pids and IO limit fails"),
            "mount the cgroup v2 hierarchy: mount -t cgroup2 none /sys/fs/cgroup",
        )],
        Host::V2 { mount, own } => v2(&mount, own.as_deref(), euid),
        Host::V1 { hierarchies } => v1(&hierarchies, unified.as_deref(), euid),
    }
}

/// Each limit field that needs controller `c`.
fn limits_needing(c: Controller) -> Vec<&'static str> {
    let all = cgroup::Resources {
        memory: Some(1),
        memory_swap: Some(1),
        cpu_percent: Some(1),
        cpus: Some("0".into()),
        pids: Some(1),
        io_read_bps: Some(1),
        io_write_bps: Some(1),
        io_read_iops: Some(1),
        io_write_iops: Some(1),
        cpu_time: true,
        ..Default::default()
    };
    cgroup::required(&all)
        .into_iter()
        .filter(|(_, k)| *k == c)
        .map(|(l, _)| l)
        .collect()
}

fn access(path: &Path) -> Result<(), Errno> {
    rustix::fs::access(path, Access::WRITE_OK).map_err(Errno::from)
}

fn not_writable_fix(errno: Errno) -> &'static str {
    if errno.0 == libc::EROFS {
        "the cgroup file system is mounted read-only (a container?): give the container a writable \
         cgroupfs in its own cgroup namespace (`docker run --cgroupns=private` with a rw \
         /sys/fs/cgroup, or --privileged); without it, only jobs without cgroup limits run"
    } else {
        "run as root, or get a delegated cgroup: `systemd-run --user --scope -p Delegate=yes -- \
         <program>`, or Delegate=yes in the service; then point Sandbox::cgroup_base at it (see \
         docs/cgroups.md)"
    }
}

fn v2(mount: &Path, own: Option<&Path>, euid: u32) -> Vec<Check> {
    let mut out = vec![Check::ok(
        HIERARCHY,
        format!("cgroup v2 (unified) at {}", mount.display()),
    )];
    let Some(own) = own else {
        out.push(Check::problem(
            BASE,
            format!(
                "this process's cgroup (/proc/self/cgroup) is not visible under {}",
                mount.display()
            ),
            "run in a private cgroup namespace (docker run --cgroupns=private), or point \
             Sandbox::cgroup_base at a delegated cgroup",
        ));
        return out;
    };
    let (top, base) = cgroup::default_base_v2(own);
    out.push(Check::ok(
        BASE,
        format!(
            "{} (created for the first job, removed when this process exits)",
            base.display()
        ),
    ));
    let files = [
        top.clone(),
        top.join("cgroup.procs"),
        top.join("cgroup.subtree_control"),
    ];
    let denied = files.iter().find_map(|f| access(f).err().map(|e| (f, e)));
    match denied {
        None => out.push(Check::ok(
            WRITABLE,
            format!(
                "{} and its cgroup.procs and cgroup.subtree_control are writable",
                top.display()
            ),
        )),
        Some((f, e)) => out.push(Check::problem(
            WRITABLE,
            format!(
                "{} is not writable: {e}; jobs with limits fail",
                f.display()
            ),
            not_writable_fix(e),
        )),
    }
    let is_root = top == mount;
    let procs = std::fs::read_to_string(top.join("cgroup.procs"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    let owner = std::fs::metadata(&top).map(|m| m.uid()).ok();
    out.push(if is_root {
        Check::ok(DELEGATION, "the root cgroup: nothing needs delegating")
    } else if euid != 0 && owner != Some(euid) {
        Check::problem(
            DELEGATION,
            format!(
                "{} belongs to uid {}, not to you (uid {euid}): it is not delegated",
                top.display(),
                owner.map_or("?".into(), |o| o.to_string())
            ),
            "systemd-run --user --scope -p Delegate=yes -- <program>, or Delegate=yes in the \
             service (see docs/cgroups.md)",
        )
    } else {
        let who = if euid == 0 { "root" } else { "you" };
        let moved = if procs > 0 {
            format!(
                "; it holds {procs} processes, which jobcell moves into {}/{} at the first job \
                 (no-internal-processes rule)",
                top.display(),
                "jobcell-supervisor"
            )
        } else {
            String::new()
        };
        Check::ok(
            DELEGATION,
            format!("{} can be managed by {who}{moved}", top.display()),
        )
    });
    let available: Vec<String> = std::fs::read_to_string(top.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let parent = if is_root {
        top.clone()
    } else {
        top.parent().map_or(top.clone(), Path::to_owned)
    };
    let wanted = [
        Controller::Memory,
        Controller::Cpu,
        Controller::Cpuset,
        Controller::Pids,
        Controller::Io,
    ];
    let missing: Vec<Controller> = wanted
        .into_iter()
        .filter(|c| !available.iter().any(|a| Some(a.as_str()) == c.v2_name()))
        .collect();
    out.push(controllers_check(
        &wanted
            .iter()
            .filter(|c| !missing.contains(c))
            .filter_map(|c| c.v2_name())
            .collect::<Vec<_>>(),
        &missing,
        |names| {
            format!(
                "enable them for this cgroup in its parent: echo '{}' > {}/cgroup.subtree_control \
                 (systemd: Delegate=yes, or Delegate={})",
                names
                    .iter()
                    .map(|n| format!("+{n}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                parent.display(),
                names.join(" ")
            )
        },
        |c| c.v2_name().unwrap_or("?"),
    ));
    out
}

fn controllers_check(
    usable: &[&str],
    missing: &[Controller],
    fix: impl Fn(&[&str]) -> String,
    name: impl Fn(Controller) -> &'static str,
) -> Check {
    if missing.is_empty() {
        return Check::ok(CONTROLLERS, format!("available: {}", usable.join(", ")));
    }
    let names: Vec<&str> = missing.iter().map(|c| name(*c)).collect();
    let lost: Vec<&str> = missing.iter().flat_map(|c| limits_needing(*c)).collect();
    let lost = if lost.is_empty() {
        "usage figures and race-free kills are degraded".to_string()
    } else {
        format!("these limits fail: {}", lost.join(", "))
    };
    Check::warning(
        CONTROLLERS,
        format!(
            "available: {}; missing: {} ({lost})",
            if usable.is_empty() {
                "none".to_string()
            } else {
                usable.join(", ")
            },
            names.join(", ")
        ),
        fix(&names),
    )
}

fn v1(hierarchies: &[Hierarchy], unified: Option<&Path>, euid: u32) -> Vec<Check> {
    let mounts: Vec<String> = hierarchies
        .iter()
        .map(|h| h.mount.display().to_string())
        .collect();
    let root = common_parent(hierarchies).unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"));
    let mut out = vec![Check::ok(
        HIERARCHY,
        match unified {
            Some(u) => format!(
                "hybrid: cgroup v1 controllers under {} and an empty cgroup v2 hierarchy at {}; \
                 jobcell uses the v1 controllers",
                root.display(),
                u.display()
            ),
            None => format!("cgroup v1: {}", mounts.join(", ")),
        },
    )];
    let (visible, hidden): (Vec<&Hierarchy>, Vec<&Hierarchy>) =
        hierarchies.iter().partition(|h| h.own.is_some());
    let example = visible
        .iter()
        .find(|h| h.controllers.iter().any(|c| c == "memory"))
        .or(visible.first())
        .and_then(|h| h.own.as_ref())
        .map(|o| o.join(BASE_NAME));
    out.push(if hidden.is_empty() {
        Check::ok(
            BASE,
            format!(
                "<own cgroup>/{BASE_NAME} in each hierarchy, e.g. {}",
                example.map_or("?".into(), |e| e.display().to_string())
            ),
        )
    } else {
        Check::problem(
            BASE,
            format!(
                "this process's cgroup is not visible in {}",
                hidden
                    .iter()
                    .map(|h| h.mount.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "run in the host's cgroup namespace with the hierarchies mounted, or point \
             Sandbox::cgroup_base at a cgroup you may write in every hierarchy",
        )
    });
    let denied: Vec<(String, Errno)> = visible
        .iter()
        .filter_map(|h| {
            let own = h.own.as_ref()?;
            access(own).err().map(|e| (own.display().to_string(), e))
        })
        .collect();
    out.push(match denied.first() {
        None => Check::ok(
            WRITABLE,
            format!(
                "this process's cgroup is writable in all {} hierarchies",
                visible.len()
            ),
        ),
        Some((_, e)) => Check::problem(
            WRITABLE,
            format!(
                "not writable: {} ({e}); jobs with limits fail",
                denied
                    .iter()
                    .map(|(p, _)| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            if e.0 == libc::EROFS {
                not_writable_fix(*e)
            } else {
                "run as root (cgroup v1 cannot be delegated safely to a user), or boot with cgroup \
                 v2 (systemd.unified_cgroup_hierarchy=1) and use a delegated cgroup"
            },
        ),
    });
    out.push(if euid == 0 {
        Check::ok(
            DELEGATION,
            "cgroup v1 has no delegation; as root jobcell writes every hierarchy",
        )
    } else if denied.is_empty() {
        Check::ok(
            DELEGATION,
            "cgroup v1 has no delegation; your cgroups are writable",
        )
    } else {
        Check::problem(
            DELEGATION,
            format!("cgroup v1 has no delegation, and uid {euid} may not write the hierarchies"),
            "run as root on a cgroup v1 host, or boot with cgroup v2 \
             (systemd.unified_cgroup_hierarchy=1) and use a delegated cgroup",
        )
    });
    // Write access is its own check: here, only whether each controller is mounted where we are.
    let usable = |c: Controller| {
        visible
            .iter()
            .any(|h| h.controllers.iter().any(|n| n == c.v1_name()))
    };
    let all = [
        Controller::Memory,
        Controller::Cpu,
        Controller::CpuAcct,
        Controller::Cpuset,
        Controller::Pids,
        Controller::Io,
        Controller::Freezer,
    ];
    let (ok, missing): (Vec<Controller>, Vec<Controller>) =
        all.into_iter().partition(|c| usable(*c));
    out.push(controllers_check(
        &ok.iter().map(|c| c.v1_name()).collect::<Vec<_>>(),
        &missing,
        |names| {
            names
                .iter()
                .map(|n| {
                    format!(
                        "mkdir -p {r}/{n} && mount -t cgroup -o {n} cgroup {r}/{n}",
                        r = root.display()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
        Controller::v1_name,
    ));
    let memory = visible
        .iter()
        .find(|h| h.controllers.iter().any(|c| c == "memory"))
        .and_then(|h| h.own.clone());
    if let Some(mem) = memory {
        out.push(if mem.join("memory.memsw.limit_in_bytes").exists() {
            Check::ok(SWAP, "memory.memsw.* present: Limits::memory_swap can be set")
        } else {
            Check::warning(
                SWAP,
                "the kernel does not account swap (no memory.memsw.* files): Limits::memory_swap \
                 fails; memory limits still hold, and the machine has to have no swap for them to \
                 be exact",
                "boot with swapaccount=1 (a kernel with CONFIG_MEMCG_SWAP), or leave memory_swap unset",
            )
        });
    }
    out
}

/// The directory that holds every v1 mount point (`/sys/fs/cgroup`).
fn common_parent(hs: &[Hierarchy]) -> Option<PathBuf> {
    let first = hs.first()?.mount.parent()?.to_owned();
    hs.iter()
        .all(|h| h.mount.parent() == Some(&first))
        .then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Status;

    #[test]
    fn limits_per_controller() {
        assert_eq!(
            limits_needing(Controller::Memory),
            ["memory", "memory_swap"]
        );
        assert_eq!(
            limits_needing(Controller::Io),
            [
                "io_read_bps",
                "io_write_bps",
                "io_read_iops",
                "io_write_iops"
            ]
        );
        assert!(limits_needing(Controller::Freezer).is_empty());
    }

    #[test]
    fn missing_controllers_name_the_lost_limits_and_the_fix() {
        let c = controllers_check(
            &["memory"],
            &[Controller::Pids, Controller::Io],
            |n| format!("enable {}", n.join(" ")),
            |c| c.v2_name().unwrap(),
        );
        assert_eq!(c.status, Status::Warning);
        assert!(c.detail.contains("missing: pids, io"), "{c:?}");
        assert!(c.detail.contains("pids, io_read_bps"), "{c:?}");
        assert_eq!(c.fix.as_deref(), Some("enable pids io"));
    }

    #[test]
    fn v2_in_a_fake_tree() {
        let d = tempfile::tempdir().unwrap();
        let own = d.path().join("app.service");
        std::fs::create_dir(&own).unwrap();
        for f in ["cgroup.procs", "cgroup.subtree_control"] {
            std::fs::write(own.join(f), "").unwrap();
        }
        std::fs::write(own.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let v = v2(d.path(), Some(&own), 0);
        let by = |n: &str| v.iter().find(|c| c.name == n).unwrap().clone();
        assert_eq!(
            by(BASE).detail.split(' ').next().unwrap(),
            own.join("jobcell").to_str().unwrap()
        );
        assert_eq!(by(WRITABLE).status, Status::Ok);
        let ctl = by(CONTROLLERS);
        assert_eq!(ctl.status, Status::Warning);
        assert!(ctl.detail.contains("missing: cpuset, io"), "{ctl:?}");
        assert!(ctl
            .fix
            .unwrap()
            .contains(&format!("> {}/cgroup.subtree_control", d.path().display())));
        let hidden = v2(d.path(), None, 0);
        assert_eq!(hidden[1].status, Status::Problem);
    }

    #[test]
    fn this_host_is_v1_or_hybrid_and_usable() {
        let v = checks();
        assert!(
            v[0].detail.starts_with("hybrid") || v[0].detail.starts_with("cgroup v"),
            "{v:?}"
        );
        for c in &v {
            assert_ne!(c.status, Status::Problem, "{v:?}");
        }
    }
}
