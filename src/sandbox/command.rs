//! What to run inside the cell.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the job's standard input comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Stdin {
    /// `/dev/null` (the default).
    #[default]
    Null,
    /// These bytes, then end-of-file.
    Bytes(Arc<[u8]>),
    /// A file on the host, opened read-only by the host before the job starts.
    File(PathBuf),
}

impl Stdin {
    /// Standard input from bytes.
    ///
    /// ```
    /// let s = jobcell::Stdin::bytes("hello\n");
    /// assert_eq!(s, jobcell::Stdin::Bytes(b"hello\n"[..].into()));
    /// ```
    pub fn bytes(data: impl AsRef<[u8]>) -> Stdin {
        Stdin::Bytes(data.as_ref().into())
    }
}

/// What happens to the job's stdout or stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Captured into the job's log, readable with `JobHandle::logs` (the default).
    #[default]
    Capture,
    /// Written straight to the host process's own stdout / stderr.
    Inherit,
    /// Thrown away (`/dev/null`).
    Discard,
}

/// A program to run in a cell, with its arguments, environment and stdio.
///
/// Reads like [`std::process::Command`]: a builder whose methods take and
/// return `&mut Self`. A program name without a slash is looked up on the
/// `PATH` *inside* the cell.
///
/// ```
/// use jobcell::{Command, Stdin, Output};
///
/// let mut cmd = Command::new("sh");
/// cmd.args(["-c", "cat; echo done >&2"])
///    .env("LANG", "C.UTF-8")
///    .stdin(Stdin::bytes("input\n"))
///    .stderr(Output::Capture);
/// assert_eq!(cmd.get_program(), "sh");
/// ```
#[derive(Clone, Debug)]
pub struct Command {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    pub(crate) stdin: Stdin,
    pub(crate) stdout: Output,
    pub(crate) stderr: Output,
}

impl Command {
    /// A command running `program`, with no arguments.
    ///
    /// ```
    /// let cmd = jobcell::Command::new("/bin/true");
    /// assert_eq!(cmd.get_program(), "/bin/true");
    /// ```
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: Stdin::Null,
            stdout: Output::Capture,
            stderr: Output::Capture,
        }
    }

    /// Adds one argument.
    ///
    /// ```
    /// let mut cmd = jobcell::Command::new("echo");
    /// cmd.arg("hello");
    /// assert_eq!(cmd.get_args().count(), 1);
    /// ```
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds several arguments.
    ///
    /// ```
    /// let mut cmd = jobcell::Command::new("sh");
    /// cmd.args(["-c", "exit 0"]);
    /// assert_eq!(cmd.get_args().count(), 2);
    /// ```
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for this command, on top of the sandbox's environment.
    ///
    /// ```
    /// let mut cmd = jobcell::Command::new("env");
    /// cmd.env("GREETING", "hi");
    /// ```
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable that the sandbox would otherwise set.
    ///
    /// ```
    /// let mut cmd = jobcell::Command::new("env");
    /// cmd.env_remove("HOME");
    /// ```
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Sets where standard input comes from.
    ///
    /// ```
    /// let mut cmd = jobcell::Command::new("cat");
    /// cmd.stdin(jobcell::Stdin::bytes("data"));
    /// ```
    pub fn stdin(&mut self, stdin: Stdin) -> &mut Command {
        self.stdin = stdin;
        self
    }

    /// Sets what happens to standard output.
    ///
    /// ```
    /// let mut cmd = jobcell::Command::new("true");
    /// cmd.stdout(jobcell::Output::Discard);
    /// ```
    pub fn stdout(&mut self, out: Output) -> &mut Command {
        self.stdout = out;
        self
    }

    /// Sets what happens to standard error.
    ///
    /// ```
    /// let mut cmd = jobcell::Command::new("true");
    /// cmd.stderr(jobcell::Output::Inherit);
    /// ```
    pub fn stderr(&mut self, out: Output) -> &mut Command {
        self.stderr = out;
        self
    }

    /// The program as given.
    pub fn get_program(&self) -> &OsStr {
        &self.program
    }

    /// The arguments, without the program.
    pub fn get_args(&self) -> impl Iterator<Item = &OsStr> {
        self.args.iter().map(OsString::as_os_str)
    }
}
