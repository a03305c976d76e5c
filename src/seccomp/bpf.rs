//! A tiny assembler from deny rules to a classic BPF program for seccomp.
//!
//! The program has one shape, which keeps its jump arithmetic easy to check:
//!
//! ```text
//!     ld  [arch]
//!     jeq NATIVE_ARCH, 1, 0         ; foreign ABI (i386 on x86_64, arm32 on aarch64) ...
//!     ret DENY                      ; ... is denied outright
//!     ld  [nr]
//!   x86_64 only:
//!     jset 0x40000000, 0, 2         ; the x32 ABI sets this bit in nr ...
//!     jeq 0xffffffff, 1, 0          ; ... but -1 is "no syscall" (a tracer skipped it)
//!     ret DENY
//!   then a binary search over the syscalls that have rules (sorted by number):
//!     jge MID, <left length>, 0     ; nr >= MID: skip the left half
//!     <left half>                   ; the numbers below MID
//!     <right half>                  ; MID and above
//!   down to runs of a few syscalls, searched in a line:
//!     jeq NR, 0, <block length>     ; not this one: skip its block
//!     <block>                       ; every path through a block ends in a ret
//!     ...
//!     ret ALLOW                     ; none of this run's syscalls
//! ```
//!
//! Every subtree ends in `ret`s of its own and only jumps forward inside
//! itself, so halves can be laid out one after the other without fix-ups.
//! When a left half is longer than an 8-bit jump, the `jge` goes through a
//! `ja`, whose offset is 32 bits.
//!
//! A block is either a single `ret ACTION` (an unconditional rule) or a list of
//! argument checks, each `ld [arg low word]; <test>; ret ACTION`, followed by
//! `ret ALLOW`. Arguments are compared on their low 32 bits only: every
//! argument we inspect is an `int` or `unsigned int` in the kernel
//! (clone's and unshare's flags are truncated to 32 bits, ioctl's request and
//! personality's value are `unsigned int`), so comparing all 64 bits would let a
//! caller slip past the filter by setting high bits the kernel then ignores
//! (the CVE-2019-10063 class of bypass).
//!
//! Allowed syscalls never load an argument on their way to `ret ALLOW`, so the
//! kernel's seccomp action cache (Linux 5.11+) proves them allowed and skips
//! the filter for them: a denylist costs next to nothing at run time. Proving
//! it means running the program for every syscall number when the filter is
//! attached; the binary search keeps that to a few jumps per number (on the
//! reference machine, attaching took ~80 µs with a single line of `jeq`s and
//! ~50 µs with the search, most of it the kernel's per-instruction JIT work).
//! The syscalls whose arguments are inspected (`ioctl`, `clone`, ...) run the
//! filter on every call; the search also keeps that short.

use libc::sock_filter;

/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
pub(crate) const MAX_INSNS: usize = 4096;

// Opcodes, from <linux/bpf_common.h>. Spelled out (libc has them as u32) so the
// assembler below reads like the listing above.
pub(crate) const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
pub(crate) const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
pub(crate) const JMP_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
pub(crate) const JMP_JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
pub(crate) const JMP_JSET_K: u16 = 0x05 | 0x40; // BPF_JMP | BPF_JSET | BPF_K
pub(crate) const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// `SECCOMP_RET_ALLOW`.
pub(crate) const RET_ALLOW: u32 = 0x7fff_0000;
/// `SECCOMP_RET_KILL_PROCESS` (Linux 4.14+).
pub(crate) const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `SECCOMP_RET_USER_NOTIF` (Linux 5.0+): the call waits for a supervisor.
pub(crate) const RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// `SECCOMP_RET_ERRNO`; the errno goes in the low 16 bits.
pub(crate) const RET_ERRNO: u32 = 0x0005_0000;

/// Offsets into `struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }`.
pub(crate) const OFF_NR: u32 = 0;
pub(crate) const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;
/// `sizeof(struct seccomp_data)`.
pub(crate) const DATA_LEN: u32 = 64;

/// Offset of the low 32 bits of syscall argument `arg` (0..=5).
pub(crate) fn arg_low_offset(arg: u8) -> u32 {
    let word = if cfg!(target_endian = "big") { 4 } else { 0 };
    OFF_ARGS + 8 * u32::from(arg) + word
}

/// When a rule denies its syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cond {
    /// Always.
    Always,
    /// When the low 32 bits of argument `arg` have any bit of `mask` set.
    AnyBits { arg: u8, mask: u32 },
    /// When the low 32 bits of argument `arg` equal one of `values`.
    OneOf { arg: u8, values: &'static [u32] },
    /// When the low 32 bits of argument `arg` equal none of `values`.
    NoneOf { arg: u8, values: &'static [u32] },
    /// When the low 32 bits of argument `arg` are not a member of `set`
    /// (bit `n` set: value `n` is a member; values of 64 and above never are).
    NotInSet { arg: u8, set: u64 },
}

/// The members of a [`Cond::NotInSet`] set, in ascending order.
pub(crate) fn members(set: u64) -> impl Iterator<Item = u32> {
    (0..64u32).filter(move |&n| set & (1 << n) != 0)
}

/// One compiled-ready rule: for syscall `nr`, return `ret` when `cond` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub nr: u32,
    pub cond: Cond,
    pub ret: u32,
}

/// What the filter must know about the native ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Abi {
    /// `AUDIT_ARCH_*` of the native ABI; every other `arch` is denied.
    pub audit_arch: u32,
    /// The x32 bit on x86_64: syscall numbers with it set are denied.
    pub x32_bit: Option<u32>,
}

/// Why a program could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AsmError {
    /// More than [`MAX_INSNS`] instructions.
    TooLong(usize),
    /// A block too long for an 8-bit forward jump (cannot happen with the
    /// rules jobcell builds; checked rather than assumed).
    BlockTooLong(usize),
    /// The rules are not sorted by syscall number.
    Unsorted,
}

/// Runs of at most this many syscalls are searched in a line: below it, a
/// `jge` saves nothing.
const LINEAR_RUN: usize = 4;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Assembles the program. `rules` must be sorted by syscall number, the rules
/// of one syscall in priority order (the first that matches wins); `deny` is
/// what foreign-ABI calls return.
pub(crate) fn assemble(abi: Abi, deny: u32, rules: &[Rule]) -> Result<Vec<sock_filter>, AsmError> {
    if rules.windows(2).any(|w| w[0].nr > w[1].nr) {
        return Err(AsmError::Unsorted);
    }
    let mut prog = vec![
        stmt(LD_W_ABS, OFF_ARCH),
        jump(JMP_JEQ_K, abi.audit_arch, 1, 0),
        stmt(RET_K, deny),
        stmt(LD_W_ABS, OFF_NR),
    ];
    if let Some(bit) = abi.x32_bit {
        prog.extend([
            jump(JMP_JSET_K, bit, 0, 2),
            jump(JMP_JEQ_K, u32::MAX, 1, 0),
            stmt(RET_K, deny),
        ]);
    }
    let mut groups: Vec<&[Rule]> = Vec::new();
    let mut rest = rules;
    while let Some(first) = rest.first() {
        let n = rest.iter().take_while(|r| r.nr == first.nr).count();
        let (group, tail) = rest.split_at(n);
        groups.push(group);
        rest = tail;
    }
    prog.extend(search(&groups)?);
    if prog.len() > MAX_INSNS {
        return Err(AsmError::TooLong(prog.len()));
    }
    Ok(prog)
}

/// The search over `groups` (the rules of one syscall each, sorted by
/// number), with the syscall number in the accumulator. Every path returns.
fn search(groups: &[&[Rule]]) -> Result<Vec<sock_filter>, AsmError> {
    if groups.len() <= LINEAR_RUN {
        let mut out = Vec::new();
        for group in groups {
            let Some(first) = group.first() else { continue };
            let block = block(group);
            let skip =
                u8::try_from(block.len()).map_err(|_| AsmError::BlockTooLong(block.len()))?;
            out.push(jump(JMP_JEQ_K, first.nr, 0, skip));
            out.extend(block);
        }
        out.push(stmt(RET_K, RET_ALLOW));
        return Ok(out);
    }
    let (left, right) = groups.split_at(groups.len() / 2);
    let mid = right.first().and_then(|g| g.first()).map_or(0, |r| r.nr);
    let left = search(left)?;
    let right = search(right)?;
    let mut out = Vec::with_capacity(left.len() + right.len() + 2);
    match u8::try_from(left.len()) {
        Ok(skip) => out.push(jump(JMP_JGE_K, mid, skip, 0)),
        Err(_) => {
            // nr >= mid falls through to the `ja` over the left half; below
            // mid skips the `ja`. (A left half is shorter than MAX_INSNS, so
            // its length fits the `ja`'s 32-bit offset.)
            let skip = u32::try_from(left.len()).map_err(|_| AsmError::TooLong(left.len()))?;
            out.push(jump(JMP_JGE_K, mid, 0, 1));
            out.push(stmt(JMP_JA, skip));
        }
    }
    out.extend(left);
    out.extend(right);
    Ok(out)
}

/// The block for the rules of one syscall; every path through it returns.
fn block(group: &[Rule]) -> Vec<sock_filter> {
    let mut out = Vec::new();
    for rule in group {
        match rule.cond {
            Cond::Always => {
                // Nothing after an unconditional return can run.
                out.push(stmt(RET_K, rule.ret));
                return out;
            }
            Cond::AnyBits { arg, mask } => out.extend([
                stmt(LD_W_ABS, arg_low_offset(arg)),
                jump(JMP_JSET_K, mask, 0, 1),
                stmt(RET_K, rule.ret),
            ]),
            Cond::OneOf { arg, values } => {
                if values.is_empty() {
                    continue; // never matches
                }
                out.push(stmt(LD_W_ABS, arg_low_offset(arg)));
                // Each jeq jumps to the shared `ret` on a match; the last one
                // skips that `ret` when nothing matched.
                let last = values.len() - 1;
                for (i, &v) in values.iter().enumerate() {
                    let to_ret = sat_u8(last - i);
                    out.push(jump(JMP_JEQ_K, v, to_ret, u8::from(i == last)));
                }
                out.push(stmt(RET_K, rule.ret));
            }
            Cond::NoneOf { arg, values } => none_of(&mut out, arg, values, rule.ret),
            Cond::NotInSet { arg, set } => {
                let values: Vec<u32> = members(set).collect();
                none_of(&mut out, arg, &values, rule.ret);
            }
        }
    }
    out.push(stmt(RET_K, RET_ALLOW));
    out
}

/// Returns `ret` unless the argument equals one of `values`.
fn none_of(out: &mut Vec<sock_filter>, arg: u8, values: &[u32], ret: u32) {
    out.push(stmt(LD_W_ABS, arg_low_offset(arg)));
    // A match jumps past the remaining jeqs and the `ret`.
    for (i, &v) in values.iter().enumerate() {
        let past_ret = sat_u8(values.len() - i);
        out.push(jump(JMP_JEQ_K, v, past_ret, 0));
    }
    out.push(stmt(RET_K, ret));
}

/// Jump distances inside a block are bounded by the block's length, which
/// `assemble` checks against `u8::MAX`; saturating keeps this total anyway.
fn sat_u8(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

/// Checks what the kernel checks before it accepts a seccomp program, for the
/// instructions this assembler emits: a non-empty program of at most
/// [`MAX_INSNS`] instructions, known opcodes only, aligned loads inside
/// `seccomp_data`, every jump landing inside the program, a `ret` at the end.
pub(crate) fn validate(prog: &[sock_filter]) -> Result<(), String> {
    if prog.is_empty() || prog.len() > MAX_INSNS {
        return Err(format!("length {} not in 1..={MAX_INSNS}", prog.len()));
    }
    let len = prog.len();
    for (pc, ins) in prog.iter().enumerate() {
        let lands = |off: usize| pc + 1 + off < len;
        match ins.code {
            LD_W_ABS => {
                if !ins.k.is_multiple_of(4) || ins.k >= DATA_LEN {
                    return Err(format!("pc {pc}: load of offset {}", ins.k));
                }
            }
            JMP_JA => {
                if !lands(ins.k as usize) {
                    return Err(format!("pc {pc}: ja {} leaves the program", ins.k));
                }
            }
            JMP_JEQ_K | JMP_JGE_K | JMP_JSET_K => {
                if !lands(ins.jt.into()) || !lands(ins.jf.into()) {
                    return Err(format!(
                        "pc {pc}: jump {}/{} leaves the program",
                        ins.jt, ins.jf
                    ));
                }
            }
            RET_K => {}
            other => return Err(format!("pc {pc}: unexpected opcode {other:#x}")),
        }
    }
    match prog.last() {
        Some(ins) if ins.code == RET_K => Ok(()),
        _ => Err("the program does not end in a ret".into()),
    }
}
