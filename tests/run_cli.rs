//! The command-line runner (`examples/run/`), as a person or a script runs it.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str]) -> Output {
    Command::new(support::example("run"))
        .args(args)
        .output()
        .expect("run the example")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The run's stderr, for assertion messages.
fn err(o: &Output) -> String {
    text(&o.stderr)
}

/// Each row of the exit code table in `run --help`, for real.
#[test]
fn exit_codes_follow_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("garbage"), b"\x7fELF not really\x00\x01").unwrap();
    std::fs::set_permissions(
        dir.path().join("garbage"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let bind = format!("{}:/d:ro", dir.path().display());
    let rows: &[(&[&str], i32, &str)] = &[
        (&["true"], 0, "completed (exit code 0)"),
        (&["sh", "-c", "exit 7"], 7, "failed (exit code 7)"),
        (
            &["sh", "-c", "kill -9 $$"],
            137,
            "failed (killed by signal 9 (SIGKILL))",
        ),
        (
            &["sh", "-c", "kill -SEGV $$"],
            139,
            "failed (killed by signal 11 (SIGSEGV))",
        ),
        (
            &["--time", "1s", "sleep", "60"],
            124,
            "timed out (wall time)",
        ),
        (
            &["--cpu-time", "300ms", "sh", "-c", "while :; do :; done"],
            124,
            "timed out (CPU time)",
        ),
        (
            &[
                "--memory",
                "32M",
                "sh",
                "-c",
                "x=$(head -c 67108864 /dev/zero | tr '\\0' x)",
            ],
            123,
            "out of memory",
        ),
        (
            &[
                "--output",
                "1K",
                "sh",
                "-c",
                "head -c 100000 /dev/zero; exit 0",
            ],
            122,
            "output limit exceeded",
        ),
        (
            &["--seccomp", "kill", "unshare", "-U", "true"],
            121,
            "bad system call",
        ),
        // The cell cannot start: CPU 4000 does not exist here.
        (&["--cpus", "4000", "true"], 125, "cgroup"),
        (&["--bind", &bind, "/d/garbage"], 126, "execve"),
        (&["no-such-program"], 127, "not found in the cell"),
        (&["--cpu", "0", "true"], 2, "'--cpu'"),
    ];
    for (args, code, says) in rows {
        let o = run(args);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {}", err(&o));
        assert!(err(&o).contains(says), "{args:?}: {says:?} in {}", err(&o));
    }
}

/// An output-limited job that exits on its own right after writing past
/// the limit raced its kill: it used to exit 0 in one run and 137 in the
/// next. The verdict decides now.
#[test]
fn an_output_limited_job_always_exits_122() {
    for _ in 0..20 {
        let o = run(&["--output", "1K", "--", "head", "-c", "1025", "/dev/zero"]);
        assert_eq!(o.status.code(), Some(122), "{}", err(&o));
        assert_eq!(o.stdout.len(), 1024);
    }
}

#[test]
fn invalid_arguments_exit_2_naming_the_argument() {
    for (args, named, says) in [
        (&["--cpu", "0", "true"][..], "'--cpu'", "between 1 and"),
        (&["--memory", "10", "true"], "'--memory'", "10M?"),
        (&["--pids", "0", "true"], "'--pids'", "0: must be"),
        (
            &["--time", "5", "true"],
            "'--time <TIME>'",
            "write 5s for seconds",
        ),
        (
            &["--memory", "12 parsecs", "true"],
            "'--memory <MEMORY>'",
            "unknown size unit",
        ),
        (
            &["--bind", "/only-one-path", "true"],
            "'--bind <SRC:DST[:ro|:owned]>'",
            "expected SRC:DST",
        ),
        (&["--bind", "/no/such/dir:/x", "true"], "'--bind'", "ENOENT"),
        (&["--tmpfs", "relative:1M", "true"], "'--tmpfs'", "absolute"),
        (
            &["--cwd", "/no/such/dir", "true"],
            "'--cwd'",
            "does not exist",
        ),
        (
            &["--user", "70000:0", "true"],
            "'--user'",
            "outside the mapped range",
        ),
        (
            &["--rlimit", "files=1", "true"],
            "'--rlimit <NAME=SOFT[:HARD]>'",
            "nofile",
        ),
        (
            &["--rlimit", "nofile=99999999999", "true"],
            "'--rlimit'",
            "hard limit",
        ),
        (
            &["--seccomp", "allow", "true"],
            "'--seccomp <errno|kill>'",
            "expected errno or kill",
        ),
        (
            &["--file", "/x=@/no/such/file", "true"],
            "'--file'",
            "/no/such/file",
        ),
        (
            &["--meta", "/no/such/dir/meta.json", "true"],
            "'--meta'",
            "/no/such/dir",
        ),
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        assert!(err(&o).contains(named), "{args:?}: {named} in {}", err(&o));
        assert!(err(&o).contains(says), "{args:?}: {says:?} in {}", err(&o));
        assert!(
            !err(&o).contains("--check"),
            "no host hint for a typo: {}",
            err(&o)
        );
    }
}

/// Hints name the program as it was invoked, whatever its path.
#[test]
fn hints_name_the_binary_as_invoked() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("jobcell-run");
    std::fs::copy(support::example("run"), &copy).unwrap();
    let o = Command::new(&copy)
        .args(["--cpus", "4000", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains(&format!("`{} --check-cgroups`", copy.display())),
        "{e}"
    );
    assert!(e.starts_with("jobcell-run: "), "{e}");
    assert!(!e.contains("cargo run"), "{e}");
}

#[test]
fn summary_and_json() {
    let o = run(&[
        "--memory",
        "64M",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o.stdout), "out\n");
    let e = err(&o);
    assert!(
        e.starts_with("err\n--- jobcell: completed (exit code 0); wall "),
        "{e}"
    );
    assert!(e.contains("peak memory") && e.contains("io read"), "{e}");

    let o = run(&[
        "--json",
        "--memory",
        "64M",
        "--",
        "sh",
        "-c",
        "echo out; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(text(&o.stdout), "out\n", "the job's stdout stays clean");
    let e = err(&o);
    let v: serde_json::Value = serde_json::from_str(e.lines().last().unwrap()).unwrap();
    assert_eq!(v["state"], "failed");
    assert_eq!(v["exit"]["code"], 3);
    assert_eq!(v["run_exit_code"], 3);
    assert!(v["wall_time_ms"].is_u64(), "{v}");
    assert!(v["usage"]["memory_peak"].is_u64(), "{v}");
    // The same line is the library's Outcome.
    let outcome: jobcell::Outcome = serde_json::from_value(v).unwrap();
    assert_eq!(outcome.code(), Some(3));
}

/// `--pids` counts the job's processes: `--pids 1` runs a command that
/// forks nothing, `--pids 3` a pipeline of two under a shell, and a job
/// that met the limit says so in the summary and the JSON.
#[test]
fn pids_counts_the_jobs_own_processes() {
    let o = run(&["--pids", "1", "--", "echo", "alone"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(text(&o.stdout), "alone\n");
    let o = run(&["--pids", "3", "--", "sh", "-c", "echo piped | cat"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(text(&o.stdout), "piped\n");
    assert!(!err(&o).contains("pids limit"), "{}", err(&o));

    let o = run(&["--pids", "2", "--", "sh", "-c", "echo x | cat | cat"]);
    assert!(err(&o).contains("; pids limit reached"), "{}", err(&o));
    let o = run(&[
        "--json",
        "--pids",
        "2",
        "--",
        "sh",
        "-c",
        "echo x | cat | cat",
    ]);
    let e = err(&o);
    let v: serde_json::Value = serde_json::from_str(e.lines().last().unwrap()).unwrap();
    assert_eq!(v["pids_limited"], true, "{v}");
    assert!(v["usage"]["pids_limit_hits"].as_u64() >= Some(1), "{v}");
}

/// `--bind SRC:DST:owned`: a root-owned directory is the job's own inside,
/// and its files stay root's on the host.
#[test]
fn an_owned_bind_is_the_jobs_workspace() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let bind = format!("{}:/work:owned", dir.path().display());
    let o = run(&[
        "--bind",
        &bind,
        "--cwd",
        "/work",
        "--",
        "sh",
        "-c",
        "echo built > out && stat -c '%u %g' . out",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(text(&o.stdout), "1000 1000\n1000 1000\n");
    let md = std::fs::metadata(dir.path().join("out")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
}

/// A job whose last output has no newline: run's own line starts on a
/// line of its own, on stderr, and on a terminal or file that holds both
/// streams.
#[test]
fn the_result_starts_on_its_own_line() {
    for json in [false, true] {
        let mut args = vec!["--", "sh", "-c", "printf partial >&2"];
        if json {
            args.insert(0, "--json");
        }
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0));
        let e = err(&o);
        let (first, last) = e.split_once('\n').unwrap();
        assert_eq!(first, "partial");
        match json {
            true => assert!(serde_json::from_str::<serde_json::Value>(last.trim_end()).is_ok()),
            false => assert!(last.starts_with("--- jobcell: completed"), "{e}"),
        }
    }
    // stdout and stderr into one file, as with 2>&1.
    let dir = tempfile::tempdir().unwrap();
    let both = std::fs::File::create(dir.path().join("both")).unwrap();
    let status = Command::new(support::example("run"))
        .args(["--json", "--", "sh", "-c", "printf 'no newline on stdout'"])
        .stdout(Stdio::from(both.try_clone().unwrap()))
        .stderr(Stdio::from(both))
        .status()
        .unwrap();
    assert!(status.success());
    let all = std::fs::read_to_string(dir.path().join("both")).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 2, "{all:?}");
    assert_eq!(lines[0], "no newline on stdout");
    let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(v["state"], "completed");
}

#[test]
fn meta_file_holds_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta.json");
    let m = meta.to_str().unwrap();
    let read = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap()
    };
    let o = run(&["--meta", m, "--time", "1s", "--", "sleep", "10"]);
    assert_eq!(o.status.code(), Some(124));
    let v = read();
    assert_eq!(v["state"], "timed_out", "{v}");
    assert_eq!(v["limit"], "wall");
    assert_eq!(v["run_exit_code"], 124);
    assert!(v["wall_time_ms"].as_u64().unwrap() >= 1000, "{v}");
    let outcome: jobcell::Outcome = serde_json::from_value(v).unwrap();
    assert_eq!(outcome.signal(), Some(9));
    assert!(
        err(&o).contains("--- jobcell: timed out (wall time)"),
        "the summary still goes to stderr: {}",
        err(&o)
    );

    // The cell never started: the file says so, in the same shape.
    let o = run(&["--meta", m, "no-such-program"]);
    assert_eq!(o.status.code(), Some(127));
    let v = read();
    assert_eq!(v["state"], "failed");
    assert!(v["reason"].as_str().unwrap().contains("not found"), "{v}");
    assert_eq!(v["exit"], serde_json::Value::Null);
    assert_eq!(v["run_exit_code"], 127);
    let outcome: jobcell::Outcome = serde_json::from_value(v).unwrap();
    assert_eq!(outcome.exit, None);

    let o = run(&["--meta", m, "--bind", "/no/such/dir:/x", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(read()["run_exit_code"], 2);
}

/// SIGTERM (or Ctrl-C) to run stops the job, reports it, and run dies of
/// the same signal, as a shell expects of an interrupted program.
#[test]
fn a_signal_to_run_stops_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta.json");
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let mut child = Command::new(support::example("run"))
            .args(["--meta", meta.to_str().unwrap(), "--"])
            .args(["sh", "-c", "echo started; exec sleep 60"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut first,
        )
        .unwrap();
        assert_eq!(first, "started\n");
        // SAFETY: kill on a child we started and have not reaped.
        unsafe { libc::kill(child.id() as i32, sig) };
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.signal(), Some(sig), "{name}: {}", err(&o));
        assert!(
            err(&o).contains("--- jobcell: stopped"),
            "{name}: {}",
            err(&o)
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
        assert_eq!(v["state"], "stopped");
        assert_eq!(v["run_exit_code"], 128 + sig);
    }
}

#[test]
fn filesystem_identity_and_stdin_options() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), "from the host\n").unwrap();
    std::fs::write(dir.path().join("input.txt"), "fed on stdin\n").unwrap();
    let bind = format!("{}:/data:ro", dir.path().display());
    let input = dir.path().join("input.txt");
    let o = run(&[
        "--bind",
        &bind,
        "--tmpfs",
        "/scratch:1M",
        "--user",
        "0:0",
        "--env",
        "GREETING=hello=world",
        "--hostname",
        "cli-test",
        "--cwd",
        "/data",
        "--stdin",
        input.to_str().unwrap(),
        "--pids",
        "16",
        "--output",
        "1M",
        "--",
        "sh",
        "-c",
        "cat data.txt; cat; echo $GREETING; id -u; hostname; \
         echo x > /scratch/f && echo tmpfs-ok; touch /data/no 2>/dev/null || echo read-only",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        text(&o.stdout),
        "from the host\nfed on stdin\nhello=world\n0\ncli-test\ntmpfs-ok\nread-only\n"
    );
    assert!(!dir.path().join("no").exists());
}

/// --rlimit, --file, --dir, --symlink, --env-clear and --landlock reach the job.
#[test]
fn library_features_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let host_file = dir.path().join("input");
    std::fs::write(&host_file, "from a host file\n").unwrap();
    let copy = format!("/data/copy=@{}", host_file.display());
    let o = run(&[
        "--rlimit",
        "nofile=64",
        "--rlimit",
        "fsize=1M:2M",
        "--tmpfs",
        "/data:1M",
        "--file",
        "/data/text=inline text",
        "--file",
        &copy,
        "--dir",
        "/data/sub/deeper",
        "--symlink",
        "text:/data/link",
        "--env-clear",
        "--env",
        "PATH=/usr/bin:/bin",
        "--env",
        "ONLY=this",
        "--",
        "sh",
        "-c",
        "ulimit -n; ulimit -Sf; ulimit -Hf; cat /data/text; echo; cat /data/copy; \
         test -d /data/sub/deeper && echo dir-ok; readlink /data/link; \
         env | grep -v '^PWD=' | sort",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        text(&o.stdout),
        "64\n2048\n4096\ninline text\nfrom a host file\ndir-ok\ntext\nONLY=this\nPATH=/usr/bin:/bin\n"
    );

    let o = run(&[
        "--landlock",
        "/usr:ro",
        "--landlock",
        "/lib:ro",
        "--landlock",
        "/lib64:ro",
        "--landlock",
        "/bin:ro",
        "--landlock",
        "/dev:rw",
        "--landlock",
        "/tmp:rw",
        "--",
        "sh",
        "-c",
        "echo x > /tmp/f && echo tmp-ok; cat /etc/hostname 2>/dev/null || echo etc-denied",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(text(&o.stdout), "tmp-ok\netc-denied\n");

    // The default seccomp action is an error the job can handle.
    let o = run(&[
        "--",
        "sh",
        "-c",
        "unshare -U true 2>/dev/null || echo refused",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(text(&o.stdout), "refused\n");
}

/// The exit code table is the same in `--help`, the README and here.
#[test]
fn the_readme_shows_the_exit_code_table_of_help() {
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = text(&o.stdout);
    let start = help.find("Exit codes").expect("a table in --help");
    let table = &help[start..];
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for line in table.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            readme.contains(line.trim_end()),
            "README.md lacks this line of `run --help`: {line:?}"
        );
    }
}
