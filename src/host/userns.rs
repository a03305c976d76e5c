//! Namespaces: can this process create a user namespace (and if not, why),
//! the other namespaces a cell needs, and the id mapping it will get.

use std::path::Path;

use super::child::{self, Probe};
use super::Check;
use crate::error::Errno;
use crate::sandbox::IdMap;
use crate::sys;

/// The namespaces a cell enters besides the user namespace, in the probe's order.
const OTHERS: [(libc::c_int, &str, &str); 6] = [
    (libc::CLONE_NEWNS, "mount", "mnt"),
    (libc::CLONE_NEWPID, "pid", "pid"),
    (libc::CLONE_NEWUTS, "uts", "uts"),
    (libc::CLONE_NEWIPC, "ipc", "ipc"),
    (libc::CLONE_NEWNET, "net", "net"),
    (libc::CLONE_NEWCGROUP, "cgroup", "cgroup"),
];

/// The probe's steps.
const STEP_UNSHARE_USER: u32 = 1;
const STEP_SETGROUPS: u32 = 2;
const STEP_UID_MAP: u32 = 3;
const STEP_GID_MAP: u32 = 4;
/// Step of `OTHERS[i]` is `STEP_OTHERS + i`.
const STEP_OTHERS: u32 = 5;

/// The sysctls that decide whether user namespaces may be created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sysctls {
    /// `user.max_user_namespaces`.
    pub max_user_namespaces: Option<u64>,
    /// `kernel.unprivileged_userns_clone` (Debian and older Ubuntu kernels).
    pub unprivileged_userns_clone: Option<u64>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 23.10 and later).
    pub apparmor_restrict: Option<u64>,
    /// `user.max_<kind>_namespaces` of the other namespaces, by `OTHERS` index.
    pub max_other: [Option<u64>; 6],
}

impl Sysctls {
    /// Reads them below `root` (normally `/proc/sys`); absent files are `None`.
    pub(crate) fn read(root: &Path) -> Sysctls {
        let get = |rel: &str| -> Option<u64> {
            std::fs::read_to_string(root.join(rel))
                .ok()
                .and_then(|s| s.trim().parse().ok())
        };
        Sysctls {
            max_user_namespaces: get("user/max_user_namespaces"),
            unprivileged_userns_clone: get("kernel/unprivileged_userns_clone"),
            apparmor_restrict: get("kernel/apparmor_restrict_unprivileged_userns"),
            max_other: OTHERS.map(|(_, _, file)| get(&format!("user/max_{file}_namespaces"))),
        }
    }
}

/// The `Seccomp:` mode of `/proc/self/status` text (0 none, 1 strict, 2 filter).
pub(crate) fn seccomp_mode(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse().ok())
}

pub(crate) fn own_seccomp_mode() -> Option<u32> {
    seccomp_mode(&std::fs::read_to_string("/proc/self/status").unwrap_or_default())
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

fn egid() -> u32 {
    // SAFETY: getegid cannot fail and touches no memory.
    unsafe { libc::getegid() }
}

/// Tries, in a child: a user namespace, the id maps, then each other namespace.
fn probe() -> Probe {
    let uid_map = format!("0 {} 1\n", euid());
    let gid_map = format!("0 {} 1\n", egid());
    let (setgroups, uid_path, gid_path) = (
        c"/proc/self/setgroups",
        c"/proc/self/uid_map",
        c"/proc/self/gid_map",
    );
    // SAFETY: the closure makes raw system calls on data prepared above.
    unsafe {
        child::run(|_| {
            child::step(STEP_UNSHARE_USER, sys::unshare(libc::CLONE_NEWUSER))?;
            child::step(STEP_SETGROUPS, child::write_file(setgroups, b"deny"))?;
            child::step(
                STEP_UID_MAP,
                child::write_file(uid_path, uid_map.as_bytes()),
            )?;
            child::step(
                STEP_GID_MAP,
                child::write_file(gid_path, gid_map.as_bytes()),
            )?;
            let mut i = 0;
            while i < OTHERS.len() {
                child::step(STEP_OTHERS + i as u32, sys::unshare(OTHERS[i].0))?;
                i += 1;
            }
            Ok(())
        })
    }
}

pub(crate) fn checks() -> Vec<Check> {
    let sysctls = Sysctls::read(Path::new("/proc/sys"));
    let has_userns = Path::new("/proc/self/ns/user").exists();
    let mut out = from_probe(probe(), &sysctls, euid(), own_seccomp_mode(), has_userns);
    out.push(id_mapping());
    out.push(limits(&sysctls));
    out
}

/// Turns the probe's result into the user-namespace and other-namespace checks.
pub(crate) fn from_probe(
    probe: Probe,
    s: &Sysctls,
    euid: u32,
    seccomp: Option<u32>,
    has_userns: bool,
) -> Vec<Check> {
    const USER: &str = "user namespaces";
    const OTHER: &str = "other namespaces";
    let others_ok = Check::ok(
        OTHER,
        "mount, pid, uts, ipc, net and cgroup namespaces can be created",
    );
    let who = if euid == 0 {
        "as root".to_string()
    } else {
        format!("as uid {euid} (unprivileged)")
    };
    match probe {
        Probe::Done => vec![
            Check::ok(
                USER,
                format!("usable {who}: a new user namespace and its id maps work"),
            ),
            others_ok,
        ],
        Probe::Failed { step, errno } if step >= STEP_OTHERS => {
            let i = (step - STEP_OTHERS) as usize;
            let (_, kind, file) = OTHERS.get(i).copied().unwrap_or((0, "?", "?"));
            let detail =
                format!("creating a {kind} namespace inside the user namespace fails: {errno}");
            let fix = if s.max_other.get(i).copied().flatten() == Some(0) {
                format!(
                    "user.max_{file}_namespaces is 0: sysctl -w user.max_{file}_namespaces=10000 \
                     (persist it in /etc/sysctl.d/)"
                )
            } else if matches!(errno.0, libc::EINVAL | libc::ENOSYS) {
                format!(
                    "use a kernel built with the {kind} namespace (CONFIG_{}_NS=y)",
                    file.to_uppercase()
                )
            } else if seccomp == Some(2) {
                SECCOMP_FIX.to_string()
            } else {
                "see docs/troubleshooting.md (namespaces)".to_string()
            };
            vec![
                Check::ok(USER, format!("usable {who}")),
                Check::problem(OTHER, detail, fix),
            ]
        }
        Probe::Failed { step, errno } => vec![diagnose(step, errno, s, euid, seccomp, has_userns)],
        Probe::Killed(sig) => vec![Check::problem(
            USER,
            format!(
                "the probe was killed by signal {sig} while creating a user namespace{}",
                if sig == libc::SIGSYS {
                    " (SIGSYS: a seccomp filter forbids unshare)"
                } else {
                    ""
                }
            ),
            SECCOMP_FIX,
        )],
        Probe::Broken(why) => vec![Check::problem(
            USER,
            format!("could not be checked: {why}"),
            "check that this process may fork (RLIMIT_NPROC, a pids limit)",
        )],
    }
}

const SECCOMP_FIX: &str = "this process runs under a seccomp filter (a container's default \
    profile?) that refuses unshare/clone with namespace flags: run the container with \
    `--security-opt seccomp=unconfined` (or a profile that allows unshare, clone and clone3) \
    and `--security-opt apparmor=unconfined`, or `--privileged`";

/// Why creating a user namespace (or writing its maps) failed, and the fix.
pub(crate) fn diagnose(
    step: u32,
    errno: Errno,
    s: &Sysctls,
    euid: u32,
    seccomp: Option<u32>,
    has_userns: bool,
) -> Check {
    const USER: &str = "user namespaces";
    let what = match step {
        STEP_UNSHARE_USER => "unshare(CLONE_NEWUSER)",
        STEP_SETGROUPS => "writing /proc/self/setgroups",
        STEP_UID_MAP => "writing /proc/self/uid_map",
        _ => "writing /proc/self/gid_map",
    };
    let failed = format!("{what} fails: {errno}");
    let unprivileged = euid != 0;
    if !has_userns
        || (step == STEP_UNSHARE_USER && errno.0 == libc::EINVAL && s.max_user_namespaces.is_none())
    {
        return Check::problem(
            USER,
            format!("{failed}; this kernel has no user namespaces"),
            "use a kernel built with CONFIG_USER_NS=y",
        );
    }
    if s.max_user_namespaces == Some(0) {
        return Check::problem(
            USER,
            format!("{failed}: user.max_user_namespaces is 0"),
            "sysctl -w user.max_user_namespaces=15000 (persist: echo user.max_user_namespaces=15000 \
             > /etc/sysctl.d/50-jobcell.conf)",
        );
    }
    if step == STEP_UNSHARE_USER && errno.0 == libc::ENOSPC {
        return Check::problem(
            USER,
            format!(
                "{failed}: all {} user namespaces allowed are in use",
                s.max_user_namespaces.map_or("the".into(), |n| n.to_string())
            ),
            "raise the limit: sysctl -w user.max_user_namespaces=<more>, or end processes that hold \
             user namespaces",
        );
    }
    if step == STEP_UNSHARE_USER && errno.0 == libc::EUSERS {
        return Check::problem(
            USER,
            format!("{failed}: user namespaces are nested 32 deep already"),
            "run jobcell in a less deeply nested container",
        );
    }
    if unprivileged && s.unprivileged_userns_clone == Some(0) {
        return Check::problem(
            USER,
            format!("{failed}: kernel.unprivileged_userns_clone is 0, so only root may create user namespaces"),
            "sysctl -w kernel.unprivileged_userns_clone=1 (persist in /etc/sysctl.d/), or run as root",
        );
    }
    if unprivileged && s.apparmor_restrict == Some(1) {
        return Check::problem(
            USER,
            format!(
                "{failed}: kernel.apparmor_restrict_unprivileged_userns is 1, so AppArmor takes \
                 every capability away inside the namespaces of unconfined programs"
            ),
            "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (persist in /etc/sysctl.d/), \
             or give the program an AppArmor profile with `userns,` (see /etc/apparmor.d/), or run \
             as root",
        );
    }
    if seccomp == Some(2) && matches!(errno.0, libc::EPERM | libc::ENOSYS | libc::EACCES) {
        return Check::problem(
            USER,
            format!("{failed}; {}", "this process runs under a seccomp filter"),
            SECCOMP_FIX,
        );
    }
    if step == STEP_UNSHARE_USER && errno.0 == libc::EPERM {
        return Check::problem(
            USER,
            format!(
                "{failed}: not allowed here (a chroot, a container without CAP_SYS_ADMIN, or a \
                 security module)"
            ),
            "run outside chroot; in a container allow user namespaces (`--security-opt \
             seccomp=unconfined --security-opt apparmor=unconfined`, or `--privileged`); see \
             docs/troubleshooting.md",
        );
    }
    Check::problem(
        USER,
        failed,
        "see docs/troubleshooting.md (user namespaces)",
    )
}

/// The id mapping a default cell gets.
fn id_mapping() -> Check {
    const NAME: &str = "id mapping";
    match crate::spawn::idmap::plan(IdMap::Auto, 1000, 1000) {
        Ok(p) if p.has_root => {
            let (u, g) = p.root_host_ids();
            let count = p
                .uid_map
                .split_whitespace()
                .nth(2)
                .unwrap_or("?")
                .to_string();
            let source = if crate::spawn::idmap::subid_range(Path::new("/etc/subuid"), "root", 0)
                .is_some()
            {
                "from /etc/subuid and /etc/subgid"
            } else {
                "the default; /etc/subuid has no entry for root"
            };
            Check::ok(
                NAME,
                format!(
                    "cell ids 0..{count} are host uids {u}.. and gids {g}.. ({source}); the job's \
                     uid 1000 is host uid {}",
                    p.host_uid
                ),
            )
        }
        Ok(p) => Check::ok(
            NAME,
            format!(
                "unprivileged: only your uid {} and gid {} are mapped (the job is uid {} inside)",
                p.host_uid, p.host_gid, p.uid
            ),
        ),
        Err(e) => Check::problem(
            NAME,
            e.to_string(),
            "run as a non-root user, or as root with a subordinate range: echo root:100000:65536 \
             >> /etc/subuid; echo root:100000:65536 >> /etc/subgid",
        ),
    }
}

/// How many cells the namespace limits allow at once.
fn limits(s: &Sysctls) -> Check {
    const NAME: &str = "namespace limits";
    let low = std::iter::once(("user", s.max_user_namespaces))
        .chain(OTHERS.iter().zip(s.max_other).map(|((_, _, f), v)| (*f, v)))
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        // 0 is a problem the namespace checks report already.
        .filter(|(_, v)| *v > 0 && *v < 1024)
        .map(|(k, v)| format!("user.max_{k}_namespaces={v}"))
        .collect::<Vec<_>>();
    match (low.is_empty(), s.max_user_namespaces) {
        (true, Some(n)) => Check::ok(NAME, format!("user.max_user_namespaces={n}: each cell uses one of each kind")),
        (true, None) => Check::ok(NAME, "no per-user namespace limits are visible"),
        (false, _) => Check::warning(
            NAME,
            format!("{}: that caps how many cells can run at once", low.join(", ")),
            "raise them, e.g. sysctl -w user.max_user_namespaces=15000 (and the same for the others)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysctls(files: &[(&str, &str)]) -> Sysctls {
        let d = tempfile::tempdir().unwrap();
        for (f, v) in files {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, v).unwrap();
        }
        Sysctls::read(d.path())
    }

    fn fails(step: u32, errno: i32, s: &Sysctls, euid: u32, seccomp: Option<u32>) -> Check {
        let v = from_probe(
            Probe::Failed {
                step,
                errno: Errno(errno),
            },
            s,
            euid,
            seccomp,
            true,
        );
        assert_eq!(v.len(), 1, "{v:?}");
        v.into_iter().next().unwrap()
    }

    #[test]
    fn reads_fake_proc_sys() {
        let s = sysctls(&[
            ("user/max_user_namespaces", "15000\n"),
            ("kernel/unprivileged_userns_clone", "0\n"),
            ("user/max_net_namespaces", "7\n"),
        ]);
        assert_eq!(s.max_user_namespaces, Some(15000));
        assert_eq!(s.unprivileged_userns_clone, Some(0));
        assert_eq!(s.apparmor_restrict, None);
        assert_eq!(s.max_other[4], Some(7));
        let w = limits(&s);
        assert_eq!(w.status, super::super::Status::Warning);
        assert!(w.detail.contains("user.max_net_namespaces=7"), "{w:?}");
    }

    #[test]
    fn max_user_namespaces_zero() {
        let s = sysctls(&[("user/max_user_namespaces", "0")]);
        let c = fails(STEP_UNSHARE_USER, libc::ENOSPC, &s, 0, Some(0));
        assert_eq!(c.status, super::super::Status::Problem);
        assert!(c.detail.contains("user.max_user_namespaces is 0"), "{c:?}");
        assert!(c
            .fix
            .unwrap()
            .contains("sysctl -w user.max_user_namespaces="));
    }

    #[test]
    fn debian_sysctl_only_matters_without_root() {
        let s = sysctls(&[
            ("user/max_user_namespaces", "100"),
            ("kernel/unprivileged_userns_clone", "0"),
        ]);
        let c = fails(STEP_UNSHARE_USER, libc::EPERM, &s, 1000, Some(0));
        assert!(c
            .fix
            .unwrap()
            .contains("kernel.unprivileged_userns_clone=1"));
        let root = fails(STEP_UNSHARE_USER, libc::EPERM, &s, 0, Some(0));
        assert!(!root.fix.unwrap().contains("unprivileged_userns_clone"));
    }

    #[test]
    fn apparmor_restriction_fails_at_the_uid_map() {
        let s = sysctls(&[
            ("user/max_user_namespaces", "100"),
            ("kernel/apparmor_restrict_unprivileged_userns", "1"),
        ]);
        let c = fails(STEP_UID_MAP, libc::EPERM, &s, 1000, Some(0));
        assert!(
            c.detail.contains("writing /proc/self/uid_map fails: EPERM"),
            "{c:?}"
        );
        let fix = c.fix.unwrap();
        assert!(
            fix.contains("kernel.apparmor_restrict_unprivileged_userns=0"),
            "{fix}"
        );
        assert!(fix.contains("userns,"), "{fix}");
    }

    #[test]
    fn container_seccomp_and_plain_eperm() {
        let s = sysctls(&[("user/max_user_namespaces", "100")]);
        let c = fails(STEP_UNSHARE_USER, libc::EPERM, &s, 0, Some(2));
        assert!(c.fix.unwrap().contains("seccomp=unconfined"));
        let c = fails(STEP_UNSHARE_USER, libc::EPERM, &s, 0, Some(0));
        assert!(c.detail.contains("chroot"), "{c:?}");
        let killed = from_probe(Probe::Killed(libc::SIGSYS), &s, 0, Some(2), true);
        assert!(killed[0].detail.contains("SIGSYS"), "{killed:?}");
    }

    #[test]
    fn limits_and_kernels_without_namespaces() {
        let s = sysctls(&[("user/max_user_namespaces", "5")]);
        let c = fails(STEP_UNSHARE_USER, libc::ENOSPC, &s, 1000, Some(0));
        assert!(c.detail.contains("all 5 user namespaces"), "{c:?}");
        let c = fails(STEP_UNSHARE_USER, libc::EUSERS, &s, 0, Some(0));
        assert!(c.detail.contains("32 deep"), "{c:?}");
        let v = from_probe(
            Probe::Failed {
                step: STEP_UNSHARE_USER,
                errno: Errno(libc::EINVAL),
            },
            &Sysctls::default(),
            0,
            None,
            false,
        );
        assert!(
            v[0].fix.as_deref().unwrap().contains("CONFIG_USER_NS"),
            "{v:?}"
        );
    }

    #[test]
    fn another_namespace_failing_is_named() {
        let mut s = sysctls(&[("user/max_user_namespaces", "100")]);
        s.max_other[4] = Some(0);
        let v = from_probe(
            Probe::Failed {
                step: STEP_OTHERS + 4,
                errno: Errno(libc::ENOSPC),
            },
            &s,
            0,
            Some(0),
            true,
        );
        assert_eq!(v[0].status, super::super::Status::Ok);
        assert!(v[1].detail.contains("net namespace"), "{v:?}");
        assert!(v[1]
            .fix
            .as_deref()
            .unwrap()
            .contains("user.max_net_namespaces"));
    }

    #[test]
    fn seccomp_mode_of_proc_status() {
        assert_eq!(
            seccomp_mode("Name:\tx\nSeccomp:\t2\nSeccomp_filters:\t1\n"),
            Some(2)
        );
        assert_eq!(seccomp_mode("Name:\tx\n"), None);
    }

    #[test]
    fn this_host_can_create_user_namespaces() {
        // The integration tests run as root on a host that runs cells.
        let v = checks();
        assert_eq!(v[0].name, "user namespaces");
        assert_eq!(v[0].status, super::super::Status::Ok, "{v:?}");
        assert_eq!(v[1].status, super::super::Status::Ok, "{v:?}");
    }
}
