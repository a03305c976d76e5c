//! `run`: run one command in a jobcell cell from the command line.
//!
//! ```text
//! cargo run --example run -- [options] [--] program args…
//! cargo run --example run -- --memory 256M --pids 64 --time 5s -- sh -c 'echo hi'
//! cargo run --example run -- --trusted -- make        # no default limits
//! cargo run --example run -- --check            # is this host ready? (all sections)
//! cargo run --example run -- --check-cgroups    # one section
//! ```
//!
//! Jobs start from `Sandbox::untrusted()`: 512 MiB of memory, 256 processes,
//! 60 s of wall time, 16 MiB of output and 64 MiB per file unless the
//! options say otherwise; `--trusted` starts from `Sandbox::new()` (no
//! limits but those given).
//!
//! The job's output streams live. At the end a one-line summary goes to
//! stderr (verdict, exit code or signal, wall and CPU time, peak memory, IO);
//! with `--json` the `Outcome` as one line of JSON goes there instead, so the
//! job's own stdout stays clean. The exit code mirrors the job's (128 +
//! signal when a signal ended it); 125 means the cell could not be started,
//! 2 a bad command line. With `--check…` it prints the host report (`--json`
//! for JSON) and exits 1 if the report has a problem.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use jobcell::host::{self, SectionKind, Status};
use jobcell::units::{format_size, parse_duration, parse_size};
use jobcell::{Command, Limits, Network, Outcome, Sandbox, Stdin, Stream, DEFAULT_TMP_SIZE};

#[derive(Parser, Debug)]
#[command(
    name = "run",
    about = "Run a command in an isolated, resource-limited jobcell cell",
    after_help = "Sizes take K, M, G, T (powers of 1024); durations ms, s, m, h.\n\
                  Exit code: the job's, 128+N when signal N ended it, 125 when the cell \
                  could not start, 2 for a bad command line."
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
    /// Maximum number of processes and threads.
    #[arg(long, help_heading = "Limits")]
    pids: Option<u64>,
    /// Read bandwidth per device, bytes per second (e.g. 10M).
    #[arg(long = "io-read", value_parser = size, help_heading = "Limits")]
    io_read: Option<u64>,
    /// Write bandwidth per device, bytes per second (e.g. 10M).
    #[arg(long = "io-write", value_parser = size, help_heading = "Limits")]
    io_write: Option<u64>,
    /// Wall-clock time limit (e.g. 5s, 300ms).
    #[arg(long, value_parser = duration, help_heading = "Limits")]
    time: Option<Duration>,
    /// CPU time limit (e.g. 2s).
    #[arg(long = "cpu-time", value_parser = duration, help_heading = "Limits")]
    cpu_time: Option<Duration>,
    /// Output limit, stdout and stderr together (e.g. 1M).
    #[arg(long, value_parser = size, help_heading = "Limits")]
    output: Option<u64>,
    /// Start without the default limits for untrusted code (512M memory, 256
    /// pids, 60s wall time, 16M output, 64M per file): only those given apply.
    #[arg(long, help_heading = "Limits")]
    trusted: bool,

    /// Bind a host path into the cell, writable; `:ro` for read-only (repeatable).
    #[arg(long, value_name = "SRC:DST[:ro]", value_parser = parse_bind, help_heading = "Filesystem")]
    bind: Vec<Bind>,
    /// Mount a tmpfs (default size 128M; repeatable).
    #[arg(long, value_name = "DST[:SIZE]", value_parser = parse_tmpfs, help_heading = "Filesystem")]
    tmpfs: Vec<(PathBuf, u64)>,
    /// Use this host directory, read-only, as the root instead of the minimal root.
    #[arg(long, value_name = "DIR", help_heading = "Filesystem")]
    rootfs: Option<PathBuf>,
    /// Working directory inside the cell.
    #[arg(long, value_name = "DIR", help_heading = "Filesystem")]
    cwd: Option<PathBuf>,

    /// `host` to share the host's network (default `none`: loopback only).
    #[arg(long, value_name = "host|none", value_parser = parse_net, help_heading = "Cell")]
    net: Option<Network>,
    /// Hostname inside the cell (default jobcell).
    #[arg(long, help_heading = "Cell")]
    hostname: Option<String>,
    /// Environment variable (repeatable).
    #[arg(long, value_name = "K=V", value_parser = parse_env, help_heading = "Cell")]
    env: Vec<(String, String)>,
    /// User and group inside the cell (default 1000:1000).
    #[arg(long, value_name = "UID:GID", value_parser = parse_user, help_heading = "Cell")]
    user: Option<(u32, u32)>,
    /// Feed this host file to the job's stdin (default: empty).
    #[arg(long, value_name = "FILE", help_heading = "Cell")]
    stdin: Option<PathBuf>,

    /// Print the Outcome (or the host report) as JSON instead of the summary.
    #[arg(long)]
    json: bool,
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

/// A `--bind`: host source, cell target, writable.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Bind {
    src: PathBuf,
    dst: PathBuf,
    writable: bool,
}

fn size(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// `SRC:DST`, `SRC:DST:ro` or `SRC:DST:rw`. Paths cannot contain `:`.
fn parse_bind(s: &str) -> Result<Bind, String> {
    let (rest, writable) = match s.rsplit_once(':') {
        Some((rest, "ro")) => (rest, false),
        Some((rest, "rw")) => (rest, true),
        _ => (s, true),
    };
    match rest.split_once(':') {
        Some((src, dst)) if !src.is_empty() && !dst.is_empty() && !dst.contains(':') => Ok(Bind {
            src: src.into(),
            dst: dst.into(),
            writable,
        }),
        _ => Err(format!(
            "{s:?}: expected SRC:DST or SRC:DST:ro (paths without ':')"
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

fn build(args: &Args) -> (Sandbox, Command) {
    // Code from the command line is untrusted unless the user says otherwise.
    let mut sb = if args.trusted {
        Sandbox::new()
    } else {
        Sandbox::untrusted()
    };
    let base = sb.get_limits().clone();
    if let Some(root) = &args.rootfs {
        sb.rootfs(root);
    }
    for b in &args.bind {
        if b.writable {
            sb.bind_rw(&b.src, &b.dst);
        } else {
            sb.bind_ro(&b.src, &b.dst);
        }
    }
    for (dst, size) in &args.tmpfs {
        sb.tmpfs(dst, *size);
    }
    if let Some(net) = args.net {
        sb.network(net);
    }
    if let Some(h) = &args.hostname {
        sb.hostname(h);
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
    sb.limits(Limits {
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
        ..base
    });
    let mut cmd = Command::new(&args.command[0]);
    cmd.args(&args.command[1..]);
    if let Some(f) = &args.stdin {
        cmd.stdin(Stdin::File(f.clone()));
    }
    (sb, cmd)
}

/// The one-line summary for stderr.
fn summary(o: &Outcome) -> String {
    let exit = o.exit.map_or("never ran".to_string(), |e| e.to_string());
    let state = o.state.to_string();
    // "failed (exit code 3)" says it already; "timed out (wall time)" does not.
    let verdict = if state.contains(&exit) {
        state
    } else if state.ends_with(')') {
        format!("{state}, {exit}")
    } else {
        format!("{state} ({exit})")
    };
    let cpu = match o.usage {
        Some(u) => (u.cpu_total(), u.cpu_user, u.cpu_system),
        None => (
            o.rusage.cpu_time(),
            o.rusage.user_time,
            o.rusage.system_time,
        ),
    };
    format!(
        "--- jobcell: {verdict}; wall {:.3}s, cpu {:.3}s (user {:.3}s, sys {:.3}s), peak memory {}{}",
        o.wall_time.as_secs_f64(),
        cpu.0.as_secs_f64(),
        cpu.1.as_secs_f64(),
        cpu.2.as_secs_f64(),
        o.usage
            .and_then(|u| u.memory_peak)
            .map_or_else(|| format_size(o.rusage.max_rss) + " (largest process)", format_size),
        o.usage.map_or(String::new(), |u| format!(
            ", io read {} written {}",
            format_size(u.io_read_bytes),
            format_size(u.io_write_bytes)
        )),
    )
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

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check || args.check_namespaces || args.check_cgroups || args.check_filesystem {
        return check(&args);
    }
    let (sandbox, command) = build(&args);
    let job = match sandbox.spawn(&command) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("run: {e}");
            if matches!(
                e,
                jobcell::Error::Spawn { .. }
                    | jobcell::Error::Setup { .. }
                    | jobcell::Error::SetupDied { .. }
                    | jobcell::Error::Cgroup { .. }
                    | jobcell::Error::ControllerUnavailable { .. }
            ) {
                eprintln!(
                    "run: `run --check` tells whether this host can run cells, and how to fix it"
                );
            }
            return ExitCode::from(125);
        }
    };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    for chunk in job.logs() {
        let _ = match chunk.stream {
            Stream::Stdout => out.write_all(&chunk.data).and_then(|_| out.flush()),
            Stream::Stderr => err.write_all(&chunk.data),
        };
    }
    let o = match job.wait() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("run: {e}");
            return ExitCode::from(125);
        }
    };
    if args.json {
        eprintln!(
            "{}",
            serde_json::to_string(&o).expect("an outcome serializes")
        );
    } else {
        eprintln!("{}", summary(&o));
    }
    ExitCode::from(o.exit.map_or(125, |e| e.shell_code().clamp(0, 255) as u8))
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
                writable: false
            }
        );
        assert!(parse_bind("/a:/b").unwrap().writable);
        assert!(parse_bind("/a:/b:rw").unwrap().writable);
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
    fn command_line_builds_the_cell() {
        let args = Args::try_parse_from([
            "run", "--memory", "64M", "--bind", "/a:/b:ro", "--tmpfs", "/t:1M", "--user", "5:6",
            "--env", "K=V", "--net", "host", "--time", "2s", "--", "sh", "-c", "x",
        ])
        .unwrap();
        assert_eq!(args.memory, Some(64 << 20));
        assert_eq!(args.command, ["sh", "-c", "x"]);
        let (sb, cmd) = build(&args);
        assert_eq!(sb.get_limits().wall_time, Some(Duration::from_secs(2)));
        assert_eq!(cmd.get_program(), "sh");
        // What is not given comes from the untrusted defaults, unless --trusted.
        assert_eq!(sb.get_limits().memory, Some(64 << 20));
        assert_eq!(sb.get_limits().pids, Limits::conservative().pids);
        let trusted = Args::try_parse_from(["run", "--trusted", "--pids", "9", "true"]).unwrap();
        let (sb, _) = build(&trusted);
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

    fn path() -> impl Strategy<Value = String> {
        "(/[a-zA-Z0-9._-]{1,8}){1,4}"
    }

    proptest! {
        #[test]
        fn bind_roundtrips(src in path(), dst in path(), mode in proptest::option::of(proptest::bool::ANY)) {
            let text = match mode {
                None => format!("{src}:{dst}"),
                Some(true) => format!("{src}:{dst}:rw"),
                Some(false) => format!("{src}:{dst}:ro"),
            };
            let b = parse_bind(&text).unwrap();
            prop_assert_eq!(b.src, PathBuf::from(&src));
            prop_assert_eq!(b.dst, PathBuf::from(&dst));
            prop_assert_eq!(b.writable, mode != Some(false));
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
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = parse_bind(&s);
            let _ = parse_tmpfs(&s);
            let _ = parse_user(&s);
            let _ = parse_env(&s);
        }
    }
}
