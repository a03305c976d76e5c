//! The command-line runner (`examples/run.rs`), as a person runs it.

mod support;

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(support::example("run"))
        .args(args)
        .output()
        .expect("run the example")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn exit_codes_mirror_the_job() {
    let o = run(&["--", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let err = text(&o.stderr);
    assert!(
        err.contains("--- jobcell: failed (exit code 7); wall "),
        "{err}"
    );
    let o = run(&["sh", "-c", "kill -9 $$"]);
    assert_eq!(o.status.code(), Some(137), "128 + SIGKILL");
    let o = run(&["--time", "1s", "sleep", "60"]);
    assert_eq!(o.status.code(), Some(137));
    assert!(
        text(&o.stderr).contains("timed out (wall time), killed by signal 9 (SIGKILL); wall"),
        "{}",
        text(&o.stderr)
    );
    let o = run(&["no-such-program"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o.stderr).contains("not found in the cell"));
    let o = run(&["--memory", "12 parsecs", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("unknown size unit"),
        "{}",
        text(&o.stderr)
    );
    let o = run(&["--bind", "/only-one-path", "true"]);
    assert_eq!(o.status.code(), Some(2));
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
    let err = text(&o.stderr);
    assert!(
        err.starts_with("err\n--- jobcell: completed (exit code 0); wall "),
        "{err}"
    );
    assert!(
        err.contains("peak memory") && err.contains("io read"),
        "{err}"
    );

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
    let err = text(&o.stderr);
    let v: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(v["state"], "failed");
    assert_eq!(v["exit"]["code"], 3);
    assert!(v["wall_time_ms"].as_f64().unwrap() > 0.0);
    assert!(v["usage"]["memory_peak"].is_u64(), "{v}");
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
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "from the host\nfed on stdin\nhello=world\n0\ncli-test\ntmpfs-ok\nread-only\n"
    );
    assert!(!dir.path().join("no").exists());
}
