//! What a job observes inside its cell: isolation, identity, file system.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use common::{cell, collect, sh, shared, subid_start};
use jobcell::{Command, JobState, Output, Sandbox, Stdin};

#[test]
fn proc_lists_only_the_cells_processes() {
    let _g = shared();
    // echo and the glob are shell builtins: no extra process shows up.
    let r = sh(
        &cell(),
        "echo $$; echo /proc/[0-9]*; cat /proc/1/status | grep PPid",
    );
    assert!(r.outcome.success(), "{}", r.stderr);
    // sh is the job (PID 2), forked by the cell's init (PID 1), whose parent is outside.
    assert_eq!(r.stdout, "2\n/proc/1 /proc/2\nPPid:\t0\n");
}

#[test]
fn ids_are_mapped_and_never_host_root() {
    let _g = shared();
    let r = sh(&cell(), "id; cat /proc/self/uid_map /proc/self/gid_map; grep -E '^(Uid|Gid|CapEff|CapBnd)' /proc/self/status");
    assert!(r.outcome.success(), "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with("uid=1000(user) gid=1000(user) groups=1000(user)"),
        "{}",
        r.stdout
    );
    let uid0 = subid_start("/etc/subuid");
    let gid0 = subid_start("/etc/subgid");
    let maps: Vec<Vec<u32>> = r
        .stdout
        .lines()
        .skip(1)
        .take(2)
        .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
        .collect();
    assert_eq!(maps[0][..2], [0, uid0]);
    assert_eq!(maps[1][..2], [0, gid0]);
    assert!(uid0 > 0 && gid0 > 0);
    assert!(
        r.stdout.contains("CapEff:\t0000000000000000"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("CapBnd:\t0000000000000000"),
        "{}",
        r.stdout
    );
}

#[test]
fn files_written_to_a_rw_bind_belong_to_the_mapped_id() {
    let _g = shared();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut sb = cell();
    sb.bind_rw(dir.path(), "/work");
    let r = sh(&sb, "echo data > /work/out && ls -ln /work/out");
    assert!(r.outcome.success(), "{}", r.stderr);
    let md = std::fs::metadata(dir.path().join("out")).unwrap();
    assert_eq!(md.uid(), subid_start("/etc/subuid") + 1000);
    assert_eq!(md.gid(), subid_start("/etc/subgid") + 1000);
    assert!(
        r.stdout.contains(" 1000 1000 "),
        "inside it is the job's own: {}",
        r.stdout
    );
}

/// `Sandbox::host_ids` is who the job is on the host: a directory given
/// to those ids is the job's own inside, and what it creates there belongs
/// to them.
#[test]
fn host_ids_tell_who_the_job_is_on_the_host() {
    let _g = shared();
    for (uid, gid) in [(1000, 1000), (0, 0), (1234, 4321)] {
        let dir = tempfile::tempdir().unwrap();
        let mut sb = cell();
        sb.user(uid, gid);
        let (host_uid, host_gid) = sb.host_ids().unwrap();
        assert_eq!(host_uid, subid_start("/etc/subuid") + uid);
        assert_eq!(host_gid, subid_start("/etc/subgid") + gid);
        std::os::unix::fs::chown(dir.path(), Some(host_uid), Some(host_gid)).unwrap();
        sb.bind_rw(dir.path(), "/work");
        let r = sh(
            &sb,
            "echo data > /work/out && stat -c '%u %g' /work /work/out",
        );
        assert!(r.outcome.success(), "{}", r.stderr);
        assert_eq!(r.stdout, format!("{uid} {gid}\n{uid} {gid}\n"));
        let md = std::fs::metadata(dir.path().join("out")).unwrap();
        assert_eq!((md.uid(), md.gid()), (host_uid, host_gid));
    }
    let mut sb = cell();
    sb.id_map(jobcell::IdMap::Range {
        uid_start: 300_000,
        gid_start: 400_000,
        count: 2000,
    });
    assert_eq!(sb.host_ids().unwrap(), (301_000, 401_000));
    sb.user(2000, 0);
    assert!(matches!(
        sb.host_ids(),
        Err(jobcell::Error::IdOutOfRange { kind: "uid", .. })
    ));
}

#[test]
fn user_and_hostname_are_configurable() {
    let _g = shared();
    let mut sb = cell();
    sb.hostname("judge-7").user(1234, 4321);
    let r = sh(
        &sb,
        "hostname; cat /etc/hostname; id -u; id -g; grep ':1234:' /etc/passwd",
    );
    assert!(r.outcome.success(), "{}", r.stderr);
    let l: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(&l[..4], ["judge-7", "judge-7", "1234", "4321"]);
    assert!(l[4].starts_with("user:x:1234:4321:"));
}

#[test]
fn only_loopback_and_it_is_up() {
    let _g = shared();
    let r = sh(&cell(), "cat /proc/net/dev; cat /proc/net/if_inet6 2>/dev/null; echo; ip -o link 2>/dev/null || true");
    assert!(r.outcome.success(), "{}", r.stderr);
    let ifaces: Vec<&str> = r
        .stdout
        .lines()
        .skip(2)
        .take_while(|l| l.contains(':'))
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(ifaces, ["lo"], "{}", r.stdout);
    if r.stdout.contains("lo: <") {
        assert!(r.stdout.contains("UP"), "loopback must be up: {}", r.stdout);
    }
}

#[test]
fn host_files_outside_the_binds_are_invisible() {
    let _g = shared();
    let secret = tempfile::Builder::new()
        .prefix("jobcell-secret")
        .tempfile()
        .unwrap();
    std::fs::write(secret.path(), "host secret").unwrap();
    let p = secret.path().display().to_string();
    let r = sh(
        &cell(),
        &format!("cat {p}; ls /root /home /var /opt 2>&1; test -e /etc/shadow && echo SHADOW; test -e /etc/machine-id && echo MACHINEID; test -e /etc/ssh && echo SSH; exit 0"),
    );
    assert!(!r.stdout.contains("host secret"));
    assert!(r.stderr.contains("No such file"), "{}", r.stderr);
    for bad in ["SHADOW", "MACHINEID", "SSH"] {
        assert!(!r.stdout.contains(bad), "{bad} visible: {}", r.stdout);
    }
}

#[test]
fn read_only_binds_refuse_writes_and_tmp_is_writable() {
    let _g = shared();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data"), "x").unwrap();
    // Writable by anyone: only the read-only mount stands in the way.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(
        dir.path().join("data"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let mut sb = cell();
    sb.bind_ro(dir.path(), "/ro");
    let r = sh(&sb, "cat /ro/data; echo y >> /ro/data; touch /ro/new; echo z > /tmp/f && cat /tmp/f; touch /usr/x; touch /etc/x; touch /x");
    assert_eq!(r.stdout, "xz\n");
    assert_eq!(
        r.stderr.matches("Read-only file system").count(),
        5,
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data")).unwrap(),
        "x"
    );
}

#[test]
fn only_stdio_descriptors_are_open() {
    let _g = shared();
    // Open a descriptor without close-on-exec in the host: the job must not get it.
    let f = std::fs::File::open("/etc/passwd").unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&f);
    // SAFETY: clearing FD_CLOEXEC on a descriptor we own.
    unsafe { libc::fcntl(raw, libc::F_SETFD, 0) };
    let r = sh(&cell(), "ls /proc/self/fd | sort -n | tr '\\n' ' '");
    drop(f);
    // 0, 1, 2 and the descriptor ls itself opens for the directory.
    assert_eq!(r.stdout.trim(), "0 1 2 3", "{}", r.stderr);
}

#[test]
fn a_setuid_binary_does_not_raise_privileges() {
    let _g = shared();
    let dir = tempfile::tempdir().unwrap();
    let id = dir.path().join("id");
    std::fs::copy("/usr/bin/id", &id).unwrap();
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let mut sb = cell();
    sb.bind_ro(dir.path(), "/suid");
    let r = sh(&sb, "/suid/id; grep NoNewPrivs /proc/self/status");
    assert!(r.outcome.success(), "{}", r.stderr);
    assert!(r.stdout.starts_with("uid=1000(user)"), "{}", r.stdout);
    assert!(!r.stdout.contains("euid="), "{}", r.stdout);
    assert!(r.stdout.contains("NoNewPrivs:\t1"), "{}", r.stdout);
}

#[test]
fn reparented_zombies_are_reaped() {
    let _g = shared();
    let r = sh(
        &cell(),
        "i=0; while [ $i -lt 200 ]; do sh -c 'true &'; i=$((i+1)); done; sleep 0.3; \
         cat /proc/[0-9]*/stat 2>/dev/null | awk '$3 == \"Z\"' | wc -l",
    );
    assert!(r.outcome.success(), "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "0", "zombies left in the cell");
}

#[test]
fn wait_does_not_hang_on_a_pipe_held_by_an_orphan() {
    let _g = shared();
    let marker = format!("{}", 900_000 + std::process::id() % 99_999);
    let t = Instant::now();
    let r = sh(&cell(), &format!("sleep {marker} & echo started"));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(r.stdout, "started\n");
    assert!(r.outcome.success());
    let job = cell()
        .spawn(Command::new("sh").args(["-c", &format!("sleep {marker} & exit 0")]))
        .unwrap();
    assert_eq!(job.wait().unwrap().code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(100));
    let left = common::descendants(std::process::id() as i32);
    assert!(
        !left.iter().any(|(_, c)| c.contains(&marker)),
        "the orphan outlived its cell: {left:?}"
    );
}

#[test]
fn stdin_sources() {
    let _g = shared();
    let job = cell()
        .spawn(Command::new("cat").stdin(Stdin::bytes("from bytes\n")))
        .unwrap();
    assert_eq!(collect(&job).stdout, "from bytes\n");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let job = cell()
        .spawn(
            Command::new("sh")
                .args(["-c", "wc -c"])
                .stdin(Stdin::bytes(&big)),
        )
        .unwrap();
    assert_eq!(collect(&job).stdout.trim(), "3000000");
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), "from a file").unwrap();
    let job = cell()
        .spawn(Command::new("cat").stdin(Stdin::File(f.path().into())))
        .unwrap();
    assert_eq!(collect(&job).stdout, "from a file");
    let job = cell().spawn(&Command::new("cat")).unwrap();
    let r = collect(&job);
    assert_eq!(r.stdout, "");
    assert!(r.outcome.success());
}

#[test]
fn output_modes() {
    let _g = shared();
    let job = cell()
        .spawn(
            Command::new("sh")
                .args(["-c", "echo out; echo err >&2"])
                .stdout(Output::Discard),
        )
        .unwrap();
    let r = collect(&job);
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr, "err\n");
}

#[test]
fn environment_is_clean_and_configurable() {
    let _g = shared();
    std::env::set_var("JOBCELL_HOST_SECRET", "leak");
    let mut sb = cell();
    sb.env("FROM_SANDBOX", "1").current_dir("/tmp");
    let job = sb
        .spawn(
            Command::new("env")
                .env("FROM_COMMAND", "2")
                .env_remove("LANG"),
        )
        .unwrap();
    let r = collect(&job);
    assert!(!r.stdout.contains("JOBCELL_HOST_SECRET"));
    assert!(r.stdout.contains("FROM_SANDBOX=1"));
    assert!(r.stdout.contains("FROM_COMMAND=2"));
    assert!(r.stdout.contains("PATH=/usr/local/sbin"));
    assert!(!r.stdout.contains("LANG="));
    let r = sh(&sb, "pwd");
    assert_eq!(r.stdout, "/tmp\n");
}

#[test]
fn many_readers_each_replay_everything() {
    let _g = shared();
    let job = cell()
        .spawn(Command::new("sh").args([
            "-c",
            "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done",
        ]))
        .unwrap();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let r = job.logs();
            std::thread::spawn(move || r.flat_map(|c| c.data.to_vec()).collect::<Vec<u8>>())
        })
        .collect();
    let all: Vec<Vec<u8>> = readers.into_iter().map(|t| t.join().unwrap()).collect();
    job.wait().unwrap();
    let late: Vec<u8> = job.logs().flat_map(|c| c.data.to_vec()).collect();
    assert!(all.iter().all(|a| *a == late));
    assert_eq!(late.iter().filter(|&&b| b == b'\n').count(), 2000);
}

#[test]
fn kill_and_drop_end_the_job() {
    let _g = shared();
    let job = cell().spawn(Command::new("sleep").arg("1000")).unwrap();
    assert!(job.try_wait().unwrap().is_none());
    job.kill().unwrap();
    let o = job.wait().unwrap();
    assert_eq!(o.state, JobState::Stopped);
    assert_eq!(o.signal(), Some(libc::SIGKILL));
    let job = cell().spawn(Command::new("sleep").arg("1001")).unwrap();
    let pid = job.pid().unwrap() as i32;
    drop(job);
    let t = Instant::now();
    // SAFETY: kill(pid, 0) only probes for existence.
    while unsafe { libc::kill(pid, 0) } == 0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The reactor reaps it: the pid is gone, not a zombie.
    assert!(common::descendants(std::process::id() as i32)
        .iter()
        .all(|(p, _)| *p != pid));
}

#[test]
fn exit_codes_and_signals() {
    let _g = shared();
    let r = sh(&cell(), "exit 3");
    assert_eq!(r.outcome.code(), Some(3));
    assert!(matches!(r.outcome.state, JobState::Failed { .. }));
    let r = sh(&cell(), "kill -SEGV $$");
    assert_eq!(r.outcome.signal(), Some(libc::SIGSEGV));
    assert!(r.outcome.wall_time > Duration::ZERO);
}

#[test]
fn signal_dispositions_start_at_their_defaults() {
    let _g = shared();
    extern "C" fn handler(_: libc::c_int) {}
    // The test harness ignores SIGPIPE, as every Rust program does; ignore
    // one more and catch another: none of it may reach the job.
    // SAFETY: setting dispositions of signals nothing in this test binary uses.
    unsafe {
        libc::signal(libc::SIGUSR2, libc::SIG_IGN);
        libc::signal(libc::SIGUSR1, handler as *const () as libc::sighandler_t);
    }
    // Not the first spawn of the process: until a clone has shown that the
    // kernel clears handlers, the job resets every signal anyway.
    assert!(cell()
        .spawn(&Command::new("true"))
        .unwrap()
        .wait()
        .unwrap()
        .success());
    let job = cell()
        .spawn(Command::new("cat").arg("/proc/self/status"))
        .unwrap();
    let r = collect(&job);
    assert!(r.outcome.success(), "{}", r.stderr);
    for field in ["SigIgn", "SigCgt", "SigBlk"] {
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in {}", r.stdout));
        assert_eq!(
            line.split_whitespace().nth(1),
            Some("0000000000000000"),
            "{line}"
        );
    }
}

#[test]
fn rootfs_and_extra_entries() {
    let _g = shared();
    // A root made of the host's /usr plus the mount points a root needs.
    let root = tempfile::tempdir().unwrap();
    for d in ["proc", "dev", "tmp", "usr", "etc", "data", "scratch"] {
        std::fs::create_dir(root.path().join(d)).unwrap();
    }
    for l in ["bin", "lib", "lib64", "sbin"] {
        if let Ok(t) = std::fs::read_link(format!("/{l}")) {
            std::os::unix::fs::symlink(t, root.path().join(l)).unwrap();
        }
    }
    std::fs::write(root.path().join("etc/marker"), "custom root\n").unwrap();
    std::fs::write(root.path().join("etc/ld.so.cache"), "").unwrap();
    let mut sb = Sandbox::new();
    sb.rootfs(root.path())
        .bind_ro("/usr", "/usr")
        .bind_ro("/etc/ld.so.cache", "/etc/ld.so.cache")
        .tmpfs("/data", 1 << 20)
        .dir("/data/sub")
        .file("/data/sub/input.txt", "1 2 3\n")
        .symlink("sub/input.txt", "/data/link")
        .tmpfs("/scratch", 1 << 20);
    let r = sh(
        &sb,
        "cat /etc/marker /data/link; echo w > /scratch/f && cat /scratch/f; touch /newfile",
    );
    assert_eq!(r.stdout, "custom root\n1 2 3\nw\n", "{}", r.stderr);
    assert!(r.stderr.contains("Read-only"), "{}", r.stderr);
    assert!(!root.path().join("newfile").exists());
}

#[test]
fn proc_is_masked_and_partly_read_only() {
    let _g = shared();
    let r = sh(
        &cell(),
        "wc -c < /proc/timer_list; wc -c < /proc/keys; echo 1 > /proc/sys/kernel/ns_last_pid; \
         cat /proc/sys/kernel/ostype; grep -c . /proc/self/status",
    );
    let l: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(l[0], "0", "timer_list is masked");
    assert_eq!(l[1], "0", "keys is masked");
    assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
    assert_eq!(l[2], "Linux", "/proc/sys stays readable");
    assert!(l[3].parse::<u32>().unwrap() > 10, "the rest of /proc works");
}

#[test]
fn sysfs_only_when_asked_and_only_the_cells_network() {
    let _g = shared();
    let r = sh(&cell(), "test -e /sys && echo present || echo absent");
    assert_eq!(r.stdout, "absent\n");
    let mut sb = cell();
    sb.sysfs(true);
    let r = sh(
        &sb,
        "ls /sys/class/net; ls /sys/firmware | wc -l; touch /sys/x",
    );
    let l: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(l, ["lo", "0"], "{}", r.stderr);
    assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
}

#[test]
fn rlimits_have_safe_defaults_and_can_be_set() {
    let _g = shared();
    let r = sh(&cell(), "ulimit -c; ulimit -n; ulimit -Hn");
    assert_eq!(r.stdout, "0\n1024\n4096\n");
    let mut sb = cell();
    sb.rlimit(jobcell::Rlimit::FileSize, 4096, 4096)
        .rlimit(jobcell::Rlimit::OpenFiles, 64, 64);
    let r = sh(&sb, "ulimit -n; exec head -c 10000 /dev/zero > /tmp/big");
    assert_eq!(r.stdout, "64\n");
    assert_eq!(r.outcome.signal(), Some(libc::SIGXFSZ), "{:?}", r.outcome);
    let mut bad = cell();
    bad.rlimit(jobcell::Rlimit::Cpu, 10, 5);
    assert!(matches!(
        bad.spawn(&Command::new("true")),
        Err(jobcell::Error::InvalidSetting { .. })
    ));
}

#[test]
fn no_capabilities_even_as_root_inside() {
    let _g = shared();
    let mut sb = cell();
    sb.user(0, 0);
    let r = sh(
        &sb,
        "id -u; grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status",
    );
    assert!(r.stdout.starts_with("0\n"), "{}", r.stdout);
    let caps: Vec<&str> = r.stdout.lines().skip(1).collect();
    assert_eq!(caps.len(), 5, "{}", r.stdout);
    for c in caps {
        assert!(c.ends_with("0000000000000000"), "{c}");
    }
}

#[cfg(feature = "landlock")]
#[test]
fn landlock_limits_the_job_beyond_the_mount_namespace() {
    let _g = shared();
    let mut sb = cell();
    sb.landlock(
        jobcell::Landlock::new()
            .read_only("/usr")
            .read_only("/etc/ld.so.cache")
            .read_write("/tmp")
            .read_write("/dev/null"),
    );
    // /etc/passwd exists in the cell but is not granted; /tmp is.
    let r = sh(
        &sb,
        "cat /etc/passwd; echo ok > /tmp/f && cat /tmp/f; ls / >/dev/null",
    );
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    assert!(!r.stdout.contains("root:"), "{}", r.stdout);
    assert!(r.stdout.contains("ok"), "{}", r.stdout);
    // A rule for a path that does not exist in the cell names it.
    let mut bad = cell();
    bad.landlock(jobcell::Landlock::new().read_only("/no/such/dir"));
    match bad.spawn(&Command::new("true")) {
        Err(jobcell::Error::Setup {
            stage: jobcell::Stage::Landlock,
            detail,
            errno,
        }) => {
            assert!(detail.contains("/no/such/dir"), "{detail}");
            assert_eq!(errno.0, libc::ENOENT);
        }
        other => panic!("expected a landlock setup error, got {other:?}"),
    }
}

/// The kernel's release as (major, minor).
fn kernel_version() -> (u32, u32) {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = rel
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// The file system `dir` is on, and whether this kernel makes idmapped
/// mounts of it (what `bind_rw_owned` needs): ext4 and xfs since 5.12,
/// btrfs since 5.15, tmpfs since 6.3; ramfs and the initramfs's rootfs
/// (a ramfs, or a tmpfs before 6.3) never.
fn idmap_support(dir: &std::path::Path) -> (&'static str, bool) {
    let st = rustix::fs::statfs(dir).unwrap();
    let k = kernel_version();
    #[allow(clippy::unnecessary_cast)]
    match st.f_type as i64 {
        0xEF53 => ("ext4", k >= (5, 12)),
        0x5846_5342 => ("xfs", k >= (5, 12)),
        0x9123_683E => ("btrfs", k >= (5, 15)),
        0x0102_1994 => ("tmpfs", k >= (6, 3)),
        0x8584_58F6 => ("ramfs", false),
        m => panic!("{}: add file system {m:#x} to idmap_support", dir.display()),
    }
}

/// `bind_rw_owned`: a root-owned host directory is the job's own inside
/// (owner and group are the job's ids, it may write there), and what the
/// job creates belongs to root on the host, not to the job's mapped ids.
/// Tried on a disk file system and on a tmpfs; where the kernel cannot
/// idmap one of them (tmpfs before Linux 6.3, as in the v2 VM), the spawn
/// fails with `Error::OwnedBind` naming the path and the file system.
#[test]
fn an_owned_bind_is_the_jobs_own_and_leaves_the_host_owner() {
    let _g = common::exclusive();
    // A first job starts the library's threads, so that the leak check
    // below sees only what the owned binds leave.
    assert!(sh(&cell(), "true").outcome.success());
    let disk = std::env::var_os("JOBCELL_TEST_IO_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/tmp".into());
    let mut made = 0;
    for base in [disk, "/tmp".into(), "/dev/shm".into()] {
        if !base.is_dir() {
            continue;
        }
        let (fs, supported) = idmap_support(&base);
        let dir = tempfile::tempdir_in(&base).unwrap();
        std::fs::write(dir.path().join("given"), "from the host\n").unwrap();
        // Root's, and for root alone: only an owner may enter and write it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let md = std::fs::metadata(dir.path()).unwrap();
        assert_eq!((md.uid(), md.gid()), (0, 0));
        let before = common::snapshot();
        let mut sb = cell();
        sb.bind_rw_owned(dir.path(), "/work").current_dir("/work");
        let spawned = sb.spawn(Command::new("sh").args([
            "-c",
            "id -u; stat -c '%u %g' /work /work/given; cat given; \
             echo made > new && mkdir sub && echo deep > sub/f && stat -c '%u %g' new sub/f",
        ]));
        if !supported {
            match spawned {
                Err(jobcell::Error::OwnedBind {
                    path,
                    reason,
                    errno,
                }) => {
                    assert_eq!(path, dir.path(), "{reason}");
                    assert_eq!(errno.0, libc::EINVAL, "{reason}");
                    assert!(reason.contains(fs), "{reason}");
                }
                Err(e) => panic!("{fs} at {}: {e}", base.display()),
                Ok(job) => panic!("{fs} cannot be idmapped, yet {:?}", job.wait()),
            }
            common::assert_no_leaks(&before, "a refused owned bind");
            continue;
        }
        let r = collect(&spawned.unwrap_or_else(|e| panic!("{fs} at {}: {e}", base.display())));
        assert!(r.outcome.success(), "{fs}: {:?} {}", r.outcome, r.stderr);
        assert_eq!(
            r.stdout, "1000\n1000 1000\n1000 1000\nfrom the host\n1000 1000\n1000 1000\n",
            "{fs}: inside, the job owns the directory and what it makes"
        );
        for f in ["new", "sub", "sub/f"] {
            let md = std::fs::metadata(dir.path().join(f)).unwrap();
            assert_eq!(
                (md.uid(), md.gid()),
                (0, 0),
                "{fs}: {f} belongs to the directory's owner on the host, not to {:?}",
                sb.host_ids().unwrap()
            );
        }
        assert_eq!(
            std::fs::metadata(dir.path()).unwrap().uid(),
            0,
            "nothing chowned"
        );
        common::assert_no_leaks(&before, "an owned bind");
        made += 1;
    }
    assert!(
        made > 0,
        "no file system here could be idmapped: nothing was tested"
    );
}

/// The owner need not be root: a directory of another host user is shown
/// as the job's (whatever uid the job has), and the job's files are that
/// user's on the host. A job running as the cell's root is not host root
/// there either.
#[test]
fn an_owned_bind_maps_any_owner_onto_any_job_user() {
    let _g = shared();
    let base = std::env::var_os("JOBCELL_TEST_IO_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/tmp".into());
    if !idmap_support(&base).1 {
        // The test above covers the refusal.
        eprintln!("{}: no idmapped mounts here", base.display());
        return;
    }
    for (owner, job) in [((4242, 4343), (1234, 4321)), ((0, 0), (0, 0))] {
        let dir = tempfile::tempdir_in(&base).unwrap();
        std::os::unix::fs::chown(dir.path(), Some(owner.0), Some(owner.1)).unwrap();
        let mut sb = cell();
        sb.user(job.0, job.1).bind_rw_owned(dir.path(), "/work");
        let r = sh(&sb, "touch /work/f && stat -c '%u %g' /work /work/f");
        assert!(r.outcome.success(), "{:?} {}", r.outcome, r.stderr);
        let ids = format!("{} {}\n", job.0, job.1);
        assert_eq!(r.stdout, ids.repeat(2));
        let md = std::fs::metadata(dir.path().join("f")).unwrap();
        assert_eq!((md.uid(), md.gid()), owner);
    }
}

/// Where the file system cannot be idmapped (a ramfs, as an NFS share or
/// an old kernel's tmpfs would be), `bind_rw_owned` is a typed error before
/// any process exists, and the documented fallback works: the directory
/// given to `host_ids()`, bound with `bind_rw`.
#[test]
fn an_owned_bind_the_file_system_cannot_make_is_a_typed_error_with_a_fallback() {
    let _g = common::exclusive();
    // Started before this thread leaves the host's mount namespace: the
    // library's threads (and the spawner) stay in the host's.
    assert!(sh(&cell(), "true").outcome.success());
    let dir = tempfile::tempdir().unwrap();
    // A ramfs in a mount namespace of this test's thread alone, private so
    // that nothing propagates to the host; it goes with the thread.
    // SAFETY: a new mount namespace changes nothing the Rust runtime relies on.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }.unwrap();
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC,
    )
    .unwrap();
    rustix::mount::mount(
        "ramfs",
        dir.path(),
        "ramfs",
        rustix::mount::MountFlags::empty(),
        c"mode=0755",
    )
    .unwrap();
    let mut sb = cell();
    sb.bind_rw_owned(dir.path(), "/work");
    let before = common::snapshot();
    match sb.spawn(&Command::new("true")) {
        Err(e @ jobcell::Error::OwnedBind { .. }) => {
            let jobcell::Error::OwnedBind {
                path,
                reason,
                errno,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(path, dir.path());
            assert_eq!(errno.0, libc::EINVAL);
            assert!(reason.contains("ramfs"), "{reason}");
            let text = e.to_string();
            assert!(
                text.contains("host_ids") && text.contains("bind_rw"),
                "{text}"
            );
        }
        other => panic!("a ramfs cannot be idmapped: {:?}", other.map(|j| j.wait())),
    }
    // The helper child that made the mapping's user namespace is gone.
    common::assert_no_leaks(&before, "a refused owned bind");

    let mut sb = cell();
    let (uid, gid) = sb.host_ids().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    sb.bind_rw(dir.path(), "/work");
    let r = sh(&sb, "echo x > /work/f && stat -c '%u %g' /work/f");
    assert!(r.outcome.success(), "{:?} {}", r.outcome, r.stderr);
    assert_eq!(r.stdout, "1000 1000\n");
    let md = std::fs::metadata(dir.path().join("f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (uid, gid));
    rustix::mount::unmount(dir.path(), rustix::mount::UnmountFlags::DETACH).unwrap();
}
