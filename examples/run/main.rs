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
//! The exit code follows the verdict (see [`exit::EXIT_CODES`]). With `--check…`
//! it prints the host report (`--json` for JSON) and exits 1 if the report
//! has a problem.
//!
//! Module by concern: `args` (the command line and its parsers), `cell`
//! (the Sandbox and Command built from it), `exit` (the exit-code table and
//! how a verdict or an error maps to it), `report` (the summary line,
//! `--json`, `--meta`), `signals` (stopping on SIGINT/SIGTERM/SIGHUP),
//! `check` (the host checks).

mod args;
mod cell;
mod check;
mod exit;
mod report;
mod signals;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{CommandFactory, FromArgMatches};
use jobcell::{JobState, Stream};

use args::{usage_error, Args, BadArg};
use cell::build;
use check::{check, check_for};
use exit::{classify, exit_code, Failure, BAD_USAGE, SETUP_FAILED};
use report::{failure_json, result_json, write_meta, Tail};
use signals::{catch_stop_signals, die_of};

/// The program as invoked (`./target/debug/examples/run`, `run`), for
/// commands the messages suggest.
fn argv0() -> String {
    std::env::args_os()
        .next()
        .map_or_else(|| "run".into(), |a| a.to_string_lossy().into_owned())
}

/// Its name, for the prefix of its messages.
pub fn prog() -> String {
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
