//! The memory a cell's plan lives in, from the clone to the job's `execve`.
//!
//! A shared memory file (memfd) that the host maps and fills with the plan:
//! every op, string and slice the cell reads, with plain pointers between
//! them. The cell's init sees the mapping at the same address, whether it is
//! a clone of this process or of the spawner (see `spawner.rs`, which maps
//! the file there before it clones), so the pointers hold in both.
//!
//! Page 0 is the job's status page and outlives the rest: once the job has
//! executed, [`Arena::into_status`] splits it off, and the rest of the
//! file is cut away when the [`PlanPages`] it returns is dropped.

use std::cell::Cell;
use std::ffi::CStr;
use std::mem::{align_of, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};

use crate::error::Errno;
use crate::spawn::status::{StatusMap, StatusPage, PAGE};

/// A bump allocator over one shared mapping. Placed values are plain data
/// (`Copy`): nothing in the arena is ever dropped.
pub(crate) struct Arena {
    base: NonNull<u8>,
    len: usize,
    used: Cell<usize>,
    fd: OwnedFd,
}

impl Arena {
    /// An arena with room for `payload` bytes (see [`Arena::footprint_of`])
    /// after the status page.
    pub(crate) fn new(payload: usize) -> Result<Arena, Errno> {
        let len = PAGE
            .checked_add(
                payload
                    .checked_next_multiple_of(PAGE)
                    .ok_or(Errno(libc::ENOMEM))?,
            )
            .ok_or(Errno(libc::ENOMEM))?;
        // SAFETY: a static NUL-terminated name and flags only.
        let fd = unsafe { libc::memfd_create(c"jobcell-plan".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: memfd_create returned a fresh descriptor we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: resizing our own memfd; the file stays sparse until written.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(Errno::last());
        }
        // SAFETY: a new shared mapping of the whole file, at an address of the kernel's choosing.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or(Errno(libc::ENOMEM))?;
        Ok(Arena {
            base,
            len,
            used: Cell::new(PAGE),
            fd,
        })
    }

    /// The most arena bytes `n` values of `T` take, alignment included.
    pub(crate) const fn footprint_of<T>(n: usize) -> usize {
        n * size_of::<T>() + align_of::<T>()
    }

    /// The job's status page (page 0).
    pub(crate) fn status(&self) -> *mut StatusPage {
        self.base.as_ptr().cast()
    }

    /// The mapping: its address and length (the spawner maps the file there too).
    pub(crate) fn range(&self) -> (usize, usize) {
        (self.base.as_ptr() as usize, self.len)
    }

    /// The memfd behind the mapping.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The bytes not yet used.
    pub(crate) fn room(&self) -> usize {
        self.len - self.used.get()
    }

    /// Room for `n` values of `T`, or `None` when the arena is full.
    fn alloc<T>(&self, n: usize) -> Option<*mut T> {
        let start = self.used.get().checked_next_multiple_of(align_of::<T>())?;
        let end = start.checked_add(n.checked_mul(size_of::<T>())?)?;
        if end > self.len {
            return None;
        }
        self.used.set(end);
        // SAFETY: start <= end <= len: inside our mapping.
        Some(unsafe { self.base.as_ptr().add(start) }.cast())
    }

    /// Uninitialised (zero-filled, as fresh file pages are) room for `len`
    /// bytes aligned to 16, such as a stack.
    pub(crate) fn reserve(&self, len: usize) -> Option<*mut u8> {
        self.alloc::<u128>(len.div_ceil(16)).map(|p| p.cast())
    }

    /// A copy of `value` in the arena.
    pub(crate) fn value<T: Copy>(&self, value: T) -> Option<&T> {
        let p = self.alloc::<T>(1)?;
        // SAFETY: p is aligned room for one T, used by nothing else.
        unsafe {
            p.write(value);
            Some(&*p)
        }
    }

    /// A copy of `value` in the arena that the host may write again later
    /// (with volatile writes: the cell reads it through its own mapping).
    pub(crate) fn value_mut<T: Copy>(&self, value: T) -> Option<*mut T> {
        let p = self.alloc::<T>(1)?;
        // SAFETY: p is aligned room for one T, used by nothing else.
        unsafe { p.write(value) };
        Some(p)
    }

    /// A copy of `src` in the arena.
    pub(crate) fn slice<T: Copy>(&self, src: &[T]) -> Option<&[T]> {
        let p = self.alloc::<T>(src.len())?;
        // SAFETY: p is aligned room for src.len() values of T, disjoint from src.
        unsafe {
            ptr::copy_nonoverlapping(src.as_ptr(), p, src.len());
            Some(std::slice::from_raw_parts(p, src.len()))
        }
    }

    /// The values of `items` in the arena, in order.
    pub(crate) fn collect<T: Copy>(
        &self,
        items: impl ExactSizeIterator<Item = Option<T>>,
    ) -> Option<&[T]> {
        let n = items.len();
        let p = self.alloc::<T>(n)?;
        let mut written = 0;
        for item in items.take(n) {
            // SAFETY: written < n: inside the room allocated above.
            unsafe { p.add(written).write(item?) };
            written += 1;
        }
        // SAFETY: the first `written` values were initialised above.
        Some(unsafe { std::slice::from_raw_parts(p, written) })
    }

    /// A copy of `s` (with its NUL) in the arena.
    pub(crate) fn cstr(&self, s: &CStr) -> Option<&CStr> {
        let bytes = self.slice(s.to_bytes_with_nul())?;
        // SAFETY: an exact copy of a valid C string, NUL included.
        Some(unsafe { CStr::from_bytes_with_nul_unchecked(bytes) })
    }

    /// Splits the arena once the cell no longer reads the plan (its job has
    /// executed): the status page, and the plan's pages, which are freed
    /// when the returned [`PlanPages`] is dropped. Taking `self` ends every
    /// borrow of placed values.
    pub(crate) fn into_status(self) -> (StatusMap, PlanPages) {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: the descriptor is ours and read exactly once (ManuallyDrop).
        let fd = unsafe { ptr::read(&this.fd) };
        let rest = PlanPages {
            fd,
            addr: this.base.as_ptr() as usize + PAGE,
            len: this.len - PAGE,
        };
        // SAFETY: page 0 stays mapped (PlanPages never unmaps it) and is
        // handed to the StatusMap alone.
        (unsafe { StatusMap::from_page(this.base.cast()) }, rest)
    }
}

/// The plan's pages after the job has executed: nothing reads them any
/// more. Dropping this cuts the file down to the status page (freeing the
/// pages in every mapping of it, init's too) and unmaps our view of them.
/// Worth handing to another thread: the cut and the unmap each shoot down
/// TLB entries on other CPUs, ~30 µs a spawn should not wait for.
pub(crate) struct PlanPages {
    fd: OwnedFd,
    addr: usize,
    len: usize,
}

impl Drop for PlanPages {
    fn drop(&mut self) {
        // SAFETY: shrinking our own memfd; then unmapping exactly the range
        // past the status page that our mapping of it covered, which no
        // placed value borrows any more (the arena was consumed).
        unsafe {
            libc::ftruncate(self.fd.as_raw_fd(), PAGE as libc::off_t);
            libc::munmap(self.addr as *mut libc::c_void, self.len);
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly our mapping; placed values borrow self, so none outlive it.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_values_read_back_and_the_status_page_survives() {
        let a = Arena::new(4096).unwrap();
        let s = a.cstr(c"/tmp/x").unwrap();
        let v = a.slice(&[1u64, 2, 3]).unwrap();
        let n = a.value(7u16).unwrap();
        let c = a.collect([Some(1u8), Some(2)].into_iter()).unwrap();
        assert_eq!(
            (s, v, *n, c),
            (c"/tmp/x", &[1u64, 2, 3][..], 7, &[1u8, 2][..])
        );
        assert_eq!(v.as_ptr() as usize % 8, 0);
        assert!(a.collect([Some(1u8), None].into_iter()).is_none());
        let (addr, len) = a.range();
        assert!(s.as_ptr() as usize >= addr + PAGE && (v.as_ptr() as usize) < addr + len);
        assert!(a.slice(&[0u8; 8192]).is_none(), "beyond the room asked for");
        // SAFETY: the status page is mapped for the life of the arena.
        unsafe { StatusPage::mark_forking(a.status()) };
        let (st, rest) = a.into_status();
        drop(rest);
        assert!(st.read().forked);
    }
}
