//! Building a root: a private mount namespace, a tmpfs, a fresh procfs and
//! `pivot_root`, tried in a throw-away child the way a cell does it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use super::child::{self, Probe};
use super::Check;
use crate::error::Errno;
use crate::spawn::{idmap, idmount};
use crate::sys;

const STEP_UNSHARE: u32 = 1;
const STEP_MAPS: u32 = 2;
const STEP_PRIVATE: u32 = 3;
const STEP_FORK: u32 = 4;
const STEP_TMPFS: u32 = 5;
const STEP_PROC: u32 = 6;
const STEP_PIVOT: u32 = 7;
const STEP_DETACH: u32 = 8;

const MS_PRIVATE_REC: u64 = libc::MS_PRIVATE | libc::MS_REC;
const NOSUID_NODEV_NOEXEC: u64 = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

fn probe() -> Result<Probe, String> {
    let dir = tempfile::Builder::new()
        .prefix(".jobcell-host-check")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let c = |suffix: &str| -> CString {
        let mut b = dir.path().as_os_str().as_bytes().to_vec();
        b.extend_from_slice(suffix.as_bytes());
        CString::new(b).expect("temporary paths have no NUL")
    };
    let (root, proc_dir, old) = (c(""), c("/proc"), c("/old"));
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let uid_map = format!("0 {uid} 1\n");
    let gid_map = format!("0 {gid} 1\n");
    // SAFETY: the closure makes raw system calls on the strings prepared above.
    let probe = unsafe {
        child::run(|report_fd| {
            let flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID;
            child::step(STEP_UNSHARE, sys::unshare(flags))?;
            child::step(
                STEP_MAPS,
                child::write_file(c"/proc/self/setgroups", b"deny"),
            )?;
            child::step(
                STEP_MAPS,
                child::write_file(c"/proc/self/uid_map", uid_map.as_bytes()),
            )?;
            child::step(
                STEP_MAPS,
                child::write_file(c"/proc/self/gid_map", gid_map.as_bytes()),
            )?;
            child::step(
                STEP_PRIVATE,
                sys::mount(None, c"/", None, MS_PRIVATE_REC, None),
            )?;
            // PID 1 of the new PID namespace mounts its procfs, as a cell's init does.
            let pid = libc::fork();
            if pid < 0 {
                return Err((STEP_FORK, Errno::last_raw().0));
            }
            if pid == 0 {
                let r = (|| {
                    child::step(
                        STEP_TMPFS,
                        sys::mount(Some(c"tmpfs"), &root, Some(c"tmpfs"), 0, Some(c"size=64k")),
                    )?;
                    child::step(STEP_PROC, sys::mkdir(&proc_dir, 0o755))?;
                    child::step(
                        STEP_PROC,
                        sys::mount(
                            Some(c"proc"),
                            &proc_dir,
                            Some(c"proc"),
                            NOSUID_NODEV_NOEXEC,
                            None,
                        ),
                    )?;
                    child::step(STEP_PIVOT, sys::mkdir(&old, 0o755))?;
                    child::step(STEP_PIVOT, sys::pivot_root(&root, &old))?;
                    child::step(STEP_DETACH, sys::umount2(c"/old", libc::MNT_DETACH))
                })();
                if let Err((step, errno)) = r {
                    child::report(report_fd, step, errno);
                    sys::exit(1);
                }
                sys::exit(0);
            }
            let mut status = 0;
            while libc::waitpid(pid, &mut status, 0) < 0 {
                if Errno::last_raw().0 != libc::EINTR {
                    break;
                }
            }
            // The grandchild reported its own failure; pass its status on.
            if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                Ok(())
            } else {
                sys::exit(1)
            }
        })
    };
    drop(dir);
    Ok(probe)
}

pub(crate) fn checks() -> Vec<Check> {
    let mut out = from_probe(probe());
    out.push(mount_api());
    out.push(idmapped_binds(&std::env::temp_dir()));
    out
}

/// The checks a probe result makes: mount namespace, procfs, pivot_root.
pub(crate) fn from_probe(probe: Result<Probe, String>) -> Vec<Check> {
    const NS: &str = "mount namespace";
    const PROC: &str = "procfs";
    const PIVOT: &str = "pivot_root";
    let ns_ok = || Check::ok(NS, "a private mount namespace with a tmpfs works");
    let proc_ok = || Check::ok(PROC, "a fresh /proc can be mounted in a new PID namespace");
    let see_ns = || {
        Check::problem(
            NS,
            "could not be checked",
            "fix the namespace problems first (the namespaces checks)",
        )
    };
    match probe {
        Ok(Probe::Done) => vec![
            ns_ok(),
            proc_ok(),
            Check::ok(
                PIVOT,
                "pivot_root into a new root and detaching the old one work",
            ),
        ],
        Ok(Probe::Failed { step, errno }) => {
            let mut v = Vec::new();
            match step {
                STEP_UNSHARE | STEP_MAPS | STEP_FORK => v.push(Check::problem(
                    NS,
                    format!("entering new user, mount and PID namespaces fails: {errno}"),
                    "fix the user namespace problem first (the namespaces checks say what it is)",
                )),
                STEP_PRIVATE | STEP_TMPFS => v.push(Check::problem(
                    NS,
                    format!(
                        "{} fails in a new mount namespace: {errno}",
                        if step == STEP_PRIVATE {
                            "making / private"
                        } else {
                            "mounting a tmpfs"
                        }
                    ),
                    "a security module (AppArmor, SELinux) or a container forbids mounts in user \
                     namespaces: allow them (`--security-opt apparmor=unconfined` in Docker), see \
                     docs/troubleshooting.md",
                )),
                _ => v.push(ns_ok()),
            }
            if step == STEP_PROC {
                v.push(Check::problem(
                    PROC,
                    format!("mounting a fresh procfs in a new PID namespace fails: {errno}"),
                    "the host's /proc has parts masked or mounted over (Docker and Kubernetes do this), \
                     and the kernel refuses a new procfs then: run the container with \
                     `--security-opt systempaths=unconfined` (Kubernetes: procMount: Unmasked), or \
                     --privileged",
                ));
            } else if step > STEP_PROC {
                v.push(proc_ok());
            }
            if step >= STEP_PIVOT {
                v.push(Check::problem(
                    PIVOT,
                    format!(
                        "{} fails: {errno}",
                        if step == STEP_PIVOT {
                            "pivot_root into a new root"
                        } else {
                            "detaching the old root"
                        }
                    ),
                    if errno.0 == libc::EINVAL {
                        "the root is the initramfs (rootfs), which pivot_root cannot leave: boot \
                         into a real root file system, or run jobcell from a bind mount of it \
                         (mount --bind / /mnt; cd /mnt; exec chroot . <program>)"
                    } else {
                        "see docs/troubleshooting.md (pivot_root)"
                    },
                ));
            }
            v
        }
        Ok(Probe::Killed(sig)) => vec![Check::problem(
            NS,
            format!("the probe was killed by signal {sig}"),
            "a seccomp filter forbids mount system calls: allow them in the container's profile",
        )],
        Ok(Probe::Broken(why)) | Err(why) => vec![see_ns_with(see_ns(), why)],
    }
}

fn see_ns_with(mut c: Check, why: String) -> Check {
    c.detail = format!("could not be checked: {why}");
    c
}

/// `open_tree` + `mount_setattr` (the new mount API), tried as spawning uses them.
fn mount_api() -> Check {
    const NAME: &str = "new mount API";
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    match sys::host::open_tree_clone(c"/", sys::MOUNT_ATTR_NOSUID) {
        Ok(_tree) => Check::ok(
            NAME,
            "open_tree and mount_setattr work: binds are detached trees",
        ),
        // Cloning a tree of the host's mount namespace needs CAP_SYS_ADMIN there.
        Err(e) if !root && e.0 == libc::EPERM => Check::ok(
            NAME,
            "unprivileged: open_tree on the host's mounts needs root, so binds are made by path \
             inside the cell (same result)",
        ),
        Err(e) => Check::warning(
            NAME,
            format!("open_tree/mount_setattr fail ({e}): binds fall back to path-based mounts"),
            "upgrade to Linux 5.12 or newer, or allow open_tree, move_mount and mount_setattr in \
             the container's seccomp profile",
        ),
    }
}

/// Idmapped mounts (`Sandbox::bind_rw_owned`), tried on `dir` (the
/// temporary directory, where workspaces are usually made) as spawning
/// makes them: a detached clone, idmapped through a fresh user namespace.
fn idmapped_binds(dir: &std::path::Path) -> Check {
    const NAME: &str = "idmapped binds";
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Check::ok(
            NAME,
            "unprivileged: bind_rw_owned binds the caller's own directories as they are (the job \
             already owns them); a directory of another owner needs root",
        );
    }
    let shown = dir.display();
    let path = match CString::new(dir.as_os_str().as_bytes()) {
        Ok(p) => p,
        Err(_) => return Check::ok(NAME, format!("not checked: {shown} holds a NUL byte")),
    };
    let tree = match sys::host::open_tree_clone(&path, 0) {
        Ok(t) => t,
        Err(e) => {
            return Check::warning(
                NAME,
                format!("open_tree({shown}) fails ({e}): bind_rw_owned cannot be used"),
                "upgrade to Linux 5.12 or newer, or allow open_tree and mount_setattr in the \
                 container's seccomp profile; meanwhile chown the workspace to \
                 Sandbox::host_ids() and use bind_rw",
            )
        }
    };
    let fs = idmount::fs_name(&tree);
    let job = (idmap::DEFAULT_RANGE.0 + 1000, idmap::DEFAULT_RANGE.0 + 1000);
    match idmount::idmap_tree(&tree, (0, 0), job) {
        Ok(()) => Check::ok(
            NAME,
            format!("work on {shown} ({fs}): bind_rw_owned gives jobs their workspace"),
        ),
        Err((op, e)) => Check::warning(
            NAME,
            format!(
                "not on {shown}: {}; bind_rw_owned fails there with Error::OwnedBind",
                idmount::reason(op, e, &fs)
            ),
            "put workspaces on a file system that allows idmapped mounts (ext4, xfs, btrfs; \
             tmpfs from Linux 6.3), or chown them to Sandbox::host_ids() and use bind_rw",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Status;

    /// As root here: the disk's temporary directory allows idmapped mounts,
    /// a ramfs (in a mount namespace of a thread of its own) does not.
    #[test]
    fn idmapped_binds_are_tried_for_real() {
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let c = idmapped_binds(std::path::Path::new("/var/tmp"));
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(c.detail.contains("/var/tmp"), "{c:?}");
        let c = std::thread::spawn(|| {
            let dir = tempfile::tempdir().unwrap();
            // SAFETY: a mount namespace of this thread alone; nothing relies on it.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }.unwrap();
            use rustix::mount::{mount, mount_change, MountFlags, MountPropagationFlags as P};
            mount_change("/", P::PRIVATE | P::REC).unwrap();
            mount("ramfs", dir.path(), "ramfs", MountFlags::empty(), c"").unwrap();
            let c = idmapped_binds(dir.path());
            rustix::mount::unmount(dir.path(), rustix::mount::UnmountFlags::DETACH).unwrap();
            c
        })
        .join()
        .unwrap();
        assert_eq!(c.status, Status::Warning, "{c:?}");
        assert!(c.detail.contains("ramfs"), "{c:?}");
        assert!(c.fix.as_deref().unwrap().contains("host_ids"), "{c:?}");
    }

    fn failed(step: u32, errno: i32) -> Vec<Check> {
        from_probe(Ok(Probe::Failed {
            step,
            errno: Errno(errno),
        }))
    }

    #[test]
    fn each_failing_step_names_its_check() {
        let v = failed(STEP_UNSHARE, libc::EPERM);
        assert_eq!(v.len(), 1);
        assert!(v[0].fix.as_deref().unwrap().contains("namespaces checks"));
        let v = failed(STEP_PROC, libc::EPERM);
        assert_eq!(
            v.iter().map(|c| c.status).collect::<Vec<_>>(),
            [Status::Ok, Status::Problem]
        );
        assert!(v[1]
            .fix
            .as_deref()
            .unwrap()
            .contains("systempaths=unconfined"));
        let v = failed(STEP_PIVOT, libc::EINVAL);
        assert_eq!(v[2].name, "pivot_root");
        assert!(v[2].fix.as_deref().unwrap().contains("initramfs"), "{v:?}");
        let v = failed(STEP_TMPFS, libc::EACCES);
        assert!(v[0].detail.contains("mounting a tmpfs"), "{v:?}");
    }

    #[test]
    fn this_host_can_build_a_root() {
        let v = checks();
        for c in &v {
            assert_eq!(c.status, Status::Ok, "{v:?}");
        }
        // The probe's three, the new mount API, idmapped binds.
        assert_eq!(v.len(), 5);
    }
}
