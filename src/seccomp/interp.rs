//! A classic BPF interpreter for seccomp programs, for tests: it runs a
//! program on a `seccomp_data` the way the kernel does, so the filter can be
//! checked on millions of inputs without installing it.
//!
//! It knows a little more than the assembler emits (`jgt`, `jge`, `and`, `ja`)
//! so that it is an interpreter of BPF, not of our assembler's habits.

use libc::sock_filter;

/// `struct seccomp_data`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Data {
    pub nr: u32,
    pub arch: u32,
    pub ip: u64,
    pub args: [u64; 6],
}

impl Data {
    /// The native-endian bytes the kernel's loads read from.
    fn bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&self.nr.to_ne_bytes());
        b[4..8].copy_from_slice(&self.arch.to_ne_bytes());
        b[8..16].copy_from_slice(&self.ip.to_ne_bytes());
        for (i, a) in self.args.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        b
    }
}

const LD: u16 = 0x00;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const W_ABS: u16 = 0x20; // BPF_W | BPF_ABS
const K: u16 = 0x00;
const AND: u16 = 0x50;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGT: u16 = 0x20;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;

/// Runs `prog` on `data` and returns the `SECCOMP_RET_*` value.
pub(crate) fn run(prog: &[sock_filter], data: &Data) -> Result<u32, String> {
    let mem = data.bytes();
    let mut a: u32 = 0;
    let mut pc: usize = 0;
    loop {
        let ins = prog
            .get(pc)
            .ok_or_else(|| format!("fell off the program at pc {pc}"))?;
        let cond_jump = |taken: bool| pc + 1 + usize::from(if taken { ins.jt } else { ins.jf });
        pc = match ins.code {
            c if c == LD | W_ABS => {
                let off = ins.k as usize;
                if !off.is_multiple_of(4) || off + 4 > mem.len() {
                    return Err(format!("bad load offset {off} at pc {pc}"));
                }
                a = u32::from_ne_bytes([mem[off], mem[off + 1], mem[off + 2], mem[off + 3]]);
                pc + 1
            }
            c if c == ALU | AND | K => {
                a &= ins.k;
                pc + 1
            }
            c if c == JMP | JA => pc + 1 + ins.k as usize,
            c if c == JMP | JEQ | K => cond_jump(a == ins.k),
            c if c == JMP | JGT | K => cond_jump(a > ins.k),
            c if c == JMP | JGE | K => cond_jump(a >= ins.k),
            c if c == JMP | JSET | K => cond_jump(a & ins.k != 0),
            c if c == RET | K => return Ok(ins.k),
            c => return Err(format!("unknown opcode {c:#x} at pc {pc}")),
        };
    }
}
