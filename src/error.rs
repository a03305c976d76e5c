//! The one public error type.
//!
//! Every variant carries what failed: the stage of cell setup, the path, the
//! value, the errno. A caller should be able to act on the message alone.

use std::fmt;
use std::path::PathBuf;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An operating-system error number, shown with its symbolic name.
///
/// ```
/// let e = jobcell::Errno(13);
/// assert_eq!(e.name(), "EACCES");
/// assert!(e.to_string().starts_with("EACCES"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// The symbolic name (`"ENOENT"`), or `"E?"` for numbers this table lacks.
    pub fn name(self) -> &'static str {
        match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::ESRCH => "ESRCH",
            libc::EINTR => "EINTR",
            libc::EIO => "EIO",
            libc::ENXIO => "ENXIO",
            libc::E2BIG => "E2BIG",
            libc::ENOEXEC => "ENOEXEC",
            libc::EBADF => "EBADF",
            libc::ECHILD => "ECHILD",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::EXDEV => "EXDEV",
            libc::ENODEV => "ENODEV",
            libc::ENOTDIR => "ENOTDIR",
            libc::EISDIR => "EISDIR",
            libc::EINVAL => "EINVAL",
            libc::ENFILE => "ENFILE",
            libc::EMFILE => "EMFILE",
            libc::ETXTBSY => "ETXTBSY",
            libc::EFBIG => "EFBIG",
            libc::ENOSPC => "ENOSPC",
            libc::ESPIPE => "ESPIPE",
            libc::EROFS => "EROFS",
            libc::EMLINK => "EMLINK",
            libc::EPIPE => "EPIPE",
            libc::ERANGE => "ERANGE",
            libc::ENAMETOOLONG => "ENAMETOOLONG",
            libc::ENOSYS => "ENOSYS",
            libc::ENOTEMPTY => "ENOTEMPTY",
            libc::ELOOP => "ELOOP",
            libc::EOVERFLOW => "EOVERFLOW",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::ETIMEDOUT => "ETIMEDOUT",
            libc::EUSERS => "EUSERS",
            libc::EDQUOT => "EDQUOT",
            _ => "E?",
        }
    }

    /// The errno of the last failed libc call, read without allocating
    /// (safe between clone and exec).
    pub(crate) fn last_raw() -> Errno {
        // SAFETY: __errno_location returns this thread's errno slot.
        Errno(unsafe { *libc::__errno_location() })
    }

    /// The errno of the last failed libc call on this thread.
    pub(crate) fn last() -> Errno {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = std::io::Error::from_raw_os_error(self.0).to_string();
        // io::Error renders "Permission denied (os error 13)"; keep the words only.
        let words = msg.split(" (os error").next().unwrap_or(&msg);
        write!(f, "{} ({})", self.name(), words)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl From<rustix::io::Errno> for Errno {
    fn from(e: rustix::io::Errno) -> Self {
        Errno(e.raw_os_error())
    }
}

impl From<&std::io::Error> for Errno {
    fn from(e: &std::io::Error) -> Self {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

/// A step of cell setup, as reported by the cell itself when it fails.
///
/// The stages run in this order; the `Display` form is what error messages show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u32)]
pub enum Stage {
    /// Cloning the cell's init (by the spawner, or by the host itself).
    Clone = 1,
    /// Closing file descriptors inherited from the host.
    CloseFds,
    /// Moving into the job's cgroup(s) (cgroup v1; the error names the cgroup).
    JoinCgroup,
    /// Waiting for the host to write the id maps.
    WaitForHost,
    /// Switching to root inside the new user namespace.
    BecomeRoot,
    /// Entering a new cgroup namespace rooted at the job's cgroup.
    CgroupNamespace,
    /// Setting the cell's hostname.
    SetHostname,
    /// Making the mount tree private so nothing propagates to the host.
    MakeMountsPrivate,
    /// A step of building the root file system (the error names the step).
    BuildRoot,
    /// `pivot_root` into the new root.
    PivotRoot,
    /// Detaching the old root.
    DetachOldRoot,
    /// Bringing up the loopback interface.
    LoopbackUp,
    /// Forking the job from the cell's init.
    ForkJob,
    /// Setting up the job's session (`setsid`).
    Setsid,
    /// Connecting the job's stdin, stdout and stderr.
    Stdio,
    /// Applying resource limits (`setrlimit`).
    Rlimits,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs,
    /// Dropping capabilities.
    DropCapabilities,
    /// Switching to the job's group ids.
    SetGroups,
    /// Switching to the job's user id.
    SetUser,
    /// Changing to the job's working directory.
    Chdir,
    /// Marking inherited descriptors close-on-exec.
    CloseOnExec,
    /// Installing the seccomp filter.
    Seccomp,
    /// Applying the Landlock ruleset.
    Landlock,
    /// Executing the program.
    Exec,
}

impl Stage {
    pub(crate) fn from_u32(v: u32) -> Option<Stage> {
        use Stage::*;
        const ALL: [Stage; 25] = [
            Clone,
            CloseFds,
            JoinCgroup,
            WaitForHost,
            BecomeRoot,
            CgroupNamespace,
            SetHostname,
            MakeMountsPrivate,
            BuildRoot,
            PivotRoot,
            DetachOldRoot,
            LoopbackUp,
            ForkJob,
            Setsid,
            Stdio,
            Rlimits,
            NoNewPrivs,
            DropCapabilities,
            SetGroups,
            SetUser,
            Chdir,
            CloseOnExec,
            Seccomp,
            Landlock,
            Exec,
        ];
        ALL.into_iter().find(|s| *s as u32 == v)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Stage::Clone => "cloning the cell",
            Stage::CloseFds => "closing inherited descriptors",
            Stage::JoinCgroup => "joining the job's cgroup",
            Stage::WaitForHost => "waiting for the host's id maps",
            Stage::BecomeRoot => "becoming root in the user namespace",
            Stage::CgroupNamespace => "entering a cgroup namespace",
            Stage::SetHostname => "setting the hostname",
            Stage::MakeMountsPrivate => "making mounts private",
            Stage::BuildRoot => "building the root",
            Stage::PivotRoot => "pivot_root",
            Stage::DetachOldRoot => "detaching the old root",
            Stage::LoopbackUp => "bringing up loopback",
            Stage::ForkJob => "forking the job",
            Stage::Setsid => "setsid",
            Stage::Stdio => "connecting stdio",
            Stage::Rlimits => "setting rlimits",
            Stage::NoNewPrivs => "setting no_new_privs",
            Stage::DropCapabilities => "dropping capabilities",
            Stage::SetGroups => "setting group ids",
            Stage::SetUser => "setting the user id",
            Stage::Chdir => "changing directory",
            Stage::CloseOnExec => "marking descriptors close-on-exec",
            Stage::Seccomp => "installing seccomp",
            Stage::Landlock => "applying landlock",
            Stage::Exec => "execve",
        };
        f.write_str(s)
    }
}

/// Everything that can go wrong in jobcell.
///
/// Input errors are found before anything is spawned; setup errors name the
/// stage inside the cell (and the mount or file) that failed, with its errno.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command's program is empty.
    #[error("the program name is empty")]
    EmptyProgram,

    /// The program was not found inside the cell.
    #[error("program {program:?} not found in the cell (searched {searched})")]
    ProgramNotFound {
        /// The program as given.
        program: String,
        /// The cell paths that were tried.
        searched: String,
    },

    /// An argument, environment variable or path contains a NUL byte.
    #[error("{what} contains a NUL byte: {value:?}")]
    NulByte {
        /// Which input ("argument 2", "environment variable", ...).
        what: String,
        /// The offending value (lossy).
        value: String,
    },

    /// The program's arguments and environment exceed what the kernel's
    /// `execve` takes: one string longer than `MAX_ARG_STRLEN` (32 pages,
    /// its NUL included), or more in all (strings and their pointers) than
    /// a quarter of the job's stack limit, at least 128 KiB and at most
    /// 6 MiB (`ARG_MAX`). Refused before anything is spawned.
    #[error("{what} takes {size} bytes, more than execve accepts ({limit} bytes: {reason})")]
    ArgumentsTooLarge {
        /// What is too large ("argument 3", "environment variable FOO",
        /// "the arguments and environment").
        what: String,
        /// Its size in bytes, as execve counts it.
        size: usize,
        /// The kernel's limit for it.
        limit: usize,
        /// Which limit it is.
        reason: &'static str,
    },

    /// A path inside the cell is not absolute, contains `..`, or is otherwise unusable.
    #[error("invalid path {path:?} inside the cell: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A host path given to the sandbox (bind source, rootfs, stdin file) cannot be used.
    #[error("host path {path} ({what}): {errno}")]
    HostPath {
        /// What the path was for ("bind source", "rootfs", "stdin file").
        what: &'static str,
        /// The host path.
        path: PathBuf,
        /// Why it cannot be used.
        errno: Errno,
    },

    /// A [`bind_rw_owned`](crate::Sandbox::bind_rw_owned) cannot be made
    /// here: the kernel (Linux 5.12+) or the file system of the source
    /// (ext4, xfs, btrfs, …; tmpfs from 6.3) cannot make idmapped mounts,
    /// or the caller may not. [`host::check`](crate::host::check) says
    /// whether they work. The fallback: give the directory to the job's
    /// host ids ([`Sandbox::host_ids`](crate::Sandbox::host_ids), with
    /// `chown`) and bind it with [`bind_rw`](crate::Sandbox::bind_rw); the
    /// files the job creates then belong to those ids on the host.
    ///
    /// ```
    /// # use jobcell::{Error, Errno};
    /// let e = Error::OwnedBind {
    ///     path: "/srv/work".into(),
    ///     reason: "its file system (nfs) does not support idmapped mounts".into(),
    ///     errno: Errno(libc::EINVAL),
    /// };
    /// assert!(e.to_string().contains("/srv/work"));
    /// assert!(e.to_string().contains("host_ids"), "the message names the fallback");
    /// ```
    #[error(
        "cannot give the job ownership of {path} (idmapped bind): {reason} \
         (fallback: chown it to Sandbox::host_ids() and use bind_rw)"
    )]
    OwnedBind {
        /// The bind's host source.
        path: PathBuf,
        /// What failed, and why.
        reason: String,
        /// The kernel's answer.
        errno: Errno,
    },

    /// A host path crosses a symlink owned by an id cells run as: a job may
    /// have planted it in a writable bind, so the host will not follow it.
    #[error("{what} {path}: refusing to follow {link}, a symlink owned by a cell's id (a job may have planted it)")]
    UntrustedSymlink {
        /// What the path was for ("bind source", "stdin file").
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// The symlink that was refused.
        link: PathBuf,
    },

    /// The working directory does not exist inside the cell.
    #[error("working directory {path:?} does not exist inside the cell")]
    CurrentDirNotFound {
        /// The cell path.
        path: String,
    },

    /// A user or group id lies outside the ids mapped into the cell.
    #[error("{kind} {id} is outside the mapped range 0..{count}")]
    IdOutOfRange {
        /// `"uid"` or `"gid"`.
        kind: &'static str,
        /// The id asked for.
        id: u32,
        /// How many ids are mapped.
        count: u32,
    },

    /// The id mapping itself is unusable (bad range, no `/etc/subuid` entry, ...).
    #[error("id mapping: {reason}")]
    IdMapping {
        /// What is wrong.
        reason: String,
    },

    /// A limit is zero, absurd or malformed.
    #[error("invalid limit {name} = {value}: {reason}")]
    InvalidLimit {
        /// The `Limits` field.
        name: &'static str,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: String,
    },

    /// Some other sandbox setting is invalid.
    #[error("invalid setting {name} = {value:?}: {reason}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: String,
    },

    /// A host-side step of spawning failed (pipe, clone3, writing the id maps, ...).
    #[error("{op}{}: {errno}{}", path_suffix(.path), hint_suffix(.hint))]
    Spawn {
        /// The operation (`"clone3"`, `"write uid_map"`, ...).
        op: &'static str,
        /// The file involved, if any.
        path: Option<PathBuf>,
        /// The errno.
        errno: Errno,
        /// A pointer to the host check that explains it, if the host is the likely cause.
        hint: Option<&'static str>,
    },

    /// A step of setup inside the cell failed.
    #[error("cell setup failed while {stage}{}: {errno}{}", detail_suffix(.detail), setup_hint(*.stage, *.errno))]
    Setup {
        /// The stage that failed.
        stage: Stage,
        /// Which mount, file or path, when the stage has several steps.
        detail: String,
        /// The errno the kernel returned.
        errno: Errno,
    },

    /// The cell's setup did not finish within the sandbox's setup timeout
    /// ([`Sandbox::setup_timeout`](crate::Sandbox::setup_timeout)): the
    /// cell was killed. `stage` is where it was stuck (`detail` names the
    /// step, for root building).
    #[error("cell setup did not finish within {}: stuck while {stage}{}", duration_text(.timeout), detail_suffix(.detail))]
    SetupTimeout {
        /// The stage the cell was in.
        stage: Stage,
        /// Which mount, file or path, when the stage has several steps.
        detail: String,
        /// The bound it exceeded.
        timeout: std::time::Duration,
    },

    /// The cell's init died during setup without reporting why.
    #[error("the cell died during setup ({status})")]
    SetupDied {
        /// How it ended, as text.
        status: String,
    },

    /// A cgroup file could not be written or read.
    #[error("cgroup {op} {path}{}: {errno}{}", value_suffix(.value), hint_suffix(.hint))]
    Cgroup {
        /// `"write"`, `"read"`, `"mkdir"`, `"rmdir"`, ...
        op: &'static str,
        /// The cgroup file or directory.
        path: PathBuf,
        /// The value written, if any.
        value: Option<String>,
        /// The errno.
        errno: Errno,
        /// What probably causes it and where to look.
        hint: Option<&'static str>,
    },

    /// A limit needs a cgroup controller that this host does not offer.
    #[error("limit {limit} needs the cgroup controller {controller:?}, which is not available: {reason}")]
    ControllerUnavailable {
        /// The limit that needs it.
        limit: &'static str,
        /// The controller.
        controller: &'static str,
        /// Why it is not available.
        reason: String,
    },

    /// A job id is malformed or would leave the cgroup tree.
    #[error("invalid job id {id:?}: {reason}")]
    InvalidJobId {
        /// The id.
        id: String,
        /// Why.
        reason: &'static str,
    },

    /// No job with this id is known.
    #[error("no job with id {id:?}")]
    NoSuchJob {
        /// The id.
        id: String,
    },

    /// The job is already finished, so it cannot be stopped.
    #[error("job {id} has already finished")]
    AlreadyFinished {
        /// The id.
        id: String,
    },

    /// The job has not finished yet, so it cannot be removed.
    #[error("job {id} has not finished; stop it first")]
    NotFinished {
        /// The id.
        id: String,
    },

    /// The worker refused the job: its queue is full or it is shutting down.
    #[error("job refused: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },

    /// A file could not be read safely beneath a directory (see [`crate::fs`]):
    /// the path is malformed, leads out of the directory or through a symlink,
    /// is not a regular file, is too large, or the kernel lacks `openat2`.
    #[error("reading {path:?} beneath {dir}: {reason}{}", errno_suffix(.errno))]
    ReadBeneath {
        /// The directory the path is relative to.
        dir: PathBuf,
        /// The path, as given.
        path: PathBuf,
        /// Why it was refused or failed.
        reason: String,
        /// The errno, when a system call failed.
        errno: Option<Errno>,
    },

    /// A file of the job store or another host file could not be used.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Redis refused a command of the cluster (a script error, a wrong
    /// type, a full memory): retrying will not help.
    #[error("redis {op}: {reason}")]
    Redis {
        /// The operation ("submit", "follow logs", ...).
        op: &'static str,
        /// What Redis answered.
        reason: String,
    },

    /// Redis could not be reached within the operation's time (the cluster
    /// retries with backoff until then).
    #[error("redis at {url} unreachable for {} during {op}: {reason}", duration_text(.waited))]
    RedisUnavailable {
        /// The server, without its password.
        url: String,
        /// The operation.
        op: &'static str,
        /// How long it was retried.
        waited: std::time::Duration,
        /// The last failure.
        reason: String,
    },

    /// The part of a job's log that was asked for is no longer in Redis: its
    /// log stream is bounded, and older chunks were trimmed.
    #[error("log of job {id}: asked from byte {from}, but bytes before {available} were trimmed")]
    LogTrimmed {
        /// The job.
        id: String,
        /// The offset asked for.
        from: u64,
        /// The first offset still stored.
        available: u64,
    },
}

/// The pointer that errors the host causes (a clone refused for want of
/// user namespaces) carry to the host checks.
pub(crate) const HINT_NAMESPACES: &str =
    "user namespaces may be unavailable here; jobcell::host::check() tells the cause and the fix";

fn path_suffix(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

fn hint_suffix(h: &Option<&'static str>) -> String {
    h.map(|h| format!(" (hint: {h})")).unwrap_or_default()
}

/// What a setup failure most likely means, where the errno alone would mislead.
fn setup_hint(stage: Stage, errno: Errno) -> &'static str {
    match (stage, errno.0) {
        // The cell's init follows no symlink in the new root (see spawn/cell/newroot.rs).
        (Stage::BuildRoot, libc::ELOOP) => {
            " (a directory on the way became a symlink after the plan checked it: \
             a job sharing a bind may have swapped it)"
        }
        _ => "",
    }
}

fn detail_suffix(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(" [{d}]")
    }
}

fn duration_text(d: &std::time::Duration) -> String {
    match d.subsec_millis() {
        0 => format!("{}s", d.as_secs()),
        _ => format!("{} ms", d.as_millis()),
    }
}

fn errno_suffix(e: &Option<Errno>) -> String {
    e.map(|e| format!(": {e}")).unwrap_or_default()
}

fn value_suffix(v: &Option<String>) -> String {
    v.as_ref().map(|v| format!(" = {v:?}")).unwrap_or_default()
}

impl Error {
    /// The errno behind this error, when there is one.
    ///
    /// ```
    /// use jobcell::{Errno, Error, Stage};
    /// let e = Error::Setup { stage: Stage::PivotRoot, detail: String::new(), errno: Errno(1) };
    /// assert_eq!(e.errno(), Some(Errno(1)));
    /// ```
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::HostPath { errno, .. }
            | Error::OwnedBind { errno, .. }
            | Error::Spawn { errno, .. }
            | Error::Setup { errno, .. }
            | Error::Cgroup { errno, .. } => Some(*errno),
            Error::Io { source, .. } => source.raw_os_error().map(Errno),
            Error::ReadBeneath { errno, .. } => *errno,
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_display_names_and_words() {
        assert_eq!(
            Errno(libc::ENOENT).to_string(),
            "ENOENT (No such file or directory)"
        );
        assert_eq!(Errno(9999).name(), "E?");
    }

    #[test]
    fn stage_roundtrip() {
        for v in 0..64 {
            if let Some(s) = Stage::from_u32(v) {
                assert_eq!(s as u32, v);
            }
        }
        assert_eq!(Stage::from_u32(Stage::Exec as u32), Some(Stage::Exec));
        assert_eq!(Stage::from_u32(0), None);
    }

    #[test]
    fn setup_error_names_stage_detail_and_errno() {
        let e = Error::Setup {
            stage: Stage::BuildRoot,
            detail: "bind /opt/x -> /x".into(),
            errno: Errno(libc::EPERM),
        };
        let s = e.to_string();
        assert!(s.contains("building the root"), "{s}");
        assert!(s.contains("bind /opt/x -> /x"), "{s}");
        assert!(s.contains("EPERM"), "{s}");
        assert!(!s.contains("symlink"), "{s}");
        let e = Error::Setup {
            stage: Stage::BuildRoot,
            detail: "attach bind of /opt/x on /work/sub/ro".into(),
            errno: Errno(libc::ELOOP),
        };
        let s = e.to_string();
        assert!(
            s.contains("/work/sub/ro") && s.contains("became a symlink"),
            "{s}"
        );
    }
}
