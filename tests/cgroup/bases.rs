//! Where job cgroups live: the default base, stale owners swept, bases
//! that cannot be used (not a cgroup, read-only), and a cgroup delegated to
//! a rootless user.

use super::*;

#[test]
fn stale_cgroups_of_a_dead_owner_are_swept() {
    let _g = common::shared();
    let dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    let mut dead = dead;
    dead.wait().unwrap();
    let pidns = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
    let owner = default_base().join(format!("{dead_pid}-1-{pidns}"));
    let job = owner.join("stalejob");
    // This process's jobcell sets its base up first: on a cgroup v2 top
    // that holds processes it moves them all into its leaf, and a process
    // placed in the stale cgroup meanwhile would be moved with them (seen
    // in the v2 VM's container run, a test spawning beside this one).
    assert!(common::sh(&Sandbox::new(), "true").outcome.success());
    let mut leftover = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    // A job ending elsewhere may remove the empty base, and another jobcell
    // process may sweep this directory first: retry until the process is in.
    let placed = (0..50).any(|_| {
        std::fs::create_dir_all(&job).is_ok()
            && std::fs::write(job.join("cgroup.procs"), leftover.id().to_string()).is_ok()
    });
    assert!(placed, "could not place a process in {}", job.display());

    let removed = jobcell::sweep_stale_cgroups(None).unwrap();
    // Usually 1; 0 if another jobcell process swept it first.
    eprintln!("swept {removed} stale job cgroup(s)");
    assert!(!owner.exists(), "{} survived", owner.display());
    let st = leftover.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL)
    );
}

/// What a child process of this test binary does (see [`exiting_child`]).
const EXIT_CHILD: &str = "JOBCELL_TEST_EXIT_CHILD";

/// Runs this test binary again as a child doing `what` (see
/// [`exiting_child`]), under `wrap` (e.g. `unshare`) when given; returns
/// its output once it has exited.
fn run_exiting_child(what: &str, wrap: &[&str]) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match wrap.split_first() {
        Some((w, rest)) => {
            let mut c = std::process::Command::new(w);
            c.args(rest).arg(&exe);
            c
        }
        None => std::process::Command::new(&exe),
    };
    let out = cmd
        .args([
            "--exact",
            "bases::exiting_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(EXIT_CHILD, what)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("CHILD-RAN"),
        "the child did not run its job:\n{text}"
    );
    text
}

/// Not a test of its own: the child of the two tests below. Runs two jobs
/// with a memory limit (so the process has job cgroups, and on v1 starts
/// making ready directories for the next job), then exits at once: through
/// `exit` (`"exit"`: the atexit cleanup runs while ready directories are
/// being made) or `_exit` (`"crash"`: as if killed, nothing cleaned up).
#[test]
#[ignore = "run by the tests that start it"]
fn exiting_child() {
    let Ok(what) = std::env::var(EXIT_CHILD) else {
        return;
    };
    // Each ready directory takes long enough that the exit below lands
    // while the preparation thread is making them.
    jobcell::__private::delay_ready_cgroups(Duration::from_millis(30));
    // Twice: a process's first spawn makes nothing ahead (it may be its
    // only one); the second asks for ready directories.
    for _ in 0..2 {
        let (outcome, _) = run(
            &sandbox(Limits {
                memory: Some(64 * MIB),
                ..Default::default()
            }),
            &["/jc-helper", "burn", "1"],
        );
        assert!(outcome.success(), "{outcome:?}");
    }
    let pidns = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
    println!("CHILD-RAN pid {} pidns {pidns}", std::process::id());
    std::thread::sleep(Duration::from_millis(40));
    match what.as_str() {
        "exit" => std::process::exit(0),
        // SAFETY: _exit ends the process at once, on purpose without cleanup.
        _ => unsafe { libc::_exit(0) },
    }
}

/// Not a test of its own: the child of the tests of work done ahead. Runs
/// one job (`"one-shot"`) or two (`"idle"`), prints what the process holds
/// ahead of need (and, for `"idle"`, again after an idle spell), then exits.
#[test]
#[ignore = "run by the tests that start it"]
fn work_ahead_child() {
    let Ok(what) = std::env::var(AHEAD_CHILD) else {
        return;
    };
    let sb = sandbox(Limits {
        memory: Some(64 * MIB),
        ..Default::default()
    });
    let jobs = if what == "idle" { 2 } else { 1 };
    for _ in 0..jobs {
        let (outcome, _) = run(&sb, &["/jc-helper", "burn", "1"]);
        assert!(outcome.success(), "{outcome:?}");
    }
    let pidns = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
    let me = format!("{}-", std::process::id());
    let spawner = jobcell::__private::spawner_pid().unwrap_or(0);
    println!(
        "CHILD-RAN pid {} pidns {pidns} spawner {spawner}",
        std::process::id()
    );
    let held = |when: &str| {
        // Lets the work asked for finish (or fail) first.
        jobcell::__private::cached_descriptors();
        let ready = common::cgroup_dirs_where(|n| n.starts_with(".ready-"))
            .into_iter()
            .filter(|d| {
                d.parent()
                    .and_then(|p| p.file_name())
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&me) && n.ends_with(&format!("-{pidns}")))
            })
            .count();
        let report = jobcell::host::check_sections(&[jobcell::host::SectionKind::Kernel]);
        let detail = |name| {
            report
                .find(name)
                .map(|c| c.detail.clone())
                .unwrap_or_default()
        };
        let inotify = common::descriptors("/proc/self/fd")
            .iter()
            .filter(|d| d.ends_with("anon_inode:inotify"))
            .count();
        println!("{when}: ready-cgroups {ready}");
        println!("{when}: inotify {inotify}");
        println!("{when}: netns [{}]", detail("network namespace pool"));
        println!("{when}: skeletons [{}]", detail("root skeletons"));
    };
    held("AFTER-JOBS");
    if what == "idle" {
        std::thread::sleep(IDLE + Duration::from_millis(1500));
        held("AFTER-IDLE");
    }
    std::process::exit(0);
}

/// What a child process of the work-ahead tests does (see [`work_ahead_child`]).
const AHEAD_CHILD: &str = "JOBCELL_TEST_AHEAD_CHILD";

/// How long an idle process keeps what it made ahead (`spawn/prep.rs`).
const IDLE: Duration = Duration::from_secs(5);

fn run_work_ahead_child(what: &str) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "bases::work_ahead_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(AHEAD_CHILD, what)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("CHILD-RAN"),
        "the child failed:\n{text}"
    );
    text
}

/// The rest of the line of `text` from `prefix` on.
fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.find(prefix).map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"))
}

#[test]
fn a_one_shot_process_makes_nothing_ahead_and_leaves_nothing_behind() {
    let _g = common::exclusive();
    let mounts = || std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts_before = mounts();
    let text = run_work_ahead_child("one-shot");
    // Nothing made for a next job that never came.
    assert_eq!(
        line(&text, "AFTER-JOBS: ready-cgroups"),
        "AFTER-JOBS: ready-cgroups 0",
        "{text}"
    );
    let l = line(&text, "AFTER-JOBS: netns");
    assert!(l.contains("not used yet"), "{l}\n{text}");
    // No root skeleton either: building one costs more than the root it
    // saves one cell; the cell built its root itself (and the spawner
    // still served it: see below).
    let l = line(&text, "AFTER-JOBS: skeletons");
    assert!(l.contains("not used yet"), "{l}\n{text}");
    // No inotify watch of the host paths a plan looks at: closing one at
    // exit waits for the kernel to free the watches (10-15 ms here).
    assert_eq!(
        line(&text, "AFTER-JOBS: inotify"),
        "AFTER-JOBS: inotify 0",
        "{text}"
    );
    // Nothing left: no cgroup, no mount, no process (the spawner, which
    // holds the process's namespaces made ahead, is gone with it).
    let left = child_dirs(&text);
    assert!(left.is_empty(), "the one-shot child left {left:#?}\n{text}");
    assert_eq!(mounts(), mounts_before, "the host's mount table changed");
    let spawner: i32 = line(&text, "CHILD-RAN")
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    assert!(spawner > 0, "no spawner served the job:\n{text}");
    let gone = (0..200).any(|_| {
        let alive = std::fs::read_to_string(format!("/proc/{spawner}/comm"))
            .is_ok_and(|c| c.trim() == "jobcell-spawner");
        if alive {
            std::thread::sleep(Duration::from_millis(10));
        }
        !alive
    });
    assert!(gone, "the spawner {spawner} outlived its process");
}

#[test]
fn what_was_made_ahead_goes_back_when_the_process_idles() {
    let _g = common::exclusive();
    let text = run_work_ahead_child("idle");
    let count = |l: &str| -> usize { l.split_whitespace().last().unwrap().parse().unwrap() };
    if !is_v2() {
        assert!(
            count(line(&text, "AFTER-JOBS: ready-cgroups")) > 0,
            "{text}"
        );
    }
    let l = line(&text, "AFTER-JOBS: netns");
    assert!(l.contains("fresh network namespaces ready"), "{l}\n{text}");
    let l = line(&text, "AFTER-JOBS: skeletons");
    assert!(!l.contains("not used yet"), "{l}\n{text}");
    // A program that spawns again watches the host paths its plans look at.
    assert_eq!(
        line(&text, "AFTER-JOBS: inotify"),
        "AFTER-JOBS: inotify 1",
        "{text}"
    );
    assert_eq!(
        line(&text, "AFTER-IDLE: ready-cgroups"),
        "AFTER-IDLE: ready-cgroups 0",
        "{text}"
    );
    let l = line(&text, "AFTER-IDLE: netns");
    assert!(l.contains("given back"), "{l}\n{text}");
    // The skeleton is a cache of every root's static part, not a pool: it stays.
    let l = line(&text, "AFTER-IDLE: skeletons");
    assert!(l.contains("built"), "{l}\n{text}");
    assert!(child_dirs(&text).is_empty(), "{text}");
}

/// The `<pid>-<start>-<pidns>` directories of the child that printed `text`.
fn child_dirs(text: &str) -> Vec<PathBuf> {
    let field = |name: &str| {
        text.split_whitespace()
            .skip_while(|w| *w != name)
            .nth(1)
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .to_owned()
    };
    let (pid, pidns) = (field("pid"), field("pidns"));
    common::cgroup_dirs_where(|n| {
        n.starts_with(&format!("{pid}-")) && n.ends_with(&format!("-{pidns}"))
    })
}

#[test]
fn ready_cgroups_go_with_a_process_that_exits_while_they_are_made() {
    // No other test of this process may sweep the child's directories first.
    let _g = common::exclusive();
    if is_v2() {
        eprintln!("cgroup v2: no ready directories; the child's job cgroup goes with its job");
    }
    for round in 0..3 {
        let text = run_exiting_child("exit", &[]);
        let left = child_dirs(&text);
        assert!(
            left.is_empty(),
            "round {round}: the exited child left {left:#?}\n{text}"
        );
    }
}

#[test]
fn cgroups_of_a_dead_process_of_another_pid_namespace_are_swept() {
    let _g = common::exclusive();
    // `_exit` from the namespace's first process: the namespace dies with it.
    let text = run_exiting_child(
        "crash",
        &["unshare", "--mount", "--pid", "--fork", "--mount-proc"],
    );
    let before = child_dirs(&text);
    assert!(
        !before.is_empty(),
        "the crashed child left nothing to sweep: is its directory named otherwise?\n{text}"
    );
    jobcell::sweep_stale_cgroups(None).unwrap();
    let left = child_dirs(&text);
    assert!(left.is_empty(), "not swept: {left:#?}");
}

#[test]
fn an_unusable_base_fails_loudly_only_for_jobs_with_limits() {
    let _g = common::shared();
    let not_cgroup = tempfile::tempdir().unwrap();
    let mut sb = sandbox(Limits {
        memory: Some(64 * MIB),
        ..Default::default()
    });
    sb.cgroup_base(not_cgroup.path());
    let e = sb.spawn(&Command::new("true")).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ControllerUnavailable {
                limit: "memory",
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&not_cgroup.path().display().to_string()),
        "{msg}"
    );

    sb.limits(Limits::default());
    let (o, _) = run(&sb, &["true"]);
    assert!(o.success(), "{o:?}");
    assert_eq!(o.usage, None, "no cgroup, no usage");
    assert_eq!(
        std::fs::read_dir(not_cgroup.path()).unwrap().count(),
        0,
        "nothing written there"
    );
}

/// Run by `.ci/v2vm-tests` in a mount namespace whose cgroupfs is mounted
/// read-only, as in a container without a writable cgroupfs; skipped elsewhere.
#[test]
fn a_read_only_cgroupfs_fails_loudly_only_for_jobs_with_limits() {
    let _g = common::shared();
    if std::env::var_os("JOBCELL_TEST_RO_CGROUPFS").is_none() {
        eprintln!("skipped: set JOBCELL_TEST_RO_CGROUPFS=1 where /sys/fs/cgroup is read-only");
        return;
    }
    let sb = sandbox(Limits {
        pids: Some(16),
        ..Default::default()
    });
    let e = sb.spawn(&Command::new("true")).unwrap_err();
    eprintln!("read-only cgroupfs: {e}");
    assert!(
        matches!(&e, Error::Cgroup { errno, .. } if errno.0 == libc::EROFS),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("/sys/fs/cgroup") && msg.contains("read-only"),
        "{msg}"
    );

    let (o, _) = run(&sandbox(Limits::default()), &["true"]);
    assert!(o.success(), "{o:?}");
    assert_eq!(o.usage, None);
}

const DELEGATED_CHILD: &str = "JOBCELL_TEST_DELEGATED_CHILD";

/// The uid systemd's `user@1000.service` runs as.
const USER: u32 = 1000;

/// What systemd's `Delegate=yes` gives a user: a cgroup it owns (the
/// directory and its `cgroup.procs`, `cgroup.subtree_control` and
/// `cgroup.threads`), with the process in it. Here a non-root process in
/// such a cgroup (`user@1000.service` in a slice of its own) runs jobs
/// with limits, rootless: with the delegated cgroup as `cgroup_base`,
/// and with the default base. The process must first leave the cgroup it
/// was put in for a leaf (no internal processes), then enable controllers
/// it owns; the job cgroups it makes are its own. Run by `.ci/v2vm-tests`
/// (`JOBCELL_TEST_DELEGATION=1`, as root on a pure cgroup v2 host: it
/// makes the slice at the top of the tree); skipped elsewhere.
#[test]
fn a_delegated_cgroup_serves_a_rootless_user() {
    use std::os::unix::process::CommandExt;
    if let Some(svc) = std::env::var_os(DELEGATED_CHILD) {
        return delegated_child(Path::new(&svc));
    }
    let _g = common::shared();
    if std::env::var_os("JOBCELL_TEST_DELEGATION").is_none() || !is_v2() {
        eprintln!(
            "skipped: set JOBCELL_TEST_DELEGATION=1 where this root process may make a \
             delegated cgroup at the top of a cgroup v2 tree"
        );
        return;
    }
    let root = Path::new("/sys/fs/cgroup");
    let slice = root.join(format!("jobcell-test-{}.slice", std::process::id()));
    let svc = slice.join(format!("user@{USER}.service"));
    std::fs::create_dir(&slice).unwrap();
    let available = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap();
    for c in ["cpu", "memory", "pids", "io"] {
        if available.split_whitespace().any(|a| a == c) {
            std::fs::write(slice.join("cgroup.subtree_control"), format!("+{c}")).unwrap();
        }
    }
    std::fs::create_dir(&svc).unwrap();
    for f in [
        "",
        "cgroup.procs",
        "cgroup.subtree_control",
        "cgroup.threads",
    ] {
        std::os::unix::fs::chown(svc.join(f), Some(USER), Some(USER)).unwrap();
    }
    let procs =
        std::ffi::CString::new(svc.join("cgroup.procs").into_os_string().into_vec()).unwrap();
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "bases::a_delegated_cgroup_serves_a_rootless_user",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(DELEGATED_CHILD, &svc)
    .current_dir("/");
    // SAFETY: only raw system calls between fork and exec: into the
    // delegated cgroup as root (as systemd puts a service's process), then
    // the user's ids.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(USER, USER, USER) != 0
                || libc::setresuid(USER, USER, USER) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    // The child's directories go with it or with a sweep; then the slice.
    jobcell::sweep_stale_cgroups(Some(&svc)).unwrap();
    let mut left = Vec::new();
    remove_tree(&slice, &mut left);
    assert!(
        out.status.success(),
        "the rootless user's jobs failed:\n{text}"
    );
    assert!(text.contains("DELEGATED-OK"), "{text}");
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

/// Removes a cgroup directory and everything below it, deepest first;
/// what cannot go is listed in `left`.
fn remove_tree(dir: &Path, left: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path(), left);
        }
    }
    if std::fs::remove_dir(dir).is_err() {
        left.push(dir.to_owned());
    }
}

/// The child half of `a_delegated_cgroup_serves_a_rootless_user`: uid
/// 1000, in the delegated cgroup `svc`.
fn delegated_child(svc: &Path) {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, USER);
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    assert!(
        own.trim_end().ends_with(&format!("user@{USER}.service")),
        "{own}"
    );
    let limits = Limits {
        memory: Some(64 * MIB),
        pids: Some(32),
        cpu_percent: Some(50),
        ..Default::default()
    };
    let mut delegated = sandbox(limits.clone());
    delegated.cgroup_base(svc);
    for (what, sb) in [
        ("cgroup_base", delegated),
        ("default base", sandbox(limits)),
    ] {
        let (o, out) = run(&sb, &["/jc-helper", "mem", "512"]);
        assert_eq!(o.state, JobState::OutOfMemory, "{what}: {o:?} {out}");
        assert!(o.usage.is_some_and(|u| u.oom_kills >= 1), "{what}: {o:?}");
        let job = sb
            .spawn(Command::new("/jc-helper").arg("forkbomb"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let live = job.usage().expect("live usage");
        assert!((28..=32).contains(&live.pids_current), "{what}: {live:?}");
        let id = job.id().to_string();
        let dirs = common::cgroup_dirs_named(&id);
        assert_eq!(dirs.len(), 1, "{what}: {dirs:?}");
        assert!(dirs[0].starts_with(svc), "{what}: {dirs:?}");
        job.kill().unwrap();
        job.wait().unwrap();
        assert_eq!(common::cgroup_dirs_named(&id), Vec::<PathBuf>::new());
        eprintln!("{what}: ok");
    }
    println!("DELEGATED-OK");
}

/// `sweep_stale_cgroups` says how many job cgroups it removed, also on a
/// process's first use of a base (opening the tree sweeps it, and that
/// sweep counts). A base of this test's own, so that no other process
/// sweeps these first; a live owner's cgroups stay.
#[test]
fn the_sweep_says_how_many_job_cgroups_it_removed() {
    let _g = common::shared();
    let base = default_base().with_file_name(format!("jobcell-sweep-{}", std::process::id()));
    std::fs::create_dir(&base).unwrap();
    let pidns = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let stale = base.join(format!("{dead_pid}-1-{pidns}"));
    let stat = std::fs::read_to_string("/proc/1/stat").unwrap();
    let start = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(19)
        .unwrap();
    let live = base.join(format!("1-{start}-{pidns}"));
    for job in [stale.join("a"), stale.join("b"), live.join("c")] {
        std::fs::create_dir_all(job).unwrap();
    }

    let removed = jobcell::sweep_stale_cgroups(Some(&base));
    let again = jobcell::sweep_stale_cgroups(Some(&base));
    let kept = live.join("c").exists();
    for d in [live.join("c"), live, stale, base] {
        let _ = std::fs::remove_dir(d);
    }
    assert_eq!(removed.unwrap(), 2, "the first sweep of a base");
    assert_eq!(again.unwrap(), 0, "nothing left to sweep");
    assert!(kept, "a live owner's job cgroup was swept");
}
