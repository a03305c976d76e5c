//! Building the cell from the command line: the starting sandbox, the limits
//! on top of it, the file tree in command-line order, and the command.

use std::path::PathBuf;

use clap::ArgMatches;
use jobcell::{Command, Error, Limits, Sandbox, Stdin};

use crate::args::{Args, BadArg, Bind, FileSource, SeccompMode};

/// A change to the cell's file tree, in command-line order: a `--file`
/// under a `--tmpfs` must come after it, whatever the options' kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeOp {
    Bind(Bind),
    Tmpfs(PathBuf, u64),
    Dir(PathBuf),
    File(PathBuf, FileSource),
    Symlink(PathBuf, PathBuf),
}

/// The tree options in the order they were given (`matches` from the same
/// command line as `args`; without it, grouped by kind).
pub fn tree_ops(args: &Args, matches: Option<&ArgMatches>) -> Vec<TreeOp> {
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
pub fn limits(args: &Args, base: &Limits) -> Limits {
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
pub fn limit_flag(field: &str) -> &'static str {
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

pub fn build(args: &Args, matches: Option<&ArgMatches>) -> Result<(Sandbox, Command), BadArg> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use clap::{CommandFactory, FromArgMatches, Parser};

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
}
