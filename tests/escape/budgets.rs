//! The host's per-user budgets, and who owns a cell's namespaces.

use super::*;

// Per-user budgets (second round, issue 12)

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0)) >= (major, minor)
}

/// The count in a helper line `<prefix> N ...`.
fn count_in(line: &str) -> u64 {
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"))
}

/// Runs the helper on the host, as this (root) process: `esc CMD 0 1`
/// takes one unit of a per-user budget, and says whether it could.
fn host_takes_one(cmd: &str) -> String {
    let out = std::process::Command::new(helper())
        .args([cmd, "0", "1"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The host uid that owns the user namespace of process `pid`.
fn ns_owner_uid(pid: u32) -> u32 {
    const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/user")).unwrap();
    let mut uid: libc::uid_t = 0;
    // SAFETY: the ioctl writes one uid_t to a valid pointer.
    let r = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_OWNER_UID, &mut uid) };
    assert_eq!(
        r,
        0,
        "NS_GET_OWNER_UID: {}",
        std::io::Error::last_os_error()
    );
    uid
}

/// The calling thread's effective uid, securebits and the process's dumpable flag.
fn thread_credentials() -> (u32, i32, i32) {
    // SAFETY: plain calls without memory arguments.
    unsafe {
        (
            libc::geteuid(),
            libc::prctl(libc::PR_GET_SECUREBITS),
            libc::prctl(libc::PR_GET_DUMPABLE),
        )
    }
}

/// A cell cloned by the calling thread itself (a fresh sysfs needs the
/// host's mount table: no spawner) is created as its namespace owner too;
/// the thread gets its own uid, securebits and the process its dumpable
/// flag back.
#[test]
fn cells_cloned_by_the_calling_thread_have_their_own_owner_too() {
    let _g = shared();
    let before = thread_credentials();
    let mut sb = attacker();
    sb.sysfs(true);
    let job = sb.spawn(Command::new("sleep").arg("5")).unwrap();
    let owner = ns_owner_uid(job.pid().unwrap());
    assert_eq!(thread_credentials(), before);
    job.kill().unwrap();
    let _ = job.wait();
    assert!((0x7000_0000..0x7001_0000).contains(&owner), "{owner}");
}

/// inotify instances, POSIX message queue bytes and pending signals are
/// counted per user, and a cell's are also charged to the user that
/// created its user namespace, up to that user's limits. That was root:
/// while one default cell held them, every root process of the host got
/// `EMFILE` from `inotify_init1` and `mq_open` and `EAGAIN` from
/// `sigqueue`, and so did every other cell. Cells' user namespaces are now
/// created by a host uid of their own (from a block no process runs as),
/// so each cell has budgets of its own and takes nothing from the host or
/// other cells. Also run in the v2 VM.
#[test]
fn a_cell_cannot_exhaust_the_hosts_per_user_budgets() {
    let _g = exclusive();
    let hog = attacker()
        .spawn(Command::new("sh").args([
            "-c",
            "/esc inotify 5000 & /esc mqueue 5000 & /esc sigqueue 5000 & wait",
        ]))
        .unwrap();
    // Each holds what it got until killed; all three have reported when
    // the last of their lines is in.
    let mut out = String::new();
    for c in hog.logs() {
        out.push_str(&String::from_utf8_lossy(&c.data));
        if ["inotify_watches", "mqueues", "sigqueued"]
            .iter()
            .all(|p| out.lines().any(|l| l.starts_with(p)))
        {
            break;
        }
    }
    let line = |p: &str| {
        out.lines()
            .find(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("no {p}: {out}"))
            .to_string()
    };
    let (inotify, mqueues, signals) = (
        line("inotify_instances"),
        line("mqueues"),
        line("sigqueued"),
    );
    let owner = ns_owner_uid(hog.pid().unwrap());
    let host = [
        host_takes_one("inotify"),
        host_takes_one("mqueue"),
        host_takes_one("sigqueue"),
    ];
    let other = sh(
        &attacker(),
        "/esc inotify 0 16; /esc mqueue 0 1; /esc sigqueue 0 100",
    );
    hog.kill().unwrap();
    let _ = hog.wait();
    eprintln!("the cell held: {inotify}, {mqueues}, {signals}");
    assert_eq!(
        host,
        [
            "inotify_instances 1 ok\ninotify_watches 1\n",
            "mqueues 1 ok\n",
            "sigqueued 1 ok\n"
        ],
        "while a cell held {inotify}, {mqueues}, {signals}, host root could not get one"
    );
    // Before Linux 5.14 queue bytes and signals were counted per host uid,
    // which the cells share (not with root).
    let per_namespace = kernel_at_least(5, 14);
    assert!(
        other.stdout.contains("inotify_instances 16 ok")
            && (!per_namespace
                || other.stdout.contains("mqueues 1 ok")
                    && other.stdout.contains("sigqueued 100 ok")),
        "another cell was denied: {}",
        other.stdout
    );
    assert!(
        (0x7000_0000..0x7001_0000).contains(&owner),
        "the cell's user namespace belongs to uid {owner}"
    );
    // The cell itself had budgets worth the name.
    assert!(count_in(&inotify) >= 64, "{inotify}");
    assert!(count_in(&mqueues) >= 1, "{mqueues}");
    assert!(count_in(&signals) >= 1000, "{signals}");
}
