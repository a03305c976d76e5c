//! What the spawner inherits from the host and what it must match: the
//! mappings it keeps (the loaded objects' segments, the kernel's, its own
//! stack; the rest is unmapped), whether the program binds its symbols at
//! load time, and what a clone takes from the calling thread (credentials,
//! resource limits, network namespace), which decides whether the spawner
//! can serve a spawn as that thread would.

use std::sync::OnceLock;

use libc::c_int;

/// What the spawner unmaps: every mapping of this process but the loaded
/// programs and libraries (their code and data, `.bss` included), the
/// kernel's own ([vdso] and the like) and those holding an address in
/// `keep` (the creating thread's stack and TLS). The heap, other threads'
/// stacks and whatever the host mapped (data files, other spawns' arenas,
/// which would otherwise sit where the host puts its next ones) all go.
pub(super) fn unneeded_ranges(keep: &[usize]) -> std::io::Result<Vec<(usize, usize)>> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    Ok(parse_unneeded(&maps, keep, &loaded_segments()))
}

fn parse_unneeded(maps: &str, keep: &[usize], loaded: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(_perms), Some(_off), Some(_dev), Some(_inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let name = f.next().unwrap_or("");
        let kernels = name.starts_with('[')
            && !(name == "[heap]" || name.starts_with("[stack") || name.starts_with("[anon"));
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        let needed = kernels
            || keep.iter().any(|&k| a <= k && k < b)
            || loaded.iter().any(|&(s, e)| a < e && s < b);
        if a < b && !needed {
            out.push((a, b - a));
        }
    }
    out
}

/// The address ranges of every loaded object's segments (page-aligned).
fn loaded_segments() -> Vec<(usize, usize)> {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid info; data is the &mut Vec below.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<(usize, usize)>)) };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
        let headers =
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        for h in headers.iter().filter(|h| h.p_type == libc::PT_LOAD) {
            let start = info.dlpi_addr as usize + h.p_vaddr as usize;
            let end = start + h.p_memsz as usize;
            out.push((
                start & !(crate::spawn::status::PAGE - 1),
                end.next_multiple_of(crate::spawn::status::PAGE),
            ));
        }
        0
    }
    let mut out: Vec<(usize, usize)> = Vec::new();
    // SAFETY: visit only reads what the loader hands it and pushes to `out`.
    unsafe {
        libc::dl_iterate_phdr(
            Some(visit),
            &mut out as *mut Vec<(usize, usize)> as *mut libc::c_void,
        )
    };
    out
}

/// Whether the object holding this code resolves its symbols at load time:
/// with lazy binding, a first call into libc from the spawner would run the
/// dynamic linker on data the spawner has unmapped.
pub(super) fn binds_now() -> bool {
    static NOW: OnceLock<bool> = OnceLock::new();
    *NOW.get_or_init(binds_now_here)
}

/// What [`binds_now`] remembers (a property of the program, not a failure).
fn binds_now_here() -> bool {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid info; data is the &mut Visit below.
        let (info, v) = unsafe { (&*info, &mut *(data as *mut Visit)) };
        // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
        let headers =
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let addr = v.code;
        let holds = headers.iter().any(|h| {
            h.p_type == libc::PT_LOAD && {
                let start = info.dlpi_addr as usize + h.p_vaddr as usize;
                start <= addr && addr < start + h.p_memsz as usize
            }
        });
        if !holds {
            return 0;
        }
        v.found = true;
        v.now = true; // no dynamic section: nothing is bound lazily
        for h in headers.iter().filter(|h| h.p_type == libc::PT_DYNAMIC) {
            v.now = false;
            let mut d = (info.dlpi_addr as usize + h.p_vaddr as usize) as *const Dyn;
            // SAFETY: the dynamic section is a DT_NULL-terminated array in a loaded segment.
            unsafe {
                while (*d).tag != 0 {
                    let (tag, val) = ((*d).tag, (*d).val);
                    if tag == DT_BIND_NOW
                        || (tag == DT_FLAGS && val & DF_BIND_NOW != 0)
                        || (tag == DT_FLAGS_1 && val & DF_1_NOW != 0)
                    {
                        v.now = true;
                    }
                    d = d.add(1);
                }
            }
        }
        1
    }
    /// An entry of the dynamic section (64-bit ELF).
    #[repr(C)]
    struct Dyn {
        tag: i64,
        val: u64,
    }
    const DT_BIND_NOW: i64 = 24;
    const DT_FLAGS: i64 = 30;
    const DT_FLAGS_1: i64 = 0x6fff_fffb;
    const DF_BIND_NOW: u64 = 0x8;
    const DF_1_NOW: u64 = 0x1;
    struct Visit {
        code: usize,
        found: bool,
        now: bool,
    }
    let mut v = Visit {
        code: binds_now_here as fn() -> bool as usize,
        found: false,
        now: false,
    };
    // SAFETY: visit only reads what the loader hands it and writes to `v`.
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut v as *mut Visit as *mut libc::c_void) };
    v.found && v.now
}

/// What a clone inherits from the calling thread and the spawner must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Creds {
    euid: u32,
    egid: u32,
    caps: [u32; 4],
}

impl Creds {
    pub(super) fn current() -> Creds {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: c_int,
        }
        let mut header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let mut data = [0u32; 6]; // two of (effective, permitted, inheritable)
                                  // SAFETY: header and data have the layout capget(2) expects for version 3.
        unsafe {
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut Header,
                data.as_mut_ptr(),
            )
        };
        Creds {
            // SAFETY: no preconditions.
            euid: unsafe { libc::geteuid() },
            // SAFETY: no preconditions.
            egid: unsafe { libc::getegid() },
            caps: [data[0], data[1], data[3], data[4]],
        }
    }
}

pub(super) const RLIMITS: usize = 16;

/// The process's resource limits (soft, hard), which every clone inherits.
pub(super) fn rlimits() -> [(u64, u64); RLIMITS] {
    let mut out = [(0, 0); RLIMITS];
    for (i, l) in out.iter_mut().enumerate() {
        let mut r = libc::rlimit64 {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: r is a valid rlimit64 to fill; unknown resources leave it zeroed.
        unsafe { libc::getrlimit64(i as _, &mut r) };
        *l = (r.rlim_cur, r.rlim_max);
    }
    out
}

pub(super) fn netns_ino() -> Option<u64> {
    let ns = crate::spawn::netns::thread_netns().ok()?;
    rustix::fs::fstat(&ns).ok().map(|s| s.st_ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loaded_objects_the_kernels_and_the_kept_stay() {
        let maps = "\
55d0a000-55d0b000 r--p 00000000 08:01 1234   /usr/bin/host
55d0c000-55d0d000 rw-p 00001000 08:01 1234   /usr/bin/host
55d0d000-55d0f000 rw-p 00000000 00:00 0
55d0f000-55d2f000 rw-p 00000000 00:00 0      [heap]
7f00000000-7f00200000 rw-p 00000000 00:00 0
7f00200000-7f00400000 rw-p 00000000 00:00 0
7f00400000-7f00401000 rw-s 00000000 00:01 77   /memfd:jobcell-plan (deleted)
7f00500000-7f00600000 r--s 00000000 08:01 99   /var/data/big.db
7ffc000000-7ffc100000 rw-p 00000000 00:00 0      [stack]
7ffc200000-7ffc202000 r--p 00000000 00:00 0      [vvar]
7ffc202000-7ffc204000 r-xp 00000000 00:00 0      [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]
";
        // The program's segments reach into the anonymous mapping after its
        // data (the rest of its .bss): that stays too.
        let loaded = [(0x55d0a000, 0x55d0b000), (0x55d0c000, 0x55d0e000)];
        let keep = [0x7f00200010];
        assert_eq!(
            parse_unneeded(maps, &keep, &loaded),
            vec![
                (0x55d0f000, 0x20000),
                (0x7f00000000, 0x200000),
                (0x7f00400000, 0x1000),
                (0x7f00500000, 0x100000),
                (0x7ffc000000, 0x100000)
            ]
        );
    }

    #[test]
    fn this_process_has_loaded_segments_holding_its_code() {
        let code = loaded_segments as fn() -> Vec<(usize, usize)> as usize;
        assert!(loaded_segments()
            .iter()
            .any(|&(s, e)| s <= code && code < e));
    }

    #[test]
    fn this_test_binary_binds_now() {
        assert!(binds_now());
    }
}
