//! Landlock: an optional file-system ruleset on top of the cell's mount namespace.
//!
//! The mount namespace decides what exists in the cell; a Landlock ruleset
//! further limits what the job may do with it, per directory tree. With a
//! ruleset, everything not granted is denied (`EACCES`), including paths the
//! cell shows, and no process of the job can lift it.

use std::ffi::CString;

use crate::error::{Error, Result};
use crate::path::CellPath;

/// What a Landlock rule grants beneath a directory (or on a file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FsAccess {
    /// Read files, list directories, execute programs.
    ReadOnly,
    /// Everything the kernel's Landlock version handles: read, write, create,
    /// remove, rename and link within the tree, truncate, device ioctls.
    ReadWrite,
}

/// A Landlock ruleset for the job: the trees it may use, and how.
///
/// ```
/// use jobcell::{Landlock, Sandbox};
///
/// let mut sandbox = Sandbox::new();
/// sandbox.landlock(
///     Landlock::new()
///         .read_only("/usr")
///         .read_only("/etc")
///         .read_write("/tmp")
///         .read_write("/dev"),
/// );
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Landlock {
    rules: Vec<(std::path::PathBuf, FsAccess)>,
}

impl Landlock {
    /// A ruleset that grants nothing yet.
    pub fn new() -> Landlock {
        Landlock::default()
    }

    /// Grants `access` beneath `path` (a path inside the cell).
    pub fn allow(mut self, path: impl AsRef<std::path::Path>, access: FsAccess) -> Landlock {
        self.rules.push((path.as_ref().to_owned(), access));
        self
    }

    /// Grants reading and executing beneath `path`.
    pub fn read_only(self, path: impl AsRef<std::path::Path>) -> Landlock {
        self.allow(path, FsAccess::ReadOnly)
    }

    /// Grants everything beneath `path`.
    pub fn read_write(self, path: impl AsRef<std::path::Path>) -> Landlock {
        self.allow(path, FsAccess::ReadWrite)
    }
}

// Access rights, by the Landlock ABI version that introduced them.
const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
const ABI1_ALL: u64 = (1 << 13) - 1;
const REFER: u64 = 1 << 13; // ABI 2
const TRUNCATE: u64 = 1 << 14; // ABI 3
const IOCTL_DEV: u64 = 1 << 15; // ABI 5

/// Rights that make sense on a file: a rule on a file may grant only these.
pub(crate) const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;

/// The ruleset, prepared for the job: what it handles and each rule's path and rights.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub handled: u64,
    pub rules: Vec<(CString, u64)>,
}

/// The Landlock ABI version of the running kernel, or why there is none.
fn abi() -> std::result::Result<i64, crate::Errno> {
    const VERSION: u32 = 1;
    // SAFETY: a NULL attribute with size 0 and the VERSION flag only queries.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            VERSION,
        )
    };
    if r < 0 {
        Err(crate::Errno::last())
    } else {
        Ok(r)
    }
}

impl Landlock {
    /// Checks the rules and the kernel, and prepares the ruleset for the job.
    pub(crate) fn prepare(&self) -> Result<Prepared> {
        let version = abi().map_err(|errno| Error::Spawn {
            op: "landlock (not available in this kernel, or disabled)",
            path: None,
            errno,
            hint: Some("jobcell::host::check() says whether this kernel has Landlock"),
        })?;
        let mut handled = ABI1_ALL;
        if version >= 2 {
            handled |= REFER;
        }
        if version >= 3 {
            handled |= TRUNCATE;
        }
        if version >= 5 {
            handled |= IOCTL_DEV;
        }
        let rules = self
            .rules
            .iter()
            .map(|(p, access)| {
                let cell = CellPath::new(p)?;
                let rights = match access {
                    FsAccess::ReadOnly => EXECUTE | READ_FILE | READ_DIR,
                    FsAccess::ReadWrite => handled,
                };
                let c = CString::new(cell.as_bytes()).expect("cell paths have no NUL");
                Ok((c, rights))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Prepared { handled, rules })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepares_rules_for_this_kernel() {
        let p = Landlock::new()
            .read_only("/usr")
            .read_write("/tmp")
            .prepare();
        match p {
            Ok(p) => {
                assert_eq!(p.rules.len(), 2);
                assert_eq!(p.rules[0].1, EXECUTE | READ_FILE | READ_DIR);
                assert_eq!(p.rules[1].1, p.handled);
                assert!(p.handled & WRITE_FILE != 0);
            }
            Err(e) => eprintln!("landlock unavailable here: {e}"),
        }
        assert!(Landlock::new().read_only("relative").prepare().is_err());
    }
}
