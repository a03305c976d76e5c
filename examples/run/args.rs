//! The command line: the clap arguments, the parsers and checks of their
//! values, and the error that names an argument the library refused.

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use jobcell::units::{parse_duration, parse_size};
use jobcell::{Network, Rlimit, DEFAULT_TMP_SIZE, UNLIMITED};

use crate::exit::EXIT_CODES;

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
pub struct Args {
    /// Memory limit (e.g. 256M).
    #[arg(long, value_parser = size, help_heading = "Limits")]
    pub memory: Option<u64>,
    /// Swap allowed on top of --memory (default: none).
    #[arg(long, value_parser = size, help_heading = "Limits")]
    pub swap: Option<u64>,
    /// CPU limit in percent of one core (50 = half a core, 200 = two cores).
    #[arg(long, help_heading = "Limits")]
    pub cpu: Option<u32>,
    /// CPUs the job may run on (e.g. 0-1).
    #[arg(long, help_heading = "Limits")]
    pub cpus: Option<String>,
    /// Maximum number of the job's processes and threads (the cell's own
    /// init not counted): 1 lets the command run but not fork.
    #[arg(long, help_heading = "Limits")]
    pub pids: Option<u64>,
    /// Read bandwidth per device, bytes per second (e.g. 10M).
    #[arg(long = "io-read", value_parser = size, help_heading = "Limits")]
    pub io_read: Option<u64>,
    /// Write bandwidth per device, bytes per second (e.g. 10M).
    #[arg(long = "io-write", value_parser = size, help_heading = "Limits")]
    pub io_write: Option<u64>,
    /// Wall-clock time limit, with its unit (e.g. 5s, 300ms).
    #[arg(long, value_parser = duration, help_heading = "Limits")]
    pub time: Option<Duration>,
    /// CPU time limit, with its unit (e.g. 2s).
    #[arg(long = "cpu-time", value_parser = duration, help_heading = "Limits")]
    pub cpu_time: Option<Duration>,
    /// Output limit, stdout and stderr together (e.g. 1M).
    #[arg(long, value_parser = size, help_heading = "Limits")]
    pub output: Option<u64>,
    /// A per-process limit (setrlimit; repeatable): nofile=256, stack=64M,
    /// fsize=1G:2G, cpu=10 (seconds), nproc=unlimited. HARD defaults to SOFT.
    #[arg(long, value_name = "NAME=SOFT[:HARD]", value_parser = parse_rlimit, help_heading = "Limits")]
    pub rlimit: Vec<(Rlimit, u64, u64)>,
    /// Start without the default limits for untrusted code (512M memory, 256
    /// pids, 60s wall time, 16M output, 64M per file): only those given apply.
    #[arg(long, help_heading = "Limits")]
    pub trusted: bool,

    /// Bind a host path into the cell, writable; `:ro` for read-only; `:owned`
    /// for a workspace the job owns: the source's owner shows as the job, and
    /// what it creates stays the owner's on the host (an idmapped bind: Linux
    /// 5.12+, ext4/xfs/btrfs, tmpfs from 6.3; `--check` says) (repeatable).
    #[arg(long, value_name = "SRC:DST[:ro|:owned]", value_parser = parse_bind, help_heading = "Filesystem")]
    pub bind: Vec<Bind>,
    /// Mount a tmpfs (default size 128M; repeatable).
    #[arg(long, value_name = "DST[:SIZE]", value_parser = parse_tmpfs, help_heading = "Filesystem")]
    pub tmpfs: Vec<(PathBuf, u64)>,
    /// Create an empty directory in the cell (repeatable).
    #[arg(long, value_name = "DST", help_heading = "Filesystem")]
    pub dir: Vec<PathBuf>,
    /// Create a read-only file in the cell holding TEXT, or a copy of the
    /// host file FILE with `DST=@FILE` (repeatable).
    #[arg(long, value_name = "DST=TEXT|DST=@FILE", value_parser = parse_file, help_heading = "Filesystem")]
    pub file: Vec<(PathBuf, FileSource)>,
    /// Create a symbolic link LINK pointing to TARGET, as `ln -s TARGET LINK` (repeatable).
    #[arg(long, value_name = "TARGET:LINK", value_parser = parse_symlink, help_heading = "Filesystem")]
    pub symlink: Vec<(PathBuf, PathBuf)>,
    /// Use this host directory, read-only, as the root instead of the minimal root.
    #[arg(long, value_name = "DIR", help_heading = "Filesystem")]
    pub rootfs: Option<PathBuf>,
    /// Working directory inside the cell.
    #[arg(long, value_name = "DIR", help_heading = "Filesystem")]
    pub cwd: Option<PathBuf>,
    /// Restrict the job with a Landlock ruleset: it may use only the trees
    /// given, read-only unless `:rw` (repeatable; e.g. --landlock /:ro
    /// --landlock /tmp:rw).
    #[arg(long, value_name = "PATH[:ro|:rw]", value_parser = parse_landlock, help_heading = "Filesystem")]
    pub landlock: Vec<(PathBuf, bool)>,

    /// `host` to share the host's network (default `none`: loopback only).
    #[arg(long, value_name = "host|none", value_parser = parse_net, help_heading = "Cell")]
    pub net: Option<Network>,
    /// Hostname inside the cell (default jobcell).
    #[arg(long, help_heading = "Cell")]
    pub hostname: Option<String>,
    /// Environment variable (repeatable).
    #[arg(long, value_name = "K=V", value_parser = parse_env, help_heading = "Cell")]
    pub env: Vec<(String, String)>,
    /// Start from an empty environment: only the --env variables are set.
    #[arg(long, help_heading = "Cell")]
    pub env_clear: bool,
    /// User and group inside the cell (default 1000:1000).
    #[arg(long, value_name = "UID:GID", value_parser = parse_user, help_heading = "Cell")]
    pub user: Option<(u32, u32)>,
    /// Feed this host file to the job's stdin (default: empty).
    #[arg(long, value_name = "FILE", help_heading = "Cell")]
    pub stdin: Option<PathBuf>,
    /// What a system call the seccomp filter denies does: `errno` (the
    /// default: it fails with EPERM) or `kill` (the job dies, verdict bad
    /// system call, exit code 121).
    #[arg(long, value_name = "errno|kill", value_parser = parse_seccomp, help_heading = "Cell")]
    pub seccomp: Option<SeccompMode>,

    /// Print the result (or the host report) as JSON instead of the summary.
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    /// Also write the result as JSON to FILE (created or truncated before
    /// the job starts; written when it ends, or when the cell cannot start).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub meta: Option<PathBuf>,

    /// Check the host: kernel, namespaces, cgroups, filesystem (alias --validate).
    #[arg(long, alias = "validate", help_heading = "Host checks")]
    pub check: bool,
    /// Check only user and other namespaces.
    #[arg(long, help_heading = "Host checks")]
    pub check_namespaces: bool,
    /// Check only cgroups.
    #[arg(long, help_heading = "Host checks")]
    pub check_cgroups: bool,
    /// Check only mounts, procfs and pivot_root.
    #[arg(long, help_heading = "Host checks")]
    pub check_filesystem: bool,

    /// The program and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM",
        required_unless_present_any = ["check", "check_namespaces", "check_cgroups", "check_filesystem"]
    )]
    pub command: Vec<String>,
}

/// A `--bind`: host source, cell target, writable, the job's own (idmapped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub writable: bool,
    pub owned: bool,
}

/// Where a `--file`'s contents come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileSource {
    Text(String),
    Host(PathBuf),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeccompMode {
    Errno,
    Kill,
}

/// A command-line argument the library refused: exit 2, naming it.
#[derive(Debug, PartialEq, Eq)]
pub struct BadArg {
    pub arg: String,
    pub message: String,
}

impl BadArg {
    pub fn new(arg: impl Into<String>, message: impl Into<String>) -> BadArg {
        BadArg {
            arg: arg.into(),
            message: message.into(),
        }
    }
}

pub fn size(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

/// A duration with its unit: a bare `5` is refused, since some tools read
/// it as seconds and others as milliseconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "{s:?} has no unit: write {t}s for seconds or {t}ms for milliseconds"
        ));
    }
    parse_duration(s).map_err(|e| e.to_string())
}

/// `SRC:DST`, `SRC:DST:ro`, `SRC:DST:rw` or `SRC:DST:owned`. Paths cannot contain `:`.
pub fn parse_bind(s: &str) -> Result<Bind, String> {
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
pub fn parse_tmpfs(s: &str) -> Result<(PathBuf, u64), String> {
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
pub fn parse_file(s: &str) -> Result<(PathBuf, FileSource), String> {
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
pub fn parse_symlink(s: &str) -> Result<(PathBuf, PathBuf), String> {
    match s.split_once(':') {
        Some((target, link)) if !target.is_empty() && !link.is_empty() && !link.contains(':') => {
            Ok((target.into(), link.into()))
        }
        _ => Err(format!("{s:?}: expected TARGET:LINK (paths without ':')")),
    }
}

/// `PATH`, `PATH:ro` or `PATH:rw`; true for read-write.
pub fn parse_landlock(s: &str) -> Result<(PathBuf, bool), String> {
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
pub fn parse_seccomp(s: &str) -> Result<SeccompMode, String> {
    match s {
        "errno" => Ok(SeccompMode::Errno),
        "kill" => Ok(SeccompMode::Kill),
        _ => Err(format!("{s:?}: expected errno or kill")),
    }
}

/// The resources `--rlimit` takes, by the names `ulimit` and `prlimit` use.
pub const RLIMITS: [(&str, Rlimit); 16] = [
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
pub fn parse_rlimit(s: &str) -> Result<(Rlimit, u64, u64), String> {
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
pub fn parse_user(s: &str) -> Result<(u32, u32), String> {
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
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected K=V")),
    }
}

pub fn parse_net(s: &str) -> Result<Network, String> {
    match s {
        "host" => Ok(Network::Host),
        "none" => Ok(Network::None),
        _ => Err(format!("{s:?}: expected host or none")),
    }
}

/// Prints a bad argument as clap prints its own, and exits 2.
pub fn usage_error(bad: &BadArg) -> ! {
    Args::command()
        .error(
            clap::error::ErrorKind::ValueValidation,
            format!("invalid value for '{}': {}", bad.arg, bad.message),
        )
        .exit()
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
