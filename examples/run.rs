//! `run`: run one command in a jobcell cell from the command line.
//!
//! ```text
//! cargo run --example run -- [options] [--] program args…
//! cargo run --example run -- --memory 256M --pids 64 --time 5s -- sh -c 'echo hi'
//! ```
//!
//! The job's output streams live; a summary goes to stderr at the end; the
//! exit code mirrors the job's (128 + signal when a signal ended it).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use jobcell::units::{format_size, parse_duration, parse_size};
use jobcell::{Command, Limits, Network, Sandbox, Stdin, Stream};

#[derive(Parser, Debug)]
#[command(
    name = "run",
    about = "Run a command in an isolated, resource-limited jobcell cell"
)]
struct Args {
    /// Memory limit (e.g. 256M).
    #[arg(long, value_parser = size)]
    memory: Option<u64>,
    /// Swap allowed on top of --memory (default: none).
    #[arg(long, value_parser = size)]
    swap: Option<u64>,
    /// CPU limit in percent of one core (50 = half a core, 200 = two cores).
    #[arg(long)]
    cpu: Option<u32>,
    /// CPUs the job may run on (e.g. 0-1).
    #[arg(long)]
    cpus: Option<String>,
    /// Maximum number of processes and threads.
    #[arg(long)]
    pids: Option<u64>,
    /// Read bandwidth per device (e.g. 10M, bytes per second).
    #[arg(long = "io-read", value_parser = size)]
    io_read: Option<u64>,
    /// Write bandwidth per device (e.g. 10M, bytes per second).
    #[arg(long = "io-write", value_parser = size)]
    io_write: Option<u64>,
    /// Wall-clock time limit (e.g. 5s, 300ms).
    #[arg(long, value_parser = duration)]
    time: Option<Duration>,
    /// CPU time limit (e.g. 2s).
    #[arg(long = "cpu-time", value_parser = duration)]
    cpu_time: Option<Duration>,
    /// Output limit, stdout and stderr together (e.g. 1M).
    #[arg(long, value_parser = size)]
    output: Option<u64>,
    /// Bind a host path: SRC:DST, or SRC:DST:ro for read-only.
    #[arg(long, value_name = "SRC:DST[:ro]")]
    bind: Vec<String>,
    /// Mount a tmpfs: DST or DST:SIZE.
    #[arg(long, value_name = "DST[:SIZE]")]
    tmpfs: Vec<String>,
    /// Use this directory as the root instead of the minimal root.
    #[arg(long)]
    rootfs: Option<PathBuf>,
    /// `host` to share the host's network (default: loopback only).
    #[arg(long)]
    net: Option<String>,
    /// Hostname inside the cell.
    #[arg(long)]
    hostname: Option<String>,
    /// Environment variable K=V (repeatable).
    #[arg(long, value_name = "K=V")]
    env: Vec<String>,
    /// User and group inside the cell, UID:GID (default 1000:1000).
    #[arg(long, value_name = "UID:GID")]
    user: Option<String>,
    /// Feed this host file to the job's stdin.
    #[arg(long)]
    stdin: Option<PathBuf>,
    /// Working directory inside the cell.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// The program and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM"
    )]
    command: Vec<String>,
}

fn size(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn build(args: &Args) -> Result<(Sandbox, Command), String> {
    let mut sb = Sandbox::new();
    if let Some(root) = &args.rootfs {
        sb.rootfs(root);
    }
    for b in &args.bind {
        let parts: Vec<&str> = b.split(':').collect();
        match parts.as_slice() {
            [src, dst] => sb.bind_rw(src, dst),
            [src, dst, "ro"] => sb.bind_ro(src, dst),
            [src, dst, "rw"] => sb.bind_rw(src, dst),
            _ => return Err(format!("--bind {b:?}: expected SRC:DST or SRC:DST:ro")),
        };
    }
    for t in &args.tmpfs {
        match t.split_once(':') {
            Some((dst, sz)) => sb.tmpfs(dst, size(sz).map_err(|e| format!("--tmpfs {t:?}: {e}"))?),
            None => sb.tmpfs(t, 64 << 20),
        };
    }
    match args.net.as_deref() {
        None | Some("none") => sb.network(Network::None),
        Some("host") => sb.network(Network::Host),
        Some(other) => return Err(format!("--net {other:?}: expected host or none")),
    };
    if let Some(h) = &args.hostname {
        sb.hostname(h);
    }
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--env {kv:?}: expected K=V"))?;
        sb.env(k, v);
    }
    if let Some(u) = &args.user {
        let parse = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| format!("--user {u:?}: expected UID:GID"))
        };
        let (uid, gid) = u
            .split_once(':')
            .ok_or_else(|| format!("--user {u:?}: expected UID:GID"))?;
        sb.user(parse(uid)?, parse(gid)?);
    }
    if let Some(cwd) = &args.cwd {
        sb.current_dir(cwd);
    }
    sb.limits(Limits {
        memory: args.memory,
        memory_swap: args.swap,
        cpu_percent: args.cpu,
        cpus: args.cpus.clone(),
        pids: args.pids,
        io_read_bps: args.io_read,
        io_write_bps: args.io_write,
        wall_time: args.time,
        cpu_time: args.cpu_time,
        output_bytes: args.output,
        ..Default::default()
    });
    let mut cmd = Command::new(&args.command[0]);
    cmd.args(&args.command[1..]);
    if let Some(f) = &args.stdin {
        cmd.stdin(Stdin::File(f.clone()));
    }
    Ok((sb, cmd))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (sandbox, command) = match build(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("run: {e}");
            return ExitCode::from(2);
        }
    };
    let job = match sandbox.spawn(&command) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("run: {e}");
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
    let exit = o.exit.map_or("never ran".to_string(), |e| e.to_string());
    eprintln!(
        "--- jobcell: {} ({exit}); wall {:.3}s, cpu {:.3}s (user {:.3}s, sys {:.3}s), peak memory {}{}",
        o.state,
        o.wall_time.as_secs_f64(),
        o.rusage.cpu_time().as_secs_f64(),
        o.rusage.user_time.as_secs_f64(),
        o.rusage.system_time.as_secs_f64(),
        o.usage
            .and_then(|u| u.memory_peak)
            .map_or_else(|| format_size(o.rusage.max_rss) + " (largest process)", format_size),
        o.usage.map_or(String::new(), |u| format!(
            ", io read {} written {}",
            format_size(u.io_read_bytes),
            format_size(u.io_write_bytes)
        )),
    );
    ExitCode::from(o.exit.map_or(125, |e| e.shell_code().clamp(0, 255) as u8))
}
