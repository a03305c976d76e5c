//! The kernel's surface: denied system calls, `/proc`, foreign ABIs,
//! host name and clocks, socket families.

use super::*;

// 7. Kernel attack surface

/// Loading a kernel module, kexec, bpf, perf_event_open, the keyrings,
/// userfaultfd, io_uring, file handles ("shocker"), acct, swapon, reboot,
/// syslog, port I/O, personality changes. Stopped by seccomp (EPERM, the
/// default action), as cell root too. The host's module list is unchanged.
#[test]
fn kernel_interfaces_are_denied() {
    let _g = shared();
    let modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    let mut sb = attacker();
    sb.user(0, 0);
    let r = run(&sb, &["/esc", "syscalls"]);
    let a = attempts(&r);
    for name in [
        "init_module",
        "finit_module",
        "delete_module",
        "kexec_load",
        "kexec_file_load",
        "bpf",
        "perf_event_open",
        "add_key",
        "request_key",
        "keyctl",
        "userfaultfd",
        "io_uring_setup",
        "name_to_handle_at",
        "open_by_handle_at",
        "acct",
        "swapon",
        "reboot",
        "syslog",
        "iopl",
        "ioperm",
        "personality_linux32",
        "personality_norandom",
    ] {
        a.denied(name, "EPERM");
    }
    assert_eq!(
        std::fs::read_to_string("/proc/modules").unwrap_or_default(),
        modules
    );
}

/// In kill mode the filter hands a denied call to the cell's init (a seccomp
/// user notification), which names it in the verdict and kills the cell.
/// Whoever holds that listener could answer "continue" and let any denied
/// call through: the job must not have it, nor be able to take it from init
/// (`pidfd_getfd`, `/proc/1/fd`; ptrace access to init is denied). The denied
/// call never completes: the job ends with `BadSyscall` naming it.
#[test]
fn kill_mode_listener_stays_out_of_the_jobs_reach() {
    let _g = shared();
    let mut sb = attacker();
    sb.user(0, 0).seccomp(Seccomp::Custom(
        SeccompPolicy::new().action(SeccompAction::KillProcess),
    ));
    let r = sh(&sb, "/esc stealfd; /esc fds; exec /esc syscalls");
    let a = Attempts(&r);
    assert_eq!(a.get("pidfd_open_init"), "ok", "{}", r.stdout);
    a.denied("pidfd_getfd", "EPERM");
    a.denied("proc_init_fd", "EACCES");
    assert!(r.stdout.contains("fds 0\n"), "{}", r.stdout);
    // init_module is the first attempt; nothing after it ran.
    assert!(!r.stdout.contains("init_module"), "{}", r.stdout);
    assert_eq!(
        r.outcome.state,
        JobState::BadSyscall {
            syscall: Some(libc::SYS_init_module)
        },
        "{:?}",
        r.outcome
    );
}

// 8. /proc

/// Writing kernel settings through /proc/sys (core_pattern is a classic way
/// out: a pipe handler runs as host root), the sysrq trigger, reading the
/// kernel log. Stopped by the user namespace: /proc/sys and these files
/// belong to host root, who is not mapped, so even the cell's uid 0 is
/// "other" to them. A successful open would write back what the file held.
#[test]
fn proc_sys_and_sysrq_cannot_be_written() {
    let _g = shared();
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for sb in [attacker(), without_seccomp(attacker())] {
        let mut sb = sb;
        sb.user(0, 0);
        let r = run(&sb, &["/esc", "proc"]);
        let a = attempts(&r);
        // Each file belongs to host root, unmapped in the cell: EACCES
        // (before the read-only mount's EROFS), where this kernel has it.
        for (name, path) in [
            ("w_core_pattern", "/proc/sys/kernel/core_pattern"),
            ("w_modprobe", "/proc/sys/kernel/modprobe"),
            ("w_hostname", "/proc/sys/kernel/hostname"),
            ("w_sysrq", "/proc/sys/kernel/sysrq"),
            ("w_drop_caches", "/proc/sys/vm/drop_caches"),
            ("w_sysrq_trigger", "/proc/sysrq-trigger"),
            ("r_kcore", "/proc/kcore"),
            ("r_kmsg", "/proc/kmsg"),
            ("r_kpageflags", "/proc/kpageflags"),
        ] {
            a.denied(name, present_or_enoent(path, "EACCES"));
        }
        // Masked with /dev/null.
        a.denied(
            "r_timer_list",
            present_or_enoent("/proc/timer_list", "empty"),
        );
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        hostname
    );
}

/// The layer on top of the permission checks: `/proc/sys` mounted read-only
/// (EROFS for whoever would pass the ownership check, such as the cell's
/// root for the sysctls of a network namespace it owns), and the
/// world-readable files that describe the host's kernel masked with
/// `/dev/null` (`/proc/keys`, `/proc/timer_list`, `/proc/kallsyms`, ...);
/// `/proc/kcore` and `/proc/sysrq-trigger` are empty or absent. Nor can a
/// job unmount a mask: no mount call gets through (see above).
#[test]
fn proc_sys_is_read_only_and_kernel_files_are_masked() {
    let _g = shared();
    // The cell's root owns the sysctls of the cell's IPC namespace: only the
    // read-only mount refuses this write.
    let mut root = Sandbox::new();
    root.user(0, 0);
    let r = sh(&root, "echo 1 > /proc/sys/kernel/shm_rmid_forced");
    assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
    let r = sh(
        &Sandbox::new(),
        "grep ' /proc/sys ' /proc/self/mountinfo; \
         for f in kcore keys key-users timer_list sysrq-trigger kallsyms sched_debug; do \
           printf '%s %s\\n' $f $(cat /proc/$f 2>/dev/null | wc -c); done",
    );
    let ro = r
        .stdout
        .lines()
        .find(|l| l.contains(" /proc/sys "))
        .unwrap_or_else(|| panic!("/proc/sys is not a mount of its own: {}", r.stdout));
    assert!(
        ro.split_whitespace()
            .nth(5)
            .is_some_and(|o| o.starts_with("ro")),
        "{ro}"
    );
    for f in [
        "kcore",
        "keys",
        "key-users",
        "timer_list",
        "sysrq-trigger",
        "kallsyms",
        "sched_debug",
    ] {
        assert!(
            r.stdout.contains(&format!("\n{f} 0\n")) || r.stdout.starts_with(&format!("{f} 0\n")),
            "{f} is readable: {}",
            r.stdout
        );
    }
}

// 18. Foreign system call ABIs

/// System calls through `int 0x80` (the i386 ABI, where the numbers mean
/// other calls) and through the x32 ABI. Stopped by seccomp, which denies
/// every call of a foreign ABI whatever its number. Nothing is created.
#[test]
fn foreign_abi_system_calls_are_denied() {
    let _g = shared();
    let r = run(&attacker(), &["/esc", "int80"]);
    let a = attempts(&r);
    a.denied("i386_getpid", "EPERM");
    a.denied("i386_mkdir", "EPERM");
    a.denied("i386_setuid32", "EPERM");
    a.denied("x32_mkdir", "EPERM");
    a.denied("int80_dir_exists", "ENOENT");
    a.denied("x32_dir_exists", "ENOENT");
}

// 19. Host name and clocks

fn clock_offset() -> i128 {
    let ns = |c| {
        let t = rustix::time::clock_gettime(c);
        t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128
    };
    ns(rustix::time::ClockId::Realtime) - ns(rustix::time::ClockId::Monotonic)
}

/// Setting the host name and domain name, the clock, adjusting it, a new
/// time namespace; as the cell's root. The UTS namespace is the cell's own
/// and the job holds no CAP_SYS_ADMIN over it; the clocks are host-wide and
/// need CAP_SYS_TIME in the host's user namespace; seccomp denies the clock
/// calls first. Both runs (with and without the filter) fail; the host's
/// name and the offset between its wall clock and monotonic clock are unchanged.
#[test]
fn host_name_and_clock_cannot_be_changed() {
    let _g = shared();
    let uts = rustix::system::uname();
    let (node, domain) = (uts.nodename().to_owned(), uts.domainname().to_owned());
    let offset = clock_offset();
    for (sb, filtered) in [(attacker(), true), (without_seccomp(attacker()), false)] {
        let mut sb = sb;
        sb.user(0, 0);
        let r = sh(&sb, "/esc uts pwned; /esc clock; hostname");
        let a = Attempts(&r);
        for name in [
            "sethostname",
            "setdomainname",
            "unshare_uts",
            "clock_settime",
            "settimeofday",
            "adjtimex",
            "clock_adjtime",
            "unshare_time",
        ] {
            a.denied(name, "EPERM");
        }
        assert!(r.stdout.ends_with("jobcell\n"), "{filtered}: {}", r.stdout);
    }
    let uts = rustix::system::uname();
    assert_eq!(uts.nodename(), node.as_c_str());
    assert_eq!(uts.domainname(), domain.as_c_str());
    let drift = (clock_offset() - offset).abs();
    assert!(drift < 1_000_000_000, "the host clock moved by {drift} ns");
}

// Socket families (second round, issue 12)

/// Binds vsock port `port` on the host (any CID): `Ok` if free, else the errno.
fn host_vsock_bind(port: u32) -> Result<std::os::fd::OwnedFd, i32> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a local sockaddr_vm.
    unsafe {
        let s = libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(*libc::__errno_location());
        }
        let fd = std::os::fd::OwnedFd::from_raw_fd(s);
        let mut a: libc::sockaddr_vm = std::mem::zeroed();
        a.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        a.svm_cid = libc::VMADDR_CID_ANY;
        a.svm_port = port;
        let r = libc::bind(
            s,
            &a as *const libc::sockaddr_vm as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        );
        if r < 0 {
            return Err(*libc::__errno_location());
        }
        Ok(fd)
    }
}

/// `AF_VSOCK` is not network-namespaced: a job that binds a vsock port
/// takes it from the host (and on a VM host could talk to the hypervisor's
/// services). The default filter lets a job open only the families its
/// network namespace isolates (unix, inet, inet6, netlink); every other
/// family fails with `EAFNOSUPPORT`, as if the kernel lacked it. A policy
/// can allow one back, which is also the control that shows the attack.
#[test]
fn socket_families_the_network_namespace_does_not_isolate_are_denied() {
    let _g = shared();
    let r = run(&attacker(), &["/esc", "sockets"]);
    let a = attempts(&r);
    for fam in ["unix", "inet", "inet6", "netlink"] {
        a.denied(&format!("socket_{fam}"), "ok");
    }
    a.denied("socketpair_unix", "ok");
    for fam in [
        "vsock",
        "alg",
        "tipc",
        "rds",
        "can",
        "bluetooth",
        "kcm",
        "smc",
        "xdp",
        "appletalk",
        "x25",
        "key",
        "llc",
        "packet",
    ] {
        a.denied(&format!("socket_{fam}"), "EAFNOSUPPORT");
        a.denied(&format!("socketpair_{fam}"), "EAFNOSUPPORT");
    }

    let port = 20_000 + std::process::id() % 20_000;
    let host_has_vsock = match host_vsock_bind(port) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("no vsock on this host (errno {e}): only the cell's side is checked");
            false
        }
    };
    let job = attacker()
        .spawn(Command::new("/esc").args(["vsock", &port.to_string(), "3000"]))
        .unwrap();
    let line = wait_for_line(&job, "vsock_socket").expect("the helper reported");
    if host_has_vsock {
        let held = host_vsock_bind(port);
        assert!(
            held.is_ok(),
            "the job holds the host's vsock port {port} (host bind: errno {:?})",
            held.err()
        );
    }
    job.kill().unwrap();
    let _ = job.wait();
    assert_eq!(line, "vsock_socket EAFNOSUPPORT");

    // The control: allowed back, the job gets the host's port.
    let mut allowed = attacker();
    allowed.seccomp(Seccomp::Custom(
        SeccompPolicy::new().allow_socket_family(libc::AF_VSOCK),
    ));
    let r = run(&allowed, &["/esc", "sockets"]);
    let a = attempts(&r);
    if host_has_vsock {
        a.denied("socket_vsock", "ok");
    }
    a.denied("socket_alg", "EAFNOSUPPORT");
}
