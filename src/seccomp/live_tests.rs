//! Tests that really install the filter, in a forked child of the test
//! process, and make the calls.
//!
//! The child of a fork in the (multi-threaded) test harness obeys the same
//! rule as the cell's job: raw system calls on memory prepared before the
//! fork, then `_exit` or `execve`. A probe returns its raw results (`-errno` on
//! failure) through a pipe; the parent checks them.

// libc's ioctl request constants are c_ulong on glibc and c_int on musl: the
// `as u64` casts are needed on one of them.
#![allow(clippy::unnecessary_cast)]

use std::ffi::{CStr, CString};
use std::io::Read;
use std::os::fd::FromRawFd;

use libc::{c_int, sock_filter};

use super::{Seccomp, SeccompAction, SeccompPolicy};
use crate::sys;

const EPERM: i64 = -(libc::EPERM as i64);
const ENOSYS: i64 = -(libc::ENOSYS as i64);
const EBADF: i64 = -(libc::EBADF as i64);

fn default_prog() -> Vec<sock_filter> {
    Seccomp::Default.compile().unwrap().unwrap().prog
}

fn kill_prog() -> Vec<sock_filter> {
    SeccompPolicy::new()
        .action(SeccompAction::KillProcess)
        .compile()
        .unwrap()
}

/// A raw system call: the return value, or `-errno`.
///
/// # Safety
/// The arguments must be valid for `nr`: integers, NULL, or pointers to
/// memory that lives across the call.
unsafe fn raw(nr: i64, a: [u64; 6]) -> i64 {
    // SAFETY: guaranteed by the caller.
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r == -1 {
        // SAFETY: this thread's errno slot.
        -i64::from(unsafe { *libc::__errno_location() })
    } else {
        r
    }
}

fn p(s: &CStr) -> u64 {
    s.as_ptr() as u64
}

/// Runs `probe` in a forked child after installing `prog`. Returns the
/// probe's results, or the child's wait status when it did not finish.
fn under_filter<const N: usize>(
    prog: &[sock_filter],
    probe: fn() -> [i64; N],
) -> Result<[i64; N], c_int> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let [rd, wr] = fds;
    // SAFETY: the child only makes raw system calls on memory prepared here, then exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        sys::close(rd);
        if sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).is_err() {
            sys::exit(120);
        }
        if sys::seccomp_filter(0, prog).is_err() {
            sys::exit(121);
        }
        for v in probe() {
            if sys::write_all(wr, &v.to_ne_bytes()).is_err() {
                sys::exit(122);
            }
        }
        sys::exit(0);
    }
    sys::close(wr);
    let mut bytes = Vec::new();
    // SAFETY: rd is our own read end, owned by the File from here on.
    unsafe { std::fs::File::from_raw_fd(rd) }
        .read_to_end(&mut bytes)
        .unwrap();
    let status = wait(pid);
    if status != 0 || bytes.len() != 8 * N {
        return Err(status);
    }
    let mut out = [0i64; N];
    for (o, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        *o = i64::from_ne_bytes(chunk.try_into().unwrap());
    }
    Ok(out)
}

/// Forks, installs `prog`, and executes `argv` with `envp` (stdout to /dev/null).
/// Returns the wait status.
fn exec_under_filter(prog: &[sock_filter], argv: &[&str], envp: &[&str]) -> c_int {
    let argv: Vec<CString> = argv.iter().map(|s| CString::new(*s).unwrap()).collect();
    let envp: Vec<CString> = envp.iter().map(|s| CString::new(*s).unwrap()).collect();
    let ptrs = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let (argv_ptrs, envp_ptrs) = (ptrs(&argv), ptrs(&envp));
    let null = sys::open(c"/dev/null", libc::O_WRONLY | libc::O_CLOEXEC, 0).unwrap();
    // SAFETY: the child only makes raw system calls on memory prepared here, then execs or exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        if sys::dup3(null, 1, 0).is_err()
            || sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).is_err()
        {
            sys::exit(120);
        }
        if sys::seccomp_filter(0, prog).is_err() {
            sys::exit(121);
        }
        // SAFETY: NULL-terminated arrays of pointers into CStrings the parent keeps alive.
        unsafe { sys::execve(&argv[0], argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
        sys::exit(123);
    }
    sys::close(null);
    wait(pid)
}

fn wait(pid: c_int) -> c_int {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid int.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return status;
        }
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EINTR)
        );
    }
}

/// A raw fork (`clone(flags)`); the new process exits at once with code 7.
/// Returns the wait status of that process, or `-errno` if the clone failed.
///
/// # Safety
/// Only in a single-threaded child of the test process.
unsafe fn clone_and_reap(flags: u64) -> i64 {
    // SAFETY: clone without CLONE_VM or a new stack behaves like fork; the
    // new process only exits.
    let pid = unsafe { raw(libc::SYS_clone, [flags, 0, 0, 0, 0, 0]) };
    if pid == 0 {
        sys::exit(7);
    }
    if pid < 0 {
        return pid;
    }
    let mut status: c_int = 0;
    // SAFETY: status is a valid int; NULL rusage.
    let r = unsafe {
        raw(
            libc::SYS_wait4,
            [pid as u64, &mut status as *mut c_int as u64, 0, 0, 0, 0],
        )
    };
    if r < 0 {
        r
    } else {
        i64::from(status)
    }
}

/// `getpid` through the 32-bit `int 0x80` entry (i386 number 20).
#[cfg(target_arch = "x86_64")]
fn int80_getpid() -> i64 {
    let ret: i32;
    // SAFETY: i386 getpid takes no arguments and touches no memory; the
    // compat entry may clobber r8-r11 on older kernels, so they are declared.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("eax") 20i32 => ret,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            options(nostack),
        )
    };
    i64::from(ret)
}

/// Calls that must fail with EPERM. Every argument list is harmless even
/// without a filter (bad magic, missing paths, bad descriptors, NULL).
const DENIED: [&str; 33] = [
    "mount",
    "umount2",
    "pivot_root",
    "fsopen",
    "open_tree",
    "open_tree_attr",
    "setns",
    "ioctl(TIOCSTI)",
    "ioctl(TIOCSTI | high bits)",
    "ioctl(TIOCLINUX)",
    "ioctl(TIOCSETD)",
    "personality(PER_LINUX32)",
    "personality(ADDR_LIMIT_32BIT)",
    "personality(ADDR_NO_RANDOMIZE)",
    "keyctl",
    "add_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "open_by_handle_at",
    "init_module",
    "kexec_load",
    "reboot",
    "swapoff",
    "acct",
    "clock_settime",
    "adjtimex",
    "syslog",
    // Last: unfiltered, they move the child into new namespaces, where the
    // calls above would fail for other reasons.
    "clone(CLONE_NEWNS)",
    "clone(CLONE_NEWUSER)",
    "unshare(CLONE_NEWNS)",
    "unshare(CLONE_NEWUSER)",
];

fn probe_denied() -> [i64; 33] {
    let nowhere = c"/nonexistent-jobcell";
    let mut byte = 0u8;
    let b = &mut byte as *mut u8 as u64;
    let minus = |n: i64| n as u64;
    let tiocsti = libc::TIOCSTI as u64;
    let sigchld = libc::SIGCHLD as u64;
    // SAFETY: integers, NULL, and pointers to the locals above, which outlive the calls.
    unsafe {
        [
            raw(
                libc::SYS_mount,
                [p(c"none"), p(nowhere), p(c"tmpfs"), 0, 0, 0],
            ),
            raw(libc::SYS_umount2, [p(nowhere), 0, 0, 0, 0, 0]),
            raw(libc::SYS_pivot_root, [p(nowhere), p(nowhere), 0, 0, 0, 0]),
            raw(libc::SYS_fsopen, [p(c"jobcell-no-such-fs"), 0, 0, 0, 0, 0]),
            raw(libc::SYS_open_tree, [minus(-1), p(nowhere), 0, 0, 0, 0]),
            raw(
                super::default::SYS_OPEN_TREE_ATTR,
                [minus(-1), p(nowhere), 0, 0, 0, 0],
            ),
            raw(libc::SYS_setns, [minus(-1), 0, 0, 0, 0, 0]),
            raw(libc::SYS_ioctl, [minus(-1), tiocsti, b, 0, 0, 0]),
            raw(
                libc::SYS_ioctl,
                [minus(-1), tiocsti | 0xdead_beef << 32, b, 0, 0, 0],
            ),
            raw(
                libc::SYS_ioctl,
                [minus(-1), libc::TIOCLINUX as u64, b, 0, 0, 0],
            ),
            raw(
                libc::SYS_ioctl,
                [minus(-1), libc::TIOCSETD as u64, b, 0, 0, 0],
            ),
            raw(libc::SYS_personality, [0x0008, 0, 0, 0, 0, 0]),
            raw(libc::SYS_personality, [0x0800000, 0, 0, 0, 0, 0]),
            raw(libc::SYS_personality, [0x0040000, 0, 0, 0, 0, 0]),
            // KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING, no create.
            raw(libc::SYS_keyctl, [0, minus(-3), 0, 0, 0, 0]),
            raw(
                libc::SYS_add_key,
                [p(c"user"), p(c"jobcell"), 0, 0, minus(-2), 0],
            ),
            raw(libc::SYS_bpf, [0, 0, 0, 0, 0, 0]),
            raw(
                libc::SYS_perf_event_open,
                [0, 0, minus(-1), minus(-1), 0, 0],
            ),
            raw(
                libc::SYS_userfaultfd,
                [libc::O_CLOEXEC as u64, 0, 0, 0, 0, 0],
            ),
            raw(libc::SYS_io_uring_setup, [1, 0, 0, 0, 0, 0]),
            raw(libc::SYS_open_by_handle_at, [minus(-1), 0, 0, 0, 0, 0]),
            raw(libc::SYS_init_module, [0, 0, p(c""), 0, 0, 0]),
            // Invalid flags: EINVAL even for root without a filter.
            raw(libc::SYS_kexec_load, [0, 1, 0, 0xdead_0000, 0, 0]),
            // Wrong magic: EINVAL even for root without a filter.
            raw(libc::SYS_reboot, [0, 0, 0, 0, 0, 0]),
            raw(libc::SYS_swapoff, [p(nowhere), 0, 0, 0, 0, 0]),
            raw(libc::SYS_acct, [p(nowhere), 0, 0, 0, 0, 0]),
            raw(
                libc::SYS_clock_settime,
                [libc::CLOCK_REALTIME as u64, 0, 0, 0, 0, 0],
            ),
            raw(libc::SYS_adjtimex, [0, 0, 0, 0, 0, 0]),
            // SYSLOG_ACTION_SIZE_BUFFER.
            raw(libc::SYS_syslog, [10, 0, 0, 0, 0, 0]),
            clone_and_reap(libc::CLONE_NEWNS as u64 | sigchld),
            clone_and_reap(libc::CLONE_NEWUSER as u64 | sigchld),
            raw(libc::SYS_unshare, [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0]),
            raw(
                libc::SYS_unshare,
                [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0],
            ),
        ]
    }
}

#[test]
fn denied_calls_fail_with_eperm() {
    let got = under_filter(&default_prog(), probe_denied)
        .unwrap_or_else(|s| panic!("child status {s:#x}"));
    let wrong: Vec<String> = DENIED
        .iter()
        .zip(got)
        .filter(|(_, r)| *r != EPERM)
        .map(|(name, r)| format!("{name} returned {r}"))
        .collect();
    assert!(wrong.is_empty(), "not denied with EPERM: {wrong:?}");
}

#[test]
fn without_a_filter_the_probes_do_not_get_eperm() {
    // The control: unfiltered, the same probes fail for other reasons (bad
    // descriptors, missing paths, bad magic) or work, so the EPERMs above are
    // the filter's doing. Needs root's capabilities to mean anything.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: not root");
        return;
    }
    let empty = SeccompPolicy::empty().compile().unwrap();
    let got = under_filter(&empty, probe_denied).unwrap_or_else(|s| panic!("child status {s:#x}"));
    let eperm: Vec<&str> = DENIED
        .iter()
        .zip(got)
        .filter(|(_, r)| *r == EPERM)
        .map(|(n, _)| *n)
        .collect();
    assert!(eperm.is_empty(), "EPERM without a filter: {eperm:?}");
}

#[test]
fn clone3_fails_with_enosys_and_plain_fork_works() {
    fn probe() -> [i64; 4] {
        // struct clone_args with only exit_signal set: a plain fork, if it ran.
        let mut args = [0u64; 11];
        args[4] = libc::SIGCHLD as u64;
        // SAFETY: args is a valid clone_args of the size passed; a child (if
        // the call ever succeeded) exits at once. clone_and_reap: this child
        // is single-threaded.
        unsafe {
            let r = raw(libc::SYS_clone3, [args.as_ptr() as u64, 88, 0, 0, 0, 0]);
            if r == 0 {
                sys::exit(0);
            }
            [
                r,
                clone_and_reap(libc::SIGCHLD as u64),
                // vfork-style and unshare of non-namespace state stay allowed.
                clone_and_reap((libc::CLONE_VFORK | libc::SIGCHLD) as u64),
                raw(libc::SYS_unshare, [libc::CLONE_FILES as u64, 0, 0, 0, 0, 0]),
            ]
        }
    }
    for prog in [default_prog(), kill_prog()] {
        let [clone3, fork, vfork, unshare_files] = under_filter(&prog, probe).unwrap();
        assert_eq!(clone3, ENOSYS);
        assert_eq!(fork, 7 << 8, "fork: wait status of exit(7)");
        assert_eq!(vfork, 7 << 8);
        assert_eq!(unshare_files, 0);
    }
}

#[test]
fn everyday_calls_still_work() {
    fn probe() -> [i64; 9] {
        let mut buf = [0u8; 8];
        let bp = buf.as_mut_ptr() as u64;
        // SAFETY: integers, and pointers to the locals above / static strings.
        unsafe {
            let null = raw(
                libc::SYS_openat,
                [
                    libc::AT_FDCWD as u64,
                    p(c"/dev/null"),
                    libc::O_RDWR as u64,
                    0,
                    0,
                    0,
                ],
            );
            let zero = raw(
                libc::SYS_openat,
                [
                    libc::AT_FDCWD as u64,
                    p(c"/dev/zero"),
                    libc::O_RDONLY as u64,
                    0,
                    0,
                    0,
                ],
            );
            [
                raw(libc::SYS_getpid, [0; 6]),
                null,
                raw(libc::SYS_write, [null as u64, p(c"x"), 1, 0, 0, 0]),
                raw(libc::SYS_read, [zero as u64, bp, 8, 0, 0, 0]),
                raw(libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0]),
                raw(libc::SYS_personality, [0, 0, 0, 0, 0, 0]),
                raw(
                    libc::SYS_ioctl,
                    [-1i64 as u64, libc::TCGETS as u64, bp, 0, 0, 0],
                ),
                raw(
                    libc::SYS_ioctl,
                    [-1i64 as u64, libc::TCGETS as u64 | 1 << 63, bp, 0, 0, 0],
                ),
                raw(libc::SYS_uname, [0, 0, 0, 0, 0, 0]),
            ]
        }
    }
    let [pid, null, wrote, read, query, per_linux, tcgets, tcgets_high, uname] =
        under_filter(&default_prog(), probe).unwrap();
    assert!(pid > 0);
    assert!(null >= 0);
    assert_eq!(wrote, 1);
    assert_eq!(read, 8);
    assert!(query >= 0);
    assert!(per_linux >= 0);
    assert_eq!(tcgets, EBADF);
    assert_eq!(tcgets_high, EBADF);
    assert_eq!(
        uname,
        -(libc::EFAULT as i64),
        "uname(NULL) reached the kernel"
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn foreign_abis_are_denied_live() {
    fn probe() -> [i64; 2] {
        // SAFETY: x32 getpid takes no arguments.
        let x32 = unsafe { raw(0x4000_0000 | 39, [0; 6]) };
        [int80_getpid(), x32]
    }
    let [int80, x32] = under_filter(&default_prog(), probe).unwrap();
    assert_eq!(int80, EPERM, "int 0x80 getpid");
    assert_eq!(x32, EPERM, "x32 getpid");
    // The control: without a filter int 0x80 getpid works here (the kernel has
    // IA32 emulation), and x32 is ENOSYS or works.
    let [int80, x32] = under_filter(&SeccompPolicy::empty().allow(0).compile().unwrap(), || {
        // SAFETY: as above.
        [0, unsafe { raw(libc::SYS_getpid, [0; 6]) }]
    })
    .unwrap();
    assert_eq!(int80, 0);
    assert!(x32 > 0);
}

#[test]
fn kill_action_kills_with_sigsys() {
    let prog = kill_prog();
    type Probe = (&'static str, fn() -> [i64; 1]);
    let probes: Vec<Probe> = vec![
        // SAFETY (all): integer arguments or static strings.
        ("mount", || [unsafe { raw(libc::SYS_mount, [0; 6]) }]),
        ("unshare", || {
            [unsafe {
                raw(
                    libc::SYS_unshare,
                    [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0],
                )
            }]
        }),
        ("ioctl", || {
            [unsafe {
                raw(
                    libc::SYS_ioctl,
                    [0, libc::TIOCSTI as u64 | 1 << 32, 0, 0, 0, 0],
                )
            }]
        }),
        #[cfg(target_arch = "x86_64")]
        ("x32", || [unsafe { raw(0x4000_0000 | 39, [0; 6]) }]),
        #[cfg(target_arch = "x86_64")]
        ("int 0x80", || [int80_getpid()]),
    ];
    for (name, probe) in probes {
        match under_filter(&prog, probe) {
            Err(status) => assert!(sigsys(status), "{name}: status {status:#x}"),
            Ok(r) => panic!("{name}: not killed, returned {r:?}"),
        }
    }
    // Allowed calls are not affected by the action.
    // SAFETY: getpid takes no arguments.
    let [pid] = under_filter(&prog, || [unsafe { raw(libc::SYS_getpid, [0; 6]) }]).unwrap();
    assert!(pid > 0);
}

#[test]
fn programs_start_and_run_under_the_filter() {
    let prog = default_prog();
    assert_eq!(exec_under_filter(&prog, &["/bin/true"], &[]), 0);
    let sh = exec_under_filter(
        &prog,
        &["/bin/sh", "-c", "echo x | cat && ls / >/dev/null && exit 3"],
        &[],
    );
    assert_eq!(sh, 3 << 8);
    let sh = exec_under_filter(
        &prog,
        &["/bin/sh", "-c", "unshare -U true 2>/dev/null"],
        &["PATH=/usr/bin:/bin"],
    );
    assert_eq!(
        sh,
        1 << 8,
        "util-linux unshare exits 1 when unshare(2) fails"
    );
}

/// Threads and process spawning in Rust (glibc's pthread_create and
/// posix_spawn try clone3 first, then fall back to clone on ENOSYS): run the
/// helper below in this test binary, re-executed under the filter.
#[test]
fn threads_and_spawn_work_under_the_filter() {
    let exe = std::env::current_exe().unwrap();
    let status = exec_under_filter(
        &default_prog(),
        &[
            exe.to_str().unwrap(),
            "--exact",
            "seccomp::live_tests::filtered_process_helper",
            "--test-threads=1",
            "--nocapture",
        ],
        &["JOBCELL_SECCOMP_HELPER=1"],
    );
    assert_eq!(
        status, 0,
        "the helper failed under the filter (its stderr is above)"
    );
}

/// Not a test of its own: does the work of `threads_and_spawn_work_under_the_filter`
/// when that test re-executes this binary under the filter.
#[test]
fn filtered_process_helper() {
    if std::env::var_os("JOBCELL_SECCOMP_HELPER").is_none() {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(status.contains("Seccomp:\t2"), "not filtered: {status}");
    let t = std::thread::spawn(|| {
        // Denials hold in every thread (filters are inherited by clone).
        // SAFETY: integer arguments.
        unsafe {
            raw(
                libc::SYS_unshare,
                [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0],
            )
        }
    });
    assert_eq!(t.join().unwrap(), EPERM);
    let st = std::process::Command::new("/bin/true").status().unwrap();
    assert!(st.success());
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", "echo hi"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"hi\n");
}

/// True when a wait status says the process died of SIGSYS.
fn sigsys(wait_status: i32) -> bool {
    libc::WIFSIGNALED(wait_status) && libc::WTERMSIG(wait_status) == libc::SIGSYS
}
