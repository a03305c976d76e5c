//! What run says at the end: its own line after the job's output, the
//! `--json` outcome, and the `--meta` file.

use std::time::Duration;

use jobcell::{Error, Outcome, Stream};

use crate::args::Args;
use crate::exit::SETUP_FAILED;
use crate::prog;

/// Remembers what was last written to stderr (and to stdout, when both
/// are the same file), so that run's own line starts on a line of its own.
pub struct Tail {
    /// stdout and stderr are the same file (a terminal, `2>&1`).
    shared: bool,
    last: Option<u8>,
}

impl Tail {
    pub fn new() -> Tail {
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

    pub fn wrote(&mut self, stream: Stream, data: &[u8]) {
        if stream == Stream::Stderr || self.shared {
            if let Some(&b) = data.last() {
                self.last = Some(b);
            }
        }
    }

    /// What goes before run's line: a newline unless the line is fresh.
    pub fn separator(&self) -> &'static str {
        match self.last {
            Some(b) if b != b'\n' => "\n",
            _ => "",
        }
    }
}

/// What `--json` prints and `--meta` writes: the outcome, and run's exit code.
#[derive(serde::Serialize)]
pub struct Report<'a> {
    #[serde(flatten)]
    outcome: &'a Outcome,
    run_exit_code: u8,
}

/// The same for a job that never started: the shape of a failed outcome.
#[derive(serde::Serialize)]
pub struct NeverRan {
    state: &'static str,
    reason: String,
    exit: Option<()>,
    wall_time_ms: u64,
    oom_killed: bool,
    pids_limited: bool,
    run_exit_code: u8,
}

pub fn result_json(o: &Outcome, code: u8) -> String {
    let r = Report {
        outcome: o,
        run_exit_code: code,
    };
    serde_json::to_string(&r).expect("an outcome serializes")
}

pub fn failure_json(e: &Error, code: u8, took: Duration) -> String {
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
pub fn write_meta(args: &Args, v: &str, code: u8) -> u8 {
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
