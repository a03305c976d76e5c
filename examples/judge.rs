//! `judge`: a small online judge on jobcell.
//!
//! ```text
//! cargo run --example judge -- [limits] --source DIR [--compile CMD] TESTS -- program args…
//!
//! # a shell-script solution, two test cases
//! cargo run --example judge -- --source examples/judge-demo examples/judge-demo/tests -- sh sum.sh
//! # a C solution, compiled in a cell first
//! cargo run --example judge -- --source examples/judge-demo \
//!     --compile 'cc -O2 -o /build/sum /src/sum.c' examples/judge-demo/tests -- ./sum
//! ```
//!
//! `TESTS` holds test cases as `NAME.in` (the input, fed on stdin) and
//! `NAME.out` (the expected output), run in name order. The solution's
//! directory is bound read-only at `/src`; with `--compile`, the command
//! runs first (`sh -c CMD`, in `/build`, writable) and the tests then run in
//! `/build`, read-only. Every test runs in a fresh cell with the limits
//! given (made ahead: while one test runs, the next tests' cells are set
//! up, at low priority; a cell still serves one test only), and gets a
//! verdict:
//!
//! | verdict | when                                                        |
//! |---------|-------------------------------------------------------------|
//! | `AC`    | exit code 0 and the expected output                         |
//! | `WA`    | exit code 0 and other output                                |
//! | `TLE`   | over the CPU time (`--time`) or the wall time (`--wall`)     |
//! | `MLE`   | the kernel's OOM killer ended it (`--memory`)               |
//! | `OLE`   | it wrote more than `--output`                                |
//! | `RE`    | a non-zero exit code, a signal, or a forbidden system call    |
//! | `CE`    | the compile command failed (no test runs)                    |
//! | `IE`    | the cell could not be set up (an error of the judge's host)  |
//!
//! Outputs are compared line by line, ignoring trailing spaces and trailing
//! empty lines. The exit code is 0 when every test is accepted, 1 otherwise,
//! 2 for a bad command line.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use jobcell::units::{format_size, parse_duration, parse_size};
use jobcell::{Command, JobState, Limits, Outcome, Sandbox, Stdin, Stream};

#[derive(Parser, Debug)]
#[command(
    name = "judge",
    about = "Judge a solution against test cases, each in its own cell"
)]
struct Args {
    /// CPU time limit per test.
    #[arg(long, default_value = "2s", value_parser = duration)]
    time: Duration,
    /// Wall-clock limit per test (default: twice --time, plus one second).
    #[arg(long, value_parser = duration)]
    wall: Option<Duration>,
    /// Memory limit per test.
    #[arg(long, default_value = "256M", value_parser = size)]
    memory: u64,
    /// Output limit per test (stdout and stderr together).
    #[arg(long, default_value = "1M", value_parser = size)]
    output: u64,
    /// Process and thread limit per test.
    #[arg(long, default_value_t = 32)]
    pids: u64,
    /// The solution's directory, bound read-only at /src.
    #[arg(long, value_name = "DIR")]
    source: Option<PathBuf>,
    /// Compile first: `sh -c CMD` in /build (writable), with /src read-only.
    #[arg(long, value_name = "CMD")]
    compile: Option<String>,
    /// Directory of NAME.in / NAME.out pairs.
    tests: PathBuf,
    /// How to run the solution (inside the cell).
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    program: Vec<String>,
}

fn size(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// A test case: its name, input file and expected output.
struct Case {
    name: String,
    input: PathBuf,
    expected: String,
}

fn cases(dir: &Path) -> Result<Vec<Case>, String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let p = e.map_err(|e| e.to_string())?.path();
        if p.extension().is_some_and(|x| x == "in") {
            let out = p.with_extension("out");
            v.push(Case {
                name: p
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                expected: read(&out)?,
                input: p,
            });
        }
    }
    if v.is_empty() {
        return Err(format!(
            "{}: no NAME.in / NAME.out test cases",
            dir.display()
        ));
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

/// Equal up to trailing spaces on each line and trailing empty lines.
fn same_output(got: &str, want: &str) -> bool {
    fn norm(s: &str) -> Vec<&str> {
        let mut lines: Vec<&str> = s.lines().map(str::trim_end).collect();
        while lines.last() == Some(&"") {
            lines.pop();
        }
        lines
    }
    norm(got) == norm(want)
}

/// The verdict of a finished test.
fn verdict(o: &Outcome, stdout: &str, expected: &str) -> &'static str {
    match &o.state {
        JobState::Completed if same_output(stdout, expected) => "AC",
        JobState::Completed => "WA",
        JobState::TimedOut(_) => "TLE",
        JobState::OutOfMemory => "MLE",
        JobState::OutputLimitExceeded => "OLE",
        JobState::Failed { .. } if o.exit.is_some() => "RE",
        // A call the seccomp filter forbids (in kill mode): a runtime error here.
        JobState::BadSyscall { .. } => "RE",
        _ => "IE",
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cases = match cases(&args.tests) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("judge: {e}");
            return ExitCode::from(2);
        }
    };
    // Solutions are untrusted code: every cap not set below keeps its safe default.
    let mut cell = Sandbox::untrusted();
    if let Some(src) = &args.source {
        cell.bind_ro(src, "/src").current_dir("/src");
    }
    let build = match &args.compile {
        None => None,
        Some(cmd) => match compile(&cell, cmd) {
            Ok(dir) => Some(dir),
            Err(log) => {
                println!("CE  compilation failed\n{log}");
                return ExitCode::from(1);
            }
        },
    };
    if let Some(dir) = &build {
        cell.bind_ro(dir.path().join(BUILD), "/build")
            .current_dir("/build");
    }
    cell.limits(Limits {
        memory: Some(args.memory),
        cpu_time: Some(args.time),
        wall_time: Some(args.wall.unwrap_or(args.time * 2 + Duration::from_secs(1))),
        output_bytes: Some(args.output),
        pids: Some(args.pids),
        ..Limits::conservative()
    });
    // The cells of the next tests are made while one runs: a test then
    // only waits for its command to start, not for its cell to be built.
    let pool = match cell.prepare(cases.len().clamp(1, 4)) {
        Ok(pool) => pool,
        Err(e) => {
            println!("IE  the test cells could not be set up: {e}");
            return ExitCode::from(1);
        }
    };
    let mut accepted = 0;
    for case in &cases {
        let mut cmd = Command::new(&args.program[0]);
        cmd.args(&args.program[1..])
            .stdin(Stdin::File(case.input.clone()));
        let (v, detail) = match pool.spawn(&cmd) {
            Err(e) => ("IE", e.to_string()),
            Ok(job) => {
                let stdout: Vec<u8> = job
                    .logs()
                    .filter(|c| c.stream == Stream::Stdout)
                    .flat_map(|c| c.data.to_vec())
                    .collect();
                match job.wait() {
                    Err(e) => ("IE", e.to_string()),
                    Ok(o) => {
                        let cpu = o.usage.map_or(o.rusage.cpu_time(), |u| u.cpu_total());
                        let mem = o
                            .usage
                            .and_then(|u| u.memory_peak)
                            .unwrap_or(o.rusage.max_rss);
                        let v = verdict(&o, &String::from_utf8_lossy(&stdout), &case.expected);
                        (
                            v,
                            format!(
                                "cpu {:.3}s, memory {}, {}",
                                cpu.as_secs_f64(),
                                format_size(mem),
                                o.state
                            ),
                        )
                    }
                }
            }
        };
        accepted += usize::from(v == "AC");
        println!("{:<3} {:<12} {detail}", v, case.name);
    }
    println!("{accepted}/{} accepted", cases.len());
    ExitCode::from(u8::from(accepted != cases.len()))
}

/// The build directory, inside the one `compile` returns.
const BUILD: &str = "build";

/// Runs the compile command; `Err` carries its output. The build lands in
/// `BUILD` inside the directory returned.
fn compile(cell: &Sandbox, cmd: &str) -> Result<tempfile::TempDir, String> {
    // The judge's own (root's, as is what the submission builds there),
    // mode 0700, so that no other host user reaches it; inside, `build`
    // may be entered by anyone: the test cells, which see only it.
    let top = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    let dir = top.path().join(BUILD);
    std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let compiler = |c: &mut Sandbox| {
        c.current_dir("/build").limits(Limits {
            memory: Some(1 << 30),
            wall_time: Some(Duration::from_secs(60)),
            pids: Some(64),
            output_bytes: Some(1 << 20),
            ..Limits::conservative()
        });
    };
    let mut command = Command::new("sh");
    command.args(["-c", cmd]);
    // The build directory is the compiler's own (an idmapped bind): it
    // writes there as its cell user, and the files stay the judge's.
    let mut c = cell.clone();
    c.bind_rw_owned(&dir, "/build");
    compiler(&mut c);
    let job = match c.spawn(&command) {
        Ok(job) => job,
        // No idmapped mounts on this kernel or file system: the fallback
        // is to give the directory to the cell user's host ids.
        Err(jobcell::Error::OwnedBind { .. }) => {
            let (uid, gid) = cell.host_ids().map_err(|e| e.to_string())?;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
            let mut c = cell.clone();
            c.bind_rw(&dir, "/build");
            compiler(&mut c);
            c.spawn(&command).map_err(|e| e.to_string())?
        }
        Err(e) => return Err(e.to_string()),
    };
    let log: Vec<u8> = job.logs().flat_map(|c| c.data.to_vec()).collect();
    let o = job.wait().map_err(|e| e.to_string())?;
    if o.success() {
        Ok(top)
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&log), o.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_compare_up_to_trailing_space() {
        assert!(same_output("3\n42\n", "3\n42\n"));
        assert!(same_output("3  \n42", "3\n42\n\n"));
        assert!(!same_output("3\n41\n", "3\n42\n"));
        assert!(!same_output(" 3\n", "3\n"), "leading space matters");
        assert!(!same_output("3\n", "3\n42\n"));
    }
}
