//! Turning a `Sandbox` and a `Command` into plain data for the cell: every
//! path as a C string, every mount as a prepared step, the program resolved
//! inside the cell. All input errors surface here, before anything is spawned.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::path::{join_lexical, CellPath};
use crate::sandbox::{Command, MountSpec, Network, Root, Sandbox};
use crate::spawn::cell::Op;
use crate::spawn::hostpath::Untrusted;
use crate::spawn::idmap::{self, IdPlan};
use crate::spawn::layout::{Layout, Node};
use crate::spawn::root::{self, RootPlan, Step};
use crate::spawn::{prep, skeleton, Deadline};
use crate::sys;

/// The PATH used to find programs when the job's environment has none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The cell as plain data, plus the host resources that must stay open until the clone.
pub(crate) struct Blueprint {
    pub ids: IdPlan,
    pub ops: Vec<Op>,
    /// A human description of each op, for error messages.
    /// For each op, the root step it comes from (`None`: the skeleton's
    /// attachment); descriptions are made only when one fails.
    pub op_steps: Vec<Option<usize>>,
    pub root_steps: Vec<Step>,
    /// Detached mount trees referenced by `Op::Attach`.
    pub trees: Vec<OwnedFd>,
    pub staging: CString,
    pub hostname: Vec<u8>,
    /// Bring loopback up inside (only when clone3 creates the network namespace).
    pub loopback: bool,
    pub ns_flags: u64,
    pub program: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub cwd: CString,
    /// The job's seccomp program, if it gets one, and its reporting variant (kill mode).
    pub seccomp: Option<Vec<libc::sock_filter>>,
    pub seccomp_report: Option<Vec<libc::sock_filter>>,
    /// The default filter, installed by init once the root is built, so the
    /// job inherits it ready-made (attaching a filter costs ~50 µs: the
    /// kernel runs it for every syscall number to fill its cache). Custom
    /// policies go to the job itself: they might deny what init still needs.
    pub init_seccomp: Option<Vec<libc::sock_filter>>,
    /// The job's rlimits.
    pub rlimits: Vec<(libc::c_int, libc::rlimit64)>,
    /// The Landlock ruleset to apply in the job.
    #[cfg(feature = "landlock")]
    pub landlock: Option<crate::landlock::Prepared>,
    /// The cell must create its network namespace itself (a fresh sysfs
    /// needs one owned by the cell's user namespace).
    pub own_netns: bool,
}

impl Blueprint {
    /// Whether the cell's init needs the host's mount table to start from:
    /// it binds a host path by name (rather than a tree the host opened, or
    /// a path in the new root), or mounts a sysfs (the kernel allows that
    /// in a user namespace only where the host's is visible).
    pub(crate) fn needs_host_mounts(&self) -> bool {
        let staging = self.staging.as_bytes();
        let under_staging =
            |s: &[u8]| s.starts_with(staging) && s.get(staging.len()).is_none_or(|&b| b == b'/');
        self.ops.iter().any(|op| match op {
            Op::Bind { source, .. } => !under_staging(source.as_bytes()),
            Op::Mount { fstype, .. } => *fstype == c"sysfs",
            _ => false,
        })
    }
}

/// Whether `open_tree` + `mount_setattr` work here (0 unknown, 1 yes, 2 no).
static MOUNT_API: AtomicU8 = AtomicU8::new(0);

/// Checks everything `build` checks, without touching the host (no mount
/// trees opened, no skeleton built): for queues that accept a job now and
/// start it later.
pub(crate) fn validate(sandbox: &Sandbox, command: &Command) -> Result<()> {
    let deadline = Deadline::after(sandbox.setup_timeout);
    build_inner(sandbox, Some(command), &deadline, None).map(drop)
}

/// Plans a spawn; waits for work done ahead (a root skeleton) no longer
/// than `deadline`. `demand`: whether the spawn wants work done ahead.
pub(crate) fn build(
    sandbox: &Sandbox,
    command: &Command,
    deadline: &Deadline,
    demand: prep::Demand,
) -> Result<Blueprint> {
    let (bp, _) = build_inner(sandbox, Some(command), deadline, Some(demand))?
        .expect("a real build returns a blueprint");
    Ok(bp)
}

/// Plans a cell made ahead (see `spawn::ahead`): everything but its
/// command, which the [`Planner`] plans when the cell is taken.
pub(crate) fn build_ahead(sandbox: &Sandbox, deadline: &Deadline) -> Result<(Blueprint, Planner)> {
    // A pool is for a program that spawns again: its cells use skeletons.
    let (bp, planner) = build_inner(sandbox, None, deadline, Some(prep::Demand::Warm))?
        .expect("a real build returns a blueprint");
    Ok((bp, planner.expect("a cell made ahead gets a planner")))
}

/// What a cell made ahead needs to plan the command it is given: its
/// root's layout (to find the program in), working directory, ids and
/// rlimits, as they were when the cell was made.
pub(crate) struct Planner {
    layout: Layout,
    cwd: CellPath,
    ids: IdPlan,
    rlimits: Vec<(libc::c_int, libc::rlimit64)>,
}

impl Planner {
    /// Plans `command` for the cell: every check a fresh spawn makes of a
    /// command, with the same errors.
    pub(crate) fn command(&self, sandbox: &Sandbox, command: &Command) -> Result<JobCommand> {
        CommandArgs::new(sandbox, command, &self.ids)?.resolve(
            &self.layout,
            &self.cwd,
            &self.rlimits,
        )
    }
}

/// The program, its arguments and environment, ready for `execve`.
#[derive(Default)]
pub(crate) struct JobCommand {
    pub program: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
}

/// A command's arguments and environment, checked; the program not yet found.
struct CommandArgs {
    argv: Vec<CString>,
    env: Vec<(OsString, OsString)>,
}

impl CommandArgs {
    fn new(sandbox: &Sandbox, command: &Command, ids: &IdPlan) -> Result<CommandArgs> {
        let program = command.program.as_bytes();
        if program.is_empty() {
            return Err(Error::EmptyProgram);
        }
        let mut argv = vec![cstring(program, || "the program".to_string())?];
        for (i, a) in command.args.iter().enumerate() {
            argv.push(cstring(a.as_bytes(), || format!("argument {}", i + 1))?);
        }
        let env = environment(sandbox, command, ids)?;
        Ok(CommandArgs { argv, env })
    }

    /// Finds the program in the cell's `layout` and checks the sizes execve takes.
    fn resolve(
        self,
        layout: &Layout,
        cwd: &CellPath,
        rlimits: &[(libc::c_int, libc::rlimit64)],
    ) -> Result<JobCommand> {
        let path_var = self
            .env
            .iter()
            .find(|(k, _)| k.as_bytes() == b"PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| DEFAULT_PATH.into());
        let program = self.argv[0].as_bytes();
        let resolved = resolve_program(layout, program, cwd, path_var.as_bytes())?;
        let envp = self
            .env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                cstring(&kv, || {
                    format!("environment variable {}", k.to_string_lossy())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let program = cstring(resolved.as_bytes(), || "the program path".into())?;
        check_exec_size(&program, &self.argv, &envp, rlimits)?;
        Ok(JobCommand {
            program,
            argv: self.argv,
            envp,
        })
    }
}

/// `demand`: `None` for a dry run (see [`validate`]).
fn build_inner(
    sandbox: &Sandbox,
    command: Option<&Command>,
    deadline: &Deadline,
    demand: Option<prep::Demand>,
) -> Result<Option<(Blueprint, Option<Planner>)>> {
    let dry = demand.is_none();
    sandbox.limits.validate()?;
    if sandbox.setup_timeout.is_zero() {
        return Err(Error::InvalidSetting {
            name: "setup_timeout",
            value: "0".into(),
            reason: "a cell needs some time to be set up".into(),
        });
    }
    let rlimits = crate::sandbox::effective_rlimits(&sandbox.rlimits)?;
    // The host paths looked up below: as they are now.
    super::hostwatch::refresh(demand == Some(prep::Demand::Warm));
    let ids = idmap::plan(sandbox.id_map, sandbox.uid, sandbox.gid)?;

    let hostname = sandbox.hostname.as_bytes().to_vec();
    if hostname.is_empty() || hostname.len() > 64 || hostname.contains(&0) {
        return Err(Error::InvalidSetting {
            name: "hostname",
            value: sandbox.hostname.to_string_lossy().into_owned(),
            reason: "must be 1 to 64 bytes without NUL".into(),
        });
    }
    let cwd = CellPath::new(&sandbox.current_dir)?;

    // A cell made ahead checks its commands when it takes them (see `Planner`).
    let args = command
        .map(|c| CommandArgs::new(sandbox, c, &ids))
        .transpose()?;

    // A dry run binds by path (checking sources exist) and builds no skeleton.
    let mount_api = mount_api_available() && !dry;
    let skeleton = ids.become_root && demand.is_some_and(prep::skeletons_usable);
    // A cold spawn on a root host builds its root inline (no skeleton yet);
    // the host clones the system paths so the spawner can still serve it.
    let system_trees = !skeleton
        && ids.become_root
        && demand.is_some()
        && prep::skeletons_usable(prep::Demand::Warm);
    let untrusted = Untrusted::for_range(ids.cell_range());
    let mut root = root::Builder::new(sandbox, mount_api, skeleton, untrusted)
        .system_trees(system_trees)
        .build(sandbox, &ids)?;

    match root.layout.resolve(&cwd, true) {
        Ok((_, Node::Dir)) => {}
        _ => {
            return Err(Error::CurrentDirNotFound {
                path: cwd.display(),
            })
        }
    }

    let job = match args {
        Some(args) => args.resolve(&root.layout, &cwd, &rlimits)?,
        None => JobCommand::default(),
    };

    #[cfg(feature = "seccomp")]
    let (seccomp, seccomp_report, init_seccomp) =
        match (sandbox.seccomp.compile()?, &sandbox.seccomp) {
            (Some(f), crate::seccomp::Seccomp::Default) => (None, None, Some(f.prog)),
            (Some(f), _) => (Some(f.prog), f.report, None),
            (None, _) => (None, None, None),
        };
    #[cfg(not(feature = "seccomp"))]
    let (seccomp, seccomp_report, init_seccomp) = (None, None, None);
    #[cfg(feature = "landlock")]
    let landlock = sandbox.landlock.as_ref().map(|l| l.prepare()).transpose()?;
    if dry {
        return Ok(None);
    }

    let staging = staging_dir(sandbox, mount_api)?;
    let (ops, op_steps, trees) = lower_root(
        &mut root,
        sandbox,
        &ids,
        mount_api,
        staging.as_os_str().as_bytes(),
        deadline,
    )?;

    let mut ns_flags = (libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC) as u64;
    if sandbox.network == Network::None {
        ns_flags |= libc::CLONE_NEWNET as u64;
    }

    let planner = match command {
        None => Some(Planner {
            layout: std::mem::take(&mut root.layout),
            cwd: cwd.clone(),
            ids: ids.clone(),
            rlimits: rlimits.clone(),
        }),
        Some(_) => None,
    };
    let bp = Blueprint {
        ids,
        ops,
        op_steps,
        root_steps: root.steps,
        trees,
        staging: CString::new(staging.as_os_str().as_bytes()).expect("static path"),
        hostname,
        loopback: sandbox.network == Network::None,
        ns_flags,
        program: job.program,
        argv: job.argv,
        envp: job.envp,
        cwd: cstring(cwd.as_bytes(), || "the working directory".into())?,
        seccomp,
        seccomp_report,
        init_seccomp,
        rlimits,
        own_netns: sandbox.sysfs,
        #[cfg(feature = "landlock")]
        landlock,
    };
    Ok(Some((bp, planner)))
}

fn cstring(bytes: &[u8], what: impl FnOnce() -> String) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::NulByte {
        what: what(),
        value: String::from_utf8_lossy(bytes).into_owned(),
    })
}

/// Refuses arguments and an environment the kernel's `execve` would refuse
/// (with E2BIG, in the cell, after all the setup): the limits of
/// `bprm_stack_limits` and `copy_strings` in fs/exec.c. `rlimits` are the
/// job's: its stack limit, if it sets one, is the one execve sees.
fn check_exec_size(
    program: &CString,
    argv: &[CString],
    envp: &[CString],
    rlimits: &[(libc::c_int, libc::rlimit64)],
) -> Result<()> {
    let stack = rlimits
        .iter()
        .find(|(r, _)| *r == libc::RLIMIT_STACK as libc::c_int)
        .map(|(_, l)| l.rlim_cur)
        .unwrap_or_else(|| {
            rustix::process::getrlimit(rustix::process::Resource::Stack)
                .current
                .unwrap_or(u64::MAX)
        });
    let (max_string, max_total) = exec_limits(stack, rustix::param::page_size());
    let too_large = |what: String, size: usize, limit: usize, reason| Error::ArgumentsTooLarge {
        what,
        size,
        limit,
        reason,
    };
    let one = "the longest string execve takes, MAX_ARG_STRLEN";
    for (i, a) in argv.iter().enumerate() {
        let size = a.as_bytes_with_nul().len();
        if size > max_string {
            let what = match i {
                0 => "the program name".to_string(),
                i => format!("argument {i}"),
            };
            return Err(too_large(what, size, max_string, one));
        }
    }
    for e in envp {
        let size = e.as_bytes_with_nul().len();
        if size > max_string {
            let name = e
                .as_bytes()
                .split(|&b| b == b'=')
                .next()
                .unwrap_or_default();
            let what = format!("environment variable {}", String::from_utf8_lossy(name));
            return Err(too_large(what, size, max_string, one));
        }
    }
    // The strings (the program's path is copied first), and a pointer for
    // each; execve counts argv as at least one.
    let strings: usize = std::iter::once(program)
        .chain(argv)
        .chain(envp)
        .map(|s| s.as_bytes_with_nul().len())
        .sum();
    let pointers = (argv.len().max(1) + envp.len()) * std::mem::size_of::<usize>();
    let total = strings + pointers;
    if total > max_total {
        return Err(too_large(
            "the arguments and environment".into(),
            total,
            max_total,
            "a quarter of the job's stack limit, at least 128 KiB and at most 6 MiB (ARG_MAX)",
        ));
    }
    Ok(())
}

/// The kernel's limits for one string and for everything execve copies,
/// under a stack limit of `stack` bytes with pages of `page` bytes.
fn exec_limits(stack: u64, page: usize) -> (usize, usize) {
    const ARG_MAX: u64 = 128 * 1024;
    const STK_LIM: u64 = 8 << 20;
    let total = (STK_LIM / 4 * 3).min(stack / 4).max(ARG_MAX);
    (32 * page, total as usize)
}

/// The job's environment: a small default (never the host's), then the
/// sandbox's settings, then the command's.
fn environment(
    sandbox: &Sandbox,
    command: &Command,
    ids: &IdPlan,
) -> Result<Vec<(OsString, OsString)>> {
    // In order; a variable set again moves to the end. An index by name
    // keeps thousands of variables linear.
    let mut env: Vec<Option<(OsString, OsString)>> = Vec::new();
    let mut index: std::collections::HashMap<OsString, usize> = Default::default();
    let mut set = |env: &mut Vec<Option<(OsString, OsString)>>, k: &OsStr, v: Option<&OsStr>| {
        if let Some(i) = index.remove(k) {
            env[i] = None;
        }
        if let Some(v) = v {
            index.insert(k.to_owned(), env.len());
            env.push(Some((k.to_owned(), v.to_owned())));
        }
    };
    if !sandbox.env_clear {
        let user = if ids.uid == 0 { "root" } else { "user" };
        let home = if ids.uid == 0 { "/root" } else { "/tmp" };
        for (k, v) in [
            ("PATH", DEFAULT_PATH),
            ("HOME", home),
            ("USER", user),
            ("LOGNAME", user),
            ("LANG", "C.UTF-8"),
        ] {
            set(&mut env, OsStr::new(k), Some(OsStr::new(v)));
        }
        set(&mut env, OsStr::new("HOSTNAME"), Some(&sandbox.hostname));
    }
    for (k, v) in sandbox.env.iter().chain(command.env.iter()) {
        let kb = k.as_bytes();
        if kb.is_empty() || kb.contains(&b'=') || kb.contains(&0) {
            return Err(Error::InvalidSetting {
                name: "environment variable name",
                value: k.to_string_lossy().into_owned(),
                reason: "must be non-empty, without '=' or NUL".into(),
            });
        }
        set(&mut env, k, v.as_deref());
    }
    Ok(env.into_iter().flatten().collect())
}

/// Finds the program inside the cell: an absolute or relative path as given, or
/// a bare name on `PATH`, like `execvp` would after `pivot_root`.
fn resolve_program(
    layout: &Layout,
    program: &[u8],
    cwd: &CellPath,
    path_var: &[u8],
) -> Result<CellPath> {
    let name = String::from_utf8_lossy(program).into_owned();
    let runnable = |p: &CellPath| {
        matches!(
            layout.resolve(p, true),
            Ok((_, Node::File { executable: true }))
        )
    };
    if program.contains(&b'/') {
        let p = if program.starts_with(b"/") {
            CellPath::new(OsStr::from_bytes(program))?
        } else {
            join_lexical(cwd, program)
        };
        if runnable(&p) {
            return Ok(p);
        }
        return Err(Error::ProgramNotFound {
            program: name,
            searched: format!("{} (missing or not executable)", p.display()),
        });
    }
    for dir in path_var.split(|&b| b == b':') {
        if !dir.starts_with(b"/") {
            continue; // relative PATH entries are ignored, as a careful execvp does
        }
        let Ok(d) = CellPath::new(OsStr::from_bytes(dir)) else {
            continue;
        };
        let p = d.join(program);
        if runnable(&p) {
            return Ok(p);
        }
    }
    Err(Error::ProgramNotFound {
        program: name,
        searched: format!("PATH={}", String::from_utf8_lossy(path_var)),
    })
}

/// The cell's operations, the root step each comes from, and the mount
/// trees they attach.
type Lowered = (Vec<Op>, Vec<Option<usize>>, Vec<OwnedFd>);

/// Turns the root plan into the cell's operations: on a root host with the
/// minimal root, a clone of the cached skeleton plus the per-cell steps;
/// otherwise every step.
fn lower_root(
    root: &mut RootPlan,
    sandbox: &Sandbox,
    ids: &IdPlan,
    mount_api: bool,
    staging: &[u8],
    deadline: &Deadline,
) -> Result<Lowered> {
    if root.skeleton {
        let (stat, cell) = root.split();
        let owner = ids.root_host_ids();
        let stat_steps: Vec<&Step> = stat.iter().map(|&i| &root.steps[i]).collect();
        let key = skeleton::key(&stat_steps, owner);
        let spec = || skeleton::Spec {
            steps: stat_steps.iter().map(|s| (*s).clone()).collect(),
            owner,
        };
        if let Some(skel) = prep::skeleton_clone(key, spec, deadline)? {
            let (cell_ops, cell_steps) = root::lower(&root.steps, &cell, &root.trees, staging)?;
            let mut ops = vec![Op::Attach {
                fd: skel.as_raw_fd(),
                target: CString::new(staging).expect("static path"),
            }];
            let mut origin = vec![None];
            ops.extend(cell_ops);
            origin.extend(cell_steps.into_iter().map(Some));
            let mut trees = std::mem::take(&mut root.trees);
            trees.push(skel);
            return Ok((ops, origin, trees));
        }
        // No skeleton to be had now (impossible here, failed lately, or
        // late): plan the root again, inline, with the system paths cloned
        // here so the spawner can still serve the cell.
        let untrusted = Untrusted::for_range(ids.cell_range());
        *root = root::Builder::new(sandbox, mount_api, false, untrusted)
            .system_trees(true)
            .build(sandbox, ids)?;
    }
    let all: Vec<usize> = (0..root.steps.len()).collect();
    let (ops, origin) = root::lower(&root.steps, &all, &root.trees, staging)?;
    Ok((
        ops,
        origin.into_iter().map(Some).collect(),
        std::mem::take(&mut root.trees),
    ))
}

/// The directories a new root may be assembled in, in order of preference.
/// The spawner's minimal root has every one (see `spawner.rs`).
pub(crate) const STAGING_DIRS: [&str; 7] =
    ["/tmp", "/mnt", "/run", "/var/tmp", "/media", "/srv", "/opt"];

/// Where the new root is assembled before `pivot_root`: an existing host
/// directory that holds none of the sources bound by path (those would be
/// hidden by the tmpfs mounted over it).
fn staging_dir(sandbox: &Sandbox, mount_api: bool) -> Result<PathBuf> {
    let mut sources: Vec<PathBuf> = [
        "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/dev",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    if !mount_api {
        for m in &sandbox.mounts {
            if let MountSpec::Bind { source, .. } = m {
                sources.push(std::fs::canonicalize(source).unwrap_or_else(|_| source.clone()));
            }
        }
        if let Root::Dir(d) = &sandbox.root {
            sources.push(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()));
        }
    }
    STAGING_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|c| {
            std::fs::symlink_metadata(c).is_ok_and(|m| m.is_dir())
                && !sources.iter().any(|s| s.starts_with(c))
        })
        .ok_or_else(|| Error::InvalidSetting {
            name: "bind sources",
            value: String::new(),
            reason: "no staging directory for the new root is free of bind sources".into(),
        })
}

/// Probes once whether the new mount API works (Linux 5.12+, not blocked by a container's seccomp).
pub(crate) fn mount_api_available() -> bool {
    match MOUNT_API.load(Ordering::Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    match sys::host::open_tree_clone(c"/", sys::MOUNT_ATTR_NOSUID) {
        Ok(tree) => {
            MOUNT_API.store(1, Ordering::Relaxed);
            // Closing the probe's tree unmounts it: not on this spawn's path.
            crate::spawn::prep::close_later(tree);
            true
        }
        // Missing, or refused (a container's seccomp profile): for good.
        Err(crate::Errno(
            libc::ENOSYS | libc::EPERM | libc::EACCES | libc::EINVAL | libc::EOPNOTSUPP,
        )) => {
            MOUNT_API.store(2, Ordering::Relaxed);
            false
        }
        // A moment's shortage (EMFILE, ENOMEM): the calls exist. Asked
        // again next time; this spawn meets the shortage itself.
        Err(_) => true,
    }
}

/// The highest capability number of the running kernel.
pub(crate) fn cap_last_cap() -> i32 {
    static CAP: OnceLock<i32> = OnceLock::new();
    *CAP.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_defaults_then_settings_in_order_last_wins() {
        let ids = IdPlan {
            uid_map: String::new(),
            gid_map: String::new(),
            deny_setgroups: true,
            become_root: false,
            uid: 1000,
            gid: 1000,
            host_uid: 1000,
            host_gid: 1000,
            has_root: false,
        };
        let mut sb = Sandbox::new();
        sb.env("A", "1").env("PATH", "/bin").env_remove("LANG");
        let mut cmd = Command::new("true");
        cmd.env("B", "2").env("A", "3").env_remove("HOME");
        let env = environment(&sb, &cmd, &ids).unwrap();
        let names: Vec<_> = env
            .iter()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect();
        assert_eq!(
            names,
            [
                "USER=user",
                "LOGNAME=user",
                "HOSTNAME=jobcell",
                "PATH=/bin",
                "B=2",
                "A=3"
            ]
        );
        // Thousands stay fast (this was quadratic).
        let mut many = Command::new("true");
        for i in 0..50_000 {
            many.env(format!("V{i}"), "x");
        }
        assert_eq!(environment(&sb, &many, &ids).unwrap().len(), 50_000 + 6);
    }

    #[test]
    fn exec_limits_follow_the_stack_limit() {
        let page = 4096;
        assert_eq!(exec_limits(8 << 20, page), (128 * 1024, 2 << 20));
        assert_eq!(exec_limits(u64::MAX, page), (128 * 1024, 6 << 20));
        assert_eq!(exec_limits(64 * 1024, page), (128 * 1024, 128 * 1024));
        assert_eq!(exec_limits(8 << 20, 65536).0, 2 << 20);
    }

    #[test]
    fn exec_sizes_are_checked_string_by_string_then_in_all() {
        let c = |s: &str| CString::new(s).unwrap();
        let stack = [(
            libc::RLIMIT_STACK as libc::c_int,
            libc::rlimit64 {
                rlim_cur: 8 << 20,
                rlim_max: 8 << 20,
            },
        )];
        let prog = c("/bin/true");
        let max = 32 * rustix::param::page_size();
        let fits = c(&"a".repeat(max - 1));
        let check = |argv: &[CString], envp: &[CString]| check_exec_size(&prog, argv, envp, &stack);
        assert!(check(&[c("true"), fits.clone()], &[]).is_ok());
        let long = c(&"a".repeat(max));
        let e = check(&[c("true"), long.clone()], &[]).unwrap_err();
        assert!(e.to_string().contains("argument 1"), "{e}");
        let env = c(&format!("BIG={}", "b".repeat(max)));
        let e = check(&[c("true")], &[env]).unwrap_err();
        assert!(e.to_string().contains("environment variable BIG"), "{e}");
        // 2 MiB in all under an 8 MiB stack: 15 strings fit, 16 do not.
        let many = |n| vec![fits.clone(); n];
        assert!(check(&many(15), &[]).is_ok());
        let e = check(&many(16), &[]).unwrap_err();
        assert!(
            matches!(e, Error::ArgumentsTooLarge { limit, .. } if limit == 2 << 20),
            "{e}"
        );
    }

    #[test]
    fn program_lookup_on_path() {
        let host = tempfile::tempdir().unwrap();
        let bin = host.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("tool"), "").unwrap();
        std::fs::write(bin.join("data"), "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut l = Layout::default();
        l.mount_empty(CellPath::root());
        l.add(CellPath::new("/usr").unwrap(), Node::Dir);
        l.mount_host(CellPath::new("/usr").unwrap(), host.path());
        let cwd = CellPath::root();
        let p = resolve_program(&l, b"tool", &cwd, b"relative:/nope:/usr/bin").unwrap();
        assert_eq!(p.as_bytes(), b"/usr/bin/tool");
        assert!(matches!(
            resolve_program(&l, b"data", &cwd, b"/usr/bin"),
            Err(Error::ProgramNotFound { .. })
        ));
        let p =
            resolve_program(&l, b"../usr/bin/tool", &CellPath::new("/usr").unwrap(), b"").unwrap();
        assert_eq!(p.as_bytes(), b"/usr/bin/tool");
    }
}
