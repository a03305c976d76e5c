//! Files a job plants for the host or for later and concurrent jobs:
//! links in shared directories, symlinks on a bind's way.

use super::*;

// 14. Symlinks planted for the host (go-judge issue 176)

/// A directory any cell uid may write to.
fn world_writable(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
}

/// A first job, given `work` read-write at /work, runs `script` (it plants
/// something for whoever uses `work` next).
fn first_job_plants(work: &Path, script: &str) {
    let mut first = Sandbox::new();
    first.bind_rw(work, "/work");
    let r = sh(&first, script);
    assert!(r.outcome.success(), "{}", r.stderr);
}

/// The job plants, in its read-write bind, links to a host secret: absolute,
/// relative and climbing, through a linked directory, through /proc magic
/// links, plus a FIFO (a reader that blocks forever), a huge sparse file,
/// and tries a hard link to a file outside the bind. The host then reads
/// the job's "outputs" with `jobcell::fs::read_beneath`: every one is
/// refused, promptly, and the real output is read.
#[test]
fn planted_links_do_not_make_the_host_read_a_secret() {
    let _g = shared();
    let s = secret();
    let work = s.dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o777)).unwrap();
    let host = s.path.display();
    let mut sb = attacker();
    sb.bind_rw(&work, "/work");
    let r = sh(
        &sb,
        &format!(
            "cd /work && echo result > out.txt && \
             ln -s {host} abs && ln -s ../secret rel && ln -s ../../../../../{host} climb && \
             ln -s {} dir && ln -s / root && ln -s /proc/self/root proc && \
             mkfifo fifo && truncate -s 1099511627776 huge && \
             (ln /etc/passwd hard 2>&1; ln /esc hard2 2>&1; true)",
            s.dir.path().display()
        ),
    );
    assert!(r.outcome.success(), "{}", r.stderr);
    assert!(
        r.stdout.contains("Invalid cross-device link"),
        "{}",
        r.stdout
    );
    assert_eq!(
        jobcell::fs::read_beneath(&work, "out.txt", 1 << 20).unwrap(),
        b"result\n"
    );
    let t = Instant::now();
    for rel in [
        "abs",
        "rel",
        "climb",
        "dir/secret",
        &format!("root{host}"),
        &format!("proc{host}"),
        "fifo",
        "huge",
        "hard",
        "../secret",
        &s.path.display().to_string(),
    ] {
        match jobcell::fs::read_beneath(&work, rel, 1 << 20) {
            Ok(data) => panic!("the host read {rel}: {:?}", String::from_utf8_lossy(&data)),
            Err(e) => assert!(
                matches!(e, Error::ReadBeneath { .. }),
                "{rel}: unexpected error {e}"
            ),
        }
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // The naive read the attack is aimed at does follow the link.
    assert_eq!(std::fs::read_to_string(work.join("abs")).unwrap(), SECRET);
    s.assert_unchanged();
}

/// runc CVE-2021-30465 in jobcell's terms: a job replaces a directory of its
/// `bind_rw` tree with a symlink (`data -> ../usr`); a later job given the
/// same directory plus a nested bind at `/work/data` gets that bind wherever
/// the symlink points, here over its own `/usr` (it then cannot even find
/// `sh`). The mount namespace is private, so the host is never affected, but
/// one job decides the layout of another. jobcell resolves mount points
/// below a user bind in its model of the cell and refuses paths that cross
/// a symlink inside a bind.
#[test]
fn planted_symlinks_do_not_move_a_later_jobs_binds() {
    let _g = shared();
    let top = tempfile::tempdir().unwrap();
    let (work, data) = (top.path().join("work"), top.path().join("data"));
    world_writable(&work);
    world_writable(&work.join("data"));
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("payload"), "payload\n").unwrap();
    first_job_plants(&work, "rmdir /work/data && ln -s ../usr /work/data");
    let mut later = Sandbox::new();
    later.bind_rw(&work, "/work").bind_ro(&data, "/work/data");
    match later.spawn(Command::new("sh").args(["-c", "cat /work/data/payload; ls /usr/bin/sh"])) {
        Err(
            e @ (Error::InvalidPath { .. } | Error::HostPath { .. } | Error::InvalidSetting { .. }),
        ) => {
            eprintln!("refused: {e}");
        }
        Err(e) => panic!("the planted symlink moved the later job's bind: {e}"),
        Ok(job) => {
            let r = collect(&job);
            assert_eq!(r.stdout, "payload\n/usr/bin/sh\n", "{}", r.stderr);
        }
    }
}

/// The source side of the same class, and worse: a job replaces a directory
/// of its `bind_rw` tree with a symlink to a host directory (`inputs ->
/// /etc`); the host later binds that path into another cell (a CI runner
/// binding a previous step's output). The host resolves the bind source
/// through the planted symlink and mounts its own /etc into the cell. The
/// symlink belongs to a uid of the cell's range, so jobcell knows that a
/// job made it and refuses to follow it (it resolves the source component
/// by component with O_NOFOLLOW, then `open_tree`s the final descriptor).
#[test]
fn bind_sources_do_not_follow_symlinks_a_job_planted() {
    let _g = shared();
    let top = tempfile::tempdir().unwrap();
    let work = top.path().join("work");
    world_writable(&work);
    world_writable(&work.join("inputs"));
    first_job_plants(&work, "rmdir /work/inputs && ln -s /etc /work/inputs");
    let mut later = Sandbox::new();
    later.bind_ro(work.join("inputs"), "/inputs");
    match later.spawn(Command::new("sh").args(["-c", "ls /inputs | head -3"])) {
        Err(e) => eprintln!("refused: {e}"),
        Ok(job) => {
            let r = collect(&job);
            assert_eq!(r.stdout, "", "the host's /etc is in the cell: {}", r.stdout);
        }
    }
}

/// The same for the job's stdin: the host opens `Stdin::File` as host root,
/// following whatever a previous job left at that path. A symlink to
/// `/etc/shadow` feeds the host's password hashes to the next job; a FIFO
/// blocks the spawning thread forever. `Stdin::File` resolves the path
/// without following what a job planted and opens with `O_NONBLOCK |
/// O_NOCTTY`, so neither works.
#[test]
fn stdin_file_does_not_follow_what_a_job_planted() {
    let _g = shared();
    let top = tempfile::tempdir().unwrap();
    let work = top.path().join("work");
    world_writable(&work);
    first_job_plants(&work, "ln -s /etc/shadow /work/input && mkfifo /work/fifo");
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    match Sandbox::new().spawn(Command::new("cat").stdin(Stdin::File(work.join("input")))) {
        Err(e) => eprintln!("refused: {e}"),
        Ok(job) => {
            let r = collect(&job);
            assert!(
                shadow.is_empty() || r.stdout != shadow,
                "the job read the host's /etc/shadow through its stdin"
            );
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let fifo = work.join("fifo");
    let f = fifo.clone();
    std::thread::spawn(move || {
        let r = Sandbox::new().spawn(Command::new("true").stdin(Stdin::File(f)));
        let _ = tx.send(r.map(|j| j.wait().map(|_| ())));
    });
    let res = rx.recv_timeout(Duration::from_secs(3));
    if res.is_err() {
        // Unblock the spawning thread before failing.
        let _w = std::fs::OpenOptions::new().write(true).open(&fifo);
        let _ = rx.recv_timeout(Duration::from_secs(3));
        panic!("spawn blocked opening a FIFO the job planted as its stdin");
    }
}

// A bind target raced by a concurrent job (second round, issue 12)

/// runc CVE-2021-30465 with two live cells. Jobs A and B share a `bind_rw`
/// directory; B also binds a trusted directory read-only at `sub/ro`
/// below it. While B is being set up, A keeps exchanging `sub` with a
/// symlink to `decoy` (`renameat2(RENAME_EXCHANGE)`). The host's check of
/// B's plan sees a directory, init's mount meets the symlink: B's bind
/// lands in the decoy, and B then reads A's file at `sub/ro/data` as if
/// it came from the trusted bind. Init now resolves every mount target
/// from a descriptor of the new root without following symlinks
/// (`openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)`) and mounts on that
/// descriptor: a swapped path fails B's spawn with an error naming it.
#[test]
fn a_concurrent_job_cannot_redirect_a_bind_target() {
    let _g = shared();
    let top = tempfile::tempdir().unwrap();
    let (shared_dir, trusted) = (top.path().join("shared"), top.path().join("trusted"));
    world_writable(&shared_dir);
    std::fs::create_dir(&trusted).unwrap();
    std::fs::write(trusted.join("data"), "trusted\n").unwrap();
    // A prepares its traps: A's own file under the real mount point, a
    // decoy, and the symlink it swaps in.
    first_job_plants(
        &shared_dir,
        "mkdir -p /work/sub/ro /work/decoy/ro && echo evil > /work/sub/ro/data && \
         echo evil > /work/decoy/ro/data && ln -s decoy /work/swap",
    );
    let mut a = attacker();
    a.bind_rw(&shared_dir, "/work");
    let mut b = Sandbox::new();
    b.bind_rw(&shared_dir, "/work")
        .bind_ro(&trusted, "/work/sub/ro");
    let script = "touch /work/stop; while [ ! -e /work/stopped ]; do sleep 0.01; done; \
                  cat /work/sub/ro/data";
    let (mut trusted_reads, mut caught) = (0, 0);
    for _ in 0..60 {
        let _ = std::fs::remove_file(shared_dir.join("stop"));
        let _ = std::fs::remove_file(shared_dir.join("stopped"));
        let swapper = a
            .spawn(Command::new("/esc").args(["swap", "/work"]))
            .unwrap();
        wait_for_line(&swapper, "swapping").expect("the swapper started");
        match b.spawn(Command::new("sh").args(["-c", script])) {
            Ok(job) => {
                let r = collect(&job);
                assert_eq!(
                    r.stdout, "trusted\n",
                    "B's read-only bind landed elsewhere: B read {:?}",
                    r.stdout
                );
                trusted_reads += 1;
            }
            // Seen by the plan's check on the host.
            Err(Error::InvalidPath { path, .. }) => assert!(path.contains("/work/sub"), "{path}"),
            // Seen by init at mount time.
            Err(e @ Error::Setup { .. }) => {
                let text = e.to_string();
                assert!(text.contains("/work/sub"), "{text}");
                assert_eq!(e.errno(), Some(jobcell::Errno(libc::ELOOP)), "{text}");
                caught += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
        std::fs::write(shared_dir.join("stop"), "").unwrap();
        let r = collect(&swapper);
        assert!(r.outcome.success(), "{:?} {}", r.outcome, r.stderr);
    }
    eprintln!("{trusted_reads} spawns read the trusted bind, {caught} swaps caught at mount time");
    assert!(trusted_reads > 0, "no spawn got through the swapping");
}
