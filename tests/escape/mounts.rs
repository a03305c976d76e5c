//! The mount table: read-only binds, mounting, nested user namespaces,
//! the staging directory.

use super::*;

// 4 and 5. The mount table

/// The cell's read-only mounts are read-only in its mount table: the
/// minimal root and the writable parts of `/proc` (`/proc/sys`), made so by
/// init with `mount_setattr`. Unmapped host root owns what is under
/// `/proc/sys`, so a write fails with EACCES first
/// (`kernel::proc_sys_and_sysrq_cannot_be_written`); this checks the second
/// wall itself, as the job sees it. Where the root comes from a skeleton
/// (the spawner) and where the cell is cloned from the host (`sysfs(true)`).
#[test]
fn read_only_mounts_are_read_only_in_the_cells_mount_table() {
    let _g = shared();
    let mut from_host = attacker();
    from_host.sysfs(true);
    for mut sb in [attacker(), from_host] {
        sb.user(0, 0);
        let r = sh(&sb, "cat /proc/self/mountinfo");
        assert!(r.outcome.success(), "{}", r.stderr);
        for point in ["/", "/proc/sys"] {
            // Field 5 is the mount point, field 6 the per-mount options.
            let opts: Vec<&str> = r
                .stdout
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    (f.get(4) == Some(&point)).then(|| f[5])
                })
                .collect();
            assert!(!opts.is_empty(), "{point} is mounted:\n{}", r.stdout);
            // The last mount on a point is the one the job sees.
            let top = opts.last().unwrap();
            assert!(
                top.split(',').any(|o| o == "ro"),
                "{point} is mounted {top}:\n{}",
                r.stdout
            );
        }
    }
}

/// Remount a read-only bind read-write, mount anything, unmount the bind,
/// pivot_root again, chroot, the new mount API. Stopped by seccomp (every
/// mount call denied) and, beneath it, by the empty capability sets. The
/// host file under the read-only bind is unchanged, the host mount table too.
#[test]
fn read_only_binds_stay_read_only_and_nothing_mounts() {
    let _g = shared();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "original").unwrap();
    // Writable by anyone: only the read-only mount protects it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(
        dir.path().join("file"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let mounts_before = common::snapshot().mounts;
    for sb in [attacker(), without_seccomp(attacker())] {
        let mut sb = sb;
        sb.bind_ro(dir.path(), "/ro").user(0, 0);
        let r = sh(&sb, "/esc mounts /ro; echo pwned > /ro/file; echo rc=$?");
        let a = Attempts(&r);
        for name in [
            "remount_bind_rw",
            "remount_rw",
            "mount_tmpfs",
            "mount_proc",
            "mount_sysfs",
            "bind_root",
            "umount",
            "umount_proc",
            "pivot_root",
            "chroot",
            "open_tree",
            "fsopen",
            "mount_setattr",
        ] {
            a.denied(name, "EPERM");
        }
        a.denied("write_in_dir", "EROFS");
        assert!(r.stdout.contains("rc=2"), "{}", r.stdout);
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("file")).unwrap(),
        "original"
    );
    assert!(!dir.path().join("planted").exists());
    assert_eq!(common::snapshot().mounts, mounts_before);
}

/// A nested user namespace would give the job every capability over a world
/// of its own, and with them the mount calls. Seccomp refuses it (unshare,
/// clone with CLONE_NEWUSER; clone3 reports ENOSYS so libc falls back to
/// clone, whose flags the filter sees; setns).
#[test]
fn nested_user_namespace_is_refused() {
    let _g = shared();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "original").unwrap();
    let mut sb = attacker();
    sb.bind_ro(dir.path(), "/ro");
    let r = sh(&sb, "/esc userns /ro file; unshare -Urm true; echo rc=$?");
    let a = Attempts(&r);
    a.denied("clone_newuser", "EPERM");
    a.denied("clone3", "ENOSYS");
    a.denied("unshare_user_mount", "EPERM");
    // Entering init's namespaces needs its /proc/1/ns files, which ptrace
    // access checks guard (init is not dumpable).
    a.denied("setns_init", "EACCES");
    a.denied("write_file", "EROFS");
    assert!(r.stdout.contains("rc=1"), "{}", r.stdout);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("file")).unwrap(),
        "original"
    );
}

/// Defence in depth: with the seccomp filter disabled the job can create a
/// nested user namespace and is root in it, but the mounts it inherits from
/// the cell are locked (MNT_LOCK_READONLY, MNT_LOCKED): the read-only bind
/// cannot be remounted writable or unmounted, and procfs, sysfs and cgroupfs
/// cannot be mounted (not fully visible / not owned by that namespace).
#[test]
fn nested_user_namespace_cannot_unlock_the_cells_mounts() {
    let _g = shared();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "original").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(
        dir.path().join("file"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let mut sb = without_seccomp(attacker());
    sb.bind_ro(dir.path(), "/ro");
    let r = run(&sb, &["/esc", "userns", "/ro", "file"]);
    let a = attempts(&r);
    eprintln!("without seccomp:\n{}", r.stdout);
    if a.get("unshare_user_mount") == "ok" {
        assert!(r.stdout.contains("nested_root yes"), "{}", r.stdout);
        a.denied("nested_remount_bind_rw", "EPERM");
        // A mount locked to its parent by a less privileged copy (MNT_LOCKED).
        a.denied("nested_umount", "EINVAL");
        a.denied("nested_mount_proc", "EPERM");
        a.denied("nested_mount_sysfs", "EPERM");
        a.denied("nested_mount_cgroup2", "EPERM");
    }
    a.denied("write_file", "EROFS");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("file")).unwrap(),
        "original"
    );
}

// bubblewrap CVE-2019-12439: a predictable mount point in a shared /tmp

/// bubblewrap mounted its new root on /tmp/.bubblewrap-UID, which another
/// local user could create first (as a file: denial of service; as a
/// symlink: a mount somewhere else). jobcell creates nothing in a shared
/// directory: the cell mounts its root tmpfs over an existing root-owned
/// directory (`/tmp` itself) inside its own private mount namespace, and
/// builds everything inside that fresh tmpfs. Here another user fills the
/// host's /tmp with the names the cell's root uses (`usr`, `etc`, `proc`,
/// `dev`, `tmp`) as symlinks and a FIFO: the cell does not notice them and
/// they are untouched.
#[test]
fn hostile_entries_in_the_staging_directory_change_nothing() {
    let _g = exclusive();
    struct Planted(Vec<PathBuf>);
    impl Drop for Planted {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let mut planted = Planted(Vec::new());
    let nobody = 65534;
    let links = [
        ("usr", "/"),
        ("etc", "/root"),
        ("proc", "/etc"),
        ("tmp", "/var"),
    ];
    for (name, target) in links {
        let p = Path::new("/tmp").join(name);
        if std::os::unix::fs::symlink(target, &p).is_ok() {
            planted.0.push(p);
        }
    }
    let fifo = Path::new("/tmp/dev");
    if rustix::fs::mknodat(
        rustix::fs::CWD,
        fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o666),
        0,
    )
    .is_ok()
    {
        planted.0.push(fifo.into());
    }
    assert!(!planted.0.is_empty(), "nothing could be planted in /tmp");
    for p in &planted.0 {
        std::os::unix::fs::lchown(p, Some(nobody), Some(nobody)).unwrap();
    }
    let r = sh(
        &Sandbox::new(),
        "grep -c '^user:' /etc/passwd; ls /usr/bin/sh; ls -A /tmp | wc -l; \
         test -e /etc/shadow && echo SHADOW; echo done",
    );
    assert_eq!(r.stdout, "1\n/usr/bin/sh\n0\ndone\n", "{}", r.stderr);
    for p in &planted.0 {
        let md = std::fs::symlink_metadata(p).unwrap();
        assert_eq!(md.uid(), nobody, "{}", p.display());
        if let Some((_, target)) = links.iter().find(|(n, _)| p.ends_with(n)) {
            assert_eq!(std::fs::read_link(p).unwrap(), Path::new(target));
        } else {
            assert!(std::os::unix::fs::FileTypeExt::is_fifo(&md.file_type()));
        }
    }
}
