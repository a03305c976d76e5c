//! Tests of the compiled program, run through the test interpreter: its
//! structure, the default list call by call, and property tests comparing the
//! program with a plain reading of the policy on arbitrary inputs.

// libc's ioctl request constants are c_ulong on glibc and c_int on musl: the
// `as u64` casts are needed on one of them.
#![allow(clippy::unnecessary_cast)]

use proptest::prelude::*;

use super::bpf::{self, Abi, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS};
use super::default::{IOCTL_DENIED, NATIVE_ABI};
use super::interp::{self, Data};
use super::*;

const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;
const ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

fn abi() -> Abi {
    NATIVE_ABI.expect("tests run on x86_64 or aarch64")
}

fn call(nr: i64, args: [u64; 6]) -> Data {
    Data {
        nr: nr as u32,
        arch: abi().audit_arch,
        ip: 0x1000,
        args,
    }
}

fn run(prog: &[sock_filter], d: &Data) -> u32 {
    interp::run(prog, d).unwrap()
}

fn default_prog() -> Vec<sock_filter> {
    Seccomp::Default.compile().unwrap().unwrap().prog
}

/// The syscalls the default policy denies whatever their arguments, written
/// out independently of `default_entries` (the list plus ours).
fn expected_always_denied() -> Vec<i64> {
    let mut v = vec![
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        467, // open_tree_attr
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_setns,
        libc::SYS_acct,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_syslog,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_modify_ldt,
        libc::SYS_uselib,
    ]);
    v
}

/// Syscalls whose fate depends on their arguments (or that get ENOSYS).
fn expected_conditional() -> Vec<i64> {
    vec![
        libc::SYS_unshare,
        libc::SYS_clone,
        libc::SYS_clone3,
        libc::SYS_personality,
        libc::SYS_ioctl,
        libc::SYS_socket,
        libc::SYS_socketpair,
    ]
}

/// A plain reading of a policy: what the program must return for `d`.
fn model(policy: &SeccompPolicy, d: &Data) -> u32 {
    let abi = abi();
    let deny = policy.action.ret().unwrap();
    if d.arch != abi.audit_arch {
        return deny;
    }
    if let Some(bit) = abi.x32_bit {
        if d.nr & bit != 0 && d.nr != u32::MAX {
            return deny;
        }
    }
    let low = |arg: u8| d.args[usize::from(arg)] as u32;
    for e in policy.entries.iter().filter(|e| e.nr == i64::from(d.nr)) {
        let hit = match e.cond {
            Cond::Always => true,
            Cond::AnyBits { arg, mask } => low(arg) & mask != 0,
            Cond::OneOf { arg, values } => values.contains(&low(arg)),
            Cond::NoneOf { arg, values } => !values.contains(&low(arg)),
            Cond::NotInSet { arg, set } => !bpf::members(set).any(|m| m == low(arg)),
        };
        if hit {
            return match e.verdict {
                Verdict::Deny => deny,
                Verdict::Errno(errno) => errno_ret(errno).unwrap(),
            };
        }
    }
    RET_ALLOW
}

// ---------------------------------------------------------------------------
// Structure

#[test]
fn default_program_is_well_formed() {
    let prog = default_prog();
    assert!(prog.len() < bpf::MAX_INSNS, "{} instructions", prog.len());
    bpf::validate(&prog).unwrap();
    // The same checks again, spelled out here rather than trusted to `validate`.
    let last = prog.last().unwrap();
    assert_eq!(last.code, bpf::RET_K);
    assert_eq!(last.k, RET_ALLOW);
    for (pc, ins) in prog.iter().enumerate() {
        if ins.code == bpf::JMP_JEQ_K || ins.code == bpf::JMP_JSET_K {
            assert!(pc + 1 + usize::from(ins.jt) < prog.len(), "pc {pc}");
            assert!(pc + 1 + usize::from(ins.jf) < prog.len(), "pc {pc}");
        }
        if ins.code == bpf::LD_W_ABS {
            assert!(ins.k % 4 == 0 && ins.k < bpf::DATA_LEN, "pc {pc}");
        }
    }
    // It starts by checking the ABI.
    assert_eq!((prog[0].code, prog[0].k), (bpf::LD_W_ABS, bpf::OFF_ARCH));
    assert_eq!(
        (prog[1].code, prog[1].k),
        (bpf::JMP_JEQ_K, abi().audit_arch)
    );
}

#[test]
fn allowed_paths_never_load_arguments() {
    // The kernel's action cache only covers syscalls whose allow path reads
    // nothing but nr and arch; check that holds for every syscall the default
    // list does not inspect, by running it with an interpreter that cannot see
    // arguments (they are different on each run, so any dependence shows).
    let prog = default_prog();
    let inspected = expected_conditional();
    for nr in 0..1024i64 {
        if inspected.contains(&nr) {
            continue;
        }
        let a = run(&prog, &call(nr, [0; 6]));
        let b = run(&prog, &call(nr, [u64::MAX; 6]));
        assert_eq!(a, b, "syscall {nr} depends on its arguments");
    }
}

#[test]
fn validate_rejects_broken_programs() {
    let ret = |k| libc::sock_filter {
        code: bpf::RET_K,
        jt: 0,
        jf: 0,
        k,
    };
    assert!(bpf::validate(&[]).is_err());
    assert!(bpf::validate(&[ret(RET_ALLOW)]).is_ok());
    let jump_out = libc::sock_filter {
        code: bpf::JMP_JEQ_K,
        jt: 1,
        jf: 0,
        k: 0,
    };
    assert!(bpf::validate(&[jump_out, ret(RET_ALLOW)]).is_err());
    let no_ret = libc::sock_filter {
        code: bpf::LD_W_ABS,
        jt: 0,
        jf: 0,
        k: 0,
    };
    assert!(bpf::validate(&[ret(RET_ALLOW), no_ret]).is_err());
    let bad_load = libc::sock_filter { k: 64, ..no_ret };
    assert!(bpf::validate(&[bad_load, ret(RET_ALLOW)]).is_err());
}

// ---------------------------------------------------------------------------
// The default list, call by call

#[test]
fn default_denies_the_listed_calls_with_eperm() {
    let prog = default_prog();
    for nr in expected_always_denied() {
        for args in [[0; 6], [u64::MAX; 6], [1, 2, 3, 4, 5, 6]] {
            assert_eq!(run(&prog, &call(nr, args)), EPERM, "syscall {nr}");
        }
    }
}

#[test]
fn default_allows_everyday_calls() {
    let prog = default_prog();
    for nr in [
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_openat,
        libc::SYS_close,
        libc::SYS_mmap,
        libc::SYS_execve,
        libc::SYS_exit_group,
        libc::SYS_getpid,
        libc::SYS_rseq,
        libc::SYS_futex,
        libc::SYS_wait4,
        libc::SYS_seccomp,
        libc::SYS_prctl,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_sethostname,
        0,
    ] {
        assert_eq!(run(&prog, &call(nr, [7; 6])), RET_ALLOW, "syscall {nr}");
    }
}

#[test]
fn namespaces_through_clone_and_unshare_are_denied() {
    let prog = default_prog();
    let ns = [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
    ];
    let sigchld = libc::SIGCHLD as u64;
    for flag in ns {
        let f = flag as u64;
        assert_eq!(
            run(&prog, &call(libc::SYS_clone, [f | sigchld, 0, 0, 0, 0, 0])),
            EPERM
        );
        assert_eq!(
            run(&prog, &call(libc::SYS_unshare, [f, 0, 0, 0, 0, 0])),
            EPERM
        );
        // High bits do not hide them (the kernel truncates to 32 bits anyway).
        assert_eq!(
            run(
                &prog,
                &call(libc::SYS_unshare, [f | 1 << 40, 0, 0, 0, 0, 0])
            ),
            EPERM
        );
    }
    // unshare(CLONE_NEWTIME); in clone, 0x80 is part of the exit signal.
    assert_eq!(
        run(&prog, &call(libc::SYS_unshare, [0x80, 0, 0, 0, 0, 0])),
        EPERM
    );
    assert_eq!(
        run(&prog, &call(libc::SYS_clone, [0x80, 0, 0, 0, 0, 0])),
        RET_ALLOW
    );
    // fork, pthread_create, vfork, and unshare of non-namespace state.
    let thread = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID) as u64;
    let vfork = (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | sigchld;
    for flags in [sigchld, thread, vfork] {
        assert_eq!(
            run(&prog, &call(libc::SYS_clone, [flags, 0, 0, 0, 0, 0])),
            RET_ALLOW
        );
    }
    for flags in [
        0,
        libc::CLONE_FILES as u64,
        libc::CLONE_FS as u64,
        libc::CLONE_SYSVSEM as u64,
    ] {
        assert_eq!(
            run(&prog, &call(libc::SYS_unshare, [flags, 0, 0, 0, 0, 0])),
            RET_ALLOW
        );
    }
}

#[test]
fn clone3_gets_enosys_whatever_the_action() {
    for policy in [
        SeccompPolicy::new(),
        SeccompPolicy::new().action(SeccompAction::KillProcess),
    ] {
        let prog = policy.compile().unwrap();
        assert_eq!(run(&prog, &call(libc::SYS_clone3, [0; 6])), ENOSYS);
    }
}

#[test]
fn terminal_injection_ioctls_are_denied_on_their_low_32_bits() {
    let prog = default_prog();
    for req in [libc::TIOCSTI, libc::TIOCLINUX, libc::TIOCSETD] {
        let req = req as u64;
        for high in [0u64, 1 << 32, 0xdead_beef << 32, 0xffff_ffff << 32] {
            assert_eq!(
                run(&prog, &call(libc::SYS_ioctl, [0, req | high, 0, 0, 0, 0])),
                EPERM
            );
        }
        // The request is the second argument; the same number as an fd is fine.
        assert_eq!(
            run(&prog, &call(libc::SYS_ioctl, [req, 0, 0, 0, 0, 0])),
            RET_ALLOW
        );
    }
    for req in [libc::TCGETS, libc::TIOCGWINSZ, libc::FIONREAD] {
        let req = req as u64;
        assert_eq!(
            run(&prog, &call(libc::SYS_ioctl, [0, req, 0, 0, 0, 0])),
            RET_ALLOW
        );
        assert_eq!(
            run(
                &prog,
                &call(libc::SYS_ioctl, [0, req | 1 << 63, 0, 0, 0, 0])
            ),
            RET_ALLOW
        );
    }
}

#[test]
fn personality_allows_only_query_and_per_linux() {
    let prog = default_prog();
    let p = |v: u64| run(&prog, &call(libc::SYS_personality, [v, 0, 0, 0, 0, 0]));
    assert_eq!(p(0), RET_ALLOW);
    assert_eq!(p(0xffff_ffff), RET_ALLOW);
    assert_eq!(p(u64::MAX), RET_ALLOW); // personality(-1): the kernel sees 0xffffffff
    assert_eq!(p(1 << 32), RET_ALLOW); // the kernel sees PER_LINUX
    for v in [
        0x0008u64,   // PER_LINUX32
        0x0040000,   // ADDR_NO_RANDOMIZE
        0x0100000,   // MMAP_PAGE_ZERO
        0x0400000,   // READ_IMPLIES_EXEC
        0x0800000,   // ADDR_LIMIT_32BIT
        0x0020000,   // UNAME26
        1 << 32 | 8, // high bits do not hide PER_LINUX32
    ] {
        assert_eq!(p(v), EPERM, "{v:#x}");
    }
}

#[test]
fn foreign_abis_are_denied() {
    let prog = default_prog();
    let strict = SeccompPolicy::new()
        .action(SeccompAction::KillProcess)
        .compile()
        .unwrap();
    // i386 getpid (20) and its exit: every call of a foreign arch.
    for nr in [20u32, 1, 0, 1000] {
        let d = Data {
            nr,
            arch: AUDIT_ARCH_I386,
            ..Default::default()
        };
        assert_eq!(run(&prog, &d), EPERM);
        assert_eq!(run(&strict, &d), RET_KILL_PROCESS);
    }
    if let Some(bit) = abi().x32_bit {
        // x32 getpid (39) and friends.
        for nr in [39, 0, 512, 0x3fff_ffff] {
            let d = call(i64::from(nr | bit), [0; 6]);
            assert_eq!(run(&prog, &d), EPERM);
            assert_eq!(run(&strict, &d), RET_KILL_PROCESS);
        }
        // -1 is what a tracer leaves when it skips a call: not x32.
        assert_eq!(run(&prog, &call(-1, [0; 6])), RET_ALLOW);
    }
}

#[test]
fn kill_action_applies_to_every_denial() {
    let prog = SeccompPolicy::new()
        .action(SeccompAction::KillProcess)
        .compile()
        .unwrap();
    for nr in expected_always_denied() {
        assert_eq!(run(&prog, &call(nr, [0; 6])), RET_KILL_PROCESS);
    }
    let tiocsti = libc::TIOCSTI as u64;
    assert_eq!(
        run(&prog, &call(libc::SYS_ioctl, [0, tiocsti, 0, 0, 0, 0])),
        RET_KILL_PROCESS
    );
    assert_eq!(run(&prog, &call(libc::SYS_getpid, [0; 6])), RET_ALLOW);
}

// ---------------------------------------------------------------------------
// Custom policies and their errors

#[test]
fn custom_policy_adds_and_removes() {
    let policy = SeccompPolicy::new()
        .deny(libc::SYS_ptrace)
        .allow(libc::SYS_perf_event_open)
        .deny_errno(libc::SYS_memfd_create, libc::ENOSYS)
        .deny(libc::SYS_ioctl); // replaces the request check
    let prog = policy.compile().unwrap();
    assert_eq!(run(&prog, &call(libc::SYS_ptrace, [0; 6])), EPERM);
    assert_eq!(
        run(&prog, &call(libc::SYS_perf_event_open, [0; 6])),
        RET_ALLOW
    );
    assert_eq!(run(&prog, &call(libc::SYS_memfd_create, [0; 6])), ENOSYS);
    assert_eq!(
        run(
            &prog,
            &call(libc::SYS_ioctl, [0, libc::TCGETS as u64, 0, 0, 0, 0])
        ),
        EPERM
    );
    assert_eq!(run(&prog, &call(libc::SYS_mount, [0; 6])), EPERM);

    let empty = SeccompPolicy::empty().compile().unwrap();
    assert_eq!(run(&empty, &call(libc::SYS_mount, [0; 6])), RET_ALLOW);
    assert_eq!(
        run(
            &empty,
            &Data {
                arch: AUDIT_ARCH_I386,
                ..Default::default()
            }
        ),
        EPERM
    );
}

#[test]
fn large_policies_use_long_jumps_correctly() {
    // Enough rules that the binary search's left halves outgrow 8-bit jumps.
    let must_allow = [libc::SYS_execve, libc::SYS_exit, libc::SYS_exit_group];
    let mut policy = SeccompPolicy::new().action(SeccompAction::KillProcess);
    for nr in (0..1500).filter(|n| !must_allow.contains(n) && n % 3 != 0) {
        policy = if nr % 2 == 0 {
            policy.deny(nr)
        } else {
            policy.deny_errno(nr, (nr % 4000 + 1) as i32)
        };
    }
    let prog = policy.compile().unwrap();
    bpf::validate(&prog).unwrap();
    assert!(
        prog.iter().any(|i| i.code == bpf::JMP_JA),
        "no long jump emitted"
    );
    for nr in 0..1600u32 {
        for args in [[0; 6], [0, libc::TIOCSTI as u64, 0, 0, 0, 0], [u64::MAX; 6]] {
            let d = call(i64::from(nr), args);
            assert_eq!(run(&prog, &d), model(&policy, &d), "syscall {nr}");
        }
    }
}

#[test]
fn disabled_compiles_to_nothing_and_default_to_the_default_policy() {
    assert!(Seccomp::Disabled.compile().unwrap().is_none());
    let a = Seccomp::Default.compile().unwrap().unwrap().prog;
    let b = Seccomp::Custom(SeccompPolicy::new())
        .compile()
        .unwrap()
        .unwrap()
        .prog;
    let words = |p: &[sock_filter]| {
        p.iter()
            .map(|i| (i.code, i.jt, i.jf, i.k))
            .collect::<Vec<_>>()
    };
    assert_eq!(words(&a), words(&b));
    assert_eq!(Seccomp::default(), Seccomp::Default);
}

#[test]
fn bad_policies_are_input_errors() {
    let err = |p: SeccompPolicy| match p.compile() {
        Err(Error::InvalidSetting {
            name: "seccomp", ..
        }) => {}
        other => panic!("expected InvalidSetting, got {other:?}"),
    };
    err(SeccompPolicy::new().action(SeccompAction::Errno(0)));
    err(SeccompPolicy::new().action(SeccompAction::Errno(4096)));
    err(SeccompPolicy::new().action(SeccompAction::Errno(-1)));
    err(SeccompPolicy::new().deny_errno(libc::SYS_getpid, 0));
    err(SeccompPolicy::new().deny(-1));
    err(SeccompPolicy::new().deny(0x4000_0000 | 39));
    err(SeccompPolicy::new().deny(1 << 40));
    err(SeccompPolicy::empty().deny(libc::SYS_execve));
    err(SeccompPolicy::empty().deny_errno(libc::SYS_exit_group, libc::ENOSYS));
    err(SeccompPolicy::empty().deny(libc::SYS_exit));
    // Too many rules for one BPF program.
    let mut big = SeccompPolicy::empty();
    for nr in 0..3000 {
        big = big.deny(nr);
    }
    err(big);
    assert!(SeccompPolicy::new()
        .action(SeccompAction::Errno(4095))
        .compile()
        .is_ok());
}

#[test]
fn kill_mode_has_a_reporting_variant() {
    let f = SeccompPolicy::new()
        .action(SeccompAction::KillProcess)
        .filter()
        .unwrap();
    let report = f.report.expect("kill mode reports the syscall");
    assert_eq!(
        report.len(),
        f.prog.len(),
        "the same program, another deny action"
    );
    assert!(report
        .iter()
        .any(|i| i.k == crate::seccomp::bpf::RET_USER_NOTIF));
    assert!(!f
        .prog
        .iter()
        .any(|i| i.k == crate::seccomp::bpf::RET_USER_NOTIF));
    assert!(SeccompPolicy::new().filter().unwrap().report.is_none());
}

#[test]
fn socket_families_outside_the_default_list_get_eafnosupport() {
    let prog = default_prog();
    let eafnosupport = RET_ERRNO | libc::EAFNOSUPPORT as u32;
    for nr in [libc::SYS_socket, libc::SYS_socketpair] {
        for family in 0..128u64 {
            let allowed = DEFAULT_SOCKET_FAMILIES.contains(&(family as i32));
            let want = if allowed { RET_ALLOW } else { eafnosupport };
            assert_eq!(
                run(&prog, &call(nr, [family, 1, 0, 0, 0, 0])),
                want,
                "{nr} {family}"
            );
            // The kernel takes the family as an int: high bits change nothing.
            let high = family | 0xdead_0000_0000_0000;
            assert_eq!(
                run(&prog, &call(nr, [high, 1, 0, 0, 0, 0])),
                want,
                "{nr} {family}"
            );
        }
    }
    // Not a denial: the kill action does not apply.
    let kill = SeccompPolicy::new()
        .action(SeccompAction::KillProcess)
        .compile()
        .unwrap();
    let vsock = call(libc::SYS_socket, [libc::AF_VSOCK as u64, 1, 0, 0, 0, 0]);
    assert_eq!(run(&kill, &vsock), eafnosupport);
}

#[test]
fn socket_families_can_be_allowed_and_denied() {
    let p = SeccompPolicy::new().allow_socket_family(libc::AF_VSOCK);
    assert!(p.allows_socket_family(libc::AF_VSOCK));
    let prog = p.compile().unwrap();
    let vsock = |nr| call(nr, [libc::AF_VSOCK as u64, 1, 0, 0, 0, 0]);
    assert_eq!(run(&prog, &vsock(libc::SYS_socket)), RET_ALLOW);
    assert_eq!(run(&prog, &vsock(libc::SYS_socketpair)), RET_ALLOW);

    let p = SeccompPolicy::new().deny_socket_family(libc::AF_INET6);
    assert!(!p.allows_socket_family(libc::AF_INET6) && p.allows_socket_family(libc::AF_INET));
    // From a policy that allows every family: only the one denied.
    let p = SeccompPolicy::empty().deny_socket_family(libc::AF_VSOCK);
    assert!(!p.allows_socket_family(libc::AF_VSOCK) && p.allows_socket_family(libc::AF_ALG));
    let prog = p.compile().unwrap();
    assert_eq!(
        run(&prog, &vsock(libc::SYS_socket)),
        RET_ERRNO | libc::EAFNOSUPPORT as u32
    );
    // A whole-call rule wins over the families.
    let p = SeccompPolicy::new()
        .deny(libc::SYS_socket)
        .allow_socket_family(libc::AF_ALG);
    assert!(!p.allows_socket_family(libc::AF_ALG) && !p.allows_socket_family(libc::AF_INET));
    // Allowing the call whole drops the family check.
    let p = SeccompPolicy::new().allow(libc::SYS_socket);
    assert!(p.allows_socket_family(libc::AF_VSOCK));
    // Families are 0..64.
    for bad in [-1, 64, 1000] {
        assert!(SeccompPolicy::new()
            .allow_socket_family(bad)
            .compile()
            .is_err());
        assert!(SeccompPolicy::new()
            .deny_socket_family(bad)
            .compile()
            .is_err());
    }
}

// ---------------------------------------------------------------------------
// Property tests

/// Syscall numbers worth trying: the ones with rules and their neighbours,
/// foreign and odd numbers, and anything at all.
fn any_nr() -> impl Strategy<Value = u32> {
    let mut special: Vec<u32> = expected_always_denied()
        .into_iter()
        .chain(expected_conditional())
        .flat_map(|n| [n - 1, n, n + 1])
        .map(|n| n as u32)
        .collect();
    special.extend([
        0,
        u32::MAX,
        0x4000_0000,
        0x4000_0000 | 39,
        0x3fff_ffff,
        0x8000_0000,
    ]);
    prop_oneof![
        3 => proptest::sample::select(special),
        2 => 0u32..1024,
        1 => any::<u32>(),
    ]
}

/// Argument values worth trying: the ones the rules look at (with and without
/// high bits) and anything at all.
fn any_arg() -> impl Strategy<Value = u64> {
    let special: Vec<u64> = [
        libc::TIOCSTI as u64,
        libc::TIOCLINUX as u64,
        libc::TIOCSETD as u64,
        libc::TCGETS as u64,
        libc::CLONE_NEWUSER as u64,
        libc::CLONE_NEWNS as u64 | libc::SIGCHLD as u64,
        libc::SIGCHLD as u64,
        0x80,
        0,
        8,
        0xffff_ffff,
        libc::AF_UNIX as u64,
        libc::AF_INET6 as u64,
        libc::AF_NETLINK as u64,
        libc::AF_VSOCK as u64,
        libc::AF_ALG as u64,
        63,
        64,
    ]
    .to_vec();
    (
        proptest::sample::select(special),
        any::<u32>(),
        any::<u64>(),
        0..3u8,
    )
        .prop_map(|(s, high, r, pick)| match pick {
            0 => s,
            1 => s | u64::from(high) << 32,
            _ => r,
        })
}

fn any_data() -> impl Strategy<Value = Data> {
    let arch = prop_oneof![
        8 => Just(abi().audit_arch),
        1 => Just(AUDIT_ARCH_I386),
        1 => any::<u32>(),
    ];
    (
        any_nr(),
        arch,
        any::<u64>(),
        proptest::array::uniform6(any_arg()),
    )
        .prop_map(|(nr, arch, ip, args)| Data { nr, arch, ip, args })
}

#[derive(Clone, Debug)]
enum Op {
    Deny(i64),
    DenyErrno(i64, i32),
    Allow(i64),
    Action(SeccompAction),
    AllowFamily(i32),
    DenyFamily(i32),
}

fn any_policy() -> impl Strategy<Value = SeccompPolicy> {
    let nr = prop_oneof![
        proptest::sample::select(
            expected_always_denied()
                .into_iter()
                .chain(expected_conditional())
                .collect::<Vec<_>>()
        ),
        // Any syscall but the three a policy may not deny.
        (0i64..600).prop_filter("must stay allowed", |n| ![
            libc::SYS_execve,
            libc::SYS_exit,
            libc::SYS_exit_group
        ]
        .contains(n)),
    ];
    let action = prop_oneof![
        Just(SeccompAction::KillProcess),
        (1i32..4096).prop_map(SeccompAction::Errno),
    ];
    let op = prop_oneof![
        nr.clone().prop_map(Op::Deny),
        (nr.clone(), 1i32..4096).prop_map(|(n, e)| Op::DenyErrno(n, e)),
        nr.prop_map(Op::Allow),
        action.prop_map(Op::Action),
        (0i32..64).prop_map(Op::AllowFamily),
        (0i32..64).prop_map(Op::DenyFamily),
    ];
    (any::<bool>(), proptest::collection::vec(op, 0..40)).prop_map(|(from_default, ops)| {
        let start = if from_default {
            SeccompPolicy::new()
        } else {
            SeccompPolicy::empty()
        };
        ops.into_iter().fold(start, |p, op| match op {
            Op::Deny(n) => p.deny(n),
            Op::DenyErrno(n, e) => p.deny_errno(n, e),
            Op::Allow(n) => p.allow(n),
            Op::Action(a) => p.action(a),
            Op::AllowFamily(f) => p.allow_socket_family(f),
            Op::DenyFamily(f) => p.deny_socket_family(f),
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The default program says what the default policy says, on any input.
    #[test]
    fn default_program_matches_the_policy(d in any_data()) {
        let prog = default_prog();
        prop_assert_eq!(run(&prog, &d), model(&SeccompPolicy::new(), &d));
    }

    /// Any native syscall the default list does not name is allowed, whatever its arguments.
    #[test]
    fn unlisted_syscalls_are_allowed(nr in 0u32..0x4000_0000, args in proptest::array::uniform6(any::<u64>())) {
        let listed: Vec<u32> = expected_always_denied().into_iter().chain(expected_conditional()).map(|n| n as u32).collect();
        prop_assume!(!listed.contains(&nr));
        prop_assert_eq!(run(&default_prog(), &call(i64::from(nr), args)), RET_ALLOW);
    }

    /// Listed syscalls are denied whatever their arguments.
    #[test]
    fn listed_syscalls_are_denied(i in any::<proptest::sample::Index>(), args in proptest::array::uniform6(any::<u64>())) {
        let listed = expected_always_denied();
        let nr = listed[i.index(listed.len())];
        prop_assert_eq!(run(&default_prog(), &call(nr, args)), EPERM);
    }

    /// The ioctl check looks at the request's low 32 bits and nothing else.
    #[test]
    fn ioctl_depends_on_the_low_word_only(fd in any::<u64>(), req in any_arg(), high in any::<u32>(), rest in any::<u64>()) {
        let prog = default_prog();
        let a = run(&prog, &call(libc::SYS_ioctl, [fd, req, rest, rest, rest, rest]));
        let b = run(&prog, &call(libc::SYS_ioctl, [!fd, (req & 0xffff_ffff) | u64::from(high) << 32, 0, 0, 0, 0]));
        prop_assert_eq!(a, b);
        let denied = IOCTL_DENIED.contains(&(req as u32));
        prop_assert_eq!(a, if denied { EPERM } else { RET_ALLOW });
    }

    /// Any policy compiles to a program that agrees with it on any input.
    #[test]
    fn custom_programs_match_their_policy(policy in any_policy(), inputs in proptest::collection::vec(any_data(), 1..50)) {
        let prog = policy.compile().unwrap();
        prop_assert!(bpf::validate(&prog).is_ok());
        for d in &inputs {
            prop_assert_eq!(run(&prog, d), model(&policy, d), "input {:?}", d);
        }
    }
}
