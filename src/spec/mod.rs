//! A job as data: [`JobSpec`], what a remote submitter sends (the HTTP
//! service's `POST /jobs` body, a queue entry), turned into a [`Sandbox`] and
//! a [`Command`].
//!
//! The operator's [`Sandbox`] is the base: its root, binds, network, ids,
//! seccomp policy and cgroup base are not the submitter's to choose. A spec
//! adds what belongs to the job: the program, its arguments and environment,
//! standard input, files placed in a work directory before it runs, paths
//! read back from it afterwards, its limits and its hostname.

mod content;

use std::collections::BTreeMap;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use content::Content;

use crate::error::{Error, Result};
use crate::path::CellPath;
use crate::sandbox::{Command, Limits, Sandbox, Stdin};

/// Where a job's work directory appears inside its cell.
const WORKDIR: &str = "/work";

/// A job as data: the program, its inputs, the paths to read back and the
/// limits, in a form that travels as JSON.
///
/// [`build`](JobSpec::build) turns it into a [`Sandbox`] (the operator's base
/// plus this job's settings) and a [`Command`]. It checks only what is the
/// spec's own (the work-directory paths); everything else is checked by the
/// spawn (or [`Worker::submit`](crate::Worker::submit)) exactly as for a job
/// built by hand, before any process exists.
///
/// With `files` or `collect`, the job gets a *work directory*: a host
/// directory the caller provides, bound read-write at [`WORKDIR`](JobSpec::WORKDIR) (`/work`),
/// which is then also the default working directory. `files` are written
/// there before the job runs ([`write_files`](JobSpec::write_files)), and
/// `collect` paths are read back after it ends
/// ([`collect`](JobSpec::collect)) without following anything the job
/// planted (see [`fs::read_beneath`](crate::fs::read_beneath)).
///
/// ```
/// use jobcell::{JobSpec, Sandbox};
///
/// let spec: JobSpec = serde_json::from_str(r#"{
///     "command": "sh",
///     "args": ["-c", "sort input.txt > sorted.txt"],
///     "env": {"LC_ALL": "C"},
///     "files": {"input.txt": "b\na\n"},
///     "collect": ["sorted.txt"],
///     "limits": {"memory": 268435456, "wall_time_ms": 10000}
/// }"#)?;
/// let work = tempfile::tempdir()?;
/// spec.write_files(work.path())?;
/// let (sandbox, command) = spec.build(&Sandbox::new(), Some(work.path()))?;
/// assert_eq!(command.get_program(), "sh");
/// assert_eq!(sandbox.get_limits().memory, Some(256 << 20));
/// assert_eq!(std::fs::read(work.path().join("input.txt"))?, b"b\na\n");
/// // Unknown fields are refused, naming the field.
/// let err = serde_json::from_str::<JobSpec>(r#"{"command": "true", "colour": "red"}"#);
/// assert!(err.unwrap_err().to_string().contains("colour"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The program: a name looked up on the cell's `PATH`, or a path in the cell.
    pub command: String,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables, on top of the sandbox's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The working directory inside the cell (default: `/work` when the job has
    /// a work directory, else the sandbox's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Standard input (default: empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<Content>,
    /// Files to place in the work directory before the job runs, by path
    /// relative to it (parent directories are created).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, Content>,
    /// Paths relative to the work directory to read back after the job ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collect: Vec<String>,
    /// The job's limits (they replace the base sandbox's).
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
    /// The cell's hostname (default: the sandbox's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

impl JobSpec {
    /// Where the work directory appears inside the cell: `/work`.
    pub const WORKDIR: &'static str = WORKDIR;

    /// A spec running `command` with nothing else set.
    ///
    /// ```
    /// let spec = jobcell::JobSpec::new("true");
    /// assert!(!spec.needs_workdir());
    /// ```
    pub fn new(command: impl Into<String>) -> JobSpec {
        JobSpec {
            command: command.into(),
            ..Default::default()
        }
    }

    /// True when the job has files to place or paths to collect, and so needs
    /// a work directory.
    pub fn needs_workdir(&self) -> bool {
        !self.files.is_empty() || !self.collect.is_empty()
    }

    /// Checks the spec's own fields: `files` and `collect` paths must be
    /// relative, without `.` or `..`, and name each file once; `cwd` must be
    /// an absolute cell path. The rest is checked when the job is spawned.
    ///
    /// ```
    /// let mut spec = jobcell::JobSpec::new("cat");
    /// spec.files.insert("../escape".into(), "x".into());
    /// let err = spec.validate().unwrap_err().to_string();
    /// assert!(err.contains("files") && err.contains("../escape"), "{err}");
    /// ```
    pub fn validate(&self) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for path in self.files.keys() {
            let p = relative("files", path)?;
            if !seen.insert(p.clone()) {
                return Err(Error::InvalidSetting {
                    name: "files",
                    value: path.clone(),
                    reason: "names the same file as another entry".into(),
                });
            }
        }
        // A file that is the parent directory of another cannot be both.
        for p in &seen {
            if seen.iter().any(|q| q != p && q.starts_with(p)) {
                return Err(Error::InvalidSetting {
                    name: "files",
                    value: p.display(),
                    reason: "is a file and the directory of another entry".into(),
                });
            }
        }
        for path in &self.collect {
            relative("collect", path)?;
        }
        if let Some(cwd) = &self.cwd {
            CellPath::new(cwd).map_err(|e| Error::InvalidSetting {
                name: "cwd",
                value: cwd.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// The sandbox and command of this job: `base` with this spec's limits,
    /// hostname, working directory and (when [`needs_workdir`](JobSpec::needs_workdir))
    /// `workdir` bound read-write at [`WORKDIR`](JobSpec::WORKDIR); the command with its
    /// arguments, environment and standard input.
    ///
    /// # Errors
    ///
    /// What [`validate`](JobSpec::validate) finds, and
    /// [`Error::InvalidSetting`] (`"workdir"`) when the job needs a work
    /// directory and none is given.
    pub fn build(&self, base: &Sandbox, workdir: Option<&Path>) -> Result<(Sandbox, Command)> {
        self.validate()?;
        let mut sandbox = base.clone();
        sandbox.limits(self.limits.clone());
        if let Some(h) = &self.hostname {
            sandbox.hostname(h);
        }
        if self.needs_workdir() {
            let dir = workdir.ok_or_else(|| Error::InvalidSetting {
                name: "workdir",
                value: String::new(),
                reason: "the job has files or collect paths: it needs a host work directory".into(),
            })?;
            sandbox.bind_rw(dir, WORKDIR).current_dir(WORKDIR);
        }
        if let Some(cwd) = &self.cwd {
            sandbox.current_dir(cwd);
        }
        let mut command = Command::new(&self.command);
        command.args(&self.args);
        for (k, v) in &self.env {
            command.env(k, v);
        }
        if let Some(stdin) = &self.stdin {
            command.stdin(Stdin::Bytes(stdin.shared()));
        }
        Ok((sandbox, command))
    }

    /// Writes `files` into `workdir`, a fresh host directory the job cannot
    /// reach yet: directories mode 0777 and files 0666, so that the job's user
    /// (not host root) may change them. `workdir` itself is made mode 0777 too.
    ///
    /// # Errors
    ///
    /// What [`validate`](JobSpec::validate) finds, or [`Error::Io`] naming the file.
    pub fn write_files(&self, workdir: &Path) -> Result<()> {
        self.validate()?;
        let open = |p: &Path| std::fs::set_permissions(p, Permissions::from_mode(0o777));
        open(workdir).map_err(|e| Error::io("make the work directory writable", workdir, e))?;
        for (rel, content) in &self.files {
            let path = workdir.join(rel);
            if let Some(parent) = path.parent().filter(|p| *p != workdir) {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o777)
                    .create(parent)
                    .map_err(|e| Error::io("create directory", parent, e))?;
                // The umask trimmed the mode of each directory made.
                let mut d = parent;
                while d != workdir {
                    open(d).map_err(|e| Error::io("chmod", d, e))?;
                    d = d.parent().unwrap_or(workdir);
                }
            }
            let write = || -> std::io::Result<()> {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o666)
                    .open(&path)?;
                f.set_permissions(Permissions::from_mode(0o666))?;
                f.write_all(content.as_bytes())
            };
            write().map_err(|e| Error::io("write job file", &path, e))?;
        }
        Ok(())
    }

    /// Reads each `collect` path back from `workdir` after the job has ended,
    /// at most `max_bytes` each, through
    /// [`fs::read_beneath`](crate::fs::read_beneath): symlinks, mount points,
    /// paths leaving the directory and anything but a regular file are
    /// refused. Each path gets its own result; a missing file is an error for
    /// that path only.
    ///
    /// ```
    /// let mut spec = jobcell::JobSpec::new("true");
    /// spec.collect = vec!["out.txt".into(), "missing.txt".into()];
    /// let work = tempfile::tempdir()?;
    /// std::fs::write(work.path().join("out.txt"), "42\n")?;
    /// let got = spec.collect(work.path(), 1 << 20);
    /// assert_eq!(got["out.txt"].as_ref().unwrap().as_bytes(), b"42\n");
    /// assert!(got["missing.txt"].is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn collect(&self, workdir: &Path, max_bytes: u64) -> BTreeMap<String, Result<Content>> {
        self.collect
            .iter()
            .map(|rel| {
                let got = relative("collect", rel)
                    .and_then(|_| crate::fs::read_beneath(workdir, rel, max_bytes))
                    .map(Content::new);
                (rel.clone(), got)
            })
            .collect()
    }
}

/// Checks a path relative to the work directory; returns it as a cell path.
fn relative(name: &'static str, path: &str) -> Result<CellPath> {
    let bad = |reason: String| Error::InvalidSetting {
        name,
        value: path.to_string(),
        reason,
    };
    if path.is_empty() {
        return Err(bad("the path is empty".into()));
    }
    if path.starts_with('/') {
        return Err(bad(format!(
            "must be relative to the work directory {WORKDIR}"
        )));
    }
    let p = CellPath::new(format!("{WORKDIR}/{path}")).map_err(|e| bad(e.to_string()))?;
    if p.components().count() < 2 {
        return Err(bad("names the work directory itself".into()));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(json: &str) -> String {
        serde_json::from_str::<JobSpec>(json)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn json_fields_and_errors() {
        let spec: JobSpec = serde_json::from_str(
            r#"{"command":"cat","args":["-n"],"stdin":{"base64":"AAE="},"cwd":"/tmp",
                "hostname":"judge","limits":{"pids":8,"output_bytes":1000}}"#,
        )
        .unwrap();
        assert_eq!(spec.stdin.as_ref().unwrap().as_bytes(), [0, 1]);
        let (sb, cmd) = spec.build(&Sandbox::new(), None).unwrap();
        assert_eq!(sb.get_limits().pids, Some(8));
        assert_eq!(sb.current_dir, Path::new("/tmp"));
        assert_eq!(sb.hostname, "judge");
        assert_eq!(cmd.stdin, Stdin::Bytes([0u8, 1][..].into()));
        assert_eq!(cmd.get_args().collect::<Vec<_>>(), ["-n"]);
        // Round trip.
        let back: JobSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);

        assert!(err(r#"{"args":[]}"#).contains("command"));
        assert!(err(r#"{"command":"x","limits":{"maxCPU":5}}"#).contains("maxCPU"));
        assert!(err(r#"{"command":"x","env":{"A":1}}"#).contains("string"));
    }

    #[test]
    fn work_directory_paths() {
        for bad in ["", "/abs", "../up", "a/../b", "a/./b", ".", "a\0b"] {
            let mut s = JobSpec::new("x");
            s.collect = vec![bad.into()];
            let e = s.validate().unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::InvalidSetting {
                        name: "collect",
                        ..
                    }
                ),
                "{bad:?}: {e}"
            );
            let mut s = JobSpec::new("x");
            s.files.insert(bad.into(), "".into());
            assert!(s.validate().is_err(), "{bad:?}");
        }
        let mut s = JobSpec::new("x");
        s.files.insert("a".into(), "".into());
        s.files.insert("a/b".into(), "".into());
        assert!(s.validate().unwrap_err().to_string().contains("directory"));
        let mut s = JobSpec::new("x");
        s.files.insert("a//b".into(), "".into());
        s.files.insert("a/b".into(), "".into());
        assert!(s.validate().unwrap_err().to_string().contains("same file"));
        let mut s = JobSpec::new("x");
        s.cwd = Some("relative".into());
        assert!(matches!(
            s.validate().unwrap_err(),
            Error::InvalidSetting { name: "cwd", .. }
        ));
        let mut s = JobSpec::new("x");
        s.collect = vec!["out".into()];
        assert!(matches!(
            s.build(&Sandbox::new(), None).unwrap_err(),
            Error::InvalidSetting {
                name: "workdir",
                ..
            }
        ));
    }

    #[test]
    fn files_are_written_for_the_job_to_change() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = JobSpec::new("x");
        s.files.insert("src/main.c".into(), "int main;".into());
        s.files.insert("in".into(), Content::new([0u8, 255]));
        s.write_files(dir.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path()), 0o777);
        assert_eq!(mode(&dir.path().join("src")), 0o777);
        assert_eq!(mode(&dir.path().join("src/main.c")), 0o666);
        assert_eq!(std::fs::read(dir.path().join("in")).unwrap(), [0, 255]);
        let (sb, _) = s.build(&Sandbox::new(), Some(dir.path())).unwrap();
        assert_eq!(sb.current_dir, Path::new(WORKDIR));
        // Written once: a second write finds the files there and refuses.
        assert!(s.write_files(dir.path()).is_err());
    }

    proptest! {
        #[test]
        fn specs_survive_json(
            command in "[a-z]{1,8}",
            args in proptest::collection::vec("\\PC{0,8}", 0..4),
            env in proptest::collection::btree_map("[A-Z_]{1,6}", "\\PC{0,8}", 0..3),
            stdin in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32)),
            pids in proptest::option::of(1u64..1000),
        ) {
            let spec = JobSpec {
                command, args, env,
                stdin: stdin.map(Content::new),
                limits: Limits { pids, ..Default::default() },
                ..Default::default()
            };
            let json = serde_json::to_string(&spec).unwrap();
            prop_assert_eq!(serde_json::from_str::<JobSpec>(&json).unwrap(), spec);
        }

        #[test]
        fn relative_paths_never_leave_the_work_directory(p in "[a-z./]{0,12}") {
            if let Ok(cell) = relative("files", &p) {
                prop_assert!(cell.starts_with(&CellPath::new(WORKDIR).unwrap()));
                prop_assert!(!p.split('/').any(|c| c == ".."));
            }
        }
    }
}
