//! Privileges the job does not get: setuid binaries, capabilities, the
//! limits of its own cgroup.

use super::*;

// 6. setuid binaries

/// Two setuid-root copies of the attacker: one owned by host root (not
/// mapped in the cell: the kernel ignores a setuid bit whose owner has no
/// mapping), one owned by the cell's root (mapped). Stopped by no_new_privs
/// (and nosuid on the bind): the job stays uid 1000 and cannot write a file
/// only root may write, nor setuid(0).
#[test]
fn setuid_root_binaries_do_not_raise_privileges() {
    let _g = shared();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    let rw = dir.path().join("rw");
    std::fs::create_dir(&bin).unwrap();
    std::fs::create_dir(&rw).unwrap();
    std::fs::set_permissions(&rw, std::fs::Permissions::from_mode(0o777)).unwrap();
    let cell_root = (subid_start("/etc/subuid"), subid_start("/etc/subgid"));
    for (name, owner) in [("hostroot", (0, 0)), ("cellroot", cell_root)] {
        let b = bin.join(name);
        std::fs::copy(helper(), &b).unwrap();
        std::os::unix::fs::chown(&b, Some(owner.0), Some(owner.1)).unwrap();
        std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o4755)).unwrap();
        let f = rw.join(name);
        std::fs::write(&f, "root only\n").unwrap();
        std::os::unix::fs::chown(&f, Some(owner.0), Some(owner.1)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut sb = attacker();
    sb.bind_ro(&bin, "/suid").bind_rw(&rw, "/rw");
    let r = sh(
        &sb,
        "ls -ln /suid; /suid/hostroot whoami /rw/hostroot; /suid/cellroot whoami /rw/cellroot",
    );
    assert!(r.outcome.success(), "{}", r.stderr);
    let owner = |name: &str| {
        r.stdout.lines().find(|l| l.ends_with(name)).map(|l| {
            l.split_whitespace()
                .skip(2)
                .take(2)
                .collect::<Vec<_>>()
                .join(":")
        })
    };
    assert_eq!(owner("cellroot").as_deref(), Some("0:0"), "{}", r.stdout);
    assert_eq!(
        owner("hostroot").as_deref(),
        Some("65534:65534"),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout.matches("uid 1000 1000 1000\n").count(),
        2,
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout.matches("write_file EACCES\n").count(),
        2,
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout.matches("setuid0 EPERM\n").count(),
        2,
        "{}",
        r.stdout
    );
    for name in ["hostroot", "cellroot"] {
        assert_eq!(
            std::fs::read_to_string(rw.join(name)).unwrap(),
            "root only\n"
        );
    }
}

/// Even as uid 0 of the cell the job holds no capability in any set.
#[test]
fn capabilities_are_empty_even_as_cell_root() {
    let _g = shared();
    let mut sb = Sandbox::new();
    sb.user(0, 0);
    let r = sh(&sb, "grep -E '^(Cap|NoNewPrivs)' /proc/self/status");
    assert!(r.outcome.success(), "{}", r.stderr);
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            r.stdout.contains(&format!("{set}:\t0000000000000000\n")),
            "{set}: {}",
            r.stdout
        );
    }
    assert!(r.stdout.contains("NoNewPrivs:\t1"), "{}", r.stdout);
}

// 20. The job's own cgroup

/// The job's memory limit lives in its cgroup. The job sees no cgroupfs (no
/// /sys), cannot mount one (seccomp; no CAP_SYS_ADMIN; its cgroup namespace
/// is rooted at its own cgroup anyway), and the limit it tries to raise
/// still holds: the host reads it unchanged and the job is OOM-killed at it.
#[test]
fn own_cgroup_limits_cannot_be_raised() {
    let _g = shared();
    let sync = tempfile::tempdir().unwrap();
    std::fs::set_permissions(sync.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut sb = attacker();
    sb.user(0, 0).bind_ro(sync.path(), "/sync").limits(Limits {
        memory: Some(48 * MIB),
        ..Default::default()
    });
    let job = sb
        .spawn(Command::new("sh").args([
            "-c",
            "cat /proc/self/cgroup; /esc cgroup; echo END; \
             while [ ! -e /sync/go ]; do sleep 0.01; done; /esc mem 200",
        ]))
        .unwrap();
    let pid = job.pid().expect("running");
    let mut seen = String::new();
    let mut logs = job.logs();
    while !seen.contains("END\n") {
        let c = logs.next().expect("the job ended early");
        seen.push_str(&String::from_utf8_lossy(&c.data));
    }
    let limit = memory_limit_of(pid);
    std::fs::write(sync.path().join("go"), "").unwrap();
    let r = collect(&job);
    let a = Attempts(&r);
    a.denied("sys_fs_cgroup_exists", "ENOENT");
    for name in [
        "mount_cgroup2",
        "mount_cgroup_memory",
        "mount_cgroup_pids",
        "fsopen_cgroup2",
    ] {
        a.denied(name, "EPERM");
    }
    // Not even there: the cell has no /sys.
    for name in ["w_memory_limit", "w_memory_max", "w_cgroup_procs"] {
        a.denied(name, "ENOENT");
    }
    // Its cgroup namespace shows its own cgroup as the root.
    assert!(r.stdout.contains("0::/\n"), "{}", r.stdout);
    assert_eq!(limit, Some(48 * MIB), "the limit changed");
    assert_eq!(r.outcome.state, JobState::OutOfMemory, "{:?}", r.outcome);
    assert!(!r.stdout.contains("touched"), "{}", r.stdout);
}

/// The memory limit of the cgroup `pid` is in, as the host sees it.
fn memory_limit_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let file = text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let path = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            Some(
                Path::new("/sys/fs/cgroup/memory")
                    .join(path)
                    .join("memory.limit_in_bytes"),
            )
        } else if controllers.is_empty() && Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        {
            Some(Path::new("/sys/fs/cgroup").join(path).join("memory.max"))
        } else {
            None
        }
    })?;
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}
