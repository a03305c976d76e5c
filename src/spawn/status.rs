//! A page of memory shared between the host and the cell's init, through
//! which init reports how the job ended (its wait status and rusage).
//!
//! A pipe would cost a descriptor per running job for its whole life; a
//! shared page (the first of the plan's arena) costs none, and the host reads
//! it only after it has reaped init, so there is no race.

use std::ptr::{self, NonNull};

/// The layout of the shared page.
#[repr(C)]
pub(crate) struct StatusPage {
    /// Set by init just before it forks the job.
    forking: u32,
    /// Set by init once the job has exited, after `wait_status` and `rusage`.
    exited: u32,
    wait_status: i32,
    rusage: libc::rusage,
    /// Set by init when the job made a call its seccomp filter denies in kill mode.
    bad_syscall: u32,
    bad_nr: i32,
    bad_arch: u32,
    /// Written by the host before the clone: the signals the process the
    /// cell is cloned from ignores (ignored signals survive the clone and
    /// `execve`; the job resets them).
    ignored_signals: u64,
    /// Written by the spawner before the clone when the cell gets an IPC
    /// namespace it made and set up ahead (see `spawner.rs`).
    ipc_ready: u32,
    /// The cell's init's pid, stored by the kernel as part of the clone
    /// (`CLONE_PARENT_SETTID`): the host finds the cell through it even
    /// when the spawner that cloned it died before answering.
    cell_pid: i32,
    /// How far setup got: the stage init or the job is in (`Stage as
    /// u32`; 0 before init runs) and the step within it, for an error
    /// naming where a setup that took too long was stuck.
    stage: u32,
    step: u32,
    /// Written by the host before it clones the cell itself (a fallback
    /// path): where its arguments and environment lie, which init then
    /// hides from the cell (see `cell/`), and what init shows instead.
    host_clone: u32,
    layout: HostLayout,
    name: [u8; 16],
}

/// The fields of a process's memory layout that `prctl(PR_SET_MM_MAP)`
/// takes, as `/proc/self/stat` shows them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HostLayout {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

impl HostLayout {
    /// This process's layout, from `/proc/self/stat` (read once: where a
    /// program's arguments lie does not change).
    pub(crate) fn current() -> std::io::Result<HostLayout> {
        static LAYOUT: std::sync::OnceLock<HostLayout> = std::sync::OnceLock::new();
        if let Some(l) = LAYOUT.get() {
            return Ok(*l);
        }
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        let l = HostLayout::parse(&stat).ok_or(std::io::ErrorKind::InvalidData)?;
        Ok(*LAYOUT.get_or_init(|| l))
    }

    /// Parses a `/proc/<pid>/stat` line (fields 26-28 and 45-51).
    pub(crate) fn parse(stat: &str) -> Option<HostLayout> {
        // The command name may hold spaces and parentheses: fields follow the last ')'.
        let rest = stat.rsplit_once(')')?.1;
        // `rest` starts at field 3 (the state).
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|w| w.parse::<u64>().unwrap_or(0))
            .collect();
        let field = |n: usize| f.get(n - 3).copied();
        Some(HostLayout {
            start_code: field(26)?,
            end_code: field(27)?,
            start_stack: field(28)?,
            start_data: field(45)?,
            end_data: field(46)?,
            start_brk: field(47)?,
            arg_start: field(48)?,
            arg_end: field(49)?,
            env_start: field(50)?,
            env_end: field(51)?,
        })
    }
}

/// What init reported.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Report {
    pub forked: bool,
    /// The job's wait status and own rusage, if init saw it exit.
    pub exit: Option<(i32, libc::rusage)>,
    /// The denied syscall (number, audit arch) that ended the job, if any.
    pub bad_syscall: Option<(i32, u32)>,
}

/// Owner of one mapped status page (unmapped on drop).
pub(crate) struct StatusMap {
    page: NonNull<StatusPage>,
}

// SAFETY: the page is plain shared memory; the host only reads it after the
// writer (init) has been reaped, and access goes through volatile reads.
unsafe impl Send for StatusMap {}
// SAFETY: see above; &StatusMap only allows volatile reads.
unsafe impl Sync for StatusMap {}

/// The size of the status page (and the arena's unit).
pub(crate) const PAGE: usize = 4096;

impl StatusMap {
    /// Takes over a mapped page (the first of a plan's arena).
    ///
    /// # Safety
    /// `page` must be a mapping of exactly one page that nothing else unmaps.
    pub(crate) unsafe fn from_page(page: NonNull<StatusPage>) -> StatusMap {
        StatusMap { page }
    }

    /// The raw pointer handed to the child.
    #[cfg(test)]
    pub(crate) fn as_ptr(&self) -> *mut StatusPage {
        self.page.as_ptr()
    }

    /// Reads what init wrote. Call only after init has been reaped.
    pub(crate) fn read(&self) -> Report {
        let p = self.page.as_ptr();
        // SAFETY: p points to our live mapping; the writer has exited (reaped),
        // and the zero-filled page is a valid StatusPage.
        unsafe {
            let forked = ptr::read_volatile(ptr::addr_of!((*p).forking)) != 0;
            let exited = ptr::read_volatile(ptr::addr_of!((*p).exited)) != 0;
            let exit = exited.then(|| {
                (
                    ptr::read_volatile(ptr::addr_of!((*p).wait_status)),
                    ptr::read_volatile(ptr::addr_of!((*p).rusage)),
                )
            });
            let bad = ptr::read_volatile(ptr::addr_of!((*p).bad_syscall)) != 0;
            let bad_syscall = bad.then(|| {
                (
                    ptr::read_volatile(ptr::addr_of!((*p).bad_nr)),
                    ptr::read_volatile(ptr::addr_of!((*p).bad_arch)),
                )
            });
            Report {
                forked,
                exit,
                bad_syscall,
            }
        }
    }
}

impl Drop for StatusMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the page we mapped; no references outlive self.
        unsafe { libc::munmap(self.page.as_ptr().cast(), PAGE) };
    }
}

impl StatusPage {
    /// Called by init right before forking the job.
    ///
    /// # Safety
    /// `p` must point to a mapped status page.
    pub(crate) unsafe fn mark_forking(p: *mut StatusPage) {
        // SAFETY: guaranteed by the caller.
        unsafe { ptr::write_volatile(ptr::addr_of_mut!((*p).forking), 1) };
    }

    /// The signals the cell's parent process ignores, for the job to reset:
    /// written by the host before the clone.
    ///
    /// # Safety
    /// `p` must point to a mapped status page no cell reads yet.
    pub(crate) unsafe fn set_ignored_signals(p: *mut StatusPage, set: u64) {
        // SAFETY: guaranteed by the caller.
        unsafe { ptr::write_volatile(ptr::addr_of_mut!((*p).ignored_signals), set) };
    }

    /// Marks the cell as cloned from the host with `layout`: init hides the
    /// host's arguments and environment, and shows `name` instead.
    ///
    /// # Safety
    /// `p` must point to a mapped status page no cell reads yet.
    pub(crate) unsafe fn set_host_clone(p: *mut StatusPage, layout: HostLayout, name: &[u8]) {
        let mut n = [0u8; 16];
        let len = name.len().min(15);
        n[..len].copy_from_slice(&name[..len]);
        // SAFETY: guaranteed by the caller.
        unsafe {
            ptr::write_volatile(ptr::addr_of_mut!((*p).layout), layout);
            ptr::write_volatile(ptr::addr_of_mut!((*p).name), n);
            ptr::write_volatile(ptr::addr_of_mut!((*p).host_clone), 1);
        }
    }

    /// What [`StatusPage::set_host_clone`] wrote, with the address and
    /// length (NUL included) of the name in the page; `None` for a cell
    /// the spawner cloned.
    ///
    /// # Safety
    /// `p` must point to a mapped status page.
    pub(crate) unsafe fn host_clone(p: *mut StatusPage) -> Option<(HostLayout, u64, u64)> {
        // SAFETY: guaranteed by the caller.
        unsafe {
            if ptr::read_volatile(ptr::addr_of!((*p).host_clone)) == 0 {
                return None;
            }
            let name = ptr::read_volatile(ptr::addr_of!((*p).name));
            let mut len = 0;
            while len < 15 && name[len] != 0 {
                len += 1;
            }
            Some((
                ptr::read_volatile(ptr::addr_of!((*p).layout)),
                ptr::addr_of!((*p).name) as u64,
                len as u64 + 1,
            ))
        }
    }

    /// Where the clone stores the cell's pid (`CLONE_PARENT_SETTID`).
    pub(crate) fn cell_pid_slot(p: *mut StatusPage) -> *mut i32 {
        // SAFETY: only the address is computed; nothing is read or written.
        unsafe { ptr::addr_of_mut!((*p).cell_pid) }
    }

    /// The cell's pid as the clone stored it; 0 if no clone happened.
    ///
    /// # Safety
    /// `p` must point to a mapped status page.
    pub(crate) unsafe fn cell_pid(p: *const StatusPage) -> i32 {
        // SAFETY: guaranteed by the caller.
        unsafe { ptr::read_volatile(ptr::addr_of!((*p).cell_pid)) }
    }

    /// Records the stage setup has reached (init and the job, as they go).
    ///
    /// # Safety
    /// `p` must point to a mapped status page.
    pub(crate) unsafe fn set_progress(p: *mut StatusPage, stage: u32, step: u32) {
        // SAFETY: guaranteed by the caller.
        unsafe {
            ptr::write_volatile(ptr::addr_of_mut!((*p).step), step);
            ptr::write_volatile(ptr::addr_of_mut!((*p).stage), stage);
        }
    }

    /// The stage and step [`StatusPage::set_progress`] last wrote.
    ///
    /// # Safety
    /// `p` must point to a mapped status page.
    pub(crate) unsafe fn progress(p: *const StatusPage) -> (u32, u32) {
        // SAFETY: guaranteed by the caller.
        unsafe {
            (
                ptr::read_volatile(ptr::addr_of!((*p).stage)),
                ptr::read_volatile(ptr::addr_of!((*p).step)),
            )
        }
    }

    /// Marks the cell's IPC namespace as made and set up ahead.
    ///
    /// # Safety
    /// `p` must point to a mapped status page no cell reads yet.
    pub(crate) unsafe fn set_ipc_ready(p: *mut StatusPage) {
        // SAFETY: guaranteed by the caller.
        unsafe { ptr::write_volatile(ptr::addr_of_mut!((*p).ipc_ready), 1) };
    }

    /// Whether [`StatusPage::set_ipc_ready`] was called (read by init).
    ///
    /// # Safety
    /// `p` must point to a mapped status page.
    pub(crate) unsafe fn ipc_ready(p: *const StatusPage) -> bool {
        // SAFETY: guaranteed by the caller.
        unsafe { ptr::read_volatile(ptr::addr_of!((*p).ipc_ready)) != 0 }
    }

    /// What [`StatusPage::set_ignored_signals`] wrote (read by the job).
    ///
    /// # Safety
    /// `p` must point to a mapped status page.
    pub(crate) unsafe fn ignored_signals(p: *const StatusPage) -> u64 {
        // SAFETY: guaranteed by the caller.
        unsafe { ptr::read_volatile(ptr::addr_of!((*p).ignored_signals)) }
    }

    /// Called by init when the job made a denied call in kill mode (the first one counts).
    ///
    /// # Safety
    /// `p` must point to a mapped status page.
    pub(crate) unsafe fn record_bad_syscall(p: *mut StatusPage, nr: i32, arch: u32) {
        // SAFETY: guaranteed by the caller.
        unsafe {
            if ptr::read_volatile(ptr::addr_of!((*p).bad_syscall)) != 0 {
                return;
            }
            ptr::write_volatile(ptr::addr_of_mut!((*p).bad_nr), nr);
            ptr::write_volatile(ptr::addr_of_mut!((*p).bad_arch), arch);
            ptr::write_volatile(ptr::addr_of_mut!((*p).bad_syscall), 1);
        }
    }

    /// Called by init when the job has exited.
    ///
    /// # Safety
    /// `p` must point to a mapped status page.
    pub(crate) unsafe fn record_exit(p: *mut StatusPage, status: i32, usage: &libc::rusage) {
        // SAFETY: guaranteed by the caller; `exited` is written last.
        unsafe {
            ptr::write_volatile(ptr::addr_of_mut!((*p).wait_status), status);
            ptr::write_volatile(ptr::addr_of_mut!((*p).rusage), *usage);
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            ptr::write_volatile(ptr::addr_of_mut!((*p).exited), 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_of_this_process_reads_back() {
        let l = HostLayout::current().expect("/proc/self/stat");
        assert!(l.start_code < l.end_code && l.start_code > 0, "{l:?}");
        assert!(l.arg_start < l.arg_end && l.arg_end <= l.env_start, "{l:?}");
        assert!(l.env_start <= l.env_end, "{l:?}");
        // A command name with spaces and parentheses does not shift the fields.
        let mut fields = vec!["0"; 52];
        fields[26 - 1] = "4096";
        fields[51 - 1] = "77";
        let line = format!("1 (a) b (c) {}", fields[2..].join(" "));
        let l = HostLayout::parse(&line).unwrap();
        assert_eq!((l.start_code, l.env_end), (4096, 77));
        assert!(HostLayout::parse("1 (x) S 1 2").is_none());
    }

    #[test]
    fn fresh_page_reports_nothing() {
        let m = crate::spawn::arena::Arena::new(0).unwrap().into_status().0;
        let r = m.read();
        assert!(!r.forked);
        assert!(r.exit.is_none());
        // SAFETY: the page is mapped for the life of m.
        unsafe {
            StatusPage::mark_forking(m.as_ptr());
            let ru: libc::rusage = std::mem::zeroed();
            StatusPage::record_exit(m.as_ptr(), 3 << 8, &ru);
        }
        let r = m.read();
        assert!(r.forked);
        assert_eq!(r.exit.unwrap().0, 3 << 8);
    }
}
