//! `run`: run one command in a jobcell cell from the command line.
//!
//! ```text
//! cargo run --example run -- [options] [--] program args…
//! cargo run --example run -- --memory 256M --pids 64 --time 5s -- sh -c 'echo hi'
//! cargo run --example run -- --trusted -- make        # no default limits
//! cargo run --example run -- --meta result.json -- ./solution   # the verdict in a file
//! cargo run --example run -- --check            # is this host ready? (all sections)
//! cargo run --example run -- --check-cgroups    # one section
//! ```
//!
//! Jobs start from `Sandbox::untrusted()`: 512 MiB of memory, 256 processes,
//! 60 s of wall time, 16 MiB of output and 64 MiB per file unless the
//! options say otherwise; `--trusted` starts from `Sandbox::new()` (no
//! limits but those given).
//!
//! The job's output streams live. At the end, on a line of its own, the
//! `Outcome`'s one-line summary goes to stderr, or with `--json` the
//! outcome as one line of JSON; `--meta FILE` writes that JSON to a file.
//! The exit code follows the verdict (see [`EXIT_CODES`]). With `--check…`
//! it prints the host report (`--json` for JSON) and exits 1 if the report
//! has a problem.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use jobcell::host::{self, SectionKind, Status};
use jobcell::units::{parse_duration, parse_size};
use jobcell::{
    Command, Error, JobHandle, JobState, Limits, Network, Outcome, Rlimit, Sandbox, Stage, Stdin,
    Stream, DEFAULT_TMP_SIZE, UNLIMITED,
};

/// The exit codes, as `--help` shows them (and the README and tests check).
const EXIT_CODES: &str = "\
Exit codes (the same with --json and --meta):
  0        completed: the job exited with code 0
  N        failed: the job exited with code N
  128+N    failed: signal N killed the job (a crash, or a kill of its own)
  128+S    stopped: run got signal S (SIGINT, SIGTERM or SIGHUP), stopped the job,
           reported it, and died of S, as a shell expects: 130 for Ctrl-C, 143 for
           SIGTERM, 129 for SIGHUP (a shell loop around run stops too)
  121      bad system call: the seccomp filter killed the job (--seccomp kill)
  122      output limit: the job wrote more than --output
  123      out of memory: the kernel's OOM killer killed a process of the job
  124      time limit: the job ran past --time (wall clock) or --cpu-time
  125      the cell could not be set up (the error says why; --check says what the host lacks)
  126      the program was found but cannot be executed
  127      the program was not found in the cell
  2        invalid command line; the message names the argument
A job's own exit code may be any of these numbers too: where that matters,
read the verdict (\"state\") from --meta or --json.";

const BAD_SYSCALL: u8 = 121;
const OUTPUT_LIMIT: u8 = 122;
const OUT_OF_MEMORY: u8 = 123;
const TIME_LIMIT: u8 = 124;
const SETUP_FAILED: u8 = 125;
const CANNOT_EXECUTE: u8 = 126;
const NOT_FOUND: u8 = 127;
const BAD_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "run",
    about = "Run a command in an isolated, resource-limited jobcell cell",
    after_help = "Sizes take K, M, G, T (powers of 1024); a bare number is bytes. \
                  Durations need a unit: ms, s, m, h.\n\
                  Exit code: the job's own when it ran to its end (128+N for signal N), \
                  124 time limit, 123 out of memory, 122 output limit, 121 bad system call, \
                  125 setup failed, 126/127 program not executable/not found, 2 bad \
                  command line. --help says more.",
    after_long_help = EXIT_CODES,
)]
struct Args {
    /// Memory limit (e.g. 256M).
    #[arg(long, value_parser = size, help_heading = "Limits")]
    memory: Option<u64>,
    /// Swap allowed on top of --memory (default: none).
    #[arg(long, value_parser = size, help_heading = "Limits")]
    swap: Option<u64>,
    /// CPU limit in percent of one core (50 = half a core, 200 = two cores).
    #[arg(long, help_heading = "Limits")]
    cpu: Option<u32>,
    /// CPUs the job may run on (e.g. 0-1).
    #[arg(long, help_heading = "Limits")]
    cpus: Option<String>,
    /// Maximum number of the job's processes and threads (the cell's own
    /// init not counted): 1 lets the command run but not fork.
    #[arg(long, help_heading = "Limits")]
    pids: Option<u64>,
    /// Read bandwidth per device, bytes per second (e.g. 10M).
    #[arg(long = "io-read", value_parser = size, help_heading = "Limits")]
    io_read: Option<u64>,
    /// Write bandwidth per device, bytes per second (e.g. 10M).
    #[arg(long = "io-write", value_parser = size, help_heading = "Limits")]
    io_write: Option<u64>,
    /// Wall-clock time limit, with its unit (e.g. 5s, 300ms).
    #[arg(long, value_parser = duration, help_heading = "Limits")]
    time: Option<Duration>,
    /// CPU time limit, with its unit (e.g. 2s).
    #[arg(long = "cpu-time", value_parser = duration, help_heading = "Limits")]
    cpu_time: Option<Duration>,
    /// Output limit, stdout and stderr together (e.g. 1M).
    #[arg(long, value_parser = size, help_heading = "Limits")]
    output: Option<u64>,
    /// A per-process limit (setrlimit; repeatable): nofile=256, stack=64M,
    /// fsize=1G:2G, cpu=10 (seconds), nproc=unlimited. HARD defaults to SOFT.
    #[arg(long, value_name = "NAME=SOFT[:HARD]", value_parser = parse_rlimit, help_heading = "Limits")]
    rlimit: Vec<(Rlimit, u64, u64)>,
    /// Start without the default limits for untrusted code (512M memory, 256
    /// pids, 60s wall time, 16M output, 64M per file): only those given apply.
    #[arg(long, help_heading = "Limits")]
    trusted: bool,

    /// Bind a host path into the cell, writable; `:ro` for read-only; `:owned`
    /// for a workspace the job owns: the source's owner shows as the job, and
    /// what it creates stays the owner's on the host (an idmapped bind: Linux
    /// 5.12+, ext4/xfs/btrfs, tmpfs from 6.3; `--check` says) (repeatable).
    #[arg(long, value_name = "SRC:DST[:ro|:owned]", value_parser = parse_bind, help_heading = "Filesystem")]
    bind: Vec<Bind>,
    /// Mount a tmpfs (default size 128M; repeatable).
    #[arg(long, value_name = "DST[:SIZE]", value_parser = parse_tmpfs, help_heading = "Filesystem")]
    tmpfs: Vec<(PathBuf, u64)>,
    /// Create an empty directory in the cell (repeatable).
    #[arg(long, value_name = "DST", help_heading = "Filesystem")]
    dir: Vec<PathBuf>,
    /// Create a read-only file in the cell holding TEXT, or a copy of the
    /// host file FILE with `DST=@FILE` (repeatable).
    #[arg(long, value_name = "DST=TEXT|DST=@FILE", value_parser = parse_file, help_heading = "Filesystem")]
    file: Vec<(PathBuf, FileSource)>,
    /// Create a symbolic link LINK pointing to TARGET, as `ln -s TARGET LINK` (repeatable).
    #[arg(long, value_name = "TARGET:LINK", value_parser = parse_symlink, help_heading = "Filesystem")]
    symlink: Vec<(PathBuf, PathBuf)>,
    /// Use this host directory, read-only, as the root instead of the minimal root.
    #[arg(long, value_name = "DIR", help_heading = "Filesystem")]
    rootfs: Option<PathBuf>,
    /// Working directory inside the cell.
    #[arg(long, value_name = "DIR", help_heading = "Filesystem")]
    cwd: Option<PathBuf>,
    /// Restrict the job with a Landlock ruleset: it may use only the trees
    /// given, read-only unless `:rw` (repeatable; e.g. --landlock /:ro
    /// --landlock /tmp:rw).
    #[arg(long, value_name = "PATH[:ro|:rw]", value_parser = parse_landlock, help_heading = "Filesystem")]
    landlock: Vec<(PathBuf, bool)>,

    /// `host` to share the host's network (default `none`: loopback only).
    #[arg(long, value_name = "host|none", value_parser = parse_net, help_heading = "Cell")]
    net: Option<Network>,
    /// Hostname inside the cell (default jobcell).
    #[arg(long, help_heading = "Cell")]
    hostname: Option<String>,
    /// Environment variable (repeatable).
    #[arg(long, value_name = "K=V", value_parser = parse_env, help_heading = "Cell")]
    env: Vec<(String, String)>,
    /// Start from an empty environment: only the --env variables are set.
    #[arg(long, help_heading = "Cell")]
    env_clear: bool,
    /// User and group inside the cell (default 1000:1000).
    #[arg(long, value_name = "UID:GID", value_parser = parse_user, help_heading = "Cell")]
    user: Option<(u32, u32)>,
    /// Feed this host file to the job's stdin (default: empty).
    #[arg(long, value_name = "FILE", help_heading = "Cell")]
    stdin: Option<PathBuf>,
    /// What a system call the seccomp filter denies does: `errno` (the
    /// default: it fails with EPERM) or `kill` (the job dies, verdict bad
    /// system call, exit code 121).
    #[arg(long, value_name = "errno|kill", value_parser = parse_seccomp, help_heading = "Cell")]
    seccomp: Option<SeccompMode>,

    /// Print the result (or the host report) as JSON instead of the summary.
    #[arg(long, help_heading = "Output")]
    json: bool,
    /// Also write the result as JSON to FILE (created or truncated before
    /// the job starts; written when it ends, or when the cell cannot start).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    meta: Option<PathBuf>,

    /// Check the host: kernel, namespaces, cgroups, filesystem (alias --validate).
    #[arg(long, alias = "validate", help_heading = "Host checks")]
    check: bool,
    /// Check only user and other namespaces.
    #[arg(long, help_heading = "Host checks")]
    check_namespaces: bool,
    /// Check only cgroups.
    #[arg(long, help_heading = "Host checks")]
    check_cgroups: bool,
    /// Check only mounts, procfs and pivot_root.
    #[arg(long, help_heading = "Host checks")]
    check_filesystem: bool,

    /// The program and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM",
        required_unless_present_any = ["check", "check_namespaces", "check_cgroups", "check_filesystem"]
    )]
    command: Vec<String>,
}

/// A `--bind`: host source, cell target, writable, the job's own (idmapped).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Bind {
    src: PathBuf,
    dst: PathBuf,
    writable: bool,
    owned: bool,
}

/// Where a `--file`'s contents come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FileSource {
    Text(String),
    Host(PathBuf),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SeccompMode {
    Errno,
    Kill,
}

/// A command-line argument the library refused: exit 2, naming it.
#[derive(Debug, PartialEq, Eq)]
struct BadArg {
    arg: String,
    message: String,
}

impl BadArg {
    fn new(arg: impl Into<String>, message: impl Into<String>) -> BadArg {
        BadArg {
            arg: arg.into(),
            message: message.into(),
        }
    }
}

fn size(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

/// A duration with its unit: a bare `5` is refused, since some tools read
/// it as seconds and others as milliseconds.
fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "{s:?} has no unit: write {t}s for seconds or {t}ms for milliseconds"
        ));
    }
    parse_duration(s).map_err(|e| e.to_string())
}

/// `SRC:DST`, `SRC:DST:ro`, `SRC:DST:rw` or `SRC:DST:owned`. Paths cannot contain `:`.
fn parse_bind(s: &str) -> Result<Bind, String> {
    let (rest, writable, owned) = match s.rsplit_once(':') {
        Some((rest, "ro")) => (rest, false, false),
        Some((rest, "rw")) => (rest, true, false),
        Some((rest, "owned")) => (rest, true, true),
        _ => (s, true, false),
    };
    match rest.split_once(':') {
        Some((src, dst)) if !src.is_empty() && !dst.is_empty() && !dst.contains(':') => Ok(Bind {
            src: src.into(),
            dst: dst.into(),
            writable,
            owned,
        }),
        _ => Err(format!(
            "{s:?}: expected SRC:DST, SRC:DST:ro or SRC:DST:owned (paths without ':')"
        )),
    }
}

/// `DST` or `DST:SIZE`.
fn parse_tmpfs(s: &str) -> Result<(PathBuf, u64), String> {
    let (dst, size) = match s.split_once(':') {
        Some((dst, sz)) => (dst, parse_size(sz).map_err(|e| format!("size {e}"))?),
        None => (s, DEFAULT_TMP_SIZE),
    };
    if dst.is_empty() {
        return Err(format!("{s:?}: expected DST or DST:SIZE"));
    }
    if size == 0 {
        return Err(format!("{s:?}: a tmpfs needs a size above 0"));
    }
    Ok((dst.into(), size))
}

/// `DST=TEXT` or `DST=@FILE`.
fn parse_file(s: &str) -> Result<(PathBuf, FileSource), String> {
    match s.split_once('=') {
        Some((dst, text)) if !dst.is_empty() => {
            let source = match text.strip_prefix('@') {
                Some("") => return Err(format!("{s:?}: expected a host file after '@'")),
                Some(file) => FileSource::Host(file.into()),
                None => FileSource::Text(text.to_owned()),
            };
            Ok((dst.into(), source))
        }
        _ => Err(format!("{s:?}: expected DST=TEXT or DST=@FILE")),
    }
}

/// `TARGET:LINK`.
fn parse_symlink(s: &str) -> Result<(PathBuf, PathBuf), String> {
    match s.split_once(':') {
        Some((target, link)) if !target.is_empty() && !link.is_empty() && !link.contains(':') => {
            Ok((target.into(), link.into()))
        }
        _ => Err(format!("{s:?}: expected TARGET:LINK (paths without ':')")),
    }
}

/// `PATH`, `PATH:ro` or `PATH:rw`; true for read-write.
fn parse_landlock(s: &str) -> Result<(PathBuf, bool), String> {
    let (path, rw) = match s.rsplit_once(':') {
        Some((p, "ro")) => (p, false),
        Some((p, "rw")) => (p, true),
        Some(_) => return Err(format!("{s:?}: expected PATH, PATH:ro or PATH:rw")),
        None => (s, false),
    };
    if path.is_empty() {
        return Err(format!("{s:?}: expected PATH, PATH:ro or PATH:rw"));
    }
    Ok((path.into(), rw))
}

/// `errno` or `kill`.
fn parse_seccomp(s: &str) -> Result<SeccompMode, String> {
    match s {
        "errno" => Ok(SeccompMode::Errno),
        "kill" => Ok(SeccompMode::Kill),
        _ => Err(format!("{s:?}: expected errno or kill")),
    }
}

/// The resources `--rlimit` takes, by the names `ulimit` and `prlimit` use.
const RLIMITS: [(&str, Rlimit); 16] = [
    ("as", Rlimit::AddressSpace),
    ("core", Rlimit::Core),
    ("cpu", Rlimit::Cpu),
    ("data", Rlimit::Data),
    ("fsize", Rlimit::FileSize),
    ("locks", Rlimit::Locks),
    ("memlock", Rlimit::MemoryLock),
    ("msgqueue", Rlimit::MessageQueue),
    ("nice", Rlimit::Nice),
    ("nofile", Rlimit::OpenFiles),
    ("nproc", Rlimit::Processes),
    ("rss", Rlimit::Rss),
    ("rtprio", Rlimit::RealtimePriority),
    ("rttime", Rlimit::RealtimeTime),
    ("sigpending", Rlimit::PendingSignals),
    ("stack", Rlimit::Stack),
];

/// `NAME=SOFT[:HARD]`: NAME as `prlimit` spells it (`nofile`, or
/// `RLIMIT_NOFILE`), values as sizes (`64M`) or `unlimited`.
fn parse_rlimit(s: &str) -> Result<(Rlimit, u64, u64), String> {
    let names = || {
        RLIMITS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (name, values) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=SOFT[:HARD], e.g. nofile=256"))?;
    let key = name.to_ascii_lowercase();
    let key = key.strip_prefix("rlimit_").unwrap_or(&key);
    let resource = RLIMITS
        .iter()
        .find(|(n, _)| *n == key)
        .map(|(_, r)| *r)
        .ok_or_else(|| format!("{name:?}: unknown resource (one of {})", names()))?;
    let value = |v: &str| match v.to_ascii_lowercase().as_str() {
        "unlimited" | "infinity" => Ok(UNLIMITED),
        _ => parse_size(v).map_err(|e| e.to_string()),
    };
    let (soft, hard) = match values.split_once(':') {
        Some((soft, hard)) => (value(soft)?, value(hard)?),
        None => {
            let v = value(values)?;
            (v, v)
        }
    };
    if soft > hard {
        return Err(format!("{s:?}: the soft limit exceeds the hard limit"));
    }
    Ok((resource, soft, hard))
}

/// `UID:GID`, both decimal.
fn parse_user(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?}: expected UID:GID, e.g. 1000:1000");
    let (u, g) = s.split_once(':').ok_or_else(bad)?;
    let num = |t: &str| {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<u32>().map_err(|_| bad())
    };
    Ok((num(u)?, num(g)?))
}

/// `K=V` (the value may contain `=`).
fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected K=V")),
    }
}

fn parse_net(s: &str) -> Result<Network, String> {
    match s {
        "host" => Ok(Network::Host),
        "none" => Ok(Network::None),
        _ => Err(format!("{s:?}: expected host or none")),
    }
}

/// A change to the cell's file tree, in command-line order: a `--file`
/// under a `--tmpfs` must come after it, whatever the options' kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
enum TreeOp {
    Bind(Bind),
    Tmpfs(PathBuf, u64),
    Dir(PathBuf),
    File(PathBuf, FileSource),
    Symlink(PathBuf, PathBuf),
}

/// The tree options in the order they were given (`matches` from the same
/// command line as `args`; without it, grouped by kind).
fn tree_ops(args: &Args, matches: Option<&ArgMatches>) -> Vec<TreeOp> {
    let at = |id: &str, n: usize| -> Vec<usize> {
        match matches.and_then(|m| m.indices_of(id)) {
            Some(i) => i.collect(),
            None => (0..n).collect(),
        }
    };
    let mut ops: Vec<(usize, TreeOp)> = Vec::new();
    let mut add = |id: &str, items: Vec<TreeOp>| {
        let base = ops.len();
        let idx = at(id, items.len());
        for (k, op) in items.into_iter().enumerate() {
            ops.push((idx.get(k).copied().unwrap_or(base + k), op));
        }
    };
    add(
        "bind",
        args.bind.iter().cloned().map(TreeOp::Bind).collect(),
    );
    add(
        "tmpfs",
        args.tmpfs
            .iter()
            .map(|(d, s)| TreeOp::Tmpfs(d.clone(), *s))
            .collect(),
    );
    add("dir", args.dir.iter().cloned().map(TreeOp::Dir).collect());
    add(
        "file",
        args.file
            .iter()
            .map(|(d, f)| TreeOp::File(d.clone(), f.clone()))
            .collect(),
    );
    add(
        "symlink",
        args.symlink
            .iter()
            .map(|(t, l)| TreeOp::Symlink(t.clone(), l.clone()))
            .collect(),
    );
    ops.sort_by_key(|(i, _)| *i);
    ops.into_iter().map(|(_, op)| op).collect()
}

/// The limits the options ask for, on top of the starting sandbox's.
fn limits(args: &Args, base: &Limits) -> Limits {
    Limits {
        memory: args.memory.or(base.memory),
        memory_swap: args.swap,
        cpu_percent: args.cpu,
        cpus: args.cpus.clone(),
        pids: args.pids.or(base.pids),
        io_read_bps: args.io_read,
        io_write_bps: args.io_write,
        wall_time: args.time.or(base.wall_time),
        cpu_time: args.cpu_time,
        output_bytes: args.output.or(base.output_bytes),
        ..base.clone()
    }
}

/// The option a `Limits` field comes from.
fn limit_flag(field: &str) -> &'static str {
    match field {
        "memory" => "--memory",
        "memory_swap" => "--swap",
        "cpu_percent" => "--cpu",
        "cpus" => "--cpus",
        "pids" => "--pids",
        "io_read_bps" => "--io-read",
        "io_write_bps" => "--io-write",
        "wall_time" => "--time",
        "cpu_time" => "--cpu-time",
        "output_bytes" => "--output",
        _ => "a limit",
    }
}

fn build(args: &Args, matches: Option<&ArgMatches>) -> Result<(Sandbox, Command), BadArg> {
    // Code from the command line is untrusted unless the user says otherwise.
    let mut sb = if args.trusted {
        Sandbox::new()
    } else {
        Sandbox::untrusted()
    };
    let limits = limits(args, sb.get_limits());
    // Refused here, before anything starts, with the option named.
    if let Err(Error::InvalidLimit {
        name,
        value,
        reason,
    }) = limits.validate()
    {
        let flag = limit_flag(name);
        let bare = |v: Option<u64>| v.is_some_and(|v| v.to_string() == value);
        let hint = match flag {
            "--memory" if bare(args.memory) => format!(" (a bare number is bytes: {value}M?)"),
            "--swap" if bare(args.swap) => format!(" (a bare number is bytes: {value}M?)"),
            _ => String::new(),
        };
        return Err(BadArg::new(flag, format!("{value}: {reason}{hint}")));
    }
    if let Some(root) = &args.rootfs {
        sb.rootfs(root);
    }
    for op in tree_ops(args, matches) {
        match op {
            TreeOp::Bind(b) if b.owned => sb.bind_rw_owned(&b.src, &b.dst),
            TreeOp::Bind(b) if b.writable => sb.bind_rw(&b.src, &b.dst),
            TreeOp::Bind(b) => sb.bind_ro(&b.src, &b.dst),
            TreeOp::Tmpfs(dst, size) => sb.tmpfs(dst, size),
            TreeOp::Dir(dst) => sb.dir(dst),
            TreeOp::File(dst, FileSource::Text(t)) => sb.file(dst, t),
            TreeOp::File(dst, FileSource::Host(src)) => {
                let data = std::fs::read(&src)
                    .map_err(|e| BadArg::new("--file", format!("{}: {e}", src.display())))?;
                sb.file(dst, data)
            }
            TreeOp::Symlink(target, link) => sb.symlink(target, link),
        };
    }
    if let Some(net) = args.net {
        sb.network(net);
    }
    if let Some(h) = &args.hostname {
        sb.hostname(h);
    }
    if args.env_clear {
        sb.env_clear();
    }
    for (k, v) in &args.env {
        sb.env(k, v);
    }
    if let Some((uid, gid)) = args.user {
        sb.user(uid, gid);
    }
    if let Some(cwd) = &args.cwd {
        sb.current_dir(cwd);
    }
    for &(r, soft, hard) in &args.rlimit {
        sb.rlimit(r, soft, hard);
    }
    if args.seccomp == Some(SeccompMode::Kill) {
        #[cfg(feature = "seccomp")]
        sb.seccomp(jobcell::Seccomp::Custom(
            jobcell::SeccompPolicy::new().action(jobcell::SeccompAction::KillProcess),
        ));
        #[cfg(not(feature = "seccomp"))]
        return Err(BadArg::new(
            "--seccomp",
            "this build has no seccomp filter (jobcell's seccomp feature is off)",
        ));
    }
    if !args.landlock.is_empty() {
        #[cfg(feature = "landlock")]
        sb.landlock(
            args.landlock
                .iter()
                .fold(jobcell::Landlock::new(), |l, (p, rw)| match rw {
                    true => l.read_write(p),
                    false => l.read_only(p),
                }),
        );
        #[cfg(not(feature = "landlock"))]
        return Err(BadArg::new(
            "--landlock",
            "this build has no Landlock support (jobcell's landlock feature is off)",
        ));
    }
    sb.limits(limits);
    let mut cmd = Command::new(&args.command[0]);
    cmd.args(&args.command[1..]);
    if let Some(f) = &args.stdin {
        cmd.stdin(Stdin::File(f.clone()));
    }
    Ok((sb, cmd))
}

/// How a spawn error ends `run`: a bad argument (named), a program that
/// is missing or cannot run, or a cell that could not be set up.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    BadArg(BadArg),
    Exit(u8),
}

fn classify(e: &Error, args: &Args) -> Failure {
    let bad = |arg: &str| Failure::BadArg(BadArg::new(arg, e.to_string()));
    // The option that holds a cell path, for errors that name only the path.
    let holder = |path: &str| -> String {
        let p = Path::new(path);
        let is = |q: &Path| q == p || p.starts_with(q) || q.starts_with(p);
        if args.bind.iter().any(|b| is(&b.dst)) {
            "--bind"
        } else if args.tmpfs.iter().any(|(d, _)| is(d)) {
            "--tmpfs"
        } else if args.dir.iter().any(|d| is(d)) {
            "--dir"
        } else if args.file.iter().any(|(d, _)| is(d)) {
            "--file"
        } else if args.symlink.iter().any(|(t, l)| is(l) || is(t)) {
            "--symlink"
        } else if args.landlock.iter().any(|(d, _)| is(d)) {
            "--landlock"
        } else if args.cwd.as_deref().is_some_and(is) {
            "--cwd"
        } else {
            "PROGRAM"
        }
        .to_string()
    };
    match e {
        Error::InvalidLimit { name, .. } => bad(limit_flag(name)),
        Error::InvalidSetting { name, .. } => bad(match *name {
            "hostname" => "--hostname",
            "environment variable name" => "--env",
            "bind sources" => "--bind",
            "tmpfs size" | "tmpfs inodes" => "--tmpfs",
            "seccomp" => "--seccomp",
            n if n.starts_with("RLIMIT_") => "--rlimit",
            _ => "the command line",
        }),
        Error::InvalidPath { path, .. } => bad(&holder(path)),
        Error::CurrentDirNotFound { .. } => bad("--cwd"),
        Error::IdOutOfRange { .. } | Error::IdMapping { .. } => bad("--user"),
        Error::HostPath { what, path, .. } | Error::UntrustedSymlink { what, path, .. } => {
            bad(match *what {
                "rootfs" => "--rootfs",
                w if w.contains("stdin") => "--stdin",
                _ if args.stdin.as_deref() == Some(path.as_path()) => "--stdin",
                _ => "--bind",
            })
        }
        Error::NulByte { what, .. } | Error::ArgumentsTooLarge { what, .. } => {
            bad(if what.contains("environment") {
                "--env"
            } else if what.contains("symlink") || what.contains("path") {
                "a path"
            } else {
                "PROGRAM"
            })
        }
        Error::EmptyProgram => bad("PROGRAM"),
        Error::ProgramNotFound { .. } => Failure::Exit(NOT_FOUND),
        Error::Setup {
            stage: Stage::Exec,
            errno,
            ..
        } => match errno.0 {
            // The host ran short, not the program.
            libc::ENOMEM | libc::EAGAIN | libc::EMFILE | libc::ENFILE => {
                Failure::Exit(SETUP_FAILED)
            }
            // Found, but execve refused it: not a program (ENOEXEC), a
            // missing interpreter (ENOENT), a noexec mount (EACCES), …
            _ => Failure::Exit(CANNOT_EXECUTE),
        },
        _ => Failure::Exit(SETUP_FAILED),
    }
}

/// The exit code of a verdict; `stop` is the signal that made run stop the job.
fn exit_code(o: &Outcome, stop: Option<i32>) -> u8 {
    match &o.state {
        JobState::TimedOut(_) => TIME_LIMIT,
        JobState::OutOfMemory => OUT_OF_MEMORY,
        JobState::OutputLimitExceeded => OUTPUT_LIMIT,
        JobState::BadSyscall { .. } => BAD_SYSCALL,
        JobState::Stopped => 128 + stop.unwrap_or(libc::SIGTERM) as u8,
        _ => match o.exit {
            Some(e) => e.shell_code().clamp(0, 255) as u8,
            None => SETUP_FAILED,
        },
    }
}

/// Which `--check…` section a host-caused error points to.
fn check_for(e: &Error) -> &'static str {
    match e {
        Error::Cgroup { .. } | Error::ControllerUnavailable { .. } => "--check-cgroups",
        Error::Spawn { op, .. } if op.starts_with("clone") || op.contains("_map") => {
            "--check-namespaces"
        }
        Error::OwnedBind { .. } => "--check-filesystem",
        Error::Setup { .. } | Error::SetupDied { .. } => "--check",
        _ => "--check",
    }
}

/// Remembers what was last written to stderr (and to stdout, when both
/// are the same file), so that run's own line starts on a line of its own.
struct Tail {
    /// stdout and stderr are the same file (a terminal, `2>&1`).
    shared: bool,
    last: Option<u8>,
}

impl Tail {
    fn new() -> Tail {
        let id = |fd: i32| {
            // SAFETY: fstat writes into the zeroed stat we own.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: as above; fd is one of the standard descriptors.
            (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
        };
        let (out, err) = (id(1), id(2));
        Tail {
            shared: out.is_some() && out == err,
            last: None,
        }
    }

    fn wrote(&mut self, stream: Stream, data: &[u8]) {
        if stream == Stream::Stderr || self.shared {
            if let Some(&b) = data.last() {
                self.last = Some(b);
            }
        }
    }

    /// What goes before run's line: a newline unless the line is fresh.
    fn separator(&self) -> &'static str {
        match self.last {
            Some(b) if b != b'\n' => "\n",
            _ => "",
        }
    }
}

/// What `--json` prints and `--meta` writes: the outcome, and run's exit code.
#[derive(serde::Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    outcome: &'a Outcome,
    run_exit_code: u8,
}

/// The same for a job that never started: the shape of a failed outcome.
#[derive(serde::Serialize)]
struct NeverRan {
    state: &'static str,
    reason: String,
    exit: Option<()>,
    wall_time_ms: u64,
    oom_killed: bool,
    pids_limited: bool,
    run_exit_code: u8,
}

fn result_json(o: &Outcome, code: u8) -> String {
    let r = Report {
        outcome: o,
        run_exit_code: code,
    };
    serde_json::to_string(&r).expect("an outcome serializes")
}

fn failure_json(e: &Error, code: u8, took: Duration) -> String {
    let r = NeverRan {
        state: "failed",
        reason: e.to_string(),
        exit: None,
        wall_time_ms: took.as_millis() as u64,
        oom_killed: false,
        pids_limited: false,
        run_exit_code: code,
    };
    serde_json::to_string(&r).expect("a failure serializes")
}

/// Writes `--meta` (if asked): complete, or an error on stderr and 125.
fn write_meta(args: &Args, v: &str, code: u8) -> u8 {
    let Some(path) = &args.meta else { return code };
    let text = format!("{v}\n");
    match std::fs::write(path, text) {
        Ok(()) => code,
        Err(e) => {
            eprintln!("{}: writing --meta {}: {e}", prog(), path.display());
            SETUP_FAILED
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP: taken by a thread of run's own (blocked
/// everywhere else), to stop the job and report it before run dies of them.
const STOP_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset only write to it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in STOP_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Who stops the job: the job, once there is one, and the signal that came.
#[derive(Default)]
struct Stopper {
    job: Option<Arc<JobHandle>>,
    signal: Option<i32>,
}

/// Blocks the stop signals in this thread (and every thread it starts
/// after, jobcell's included; cells reset their mask) and starts the
/// thread that waits for them.
fn catch_stop_signals() -> Arc<Mutex<Stopper>> {
    let set = stop_signals();
    // SAFETY: set is a valid sigset; no old mask is asked for.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    let stopper = Arc::new(Mutex::new(Stopper::default()));
    let s = stopper.clone();
    std::thread::spawn(move || loop {
        let mut sig = 0;
        // SAFETY: set is valid and sig is a writable int.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        let mut g = s.lock().unwrap();
        g.signal.get_or_insert(sig);
        if let Some(job) = &g.job {
            let _ = job.kill();
        }
    });
    stopper
}

/// Dies of `sig`, as a program interrupted by it should (a shell loop
/// around run stops then too).
fn die_of(sig: i32) -> ExitCode {
    let _ = std::io::stderr().flush();
    // SAFETY: plain signal-disposition and mask calls on this thread.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    ExitCode::from(128 + sig as u8)
}

fn check(args: &Args) -> ExitCode {
    let kinds: Vec<SectionKind> = if args.check {
        SectionKind::ALL.to_vec()
    } else {
        [
            (args.check_namespaces, SectionKind::Namespaces),
            (args.check_cgroups, SectionKind::Cgroups),
            (args.check_filesystem, SectionKind::Filesystem),
        ]
        .into_iter()
        .filter_map(|(on, k)| on.then_some(k))
        .collect()
    };
    let report = host::check_sections(&kinds);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        print!("{report}");
    }
    ExitCode::from(u8::from(report.status() == Status::Problem))
}

/// Prints a bad argument as clap prints its own, and exits 2.
fn usage_error(bad: &BadArg) -> ! {
    Args::command()
        .error(
            clap::error::ErrorKind::ValueValidation,
            format!("invalid value for '{}': {}", bad.arg, bad.message),
        )
        .exit()
}

/// The program as invoked (`./target/debug/examples/run`, `run`), for
/// commands the messages suggest.
fn argv0() -> String {
    std::env::args_os()
        .next()
        .map_or_else(|| "run".into(), |a| a.to_string_lossy().into_owned())
}

/// Its name, for the prefix of its messages.
fn prog() -> String {
    let a = argv0();
    Path::new(&a)
        .file_name()
        .map_or(a.clone(), |n| n.to_string_lossy().into_owned())
}

fn main() -> ExitCode {
    let argv0 = argv0();
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if args.check || args.check_namespaces || args.check_cgroups || args.check_filesystem {
        return check(&args);
    }
    let (sandbox, command) = match build(&args, Some(&matches)) {
        Ok(built) => built,
        Err(bad) => usage_error(&bad),
    };
    if let Some(meta) = &args.meta {
        // Before the job: a path that cannot be written is a bad argument,
        // not a surprise after a long run.
        if let Err(e) = std::fs::File::create(meta) {
            usage_error(&BadArg::new("--meta", format!("{}: {e}", meta.display())));
        }
    }
    let stopper = catch_stop_signals();
    let started = Instant::now();
    let job = match sandbox.spawn(&command) {
        Ok(j) => Arc::new(j),
        Err(e) => {
            let code = match classify(&e, &args) {
                Failure::BadArg(bad) => {
                    let _ = write_meta(
                        &args,
                        &failure_json(&e, BAD_USAGE, started.elapsed()),
                        BAD_USAGE,
                    );
                    usage_error(&bad)
                }
                Failure::Exit(code) => code,
            };
            eprintln!("{}: {e}", prog());
            if code == SETUP_FAILED {
                eprintln!(
                    "{}: `{argv0} {}` tells whether this host can run cells, and how to fix it",
                    prog(),
                    check_for(&e)
                );
            }
            let v = failure_json(&e, code, started.elapsed());
            if args.json {
                eprintln!("{v}");
            }
            return ExitCode::from(write_meta(&args, &v, code));
        }
    };
    {
        let mut g = stopper.lock().unwrap();
        g.job = Some(job.clone());
        if g.signal.is_some() {
            let _ = job.kill();
        }
    }
    let mut tail = Tail::new();
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    for chunk in job.logs() {
        let _ = match chunk.stream {
            Stream::Stdout => out.write_all(&chunk.data).and_then(|_| out.flush()),
            Stream::Stderr => err.write_all(&chunk.data),
        };
        tail.wrote(chunk.stream, &chunk.data);
    }
    let o = match job.wait() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{}{}: {e}", tail.separator(), prog());
            return ExitCode::from(SETUP_FAILED);
        }
    };
    let signal = stopper.lock().unwrap().signal;
    let code = exit_code(&o, signal);
    let v = result_json(&o, code);
    let sep = tail.separator();
    if args.json {
        eprintln!("{sep}{v}");
    } else {
        eprintln!("{sep}--- jobcell: {o}");
    }
    let code = write_meta(&args, &v, code);
    match signal {
        Some(sig) if o.state == JobState::Stopped => die_of(sig),
        _ => ExitCode::from(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn binds() {
        let b = parse_bind("/opt/tests:/tests:ro").unwrap();
        assert_eq!(
            b,
            Bind {
                src: "/opt/tests".into(),
                dst: "/tests".into(),
                writable: false,
                owned: false,
            }
        );
        assert!(parse_bind("/a:/b").unwrap().writable);
        assert!(parse_bind("/a:/b:rw").unwrap().writable);
        let owned = parse_bind("/a:/b:owned").unwrap();
        assert!(owned.writable && owned.owned, "{owned:?}");
        assert!(!parse_bind("/a:/b").unwrap().owned);
        for bad in ["/a", "/a:", ":/b", "/a:/b:ro:x", "/a:/b:c", ""] {
            assert!(parse_bind(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tmpfs_users_env_net() {
        assert_eq!(
            parse_tmpfs("/scratch").unwrap(),
            ("/scratch".into(), DEFAULT_TMP_SIZE)
        );
        assert_eq!(parse_tmpfs("/s:16M").unwrap(), ("/s".into(), 16 << 20));
        assert!(parse_tmpfs("/s:12X")
            .unwrap_err()
            .contains("unknown size unit"));
        assert!(parse_tmpfs("/s:0").is_err());
        assert!(parse_tmpfs(":1M").is_err());
        assert_eq!(parse_user("0:0").unwrap(), (0, 0));
        for bad in ["1000", "a:b", "1:-1", "+1:1", "1:4294967296", ":"] {
            assert!(parse_user(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert!(parse_env("=x").is_err() && parse_env("X").is_err());
        assert_eq!(parse_net("host").unwrap(), Network::Host);
        assert!(parse_net("bridge").is_err());
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(duration("300ms").unwrap(), Duration::from_millis(300));
        for bare in ["5", "1.5", " 5 "] {
            let e = duration(bare).unwrap_err();
            assert!(e.contains("has no unit") && e.contains("ms"), "{e}");
        }
        assert!(Args::try_parse_from(["run", "--time", "5", "true"]).is_err());
        assert!(Args::try_parse_from(["run", "--cpu-time", "2", "true"]).is_err());
    }

    #[test]
    fn files_symlinks_landlock_seccomp_rlimits() {
        assert_eq!(
            parse_file("/in.txt=1 2=3").unwrap(),
            ("/in.txt".into(), FileSource::Text("1 2=3".into()))
        );
        assert_eq!(
            parse_file("/in.txt=@data/in.txt").unwrap(),
            ("/in.txt".into(), FileSource::Host("data/in.txt".into()))
        );
        assert_eq!(
            parse_file("/empty=").unwrap(),
            ("/empty".into(), FileSource::Text(String::new()))
        );
        for bad in ["/x", "=text", "/x=@"] {
            assert!(parse_file(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_symlink("/usr/bin/python3:/usr/local/bin/python").unwrap(),
            ("/usr/bin/python3".into(), "/usr/local/bin/python".into())
        );
        for bad in ["/a", ":/b", "/a:", "/a:/b:/c"] {
            assert!(parse_symlink(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_landlock("/usr").unwrap(), ("/usr".into(), false));
        assert_eq!(parse_landlock("/usr:ro").unwrap(), ("/usr".into(), false));
        assert_eq!(parse_landlock("/tmp:rw").unwrap(), ("/tmp".into(), true));
        assert!(parse_landlock("/tmp:rx").is_err() && parse_landlock(":rw").is_err());
        assert_eq!(parse_seccomp("kill").unwrap(), SeccompMode::Kill);
        assert_eq!(parse_seccomp("errno").unwrap(), SeccompMode::Errno);
        assert!(parse_seccomp("allow").is_err());
        assert_eq!(
            parse_rlimit("nofile=256").unwrap(),
            (Rlimit::OpenFiles, 256, 256)
        );
        assert_eq!(
            parse_rlimit("RLIMIT_STACK=8M:unlimited").unwrap(),
            (Rlimit::Stack, 8 << 20, UNLIMITED)
        );
        assert_eq!(parse_rlimit("cpu=10").unwrap(), (Rlimit::Cpu, 10, 10));
        let e = parse_rlimit("files=1").unwrap_err();
        assert!(e.contains("nofile"), "lists the names: {e}");
        for bad in ["nofile", "nofile=", "nofile=2:1", "nofile=x"] {
            assert!(parse_rlimit(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn command_line_builds_the_cell() {
        let args = Args::try_parse_from([
            "run", "--memory", "64M", "--bind", "/a:/b:ro", "--tmpfs", "/t:1M", "--user", "5:6",
            "--env", "K=V", "--net", "host", "--time", "2s", "--", "sh", "-c", "x",
        ])
        .unwrap();
        assert_eq!(args.memory, Some(64 << 20));
        assert_eq!(args.command, ["sh", "-c", "x"]);
        let (sb, cmd) = build(&args, None).unwrap();
        assert_eq!(sb.get_limits().wall_time, Some(Duration::from_secs(2)));
        assert_eq!(cmd.get_program(), "sh");
        // What is not given comes from the untrusted defaults, unless --trusted.
        assert_eq!(sb.get_limits().memory, Some(64 << 20));
        assert_eq!(sb.get_limits().pids, Limits::conservative().pids);
        let trusted = Args::try_parse_from(["run", "--trusted", "--pids", "9", "true"]).unwrap();
        let (sb, _) = build(&trusted, None).unwrap();
        assert_eq!(
            sb.get_limits(),
            &Limits {
                pids: Some(9),
                ..Limits::default()
            }
        );
        assert!(
            Args::try_parse_from(["run"]).is_err(),
            "a program is required"
        );
        assert!(Args::try_parse_from(["run", "--check-cgroups"]).is_ok());
        assert!(Args::try_parse_from(["run", "--bind", "/a", "x"]).is_err());
    }

    #[test]
    fn invalid_limits_name_their_option() {
        let bad = |argv: &[&str]| {
            let args = Args::try_parse_from(argv).unwrap();
            build(&args, None).unwrap_err()
        };
        let e = bad(&["run", "--cpu", "0", "true"]);
        assert_eq!(e.arg, "--cpu");
        assert!(e.message.contains("between 1 and"), "{e:?}");
        let e = bad(&["run", "--memory", "10", "true"]);
        assert_eq!(e.arg, "--memory");
        assert!(e.message.contains("10M?"), "{e:?}");
        assert_eq!(bad(&["run", "--pids", "0", "true"]).arg, "--pids");
        assert_eq!(bad(&["run", "--cpus", "3-1", "true"]).arg, "--cpus");
        assert_eq!(
            bad(&["run", "--swap", "1M", "--trusted", "true"]).arg,
            "--swap"
        );
        assert_eq!(bad(&["run", "--output", "0", "true"]).arg, "--output");
        assert_eq!(
            bad(&["run", "--file", "/x=@/no/such/file", "true"]).arg,
            "--file"
        );
    }

    #[test]
    fn tree_options_keep_their_order() {
        let argv = [
            "run",
            "--file",
            "/data/a=1",
            "--tmpfs",
            "/data:1M",
            "--dir",
            "/data/sub",
            "--bind",
            "/src:/data/sub/src:ro",
            "--symlink",
            "sub/src:/data/link",
            "--file",
            "/data/b=2",
            "true",
        ];
        let matches = Args::command().try_get_matches_from(argv).unwrap();
        let args = Args::from_arg_matches(&matches).unwrap();
        let kinds: Vec<&str> = tree_ops(&args, Some(&matches))
            .iter()
            .map(|op| match op {
                TreeOp::Bind(_) => "bind",
                TreeOp::Tmpfs(..) => "tmpfs",
                TreeOp::Dir(_) => "dir",
                TreeOp::File(..) => "file",
                TreeOp::Symlink(..) => "symlink",
            })
            .collect();
        assert_eq!(kinds, ["file", "tmpfs", "dir", "bind", "symlink", "file"]);
    }

    #[test]
    fn spawn_errors_name_the_argument_or_pick_a_code() {
        let args = Args::try_parse_from([
            "run",
            "--bind",
            "/host:/work",
            "--cwd",
            "/work/x",
            "--stdin",
            "/in.txt",
            "true",
        ])
        .unwrap();
        let name = |e: Error| match classify(&e, &args) {
            Failure::BadArg(b) => b.arg,
            Failure::Exit(c) => c.to_string(),
        };
        assert_eq!(
            name(Error::InvalidPath {
                path: "/work".into(),
                reason: "x"
            }),
            "--bind"
        );
        assert_eq!(
            name(Error::HostPath {
                what: "bind source",
                path: "/host".into(),
                errno: jobcell::Errno(libc::ENOENT)
            }),
            "--bind"
        );
        assert_eq!(
            name(Error::HostPath {
                what: "stdin file",
                path: "/in.txt".into(),
                errno: jobcell::Errno(libc::ENOENT)
            }),
            "--stdin"
        );
        assert_eq!(
            name(Error::CurrentDirNotFound {
                path: "/work/x".into()
            }),
            "--cwd"
        );
        assert_eq!(
            name(Error::InvalidSetting {
                name: "RLIMIT_NOFILE",
                value: String::new(),
                reason: String::new()
            }),
            "--rlimit"
        );
        assert_eq!(
            name(Error::ProgramNotFound {
                program: "x".into(),
                searched: String::new()
            }),
            "127"
        );
        assert_eq!(name(Error::SetupDied { status: "x".into() }), "125");
    }

    #[test]
    fn help_shows_the_exit_codes() {
        let help = Args::command().render_long_help().to_string();
        for code in [
            "128+S", "121", "122", "123", "124", "125", "126", "127", "128+N",
        ] {
            assert!(help.contains(&format!("  {code}")), "{code} in {help}");
        }
        let short = Args::command().render_help().to_string();
        assert!(short.contains("124 time limit"), "{short}");
    }

    fn path() -> impl Strategy<Value = String> {
        "(/[a-zA-Z0-9._-]{1,8}){1,4}"
    }

    proptest! {
        #[test]
        fn bind_roundtrips(src in path(), dst in path(), mode in 0u8..4) {
            let text = match mode {
                0 => format!("{src}:{dst}"),
                1 => format!("{src}:{dst}:rw"),
                2 => format!("{src}:{dst}:ro"),
                _ => format!("{src}:{dst}:owned"),
            };
            let b = parse_bind(&text).unwrap();
            prop_assert_eq!(b.src, PathBuf::from(&src));
            prop_assert_eq!(b.dst, PathBuf::from(&dst));
            prop_assert_eq!(b.writable, mode != 2);
            prop_assert_eq!(b.owned, mode == 3);
        }

        #[test]
        fn tmpfs_roundtrips(dst in path(), mib in 1u64..4096) {
            prop_assert_eq!(parse_tmpfs(&format!("{dst}:{mib}M")).unwrap(), (PathBuf::from(&dst), mib << 20));
        }

        #[test]
        fn user_roundtrips(u: u32, g: u32) {
            prop_assert_eq!(parse_user(&format!("{u}:{g}")).unwrap(), (u, g));
        }

        #[test]
        fn rlimit_roundtrips(i in 0usize..16, soft in 0u64..1 << 40, extra in 0u64..1 << 20) {
            let (name, r) = RLIMITS[i];
            prop_assert_eq!(parse_rlimit(&format!("{name}={soft}:{}", soft + extra)).unwrap(), (r, soft, soft + extra));
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = parse_bind(&s);
            let _ = parse_tmpfs(&s);
            let _ = parse_user(&s);
            let _ = parse_env(&s);
            let _ = parse_file(&s);
            let _ = parse_symlink(&s);
            let _ = parse_landlock(&s);
            let _ = parse_rlimit(&s);
            let _ = duration(&s);
        }
    }
}
