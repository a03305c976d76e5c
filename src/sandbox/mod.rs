//! What a cell looks like: the [`Sandbox`] builder, [`Command`], [`Limits`].

mod command;
mod limits;
mod rlimit;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use command::{Command, Output, Stdin};
pub use limits::{Limits, MIN_MEMORY};
pub(crate) use rlimit::effective as effective_rlimits;
pub use rlimit::{Rlimit, UNLIMITED};

/// The cell's network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// A private network namespace with only the loopback interface, up (the default).
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

/// How user and group ids inside the cell map to ids on the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdMap {
    /// A range when the host process is root (from `/etc/subuid` and `/etc/subgid`, or
    /// `100000:65536`), the caller's own single id otherwise (the default).
    #[default]
    Auto,
    /// Ids `0..count` inside map to `uid_start..uid_start+count` (and the same for
    /// groups) on the host. Needs root. `uid_start` and `gid_start` must not be 0:
    /// the cell never holds host root's ids.
    Range {
        /// First host uid.
        uid_start: u32,
        /// First host gid.
        gid_start: u32,
        /// Number of ids.
        count: u32,
    },
    /// Only the job's uid and gid are mapped, onto the calling user's own ids.
    /// Works without privileges.
    Single,
}

/// A filesystem entry the caller adds to the cell, applied in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MountSpec {
    Bind {
        source: PathBuf,
        target: PathBuf,
        writable: bool,
        /// Idmapped: the source's owner shows as the job (`bind_rw_owned`).
        owned: bool,
    },
    Tmpfs {
        target: PathBuf,
        size: u64,
        /// `None`: sized with the tmpfs (see [`tmpfs_inodes`]).
        inodes: Option<u64>,
    },
    Dir {
        target: PathBuf,
    },
    Symlink {
        value: PathBuf,
        link: PathBuf,
    },
    File {
        target: PathBuf,
        contents: Arc<[u8]>,
    },
}

/// The root file system of the cell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Root {
    /// A fresh tmpfs with read-only binds of the host's system directories.
    #[default]
    Minimal,
    /// A directory on the host, mounted read-only as `/`.
    Dir(PathBuf),
}

/// The largest file a job of [`Sandbox::untrusted`] may write (bytes):
/// there are no disk quotas, and a `bind_rw` directory is on the host's disk.
pub const UNTRUSTED_FILE_SIZE: u64 = 64 << 20;

/// The default size of the cell's `/tmp` (bytes); also charged to the job's memory limit.
pub const DEFAULT_TMP_SIZE: u64 = 128 << 20;

/// How long a cell's setup may take by default (see [`Sandbox::setup_timeout`]).
pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Faults a test injects into a spawn (see `__private::inject`); none by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Faults {
    /// The setup stage at which the cell stalls (`Stage as u32`; 0: none).
    pub stall: u32,
    /// The spawner's fault (see `spawn::spawner::Fault`; 0: none).
    pub spawner: u32,
    /// Clone the cell from the host, as the fallback paths do.
    pub clone_from_host: bool,
}

/// Every tmpfs of a cell (`/tmp`, `/dev/shm`, [`Sandbox::tmpfs`]) holds at
/// most one inode per this many bytes of its size (at least 64), unless
/// [`Sandbox::tmpfs_with_inodes`] says otherwise.
///
/// A size limit counts file pages only: empty files cost none, yet each
/// pins about 1 KiB of kernel memory (its inode and dentry), and a tmpfs
/// without `nr_inodes` allows millions of them. With one inode per 4 KiB,
/// a tmpfs pins at most about a quarter of its size on top of its files.
///
/// ```
/// // The default /tmp holds at most 32768 files and directories.
/// assert_eq!(jobcell::DEFAULT_TMP_SIZE / jobcell::TMPFS_BYTES_PER_INODE, 32768);
/// ```
pub const TMPFS_BYTES_PER_INODE: u64 = 4096;

/// The inodes a tmpfs of `size` bytes gets by default.
pub(crate) fn tmpfs_inodes(size: u64) -> u64 {
    (size / TMPFS_BYTES_PER_INODE).max(64)
}

/// A description of a cell: its file system, identity, network and limits.
///
/// A `Sandbox` is a cheap-to-clone builder, like [`std::process::Command`]:
/// configure it once, then [`spawn`](Sandbox::spawn) as many jobs as you like.
/// Nothing is checked until `spawn`, which validates everything before it
/// starts a process.
///
/// By default every namespace is new (user, PID, mount, UTS, IPC, network,
/// cgroup), the root is a read-only tmpfs holding the host's `/usr`, `/bin`,
/// `/lib*` and the `/etc` files programs need (never secrets such as
/// `shadow` or ssh keys), with a fresh `/proc`, a minimal `/dev` and a
/// writable `/tmp`. The job runs as uid/gid 1000 inside.
///
/// ```no_run
/// use jobcell::{Sandbox, Command, Limits};
///
/// let mut sandbox = Sandbox::new();
/// sandbox.hostname("cell")
///        .bind_ro("/usr/share/dict", "/dict")
///        .tmpfs("/tmp", 64 << 20)
///        .limits(Limits { memory: Some(256 << 20), pids: Some(64), ..Default::default() });
/// let job = sandbox.spawn(Command::new("sh").args(["-c", "echo hi"]))?;
/// let outcome = job.wait()?;
/// assert!(outcome.success());
/// # Ok::<(), jobcell::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Sandbox {
    pub(crate) root: Root,
    pub(crate) mounts: Vec<MountSpec>,
    pub(crate) hostname: OsString,
    pub(crate) network: Network,
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    pub(crate) env_clear: bool,
    pub(crate) current_dir: PathBuf,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) id_map: IdMap,
    pub(crate) limits: Limits,
    #[cfg(feature = "seccomp")]
    pub(crate) seccomp: crate::seccomp::Seccomp,
    pub(crate) cgroup_base: Option<PathBuf>,
    pub(crate) rlimits: Vec<(Rlimit, u64, u64)>,
    pub(crate) sysfs: bool,
    pub(crate) accounting: bool,
    #[cfg(feature = "landlock")]
    pub(crate) landlock: Option<crate::landlock::Landlock>,
    pub(crate) setup_timeout: Duration,
    pub(crate) faults: Faults,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Sandbox {
    /// A sandbox with every namespace, the minimal read-only root, loopback-only
    /// network, hostname `jobcell`, working directory `/`, and uid/gid 1000,
    /// and no limits: for work you trust. For code you do not, start from
    /// [`Sandbox::untrusted`].
    ///
    /// ```
    /// let sandbox = jobcell::Sandbox::new();
    /// ```
    pub fn new() -> Sandbox {
        Sandbox {
            root: Root::Minimal,
            mounts: Vec::new(),
            hostname: "jobcell".into(),
            network: Network::None,
            env: Vec::new(),
            env_clear: false,
            current_dir: PathBuf::from("/"),
            uid: 1000,
            gid: 1000,
            id_map: IdMap::Auto,
            limits: Limits::default(),
            #[cfg(feature = "seccomp")]
            seccomp: crate::seccomp::Seccomp::Default,
            cgroup_base: None,
            rlimits: Vec::new(),
            sysfs: false,
            accounting: true,
            #[cfg(feature = "landlock")]
            landlock: None,
            setup_timeout: DEFAULT_SETUP_TIMEOUT,
            faults: Faults::default(),
        }
    }

    /// A sandbox for code you did not write: [`Sandbox::new`] with
    /// [`Limits::conservative`] (512 MiB of memory, 256 processes and
    /// threads, 60 s of wall time, 16 MiB of output) and each file the job
    /// writes capped at [`UNTRUSTED_FILE_SIZE`] (64 MiB, `RLIMIT_FSIZE`:
    /// `SIGXFSZ`, or `EFBIG` where it is ignored, beyond). Start here for
    /// judges, code execution services and CI of changes from strangers;
    /// [`Sandbox::new`] has no limits, for work you trust.
    ///
    /// Every cap can be overridden: [`limits`](Sandbox::limits) replaces the
    /// limits (build on [`Limits::conservative`] to keep the others), and
    /// [`rlimit`](Sandbox::rlimit) the file size cap. The limits need
    /// cgroups (root, or a delegated cgroup v2 subtree; `jobcell::host::check`
    /// says): where there are none, spawning fails rather than run the job
    /// unlimited.
    ///
    /// ```
    /// use jobcell::{Limits, Sandbox};
    /// use std::time::Duration;
    ///
    /// let mut sandbox = Sandbox::untrusted();
    /// assert_eq!(sandbox.get_limits(), &Limits::conservative());
    /// // A judge with tighter time and memory, the other caps kept.
    /// sandbox.limits(Limits {
    ///     memory: Some(256 << 20),
    ///     wall_time: Some(Duration::from_secs(2)),
    ///     ..Limits::conservative()
    /// });
    /// ```
    pub fn untrusted() -> Sandbox {
        let mut sandbox = Sandbox::new();
        sandbox.limits(Limits::conservative()).rlimit(
            Rlimit::FileSize,
            UNTRUSTED_FILE_SIZE,
            UNTRUSTED_FILE_SIZE,
        );
        sandbox
    }

    /// Uses a host directory as the cell's root instead of the minimal root.
    /// It is mounted read-only; it must contain `/proc`, `/dev` and `/tmp` as directories.
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.rootfs("/srv/images/debian");
    /// ```
    pub fn rootfs(&mut self, dir: impl AsRef<Path>) -> &mut Sandbox {
        self.root = Root::Dir(dir.as_ref().to_owned());
        self
    }

    /// Makes the host path `source` visible read-only at `target` inside the cell.
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.bind_ro("/opt/tests", "/tests");
    /// ```
    pub fn bind_ro(&mut self, source: impl AsRef<Path>, target: impl AsRef<Path>) -> &mut Sandbox {
        self.mounts.push(MountSpec::Bind {
            source: source.as_ref().to_owned(),
            target: target.as_ref().to_owned(),
            writable: false,
            owned: false,
        });
        self
    }

    /// Makes the host path `source` visible read-write at `target` inside the cell.
    /// Files the job creates there belong, on the host, to the job's mapped
    /// id ([`host_ids`](Sandbox::host_ids)). The job can write only what
    /// those ids may write on the host: a directory of root's or of the
    /// caller's shows up as `nobody`'s. For a workspace the job owns, see
    /// [`bind_rw_owned`](Sandbox::bind_rw_owned).
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.bind_rw("/var/lib/ci/work-42", "/work");
    /// ```
    pub fn bind_rw(&mut self, source: impl AsRef<Path>, target: impl AsRef<Path>) -> &mut Sandbox {
        self.mounts.push(MountSpec::Bind {
            source: source.as_ref().to_owned(),
            target: target.as_ref().to_owned(),
            writable: true,
            owned: false,
        });
        self
    }

    /// Like [`bind_rw`](Sandbox::bind_rw), and the job owns it: through an
    /// idmapped mount, the files of the source's owner (a directory of
    /// root's, or of the caller's) show as the job's own uid and gid inside
    /// the cell, and the files the job creates belong, on the host, to the
    /// source's owner, not to the job's mapped id. Nothing on the host is
    /// chowned. Files of other owners show as `nobody`'s.
    ///
    /// A method of its own rather than an option of `bind_rw`: it needs
    /// what a plain bind does not (Linux 5.12+, a file system that allows
    /// idmapped mounts: ext4, xfs, btrfs, …, tmpfs from Linux 6.3; root, for
    /// a source owned by someone other than the caller), and where that is
    /// missing [`spawn`](Sandbox::spawn) fails with [`Error::OwnedBind`](crate::Error::OwnedBind)
    /// rather than bind something the job cannot write. The fallback is
    /// `bind_rw` of a directory chowned to [`host_ids`](Sandbox::host_ids)
    /// (see `docs/recipes.md`); [`host::check`](crate::host::check) says
    /// which way this host takes. A source already owned by the job's host
    /// ids (an unprivileged caller's own directory) needs no idmap and is
    /// bound as is.
    ///
    /// What the job creates is the owner's on the host, setuid executables
    /// included, and its symlinks are not told apart from the owner's:
    /// keep the directory out of other host users' reach (mode 0700), run
    /// nothing from it on the host, read it with [`crate::fs`], and never
    /// bind a path inside it into another cell (see `docs/security.md`).
    ///
    /// ```no_run
    /// # fn main() -> jobcell::Result<()> {
    /// use jobcell::{Command, Sandbox};
    ///
    /// let mut sandbox = Sandbox::new();
    /// sandbox.bind_rw_owned("/var/lib/ci/work-42", "/work").current_dir("/work");
    /// let job = sandbox.spawn(Command::new("sh").args(["-c", "touch built && ls -ln"]))?;
    /// assert!(job.wait()?.success());
    /// # Ok(()) }
    /// ```
    pub fn bind_rw_owned(
        &mut self,
        source: impl AsRef<Path>,
        target: impl AsRef<Path>,
    ) -> &mut Sandbox {
        self.mounts.push(MountSpec::Bind {
            source: source.as_ref().to_owned(),
            target: target.as_ref().to_owned(),
            writable: true,
            owned: true,
        });
        self
    }

    /// Mounts a fresh, writable tmpfs of `size` bytes at `target`, holding at
    /// most one file or directory per [`TMPFS_BYTES_PER_INODE`] bytes.
    /// A tmpfs at `/tmp` replaces the default one.
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.tmpfs("/tmp", 64 << 20);
    /// ```
    pub fn tmpfs(&mut self, target: impl AsRef<Path>, size: u64) -> &mut Sandbox {
        self.mounts.push(MountSpec::Tmpfs {
            target: target.as_ref().to_owned(),
            size,
            inodes: None,
        });
        self
    }

    /// Like [`tmpfs`](Sandbox::tmpfs), with room for `inodes` files and
    /// directories (the tmpfs's root included) instead of one per
    /// [`TMPFS_BYTES_PER_INODE`] bytes: more for trees of many small files,
    /// fewer to bound the kernel memory they pin (about 1 KiB each, outside
    /// `size`). Between 2 and 2³².
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// // A build tree of many small files.
    /// sandbox.tmpfs_with_inodes("/tmp", 256 << 20, 200_000);
    /// ```
    pub fn tmpfs_with_inodes(
        &mut self,
        target: impl AsRef<Path>,
        size: u64,
        inodes: u64,
    ) -> &mut Sandbox {
        self.mounts.push(MountSpec::Tmpfs {
            target: target.as_ref().to_owned(),
            size,
            inodes: Some(inodes),
        });
        self
    }

    /// Creates an empty directory (mode 0755) at `target`, with its parents.
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.dir("/data");
    /// ```
    pub fn dir(&mut self, target: impl AsRef<Path>) -> &mut Sandbox {
        self.mounts.push(MountSpec::Dir {
            target: target.as_ref().to_owned(),
        });
        self
    }

    /// Creates a symbolic link at `link` pointing to `value`, like
    /// [`std::os::unix::fs::symlink`]`(value, link)`.
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.symlink("/usr/bin/python3", "/usr/local/bin/python");
    /// ```
    pub fn symlink(&mut self, value: impl AsRef<Path>, link: impl AsRef<Path>) -> &mut Sandbox {
        self.mounts.push(MountSpec::Symlink {
            value: value.as_ref().to_owned(),
            link: link.as_ref().to_owned(),
        });
        self
    }

    /// Creates a read-only file (mode 0644) at `target` holding `contents`.
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.file("/input.txt", "1 2 3\n");
    /// ```
    pub fn file(&mut self, target: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> &mut Sandbox {
        self.mounts.push(MountSpec::File {
            target: target.as_ref().to_owned(),
            contents: contents.as_ref().into(),
        });
        self
    }

    /// Chooses the cell's network.
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.network(jobcell::Network::Host);
    /// ```
    pub fn network(&mut self, network: Network) -> &mut Sandbox {
        self.network = network;
        self
    }

    /// Sets the hostname inside the cell.
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.hostname("cell");
    /// ```
    pub fn hostname(&mut self, name: impl AsRef<OsStr>) -> &mut Sandbox {
        self.hostname = name.as_ref().to_owned();
        self
    }

    /// Sets an environment variable for every job of this sandbox.
    ///
    /// The environment starts as `PATH`, `HOME`, `USER`, `LOGNAME`, `HOSTNAME`
    /// and `LANG`; the host's environment is never passed in.
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.env("CI", "true");
    /// ```
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Sandbox {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes one variable of the default environment.
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.env_remove("LANG");
    /// ```
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Sandbox {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts from an empty environment (variables set afterwards still apply).
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.env_clear().env("PATH", "/usr/bin");
    /// ```
    pub fn env_clear(&mut self) -> &mut Sandbox {
        self.env.clear();
        self.env_clear = true;
        self
    }

    /// Sets the job's working directory inside the cell (default `/`). It must exist.
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.current_dir("/tmp");
    /// ```
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Sandbox {
        self.current_dir = dir.as_ref().to_owned();
        self
    }

    /// Sets the uid and gid the job runs as inside the cell (default 1000:1000).
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.user(1001, 1001);
    /// ```
    pub fn user(&mut self, uid: u32, gid: u32) -> &mut Sandbox {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Chooses how ids inside map to host ids.
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.id_map(jobcell::IdMap::Range { uid_start: 200000, gid_start: 200000, count: 65536 });
    /// ```
    pub fn id_map(&mut self, map: IdMap) -> &mut Sandbox {
        self.id_map = map;
        self
    }

    /// Sets the job's resource limits.
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.limits(jobcell::Limits { pids: Some(32), ..Default::default() });
    /// ```
    pub fn limits(&mut self, limits: Limits) -> &mut Sandbox {
        self.limits = limits;
        self
    }

    /// Chooses the job's seccomp filter (default: [`Seccomp::Default`](crate::Seccomp::Default),
    /// a denylist whose denied calls fail with `EPERM`). The filter is compiled
    /// when a job is spawned, so an invalid [`Custom`](crate::Seccomp::Custom)
    /// policy is reported by [`spawn`](Sandbox::spawn), and installed in the job
    /// right before `execve`: the cell's setup never runs under it.
    ///
    /// ```
    /// use jobcell::{Sandbox, Seccomp, SeccompAction, SeccompPolicy};
    ///
    /// let mut judge = Sandbox::new();
    /// judge.seccomp(Seccomp::Custom(SeccompPolicy::new().action(SeccompAction::KillProcess)));
    ///
    /// let mut trusted = Sandbox::new();
    /// trusted.seccomp(Seccomp::Disabled);
    /// ```
    #[cfg(feature = "seccomp")]
    pub fn seccomp(&mut self, seccomp: crate::seccomp::Seccomp) -> &mut Sandbox {
        self.seccomp = seccomp;
        self
    }

    /// Puts this sandbox's job cgroups under `dir`, a cgroup directory
    /// delegated to this process (e.g. by systemd's `Delegate=yes`), instead of
    /// the default `jobcell` directory under the process's own cgroup.
    ///
    /// jobcell creates one directory per process and one per job below it and
    /// removes them when they are empty; it never removes `dir` itself. On
    /// cgroup v1, `dir` may lie in any hierarchy: the same path is used in
    /// each. If `dir` cannot be used, jobs with cgroup limits fail with an
    /// error saying why; jobs without run without a cgroup. See
    /// `docs/cgroups.md` for setting up delegation.
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.cgroup_base("/sys/fs/cgroup/system.slice/judge.service/jobs");
    /// ```
    pub fn cgroup_base(&mut self, dir: impl AsRef<Path>) -> &mut Sandbox {
        self.cgroup_base = Some(dir.as_ref().to_owned());
        self
    }

    /// Sets a per-process resource limit of the job (`setrlimit`); `soft`
    /// must not exceed `hard`, and [`UNLIMITED`] means no limit. A hard
    /// limit above the host process's own is refused by `spawn`, before
    /// anything runs (the cell holds no privilege over host limits).
    /// Defaults: no core dumps, and 1024/4096 open files, lowered to fit
    /// under the host process's hard limits.
    ///
    /// ```
    /// use jobcell::{Sandbox, Rlimit};
    /// let mut sandbox = Sandbox::new();
    /// sandbox.rlimit(Rlimit::FileSize, 16 << 20, 16 << 20)
    ///        .rlimit(Rlimit::Stack, 64 << 20, 64 << 20);
    /// ```
    pub fn rlimit(&mut self, resource: Rlimit, soft: u64, hard: u64) -> &mut Sandbox {
        self.rlimits.push((resource, soft, hard));
        self
    }

    /// Mounts a read-only `/sys` in the cell (none by default). With
    /// [`Network::None`] it is a fresh sysfs showing the cell's own network
    /// devices; with [`Network::Host`], a read-only view of the host's.
    /// `/sys/firmware` is masked either way.
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.sysfs(true);
    /// ```
    pub fn sysfs(&mut self, enabled: bool) -> &mut Sandbox {
        self.sysfs = enabled;
        self
    }

    /// Applies a Landlock ruleset to the job, on top of the mount namespace:
    /// beyond what the cell shows, the job may only use the trees the ruleset
    /// grants (needs Landlock in the kernel, 5.13+; an error at spawn otherwise).
    ///
    /// ```
    /// use jobcell::{Landlock, Sandbox};
    /// let mut sandbox = Sandbox::new();
    /// sandbox.landlock(Landlock::new().read_only("/").read_write("/tmp").read_write("/dev"));
    /// ```
    #[cfg(feature = "landlock")]
    pub fn landlock(&mut self, ruleset: crate::landlock::Landlock) -> &mut Sandbox {
        self.landlock = Some(ruleset);
        self
    }

    /// Whether jobs get cgroup usage accounting: CPU time, memory, IO and
    /// pids figures whatever their limits (on by default). Off, a job
    /// without cgroup limits gets no cgroup, and `usage()` is `None`; a job
    /// with limits joins only the controllers they need, so only those
    /// figures are measured (the rest read 0 or `None`; CPU time is always
    /// there on cgroup v2). Either starts faster: on cgroup v1 each
    /// controller hierarchy is a directory to make, join and remove. The
    /// job's rusage is reported either way.
    ///
    /// ```
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.accounting(false);
    /// ```
    pub fn accounting(&mut self, enabled: bool) -> &mut Sandbox {
        self.accounting = enabled;
        self
    }

    /// Bounds a cell's setup: from its clone to the job's `execve`, and,
    /// before the clone, a wait for the static part of its root to be built
    /// (default [`DEFAULT_SETUP_TIMEOUT`], 5 s; setup usually takes a few
    /// milliseconds). A cell that takes longer (a bind source on a hung
    /// network file system, a stuck helper) is killed, and
    /// [`spawn`](Sandbox::spawn) returns
    /// [`Error::SetupTimeout`](crate::Error::SetupTimeout) naming the stage
    /// it was stuck in. Zero is refused.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut sandbox = jobcell::Sandbox::new();
    /// sandbox.setup_timeout(Duration::from_secs(2));
    /// ```
    pub fn setup_timeout(&mut self, timeout: Duration) -> &mut Sandbox {
        self.setup_timeout = timeout;
        self
    }

    /// The limits set so far.
    pub fn get_limits(&self) -> &Limits {
        &self.limits
    }
}
