//! Host files outside the binds: `..`, `/proc/1/root`, symlinks,
//! inherited descriptors, the host's binary behind `/proc/1/exe`.

use super::*;

// 2. Host files outside the binds

/// `..` from a bind, from the root, and from the working directory: the
/// mount namespace's root is the cell's tmpfs (entered with pivot_root, the
/// old root detached), so `..` of `/` is `/`, and `..` of a bind's root is
/// the cell directory it is mounted on, never its host parent.
#[test]
fn dot_dot_never_leaves_the_cell() {
    let _g = shared();
    let s = secret();
    let data = s.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("visible"), "ok").unwrap();
    let mut sb = attacker();
    sb.bind_ro(&data, "/data").current_dir("/data");
    let host = s.path.display();
    let r = sh(
        &sb,
        &format!(
            "cat visible; echo; cat ../secret /data/../secret /../../../../{host} \
             ../../../../../../{host} 2>&1; cd /; cd ../../..; pwd; ls"
        ),
    );
    assert!(r.stdout.starts_with("ok\n"), "{}", r.stdout);
    assert!(!r.stdout.contains(SECRET), "SECRET READ: {}", r.stdout);
    assert_eq!(r.stdout.matches("No such file").count(), 4, "{}", r.stdout);
    assert!(r.stdout.contains("\n/\n"), "{}", r.stdout);
    s.assert_unchanged();
}

/// `/proc/1/root`, `/proc/1/cwd`: init's root is the cell's own, and init
/// is not the job's to inspect. Init's memory belongs to the host's user
/// namespace and init is not dumpable, so even a job running as the cell's
/// uid 0 gets EACCES (ptrace access mode checks, with no capability).
#[test]
fn proc_1_root_and_cwd_lead_nowhere() {
    let _g = shared();
    let s = secret();
    let mut sb = attacker();
    sb.user(0, 0);
    let host = s.path.display();
    let r = sh(
        &sb,
        &format!(
            "cat /proc/1/root{host} /proc/1/cwd{host} /proc/self/root{host} 2>&1; \
             ls /proc/1/root/ 2>&1; /esc exe"
        ),
    );
    assert!(!r.stdout.contains(SECRET), "SECRET READ: {}", r.stdout);
    let a = Attempts(&r);
    a.denied("open_init_root", "EACCES");
    a.denied("open_init_cwd", "EACCES");
    s.assert_unchanged();
}

/// Symlinks the host left in a bound directory resolve inside the cell: an
/// absolute one against the cell's root, a relative one that climbs out of
/// the bind against the cell directory it is mounted on. The job's own
/// symlinks and `/proc/self/root` resolve the same way.
#[test]
fn symlinks_resolve_inside_the_cell() {
    let _g = shared();
    let s = secret();
    let data = s.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::symlink(&s.path, data.join("abs")).unwrap();
    std::os::unix::fs::symlink("../secret", data.join("rel")).unwrap();
    std::os::unix::fs::symlink("..", data.join("up")).unwrap();
    let mut sb = attacker();
    sb.bind_ro(&data, "/data");
    let host = s.path.display();
    let r = sh(
        &sb,
        &format!(
            "cat /data/abs /data/rel /data/up/secret 2>&1; \
             ln -s {host} /tmp/mine; ln -s /proc/self/root/../../.. /tmp/up; \
             cat /tmp/mine /tmp/up{host} /proc/self/root{host} 2>&1; echo done"
        ),
    );
    assert!(r.stdout.ends_with("done\n"), "{}", r.stdout);
    assert!(!r.stdout.contains(SECRET), "SECRET READ: {}", r.stdout);
    assert_eq!(r.stdout.matches("No such file").count(), 6, "{}", r.stdout);
    s.assert_unchanged();
}

/// runc CVE-2024-21626: a directory descriptor of the host, inherited by the
/// job, is a way out of any root (`openat(fd, "..")`, or a working directory
/// of `/proc/self/fd/N`). The host opens a file, its directory, a socket and
/// a pipe without close-on-exec; the job must find none of them. Stopped by
/// the cell's init, which closes every inherited descriptor, and the job's
/// close-on-exec sweep. A working directory through `/proc/self/fd` is
/// refused before spawning (it does not exist in the model of the cell).
#[test]
fn leaked_host_descriptors_never_reach_the_job() {
    let _g = shared();
    let s = secret();
    let file = std::fs::File::open(&s.path).unwrap();
    let dir = std::fs::File::open(s.dir.path()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (pr, pw) = std::io::pipe().unwrap();
    let raws = [
        file.as_raw_fd(),
        dir.as_raw_fd(),
        listener.as_raw_fd(),
        pr.as_raw_fd(),
        pw.as_raw_fd(),
    ];
    for fd in raws {
        // SAFETY: clearing FD_CLOEXEC on descriptors this test owns.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
    }
    let r = run(&attacker(), &["/esc", "fds"]);
    assert!(r.outcome.success(), "{}", r.stderr);
    assert_eq!(r.stdout, "fds 0\n", "descriptors leaked into the job");
    let r = sh(&attacker(), "ls /proc/self/fd | tr '\\n' ' '");
    assert_eq!(r.stdout.trim(), "0 1 2 3", "{}", r.stderr);

    for fd in raws {
        let mut sb = attacker();
        sb.current_dir(format!("/proc/self/fd/{fd}"));
        match sb.spawn(Command::new("sh").args(["-c", "pwd; ls; cat secret"])) {
            Err(Error::CurrentDirNotFound { .. }) => {}
            Err(e) => panic!("unexpected error for cwd /proc/self/fd/{fd}: {e}"),
            Ok(job) => {
                let r = collect(&job);
                assert!(!r.stdout.contains(SECRET), "SECRET READ: {}", r.stdout);
            }
        }
    }
    drop((file, dir, listener, pr, pw));
    s.assert_unchanged();
}

/// Host descriptors the job could inherit: a secret file, its directory, a
/// listening socket and a pipe, all without close-on-exec. Dropped at the end.
struct Leakable {
    _held: Vec<std::os::fd::OwnedFd>,
}

fn leakable(s: &Secret) -> Leakable {
    let file: std::os::fd::OwnedFd = std::fs::File::open(&s.path).unwrap().into();
    let dir: std::os::fd::OwnedFd = std::fs::File::open(s.dir.path()).unwrap().into();
    let listener: std::os::fd::OwnedFd = std::net::TcpListener::bind("127.0.0.1:0").unwrap().into();
    let (pr, pw) = std::io::pipe().unwrap();
    let held: Vec<std::os::fd::OwnedFd> = vec![file, dir, listener, pr.into(), pw.into()];
    for fd in &held {
        // SAFETY: clearing FD_CLOEXEC on descriptors this test owns.
        assert_eq!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) }, 0);
    }
    Leakable { _held: held }
}

/// The job's descriptors above 2, as it sees them (`/esc fds` lists them
/// and tries `openat(fd, "..")` on each): none, or what leaked.
fn leaked_into(sb: &Sandbox) -> Option<String> {
    let r = run(sb, &["/esc", "fds"]);
    assert!(r.outcome.success(), "{}", r.stderr);
    (r.stdout != "fds 0\n").then(|| r.stdout.lines().take(12).collect::<Vec<_>>().join("\n"))
}

/// The same attack on every path where the cell is cloned from this
/// process rather than from the spawner (which never held the host's
/// descriptors): there init starts with a copy of the host's descriptor
/// table, and only its sweep and the job's close-on-exec sweep stand
/// between the host's descriptors and the job. The paths: a cell that
/// mounts a sysfs (it needs the host's mount table), a calling thread
/// with other credentials (here one capability less), `Network::Host`
/// from a thread in another network namespace, and the first spawn after
/// the spawner was killed.
#[test]
fn host_descriptors_never_reach_a_job_cloned_from_the_host() {
    // Alone: the spawner is killed below.
    let _g = exclusive();
    let s = secret();
    let _fds = leakable(&s);
    let mut sysfs = attacker();
    sysfs.sysfs(true);
    let mut results = vec![("sysfs", leaked_into(&sysfs))];

    let (creds, netns) = std::thread::scope(|scope| {
        let creds = scope.spawn(|| {
            drop_effective_capability(CAP_WAKE_ALARM);
            leaked_into(&attacker())
        });
        let netns = scope.spawn(|| {
            // SAFETY: unshare(CLONE_NEWNET) moves only this thread.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            let mut host_net = attacker();
            host_net.network(Network::Host);
            leaked_into(&host_net)
        });
        (creds.join().unwrap(), netns.join().unwrap())
    });
    results.push(("other credentials", creds));
    results.push(("Network::Host in another namespace", netns));

    let spawner = jobcell::__private::spawner_pid().expect("a spawner runs on this host");
    // SAFETY: kill has no memory effects; the spawner is this process's child.
    assert_eq!(unsafe { libc::kill(spawner, libc::SIGKILL) }, 0);
    let t = Instant::now();
    while std::fs::read_to_string(format!("/proc/{spawner}/stat")).is_ok_and(|st| {
        !st.rsplit_once(')')
            .is_some_and(|(_, r)| r.starts_with(" Z"))
    }) {
        assert!(t.elapsed() < Duration::from_secs(5), "the spawner lives on");
        std::thread::sleep(Duration::from_millis(5));
    }
    results.push((
        "the first spawn after the spawner was killed",
        leaked_into(&attacker()),
    ));
    // A new spawner serves from then on.
    results.push(("a new spawner", leaked_into(&attacker())));
    let next = jobcell::__private::spawner_pid().expect("a new spawner");
    assert_ne!(next, spawner);
    let leaks: Vec<String> = results
        .into_iter()
        .filter_map(|(path, l)| Some(format!("{path}:\n{}", l?)))
        .collect();
    assert!(
        leaks.is_empty(),
        "descriptors leaked into the job:\n{}",
        leaks.join("\n")
    );
    s.assert_unchanged();
}

/// Init itself keeps none of the host's descriptors. On the paths that
/// clone from this process it starts with a copy of the host's table; the
/// job's close-on-exec sweep alone would keep them from the job, so this
/// checks init's own sweep: held by init, a host pipe's write end would
/// keep the host's reader from ever seeing its end, a host file would stay
/// open for the cell's life. Checked from the host in `/proc/<init>/fd`,
/// by the identity (device, inode) of what each descriptor refers to.
#[test]
fn the_cells_init_keeps_no_host_descriptor() {
    let _g = shared();
    let s = secret();
    let held = leakable(&s);
    let host: BTreeSet<(u64, u64)> = held
        ._held
        .iter()
        .map(|fd| {
            let m = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
            (m.dev(), m.ino())
        })
        .collect();
    assert_eq!(
        host.len(),
        4,
        "a file, a directory, a socket, a pipe (both ends)"
    );
    let mut sb = attacker();
    sb.sysfs(true);
    let job = sb.spawn(Command::new("sleep").arg("30")).unwrap();
    let init = job.pid().expect("running");
    let mut seen = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{init}/fd")).unwrap() {
        let path = e.unwrap().path();
        if let Ok(m) = std::fs::metadata(&path) {
            let target = std::fs::read_link(&path).unwrap_or_default();
            seen.push(((m.dev(), m.ino()), path, target));
        }
    }
    job.kill().unwrap();
    job.wait().unwrap();
    assert!(!seen.is_empty(), "init holds its own descriptors");
    let kept: Vec<_> = seen.iter().filter(|(id, ..)| host.contains(id)).collect();
    assert!(kept.is_empty(), "init keeps host descriptors: {kept:?}");
    drop(held);
    s.assert_unchanged();
}

/// A capability no spawn needs.
const CAP_WAKE_ALARM: u32 = 35;

/// Drops `cap` from the calling thread's effective set (capset acts on
/// the thread only).
fn drop_effective_capability(cap: u32) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    let mut header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [0u32; 6]; // (effective, permitted, inheritable) x 2
                              // SAFETY: header and data have the layout capget and capset expect.
    unsafe {
        assert_eq!(
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut Header,
                data.as_mut_ptr()
            ),
            0
        );
        data[3 * (cap as usize / 32)] &= !(1 << (cap % 32));
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()),
            0
        );
    }
}

// runc CVE-2019-5736: overwriting the host's binary through /proc/self/exe

/// runc's exec joined a container with a process whose /proc/PID/exe was the
/// host's runc; the container reopened it for writing and replaced runc. In
/// jobcell the host binary is reachable the same way: the cell's init is a
/// fork of the host process, so /proc/1/exe in the cell is the host program
/// (here: this test binary). The job, even as the cell's root, cannot open,
/// read or resolve it: init is not dumpable and its memory belongs to the
/// host's user namespace, so ptrace access checks fail without
/// CAP_SYS_PTRACE there; its own /proc/self/exe is a read-only bind of a
/// file owned by host root. jobcell never brings a host process into a
/// running cell (no `exec` into a cell), which is the other half of the CVE.
#[test]
fn the_host_binary_cannot_be_overwritten_through_proc_exe() {
    let _g = shared();
    let exe = std::env::current_exe().unwrap();
    let before = std::fs::read(&exe).unwrap();
    let mut sb = attacker();
    sb.user(0, 0);
    let r = run(&sb, &["/esc", "exe"]);
    let a = attempts(&r);
    // A read-only bind of a file of host root's.
    a.denied("open_self_exe_w", "EACCES");
    for name in [
        "open_init_exe_r",
        "open_init_exe_w",
        "open_init_exe_path",
        "readlink_init_exe",
        "open_init_mem",
    ] {
        a.denied(name, "EACCES");
    }
    a.denied("ptrace_init", "EPERM");
    assert!(
        std::fs::read(&exe).unwrap() == before,
        "the host binary changed"
    );
    assert!(std::fs::read(helper()).is_ok());
}
